//! The listener web app (`[listen]`) of a real `tolk run`: the embedded local engine, a WAV
//! source played in real time (looped), two languages, served on 127.0.0.1.
//!
//! - In real headless Chromium (`tests/browser/listener.mjs`, Debian's chromium driven by
//!   playwright-core; `tests/browser/setup.sh` installs both, scripts/test.sh calls it): the page
//!   lists the languages, plays the chosen one after the click (WebCodecs Opus; decoded frames,
//!   AnalyserNode level, no underrun in steady state), shows that route's captions only,
//!   reconnects by itself after the server closes its socket, and falls back to PCM without
//!   WebCodecs. A 390×844 screenshot goes to `target/artefacts/listener.png`. Without chromium
//!   the test prints a skip note (fails under `CI`).
//! - The server drop is real and not a test hook: `max_listener_s` (a documented setting that
//!   bounds how long one connection lives) makes the server close each listener's socket.
//! - From raw clients: only the page's fixed paths are served (traversal and unknown paths get
//!   404), and a malformed WebSocket frame ends only the client that sent it while another
//!   listener's packets go on without a gap.
//! - 276 idle connections (past `max_listeners` + 256) cost a connected listener nothing; the
//!   connection over the limit is closed at once.
//! - `tolk check` refuses plain HTTP on a non-loopback address and unknown route languages,
//!   naming the key.
//! - The operator console (`operator_token`): 401 and nothing else without its token or with
//!   a wrong one; its status (route states, levels, costs, listeners); its controls as HTTP
//!   calls; and in Chromium (`tests/browser/operator.mjs`): the cards show the routes running,
//!   Mute silences that language's listener page (AnalyserNode at silence, no caption) while
//!   the other goes on, Floor only gives the original with its transcript, and a typed
//!   announcement is captioned in both languages. A 390×844 screenshot of the console goes to
//!   `target/artefacts/operator.png`.
//! - Icecast (`icecast_url`): Debian's icecast2 on 127.0.0.1; a client of each mount gets Ogg
//!   (OpusHead, OpusTags) and Opus packets that decode, with that language's marker tone.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tolk_tests::{root, run, target_dir, tolk, write, write_wav_i16};

/// A `tolk run` with a `[listen]` section, killed when dropped.
struct Listening {
    child: Child,
    /// `http://127.0.0.1:PORT/`.
    url: String,
    /// stderr lines after the URL.
    lines: mpsc::Receiver<String>,
    dir: tempfile::TempDir,
}

impl Listening {
    /// Starts the run with `extra` in `[listen]`; returns once it prints the page's URL.
    fn start(extra: &str) -> Listening {
        Self::start_with(extra, &[])
    }

    /// [`Listening::start`] with more `tolk run` arguments.
    fn start_with(extra: &str, args: &[&str]) -> Listening {
        let dir = tempfile::tempdir().unwrap();
        // Short utterances with pauses, so the engine answers (and captions) every ~2 s.
        let (samples, _) = crate::run::speech(4, 1200, 900);
        write_wav_i16(&dir.path().join("talk.wav"), 24_000, 1, &samples);
        let config = write(
            dir.path(),
            "listen.toml",
            &format!(
                r#"
[listen]
address = "127.0.0.1:0"
title = "Integration test"
{extra}

[engine]
provider = "local"

[[source]]
id = "stage"
plugin = "tolk.wav"
language = "en"
[source.config]
path = "talk.wav"
realtime = true
loop = true

[[route]]
source = "stage"
to = ["es", "fr"]
"#
            ),
        );
        let mut child = tolk()
            .args(["run", "--no-status"])
            .arg(&config)
            .args(args)
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tolk");
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(l) => {
                    if let Some(u) = l.strip_prefix("listeners: ") {
                        break u.trim().to_string();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("tolk run printed no `listeners: URL` line within 30 s");
                }
            }
        };
        Listening { child, url, lines, dir }
    }

    fn addr(&self) -> String {
        let rest = self.url.split_once("://").map_or(self.url.as_str(), |(_, r)| r);
        rest.trim_end_matches('/').to_string()
    }

    /// Ends the run with SIGTERM (a graceful stop) and returns its stdout (the summary).
    fn stop(mut self) -> String {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "tolk run did not stop within 20 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
        while self.lines.try_recv().is_ok() {}
        let mut out = String::new();
        self.child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        out
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One raw HTTP request; returns (status, body), status 0 when nothing was answered.
fn http(addr: &str, request_line: &str) -> (u16, String) {
    http_with(addr, request_line, "")
}

/// [`http`] with more header lines (each ending in `\r\n`).
fn http_with(addr: &str, request_line: &str, headers: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    if write!(s, "{request_line}\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n").is_err() {
        // Closed before the request went out (a TLS port given plain HTTP may do that): no answer.
        return (0, String::new());
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// One browser test at a time: each plays audio in real time through Chromium, and several at
/// once (with their `tolk run`s) on a 2-core machine starve each other's audio threads.
fn one_browser_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static BROWSER: std::sync::Mutex<()> = std::sync::Mutex::new(());
    BROWSER.lock().unwrap_or_else(|e| e.into_inner())
}

/// `tests/browser` when Debian's chromium and playwright-core are installed. Without them: a
/// skip note, or a panic when `CI` is set (as for the device tests).
fn browser_ready(test: &str) -> Option<PathBuf> {
    let dir = root().join("tests/browser");
    if Path::new("/usr/bin/chromium").exists() && dir.join("node_modules/playwright-core").exists() {
        return Some(dir);
    }
    let ci = std::env::var("CI").map(|v| !v.is_empty() && v != "false" && v != "0").unwrap_or(false);
    assert!(!ci, "{test}: CI is set but chromium or playwright-core is missing: run tests/browser/setup.sh");
    eprintln!("skipping {test}: no chromium or playwright-core; run tests/browser/setup.sh (scripts/test.sh does)");
    None
}

#[test]
fn listener_page_plays_the_chosen_language_with_its_captions_reconnects_and_falls_back_to_pcm() {
    let Some(browser) = browser_ready("listener_page_plays_the_chosen_language") else { return };
    let _one = one_browser_at_a_time();
    let max_listener_s = 6;
    let run = Listening::start(&format!("max_listener_s = {max_listener_s}"));
    let artefacts = target_dir().join("artefacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let shot = artefacts.join("listener.png");
    let _ = std::fs::remove_file(&shot);
    let out = Command::new("node")
        .current_dir(&browser)
        .arg("listener.mjs")
        .arg(&run.url)
        .args(["es,fr", "es", "fr"])
        .arg(&shot)
        .arg(max_listener_s.to_string())
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("listener.mjs: {stdout}{stderr}");
    assert!(out.status.success(), "the browser checks failed:\n{stderr}\n{stdout}");
    let figures: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(figures["listed"], serde_json::json!(["es", "fr"]));
    assert_eq!(figures["names"], serde_json::json!(["Español", "Français"]));
    assert_eq!(figures["opus"]["underruns_steady"], 0);
    assert_eq!(figures["pcm"]["underruns_steady"], 0);
    let png = std::fs::read(&shot).expect("the screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let summary = run.stop();
    for lang in ["es", "fr"] {
        let line = summary
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("listeners {lang} ")))
            .unwrap_or_else(|| panic!("no listener line for {lang} in the summary:\n{summary}"));
        assert!(!line.contains("peak 0 "), "{line}");
    }
}

/// Packets read by a raw listener: how many, the last sequence number, and jumps in it.
#[derive(Default)]
struct Seq {
    last: Option<u32>,
    gaps: u32,
}

impl Seq {
    /// Reads `n` more PCM packets from `ws`.
    async fn take<S>(&mut self, ws: &mut tokio_tungstenite::WebSocketStream<S>, n: usize)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let mut got = 0;
        while got < n {
            match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                Ok(Some(Ok(Message::Binary(b)))) => {
                    assert_eq!(b.len(), 12 + 960, "header + 480 samples");
                    let seq = u32::from_be_bytes(b[..4].try_into().unwrap());
                    if self.last.is_some_and(|l| seq != l.wrapping_add(1)) {
                        self.gaps += 1;
                    }
                    self.last = Some(seq);
                    got += 1;
                }
                Ok(Some(Ok(_))) => {}
                other => panic!("the listener lost its stream: {other:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_server_serves_only_its_paths_and_a_malformed_frame_ends_only_its_sender() {
    let run = Listening::start_with(
        "",
        &["--json-status", "status.json", "--prometheus", "metrics.prom", "--interval", "100"],
    );
    let addr = run.addr();
    let a = addr.clone();
    let answers = tokio::task::spawn_blocking(move || {
        let mut out = vec![];
        for line in [
            "GET / HTTP/1.1",
            "GET /app.js HTTP/1.1",
            "GET /worklet.js HTTP/1.1",
            "GET /../Cargo.toml HTTP/1.1",
            "GET /%2e%2e/Cargo.toml HTTP/1.1",
            "GET /..%2fCargo.toml HTTP/1.1",
            "GET //etc/passwd HTTP/1.1",
            "GET /web/app.js HTTP/1.1",
            "GET /listen.toml HTTP/1.1",
            "GET /talk.wav HTTP/1.1",
            "POST / HTTP/1.1",
            "GET /ws?lang=de HTTP/1.1",
            "GET /ws?lang=es&codec=mp3 HTTP/1.1",
            "GET /ws?lang=es HTTP/1.1",
            "GET /api/languages HTTP/1.1",
            "GET /qr HTTP/1.1",
            "GET /operator HTTP/1.1",
            "GET /api/operator/status HTTP/1.1",
        ] {
            out.push((line, http(&a, line)));
        }
        out
    })
    .await
    .unwrap();
    let status: Vec<(&str, u16)> = answers.iter().map(|(l, (s, _))| (*l, *s)).collect();
    assert_eq!(
        status,
        [
            ("GET / HTTP/1.1", 200),
            ("GET /app.js HTTP/1.1", 200),
            ("GET /worklet.js HTTP/1.1", 200),
            ("GET /../Cargo.toml HTTP/1.1", 404),
            ("GET /%2e%2e/Cargo.toml HTTP/1.1", 404),
            ("GET /..%2fCargo.toml HTTP/1.1", 404),
            ("GET //etc/passwd HTTP/1.1", 404),
            ("GET /web/app.js HTTP/1.1", 404),
            ("GET /listen.toml HTTP/1.1", 404),
            ("GET /talk.wav HTTP/1.1", 404),
            ("POST / HTTP/1.1", 405),
            ("GET /ws?lang=de HTTP/1.1", 404),
            ("GET /ws?lang=es&codec=mp3 HTTP/1.1", 400),
            ("GET /ws?lang=es HTTP/1.1", 426),
            ("GET /api/languages HTTP/1.1", 200),
            ("GET /qr HTTP/1.1", 200),
            // No operator_token configured: no console.
            ("GET /operator HTTP/1.1", 404),
            ("GET /api/operator/status HTTP/1.1", 404),
        ]
    );
    // The printable page: a QR code per language, each to the page with it chosen.
    let qr = &answers[15].1.1;
    assert_eq!(qr.matches("<svg").count(), 2, "{qr}");
    for lang in ["es", "fr"] {
        assert!(qr.contains(&format!("<small>http://{addr}/?lang={lang}</small>")), "{qr}");
    }
    assert!(qr.contains("<strong>Español</strong>") && qr.contains("<strong>Français</strong>"));
    assert!(answers[0].1.1.contains("<title>Integration test</title>"));
    let langs: serde_json::Value = serde_json::from_str(&answers[14].1.1).unwrap();
    assert_eq!(
        langs["languages"],
        serde_json::json!([
            {"code": "es", "name": "Español", "floor": false, "spoken": "es"},
            {"code": "fr", "name": "Français", "floor": false, "spoken": "fr"},
        ])
    );

    // Listener A takes PCM; its packets are numbered every 20 ms.
    let (mut a, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?lang=es&codec=pcm")).await.unwrap();
    let hello = match a.next().await.unwrap().unwrap() {
        Message::Text(t) => serde_json::from_str::<serde_json::Value>(&t).unwrap(),
        m => panic!("expected the hello frame, got {m:?}"),
    };
    assert_eq!((hello["type"].as_str(), hello["codec"].as_str()), (Some("hello"), Some("pcm")));
    let mut seq = Seq::default();
    seq.take(&mut a, 25).await;

    // Client B: a valid upgrade, then a frame with a reserved opcode.
    let mut b = tokio::net::TcpStream::connect(&addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    b.write_all(
        format!(
            "GET /ws?lang=es&codec=opus HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = vec![0u8; 129];
    let n = b.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head[..n]));
    b.write_all(&[0x83, 0x84, 1, 2, 3, 4, 0xde, 0xad, 0xbe, 0xef]).await.unwrap();
    // The server ends B: its reads reach the end within a few seconds.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        loop {
            match b.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the server kept the connection that sent a malformed frame");
    // A went on without a gap.
    seq.take(&mut a, 50).await;
    assert_eq!(seq.gaps, 0, "listener A skipped packets while B misbehaved");
    // The status files count listeners per language: A alone on es now.
    let status = run.dir.path().join("status.json");
    let deadline = Instant::now() + Duration::from_secs(5);
    let listeners = loop {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&status).unwrap_or_default()).unwrap_or_default();
        if v["listeners"][0]["listeners"] == 1 {
            break v["listeners"].clone();
        }
        assert!(Instant::now() < deadline, "status.json never showed listener A: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(listeners[0]["language"], "es");
    assert_eq!(listeners[1]["listeners"], 0, "{listeners}");
    let prom = std::fs::read_to_string(run.dir.path().join("metrics.prom")).unwrap();
    assert!(prom.contains("tolk_listeners{language=\"fr\"} 0\n"), "{prom}");
    drop(a);
    let summary = run.stop();
    assert!(summary.lines().any(|l| l.trim_start().starts_with("listeners es       peak 2 ")), "A and B: {summary}");
}

#[test]
fn the_event_code_guards_languages_and_audio_and_max_listeners_is_enforced() {
    let run = Listening::start("event_code = \"acme-1\"\nmax_listeners = 1");
    let addr = run.addr();
    assert_eq!(http(&addr, "GET /api/languages HTTP/1.1").0, 401);
    assert_eq!(http(&addr, "GET /api/languages?code=acme-2 HTTP/1.1").0, 401);
    assert_eq!(http(&addr, "GET /api/languages?code=acme-1 HTTP/1.1").0, 200);
    assert_eq!(http(&addr, "GET /qr HTTP/1.1").0, 401);
    let (status, qr) = http(&addr, "GET /qr?code=acme-1 HTTP/1.1");
    assert_eq!(status, 200);
    assert!(qr.contains(&format!("http://{addr}/?code=acme-1&amp;lang=es")), "{qr}");
    // The page itself loads (it asks for the code).
    assert_eq!(http(&addr, "GET / HTTP/1.1").0, 200);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let refused = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?lang=es")).await;
        assert!(
            matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 401),
            "{refused:?}"
        );
        let (mut first, _) =
            tokio_tungstenite::connect_async(format!("ws://{addr}/ws?lang=es&code=acme-1")).await.unwrap();
        assert!(matches!(first.next().await, Some(Ok(Message::Text(_)))), "the hello frame");
        let second = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?lang=fr&code=acme-1")).await;
        assert!(
            matches!(&second, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 503),
            "{second:?}"
        );
        drop(first);
        // Its slot is free again once the first listener has gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match tokio_tungstenite::connect_async(format!("ws://{addr}/ws?lang=fr&code=acme-1")).await {
                Ok(_) => break,
                Err(e) => assert!(Instant::now() < deadline, "no slot after the first listener left: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_costs_a_connected_listener_nothing() {
    let run = Listening::start("max_listeners = 1");
    let addr = run.addr();
    let (mut a, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?lang=fr&codec=pcm")).await.unwrap();
    assert!(matches!(a.next().await, Some(Ok(Message::Text(_)))), "the hello frame");
    let mut seq = Seq::default();
    seq.take(&mut a, 10).await;
    // Idle connections that never send a request: the listener plus EXTRA_CONNECTIONS (256)
    // fill the server's room, and a few more.
    let mut idle = vec![];
    for _ in 0..(256 + 20) {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    // One more is closed at once (not left waiting for its request head, 10 s).
    let mut extra = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut buf = [0u8; 16];
    use tokio::io::AsyncReadExt;
    let closed = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "an over-the-limit connection was kept: {closed:?}");
    // The listener went on without a gap.
    seq.take(&mut a, 100).await;
    assert_eq!(seq.gaps, 0);
    // Once the idle ones are gone, pages load again.
    drop(idle);
    let a2 = addr.clone();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let a3 = a2.clone();
        if tokio::task::spawn_blocking(move || http(&a3, "GET / HTTP/1.1").0).await.unwrap() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no page after the flood ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(a);
    run.stop();
}

#[test]
fn a_self_signed_trial_certificate_serves_a_secure_page_that_plays_with_a_warning() {
    let Some(browser) = browser_ready("a_self_signed_trial_certificate") else { return };
    let _one = one_browser_at_a_time();
    let run = Listening::start("tls_self_signed = true");
    assert!(run.url.starts_with("https://127.0.0.1:"), "{}", run.url);
    let warning = run.lines.recv_timeout(Duration::from_secs(5)).expect("a line after the URL");
    assert!(
        warning.contains("warning: ")
            && warning.contains("listen.tls_self_signed: a certificate made just now, for a trial only"),
        "{warning}"
    );
    let port = run.addr().rsplit_once(':').unwrap().1.to_string();
    let out = Command::new("node").current_dir(&browser).args(["secure.mjs", &port, "fr"]).output().expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    eprintln!("secure.mjs: {stdout}");
    // Plain HTTP to the TLS port gets no page.
    let (status, _) = http(&run.addr(), "GET / HTTP/1.1");
    assert_eq!(status, 0, "plain HTTP must not be answered on the TLS port");
}

#[test]
fn listen_config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let base = r#"
[engine]
provider = "local"

[[source]]
id = "stage"
plugin = "tolk.tone"
language = "en"

[[route]]
source = "stage"
to = ["es", "floor"]
"#;
    let cases = [
        (
            "[listen]\naddress = \"0.0.0.0:8090\"\n",
            "listen.address: plain HTTP on 0.0.0.0:8090 (not loopback): browsers play audio only in a secure \
             context; set listen.tls_cert and listen.tls_key, or listen on 127.0.0.1",
        ),
        ("[listen]\nroutes = [\"de\"]\n", "listen.routes[0]: no route produces \"de\" (routes produce: es, floor)"),
        ("[listen]\ntls_cert = \"cert.pem\"\n", "listen.tls_key: missing: tls_cert needs its private key"),
        ("[listen]\naddress = \"localhost\"\n", "listen.address: \"localhost\" is not an address with a port"),
        ("[listen]\nport = 1\n", "listen.port: unknown"),
        (
            "[listen]\ntls_self_signed = true\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n",
            "listen.tls_self_signed: conflicts with tls_cert and tls_key",
        ),
        ("[listen]\npublic_url = \"event.example.org\"\n", "listen.public_url: \"event.example.org\" is not an http"),
        (
            "[listen]\noperator_token = \"short 1\"\n",
            "listen.operator_token: must be 12 to 128 printable ASCII characters without spaces",
        ),
        ("[listen]\nicecast_url = \"http://127.0.0.1:8000\"\n", "listen.icecast_password: missing"),
        (
            "[listen]\nicecast_url = \"https://relay.example.org/live\"\nicecast_password = \"x\"\n",
            "listen.icecast_url: \"https://relay.example.org/live\" is not an Icecast server's http://HOST:PORT",
        ),
    ];
    for (section, expected) in cases {
        let config = write(dir.path(), "bad.toml", &format!("{section}{base}"));
        let r = run(tolk().arg("check").arg(&config));
        assert!(!r.stderr.contains("short 1"), "a token is never repeated: {}", r.stderr);
        assert_eq!(r.code, 2, "{section}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!("bad.toml: {expected}")),
            "{section}: expected `{expected}` in:\n{}",
            r.stderr
        );
    }
    // A self-signed certificate is TLS: allowed on any address.
    let ok = write(
        dir.path(),
        "ok.toml",
        &format!("[listen]\naddress = \"0.0.0.0:8443\"\ntls_self_signed = true\nroutes = [\"floor\", \"es\"]\n{base}"),
    );
    let r = run(tolk().arg("check").arg(&ok));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("  listeners: https://0.0.0.0:8443/ offers floor, es\n"), "{}", r.stdout);
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
    // Listeners of a run read faster than real time are warned about.
    let lossless = write(dir.path(), "lossless.toml", &format!("[run]\ndelivery = \"lossless\"\n[listen]\n{base}"));
    let r = run(tolk().arg("check").arg(&lossless));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("lossless.toml: listen: run.delivery is \"lossless\""), "{}", r.stderr);
}

/// The operator token of the console tests.
const TOKEN: &str = "op-7f3a9c2e51d4";

#[test]
fn the_operator_console_needs_its_token_and_its_controls_are_http_calls() {
    let run = Listening::start_with(
        &format!("operator_token = \"{TOKEN}\""),
        &["--json-status", "status.json", "--prometheus", "metrics.prom", "--interval", "100"],
    );
    let addr = run.addr();
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    // Without the token, with a wrong one (query or header, one character off or longer): 401
    // and nothing of the console.
    for (line, headers) in [
        ("GET /operator HTTP/1.1", String::new()),
        ("GET /operator?token= HTTP/1.1", String::new()),
        (&*format!("GET /operator?token={} HTTP/1.1", &TOKEN[..TOKEN.len() - 1]), String::new()),
        (&*format!("GET /operator?token={TOKEN}0 HTTP/1.1"), String::new()),
        ("GET /api/operator/status HTTP/1.1", "Authorization: Bearer op-7f3a9c2e51d5\r\n".to_string()),
        ("GET /api/operator/status HTTP/1.1", format!("Authorization: Basic {TOKEN}\r\n")),
        ("POST /api/operator/mute?lang=es&on=true HTTP/1.1", String::new()),
    ] {
        let (status, body) = http_with(&addr, line, &headers);
        assert_eq!(status, 401, "{line} {headers}");
        assert_eq!(body, "the operator console needs its token\n", "{line}");
    }
    let (status, page) = http(&addr, &format!("GET /operator?token={TOKEN} HTTP/1.1"));
    assert_eq!(status, 200);
    assert!(page.contains("<title>Integration test — operator</title>") && page.contains("/operator.js"), "{page}");
    // The status: both routes, running, with levels, costs and their listeners.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let (code, body) = http_with(&addr, "GET /api/operator/status HTTP/1.1", &bearer);
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let routes = v["routes"].as_array().cloned().unwrap_or_default();
        if routes.len() == 2
            && routes.iter().all(|r| r["state"] == "running" && r["level_in_dbfs"].is_number() && r["responses"] != 0)
        {
            break v;
        }
        assert!(Instant::now() < deadline, "no running routes with levels and responses within 20 s: {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["title"], "Integration test");
    let routes = status["routes"].as_array().unwrap();
    assert_eq!(routes.iter().map(|r| r["language"].as_str().unwrap()).collect::<Vec<_>>(), ["es", "fr"]);
    for r in routes {
        let level = r["level_in_dbfs"].as_f64().unwrap();
        assert!((-120.0..=0.0).contains(&level), "{r}");
        assert_eq!(r["listen"]["language"], r["language"]);
        assert_eq!(r["listen"]["muted"], false);
        assert!(r["cost_usd"].is_number() && r["cost_per_hour_usd"].is_number(), "{r}");
        assert!(r["ear_voice_ms"]["p50"].is_number(), "{r}");
    }
    // The controls: POST only, a known language, on=true|false.
    let post = |line: &str| http_with(&addr, line, &bearer);
    assert_eq!(post("GET /api/operator/mute?lang=es&on=true HTTP/1.1").0, 405);
    assert_eq!(post("POST /api/operator/status HTTP/1.1").0, 405);
    assert_eq!(post("POST /api/operator/mute?lang=de&on=true HTTP/1.1"), (404, "no language \"de\" here\n".into()));
    assert_eq!(post("POST /api/operator/mute?lang=es&on=maybe HTTP/1.1").0, 400);
    assert_eq!(post("POST /api/operator/announce?text= HTTP/1.1").0, 400);
    assert_eq!(post(&format!("POST /api/operator/announce?text={} HTTP/1.1", "a".repeat(501))).0, 400);
    assert_eq!(post("POST /api/operator/announce?text=one%0Atwo HTTP/1.1").0, 400);
    assert_eq!(post("POST /api/operator/announce?text=Welcome%20back HTTP/1.1"), (200, r#"{"routes":2}"#.into()));
    let (code, body) = post("POST /api/operator/mute?lang=es&on=true HTTP/1.1");
    assert_eq!((code, body.as_str()), (200, r#"{"floor_only":false,"language":"es","muted":true}"#));
    let (code, body) = post(&format!("POST /api/operator/floor?lang=fr&on=1&token={TOKEN} HTTP/1.1"));
    assert_eq!((code, body.as_str()), (200, r#"{"floor_only":true,"language":"fr","muted":false}"#));
    let v: serde_json::Value =
        serde_json::from_str(&http_with(&addr, "GET /api/operator/status HTTP/1.1", &bearer).1).unwrap();
    assert_eq!(
        (v["routes"][0]["listen"]["muted"].clone(), v["routes"][1]["listen"]["floor_only"].clone()),
        (true.into(), true.into())
    );
    // --json-status carries the level meters too.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.dir.path().join("status.json")).unwrap()).unwrap();
    assert!(json["routes"][0]["level_in_dbfs"].is_number(), "{}", json["routes"][0]);
    let prom = std::fs::read_to_string(run.dir.path().join("metrics.prom")).unwrap();
    for name in ["tolk_route_level_in_dbfs", "tolk_route_level_out_dbfs"] {
        let line = prom
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{route=\"stage→es\"")))
            .unwrap_or_else(|| panic!("no {name} in:\n{prom}"));
        let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(v.is_nan() || (-120.0..=0.0).contains(&v), "{line}");
    }
    // The token is never logged.
    let mut stderr = vec![];
    while let Ok(l) = run.lines.try_recv() {
        stderr.push(l);
    }
    let summary = run.stop();
    assert!(!summary.contains(TOKEN) && !stderr.iter().any(|l| l.contains(TOKEN)), "{stderr:?}");
}

#[test]
fn operator_console_shows_the_routes_and_mute_silences_only_that_language() {
    let Some(browser) = browser_ready("operator_console_shows_the_routes") else { return };
    let _one = one_browser_at_a_time();
    let run = Listening::start(&format!("operator_token = \"{TOKEN}\""));
    let artefacts = target_dir().join("artefacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let shot = artefacts.join("operator.png");
    let _ = std::fs::remove_file(&shot);
    let out = Command::new("node")
        .current_dir(&browser)
        .arg("operator.mjs")
        .arg(&run.url)
        .args([TOKEN, "es", "fr"])
        .arg(&shot)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("operator.mjs: {stdout}{stderr}");
    assert!(out.status.success(), "the browser checks failed:\n{stderr}\n{stdout}");
    let figures: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(figures["wrong_token"], 401);
    assert!(figures["muted"]["peak_rms"].as_f64().unwrap() < 0.003, "{figures}");
    assert!(figures["other_while_muted"]["peak_rms"].as_f64().unwrap() > 0.003, "{figures}");
    for lang in ["es", "fr"] {
        let caption = figures["announcement"][lang].as_str().unwrap_or_default();
        assert!(
            caption.starts_with(&format!("[{lang}] ")) && caption.contains("Lunch is served in hall B"),
            "{figures}"
        );
    }
    let png = std::fs::read(&shot).expect("the screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}

/// The Icecast server of a test: `icecast2` on 127.0.0.1 with a config of its own, killed when
/// dropped.
struct IcecastServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for IcecastServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Its source password.
const ICECAST_PASSWORD: &str = "src-pw-8c1e";

/// Starts Debian's icecast2 on a free loopback port; `None` (a skip note; a panic under `CI`)
/// without it.
fn icecast() -> Option<IcecastServer> {
    let bin = Path::new("/usr/bin/icecast2");
    if !bin.exists() {
        let ci = std::env::var("CI").map(|v| !v.is_empty() && v != "false" && v != "0").unwrap_or(false);
        assert!(!ci, "CI is set but icecast2 is missing: run tests/browser/setup.sh");
        eprintln!("skipping the Icecast test: no /usr/bin/icecast2; run tests/browser/setup.sh (scripts/test.sh does)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let logs = dir.path().join("log");
    std::fs::create_dir_all(&logs).unwrap();
    // icecast2 refuses to run as root: as root it changes to nobody, who must write its logs.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o777)).unwrap();
    let root = is_root();
    let security = if root {
        "<security><chroot>0</chroot><changeowner><user>nobody</user><group>nogroup</group></changeowner></security>"
    } else {
        "<security><chroot>0</chroot></security>"
    };
    let config = write(
        dir.path(),
        "icecast.xml",
        &format!(
            r#"<icecast>
  <limits><clients>20</clients><sources>8</sources><queue-size>524288</queue-size><client-timeout>30</client-timeout>
    <header-timeout>15</header-timeout><source-timeout>10</source-timeout><burst-on-connect>1</burst-on-connect><burst-size>65535</burst-size></limits>
  <authentication><source-password>{ICECAST_PASSWORD}</source-password><admin-user>admin</admin-user><admin-password>adm-pw-31</admin-password></authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket><port>{port}</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <fileserve>0</fileserve>
  <paths><basedir>/usr/share/icecast2</basedir><logdir>{logs}</logdir><webroot>/usr/share/icecast2/web</webroot><adminroot>/usr/share/icecast2/admin</adminroot></paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog><loglevel>3</loglevel></logging>
  {security}
</icecast>
"#,
            logs = logs.display()
        ),
    );
    let child = Command::new(bin).arg("-c").arg(&config).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let server = IcecastServer { child, port, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "icecast2 did not listen on 127.0.0.1:{port} within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(server)
}

/// True when the test runs as root (icecast2 must then drop to nobody).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// What an Icecast client of `mount` receives in `for_how_long` (waiting up to 20 s for the
/// mount to exist): the body, and how many of its bytes came in the first 300 ms (the burst
/// Icecast sends a new client at once: audio from before it connected).
fn icecast_client(port: u16, mount: &str, for_how_long: Duration) -> (Vec<u8>, usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        write!(s, "GET {mount} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut got = Vec::new();
        let start = Instant::now();
        let end = start + for_how_long;
        let mut early = 0;
        let mut buf = [0u8; 16 << 10];
        while Instant::now() < end {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
            if start.elapsed() < Duration::from_millis(300) {
                early = got.len();
            }
            if got.len() > 12 && !got.starts_with(b"HTTP/1.0 200") && !got.starts_with(b"HTTP/1.1 200") {
                break;
            }
        }
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n")
            && (got.starts_with(b"HTTP/1.0 200") || got.starts_with(b"HTTP/1.1 200"))
        {
            return (got[i + 4..].to_vec(), early.saturating_sub(i + 4));
        }
        assert!(
            Instant::now() < deadline,
            "no stream on {mount} within 20 s: {}",
            String::from_utf8_lossy(&got[..got.len().min(200)])
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn icecast_gets_valid_ogg_opus_per_language() {
    let Some(ice) = icecast() else { return };
    let run = Listening::start(&format!(
        "icecast_url = \"http://127.0.0.1:{}\"\nicecast_password = \"{ICECAST_PASSWORD}\"",
        ice.port
    ));
    for (lang, name, other) in [("es", "Español", "fr"), ("fr", "Français", "es")] {
        let (body, burst) = icecast_client(ice.port, &format!("/{lang}.ogg"), Duration::from_secs(5));
        let total = body.len();
        let mut reader = ogg::reading::PacketReader::new(std::io::Cursor::new(body));
        let head = reader.read_packet_expected().expect("an Ogg page");
        assert_eq!(&head.data[..8], b"OpusHead", "{lang}: the first packet is OpusHead");
        assert_eq!(head.data[9], 1, "mono");
        let tags = reader.read_packet_expected().expect("OpusTags");
        assert_eq!(&tags.data[..8], b"OpusTags");
        assert!(String::from_utf8_lossy(&tags.data).contains(&format!("TITLE=Integration test — {name}")));
        let mut decoder = opus::Decoder::new(24_000, opus::Channels::Mono).unwrap();
        let mut pcm = vec![];
        let mut out = vec![0i16; 5760];
        let mut packets = 0;
        while let Ok(Some(p)) = reader.read_packet() {
            let n = decoder.decode(&p.data, &mut out, false).expect("a valid Opus packet");
            assert_eq!(n, 480, "20 ms per packet");
            pcm.extend_from_slice(&out[..n]);
            packets += 1;
        }
        assert!(packets >= 100, "{lang}: {packets} packets (2 s at least)");
        // The local engine starts each answer with its language's marker tone: this mount
        // carries the {lang} route, not the other.
        let window = 4800;
        let best = |l: &str| {
            pcm.chunks(window / 2)
                .enumerate()
                .map(|(i, _)| {
                    let s = &pcm[i * window / 2..(i * window / 2 + window).min(pcm.len())];
                    tolk_core::serve::engine::goertzel(s, 24_000, tolk_core::serve::engine::marker_hz(l))
                })
                .fold(0.0f64, f64::max)
        };
        let (mine, theirs) = (best(lang), best(other));
        // How far behind live a player starting on the first byte is (the burst), and where
        // that settles with Icecast's default burst-size (64 KiB) at this stream's bytes per 20 ms.
        let per_packet = total as f64 / packets as f64;
        eprintln!(
            "icecast /{lang}.ogg: {packets} packets ({per_packet:.0} B each with its page), burst on connect {:.1} s of \
             audio; with the default 64 KiB burst-size a new client starts {:.1} s behind live; marker {mine:.3} \
             (other language's {theirs:.3})",
            burst as f64 / per_packet * 0.02,
            65_535.0 / per_packet * 0.02
        );
        assert!(mine > 0.05 && mine > 4.0 * theirs, "{lang}: marker {mine} vs {other}'s {theirs}");
    }
    drop(run);
}
