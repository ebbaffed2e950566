//! One realtime session (GA or beta dialect): the per-connection state machine.
//!
//! It owns the session config, the conversation, the input buffer with its VAD, and the
//! running response. It does no I/O: the connection loop in `mod.rs` feeds it client events
//! ([`RealtimeSession::on_event`]) and clock ticks ([`RealtimeSession::on_tick`]) and sends
//! whatever lands in [`RealtimeSession::out`] (events without `event_id`; the loop stamps them).
//!
//! A response is a little state machine of its own (`Active`): it starts after the fault
//! delay, sends the opening events, then pulls one engine chunk per step, paced so that audio
//! leaves at `speed` times real time, and ends with the done events. Client events are handled
//! between steps, so a cancel or a barge-in lands mid-response, as on the real service.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::{
    engine::{Chunk, Engine, EngineRequest, language_from_instructions},
    new_id,
    protocol::{ApiError, AudioFormat, Dialect, SessionConfig, check_keys, decode_audio, encode_audio, obj, string},
    usage::{AUDIO_IN_TOKENS_PER_S, AUDIO_OUT_TOKENS_PER_S, Tokens, Usage, audio_tokens, text_tokens},
};
use crate::audio::vad::{Vad, VadEvent, VadParams, ms_to_samples, samples_to_ms, take_span, trim_before};

/// Responses pull at most this many engine chunks per tick, so a fast engine still lets
/// client events in between.
const STEPS_PER_TICK: usize = 8;

/// A part of a message item.
#[derive(Debug, Clone)]
enum Part {
    InputAudio { samples: Vec<i16>, transcript: Option<String> },
    InputText(String),
    OutputAudio { samples: Vec<i16>, transcript: String },
    OutputText(String),
}

#[derive(Debug, Clone)]
enum ItemKind {
    Message { role: String, parts: Vec<Part> },
    FunctionCall { call_id: String, name: String, arguments: String },
    FunctionCallOutput { call_id: String, output: String },
}

/// A conversation item.
#[derive(Debug, Clone)]
struct Item {
    id: String,
    kind: ItemKind,
    /// `completed`, `in_progress` or `incomplete`.
    status: &'static str,
    /// The utterance number of a user message (1-based, in order of creation).
    utterance: Option<u64>,
}

impl Item {
    /// What re-reading this item costs as input.
    fn tokens(&self) -> Tokens {
        match &self.kind {
            ItemKind::Message { parts, .. } => parts
                .iter()
                .map(|p| match p {
                    Part::InputAudio { samples, .. } => {
                        Tokens { text: 0, audio: audio_tokens(samples.len(), AUDIO_IN_TOKENS_PER_S) }
                    }
                    Part::InputText(t) | Part::OutputText(t) => Tokens { text: text_tokens(t), audio: 0 },
                    Part::OutputAudio { samples, transcript } => Tokens {
                        text: text_tokens(transcript),
                        audio: audio_tokens(samples.len(), AUDIO_OUT_TOKENS_PER_S),
                    },
                })
                .sum(),
            ItemKind::FunctionCall { name, arguments, .. } => {
                Tokens { text: text_tokens(name) + text_tokens(arguments), audio: 0 }
            }
            ItemKind::FunctionCallOutput { output, .. } => Tokens { text: text_tokens(output), audio: 0 },
        }
    }

    /// The item object. `audio` includes audio bytes (only `conversation.item.retrieved`).
    fn to_json(&self, dialect: Dialect, audio: Option<(AudioFormat, AudioFormat)>) -> Value {
        let mut v = json!({"id": self.id, "object": "realtime.item", "status": self.status});
        match &self.kind {
            ItemKind::Message { role, parts } => {
                v["type"] = json!("message");
                v["role"] = json!(role);
                let content: Vec<Value> = parts
                    .iter()
                    .map(|p| match p {
                        Part::InputAudio { samples, transcript } => {
                            let mut c = json!({"type": "input_audio", "transcript": transcript});
                            if let Some((fmt, _)) = audio {
                                c["audio"] = json!(STANDARD.encode(encode_audio(fmt, samples)));
                            }
                            c
                        }
                        Part::InputText(t) => json!({"type": "input_text", "text": t}),
                        Part::OutputAudio { samples, transcript } => {
                            let ty = if dialect == Dialect::Ga { "output_audio" } else { "audio" };
                            let mut c = json!({"type": ty, "transcript": transcript});
                            if let Some((_, fmt)) = audio {
                                c["audio"] = json!(STANDARD.encode(encode_audio(fmt, samples)));
                            }
                            c
                        }
                        Part::OutputText(t) => {
                            json!({"type": if dialect == Dialect::Ga { "output_text" } else { "text" }, "text": t})
                        }
                    })
                    .collect();
                v["content"] = json!(content);
            }
            ItemKind::FunctionCall { call_id, name, arguments } => {
                v["type"] = json!("function_call");
                v["call_id"] = json!(call_id);
                v["name"] = json!(name);
                v["arguments"] = json!(arguments);
            }
            ItemKind::FunctionCallOutput { call_id, output } => {
                v["type"] = json!("function_call_output");
                v["call_id"] = json!(call_id);
                v["output"] = json!(output);
            }
        }
        v
    }
}

/// Per-response settings from `response.create` (or the session, for automatic responses).
#[derive(Debug, Clone, Default)]
struct Overrides {
    modalities: Option<Vec<String>>,
    instructions: Option<String>,
    voice: Option<Value>,
    output_format: Option<AudioFormat>,
    /// `conversation: "none"`: an out-of-band response, not added to the conversation.
    out_of_band: bool,
    metadata: Value,
    /// `input`: the context of this response instead of the conversation.
    input: Option<Vec<Item>>,
}

/// A response waiting to start.
#[derive(Debug)]
struct Pending {
    overrides: Overrides,
    /// The user item this response answers (VAD turns); else the latest user item.
    answers: Option<String>,
}

/// The running response.
struct Active {
    id: String,
    item_id: String,
    /// When to take the next step (the first step sends the opening events).
    next_at: Instant,
    started: bool,
    out_of_band: bool,
    audio_out: bool,
    output_format: AudioFormat,
    voice: Value,
    modalities: Vec<String>,
    metadata: Value,
    chunks: Box<dyn Iterator<Item = Chunk> + Send>,
    audio: Vec<i16>,
    text: String,
    input_usage: Tokens,
    previous_item_id: Option<String>,
}

/// A realtime session's state; see the module docs.
pub struct RealtimeSession {
    dialect: Dialect,
    cfg: SessionConfig,
    conversation_id: String,
    engine: Arc<dyn Engine>,
    /// Real-time factor of response audio; infinite = unpaced.
    speed: f64,
    /// Injected delay before each response (faults).
    pub delay: Duration,
    items: Vec<Item>,
    /// Uncommitted input audio (24 kHz) and the absolute position of its first sample.
    buffer: Vec<i16>,
    buffer_start: u64,
    /// Samples received since the session started.
    total: u64,
    vad: Option<Vad>,
    /// Speech in progress: its start and the id its item will get.
    speech: Option<(u64, String)>,
    utterances: u64,
    active: Option<Active>,
    queued: VecDeque<Pending>,
    audio_was_output: bool,
    tokens_remaining: u64,
    /// Events to send, oldest first, without `event_id`.
    pub out: VecDeque<Value>,
}

const RATE_LIMIT_TOKENS: u64 = 40_000;
/// The longest uncommitted input kept (older audio is dropped): 10 minutes.
pub const MAX_BUFFER_MS: u64 = 10 * 60 * 1000;

impl RealtimeSession {
    /// A new session; `session.created` and `conversation.created` are queued at once.
    pub fn new(
        dialect: Dialect,
        model: String,
        expires_at: u64,
        engine: Arc<dyn Engine>,
        speed: f64,
    ) -> RealtimeSession {
        let cfg = SessionConfig::new(dialect, new_id("sess_"), model, expires_at);
        let mut s = RealtimeSession {
            dialect,
            conversation_id: new_id("conv_"),
            engine,
            speed,
            delay: Duration::ZERO,
            items: Vec::new(),
            buffer: Vec::new(),
            buffer_start: 0,
            total: 0,
            vad: None,
            speech: None,
            utterances: 0,
            active: None,
            queued: VecDeque::new(),
            audio_was_output: false,
            tokens_remaining: RATE_LIMIT_TOKENS,
            out: VecDeque::new(),
            cfg,
        };
        s.rebuild_vad();
        s.emit(json!({"type": "session.created", "session": s.cfg.to_json(dialect)}));
        s.emit(json!({"type": "conversation.created", "conversation": {"id": s.conversation_id, "object": "realtime.conversation"}}));
        s
    }

    /// Moves `expires_at` (fault injection) and announces it with a `session.updated`.
    pub fn set_expires_at(&mut self, t: u64) {
        self.cfg.expires_at = t;
        let s = self.cfg.to_json(self.dialect);
        self.emit(json!({"type": "session.updated", "session": s}));
    }

    fn emit(&mut self, v: Value) {
        self.out.push_back(v);
    }

    fn error(&mut self, e: ApiError, event_id: Option<&str>) {
        self.emit(e.to_event(event_id));
    }

    fn rebuild_vad(&mut self) {
        self.vad = self.cfg.turn_detection.as_ref().map(|t| {
            Vad::new(
                VadParams {
                    threshold: t.threshold,
                    prefix_padding_ms: t.prefix_padding_ms,
                    silence_duration_ms: t.effective_silence_ms(),
                },
                self.total,
            )
        });
        self.speech = None;
    }

    /// When the session next needs [`RealtimeSession::on_tick`].
    pub fn deadline(&self) -> Option<Instant> {
        self.active.as_ref().map(|a| a.next_at)
    }

    /// Handles one client event (a JSON object with a string `type`).
    pub fn on_event(&mut self, ty: &str, ev: &Map<String, Value>, now: Instant) {
        let event_id = ev.get("event_id").and_then(Value::as_str).map(str::to_string);
        let eid = event_id.as_deref();
        if let Err(e) = self.dispatch(ty, ev, now) {
            self.error(e, eid);
        }
    }

    fn dispatch(&mut self, ty: &str, ev: &Map<String, Value>, now: Instant) -> Result<(), ApiError> {
        let keys = |extra: &[&str]| {
            let mut k = vec!["type", "event_id"];
            k.extend_from_slice(extra);
            check_keys(ev, "", &k).map_err(|e| {
                let p = e.param.unwrap_or_default().trim_start_matches('.').to_string();
                ApiError::unknown_parameter(&p)
            })
        };
        match ty {
            "session.update" => {
                keys(&["session"])?;
                let session = ev.get("session").ok_or_else(|| ApiError::missing("session"))?;
                let before = self.cfg.turn_detection.clone();
                self.cfg.apply_update(self.dialect, session, self.audio_was_output)?;
                if self.cfg.turn_detection != before {
                    self.rebuild_vad();
                }
                let s = self.cfg.to_json(self.dialect);
                self.emit(json!({"type": "session.updated", "session": s}));
            }
            "input_audio_buffer.append" => {
                keys(&["audio"])?;
                let audio = ev.get("audio").ok_or_else(|| ApiError::missing("audio"))?;
                let b64 = string(audio, "audio")?;
                let samples = STANDARD
                    .decode(b64)
                    .ok()
                    .and_then(|bytes| decode_audio(self.cfg.input_format, &bytes))
                    .ok_or_else(|| {
                    ApiError::invalid_value("audio", "Invalid 'audio'. Expected base64-encoded audio data.")
                })?;
                self.append(&samples, now);
            }
            "input_audio_buffer.commit" => {
                keys(&[])?;
                if self.buffer.len() < ms_to_samples(100) as usize {
                    return Err(ApiError::invalid(
                        Some("input_audio_buffer_commit_empty"),
                        format!(
                            "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but buffer only has {:.2}ms of audio.",
                            self.buffer.len() as f64 / 24.0
                        ),
                        None,
                    ));
                }
                let id = self.speech.take().map(|s| s.1).unwrap_or_else(|| new_id("item_"));
                let end = self.total;
                self.commit(self.buffer_start, end, id);
                if let Some(v) = self.vad.as_mut() {
                    v.reset(end);
                }
            }
            "input_audio_buffer.clear" => {
                keys(&[])?;
                self.buffer.clear();
                self.buffer_start = self.total;
                self.speech = None;
                if let Some(v) = self.vad.as_mut() {
                    v.reset(self.total);
                }
                self.emit(json!({"type": "input_audio_buffer.cleared"}));
            }
            "conversation.item.create" => {
                keys(&["previous_item_id", "item"])?;
                let item = ev.get("item").ok_or_else(|| ApiError::missing("item"))?;
                let mut item = self.parse_item(item, "item")?;
                if self.items.iter().any(|i| i.id == item.id) {
                    return Err(ApiError::invalid_value(
                        "item.id",
                        format!("Item with item_id '{}' already exists in the conversation.", item.id),
                    ));
                }
                let at = match ev.get("previous_item_id") {
                    None | Some(Value::Null) => self.items.len(),
                    Some(p) => {
                        let p = string(p, "previous_item_id")?;
                        if p == "root" { 0 } else { self.index_of(p, "previous_item_id")? + 1 }
                    }
                };
                if matches!(&item.kind, ItemKind::Message { role, .. } if role == "user") {
                    self.utterances += 1;
                    item.utterance = Some(self.utterances);
                }
                let previous = at.checked_sub(1).map(|i| self.items[i].id.clone());
                let v = item.to_json(self.dialect, None);
                self.items.insert(at, item);
                self.item_events(previous, v);
            }
            "conversation.item.delete" => {
                keys(&["item_id"])?;
                let id = self.item_id_param(ev)?;
                let i = self.index_of(&id, "item_id")?;
                if self.active.as_ref().is_some_and(|a| a.item_id == id) {
                    return Err(ApiError::invalid_value(
                        "item_id",
                        format!("Item '{id}' belongs to the active response; cancel it first."),
                    ));
                }
                self.items.remove(i);
                self.emit(json!({"type": "conversation.item.deleted", "item_id": id}));
            }
            "conversation.item.retrieve" => {
                keys(&["item_id"])?;
                let id = self.item_id_param(ev)?;
                let i = self.index_of(&id, "item_id")?;
                let v = self.items[i].to_json(self.dialect, Some((self.cfg.input_format, self.cfg.output_format)));
                self.emit(json!({"type": "conversation.item.retrieved", "item": v}));
            }
            "conversation.item.truncate" => {
                keys(&["item_id", "content_index", "audio_end_ms"])?;
                self.truncate(ev)?;
            }
            "response.create" => {
                keys(&["response"])?;
                let overrides = match ev.get("response") {
                    None | Some(Value::Null) => Overrides::default(),
                    Some(r) => self.parse_overrides(r)?,
                };
                if let Some(a) = &self.active {
                    return Err(ApiError::invalid(
                        Some("conversation_already_has_active_response"),
                        format!(
                            "Conversation already has an active response in progress: {}. Wait until the response is finished before creating a new one.",
                            a.id
                        ),
                        None,
                    ));
                }
                self.start_response(Pending { overrides, answers: None }, now);
            }
            "response.cancel" => {
                keys(&["response_id"])?;
                let wanted = match ev.get("response_id") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(string(v, "response_id")?.to_string()),
                };
                match &self.active {
                    Some(a) if wanted.as_ref().is_none_or(|w| *w == a.id) => {
                        self.finish("cancelled", Some("client_cancelled"), now)
                    }
                    _ => {
                        return Err(ApiError::invalid(
                            Some("response_cancel_not_active"),
                            "Cancellation failed: no active response found",
                            None,
                        ));
                    }
                }
            }
            "output_audio_buffer.clear" => {
                keys(&[])?;
                return Err(ApiError::invalid(
                    Some("invalid_value"),
                    "output_audio_buffer.clear is only supported for WebRTC and SIP sessions.",
                    Some("type"),
                ));
            }
            _ => return Err(unknown_event(ty, CLIENT_EVENTS)),
        }
        Ok(())
    }

    fn item_id_param(&self, ev: &Map<String, Value>) -> Result<String, ApiError> {
        let v = ev.get("item_id").ok_or_else(|| ApiError::missing("item_id"))?;
        Ok(string(v, "item_id")?.to_string())
    }

    fn index_of(&self, id: &str, param: &str) -> Result<usize, ApiError> {
        self.items.iter().position(|i| i.id == id).ok_or_else(|| {
            ApiError::invalid_value(param, format!("Item with item_id '{id}' not found in the conversation."))
        })
    }

    /// `conversation.item.added` + `.done` (GA) or `.created` (beta).
    fn item_events(&mut self, previous: Option<String>, item: Value) {
        if self.dialect == Dialect::Ga {
            self.emit(json!({"type": "conversation.item.added", "previous_item_id": previous, "item": item}));
            self.emit(json!({"type": "conversation.item.done", "previous_item_id": previous, "item": item}));
        } else {
            self.emit(json!({"type": "conversation.item.created", "previous_item_id": previous, "item": item}));
        }
    }

    fn append(&mut self, samples: &[i16], now: Instant) {
        self.buffer.extend_from_slice(samples);
        // Bound memory: an uncommitted buffer keeps its newest MAX_BUFFER_MS only.
        let max = ms_to_samples(MAX_BUFFER_MS) as usize;
        if self.buffer.len() > max {
            let drop = self.buffer.len() - max;
            self.buffer.drain(..drop);
            self.buffer_start += drop as u64;
        }
        self.total += samples.len() as u64;
        let Some(vad) = self.vad.as_mut() else { return };
        let mut events = Vec::new();
        vad.push(samples, &mut events);
        for e in events {
            match e {
                VadEvent::SpeechStarted { start } => {
                    let id = new_id("item_");
                    self.emit(json!({"type": "input_audio_buffer.speech_started", "audio_start_ms": samples_to_ms(start), "item_id": id}));
                    self.speech = Some((start, id));
                    let interrupt = self.cfg.turn_detection.as_ref().is_some_and(|t| t.interrupt_response);
                    if interrupt && self.active.is_some() {
                        self.finish("cancelled", Some("turn_detected"), now);
                    }
                }
                VadEvent::SpeechStopped { end } => {
                    let Some((start, id)) = self.speech.take() else { continue };
                    self.emit(json!({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": samples_to_ms(end), "item_id": id}));
                    self.commit(start, end, id.clone());
                    if self.cfg.turn_detection.as_ref().is_some_and(|t| t.create_response) {
                        let p = Pending { overrides: Overrides::default(), answers: Some(id) };
                        if self.active.is_some() {
                            self.queued.push_back(p);
                        } else {
                            self.start_response(p, now);
                        }
                    }
                }
            }
        }
        // In silence, keep only what a later speech start could reach back to.
        if self.speech.is_none() {
            let pad = self.cfg.turn_detection.as_ref().map_or(0, |t| t.prefix_padding_ms as u64);
            let keep_from = self.total.saturating_sub(ms_to_samples(pad + 100));
            trim_before(&mut self.buffer, &mut self.buffer_start, keep_from);
        }
    }

    /// Turns buffer samples `[start, end)` into a user item `id`; drops the buffer up to `end`.
    fn commit(&mut self, start: u64, end: u64, id: String) {
        let samples = take_span(&mut self.buffer, &mut self.buffer_start, start, end);
        self.utterances += 1;
        let utterance = self.utterances;
        let transcript_language =
            self.cfg.transcription.as_ref().map(|t| t.language.clone().unwrap_or_else(|| "und".into()));
        let item = Item {
            id: id.clone(),
            kind: ItemKind::Message {
                role: "user".into(),
                parts: vec![Part::InputAudio { samples: samples.clone(), transcript: None }],
            },
            status: "completed",
            utterance: Some(utterance),
        };
        let previous = self.items.last().map(|i| i.id.clone());
        self.emit(json!({"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": id}));
        let v = item.to_json(self.dialect, None);
        self.items.push(item);
        self.item_events(previous, v);
        if let Some(lang) = transcript_language {
            let text = self.engine.transcribe(utterance, &samples, &lang);
            for piece in text.split_inclusive(' ') {
                self.emit(json!({"type": "conversation.item.input_audio_transcription.delta", "item_id": id, "content_index": 0, "delta": piece}));
            }
            let audio = audio_tokens(samples.len(), AUDIO_IN_TOKENS_PER_S);
            let out = text_tokens(&text);
            self.emit(json!({
                "type": "conversation.item.input_audio_transcription.completed", "item_id": id, "content_index": 0,
                "transcript": text,
                "usage": {"type": "tokens", "input_tokens": audio, "output_tokens": out, "total_tokens": audio + out,
                          "input_token_details": {"audio_tokens": audio, "text_tokens": 0}},
            }));
            if let Some(Item { kind: ItemKind::Message { parts, .. }, .. }) = self.items.iter_mut().find(|i| i.id == id)
                && let Some(Part::InputAudio { transcript, .. }) = parts.first_mut()
            {
                *transcript = Some(text);
            }
        }
    }

    fn truncate(&mut self, ev: &Map<String, Value>) -> Result<(), ApiError> {
        let id = self.item_id_param(ev)?;
        let content_index = match ev.get("content_index") {
            None => return Err(ApiError::missing("content_index")),
            Some(v) => v.as_u64().ok_or_else(|| ApiError::invalid_type("content_index", "an integer", v))? as usize,
        };
        let audio_end_ms = match ev.get("audio_end_ms") {
            None => return Err(ApiError::missing("audio_end_ms")),
            Some(v) => v.as_u64().ok_or_else(|| ApiError::invalid_type("audio_end_ms", "a non-negative integer", v))?,
        };
        let i = self.index_of(&id, "item_id")?;
        if self.active.as_ref().is_some_and(|a| a.item_id == id) {
            return Err(ApiError::invalid_value(
                "item_id",
                format!("Item '{id}' belongs to the active response; cancel it first."),
            ));
        }
        let ItemKind::Message { role, parts } = &mut self.items[i].kind else {
            return Err(ApiError::invalid_value("item_id", "Only assistant messages with audio can be truncated."));
        };
        if role != "assistant" {
            return Err(ApiError::invalid_value("item_id", "Only assistant messages with audio can be truncated."));
        }
        let Some(Part::OutputAudio { samples, transcript }) = parts.get_mut(content_index) else {
            return Err(ApiError::invalid_value(
                "content_index",
                format!("Content index {content_index} has no audio."),
            ));
        };
        let have_ms = samples_to_ms(samples.len() as u64);
        if audio_end_ms > have_ms {
            return Err(ApiError::invalid(
                None,
                format!("Audio content of {have_ms}ms is already shorter than {audio_end_ms}ms"),
                None,
            ));
        }
        let keep = ms_to_samples(audio_end_ms) as usize;
        // The unheard part of the transcript goes too (proportionally to the audio kept).
        let chars = transcript.chars().count();
        let keep_chars = if samples.is_empty() { 0 } else { chars * keep / samples.len() };
        *transcript = transcript.chars().take(keep_chars).collect();
        samples.truncate(keep);
        self.emit(json!({"type": "conversation.item.truncated", "item_id": id, "content_index": content_index, "audio_end_ms": audio_end_ms}));
        Ok(())
    }

    fn parse_item(&self, v: &Value, path: &str) -> Result<Item, ApiError> {
        let o = obj(v, path)?;
        let ty = o.get("type").ok_or_else(|| ApiError::missing(&format!("{path}.type")))?;
        let ty = string(ty, &format!("{path}.type"))?;
        let id = match o.get("id") {
            None | Some(Value::Null) => new_id("item_"),
            Some(x) => string(x, &format!("{path}.id"))?.to_string(),
        };
        let field = |k: &str| -> Result<String, ApiError> {
            let x = o.get(k).ok_or_else(|| ApiError::missing(&format!("{path}.{k}")))?;
            Ok(string(x, &format!("{path}.{k}"))?.to_string())
        };
        let kind = match ty {
            "message" => {
                check_keys(o, path, &["id", "type", "object", "status", "role", "content"])?;
                let role = field("role")?;
                if !["user", "assistant", "system"].contains(&role.as_str()) {
                    return Err(ApiError::invalid_value(
                        &format!("{path}.role"),
                        format!("Invalid value: '{role}'. Supported values are: 'user', 'assistant', 'system'."),
                    ));
                }
                let content = o.get("content").ok_or_else(|| ApiError::missing(&format!("{path}.content")))?;
                let Value::Array(content) = content else {
                    return Err(ApiError::invalid_type(&format!("{path}.content"), "an array", content));
                };
                let mut parts = Vec::new();
                for (i, c) in content.iter().enumerate() {
                    let cp = format!("{path}.content[{i}]");
                    let co = obj(c, &cp)?;
                    let ct = co.get("type").ok_or_else(|| ApiError::missing(&format!("{cp}.type")))?;
                    let ct = string(ct, &format!("{cp}.type"))?;
                    let text = |k: &str| -> Result<String, ApiError> {
                        let x = co.get(k).ok_or_else(|| ApiError::missing(&format!("{cp}.{k}")))?;
                        Ok(string(x, &format!("{cp}.{k}"))?.to_string())
                    };
                    let allowed: &[&str] = match role.as_str() {
                        "user" => &["input_text", "input_audio", "input_image"],
                        "system" => &["input_text"],
                        _ => {
                            if self.dialect == Dialect::Ga {
                                &["output_text"]
                            } else {
                                &["text"]
                            }
                        }
                    };
                    if !allowed.contains(&ct) {
                        let list: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
                        return Err(ApiError::invalid_value(
                            &format!("{cp}.type"),
                            format!(
                                "Invalid value: '{ct}'. Supported values for a {role} message are: {}.",
                                list.join(", ")
                            ),
                        ));
                    }
                    parts.push(match ct {
                        "input_text" => Part::InputText(text("text")?),
                        "input_image" => Part::InputText(String::new()),
                        "input_audio" => {
                            let b64 = text("audio")?;
                            let samples = STANDARD
                                .decode(&b64)
                                .ok()
                                .and_then(|b| decode_audio(self.cfg.input_format, &b))
                                .ok_or_else(|| {
                                    ApiError::invalid_value(
                                        &format!("{cp}.audio"),
                                        "Invalid 'audio'. Expected base64-encoded audio data.",
                                    )
                                })?;
                            let transcript = co.get("transcript").and_then(Value::as_str).map(str::to_string);
                            Part::InputAudio { samples, transcript }
                        }
                        _ => Part::OutputText(text("text")?),
                    });
                }
                ItemKind::Message { role, parts }
            }
            "function_call" => {
                check_keys(o, path, &["id", "type", "object", "status", "call_id", "name", "arguments"])?;
                ItemKind::FunctionCall {
                    call_id: field("call_id")?,
                    name: field("name")?,
                    arguments: field("arguments")?,
                }
            }
            "function_call_output" => {
                check_keys(o, path, &["id", "type", "object", "status", "call_id", "output"])?;
                ItemKind::FunctionCallOutput { call_id: field("call_id")?, output: field("output")? }
            }
            _ => {
                return Err(ApiError::invalid_value(
                    &format!("{path}.type"),
                    format!(
                        "Invalid value: '{ty}'. Supported values are: 'message', 'function_call', 'function_call_output'."
                    ),
                ));
            }
        };
        Ok(Item { id, kind, status: "completed", utterance: None })
    }

    fn parse_overrides(&self, r: &Value) -> Result<Overrides, ApiError> {
        let o = obj(r, "response")?;
        let mut ov = Overrides::default();
        let (mod_key, keys): (&str, &[&str]) = match self.dialect {
            Dialect::Ga => (
                "output_modalities",
                &[
                    "output_modalities",
                    "instructions",
                    "audio",
                    "tools",
                    "tool_choice",
                    "max_output_tokens",
                    "conversation",
                    "metadata",
                    "prompt",
                    "input",
                    "parallel_tool_calls",
                    "reasoning",
                ],
            ),
            Dialect::Beta => (
                "modalities",
                &[
                    "modalities",
                    "instructions",
                    "voice",
                    "output_audio_format",
                    "tools",
                    "tool_choice",
                    "temperature",
                    "max_response_output_tokens",
                    "max_output_tokens",
                    "conversation",
                    "metadata",
                    "input",
                ],
            ),
        };
        check_keys(o, "response", keys)?;
        // Validate through a scratch session config, which knows every field's rules.
        let mut scratch = self.cfg.clone();
        let mut update = Map::new();
        if self.dialect == Dialect::Ga {
            update.insert("type".into(), json!("realtime"));
        }
        for k in [mod_key, "instructions", "voice", "output_audio_format", "tools", "tool_choice"] {
            if let Some(v) = o.get(k) {
                update.insert(k.into(), v.clone());
            }
        }
        if let Some(Value::Object(audio)) = o.get("audio") {
            check_keys(audio, "response.audio", &["output"])?;
            if let Some(out) = audio.get("output") {
                let out = obj(out, "response.audio.output")?;
                check_keys(out, "response.audio.output", &["format", "voice"])?;
                update.insert("audio".into(), json!({"output": out}));
            }
        } else if let Some(a) = o.get("audio") {
            return Err(ApiError::invalid_type("response.audio", "an object", a));
        }
        scratch.apply_update(self.dialect, &Value::Object(update), self.audio_was_output).map_err(|mut e| {
            if let Some(p) = e.param.as_mut() {
                *p = p.replacen("session.", "response.", 1);
            }
            e.message = e.message.replace("'session.", "'response.");
            e
        })?;
        if o.contains_key(mod_key) {
            ov.modalities = Some(scratch.modalities.clone());
        }
        if o.contains_key("instructions") {
            ov.instructions = Some(scratch.instructions.clone());
        }
        if scratch.voice != self.cfg.voice {
            ov.voice = Some(scratch.voice.clone());
        }
        if scratch.output_format != self.cfg.output_format {
            ov.output_format = Some(scratch.output_format);
        }
        match o.get("conversation") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == "auto" => {}
            Some(Value::String(s)) if s == "none" => ov.out_of_band = true,
            Some(v) => {
                return Err(ApiError::invalid_value(
                    "response.conversation",
                    format!("Invalid value: {v}. Supported values are: 'auto', 'none'."),
                ));
            }
        }
        ov.metadata = o.get("metadata").cloned().unwrap_or(Value::Null);
        if let Some(input) = o.get("input") {
            let Value::Array(list) = input else {
                return Err(ApiError::invalid_type("response.input", "an array", input));
            };
            let mut items = Vec::new();
            for (i, x) in list.iter().enumerate() {
                let path = format!("response.input[{i}]");
                if x.get("type").and_then(Value::as_str) == Some("item_reference") {
                    let id =
                        x.get("id").and_then(Value::as_str).ok_or_else(|| ApiError::missing(&format!("{path}.id")))?;
                    let j = self.index_of(id, &format!("{path}.id"))?;
                    items.push(self.items[j].clone());
                } else {
                    items.push(self.parse_item(x, &path)?);
                }
            }
            ov.input = Some(items);
        }
        Ok(ov)
    }

    fn start_response(&mut self, p: Pending, now: Instant) {
        let ov = p.overrides;
        let instructions = ov.instructions.clone().unwrap_or_else(|| self.cfg.instructions.clone());
        let modalities = ov.modalities.clone().unwrap_or_else(|| self.cfg.modalities.clone());
        let audio_out = modalities.iter().any(|m| m == "audio");
        let voice = ov.voice.clone().unwrap_or_else(|| self.cfg.voice.clone());
        let context: &[Item] = ov.input.as_deref().unwrap_or(&self.items);
        let input_usage =
            Tokens { text: text_tokens(&instructions), audio: 0 } + context.iter().map(Item::tokens).sum();
        // The utterance answered: the VAD turn's item, else the latest user message.
        let is_user = |i: &&Item| matches!(&i.kind, ItemKind::Message { role, .. } if role == "user");
        let source = p
            .answers
            .as_ref()
            .and_then(|id| context.iter().find(|i| &i.id == id))
            .or_else(|| context.iter().rev().find(is_user));
        let (utterance, samples, text) = match source.map(|i| (&i.kind, i.utterance)) {
            Some((ItemKind::Message { parts, .. }, n)) => {
                let samples: Vec<i16> = parts
                    .iter()
                    .flat_map(|p| match p {
                        Part::InputAudio { samples, .. } => samples.as_slice(),
                        _ => &[],
                    })
                    .copied()
                    .collect();
                let text: String = parts
                    .iter()
                    .filter_map(|p| if let Part::InputText(t) = p { Some(t.as_str()) } else { None })
                    .collect::<Vec<_>>()
                    .join(" ");
                let text = if samples.is_empty() { Some(text) } else { None };
                (n.unwrap_or(0), samples, text)
            }
            _ => (0, Vec::new(), None),
        };
        let language = language_from_instructions(&instructions);
        let voice_name = match &voice {
            Value::String(s) => s.clone(),
            _ => self.cfg.voice_name(),
        };
        let chunks = self.engine.respond(&EngineRequest {
            utterance,
            samples: &samples,
            text: text.as_deref(),
            language: &language,
            voice: &voice_name,
            audio: audio_out,
        });
        self.active = Some(Active {
            id: new_id("resp_"),
            item_id: new_id("item_"),
            next_at: now + self.delay,
            started: false,
            out_of_band: ov.out_of_band,
            audio_out,
            output_format: ov.output_format.unwrap_or(self.cfg.output_format),
            voice,
            modalities,
            metadata: ov.metadata,
            chunks,
            audio: Vec::new(),
            text: String::new(),
            input_usage,
            previous_item_id: None,
        });
    }

    fn response_json(&self, a: &Active, status: &str, details: Value, output: Vec<Value>, usage: Value) -> Value {
        let conversation_id = if a.out_of_band { Value::Null } else { json!(self.conversation_id) };
        match self.dialect {
            Dialect::Ga => json!({
                "id": a.id, "object": "realtime.response", "status": status, "status_details": details,
                "output": output, "conversation_id": conversation_id, "output_modalities": a.modalities,
                "max_output_tokens": self.cfg.max_output_tokens,
                "audio": {"output": {"format": match a.output_format {
                    AudioFormat::Pcm16 => json!({"type": "audio/pcm", "rate": 24000}),
                    AudioFormat::Pcmu => json!({"type": "audio/pcmu"}),
                    AudioFormat::Pcma => json!({"type": "audio/pcma"}),
                }, "voice": a.voice}},
                "usage": usage, "metadata": a.metadata,
            }),
            Dialect::Beta => json!({
                "id": a.id, "object": "realtime.response", "status": status, "status_details": details,
                "output": output, "conversation_id": conversation_id, "modalities": a.modalities,
                "voice": a.voice, "output_audio_format": a.output_format.beta_name(),
                "temperature": self.cfg.temperature, "max_output_tokens": self.cfg.max_output_tokens,
                "usage": usage, "metadata": a.metadata,
            }),
        }
    }

    fn assistant_item(&self, a: &Active, status: &'static str, with_content: bool) -> Item {
        let parts = if !with_content {
            Vec::new()
        } else if a.audio_out {
            vec![Part::OutputAudio { samples: a.audio.clone(), transcript: a.text.clone() }]
        } else {
            vec![Part::OutputText(a.text.clone())]
        };
        Item {
            id: a.item_id.clone(),
            kind: ItemKind::Message { role: "assistant".into(), parts },
            status,
            utterance: None,
        }
    }

    /// Advances the running response.
    pub fn on_tick(&mut self, now: Instant) {
        for _ in 0..STEPS_PER_TICK {
            let Some(a) = self.active.as_mut() else { return };
            if a.next_at > now {
                return;
            }
            if !a.started {
                a.started = true;
                self.begin();
                continue;
            }
            match a.chunks.next() {
                Some(Chunk::Audio(samples)) if a.audio_out => {
                    let dur = Duration::from_secs_f64(samples.len() as f64 / 24_000.0 / self.speed);
                    if self.speed.is_finite() {
                        // Pace from the schedule, but never bank more than 200 ms of lateness.
                        a.next_at = a.next_at.max(now.checked_sub(Duration::from_millis(200)).unwrap_or(now)) + dur;
                    }
                    let delta = STANDARD.encode(encode_audio(a.output_format, &samples));
                    a.audio.extend_from_slice(&samples);
                    let ev = json!({"type": self.dialect.name("response.output_audio.delta"), "response_id": a.id,
                        "item_id": a.item_id, "output_index": 0, "content_index": 0, "delta": delta});
                    self.audio_was_output = true;
                    self.emit(ev);
                }
                Some(Chunk::Audio(_)) => {}
                Some(Chunk::Text(t)) => {
                    let name = if a.audio_out {
                        "response.output_audio_transcript.delta"
                    } else {
                        "response.output_text.delta"
                    };
                    a.text.push_str(&t);
                    let ev = json!({"type": self.dialect.name(name), "response_id": a.id,
                        "item_id": a.item_id, "output_index": 0, "content_index": 0, "delta": t});
                    self.emit(ev);
                }
                None => {
                    self.finish("completed", None, now);
                    return;
                }
            }
        }
    }

    /// The opening events of the active response.
    fn begin(&mut self) {
        let Some(a) = self.active.as_mut() else { return };
        if !a.out_of_band {
            a.previous_item_id = self.items.last().map(|i| i.id.clone());
        }
        let a = self.active.as_ref().expect("active");
        let reserve = 4096.min(self.tokens_remaining);
        let created = self.response_json(a, "in_progress", Value::Null, Vec::new(), Value::Null);
        let item = self.assistant_item(a, "in_progress", false);
        let item_json = item.to_json(self.dialect, None);
        let part =
            if a.audio_out { json!({"type": "audio", "transcript": ""}) } else { json!({"type": "text", "text": ""}) };
        let (rid, iid, prev, oob) = (a.id.clone(), a.item_id.clone(), a.previous_item_id.clone(), a.out_of_band);
        self.emit(json!({"type": "response.created", "response": created}));
        self.emit(json!({"type": "rate_limits.updated", "rate_limits": [
            {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
            {"name": "tokens", "limit": RATE_LIMIT_TOKENS, "remaining": self.tokens_remaining - reserve, "reset_seconds": 6.0},
        ]}));
        self.emit(
            json!({"type": "response.output_item.added", "response_id": rid, "output_index": 0, "item": item_json}),
        );
        if !oob {
            let ty = if self.dialect == Dialect::Ga { "conversation.item.added" } else { "conversation.item.created" };
            self.emit(json!({"type": ty, "previous_item_id": prev, "item": item_json}));
            self.items.push(item);
        }
        self.emit(json!({"type": "response.content_part.added", "response_id": rid, "item_id": iid,
            "output_index": 0, "content_index": 0, "part": part}));
    }

    /// Ends the active response with `status` and sends the done events; starts a queued one.
    fn finish(&mut self, status: &str, reason: Option<&str>, now: Instant) {
        if self.active.as_ref().is_some_and(|a| !a.started) {
            self.active.as_mut().expect("active").started = true;
            self.begin();
        }
        let Some(a) = self.active.take() else { return };
        let (rid, iid) = (a.id.clone(), a.item_id.clone());
        let idx = json!({"response_id": rid, "item_id": iid, "output_index": 0, "content_index": 0});
        let with = |ty: &str, extra: Value| {
            let mut v = idx.clone();
            v["type"] = json!(ty);
            if let (Some(v), Value::Object(e)) = (v.as_object_mut(), extra) {
                v.extend(e);
            }
            v
        };
        let part = if a.audio_out {
            self.emit(with(self.dialect.name("response.output_audio.done"), json!({})));
            self.emit(with(self.dialect.name("response.output_audio_transcript.done"), json!({"transcript": a.text})));
            json!({"type": "audio", "transcript": a.text})
        } else {
            self.emit(with(self.dialect.name("response.output_text.done"), json!({"text": a.text})));
            json!({"type": "text", "text": a.text})
        };
        self.emit(with("response.content_part.done", json!({"part": part})));
        let item_status = if status == "completed" { "completed" } else { "incomplete" };
        let item = self.assistant_item(&a, item_status, true);
        let item_json = item.to_json(self.dialect, None);
        self.emit(
            json!({"type": "response.output_item.done", "response_id": rid, "output_index": 0, "item": item_json}),
        );
        if !a.out_of_band {
            // The item may have been deleted meanwhile only if not active; it is ours: update it.
            if let Some(slot) = self.items.iter_mut().find(|i| i.id == iid) {
                *slot = item.clone();
            }
            if self.dialect == Dialect::Ga {
                self.emit(json!({"type": "conversation.item.done", "previous_item_id": a.previous_item_id, "item": item_json}));
            }
        }
        let output = Tokens {
            text: text_tokens(&a.text),
            audio: if a.audio_out { audio_tokens(a.audio.len(), AUDIO_OUT_TOKENS_PER_S) } else { 0 },
        };
        let usage = Usage { input: a.input_usage, output };
        self.tokens_remaining = RATE_LIMIT_TOKENS.saturating_sub(usage.input.total() + usage.output.total()).max(1000);
        let details = match (status, reason) {
            ("completed", _) => Value::Null,
            (s, r) => json!({"type": s, "reason": r}),
        };
        let done =
            self.response_json(&a, status, details, vec![item_json], usage.to_json(self.dialect == Dialect::Beta));
        self.emit(json!({"type": "response.done", "response": done}));
        if let Some(next) = self.queued.pop_front() {
            self.start_response(next, now);
        }
    }
}

/// The client events of the realtime dialects (for the "supported values" of an unknown type).
const CLIENT_EVENTS: &[&str] = &[
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.truncate",
    "conversation.item.delete",
    "conversation.item.retrieve",
    "response.create",
    "response.cancel",
    "output_audio_buffer.clear",
];

/// The error for an unknown client event type.
pub fn unknown_event(ty: &str, known: &[&str]) -> ApiError {
    let list: Vec<String> = known.iter().map(|k| format!("'{k}'")).collect();
    ApiError::invalid_value("type", format!("Invalid value: '{ty}'. Supported values are: {}.", list.join(", ")))
}
