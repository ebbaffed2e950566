//! The session state machine, over any `Sink<Message>` + `Stream<Item = Result<Message, _>>`.
//!
//! Setup (`start`): wait for `session.created`, send `session.update`, wait for
//! `session.updated`. Then one task `select!`s over server frames, caller [`Input`]s, the
//! translation segment timer, the ping timer and the close deadline, turning events into
//! [`Output`]s. After `engine.ping_interval_ms` without any frame from the service the session
//! pings it; a ping unanswered (no frame at all) for `engine.event_timeout_ms` ends the session
//! as [`CloseReason::Dropped`] (a half-open connection). All
//! protocol differences live in decoding (events) and encoding (outgoing); the model here is
//! one: responses with ids, items with ids, audio in ms.

use std::{
    collections::{HashSet, VecDeque},
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::{sync::mpsc, time::Instant};
use tracing::{debug, trace, warn};

use super::{
    CloseReason, ErrorClass, Input, Message, Mode, Output, Protocol, RealtimeError, RealtimeErrorKind, ServerError,
    SessionHandle, SessionSpec, TRANSLATION_GAP_MS, Usage,
    events::{self, BetaServerEvent, Decoded, ErrorEvent, ServerEvent, SessionEvent, TranslationServerEvent},
    outgoing,
};
use crate::audio::pcm16;

/// Output samples per second (PCM16 24 kHz mono).
const RATE: u64 = 24_000;
/// How long a requested close may take before the session gives up waiting for the server.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How many of its own automatic event ids the session remembers (to swallow their benign errors).
const REMEMBERED_IDS: usize = 64;

/// A decoded server event of either family.
enum Event {
    Realtime(ServerEvent),
    Translation(TranslationServerEvent),
}

impl Event {
    fn session(&self) -> Option<(&SessionEvent, bool)> {
        match self {
            Event::Realtime(ServerEvent::SessionCreated(s))
            | Event::Translation(TranslationServerEvent::SessionCreated(s)) => Some((s, true)),
            Event::Realtime(ServerEvent::SessionUpdated(s))
            | Event::Translation(TranslationServerEvent::SessionUpdated(s)) => Some((s, false)),
            _ => None,
        }
    }

    fn error(&self) -> Option<&ErrorEvent> {
        match self {
            Event::Realtime(ServerEvent::Error(e)) | Event::Translation(TranslationServerEvent::Error(e)) => Some(e),
            _ => None,
        }
    }
}

/// One assistant item being played (conversation mode).
struct Playing {
    response_id: String,
    item_id: String,
    /// When its playback started (or will start, after the items before it).
    start: Instant,
    /// Samples received.
    received: u64,
    /// The caller's reported position, if any.
    reported_ms: Option<u64>,
}

impl Playing {
    fn received_ms(&self) -> u64 {
        self.received * 1000 / RATE
    }

    fn played_ms(&self, now: Instant) -> u64 {
        let est = self.reported_ms.unwrap_or_else(|| now.saturating_duration_since(self.start).as_millis() as u64);
        est.min(self.received_ms())
    }

    fn end(&self) -> Instant {
        self.start + Duration::from_millis(self.received_ms())
    }
}

/// A synthetic response (or input segment) of the Translation API.
struct Segment {
    response_id: String,
    item_id: String,
    text: String,
    last_elapsed: Option<u64>,
    last_at: Instant,
}

/// What to do after handling something.
enum Flow {
    Continue,
    Stop(CloseReason),
}

struct Session<S, R> {
    protocol: Protocol,
    mode: Mode,
    sink: S,
    stream: R,
    out: mpsc::Sender<Output>,
    next_id: u64,
    session_id: String,
    /// `session.expires_at` (0 = unknown), shared with the handle so it stays current.
    expires_at: Arc<AtomicU64>,
    /// Server events skipped as unknown or malformed, shared with the handle.
    skipped: Arc<AtomicU64>,
    active_response: Option<String>,
    /// Response requests waiting for the running response to end, in order: `None` is a plain
    /// `response.create` (repeats coalesce), `Some(item)` one that answers that user item.
    pending_creates: VecDeque<Option<String>>,
    /// Our recent `response.create`s by event id, with the item each answers (to queue them
    /// again if the service refuses them while a response runs).
    create_ids: VecDeque<(String, Option<String>)>,
    auto_ids: VecDeque<String>,
    cancelled: HashSet<String>,
    playing: Vec<Playing>,
    out_segment: Option<Segment>,
    in_segment: Option<Segment>,
    segments: u64,
    /// Announcements sent (their items' ids are numbered by it).
    announcements: u64,
    expired: bool,
    fatal: Option<String>,
    closing: Option<Instant>,
    bytes: Vec<u8>,
    b64: String,
    /// When the latest frame of any kind (pongs included) came from the service.
    last_frame: Instant,
    /// When the unanswered ping was sent.
    ping_sent: Option<Instant>,
    /// Ping after this long without a frame (`None`: never).
    ping_interval: Option<Duration>,
    /// How long a ping may go unanswered.
    pong_timeout: Duration,
}

/// Sets the session up over `sink`/`stream` and spawns its task.
pub(super) async fn start<S, R, E>(spec: SessionSpec, sink: S, stream: R) -> Result<SessionHandle, RealtimeError>
where
    S: Sink<Message> + Unpin + Send + 'static,
    S::Error: fmt::Display + Send,
    R: Stream<Item = Result<Message, E>> + Unpin + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    let (out_tx, out_rx) = mpsc::channel(1024);
    let (in_tx, in_rx) = mpsc::channel(256);
    let mut s = Session {
        protocol: spec.engine.protocol,
        mode: spec.mode,
        sink,
        stream,
        out: out_tx,
        next_id: 0,
        session_id: String::new(),
        expires_at: Arc::new(AtomicU64::new(0)),
        skipped: Arc::new(AtomicU64::new(0)),
        active_response: None,
        pending_creates: VecDeque::new(),
        create_ids: VecDeque::new(),
        auto_ids: VecDeque::new(),
        cancelled: HashSet::new(),
        playing: Vec::new(),
        out_segment: None,
        in_segment: None,
        segments: 0,
        announcements: 0,
        expired: false,
        fatal: None,
        closing: None,
        bytes: Vec::new(),
        b64: String::new(),
        last_frame: Instant::now(),
        ping_sent: None,
        ping_interval: Some(spec.engine.ping_interval_ms).filter(|&ms| ms > 0).map(Duration::from_millis),
        pong_timeout: Duration::from_millis(spec.engine.event_timeout_ms),
    };
    let ms = spec.engine.connect_timeout_ms;
    match tokio::time::timeout(Duration::from_millis(ms), s.setup(&spec)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(RealtimeError::new(
                RealtimeErrorKind::Timeout,
                format!("realtime session setup did not finish within {ms} ms"),
            ));
        }
    }
    let handle = SessionHandle {
        input: in_tx,
        output: out_rx,
        session_id: s.session_id.clone(),
        expires_at: s.expires_at.clone(),
        skipped: s.skipped.clone(),
        protocol: s.protocol,
    };
    tokio::spawn(s.run(in_rx));
    Ok(handle)
}

impl<S, R, E> Session<S, R>
where
    S: Sink<Message> + Unpin + Send + 'static,
    S::Error: fmt::Display + Send,
    R: Stream<Item = Result<Message, E>> + Unpin + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    fn id(&mut self) -> String {
        self.next_id += 1;
        format!("tolk_{}", self.next_id)
    }

    fn remember(list: &mut VecDeque<String>, id: &str) {
        if list.len() == REMEMBERED_IDS {
            list.pop_front();
        }
        list.push_back(id.to_string());
    }

    fn forget(list: &mut VecDeque<String>, id: &str) -> bool {
        match list.iter().position(|x| x == id) {
            Some(i) => {
                list.remove(i);
                true
            }
            None => false,
        }
    }

    async fn send(&mut self, text: String) -> Result<(), CloseReason> {
        trace!(target: "tolk::realtime", len = text.len(), "send");
        self.sink.send(Message::text(text)).await.map_err(|e| {
            warn!(target: "tolk::realtime", "realtime send failed: {e}");
            self.end_reason(CloseReason::Dropped)
        })
    }

    async fn emit(&mut self, o: Output) {
        // A receiver gone means the handle was dropped; the run loop notices and closes.
        let _ = self.out.send(o).await;
    }

    /// The reason to report when the transport ends, given what the session saw before.
    fn end_reason(&self, otherwise: CloseReason) -> CloseReason {
        if let Some(m) = &self.fatal {
            CloseReason::Fatal(m.clone())
        } else if self.expired {
            CloseReason::Expired
        } else if self.closing.is_some() {
            CloseReason::Normal
        } else {
            otherwise
        }
    }

    fn decode(&self, text: &str) -> Option<Event> {
        let decoded = match self.protocol {
            Protocol::Ga => map(events::decode::<ServerEvent>(text), Event::Realtime),
            Protocol::Legacy => map(events::decode::<BetaServerEvent>(text), |e| Event::Realtime(e.into())),
            Protocol::Translation => map(events::decode::<TranslationServerEvent>(text), Event::Translation),
        };
        match decoded {
            Decoded::Event(e) => Some(e),
            Decoded::Unknown(kind) => {
                self.skipped.fetch_add(1, Ordering::Relaxed);
                debug!(target: "tolk::realtime", "skipping unknown server event \"{kind}\"");
                None
            }
            Decoded::Malformed { kind, error } => {
                self.skipped.fetch_add(1, Ordering::Relaxed);
                warn!(target: "tolk::realtime", "skipping malformed server event {}: {error}", kind.as_deref().unwrap_or("(no type)"));
                None
            }
        }
    }

    /// Next event during setup; transport end is an error.
    async fn setup_event(&mut self) -> Result<Event, RealtimeError> {
        loop {
            match self.stream.next().await {
                Some(Ok(Message::Text(t))) => {
                    if let Some(e) = self.decode(t.as_str()) {
                        return Ok(e);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let detail =
                        frame.map(|f| format!(" (code {}, {})", u16::from(f.code), f.reason)).unwrap_or_default();
                    return Err(RealtimeError::new(
                        RealtimeErrorKind::Protocol,
                        format!("the realtime service closed the connection during setup{detail}"),
                    ));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    return Err(RealtimeError::new(
                        RealtimeErrorKind::Connect,
                        format!("realtime connection failed during setup: {e}"),
                    ));
                }
                None => {
                    return Err(RealtimeError::new(
                        RealtimeErrorKind::Protocol,
                        "the realtime service closed the connection during setup",
                    ));
                }
            }
        }
    }

    async fn setup(&mut self, spec: &SessionSpec) -> Result<(), RealtimeError> {
        let mut update_id: Option<String> = None;
        loop {
            let event = self.setup_event().await?;
            if let Some(err) = event.error() {
                let se = ServerError::from_body(&err.error);
                if se.class == ErrorClass::Benign {
                    self.emit(Output::Error(se)).await;
                    continue;
                }
                return Err(RealtimeError::server(se));
            }
            match (event.session(), &update_id) {
                (Some((s, true)), None) => {
                    self.session_id = s.session_id().to_string();
                    self.expires_at.store(s.expires_at().unwrap_or(0), Ordering::Relaxed);
                    let id = self.id();
                    let text = outgoing::session_update(spec, &id);
                    update_id = Some(id);
                    if let Err(reason) = self.send(text).await {
                        return Err(RealtimeError::new(
                            RealtimeErrorKind::Connect,
                            format!("cannot send session.update: {reason}"),
                        ));
                    }
                }
                (Some((s, false)), Some(_)) => {
                    if let Some(exp) = s.expires_at() {
                        self.expires_at.store(exp, Ordering::Relaxed);
                    }
                    return Ok(());
                }
                (_, None) => {
                    return Err(RealtimeError::new(
                        RealtimeErrorKind::Protocol,
                        "the realtime service did not start with session.created",
                    ));
                }
                _ => {
                    let _ = self.on_event(event).await;
                }
            }
        }
    }

    async fn run(mut self, mut input: mpsc::Receiver<Input>) {
        let mut input_open = true;
        let reason = loop {
            let segment_deadline = self.segment_deadline();
            let close_deadline = self.closing;
            let ping_deadline = self.ping_deadline();
            let flow = tokio::select! {
                msg = self.stream.next() => {
                    if matches!(msg, Some(Ok(_))) {
                        self.last_frame = Instant::now();
                        self.ping_sent = None;
                    }
                    match msg {
                    Some(Ok(Message::Text(t))) => match self.decode(t.as_str()) {
                        Some(e) => self.on_event(e).await,
                        None => Flow::Continue,
                    },
                    Some(Ok(Message::Close(frame))) => {
                        let (code, text) = frame.map(|f| (u16::from(f.code), f.reason.to_string())).unwrap_or((1005, String::new()));
                        debug!(target: "tolk::realtime", "server closed the session: code {code} {text}");
                        if code == 4000 && self.fatal.is_none() {
                            self.fatal = Some(format!("the service closed the session with code 4000 {text}").trim_end().to_string());
                        }
                        Flow::Stop(self.end_reason(CloseReason::Dropped))
                    }
                    Some(Ok(Message::Binary(b))) => {
                        debug!(target: "tolk::realtime", "skipping a binary frame of {} bytes", b.len());
                        Flow::Continue
                    }
                    Some(Ok(_)) => Flow::Continue,
                    // NOTE: once we asked to close, a reset instead of a closing handshake is
                    // the end we wanted, not a failure worth a warning.
                    Some(Err(e)) if self.closing.is_some() => {
                        debug!(target: "tolk::realtime", "connection ended while closing: {e}");
                        Flow::Stop(self.end_reason(CloseReason::Normal))
                    }
                    Some(Err(e)) => {
                        warn!(target: "tolk::realtime", "realtime connection failed: {e}");
                        Flow::Stop(self.end_reason(CloseReason::Dropped))
                    }
                    None => Flow::Stop(self.end_reason(CloseReason::Dropped)),
                }},
                _ = sleep_until(ping_deadline), if ping_deadline.is_some() => self.on_ping_timer().await,
                cmd = input.recv(), if input_open && self.closing.is_none() => match cmd {
                    Some(Input::Close) | None => {
                        input_open = false;
                        self.begin_close().await
                    }
                    Some(i) => self.on_input(i).await,
                },
                _ = self.out.closed(), if self.closing.is_none() => self.begin_close().await,
                _ = sleep_until(segment_deadline), if segment_deadline.is_some() => {
                    self.finish_idle_segments().await;
                    Flow::Continue
                }
                _ = sleep_until(close_deadline), if close_deadline.is_some() => Flow::Stop(self.end_reason(CloseReason::Normal)),
            };
            if let Flow::Stop(reason) = flow {
                break reason;
            }
        };
        self.finish_segment(true).await;
        self.finish_segment(false).await;
        let _ = self.sink.close().await;
        debug!(target: "tolk::realtime", session = %self.session_id, "session ended: {reason}");
        self.emit(Output::Closed { reason }).await;
    }

    /// When the ping timer fires next: the ping's answer deadline, or the next ping (none while
    /// closing).
    fn ping_deadline(&self) -> Option<Instant> {
        if self.closing.is_some() {
            return None;
        }
        match self.ping_sent {
            Some(sent) => Some(sent + self.pong_timeout),
            None => self.ping_interval.map(|i| self.last_frame + i),
        }
    }

    /// Pings a quiet service, or gives up on one that left the ping unanswered.
    async fn on_ping_timer(&mut self) -> Flow {
        if self.ping_sent.is_some() {
            warn!(
                target: "tolk::realtime",
                "the realtime service answered nothing for {} ms (not even a ping): connection stalled",
                self.pong_timeout.as_millis()
            );
            return Flow::Stop(self.end_reason(CloseReason::Dropped));
        }
        self.ping_sent = Some(Instant::now());
        trace!(target: "tolk::realtime", "ping");
        match self.sink.send(Message::Ping(Vec::new().into())).await {
            Ok(()) => Flow::Continue,
            Err(e) => {
                warn!(target: "tolk::realtime", "realtime send failed: {e}");
                Flow::Stop(self.end_reason(CloseReason::Dropped))
            }
        }
    }

    async fn begin_close(&mut self) -> Flow {
        if self.closing.is_some() {
            return Flow::Continue;
        }
        self.closing = Some(Instant::now() + CLOSE_GRACE);
        if self.protocol == Protocol::Translation && self.fatal.is_none() {
            // The server flushes pending output, then answers session.closed.
            let id = self.id();
            if let Err(r) = self.send(outgoing::bare("session.close", &id)).await {
                return Flow::Stop(r);
            }
            return Flow::Continue;
        }
        self.close_socket().await
    }

    async fn close_socket(&mut self) -> Flow {
        if self.closing.is_none() {
            self.closing = Some(Instant::now() + CLOSE_GRACE);
        }
        match self.sink.send(Message::Close(None)).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop(self.end_reason(CloseReason::Normal)),
        }
    }

    async fn on_input(&mut self, input: Input) -> Flow {
        let p = self.protocol;
        let translation = p == Protocol::Translation;
        let text = match input {
            Input::Audio(samples) => {
                if samples.is_empty() {
                    return Flow::Continue;
                }
                let (mut bytes, mut b64) = (std::mem::take(&mut self.bytes), std::mem::take(&mut self.b64));
                let text = outgoing::append(p, &samples, &mut bytes, &mut b64);
                (self.bytes, self.b64) = (bytes, b64);
                Some(text)
            }
            Input::Raw(text) => Some(text),
            Input::Played { item_id, played_ms } => {
                if let Some(pl) = self.playing.iter_mut().find(|pl| pl.item_id == item_id) {
                    pl.reported_ms = Some(played_ms);
                }
                None
            }
            other if translation => {
                debug!(target: "tolk::realtime", "ignoring {other:?}: the translation protocol has no turns or items");
                None
            }
            Input::Commit => Some(outgoing::bare("input_audio_buffer.commit", &self.id())),
            Input::Clear => Some(outgoing::bare("input_audio_buffer.clear", &self.id())),
            Input::CreateResponse => self.request_response(None),
            Input::RespondTo(item) => self.request_response(Some(item)),
            Input::Announce(text) => {
                self.announcements += 1;
                let item = format!("{}{}", outgoing::ANNOUNCEMENT_ITEM, self.announcements);
                let id = self.id();
                if let Err(r) = self.send(outgoing::text_item(&item, &text, &id)).await {
                    return Flow::Stop(r);
                }
                self.request_response(Some(item))
            }
            Input::Cancel => match self.active_response.clone() {
                Some(r) => {
                    self.cancelled.insert(r.clone());
                    let id = self.id();
                    Self::remember(&mut self.auto_ids, &id);
                    Some(outgoing::response_cancel(Some(&r), &id))
                }
                None => None,
            },
            Input::DeleteItem(item) => Some(outgoing::delete_item(&item, &self.id())),
            Input::UpdateInstructions(text) => {
                let id = self.id();
                outgoing::instructions_update(p, &text, &id)
            }
            Input::Close => unreachable!("handled by the run loop"),
        };
        match text {
            Some(t) => match self.send(t).await {
                Ok(()) => Flow::Continue,
                Err(r) => Flow::Stop(r),
            },
            None => Flow::Continue,
        }
    }

    /// A `response.create` now, or queued behind the running response and earlier requests.
    fn request_response(&mut self, item: Option<String>) -> Option<String> {
        if self.active_response.is_some() || !self.pending_creates.is_empty() {
            if item.is_some() || !self.pending_creates.contains(&None) {
                self.pending_creates.push_back(item);
            }
            None
        } else {
            Some(self.create_response(item))
        }
    }

    fn create_response(&mut self, item: Option<String>) -> String {
        let id = self.id();
        let text = outgoing::response_create(&id, item.as_deref());
        if self.create_ids.len() == REMEMBERED_IDS {
            self.create_ids.pop_front();
        }
        self.create_ids.push_back((id, item));
        text
    }

    async fn on_event(&mut self, event: Event) -> Flow {
        match event {
            Event::Realtime(e) => self.on_realtime(e).await,
            Event::Translation(e) => self.on_translation(e).await,
        }
    }

    async fn on_error(&mut self, e: &ErrorEvent) -> Flow {
        let se = ServerError::from_body(&e.error);
        if let Some(id) = se.event_id.clone() {
            if Self::forget(&mut self.auto_ids, &id) && se.class == ErrorClass::Benign {
                debug!(target: "tolk::realtime", "automatic {id} was refused (harmless): {se}");
                return Flow::Continue;
            }
            if se.class == ErrorClass::Queue
                && let Some(i) = self.create_ids.iter().position(|(x, _)| *x == id)
            {
                debug!(target: "tolk::realtime", "response.create queued until the running response is done");
                let (_, item) = self.create_ids.remove(i).expect("present");
                // It was sent before anything still waiting: it goes first.
                if item.is_some() || !self.pending_creates.contains(&None) {
                    self.pending_creates.push_front(item);
                }
                return Flow::Continue;
            }
        }
        match se.class {
            ErrorClass::Reconnect => self.expired = true,
            ErrorClass::Fatal => self.fatal = Some(se.to_string()),
            _ => {}
        }
        let class = se.class;
        self.emit(Output::Error(se)).await;
        if class == ErrorClass::Fatal {
            return self.close_socket().await;
        }
        Flow::Continue
    }

    /// Records when the session expires, as the service said (if it did).
    fn expires(&self, at: Option<u64>) {
        if let Some(exp) = at {
            self.expires_at.store(exp, Ordering::Relaxed);
        }
    }

    async fn on_realtime(&mut self, e: ServerEvent) -> Flow {
        match e {
            ServerEvent::Error(e) => return self.on_error(&e).await,
            ServerEvent::SessionCreated(s) | ServerEvent::SessionUpdated(s) => self.expires(s.expires_at()),
            ServerEvent::SpeechStarted(s) => {
                if self.mode == Mode::Conversation
                    && let Err(r) = self.interrupt().await
                {
                    return Flow::Stop(r);
                }
                self.emit(Output::SpeechStarted { item_id: s.item_id, audio_start_ms: s.audio_start_ms }).await;
            }
            ServerEvent::SpeechStopped(s) => {
                self.emit(Output::SpeechStopped { item_id: s.item_id, audio_end_ms: s.audio_end_ms }).await
            }
            ServerEvent::InputCommitted(c) => self.emit(Output::Committed { item_id: c.item_id }).await,
            ServerEvent::InputTranscriptionDelta(d) => {
                self.emit(Output::SourceTranscriptDelta { item_id: d.item_id, delta: d.delta }).await
            }
            ServerEvent::InputTranscriptionCompleted(c) => {
                self.emit(Output::SourceTranscript { item_id: c.item_id, text: c.transcript }).await
            }
            ServerEvent::InputTranscriptionFailed(f) => {
                let mut se = ServerError::from_body(&f.error);
                se.class = ErrorClass::Benign;
                self.emit(Output::Error(se)).await
            }
            ServerEvent::ResponseCreated(r) => {
                let id = r.response_id().to_string();
                self.active_response = Some(id.clone());
                let announcement =
                    r.response.pointer("/metadata/tolk").and_then(serde_json::Value::as_str) == Some("announcement");
                if announcement {
                    self.emit(Output::AnnouncementStarted { response_id: id }).await
                } else {
                    self.emit(Output::ResponseStarted { response_id: id }).await
                }
            }
            ServerEvent::AudioDelta(d) => {
                if self.cancelled.contains(&d.response_id) {
                    trace!(target: "tolk::realtime", "dropping late audio of cancelled {}", d.response_id);
                    return Flow::Continue;
                }
                let mut samples = Vec::with_capacity(d.delta.len() * 3 / 8);
                if let Err(err) = pcm16::decode_into(&d.delta, &mut self.bytes, &mut samples) {
                    warn!(target: "tolk::realtime", "skipping undecodable audio delta: {err}");
                    return Flow::Continue;
                }
                if self.mode == Mode::Conversation {
                    self.track_playback(&d.response_id, &d.item_id, samples.len() as u64);
                }
                self.emit(Output::Audio { response_id: d.response_id, item_id: d.item_id, samples }).await
            }
            ServerEvent::AudioTranscriptDelta(d) | ServerEvent::TextDelta(d) => {
                if !self.cancelled.contains(&d.response_id) {
                    self.emit(Output::TranscriptDelta {
                        response_id: d.response_id,
                        item_id: d.item_id,
                        delta: d.delta,
                    })
                    .await
                }
            }
            ServerEvent::AudioTranscriptDone(d) => {
                if !self.cancelled.contains(&d.response_id) {
                    self.emit(Output::Transcript { response_id: d.response_id, item_id: d.item_id, text: d.transcript })
                        .await
                }
            }
            ServerEvent::TextDone(d) => {
                if !self.cancelled.contains(&d.response_id) {
                    self.emit(Output::Transcript { response_id: d.response_id, item_id: d.item_id, text: d.text }).await
                }
            }
            ServerEvent::ResponseDone(r) => {
                let response_id = r.response_id().to_string();
                if self.active_response.as_deref() == Some(response_id.as_str()) {
                    self.active_response = None;
                }
                self.cancelled.remove(&response_id);
                self.emit(Output::ResponseDone {
                    response_id,
                    status: r.status().to_string(),
                    usage: r.usage(),
                    output_item_ids: r.output_item_ids(),
                })
                .await;
                if self.active_response.is_none()
                    && let Some(item) = self.pending_creates.pop_front()
                {
                    let text = self.create_response(item);
                    if let Err(r) = self.send(text).await {
                        return Flow::Stop(r);
                    }
                }
            }
            ServerEvent::ItemTruncated(t) => {
                self.emit(Output::Truncated { item_id: t.item_id, audio_end_ms: t.audio_end_ms }).await
            }
            ServerEvent::ItemDeleted(d) => self.emit(Output::ItemDeleted { item_id: d.item_id }).await,
            ServerEvent::Unknown => {}
            other => trace!(target: "tolk::realtime", "event {:?}", std::mem::discriminant(&other)),
        }
        Flow::Continue
    }

    fn track_playback(&mut self, response_id: &str, item_id: &str, samples: u64) {
        let now = Instant::now();
        if let Some(pl) = self.playing.iter_mut().find(|p| p.item_id == item_id) {
            pl.received += samples;
            return;
        }
        let active = self.active_response.clone();
        self.playing.retain(|p| p.end() > now || active.as_deref() == Some(p.response_id.as_str()));
        let start = self.playing.last().map_or(now, |p| p.end().max(now));
        self.playing.push(Playing {
            response_id: response_id.to_string(),
            item_id: item_id.to_string(),
            start,
            received: samples,
            reported_ms: None,
        });
    }

    /// Conversation mode, speech started: stop, cancel, truncate at the played position (§6 of
    /// the catalogue: cancel first, then truncate; later items of the cut answer to 0).
    async fn interrupt(&mut self) -> Result<(), CloseReason> {
        let now = Instant::now();
        let active = self.active_response.clone();
        if let Some(r) = &active {
            let id = self.id();
            Self::remember(&mut self.auto_ids, &id);
            self.send(outgoing::response_cancel(Some(r), &id)).await?;
            self.cancelled.insert(r.clone());
        }
        let mut first: Option<(String, String, u64)> = None;
        let playing = std::mem::take(&mut self.playing);
        for pl in &playing {
            let played = pl.played_ms(now);
            let is_active = active.as_deref() == Some(pl.response_id.as_str());
            if played >= pl.received_ms() && !is_active {
                continue;
            }
            if is_active {
                // Only a running response can still send deltas to drop.
                self.cancelled.insert(pl.response_id.clone());
            }
            if played < pl.received_ms() {
                let id = self.id();
                Self::remember(&mut self.auto_ids, &id);
                self.send(outgoing::truncate(&pl.item_id, played, &id)).await?;
            }
            if first.is_none() {
                first = Some((pl.response_id.clone(), pl.item_id.clone(), played));
            }
        }
        if first.is_none()
            && let Some(r) = active
        {
            first = Some((r, String::new(), 0));
        }
        if let Some((response_id, item_id, played_ms)) = first {
            debug!(target: "tolk::realtime", "interrupted {response_id} at {played_ms} ms");
            self.emit(Output::Interrupted { response_id, item_id, played_ms }).await;
        }
        Ok(())
    }

    fn segment_deadline(&self) -> Option<Instant> {
        let gap = Duration::from_millis(TRANSLATION_GAP_MS);
        [&self.out_segment, &self.in_segment].into_iter().flatten().map(|s| s.last_at + gap).min()
    }

    async fn finish_idle_segments(&mut self) {
        let gap = Duration::from_millis(TRANSLATION_GAP_MS);
        let now = Instant::now();
        if self.out_segment.as_ref().is_some_and(|s| s.last_at + gap <= now) {
            self.finish_segment(true).await;
        }
        if self.in_segment.as_ref().is_some_and(|s| s.last_at + gap <= now) {
            self.finish_segment(false).await;
        }
    }

    async fn finish_segment(&mut self, output: bool) {
        let seg = if output { self.out_segment.take() } else { self.in_segment.take() };
        let Some(seg) = seg else { return };
        if output {
            if !seg.text.is_empty() {
                self.emit(Output::Transcript {
                    response_id: seg.response_id.clone(),
                    item_id: seg.item_id.clone(),
                    text: seg.text,
                })
                .await;
            }
            self.emit(Output::ResponseDone {
                response_id: seg.response_id,
                status: "completed".into(),
                usage: Usage::default(),
                output_item_ids: vec![seg.item_id],
            })
            .await;
        } else if !seg.text.is_empty() {
            self.emit(Output::SourceTranscript { item_id: seg.item_id, text: seg.text }).await;
        }
    }

    /// The current synthetic segment for a delta at `elapsed_ms`, starting one if needed.
    async fn segment(&mut self, output: bool, elapsed_ms: Option<u64>) -> (String, String) {
        let slot = if output { &self.out_segment } else { &self.in_segment };
        let gap = match (slot.as_ref().and_then(|s| s.last_elapsed), elapsed_ms) {
            (Some(last), Some(now)) => now > last + TRANSLATION_GAP_MS,
            _ => false,
        };
        if gap {
            self.finish_segment(output).await;
        }
        let slot = if output { &mut self.out_segment } else { &mut self.in_segment };
        let started = slot.is_none();
        let seg = slot.get_or_insert_with(|| {
            self.segments += 1;
            let n = self.segments;
            if output {
                Segment {
                    response_id: format!("tr_resp_{n}"),
                    item_id: format!("tr_item_{n}"),
                    text: String::new(),
                    last_elapsed: None,
                    last_at: Instant::now(),
                }
            } else {
                Segment {
                    response_id: String::new(),
                    item_id: format!("tr_in_{n}"),
                    text: String::new(),
                    last_elapsed: None,
                    last_at: Instant::now(),
                }
            }
        });
        seg.last_at = Instant::now();
        if elapsed_ms.is_some() {
            seg.last_elapsed = elapsed_ms;
        }
        let ids = (seg.response_id.clone(), seg.item_id.clone());
        if started && output {
            self.emit(Output::ResponseStarted { response_id: ids.0.clone() }).await;
        }
        ids
    }

    async fn on_translation(&mut self, e: TranslationServerEvent) -> Flow {
        match e {
            TranslationServerEvent::Error(e) => return self.on_error(&e).await,
            TranslationServerEvent::SessionCreated(s) | TranslationServerEvent::SessionUpdated(s) => {
                self.expires(s.expires_at())
            }
            TranslationServerEvent::OutputAudioDelta(a) => {
                let mut samples = Vec::new();
                if let Err(err) = pcm16::decode_into(&a.delta, &mut self.bytes, &mut samples) {
                    warn!(target: "tolk::realtime", "skipping undecodable audio delta: {err}");
                    return Flow::Continue;
                }
                let (response_id, item_id) = self.segment(true, a.elapsed_ms).await;
                self.emit(Output::Audio { response_id, item_id, samples }).await;
            }
            TranslationServerEvent::OutputTranscriptDelta(t) => {
                let (response_id, item_id) = self.segment(true, t.elapsed_ms).await;
                if let Some(seg) = &mut self.out_segment {
                    seg.text.push_str(&t.delta);
                }
                self.emit(Output::TranscriptDelta { response_id, item_id, delta: t.delta }).await;
            }
            TranslationServerEvent::InputTranscriptDelta(t) => {
                let (_, item_id) = self.segment(false, t.elapsed_ms).await;
                if let Some(seg) = &mut self.in_segment {
                    seg.text.push_str(&t.delta);
                }
                self.emit(Output::SourceTranscriptDelta { item_id, delta: t.delta }).await;
            }
            TranslationServerEvent::SessionClosed(_) => {
                self.finish_segment(true).await;
                self.finish_segment(false).await;
                return self.close_socket().await;
            }
            TranslationServerEvent::Unknown => {}
        }
        Flow::Continue
    }
}

fn map<A, B>(d: Decoded<A>, f: impl FnOnce(A) -> B) -> Decoded<B> {
    match d {
        Decoded::Event(e) => Decoded::Event(f(e)),
        Decoded::Unknown(k) => Decoded::Unknown(k),
        Decoded::Malformed { kind, error } => Decoded::Malformed { kind, error },
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

    use super::*;
    use crate::config::{Engine, Provider};

    /// The server's end of an in-memory transport.
    struct Server {
        from_client: UnboundedReceiver<Message>,
        to_client: UnboundedSender<Result<Message, String>>,
    }

    impl Server {
        fn send(&self, v: Value) {
            self.to_client.send(Ok(Message::text(v.to_string()))).unwrap();
        }

        fn send_text(&self, t: &str) {
            self.to_client.send(Ok(Message::text(t.to_string()))).unwrap();
        }

        /// The next client text event (skipping pings only: every other frame must be text).
        async fn recv(&mut self) -> Value {
            loop {
                match tokio::time::timeout(Duration::from_secs(10), self.from_client.recv()).await {
                    Ok(Some(Message::Text(t))) => return serde_json::from_str(t.as_str()).unwrap(),
                    Ok(Some(Message::Ping(_))) => {}
                    other => panic!("expected a text event, got {other:?}"),
                }
            }
        }

        async fn recv_close(&mut self) {
            loop {
                match tokio::time::timeout(Duration::from_secs(10), self.from_client.recv()).await {
                    Ok(Some(Message::Close(_))) => return,
                    Ok(Some(Message::Ping(_))) => {}
                    other => panic!("expected a close frame, got {other:?}"),
                }
            }
        }
    }

    fn spec(protocol: Protocol, mode: Mode) -> SessionSpec {
        let provider = if protocol == Protocol::Translation { Provider::OpenAiTranslate } else { Provider::Local };
        let engine = Engine { provider, protocol, mode, ..Engine::default() };
        let mut s = SessionSpec::new(&engine, "Interpret into Spanish.", "en", "es");
        s.voice = Some("marin".into());
        s
    }

    /// Opens a session over channels, playing the server's part of setup.
    async fn open(spec: SessionSpec) -> (SessionHandle, Server) {
        let (ctx, crx) = unbounded_channel::<Message>();
        let (stx, srx) = unbounded_channel::<Result<Message, String>>();
        let sink = Box::pin(futures_util::sink::unfold(ctx, |tx, m: Message| async move {
            tx.send(m).map_err(|_| "closed".to_string())?;
            Ok::<_, String>(tx)
        }));
        let stream =
            Box::pin(futures_util::stream::unfold(srx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) }));
        let mut server = Server { from_client: crx, to_client: stx };
        let session = if spec.engine.protocol == Protocol::Translation {
            json!({"id": "sess_t", "type": "translation", "expires_at": 1_900_000_000u64})
        } else {
            json!({"id": "sess_1", "object": "realtime.session", "expires_at": 1_900_000_000u64})
        };
        server.send(json!({"type": "session.created", "event_id": "e0", "session": session}));
        let opening = tokio::spawn(super::super::open_with(spec, sink, stream));
        let update = server.recv().await;
        assert_eq!(update["type"], "session.update");
        server.send(json!({"type": "session.updated", "event_id": "e1", "session": session}));
        let handle = opening.await.unwrap().unwrap();
        (handle, server)
    }

    async fn next(h: &mut SessionHandle) -> Output {
        tokio::time::timeout(Duration::from_secs(10), h.next()).await.expect("an output in time").expect("not closed")
    }

    #[tokio::test]
    async fn setup_reports_session_id_and_expiry() {
        let (h, _server) = open(spec(Protocol::Ga, Mode::Interpret)).await;
        assert_eq!((h.session_id(), h.expires_at(), h.protocol()), ("sess_1", Some(1_900_000_000), Protocol::Ga));
    }

    #[tokio::test]
    async fn setup_error_fails_open_with_the_server_message() {
        let (ctx, _crx) = unbounded_channel::<Message>();
        let (stx, srx) = unbounded_channel::<Result<Message, String>>();
        let sink = Box::pin(futures_util::sink::unfold(ctx, |tx, m: Message| async move {
            tx.send(m).map_err(|_| "closed".to_string())?;
            Ok::<_, String>(tx)
        }));
        let stream =
            Box::pin(futures_util::stream::unfold(srx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) }));
        let err = json!({"type": "error", "event_id": "e", "error": {"type": "invalid_request_error",
            "code": "beta_api_shape_disabled", "message": "The beta API shape is disabled.", "param": null, "event_id": null}});
        stx.send(Ok(Message::text(err.to_string()))).unwrap();
        let e = super::super::open_with(spec(Protocol::Legacy, Mode::Interpret), sink, stream).await.unwrap_err();
        assert_eq!(e.kind(), RealtimeErrorKind::Server);
        assert_eq!(e.server_error().unwrap().class, ErrorClass::Fatal);
        assert_eq!(
            e.to_string(),
            "realtime service error: invalid_request_error/beta_api_shape_disabled: The beta API shape is disabled"
        );
    }

    #[tokio::test]
    async fn a_turn_becomes_outputs_and_unknown_events_are_skipped() {
        let (mut h, server) = open(spec(Protocol::Ga, Mode::Interpret)).await;
        server.send_text("garbage");
        server.send(json!({"type": "brand.new.event", "event_id": "x"}));
        server.send(json!({"type": "input_audio_buffer.speech_started", "event_id": "a", "audio_start_ms": 120, "item_id": "u1"}));
        server.send(
            json!({"type": "input_audio_buffer.speech_stopped", "event_id": "b", "audio_end_ms": 900, "item_id": "u1"}),
        );
        server.send(
            json!({"type": "input_audio_buffer.committed", "event_id": "c", "previous_item_id": null, "item_id": "u1"}),
        );
        server.send(json!({"type": "response.created", "event_id": "d", "response": {"id": "r1", "status": "in_progress", "output": []}}));
        server.send(json!({"type": "rate_limits.updated", "event_id": "d2", "rate_limits": []}));
        server
            .send(json!({"type": "response.output_audio.delta", "event_id": "f", "response_id": "r1", "item_id": "a1",
            "output_index": 0, "content_index": 0, "delta": pcm16::encode(&[1, 2, 3])}));
        server.send(json!({"type": "response.output_audio_transcript.delta", "event_id": "g", "response_id": "r1", "item_id": "a1", "delta": "Ho"}));
        server.send(json!({"type": "response.output_audio_transcript.done", "event_id": "h", "response_id": "r1", "item_id": "a1", "transcript": "Hola"}));
        server.send(json!({"type": "conversation.item.input_audio_transcription.completed", "event_id": "i", "item_id": "u1", "content_index": 0, "transcript": "Hello"}));
        server.send(json!({"type": "response.done", "event_id": "j", "response": {"id": "r1", "status": "completed",
            "output": [{"id": "a1"}], "usage": {"input_tokens": 50, "output_tokens": 20, "total_tokens": 70,
            "input_token_details": {"audio_tokens": 9, "text_tokens": 41}, "output_token_details": {"audio_tokens": 15, "text_tokens": 5}}}}));
        let expected = vec![
            Output::SpeechStarted { item_id: "u1".into(), audio_start_ms: 120 },
            Output::SpeechStopped { item_id: "u1".into(), audio_end_ms: 900 },
            Output::Committed { item_id: "u1".into() },
            Output::ResponseStarted { response_id: "r1".into() },
            Output::Audio { response_id: "r1".into(), item_id: "a1".into(), samples: vec![1, 2, 3] },
            Output::TranscriptDelta { response_id: "r1".into(), item_id: "a1".into(), delta: "Ho".into() },
            Output::Transcript { response_id: "r1".into(), item_id: "a1".into(), text: "Hola".into() },
            Output::SourceTranscript { item_id: "u1".into(), text: "Hello".into() },
            Output::ResponseDone {
                response_id: "r1".into(),
                status: "completed".into(),
                usage: Usage {
                    input_tokens: 50,
                    input_text: 41,
                    input_audio: 9,
                    output_tokens: 20,
                    output_text: 5,
                    output_audio: 15,
                    total_tokens: 70,
                    ..Usage::default()
                },
                output_item_ids: vec!["a1".into()],
            },
        ];
        for want in expected {
            assert_eq!(next(&mut h).await, want);
        }
        assert_eq!(h.skipped_events(), 2, "\"garbage\" and brand.new.event are counted");
    }

    #[tokio::test]
    async fn inputs_encode_per_protocol() {
        let (h, mut server) = open(spec(Protocol::Legacy, Mode::Interpret)).await;
        let input = h.input();
        input.send(Input::Audio(vec![7; 480])).await.unwrap();
        let append = server.recv().await;
        assert_eq!(append["type"], "input_audio_buffer.append");
        assert_eq!(pcm16::decode(append["audio"].as_str().unwrap()).unwrap(), vec![7; 480]);
        input.send(Input::Commit).await.unwrap();
        assert_eq!(server.recv().await["type"], "input_audio_buffer.commit");
        input.send(Input::Clear).await.unwrap();
        assert_eq!(server.recv().await["type"], "input_audio_buffer.clear");
        input.send(Input::DeleteItem("u7".into())).await.unwrap();
        let del = server.recv().await;
        assert_eq!((del["type"].as_str(), del["item_id"].as_str()), (Some("conversation.item.delete"), Some("u7")));
        input.send(Input::UpdateInstructions("Be brief.".into())).await.unwrap();
        let upd = server.recv().await;
        assert_eq!(upd["session"], json!({"instructions": "Be brief."}));
    }

    #[tokio::test]
    async fn an_announcement_is_a_text_item_and_a_response_to_it_marked_as_such() {
        let (mut h, mut server) = open(spec(Protocol::Ga, Mode::Interpret)).await;
        h.input().send(Input::Announce("Lunch is served in hall B.".into())).await.unwrap();
        let item = server.recv().await;
        assert_eq!(item["type"], "conversation.item.create");
        assert_eq!(
            item["item"],
            json!({"id": "tolkann_1", "type": "message", "role": "user",
                "content": [{"type": "input_text", "text": "Lunch is served in hall B."}]})
        );
        let create = server.recv().await;
        assert_eq!(create["type"], "response.create");
        assert_eq!(create["response"]["input"], json!([{"type": "item_reference", "id": "tolkann_1"}]));
        assert_eq!(create["response"]["metadata"], json!({"tolk": "announcement"}));
        // Its start is told apart from an utterance's answer by the metadata echoed back.
        server.send(json!({"type": "response.created", "event_id": "d",
            "response": {"id": "r9", "status": "in_progress", "metadata": {"tolk": "announcement"}}}));
        assert_eq!(next(&mut h).await, Output::AnnouncementStarted { response_id: "r9".into() });
        server.send(json!({"type": "response.done", "event_id": "j", "response": {"id": "r9", "status": "completed", "output": []}}));
        assert!(matches!(next(&mut h).await, Output::ResponseDone { .. }));
        server.send(
            json!({"type": "response.created", "event_id": "d", "response": {"id": "r10", "status": "in_progress"}}),
        );
        assert_eq!(next(&mut h).await, Output::ResponseStarted { response_id: "r10".into() });
    }

    #[tokio::test]
    async fn create_response_waits_for_the_running_one() {
        let (mut h, mut server) = open(spec(Protocol::Ga, Mode::Interpret)).await;
        server.send(
            json!({"type": "response.created", "event_id": "d", "response": {"id": "r1", "status": "in_progress"}}),
        );
        assert_eq!(next(&mut h).await, Output::ResponseStarted { response_id: "r1".into() });
        h.input().send(Input::CreateResponse).await.unwrap();
        h.input().send(Input::Commit).await.unwrap();
        // The commit goes out; the response.create does not, yet.
        assert_eq!(server.recv().await["type"], "input_audio_buffer.commit");
        server.send(json!({"type": "response.done", "event_id": "j", "response": {"id": "r1", "status": "completed", "output": []}}));
        let create = server.recv().await;
        assert_eq!(create["type"], "response.create");
        // The server refuses it (VAD raced it): queued again, not reported.
        server.send(
            json!({"type": "response.created", "event_id": "d", "response": {"id": "r2", "status": "in_progress"}}),
        );
        server.send(json!({"type": "error", "event_id": "x", "error": {"type": "invalid_request_error",
            "code": "conversation_already_has_active_response", "message": "busy", "param": null, "event_id": create["event_id"]}}));
        server.send(json!({"type": "response.done", "event_id": "j", "response": {"id": "r2", "status": "completed", "output": []}}));
        assert!(matches!(next(&mut h).await, Output::ResponseDone { .. }));
        assert_eq!(next(&mut h).await, Output::ResponseStarted { response_id: "r2".into() });
        assert!(matches!(next(&mut h).await, Output::ResponseDone { ref response_id, .. } if response_id == "r2"));
        assert_eq!(server.recv().await["type"], "response.create");
    }

    #[tokio::test]
    async fn session_expired_closes_as_expired() {
        let (mut h, server) = open(spec(Protocol::Ga, Mode::Interpret)).await;
        server.send(json!({"type": "error", "event_id": "x", "error": {"type": "invalid_request_error",
            "code": "session_expired", "message": "Your session hit the maximum duration of 60 minutes.", "param": null, "event_id": null}}));
        let Output::Error(e) = next(&mut h).await else { panic!() };
        assert_eq!(e.class, ErrorClass::Reconnect);
        server.to_client.send(Ok(Message::Close(None))).unwrap();
        assert_eq!(next(&mut h).await, Output::Closed { reason: CloseReason::Expired });
        assert_eq!(h.next().await, None);
    }

    #[tokio::test]
    async fn fatal_errors_close_the_session() {
        let (mut h, mut server) = open(spec(Protocol::Ga, Mode::Interpret)).await;
        server.send(json!({"type": "error", "event_id": "x", "error": {"type": "invalid_request_error",
            "code": "insufficient_quota", "message": "You exceeded your quota.", "param": null, "event_id": null}}));
        let Output::Error(e) = next(&mut h).await else { panic!() };
        assert_eq!(e.class, ErrorClass::Fatal);
        server.recv_close().await;
        drop(server);
        assert_eq!(
            next(&mut h).await,
            Output::Closed {
                reason: CloseReason::Fatal("invalid_request_error/insufficient_quota: You exceeded your quota".into())
            }
        );
    }

    #[tokio::test]
    async fn a_dropped_connection_is_dropped_and_a_requested_close_is_normal() {
        let (mut h, server) = open(spec(Protocol::Ga, Mode::Interpret)).await;
        drop(server);
        assert_eq!(next(&mut h).await, Output::Closed { reason: CloseReason::Dropped });
        let (mut h, mut server) = open(spec(Protocol::Ga, Mode::Interpret)).await;
        h.input().send(Input::Close).await.unwrap();
        server.recv_close().await;
        server.to_client.send(Ok(Message::Close(None))).unwrap();
        assert_eq!(next(&mut h).await, Output::Closed { reason: CloseReason::Normal });
    }

    #[tokio::test]
    async fn a_quiet_service_is_pinged_and_an_unanswered_ping_drops_the_session() {
        let mut s = spec(Protocol::Ga, Mode::Interpret);
        (s.engine.ping_interval_ms, s.engine.event_timeout_ms) = (200, 300);
        let (mut h, mut server) = open(s).await;
        // Answered pings keep the session.
        for _ in 0..2 {
            let ping = tokio::time::timeout(Duration::from_secs(10), server.from_client.recv()).await.unwrap();
            assert!(matches!(ping, Some(Message::Ping(_))), "{ping:?}");
            server.to_client.send(Ok(Message::Pong(Vec::new().into()))).unwrap();
        }
        assert_eq!(h.try_next(), Ok(None));
        // An unanswered one ends it as dropped (so the caller reconnects).
        let ping = tokio::time::timeout(Duration::from_secs(10), server.from_client.recv()).await.unwrap();
        assert!(matches!(ping, Some(Message::Ping(_))), "{ping:?}");
        let t = Instant::now();
        assert_eq!(next(&mut h).await, Output::Closed { reason: CloseReason::Dropped });
        assert!(t.elapsed() >= Duration::from_millis(250), "gave up after {:?}", t.elapsed());
        // With pings off nothing is sent on a quiet connection.
        let mut s = spec(Protocol::Ga, Mode::Interpret);
        (s.engine.ping_interval_ms, s.engine.event_timeout_ms) = (0, 300);
        let (h, mut server) = open(s).await;
        assert!(tokio::time::timeout(Duration::from_millis(600), server.from_client.recv()).await.is_err());
        drop(h);
    }

    #[tokio::test]
    async fn dropping_the_handle_closes_the_socket() {
        let (h, mut server) = open(spec(Protocol::Ga, Mode::Interpret)).await;
        drop(h);
        server.recv_close().await;
    }

    #[tokio::test]
    async fn conversation_mode_truncates_cancels_and_drops_late_deltas() {
        let (mut h, mut server) = open(spec(Protocol::Ga, Mode::Conversation)).await;
        server.send(
            json!({"type": "response.created", "event_id": "d", "response": {"id": "r1", "status": "in_progress"}}),
        );
        let two_seconds = pcm16::encode(&vec![100i16; 48_000]);
        server.send(json!({"type": "response.output_audio.delta", "event_id": "f", "response_id": "r1", "item_id": "a1", "delta": two_seconds}));
        assert!(matches!(next(&mut h).await, Output::ResponseStarted { .. }));
        assert!(matches!(next(&mut h).await, Output::Audio { .. }));
        // The caller has played 700 ms of it when the speaker barges in.
        h.input().send(Input::Played { item_id: "a1".into(), played_ms: 700 }).await.unwrap();
        tokio::task::yield_now().await;
        // Make sure the Played input is processed before the barge-in (inputs and events race).
        h.input()
            .send(Input::Raw(json!({"type": "input_audio_buffer.clear", "event_id": "sync"}).to_string()))
            .await
            .unwrap();
        assert_eq!(server.recv().await["event_id"], "sync");
        server.send(json!({"type": "input_audio_buffer.speech_started", "event_id": "s", "audio_start_ms": 5000, "item_id": "u2"}));
        let cancel = server.recv().await;
        assert_eq!((cancel["type"].as_str(), cancel["response_id"].as_str()), (Some("response.cancel"), Some("r1")));
        let truncate = server.recv().await;
        assert_eq!(truncate["type"], "conversation.item.truncate");
        assert_eq!((truncate["item_id"].as_str(), truncate["audio_end_ms"].as_u64()), (Some("a1"), Some(700)));
        assert_eq!(
            next(&mut h).await,
            Output::Interrupted { response_id: "r1".into(), item_id: "a1".into(), played_ms: 700 }
        );
        assert!(matches!(next(&mut h).await, Output::SpeechStarted { .. }));
        // Late deltas of r1 are dropped; the server's own cancel of nothing is swallowed.
        server.send(json!({"type": "response.output_audio.delta", "event_id": "f2", "response_id": "r1", "item_id": "a1", "delta": pcm16::encode(&[1; 10])}));
        server.send(json!({"type": "response.output_audio_transcript.delta", "event_id": "g2", "response_id": "r1", "item_id": "a1", "delta": "late"}));
        server.send(json!({"type": "error", "event_id": "x", "error": {"type": "invalid_request_error",
            "code": "response_cancel_not_active", "message": "none", "param": null, "event_id": cancel["event_id"]}}));
        server.send(json!({"type": "conversation.item.truncated", "event_id": "t", "item_id": "a1", "content_index": 0, "audio_end_ms": 700}));
        server.send(json!({"type": "response.done", "event_id": "j", "response": {"id": "r1", "status": "cancelled", "output": [{"id": "a1"}]}}));
        assert_eq!(next(&mut h).await, Output::Truncated { item_id: "a1".into(), audio_end_ms: 700 });
        assert!(matches!(next(&mut h).await, Output::ResponseDone { ref status, .. } if status == "cancelled"));
    }

    #[tokio::test]
    async fn truncation_is_clamped_to_the_audio_received() {
        let (mut h, mut server) = open(spec(Protocol::Ga, Mode::Conversation)).await;
        server.send(
            json!({"type": "response.created", "event_id": "d", "response": {"id": "r1", "status": "in_progress"}}),
        );
        server.send(json!({"type": "response.output_audio.delta", "event_id": "f", "response_id": "r1", "item_id": "a1", "delta": pcm16::encode(&vec![0; 24_000 * 30])}));
        assert!(matches!(next(&mut h).await, Output::ResponseStarted { .. }));
        assert!(matches!(next(&mut h).await, Output::Audio { .. }));
        h.input().send(Input::Played { item_id: "a1".into(), played_ms: 10 }).await.unwrap();
        h.input().send(Input::Raw("{\"type\":\"sync\"}".into())).await.unwrap();
        assert_eq!(server.recv().await["type"], "sync");
        server.send(json!({"type": "input_audio_buffer.speech_started", "event_id": "s", "audio_start_ms": 5000, "item_id": "u2"}));
        assert_eq!(server.recv().await["type"], "response.cancel");
        assert_eq!(server.recv().await["audio_end_ms"], 10);
        // A second item whose audio all played before the response ends: cancel only.
        let (mut h, mut server) = open(spec(Protocol::Ga, Mode::Conversation)).await;
        server.send(
            json!({"type": "response.created", "event_id": "d", "response": {"id": "r1", "status": "in_progress"}}),
        );
        server.send(json!({"type": "response.output_audio.delta", "event_id": "f", "response_id": "r1", "item_id": "a1", "delta": pcm16::encode(&[0; 240])}));
        assert!(matches!(next(&mut h).await, Output::ResponseStarted { .. }));
        assert!(matches!(next(&mut h).await, Output::Audio { .. }));
        h.input().send(Input::Played { item_id: "a1".into(), played_ms: 99_999 }).await.unwrap();
        h.input().send(Input::Raw("{\"type\":\"sync\"}".into())).await.unwrap();
        assert_eq!(server.recv().await["type"], "sync");
        server.send(json!({"type": "input_audio_buffer.speech_started", "event_id": "s", "audio_start_ms": 5000, "item_id": "u2"}));
        assert_eq!(server.recv().await["type"], "response.cancel");
        assert_eq!(
            next(&mut h).await,
            Output::Interrupted { response_id: "r1".into(), item_id: "a1".into(), played_ms: 10 }
        );
    }

    #[tokio::test]
    async fn interpret_mode_never_interrupts() {
        let (mut h, server) = open(spec(Protocol::Ga, Mode::Interpret)).await;
        server.send(
            json!({"type": "response.created", "event_id": "d", "response": {"id": "r1", "status": "in_progress"}}),
        );
        server.send(json!({"type": "response.output_audio.delta", "event_id": "f", "response_id": "r1", "item_id": "a1", "delta": pcm16::encode(&[0; 4800])}));
        server.send(json!({"type": "input_audio_buffer.speech_started", "event_id": "s", "audio_start_ms": 5000, "item_id": "u2"}));
        server.send(json!({"type": "response.output_audio.delta", "event_id": "f", "response_id": "r1", "item_id": "a1", "delta": pcm16::encode(&[0; 4800])}));
        assert!(matches!(next(&mut h).await, Output::ResponseStarted { .. }));
        assert!(matches!(next(&mut h).await, Output::Audio { .. }));
        assert!(matches!(next(&mut h).await, Output::SpeechStarted { .. }));
        assert!(matches!(next(&mut h).await, Output::Audio { .. }));
    }

    #[tokio::test]
    async fn translation_groups_deltas_into_synthetic_responses() {
        let (mut h, mut server) = open(spec(Protocol::Translation, Mode::Interpret)).await;
        assert_eq!(h.session_id(), "sess_t");
        h.input().send(Input::Audio(vec![1; 4800])).await.unwrap();
        assert_eq!(server.recv().await["type"], "session.input_audio_buffer.append");
        // Commit and friends do not exist in this protocol: nothing is sent for them.
        h.input().send(Input::Commit).await.unwrap();
        h.input().send(Input::DeleteItem("x".into())).await.unwrap();
        server.send(
            json!({"type": "session.input_transcript.delta", "event_id": "a", "delta": "Good ", "elapsed_ms": 200}),
        );
        server.send(
            json!({"type": "session.output_transcript.delta", "event_id": "b", "delta": "Buenos ", "elapsed_ms": 400}),
        );
        server.send(json!({"type": "session.output_audio.delta", "event_id": "c", "delta": pcm16::encode(&[5; 10]), "sample_rate": 24000, "channels": 1, "format": "pcm16", "elapsed_ms": 400}));
        server.send(
            json!({"type": "session.output_transcript.delta", "event_id": "d", "delta": "días", "elapsed_ms": 600}),
        );
        // 5 s later in the audio: a new contiguous output.
        server.send(json!({"type": "session.output_audio.delta", "event_id": "e", "delta": pcm16::encode(&[6; 10]), "elapsed_ms": 5600}));
        let expected = vec![
            Output::SourceTranscriptDelta { item_id: "tr_in_1".into(), delta: "Good ".into() },
            Output::ResponseStarted { response_id: "tr_resp_2".into() },
            Output::TranscriptDelta {
                response_id: "tr_resp_2".into(),
                item_id: "tr_item_2".into(),
                delta: "Buenos ".into(),
            },
            Output::Audio { response_id: "tr_resp_2".into(), item_id: "tr_item_2".into(), samples: vec![5; 10] },
            Output::TranscriptDelta {
                response_id: "tr_resp_2".into(),
                item_id: "tr_item_2".into(),
                delta: "días".into(),
            },
            Output::Transcript {
                response_id: "tr_resp_2".into(),
                item_id: "tr_item_2".into(),
                text: "Buenos días".into(),
            },
            Output::ResponseDone {
                response_id: "tr_resp_2".into(),
                status: "completed".into(),
                usage: Usage::default(),
                output_item_ids: vec!["tr_item_2".into()],
            },
            Output::ResponseStarted { response_id: "tr_resp_3".into() },
            Output::Audio { response_id: "tr_resp_3".into(), item_id: "tr_item_3".into(), samples: vec![6; 10] },
        ];
        for want in expected {
            assert_eq!(next(&mut h).await, want);
        }
        // Close: session.close, the server flushes and answers session.closed, then the socket closes.
        h.input().send(Input::Close).await.unwrap();
        assert_eq!(server.recv().await["type"], "session.close");
        server.send(json!({"type": "session.closed", "event_id": "z"}));
        server.recv_close().await;
        drop(server);
        let mut rest = Vec::new();
        while let Some(o) = h.next().await {
            rest.push(o);
        }
        assert!(matches!(rest[0], Output::ResponseDone { ref response_id, .. } if response_id == "tr_resp_3"));
        assert_eq!(rest[1], Output::SourceTranscript { item_id: "tr_in_1".into(), text: "Good ".into() });
        assert_eq!(rest.last(), Some(&Output::Closed { reason: CloseReason::Normal }));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]
        /// Arbitrary frames through a live session, in every protocol and mode: the session never
        /// panics; it either goes on (the sentinel event after them comes out) or ends with a
        /// `Closed` output.
        #[test]
        fn arbitrary_frames_never_kill_a_session(
            frames in proptest::collection::vec(crate::realtime::samples::any_frame(), 1..12),
            protocol in proptest::sample::select(vec![Protocol::Ga, Protocol::Legacy, Protocol::Translation]),
            conversation in proptest::prelude::any::<bool>(),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let mode = if conversation && protocol != Protocol::Translation { Mode::Conversation } else { Mode::Interpret };
                let (mut h, server) = open(spec(protocol, mode)).await;
                for f in &frames {
                    server.send_text(f);
                }
                let sentinel = if protocol == Protocol::Translation {
                    json!({"type": "session.input_transcript.delta", "event_id": "s", "delta": "sentinel"})
                } else {
                    json!({"type": "input_audio_buffer.committed", "event_id": "s", "item_id": "sentinel"})
                };
                server.send(sentinel);
                loop {
                    match tokio::time::timeout(Duration::from_secs(20), h.next()).await.expect("no hang") {
                        Some(Output::Committed { item_id }) if item_id == "sentinel" => break,
                        Some(Output::SourceTranscriptDelta { delta, .. }) if delta == "sentinel" => break,
                        Some(Output::Closed { .. }) => break,
                        Some(_) => {}
                        None => panic!("the session task died without Closed: {frames:?}"),
                    }
                }
            });
        }
    }
}
