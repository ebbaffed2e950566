//! `tolk serve`: tolk's own Realtime-compatible WebSocket server — the engine the demo and the
//! test suite run on, since nothing here reaches the internet.
//!
//! It answers the paths of the real services, keyed as they are:
//!
//! | Path | Dialect |
//! |---|---|
//! | `/v1/realtime?model=M` | GA; **beta** (2024-10-01 names, flat session) with header `OpenAI-Beta: realtime=v1` |
//! | `/v1/realtime/translations?model=M` | Realtime Translation API |
//! | `/openai/v1/realtime?model=DEPLOYMENT` | GA (Azure) |
//! | `/openai/realtime?api-version=V&deployment=D` | beta (Azure preview) |
//!
//! An unknown path is HTTP 404 at the handshake, a missing model/deployment (or api-version)
//! 400, and with a token configured a missing or wrong `Authorization: Bearer` (on Azure paths
//! also `api-key`) 401 — each with a JSON error body like the real service's. The real
//! service now rejects the beta header (`beta_api_shape_disabled`); this server keeps serving
//! the beta shape, as the test peer of tolk's legacy codec.
//!
//! ## The one decision to know
//!
//! Each connection is one task that owns its socket and a pure state machine
//! ([`realtime_session::RealtimeSession`] or [`translation::TranslationSession`]); the task feeds it
//! client events and clock ticks and sends what it queues. No shared state between sessions
//! beyond the options, so sessions scale with tasks and a bad client can only hurt itself:
//! malformed JSON, binary frames, unknown events and oversized messages become `error` events,
//! never a panic or a dropped server.
//!
//! The content comes from an [`engine::Engine`]; the shipped [`engine::TestEngine`] **proves
//! the plumbing and does not translate** (its output is the input utterance behind a
//! per-language marker tone; see [`engine`]). Failures are injected with [`faults`], from the
//! command line or the `tolk.fault` control event.
//!
//! ## Library use (in-process tests)
//!
//! ```no_run
//! # async fn f() -> std::io::Result<()> {
//! use tolk_core::serve::{ServeOptions, Server};
//! let server = Server::bind(ServeOptions::default()).await?; // 127.0.0.1:0
//! let handle = server.spawn();                                // runs on the current runtime
//! let url = format!("{}/v1/realtime?model=gpt-realtime", handle.url());
//! // … connect clients to `url` …
//! handle.shutdown().await;                                    // sessions get close 1001
//! # Ok(()) }
//! ```
//!
//! Layout: `mod.rs` (options, listener, handshake routing, the connection loop),
//! [`protocol`] (session shapes, validation, errors), [`realtime_session`], [`translation`], [`engine`],
//! [`faults`], [`usage`]; the voice activity detector is [`crate::audio::vad`].

pub mod engine;
pub mod faults;
pub mod protocol;
pub mod realtime_session;
pub mod translation;
pub mod usage;

use std::{
    collections::VecDeque,
    future::Future,
    io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
    time::Instant,
};
use tokio_tungstenite::tungstenite::{
    self, Message,
    handshake::server::{ErrorResponse, Request, Response},
    http::StatusCode,
    protocol::{CloseFrame, WebSocketConfig, frame::coding::CloseCode},
};

use self::{
    engine::{Engine, TestEngine},
    faults::{FaultState, Faults},
    protocol::{ApiError, Dialect},
    realtime_session::RealtimeSession,
    translation::TranslationSession,
};

/// Default real-time factor of response audio: ten times faster than real time.
pub const DEFAULT_ENGINE_SPEED: f64 = 10.0;
/// The real service's GA session cap.
pub const MAX_SESSION: Duration = Duration::from_secs(60 * 60);
/// Largest client event handled (the real service allows 15 MiB of audio per append).
pub const MAX_EVENT_BYTES: usize = 16 << 20;
/// Largest WebSocket message read at all; beyond it the connection closes with 1009.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// What `tolk serve` runs with.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// When set, clients must present it (Bearer, or `api-key` on Azure paths).
    pub token: Option<String>,
    /// Faults for every session, timed from its start.
    pub faults: Faults,
    /// Real-time factor of response audio (1.0 = real time); infinite = as fast as possible.
    pub engine_speed: f64,
    /// The content engine.
    pub engine: Arc<dyn Engine>,
    /// Session length cap (60 min, as on the real service).
    pub max_session: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: None,
            faults: Faults::default(),
            engine_speed: DEFAULT_ENGINE_SPEED,
            engine: Arc::new(TestEngine),
            max_session: MAX_SESSION,
        }
    }
}

/// Counters shared by the server and its sessions.
#[derive(Debug, Default)]
pub struct Stats {
    /// Sessions open now.
    pub active: AtomicU64,
    /// Sessions accepted since start.
    pub total: AtomicU64,
    /// Handshakes refused (404/400/401).
    pub refused: AtomicU64,
}

/// A bound, not yet running server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    options: Arc<ServeOptions>,
    stats: Arc<Stats>,
}

/// A running server (see [`Server::spawn`]). Dropping it shuts the server down too.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    stats: Arc<Stats>,
}

impl ServerHandle {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR`.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The session counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Stops accepting, closes every session with 1001, and waits for the server task.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl Server {
    /// Binds the listener (fails with the OS error naming the address).
    pub async fn bind(options: ServeOptions) -> io::Result<Server> {
        let listener = TcpListener::bind(options.listen)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {}: {e}", options.listen)))?;
        Ok(Server { listener, options: Arc::new(options), stats: Arc::default() })
    }

    /// The bound address (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// Runs on the current tokio runtime until [`ServerHandle::shutdown`] or drop.
    pub fn spawn(self) -> ServerHandle {
        let addr = self.local_addr();
        let stats = self.stats.clone();
        let (stop, mut rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            self.run_until(async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await
        });
        ServerHandle { addr, stop, task: Some(task), stats }
    }

    /// Accepts connections until `shutdown` completes; then closes every session with 1001
    /// ("server shutting down") and returns once they are gone (at most 2 s).
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::pin!(shutdown);
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let _ = tcp.set_nodelay(true);
                        let (options, stats, stop) = (self.options.clone(), self.stats.clone(), stop_rx.clone());
                        tasks.spawn(async move { connection(tcp, peer, options, stats, stop).await });
                    }
                    Err(e) => {
                        // Out of descriptors and the like: back off instead of spinning.
                        tracing::warn!("tolk serve: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        let _ = stop_tx.send(true);
        let _ =
            tokio::time::timeout(Duration::from_secs(2), async { while tasks.join_next().await.is_some() {} }).await;
    }
}

/// Runs `tolk serve` in the foreground: binds, prints `tolk serve: listening on ws://ADDR` as
/// the first stdout line, and serves until Ctrl-C or SIGTERM. Returns the exit status.
pub fn run_foreground(options: ServeOptions) -> u8 {
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("tolk-serve").build() {
        Ok(rt) => rt,
        Err(e) => {
            crate::errln!("error: tolk serve: cannot start the async runtime: {e}");
            return crate::exit::RUNTIME;
        }
    };
    let shutdown = crate::shutdown::Shutdown::on_signals();
    rt.block_on(async move {
        let server = match Server::bind(options).await {
            Ok(s) => s,
            Err(e) => {
                crate::errln!("error: tolk serve: {e}");
                return crate::exit::RUNTIME;
            }
        };
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "tolk serve: listening on ws://{}", server.local_addr());
            let _ = out.flush();
        }
        server.run_until(shutdown.reached(crate::shutdown::Level::Graceful)).await;
        crate::exit::OK
    })
}

/// `prefix` + 20 random alphanumerics, like the real service's ids.
pub(crate) fn new_id(prefix: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + 20);
    s.push_str(prefix);
    s.extend(std::iter::repeat_with(fastrand::alphanumeric).take(20));
    s
}

/// What a handshake selected.
#[derive(Debug, Clone)]
enum Route {
    Realtime { dialect: Dialect, model: String },
    Translation { model: String },
}

fn http_error(status: StatusCode, kind: &str, code: &str, message: &str) -> ErrorResponse {
    let body = json!({"error": {"message": message, "type": kind, "code": code, "param": null}}).to_string();
    let mut r = ErrorResponse::new(Some(body));
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", tungstenite::http::HeaderValue::from_static("application/json"));
    r
}

/// The route of a handshake request, or the HTTP error the real service would give.
// NOTE: the error type is fixed by tungstenite's handshake `Callback`.
#[allow(clippy::result_large_err)]
fn route(req: &Request, token: Option<&str>) -> Result<Route, ErrorResponse> {
    let uri = req.uri();
    let query: Vec<(String, String)> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let q = |k: &str| query.iter().find(|(qk, _)| qk == k).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
    let header = |k: &str| req.headers().get(k).and_then(|v| v.to_str().ok()).map(str::trim);
    let path = uri.path().trim_end_matches('/');
    let azure = path.starts_with("/openai/");
    let missing = |what: &str| {
        http_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "missing_required_parameter",
            &format!("Missing required parameter: '{what}'."),
        )
    };
    let route = match path {
        "/v1/realtime" => {
            let model = q("model").ok_or_else(|| missing("model"))?;
            let beta = header("openai-beta").is_some_and(|b| b.split(',').any(|p| p.trim() == "realtime=v1"));
            Route::Realtime { dialect: if beta { Dialect::Beta } else { Dialect::Ga }, model }
        }
        "/v1/realtime/translations" => Route::Translation { model: q("model").ok_or_else(|| missing("model"))? },
        "/openai/v1/realtime" => {
            Route::Realtime { dialect: Dialect::Ga, model: q("model").ok_or_else(|| missing("model"))? }
        }
        "/openai/realtime" => {
            q("api-version").ok_or_else(|| missing("api-version"))?;
            let deployment = q("deployment").ok_or_else(|| missing("deployment"))?;
            Route::Realtime { dialect: Dialect::Beta, model: deployment }
        }
        _ => {
            return Err(http_error(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "not_found",
                &format!("Invalid URL (GET {}): no such endpoint.", uri.path()),
            ));
        }
    };
    if let Some(token) = token {
        let bearer = header("authorization").and_then(|a| a.strip_prefix("Bearer ")).map(str::trim);
        let api_key = if azure { header("api-key") } else { None };
        let ok = bearer == Some(token) || api_key == Some(token);
        if !ok {
            let (code, msg) = if bearer.is_none() && api_key.is_none() {
                (
                    "missing_api_key",
                    if azure {
                        "Access denied due to missing subscription key. Make sure to include an api-key header."
                    } else {
                        "You didn't provide an API key. Provide it in the Authorization header (Authorization: Bearer YOUR_KEY)."
                    },
                )
            } else {
                ("invalid_api_key", "Incorrect API key provided.")
            };
            return Err(http_error(StatusCode::UNAUTHORIZED, "invalid_request_error", code, msg));
        }
    }
    Ok(route)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(x) => {
                        out.push(x);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The protocol state of one connection.
enum Machine {
    Realtime(Box<RealtimeSession>),
    Translation(Box<TranslationSession>),
}

impl Machine {
    fn out(&mut self) -> &mut VecDeque<Value> {
        match self {
            Machine::Realtime(s) => &mut s.out,
            Machine::Translation(s) => &mut s.out,
        }
    }
    fn deadline(&self) -> Option<Instant> {
        match self {
            Machine::Realtime(s) => s.deadline(),
            Machine::Translation(s) => s.deadline(),
        }
    }
    fn on_event(&mut self, ty: &str, ev: &serde_json::Map<String, Value>, now: Instant) {
        match self {
            Machine::Realtime(s) => s.on_event(ty, ev, now),
            Machine::Translation(s) => s.on_event(ty, ev, now),
        }
    }
    fn on_tick(&mut self, now: Instant) {
        match self {
            Machine::Realtime(s) => s.on_tick(now),
            Machine::Translation(s) => s.on_tick(now),
        }
    }
    fn set_delay(&mut self, d: Duration) {
        match self {
            Machine::Realtime(s) => s.delay = d,
            Machine::Translation(s) => s.delay = d,
        }
    }
    /// Moves `expires_at` and announces it with a `session.updated`.
    fn set_expires_at(&mut self, t: u64) {
        match self {
            Machine::Realtime(s) => s.set_expires_at(t),
            Machine::Translation(s) => s.set_expires_at(t),
        }
    }
    fn closed(&self) -> bool {
        matches!(self, Machine::Translation(s) if s.closed)
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn close_frame(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.to_string().into() }))
}

/// Serves one TCP connection: handshake, then the event loop until either side ends it.
#[allow(clippy::result_large_err)] // the handshake callback's error type is tungstenite's
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    options: Arc<ServeOptions>,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut selected = None;
    let token = options.token.clone();
    let callback = |req: &Request, resp: Response| match route(req, token.as_deref()) {
        Ok(r) => {
            selected = Some(r);
            Ok(resp)
        }
        // NOTE: counted here, before the refusal is sent, so a client that has seen its 4xx
        // also sees it in the stats.
        Err(e) => {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            Err(e)
        }
    };
    let config =
        WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE_BYTES)).max_frame_size(Some(MAX_MESSAGE_BYTES));
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(tcp, callback, Some(config));
    let ws = match tokio::time::timeout(Duration::from_secs(10), handshake).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!("tolk serve: {peer}: handshake failed: {e}");
            return;
        }
        Err(_) => return,
    };
    let Some(route) = selected else { return };
    stats.active.fetch_add(1, Ordering::Relaxed);
    stats.total.fetch_add(1, Ordering::Relaxed);
    tracing::debug!("tolk serve: {peer}: session {route:?}");
    serve_session(ws, route, &options, &mut stop).await;
    stats.active.fetch_sub(1, Ordering::Relaxed);
}

/// How a session loop ended.
enum End {
    /// Send this close frame.
    Close(u16, String),
    /// Drop the TCP connection without a close frame.
    Drop,
    /// The peer is gone or closed; answer nothing more.
    Gone,
}

async fn serve_session(
    ws: tokio_tungstenite::WebSocketStream<TcpStream>,
    route: Route,
    options: &ServeOptions,
    stop: &mut watch::Receiver<bool>,
) {
    let (mut sink, mut stream) = ws.split();
    let start = Instant::now();
    let start_unix = unix_now();
    let mut faults = FaultState::new(&options.faults, start);
    let cap_at = start.checked_add(options.max_session).unwrap_or_else(|| start + Duration::from_secs(365 * 86_400));
    let expiry = |faults: &FaultState| faults.expire_at.map_or(cap_at, |e| e.min(cap_at));
    let expires_unix = |at: Instant| start_unix + (at - start).as_secs_f64().ceil() as u64;
    let (speed, engine) = (options.engine_speed, options.engine.clone());
    let speed = if speed > 0.0 { speed } else { f64::INFINITY };
    let mut m = match route {
        Route::Realtime { dialect, model } => Machine::Realtime(Box::new(RealtimeSession::new(
            dialect,
            model,
            expires_unix(expiry(&faults)),
            engine,
            speed,
        ))),
        Route::Translation { model } => {
            Machine::Translation(Box::new(TranslationSession::new(model, expires_unix(expiry(&faults)), engine, speed)))
        }
    };
    m.set_delay(faults.delay);
    let end = 'session: loop {
        if faults.stall_at.is_some_and(|t| t <= Instant::now()) {
            faults.stall_at = None;
            faults.stalled = true;
        }
        // Queue everything pending, then flush once (one write for a burst of events).
        let mut fed = false;
        while let Some(mut ev) = m.out().pop_front() {
            if faults.stalled {
                continue;
            }
            ev["event_id"] = json!(new_id("event_"));
            if sink.feed(Message::text(ev.to_string())).await.is_err() {
                break 'session End::Gone;
            }
            fed = true;
        }
        if fed && sink.flush().await.is_err() {
            break End::Gone;
        }
        if m.closed() {
            break End::Close(1000, "session closed".into());
        }
        let expire_at = expiry(&faults);
        let deadline =
            [m.deadline(), faults.next_deadline(), Some(expire_at)].into_iter().flatten().min().unwrap_or(expire_at);
        tokio::select! {
            msg = stream.next() => {
                let now = Instant::now();
                match msg {
                    None | Some(Ok(Message::Close(_))) => break End::Gone,
                    Some(Err(tungstenite::Error::Capacity(e))) => {
                        let err = ApiError::invalid(Some("invalid_event"), format!("Message too large: {e}."), None);
                        let mut ev = err.to_event(None);
                        ev["event_id"] = json!(new_id("event_"));
                        let _ = sink.send(Message::text(ev.to_string())).await;
                        break End::Close(1009, "message too large".into());
                    }
                    Some(Err(_)) => break End::Gone,
                    Some(Ok(Message::Text(text))) => {
                        handle_text(&mut m, &mut faults, text.as_str(), now);
                        m.set_delay(faults.delay);
                        let e = expiry(&faults);
                        if e != expire_at {
                            // Make the new deadline visible, as a config change.
                            m.set_expires_at(expires_unix(e));
                        }
                    }
                    Some(Ok(Message::Binary(b))) => {
                        let err = ApiError::invalid(
                            Some("invalid_event"),
                            format!("Binary frames are not supported ({} bytes received); send JSON text frames.", b.len()),
                            None,
                        );
                        m.out().push_back(err.to_event(None));
                    }
                    Some(Ok(_)) => {} // ping/pong are answered by tungstenite
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                let now = Instant::now();
                if faults.close_at.is_some_and(|t| t <= now) {
                    break match faults.close_code {
                        Some(c) => End::Close(c, "closed by fault injection".into()),
                        None => End::Drop,
                    };
                }
                if expire_at <= now {
                    let mins = (expire_at - start).as_secs_f64() / 60.0;
                    let mins = if mins.fract() == 0.0 { format!("{mins:.0}") } else { format!("{mins:.2}") };
                    let err = ApiError::invalid(
                        Some("session_expired"),
                        format!("Your session hit the maximum duration of {mins} minutes."),
                        None,
                    );
                    m.out().clear();
                    if !faults.stalled {
                        let mut ev = err.to_event(None);
                        ev["event_id"] = json!(new_id("event_"));
                        let _ = sink.send(Message::text(ev.to_string())).await;
                    }
                    break End::Close(1001, "session expired".into());
                }
                if let Some((t, _)) = &faults.error_at && *t <= now {
                    let (_, e) = faults.error_at.take().expect("checked");
                    m.out().push_back(e.to_event(None));
                }
                if faults.stall_at.is_some_and(|t| t <= now) {
                    faults.stall_at = None;
                    faults.stalled = true;
                }
                m.on_tick(now);
            }
            _ = stopped(stop) => break End::Close(1001, "server shutting down".into()),
        }
    };
    match end {
        End::Close(code, reason) => {
            let _ = sink.send(close_frame(code, &reason)).await;
            // Give the peer a moment to answer the close, then drop.
            let _ =
                tokio::time::timeout(Duration::from_secs(1), async { while let Some(Ok(_)) = stream.next().await {} })
                    .await;
        }
        End::Drop | End::Gone => {}
    }
}

/// Resolves once the server shuts down (never, if the server is gone already).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// One text frame from the client.
fn handle_text(m: &mut Machine, faults: &mut FaultState, text: &str, now: Instant) {
    let fail = |m: &mut Machine, e: ApiError, eid: Option<&str>| m.out().push_back(e.to_event(eid));
    if text.len() > MAX_EVENT_BYTES {
        return fail(
            m,
            ApiError::invalid(
                Some("invalid_event"),
                format!("Event too large: {} bytes; the maximum is {} bytes.", text.len(), MAX_EVENT_BYTES),
                None,
            ),
            None,
        );
    }
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return fail(
                m,
                ApiError::invalid(Some("invalid_json"), format!("The event is not valid JSON: {e}."), None),
                None,
            );
        }
    };
    let Value::Object(ev) = &v else {
        return fail(m, ApiError::invalid(Some("invalid_event"), "An event must be a JSON object.", None), None);
    };
    let eid = ev.get("event_id").and_then(Value::as_str);
    let ty = match ev.get("type") {
        None => return fail(m, ApiError::missing("type"), eid),
        Some(Value::String(t)) => t.as_str(),
        Some(other) => return fail(m, ApiError::invalid_type("type", "a string", other), eid),
    };
    if ty == "tolk.fault" {
        if let Err(e) = faults.apply_control(&v, now) {
            fail(m, e, eid);
        }
        return;
    }
    m.on_event(ty, ev, now);
}

/// `tolk serve` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the first stdout line names it).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8765")]
    pub listen: SocketAddr,
    /// Require this token: `Authorization: Bearer TOKEN` (on Azure paths also `api-key: TOKEN`).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Real-time factor of response audio: 1 = real time, 10 = ten times faster; 0 = as fast as
    /// possible.
    #[arg(long, value_name = "X", default_value_t = DEFAULT_ENGINE_SPEED)]
    pub engine_speed: f64,
    /// Fault: end every connection abruptly (no close frame) after SECS.
    #[arg(long, value_name = "SECS", help_heading = "Fault injection")]
    pub fault_close_after: Option<f64>,
    /// Fault: with --fault-close-after, send a close frame with this code instead.
    #[arg(long, value_name = "CODE", help_heading = "Fault injection", requires = "fault_close_after")]
    pub fault_close_code: Option<u16>,
    /// Fault: expire every session after SECS (`session_expired` error, then close 1001).
    #[arg(long, value_name = "SECS", help_heading = "Fault injection")]
    pub fault_expire_after: Option<f64>,
    /// Fault: delay every response by MS milliseconds.
    #[arg(long, value_name = "MS", help_heading = "Fault injection")]
    pub fault_delay_ms: Option<u64>,
    /// Fault: send one `server_error` event after SECS.
    #[arg(long, value_name = "SECS", help_heading = "Fault injection")]
    pub fault_error_after: Option<f64>,
    /// Fault: stop sending anything after SECS (the connection stays open).
    #[arg(long, value_name = "SECS", help_heading = "Fault injection")]
    pub fault_stall_after: Option<f64>,
}

/// Runs `tolk serve` from its arguments; returns the exit status.
pub fn run_cli(args: ServeArgs) -> u8 {
    let secs = |name: &str, v: Option<f64>| -> Result<Option<Duration>, String> {
        match v {
            None => Ok(None),
            Some(s) if s.is_finite() && (0.0..=86_400.0).contains(&s) => Ok(Some(Duration::from_secs_f64(s))),
            Some(s) => Err(format!("--{name} {s}: expected seconds between 0 and 86400")),
        }
    };
    let faults = (|| -> Result<Faults, String> {
        Ok(Faults {
            close_after: secs("fault-close-after", args.fault_close_after)?,
            close_code: match args.fault_close_code {
                None => None,
                Some(c @ (1000..=1003 | 1007..=1014 | 3000..=4999)) => Some(c),
                Some(c) => return Err(format!("--fault-close-code {c}: not a close code a server may send")),
            },
            expire_after: secs("fault-expire-after", args.fault_expire_after)?,
            delay: Duration::from_millis(args.fault_delay_ms.unwrap_or(0)),
            error_after: secs("fault-error-after", args.fault_error_after)?,
            stall_after: secs("fault-stall-after", args.fault_stall_after)?,
        })
    })();
    let faults = match faults {
        Ok(f) => f,
        Err(e) => {
            crate::errln!("error: {e}");
            return crate::exit::USAGE;
        }
    };
    if args.engine_speed.is_nan() || args.engine_speed < 0.0 {
        crate::errln!("error: --engine-speed {}: expected a factor ≥ 0 (0 = as fast as possible)", args.engine_speed);
        return crate::exit::USAGE;
    }
    let engine_speed = if args.engine_speed == 0.0 { f64::INFINITY } else { args.engine_speed };
    run_foreground(ServeOptions {
        listen: args.listen,
        token: args.token.filter(|t| !t.is_empty()),
        faults,
        engine_speed,
        ..ServeOptions::default()
    })
}
