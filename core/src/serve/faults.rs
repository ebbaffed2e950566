//! Fault injection: the failures a client of the real service has to survive, on demand.
//!
//! Faults come from `tolk serve` flags (applied to every session, timed from its start) or from
//! a control message a client sends on its own session — a client event the real service would
//! reject, so only tolk's server accepts it:
//!
//! ```json
//! {"type": "tolk.fault",
//!  "close_after_s": 1.5, "close_code": 1011,
//!  "expire_after_s": 2,
//!  "delay_ms": 800,
//!  "error_after_s": 0, "error": {"type": "server_error", "code": null, "message": "boom"},
//!  "stall_after_s": 0}
//! ```
//!
//! Every field is optional; times count from when the message arrives.
//!
//! - `close_after_s`: the connection ends abruptly (TCP closed, no close frame: the client
//!   sees 1006), or with a close frame of `close_code` when given.
//! - `expire_after_s`: the session expires: `expires_at` moves up (visible in the next
//!   `session.updated`), and at that time the server sends the `session_expired` error and
//!   closes with 1001, as the real service does at its 60-minute cap.
//! - `delay_ms`: every later response starts this much later (before `response.created`).
//! - `error_after_s` / `error`: one `error` event (default `server_error`, "the server had an
//!   error while processing your request"); the session goes on.
//! - `stall_after_s`: the server stops sending anything (it keeps reading, so the client's
//!   writes succeed), until the client gives up.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::protocol::{ApiError, check_keys, obj};

/// Faults configured on the command line; times count from each session's start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// End the connection after this long.
    pub close_after: Option<Duration>,
    /// Close frame code for `close_after`; `None` drops the TCP connection without one.
    pub close_code: Option<u16>,
    /// Expire the session after this long (`session_expired`, close 1001).
    pub expire_after: Option<Duration>,
    /// Delay before every response.
    pub delay: Duration,
    /// Send one `server_error` event after this long.
    pub error_after: Option<Duration>,
    /// Stop sending after this long.
    pub stall_after: Option<Duration>,
}

/// The faults pending on one connection, as deadlines.
#[derive(Debug, Clone, Default)]
pub struct FaultState {
    pub close_at: Option<Instant>,
    pub close_code: Option<u16>,
    pub expire_at: Option<Instant>,
    pub delay: Duration,
    pub error_at: Option<(Instant, ApiError)>,
    pub stall_at: Option<Instant>,
    /// Set once the stall began: nothing is sent any more.
    pub stalled: bool,
}

/// The default injected error.
pub fn server_error() -> ApiError {
    ApiError {
        kind: "server_error".into(),
        code: None,
        message: "The server had an error while processing your request. Sorry about that!".into(),
        param: None,
    }
}

impl FaultState {
    /// The deadlines of `faults` for a session started at `start`.
    pub fn new(faults: &Faults, start: Instant) -> FaultState {
        FaultState {
            close_at: faults.close_after.map(|d| start + d),
            close_code: faults.close_code,
            expire_at: faults.expire_after.map(|d| start + d),
            delay: faults.delay,
            error_at: faults.error_after.map(|d| (start + d, server_error())),
            stall_at: faults.stall_after.map(|d| start + d),
            stalled: false,
        }
    }

    /// The earliest pending deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.close_at, self.expire_at, self.error_at.as_ref().map(|e| e.0), self.stall_at].into_iter().flatten().min()
    }

    /// Applies a `tolk.fault` control message received at `now`.
    pub fn apply_control(&mut self, msg: &Value, now: Instant) -> Result<(), ApiError> {
        let map = obj(msg, "event")?;
        check_keys(
            map,
            "tolk.fault",
            &[
                "type",
                "event_id",
                "close_after_s",
                "close_code",
                "expire_after_s",
                "delay_ms",
                "error_after_s",
                "error",
                "stall_after_s",
            ],
        )?;
        let secs = |k: &str| -> Result<Option<Duration>, ApiError> {
            match map.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => match v.as_f64() {
                    Some(s) if (0.0..=86_400.0).contains(&s) => Ok(Some(Duration::from_secs_f64(s))),
                    _ => Err(ApiError::invalid_value(
                        &format!("tolk.fault.{k}"),
                        format!("Invalid '{k}': expected seconds, 0 to 86400."),
                    )),
                },
            }
        };
        let close = secs("close_after_s")?;
        let expire = secs("expire_after_s")?;
        let error_after = secs("error_after_s")?;
        let stall = secs("stall_after_s")?;
        let close_code = match map.get("close_code") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(c @ (1000..=1003 | 1007..=1014 | 3000..=4999)) => Some(c as u16),
                _ => {
                    return Err(ApiError::invalid_value(
                        "tolk.fault.close_code",
                        "Invalid 'close_code': not a code a server may send.",
                    ));
                }
            },
        };
        let delay = match map.get("delay_ms") {
            None | Some(Value::Null) => None,
            Some(v) => Some(Duration::from_millis(v.as_u64().filter(|&ms| ms <= 600_000).ok_or_else(|| {
                ApiError::invalid_value("tolk.fault.delay_ms", "Invalid 'delay_ms': expected 0 to 600000.")
            })?)),
        };
        let error = match map.get("error") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(true)) => Some(server_error()),
            Some(Value::Object(e)) => {
                let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
                let d = server_error();
                Some(ApiError {
                    kind: s("type").unwrap_or(d.kind),
                    code: s("code"),
                    message: s("message").unwrap_or(d.message),
                    param: s("param"),
                })
            }
            Some(_) => {
                return Err(ApiError::invalid_value(
                    "tolk.fault.error",
                    "Invalid 'error': expected an object or true.",
                ));
            }
        };
        // All validated: apply.
        if let Some(d) = close {
            self.close_at = Some(now + d);
            self.close_code = close_code;
        }
        if let Some(d) = expire {
            self.expire_at = Some(now + d);
        }
        if let Some(d) = delay {
            self.delay = d;
        }
        if error.is_some() || error_after.is_some() {
            self.error_at = Some((now + error_after.unwrap_or_default(), error.unwrap_or_else(server_error)));
        }
        if let Some(d) = stall {
            self.stall_at = Some(now + d);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn control_message_sets_deadlines() {
        let now = Instant::now();
        let mut f = FaultState::new(&Faults::default(), now);
        assert_eq!(f.next_deadline(), None);
        f.apply_control(&json!({"type": "tolk.fault", "expire_after_s": 2, "delay_ms": 300, "error": true}), now)
            .unwrap();
        assert_eq!(f.expire_at, Some(now + Duration::from_secs(2)));
        assert_eq!(f.delay, Duration::from_millis(300));
        assert_eq!(f.next_deadline(), Some(now), "the error is due at once");
        let e = f.apply_control(&json!({"type": "tolk.fault", "close_after_s": -1}), now).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tolk.fault.close_after_s"));
        let e = f.apply_control(&json!({"type": "tolk.fault", "explode": 1}), now).unwrap_err();
        assert_eq!(e.code.as_deref(), Some("unknown_parameter"));
    }

    #[test]
    fn flags_count_from_session_start() {
        let start = Instant::now();
        let f = FaultState::new(&Faults { close_after: Some(Duration::from_secs(5)), ..Faults::default() }, start);
        assert_eq!(f.next_deadline(), Some(start + Duration::from_secs(5)));
    }
}
