//! Where a session connects and how it authenticates: [`Endpoint`] from the `[engine]` settings
//! and the environment, and [`connect`], which opens the WebSocket (rustls with the ring
//! provider) with the right headers. The API key lives in an [`ApiKey`], whose `Debug` and
//! `Display` print `<redacted>`; it only ever leaves as a header value.

use std::fmt;

use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{
        self,
        client::IntoClientRequest,
        http::{HeaderName, HeaderValue},
        protocol::WebSocketConfig,
    },
};

use super::error::{RealtimeError, RealtimeErrorKind};
use crate::config::{Engine, Protocol, Provider};

/// tolk's own server, when `engine.url` is not given.
pub const LOCAL_URL: &str = "ws://127.0.0.1:8765/v1/realtime";
/// OpenAI's GA (and legacy) WebSocket URL, without the query.
pub const OPENAI_URL: &str = "wss://api.openai.com/v1/realtime";
/// OpenAI's Translation API URL, without the query.
pub const OPENAI_TRANSLATE_URL: &str = "wss://api.openai.com/v1/realtime/translations";

/// A secret. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key, and registers it so that the log never shows it
    /// ([`crate::logging::register_secret`]).
    pub fn new(key: impl Into<String>) -> Self {
        let key = key.into();
        crate::logging::register_secret(&key);
        ApiKey(key)
    }

    /// The key itself, for a header. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How the key is presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No credentials (tolk's own server without `--token`).
    None,
    /// `Authorization: Bearer <key>` (OpenAI, and tolk's server with `--token`).
    Bearer(ApiKey),
    /// `api-key: <key>` (Azure).
    ApiKeyHeader(ApiKey),
}

/// A resolved connection target: URL, protocol and credentials. `Debug` redacts the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The WebSocket URL, query included.
    pub url: String,
    /// The wire protocol.
    pub protocol: Protocol,
    /// Credentials.
    pub auth: Auth,
    /// Send `OpenAI-Beta: realtime=v1` (the legacy protocol outside Azure).
    pub beta_header: bool,
}

impl Endpoint {
    /// Resolves the endpoint of `engine` (with `url` overriding `engine.url`), reading the key
    /// and Azure endpoint variables through `env`. Errors name the missing variable.
    pub fn resolve(
        engine: &Engine,
        url: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Endpoint, RealtimeError> {
        let protocol = engine.protocol;
        let url = url.or(engine.url.as_deref());
        let key_var = engine.api_key_env.clone().or_else(|| match engine.provider {
            Provider::OpenAi | Provider::OpenAiTranslate => Some("OPENAI_API_KEY".into()),
            Provider::Azure => Some("AZURE_OPENAI_API_KEY".into()),
            Provider::Local => None,
        });
        let key = match key_var {
            None => None,
            Some(var) => match env(&var) {
                Some(k) if !k.trim().is_empty() => Some(ApiKey::new(k.trim())),
                _ => {
                    return Err(RealtimeError::new(
                        RealtimeErrorKind::Config,
                        format!(
                            "engine.api_key_env: environment variable {var} is not set (provider \"{}\" needs an API key)",
                            engine.provider.as_str()
                        ),
                    ));
                }
            },
        };
        let (base, auth) = match engine.provider {
            Provider::Azure => {
                let Some(key) = key else {
                    return Err(RealtimeError::new(
                        RealtimeErrorKind::Config,
                        "engine.api_key_env: provider \"azure\" needs an API key",
                    ));
                };
                let base = match url {
                    Some(u) => u.to_string(),
                    None => {
                        let ep = engine.endpoint.clone().or_else(|| env("AZURE_OPENAI_ENDPOINT")).ok_or_else(|| {
                            RealtimeError::new(
                                RealtimeErrorKind::Config,
                                "engine.endpoint: not set, and environment variable AZURE_OPENAI_ENDPOINT is not set either",
                            )
                        })?;
                        let ep = ep.trim().trim_end_matches('/');
                        let ws = if let Some(rest) = ep.strip_prefix("https://") {
                            format!("wss://{rest}")
                        } else if let Some(rest) = ep.strip_prefix("http://") {
                            format!("ws://{rest}")
                        } else {
                            return Err(RealtimeError::new(
                                RealtimeErrorKind::Config,
                                format!("engine.endpoint: \"{ep}\" is not an https:// URL"),
                            ));
                        };
                        match protocol {
                            Protocol::Legacy => format!(
                                "{ws}/openai/realtime?api-version={}&deployment={}",
                                query_escape(&engine.api_version),
                                query_escape(&engine.model)
                            ),
                            _ => format!("{ws}/openai/v1/realtime"),
                        }
                    }
                };
                (base, Auth::ApiKeyHeader(key))
            }
            provider => {
                let default = match (provider, protocol) {
                    (Provider::Local, Protocol::Translation) => "ws://127.0.0.1:8765/v1/realtime/translations",
                    (Provider::Local, _) => LOCAL_URL,
                    (_, Protocol::Translation) => OPENAI_TRANSLATE_URL,
                    _ => OPENAI_URL,
                };
                (url.unwrap_or(default).to_string(), key.map_or(Auth::None, Auth::Bearer))
            }
        };
        let url = with_model(&base, &engine.model);
        let beta_header = protocol == Protocol::Legacy && engine.provider != Provider::Azure;
        Ok(Endpoint { url, protocol, auth, beta_header })
    }

    /// The upgrade request: URL plus auth and beta headers.
    pub fn request(&self) -> Result<tungstenite::handshake::client::Request, RealtimeError> {
        let mut req = self.url.as_str().into_client_request().map_err(|e| {
            RealtimeError::new(RealtimeErrorKind::Config, format!("engine.url: \"{}\" is not usable: {e}", self.url))
        })?;
        let bad = |_| {
            RealtimeError::new(RealtimeErrorKind::Config, "the API key contains characters not allowed in a header")
        };
        let headers = req.headers_mut();
        match &self.auth {
            Auth::None => {}
            Auth::Bearer(k) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {}", k.expose())).map_err(bad)?;
                v.set_sensitive(true);
                headers.insert(tungstenite::http::header::AUTHORIZATION, v);
            }
            Auth::ApiKeyHeader(k) => {
                let mut v = HeaderValue::from_str(k.expose()).map_err(bad)?;
                v.set_sensitive(true);
                headers.insert(HeaderName::from_static("api-key"), v);
            }
        }
        if self.beta_header {
            headers.insert(HeaderName::from_static("openai-beta"), HeaderValue::from_static("realtime=v1"));
        }
        Ok(req)
    }
}

/// Percent-encodes a query value (unreserved characters stay).
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Appends `model=<model>` unless the URL already names a model or deployment.
fn with_model(url: &str, model: &str) -> String {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    if query.split('&').any(|p| p.starts_with("model=") || p.starts_with("deployment=") || p.starts_with("call_id=")) {
        return url.to_string();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}model={}", query_escape(model))
}

/// Bytes read from the socket at most per call (see [`connect`]).
const READ_BUFFER: usize = 16 * 1024;

/// The socket type [`connect`] returns.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens the WebSocket to `endpoint`. TLS uses rustls with the ring provider, installed as the
/// process default if none is.
pub async fn connect(endpoint: &Endpoint) -> Result<Socket, RealtimeError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let request = endpoint.request()?;
    // Base64 PCM does not compress, and a long response can be large: no per-message cap
    // beyond tungstenite's 64 MiB default. The read buffer is small: tungstenite zero-fills
    // up to `read_buffer_size` before every read of the socket, including the many that find
    // nothing, and at its 128 KiB default that memset was the biggest CPU cost of a live
    // session. Server events are a few KiB; a larger one is read in several calls.
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    match tokio_tungstenite::connect_async_with_config(request, Some(config), true).await {
        Ok((socket, _response)) => Ok(socket),
        Err(tungstenite::Error::Http(resp)) => {
            let status = resp.status().as_u16();
            Err(RealtimeError::refused(status, describe_connect_error(&endpoint.url, tungstenite::Error::Http(resp))))
        }
        Err(e) => Err(RealtimeError::new(RealtimeErrorKind::Connect, describe_connect_error(&endpoint.url, e))),
    }
}

fn describe_connect_error(url: &str, e: tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Http(resp) => {
            let status = resp.status();
            // The service's own message when the body is its JSON error, else the body's first line.
            let body: String = resp
                .body()
                .as_ref()
                .map(|b| {
                    let json = serde_json::from_slice::<serde_json::Value>(b).ok();
                    let message = json.as_ref().and_then(|v| v["error"]["message"].as_str().map(str::to_string));
                    let text = message.unwrap_or_else(|| String::from_utf8_lossy(b).into_owned());
                    text.lines().next().unwrap_or_default().chars().take(200).collect()
                })
                .unwrap_or_default();
            if body.is_empty() {
                format!("cannot connect to {url}: the service answered HTTP {status}")
            } else {
                format!("cannot connect to {url}: the service answered HTTP {status}: {body}")
            }
        }
        other => format!("cannot connect to {url}: {}", other.to_string().to_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn openai_uses_bearer_and_the_model_query() {
        let e = Engine { provider: Provider::OpenAi, model: "gpt-realtime-2".into(), ..Engine::default() };
        let ep = Endpoint::resolve(&e, None, env(&[("OPENAI_API_KEY", "sk-secret")])).unwrap();
        assert_eq!(ep.url, "wss://api.openai.com/v1/realtime?model=gpt-realtime-2");
        assert_eq!(ep.auth, Auth::Bearer(ApiKey::new("sk-secret")));
        let req = ep.request().unwrap();
        assert_eq!(req.headers()["authorization"], "Bearer sk-secret");
        assert!(req.headers().get("openai-beta").is_none());
        assert!(!format!("{ep:?}").contains("sk-secret"));
    }

    #[test]
    fn legacy_sends_the_beta_header_and_named_key_variable() {
        let e = Engine {
            provider: Provider::OpenAi,
            protocol: Protocol::Legacy,
            model: "gpt-4o-realtime-preview".into(),
            api_key_env: Some("MY_KEY".into()),
            ..Engine::default()
        };
        let ep = Endpoint::resolve(&e, None, env(&[("MY_KEY", "k1")])).unwrap();
        assert!(ep.beta_header);
        assert_eq!(ep.request().unwrap().headers()["openai-beta"], "realtime=v1");
    }

    #[test]
    fn translate_has_its_own_path() {
        let e = Engine {
            provider: Provider::OpenAiTranslate,
            protocol: Protocol::Translation,
            model: "gpt-realtime-translate".into(),
            ..Engine::default()
        };
        let ep = Endpoint::resolve(&e, None, env(&[("OPENAI_API_KEY", "k")])).unwrap();
        assert_eq!(ep.url, "wss://api.openai.com/v1/realtime/translations?model=gpt-realtime-translate");
    }

    #[test]
    fn azure_ga_and_preview_paths() {
        let e = Engine {
            provider: Provider::Azure,
            model: "my deployment".into(),
            endpoint: Some("https://res.openai.azure.com/".into()),
            ..Engine::default()
        };
        let vars = [("AZURE_OPENAI_API_KEY", "az")];
        let ep = Endpoint::resolve(&e, None, env(&vars)).unwrap();
        assert_eq!(ep.url, "wss://res.openai.azure.com/openai/v1/realtime?model=my%20deployment");
        let req = ep.request().unwrap();
        assert_eq!(req.headers()["api-key"], "az");
        assert!(req.headers().get("authorization").is_none());
        let legacy = Engine { protocol: Protocol::Legacy, endpoint: None, ..e };
        let vars = [("AZURE_OPENAI_API_KEY", "az"), ("AZURE_OPENAI_ENDPOINT", "https://env.openai.azure.com")];
        let ep = Endpoint::resolve(&legacy, None, env(&vars)).unwrap();
        assert_eq!(
            ep.url,
            "wss://env.openai.azure.com/openai/realtime?api-version=2025-04-01-preview&deployment=my%20deployment"
        );
        assert!(!ep.beta_header);
    }

    #[test]
    fn missing_key_and_endpoint_name_the_variable() {
        let e = Engine { provider: Provider::OpenAi, ..Engine::default() };
        let err = Endpoint::resolve(&e, None, env(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "engine.api_key_env: environment variable OPENAI_API_KEY is not set (provider \"openai\" needs an API key)"
        );
        let e = Engine { provider: Provider::Azure, model: "d".into(), ..Engine::default() };
        let err = Endpoint::resolve(&e, None, env(&[("AZURE_OPENAI_API_KEY", "x")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "engine.endpoint: not set, and environment variable AZURE_OPENAI_ENDPOINT is not set either"
        );
    }

    #[test]
    fn local_default_and_override() {
        let e = Engine::default();
        let ep = Endpoint::resolve(&e, None, env(&[])).unwrap();
        assert_eq!(ep.url, "ws://127.0.0.1:8765/v1/realtime?model=gpt-realtime");
        assert_eq!(ep.auth, Auth::None);
        let ep = Endpoint::resolve(&e, Some("ws://h:1/v1/realtime?model=x"), env(&[])).unwrap();
        assert_eq!(ep.url, "ws://h:1/v1/realtime?model=x");
    }

    #[test]
    fn key_is_redacted() {
        let k = ApiKey::new("sk-very-secret");
        assert_eq!(format!("{k:?} {k}"), "ApiKey(<redacted>) <redacted>");
        assert!(!format!("{:?}", Auth::Bearer(k)).contains("very"));
    }
}
