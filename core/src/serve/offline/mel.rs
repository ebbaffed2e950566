//! Whisper's log-mel front-end: 16 kHz mono audio → an `[80, 3000]` log-mel spectrogram of one
//! 30 s window, computed exactly as OpenAI's `whisper.audio.log_mel_spectrogram` does
//! (reflect-padded 400-point periodic Hann STFT, hop 160, power spectrum, 80 Slaney-normalised
//! mel filters up to 8 kHz, `log10` clamped at 1e-10, floored at max − 8, then `(x + 4) / 4`).

use std::sync::Arc;

use rustfft::{Fft, FftPlanner, num_complex::Complex};

/// Sample rate Whisper takes.
pub const SAMPLE_RATE: usize = 16_000;
/// Samples in one window (30 s).
pub const N_SAMPLES: usize = 30 * SAMPLE_RATE;
/// Mel bands.
pub const N_MELS: usize = 80;
/// Frames in one window.
pub const N_FRAMES: usize = N_SAMPLES / HOP;
const N_FFT: usize = 400;
const HOP: usize = 160;
const N_BINS: usize = N_FFT / 2 + 1;

/// The STFT plan, window and filter bank, built once.
pub struct LogMel {
    fft: Arc<dyn Fft<f32>>,
    window: Vec<f32>,
    /// `N_MELS × N_BINS`, row-major.
    filters: Vec<f32>,
}

impl std::fmt::Debug for LogMel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogMel")
    }
}

impl Default for LogMel {
    fn default() -> Self {
        Self::new()
    }
}

fn hz_to_mel(f: f64) -> f64 {
    let (f_sp, min_log_hz, min_log_mel, logstep) = (200.0 / 3.0, 1000.0, 15.0, (6.4f64).ln() / 27.0);
    if f < min_log_hz { f / f_sp } else { min_log_mel + (f / min_log_hz).ln() / logstep }
}

fn mel_to_hz(m: f64) -> f64 {
    let (f_sp, min_log_hz, min_log_mel, logstep) = (200.0 / 3.0, 1000.0, 15.0, (6.4f64).ln() / 27.0);
    if m < min_log_mel { f_sp * m } else { min_log_hz * (logstep * (m - min_log_mel)).exp() }
}

impl LogMel {
    /// Plans the FFT and builds the filter bank (librosa `mel(sr=16000, n_fft=400, n_mels=80)`).
    pub fn new() -> LogMel {
        let fft = FftPlanner::new().plan_fft_forward(N_FFT);
        let window = (0..N_FFT)
            .map(|i| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / N_FFT as f64).cos()) as f32)
            .collect();
        let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE as f64 / 2.0));
        let mel_f: Vec<f64> =
            (0..N_MELS + 2).map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (N_MELS + 1) as f64)).collect();
        let mut filters = vec![0f32; N_MELS * N_BINS];
        for m in 0..N_MELS {
            let enorm = 2.0 / (mel_f[m + 2] - mel_f[m]);
            for k in 0..N_BINS {
                let f = k as f64 * SAMPLE_RATE as f64 / N_FFT as f64;
                let lower = (f - mel_f[m]) / (mel_f[m + 1] - mel_f[m]);
                let upper = (mel_f[m + 2] - f) / (mel_f[m + 2] - mel_f[m + 1]);
                filters[m * N_BINS + k] = (lower.min(upper).max(0.0) * enorm) as f32;
            }
        }
        LogMel { fft, window, filters }
    }

    /// The log-mel of `audio` (16 kHz, at most [`N_SAMPLES`]; zero-padded to 30 s), as
    /// `N_MELS × N_FRAMES` row-major values.
    pub fn compute(&self, audio: &[f32]) -> Vec<f32> {
        let mut padded = vec![0f32; N_SAMPLES];
        let n = audio.len().min(N_SAMPLES);
        padded[..n].copy_from_slice(&audio[..n]);
        // Centre the frames: reflect-pad N_FFT / 2 on both sides.
        let half = N_FFT / 2;
        let mut x = Vec::with_capacity(N_SAMPLES + N_FFT);
        x.extend((1..=half).rev().map(|i| padded[i]));
        x.extend_from_slice(&padded);
        x.extend((1..=half).map(|i| padded[N_SAMPLES - 1 - i]));
        let mut mel = vec![0f32; N_MELS * N_FRAMES];
        let mut buf = vec![Complex::new(0f32, 0f32); N_FFT];
        let mut power = [0f32; N_BINS];
        for t in 0..N_FRAMES {
            let frame = &x[t * HOP..t * HOP + N_FFT];
            for (b, (s, w)) in buf.iter_mut().zip(frame.iter().zip(&self.window)) {
                *b = Complex::new(s * w, 0.0);
            }
            self.fft.process(&mut buf);
            for (p, c) in power.iter_mut().zip(&buf) {
                *p = c.norm_sqr();
            }
            for m in 0..N_MELS {
                let row = &self.filters[m * N_BINS..(m + 1) * N_BINS];
                let v: f32 = row.iter().zip(&power).map(|(a, b)| a * b).sum();
                mel[m * N_FRAMES + t] = v.max(1e-10).log10();
            }
        }
        let max = mel.iter().copied().fold(f32::MIN, f32::max);
        for v in &mut mel {
            *v = ((*v).max(max - 8.0) + 4.0) / 4.0;
        }
        mel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_slaney_triangles_and_a_tone_lands_in_its_band() {
        let m = LogMel::new();
        // Every filter has weight somewhere; the first band peaks near 0–67 Hz.
        for row in m.filters.chunks(N_BINS) {
            assert!(row.iter().any(|&w| w > 0.0));
        }
        // A 1 kHz tone: the loudest mel band of a middle frame is the one whose filter has the
        // most weight at bin 25 (1 kHz = 25 × 40 Hz).
        let audio: Vec<f32> =
            (0..SAMPLE_RATE).map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16_000.0).sin() * 0.5).collect();
        let mel = m.compute(&audio);
        let t = 50;
        let loudest = (0..N_MELS).max_by(|&a, &b| mel[a * N_FRAMES + t].total_cmp(&mel[b * N_FRAMES + t])).unwrap();
        let expected =
            (0..N_MELS).max_by(|&a, &b| m.filters[a * N_BINS + 25].total_cmp(&m.filters[b * N_BINS + 25])).unwrap();
        assert_eq!(loudest, expected);
        // Silence after the tone sits at the floor (max − 8 → (max − 8 + 4) / 4).
        let max = mel.iter().copied().fold(f32::MIN, f32::max);
        assert!((mel[N_FRAMES - 1] - (max - 2.0)).abs() < 1e-4);
    }
}
