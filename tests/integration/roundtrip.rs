//! WAV in, WAV out through the real plugins and the host's lane: bit-exact at the same format.

use std::time::Duration;

use tolk_core::{
    plugin_host::{HostServices, Registry, SearchPath},
    router::source_lane::{self, LaneEvent},
};
use tolk_plugin_api::AudioBlock;
use tolk_tests::{read_wav_i16, write_wav_i16};

fn host(id: &str, dir: &std::path::Path) -> HostServices {
    HostServices { instance_id: id.into(), plugin_id: "tolk.wav".into(), config_dir: dir.to_path_buf() }
}

#[test]
fn wav_source_to_wav_sink_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    // 3.3 s of a deterministic, full-range signal (including the extremes).
    let input: Vec<i16> = (0..79_213i32)
        .map(|i| match i % 997 {
            0 => i16::MIN,
            1 => i16::MAX,
            _ => ((i as f32 * 0.0731).sin() * 20_000.0 + (i as f32 * 0.0013).cos() * 9_000.0) as i16,
        })
        .collect();
    write_wav_i16(&dir.path().join("in.wav"), 24_000, 1, &input);

    let reg = Registry::discover(&SearchPath::new(&[]));
    let mut source =
        reg.create_source("tolk.wav", "path = \"in.wav\"\nrealtime = false", host("in", dir.path())).unwrap();
    let mut sink = reg.create_sink("tolk.wav", "path = \"out.wav\"", host("out", dir.path())).unwrap();
    let src_fmt = source.format().unwrap();
    let sink_fmt = sink.format().unwrap().unwrap();
    assert_eq!(src_fmt, sink_fmt, "same format: no conversion on the way");

    let (writer, reader) = source_lane::lane(src_fmt, Duration::from_millis(200), source_lane::Policy::Backpressure);
    source.start(writer.to_ffi()).unwrap();
    sink.start().unwrap();
    let mut expected_offset = 0;
    loop {
        match reader.recv_timeout(Duration::from_secs(10)).expect("the source stalled") {
            LaneEvent::Audio(b) => {
                assert_eq!(b.frame_offset, expected_offset);
                let samples = b.samples.as_samples();
                expected_offset += samples.len() as u64;
                sink.on_audio(AudioBlock::new(sink_fmt, samples, b.frame_offset, "en")).unwrap();
            }
            LaneEvent::End => break,
            LaneEvent::Failed(e) => panic!("source failed: {e}"),
        }
    }
    source.stop().unwrap();
    sink.stop().unwrap();
    assert_eq!(reader.dropped_frames(), 0);
    let (spec, output) = read_wav_i16(&dir.path().join("out.wav"));
    assert_eq!((spec.sample_rate, spec.channels, spec.bits_per_sample), (24_000, 1, 16));
    assert_eq!(output.len(), input.len());
    assert!(output == input, "samples differ");
}

/// Goertzel power of `freq` in `x` (sampled at `rate`), normalised to amplitude.
fn tone_amplitude(x: &[f32], rate: f32, freq: f32) -> f32 {
    let w = 2.0 * std::f32::consts::PI * freq / rate;
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let coeff = 2.0 * f64::from(w.cos());
    for &v in x {
        let s = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    (2.0 * power.sqrt() / x.len() as f64) as f32
}

#[test]
fn wav_source_to_wav_sink_is_correct_after_resampling() {
    use tolk_core::audio::Converter;
    use tolk_plugin_api::{AudioFormat, SampleFormat};

    let dir = tempfile::tempdir().unwrap();
    // 2 s of 44.1 kHz stereo: 1 kHz at 0.5 on the left, 3 kHz at 0.25 on the right.
    let frames = 88_200usize;
    let mut input = Vec::with_capacity(frames * 2);
    for i in 0..frames {
        let t = i as f32 / 44_100.0;
        input.push(((2.0 * std::f32::consts::PI * 1000.0 * t).sin() * 0.5 * 32767.0).round() as i16);
        input.push(((2.0 * std::f32::consts::PI * 3000.0 * t).sin() * 0.25 * 32767.0).round() as i16);
    }
    write_wav_i16(&dir.path().join("in.wav"), 44_100, 2, &input);

    let reg = Registry::discover(&SearchPath::new(&[]));
    let mut source =
        reg.create_source("tolk.wav", "path = \"in.wav\"\nrealtime = false", host("in", dir.path())).unwrap();
    // The sink writes the session format: 24 kHz mono 16-bit.
    let mut sink = reg.create_sink("tolk.wav", "path = \"out.wav\"", host("out", dir.path())).unwrap();
    let src_fmt = source.format().unwrap();
    assert_eq!((src_fmt.sample_rate, src_fmt.channels), (44_100, 2));
    let to = AudioFormat { sample_rate: 24_000, channels: 1, sample: SampleFormat::I16 };
    let mut conv = Converter::new(src_fmt, to).unwrap();

    let (writer, reader) = source_lane::lane(src_fmt, Duration::from_millis(200), source_lane::Policy::Backpressure);
    source.start(writer.to_ffi()).unwrap();
    sink.start().unwrap();
    let mut offset = 0u64;
    loop {
        match reader.recv_timeout(Duration::from_secs(10)).expect("the source stalled") {
            LaneEvent::Audio(b) => {
                let out = conv.process(b.samples.as_samples());
                sink.on_audio(AudioBlock::new(to, out, offset, "en")).unwrap();
                offset += out.len() as u64;
            }
            LaneEvent::End => break,
            LaneEvent::Failed(e) => panic!("source failed: {e}"),
        }
    }
    let tail = conv.finish();
    sink.on_audio(AudioBlock::new(to, tail, offset, "en")).unwrap();
    source.stop().unwrap();
    sink.stop().unwrap();

    let (spec, output) = read_wav_i16(&dir.path().join("out.wav"));
    assert_eq!((spec.sample_rate, spec.channels), (24_000, 1));
    // Exact length: round(88 200 · 24 000 / 44 100) = 48 000.
    assert_eq!(output.len(), 48_000);
    let x: Vec<f32> = output[2_400..45_600].iter().map(|&s| f32::from(s) / 32768.0).collect();
    // The mono mix is the average of the channels: 1 kHz at 0.25, 3 kHz at 0.125, nothing else.
    let a1 = tone_amplitude(&x, 24_000.0, 1000.0);
    let a3 = tone_amplitude(&x, 24_000.0, 3000.0);
    let a2 = tone_amplitude(&x, 24_000.0, 2000.0);
    assert!((a1 - 0.25).abs() < 0.005, "1 kHz amplitude {a1}");
    assert!((a3 - 0.125).abs() < 0.005, "3 kHz amplitude {a3}");
    assert!(a2 < 0.001, "energy at 2 kHz {a2}");
    // The tone stays in phase with the input: no dropped or repeated blocks.
    let rms: f32 = (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt();
    let expected = (0.25f32.powi(2) / 2.0 + 0.125f32.powi(2) / 2.0).sqrt();
    assert!((rms - expected).abs() < 0.005, "rms {rms}, expected {expected}");
}
