//! One Realtime Translation session (`/v1/realtime/translations`): continuous audio in,
//! translated audio and transcripts out, no turns, no conversation.
//!
//! The input stream is cut into utterances by the same energy VAD as realtime sessions (fixed
//! settings: threshold 0.5, 300 ms padding, 500 ms silence); each utterance goes to the engine
//! with the session's `audio.output.language` as the target, and its output streams back as
//! `session.output_audio.delta` {delta, sample_rate 24000, channels 1, format "pcm16",
//! elapsed_ms} and `session.output_transcript.delta`, one utterance after the other. With
//! input transcription on, each utterance also yields `session.input_transcript.delta`.
//! `elapsed_ms` is input time (ms of audio received before the output's place in the input),
//! in 200 ms steps. `session.close` flushes: speech still open is cut at the end of the input,
//! everything pending is sent, then `session.closed`, and the connection loop closes.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::{
    engine::{Chunk, Engine, EngineRequest, PENDING_POLL_MS},
    new_id,
    protocol::{ApiError, AudioFormat, TranslationConfig, check_keys, decode_audio, string},
    realtime_session::{append_bounded, unknown_event},
};
use crate::audio::vad::{Vad, VadEvent, VadParams, ms_to_samples, samples_to_ms, take_span, trim_before};

const PARAMS: VadParams = VadParams { threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 500 };
const STEPS_PER_TICK: usize = 8;

struct Job {
    utterance: u64,
    samples: Vec<i16>,
    /// Input position (ms) where the utterance ended.
    end_ms: u64,
}

struct Running {
    chunks: Box<dyn Iterator<Item = Chunk> + Send>,
    next_at: Instant,
    end_ms: u64,
    /// Output samples sent so far for this utterance.
    produced: u64,
}

/// A translation session's state; same contract as `RealtimeSession`.
pub struct TranslationSession {
    cfg: TranslationConfig,
    engine: Arc<dyn Engine>,
    speed: f64,
    /// Injected delay before each utterance's output (faults).
    pub delay: Duration,
    vad: Vad,
    buffer: Vec<i16>,
    buffer_start: u64,
    total: u64,
    speech_start: Option<u64>,
    utterances: u64,
    jobs: VecDeque<Job>,
    running: Option<Running>,
    closing: bool,
    /// `session.closed` was queued: the loop closes the connection once it is sent.
    pub closed: bool,
    /// Events to send, without `event_id`.
    pub out: VecDeque<Value>,
}

impl TranslationSession {
    /// A new session; `session.created` is queued at once.
    pub fn new(model: String, expires_at: u64, engine: Arc<dyn Engine>, speed: f64) -> TranslationSession {
        let cfg = TranslationConfig {
            id: new_id("sess_"),
            model,
            expires_at,
            language: "en".into(),
            transcription: None,
            noise_reduction: None,
        };
        let mut s = TranslationSession {
            engine,
            speed,
            delay: Duration::ZERO,
            vad: Vad::new(PARAMS, 0),
            buffer: Vec::new(),
            buffer_start: 0,
            total: 0,
            speech_start: None,
            utterances: 0,
            jobs: VecDeque::new(),
            running: None,
            closing: false,
            closed: false,
            out: VecDeque::new(),
            cfg,
        };
        s.out.push_back(json!({"type": "session.created", "session": s.cfg.to_json()}));
        s
    }

    /// Moves `expires_at` (fault injection) and announces it with a `session.updated`.
    pub fn set_expires_at(&mut self, t: u64) {
        self.cfg.expires_at = t;
        self.out.push_back(json!({"type": "session.updated", "session": self.cfg.to_json()}));
    }

    /// When the session next needs a tick.
    pub fn deadline(&self) -> Option<Instant> {
        self.running.as_ref().map(|r| r.next_at)
    }

    /// Handles one client event.
    pub fn on_event(&mut self, ty: &str, ev: &Map<String, Value>, now: Instant) {
        let eid = ev.get("event_id").and_then(Value::as_str).map(str::to_string);
        if let Err(e) = self.dispatch(ty, ev, now) {
            self.out.push_back(e.to_event(eid.as_deref()));
        }
    }

    fn dispatch(&mut self, ty: &str, ev: &Map<String, Value>, now: Instant) -> Result<(), ApiError> {
        let keys = |extra: &[&str]| {
            let mut k = vec!["type", "event_id"];
            k.extend_from_slice(extra);
            check_keys(ev, "", &k)
                .map_err(|e| ApiError::unknown_parameter(e.param.unwrap_or_default().trim_start_matches('.')))
        };
        if self.closing {
            return Err(ApiError::invalid(
                Some("session_closing"),
                "The session is closing; no more events are accepted.",
                None,
            ));
        }
        match ty {
            "session.update" => {
                keys(&["session"])?;
                let s = ev.get("session").ok_or_else(|| ApiError::missing("session"))?;
                self.cfg.apply_update(s)?;
                self.out.push_back(json!({"type": "session.updated", "session": self.cfg.to_json()}));
            }
            "session.input_audio_buffer.append" => {
                keys(&["audio"])?;
                let audio = ev.get("audio").ok_or_else(|| ApiError::missing("audio"))?;
                let samples = STANDARD
                    .decode(string(audio, "audio")?)
                    .ok()
                    .and_then(|b| decode_audio(AudioFormat::Pcm16, &b))
                    .ok_or_else(|| {
                        ApiError::invalid_value(
                            "audio",
                            "Invalid 'audio'. Expected base64-encoded PCM16 24 kHz mono audio.",
                        )
                    })?;
                self.append(&samples, now);
            }
            "session.close" => {
                keys(&[])?;
                if let Some(start) = self.speech_start.take() {
                    self.cut(start, self.total, now);
                }
                self.closing = true;
                self.maybe_close();
            }
            _ => {
                return Err(unknown_event(
                    ty,
                    &["session.update", "session.input_audio_buffer.append", "session.close"],
                ));
            }
        }
        Ok(())
    }

    fn append(&mut self, samples: &[i16], now: Instant) {
        append_bounded(&mut self.buffer, &mut self.buffer_start, samples);
        self.total += samples.len() as u64;
        let mut events = Vec::new();
        self.vad.push(samples, &mut events);
        for e in events {
            match e {
                VadEvent::SpeechStarted { start } => self.speech_start = Some(start),
                VadEvent::SpeechStopped { end } => {
                    if let Some(start) = self.speech_start.take() {
                        self.cut(start, end, now);
                    }
                }
            }
        }
        if self.speech_start.is_none() {
            let keep_from = self.total.saturating_sub(ms_to_samples(PARAMS.prefix_padding_ms as u64 + 100));
            trim_before(&mut self.buffer, &mut self.buffer_start, keep_from);
        }
    }

    /// Queues input `[start, end)` as an utterance.
    fn cut(&mut self, start: u64, end: u64, now: Instant) {
        let samples = take_span(&mut self.buffer, &mut self.buffer_start, start, end);
        if samples.len() < ms_to_samples(100) as usize {
            return;
        }
        self.utterances += 1;
        let end_ms = samples_to_ms(end) / 200 * 200;
        if self.cfg.transcription.is_some() {
            let text = self.engine.transcribe(self.utterances, &samples, "und");
            for piece in text.split_inclusive(' ') {
                self.out
                    .push_back(json!({"type": "session.input_transcript.delta", "delta": piece, "elapsed_ms": end_ms}));
            }
        }
        self.jobs.push_back(Job { utterance: self.utterances, samples, end_ms });
        if self.running.is_none() {
            self.next_job(now);
        }
    }

    fn next_job(&mut self, now: Instant) {
        let Some(job) = self.jobs.pop_front() else { return };
        if let Err(message) = self.engine.check_language(&self.cfg.language) {
            let e = ApiError::invalid(Some("unsupported_language"), message, Some("session.audio.output.language"));
            self.out.push_back(e.to_event(None));
            self.jobs.clear();
            return;
        }
        let chunks = self.engine.respond(&EngineRequest {
            utterance: job.utterance,
            samples: &job.samples,
            text: None,
            language: &self.cfg.language,
            voice: "alloy",
            audio: true,
        });
        self.running = Some(Running { chunks, next_at: now + self.delay, end_ms: job.end_ms, produced: 0 });
    }

    fn maybe_close(&mut self) {
        if self.closing && !self.closed && self.running.is_none() && self.jobs.is_empty() {
            self.closed = true;
            self.out.push_back(json!({"type": "session.closed"}));
        }
    }

    /// Streams the running utterance's output.
    pub fn on_tick(&mut self, now: Instant) {
        for _ in 0..STEPS_PER_TICK {
            let Some(r) = self.running.as_mut() else { break };
            if r.next_at > now {
                break;
            }
            let elapsed_ms = (r.end_ms + samples_to_ms(r.produced)) / 200 * 200;
            match r.chunks.next() {
                Some(Chunk::Audio(samples)) => {
                    if self.speed.is_finite() {
                        let dur = Duration::from_secs_f64(samples.len() as f64 / 24_000.0 / self.speed);
                        r.next_at = r.next_at.max(now.checked_sub(Duration::from_millis(200)).unwrap_or(now)) + dur;
                    }
                    r.produced += samples.len() as u64;
                    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
                    self.out.push_back(json!({"type": "session.output_audio.delta", "delta": STANDARD.encode(bytes),
                        "sample_rate": 24000, "channels": 1, "format": "pcm16", "elapsed_ms": elapsed_ms}));
                }
                Some(Chunk::Text(t)) => {
                    self.out.push_back(
                        json!({"type": "session.output_transcript.delta", "delta": t, "elapsed_ms": elapsed_ms}),
                    );
                }
                Some(Chunk::Pending) => {
                    r.next_at = now + Duration::from_millis(PENDING_POLL_MS);
                    break;
                }
                None => {
                    self.running = None;
                    self.next_job(now);
                }
            }
        }
        self.maybe_close();
    }
}
