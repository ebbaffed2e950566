//! Client events, encoded per protocol: the GA nested `session` object, the legacy flat one and
//! the Translation API's own event names. Pure functions from settings to JSON text.

use serde_json::{Value, json};

use super::SessionSpec;
use crate::{
    audio::pcm16,
    config::{Protocol, TurnDetection},
};

/// The session's audio format for GA (`audio/pcm` at 24 kHz is the only PCM rate).
fn ga_pcm() -> Value {
    json!({"type": "audio/pcm", "rate": 24000})
}

/// The ISO-639-1 part of a BCP-47 tag (`pt-BR` → `pt`), when it is two letters.
fn iso639_1(tag: &str) -> Option<String> {
    let primary = tag.split(['-', '_']).next().unwrap_or_default();
    (primary.len() == 2 && primary.chars().all(|c| c.is_ascii_alphabetic())).then(|| primary.to_ascii_lowercase())
}

fn turn_detection(td: &TurnDetection, protocol: Protocol) -> Value {
    match td {
        TurnDetection::None => Value::Null,
        TurnDetection::ServerVad {
            threshold,
            prefix_padding_ms,
            silence_duration_ms,
            idle_timeout_ms,
            create_response,
            interrupt_response,
        } => {
            let mut v = json!({
                "type": "server_vad",
                "threshold": threshold,
                "prefix_padding_ms": prefix_padding_ms,
                "silence_duration_ms": silence_duration_ms,
                "create_response": create_response,
                "interrupt_response": interrupt_response,
            });
            if let (Some(ms), Protocol::Ga) = (idle_timeout_ms, protocol) {
                v["idle_timeout_ms"] = json!(ms);
            }
            v
        }
        TurnDetection::SemanticVad { eagerness, create_response, interrupt_response } => json!({
            "type": "semantic_vad",
            "eagerness": eagerness,
            "create_response": create_response,
            "interrupt_response": interrupt_response,
        }),
    }
}

fn transcription(spec: &SessionSpec) -> Value {
    match &spec.engine.transcription_model {
        None => Value::Null,
        Some(model) => {
            let mut t = json!({"model": model});
            if spec.engine.protocol != Protocol::Translation
                && let Some(lang) = iso639_1(&spec.source_language)
            {
                t["language"] = json!(lang);
            }
            t
        }
    }
}

fn noise_reduction(spec: &SessionSpec) -> Value {
    spec.engine.noise_reduction.as_ref().map_or(Value::Null, |n| json!({"type": n}))
}

/// The `session` object of the setup `session.update`.
pub fn session_object(spec: &SessionSpec) -> Value {
    let e = &spec.engine;
    match e.protocol {
        Protocol::Ga => {
            let mut input = json!({
                "format": ga_pcm(),
                "transcription": transcription(spec),
                "turn_detection": turn_detection(&e.turn_detection, e.protocol),
            });
            if e.noise_reduction.is_some() {
                input["noise_reduction"] = noise_reduction(spec);
            }
            let mut output = json!({"format": ga_pcm()});
            if let Some(v) = &spec.voice {
                output["voice"] = json!(v);
            }
            if let Some(s) = e.speed {
                output["speed"] = json!(s);
            }
            let mut s = json!({
                "type": "realtime",
                "instructions": spec.instructions,
                "output_modalities": ["audio"],
                "audio": {"input": input, "output": output},
            });
            if let Some(t) = e.max_output_tokens {
                s["max_output_tokens"] = json!(t);
            }
            s
        }
        Protocol::Legacy => {
            let mut s = json!({
                "modalities": ["text", "audio"],
                "instructions": spec.instructions,
                "input_audio_format": "pcm16",
                "output_audio_format": "pcm16",
                "input_audio_transcription": transcription(spec),
                "turn_detection": turn_detection(&e.turn_detection, e.protocol),
            });
            if let Some(v) = &spec.voice {
                s["voice"] = json!(v);
            }
            if e.noise_reduction.is_some() {
                s["input_audio_noise_reduction"] = noise_reduction(spec);
            }
            if let Some(t) = e.max_output_tokens {
                s["max_response_output_tokens"] = json!(t);
            }
            s
        }
        Protocol::Translation => {
            let mut input = json!({"transcription": transcription(spec)});
            if e.noise_reduction.is_some() {
                input["noise_reduction"] = noise_reduction(spec);
            }
            json!({"audio": {"input": input, "output": {"language": spec.target_language}}})
        }
    }
}

/// `session.update` with the full setup.
pub fn session_update(spec: &SessionSpec, event_id: &str) -> String {
    json!({"type": "session.update", "event_id": event_id, "session": session_object(spec)}).to_string()
}

/// `session.update` changing only the instructions; `None` for the Translation API (no prompt).
pub fn instructions_update(protocol: Protocol, instructions: &str, event_id: &str) -> Option<String> {
    let session = match protocol {
        Protocol::Ga => json!({"type": "realtime", "instructions": instructions}),
        Protocol::Legacy => json!({"instructions": instructions}),
        Protocol::Translation => return None,
    };
    Some(json!({"type": "session.update", "event_id": event_id, "session": session}).to_string())
}

/// `input_audio_buffer.append` (`session.input_audio_buffer.append` for translation), built
/// without an intermediate JSON tree: audio is most of the traffic.
pub fn append(protocol: Protocol, samples: &[i16], bytes: &mut Vec<u8>, b64: &mut String) -> String {
    b64.clear();
    pcm16::encode_into(samples, bytes, b64);
    let name = match protocol {
        Protocol::Translation => "session.input_audio_buffer.append",
        _ => "input_audio_buffer.append",
    };
    let mut s = String::with_capacity(b64.len() + 64);
    s.push_str("{\"type\":\"");
    s.push_str(name);
    s.push_str("\",\"audio\":\"");
    s.push_str(b64);
    s.push_str("\"}");
    s
}

/// An event with only a type and an id (`input_audio_buffer.commit`, `.clear`, `session.close`).
pub fn bare(kind: &str, event_id: &str) -> String {
    json!({"type": kind, "event_id": event_id}).to_string()
}

/// `conversation.item.delete`.
pub fn delete_item(item_id: &str, event_id: &str) -> String {
    json!({"type": "conversation.item.delete", "event_id": event_id, "item_id": item_id}).to_string()
}

/// `conversation.item.truncate` of content part 0.
pub fn truncate(item_id: &str, audio_end_ms: u64, event_id: &str) -> String {
    json!({
        "type": "conversation.item.truncate",
        "event_id": event_id,
        "item_id": item_id,
        "content_index": 0,
        "audio_end_ms": audio_end_ms,
    })
    .to_string()
}

/// `response.create` with the session's settings; with `item`, the response's input is that
/// user item alone (`response.input = [{type: "item_reference", id}]`, the same shape in GA and
/// the legacy protocol), so it answers that item whatever else the conversation holds by the
/// time it runs. The Translation API has no responses (its sessions never send this).
pub fn response_create(event_id: &str, item: Option<&str>) -> String {
    match item {
        None => json!({"type": "response.create", "event_id": event_id}).to_string(),
        Some(id) => json!({
            "type": "response.create",
            "event_id": event_id,
            "response": {"input": [{"type": "item_reference", "id": id}]},
        })
        .to_string(),
    }
}

/// `response.cancel` of one response.
pub fn response_cancel(response_id: Option<&str>, event_id: &str) -> String {
    let mut v = json!({"type": "response.cancel", "event_id": event_id});
    if let Some(id) = response_id {
        v["response_id"] = json!(id);
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Engine, Mode, Provider};

    fn spec(protocol: Protocol) -> SessionSpec {
        let engine = Engine {
            provider: if protocol == Protocol::Translation { Provider::OpenAiTranslate } else { Provider::OpenAi },
            protocol,
            ..Engine::default()
        };
        let mut s = SessionSpec::new(&engine, "Interpret into Spanish.", "en-US", "es");
        s.voice = Some("marin".into());
        s
    }

    #[test]
    fn ga_session_update_is_nested_and_typed() {
        let v: Value = serde_json::from_str(&session_update(&spec(Protocol::Ga), "e1")).unwrap();
        assert_eq!(
            v,
            json!({"type": "session.update", "event_id": "e1", "session": {
                "type": "realtime",
                "instructions": "Interpret into Spanish.",
                "output_modalities": ["audio"],
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": 24000},
                        "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en"},
                        "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                            "silence_duration_ms": 500, "create_response": true, "interrupt_response": false},
                    },
                    "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"},
                },
            }})
        );
    }

    #[test]
    fn legacy_session_update_is_flat() {
        let mut s = spec(Protocol::Legacy);
        s.engine.transcription_model = Some("whisper-1".into());
        s.engine.max_output_tokens = Some(500);
        let v: Value = serde_json::from_str(&session_update(&s, "e2")).unwrap();
        let session = &v["session"];
        assert_eq!(session["voice"], "marin");
        assert_eq!(session["input_audio_format"], "pcm16");
        assert_eq!(session["output_audio_format"], "pcm16");
        assert_eq!(session["modalities"], json!(["text", "audio"]));
        assert_eq!(session["input_audio_transcription"], json!({"model": "whisper-1", "language": "en"}));
        assert_eq!(session["max_response_output_tokens"], 500);
        assert!(session.get("type").is_none() && session.get("audio").is_none());
    }

    #[test]
    fn translation_session_update_sets_only_changeable_fields() {
        let v: Value = serde_json::from_str(&session_update(&spec(Protocol::Translation), "e3")).unwrap();
        assert_eq!(
            v["session"],
            json!({"audio": {"input": {"transcription": {"model": "gpt-4o-mini-transcribe"}},
                "output": {"language": "es"}}})
        );
        assert_eq!(instructions_update(Protocol::Translation, "x", "e"), None);
    }

    #[test]
    fn conversation_mode_and_semantic_vad_encode() {
        let mut s = spec(Protocol::Ga);
        s.mode = Mode::Conversation;
        s.engine.turn_detection =
            TurnDetection::SemanticVad { eagerness: "high".into(), create_response: true, interrupt_response: true };
        let v: Value = serde_json::from_str(&session_update(&s, "e")).unwrap();
        assert_eq!(
            v["session"]["audio"]["input"]["turn_detection"],
            json!({"type": "semantic_vad", "eagerness": "high", "create_response": true, "interrupt_response": true})
        );
    }

    #[test]
    fn append_is_valid_json_with_base64_pcm16() {
        let (mut bytes, mut b64) = (Vec::new(), String::new());
        let text = append(Protocol::Ga, &[0, 1, -1, i16::MAX], &mut bytes, &mut b64);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "input_audio_buffer.append");
        assert_eq!(pcm16::decode(v["audio"].as_str().unwrap()).unwrap(), vec![0, 1, -1, i16::MAX]);
        let t: Value = serde_json::from_str(&append(Protocol::Translation, &[5], &mut bytes, &mut b64)).unwrap();
        assert_eq!(t["type"], "session.input_audio_buffer.append");
        // The scratch buffers are reused, never accumulated.
        assert_eq!(pcm16::decode(t["audio"].as_str().unwrap()).unwrap(), vec![5]);
    }

    #[test]
    fn language_hint_is_iso_639_1() {
        assert_eq!(iso639_1("pt-BR").as_deref(), Some("pt"));
        assert_eq!(iso639_1("EN").as_deref(), Some("en"));
        assert_eq!(iso639_1("yue"), None);
    }
}
