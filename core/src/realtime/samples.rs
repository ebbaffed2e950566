//! One sample of every server event of the catalogue (§3 GA and beta, §11 translation), shaped
//! as the openapi schemas describe them, for the codec tests; and the proptest strategies for
//! arbitrary server frames.

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::events::{BetaServerEvent, ServerEvent, TranslationServerEvent};

/// Events whose shape is the same in GA and beta (`transcription_session.created` is beta-only
/// but accepted by the GA codec too, since the beta codec converts into it).
const SHARED: &[&str] = &[
    r#"{"type":"session.created","event_id":"event_1","session":{"id":"sess_1","object":"realtime.session","model":"gpt-realtime","expires_at":1767225600,"instructions":"","voice":"alloy"}}"#,
    r#"{"type":"session.updated","event_id":"event_2","session":{"id":"sess_1","object":"realtime.session","expires_at":1767225600,"instructions":"Interpret."}}"#,
    r#"{"type":"conversation.created","event_id":"event_3","conversation":{"id":"conv_1","object":"realtime.conversation"}}"#,
    r#"{"type":"conversation.item.created","event_id":"event_4","previous_item_id":null,"item":{"id":"item_1","object":"realtime.item","type":"message","status":"completed","role":"user","content":[{"type":"input_audio","transcript":null}]}}"#,
    r#"{"type":"conversation.item.retrieved","event_id":"event_5","item":{"id":"item_1","object":"realtime.item","type":"message","status":"completed","role":"user","content":[{"type":"input_audio","audio":"AAA=","transcript":"hello"}]}}"#,
    r#"{"type":"conversation.item.truncated","event_id":"event_6","item_id":"item_2","content_index":0,"audio_end_ms":1500}"#,
    r#"{"type":"conversation.item.deleted","event_id":"event_7","item_id":"item_1"}"#,
    r#"{"type":"conversation.item.input_audio_transcription.delta","event_id":"event_8","item_id":"item_1","content_index":0,"delta":"Hel","logprobs":[{"token":"Hel","logprob":-0.1,"bytes":[72,101,108]}]}"#,
    r#"{"type":"conversation.item.input_audio_transcription.completed","event_id":"event_9","item_id":"item_1","content_index":0,"transcript":"Hello there.","usage":{"type":"tokens","total_tokens":30,"input_tokens":20,"input_token_details":{"text_tokens":0,"audio_tokens":20},"output_tokens":10}}"#,
    r#"{"type":"conversation.item.input_audio_transcription.failed","event_id":"event_10","item_id":"item_1","content_index":0,"error":{"type":"transcription_error","code":"audio_unintelligible","message":"The audio could not be transcribed.","param":null}}"#,
    r#"{"type":"input_audio_buffer.committed","event_id":"event_11","previous_item_id":null,"item_id":"item_1"}"#,
    r#"{"type":"input_audio_buffer.cleared","event_id":"event_12"}"#,
    r#"{"type":"input_audio_buffer.speech_started","event_id":"event_13","audio_start_ms":1000,"item_id":"item_1"}"#,
    r#"{"type":"input_audio_buffer.speech_stopped","event_id":"event_14","audio_end_ms":2000,"item_id":"item_1"}"#,
    r#"{"type":"transcription_session.created","event_id":"event_50","session":{"id":"sess_2","object":"realtime.transcription_session"}}"#,
    r#"{"type":"transcription_session.updated","event_id":"event_15","session":{"id":"sess_2","object":"realtime.transcription_session","input_audio_format":"pcm16"}}"#,
    r#"{"type":"response.created","event_id":"event_16","response":{"id":"resp_1","object":"realtime.response","status":"in_progress","status_details":null,"output":[],"usage":null}}"#,
    r#"{"type":"response.output_item.added","event_id":"event_17","response_id":"resp_1","output_index":0,"item":{"id":"item_2","object":"realtime.item","type":"message","status":"in_progress","role":"assistant","content":[]}}"#,
    r#"{"type":"response.output_item.done","event_id":"event_18","response_id":"resp_1","output_index":0,"item":{"id":"item_2","object":"realtime.item","type":"message","status":"completed","role":"assistant","content":[{"type":"audio","transcript":"Hola."}]}}"#,
    r#"{"type":"response.content_part.added","event_id":"event_19","response_id":"resp_1","item_id":"item_2","output_index":0,"content_index":0,"part":{"type":"audio","transcript":""}}"#,
    r#"{"type":"response.content_part.done","event_id":"event_20","response_id":"resp_1","item_id":"item_2","output_index":0,"content_index":0,"part":{"type":"audio","transcript":"Hola."}}"#,
    r#"{"type":"response.function_call_arguments.delta","event_id":"event_21","response_id":"resp_1","item_id":"item_3","output_index":1,"call_id":"call_1","delta":"{\"a\":"}"#,
    r#"{"type":"response.function_call_arguments.done","event_id":"event_22","response_id":"resp_1","item_id":"item_3","output_index":1,"call_id":"call_1","name":"lookup","arguments":"{\"a\":1}"}"#,
    r#"{"type":"response.done","event_id":"event_23","response":{"id":"resp_1","object":"realtime.response","status":"completed","status_details":null,"output":[{"id":"item_2","object":"realtime.item","type":"message","status":"completed","role":"assistant","content":[{"type":"audio","transcript":"Hola."}]}],"usage":{"total_tokens":253,"input_tokens":132,"output_tokens":121,"input_token_details":{"text_tokens":119,"audio_tokens":13,"image_tokens":0,"cached_tokens":64,"cached_tokens_details":{"text_tokens":64,"audio_tokens":0,"image_tokens":0}},"output_token_details":{"text_tokens":30,"audio_tokens":91}}}}"#,
    r#"{"type":"rate_limits.updated","event_id":"event_24","rate_limits":[{"name":"requests","limit":1000,"remaining":999,"reset_seconds":60},{"name":"tokens","limit":50000,"remaining":49950,"reset_seconds":60}]}"#,
    r#"{"type":"error","event_id":"event_25","error":{"type":"invalid_request_error","code":"session_expired","message":"Your session hit the maximum duration of 60 minutes.","param":null,"event_id":null}}"#,
    r#"{"type":"error","event_id":"event_26","error":{"type":"invalid_request_error","code":"input_audio_buffer_commit_empty","message":"Error committing input audio buffer: buffer too small.","param":null,"event_id":"tolk_3"}}"#,
    r#"{"type":"output_audio_buffer.started","event_id":"event_27","response_id":"resp_1"}"#,
    r#"{"type":"output_audio_buffer.stopped","event_id":"event_28","response_id":"resp_1"}"#,
    r#"{"type":"output_audio_buffer.cleared","event_id":"event_29","response_id":"resp_1"}"#,
];

/// GA-only events and the GA names of renamed ones.
const GA_ONLY: &[&str] = &[
    r#"{"type":"conversation.item.added","event_id":"event_30","previous_item_id":"item_1","item":{"id":"item_2","object":"realtime.item","type":"message","status":"in_progress","role":"assistant","content":[]}}"#,
    r#"{"type":"conversation.item.done","event_id":"event_31","previous_item_id":"item_1","item":{"id":"item_2","object":"realtime.item","type":"message","status":"completed","role":"assistant","content":[{"type":"output_audio","transcript":"Hola."}]}}"#,
    r#"{"type":"conversation.item.input_audio_transcription.segment","event_id":"event_32","item_id":"item_1","content_index":0,"text":"Hello","id":"seg_1","speaker":"A","start":0.0,"end":0.5}"#,
    r#"{"type":"input_audio_buffer.timeout_triggered","event_id":"event_33","audio_start_ms":1000,"audio_end_ms":6000,"item_id":"item_4"}"#,
    r#"{"type":"input_audio_buffer.dtmf_event_received","event_id":"event_34","event":"5","received_at":1767225000}"#,
    r#"{"type":"response.output_text.delta","event_id":"event_35","response_id":"resp_1","item_id":"item_2","output_index":0,"content_index":0,"delta":"Ho"}"#,
    r#"{"type":"response.output_text.done","event_id":"event_36","response_id":"resp_1","item_id":"item_2","output_index":0,"content_index":0,"text":"Hola."}"#,
    r#"{"type":"response.output_audio.delta","event_id":"event_37","response_id":"resp_1","item_id":"item_2","output_index":0,"content_index":0,"delta":"AAABAP//"}"#,
    r#"{"type":"response.output_audio.done","event_id":"event_38","response_id":"resp_1","item_id":"item_2","output_index":0,"content_index":0}"#,
    r#"{"type":"response.output_audio_transcript.delta","event_id":"event_39","response_id":"resp_1","item_id":"item_2","output_index":0,"content_index":0,"delta":"Ho"}"#,
    r#"{"type":"response.output_audio_transcript.done","event_id":"event_40","response_id":"resp_1","item_id":"item_2","output_index":0,"content_index":0,"transcript":"Hola."}"#,
    r#"{"type":"mcp_list_tools.in_progress","event_id":"event_41","item_id":"mcp_1"}"#,
    r#"{"type":"mcp_list_tools.completed","event_id":"event_42","item_id":"mcp_1"}"#,
    r#"{"type":"mcp_list_tools.failed","event_id":"event_43","item_id":"mcp_1"}"#,
    r#"{"type":"response.mcp_call_arguments.delta","event_id":"event_44","response_id":"resp_1","item_id":"mcp_2","output_index":0,"delta":"{"}"#,
    r#"{"type":"response.mcp_call_arguments.done","event_id":"event_45","response_id":"resp_1","item_id":"mcp_2","output_index":0,"arguments":"{}"}"#,
    r#"{"type":"response.mcp_call.in_progress","event_id":"event_46","item_id":"mcp_2","output_index":0}"#,
    r#"{"type":"response.mcp_call.completed","event_id":"event_47","item_id":"mcp_2","output_index":0}"#,
    r#"{"type":"response.mcp_call.failed","event_id":"event_48","item_id":"mcp_2","output_index":0}"#,
];

/// Beta-only events and the beta names of renamed ones.
const BETA_ONLY: &[&str] = &[
    r#"{"type":"response.text.delta","event_id":"event_51","response_id":"resp_1","item_id":"item_2","output_index":0,"content_index":0,"delta":"Ho"}"#,
    r#"{"type":"response.text.done","event_id":"event_52","response_id":"resp_1","item_id":"item_2","output_index":0,"content_index":0,"text":"Hola."}"#,
    r#"{"type":"response.audio.delta","event_id":"event_53","response_id":"resp_1","item_id":"item_2","output_index":0,"content_index":0,"delta":"AAABAP//"}"#,
    r#"{"type":"response.audio.done","event_id":"event_54","response_id":"resp_1","item_id":"item_2","output_index":0,"content_index":0}"#,
    r#"{"type":"response.audio_transcript.delta","event_id":"event_55","response_id":"resp_1","item_id":"item_2","output_index":0,"content_index":0,"delta":"Ho"}"#,
    r#"{"type":"response.audio_transcript.done","event_id":"event_56","response_id":"resp_1","item_id":"item_2","output_index":0,"content_index":0,"transcript":"Hola."}"#,
];

/// Translation API events (§11).
pub const TRANSLATION: &[&str] = &[
    r#"{"type":"session.created","event_id":"event_60","session":{"id":"sess_t1","type":"translation","expires_at":1767225600,"model":"gpt-realtime-translate","audio":{"input":{"transcription":null,"noise_reduction":null},"output":{"language":"en"}}}}"#,
    r#"{"type":"session.updated","event_id":"event_61","session":{"id":"sess_t1","type":"translation","expires_at":1767225600,"model":"gpt-realtime-translate","audio":{"input":{"transcription":{"model":"gpt-realtime-whisper"},"noise_reduction":{"type":"near_field"}},"output":{"language":"es"}}}}"#,
    r#"{"type":"session.closed","event_id":"event_62"}"#,
    r#"{"type":"session.input_transcript.delta","event_id":"event_63","delta":"Good morn","elapsed_ms":400}"#,
    r#"{"type":"session.output_transcript.delta","event_id":"event_64","delta":"Buenos d","elapsed_ms":600}"#,
    r#"{"type":"session.output_audio.delta","event_id":"event_65","delta":"AAABAP//","sample_rate":24000,"channels":1,"format":"pcm16","elapsed_ms":600}"#,
    r#"{"type":"error","event_id":"event_66","error":{"type":"invalid_request_error","code":"invalid_value","message":"Invalid value for 'audio.output.language'.","param":"session.audio.output.language","event_id":"tolk_1"}}"#,
];

/// Every GA sample.
pub fn ga() -> Vec<&'static str> {
    SHARED.iter().chain(GA_ONLY).copied().collect()
}

/// Every beta sample.
pub fn beta() -> Vec<&'static str> {
    SHARED.iter().chain(BETA_ONLY).copied().collect()
}

/// Arbitrary JSON values (nested up to 4 deep).
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JSON objects with a real `type` (of any protocol) and random values under the field names
/// events use.
pub fn typed_event() -> impl Strategy<Value = String> {
    let mut types: Vec<&'static str> = ServerEvent::TYPES.to_vec();
    types.extend(BetaServerEvent::TYPES);
    types.extend(TranslationServerEvent::TYPES);
    let names = prop::sample::select(vec![
        "event_id",
        "session",
        "item",
        "item_id",
        "response",
        "response_id",
        "delta",
        "transcript",
        "text",
        "error",
        "audio_start_ms",
        "audio_end_ms",
        "elapsed_ms",
        "part",
        "usage",
        "output",
        "id",
        "status",
    ]);
    (prop::sample::select(types), prop::collection::vec((names, json_value()), 0..8)).prop_map(|(t, fields)| {
        let mut m: Map<String, Value> = fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        m.insert("type".into(), Value::from(t));
        Value::Object(m).to_string()
    })
}

/// Any server frame: arbitrary bytes (as text), arbitrary JSON, or typed objects.
pub fn any_frame() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..128).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        json_value().prop_map(|v| v.to_string()),
        typed_event(),
    ]
}
