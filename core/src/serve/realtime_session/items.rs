//! The conversation: its items, their JSON and token cost, and the item events (create,
//! truncate, parse).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use super::RealtimeSession;
use crate::audio::vad::{ms_to_samples, samples_to_ms};
use crate::serve::{
    new_id,
    protocol::{ApiError, AudioFormat, Dialect, check_keys, decode_audio, encode_audio, obj, string},
    usage::{AUDIO_IN_TOKENS_PER_S, AUDIO_OUT_TOKENS_PER_S, Tokens, audio_tokens, text_tokens},
};

/// A part of a message item.
#[derive(Debug, Clone)]
pub(super) enum Part {
    InputAudio { samples: Vec<i16>, transcript: Option<String> },
    InputText(String),
    OutputAudio { samples: Vec<i16>, transcript: String },
    OutputText(String),
}

#[derive(Debug, Clone)]
pub(super) enum ItemKind {
    Message { role: String, parts: Vec<Part> },
    FunctionCall { call_id: String, name: String, arguments: String },
    FunctionCallOutput { call_id: String, output: String },
}

/// A conversation item.
#[derive(Debug, Clone)]
pub(super) struct Item {
    pub(super) id: String,
    pub(super) kind: ItemKind,
    /// `completed`, `in_progress` or `incomplete`.
    pub(super) status: &'static str,
    /// The utterance number of a user message (1-based, in order of creation).
    pub(super) utterance: Option<u64>,
}

impl Item {
    /// What re-reading this item costs as input.
    pub(super) fn tokens(&self) -> Tokens {
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
    pub(super) fn to_json(&self, dialect: Dialect, audio: Option<(AudioFormat, AudioFormat)>) -> Value {
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

impl RealtimeSession {
    pub(super) fn item_id_param(&self, ev: &Map<String, Value>) -> Result<String, ApiError> {
        let v = ev.get("item_id").ok_or_else(|| ApiError::missing("item_id"))?;
        Ok(string(v, "item_id")?.to_string())
    }

    pub(super) fn index_of(&self, id: &str, param: &str) -> Result<usize, ApiError> {
        self.items.iter().position(|i| i.id == id).ok_or_else(|| {
            ApiError::invalid_value(param, format!("Item with item_id '{id}' not found in the conversation."))
        })
    }

    /// `conversation.item.added` + `.done` (GA) or `.created` (beta).
    pub(super) fn item_events(&mut self, previous: Option<String>, item: Value) {
        if self.dialect == Dialect::Ga {
            self.emit(json!({"type": "conversation.item.added", "previous_item_id": previous, "item": item}));
            self.emit(json!({"type": "conversation.item.done", "previous_item_id": previous, "item": item}));
        } else {
            self.emit(json!({"type": "conversation.item.created", "previous_item_id": previous, "item": item}));
        }
    }

    pub(super) fn truncate(&mut self, ev: &Map<String, Value>) -> Result<(), ApiError> {
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
            return self.truncate_active(&id, content_index, audio_end_ms);
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

    /// Truncating the item the running response is still producing, as clients do on an
    /// interruption (an agent SDK sends it before `response.cancel`): the item keeps the audio up
    /// to `audio_end_ms` and that share of the transcript so far; the response itself runs on
    /// until it ends or is cancelled (its streamed deltas and `.done` transcript are what was
    /// generated; the item in `output_item.done`/`response.done` and in the conversation is cut).
    fn truncate_active(&mut self, id: &str, content_index: usize, audio_end_ms: u64) -> Result<(), ApiError> {
        let a = self.active.as_mut().expect("checked by the caller");
        if !a.audio_out {
            return Err(ApiError::invalid_value("item_id", "Only assistant messages with audio can be truncated."));
        }
        if content_index != 0 {
            return Err(ApiError::invalid_value(
                "content_index",
                format!("Content index {content_index} has no audio."),
            ));
        }
        let (have, chars) = a.truncated.unwrap_or((a.audio.len(), a.text.chars().count()));
        let have_ms = samples_to_ms(have as u64);
        if audio_end_ms > have_ms {
            return Err(ApiError::invalid(
                None,
                format!("Audio content of {have_ms}ms is already shorter than {audio_end_ms}ms"),
                None,
            ));
        }
        let keep = (ms_to_samples(audio_end_ms) as usize).min(have);
        let keep_chars = (chars * keep).checked_div(have).unwrap_or(0);
        a.truncated = Some((keep, keep_chars));
        self.emit(json!({"type": "conversation.item.truncated", "item_id": id, "content_index": 0, "audio_end_ms": audio_end_ms}));
        Ok(())
    }

    pub(super) fn parse_item(&self, v: &Value, path: &str) -> Result<Item, ApiError> {
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
}
