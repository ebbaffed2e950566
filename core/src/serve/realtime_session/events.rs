//! Client events: dispatch by `type`, key checks, and the errors for unknown events.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::{RealtimeSession, items::*, response::*};
use crate::audio::vad::ms_to_samples;
use crate::serve::{
    new_id,
    protocol::{ApiError, check_keys, decode_audio, string},
};

impl RealtimeSession {
    /// Handles one client event (a JSON object with a string `type`).
    pub fn on_event(&mut self, ty: &str, ev: &Map<String, Value>, now: Instant) {
        let event_id = ev.get("event_id").and_then(Value::as_str).map(str::to_string);
        let eid = event_id.as_deref();
        if let Err(e) = self.dispatch(ty, ev, now) {
            self.error(e, eid);
        }
    }

    pub(super) fn dispatch(&mut self, ty: &str, ev: &Map<String, Value>, now: Instant) -> Result<(), ApiError> {
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
