//! Audio conversion at the edges: sample encoding, channel count and sample rate, plus the
//! PCM16 + base64 framing the Realtime API speaks.
//!
//! Internally tolk carries [`AudioFormat::SESSION`] (24 kHz, mono, i16). Sources and sinks
//! declare their own formats, and a [`Converter`] per edge turns one into the other. All of
//! this is pure computation on slices: no I/O, no threads, no clocks, and no allocation per
//! block once the buffers have grown.
//!
//! - [`convert`]: i16 ↔ f32, sanitising f32, downmix / upmix / remix, channel selection.
//! - [`resample`]: [`StreamResampler`], streaming rate conversion on rubato with exact lengths
//!   and delay compensation.
//! - [`pcm16`]: i16 ↔ little-endian bytes ↔ base64.
//! - [`vad`]: the energy-based voice activity detector (server VAD of `tolk serve`, segment
//!   cuts in the router).
//! - [`g711`]: μ-law / A-law bytes ↔ linear PCM16 (the test server's `pcmu` / `pcma` formats).
//!
//! The one decision to know: the [`Converter`] works in f32 between its ends and orders the
//! steps for cost: downmix **before** resampling, upmix **after**, so the resampler only ever
//! sees as many channels as both ends share. Identical i16 formats skip all of it and hand the
//! input back untouched (bit-exact, zero-copy).

pub mod convert;
pub mod g711;
pub mod pcm16;
pub mod resample;
pub mod vad;

use std::fmt;

use tolk_plugin_api::{AudioFormat, SampleFormat, Samples};

pub use resample::StreamResampler;

/// What went wrong in an audio conversion; see [`AudioError::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioErrorKind {
    /// A format (rate, channels) cannot be converted.
    Format,
    /// rubato refused to build a resampler.
    Resampler,
    /// PCM16 / base64 input is malformed.
    Decode,
}

/// An audio conversion error: a kind and a one-line lower-case message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioError {
    kind: AudioErrorKind,
    message: String,
}

impl AudioError {
    pub(crate) fn format(message: impl Into<String>) -> Self {
        AudioError { kind: AudioErrorKind::Format, message: message.into() }
    }

    pub(crate) fn resampler(message: impl Into<String>) -> Self {
        AudioError { kind: AudioErrorKind::Resampler, message: message.into() }
    }

    pub(crate) fn decode(message: impl Into<String>) -> Self {
        AudioError { kind: AudioErrorKind::Decode, message: message.into() }
    }

    /// The category.
    pub fn kind(&self) -> AudioErrorKind {
        self.kind
    }
}

impl fmt::Display for AudioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AudioError {}

/// Converts a stream of interleaved blocks from one [`AudioFormat`] to another: sample
/// encoding, channel count and sample rate.
///
/// Steps, each skipped when not needed: decode to f32 (f32 input is sanitised: NaN → 0,
/// clipped to ±1), downmix to mono, resample, upmix, encode (f32 → i16 by the house rounding
/// rule, or sanitise again for f32 output). A trailing partial frame in a block is ignored.
///
/// The output of [`process`](Self::process) and [`finish`](Self::finish) borrows the
/// converter's own buffers, which are reused: nothing is allocated per block once they have
/// grown to the block size.
pub struct Converter {
    /// The format blocks arrive in (the encoding of each block is taken from the block).
    from: AudioFormat,
    /// The format blocks leave in.
    to: AudioFormat,
    /// Whether channels are averaged to mono before resampling.
    downmix: bool,
    /// Whether mono is copied to `to.channels` after resampling.
    upmix: bool,
    /// Rate conversion on the channels both ends share (1 when they differ).
    resampler: StreamResampler,
    /// The input block as f32, `from.channels` wide.
    decoded: Vec<f32>,
    /// The input block averaged to mono.
    mono: Vec<f32>,
    /// The resampler's output.
    resampled: Vec<f32>,
    /// The resampled mono copied to `to.channels`.
    upmixed: Vec<f32>,
    /// Output for `to.sample == I16`.
    out_i16: Vec<i16>,
    /// Output for `to.sample == F32`.
    out_f32: Vec<f32>,
}

impl Converter {
    /// A converter from `from` to `to`. Both formats must pass [`AudioFormat::validate`].
    pub fn new(from: AudioFormat, to: AudioFormat) -> Result<Converter, AudioError> {
        for (side, format) in [("input", from), ("output", to)] {
            format
                .validate()
                .map_err(|e| AudioError::format(format!("unsupported {side} format ({format}): {}", e.message())))?;
        }
        let (n, m) = (from.channels, to.channels);
        let downmix = n != m && n > 1;
        let upmix = n != m && m > 1;
        let resampler_channels = if n == m { usize::from(n) } else { 1 };
        let resampler = StreamResampler::new(from.sample_rate, to.sample_rate, resampler_channels)?;
        Ok(Converter {
            from,
            to,
            downmix,
            upmix,
            resampler,
            decoded: Vec::new(),
            mono: Vec::new(),
            resampled: Vec::new(),
            upmixed: Vec::new(),
            out_i16: Vec::new(),
            out_f32: Vec::new(),
        })
    }

    /// The input format.
    pub fn from_format(&self) -> AudioFormat {
        self.from
    }

    /// The output format.
    pub fn to_format(&self) -> AudioFormat {
        self.to
    }

    /// True when both formats are equal: i16 blocks come back as they went in (zero-copy),
    /// f32 blocks are only sanitised.
    pub fn is_passthrough(&self) -> bool {
        self.from == self.to
    }

    /// How long, in output frames, input can wait inside the resampler before it comes out
    /// (buffering plus filter delay). 0 without rate conversion.
    pub fn latency_frames(&self) -> usize {
        self.resampler.latency_frames()
    }

    /// Converts one block of `from.channels`-interleaved samples (either encoding) and returns
    /// what is ready in the output format. With rate conversion the output lags the input; the
    /// rest comes out of [`finish`](Self::finish).
    pub fn process<'a>(&'a mut self, input: Samples<'a>) -> Samples<'a> {
        let ch_in = usize::from(self.from.channels);
        if self.is_passthrough() {
            match (input, self.to.sample) {
                (Samples::I16(s), SampleFormat::I16) => return Samples::I16(convert::whole_frames(s, ch_in)),
                (Samples::F32(s), SampleFormat::F32) => {
                    self.out_f32.clear();
                    convert::sanitize_f32_slice(convert::whole_frames(s, ch_in), &mut self.out_f32);
                    return Samples::F32(&self.out_f32);
                }
                _ => {}
            }
        }
        self.decoded.clear();
        match input {
            Samples::I16(s) => convert::i16_to_f32_slice(convert::whole_frames(s, ch_in), &mut self.decoded),
            Samples::F32(s) => convert::sanitize_f32_slice(convert::whole_frames(s, ch_in), &mut self.decoded),
        }
        let before: &[f32] = if self.downmix {
            self.mono.clear();
            convert::downmix_to_mono(&self.decoded, ch_in, &mut self.mono);
            &self.mono
        } else {
            &self.decoded
        };
        let after: &[f32] = if self.resampler.is_passthrough() {
            before
        } else {
            self.resampled.clear();
            self.resampler.process(before, &mut self.resampled);
            &self.resampled
        };
        encode(after, self.upmix, self.to, &mut self.upmixed, &mut self.out_i16, &mut self.out_f32)
    }

    /// Ends the stream: returns the resampler's remaining output (empty without rate
    /// conversion), so the stream's total length is `round(frames · to_rate / from_rate)`.
    /// The converter is then ready for a new stream.
    pub fn finish(&mut self) -> Samples<'_> {
        self.resampled.clear();
        self.resampler.finish(&mut self.resampled);
        encode(&self.resampled, self.upmix, self.to, &mut self.upmixed, &mut self.out_i16, &mut self.out_f32)
    }

    /// Drops buffered input and filter state without output, for a new stream.
    pub fn reset(&mut self) {
        self.resampler.reset();
    }
}

impl fmt::Debug for Converter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Converter")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("downmix", &self.downmix)
            .field("upmix", &self.upmix)
            .field("resampler", &self.resampler)
            .finish_non_exhaustive()
    }
}

/// The last steps of [`Converter`]: optional upmix, then the output encoding.
fn encode<'a>(
    samples: &[f32],
    upmix: bool,
    to: AudioFormat,
    upmixed: &mut Vec<f32>,
    out_i16: &'a mut Vec<i16>,
    out_f32: &'a mut Vec<f32>,
) -> Samples<'a> {
    let samples = if upmix {
        upmixed.clear();
        convert::upmix_mono(samples, usize::from(to.channels), upmixed);
        upmixed.as_slice()
    } else {
        samples
    };
    match to.sample {
        SampleFormat::I16 => {
            out_i16.clear();
            convert::f32_to_i16_slice(samples, out_i16);
            Samples::I16(out_i16)
        }
        SampleFormat::F32 => {
            out_f32.clear();
            convert::sanitize_f32_slice(samples, out_f32);
            Samples::F32(out_f32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::TAU;
    use tolk_plugin_api::SampleFormat::{F32, I16};

    fn fmt(rate: u32, channels: u16, sample: SampleFormat) -> AudioFormat {
        AudioFormat::new(rate, channels, sample)
    }

    fn to_i16(s: Samples<'_>) -> Vec<i16> {
        match s {
            Samples::I16(s) => s.to_vec(),
            Samples::F32(_) => panic!("expected i16 output"),
        }
    }

    fn to_f32(s: Samples<'_>) -> Vec<f32> {
        match s {
            Samples::F32(s) => s.to_vec(),
            Samples::I16(_) => panic!("expected f32 output"),
        }
    }

    #[test]
    fn rejects_invalid_formats_with_one_line() {
        let err = Converter::new(fmt(500, 1, I16), AudioFormat::SESSION).unwrap_err();
        assert_eq!(err.kind(), AudioErrorKind::Format);
        assert_eq!(
            err.to_string(),
            "unsupported input format (500 Hz, 1 ch, i16): sample rate 500 Hz is outside 1000..=768000"
        );
        let err = Converter::new(AudioFormat::SESSION, fmt(24000, 0, F32)).unwrap_err();
        assert_eq!(err.to_string(), "unsupported output format (24000 Hz, 0 ch, f32): 0 channels is outside 1..=64");
    }

    #[test]
    fn i16_passthrough_is_bit_exact_and_zero_copy() {
        let mut c = Converter::new(AudioFormat::SESSION, AudioFormat::SESSION).unwrap();
        assert!(c.is_passthrough());
        let input: Vec<i16> = (i16::MIN..=i16::MAX).step_by(3).collect();
        let out = c.process(Samples::I16(&input));
        let Samples::I16(out) = out else { panic!("expected i16") };
        assert_eq!(out, input.as_slice());
        assert!(std::ptr::eq(out, input.as_slice()), "the input slice itself comes back");
        assert!(c.finish().is_empty());

        let mut stereo = Converter::new(fmt(48000, 2, I16), fmt(48000, 2, I16)).unwrap();
        assert_eq!(to_i16(stereo.process(Samples::I16(&[1, 2, 3]))), [1, 2], "partial frame dropped");
    }

    #[test]
    fn f32_passthrough_sanitises() {
        let f = fmt(16000, 1, F32);
        let mut c = Converter::new(f, f).unwrap();
        assert!(c.is_passthrough());
        let out = to_f32(c.process(Samples::F32(&[0.5, f32::NAN, 2.0, f32::NEG_INFINITY, -0.25])));
        assert_eq!(out, [0.5, 0.0, 1.0, -1.0, -0.25]);
    }

    #[test]
    fn encoding_and_channels_without_resampling() {
        // i16 stereo → f32 mono at the same rate: averaging, then i16 → f32.
        let mut c = Converter::new(fmt(24000, 2, I16), fmt(24000, 1, F32)).unwrap();
        assert!(!c.is_passthrough());
        let out = to_f32(c.process(Samples::I16(&[16384, 0, -32768, -32768, 100])));
        assert_eq!(out, [0.25, -1.0]);
        assert!(c.finish().is_empty());

        // f32 mono → i16 stereo: clip, NaN → 0, copy to both channels.
        let mut c = Converter::new(fmt(24000, 1, F32), fmt(24000, 2, I16)).unwrap();
        let out = to_i16(c.process(Samples::F32(&[1.5, f32::NAN, -0.5, f32::INFINITY])));
        assert_eq!(out, [32767, 32767, 0, 0, -16384, -16384, 32767, 32767]);

        // 3 → 2 channels: average to mono, copy out.
        let mut c = Converter::new(fmt(24000, 3, F32), fmt(24000, 2, F32)).unwrap();
        assert_eq!(to_f32(c.process(Samples::F32(&[0.25, 0.5, 0.75]))), [0.5, 0.5]);

        // A block in the other encoding than declared is still decoded by its own tag.
        let mut c = Converter::new(AudioFormat::SESSION, AudioFormat::SESSION).unwrap();
        assert_eq!(to_i16(c.process(Samples::F32(&[0.5, f32::NAN]))), [16384, 0]);
    }

    /// Feeds `input` (interleaved, `channels` wide) in blocks of 1, 7, 480, 1024 and 4801
    /// frames, then finishes; returns all i16 output.
    fn run_i16(c: &mut Converter, input: &[f32], channels: usize) -> Vec<i16> {
        let mut out = Vec::new();
        let mut pos = 0;
        for frames in [1usize, 7, 480, 1024, 4801].iter().cycle() {
            if pos >= input.len() {
                break;
            }
            let end = (pos + frames * channels).min(input.len());
            out.extend(to_i16(c.process(Samples::F32(&input[pos..end]))));
            pos = end;
        }
        out.extend(to_i16(c.finish()));
        out
    }

    fn stereo_tone(frames: usize, left: f32, right: f32) -> Vec<f32> {
        (0..frames)
            .flat_map(|n| {
                let s = (TAU * 440.0 * n as f64 / 48000.0).sin() as f32;
                [left * s, right * s]
            })
            .collect()
    }

    /// The largest difference between `out` (i16) and a 440 Hz tone of `amp` at 24 kHz over
    /// output frames `range`.
    fn max_error(out: &[i16], amp: f64, range: std::ops::Range<usize>) -> f64 {
        range
            .map(|m| (f64::from(out[m]) / 32768.0 - amp * (TAU * 440.0 * m as f64 / 24000.0).sin()).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn stereo_f32_48k_to_session_end_to_end() {
        let mut c = Converter::new(fmt(48000, 2, F32), AudioFormat::SESSION).unwrap();
        assert!(!c.is_passthrough());
        // Left 0.6, right 0.2: the mono average is 0.4.
        let out = run_i16(&mut c, &stereo_tone(48000, 0.6, 0.2), 2);
        assert_eq!(out.len(), 24000);
        let err = max_error(&out, 0.4, 1200..22800);
        assert!(err < 1e-3, "max error {err}");
        // The converter is reusable after `finish`, with the same result.
        assert_eq!(run_i16(&mut c, &stereo_tone(48000, 0.6, 0.2), 2), out);
    }

    #[test]
    fn nan_and_overload_in_f32_input_stay_local() {
        let mut c = Converter::new(fmt(48000, 2, F32), AudioFormat::SESSION).unwrap();
        let mut input = stereo_tone(48000, 0.6, 0.2);
        input[2 * 30000 + 1] = f32::NAN; // right channel, 625 ms
        input[2 * 36000] = f32::INFINITY; // left channel, 750 ms
        input[2 * 36001] = 40.0;
        let out = run_i16(&mut c, &input, 2);
        assert_eq!(out.len(), 24000);
        // Untouched away from the damaged frames (±5 ms), and only a bounded blip near them.
        let err = max_error(&out, 0.4, 1200..14880).max(max_error(&out, 0.4, 18120..22800));
        assert!(err < 1e-3, "max error {err} away from the damage");
        assert!(max_error(&out, 0.4, 14880..18120) < 0.5, "damage is bounded");
    }

    #[test]
    fn session_to_stereo_48k_f32_and_back_lengths() {
        let mut up = Converter::new(AudioFormat::SESSION, fmt(48000, 2, F32)).unwrap();
        let mut down = Converter::new(fmt(48000, 2, F32), AudioFormat::SESSION).unwrap();
        let input: Vec<i16> = (0..24000).map(|n| ((TAU * 300.0 * n as f64 / 24000.0).sin() * 8000.0) as i16).collect();
        let mut mid = Vec::new();
        for block in input.chunks(479) {
            mid.extend(to_f32(up.process(Samples::I16(block))));
        }
        mid.extend(to_f32(up.finish()));
        assert_eq!(mid.len(), 2 * 48000);
        assert!(mid.chunks_exact(2).all(|f| f[0] == f[1]), "upmix copies mono to both channels");
        let mut back = Vec::new();
        for block in mid.chunks(2 * 1000) {
            back.extend(to_i16(down.process(Samples::F32(block))));
        }
        back.extend(to_i16(down.finish()));
        assert_eq!(back.len(), input.len());
        let err = back[1000..23000].iter().zip(&input[1000..23000]).map(|(a, b)| (a - b).abs()).max().unwrap();
        assert!(err <= 2, "max error {err} LSB");
    }

    /// 10 minutes of 48 kHz stereo i16 → 24 kHz mono i16, in 10 ms blocks; median of 5 runs.
    /// Run with `cargo test --release -- --ignored --nocapture bench_`.
    #[test]
    #[ignore = "timing figure, run in release by hand"]
    fn bench_ten_minutes_48k_stereo_to_session() {
        let from = fmt(48000, 2, I16);
        let frames = 48000 * 600;
        let input: Vec<i16> = (0..frames)
            .flat_map(|n| {
                let t = n as f64 / 48000.0;
                let s = ((TAU * 220.0 * t).sin() * 6000.0 + (TAU * 1300.0 * t).sin() * 3000.0) as i16;
                [s, s / 2]
            })
            .collect();
        let mut times = Vec::new();
        for _ in 0..5 {
            let mut c = Converter::new(from, AudioFormat::SESSION).unwrap();
            let start = std::time::Instant::now();
            let mut total = 0;
            for block in input.chunks(2 * 480) {
                total += c.process(Samples::I16(block)).len();
            }
            total += c.finish().len();
            times.push(start.elapsed());
            assert_eq!(total, 24000 * 600);
        }
        times.sort();
        println!("10 min 48 kHz stereo i16 → 24 kHz mono i16: median {:?} (runs {times:?})", times[2]);
    }
}
