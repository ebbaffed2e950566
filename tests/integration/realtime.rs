//! tolk's Realtime client (`tolk_core::realtime`) against tolk's own server (`tolk_core::serve`,
//! in-process on 127.0.0.1:0), for every protocol: GA, the Translation API, the Azure paths and
//! the legacy preview shape. The speech is `configs/samples/keynote-en.wav` brought to the
//! session format with `tolk_core::audio`. The server's test engine answers each utterance with
//! a per-language marker tone and the utterance itself, and a transcript naming the language and
//! utterance number — so the tests can tell that outputs are the right answers to the right
//! inputs. Every server event must be one the client knows (`SessionHandle::skipped_events`
//! stays 0).

use std::{path::Path, time::Duration};

use tolk_core::{
    audio::Converter,
    config::{Engine, parse_str},
    realtime::{self, CloseReason, Endpoint, ErrorClass, Input, Output, SessionHandle, SessionSpec},
    serve::{ServeOptions, Server, ServerHandle, engine as test_engine},
};
use tolk_plugin_api::{AudioFormat, SampleFormat, Samples};

/// Generous: the machine may be loaded; the tests assert on behaviour, not speed.
const PATIENCE: Duration = Duration::from_secs(30);
const INSTRUCTIONS: &str = "Interpret from English into Spanish.\nTarget language: es";

/// The keynote sample as 24 kHz mono PCM16, converted from whatever the file holds.
fn keynote() -> Vec<i16> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/samples/keynote-en.wav");
    let mut reader = hound::WavReader::open(&path).expect("configs/samples/keynote-en.wav");
    let spec = reader.spec();
    assert_eq!(spec.bits_per_sample, 16, "the sample is 16-bit PCM");
    let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let from = AudioFormat::new(spec.sample_rate, spec.channels, SampleFormat::I16);
    let mut conv = Converter::new(from, AudioFormat::SESSION).unwrap();
    let mut out = match conv.process(Samples::I16(&samples)) {
        Samples::I16(s) => s.to_vec(),
        Samples::F32(_) => unreachable!("i16 out"),
    };
    if let Samples::I16(rest) = conv.finish() {
        out.extend_from_slice(rest);
    }
    out
}

fn ms(n: u64) -> usize {
    (n * 24) as usize
}

/// `[engine]` from TOML, validated like a config file.
fn engine(toml: &str) -> Engine {
    let (config, errors) = parse_str(toml, "test.toml", Path::new("."));
    let engine_errors: Vec<String> =
        errors.iter().filter(|e| e.key.starts_with("engine")).map(ToString::to_string).collect();
    assert!(engine_errors.is_empty(), "{engine_errors:?}");
    config.engine
}

async fn serve(options: ServeOptions) -> ServerHandle {
    Server::bind(options).await.expect("bind 127.0.0.1:0").spawn()
}

fn spec(engine: &Engine) -> SessionSpec {
    let mut s = SessionSpec::new(engine, INSTRUCTIONS, "en", "es");
    // `marin` is a GA voice; the preview shape knows only the eight older ones.
    let voice = if engine.protocol == realtime::Protocol::Legacy { "alloy" } else { "marin" };
    s.voice = Some(voice.into());
    s
}

/// The next output. Every server event before it must have been one the client knows: an
/// event `tolk serve` sends and tolk's client skips (unknown or malformed) fails the test.
async fn next(h: &mut SessionHandle) -> Output {
    let o = tokio::time::timeout(PATIENCE, h.next()).await.expect("an output in time").expect("session still open");
    assert_eq!(h.skipped_events(), 0, "the client skipped server events it does not know (see the debug/warn log)");
    o
}

/// Outputs up to and including the first one matching `stop`.
async fn until(h: &mut SessionHandle, stop: impl Fn(&Output) -> bool) -> Vec<Output> {
    let mut seen = Vec::new();
    loop {
        let o = next(h).await;
        let done = stop(&o);
        seen.push(o);
        if done {
            return seen;
        }
    }
}

async fn send_audio(h: &SessionHandle, samples: &[i16], chunk_ms: u64) {
    let input = h.input();
    for chunk in samples.chunks(ms(chunk_ms)) {
        input.send(Input::Audio(chunk.to_vec())).await.unwrap();
    }
}

/// Sends a deliberately invalid event and waits for its error: everything the server did for
/// earlier input has then arrived (it handles events in order).
async fn sync(h: &mut SessionHandle, tag: &str) -> Vec<Output> {
    h.input().send(Input::Raw(format!(r#"{{"type":"tolk.sync","event_id":"{tag}"}}"#))).await.unwrap();
    let mut seen = until(h, |o| matches!(o, Output::Error(e) if e.event_id.as_deref() == Some(tag))).await;
    seen.pop();
    seen
}

/// True when `audio` starts with the test engine's marker tone for `lang` (and not another's).
fn has_marker(audio: &[i16], lang: &str) -> bool {
    let n = test_engine::marker_samples();
    if audio.len() < n {
        return false;
    }
    let head = &audio[..n];
    let mine = test_engine::goertzel(head, 24_000, test_engine::marker_hz(lang));
    let other = test_engine::goertzel(head, 24_000, test_engine::marker_hz("fr"));
    mine > 10.0 * other
}

/// One finished response, gathered from outputs.
#[derive(Debug, Default)]
struct Response {
    id: String,
    audio: Vec<i16>,
    deltas: String,
    transcript: String,
    status: String,
    input_tokens: u64,
    output_items: Vec<String>,
}

fn responses(outputs: &[Output]) -> Vec<Response> {
    let mut done: Vec<Response> = Vec::new();
    let mut open: Vec<Response> = Vec::new();
    let find = |open: &mut Vec<Response>, id: &str| {
        open.iter().position(|r| r.id == id).expect("output of a started response")
    };
    for o in outputs {
        match o {
            Output::ResponseStarted { response_id } => {
                open.push(Response { id: response_id.clone(), ..Default::default() })
            }
            Output::Audio { response_id, samples, .. } => {
                let i = find(&mut open, response_id);
                open[i].audio.extend_from_slice(samples);
            }
            Output::TranscriptDelta { response_id, delta, .. } => {
                let i = find(&mut open, response_id);
                open[i].deltas.push_str(delta);
            }
            Output::Transcript { response_id, text, .. } => {
                let i = find(&mut open, response_id);
                open[i].transcript = text.clone();
            }
            Output::ResponseDone { response_id, status, usage, output_item_ids } => {
                let i = find(&mut open, response_id);
                let mut r = open.remove(i);
                r.status = status.clone();
                r.input_tokens = usage.input_tokens;
                r.output_items = output_item_ids.clone();
                done.push(r);
            }
            _ => {}
        }
    }
    done
}

// Issue 3: GA session, VAD-driven turns from real speech, full response sequence, usage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_3_ga_vad_turns_from_speech() {
    let server = serve(ServeOptions::default()).await;
    // The keynote's pauses are about 0.4 s: a shorter silence than the default 500 ms ends a turn.
    let e = engine(&format!(
        "[engine]\nprovider = \"local\"\nurl = \"{}/v1/realtime\"\nsilence_duration_ms = 300\nvad_threshold = 0.6\n",
        server.url()
    ));
    let mut h = realtime::open(spec(&e)).await.unwrap();
    assert!(h.session_id().starts_with("sess_"), "{}", h.session_id());
    assert!(h.expires_at().is_some());
    let speech = keynote();
    send_audio(&h, &speech[..ms(12_000)], 100).await;
    send_audio(&h, &vec![0; ms(1500)], 100).await;
    let mut outputs = sync(&mut h, "sync1").await;
    let committed: Vec<String> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Committed { item_id } => Some(item_id.clone()),
            _ => None,
        })
        .collect();
    assert!(committed.len() >= 2, "the keynote's first 12 s hold several turns: {outputs:?}");
    // VAD events come in order, with growing positions.
    let mut last_end = 0;
    for o in &outputs {
        match o {
            Output::SpeechStarted { audio_start_ms, .. } => assert!(*audio_start_ms >= last_end),
            Output::SpeechStopped { audio_end_ms, .. } => {
                assert!(*audio_end_ms > last_end);
                last_end = *audio_end_ms;
            }
            _ => {}
        }
    }
    // Every turn gets its answer (the server queues VAD responses).
    let mut done = responses(&outputs).len();
    while done < committed.len() {
        let o = next(&mut h).await;
        done += usize::from(matches!(o, Output::ResponseDone { .. }));
        outputs.push(o);
    }
    let answers = responses(&outputs);
    assert_eq!(answers.len(), committed.len());
    for (k, r) in answers.iter().enumerate() {
        assert_eq!(r.status, "completed");
        assert!(has_marker(&r.audio, "es"), "response {k} starts with the Spanish marker");
        assert_eq!(r.deltas, r.transcript, "deltas add up to the transcript");
        assert!(r.transcript.starts_with(&format!("[es] utterance {}:", k + 1)), "{}", r.transcript);
        assert!(!r.output_items.is_empty());
    }
    // Each response re-reads the conversation: input tokens grow turn by turn.
    for pair in answers.windows(2) {
        assert!(pair[1].input_tokens > pair[0].input_tokens, "{} then {}", pair[0].input_tokens, pair[1].input_tokens);
    }
    // Source captions for the turns (they may trail the responses).
    let mut captions: Vec<String> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::SourceTranscript { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect();
    while captions.len() < committed.len() {
        if let Output::SourceTranscript { text, .. } = next(&mut h).await {
            captions.push(text);
        }
    }
    assert!(captions.iter().all(|c| c.starts_with("[en] utterance")), "{captions:?}");
    h.input().send(Input::Close).await.unwrap();
    let rest = until(&mut h, |o| matches!(o, Output::Closed { .. })).await;
    assert_eq!(rest.last(), Some(&Output::Closed { reason: CloseReason::Normal }));
    server.shutdown().await;
}

/// One manual turn: the clip, commit, response; returns the response and the user item.
async fn manual_turn(h: &mut SessionHandle, clip: &[i16]) -> (Response, String) {
    send_audio(h, clip, 200).await;
    h.input().send(Input::Commit).await.unwrap();
    h.input().send(Input::CreateResponse).await.unwrap();
    let outputs = until(h, |o| matches!(o, Output::ResponseDone { .. })).await;
    let user = outputs
        .iter()
        .find_map(|o| match o {
            Output::Committed { item_id } => Some(item_id.clone()),
            _ => None,
        })
        .expect("the commit was confirmed");
    let mut r = responses(&outputs);
    assert_eq!(r.len(), 1, "{outputs:?}");
    (r.remove(0), user)
}

// Issue 3: usage accounting — input tokens grow with context; deleting items flattens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_3_usage_grows_with_context_and_deletion_resets_it() {
    let server = serve(ServeOptions::default()).await;
    let e = engine(&format!(
        "[engine]\nprovider = \"local\"\nurl = \"{}/v1/realtime\"\nturn_detection = \"none\"\n",
        server.url()
    ));
    let mut h = realtime::open(spec(&e)).await.unwrap();
    let clip = &keynote()[..ms(2000)];
    let mut tokens = Vec::new();
    let mut items = Vec::new();
    for _ in 0..3 {
        let (r, user) = manual_turn(&mut h, clip).await;
        assert!(has_marker(&r.audio, "es"));
        tokens.push(r.input_tokens);
        items.push(user);
        items.extend(r.output_items);
    }
    assert!(tokens[0] < tokens[1] && tokens[1] < tokens[2], "{tokens:?}");
    assert_eq!(tokens[1] - tokens[0], tokens[2] - tokens[1], "the same turn adds the same context: {tokens:?}");
    for item in &items {
        h.input().send(Input::DeleteItem(item.clone())).await.unwrap();
        let seen = until(&mut h, |o| matches!(o, Output::ItemDeleted { .. } | Output::Error(_))).await;
        assert_eq!(seen.last(), Some(&Output::ItemDeleted { item_id: item.clone() }));
    }
    let (r, _) = manual_turn(&mut h, clip).await;
    assert_eq!(r.input_tokens, tokens[0], "after deleting the history a turn costs what the first did");
    server.shutdown().await;
}

// Issue 3: the Realtime Translation API — continuous, no turns, synthetic responses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_3_translation_protocol_streams_continuously() {
    let server = serve(ServeOptions::default()).await;
    let e = engine(&format!(
        "[engine]\nprovider = \"local\"\nprotocol = \"translation\"\nurl = \"{}/v1/realtime/translations\"\n",
        server.url()
    ));
    assert_eq!(e.transcription_model.as_deref(), Some("gpt-realtime-whisper"));
    let mut h = realtime::open(spec(&e)).await.unwrap();
    assert_eq!(h.protocol(), realtime::Protocol::Translation);
    let speech = keynote();
    send_audio(&h, &speech[..ms(8000)], 200).await;
    send_audio(&h, &vec![0; ms(2000)], 200).await;
    // Close: the server flushes what is pending, answers session.closed, and the socket closes.
    h.input().send(Input::Close).await.unwrap();
    let outputs = until(&mut h, |o| matches!(o, Output::Closed { .. })).await;
    assert_eq!(outputs.last(), Some(&Output::Closed { reason: CloseReason::Normal }));
    assert!(tokio::time::timeout(PATIENCE, h.next()).await.unwrap().is_none());
    let answers = responses(&outputs);
    assert!(!answers.is_empty(), "{outputs:?}");
    for r in &answers {
        assert!(r.id.starts_with("tr_resp_"), "{}", r.id);
        assert_eq!(r.status, "completed");
        assert_eq!(r.input_tokens, 0, "the translation API reports no usage");
    }
    assert!(has_marker(&answers[0].audio, "es"), "the first output starts with the Spanish marker");
    let text: String = answers.iter().map(|r| r.transcript.as_str()).collect();
    assert!(text.contains("[es]"), "{text}");
    assert!(
        outputs
            .iter()
            .any(|o| matches!(o, Output::SourceTranscriptDelta { item_id, .. } if item_id.starts_with("tr_in_"))),
        "source captions stream too"
    );
    server.shutdown().await;
}

// Issue 3: the Azure GA path (`api-key` header, deployment as model) and the Azure preview
// (legacy) path with `api-version`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_3_azure_paths_with_api_key() {
    let server = serve(ServeOptions { token: Some("az-test-key".into()), ..ServeOptions::default() }).await;
    let env = |k: &str| (k == "AZURE_OPENAI_API_KEY").then(|| "az-test-key".to_string());
    let clip = &keynote()[..ms(1500)];
    for protocol in ["ga", "legacy"] {
        let e = engine(&format!(
            "[engine]\nprovider = \"azure\"\nmodel = \"interp-deployment\"\nendpoint = \"http://{}\"\nprotocol = \"{protocol}\"\nturn_detection = \"none\"\n",
            server.local_addr()
        ));
        let endpoint = Endpoint::resolve(&e, None, env).unwrap();
        let path = if protocol == "ga" {
            "/openai/v1/realtime?model=interp-deployment"
        } else {
            "/openai/realtime?api-version=2025-04-01-preview&deployment=interp-deployment"
        };
        assert!(endpoint.url.ends_with(path), "{}", endpoint.url);
        let mut h = realtime::open_at(spec(&e), &endpoint).await.unwrap();
        let (r, _) = manual_turn(&mut h, clip).await;
        assert!(has_marker(&r.audio, "es"), "{protocol}");
        assert!(r.transcript.starts_with("[es] utterance 1:"), "{protocol}: {}", r.transcript);
        assert!(r.input_tokens > 0);
    }
    // A wrong key is refused at the handshake, and the error does not show it.
    let e = engine(&format!(
        "[engine]\nprovider = \"azure\"\nmodel = \"d\"\nendpoint = \"http://{}\"\n",
        server.local_addr()
    ));
    let endpoint = Endpoint::resolve(&e, None, |_| Some("wrong-secret-key".into())).unwrap();
    let err = realtime::open_at(spec(&e), &endpoint).await.unwrap_err();
    assert_eq!(err.kind(), realtime::RealtimeErrorKind::Connect);
    assert!(err.to_string().contains("401"), "{err}");
    assert!(
        !err.to_string().contains("wrong-secret-key") && !format!("{err:?}{endpoint:?}").contains("wrong-secret-key")
    );
    // A missing key variable is a one-line error naming it.
    let err = Endpoint::resolve(&e, None, |_| None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "engine.api_key_env: environment variable AZURE_OPENAI_API_KEY is not set (provider \"azure\" needs an API key)"
    );
    server.shutdown().await;
}

// Issue 3: the legacy 2024-10-01 preview shape, selected by the `OpenAI-Beta` header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_3_legacy_protocol_with_vad() {
    let server = serve(ServeOptions::default()).await;
    let e = engine(&format!(
        "[engine]\nprovider = \"local\"\nprotocol = \"legacy\"\nurl = \"{}/v1/realtime\"\n",
        server.url()
    ));
    assert_eq!(e.transcription_model.as_deref(), Some("whisper-1"));
    let mut h = realtime::open(spec(&e)).await.unwrap();
    let speech = keynote();
    send_audio(&h, &speech[..ms(4000)], 100).await;
    send_audio(&h, &vec![0; ms(1500)], 100).await;
    let outputs = until(&mut h, |o| matches!(o, Output::ResponseDone { .. })).await;
    assert!(outputs.iter().any(|o| matches!(o, Output::SpeechStarted { .. })));
    assert!(outputs.iter().any(|o| matches!(o, Output::Committed { .. })));
    let r = responses(&outputs);
    assert_eq!(r.len(), 1);
    assert!(has_marker(&r[0].audio, "es"));
    assert!(r[0].transcript.starts_with("[es] utterance 1:"), "{}", r[0].transcript);
    assert_eq!(r[0].deltas, r[0].transcript);
    server.shutdown().await;
}

// Issue 3: malformed client events get classified errors echoing the event id; the session
// stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_3_malformed_client_events_get_errors() {
    let server = serve(ServeOptions::default()).await;
    let e = engine(&format!(
        "[engine]\nprovider = \"local\"\nurl = \"{}/v1/realtime\"\nturn_detection = \"none\"\n",
        server.url()
    ));
    let mut h = realtime::open(spec(&e)).await.unwrap();
    let cases: [(&str, Option<&str>, ErrorClass, Option<&str>); 5] = [
        (r#"{"type":"no.such.event","event_id":"bad1"}"#, Some("bad1"), ErrorClass::Invalid, None),
        (
            r#"{"type":"input_audio_buffer.commit","event_id":"bad2"}"#,
            Some("bad2"),
            ErrorClass::Benign,
            Some("input_audio_buffer_commit_empty"),
        ),
        (
            r#"{"type":"response.cancel","event_id":"bad3"}"#,
            Some("bad3"),
            ErrorClass::Benign,
            Some("response_cancel_not_active"),
        ),
        (
            r#"{"type":"session.update","event_id":"bad4","session":{"type":"realtime","audio":{"output":{"voice":"nobody"}}}}"#,
            Some("bad4"),
            ErrorClass::Invalid,
            None,
        ),
        ("this is not json", None, ErrorClass::Invalid, None),
    ];
    for (raw, event_id, class, code) in cases {
        h.input().send(Input::Raw(raw.into())).await.unwrap();
        let Output::Error(err) = next(&mut h).await else { panic!("an error for {raw}") };
        assert_eq!(err.event_id.as_deref(), event_id, "{raw}: {err}");
        assert_eq!(err.class, class, "{raw}: {err}");
        assert_eq!(err.kind, "invalid_request_error", "{raw}: {err}");
        if let Some(code) = code {
            assert_eq!(err.code.as_deref(), Some(code));
        }
        assert!(!err.message.is_empty());
    }
    let (r, _) = manual_turn(&mut h, &keynote()[..ms(1000)]).await;
    assert_eq!(r.status, "completed", "the session is still usable");
    server.shutdown().await;
}

// Issue 3: conversation mode — speech during playback stops, truncates at the played position
// (clamped to what was received), cancels, and drops the cancelled response's late deltas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_3_conversation_mode_truncates_and_cancels() {
    // Response audio at twice real time, as a real service sends it faster than it plays: the
    // answer is still streaming, and ahead of playback, when the speaker barges in.
    let server = serve(ServeOptions { engine_speed: 2.0, ..ServeOptions::default() }).await;
    let e = engine(&format!(
        "[engine]\nprovider = \"local\"\nurl = \"{}/v1/realtime\"\nmode = \"conversation\"\n",
        server.url()
    ));
    assert!(matches!(e.turn_detection, tolk_core::config::TurnDetection::ServerVad { interrupt_response: true, .. }));
    let mut h = realtime::open(spec(&e)).await.unwrap();
    let speech = keynote();
    send_audio(&h, &speech[..ms(4000)], 100).await;
    send_audio(&h, &vec![0; ms(1000)], 100).await;
    let before = until(&mut h, |o| matches!(o, Output::Audio { .. })).await;
    let Some(Output::Audio { response_id, item_id, .. }) = before.last().cloned() else { unreachable!() };
    // The speaker talks again while the answer plays.
    send_audio(&h, &speech[ms(4000)..ms(7000)], 100).await;
    let mut outputs = until(&mut h, |o| matches!(o, Output::Interrupted { .. })).await;
    let Some(Output::Interrupted { response_id: cut, item_id: cut_item, played_ms }) = outputs.pop() else {
        unreachable!()
    };
    assert_eq!((&cut, &cut_item), (&response_id, &item_id));
    let received: usize = before
        .iter()
        .chain(&outputs)
        .map(|o| match o {
            Output::Audio { response_id: r, samples, .. } if *r == cut => samples.len(),
            _ => 0,
        })
        .sum();
    assert!(played_ms <= (received as u64) * 1000 / 24_000, "played {played_ms} ms of {received} samples");
    // The cancelled response's done and the truncation's confirmation, in either order.
    let mut after = until(&mut h, |o| {
        matches!(o, Output::ResponseDone { response_id, .. } if *response_id == cut)
            || matches!(o, Output::Truncated { .. } | Output::Error(_))
    })
    .await;
    after.extend(
        until(&mut h, |o| {
            matches!(o, Output::ResponseDone { response_id, .. } if *response_id == cut)
                || matches!(o, Output::Truncated { .. } | Output::Error(_))
        })
        .await,
    );
    assert!(
        !after.iter().any(|o| matches!(o, Output::Audio { response_id, .. } | Output::TranscriptDelta { response_id, .. } if *response_id == cut)),
        "late deltas of the cancelled response are dropped: {after:?}"
    );
    assert!(after.contains(&Output::Truncated { item_id: cut_item.clone(), audio_end_ms: played_ms }), "{after:?}");
    assert!(
        after.iter().any(|o| matches!(o, Output::ResponseDone { status, .. } if status == "cancelled")),
        "{after:?}"
    );
    server.shutdown().await;
}

// Issue 3: close reasons tell expiry (rotate) from a dropped connection (reconnect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_3_expiry_and_drop_are_told_apart() {
    let server = serve(ServeOptions::default()).await;
    let e = engine(&format!("[engine]\nprovider = \"local\"\nurl = \"{}/v1/realtime\"\n", server.url()));
    let mut h = realtime::open(spec(&e)).await.unwrap();
    let deadline = h.expires_at().expect("session.created carries expires_at");
    h.input().send(Input::Raw(r#"{"type":"tolk.fault","expire_after_s":0.2}"#.into())).await.unwrap();
    let outputs = until(&mut h, |o| matches!(o, Output::Closed { .. })).await;
    // The moved deadline (announced with session.updated) is visible on the handle.
    assert!(h.expires_at().unwrap() < deadline, "{:?} vs {deadline}", h.expires_at());
    assert!(
        outputs.iter().any(|o| matches!(o, Output::Error(e) if e.class == ErrorClass::Reconnect && e.code.as_deref() == Some("session_expired"))),
        "{outputs:?}"
    );
    assert_eq!(outputs.last(), Some(&Output::Closed { reason: CloseReason::Expired }));
    let mut h = realtime::open(spec(&e)).await.unwrap();
    h.input().send(Input::Raw(r#"{"type":"tolk.fault","close_after_s":0.2}"#.into())).await.unwrap();
    let outputs = until(&mut h, |o| matches!(o, Output::Closed { .. })).await;
    assert_eq!(outputs.last(), Some(&Output::Closed { reason: CloseReason::Dropped }));
    server.shutdown().await;
}

// Issue 3: the shipped engine configs validate, and engine keys are checked with one-line errors.
#[test]
fn issue_3_engine_configs_and_errors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    for name in ["azure.toml", "translate-api.toml"] {
        let (config, errors) = tolk_core::config::parse(&root.join(name));
        assert!(errors.is_empty(), "{name}: {errors:?}");
        assert!(!config.routes.is_empty(), "{name} has routes");
    }
    let cases = [
        (
            "protocol = \"gaa\"",
            r#"engine.protocol: unknown value "gaa" (did you mean "ga"?) (expected one of: ga, legacy, translation)"#,
        ),
        (
            "provider = \"openai-translate\"\nprotocol = \"ga\"",
            r#"engine.protocol: provider "openai-translate" speaks only the translation protocol, not "ga""#,
        ),
        ("vad_threshold = 1.5", "engine.vad_threshold: 1.5 is out of range (0.0 to 1.0)"),
        (
            "turn_detection = \"none\"\nsilence_duration_ms = 300",
            "engine.silence_duration_ms: given while turn_detection = \"none\"",
        ),
        (
            "mode = \"conversation\"\nprovider = \"openai-translate\"",
            "engine.mode: the translation protocol has no turns, so no conversation mode",
        ),
        ("speed = 2.0", "engine.speed: 2 is out of range (0.25 to 1.5)"),
        (
            "noise_reduction = \"near\"",
            r#"engine.noise_reduction: unknown value "near" (did you mean "near_field"?) (expected one of: near_field, far_field)"#,
        ),
    ];
    for (keys, want) in cases {
        let (_, errors) = parse_str(&format!("[engine]\n{keys}\n"), "x.toml", Path::new("."));
        let got: Vec<String> = errors.iter().filter(|e| e.key.starts_with("engine")).map(ToString::to_string).collect();
        assert_eq!(got, vec![format!("x.toml: {want}")], "{keys}");
    }
}

/// The utterance number the test engine names in a transcript ("[es] utterance 3: …").
fn utterance_of(transcript: &str) -> u64 {
    let rest = transcript.split("utterance ").nth(1).unwrap_or_else(|| panic!("{transcript}"));
    rest.split(':').next().unwrap().parse().unwrap()
}

// Issue 8: a response asked for after a client commit (the router's segment cut) answers that
// item, even when it has to wait behind a running response while the server commits the next
// utterance. Without naming its input, the waiting `response.create` answers whatever user item
// is latest when it finally runs: the next utterance a second time, the cut one never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_for_a_cut_answers_the_cut_item_even_after_waiting() {
    // Responses start 1.5 s late, so the first answer is still running when the cut is made.
    let faults = tolk_core::serve::faults::Faults { delay: Duration::from_millis(1500), ..Default::default() };
    let server = serve(ServeOptions { faults, ..ServeOptions::default() }).await;
    let e = engine(&format!("[engine]\nprovider = \"local\"\nurl = \"{}/v1/realtime\"\n", server.url()));
    let mut h = realtime::open(spec(&e)).await.unwrap();
    let speech = keynote();
    // Utterance 1 ends in silence: the server commits it and starts answering (late).
    send_audio(&h, &speech[..ms(1000)], 100).await;
    send_audio(&h, &vec![0; ms(900)], 100).await;
    let mut outputs = until(&mut h, |o| matches!(o, Output::Committed { .. })).await;
    // Utterance 2: the speaker goes on; the client cuts it (commit) and asks for its answer.
    send_audio(&h, &speech[ms(1000)..ms(2500)], 100).await;
    h.input().send(Input::Commit).await.unwrap();
    let seen = until(&mut h, |o| matches!(o, Output::Committed { .. })).await;
    let Some(Output::Committed { item_id: cut }) = seen.last().cloned() else { unreachable!() };
    outputs.extend(seen);
    h.input().send(Input::RespondTo(cut)).await.unwrap();
    // Utterance 3: the rest of the speech, then silence: the server commits it too.
    send_audio(&h, &speech[ms(2500)..ms(3500)], 100).await;
    send_audio(&h, &vec![0; ms(900)], 100).await;
    let mut done = 0;
    while done < 3 {
        let o = next(&mut h).await;
        if matches!(o, Output::ResponseDone { .. }) {
            done += 1;
        }
        outputs.push(o);
    }
    let committed = outputs.iter().filter(|o| matches!(o, Output::Committed { .. })).count();
    assert_eq!(committed, 3, "{outputs:?}");
    let mut answered: Vec<u64> = responses(&outputs).iter().map(|r| utterance_of(&r.transcript)).collect();
    answered.sort();
    assert_eq!(answered, [1, 2, 3], "each utterance answered once: {outputs:?}");
    h.input().send(Input::Close).await.unwrap();
    server.shutdown().await;
}
