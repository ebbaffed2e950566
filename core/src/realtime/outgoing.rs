//! Client events, encoded per protocol: the GA nested `session` object, the legacy flat one and
//! the Translation API's own event names. Pure functions from settings to JSON text.

use serde_json::{Value, json};

use super::SessionSpec;
use crate::{
    audio::pcm16,
    config::{Protocol, TurnDetection, lang},
};

/// The session's audio format for GA (`audio/pcm` at 24 kHz is the only PCM rate).
fn ga_pcm() -> Value {
    json!({"type": "audio/pcm", "rate": 24000})
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
                && let Some(hint) = lang::iso639_1(&spec.source_language)
            {
                t["language"] = json!(hint);
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
        Some(id) => {
            let mut v = json!({
                "type": "response.create",
                "event_id": event_id,
                "response": {"input": [{"type": "item_reference", "id": id}]},
            });
            if id.starts_with(ANNOUNCEMENT_ITEM) {
                v["response"]["metadata"] = json!({"tolk": "announcement"});
            }
            v.to_string()
        }
    }
}

/// How the ids of announcement items begin (client-chosen ids, at most 32 characters).
pub const ANNOUNCEMENT_ITEM: &str = "tolkann_";

/// `conversation.item.create` of a user text message with id `item_id` (an announcement).
pub fn text_item(item_id: &str, text: &str, event_id: &str) -> String {
    json!({
        "type": "conversation.item.create",
        "event_id": event_id,
        "item": {"id": item_id, "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
    })
    .to_string()
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

    /// What `tolk serve` (the real service's validation) says to the setup `session.update` of
    /// `spec`: `Ok` when it would answer `session.updated`.
    fn server_verdict(spec: &SessionSpec) -> Result<(), String> {
        use crate::serve::protocol::{Dialect, SessionConfig, TranslationConfig};
        let session = session_object(spec);
        let err = |e: crate::serve::protocol::ApiError| format!("{:?} {:?}: {}", e.code, e.param, e.message);
        match spec.engine.protocol {
            Protocol::Translation => TranslationConfig {
                id: "s".into(),
                model: spec.engine.model.clone(),
                expires_at: 0,
                language: "en".into(),
                transcription: None,
                noise_reduction: None,
            }
            .apply_update(&session)
            .map_err(err),
            p => {
                let dialect = if p == Protocol::Ga { Dialect::Ga } else { Dialect::Beta };
                SessionConfig::new(dialect, "s".into(), spec.engine.model.clone(), 0)
                    .apply_update(dialect, &session, false)
                    .map_err(err)
            }
        }
    }

    /// The setup `session.update` of every route × target language of a validated config.
    fn specs(config: &crate::config::Config) -> Vec<(String, SessionSpec)> {
        let mut out = Vec::new();
        for r in &config.routes {
            let source = config.source(&r.source).expect("validated").language.clone();
            for target in r.to.iter().filter(|t| *t != crate::config::FLOOR) {
                let instructions = crate::router::route::default_instructions(&source, target);
                let mut s = SessionSpec::new(&config.engine, instructions, &source, target);
                s.voice = r.voice.clone();
                out.push((format!("{} → {target}", r.key), s));
            }
        }
        out
    }

    /// Issue 9: every shipped config's setup `session.update` passes the server's validation.
    #[test]
    fn every_shipped_config_session_update_passes_the_servers_validation() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let (config, errors) = crate::config::parse(&path);
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            for (what, spec) in specs(&config) {
                if let Err(e) = server_verdict(&spec) {
                    panic!("{} {what}: the server refuses the session.update: {e}", path.display());
                }
                checked += 1;
            }
        }
        assert!(checked >= 10, "only {checked} sessions checked");
    }

    proptest::proptest! {
        /// Issue 9, the other way round: whatever `tolk check` accepts, the server accepts. The
        /// engine knobs and the voice are drawn from beyond their valid ranges and sets, so
        /// both verdicts are exercised.
        #[test]
        fn what_check_accepts_the_server_accepts(
            protocol in proptest::sample::select(vec!["ga", "legacy", "translation"]),
            voice in proptest::option::of(proptest::sample::select(vec!["alloy", "marin", "cedar", "verse", "fable"])),
            turn in proptest::sample::select(vec!["server_vad", "semantic_vad", "none"]),
            silence in proptest::option::of(0u32..20_000),
            prefix in proptest::option::of(0u32..20_000),
            idle in proptest::option::of(0u32..40_000),
            threshold in proptest::option::of(-0.5f64..1.5),
            eagerness in proptest::option::of(proptest::sample::select(vec!["low", "high", "auto", "eager"])),
            speed in proptest::option::of(0.0f64..2.0),
            tokens in proptest::option::of(0u32..5000),
            transcription in proptest::bool::ANY,
            source in proptest::sample::select(vec!["en", "en-US", "pt-BR", "yue", "zh-Hant"]),
        ) {
            let mut engine = format!("[engine]\nprovider = \"local\"\nprotocol = \"{protocol}\"\nturn_detection = \"{turn}\"\ntranscription = {transcription}\n");
            for (k, v) in [
                ("silence_duration_ms", silence.map(|x| x.to_string())),
                ("prefix_padding_ms", prefix.map(|x| x.to_string())),
                ("idle_timeout_ms", idle.map(|x| x.to_string())),
                ("vad_threshold", threshold.map(|x| format!("{x:?}"))),
                ("eagerness", eagerness.map(|x| format!("\"{x}\""))),
                ("speed", speed.map(|x| format!("{x:?}"))),
                ("max_output_tokens", tokens.map(|x| x.to_string())),
            ] {
                if let Some(v) = v {
                    engine.push_str(&format!("{k} = {v}\n"));
                }
            }
            let voice = voice.map(|v| format!("voice = \"{v}\"\n")).unwrap_or_default();
            let text = format!("{engine}\n[[source]]\nid = \"s\"\nplugin = \"tolk.tone\"\nlanguage = \"{source}\"\n\n\
                [[route]]\nsource = \"s\"\nto = [\"es\", \"de\"]\n{voice}sinks = [\"k\"]\n\n\
                [[sink]]\nid = \"k\"\nplugin = \"tolk.wav\"\n");
            let (config, errors) = crate::config::parse_str(&text, "x.toml", std::path::Path::new("."));
            if errors.is_empty() {
                for (what, spec) in specs(&config) {
                    if let Err(e) = server_verdict(&spec) {
                        panic!("tolk check accepts, the server refuses {what}: {e}\n{text}");
                    }
                }
            }
        }
    }
}
