//! `tolk serve`: tolk's own Realtime-compatible WebSocket server — the engine the demo and the
//! test suite run on, since nothing here reaches the internet.
//!
//! It answers the paths of the real services, keyed as they are:
//!
//! | Path | Dialect |
//! |---|---|
//! | `/v1/realtime?model=M` | GA; **beta** (2024-10-01 names, flat session) with header `OpenAI-Beta: realtime=v1` (or subprotocol `openai-beta.realtime-v1`) |
//! | `/v1/realtime/translations?model=M` | Realtime Translation API |
//! | `/openai/v1/realtime?model=DEPLOYMENT` (or `deployment=DEPLOYMENT`) | GA (Azure) |
//! | `/openai/realtime?api-version=V&deployment=D` | beta (Azure preview) |
//!
//! An unknown path is HTTP 404, a missing model/deployment (or api-version) 400, and with a
//! token configured a missing or wrong credential 401 — `Authorization: Bearer`, on Azure paths
//! also `api-key`, and the browser-style subprotocol `openai-insecure-api-key.<key>` — each with
//! a JSON error body like the real service's; requests that are no WebSocket upgrade get 405 or
//! 426 (see [`http`]). The real service now rejects the beta header (`beta_api_shape_disabled`);
//! this server keeps serving the beta shape, as the test peer of tolk's legacy codec. With
//! `--tls-cert`/`--tls-key` it serves `wss://` ([`crate::tls`]).
//!
//! ## The one decision to know
//!
//! Each connection is one task that owns its socket and a pure state machine
//! ([`realtime_session::RealtimeSession`] or [`translation::TranslationSession`]); the task feeds it
//! client events and clock ticks and sends what it queues. No shared state between sessions
//! beyond the options and the limits, so sessions scale with tasks and a bad client can only
//! hurt itself: malformed JSON, binary frames, unknown events and oversized messages become
//! `error` events, never a panic or a dropped server.
//!
//! ## Limits (against abuse)
//!
//! - `--max-connections` (default 1024): connections beyond it (handshakes included) get HTTP
//!   503 with `Retry-After`.
//! - `--max-frame-memory` (default 256 MiB): one budget for the client messages being received
//!   across all sessions; a message that would exceed it is refused (`error` `server_busy`, close
//!   1013). See [`limits`].
//! - `--idle-timeout` (default 600 s): a session that neither received a frame nor sent an event
//!   for that long gets an `error` (`idle_timeout`) and close 1001.
//! - Per connection: a 10 s handshake, messages of at most 64 MiB (close 1009) and events of at
//!   most 16 MiB (an `error`, the session goes on), and an 8 KiB read buffer, so an idle session
//!   costs a few KiB instead of tungstenite's default 128 KiB.
//!
//! The content comes from an [`engine::Engine`]; the shipped [`engine::TestEngine`] **proves
//! the plumbing and does not translate** (its output is the input utterance behind a
//! per-language marker tone; see [`engine`]). With the cargo feature `offline`, `--engine
//! offline` selects `offline::OfflineEngine` instead: real interpretation on this machine
//! (Whisper → apertium → espeak-ng), its work on threads of its own (the session polls it
//! with [`engine::Chunk::Pending`]). Failures are injected with [`faults`], from the
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
//! Layout: `mod.rs` (options, listener, the connection loop), [`http`] (request head, routing,
//! HTTP answers), [`limits`] (the frame memory budget), [`trim`] (memory back to the OS after
//! sessions end), [`protocol`] (session shapes, validation, errors), [`realtime_session`],
//! [`translation`], [`engine`], [`faults`], [`usage`]; the voice activity detector is
//! [`crate::audio::vad`].

pub mod engine;
pub mod faults;
pub mod http;
pub mod limits;
#[cfg(feature = "offline")]
pub mod offline;
pub mod protocol;
pub mod realtime_session;
pub mod translation;
pub mod trim;
pub mod usage;

use std::{
    collections::VecDeque,
    future::Future,
    io,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
    time::Instant,
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        self, Message,
        http::{Method, StatusCode},
        protocol::{CloseFrame, Role, WebSocketConfig, frame::coding::CloseCode},
    },
};

use self::{
    engine::{Engine, TestEngine},
    faults::{FaultState, Faults},
    http::Route,
    limits::{FrameBudget, Meter, Metered},
    protocol::ApiError,
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
/// Default `--max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default `--idle-timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Default `--max-frame-memory` (bytes).
pub const DEFAULT_MAX_FRAME_MEMORY: usize = 256 << 20;
/// tungstenite's read buffer per connection (its default, 128 KiB, is what made 2,000 idle
/// sessions cost 280 MB).
const READ_BUFFER_BYTES: usize = 8 << 10;
/// Time for the TLS handshake and the HTTP request head.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections over the limit that get a 503 at the same time; beyond, they are dropped.
const MAX_REFUSING: usize = 64;

/// What `tolk serve` runs with.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// When set, clients must present it (Bearer, `api-key` on Azure paths, or the
    /// `openai-insecure-api-key.<key>` subprotocol).
    pub token: Option<String>,
    /// Faults for every session, timed from its start.
    pub faults: Faults,
    /// Real-time factor of response audio (1.0 = real time); infinite = as fast as possible.
    pub engine_speed: f64,
    /// The content engine.
    pub engine: Arc<dyn Engine>,
    /// Session length cap (60 min, as on the real service).
    pub max_session: Duration,
    /// Serve `wss://` with this config (see [`crate::tls::server_config`]).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Open connections (handshakes included) beyond which new ones get HTTP 503.
    pub max_connections: usize,
    /// Close a session after this long without a client frame or a server event; `None` = never.
    pub idle_timeout: Option<Duration>,
    /// Bytes of client messages being received at once, across sessions ([`limits`]).
    pub max_frame_memory: usize,
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
            tls: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            max_frame_memory: DEFAULT_MAX_FRAME_MEMORY,
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
    /// Requests answered with an HTTP error (404/405/426/400/401/503) or dropped over the
    /// connection limit.
    pub refused: AtomicU64,
    /// Messages refused over the frame memory budget (their sessions closed with 1013).
    pub busy: AtomicU64,
    /// Sessions closed by the idle timeout.
    pub idle_closed: AtomicU64,
}

/// What every connection task shares.
#[derive(Debug)]
struct Shared {
    options: ServeOptions,
    stats: Arc<Stats>,
    budget: Arc<FrameBudget>,
    /// Connections being served (handshakes included).
    open: AtomicUsize,
    /// Connections over the limit being answered 503.
    refusing: AtomicUsize,
    /// Sessions ended since the last [`trim::release_freed_memory`].
    ended: AtomicUsize,
}

/// Decrements a connection counter when the connection task ends.
struct Slot(Arc<Shared>, bool);

impl Drop for Slot {
    fn drop(&mut self) {
        let counter = if self.1 { &self.0.refusing } else { &self.0.open };
        counter.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A bound, not yet running server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

/// A running server (see [`Server::spawn`]). Dropping it shuts the server down too.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    tls: bool,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    stats: Arc<Stats>,
}

impl ServerHandle {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR` (`wss://ADDR` with TLS).
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "wss" } else { "ws" }, self.addr)
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
        let shared = Arc::new(Shared {
            budget: FrameBudget::new(options.max_frame_memory),
            options,
            stats: Arc::default(),
            open: AtomicUsize::new(0),
            refusing: AtomicUsize::new(0),
            ended: AtomicUsize::new(0),
        });
        Ok(Server { listener, shared })
    }

    /// The bound address (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// `ws://ADDR` (`wss://ADDR` with TLS).
    pub fn url(&self) -> String {
        format!("{}://{}", if self.shared.options.tls.is_some() { "wss" } else { "ws" }, self.local_addr())
    }

    /// Runs on the current tokio runtime until [`ServerHandle::shutdown`] or drop.
    pub fn spawn(self) -> ServerHandle {
        let addr = self.local_addr();
        let stats = self.shared.stats.clone();
        let tls = self.shared.options.tls.is_some();
        let (stop, mut rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            self.run_until(async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await
        });
        ServerHandle { addr, tls, stop, task: Some(task), stats }
    }

    /// Accepts connections until `shutdown` completes; then closes every session with 1001
    /// ("server shutting down") and returns once they are gone (at most 2 s).
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let acceptor = self.shared.options.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        tokio::pin!(shutdown);
        let mut tasks = tokio::task::JoinSet::new();
        let mut trim = tokio::time::interval(Duration::from_secs(1));
        trim.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = trim.tick() => {
                    // Once sessions have ended (many, or all of them), give their memory back.
                    let ended = self.shared.ended.load(Ordering::Relaxed);
                    let open = self.shared.open.load(Ordering::Relaxed);
                    if ended >= 64 || (ended > 0 && open == 0) {
                        self.shared.ended.fetch_sub(ended, Ordering::Relaxed);
                        tokio::task::spawn_blocking(trim::release_freed_memory);
                    }
                }
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let shared = &self.shared;
                        let full = shared.open.load(Ordering::Relaxed) >= shared.options.max_connections;
                        if full && shared.refusing.load(Ordering::Relaxed) >= MAX_REFUSING {
                            // Flooded: not even a 503 for this one.
                            shared.stats.refused.fetch_add(1, Ordering::Relaxed);
                            drop(tcp);
                            continue;
                        }
                        (if full { &shared.refusing } else { &shared.open }).fetch_add(1, Ordering::Relaxed);
                        let slot = Slot(shared.clone(), full);
                        let _ = tcp.set_nodelay(true);
                        let (acceptor, stop) = (acceptor.clone(), stop_rx.clone());
                        tasks.spawn(async move { connection(tcp, peer, acceptor, full, slot, stop).await });
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

/// Runs `tolk serve` in the foreground: binds, prints `tolk serve: listening on ws://ADDR` (or
/// `wss://`) as the first stdout line, and serves until Ctrl-C or SIGTERM. Returns the exit
/// status.
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
            let _ = writeln!(out, "tolk serve: listening on {}", server.url());
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

/// Serves one TCP connection: TLS (when configured), then [`serve_conn`].
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    full: bool,
    slot: Slot,
    stop: watch::Receiver<bool>,
) {
    let shared = slot.0.clone();
    match acceptor {
        None => serve_conn(tcp, peer, full, &shared, stop).await,
        Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => serve_conn(tls, peer, full, &shared, stop).await,
            Ok(Err(e)) => tracing::debug!("tolk serve: {peer}: TLS handshake failed: {e}"),
            Err(_) => tracing::debug!("tolk serve: {peer}: TLS handshake timed out"),
        },
    }
    drop(slot);
}

/// The HTTP request, its answer, and for an upgrade the session until either side ends it.
async fn serve_conn<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    full: bool,
    shared: &Shared,
    mut stop: watch::Receiver<bool>,
) {
    let stats = &shared.stats;
    let head = match tokio::time::timeout(HANDSHAKE_TIMEOUT, http::read_head(&mut stream)).await {
        Ok(Ok(Ok(Some(head)))) => head,
        Ok(Ok(Err(answer))) => {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            http::send_error(&mut stream, &answer, false).await;
            return;
        }
        Ok(Ok(Ok(None))) | Ok(Err(_)) => return,
        Err(_) => {
            tracing::debug!("tolk serve: {peer}: no request head within {HANDSHAKE_TIMEOUT:?}");
            return;
        }
    };
    let is_head = head.request.method() == Method::HEAD;
    let answer = if full {
        let mut r = http::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "too_many_connections",
            &format!(
                "The server has {} connections open, its limit (--max-connections); try again later.",
                shared.options.max_connections
            ),
        );
        r.headers_mut().insert("retry-after", tungstenite::http::HeaderValue::from_static("1"));
        Err(r)
    } else {
        http::answer(&head.request, shared.options.token.as_deref())
    };
    let (route, upgrade) = match answer {
        Ok(a) => a,
        Err(answer) => {
            // NOTE: counted before the answer is sent, so a client that has seen its 4xx also
            // sees it in the stats.
            stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                "tolk serve: {peer}: {} {} → {}",
                head.request.method(),
                head.request.uri(),
                answer.status()
            );
            http::send_error(&mut stream, &answer, is_head).await;
            return;
        }
    };
    if http::send_upgrade(&mut stream, &upgrade).await.is_err() {
        return;
    }
    let meter = Meter::new(shared.budget.clone());
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let ws = WebSocketStream::from_partially_read(
        Metered::new(stream, meter.clone()),
        head.rest,
        Role::Server,
        Some(config),
    )
    .await;
    stats.active.fetch_add(1, Ordering::Relaxed);
    stats.total.fetch_add(1, Ordering::Relaxed);
    tracing::debug!("tolk serve: {peer}: session {route:?}");
    serve_session(ws, route, shared, &meter, &mut stop).await;
    stats.active.fetch_sub(1, Ordering::Relaxed);
    shared.ended.fetch_add(1, Ordering::Relaxed);
}

/// How a session loop ended.
enum End {
    /// Send this close frame.
    Close(u16, String),
    /// Drop the TCP connection without a close frame.
    Drop,
    /// The peer closed: send tungstenite's answer to its close frame.
    PeerClosed,
    /// The peer is gone; answer nothing more.
    Gone,
    /// A message over the frame memory budget: refuse it, close 1013, drop its bytes.
    Refused,
}

/// Serializes a queued event with a fresh `event_id`.
fn event_message(mut ev: Value) -> Message {
    ev["event_id"] = json!(new_id("event_"));
    Message::text(ev.to_string())
}

async fn serve_session<S: AsyncRead + AsyncWrite + Unpin>(
    ws: WebSocketStream<Metered<S>>,
    route: Route,
    shared: &Shared,
    meter: &Meter,
    stop: &mut watch::Receiver<bool>,
) {
    let options = &shared.options;
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
    let far = start + Duration::from_secs(365 * 86_400);
    let mut last_active = start;
    let end = 'session: loop {
        if faults.stall_at.is_some_and(|t| t <= Instant::now()) {
            faults.stall_at = None;
            faults.stalled = true;
        }
        // Queue everything pending, then flush once (one write for a burst of events).
        let mut fed = false;
        while let Some(ev) = m.out().pop_front() {
            if faults.stalled {
                continue;
            }
            if sink.feed(event_message(ev)).await.is_err() {
                break 'session End::Gone;
            }
            fed = true;
        }
        if fed {
            if sink.flush().await.is_err() {
                break End::Gone;
            }
            last_active = Instant::now();
        }
        if m.closed() {
            break End::Close(1000, "session closed".into());
        }
        let expire_at = expiry(&faults);
        let idle_at = options.idle_timeout.and_then(|d| last_active.checked_add(d)).unwrap_or(far);
        let deadline = [m.deadline(), faults.next_deadline(), Some(expire_at), Some(idle_at)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(expire_at);
        tokio::select! {
            msg = stream.next() => {
                let now = Instant::now();
                last_active = now;
                match msg {
                    None => break End::Gone,
                    Some(Ok(Message::Close(_))) => break End::PeerClosed,
                    Some(Err(_)) if meter.refused() => break End::Refused,
                    Some(Err(tungstenite::Error::Capacity(e))) => {
                        let err = ApiError::invalid(Some("invalid_event"), format!("Message too large: {e}."), None);
                        let _ = sink.send(event_message(err.to_event(None))).await;
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
                // The message is handled (and dropped): its bytes leave the budget.
                meter.release();
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
                        let _ = sink.send(event_message(err.to_event(None))).await;
                    }
                    break End::Close(1001, "session expired".into());
                }
                if idle_at <= now {
                    let secs = options.idle_timeout.unwrap_or_default().as_secs_f64();
                    let err = ApiError::invalid(
                        Some("idle_timeout"),
                        format!("No client frames and no server events for {secs} s (the server's --idle-timeout); closing."),
                        None,
                    );
                    if !faults.stalled {
                        let _ = sink.send(event_message(err.to_event(None))).await;
                    }
                    shared.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                    break End::Close(1001, "idle timeout".into());
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
        End::PeerClosed => {
            // tungstenite queued the answer to the peer's close frame; send it, and let the
            // stream end (the server closes the TCP connection first, as RFC 6455 asks).
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                let _ = sink.flush().await;
                while let Some(Ok(_)) = stream.next().await {}
            })
            .await;
        }
        End::Refused => {
            shared.stats.busy.fetch_add(1, Ordering::Relaxed);
            let mib = |b: usize| b as f64 / (1 << 20) as f64;
            let err = ApiError {
                kind: "server_error".into(),
                code: Some("server_busy".into()),
                message: format!(
                    "Message refused after {:.1} MiB: the server is receiving {:.0} MiB of client messages at once, \
                     its budget (--max-frame-memory); send smaller events, or retry later.",
                    mib(meter.pending()),
                    mib(shared.budget.limit())
                ),
                param: None,
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                let _ = sink.feed(event_message(err.to_event(None))).await;
                let _ = sink.send(close_frame(1013, "server busy")).await;
            })
            .await;
            // Drop the half-received message now (the WebSocket state holds it), then discard
            // what the client still sends for a moment so it reads the close, not a reset.
            if let Ok(ws) = stream.reunite(sink) {
                let raw = ws.into_inner().take();
                meter.release();
                if let Some(mut raw) = raw {
                    let _ = tokio::time::timeout(Duration::from_secs(1), raw.shutdown()).await;
                    http::drain(&mut raw, Duration::from_secs(2)).await;
                }
            }
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
    /// Require this token: `Authorization: Bearer TOKEN`, on Azure paths also `api-key: TOKEN`,
    /// or the browser-style subprotocol `openai-insecure-api-key.TOKEN`.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Real-time factor of response audio: 1 = real time, 10 = ten times faster; 0 = as fast as
    /// possible.
    #[arg(long, value_name = "X", default_value_t = DEFAULT_ENGINE_SPEED)]
    pub engine_speed: f64,
    /// The content engine: `test` (deterministic tones and echoes: proves the plumbing, does
    /// not translate) or `offline` (Whisper tiny.en + apertium + espeak-ng on this machine;
    /// needs a build with the cargo feature `tolk-core/offline` and `scripts/models.sh`).
    #[arg(long, value_name = "ENGINE", default_value = "test")]
    pub engine: String,
    /// Print the languages the offline engine can interpret into (English source), one per
    /// line as `en→<tag> <apertium mode file>`, and exit.
    #[arg(long)]
    pub list_languages: bool,
    /// Serve wss:// with this PEM certificate chain (leaf first); needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key", help_heading = "TLS")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert", help_heading = "TLS")]
    pub tls_key: Option<PathBuf>,
    /// Open connections (handshakes included) beyond which new ones get HTTP 503.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS, help_heading = "Limits")]
    pub max_connections: usize,
    /// Close a session (error `idle_timeout`, close 1001) after SECS without a client frame or a
    /// server event; 0 = never.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_IDLE_TIMEOUT.as_secs_f64(), help_heading = "Limits")]
    pub idle_timeout: f64,
    /// MiB of client messages being received at once, across all sessions; a message that would
    /// go over it is refused (error `server_busy`, close 1013).
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_MAX_FRAME_MEMORY >> 20, help_heading = "Limits")]
    pub max_frame_memory: usize,
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

/// The engine named `name` (`test`, or `offline` in a build with the feature); the error is
/// one line.
pub fn engine_by_name(name: &str) -> Result<Arc<dyn Engine>, String> {
    match name {
        "test" => Ok(Arc::new(TestEngine)),
        #[cfg(feature = "offline")]
        "offline" => Ok(Arc::new(offline::OfflineEngine::load()?)),
        #[cfg(not(feature = "offline"))]
        "offline" => {
            Err("this tolk was built without the offline engine (build with `--features tolk-core/offline`)".into())
        }
        other => Err(format!("unknown engine {other:?} (known: test, offline)")),
    }
}

/// The engine named by `--engine`; `None` after `--list-languages` printed them; else the
/// exit code after a one-line error.
fn select_engine(name: &str, list: bool) -> Result<Option<Arc<dyn Engine>>, u8> {
    #[cfg(feature = "offline")]
    if list {
        let langs = offline::installed_languages();
        if langs.is_empty() {
            crate::errln!(
                "error: --list-languages: no English → X apertium pair with an espeak-ng voice in {} (run scripts/deps.sh)",
                offline::mt::modes_dir().display()
            );
            return Err(crate::exit::RUNTIME);
        }
        for (tag, mode) in langs {
            println!("en→{tag} {}", mode.display());
        }
        return Ok(None);
    }
    #[cfg(not(feature = "offline"))]
    if list {
        crate::errln!(
            "error: --list-languages: this tolk was built without the offline engine (cargo feature tolk-core/offline)"
        );
        return Err(crate::exit::USAGE);
    }
    engine_by_name(name).map(Some).map_err(|e| {
        crate::errln!("error: --engine {name}: {e}");
        crate::exit::USAGE
    })
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
    let idle_timeout = match secs("idle-timeout", Some(args.idle_timeout)) {
        Ok(d) => d.filter(|d| !d.is_zero()),
        Err(e) => {
            eprintln!("error: {e}");
            return crate::exit::USAGE;
        }
    };
    if args.max_connections == 0 {
        eprintln!("error: --max-connections 0: expected at least 1");
        return crate::exit::USAGE;
    }
    if !(1..=(1 << 20)).contains(&args.max_frame_memory) {
        eprintln!("error: --max-frame-memory {}: expected MiB between 1 and 1048576", args.max_frame_memory);
        return crate::exit::USAGE;
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match crate::tls::server_config(cert, key) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("error: {e}");
                return crate::exit::USAGE;
            }
        },
        _ => None,
    };
    let engine: Arc<dyn Engine> = match select_engine(&args.engine, args.list_languages) {
        Ok(Some(e)) => e,
        Ok(None) => return crate::exit::OK,
        Err(code) => return code,
    };
    run_foreground(ServeOptions {
        engine,
        listen: args.listen,
        token: args.token.filter(|t| !t.is_empty()),
        faults,
        engine_speed,
        tls,
        max_connections: args.max_connections,
        idle_timeout,
        max_frame_memory: args.max_frame_memory << 20,
        ..ServeOptions::default()
    })
}
