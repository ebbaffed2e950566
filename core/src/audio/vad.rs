//! The voice activity detector of the test server (`tolk serve`'s `server_vad`) and of the
//! router's segment cuts: energy-based, on 10 ms frames of 24 kHz PCM16.
//!
//! A frame is *voiced* when its RMS level is above the threshold, mapped from the API's 0..1
//! scale to dBFS by [`threshold_dbfs`] (0.5 → −40 dBFS, 0 → −70, 1 → −10). Speech starts after
//! [`MIN_SPEECH_MS`] of consecutive voiced frames; the reported start goes back
//! `prefix_padding_ms` before the first voiced frame (never before the end of the previous turn
//! or sample 0). Speech stops once `silence_duration_ms` of unvoiced frames follow; the
//! reported end is the end of that silence, which is where the real service puts
//! `audio_end_ms` ("includes the silence duration").
//!
//! Positions are absolute sample counts since the session started (the API's
//! `audio_start_ms` / `audio_end_ms` are those in milliseconds). Pure computation, no clocks.

/// Samples per second of the audio the detector sees.
pub const RATE: u64 = 24_000;
/// Samples per analysis frame (10 ms).
pub const FRAME: usize = 240;
/// Consecutive voiced audio needed before speech counts as started.
pub const MIN_SPEECH_MS: u64 = 30;

/// The level in dBFS that `threshold` (0..1) stands for.
pub fn threshold_dbfs(threshold: f64) -> f64 {
    -70.0 + 60.0 * threshold.clamp(0.0, 1.0)
}

/// The RMS level of `frame` in dBFS (−100 for digital silence).
pub fn level_dbfs(frame: &[i16]) -> f64 {
    if frame.is_empty() {
        return -100.0;
    }
    let sum: f64 = frame.iter().map(|&s| (s as f64) * (s as f64)).sum();
    let rms = (sum / frame.len() as f64).sqrt();
    if rms < 1e-3 { -100.0 } else { (20.0 * (rms / 32768.0).log10()).max(-100.0) }
}

/// Samples in `ms` milliseconds.
pub fn ms_to_samples(ms: u64) -> u64 {
    ms * RATE / 1000
}

/// Drops what `buffer` holds before input sample `keep_from`; `start` is the input sample
/// `buffer[0]` is, and moves with it.
pub fn trim_before(buffer: &mut Vec<i16>, start: &mut u64, keep_from: u64) {
    if keep_from > *start {
        buffer.drain(..(keep_from - *start) as usize);
        *start = keep_from;
    }
}

/// Takes input samples `[from, to)` out of `buffer` (clipped to what it holds) and drops
/// everything before `to`; `start` is the input sample `buffer[0]` is, and moves with it.
pub fn take_span(buffer: &mut Vec<i16>, start: &mut u64, from: u64, to: u64) -> Vec<i16> {
    let lo = from.saturating_sub(*start).min(buffer.len() as u64) as usize;
    let hi = to.saturating_sub(*start).min(buffer.len() as u64) as usize;
    let samples = buffer[lo..hi.max(lo)].to_vec();
    buffer.drain(..hi);
    *start += hi as u64;
    samples
}

/// Milliseconds in `samples` samples (rounded down).
pub fn samples_to_ms(samples: u64) -> u64 {
    samples * 1000 / RATE
}

/// The detector's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadParams {
    /// 0..1 as in the API.
    pub threshold: f64,
    pub prefix_padding_ms: u32,
    pub silence_duration_ms: u32,
}

/// A detection, in absolute sample positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// Speech begins at `start` (prefix padding included).
    SpeechStarted { start: u64 },
    /// Speech ended; the turn spans up to `end` (trailing silence included).
    SpeechStopped { end: u64 },
}

/// The detector state of one input stream.
#[derive(Debug, Clone)]
pub struct Vad {
    params: VadParams,
    threshold_db: f64,
    /// Samples of the incomplete frame.
    partial: Vec<i16>,
    /// Absolute position of the first sample of `partial`.
    pos: u64,
    in_speech: bool,
    /// Consecutive voiced samples (while not in speech) and where the run began.
    voiced_run: u64,
    run_start: u64,
    /// Consecutive unvoiced samples while in speech.
    silence_run: u64,
    /// Reported starts never go before this (end of the last turn or a reset).
    floor: u64,
}

impl Vad {
    /// A detector starting at absolute position `pos`.
    pub fn new(params: VadParams, pos: u64) -> Vad {
        Vad {
            params,
            threshold_db: threshold_dbfs(params.threshold),
            partial: Vec::with_capacity(FRAME),
            pos,
            in_speech: false,
            voiced_run: 0,
            run_start: pos,
            silence_run: 0,
            floor: pos,
        }
    }

    /// The settings.
    pub fn params(&self) -> VadParams {
        self.params
    }

    /// Whether speech is in progress.
    pub fn in_speech(&self) -> bool {
        self.in_speech
    }

    /// Forgets any speech in progress and restarts at absolute position `pos` (after a manual
    /// commit or clear).
    pub fn reset(&mut self, pos: u64) {
        *self = Vad::new(self.params, pos);
    }

    /// Feeds samples; detections are appended to `out` in order.
    pub fn push(&mut self, mut samples: &[i16], out: &mut Vec<VadEvent>) {
        while !samples.is_empty() {
            let take = (FRAME - self.partial.len()).min(samples.len());
            self.partial.extend_from_slice(&samples[..take]);
            samples = &samples[take..];
            if self.partial.len() == FRAME {
                let voiced = level_dbfs(&self.partial) > self.threshold_db;
                let frame_start = self.pos;
                self.pos += FRAME as u64;
                self.partial.clear();
                self.frame(voiced, frame_start, out);
            }
        }
    }

    fn frame(&mut self, voiced: bool, frame_start: u64, out: &mut Vec<VadEvent>) {
        let frame_end = frame_start + FRAME as u64;
        if !self.in_speech {
            if !voiced {
                self.voiced_run = 0;
                return;
            }
            if self.voiced_run == 0 {
                self.run_start = frame_start;
            }
            self.voiced_run += FRAME as u64;
            if self.voiced_run >= ms_to_samples(MIN_SPEECH_MS) {
                let pad = ms_to_samples(self.params.prefix_padding_ms as u64);
                let start = self.run_start.saturating_sub(pad).max(self.floor);
                self.in_speech = true;
                self.silence_run = 0;
                out.push(VadEvent::SpeechStarted { start });
            }
        } else if voiced {
            self.silence_run = 0;
        } else {
            self.silence_run += FRAME as u64;
            if self.silence_run >= ms_to_samples(self.params.silence_duration_ms as u64).max(FRAME as u64) {
                self.in_speech = false;
                self.voiced_run = 0;
                self.floor = frame_end;
                out.push(VadEvent::SpeechStopped { end: frame_end });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: VadParams = VadParams { threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 500 };

    fn tone(ms: u64, amp: f64) -> Vec<i16> {
        (0..ms_to_samples(ms)).map(|i| (amp * 32767.0 * (i as f64 * 0.1).sin()) as i16).collect()
    }

    fn noise(ms: u64, amp: f64) -> Vec<i16> {
        let mut rng = fastrand::Rng::with_seed(7);
        (0..ms_to_samples(ms)).map(|_| ((rng.f64() * 2.0 - 1.0) * amp * 32767.0) as i16).collect()
    }

    fn run(chunks: &[Vec<i16>], params: VadParams, block: usize) -> Vec<VadEvent> {
        let all: Vec<i16> = chunks.concat();
        let mut v = Vad::new(params, 0);
        let mut out = Vec::new();
        for c in all.chunks(block) {
            v.push(c, &mut out);
        }
        out
    }

    #[test]
    fn one_utterance_with_padding_and_silence() {
        let ev = run(&[tone(1000, 0.0), tone(1500, 0.3), tone(1000, 0.0)], P, 480);
        assert_eq!(
            ev,
            vec![
                VadEvent::SpeechStarted { start: ms_to_samples(1000 - 300) },
                VadEvent::SpeechStopped { end: ms_to_samples(2500 + 500) },
            ]
        );
    }

    #[test]
    fn block_size_does_not_matter() {
        let input = [noise(400, 0.001), tone(700, 0.2), noise(800, 0.001), tone(300, 0.2), noise(900, 0.001)];
        let a = run(&input, P, 240);
        for block in [1, 17, 241, 4800, 100_000] {
            assert_eq!(run(&input, P, block), a, "block {block}");
        }
        assert_eq!(a.len(), 4, "two turns: {a:?}");
    }

    #[test]
    fn short_pauses_do_not_end_a_turn_and_clicks_do_not_start_one() {
        let ev = run(&[tone(500, 0.3), tone(300, 0.0), tone(500, 0.3), tone(600, 0.0)], P, 960);
        assert_eq!(ev.len(), 2, "{ev:?}");
        let click = run(&[tone(200, 0.0), tone(20, 0.9), tone(1000, 0.0)], P, 960);
        assert!(click.is_empty(), "{click:?}");
    }

    #[test]
    fn threshold_maps_to_level() {
        // A tone at about −30 dBFS is speech at 0.5 and silence at 0.9.
        let quiet = tone(600, 0.045);
        assert!((level_dbfs(&quiet[..FRAME]) + 30.0).abs() < 1.5);
        assert_eq!(run(&[quiet.clone(), tone(600, 0.0)], P, 480).len(), 2);
        let strict = VadParams { threshold: 0.9, ..P };
        assert!(run(&[quiet, tone(600, 0.0)], strict, 480).is_empty());
        assert_eq!(threshold_dbfs(0.5), -40.0);
        assert_eq!(level_dbfs(&[0; 240]), -100.0);
    }

    #[test]
    fn start_never_before_previous_end() {
        let p = VadParams { prefix_padding_ms: 2000, silence_duration_ms: 200, ..P };
        let ev = run(&[tone(300, 0.3), tone(200, 0.0), tone(100, 0.0), tone(300, 0.3), tone(300, 0.0)], p, 240);
        let VadEvent::SpeechStopped { end } = ev[1] else { panic!("{ev:?}") };
        assert_eq!(ev[2], VadEvent::SpeechStarted { start: end });
    }
}
