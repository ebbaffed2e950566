//! Logging: `tracing` to stderr. Default level is info for tolk and warn for dependencies;
//! `-v` debug, `-vv` trace, `-q` errors only; `TOLK_LOG` (an env-filter directive) overrides.
//!
//! Secrets never reach the log at any level: every key tolk reads is registered
//! ([`register_secret`], done by [`crate::realtime::ApiKey::new`]) and the log writer replaces
//! each occurrence with `<redacted>` before it is written. This covers what dependencies log
//! too — at trace level the WebSocket library prints its whole upgrade request, headers
//! included.

use std::{
    io::{self, Write},
    sync::RwLock,
};

use tracing_subscriber::EnvFilter;

/// Shorter strings are not treated as secrets (redacting them would garble the log).
const MIN_SECRET_LEN: usize = 6;
/// What a secret is replaced with.
const REDACTED: &str = "<redacted>";

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Installs the global subscriber once; later calls do nothing.
pub fn init(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn,tolk=info,tolk_core=info",
        (false, 1) => "info,tolk=debug,tolk_core=debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_env("TOLK_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(|| RedactingStderr).with_target(false).try_init();
}

/// Registers a secret (an API key) so that the log never shows it.
pub fn register_secret(secret: &str) {
    if secret.len() < MIN_SECRET_LEN {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_string());
        // Longest first, so a key containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// `text` with every registered secret replaced by `<redacted>`.
pub fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| text.contains(s.as_str())) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = text.to_string();
    for s in secrets.iter() {
        out = out.replace(s.as_str(), REDACTED);
    }
    std::borrow::Cow::Owned(out)
}

/// Stderr, through [`redact`]. The formatter writes each event with one `write_all` of the
/// whole line, so a secret is never split across writes.
struct RedactingStderr;

impl Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        io::stderr().write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_redacted_and_short_strings_ignored() {
        register_secret("sk-logging-test-key-123");
        register_secret("abc");
        assert_eq!(
            redact("authorization: Bearer sk-logging-test-key-123\r\nabc"),
            "authorization: Bearer <redacted>\r\nabc"
        );
        assert_eq!(redact("nothing secret"), "nothing secret");
    }
}
