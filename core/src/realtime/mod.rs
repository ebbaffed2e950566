//! Realtime sessions: the protocol client. One [`SessionHandle`] is one WebSocket session with a
//! Realtime service — OpenAI, Azure OpenAI, the OpenAI Translation API, or tolk's own
//! `tolk serve` — speaking one of three protocols as codecs over one session model:
//!
//! | protocol | selected by | events |
//! |---|---|---|
//! | GA (primary) | default; OpenAI `/v1/realtime`, Azure `/openai/v1/realtime` | [`events::ServerEvent`] |
//! | legacy 2024-10-01 preview | `[engine] protocol = "legacy"`: `OpenAI-Beta: realtime=v1` header, or Azure's preview `api-version` URL | [`events::BetaServerEvent`] (converted to GA) |
//! | Translation API | provider `openai-translate` (or `protocol = "translation"`) | [`events::TranslationServerEvent`] |
//!
//! ## Using it (the router's view)
//!
//! ```no_run
//! # async fn demo(engine: tolk_core::config::Engine) -> Result<(), tolk_core::realtime::RealtimeError> {
//! use tolk_core::realtime::{self, Input, Output, SessionSpec};
//! let spec = SessionSpec::new(&engine, "Interpret into Spanish.", "en", "es");
//! let mut session = realtime::open(spec).await?; // connected, configured (session.updated seen)
//! let input = session.input(); // tokio mpsc; std threads use `blocking_send`
//! input.send(Input::Audio(vec![0; 480])).await.ok(); // 20 ms of 24 kHz mono PCM16
//! while let Some(out) = session.next().await {
//!     match out {
//!         Output::Audio { samples, .. } => { /* to the sinks */ }
//!         Output::ResponseDone { usage, .. } => { /* cost */ }
//!         Output::Closed { reason } => { /* rotate / reconnect / stop, by reason */ }
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! - [`open`] (or [`open_at`] with a resolved [`Endpoint`]) connects ([`client::connect`]: URL, headers, rustls), waits for `session.created`,
//!   sends `session.update` built from the [`SessionSpec`] and waits for `session.updated`; any
//!   failure before that is a [`RealtimeError`] (one line, never containing the key).
//! - The session then runs on its own tokio task. Feed it [`Input`]s; read [`Output`]s with
//!   [`SessionHandle::next`]. The last output is always [`Output::Closed`] with a
//!   [`CloseReason`] that tells expiry (rotate) from a dropped connection (reconnect) from a
//!   fatal error (stop) from a normal close; `next` then returns `None`.
//! - Errors the service reports mid-session arrive as [`Output::Error`] with an [`ErrorClass`]
//!   (§5.3 of the catalogue): benign, queue, retry, reconnect, fatal, invalid. The session
//!   queues its own `response.create` on `conversation_already_has_active_response`, and closes
//!   itself after a fatal one.
//! - Unknown server events are logged (`tracing`, debug) and skipped; malformed ones are logged
//!   (warn) and skipped. Neither ends the session; both are counted
//!   ([`SessionHandle::skipped_events`]), so tests against `tolk serve` fail on them.
//! - [`Mode::Interpret`] (default): server VAD with `create_response: true,
//!   interrupt_response: false`, so a translation is never cut off. [`Mode::Conversation`]: on
//!   `speech_started` while an answer is being played, the session emits
//!   [`Output::Interrupted`] (stop playback), truncates the playing assistant item at the played
//!   position (clamped to the audio received), cancels the response and drops its late deltas.
//!   The played position is estimated as real-time playback from the first audio delta unless
//!   the caller reports it with [`Input::Played`].
//! - Translation API sessions have no turns: output deltas are grouped into synthetic responses
//!   (ids `tr_resp_N`, items `tr_item_N`) split at gaps of [`TRANSLATION_GAP_MS`], each ending
//!   with `Transcript` + `ResponseDone` (zero usage); source transcripts likewise (`tr_in_N`).
//!   `Commit`, `Clear`, `DeleteItem`, `CreateResponse`, `RespondTo`, `Cancel` and `UpdateInstructions` do not
//!   exist there and are ignored (debug log).
//! - Rotation before [`SessionHandle::expires_at`], reconnect with replay, item deletion policy
//!   and cost are the router's job; [`Input::DeleteItem`] and the close reasons make them
//!   possible.
//!
//! ## Layout
//!
//! - [`events`]: typed server events per protocol, [`events::decode`].
//! - `outgoing`: client events per protocol (session.update shapes, append, truncate, …).
//! - [`client`]: [`client::Endpoint`] (URL and auth from config and environment), [`client::ApiKey`]
//!   (redacting), [`client::connect`].
//! - `state_machine`: the session state machine, written over any `Sink<Message>` +
//!   `Stream<Item = Result<Message, _>>`, so it unit-tests over channels ([`open_with`]).
//! - `error`: [`ServerError`], [`ErrorClass`], [`RealtimeError`].

pub mod client;
mod error;
pub mod events;
mod outgoing;
mod state_machine;

#[cfg(test)]
mod samples;

use std::fmt;

use futures_util::{Sink, Stream};
use serde_json::Value;
use tokio::sync::mpsc;
pub use tokio_tungstenite::tungstenite::Message;

pub use self::{
    client::{ApiKey, Endpoint},
    error::{ErrorClass, RealtimeError, RealtimeErrorKind, ServerError, classify},
};
use crate::config::Engine;
pub use crate::config::{Mode, Protocol};

/// Output silence (in the Translation API) longer than this ends a synthetic response.
pub const TRANSLATION_GAP_MS: u64 = 1200;

/// Everything needed to open one session.
#[derive(Debug, Clone)]
pub struct SessionSpec {
    /// The `[engine]` settings (cloned).
    pub engine: Engine,
    /// System prompt (from the route's prompt provider). Unused by the Translation API.
    pub instructions: String,
    /// Output voice; `None` = the service default. Unused by the Translation API.
    pub voice: Option<String>,
    /// The speaker's language (BCP-47); its ISO-639-1 part is the transcription hint.
    pub source_language: String,
    /// The target language (BCP-47); the Translation API's `audio.output.language`.
    pub target_language: String,
    /// Interpretation or conversation behaviour (default: `engine.mode`).
    pub mode: Mode,
    /// URL override (e.g. the embedded local server); beats `engine.url`.
    pub url: Option<String>,
}

impl SessionSpec {
    /// A spec with the engine's defaults: no voice, `engine.mode`, no URL override.
    pub fn new(engine: &Engine, instructions: impl Into<String>, source: &str, target: &str) -> SessionSpec {
        SessionSpec {
            engine: engine.clone(),
            instructions: instructions.into(),
            voice: None,
            source_language: source.to_string(),
            target_language: target.to_string(),
            mode: engine.mode,
            url: None,
        }
    }

    /// The endpoint this spec connects to, reading keys from the process environment.
    pub fn endpoint(&self) -> Result<Endpoint, RealtimeError> {
        Endpoint::resolve(&self.engine, self.url.as_deref(), |k| std::env::var(k).ok())
    }
}

/// What the caller sends into a session.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// 24 kHz mono PCM16 to append to the input buffer (any length; 20–200 ms is typical).
    Audio(Vec<i16>),
    /// Commit the input buffer (manual turns, `turn_detection = "none"`).
    Commit,
    /// Discard uncommitted input audio.
    Clear,
    /// Ask for a response (manual turns); queued while one is running. It answers whatever
    /// is latest in the conversation when it runs: prefer [`Input::RespondTo`].
    CreateResponse,
    /// Ask for a response to one user item (e.g. the one `Output::Committed` named after a
    /// client commit): its input is a reference to that item alone, so it answers that item
    /// even if it must wait behind other responses and the server commits more meanwhile.
    /// Queued in order while a response runs.
    RespondTo(String),
    /// Cancel the running response, if any.
    Cancel,
    /// Remove an item from the conversation (context control).
    DeleteItem(String),
    /// Replace the instructions (`session.update`).
    UpdateInstructions(String),
    /// The caller's playback position in an assistant item (conversation mode); without it the
    /// session assumes real-time playback from the first audio delta.
    Played {
        /// The assistant item.
        item_id: String,
        /// Milliseconds of it actually played.
        played_ms: u64,
    },
    /// Speak a typed announcement: a user text item (`conversation.item.create`, its id
    /// starting with [`outgoing::ANNOUNCEMENT_ITEM`]) and a response to that item alone, marked
    /// `metadata.tolk = "announcement"` (its start is [`Output::AnnouncementStarted`]); queued
    /// like [`Input::RespondTo`]. The Translation API has no items: ignored there.
    Announce(String),
    /// Send one text frame as is (tests and diagnostics).
    Raw(String),
    /// Close the session (the Translation API flushes pending output first).
    Close,
}

/// Token usage of one response (`response.done.response.usage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// All input tokens (the whole conversation re-read), cached included.
    pub input_tokens: u64,
    /// Input text tokens.
    pub input_text: u64,
    /// Input audio tokens.
    pub input_audio: u64,
    /// Input image tokens.
    pub input_image: u64,
    /// Cached subset of `input_tokens`.
    pub input_cached: u64,
    /// Cached text tokens.
    pub input_cached_text: u64,
    /// Cached audio tokens.
    pub input_cached_audio: u64,
    /// All output tokens.
    pub output_tokens: u64,
    /// Output text tokens.
    pub output_text: u64,
    /// Output audio tokens.
    pub output_audio: u64,
    /// `total_tokens`.
    pub total_tokens: u64,
}

impl Usage {
    /// Reads a `usage` object; missing or odd fields count as 0.
    pub fn from_json(v: &Value) -> Usage {
        let n = |path: &[&str]| {
            let mut cur = v;
            for p in path {
                match cur.get(p) {
                    Some(x) => cur = x,
                    None => return 0,
                }
            }
            cur.as_u64().unwrap_or(0)
        };
        Usage {
            input_tokens: n(&["input_tokens"]),
            input_text: n(&["input_token_details", "text_tokens"]),
            input_audio: n(&["input_token_details", "audio_tokens"]),
            input_image: n(&["input_token_details", "image_tokens"]),
            input_cached: n(&["input_token_details", "cached_tokens"]),
            input_cached_text: n(&["input_token_details", "cached_tokens_details", "text_tokens"]),
            input_cached_audio: n(&["input_token_details", "cached_tokens_details", "audio_tokens"]),
            output_tokens: n(&["output_tokens"]),
            output_text: n(&["output_token_details", "text_tokens"]),
            output_audio: n(&["output_token_details", "audio_tokens"]),
            total_tokens: n(&["total_tokens"]),
        }
    }
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The service ended it at its maximum duration (`session_expired`): open a new one.
    Expired,
    /// The connection broke or the service closed it unasked: reconnect.
    Dropped,
    /// Closed on request ([`Input::Close`] or the handle dropped).
    Normal,
    /// It cannot work (fatal error, close code 4000, …): do not retry blindly.
    Fatal(String),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Expired => f.write_str("session expired"),
            CloseReason::Dropped => f.write_str("connection dropped"),
            CloseReason::Normal => f.write_str("closed"),
            CloseReason::Fatal(m) => write!(f, "fatal: {m}"),
        }
    }
}

/// What a session produces.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// VAD: the speaker started (`audio_start_ms` into the session's input).
    SpeechStarted {
        /// The user item that will hold the speech.
        item_id: String,
        /// Position in the input audio.
        audio_start_ms: u64,
    },
    /// VAD: the speaker stopped.
    SpeechStopped {
        /// The user item.
        item_id: String,
        /// Position in the input audio.
        audio_end_ms: u64,
    },
    /// The input buffer became a user item.
    Committed {
        /// The user item.
        item_id: String,
    },
    /// Source-language caption fragment (input transcription).
    SourceTranscriptDelta {
        /// The user item.
        item_id: String,
        /// Append-only fragment.
        delta: String,
    },
    /// Source-language caption, whole (may arrive after the response).
    SourceTranscript {
        /// The user item.
        item_id: String,
        /// The transcript.
        text: String,
    },
    /// A response began.
    ResponseStarted {
        /// The response.
        response_id: String,
    },
    /// The response to an [`Input::Announce`] began (its audio and text follow like any
    /// response's).
    AnnouncementStarted {
        /// The response.
        response_id: String,
    },
    /// Translated speech, 24 kHz mono PCM16.
    Audio {
        /// The response.
        response_id: String,
        /// The assistant item.
        item_id: String,
        /// Samples.
        samples: Vec<i16>,
    },
    /// Translated text fragment (audio transcript, or text output).
    TranscriptDelta {
        /// The response.
        response_id: String,
        /// The assistant item.
        item_id: String,
        /// Append-only fragment.
        delta: String,
    },
    /// Translated text, whole.
    Transcript {
        /// The response.
        response_id: String,
        /// The assistant item.
        item_id: String,
        /// The text.
        text: String,
    },
    /// A response finished.
    ResponseDone {
        /// The response.
        response_id: String,
        /// `completed`, `cancelled`, `incomplete` or `failed`.
        status: String,
        /// Tokens billed for it.
        usage: Usage,
        /// The items it produced (for deletion policies).
        output_item_ids: Vec<String>,
    },
    /// Conversation mode: the speaker talked over an answer; stop playing `response_id` now.
    Interrupted {
        /// The cut response.
        response_id: String,
        /// The assistant item that was playing (empty when no audio of it had arrived yet).
        item_id: String,
        /// How much of it had been played (where it was truncated).
        played_ms: u64,
    },
    /// The service confirmed a truncation.
    Truncated {
        /// The assistant item.
        item_id: String,
        /// Where its audio now ends.
        audio_end_ms: u64,
    },
    /// The service confirmed an item deletion.
    ItemDeleted {
        /// The item.
        item_id: String,
    },
    /// The service reported an error (session kept unless the class is fatal).
    Error(ServerError),
    /// The session ended; always the last output.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// A running session. Dropping it closes the session.
///
/// Outputs wait in a bounded queue (1024); a caller that stops reading them eventually stops the
/// session reading its socket, so read them promptly (or drop the handle).
pub struct SessionHandle {
    input: mpsc::Sender<Input>,
    output: mpsc::Receiver<Output>,
    session_id: String,
    expires_at: std::sync::Arc<std::sync::atomic::AtomicU64>,
    skipped: std::sync::Arc<std::sync::atomic::AtomicU64>,
    protocol: Protocol,
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionHandle")
            .field("session_id", &self.session_id)
            .field("expires_at", &self.expires_at())
            .field("protocol", &self.protocol)
            .finish()
    }
}

impl SessionHandle {
    /// The input channel (clone it freely; std threads use `blocking_send`).
    pub fn input(&self) -> mpsc::Sender<Input> {
        self.input.clone()
    }

    /// The next output; `None` after [`Output::Closed`].
    pub async fn next(&mut self) -> Option<Output> {
        self.output.recv().await
    }

    /// The next output without waiting: `Ok(None)` when none is ready, `Err(())` after the end.
    #[allow(clippy::result_unit_err)]
    pub fn try_next(&mut self) -> Result<Option<Output>, ()> {
        match self.output.try_recv() {
            Ok(o) => Ok(Some(o)),
            Err(mpsc::error::TryRecvError::Empty) => Ok(None),
            Err(mpsc::error::TryRecvError::Disconnected) => Err(()),
        }
    }

    /// When the service will end the session (unix seconds), if it said. Kept current: a later
    /// `session.updated` that moves the deadline updates it.
    pub fn expires_at(&self) -> Option<u64> {
        match self.expires_at.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    /// How many server events this session skipped so far as unknown (a `type` the protocol's
    /// catalogue does not know) or malformed (a known type with a bad shape). Against tolk's own
    /// server this stays 0; tests assert it.
    pub fn skipped_events(&self) -> u64 {
        self.skipped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The service's session id.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The wire protocol in use.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }
}

/// A handle with no session behind it, and the receiving end of its input (route tests drive
/// the route with outputs of their own).
#[cfg(test)]
pub(crate) fn detached_handle() -> (SessionHandle, mpsc::Receiver<Input>, mpsc::Sender<Output>) {
    let (in_tx, in_rx) = mpsc::channel(1 << 16);
    let (out_tx, out_rx) = mpsc::channel(16);
    let handle = SessionHandle {
        input: in_tx,
        output: out_rx,
        session_id: "sess_test".into(),
        expires_at: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)),
        protocol: Protocol::Ga,
        skipped: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)),
    };
    (handle, in_rx, out_tx)
}

/// Connects to the spec's endpoint (key and Azure endpoint from the process environment) and
/// sets the session up; see the module docs.
pub async fn open(spec: SessionSpec) -> Result<SessionHandle, RealtimeError> {
    let endpoint = spec.endpoint()?;
    open_at(spec, &endpoint).await
}

/// Like [`open`], with an endpoint resolved by the caller (e.g. [`Endpoint::resolve`] with its
/// own variable lookup).
pub async fn open_at(spec: SessionSpec, endpoint: &Endpoint) -> Result<SessionHandle, RealtimeError> {
    let timeout = std::time::Duration::from_millis(spec.engine.connect_timeout_ms);
    let socket = match tokio::time::timeout(timeout, client::connect(endpoint)).await {
        Ok(s) => s?,
        Err(_) => {
            return Err(RealtimeError::new(
                RealtimeErrorKind::Timeout,
                format!("cannot connect to {}: no answer within {} ms", endpoint.url, spec.engine.connect_timeout_ms),
            ));
        }
    };
    let (sink, stream) = futures_util::StreamExt::split(socket);
    open_with(spec, sink, stream).await
}

/// Sets a session up over an already open transport (any sink and stream of WebSocket
/// messages, e.g. channels in tests) and runs it on a tokio task.
pub async fn open_with<S, R, E>(spec: SessionSpec, sink: S, stream: R) -> Result<SessionHandle, RealtimeError>
where
    S: Sink<Message> + Unpin + Send + 'static,
    S::Error: fmt::Display + Send,
    R: Stream<Item = Result<Message, E>> + Unpin + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    state_machine::start(spec, sink, stream).await
}
