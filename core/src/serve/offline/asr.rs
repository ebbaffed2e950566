//! Speech recognition: Whisper (CTranslate2 format) through `ct2rs::sys::Whisper`, with our own
//! log-mel ([`super::mel`]). English-only models (`tiny.en`) get the prompt
//! `<|startoftranscript|><|notimestamps|>`; multilingual ones also `<|en|><|transcribe|>`.
//! Decoding is greedy (beam 1), int8 on the CPU.
//!
//! Utterances longer than one 30 s window are cut at the quietest 100 ms of the window's last
//! 5 s and recognised window by window. Known silence phrases that Whisper invents on silence
//! and noise ("Thank you.", "you", …) are dropped, as is any window whose no-speech
//! probability is high.

use std::path::{Path, PathBuf};

use ct2rs::Tokenizer as _;
use ct2rs::sys::{ComputeType, Config, Device, StorageView, Whisper, WhisperOptions};
use ct2rs::tokenizers::hf::Tokenizer;

use super::mel::{LogMel, N_FRAMES, N_MELS, N_SAMPLES, SAMPLE_RATE};

/// The whisper model folder inside the model cache.
pub const TINY_EN: &str = "whisper-tiny.en";

/// Phrases Whisper produces on silence or noise; an utterance recognised as only these is empty.
const SILENCE_PHRASES: &[&str] = &[
    "you",
    "thank you",
    "thanks for watching",
    "thank you for watching",
    "thank you very much",
    "bye",
    "subtitles by the amara org community",
    "please subscribe",
];

/// Above this no-speech probability a window's text is dropped.
const NO_SPEECH_MAX: f32 = 0.6;

/// The model cache: `$TOLK_MODELS`, else `$XDG_CACHE_HOME/tolk/models`, else
/// `~/.cache/tolk/models` (where `scripts/models.sh` puts them).
pub fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TOLK_MODELS").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
    cache.join("tolk").join("models")
}

/// A loaded Whisper model.
pub struct Asr {
    whisper: Whisper,
    tokenizer: Tokenizer,
    mel: LogMel,
    multilingual: bool,
}

impl std::fmt::Debug for Asr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Asr").field("multilingual", &self.multilingual).finish()
    }
}

impl Asr {
    /// Loads the model in `dir`; the error is one line naming the folder and what to run.
    pub fn load(dir: &Path, threads: usize) -> Result<Asr, String> {
        for f in ["model.bin", "tokenizer.json", "config.json"] {
            if !dir.join(f).is_file() {
                return Err(format!(
                    "offline engine: Whisper model missing: {} not found (run scripts/models.sh)",
                    dir.join(f).display()
                ));
            }
        }
        if !dir.join(".sha256-ok").is_file() {
            return Err(format!(
                "offline engine: {} was not verified by scripts/models.sh (run it again)",
                dir.display()
            ));
        }
        let config = Config {
            device: Device::CPU,
            compute_type: ComputeType::INT8,
            num_threads_per_replica: threads,
            ..Config::default()
        };
        let whisper = Whisper::new(dir, config)
            .map_err(|e| format!("offline engine: cannot load the Whisper model in {}: {e}", dir.display()))?;
        let tokenizer = Tokenizer::new(dir)
            .map_err(|e| format!("offline engine: {}: {e}", dir.join("tokenizer.json").display()))?;
        let multilingual = whisper.is_multilingual();
        Ok(Asr { whisper, tokenizer, mel: LogMel::new(), multilingual })
    }

    /// The text of 16 kHz mono `audio` (any length), silence phrases dropped.
    pub fn recognize(&self, audio: &[f32]) -> Result<String, String> {
        let mut text = String::new();
        for window in windows(audio) {
            let piece = self.window(window)?;
            if !piece.is_empty() {
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(&piece);
            }
        }
        Ok(text)
    }

    fn window(&self, audio: &[f32]) -> Result<String, String> {
        let mut features = self.mel.compute(audio);
        let view = StorageView::new(&[1, N_MELS, N_FRAMES], &mut features, Device::CPU)
            .map_err(|e| format!("offline engine: whisper features: {e}"))?;
        let prompt: Vec<&str> = if self.multilingual {
            vec!["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
        } else {
            vec!["<|startoftranscript|>", "<|notimestamps|>"]
        };
        let options = WhisperOptions { beam_size: 1, return_no_speech_prob: true, ..WhisperOptions::default() };
        let result =
            self.whisper.generate(&view, &[prompt], &options).map_err(|e| format!("offline engine: whisper: {e}"))?;
        let Some(r) = result.into_iter().next() else { return Ok(String::new()) };
        if r.no_speech_prob > NO_SPEECH_MAX {
            return Ok(String::new());
        }
        let tokens: Vec<String> =
            r.sequences.into_iter().next().unwrap_or_default().into_iter().filter(|t| !t.starts_with("<|")).collect();
        let text = self.tokenizer.decode(tokens).map_err(|e| format!("offline engine: whisper tokens: {e}"))?;
        Ok(drop_silence_phrases(text.trim()))
    }
}

/// `text`, or nothing when it is only a known silence phrase.
pub fn drop_silence_phrases(text: &str) -> String {
    let norm: String = text
        .chars()
        .map(|c| if c.is_alphanumeric() || c == ' ' { c.to_ascii_lowercase() } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if norm.is_empty() || SILENCE_PHRASES.contains(&norm.as_str()) { String::new() } else { text.to_string() }
}

/// Cuts `audio` into windows of at most 30 s, each cut at the quietest 100 ms of the last 5 s.
pub fn windows(audio: &[f32]) -> Vec<&[f32]> {
    let mut out = Vec::new();
    let mut rest = audio;
    let step = SAMPLE_RATE / 10;
    while rest.len() > N_SAMPLES {
        let from = N_SAMPLES - 5 * SAMPLE_RATE;
        let energy = |i: usize| rest[i..i + step].iter().map(|x| x * x).sum::<f32>();
        let cut = (from..N_SAMPLES - step)
            .step_by(step)
            .min_by(|&a, &b| energy(a).total_cmp(&energy(b)))
            .map_or(N_SAMPLES, |i| i + step / 2);
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_phrases_are_dropped_and_speech_kept() {
        assert_eq!(drop_silence_phrases(" Thank you."), "");
        assert_eq!(drop_silence_phrases("you"), "");
        assert_eq!(drop_silence_phrases("..."), "");
        assert_eq!(drop_silence_phrases("Thank you for coming."), "Thank you for coming.");
    }

    #[test]
    fn long_audio_is_cut_at_a_quiet_point_within_30_s() {
        // 70 s of "speech" with a quiet 100 ms at 27.0 s and at 55.0 s.
        let mut a = vec![0.5f32; 70 * SAMPLE_RATE];
        for q in [27 * SAMPLE_RATE, 55 * SAMPLE_RATE] {
            a[q..q + SAMPLE_RATE / 10].fill(0.0);
        }
        let w = windows(&a);
        assert_eq!(w.len(), 3);
        assert!(w.iter().all(|w| w.len() <= N_SAMPLES));
        assert_eq!(w.iter().map(|w| w.len()).sum::<usize>(), a.len());
        assert_eq!(w[0].len(), 27 * SAMPLE_RATE + SAMPLE_RATE / 20);
        assert_eq!(windows(&a[..SAMPLE_RATE]).len(), 1);
        assert!(windows(&[]).is_empty());
    }
}
