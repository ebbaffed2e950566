//! `tolk serve` driven at the JSON level by a raw tokio-tungstenite client (no tolk client
//! code): session shapes (GA, beta, translation), errors, server VAD on a real recording, the
//! response sequence, usage accounting, faults, Azure paths and auth, robustness, the CLI, and
//! the official `openai` Python SDK against it (tests/python/run.sh).
//!
//! Every event the raw client receives must also decode as a known event of tolk's own client
//! (`tolk_core::realtime::events`) for the connection's protocol: an event the client would skip
//! as unknown or malformed fails the test (issue 9, one protocol vocabulary).

use std::{collections::BTreeSet, process::Stdio, sync::Arc, time::Duration};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{self, Message, client::IntoClientRequest},
};
use tolk_core::{
    realtime::{
        Protocol,
        events::{self, BetaServerEvent, Decoded, ServerEvent, TranslationServerEvent},
    },
    serve::{
        ServeOptions, Server, ServerHandle,
        engine::{fingerprint, goertzel, marker_hz, marker_samples},
        faults::Faults,
    },
};
use tolk_tests::{read_wav_i16, root};

const T: Duration = Duration::from_secs(15);

async fn start(opts: ServeOptions) -> ServerHandle {
    Server::bind(opts).await.expect("bind").spawn()
}

/// A server whose responses are unpaced (fast tests).
async fn fast() -> ServerHandle {
    start(ServeOptions { engine_speed: f64::INFINITY, ..ServeOptions::default() }).await
}

struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The protocol the URL and headers select, for the strict client-side decode.
    protocol: Protocol,
    /// Every event type received.
    seen: BTreeSet<String>,
}

/// The protocol `tolk serve` speaks on `url` with `headers` (as its router picks it).
fn protocol_of(url: &str, headers: &[(&'static str, &str)]) -> Protocol {
    if url.contains("/realtime/translations") {
        Protocol::Translation
    } else if url.contains("/openai/realtime?") || headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("openai-beta")) {
        Protocol::Legacy
    } else {
        Protocol::Ga
    }
}

/// Panics unless tolk's client decodes `text` as a known event of `protocol`.
fn assert_known_client_event(protocol: Protocol, text: &str) {
    fn check<E>(d: Decoded<E>, protocol: Protocol, text: &str) {
        match d {
            Decoded::Event(_) => {}
            Decoded::Unknown(kind) => panic!("the {protocol:?} client does not know server event \"{kind}\": {text}"),
            Decoded::Malformed { kind, error } => {
                panic!("the {protocol:?} client cannot decode server event {kind:?}: {error}: {text}")
            }
        }
    }
    match protocol {
        Protocol::Ga => check(events::decode::<ServerEvent>(text), protocol, text),
        Protocol::Legacy => check(events::decode::<BetaServerEvent>(text), protocol, text),
        Protocol::Translation => check(events::decode::<TranslationServerEvent>(text), protocol, text),
    }
}

impl Client {
    async fn connect(url: &str) -> Client {
        Client::try_connect(url, &[]).await.unwrap_or_else(|e| panic!("connect {url}: {e}"))
    }

    async fn try_connect(url: &str, headers: &[(&'static str, &str)]) -> Result<Client, tungstenite::Error> {
        let mut req = url.into_client_request()?;
        for (k, v) in headers {
            req.headers_mut().insert(*k, v.parse().unwrap());
        }
        let (ws, _) = tokio_tungstenite::connect_async_with_config(req, None, true).await?;
        Ok(Client { ws, protocol: protocol_of(url, headers), seen: BTreeSet::new() })
    }

    async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.expect("send");
    }

    /// The next event; panics on close or after 15 s.
    async fn recv(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(T, self.ws.next()).await.expect("event within 15 s");
            match m {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).expect("server sends JSON");
                    assert!(v["event_id"].as_str().is_some_and(|s| s.starts_with("event_")), "event_id: {v}");
                    assert_known_client_event(self.protocol, &t);
                    self.seen.extend(v["type"].as_str().map(str::to_string));
                    return v;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }

    /// Events up to and including the first of type `ty`.
    async fn until(&mut self, ty: &str) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let v = self.recv().await;
            let done = v["type"] == ty;
            out.push(v);
            if done {
                return out;
            }
        }
    }

    /// Appends `samples` in `chunk_ms` pieces.
    async fn append(&mut self, samples: &[i16], chunk_ms: usize) {
        for c in samples.chunks(24 * chunk_ms) {
            self.send(json!({"type": "input_audio_buffer.append", "audio": b64(c)})).await;
        }
    }

    /// How the connection ends: `Some(code)` for a close frame, `None` for an abrupt end.
    async fn end(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(T, self.ws.next()).await.expect("end within 15 s") {
                Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }
}

fn b64(samples: &[i16]) -> String {
    STANDARD.encode(samples.iter().flat_map(|s| s.to_le_bytes()).collect::<Vec<u8>>())
}

fn unb64(s: &str) -> Vec<i16> {
    STANDARD.decode(s).unwrap().chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
}

fn types(evs: &[Value]) -> Vec<&str> {
    evs.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

/// The keynote recording (espeak-ng, 24 kHz mono).
fn keynote() -> Vec<i16> {
    let (spec, samples) = read_wav_i16(&root().join("configs/samples/keynote-en.wav"));
    assert_eq!((spec.sample_rate, spec.channels), (24_000, 1), "the session format already");
    samples
}

/// The first `ms` of speech of the keynote (from its first non-silent sample), then `silence_ms`.
fn speech(ms: usize, silence_ms: usize) -> Vec<i16> {
    let k = keynote();
    let first = k.iter().position(|s| s.unsigned_abs() > 300).unwrap();
    let mut v = k[first..first + ms * 24].to_vec();
    v.resize(v.len() + silence_ms * 24, 0);
    v
}

fn ga(h: &ServerHandle) -> String {
    format!("{}/v1/realtime?model=gpt-realtime", h.url())
}

/// A GA session with `turn_detection` as given (null = manual turns).
async fn ga_session(h: &ServerHandle, turn_detection: Value) -> Client {
    let mut c = Client::connect(&ga(h)).await;
    c.until("conversation.created").await;
    c.send(json!({"type": "session.update", "session": {"type": "realtime", "instructions": "Target language: es",
        "audio": {"input": {"turn_detection": turn_detection}}}}))
        .await;
    c.until("session.updated").await;
    c
}

/// Manual turn: append, commit, response.create; returns the events up to response.done.
async fn manual_turn(c: &mut Client, samples: &[i16]) -> Vec<Value> {
    c.append(samples, 100).await;
    c.send(json!({"type": "input_audio_buffer.commit"})).await;
    c.send(json!({"type": "response.create"})).await;
    c.until("response.done").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ga_session_created_and_updated_have_the_full_nested_config() {
    let h = fast().await;
    let mut c = Client::connect(&ga(&h)).await;
    let created = c.recv().await;
    assert_eq!(created["type"], "session.created");
    let s = &created["session"];
    assert_eq!((s["type"].as_str(), s["model"].as_str()), (Some("realtime"), Some("gpt-realtime")));
    assert!(s["id"].as_str().unwrap().starts_with("sess_"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let exp = s["expires_at"].as_u64().unwrap();
    assert!((now + 3590..=now + 3610).contains(&exp), "60 min cap: {exp} vs {now}");
    assert_eq!(s["output_modalities"], json!(["audio"]));
    assert_eq!(s["audio"]["input"]["format"], json!({"type": "audio/pcm", "rate": 24000}));
    assert_eq!(s["audio"]["input"]["turn_detection"]["type"], "server_vad");
    assert_eq!(s["audio"]["input"]["turn_detection"]["silence_duration_ms"], 500);
    assert_eq!(s["audio"]["output"]["voice"], "alloy");
    assert!(s.get("modalities").is_none() && s.get("voice").is_none(), "no beta fields");
    assert_eq!(c.recv().await["type"], "conversation.created");

    c.send(json!({"type": "session.update", "event_id": "u1", "session": {"type": "realtime",
        "instructions": "Target language: fr",
        "audio": {"input": {"transcription": {"model": "whisper-1", "language": "en"},
                            "turn_detection": {"type": "server_vad", "silence_duration_ms": 350, "interrupt_response": false}},
                  "output": {"voice": "marin"}}}}))
        .await;
    let u = c.recv().await;
    assert_eq!(u["type"], "session.updated", "{u}");
    let s = &u["session"];
    assert_eq!(s["instructions"], "Target language: fr");
    assert_eq!(s["audio"]["output"]["voice"], "marin");
    let td = &s["audio"]["input"]["turn_detection"];
    assert_eq!((td["silence_duration_ms"].as_u64(), td["interrupt_response"].as_bool()), (Some(350), Some(false)));
    assert_eq!(td["create_response"], true, "defaults fill an updated turn_detection");
    assert_eq!(s["audio"]["input"]["transcription"]["language"], "en");
    assert_eq!(s["id"], created["session"]["id"]);
    assert_eq!(s["audio"]["output"]["format"]["rate"], 24000, "untouched fields are still reported");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beta_header_and_azure_preview_get_the_flat_shape_and_beta_names() {
    let h = fast().await;
    let url = format!("{}/v1/realtime?model=gpt-4o-realtime-preview", h.url());
    let azure = format!("{}/openai/realtime?api-version=2025-04-01-preview&deployment=my-dep", h.url());
    for (url, headers) in [(url.as_str(), vec![("openai-beta", "realtime=v1")]), (azure.as_str(), vec![])] {
        let mut c = Client::try_connect(url, &headers).await.unwrap();
        let s = c.recv().await["session"].clone();
        assert_eq!(s["modalities"], json!(["text", "audio"]), "{url}");
        assert_eq!((s["voice"].as_str(), s["input_audio_format"].as_str()), (Some("alloy"), Some("pcm16")));
        assert_eq!(s["turn_detection"]["silence_duration_ms"], 200, "the 2024-10-01 default");
        assert!(s.get("audio").is_none() && s.get("type").is_none(), "no GA fields: {s}");
        c.recv().await;
        // A flat update (no `type` needed); a GA-shaped one is an unknown parameter.
        c.send(json!({"type": "session.update", "session": {"turn_detection": null, "voice": "echo"}})).await;
        assert_eq!(c.recv().await["session"]["voice"], "echo");
        c.send(json!({"type": "session.update", "event_id": "x", "session": {"type": "realtime"}})).await;
        let e = c.recv().await;
        assert_eq!(
            (e["error"]["code"].as_str(), e["error"]["param"].as_str()),
            (Some("unknown_parameter"), Some("session.type"))
        );
        let evs = manual_turn(&mut c, &speech(800, 0)).await;
        let t = types(&evs);
        assert!(t.contains(&"conversation.item.created") && t.contains(&"response.audio.delta"), "{t:?}");
        assert!(t.contains(&"response.audio_transcript.done"));
        let ga_only = ["conversation.item.added", "conversation.item.done"];
        assert!(!t.iter().any(|t| t.contains("output_audio") || ga_only.contains(t)), "{t:?}");
        let done = evs.last().unwrap();
        assert_eq!(done["response"]["output"][0]["content"][0]["type"], "audio", "beta part type");
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_events_get_error_events_with_type_code_param_and_event_id() {
    let h = fast().await;
    let mut c = ga_session(&h, Value::Null).await;
    let cases: Vec<(Value, &str, Option<&str>)> = vec![
        (
            json!({"type": "session.update", "session": {"instructions": "x"}}),
            "missing_required_parameter",
            Some("session.type"),
        ),
        (
            json!({"type": "session.update", "session": {"type": "realtime", "colour": 1}}),
            "unknown_parameter",
            Some("session.colour"),
        ),
        (
            json!({"type": "session.update", "session": {"type": "realtime", "audio": {"output": {"voice": "bob"}}}}),
            "invalid_value",
            Some("session.audio.output.voice"),
        ),
        (
            json!({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 2}}}}}),
            "invalid_value",
            Some("session.audio.input.turn_detection.threshold"),
        ),
        (
            json!({"type": "session.update", "session": {"type": "realtime", "instructions": 5}}),
            "invalid_type",
            Some("session.instructions"),
        ),
        (json!({"type": "input_audio_buffer.commit"}), "input_audio_buffer_commit_empty", None),
        (json!({"type": "input_audio_buffer.append", "audio": "%%%"}), "invalid_value", Some("audio")),
        (json!({"type": "input_audio_buffer.append", "audio": "AAAA"}), "invalid_value", Some("audio")),
        (json!({"type": "response.cancel"}), "response_cancel_not_active", None),
        (json!({"type": "conversation.item.delete", "item_id": "nope"}), "invalid_value", Some("item_id")),
        (json!({"type": "conversation.item.retrieve", "item_id": "nope"}), "invalid_value", Some("item_id")),
        (json!({"type": "response.make"}), "invalid_value", Some("type")),
        (json!({"type": "input_audio_buffer.clear", "extra": true}), "unknown_parameter", Some("extra")),
        (
            json!({"type": "conversation.item.create", "item": {"type": "message", "role": "assistant", "content": [{"type": "output_audio", "audio": ""}]}}),
            "invalid_value",
            Some("item.content[0].type"),
        ),
    ];
    for (i, (mut ev, code, param)) in cases.into_iter().enumerate() {
        let id = format!("evt_{i}");
        ev["event_id"] = json!(id);
        c.send(ev.clone()).await;
        let e = c.recv().await;
        assert_eq!(e["type"], "error", "{ev} → {e}");
        let err = &e["error"];
        assert_eq!(err["type"], "invalid_request_error", "{ev}");
        assert_eq!(err["code"].as_str(), Some(code), "{ev} → {e}");
        assert_eq!(err["param"].as_str(), param, "{ev} → {e}");
        assert_eq!(err["event_id"].as_str(), Some(id.as_str()));
        assert!(!err["message"].as_str().unwrap().is_empty());
    }
    // Not JSON, not an object, no type, binary: errors without an event id to echo.
    for raw in
        [Message::text("{nope"), Message::text("[1,2]"), Message::text("{\"a\":1}"), Message::binary(vec![1u8, 2, 3])]
    {
        c.ws.send(raw).await.unwrap();
        let e = c.recv().await;
        assert_eq!(e["type"], "error");
        assert!(e["error"]["code"].as_str().is_some(), "{e}");
    }
    // The session survived all of it.
    c.send(json!({"type": "session.update", "session": {"type": "realtime", "instructions": "still here"}})).await;
    assert_eq!(c.recv().await["session"]["instructions"], "still here");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_vad_finds_the_turns_of_the_keynote_and_answers_each_from_its_own_audio() {
    let h = fast().await;
    let mut c = Client::connect(&ga(&h)).await;
    c.until("conversation.created").await;
    c.send(json!({"type": "session.update", "session": {"type": "realtime", "instructions": "Target language: de",
        "audio": {"input": {"transcription": {"model": "whisper-1", "language": "en"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 300, "prefix_padding_ms": 300, "interrupt_response": false}}}}}))
        .await;
    c.until("session.updated").await;
    let mut input = keynote();
    input.resize(input.len() + 24 * 1500, 0);
    c.append(&input, 100).await;
    // The server handles events in order, so the error for this sentinel comes after every VAD
    // event of the audio; then wait for every turn's response (they stream asynchronously).
    c.send(json!({"type": "conversation.item.retrieve", "event_id": "sentinel", "item_id": "none"})).await;
    let mut evs = Vec::new();
    let mut sentinel = false;
    loop {
        let v = c.recv().await;
        sentinel |= v["type"] == "error" && v["error"]["event_id"] == "sentinel";
        evs.push(v);
        let n = |ty: &str| evs.iter().filter(|e| e["type"] == ty).count();
        if sentinel && n("response.done") == n("input_audio_buffer.speech_stopped") {
            break;
        }
    }
    evs.retain(|e| e["type"] != "error");
    let starts: Vec<&Value> = evs.iter().filter(|e| e["type"] == "input_audio_buffer.speech_started").collect();
    let stops: Vec<&Value> = evs.iter().filter(|e| e["type"] == "input_audio_buffer.speech_stopped").collect();
    assert!(starts.len() >= 2, "the keynote's sentence pauses split it into turns: {}", starts.len());
    assert_eq!(starts.len(), stops.len());
    let total_ms = (input.len() / 24) as u64;
    let first_voice_ms = (input.iter().position(|s| s.unsigned_abs() > 300).unwrap() / 24) as u64;
    let mut last_end = 0;
    for (s, e) in starts.iter().zip(&stops) {
        let (a, b) = (s["audio_start_ms"].as_u64().unwrap(), e["audio_end_ms"].as_u64().unwrap());
        assert_eq!(s["item_id"], e["item_id"]);
        assert!(last_end <= a && a < b && b <= total_ms, "{a}..{b} after {last_end}, total {total_ms}");
        assert!(b - a >= 400, "a turn is more than a click: {a}..{b}");
        last_end = b;
    }
    let a0 = starts[0]["audio_start_ms"].as_u64().unwrap();
    assert!(
        a0 <= first_voice_ms && first_voice_ms <= a0 + 300 + 40,
        "first start {a0} ms, voice at {first_voice_ms} ms"
    );
    let last_voice_ms = (input.iter().rposition(|s| s.unsigned_abs() > 300).unwrap() / 24) as u64;
    assert!(
        (last_voice_ms..=last_voice_ms + 300 + 40).contains(&last_end),
        "last turn ends {last_end} ms, voice {last_voice_ms} ms"
    );

    // Each response is the marker at the German frequency, then exactly the turn's audio.
    for (k, s) in starts.iter().enumerate() {
        let item = s["item_id"].as_str().unwrap();
        let (a, b) =
            (s["audio_start_ms"].as_u64().unwrap() as usize, stops[k]["audio_end_ms"].as_u64().unwrap() as usize);
        let turn = &input[a * 24..b * 24];
        let transcription = evs
            .iter()
            .find(|e| e["type"] == "conversation.item.input_audio_transcription.completed" && e["item_id"] == item)
            .unwrap();
        assert_eq!(
            transcription["transcript"].as_str().unwrap(),
            format!(
                "[en] utterance {}: {:.2} s, fingerprint {}",
                k + 1,
                turn.len() as f64 / 24_000.0,
                fingerprint(turn)
            )
        );
        // Responses may queue behind each other (interrupt_response false): find this turn's by its transcript.
        let done = evs
            .iter()
            .find(|e| {
                e["type"] == "response.done"
                    && e["response"]["output"][0]["content"][0]["transcript"]
                        .as_str()
                        .is_some_and(|t| t.starts_with(&format!("[de] utterance {}: ", k + 1)))
            })
            .unwrap_or_else(|| panic!("no response for turn {}", k + 1));
        let rid = done["response"]["id"].as_str().unwrap();
        let audio: Vec<i16> = evs
            .iter()
            .filter(|e| e["type"] == "response.output_audio.delta" && e["response_id"] == rid)
            .flat_map(|e| unb64(e["delta"].as_str().unwrap()))
            .collect();
        assert!(
            &audio[marker_samples()..] == turn,
            "turn {k}: output = marker + this turn's audio ({} vs {} samples)",
            audio.len() - marker_samples(),
            turn.len()
        );
        let m = &audio[..marker_samples()];
        assert!(goertzel(m, 24_000, marker_hz("de")) > 0.1 && goertzel(m, 24_000, marker_hz("es")) < 0.02);
        let tr = done["response"]["output"][0]["content"][0]["transcript"].as_str().unwrap();
        assert!(tr.starts_with(&format!("[de] utterance {}: ", k + 1)) && tr.ends_with(&fingerprint(turn)), "{tr}");
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_events_come_in_the_documented_order_with_usage() {
    let h = fast().await;
    let mut c = ga_session(&h, Value::Null).await;
    let input = speech(1000, 0);
    let evs = manual_turn(&mut c, &input).await;
    let t = types(&evs);
    let mut compact: Vec<&str> = Vec::new();
    for x in &t {
        if compact.last() != Some(x) || !x.ends_with(".delta") {
            compact.push(x);
        }
    }
    let deltas_a = t.iter().filter(|x| **x == "response.output_audio.delta").count();
    let deltas_t = t.iter().filter(|x| **x == "response.output_audio_transcript.delta").count();
    assert_eq!(deltas_a, (marker_samples() + input.len()).div_ceil(3600), "150 ms chunks");
    assert!(deltas_t >= 5);
    let start = t.iter().position(|x| *x == "response.created").unwrap();
    assert_eq!(
        &t[..start],
        ["input_audio_buffer.committed", "conversation.item.added", "conversation.item.done"],
        "commit comes first"
    );
    let body: Vec<&str> = t[start..].iter().copied().filter(|x| !x.ends_with(".delta")).collect();
    assert_eq!(
        body,
        [
            "response.created",
            "rate_limits.updated",
            "response.output_item.added",
            "conversation.item.added",
            "response.content_part.added",
            "response.output_audio.done",
            "response.output_audio_transcript.done",
            "response.content_part.done",
            "response.output_item.done",
            "conversation.item.done",
            "response.done",
        ]
    );
    // Deltas are interleaved audio/transcript, all between content_part.added and the dones.
    let first_tr = t.iter().position(|x| *x == "response.output_audio_transcript.delta").unwrap();
    let last_audio = t.iter().rposition(|x| *x == "response.output_audio.delta").unwrap();
    assert!(first_tr < last_audio, "interleaved");
    let done = &evs.last().unwrap()["response"];
    assert_eq!(done["status"], "completed");
    let u = &done["usage"];
    let out_audio = ((marker_samples() + input.len()) as u64 * 20).div_ceil(24_000);
    assert_eq!(u["output_token_details"]["audio_tokens"], out_audio, "20 tokens/s of output audio");
    assert_eq!(u["input_token_details"]["audio_tokens"], 10, "1 s of input at 10 tokens/s");
    assert_eq!(u["input_token_details"]["text_tokens"], "Target language: es".len().div_ceil(4) as u64, "instructions");
    let transcript = done["output"][0]["content"][0]["transcript"].as_str().unwrap();
    assert_eq!(u["output_token_details"]["text_tokens"], transcript.chars().count().div_ceil(4) as u64);
    assert_eq!(u["total_tokens"], u["input_tokens"].as_u64().unwrap() + u["output_tokens"].as_u64().unwrap());
    let rl = &evs[start + 1]["rate_limits"];
    assert_eq!(rl[0]["name"], "requests");
    let item_added = &evs[start + 3]["item"];
    assert_eq!(
        (item_added["status"].as_str(), item_added["content"].as_array().map(Vec::len)),
        (Some("in_progress"), Some(0))
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_tokens_grow_with_the_conversation_and_fall_back_after_deletes() {
    let h = fast().await;
    let mut c = ga_session(&h, Value::Null).await;
    let input = speech(1000, 0);
    let mut inputs = Vec::new();
    let mut items = Vec::new();
    for _ in 0..3 {
        let evs = manual_turn(&mut c, &input).await;
        let u = &evs.last().unwrap()["response"]["usage"];
        inputs.push(u["input_tokens"].as_u64().unwrap());
        for e in &evs {
            if e["type"] == "conversation.item.done" {
                items.push(e["item"]["id"].as_str().unwrap().to_string());
            }
        }
    }
    assert!(inputs[0] < inputs[1] && inputs[1] < inputs[2], "context grows: {inputs:?}");
    // Each turn adds the same: the previous answer (audio at 20 tokens/s + transcript) and 1 s of input.
    assert_eq!(inputs[2] - inputs[1], inputs[1] - inputs[0]);
    for id in &items {
        c.send(json!({"type": "conversation.item.delete", "item_id": id})).await;
        assert_eq!(c.recv().await["item_id"], json!(id));
    }
    let evs = manual_turn(&mut c, &input).await;
    let after = evs.last().unwrap()["response"]["usage"]["input_tokens"].as_u64().unwrap();
    assert_eq!(after, inputs[0], "deleting the history restores first-turn cost");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_cancels_with_interrupt_response_and_queues_without() {
    // Paced responses, so the first answer is still playing when the next turn starts: slow
    // (0.3× real time) where it gets cancelled anyway, real time where it must complete.
    for (interrupt, speed) in [(true, 0.3), (false, 1.0)] {
        let h = start(ServeOptions { engine_speed: speed, ..ServeOptions::default() }).await;
        let td = json!({"type": "server_vad", "silence_duration_ms": 300, "interrupt_response": interrupt});
        let mut c = ga_session(&h, td).await;
        c.append(&speech(1500, 400), 100).await;
        let first = c.until("response.created").await;
        assert!(types(&first).contains(&"input_audio_buffer.speech_stopped"));
        c.append(&speech(1200, 400), 100).await;
        let mut evs = c.until("response.done").await;
        let done = evs.last().unwrap()["response"].clone();
        if interrupt {
            assert_eq!(done["status"], "cancelled");
            assert_eq!(done["status_details"], json!({"type": "cancelled", "reason": "turn_detected"}));
            assert!(types(&evs).contains(&"input_audio_buffer.speech_started"));
            assert_eq!(done["output"][0]["status"], "incomplete");
            // The second turn gets its own response (no error); cancel it rather than wait.
            evs.extend(c.until("response.created").await);
            c.send(json!({"type": "response.cancel"})).await;
            evs.extend(c.until("response.done").await);
            assert_eq!(evs.last().unwrap()["response"]["status_details"]["reason"], "client_cancelled");
        } else {
            assert_eq!(done["status"], "completed", "not interrupted");
            // The second turn's response waited for the first, then ran to completion.
            evs.extend(c.until("response.done").await);
            assert_eq!(evs.last().unwrap()["response"]["status"], "completed");
            let tr = evs.last().unwrap()["response"]["output"][0]["content"][0]["transcript"].as_str().unwrap();
            assert!(tr.starts_with("[es] utterance 2:"), "{tr}");
        }
        assert!(!types(&evs).contains(&"error"), "{:?}", types(&evs));
        h.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_response_rules_cancel_and_text_items() {
    // Slow (0.2× real time): the response is surely still running when it gets cancelled.
    let h = start(ServeOptions { engine_speed: 0.2, ..ServeOptions::default() }).await;
    let mut c = ga_session(&h, Value::Null).await;
    c.append(&speech(2000, 0), 200).await;
    c.send(json!({"type": "input_audio_buffer.commit"})).await;
    c.send(json!({"type": "response.create"})).await;
    c.until("response.content_part.added").await;
    c.send(json!({"type": "response.create", "event_id": "again"})).await;
    let e = c.until("error").await.pop().unwrap();
    assert_eq!(e["error"]["code"], "conversation_already_has_active_response");
    assert_eq!(e["error"]["event_id"], "again");
    c.send(json!({"type": "response.cancel"})).await;
    let done = c.until("response.done").await.pop().unwrap();
    assert_eq!(done["response"]["status_details"]["reason"], "client_cancelled");
    // A text item and a text-only response.
    c.send(json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "hola"}]}}))
        .await;
    let added = c.until("conversation.item.done").await;
    assert_eq!(added[0]["type"], "conversation.item.added");
    c.send(json!({"type": "response.create", "response": {"output_modalities": ["text"], "instructions": "Target language: fr"}}))
        .await;
    let evs = c.until("response.done").await;
    let t = types(&evs);
    assert!(t.contains(&"response.output_text.delta") && !t.contains(&"response.output_audio.delta"), "{t:?}");
    let text = evs.iter().find(|e| e["type"] == "response.output_text.done").unwrap()["text"].as_str().unwrap();
    assert!(text.starts_with("[fr] utterance 2: 4 chars"), "{text}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_retrieve_and_delete_items() {
    let h = fast().await;
    let mut c = ga_session(&h, Value::Null).await;
    let evs = manual_turn(&mut c, &speech(1000, 0)).await;
    let item = evs.last().unwrap()["response"]["output"][0]["id"].as_str().unwrap().to_string();
    let have_ms = ((marker_samples() + 24_000) / 24) as u64;
    c.send(json!({"type": "conversation.item.truncate", "event_id": "t1", "item_id": item, "content_index": 0, "audio_end_ms": have_ms + 500}))
        .await;
    let e = c.recv().await;
    assert_eq!(e["type"], "error");
    assert_eq!(
        e["error"]["message"],
        format!("Audio content of {have_ms}ms is already shorter than {}ms", have_ms + 500)
    );
    assert_eq!(e["error"]["event_id"], "t1");
    c.send(
        json!({"type": "conversation.item.truncate", "item_id": "item_nope", "content_index": 0, "audio_end_ms": 0}),
    )
    .await;
    assert_eq!(c.recv().await["error"]["param"], "item_id");
    c.send(json!({"type": "conversation.item.truncate", "item_id": item, "content_index": 0, "audio_end_ms": 300}))
        .await;
    let t = c.recv().await;
    assert_eq!((t["type"].as_str(), t["audio_end_ms"].as_u64()), (Some("conversation.item.truncated"), Some(300)));
    c.send(json!({"type": "conversation.item.retrieve", "item_id": item})).await;
    let r = c.recv().await;
    assert_eq!(r["type"], "conversation.item.retrieved");
    assert_eq!(unb64(r["item"]["content"][0]["audio"].as_str().unwrap()).len(), 300 * 24, "audio cut at 300 ms");
    c.send(json!({"type": "conversation.item.delete", "item_id": item})).await;
    assert_eq!(c.recv().await["type"], "conversation.item.deleted");
    c.send(json!({"type": "conversation.item.retrieve", "item_id": item})).await;
    assert_eq!(c.recv().await["type"], "error");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn translation_path_streams_output_and_flushes_on_close() {
    let h = fast().await;
    let mut c = Client::connect(&format!("{}/v1/realtime/translations?model=gpt-realtime-translate", h.url())).await;
    let s = c.recv().await;
    assert_eq!((s["type"].as_str(), s["session"]["type"].as_str()), (Some("session.created"), Some("translation")));
    c.send(json!({"type": "session.update", "session": {"audio": {"output": {"language": "fr"},
        "input": {"transcription": {"model": "gpt-realtime-whisper"}}}}}))
        .await;
    let u = c.recv().await;
    assert_eq!(u["session"]["audio"]["output"]["language"], "fr", "{u}");
    c.send(json!({"type": "input_audio_buffer.append", "event_id": "wrong", "audio": ""})).await;
    let e = c.recv().await;
    assert_eq!((e["error"]["param"].as_str(), e["error"]["event_id"].as_str()), (Some("type"), Some("wrong")));
    // 3 s of speech and no trailing silence: only session.close ends the utterance.
    let input = speech(3000, 0);
    for chunk in input.chunks(4800) {
        c.send(json!({"type": "session.input_audio_buffer.append", "audio": b64(chunk)})).await;
    }
    c.send(json!({"type": "session.close"})).await;
    let evs = c.until("session.closed").await;
    let audio: Vec<i16> = evs
        .iter()
        .filter(|e| e["type"] == "session.output_audio.delta")
        .inspect(|e| {
            assert_eq!(
                (e["sample_rate"].as_u64(), e["channels"].as_u64(), e["format"].as_str()),
                (Some(24000), Some(1), Some("pcm16"))
            );
            assert_eq!(e["elapsed_ms"].as_u64().unwrap() % 200, 0);
        })
        .flat_map(|e| unb64(e["delta"].as_str().unwrap()))
        .collect();
    assert!(audio.len() >= marker_samples() + 2 * 24_000, "most of the speech came back: {}", audio.len());
    let m = &audio[..marker_samples()];
    assert!(goertzel(m, 24_000, marker_hz("fr")) > 0.1, "French marker");
    let out: String = evs
        .iter()
        .filter(|e| e["type"] == "session.output_transcript.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert!(out.starts_with("[fr] utterance 1: ") && out.ends_with(&fingerprint(&audio[marker_samples()..])), "{out}");
    let inp: String = evs
        .iter()
        .filter(|e| e["type"] == "session.input_transcript.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert!(inp.starts_with("[und] utterance 1: "), "{inp}");
    assert_eq!(c.end().await, Some(1000), "closed normally after session.closed");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_and_auth_like_the_real_services() {
    let h =
        start(ServeOptions { token: Some("sekrit".into()), engine_speed: f64::INFINITY, ..ServeOptions::default() })
            .await;
    let base = h.url();
    let status = |r: Result<Client, tungstenite::Error>| match r {
        Ok(_) => 101,
        Err(tungstenite::Error::Http(resp)) => {
            let body = String::from_utf8(resp.body().clone().unwrap_or_default()).unwrap();
            let v: Value = serde_json::from_str(&body).expect("JSON error body");
            assert!(v["error"]["message"].as_str().is_some());
            resp.status().as_u16()
        }
        Err(e) => panic!("{e}"),
    };
    let ok = [("authorization", "Bearer sekrit")];
    type Headers<'a> = Vec<(&'static str, &'a str)>;
    let cases: Vec<(String, Headers, u16)> = vec![
        (format!("{base}/v1/realtime?model=gpt-realtime"), vec![], 401),
        (format!("{base}/v1/realtime?model=gpt-realtime"), vec![("authorization", "Bearer nope")], 401),
        (format!("{base}/v1/realtime?model=gpt-realtime"), vec![("api-key", "sekrit")], 401),
        (format!("{base}/v1/realtime?model=gpt-realtime"), ok.to_vec(), 101),
        (format!("{base}/v1/realtime"), ok.to_vec(), 400),
        (format!("{base}/v2/realtime?model=x"), ok.to_vec(), 404),
        (format!("{base}/v1/realtime/translations?model=gpt-realtime-translate"), ok.to_vec(), 101),
        (format!("{base}/openai/v1/realtime?model=my-dep"), vec![("api-key", "sekrit")], 101),
        (format!("{base}/openai/v1/realtime?model=my-dep"), ok.to_vec(), 101),
        (format!("{base}/openai/v1/realtime?model=my-dep"), vec![("api-key", "wrong")], 401),
        (
            format!("{base}/openai/realtime?api-version=2025-04-01-preview&deployment=d"),
            vec![("api-key", "sekrit")],
            101,
        ),
        (format!("{base}/openai/realtime?api-version=2025-04-01-preview"), vec![("api-key", "sekrit")], 400),
        (format!("{base}/openai/realtime?deployment=d"), vec![("api-key", "sekrit")], 400),
    ];
    for (url, headers, want) in cases {
        assert_eq!(status(Client::try_connect(&url, &headers).await), want, "{url} {headers:?}");
    }
    // The Azure GA path speaks GA; the deployment is the model.
    let mut c = Client::try_connect(&format!("{base}/openai/v1/realtime?model=my-dep"), &[("api-key", "sekrit")])
        .await
        .unwrap();
    let s = c.recv().await;
    assert_eq!((s["session"]["type"].as_str(), s["session"]["model"].as_str()), (Some("realtime"), Some("my-dep")));
    assert!(h.stats().refused.load(std::sync::atomic::Ordering::Relaxed) >= 8);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_close_expire_delay_error_and_stall() {
    let h = fast().await;
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    // Expiry by control message: visible in expires_at, then session_expired and close 1001.
    let mut c = ga_session(&h, Value::Null).await;
    c.send(json!({"type": "tolk.fault", "expire_after_s": 0.6})).await;
    let u = c.recv().await;
    assert_eq!(u["type"], "session.updated");
    assert!(u["session"]["expires_at"].as_u64().unwrap() <= now() + 1);
    let e = c.recv().await;
    assert_eq!(
        (e["error"]["type"].as_str(), e["error"]["code"].as_str()),
        (Some("invalid_request_error"), Some("session_expired"))
    );
    assert!(e["error"]["message"].as_str().unwrap().starts_with("Your session hit the maximum duration of"));
    assert_eq!(c.end().await, Some(1001));
    // Abrupt close: no close frame.
    let mut c = ga_session(&h, Value::Null).await;
    c.send(json!({"type": "tolk.fault", "close_after_s": 0.2})).await;
    assert_eq!(c.end().await, None);
    // A close frame with a chosen code; an injected error; a delayed response; bad control.
    let mut c = ga_session(&h, Value::Null).await;
    c.send(json!({"type": "tolk.fault", "event_id": "f", "close_after_s": "soon"})).await;
    assert_eq!(c.recv().await["error"]["event_id"], "f");
    c.send(json!({"type": "tolk.fault", "error": {"type": "server_error", "message": "boom"}, "delay_ms": 400})).await;
    let e = c.recv().await;
    assert_eq!((e["error"]["type"].as_str(), e["error"]["message"].as_str()), (Some("server_error"), Some("boom")));
    let t0 = std::time::Instant::now();
    manual_turn(&mut c, &speech(200, 0)).await;
    assert!(t0.elapsed() >= Duration::from_millis(400), "the response waited for the delay");
    c.send(json!({"type": "tolk.fault", "close_after_s": 0, "close_code": 1011})).await;
    assert_eq!(c.end().await, Some(1011));
    // Stall: events stop; the socket stays open.
    let mut c = ga_session(&h, Value::Null).await;
    c.send(json!({"type": "tolk.fault", "stall_after_s": 0})).await;
    c.send(json!({"type": "session.update", "session": {"type": "realtime"}})).await;
    assert!(tokio::time::timeout(Duration::from_millis(700), c.ws.next()).await.is_err(), "stalled: nothing arrives");
    drop(c);
    h.shutdown().await;

    // Flags: expiry shows in session.created.
    let faults = Faults { expire_after: Some(Duration::from_secs(1)), ..Faults::default() };
    let h = start(ServeOptions { faults, engine_speed: f64::INFINITY, ..ServeOptions::default() }).await;
    let mut c = Client::connect(&ga(&h)).await;
    let s = c.recv().await;
    assert!(s["session"]["expires_at"].as_u64().unwrap() <= now() + 2);
    c.until("error").await;
    assert_eq!(c.end().await, Some(1001));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sessions_and_hostile_input_do_not_break_the_server() {
    let h = Arc::new(fast().await);
    let mut tasks = Vec::new();
    let input = Arc::new(speech(500, 0));
    for i in 0..64 {
        let (h, input) = (h.clone(), input.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = ga_session(&h, Value::Null).await;
            let evs = manual_turn(&mut c, &input).await;
            let done = &evs.last().unwrap()["response"];
            assert_eq!(done["status"], "completed", "session {i}");
            done["output"][0]["content"][0]["transcript"].as_str().unwrap().to_string()
        }));
    }
    for t in tasks {
        let tr = t.await.unwrap();
        assert!(tr.ends_with(&fingerprint(&input)), "{tr}");
    }
    // Oversized event: an error event, and the session goes on.
    let mut c = ga_session(&h, Value::Null).await;
    let huge = format!("{{\"type\":\"input_audio_buffer.append\",\"audio\":\"{}\"}}", "A".repeat(17 << 20));
    c.ws.send(Message::text(huge)).await.unwrap();
    let e = c.recv().await;
    assert_eq!(e["error"]["code"], "invalid_event", "{}", &e.to_string()[..200.min(e.to_string().len())]);
    // Deeply nested and odd JSON.
    c.ws.send(Message::text(format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)))).await.unwrap();
    assert_eq!(c.recv().await["type"], "error");
    c.send(json!({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad", "prefix_padding_ms": -1}}}}})).await;
    assert_eq!(c.recv().await["error"]["code"], "invalid_type");
    let evs = manual_turn(&mut c, &input).await;
    assert_eq!(evs.last().unwrap()["response"]["status"], "completed");
    assert!(h.stats().total.load(std::sync::atomic::Ordering::Relaxed) >= 65);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_sessions_with_going_away() {
    let h = fast().await;
    let mut a = ga_session(&h, Value::Null).await;
    let mut b = Client::connect(&format!("{}/v1/realtime/translations?model=gpt-realtime-translate", h.url())).await;
    b.recv().await;
    assert_eq!(h.stats().active.load(std::sync::atomic::Ordering::Relaxed), 2);
    h.shutdown().await;
    assert_eq!(a.end().await, Some(1001));
    assert_eq!(b.end().await, Some(1001));
}

/// `tolk serve` prints its URL first, then serves.
#[test]
fn cli_prints_the_url_then_serves() {
    use std::io::BufRead;
    let mut child = tolk_tests::tolk()
        .args(["serve", "--listen", "127.0.0.1:0", "--engine-speed", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("tolk serve: listening on ").unwrap_or_else(|| panic!("{line:?}")).to_string();
    assert!(url.starts_with("ws://127.0.0.1:") && !url.ends_with(":0"), "{url}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut c = Client::connect(&format!("{url}/v1/realtime?model=gpt-realtime")).await;
        assert_eq!(c.recv().await["type"], "session.created");
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let bad =
        tolk_tests::run(tolk_tests::tolk().args(["serve", "--fault-close-code", "1005", "--fault-close-after", "1"]));
    assert_eq!(bad.code, 2, "{:?}", bad.stderr);
}

/// The official `openai` Python SDK against `tolk serve`, validating every server event
/// against its pydantic types (tests/python/run.sh). Runs in CI (`CI=true`) always; elsewhere
/// only when a virtualenv with the SDK can be made (PyPI reachable), else it says why it skips.
#[test]
fn openai_python_sdk_accepts_every_event() {
    let script = root().join("tests/python/run.sh");
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .env("TOLK_BIN", tolk_tests::tolk_path())
        .env("TOLK_PYENV", tolk_tests::target_dir().join("pyenv"))
        .output()
        .expect("run tests/python/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) && !ci {
        eprintln!("skipped: {}", stderr.lines().last().unwrap_or("no python environment"));
        return;
    }
    assert!(out.status.success(), "tests/python/run.sh failed:\n{stdout}\n{stderr}");
    let last = stdout.lines().last().unwrap_or("");
    assert!(last.starts_with("sdk: ") && last.ends_with(" passed, 0 failed"), "{stdout}");
}

/// Load figures (not a pass/fail test; run by hand):
/// `TOLK_SERVE_BIN=target/release/tolk cargo test --test integration serve_load -- --ignored --nocapture`.
/// For each session count N (env `TOLK_LOAD_SESSIONS`, default 16,64,128), a separate
/// `tolk serve --engine-speed 1` process gets N sessions that each send the keynote at
/// real-time pace (one 20 ms frame per 20 ms, looped) for 10 s with server VAD, transcription and
/// automatic responses streaming back at real time. Reports the server's CPU (from /proc) and
/// how late `speech_stopped` arrives relative to the audio clock of its session.
#[test]
#[ignore = "load measurement for the closing note; run by hand"]
fn serve_load() {
    use std::io::BufRead;
    let bin = std::env::var("TOLK_SERVE_BIN").map(std::path::PathBuf::from).unwrap_or_else(|_| tolk_tests::tolk_path());
    let counts: Vec<usize> = std::env::var("TOLK_LOAD_SESSIONS")
        .unwrap_or_else(|_| "16,64,128".into())
        .split(',')
        .map(|n| n.trim().parse().unwrap())
        .collect();
    let secs = 10u64;
    let clk = 100.0; // USER_HZ
    for n in counts {
        let mut child = std::process::Command::new(&bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--engine-speed", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = format!("{}/v1/realtime?model=gpt-realtime", line.trim().rsplit(' ').next().unwrap());
        let cpu = |pid: u32| -> f64 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            let f: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
            (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / clk
        };
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let audio = Arc::new(keynote());
        let (lags, events, cpu_s, wall) = rt.block_on(async {
            let mut tasks = Vec::new();
            let mut clients = Vec::new();
            for _ in 0..n {
                let mut c = Client::connect(&url).await;
                c.until("conversation.created").await;
                c.send(json!({"type": "session.update", "session": {"type": "realtime", "instructions": "Target language: es",
                    "audio": {"input": {"transcription": {"model": "whisper-1"},
                        "turn_detection": {"type": "server_vad", "silence_duration_ms": 300, "interrupt_response": false}}}}}))
                    .await;
                c.until("session.updated").await;
                clients.push(c);
            }
            let cpu0 = cpu(child.id());
            let me0 = cpu(std::process::id());
            let t_start = std::time::Instant::now();
            for (i, c) in clients.into_iter().enumerate() {
                let audio = audio.clone();
                tasks.push(tokio::spawn(async move {
                    let (mut tx, mut rx) = c.ws.split();
                    // Stagger sessions over one frame so they do not all send at once.
                    tokio::time::sleep(Duration::from_micros((i as u64 * 20_000) / n as u64)).await;
                    let t0 = tokio::time::Instant::now();
                    let reader = tokio::spawn(async move {
                        let (mut lags, mut events) = (Vec::new(), 0u64);
                        while let Some(Ok(Message::Text(t))) = rx.next().await {
                            events += 1;
                            if t.contains("\"input_audio_buffer.speech_stopped\"") {
                                let v: Value = serde_json::from_str(&t).unwrap();
                                let due = Duration::from_millis(v["audio_end_ms"].as_u64().unwrap());
                                lags.push(t0.elapsed().saturating_sub(due).as_secs_f64() * 1e3);
                            }
                        }
                        (lags, events)
                    });
                    let mut tick = tokio::time::interval_at(t0, Duration::from_millis(20));
                    let frames = secs * 50;
                    let mut send_lag = 0f64;
                    for f in 0..frames as usize {
                        let due = tick.tick().await;
                        send_lag = send_lag.max(due.elapsed().as_secs_f64() * 1e3);
                        let start = (f * 480) % (audio.len() - 480);
                        let ev = json!({"type": "input_audio_buffer.append", "audio": b64(&audio[start..start + 480])});
                        if tx.send(Message::text(ev.to_string())).await.is_err() {
                            break;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let _ = tx.send(Message::Close(None)).await;
                    let (lags, events): (Vec<f64>, u64) =
                        tokio::time::timeout(Duration::from_secs(5), reader).await.map(|r| r.unwrap()).unwrap_or_default();
                    (lags, events, send_lag)
                }));
            }
            let (mut lags, mut events, mut send_lag) = (Vec::new(), 0, 0f64);
            for t in tasks {
                let (l, e, s) = t.await.unwrap();
                lags.extend(l);
                events += e;
                send_lag = send_lag.max(s);
            }
            println!("serve_load: {n:>4} sessions: the clients sent their frames up to {send_lag:.0} ms late");
            let wall = t_start.elapsed().as_secs_f64();
            println!("serve_load: {n:>4} sessions: the client process used {:.0}% of one core", 100.0 * (cpu(std::process::id()) - me0) / wall);
            (lags, events, cpu(child.id()) - cpu0, wall)
        });
        child.kill().unwrap();
        child.wait().unwrap();
        let mut lags = lags;
        lags.sort_by(f64::total_cmp);
        let pct = |p: f64| lags.get(((lags.len() as f64 - 1.0) * p) as usize).copied().unwrap_or(f64::NAN);
        println!(
            "serve_load: {n:>4} sessions × {secs} s real-time audio: server CPU {:.0}% of one core ({:.2} ms CPU per session-second), \
             {events} events out, speech_stopped lag p50 {:.0} ms p99 {:.0} ms max {:.0} ms ({} turns)",
            100.0 * cpu_s / wall,
            1e3 * cpu_s / (n as f64 * secs as f64),
            pct(0.5),
            pct(0.99),
            lags.last().copied().unwrap_or(f64::NAN),
            lags.len()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Clients nobody here wrote (issue 9) and abuse (issue 8).

/// A `tolk serve` child process (for figures of its own memory).
struct ServeProc {
    child: std::process::Child,
    /// `ws://ADDR` (or `wss://`).
    url: String,
}

impl ServeProc {
    fn start(args: &[&str]) -> ServeProc {
        use std::io::BufRead;
        let mut child = tolk_tests::tolk()
            .args(["serve", "--listen", "127.0.0.1:0", "--engine-speed", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().rsplit(' ').next().unwrap().to_string();
        assert!(url.contains("://127.0.0.1:"), "{line:?}");
        ServeProc { child, url }
    }

    fn addr(&self) -> String {
        self.url.split("://").nth(1).unwrap().to_string()
    }

    /// VmRSS in MiB.
    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS in /proc/PID/status");
        kib / 1024.0
    }

    /// Still running?
    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for ServeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One raw HTTP/1.x exchange: the request as given, then everything the server sends until it
/// closes. Returns (status code, head, body).
async fn raw_http(addr: &str, request: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(T, tcp.read_to_end(&mut buf)).await.expect("the server answers and closes").unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("an HTTP response: {text:?}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{head}"));
    (status, head.to_string(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_close_gets_its_close_frame_answered() {
    let h = fast().await;
    let tr = format!("{}/v1/realtime/translations?model=gpt-realtime-translate", h.url());
    for url in [ga(&h), tr] {
        let mut c = Client::connect(&url).await;
        c.recv().await;
        c.ws.send(Message::Close(Some(tungstenite::protocol::CloseFrame {
            code: tungstenite::protocol::frame::coding::CloseCode::Normal,
            reason: "bye".into(),
        })))
        .await
        .unwrap();
        // Whatever was in flight, then the server's answer to the close, then a clean end.
        let reply = loop {
            match tokio::time::timeout(T, c.ws.next()).await.expect("an answer within 15 s") {
                Some(Ok(Message::Close(f))) => break f,
                Some(Ok(_)) => continue,
                other => panic!("{url}: expected the server's close frame, got {other:?}"),
            }
        };
        assert_eq!(reply.map(|f| u16::from(f.code)), Some(1000), "{url}: the close code is echoed");
        assert!(tokio::time::timeout(T, c.ws.next()).await.unwrap().is_none(), "{url}: then a clean end");
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_style_subprotocols_select_realtime_and_carry_the_api_key() {
    let h =
        start(ServeOptions { token: Some("sekrit".into()), engine_speed: f64::INFINITY, ..ServeOptions::default() })
            .await;
    let offer = |key: &str| format!("realtime, openai-insecure-api-key.{key}");
    // tungstenite's client fails the handshake unless the server selects one of its offers.
    let ok = offer("sekrit");
    let mut req = ga(&h).into_client_request().unwrap();
    req.headers_mut().insert("sec-websocket-protocol", ok.parse().unwrap());
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.expect("handshake with subprotocols");
    assert_eq!(resp.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap()), Some("realtime"));
    let mut c = Client { ws, protocol: Protocol::Ga, seen: BTreeSet::new() };
    assert_eq!(c.recv().await["session"]["type"], "realtime");
    // A wrong key in the subprotocol is refused like a wrong Bearer token.
    let bad = offer("nope");
    match Client::try_connect(&ga(&h), &[("sec-websocket-protocol", &bad)]).await {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| "a session")),
    }
    // The browser spelling of the beta header selects the beta shape.
    let beta = "realtime, openai-insecure-api-key.sekrit, openai-beta.realtime-v1";
    let mut c = Client::try_connect(&ga(&h), &[("sec-websocket-protocol", beta)]).await.unwrap();
    assert_eq!(c.recv().await["session"]["modalities"], json!(["text", "audio"]), "beta shape");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_ga_path_accepts_the_deployment_form() {
    let h = fast().await;
    let url = format!("{}/openai/v1/realtime?api-version=2025-08-28&deployment=my-dep", h.url());
    let mut c = Client::try_connect(&url, &[]).await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let s = c.recv().await;
    assert_eq!((s["session"]["type"].as_str(), s["session"]["model"].as_str()), (Some("realtime"), Some("my-dep")));
    let url = format!("{}/openai/v1/realtime?deployment=my-dep", h.url());
    assert!(Client::try_connect(&url, &[]).await.is_ok(), "{url}");
    match Client::try_connect(&format!("{}/openai/v1/realtime?api-version=2025-08-28", h.url()), &[]).await {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 400),
        other => panic!("no model or deployment: expected 400, got {:?}", other.map(|_| "a session")),
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_requests_get_426_404_405_with_a_short_body() {
    let h = fast().await;
    let addr = h.local_addr().to_string();
    let cases = [
        ("GET /v1/realtime?model=gpt-realtime HTTP/1.1\r\nHost: x\r\n\r\n", 426),
        ("GET /v1/realtime?model=gpt-realtime HTTP/1.0\r\n\r\n", 426),
        ("GET /openai/v1/realtime?model=d HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", 426),
        ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        ("GET / HTTP/1.0\r\n\r\n", 404),
        ("GET /favicon.ico HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        ("POST /v1/realtime?model=gpt-realtime HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405),
        ("HEAD /v1/realtime?model=gpt-realtime HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        ("DELETE /v1/realtime/translations HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        ("GARBAGE\r\n\r\n", 400),
    ];
    for (req, want) in cases {
        let (status, head, body) = raw_http(&addr, req).await;
        assert_eq!(status, want, "{req:?} → {head}");
        let head_l = head.to_ascii_lowercase();
        let len: usize = head_l
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or_else(|| panic!("Content-Length in {head}"));
        if req.starts_with("HEAD ") {
            assert!(body.is_empty() && len > 0, "HEAD: length only, no body: {body:?}");
        } else {
            assert_eq!(body.len(), len, "{req:?}");
            let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{req:?}: JSON body {body:?}: {e}"));
            assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty() && m.len() < 300), "{body}");
        }
        match want {
            426 => assert!(head_l.contains("\r\nupgrade: websocket"), "{head}"),
            405 => assert!(head_l.contains("\r\nallow: get"), "{head}"),
            _ => {}
        }
    }
    // And WebSocket clients are served as before.
    let mut c = Client::connect(&ga(&h)).await;
    assert_eq!(c.recv().await["type"], "session.created");
    h.shutdown().await;
}

/// A WebSocket client whose frames are written raw (so a huge frame costs the test no memory):
/// the handshake by hand, then tungstenite reading the server's frames from the read half.
type RawRx = WebSocketStream<tokio::io::Join<tokio::net::tcp::OwnedReadHalf, tokio::io::Sink>>;

async fn raw_ws(addr: &str, path: &str) -> (RawRx, tokio::net::tcp::OwnedWriteHalf) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(tcp.read(&mut b).await.unwrap(), 1, "handshake answer: {:?}", String::from_utf8_lossy(&head));
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    let (r, tx) = tcp.into_split();
    let rx = WebSocketStream::from_raw_socket(
        tokio::io::join(r, tokio::io::sink()),
        tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    (rx, tx)
}

/// Writes one masked text frame (mask key 0, so the payload goes as is) of `len` bytes: an
/// `input_audio_buffer.append` whose audio is `A`s. False if the server stopped reading first.
async fn send_huge(tx: &mut tokio::net::tcp::OwnedWriteHalf, len: usize) -> bool {
    use tokio::io::AsyncWriteExt;
    let (pre, post) = (b"{\"type\":\"input_audio_buffer.append\",\"audio\":\"".as_slice(), b"\"}".as_slice());
    let mut header = vec![0x81u8, 0x80 | 127];
    header.extend_from_slice(&(len as u64).to_be_bytes());
    header.extend_from_slice(&[0, 0, 0, 0]);
    header.extend_from_slice(pre);
    if tx.write_all(&header).await.is_err() {
        return false;
    }
    let chunk = vec![b'A'; 64 << 10];
    let mut left = len - pre.len() - post.len();
    while left > 0 {
        let n = left.min(chunk.len());
        if tx.write_all(&chunk[..n]).await.is_err() {
            return false;
        }
        left -= n;
    }
    tx.write_all(post).await.is_ok()
}

/// Samples a process's VmRSS (MiB) every 10 ms until `stop`; returns the peak.
fn rss_sampler(pid: u32, stop: Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<f64> {
    std::thread::spawn(move || {
        let mut peak = 0f64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                let kib: f64 = s
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0.0);
                peak = peak.max(kib / 1024.0);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        peak
    })
}

/// Issue 8: 16 concurrent 60 MB frames took the server to 793 MB. Now messages being received
/// share one budget (`--max-frame-memory`): a message that would exceed it is refused with an
/// `error` (`server_busy`) and close 1013, the server stays up, and its memory stays bounded.
#[test]
fn concurrent_huge_frames_are_refused_beyond_the_global_budget() {
    const BUDGET_MIB: f64 = 64.0;
    const FRAME: usize = 40 << 20;
    const CLIENTS: usize = 16;
    let mut server = ServeProc::start(&["--max-frame-memory", "64"]);
    let addr = server.addr();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let before = server.rss_mib();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = rss_sampler(server.child.id(), stop.clone());
    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..CLIENTS {
            let addr = addr.clone();
            tasks.push(tokio::spawn(async move {
                let (mut rx, mut tx) = raw_ws(&addr, "/v1/realtime?model=gpt-realtime").await;
                // Read while writing: the server may refuse the frame before it is all sent.
                let reader = tokio::spawn(async move {
                    let mut codes = Vec::new();
                    loop {
                        let m = tokio::time::timeout(Duration::from_secs(60), rx.next()).await.expect("answer in 60 s");
                        match m {
                            Some(Ok(Message::Text(t))) => {
                                let v: Value = serde_json::from_str(&t).unwrap();
                                if v["type"] == "error" {
                                    let code = v["error"]["code"].as_str().unwrap_or("").to_string();
                                    let done = code == "invalid_event";
                                    codes.push((code, v["error"]["message"].as_str().unwrap_or("").to_string()));
                                    if done {
                                        return (codes, None);
                                    }
                                }
                            }
                            Some(Ok(Message::Close(f))) => return (codes, f.map(|f| u16::from(f.code))),
                            Some(Ok(_)) => {}
                            Some(Err(_)) | None => return (codes, None),
                        }
                    }
                });
                send_huge(&mut tx, FRAME).await;
                reader.await.unwrap()
            }));
        }
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        results
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    let refused = results
        .iter()
        .filter(|(codes, close)| {
            *close == Some(1013) && codes.iter().any(|(c, m)| c == "server_busy" && m.contains("--max-frame-memory"))
        })
        .count();
    let too_large = results.iter().filter(|(codes, _)| codes.iter().any(|(c, _)| c == "invalid_event")).count();
    println!(
        "frame budget: {CLIENTS} × {} MiB frames, budget {BUDGET_MIB} MiB: {refused} refused, {too_large} received \
         whole (answered 'too large'); server RSS before {before:.1} MiB, peak {peak:.1} MiB",
        FRAME >> 20
    );
    assert_eq!(refused + too_large, CLIENTS, "every client got an answer: {results:?}");
    // At most one 40 MiB message fits a 64 MiB budget at a time, so with 16 sent at once most
    // are refused (15 of 16 measured); a loaded machine may serialize a few.
    assert!(refused >= CLIENTS / 4, "many were refused: {refused}");
    assert!(peak <= before + 3.0 * BUDGET_MIB, "RSS bounded by the budget: peak {peak:.1} MiB, before {before:.1}");
    assert!(server.alive(), "the server stayed up");
    rt.block_on(async {
        let mut c = Client::connect(&format!("{}/v1/realtime?model=gpt-realtime", server.url)).await;
        assert_eq!(c.recv().await["type"], "session.created");
    });
}

/// Issue 8: 2,000 idle sessions took 290 MB that was not returned after they closed. Opens
/// 2,000 concurrent sessions on a `tolk serve` process, closes them, and checks its RSS comes
/// back (within 16 MiB of the start); prints before/peak/after.
#[test]
fn memory_returns_after_2000_sessions_close() {
    const N: usize = 2000;
    let mut server = ServeProc::start(&["--max-connections", "4000"]);
    let url = format!("{}/v1/realtime?model=gpt-realtime", server.url);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let open_all = |url: String| async move {
        let gate = Arc::new(tokio::sync::Semaphore::new(64));
        let mut tasks = Vec::new();
        for _ in 0..N {
            let (url, gate) = (url.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                let _p = gate.acquire().await.unwrap();
                let cfg = tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096);
                let (ws, _) =
                    tokio_tungstenite::connect_async_with_config(url.as_str(), Some(cfg), true).await.unwrap();
                let mut c = Client { ws, protocol: Protocol::Ga, seen: BTreeSet::new() };
                c.until("conversation.created").await;
                c
            }));
        }
        let mut clients = Vec::new();
        for t in tasks {
            clients.push(t.await.unwrap());
        }
        clients
    };
    let close_all = |clients: Vec<Client>| async move {
        let mut tasks = Vec::new();
        for mut c in clients {
            tasks.push(tokio::spawn(async move {
                let _ = c.ws.close(None).await;
                while let Ok(Some(Ok(_))) = tokio::time::timeout(T, c.ws.next()).await {}
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    };
    // Warm up (runtime threads, first allocations), then measure.
    rt.block_on(async { close_all(vec![Client::connect(&url).await]).await });
    std::thread::sleep(Duration::from_millis(300));
    let before = server.rss_mib();
    let mut figures = Vec::new();
    for round in 1..=2 {
        let clients = rt.block_on(open_all(url.clone()));
        let peak = server.rss_mib();
        rt.block_on(close_all(clients));
        // The server gives memory back within a second or two of the sessions ending.
        let t0 = std::time::Instant::now();
        let mut after = server.rss_mib();
        while after > before + 16.0 && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(100));
            after = server.rss_mib();
        }
        println!(
            "memory: round {round}: {N} sessions: RSS before {before:.1} MiB, open {peak:.1} MiB, after {after:.1} MiB"
        );
        figures.push((peak, after));
    }
    assert!(server.alive());
    for (peak, after) in figures {
        assert!(after <= before + 16.0, "RSS returns: before {before:.1} MiB, peak {peak:.1}, after {after:.1}");
        // An idle session costs some 30 KiB (it was 140 KiB with tungstenite's 128 KiB read buffer).
        let per_session_kib = (peak - before) * 1024.0 / N as f64;
        assert!(per_session_kib <= 64.0, "{per_session_kib:.0} KiB per idle session");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_are_closed_after_the_idle_timeout() {
    let h = start(ServeOptions {
        idle_timeout: Some(Duration::from_millis(800)),
        engine_speed: f64::INFINITY,
        ..ServeOptions::default()
    })
    .await;
    // A client that keeps talking (pings count) outlives the timeout…
    let mut busy = Client::connect(&ga(&h)).await;
    busy.until("conversation.created").await;
    let mut idle = Client::connect(&ga(&h)).await;
    idle.until("conversation.created").await;
    for _ in 0..8 {
        busy.ws.send(Message::Ping(vec![1u8].into())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // …a silent one gets an error naming the timeout, then close 1001.
    let e = idle.recv().await;
    assert_eq!((e["type"].as_str(), e["error"]["code"].as_str()), (Some("error"), Some("idle_timeout")), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("--idle-timeout"));
    assert_eq!(idle.end().await, Some(1001));
    busy.send(json!({"type": "session.update", "session": {"type": "realtime", "instructions": "awake"}})).await;
    assert_eq!(busy.until("session.updated").await.pop().unwrap()["session"]["instructions"], "awake");
    assert_eq!(h.stats().idle_closed.load(std::sync::atomic::Ordering::Relaxed), 1);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_get_503_and_the_slot_comes_back() {
    let h = start(ServeOptions { max_connections: 3, engine_speed: f64::INFINITY, ..ServeOptions::default() }).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut c = Client::connect(&ga(&h)).await;
        c.recv().await;
        open.push(c);
    }
    match Client::try_connect(&ga(&h), &[]).await {
        Err(tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), 503);
            assert_eq!(r.headers().get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
            let body: Value = serde_json::from_slice(r.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"]["code"], "too_many_connections");
            assert!(body["error"]["message"].as_str().unwrap().contains("--max-connections"), "{body}");
        }
        other => panic!("expected 503, got {:?}", other.map(|_| "a session")),
    }
    // One leaves (close handshake), and a new one gets in.
    let mut c = open.pop().unwrap();
    c.ws.close(None).await.unwrap();
    while let Some(Ok(_)) = c.ws.next().await {}
    let t0 = std::time::Instant::now();
    while h.stats().active.load(std::sync::atomic::Ordering::Relaxed) > 2 {
        assert!(t0.elapsed() < T, "the session ends");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut c = Client::connect(&ga(&h)).await;
    assert_eq!(c.recv().await["type"], "session.created");
    h.shutdown().await;
}

/// A self-signed certificate for 127.0.0.1 written as PEM files, and a client config trusting it.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, Arc<rustls::ClientConfig>) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (cert, key, Arc::new(client))
}

async fn wss_connect(url: &str, client: &Arc<rustls::ClientConfig>) -> Result<Client, tungstenite::Error> {
    let connector = tokio_tungstenite::Connector::Rustls(client.clone());
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(url, None, true, Some(connector)).await?;
    Ok(Client { ws, protocol: protocol_of(url, &[]), seen: BTreeSet::new() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_wss_with_a_pem_certificate_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, client) = self_signed(dir.path());
    let tls = tolk_core::tls::server_config(&cert, &key).unwrap();
    let h = start(ServeOptions { tls: Some(tls), engine_speed: f64::INFINITY, ..ServeOptions::default() }).await;
    assert!(h.url().starts_with("wss://127.0.0.1:"), "{}", h.url());
    let mut c = wss_connect(&ga(&h), &client).await.unwrap();
    assert_eq!(c.recv().await["type"], "session.created");
    let evs = {
        c.until("conversation.created").await;
        manual_turn(&mut c, &speech(500, 0)).await
    };
    assert_eq!(evs.last().unwrap()["response"]["status"], "completed");
    // Plain ws:// to the TLS port gets no session; the server goes on.
    let plain = ga(&h).replacen("wss://", "ws://", 1);
    assert!(Client::try_connect(&plain, &[]).await.is_err());
    // Non-WebSocket requests get their HTTP answers over TLS too.
    match wss_connect(&format!("{}/nope?model=x", h.url()), &client).await {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 404),
        other => panic!("expected 404, got {:?}", other.map(|_| "a session")),
    }
    let mut c = wss_connect(&ga(&h), &client).await.unwrap();
    assert_eq!(c.recv().await["type"], "session.created");
    h.shutdown().await;
}

#[test]
fn cli_serves_wss_and_names_a_bad_certificate_file() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, client) = self_signed(dir.path());
    let server = ServeProc::start(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    assert!(server.url.starts_with("wss://"), "{}", server.url);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut c = wss_connect(&format!("{}/v1/realtime?model=gpt-realtime", server.url), &client).await.unwrap();
        assert_eq!(c.recv().await["type"], "session.created");
    });
    let missing = dir.path().join("missing.pem");
    let out = tolk_tests::run(tolk_tests::tolk().args([
        "serve",
        "--tls-cert",
        missing.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]));
    assert_eq!(out.code, 2, "{:?}", out.stderr);
    assert!(out.stderr.contains("missing.pem"), "{}", out.stderr);
    let out = tolk_tests::run(tolk_tests::tolk().args(["serve", "--tls-cert", cert.to_str().unwrap()]));
    assert_eq!(out.code, 2, "--tls-cert needs --tls-key: {}", out.stderr);
    let out = tolk_tests::run(tolk_tests::tolk().args([
        "serve",
        "--tls-cert",
        key.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]));
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("no CERTIFICATE block"), "{}", out.stderr);
}

/// Issue 9: a widely used agent SDK sends `conversation.item.truncate` for the item still being
/// produced, then `response.cancel`. The service accepts that order; so does tolk serve: the
/// item keeps the audio up to `audio_end_ms`, and the cancel ends the response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_of_the_item_in_production_then_cancel_is_accepted() {
    // Slow (0.2× real time): the response is surely still running at the truncate.
    let h = start(ServeOptions { engine_speed: 0.2, ..ServeOptions::default() }).await;
    let mut c = ga_session(&h, Value::Null).await;
    c.append(&speech(2000, 0), 200).await;
    c.send(json!({"type": "input_audio_buffer.commit"})).await;
    c.send(json!({"type": "response.create"})).await;
    let evs = c.until("response.output_audio.delta").await;
    let item = evs.last().unwrap()["item_id"].as_str().unwrap().to_string();
    let got_ms = unb64(evs.last().unwrap()["delta"].as_str().unwrap()).len() as u64 / 24;
    let played = got_ms / 2;
    c.send(json!({"type": "conversation.item.truncate", "event_id": "tr", "item_id": item, "content_index": 0,
        "audio_end_ms": played}))
        .await;
    c.send(json!({"type": "response.cancel"})).await;
    let evs = c.until("response.done").await;
    let errors: Vec<&Value> = evs.iter().filter(|e| e["type"] == "error").collect();
    assert!(errors.is_empty(), "no error for truncate-before-cancel: {errors:?}");
    let t = evs.iter().find(|e| e["type"] == "conversation.item.truncated").expect("conversation.item.truncated");
    assert_eq!((t["item_id"].as_str(), t["audio_end_ms"].as_u64()), (Some(item.as_str()), Some(played)));
    let done = &evs.last().unwrap()["response"];
    assert_eq!(
        (done["status"].as_str(), done["status_details"]["reason"].as_str()),
        (Some("cancelled"), Some("client_cancelled"))
    );
    // The item keeps exactly the heard audio, and no audio after the cut was added to it.
    c.send(json!({"type": "conversation.item.retrieve", "item_id": item})).await;
    let r = c.until("conversation.item.retrieved").await.pop().unwrap();
    assert_eq!(unb64(r["item"]["content"][0]["audio"].as_str().unwrap()).len() as u64, played * 24);
    assert_eq!(r["item"]["status"], "incomplete");
    // Truncating beyond what was produced so far is still the service's error.
    c.send(json!({"type": "conversation.item.truncate", "item_id": item, "content_index": 0, "audio_end_ms": 999_999}))
        .await;
    let e = c.until("error").await.pop().unwrap();
    assert!(e["error"]["message"].as_str().unwrap().contains("is already shorter than 999999ms"), "{e}");
    h.shutdown().await;
}

/// Issue 9: a `session.update` naming another model than the URL's was refused whole, losing the
/// client's audio, VAD and transcription settings. The model stays the URL's (session.updated
/// reports it) and the rest of the update applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_update_naming_another_model_keeps_the_rest_of_the_update() {
    let h = fast().await;
    let mut c = Client::connect(&ga(&h)).await;
    c.until("conversation.created").await;
    c.send(
        json!({"type": "session.update", "event_id": "u", "session": {"type": "realtime", "model": "gpt-realtime-mini",
        "instructions": "Target language: fr",
        "audio": {"input": {"transcription": {"model": "whisper-1", "language": "en"},
                            "turn_detection": {"type": "server_vad", "silence_duration_ms": 350}},
                  "output": {"voice": "marin"}}}}),
    )
    .await;
    let u = c.recv().await;
    assert_eq!(u["type"], "session.updated", "{u}");
    let s = &u["session"];
    assert_eq!(s["model"], "gpt-realtime", "the URL's model stays");
    assert_eq!(s["instructions"], "Target language: fr");
    assert_eq!(s["audio"]["input"]["turn_detection"]["silence_duration_ms"], 350);
    assert_eq!(s["audio"]["input"]["transcription"]["language"], "en");
    assert_eq!(s["audio"]["output"]["voice"], "marin");
    // A bad value elsewhere in the same update is still refused whole.
    c.send(json!({"type": "session.update", "session": {"type": "realtime", "model": "x", "instructions": 5}})).await;
    assert_eq!(c.recv().await["error"]["param"], "session.instructions");
    // Azure: the deployment is the model; the beta shape behaves the same.
    let azure = format!("{}/openai/realtime?api-version=2025-04-01-preview&deployment=my-dep", h.url());
    let mut c = Client::connect(&azure).await;
    c.until("conversation.created").await;
    c.send(json!({"type": "session.update", "session": {"model": "gpt-4o-realtime-preview", "voice": "echo",
        "turn_detection": null}}))
        .await;
    let u = c.recv().await;
    assert_eq!((u["session"]["model"].as_str(), u["session"]["voice"].as_str()), (Some("my-dep"), Some("echo")), "{u}");
    assert!(u["session"]["turn_detection"].is_null());
    h.shutdown().await;
}

/// Issue 9: the events `tolk serve` emits and the events tolk's client knows are one
/// vocabulary. One session per protocol walks through the event catalogue — VAD turn with input
/// transcription, audio response, text response, item retrieve/truncate/delete, buffer clear,
/// an error, the translation stream and close — and every event is decoded strictly by the
/// client's codec for that protocol (in `Client::recv`). The sets below make sure the walk
/// really reaches each event, the renamed beta ones included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_9_every_server_event_decodes_as_a_known_client_event() {
    let h = fast().await;

    // GA.
    let mut c = Client::connect(&ga(&h)).await;
    c.until("conversation.created").await;
    c.send(json!({"type": "session.update", "session": {"type": "realtime", "instructions": "Target language: es",
        "audio": {"input": {"transcription": {"model": "whisper-1"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 300, "interrupt_response": false}}}}}))
        .await;
    c.until("session.updated").await;
    c.append(&speech(1500, 800), 100).await;
    let turn = c.until("response.done").await;
    let assistant = turn.last().unwrap()["response"]["output"][0]["id"].as_str().unwrap().to_string();
    if !c.seen.contains("conversation.item.input_audio_transcription.completed") {
        c.until("conversation.item.input_audio_transcription.completed").await;
    }
    c.send(json!({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"],
        "audio": {"input": {"turn_detection": null}}}}))
        .await;
    c.until("session.updated").await;
    c.send(json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "Hello there."}]}}))
        .await;
    let user = c.until("conversation.item.done").await.last().unwrap()["item"]["id"].as_str().unwrap().to_string();
    c.send(json!({"type": "response.create"})).await;
    c.until("response.done").await;
    c.send(json!({"type": "conversation.item.retrieve", "item_id": user})).await;
    c.until("conversation.item.retrieved").await;
    c.send(
        json!({"type": "conversation.item.truncate", "item_id": assistant, "content_index": 0, "audio_end_ms": 100}),
    )
    .await;
    c.until("conversation.item.truncated").await;
    c.send(json!({"type": "conversation.item.delete", "item_id": user})).await;
    c.until("conversation.item.deleted").await;
    c.send(json!({"type": "input_audio_buffer.clear"})).await;
    c.until("input_audio_buffer.cleared").await;
    c.send(json!({"type": "no.such.event"})).await;
    c.until("error").await;
    let ga_want = [
        "session.created",
        "session.updated",
        "conversation.created",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "input_audio_buffer.cleared",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.retrieved",
        "conversation.item.truncated",
        "conversation.item.deleted",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
        "rate_limits.updated",
        "response.output_item.added",
        "response.output_item.done",
        "response.content_part.added",
        "response.content_part.done",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.delta",
        "response.output_audio_transcript.done",
        "response.output_text.delta",
        "response.output_text.done",
        "response.done",
        "error",
    ];
    let missing: Vec<&str> = ga_want.iter().copied().filter(|t| !c.seen.contains(*t)).collect();
    assert!(missing.is_empty(), "GA walk did not reach {missing:?}; saw {:?}", c.seen);

    // Legacy (beta): manual turns.
    let url = format!("{}/v1/realtime?model=gpt-4o-realtime-preview", h.url());
    let mut c = Client::try_connect(&url, &[("openai-beta", "realtime=v1")]).await.unwrap();
    c.until("conversation.created").await;
    c.send(json!({"type": "session.update", "session": {"turn_detection": null, "voice": "echo",
        "input_audio_transcription": {"model": "whisper-1"}}}))
        .await;
    c.until("session.updated").await;
    c.append(&speech(1000, 0), 100).await;
    c.send(json!({"type": "input_audio_buffer.commit"})).await;
    c.send(json!({"type": "response.create"})).await;
    c.until("response.done").await;
    c.send(json!({"type": "session.update", "session": {"modalities": ["text"]}})).await;
    c.until("session.updated").await;
    c.send(json!({"type": "response.create"})).await;
    c.until("response.done").await;
    if !c.seen.contains("conversation.item.input_audio_transcription.completed") {
        c.until("conversation.item.input_audio_transcription.completed").await;
    }
    let beta_want = [
        "conversation.item.created",
        "response.audio.delta",
        "response.audio.done",
        "response.audio_transcript.delta",
        "response.audio_transcript.done",
        "response.text.delta",
        "response.text.done",
        "response.done",
    ];
    let missing: Vec<&str> = beta_want.iter().copied().filter(|t| !c.seen.contains(*t)).collect();
    assert!(missing.is_empty(), "beta walk did not reach {missing:?}; saw {:?}", c.seen);

    // Translation.
    let mut c = Client::connect(&format!("{}/v1/realtime/translations?model=gpt-realtime-translate", h.url())).await;
    c.until("session.created").await;
    c.send(json!({"type": "session.update", "session": {"audio": {"output": {"language": "de"},
        "input": {"transcription": {"model": "gpt-realtime-whisper"}}}}}))
        .await;
    c.until("session.updated").await;
    for chunk in speech(2000, 0).chunks(4800) {
        c.send(json!({"type": "session.input_audio_buffer.append", "audio": b64(chunk)})).await;
    }
    c.send(json!({"type": "session.close"})).await;
    c.until("session.closed").await;
    let all: BTreeSet<&str> = TranslationServerEvent::TYPES.iter().copied().filter(|t| *t != "error").collect();
    let missing: Vec<&str> = all.into_iter().filter(|t| !c.seen.contains(*t)).collect();
    assert!(missing.is_empty(), "translation walk did not reach {missing:?}; saw {:?}", c.seen);
    h.shutdown().await;
}
