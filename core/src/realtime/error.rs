//! Errors: the service's `error` events ([`ServerError`], classified by [`ErrorClass`] as §5.3
//! of the catalogue says) and failures to open a session ([`RealtimeError`]).

use std::fmt;

use super::events::ErrorBody;

/// What the caller should do about a server `error` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Harmless; the session carries on (`input_audio_buffer_commit_empty`,
    /// `response_cancel_not_active`, truncating past the received audio).
    Benign,
    /// A response is already running; the request waits for `response.done`
    /// (`conversation_already_has_active_response`; the session queues its own requests).
    Queue,
    /// Transient (`server_error`, `rate_limit_exceeded`): try again later.
    Retry,
    /// The session hit its maximum duration (`session_expired`): open a new one.
    Reconnect,
    /// The session cannot work (`beta_api_shape_disabled`, `invalid_api_key`,
    /// `model_not_found`, `insufficient_quota`): stop and tell the user.
    Fatal,
    /// The service rejected a client event (`invalid_event`, `invalid_value`, …): a bug or a
    /// bad setting; the session is kept.
    Invalid,
}

impl ErrorClass {
    /// Lower-case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorClass::Benign => "benign",
            ErrorClass::Queue => "queue",
            ErrorClass::Retry => "retry",
            ErrorClass::Reconnect => "reconnect",
            ErrorClass::Fatal => "fatal",
            ErrorClass::Invalid => "invalid",
        }
    }
}

/// An `error` event from the service, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// What to do about it.
    pub class: ErrorClass,
    /// `error.type` (`invalid_request_error`, `server_error`, …).
    pub kind: String,
    /// `error.code`, when given.
    pub code: Option<String>,
    /// `error.message`.
    pub message: String,
    /// `error.param`, when given.
    pub param: Option<String>,
    /// The client event that caused it (`error.event_id`), when given.
    pub event_id: Option<String>,
}

impl ServerError {
    /// Classifies an `error` object.
    pub fn from_body(body: &ErrorBody) -> ServerError {
        ServerError {
            class: classify(&body.kind, body.code.clone().flatten().as_deref(), &body.message),
            kind: body.kind.clone(),
            code: body.code.clone().flatten(),
            message: body.message.clone(),
            param: body.param.clone().flatten(),
            event_id: body.event_id.clone().flatten(),
        }
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(code) = &self.code {
            write!(f, "/{code}")?;
        }
        if let Some(param) = &self.param {
            write!(f, " (param {param})")?;
        }
        let message = self.message.lines().next().unwrap_or_default().trim_end_matches('.');
        write!(f, ": {message}")
    }
}

/// The class of an error by its `type`, `code` and, for code-less ones, message (§5.3).
pub fn classify(kind: &str, code: Option<&str>, message: &str) -> ErrorClass {
    match code {
        Some("session_expired") => ErrorClass::Reconnect,
        Some("beta_api_shape_disabled" | "invalid_api_key" | "model_not_found" | "insufficient_quota") => {
            ErrorClass::Fatal
        }
        Some("input_audio_buffer_commit_empty" | "response_cancel_not_active") => ErrorClass::Benign,
        Some("conversation_already_has_active_response") => ErrorClass::Queue,
        Some("rate_limit_exceeded" | "server_error") => ErrorClass::Retry,
        _ if kind == "server_error" => ErrorClass::Retry,
        _ if message.contains("is already shorter than") => ErrorClass::Benign,
        _ if kind == "authentication_error" || kind == "permission_error" => ErrorClass::Fatal,
        _ => ErrorClass::Invalid,
    }
}

/// Why opening (or running) a session failed; see [`RealtimeError::kind`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RealtimeErrorKind {
    /// The engine settings or environment are incomplete (missing key variable, endpoint).
    Config,
    /// The connection could not be made (DNS, TCP, TLS, HTTP status at the upgrade).
    Connect,
    /// The service answered setup with an `error` event.
    Server,
    /// The service broke the protocol during setup (closed early, wrong first event).
    Protocol,
    /// Setup did not finish within `engine.connect_timeout_ms`.
    Timeout,
}

/// A one-line, lower-case error naming what failed. Never contains the API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealtimeError {
    kind: RealtimeErrorKind,
    message: String,
    server: Option<Box<ServerError>>,
    /// The HTTP status of a refused handshake.
    status: Option<u16>,
}

impl RealtimeError {
    pub(crate) fn new(kind: RealtimeErrorKind, message: impl Into<String>) -> Self {
        RealtimeError { kind, message: message.into(), server: None, status: None }
    }

    /// A handshake the service refused with HTTP `status`.
    pub(crate) fn refused(status: u16, message: impl Into<String>) -> Self {
        RealtimeError { kind: RealtimeErrorKind::Connect, message: message.into(), server: None, status: Some(status) }
    }

    pub(crate) fn server(e: ServerError) -> Self {
        RealtimeError {
            kind: RealtimeErrorKind::Server,
            message: format!("realtime service error: {e}"),
            server: Some(Box::new(e)),
            status: None,
        }
    }

    /// The HTTP status of a refused handshake (401, 403, 429, …), if that is what failed.
    pub fn http_status(&self) -> Option<u16> {
        self.status
    }

    /// Whether opening again later can succeed. Network faults, timeouts, early closes, HTTP
    /// 408/429/5xx and the service's transient errors can; a bad setting, a refused key
    /// (HTTP 401/403 and every other 4xx) and a rejected session setup (`invalid_value`,
    /// `invalid_api_key`, … — fatal and invalid classes) cannot: retrying only repeats them.
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            RealtimeErrorKind::Config => false,
            RealtimeErrorKind::Connect => {
                self.status.is_none_or(|s| matches!(s, 408 | 425 | 429) || (500..=599).contains(&s))
            }
            RealtimeErrorKind::Server => {
                self.server.as_ref().is_none_or(|e| !matches!(e.class, ErrorClass::Fatal | ErrorClass::Invalid))
            }
            RealtimeErrorKind::Protocol | RealtimeErrorKind::Timeout => true,
        }
    }

    /// The category.
    pub fn kind(&self) -> RealtimeErrorKind {
        self.kind.clone()
    }

    /// The service's error, for [`RealtimeErrorKind::Server`].
    pub fn server_error(&self) -> Option<&ServerError> {
        self.server.as_deref()
    }
}

impl fmt::Display for RealtimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RealtimeError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_the_catalogue() {
        let table = [
            ("invalid_request_error", Some("session_expired"), "", ErrorClass::Reconnect),
            ("invalid_request_error", Some("beta_api_shape_disabled"), "", ErrorClass::Fatal),
            ("invalid_request_error", Some("input_audio_buffer_commit_empty"), "", ErrorClass::Benign),
            ("invalid_request_error", Some("response_cancel_not_active"), "", ErrorClass::Benign),
            ("invalid_request_error", Some("conversation_already_has_active_response"), "", ErrorClass::Queue),
            ("server_error", None, "boom", ErrorClass::Retry),
            ("invalid_request_error", Some("rate_limit_exceeded"), "", ErrorClass::Retry),
            ("invalid_request_error", Some("invalid_api_key"), "", ErrorClass::Fatal),
            (
                "invalid_request_error",
                None,
                "Audio content of 1200ms is already shorter than 3000ms",
                ErrorClass::Benign,
            ),
            ("invalid_request_error", Some("invalid_event"), "", ErrorClass::Invalid),
            ("invalid_request_error", Some("invalid_value"), "", ErrorClass::Invalid),
        ];
        for (kind, code, message, class) in table {
            assert_eq!(classify(kind, code, message), class, "{kind} {code:?}");
        }
    }

    #[test]
    fn only_errors_a_retry_can_change_are_retryable() {
        let http = |s| RealtimeError::refused(s, "x").is_retryable();
        assert!(!http(401) && !http(403) && !http(400) && !http(404));
        assert!(http(429) && http(408) && http(500) && http(503));
        assert!(RealtimeError::new(RealtimeErrorKind::Connect, "connection refused").is_retryable());
        assert!(RealtimeError::new(RealtimeErrorKind::Timeout, "t").is_retryable());
        assert!(!RealtimeError::new(RealtimeErrorKind::Config, "c").is_retryable());
        let server = |kind: &str, code: &str| {
            let class = classify(kind, Some(code), "");
            let e = ServerError {
                class,
                kind: kind.into(),
                code: Some(code.into()),
                message: "m".into(),
                param: None,
                event_id: None,
            };
            RealtimeError::server(e).is_retryable()
        };
        assert!(!server("invalid_request_error", "invalid_value"));
        assert!(!server("invalid_request_error", "invalid_api_key"));
        assert!(server("server_error", "server_error"));
        assert!(server("invalid_request_error", "rate_limit_exceeded"));
    }

    #[test]
    fn display_is_one_line() {
        let e = ServerError {
            class: ErrorClass::Invalid,
            kind: "invalid_request_error".into(),
            code: Some("invalid_value".into()),
            message: "Invalid value: 'x'.\nmore".into(),
            param: Some("session.audio.output.voice".into()),
            event_id: None,
        };
        assert_eq!(
            e.to_string(),
            "invalid_request_error/invalid_value (param session.audio.output.voice): Invalid value: 'x'"
        );
    }
}
