//! The running response: start (with per-response overrides), the opening events, paced
//! engine steps, the done events with usage, and the queue of responses waiting to start.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::{RATE_LIMIT_TOKENS, RealtimeSession, items::*};
use crate::serve::{
    engine::{Chunk, EngineRequest, PENDING_POLL_MS, language_from_instructions},
    new_id,
    protocol::{ApiError, AudioFormat, Dialect, check_keys, encode_audio, obj},
    usage::{AUDIO_OUT_TOKENS_PER_S, Tokens, Usage, audio_tokens, text_tokens},
};

/// Responses pull at most this many engine chunks per tick, so a fast engine still lets
/// client events in between.
const STEPS_PER_TICK: usize = 8;

/// Per-response settings from `response.create` (or the session, for automatic responses).
#[derive(Debug, Clone, Default)]
pub(super) struct Overrides {
    pub(super) modalities: Option<Vec<String>>,
    pub(super) instructions: Option<String>,
    pub(super) voice: Option<Value>,
    pub(super) output_format: Option<AudioFormat>,
    /// `conversation: "none"`: an out-of-band response, not added to the conversation.
    pub(super) out_of_band: bool,
    pub(super) metadata: Value,
    /// `input`: the context of this response instead of the conversation.
    pub(super) input: Option<Vec<Item>>,
}

/// A response waiting to start.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) overrides: Overrides,
    /// The user item this response answers (VAD turns); else the latest user item.
    pub(super) answers: Option<String>,
}

/// The running response.
pub(super) struct Active {
    pub(super) id: String,
    pub(super) item_id: String,
    /// When to take the next step (the first step sends the opening events).
    pub(super) next_at: Instant,
    pub(super) started: bool,
    pub(super) out_of_band: bool,
    pub(super) audio_out: bool,
    pub(super) output_format: AudioFormat,
    pub(super) voice: Value,
    pub(super) modalities: Vec<String>,
    pub(super) metadata: Value,
    pub(super) chunks: Box<dyn Iterator<Item = Chunk> + Send>,
    pub(super) audio: Vec<i16>,
    pub(super) text: String,
    pub(super) input_usage: Tokens,
    pub(super) previous_item_id: Option<String>,
    /// Set by `conversation.item.truncate` while the response runs: the samples and transcript
    /// characters its item keeps (the response goes on streaming until it ends or is cancelled).
    pub(super) truncated: Option<(usize, usize)>,
}

impl RealtimeSession {
    pub(super) fn parse_overrides(&self, r: &Value) -> Result<Overrides, ApiError> {
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

    pub(super) fn start_response(&mut self, p: Pending, now: Instant) {
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
        if let Err(message) = self.engine.check_language(&language) {
            self.error(ApiError::invalid(Some("unsupported_language"), message, Some("session.instructions")), None);
            if let Some(next) = self.queued.pop_front() {
                self.start_response(next, now);
            }
            return;
        }
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
            truncated: None,
        });
    }

    pub(super) fn response_json(
        &self,
        a: &Active,
        status: &str,
        details: Value,
        output: Vec<Value>,
        usage: Value,
    ) -> Value {
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

    pub(super) fn assistant_item(&self, a: &Active, status: &'static str, with_content: bool) -> Item {
        let parts = if !with_content {
            Vec::new()
        } else if a.audio_out {
            let (samples, chars) = a.truncated.unwrap_or((a.audio.len(), usize::MAX));
            vec![Part::OutputAudio {
                samples: a.audio[..samples].to_vec(),
                transcript: a.text.chars().take(chars).collect(),
            }]
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
                Some(Chunk::Pending) => {
                    a.next_at = now + Duration::from_millis(PENDING_POLL_MS);
                    return;
                }
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
    pub(super) fn begin(&mut self) {
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
    pub(super) fn finish(&mut self, status: &str, reason: Option<&str>, now: Instant) {
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
