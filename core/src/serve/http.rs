//! The HTTP side of `tolk serve`: reading a request head, routing it, and every answer short of a
//! WebSocket session.
//!
//! tolk reads the request head itself (with `httparse`, like tungstenite does) instead of handing
//! the socket to tungstenite's server handshake, because that handshake answers nothing to a
//! request it cannot upgrade (plain `GET /`, `HEAD`, HTTP/1.0): the client sees the connection
//! drop. Here every request gets an HTTP answer with a short JSON body in the real service's
//! error shape:
//!
//! | Request | Answer |
//! |---|---|
//! | unknown path | 404 |
//! | known path, method other than GET | 405 (`Allow: GET`) |
//! | known path, GET without a WebSocket upgrade (or HTTP/1.0) | 426 (`Upgrade: websocket`) |
//! | upgrade missing `model`/`deployment`/`api-version` | 400 |
//! | wrong or missing credentials with `--token` | 401 |
//! | over `--max-connections` | 503 (`Retry-After`) |
//! | unparseable head | 400; over 16 KiB of head: 431 |
//!
//! A valid upgrade gets 101 (the accept key from tungstenite's `create_response`). When the
//! client offers the subprotocol `realtime` (browser-style clients send
//! `realtime, openai-insecure-api-key.<key>[, openai-beta.realtime-v1]`), the answer selects
//! `realtime`; the key subprotocol counts as a credential like `Authorization: Bearer`, and
//! `openai-beta.realtime-v1` like the `OpenAI-Beta: realtime=v1` header.

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{
    handshake::server::{ErrorResponse, Request, create_response},
    http::{self, HeaderValue, StatusCode},
};

use super::protocol::Dialect;

/// Largest request head read; beyond it the answer is 431.
pub const MAX_HEAD_BYTES: usize = 16 << 10;
const MAX_HEADERS: usize = 64;

/// What a handshake selected.
#[derive(Debug, Clone)]
pub(crate) enum Route {
    Realtime { dialect: Dialect, model: String },
    Translation { model: String },
}

/// A request head read from the socket, and the bytes after it (a client may send its first
/// frame right behind the head).
#[derive(Debug)]
pub(crate) struct Head {
    pub request: Request,
    pub rest: Vec<u8>,
}

/// Reads one request head. `Err` is the answer to give instead (400 or 431); `Ok(None)` means
/// the peer closed before sending a complete head.
pub(crate) async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> std::io::Result<Result<Option<Head>, ErrorResponse>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Ok(None));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                return Ok(match to_request(&req) {
                    Ok(request) => Ok(Some(Head { request, rest: buf[len..].to_vec() })),
                    Err(e) => Err(e),
                });
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD_BYTES => {}
            Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
                return Ok(Err(error(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "invalid_request_error",
                    "request_too_large",
                    &format!("The request head is over {MAX_HEAD_BYTES} bytes or {MAX_HEADERS} headers."),
                )));
            }
            Err(e) => {
                return Ok(Err(error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "bad_request",
                    &format!("Not an HTTP/1.x request: {e}."),
                )));
            }
        }
    }
}

#[allow(clippy::result_large_err)] // ErrorResponse is tungstenite's type, as in `route`
fn to_request(req: &httparse::Request) -> Result<Request, ErrorResponse> {
    let bad = |what: &str| error(StatusCode::BAD_REQUEST, "invalid_request_error", "bad_request", what);
    let mut b = http::Request::builder()
        .method(req.method.unwrap_or("GET"))
        .uri(req.path.unwrap_or("/"))
        .version(if req.version == Some(0) { http::Version::HTTP_10 } else { http::Version::HTTP_11 });
    for h in req.headers.iter() {
        b = b.header(h.name, h.value);
    }
    b.body(()).map_err(|e| bad(&format!("Invalid request line or header: {e}.")))
}

/// A JSON error answer in the real service's shape.
pub(crate) fn error(status: StatusCode, kind: &str, code: &str, message: &str) -> ErrorResponse {
    let body = json!({"error": {"message": message, "type": kind, "code": code, "param": null}}).to_string();
    let mut r = ErrorResponse::new(Some(body));
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    r
}

fn is_known_path(path: &str) -> bool {
    matches!(
        path.trim_end_matches('/'),
        "/v1/realtime" | "/v1/realtime/translations" | "/openai/v1/realtime" | "/openai/realtime"
    )
}

/// The offered subprotocols, in order.
fn subprotocols(req: &Request) -> Vec<String> {
    req.headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The answer to a request head: `Ok((route, 101 response))` for a session, else the error
/// answer (404, 405, 426, 400, 401).
#[allow(clippy::result_large_err)]
pub(crate) fn answer(req: &Request, token: Option<&str>) -> Result<(Route, http::Response<()>), ErrorResponse> {
    let path = req.uri().path();
    if !is_known_path(path) {
        return Err(error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "not_found",
            &format!("Invalid URL ({} {path}): no such endpoint.", req.method()),
        ));
    }
    if req.method() != http::Method::GET {
        let mut e = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
            &format!("{} {path}: this endpoint is a WebSocket; only GET with an upgrade is allowed.", req.method()),
        );
        e.headers_mut().insert("allow", HeaderValue::from_static("GET"));
        return Err(e);
    }
    let mut upgrade = match create_response(req) {
        Ok(r) => r,
        Err(e) => {
            let mut r = error(
                StatusCode::UPGRADE_REQUIRED,
                "invalid_request_error",
                "upgrade_required",
                &format!("{path} is a WebSocket endpoint: connect with a WebSocket client ({e})."),
            );
            r.headers_mut().insert("upgrade", HeaderValue::from_static("websocket"));
            r.headers_mut().insert("sec-websocket-version", HeaderValue::from_static("13"));
            return Err(r);
        }
    };
    let offered = subprotocols(req);
    let route = route(req, &offered, token)?;
    if offered.iter().any(|p| p == "realtime") {
        upgrade.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static("realtime"));
    }
    Ok((route, upgrade))
}

/// The route of an upgrade request, or the HTTP error the real service would give.
#[allow(clippy::result_large_err)]
fn route(req: &Request, subprotocols: &[String], token: Option<&str>) -> Result<Route, ErrorResponse> {
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
        error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "missing_required_parameter",
            &format!("Missing required parameter: '{what}'."),
        )
    };
    let route = match path {
        "/v1/realtime" => {
            let model = q("model").ok_or_else(|| missing("model"))?;
            let beta = header("openai-beta").is_some_and(|b| b.split(',').any(|p| p.trim() == "realtime=v1"))
                || subprotocols.iter().any(|p| p == "openai-beta.realtime-v1");
            Route::Realtime { dialect: if beta { Dialect::Beta } else { Dialect::Ga }, model }
        }
        "/v1/realtime/translations" => Route::Translation { model: q("model").ok_or_else(|| missing("model"))? },
        // Azure GA: `model=<deployment>`; `deployment=` (with or without `api-version`) as the
        // preview path spells it is accepted too.
        "/openai/v1/realtime" => Route::Realtime {
            dialect: Dialect::Ga,
            model: q("model").or_else(|| q("deployment")).ok_or_else(|| missing("model"))?,
        },
        "/openai/realtime" => {
            q("api-version").ok_or_else(|| missing("api-version"))?;
            let deployment = q("deployment").ok_or_else(|| missing("deployment"))?;
            Route::Realtime { dialect: Dialect::Beta, model: deployment }
        }
        _ => unreachable!("is_known_path checked the path"),
    };
    if let Some(token) = token {
        let bearer = header("authorization").and_then(|a| a.strip_prefix("Bearer ")).map(str::trim);
        let api_key = if azure { header("api-key") } else { None };
        let sub_key = subprotocols.iter().find_map(|p| p.strip_prefix("openai-insecure-api-key."));
        let ok = bearer == Some(token) || api_key == Some(token) || sub_key == Some(token);
        if !ok {
            let (code, msg) = if bearer.is_none() && api_key.is_none() && sub_key.is_none() {
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
            return Err(error(StatusCode::UNAUTHORIZED, "invalid_request_error", code, msg));
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

/// Writes an error answer (`Connection: close`; no body for HEAD), then ends the connection
/// politely: FIN, and up to 1 s of discarding what the client still sends, so it reads the
/// answer instead of a reset.
pub(crate) async fn send_error<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, resp: &ErrorResponse, head: bool) {
    let body = resp.body().as_deref().unwrap_or("");
    let status = resp.status();
    let mut out = format!("HTTP/1.1 {} {}\r\n", status.as_str(), status.canonical_reason().unwrap_or(""));
    for (k, v) in resp.headers() {
        out.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap_or("")));
    }
    out.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()));
    if !head {
        out.push_str(body);
    }
    let io = async {
        stream.write_all(out.as_bytes()).await?;
        stream.flush().await?;
        stream.shutdown().await
    };
    if let Ok(Ok(())) = tokio::time::timeout(std::time::Duration::from_secs(2), io).await {
        drain(stream, std::time::Duration::from_secs(1)).await;
    }
}

/// Reads and discards for at most `limit` (until EOF).
pub(crate) async fn drain<S: AsyncRead + Unpin>(stream: &mut S, limit: std::time::Duration) {
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(limit, async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Writes the 101 answer.
pub(crate) async fn send_upgrade<S: AsyncWrite + Unpin>(
    stream: &mut S,
    resp: &http::Response<()>,
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(256);
    tokio_tungstenite::tungstenite::handshake::server::write_response(&mut out, resp).map_err(std::io::Error::other)?;
    stream.write_all(&out).await?;
    stream.flush().await
}
