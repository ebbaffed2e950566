//! The engine behind `tolk serve`: given one committed utterance and the session's settings, it
//! streams text and audio back. The session does the protocol (events, pacing, cancellation);
//! the engine only produces content.
//!
//! This module ships the deterministic [`TestEngine`]. **It proves the plumbing and does not
//! translate.** Its output is derived from its input so that tests can tell which input an
//! output came from and which language it was meant for:
//!
//! - audio: a [`MARKER_MS`] tone at [`marker_hz`]`(target language)`, then the input utterance
//!   itself, sample for sample (so the output lasts as long as the input plus the marker, and
//!   `fingerprint(&out[marker_samples()..]) == fingerprint(&input)`). A Goertzel filter
//!   ([`goertzel`]) finds the marker;
//! - transcript: `[es] utterance 3: 1.52 s, fingerprint 3fa2c1` — target language, the
//!   utterance's number in the session, its duration and [`fingerprint`] of its samples. For a
//!   text item (an operator's announcement, `conversation.item.create` with `input_text`) it
//!   says the text: `[es] utterance 4: 26 chars, fingerprint 1b2c3d: Lunch is served in hall B`,
//!   and the audio is the marker then 50 ms of silence per character (at most 5 s);
//! - input transcription: `[en] utterance 3: 1.52 s, fingerprint 3fa2c1`, with the language of
//!   the session's transcription settings (`und` when none is set).
//!
//! The target language of a realtime session comes from its instructions
//! ([`language_from_instructions`]): a line `Target language: <tag>`, else the phrase "into
//! `<Language name>`" as `tolk.interpreter` writes it ("…from English into Spanish…"), else
//! `und`. Translation sessions use `audio.output.language`.

use std::fmt;

/// A request for one response.
#[derive(Debug, Clone, Copy)]
pub struct EngineRequest<'a> {
    /// The utterance's number in the session (1-based; user items are numbered in order).
    pub utterance: u64,
    /// Its audio, 24 kHz mono PCM16 (empty for a text item).
    pub samples: &'a [i16],
    /// Its text, for a text item.
    pub text: Option<&'a str>,
    /// The target language tag (`und` when unknown).
    pub language: &'a str,
    /// The session's voice.
    pub voice: &'a str,
    /// Whether to produce audio (else text only).
    pub audio: bool,
}

/// A piece of a response, in the order the engine produced it.
#[derive(Debug, Clone, PartialEq)]
pub enum Chunk {
    /// 24 kHz mono PCM16.
    Audio(Vec<i16>),
    /// A fragment of the transcript (or of the text output); append-only.
    Text(String),
    /// Nothing yet: the engine is still working (on another thread); ask again shortly. The
    /// session waits [`PENDING_POLL_MS`] before the next step.
    Pending,
}

/// How long a session waits after [`Chunk::Pending`] before asking again.
pub const PENDING_POLL_MS: u64 = 10;

/// Produces response content. Implementations must be cheap to call from an async task: heavy
/// work belongs in the returned iterator, which the session drives one chunk at a time.
pub trait Engine: Send + Sync + fmt::Debug {
    /// The response to one utterance, as a stream of chunks.
    fn respond(&self, request: &EngineRequest<'_>) -> Box<dyn Iterator<Item = Chunk> + Send>;

    /// The input transcription of one utterance (`language` from the session, `und` if unset).
    fn transcribe(&self, utterance: u64, samples: &[i16], language: &str) -> String;

    /// Whether the engine can produce `language` (a tag, `und` when unknown); the error is the
    /// message of the session's `unsupported_language` error event. The test engine takes all.
    fn check_language(&self, language: &str) -> Result<(), String> {
        let _ = language;
        Ok(())
    }
}

/// Length of the language marker tone at the start of each response's audio.
pub const MARKER_MS: u64 = 200;
/// Audio chunk size of the test engine (the session sends one delta per chunk).
pub const CHUNK_MS: u64 = 150;

/// Samples in the marker (24 kHz).
pub fn marker_samples() -> usize {
    (MARKER_MS * 24) as usize
}

const MARKER_LANGS: &[&str] = &[
    "und", "en", "es", "fr", "de", "it", "pt", "nl", "pl", "ru", "uk", "zh", "ja", "ko", "ar", "tr", "sv", "da", "fi",
    "no", "nb", "cs", "el", "he", "hi",
];

/// The marker frequency for a language tag, by its primary subtag (case-insensitive): the
/// languages of a fixed table (`und`, `en`, `es`, `fr`, `de`, …) get 400, 500, 600 … Hz (100 Hz
/// apart, all distinct); any other language one of 20 frequencies from 2900 Hz up, by hash, so
/// two rare languages may share one.
pub fn marker_hz(language: &str) -> f64 {
    let primary = language.split(['-', '_']).next().unwrap_or("").to_ascii_lowercase();
    let index = match MARKER_LANGS.iter().position(|l| *l == primary) {
        Some(i) => i as u64,
        None => MARKER_LANGS.len() as u64 + fnv1a(primary.as_bytes()) % 20,
    };
    400.0 + 100.0 * index as f64
}

/// The marker tone for `language`: [`MARKER_MS`] of a sine at [`marker_hz`], amplitude 0.25,
/// with 5 ms fades.
pub fn marker_tone(language: &str) -> Vec<i16> {
    let hz = marker_hz(language);
    let n = marker_samples();
    let fade = 120.0;
    (0..n)
        .map(|i| {
            let env = (i as f64 / fade).min((n - i) as f64 / fade).min(1.0);
            let x = (2.0 * std::f64::consts::PI * hz * i as f64 / 24_000.0).sin();
            (0.25 * env * x * 32767.0) as i16
        })
        .collect()
}

/// The Goertzel estimate of the amplitude (0..1 of full scale) of the `hz` component of
/// `samples` at `rate`.
pub fn goertzel(samples: &[i16], rate: u32, hz: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let w = 2.0 * std::f64::consts::PI * hz / rate as f64;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = x as f64 / 32768.0 + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / samples.len() as f64
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A 6-hex-digit fingerprint of `samples` (FNV-1a over their little-endian bytes, top 24 bits).
pub fn fingerprint(samples: &[i16]) -> String {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    format!("{:06x}", fnv1a(&bytes) >> 40)
}

/// The fingerprint of a text input (FNV-1a over its UTF-8, top 24 bits).
pub fn text_fingerprint(text: &str) -> String {
    format!("{:06x}", fnv1a(text.as_bytes()) >> 40)
}

const LANGUAGE_NAMES: &[(&str, &str)] = &[
    ("english", "en"),
    ("spanish", "es"),
    ("french", "fr"),
    ("german", "de"),
    ("italian", "it"),
    ("portuguese", "pt"),
    ("dutch", "nl"),
    ("polish", "pl"),
    ("russian", "ru"),
    ("ukrainian", "uk"),
    ("chinese", "zh"),
    ("japanese", "ja"),
    ("korean", "ko"),
    ("arabic", "ar"),
    ("turkish", "tr"),
    ("swedish", "sv"),
    ("danish", "da"),
    ("finnish", "fi"),
    ("norwegian", "no"),
    ("czech", "cs"),
    ("greek", "el"),
    ("hebrew", "he"),
    ("hindi", "hi"),
    ("catalan", "ca"),
    ("galician", "gl"),
    ("basque", "eu"),
    ("esperanto", "eo"),
];

/// The target language named by session instructions: a line `Target language: <tag>` wins;
/// else the first "into `<Name>`" with a known English language name (`tolk.interpreter`'s
/// "…from English into Spanish…"); else `und`.
pub fn language_from_instructions(instructions: &str) -> String {
    for line in instructions.lines() {
        let line = line.trim();
        if line.len() > 16 && line[..16].eq_ignore_ascii_case("target language:") {
            let tag = line[16..].trim().trim_end_matches('.');
            if tolk_plugin_api::lang::is_tag(tag) {
                return tag.to_string();
            }
        }
    }
    let lower = instructions.to_ascii_lowercase();
    for (i, _) in lower.match_indices(" into ") {
        let rest = &lower[i + 6..];
        if let Some((_, tag)) = LANGUAGE_NAMES.iter().find(|(name, _)| rest.starts_with(name)) {
            return tag.to_string();
        }
    }
    "und".into()
}

/// The deterministic test engine (see the module docs). Stateless; one instance serves every
/// session.
#[derive(Debug, Clone, Copy, Default)]
pub struct TestEngine;

impl TestEngine {
    /// The transcript for a request.
    pub fn transcript(request: &EngineRequest<'_>) -> String {
        match request.text {
            // It says the text (an announcement reaches every language's captions as typed).
            Some(t) => format!(
                "[{}] utterance {}: {} chars, fingerprint {}: {t}",
                request.language,
                request.utterance,
                t.chars().count(),
                text_fingerprint(t)
            ),
            None => describe(request.language, request.utterance, request.samples),
        }
    }
}

fn describe(language: &str, utterance: u64, samples: &[i16]) -> String {
    format!(
        "[{language}] utterance {utterance}: {:.2} s, fingerprint {}",
        samples.len() as f64 / 24_000.0,
        fingerprint(samples)
    )
}

impl Engine for TestEngine {
    fn respond(&self, request: &EngineRequest<'_>) -> Box<dyn Iterator<Item = Chunk> + Send> {
        let transcript = TestEngine::transcript(request);
        let mut words: Vec<String> = transcript.split_inclusive(' ').map(str::to_string).collect();
        if !request.audio {
            return Box::new(words.into_iter().map(Chunk::Text));
        }
        let mut audio = marker_tone(request.language);
        match request.text {
            // A text input speaks as 50 ms of silence per character (at most 5 s).
            Some(t) => audio.resize(audio.len() + (t.chars().count() * 1200).min(120_000), 0),
            None => audio.extend_from_slice(request.samples),
        }
        let per = (CHUNK_MS * 24) as usize;
        let n_audio = audio.len().div_ceil(per).max(1);
        let n_words = words.len();
        let mut chunks = Vec::with_capacity(n_audio + n_words);
        let mut next_word = 0;
        for (i, a) in audio.chunks(per).enumerate() {
            chunks.push(Chunk::Audio(a.to_vec()));
            // Word k goes after audio chunk k * n_audio / n_words: spread over the audio.
            while next_word < n_words && next_word * n_audio / n_words <= i {
                chunks.push(Chunk::Text(std::mem::take(&mut words[next_word])));
                next_word += 1;
            }
        }
        chunks.extend(words.drain(next_word..).map(Chunk::Text));
        Box::new(chunks.into_iter())
    }

    fn transcribe(&self, utterance: u64, samples: &[i16], language: &str) -> String {
        describe(language, utterance, samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(samples: &'a [i16], language: &'a str) -> EngineRequest<'a> {
        EngineRequest { utterance: 3, samples, text: None, language, voice: "alloy", audio: true }
    }

    #[test]
    fn output_is_marker_then_input_and_transcript_names_it() {
        let input: Vec<i16> = (0..36_480).map(|i| ((i * 7919) % 2000) as i16 - 1000).collect();
        let chunks: Vec<Chunk> = TestEngine.respond(&req(&input, "es")).collect();
        let audio: Vec<i16> = chunks
            .iter()
            .filter_map(|c| if let Chunk::Audio(a) = c { Some(a.clone()) } else { None })
            .flatten()
            .collect();
        let text: String =
            chunks.iter().filter_map(|c| if let Chunk::Text(t) = c { Some(t.as_str()) } else { None }).collect();
        assert_eq!(audio.len(), marker_samples() + input.len());
        assert_eq!(&audio[marker_samples()..], &input[..]);
        assert_eq!(text, format!("[es] utterance 3: 1.52 s, fingerprint {}", fingerprint(&input)));
        assert!(chunks.iter().all(|c| !matches!(c, Chunk::Audio(a) if a.len() > 3600)));
        // Text is interleaved with audio, not all at the end.
        assert!(matches!(chunks[1], Chunk::Text(_)), "{:?}", &chunks[..3]);
    }

    #[test]
    fn marker_is_detectable_and_distinct() {
        let es = marker_tone("es");
        let fr = marker_tone("fr-CA");
        assert!(goertzel(&es, 24_000, marker_hz("es")) > 0.2);
        assert!(goertzel(&es, 24_000, marker_hz("fr")) < 0.02);
        assert!(goertzel(&fr, 24_000, marker_hz("fr")) > 0.2);
        let table: Vec<f64> = MARKER_LANGS.iter().map(|l| marker_hz(l)).collect();
        let mut dedup = table.clone();
        dedup.dedup();
        assert_eq!(table, dedup);
        assert_eq!(marker_hz("ES"), marker_hz("es-MX"));
        assert!(marker_hz("xh") >= 2900.0);
    }

    #[test]
    fn language_from_instructions_forms() {
        assert_eq!(language_from_instructions("Be brief.\nTarget language: pt-BR\n"), "pt-BR");
        assert_eq!(language_from_instructions("target language: de."), "de");
        assert_eq!(
            language_from_instructions(
                "You are a simultaneous interpreter. Interpret everything from English into Spanish, continuously"
            ),
            "es"
        );
        assert_eq!(language_from_instructions("Be helpful."), "und");
    }

    #[test]
    fn text_only_and_fingerprints() {
        let r = EngineRequest { text: Some("hola"), audio: false, ..req(&[], "fr") };
        let text: Vec<Chunk> = TestEngine.respond(&r).collect();
        assert!(text.iter().all(|c| matches!(c, Chunk::Text(_))));
        assert_eq!(
            TestEngine::transcript(&r),
            format!("[fr] utterance 3: 4 chars, fingerprint {}: hola", text_fingerprint("hola"))
        );
        assert_eq!(fingerprint(&[1, 2, 3]), fingerprint(&[1, 2, 3]));
        assert_ne!(fingerprint(&[1, 2, 3]), fingerprint(&[1, 2, 4]));
        assert_eq!(fingerprint(&[]).len(), 6);
        assert_eq!(
            TestEngine.transcribe(1, &[0; 12_000], "en"),
            format!("[en] utterance 1: 0.50 s, fingerprint {}", fingerprint(&[0; 12_000]))
        );
    }
}
