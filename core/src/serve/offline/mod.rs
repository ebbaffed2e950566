//! The offline engine of `tolk serve --engine offline` (cargo feature `offline`): real
//! interpretation on this machine, no account, no network. Per utterance the server VAD cut:
//!
//! 1. **ASR** ([`asr`]): resampled to 16 kHz, Whisper tiny.en (CTranslate2 through ct2rs) on a
//!    worker thread, never on the async runtime;
//! 2. **MT** ([`mt`]): one long-running apertium pipeline per pair (`eng-spa`, `eng-cat`, …), in
//!    null-flush mode;
//! 3. **TTS** ([`tts`]): `espeak-ng --stdout` per sentence, resampled to 24 kHz.
//!
//! The response streams each sentence's translation (transcript delta) and then its audio, as
//! synthesis produces them; the input transcription is the recognised English. An utterance with
//! no voiced audio (by the server VAD's own detector) gives no text at all, and Whisper's
//! silence phrases are dropped. A target language without an installed apertium pair and
//! espeak-ng voice is refused with an `unsupported_language` error naming the pair.
//!
//! The recognised text of an utterance is cached by a hash of its samples, so the input
//! transcription and the response (and the sessions of other languages hearing the same
//! audio) share one Whisper run. Models come from `scripts/models.sh` ([`asr::models_dir`]).
//! The quality is rough: rule-based MT, a formant voice, the smallest Whisper.

pub mod asr;
pub mod mel;
pub mod mt;
pub mod tts;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::{Receiver, TryRecvError, unbounded};

use super::engine::{Chunk, Engine, EngineRequest};
use crate::audio::{
    convert::i16_to_f32_slice,
    resample::StreamResampler,
    vad::{Vad, VadEvent, VadParams},
};

/// Audio chunk size of the offline engine's responses.
pub const CHUNK_MS: usize = 100;
/// Recognised utterances remembered for reuse.
const CACHE: usize = 64;

/// Seconds each stage took for one utterance (the bench reads them).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    pub asr: f64,
    pub mt: f64,
    pub tts: f64,
}

/// The offline engine; see the module docs. Cheap to clone (the worker threads hold one).
#[derive(Clone)]
pub struct OfflineEngine {
    inner: Arc<Inner>,
}

/// The engine's shared state (models, pipelines, cache).
pub struct Inner {
    asr: Mutex<asr::Asr>,
    /// Recognised text by utterance hash, newest last.
    cache: Mutex<VecDeque<(u64, String)>>,
    /// One pipeline per pair, started on first use.
    pipelines: Mutex<HashMap<String, Arc<Mutex<mt::Apertium>>>>,
    /// Target tags that have both a pair and a voice.
    languages: Vec<&'static str>,
    /// Per-utterance stage timings, newest last (bounded).
    timings: Mutex<VecDeque<Timings>>,
}

impl std::fmt::Debug for OfflineEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfflineEngine").field("languages", &self.inner.languages).finish()
    }
}

impl std::ops::Deref for OfflineEngine {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

/// English → X pairs with an espeak-ng voice for X: (tag, apertium mode file).
pub fn installed_languages() -> Vec<(&'static str, std::path::PathBuf)> {
    mt::installed().into_iter().filter(|(t, _)| tts::has_voice(t)).collect()
}

impl OfflineEngine {
    /// Loads Whisper tiny.en from the model cache and finds the installed pairs; the error is
    /// one line naming what is missing and what to run.
    pub fn load() -> Result<OfflineEngine, String> {
        let dir = asr::models_dir().join(asr::TINY_EN);
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(4);
        let asr = asr::Asr::load(&dir, threads)?;
        let languages: Vec<&'static str> = installed_languages().into_iter().map(|(t, _)| t).collect();
        if languages.is_empty() {
            return Err(format!(
                "offline engine: no English → X apertium pair with an espeak-ng voice in {} (run scripts/deps.sh)",
                mt::modes_dir().display()
            ));
        }
        Ok(OfflineEngine {
            inner: Arc::new(Inner {
                asr: Mutex::new(asr),
                cache: Mutex::new(VecDeque::new()),
                pipelines: Mutex::new(HashMap::new()),
                languages,
                timings: Mutex::new(VecDeque::new()),
            }),
        })
    }
}

impl Inner {
    /// The target tags this engine serves.
    pub fn languages(&self) -> &[&'static str] {
        &self.languages
    }

    /// Forgets the recognised utterances (the bench measures Whisper on every pass).
    pub fn clear_cache(&self) {
        self.cache.lock().expect("cache").clear();
    }

    /// Stage timings of recent utterances, oldest first (drains them).
    pub fn take_timings(&self) -> Vec<Timings> {
        self.timings.lock().expect("timings").drain(..).collect()
    }

    fn record(&self, t: Timings) {
        let mut q = self.timings.lock().expect("timings");
        if q.len() >= 1024 {
            q.pop_front();
        }
        q.push_back(t);
    }

    fn supported(&self, language: &str) -> Option<&'static str> {
        let primary = language.split(['-', '_']).next().unwrap_or("").to_ascii_lowercase();
        self.languages.iter().copied().find(|t| *t == primary)
    }

    /// The recognised English of 24 kHz `samples`, from the cache or from Whisper (blocking);
    /// empty when the VAD hears no speech in them. Returns the ASR seconds spent (0 on a hit).
    pub fn recognize(&self, samples: &[i16]) -> Result<(String, f64), String> {
        if !has_speech(samples) {
            return Ok((String::new(), 0.0));
        }
        let key = hash(samples);
        let lookup = |c: &VecDeque<(u64, String)>| c.iter().find(|(k, _)| *k == key).map(|(_, t)| t.clone());
        if let Some(t) = lookup(&self.cache.lock().expect("cache")) {
            return Ok((t, 0.0));
        }
        // One Whisper run at a time; a second session with the same audio waits, then hits.
        let asr = self.asr.lock().expect("asr");
        if let Some(t) = lookup(&self.cache.lock().expect("cache")) {
            return Ok((t, 0.0));
        }
        let started = Instant::now();
        let text = asr.recognize(&to_16k(samples)?)?;
        let secs = started.elapsed().as_secs_f64();
        drop(asr);
        let mut c = self.cache.lock().expect("cache");
        if c.len() >= CACHE {
            c.pop_front();
        }
        c.push_back((key, text.clone()));
        Ok((text, secs))
    }

    fn pipeline(&self, tag: &str) -> Result<Arc<Mutex<mt::Apertium>>, String> {
        let mut p = self.pipelines.lock().expect("pipelines");
        if let Some(a) = p.get(tag) {
            return Ok(a.clone());
        }
        let mode = mt::mode_file(tag).ok_or_else(|| format!("offline engine: no apertium pair for en→{tag}"))?;
        let a = Arc::new(Mutex::new(mt::Apertium::start(&mode)?));
        p.insert(tag.to_string(), a.clone());
        Ok(a)
    }

    /// Translates English `text` into `tag`; restarts the pair's pipeline once if it died.
    pub fn translate(&self, tag: &str, text: &str) -> Result<String, String> {
        let pipe = self.pipeline(tag)?;
        let first = pipe.lock().expect("apertium").translate(text);
        match first {
            Ok(t) => Ok(t),
            Err(_) => {
                self.pipelines.lock().expect("pipelines").remove(tag);
                let pipe = self.pipeline(tag)?;
                pipe.lock().expect("apertium").translate(text)
            }
        }
    }

    /// The whole cascade for one request, chunks sent to `tx` as they are ready.
    fn run(&self, samples: &[i16], text: Option<&str>, tag: &str, audio: bool, tx: &crossbeam_channel::Sender<Chunk>) {
        let mut t = Timings::default();
        let source = match text {
            Some(s) => s.to_string(),
            None => match self.recognize(samples) {
                Ok((s, secs)) => {
                    t.asr = secs;
                    s
                }
                Err(e) => {
                    tracing::error!("{e}");
                    return;
                }
            },
        };
        if source.trim().is_empty() {
            return;
        }
        let started = Instant::now();
        let translated = match self.translate(tag, &source) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("{e}");
                return;
            }
        };
        t.mt = started.elapsed().as_secs_f64();
        let mut first = true;
        for sentence in sentences(&translated) {
            let piece = if first { sentence.to_string() } else { format!(" {sentence}") };
            first = false;
            if tx.send(Chunk::Text(piece)).is_err() {
                return;
            }
            if !audio {
                continue;
            }
            let started = Instant::now();
            let pcm = match tts::speak(tag, sentence) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!("{e}");
                    return;
                }
            };
            t.tts += started.elapsed().as_secs_f64();
            for c in pcm.chunks(24 * CHUNK_MS) {
                if tx.send(Chunk::Audio(c.to_vec())).is_err() {
                    return;
                }
            }
        }
        self.record(t);
    }
}

impl Engine for OfflineEngine {
    fn respond(&self, request: &EngineRequest<'_>) -> Box<dyn Iterator<Item = Chunk> + Send> {
        let (tx, rx) = unbounded();
        let Some(tag) = self.supported(request.language) else {
            return Box::new(std::iter::empty());
        };
        let me = self.inner.clone();
        let samples = request.samples.to_vec();
        let text = request.text.map(str::to_string);
        let audio = request.audio;
        let spawned = std::thread::Builder::new()
            .name("tolk-offline".into())
            .spawn(move || me.run(&samples, text.as_deref(), tag, audio, &tx));
        if let Err(e) = spawned {
            tracing::error!("offline engine: cannot start a worker thread: {e}");
            return Box::new(std::iter::empty());
        }
        Box::new(Streamed { rx })
    }

    fn transcribe(&self, _utterance: u64, samples: &[i16], _language: &str) -> String {
        let run = || match self.recognize(samples) {
            Ok((t, _)) => t,
            Err(e) => {
                tracing::error!("{e}");
                String::new()
            }
        };
        // Called from a session on the runtime: let the runtime move its other tasks away.
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(run)
            }
            _ => run(),
        }
    }

    fn check_language(&self, language: &str) -> Result<(), String> {
        match self.supported(language) {
            Some(_) => Ok(()),
            None => Err(format!(
                "The offline engine cannot interpret en→{language}: no apertium pair with an espeak-ng voice for it is installed (installed: {}).",
                self.languages.iter().map(|t| format!("en→{t}")).collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

/// Chunks from the worker thread; [`Chunk::Pending`] while it is still working.
struct Streamed {
    rx: Receiver<Chunk>,
}

impl Iterator for Streamed {
    type Item = Chunk;
    fn next(&mut self) -> Option<Chunk> {
        match self.rx.try_recv() {
            Ok(c) => Some(c),
            Err(TryRecvError::Empty) => Some(Chunk::Pending),
            Err(TryRecvError::Disconnected) => None,
        }
    }
}

/// Whether the server VAD's detector (default settings) hears speech in `samples`.
pub fn has_speech(samples: &[i16]) -> bool {
    let mut vad = Vad::new(VadParams { threshold: 0.5, prefix_padding_ms: 0, silence_duration_ms: 500 }, 0);
    let mut events = Vec::new();
    vad.push(samples, &mut events);
    events.iter().any(|e| matches!(e, VadEvent::SpeechStarted { .. }))
}

fn hash(samples: &[i16]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ samples.len() as u64;
    for s in samples {
        for b in s.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// 24 kHz PCM16 → 16 kHz f32.
fn to_16k(samples: &[i16]) -> Result<Vec<f32>, String> {
    let mut f = Vec::with_capacity(samples.len());
    i16_to_f32_slice(samples, &mut f);
    let mut r = StreamResampler::new(24_000, 16_000, 1).map_err(|e| format!("offline engine: resampler: {e}"))?;
    let mut out = Vec::with_capacity(samples.len() * 2 / 3 + 1024);
    r.process(&f, &mut out);
    r.finish(&mut out);
    Ok(out)
}

/// `text` split after `.`, `!`, `?` (and `;`), trimmed, empty pieces dropped.
pub fn sentences(text: &str) -> Vec<&str> {
    text.split_inclusive(['.', '!', '?', ';']).map(str::trim).filter(|s| s.chars().any(char::is_alphanumeric)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_and_skip_empty() {
        assert_eq!(sentences("Hola. ¿Qué tal? Bien; gracias ."), vec!["Hola.", "¿Qué tal?", "Bien;", "gracias ."]);
        assert!(sentences(" . ").is_empty());
    }

    #[test]
    fn silence_and_quiet_noise_are_not_speech() {
        assert!(!has_speech(&vec![0i16; 24_000]));
        let quiet: Vec<i16> = (0..24_000).map(|i| ((i * 7919) % 61) as i16 - 30).collect();
        assert!(!has_speech(&quiet));
        let loud: Vec<i16> = (0..24_000).map(|i| ((i as f64 * 0.05).sin() * 8000.0) as i16).collect();
        assert!(has_speech(&loud));
    }
}
