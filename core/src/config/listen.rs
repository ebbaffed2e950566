//! `[listen]`: the listener web app `tolk run` serves (see [`crate::listen`]). The section is
//! optional; without it nothing is served. Every key has a default but the TLS pair.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use super::{FLOOR, RouteSpec, lang};

/// The default address: loopback only, so a trial needs no certificate.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8090";

/// `[listen]`, validated.
#[derive(Debug, Clone)]
pub struct ListenSettings {
    /// Where to listen.
    pub address: SocketAddr,
    /// The page's title (event name).
    pub title: String,
    /// HTTPS: from PEM files, or a self-signed certificate made at start (a trial).
    pub tls: Option<ListenTls>,
    /// The URL listeners open (behind a proxy, or the machine's LAN name), for the QR code;
    /// `None`: the address's own URL.
    pub public_url: Option<String>,
    /// A code listeners must give (`?code=`) to get the language list and the audio.
    pub event_code: Option<String>,
    /// The route languages offered (canonical tags and `floor`), in config order.
    pub routes: Vec<String>,
    /// Close a listener's connection after this long (s); its page reconnects at once. Bounds
    /// how long one connection lives (rebalancing, a restarted proxy); `None` = never.
    pub max_listener_s: Option<u64>,
    /// Most listener connections at once; more are refused with 503.
    pub max_listeners: usize,
    /// The operator console's token (`/operator`); `None`: no console is served.
    pub operator_token: Option<Secret>,
    /// Also publish every language to this Icecast server.
    pub icecast: Option<Icecast>,
}

/// An Icecast server to publish to (`listen.icecast_url`, `listen.icecast_password`).
#[derive(Debug, Clone)]
pub struct Icecast {
    /// `host:port`.
    pub host: String,
    /// The source password (user `source`).
    pub password: Secret,
}

/// A token that never shows in a log or a `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `s`.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, to send where it belongs (never to a log).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when `given` is the token, compared in constant time (the time taken does not tell
    /// how much of a guess was right; only the lengths' equality shows).
    pub fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        let mut diff = u8::from(a.len() != b.len());
        for (i, x) in a.iter().enumerate() {
            // Compare against the guess's byte, or its own when the guess is shorter, so the
            // loop always runs over the whole token.
            diff |= x ^ b.get(i).copied().unwrap_or(!*x);
        }
        diff == 0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Where the listener server's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenTls {
    /// PEM certificate chain and key, resolved against the config's directory.
    Files {
        /// The chain, leaf first.
        cert: PathBuf,
        /// Its private key.
        key: PathBuf,
    },
    /// Made at start for `localhost`, the address and the public URL's host: browsers warn.
    SelfSigned,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListen {
    address: Option<String>,
    title: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    #[serde(default)]
    tls_self_signed: bool,
    public_url: Option<String>,
    event_code: Option<String>,
    routes: Option<Vec<String>>,
    max_listener_s: Option<u64>,
    max_listeners: Option<usize>,
    operator_token: Option<String>,
    icecast_url: Option<String>,
    icecast_password: Option<String>,
}

/// The languages the routes of a config produce, `floor` included, in config order.
pub fn route_languages(routes: &[RouteSpec]) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for r in routes {
        for t in &r.to {
            if !out.contains(t) {
                out.push(t.clone());
            }
        }
    }
    out
}

/// Validates `[listen]` against the config's routes; `err(key, message)` records a problem.
pub(super) fn validate(
    raw: RawListen,
    routes: &[RouteSpec],
    dir: &Path,
    err: &mut dyn FnMut(String, String),
) -> ListenSettings {
    let address_text = raw.address.unwrap_or_else(|| DEFAULT_ADDRESS.to_string());
    let address = match address_text.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            err(
                "listen.address".into(),
                format!("\"{address_text}\" is not an address with a port (e.g. \"127.0.0.1:8090\", \"[::]:443\")"),
            );
            DEFAULT_ADDRESS.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8090)))
        }
    };
    let resolve = |p: &str| if Path::new(p).is_absolute() { PathBuf::from(p) } else { dir.join(p) };
    let tls = match (&raw.tls_cert, &raw.tls_key) {
        (Some(c), Some(k)) => {
            let (c, k) = (resolve(c), resolve(k));
            if raw.tls_self_signed {
                err(
                    "listen.tls_self_signed".into(),
                    "conflicts with tls_cert and tls_key: use one or the other".into(),
                );
            }
            match crate::tls::server_config(&c, &k) {
                Ok(_) => Some(ListenTls::Files { cert: c, key: k }),
                Err(e) => {
                    let key = if e.starts_with("TLS key") { "listen.tls_key" } else { "listen.tls_cert" };
                    err(key.into(), e);
                    None
                }
            }
        }
        (Some(_), None) => {
            err("listen.tls_key".into(), "missing: tls_cert needs its private key".into());
            None
        }
        (None, Some(_)) => {
            err("listen.tls_cert".into(), "missing: tls_key needs its certificate".into());
            None
        }
        (None, None) => raw.tls_self_signed.then_some(ListenTls::SelfSigned),
    };
    if raw.tls_cert.is_none() && raw.tls_key.is_none() && !raw.tls_self_signed && !address.ip().is_loopback() {
        err(
            "listen.address".into(),
            format!(
                "plain HTTP on {address} (not loopback): browsers play audio only in a secure context; set \
                 listen.tls_cert and listen.tls_key, or listen on 127.0.0.1"
            ),
        );
    }
    if let Some(u) = &raw.public_url
        && (!(u.starts_with("http://") || u.starts_with("https://"))
            || u.len() < 10
            || u.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        err("listen.public_url".into(), format!("\"{u}\" is not an http:// or https:// URL"));
    }
    let title = raw.title.unwrap_or_else(|| "tolk".to_string());
    if title.trim().is_empty() || title.chars().count() > 200 {
        err("listen.title".into(), "must be 1 to 200 characters".into());
    }
    if let Some(c) = &raw.event_code
        && (c.is_empty() || c.len() > 64 || !c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-'))
    {
        err("listen.event_code".into(), "must be 1 to 64 letters, digits or '-'".into());
    }
    let available = route_languages(routes);
    let offered = match raw.routes {
        None => available.clone(),
        Some(list) => {
            let mut out: Vec<String> = vec![];
            if list.is_empty() {
                err(
                    "listen.routes".into(),
                    "is empty: list the languages to offer, or leave the key out for all".into(),
                );
            }
            for (i, t) in list.iter().enumerate() {
                let parsed = if t.eq_ignore_ascii_case(FLOOR) { Ok(FLOOR.to_string()) } else { lang::canonical(t) };
                match parsed {
                    Ok(l) if out.contains(&l) => err(format!("listen.routes[{i}]"), format!("\"{l}\" is listed twice")),
                    Ok(l) if !available.contains(&l) => err(
                        format!("listen.routes[{i}]"),
                        format!(
                            "no route produces \"{l}\" (routes produce: {})",
                            if available.is_empty() { "nothing".to_string() } else { available.join(", ") }
                        ),
                    ),
                    Ok(l) => out.push(l),
                    Err(e) => err(format!("listen.routes[{i}]"), e),
                }
            }
            out
        }
    };
    let max_listener_s = match raw.max_listener_s {
        Some(s) if !(1..=86_400).contains(&s) => {
            err("listen.max_listener_s".into(), format!("{s} is outside 1..=86400"));
            None
        }
        s => s,
    };
    let max_listeners = match raw.max_listeners {
        None => 5_000,
        Some(n) if (1..=100_000).contains(&n) => n,
        Some(n) => {
            err("listen.max_listeners".into(), format!("{n} is outside 1..=100000"));
            5_000
        }
    };
    if let Some(t) = &raw.operator_token
        && (t.len() < 12 || t.len() > 128 || !t.chars().all(|c| c.is_ascii_graphic()))
    {
        // The token itself is never repeated in a message.
        err(
            "listen.operator_token".into(),
            "must be 12 to 128 printable ASCII characters without spaces (e.g. from `openssl rand -hex 16`)".into(),
        );
    }
    let icecast = match (&raw.icecast_url, raw.icecast_password) {
        (None, None) => None,
        (None, Some(_)) => {
            err("listen.icecast_url".into(), "missing: icecast_password needs the server's URL".into());
            None
        }
        (Some(_), None) => {
            err("listen.icecast_password".into(), "missing: the Icecast server's source password".into());
            None
        }
        (Some(u), Some(password)) => {
            let host = u.strip_prefix("http://").map(|h| h.trim_end_matches('/'));
            match host {
                Some(h)
                    if !h.is_empty()
                        && !h.contains(['/', '?', '#', ' '])
                        && h.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) =>
                {
                    Some(Icecast { host: h.to_string(), password: Secret(password) })
                }
                _ => {
                    err(
                        "listen.icecast_url".into(),
                        format!("\"{u}\" is not an Icecast server's http://HOST:PORT (mounts are /LANG.ogg on it)"),
                    );
                    None
                }
            }
        }
    };
    ListenSettings {
        icecast,
        operator_token: raw.operator_token.map(Secret),
        address,
        title,
        tls,
        public_url: raw.public_url,
        event_code: raw.event_code,
        routes: offered,
        max_listener_s,
        max_listeners,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_matches_only_itself_and_never_prints() {
        let t = Secret::new("s3cret-token-42");
        assert!(t.matches("s3cret-token-42"));
        for wrong in ["", "s3cret-token-4", "s3cret-token-43", "s3cret-token-42x", "S3cret-token-42"] {
            assert!(!t.matches(wrong), "{wrong}");
        }
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}
