//! The listener server: HTTP(S) on `[listen] address`, reusing `tolk serve`'s request-head
//! reader and its WebSocket stack (tokio-tungstenite, tokio-rustls).
//!
//! | request | answer |
//! |---|---|
//! | `GET /` (`/index.html`) | the listener page |
//! | `GET /app.js`, `/worklet.js`, `/style.css`, `/icon.svg` | the page's assets, from the binary |
//! | `GET /qr` | a printable page: one QR code per language (`/?lang=es`, with the event code) |
//! | `GET /api/languages` | `{"title":…,"languages":[{"code","name","floor","spoken"}]}` |
//! | `GET /ws?lang=es&codec=opus\|pcm` | WebSocket: a `hello` JSON frame, then binary packets and caption JSON frames |
//! | `GET /operator?token=…` | the operator console (needs `operator_token`) |
//! | `GET /api/operator/status` | the console's status JSON (see [`Hub::operator_json`]) |
//! | `POST /api/operator/mute?lang=es&on=true\|false` | mute (unmute) a language for its listeners |
//! | `POST /api/operator/floor?lang=es&on=true\|false` | switch a language to the floor (and back) |
//! | `POST /api/operator/announce?text=…` | a typed announcement, spoken and captioned on every translated route |
//! | `/operator`, `/api/operator/*` without `operator_token` configured | 404 |
//! | `/operator`, `/api/operator/*` without the token (`?token=` or `Authorization: Bearer`) or with a wrong one | 401, nothing else |
//! | anything else (other paths, `..`, encoded paths) | 404, nothing served |
//! | another method than GET/HEAD (POST on `/api/operator/*`) | 405 |
//! | with `event_code`: `/api/languages` or `/ws` without `code=` matching | 401 |
//! | over `max_listeners` WebSocket listeners | 503 |
//! | over `max_listeners` + [`EXTRA_CONNECTIONS`] connections open | closed at once, unanswered |
//!
//! Only the fixed paths above are served: no file system is read at run time, so no path
//! traversal can reach one.
//!
//! A listener's socket is written by its own task. It reads its language's packets from a
//! broadcast channel; when it falls [`hub::PACKETS_KEPT`] packets behind (a slow phone on bad
//! Wi-Fi), it skips its own oldest ones, counted in [`hub::Channel::dropped`]. A write that
//! does not complete in [`WRITE_TIMEOUT`] (a listener that never reads) ends that listener
//! alone. A malformed frame from a client ends that client's connection alone.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{broadcast::error::RecvError, watch},
    task::JoinHandle,
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        Message,
        handshake::server::create_response,
        protocol::{CloseFrame, Role, WebSocketConfig, frame::coding::CloseCode},
    },
};

use super::{assets, hub, hub::Hub};
use crate::{
    config::listen::{ListenSettings, ListenTls},
    serve::http,
};

/// How long a client has to send its request head (and finish TLS).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A write to a listener that does not complete in this time ends that listener.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest message a listener may send (it sends only small pings).
const MAX_CLIENT_MESSAGE: usize = 4 << 10;
/// Longest announcement (characters).
pub const MAX_ANNOUNCEMENT: usize = 500;
/// Connections beyond `max_listeners` that may be open at once (page loads, requests still
/// being read). Past that a new connection is closed at once, unanswered: a flood of idle
/// connections costs the listeners already connected nothing, and new page loads wait at
/// most [`HEAD_TIMEOUT`] for the idle ones to be dropped.
pub const EXTRA_CONNECTIONS: usize = 256;

/// What every connection task shares.
struct State {
    hub: Arc<Hub>,
    settings: ListenSettings,
    listeners: AtomicUsize,
    /// Connections open (listeners included).
    open: AtomicUsize,
}

/// One open connection, counted while it lives.
struct Open(Arc<State>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
    }
}

/// A running listener server.
pub struct ListenServer {
    addr: SocketAddr,
    tls: bool,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    /// The Icecast publishers (`listen.icecast_url`), one per language.
    icecast: Vec<JoinHandle<()>>,
}

impl ListenServer {
    /// Binds `settings.address` and starts serving on the current runtime. Errors are one
    /// line naming the address or the TLS file.
    pub async fn start(settings: &ListenSettings, hub: Arc<Hub>) -> Result<ListenServer, String> {
        let acceptor = match &settings.tls {
            Some(ListenTls::Files { cert, key }) => {
                Some(tokio_rustls::TlsAcceptor::from(crate::tls::server_config(cert, key)?))
            }
            Some(ListenTls::SelfSigned) => {
                let mut names = vec!["localhost".to_string()];
                if !settings.address.ip().is_unspecified() {
                    names.push(settings.address.ip().to_string());
                }
                if let Some(host) = settings.public_url.as_deref().and_then(url_host) {
                    names.push(host);
                }
                Some(tokio_rustls::TlsAcceptor::from(crate::tls::self_signed(names)?))
            }
            None => None,
        };
        let listener = TcpListener::bind(settings.address)
            .await
            .map_err(|e| format!("listen.address: cannot listen on {}: {e}", settings.address))?;
        let addr = listener.local_addr().map_err(|e| format!("listen.address: {e}"))?;
        let state = Arc::new(State {
            hub,
            settings: settings.clone(),
            listeners: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
        });
        let (stop, stop_rx) = watch::channel(false);
        let tls = acceptor.is_some();
        let icecast = match &settings.icecast {
            Some(ice) => super::icecast::spawn(ice, &settings.title, &state.hub, stop_rx.clone()),
            None => vec![],
        };
        let task = tokio::spawn(accept_loop(listener, acceptor, state, stop_rx));
        Ok(ListenServer { addr, tls, stop, task: Some(task), icecast })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The page's URL (`http://127.0.0.1:8090/`, `https://…` with TLS).
    pub fn url(&self) -> String {
        let host = if self.addr.ip().is_unspecified() { "localhost".to_string() } else { self.addr.ip().to_string() };
        let host = if self.addr.is_ipv6() && !self.addr.ip().is_unspecified() { format!("[{host}]") } else { host };
        format!("{}://{host}:{}/", if self.tls { "https" } else { "http" }, self.addr.port())
    }

    /// Stops accepting and closes every listener (1001), waiting up to 2 s.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        for t in self.icecast.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    let for_tasks = stop.clone();
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => {
                    if state.open.load(Relaxed) >= state.settings.max_listeners + EXTRA_CONNECTIONS {
                        drop(tcp);
                        continue;
                    }
                    state.open.fetch_add(1, Relaxed);
                    let _ = tcp.set_nodelay(true);
                    let guard = Open(Arc::clone(&state));
                    let (state, stop, acceptor) = (Arc::clone(&state), for_tasks.clone(), acceptor.clone());
                    tasks.spawn(async move {
                        connection(tcp, acceptor, state, stop).await;
                        drop(guard);
                    });
                }
                Err(e) => {
                    tracing::warn!("listen: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
}

async fn connection(
    tcp: TcpStream,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    stop: watch::Receiver<bool>,
) {
    match acceptor {
        None => serve(tcp, &state, stop).await,
        Some(a) => {
            if let Ok(Ok(tls)) = tokio::time::timeout(HEAD_TIMEOUT, a.accept(tcp)).await {
                serve(tls, &state, stop).await;
            }
        }
    }
}

/// The host of an `http(s)://host[:port]/…` URL (brackets of an IPv6 address removed).
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    (!host.is_empty()).then(|| host.to_string())
}

/// Resolves once the server is told to stop (or is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// The query parameters of `uri`, percent-decoded.
fn query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(x) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(x);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes one whole answer and closes the connection.
async fn respond<S: AsyncWrite + Unpin>(stream: &mut S, status: u16, content_type: &str, body: &[u8], head_only: bool) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        503 => "Service Unavailable",
        _ => "",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\ncache-control: \
         no-cache\r\nx-content-type-options: nosniff\r\nreferrer-policy: no-referrer\r\ncontent-security-policy: \
         default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'\r\n",
        body.len()
    );
    if status == 405 {
        // The operator's controls take POST only; everything else GET and HEAD.
        out.push_str(if body.starts_with(b"only POST") { "allow: POST\r\n" } else { "allow: GET, HEAD\r\n" });
    }
    out.push_str("connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(body);
    }
    let io = async {
        stream.write_all(&bytes).await?;
        stream.flush().await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, io).await;
}

async fn text<S: AsyncWrite + Unpin>(stream: &mut S, status: u16, message: &str, head_only: bool) {
    respond(stream, status, "text/plain; charset=utf-8", format!("{message}\n").as_bytes(), head_only).await;
}

async fn text_answer<S: AsyncWrite + Unpin>(stream: &mut S, status: u16, message: &str) {
    text(stream, status, message, false).await;
}

/// One connection: the request head, then a page, an asset, the language list or a listener.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, state: &State, stop: watch::Receiver<bool>) {
    let head = match tokio::time::timeout(HEAD_TIMEOUT, http::read_head(&mut stream)).await {
        Ok(Ok(Ok(Some(h)))) => h,
        Ok(Ok(Err(_))) => return text(&mut stream, 400, "bad request", false).await,
        _ => return,
    };
    let req = &head.request;
    let method = req.method().as_str();
    let head_only = method == "HEAD";
    let path = req.uri().path();
    let q = query(req.uri().query());
    let get = |k: &str| q.iter().find(|(qk, _)| qk == k).map(|(_, v)| v.as_str());
    if path == "/operator" || path.starts_with("/api/operator/") {
        return operator(&mut stream, state, req, path, &q).await;
    }
    if method != "GET" && !head_only {
        return text(&mut stream, 405, "only GET and HEAD", false).await;
    }
    let code_ok = state.settings.event_code.as_deref().is_none_or(|c| get("code") == Some(c));
    if let Some((content_type, body)) = assets::asset(path) {
        let body =
            if path == "/" || path == "/index.html" { assets::index(&state.settings.title) } else { body.to_vec() };
        return respond(&mut stream, 200, content_type, &body, head_only).await;
    }
    match path {
        "/qr" => {
            // The printable page: one QR code per language, for the doors and the seats. Its
            // links carry the event code, so it is guarded by it too.
            if !code_ok {
                return text(&mut stream, 401, "this event needs its code (?code=…)", head_only).await;
            }
            let host = req.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or("localhost");
            let own = format!("{}://{host}/", if state.settings.tls.is_some() { "https" } else { "http" });
            let base = super::listener_url(&state.settings, &own);
            let page = qr_page(&state.settings.title, &base, &state.hub);
            respond(&mut stream, 200, "text/html; charset=utf-8", page.as_bytes(), head_only).await
        }
        "/api/languages" => {
            if !code_ok {
                return text(&mut stream, 401, "this event needs its code (?code=…)", head_only).await;
            }
            let langs: Vec<_> = state
                .hub
                .channels
                .iter()
                .map(|c| json!({"code": c.code, "name": c.name, "floor": c.floor, "spoken": c.spoken}))
                .collect();
            let body = json!({"title": state.settings.title, "languages": langs}).to_string();
            respond(&mut stream, 200, "application/json", body.as_bytes(), head_only).await
        }
        "/ws" => {
            if !code_ok {
                return text(&mut stream, 401, "this event needs its code (?code=…)", head_only).await;
            }
            let lang = get("lang").unwrap_or("");
            let Some(channel) = state.hub.channel(lang).cloned() else {
                return text(&mut stream, 404, &format!("no language \"{lang}\" here"), head_only).await;
            };
            let codec = match get("codec").unwrap_or("opus") {
                "opus" => Codec::Opus,
                "pcm" => Codec::Pcm,
                other => {
                    return text(&mut stream, 400, &format!("unknown codec \"{other}\" (expected opus or pcm)"), false)
                        .await;
                }
            };
            let upgrade = match create_response(req) {
                Ok(r) => r,
                Err(e) => return text(&mut stream, 426, &format!("/ws is a WebSocket: {e}"), head_only).await,
            };
            if state.listeners.fetch_add(1, Relaxed) >= state.settings.max_listeners {
                state.listeners.fetch_sub(1, Relaxed);
                return text(&mut stream, 503, "too many listeners; try again later", false).await;
            }
            if http::send_upgrade(&mut stream, &upgrade).await.is_ok() {
                // Small buffers: a listener reads almost nothing, and each packet is written
                // (and flushed) as it comes; tungstenite's 128 KiB defaults per direction would
                // cost a large audience far more than its packets.
                let config = WebSocketConfig::default()
                    .read_buffer_size(4 << 10)
                    .write_buffer_size(0)
                    .max_message_size(Some(MAX_CLIENT_MESSAGE))
                    .max_frame_size(Some(MAX_CLIENT_MESSAGE));
                let ws = WebSocketStream::from_partially_read(stream, head.rest, Role::Server, Some(config)).await;
                channel.join();
                listener(ws, &channel, codec, state, stop).await;
                channel.leave();
            }
            state.listeners.fetch_sub(1, Relaxed);
        }
        _ => text(&mut stream, 404, "not found", head_only).await,
    }
}

/// The operator console and its API: the token first (never logged; compared in constant
/// time), then the page, the status or a control.
async fn operator<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    state: &State,
    req: &tokio_tungstenite::tungstenite::handshake::server::Request,
    path: &str,
    q: &[(String, String)],
) {
    let get = |k: &str| q.iter().find(|(qk, _)| qk == k).map(|(_, v)| v.as_str());
    let method = req.method().as_str();
    let head_only = method == "HEAD";
    let Some(token) = &state.settings.operator_token else {
        return text(stream, 404, "not found (no listen.operator_token configured)", head_only).await;
    };
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim);
    if !bearer.or(get("token")).is_some_and(|t| token.matches(t)) {
        return text(stream, 401, "the operator console needs its token", head_only).await;
    }
    let control = path == "/api/operator/mute" || path == "/api/operator/floor" || path == "/api/operator/announce";
    let allowed = if control { method == "POST" } else { method == "GET" || head_only };
    if !allowed {
        let m = if control { "only POST" } else { "only GET and HEAD" };
        return text(stream, 405, m, false).await;
    }
    match path {
        "/operator" => {
            let page = assets::operator(&state.settings.title);
            respond(stream, 200, "text/html; charset=utf-8", &page, head_only).await
        }
        "/api/operator/status" => {
            let mut v = state.hub.operator_json();
            v["title"] = json!(state.settings.title);
            respond(stream, 200, "application/json", v.to_string().as_bytes(), head_only).await
        }
        "/api/operator/announce" => {
            let text = get("text").unwrap_or("").trim();
            let n = text.chars().count();
            if n == 0 || n > MAX_ANNOUNCEMENT || text.chars().any(char::is_control) {
                let msg = format!("text must be 1 to {MAX_ANNOUNCEMENT} characters on one line (got {n})");
                return text_answer(stream, 400, &msg).await;
            }
            let routes = state.hub.announce(text);
            respond(stream, 200, "application/json", json!({"routes": routes}).to_string().as_bytes(), false).await
        }
        _ if control => {
            let lang = get("lang").unwrap_or("");
            let on = match get("on") {
                Some("true" | "1") => true,
                Some("false" | "0") => false,
                other => {
                    let msg = format!("on must be true or false (got {})", other.unwrap_or("nothing"));
                    return text(stream, 400, &msg, false).await;
                }
            };
            let result = if path.ends_with("/mute") {
                state.hub.set_muted(lang, on)
            } else {
                state.hub.set_floor_only(lang, on)
            };
            match result {
                Ok(()) => {
                    let ch = state.hub.channel(lang).map(|c| {
                        json!({"language": c.code, "muted": c.muted.load(Relaxed), "floor_only": c.floor_only.load(Relaxed)})
                    });
                    respond(stream, 200, "application/json", json!(ch).to_string().as_bytes(), false).await
                }
                Err(e) => text(stream, if state.hub.channel(lang).is_some() { 400 } else { 404 }, &e, false).await,
            }
        }
        _ => text(stream, 404, "not found", head_only).await,
    }
}

/// The printable page of QR codes: one per language, each opening the page with it chosen.
fn qr_page(title: &str, base: &str, hub: &Hub) -> String {
    let esc = assets::escape;
    let mut cards = String::new();
    for c in &hub.channels {
        let url = super::with_query(base, "lang", &c.code);
        let svg = super::qr_svg(&url, 240).unwrap_or_default();
        cards += &format!(
            "<figure>{svg}<figcaption lang=\"{}\"><strong>{}</strong><br><small>{}</small></figcaption></figure>\n",
            esc(&c.spoken),
            esc(&c.name),
            esc(&url)
        );
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} — listen</title>\n\
         <link rel=\"stylesheet\" href=\"/style.css\"></head>\n<body class=\"qr\"><h1>{t}</h1>\n\
         <p>Scan, choose Listen, and hear it in your language.</p>\n<div class=\"qr-grid\">\n{cards}</div></body></html>\n",
        t = esc(title)
    )
}

/// The audio a listener asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Opus,
    Pcm,
}

/// One listener's session: packets and captions out, pings answered, until either side ends.
async fn listener<S: AsyncRead + AsyncWrite + Unpin>(
    ws: WebSocketStream<S>,
    channel: &hub::Channel,
    codec: Codec,
    state: &State,
    mut stop: watch::Receiver<bool>,
) {
    let (mut tx, mut rx) = ws.split();
    let mut audio = match codec {
        Codec::Opus => channel.opus.subscribe(),
        Codec::Pcm => channel.pcm.subscribe(),
    };
    let mut captions = channel.captions.subscribe();
    let hello = json!({
        "type": "hello",
        "lang": channel.code,
        "name": channel.name,
        "codec": if codec == Codec::Opus { "opus" } else { "pcm" },
        "sample_rate": crate::router::RATE,
        "frame_ms": 20,
        "title": state.settings.title,
    });
    if !matches!(tokio::time::timeout(WRITE_TIMEOUT, tx.send(Message::text(hello.to_string()))).await, Ok(Ok(()))) {
        return;
    }
    let deadline = state.settings.max_listener_s.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let expired = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expired);
    let close = |code: u16, reason: &str| {
        Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.to_string().into() }))
    };
    loop {
        let out = tokio::select! {
            p = audio.recv() => match p {
                Ok(p) => Message::Binary(p),
                Err(RecvError::Lagged(n)) => {
                    channel.dropped.fetch_add(n, Relaxed);
                    continue;
                }
                Err(RecvError::Closed) => close(1001, "the event ended"),
            },
            c = captions.recv() => match c {
                Ok(c) => Message::Text(c),
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => close(1001, "the event ended"),
            },
            m = rx.next() => match m {
                Some(Ok(Message::Text(t))) => match ping_answer(&t) {
                    Some(a) => Message::text(a),
                    None => continue,
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            },
            _ = &mut expired => close(4000, "max_listener_s: reconnect"),
            _ = stopped(&mut stop) => close(1001, "the event ended"),
        };
        let closing = matches!(out, Message::Close(_));
        let ok = matches!(tokio::time::timeout(WRITE_TIMEOUT, tx.send(out)).await, Ok(Ok(())));
        if closing || !ok {
            if closing && ok {
                // Wait (briefly) for the client's answering close frame, reading what it still
                // sends, so the connection ends cleanly and the page sees our close code rather
                // than a reset (1006).
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    while let Some(Ok(m)) = rx.next().await {
                        if m.is_close() {
                            break;
                        }
                    }
                })
                .await;
                let _ = tokio::time::timeout(Duration::from_secs(1), tx.close()).await;
            }
            return;
        }
    }
}

/// The answer to a listener's `{"type":"ping","t":…}` (it measures the round trip).
fn ping_answer(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    (v.get("type")?.as_str()? == "ping").then(|| json!({"type": "pong", "t": v.get("t")}).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = query(Some("lang=pt-BR&codec=pcm&code=a%2Db&x"));
        assert_eq!(q[0], ("lang".into(), "pt-BR".into()));
        assert_eq!(q[2], ("code".into(), "a-b".into()));
        assert_eq!(q[3], ("x".into(), "".into()));
        assert_eq!(decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn hosts_of_public_urls() {
        assert_eq!(url_host("https://event.example.org/listen").as_deref(), Some("event.example.org"));
        assert_eq!(url_host("https://192.168.1.20:8443/").as_deref(), Some("192.168.1.20"));
        assert_eq!(url_host("https://[fd00::1]:8443").as_deref(), Some("fd00::1"));
        assert_eq!(url_host("nonsense"), None);
    }

    #[test]
    fn pings_are_answered_other_text_is_not() {
        assert_eq!(ping_answer(r#"{"type":"ping","t":12.5}"#).unwrap(), r#"{"t":12.5,"type":"pong"}"#);
        assert!(ping_answer("nonsense").is_none());
        assert!(ping_answer(r#"{"type":"pong"}"#).is_none());
    }
}
