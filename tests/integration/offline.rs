//! The offline engine end to end (compiled with `--features tolk-tests/offline`, which builds
//! `tolk` with `tolk-core/offline`; the models come from `scripts/models.sh`): the keynote
//! through a real `tolk serve --engine offline` on 127.0.0.1 into Spanish, with the server VAD
//! cutting its turns. Whisper tiny.en must recognise most of the keynote's words, each turn's
//! transcript must be apertium's Spanish for what was recognised, and the Spanish audio must be
//! speech of plausible length. An unsupported pair gets the `unsupported_language` error, and
//! `--list-languages` names the installed pairs.
//!
//! The reference text of `configs/samples/keynote-en.wav` is `configs/samples/keynote-en.txt`
//! ([`KEYNOTE`]): Whisper's reading of the recording, corrected where it was unsure, then
//! confirmed by synthesising each sentence again with `espeak-ng -v en-us -s 150`: the four
//! voiced stretches last 3.64, 6.89, 3.77 and 4.23 s, the recording's 3.64, 6.88, 3.76 and
//! 4.24 s (a word more or less changes them by 0.2 s or more).

use std::io::{BufRead, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tolk_tests::{read_wav_i16, root};

/// What the keynote says (see the module docs for how it was established).
const KEYNOTE: &str = include_str!("../../configs/samples/keynote-en.txt");

/// Lower-case words without punctuation.
fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric() && c != '\'').filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// Word accuracy of `hyp` against `reference`: 1 − (word edit distance / reference words).
fn word_accuracy(reference: &str, hyp: &str) -> f64 {
    let (r, h) = (words(reference), words(hyp));
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(rw != hw)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    1.0 - prev[h.len()] as f64 / r.len().max(1) as f64
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `tolk serve --engine offline` on a free port; its URL.
fn serve_offline() -> (Serve, String) {
    let mut child = tolk_tests::tolk()
        .args(["serve", "--listen", "127.0.0.1:0", "--engine", "offline", "--engine-speed", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tolk serve");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let Some(url) = line.trim().strip_prefix("tolk serve: listening on ") else {
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
        panic!("tolk serve --engine offline did not start: {line:?} {err}");
    };
    let url = format!("{url}/v1/realtime?model=gpt-realtime");
    (Serve(child), url)
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn recv(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(120), ws.next()).await.expect("an event within 120 s");
        match m {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).expect("JSON"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

async fn session(url: &str, target: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("connect");
    send(
        &mut ws,
        json!({"type": "session.update", "session": {"type": "realtime",
        "instructions": format!("Target language: {target}"),
        "audio": {"input": {"transcription": {"model": "whisper-1", "language": "en"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 400, "prefix_padding_ms": 300,
                               "interrupt_response": false}}}}}),
    )
    .await;
    while recv(&mut ws).await["type"] != "session.updated" {}
    ws
}

fn pcm(b64: &str) -> Vec<i16> {
    STANDARD.decode(b64).unwrap().chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
}

/// `apertium -u eng-spa` of `text` (a process of its own, as a user would run it).
fn apertium_spa(text: &str) -> String {
    let mut p = Command::new("apertium")
        .args(["-u", "eng-spa"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("apertium (scripts/deps.sh installs it)");
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keynote_is_interpreted_into_spanish_speech() {
    let (_serve, url) = serve_offline();
    let (spec, keynote) = read_wav_i16(&root().join("configs/samples/keynote-en.wav"));
    assert_eq!((spec.sample_rate, spec.channels), (24_000, 1));
    let mut ws = session(&url, "es").await;
    let mut input = keynote.clone();
    input.resize(input.len() + 24 * 1500, 0);
    for c in input.chunks(2400) {
        send(
            &mut ws,
            json!({"type": "input_audio_buffer.append", "audio": STANDARD.encode(
            c.iter().flat_map(|s| s.to_le_bytes()).collect::<Vec<u8>>())}),
        )
        .await;
    }
    send(&mut ws, json!({"type": "conversation.item.retrieve", "event_id": "sentinel", "item_id": "none"})).await;
    let mut evs: Vec<Value> = Vec::new();
    let mut sentinel = false;
    loop {
        let v = recv(&mut ws).await;
        sentinel |= v["type"] == "error" && v["error"]["event_id"] == "sentinel";
        evs.push(v);
        let n = |ty: &str| evs.iter().filter(|e| e["type"] == ty).count();
        if sentinel && n("response.done") == n("input_audio_buffer.speech_stopped") {
            break;
        }
    }
    let turns: Vec<&Value> = evs.iter().filter(|e| e["type"] == "input_audio_buffer.speech_stopped").collect();
    assert!(turns.len() >= 2, "the VAD cuts the keynote into turns: {}", turns.len());

    // Input transcription: the recognised English, turn by turn.
    let recognised: Vec<String> = turns
        .iter()
        .map(|t| {
            evs.iter()
                .find(|e| {
                    e["type"] == "conversation.item.input_audio_transcription.completed" && e["item_id"] == t["item_id"]
                })
                .map(|e| e["transcript"].as_str().unwrap().to_string())
                .expect("every turn is transcribed")
        })
        .collect();
    let heard = recognised.join(" ");
    let acc = word_accuracy(KEYNOTE, &heard);
    eprintln!("recognised: {heard}\nword accuracy vs the reference: {:.1} %", acc * 100.0);
    assert!(acc >= 0.8, "Whisper tiny.en recognises most of the keynote: {:.1} % — {heard:?}", acc * 100.0);

    // Each response: apertium's Spanish of its turn's recognised text, spoken.
    let dones: Vec<&Value> = evs.iter().filter(|e| e["type"] == "response.done").collect();
    let mut spanish = String::new();
    let mut total_audio = 0usize;
    for done in &dones {
        let r = &done["response"];
        assert_eq!(r["status"], "completed", "{done}");
        let rid = r["id"].as_str().unwrap();
        let transcript = r["output"][0]["content"][0]["transcript"].as_str().unwrap().to_string();
        let deltas: String = evs
            .iter()
            .filter(|e| e["type"] == "response.output_audio_transcript.delta" && e["response_id"] == rid)
            .map(|e| e["delta"].as_str().unwrap())
            .collect();
        assert_eq!(deltas, transcript);
        let audio: Vec<i16> = evs
            .iter()
            .filter(|e| e["type"] == "response.output_audio.delta" && e["response_id"] == rid)
            .flat_map(|e| pcm(e["delta"].as_str().unwrap()))
            .collect();
        let usage = &r["usage"];
        if !transcript.is_empty() {
            assert!(usage["output_token_details"]["audio_tokens"].as_u64().unwrap() > 0, "{usage}");
            assert!(usage["output_token_details"]["text_tokens"].as_u64().unwrap() > 0, "{usage}");
        }
        total_audio += audio.len();
        // Voiced 10 ms frames (above −40 dBFS, the server VAD's default threshold).
        let voiced = audio
            .chunks(240)
            .filter(|f| {
                let rms = (f.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / f.len() as f64).sqrt();
                rms > 32768.0 * 0.01
            })
            .count();
        if !transcript.is_empty() {
            assert!(voiced * 3 >= audio.len() / 240, "speech, not silence: {voiced} of {} frames", audio.len() / 240);
        }
        spanish.push_str(&transcript);
        spanish.push(' ');
    }
    // The Spanish is apertium's translation of what was recognised (same pair, same text).
    let expected = recognised.iter().map(|s| apertium_spa(s)).collect::<Vec<_>>().join(" ");
    let norm = |s: &str| words(s).join(" ");
    assert_eq!(norm(&spanish), norm(&expected), "the output transcript is apertium's Spanish");
    let es: usize = words(&spanish)
        .iter()
        .filter(|w| ["el", "la", "de", "y", "que", "en", "los", "las", "a", "nuestro", "es"].contains(&w.as_str()))
        .count();
    assert!(es >= 5, "Spanish function words in {spanish:?}");
    eprintln!("spanish: {spanish}");
    // Plausible length: espeak's Spanish of ~20 s of English lasts between 10 and 60 s.
    let secs = total_audio as f64 / 24_000.0;
    eprintln!("spanish audio: {secs:.1} s for {:.1} s of keynote", keynote.len() as f64 / 24_000.0);
    assert!((10.0..=60.0).contains(&secs), "{secs} s of Spanish audio");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_pair_gets_an_error_naming_it_and_silence_or_noise_get_no_text() {
    let (_serve, url) = serve_offline();
    let mut ws = session(&url, "fr").await;
    let (_, keynote) = read_wav_i16(&root().join("configs/samples/keynote-en.wav"));
    // Manual turn of the first 2 s of speech: no en→fr pair is installed.
    send(&mut ws, json!({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": null}}}})).await;
    while recv(&mut ws).await["type"] != "session.updated" {}
    let first = keynote.iter().position(|s| s.unsigned_abs() > 300).unwrap();
    let b64 = |s: &[i16]| STANDARD.encode(s.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>());
    send(&mut ws, json!({"type": "input_audio_buffer.append", "audio": b64(&keynote[first..first + 48_000])})).await;
    send(&mut ws, json!({"type": "input_audio_buffer.commit"})).await;
    send(&mut ws, json!({"type": "response.create"})).await;
    let err = loop {
        let v = recv(&mut ws).await;
        assert_ne!(v["type"], "response.created", "no response for an unsupported pair: {v}");
        if v["type"] == "error" {
            break v;
        }
    };
    assert_eq!(err["error"]["code"], "unsupported_language", "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("en→fr"), "{err}");

    // Two seconds of digital silence committed by hand into Spanish: no invented text.
    send(
        &mut ws,
        json!({"type": "session.update", "session": {"type": "realtime", "instructions": "Target language: es"}}),
    )
    .await;
    while recv(&mut ws).await["type"] != "session.updated" {}
    send(&mut ws, json!({"type": "input_audio_buffer.append", "audio": b64(&vec![0i16; 48_000])})).await;
    let (transcription, done) = commit_and_answer(&mut ws).await;
    assert_eq!(transcription.as_deref(), Some(""));
    assert_eq!(done["response"]["output"][0]["content"][0]["transcript"], "", "{done}");

    // 40 s of loud white noise (the energy VAD calls it speech; two Whisper windows): no text.
    let mut seed = 0x2545_f491_u32;
    let noise: Vec<i16> = (0..24_000 * 40)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed % 12_001) as i16 - 6_000
        })
        .collect();
    for c in noise.chunks(24_000) {
        send(&mut ws, json!({"type": "input_audio_buffer.append", "audio": b64(c)})).await;
    }
    let (transcription, done) = commit_and_answer(&mut ws).await;
    assert_eq!(transcription.as_deref(), Some(""), "no text invented from noise");
    assert_eq!(done["response"]["output"][0]["content"][0]["transcript"], "", "{done}");
}

#[test]
fn list_languages_names_the_installed_pairs() {
    let out = tolk_tests::run(tolk_tests::tolk().args(["serve", "--list-languages"]));
    assert_eq!(out.code, 0, "{:?}", out.stderr);
    assert!(out.stdout.lines().any(|l| l.starts_with("en→es ") && l.ends_with("eng-spa.mode")), "{}", out.stdout);
    assert!(out.stdout.lines().any(|l| l.starts_with("en→ca ")), "{}", out.stdout);
    assert!(!out.stdout.contains("en→fr"), "{}", out.stdout);
}

/// `[engine] engine = "offline"`: `tolk check` accepts the installed pairs and names a route
/// language without one (before anything starts).
#[test]
fn check_rejects_a_route_language_without_a_pair() {
    let dir = tempfile::tempdir().unwrap();
    let config = |to: &str| {
        format!(
            r#"[engine]
provider = "local"
engine = "offline"

[[source]]
id = "stage"
plugin = "tolk.wav"
language = "en"
[source.config]
path = "{}"

[[route]]
source = "stage"
to = [{to}]
sinks = ["captions"]

[[sink]]
id = "captions"
plugin = "tolk.captions"
[sink.config]
jsonl = "out/{{lang}}.jsonl"
"#,
            root().join("configs/samples/keynote-en.wav").display()
        )
    };
    let good = tolk_tests::write(dir.path(), "good.toml", &config(r#""es", "ca""#));
    let out = tolk_tests::run(tolk_tests::tolk().arg("check").arg(&good));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let bad = tolk_tests::write(dir.path(), "bad.toml", &config(r#""es", "fr""#));
    let out = tolk_tests::run(tolk_tests::tolk().arg("check").arg(&bad));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.err_lines().iter().any(|l| l.contains("route[0].to") && l.contains("en→fr") && !l.contains("en→es:")),
        "{}",
        out.stderr
    );
}

/// Commits the input buffer and asks for a response; returns the input transcription (if one
/// came) and the `response.done` event.
async fn commit_and_answer(ws: &mut Ws) -> (Option<String>, Value) {
    send(ws, json!({"type": "input_audio_buffer.commit"})).await;
    send(ws, json!({"type": "response.create"})).await;
    let mut transcription = None;
    loop {
        let v = recv(ws).await;
        if v["type"] == "conversation.item.input_audio_transcription.completed" {
            transcription = Some(v["transcript"].as_str().unwrap().to_string());
        }
        if v["type"] == "response.done" {
            return (transcription, v);
        }
    }
}
