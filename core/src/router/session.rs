//! The translated route stage: one tokio task per route, between the source's chunks and the
//! route's sink lanes, running the route's Realtime session(s) through [`crate::realtime`].
//!
//! What it guarantees, and how:
//!
//! - **Order, no overlap.** Every response gets a slot in a queue, in the order responses
//!   start (and sessions were opened). Only the head slot plays; later slots buffer until the
//!   head is done. A slot starts at the later of the end of the previous one and the end of
//!   the speech it translates, on the route's stream clock, so recordings stay aligned with
//!   the source and translations never cut each other off.
//! - **No input lost on a dropped socket.** Input audio is kept until the response to the
//!   utterance holding it has *started* (the session has demonstrably used it); after a drop
//!   the route reconnects with exponential back-off and jitter and replays what was not yet
//!   used, so each sample reaches a working session once. The buffer is bounded
//!   (`replay_buffer_ms`): audio beyond it is a counted, logged gap. A response already playing
//!   when the socket dropped is not asked for again (that would play it twice).
//! - **Rotation before expiry.** `rotate_margin_s` before `expires_at` the next session is
//!   opened (instructions fetched again); the switch happens when the speaker is between
//!   utterances: audio after the old session's last commit goes to the new one, the old one
//!   finishes its responses and is closed. No gap, no double audio.
//! - **Flat context.** After each response, turns older than `keep_turns` are deleted.
//! - **Bounded segments.** A speaker who never pauses is cut after `max_segment_ms` at the
//!   quietest 20 ms within its last second (a client commit plus a response request); the
//!   audio of that second is held back until the cut is chosen.
//! - **Cost and budget.** Usage of each response is priced and added to the route's counters;
//!   past the budget no audio is sent, so no new responses start.

use std::{
    collections::VecDeque,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, oneshot};
use tolk_plugin_api::TextRole;

use super::{
    Chunk, Control, EngineTarget, RATE, RouteIn, Shared,
    cost::Tokens,
    metrics::{RouteState, RouteStats},
    prompt::PromptCall,
    sink_lane::TextItem,
};
use crate::{
    audio::vad::{Vad, VadEvent, VadParams},
    config::{TurnDetection, run::Delivery},
    realtime::{self, CloseReason, Input, Output, SessionHandle, SessionSpec, Usage},
    shutdown::Level,
};

mod floor;

/// Frames per ms of internal audio.
const PER_MS: u64 = RATE as u64 / 1000;
/// Window searched for the quietest cut point before `max_segment_ms`.
const CUT_WINDOW_MS: u64 = 1000;
/// Consecutive failed opens before the route gives up.
const MAX_OPEN_FAILURES: u32 = 8;
/// Lossless delivery: unanswered turns a session may hold before input waits.
const AHEAD_TURNS: usize = 2;
/// Longest silence written between translations in lossless delivery.
const MAX_FILL_MS: u64 = 600_000;
/// Inputs queued ahead for a session before input waits in the replay buffer instead.
const OUTBOX_AHEAD: usize = 64;

/// Runs translated route `r` until its input ends (then drains) or the run stops.
pub(crate) async fn run_route(
    shared: Arc<Shared>,
    r: usize,
    engine: EngineTarget,
    prompt: Option<crossbeam_channel::Sender<PromptCall>>,
    rx: mpsc::Receiver<RouteIn>,
) {
    let stats = Arc::clone(&shared.route_stats[r]);
    // Whatever happens to this task (a panic included), the route ends and its sinks finish.
    let _end = EndGuard(Arc::clone(&shared), r);
    let mut task = RouteTask::new(Arc::clone(&shared), r, engine, prompt, stats);
    let result = task.run(rx).await;
    task.finish_slots();
    task.release_floor(u64::MAX);
    if let Err(message) = result {
        let _ = shared.control.send(Control::RouteFailed { route: r, message });
    }
}

/// Ends its route when dropped; reports a panic as a route failure.
struct EndGuard(Arc<Shared>, usize);

impl Drop for EndGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ =
                self.0.control.send(Control::RouteFailed { route: self.1, message: "the route task panicked".into() });
        }
        self.0.end_route(self.1);
    }
}

/// One open session of the route.
struct Live {
    handle: SessionHandle,
    input: mpsc::Sender<Input>,
    /// Generation number (sessions of the route, in opening order).
    generation: u64,
    /// Route offset of the first input frame this session got.
    base: u64,
    /// Input frames written to it.
    written: u64,
    /// Inside an utterance (VAD speech started, not stopped).
    in_speech: bool,
    /// Route offset where the current utterance started.
    speech_start: u64,
    /// Route offsets of commits not yet answered by a started response, with the wall time
    /// the speech ended (for the ear-voice span) and the user item.
    commits: VecDeque<Commit>,
    /// Route offset up to which the latest commit reached.
    committed_upto: u64,
    /// When it expires (unix seconds).
    expires_at: Option<u64>,
    /// Responses started and not done.
    open_responses: usize,
    /// The commit that ends the input is due once all input is written.
    final_wanted: bool,

    /// Inputs waiting for room in the session's channel, in order.
    outbox: VecDeque<Input>,
    /// Client commits not yet answered, in order: `Some(route offset)` for a segment cut,
    /// `None` for the commit that ends the input.
    client_commits: VecDeque<Option<u64>>,
}

impl Live {
    /// Queues `input` for the session, in order, and sends what its channel takes now.
    fn send(&mut self, input: Input) {
        self.outbox.push_back(input);
        self.flush();
    }

    /// Sends queued inputs while the session's channel has room.
    fn flush(&mut self) {
        while let Some(front) = self.outbox.pop_front() {
            match self.input.try_send(front) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(x)) => {
                    self.outbox.push_front(x);
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.outbox.clear();
                    break;
                }
            }
        }
    }
}

/// A commit waiting for its response.
struct Commit {
    /// Route offset the committed input reaches (what a started response has used).
    upto: u64,
    /// Where the speech it holds ended: the earliest start of its translation.
    anchor: u64,
    /// When that speech reached tolk (ear-voice span).
    born: Option<Instant>,
    /// The user item (empty until the commit is confirmed).
    item: String,
}

/// A response's place in the output order.
struct Slot {
    generation: u64,
    response_id: String,
    /// Earliest start: the end of the speech it translates (route offset).
    anchor: u64,
    /// Where it plays from, once it is the head.
    start: Option<u64>,
    /// Frames played so far.
    played: u64,
    /// Audio waiting for the slot to become the head.
    audio: Vec<Vec<i16>>,
    /// Text waiting likewise: (is_final, text).
    text: Vec<(bool, String)>,
    done: bool,
    utterance: u64,
    /// Wall time the speech ended, for the ear-voice span.
    speech_end: Option<Instant>,
    first_audio: bool,
}

/// A finished turn's items, for deletion.
struct Turn {
    generation: u64,
    items: Vec<String>,
}

struct RouteTask {
    shared: Arc<Shared>,
    r: usize,
    stats: Arc<RouteStats>,
    source_language: String,
    target_language: Arc<str>,
    lossless: bool,
    /// Input not yet used by a session (oldest first), as route-offset chunks.
    pending: VecDeque<Chunk>,
    /// Route offset up to which input is confirmed used.
    confirmed: u64,
    /// Route offset of the end of all input received.
    received: u64,
    /// Input frames ever written to a session for the first time (the exactly-once count).
    first_written_upto: u64,
    /// Holding back input to cut a long segment.
    holding: bool,
    live: Option<Live>,
    /// Sessions finishing their responses after a rotation.
    old: VecDeque<Live>,
    /// The next session, being opened (rotation).
    next: Option<tokio::task::JoinHandle<Result<SessionHandle, String>>>,
    /// The next session, open, waiting for an utterance boundary.
    parked: Option<SessionHandle>,
    /// Builds session specs (instructions from the prompt provider).
    maker: SpecMaker,
    generation: u64,
    slots: VecDeque<Slot>,
    /// Route output clock: end of what has been played.
    cursor: u64,
    utterances: u64,
    source_utterances: u64,
    turns: VecDeque<Turn>,
    open_failures: u32,
    input_ended: bool,
    /// The session has answered the commit that ends the input.
    final_ack: bool,
    /// The budget is used up: no input is sent.
    over_budget: bool,
    /// The client-side speech detector (for segment cuts).
    vad: Option<Vad>,
    vad_params: VadParams,
    /// Where the detector is (route offset).
    vad_at: u64,
    /// Utterances by the client-side detector: (start, end once known), route offsets.
    spans: VecDeque<(u64, Option<u64>)>,
    /// The floor held or passed on with `floor = true` (see [`floor`]).
    floor: Option<floor::Floor>,
    /// Route offset of the latest segment cut.
    last_cut: u64,
    silence_ms: u64,
    /// Inputs of the relay routes fed by this route's output (see [`Self::relay`]).
    relays: Vec<mpsc::Sender<RouteIn>>,
    /// Route offset up to which the relays have been fed.
    relay_fed: u64,
}

impl RouteTask {
    fn new(
        shared: Arc<Shared>,
        r: usize,
        engine: EngineTarget,
        prompt: Option<crossbeam_channel::Sender<PromptCall>>,
        stats: Arc<RouteStats>,
    ) -> RouteTask {
        let plan = &shared.plan.routes[r];
        let floor_state = RouteTask::wants_floor(&shared, r);
        let source_language = shared.plan.input_language(&shared.config, r).to_string();
        let relays = std::mem::take(&mut *shared.relay_inputs[r].lock().unwrap_or_else(|e| e.into_inner()));
        let vad_params = match &engine.engine.turn_detection {
            TurnDetection::ServerVad { threshold, prefix_padding_ms, silence_duration_ms, .. } => VadParams {
                threshold: *threshold,
                prefix_padding_ms: *prefix_padding_ms,
                silence_duration_ms: *silence_duration_ms,
            },
            _ => VadParams { threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 500 },
        };
        let silence_ms = match &engine.engine.turn_detection {
            TurnDetection::ServerVad { silence_duration_ms, .. } => u64::from(*silence_duration_ms),
            _ => 0,
        };
        let maker = SpecMaker {
            engine: engine.clone(),
            prompt: prompt.clone(),
            route: stats.name.clone(),
            source_language: source_language.clone(),
            target_language: plan.language.clone(),
            voice: plan.voice.clone(),
        };
        RouteTask {
            target_language: Arc::from(plan.language.as_str()),
            lossless: shared.config.run.delivery == Delivery::Lossless,
            source_language,
            shared,
            r,
            stats,
            pending: VecDeque::new(),
            confirmed: 0,
            received: 0,
            first_written_upto: 0,
            holding: false,
            live: None,
            old: VecDeque::new(),
            next: None,
            parked: None,
            maker,
            generation: 0,
            slots: VecDeque::new(),
            cursor: 0,
            utterances: 0,
            source_utterances: 0,
            turns: VecDeque::new(),
            open_failures: 0,
            input_ended: false,
            final_ack: false,
            over_budget: false,
            vad: None,
            vad_params,
            vad_at: 0,
            spans: VecDeque::new(),
            floor: floor_state,
            last_cut: 0,
            silence_ms,
            relays,
            relay_fed: 0,
        }
    }

    fn settings(&self) -> &crate::config::run::RunSettings {
        &self.shared.config.run
    }

    /// The session speaks the Translation API (continuous, no turns, no commits).
    fn translation(&self) -> bool {
        self.maker.engine.engine.protocol == crate::config::Protocol::Translation
    }

    /// Opens a session (with back-off between failed attempts), replaying pending input.
    async fn connect(&mut self, after_drop: bool) -> Result<(), String> {
        let (min, max) = (self.settings().reconnect_min_ms, self.settings().reconnect_max_ms);
        let mut attempt = 0u32;
        loop {
            if self.shared.shutdown.level() >= Level::Now || self.shared.is_stopped(self.r) {
                return Err("stopped".into());
            }
            if after_drop || attempt > 0 {
                let exp = min.saturating_mul(1u64 << attempt.min(16)).min(max);
                let jittered = (exp as f64 * (0.5 + fastrand::f64())) as u64;
                tokio::time::sleep(Duration::from_millis(jittered.max(1))).await;
            }
            let spec = self.maker.spec().await?;
            match realtime::open(spec).await {
                Ok(handle) => {
                    self.open_failures = 0;
                    self.install(handle, after_drop);
                    return Ok(());
                }
                Err(e) => {
                    self.open_failures += 1;
                    attempt += 1;
                    tracing::warn!("route {}: cannot open a session: {e}", self.stats.name);
                    if self.open_failures >= MAX_OPEN_FAILURES || e.kind() == realtime::RealtimeErrorKind::Config {
                        return Err(format!("cannot open a session: {e}"));
                    }
                }
            }
        }
    }

    /// Makes `handle` the live session and writes the pending input to it.
    fn install(&mut self, handle: SessionHandle, replay: bool) {
        self.generation += 1;
        self.stats.sessions.fetch_add(1, Relaxed);
        self.stats.set_state(if self.over_budget { RouteState::OverBudget } else { RouteState::Running });
        let input = handle.input();
        let expires_at = handle.expires_at();
        self.live = Some(Live {
            handle,
            input,
            generation: self.generation,
            base: self.confirmed,
            written: 0,
            in_speech: false,
            speech_start: self.confirmed,
            commits: VecDeque::new(),
            committed_upto: self.confirmed,
            expires_at,
            open_responses: 0,
            final_wanted: false,
            outbox: VecDeque::new(),
            client_commits: VecDeque::new(),
        });
        if replay {
            let replayed = self.first_written_upto.saturating_sub(self.confirmed);
            if replayed > 0 {
                self.stats.frames_replayed.fetch_add(replayed, Relaxed);
                tracing::info!(
                    "route {}: replaying {:.2} s of input into the new session",
                    self.stats.name,
                    replayed as f64 / f64::from(RATE)
                );
            }
        }
        self.write_pending();
    }

    /// Writes pending input the live session has not had yet (not past a held cut).
    fn write_pending(&mut self) {
        if self.over_budget {
            return;
        }
        let translation = self.translation();
        let written = self.live.as_ref().map(|l| l.base + l.written).unwrap_or(0);
        // Never past the point where a long utterance is held for its cut.
        let limit = self.hold_limit(written).map_or(u64::MAX, |(hold_from, _)| hold_from);
        self.holding = written >= limit;
        let Some(live) = &mut self.live else { return };
        if self.lossless && live.commits.len() >= AHEAD_TURNS {
            // Offline, input can run far ahead of the answers; the turns committed but not yet
            // answered would all sit in the context. Wait for the answers.
            return;
        }
        let mut at = live.base + live.written;
        for c in &self.pending {
            let end = c.offset + c.samples.len() as u64;
            if end <= at {
                continue;
            }
            if at >= limit {
                break;
            }
            let from = at.saturating_sub(c.offset) as usize;
            let to = limit.min(end).saturating_sub(c.offset) as usize;
            if to <= from {
                break;
            }
            let samples = c.samples[from..to].to_vec();
            let n = samples.len() as u64;
            if live.outbox.len() >= OUTBOX_AHEAD {
                // Enough queued: the rest follows as the session takes it.
                break;
            }
            live.send(Input::Audio(samples));
            live.written += n;
            at += n;
            if c.born.elapsed() < Duration::from_secs(5) {
                self.stats.record_system(c.born.elapsed());
            }
        }
        if at > self.first_written_upto {
            self.stats.frames_sent.fetch_add(at - self.first_written_upto, Relaxed);
            self.first_written_upto = at;
        }
        // The final commit goes after the last sample, never ahead of it.
        if live.final_wanted && at >= self.received {
            live.final_wanted = false;
            if translation {
                // No turns to commit: closing makes the service flush what it still holds,
                // and its `session.closed` ends the session normally.
                live.send(Input::Close);
            } else {
                live.client_commits.push_back(None);
                live.send(Input::Commit);
            }
        }
    }

    /// Takes a chunk from the source.
    fn on_input(&mut self, chunk: Chunk) {
        let chunk = self.gate_and_floor(chunk);
        if self.over_budget {
            return;
        }
        if chunk.offset > self.received && self.received > 0 {
            self.stats.gap_frames.fetch_add(chunk.offset - self.received, Relaxed);
        }
        if self.pending.is_empty() && self.confirmed < chunk.offset {
            self.confirmed = chunk.offset;
            if let Some(live) = &mut self.live
                && live.written == 0
            {
                live.base = chunk.offset;
                live.speech_start = chunk.offset;
                live.committed_upto = chunk.offset;
            }
        }
        self.received = chunk.offset + chunk.samples.len() as u64;
        self.detect(&chunk);
        self.pending.push_back(chunk);
        // Bound the replay buffer: what falls out can no longer be replayed.
        let cap = self.settings().replay_buffer_ms * PER_MS;
        let mut held: u64 = self.pending.iter().map(|c| c.samples.len() as u64).sum();
        while held > cap.max(PER_MS * 1000) && self.pending.len() > 1 {
            // Only audio already written may be forgotten; unwritten audio is a gap.
            let front = self.pending.pop_front().expect("non-empty");
            let n = front.samples.len() as u64;
            held -= n;
            let end = front.offset + n;
            let written_upto = self.live.as_ref().map(|l| l.base + l.written).unwrap_or(self.confirmed);
            if end > written_upto {
                self.stats.gap_frames.fetch_add(end - written_upto.max(front.offset), Relaxed);
                tracing::warn!("route {}: replay buffer full: {:.2} s of input lost", self.stats.name, n as f64 / 24e3);
            }
            self.confirmed = self.confirmed.max(end);
        }
        self.check_segment();
        self.write_pending();
    }

    /// Runs the client-side speech detector (the server's parameters) over a chunk, so that
    /// long utterances can be cut however far ahead of the server's events the input runs.
    fn detect(&mut self, chunk: &Chunk) {
        let fresh = self.vad.is_none();
        let vad = self.vad.get_or_insert_with(|| Vad::new(self.vad_params, chunk.offset));
        if !fresh && self.vad_at != chunk.offset {
            // A gap in the input: start over there.
            vad.reset(chunk.offset);
            if let Some(last) = self.spans.back_mut()
                && last.1.is_none()
            {
                last.1 = Some(self.vad_at);
            }
        }
        let mut events = vec![];
        vad.push(&chunk.samples, &mut events);
        self.vad_at = chunk.offset + chunk.samples.len() as u64;
        for e in events {
            match e {
                VadEvent::SpeechStarted { start } => self.spans.push_back((start, None)),
                VadEvent::SpeechStopped { end } => {
                    if let Some(last) = self.spans.back_mut() {
                        last.1 = Some(end);
                    }
                }
            }
        }
    }

    /// The hold point and cut deadline of the first utterance, from the written position on,
    /// that runs longer than `max_segment_ms` (counted from its start or the last cut).
    fn hold_limit(&self, written: u64) -> Option<(u64, u64)> {
        if self.translation() {
            // The Translation API segments continuously itself: there is nothing to cut.
            return None;
        }
        let max = self.settings().max_segment_ms * PER_MS;
        let window = CUT_WINDOW_MS * PER_MS;
        for &(start, end) in &self.spans {
            if end.is_some_and(|e| e <= written) {
                continue;
            }
            let seg = start.max(self.last_cut);
            let cut_by = seg + max;
            if end.is_some_and(|e| e <= cut_by) || (self.input_ended && self.received <= cut_by) {
                // It ends (or the input does) before the maximum: no cut needed.
                continue;
            }
            return Some((cut_by - window, cut_by));
        }
        None
    }

    /// Cuts an utterance that has gone on for `max_segment_ms`: input is held from `max −
    /// window` (see [`hold_limit`](Self::hold_limit)); once the window is in and the session is
    /// idle, the input is committed at the quietest 20 ms of the window.
    fn check_segment(&mut self) {
        let written = self.live.as_ref().map(|l| l.base + l.written).unwrap_or(0);
        while self.spans.front().is_some_and(|(_, e)| e.is_some_and(|e| e <= written)) {
            self.spans.pop_front();
        }
        let Some((hold_from, cut_by)) = self.hold_limit(written) else { return };
        if written < hold_from || self.received < cut_by {
            return;
        }
        let Some(live) = &mut self.live else { return };
        if live.open_responses > 0 || !live.commits.is_empty() || !live.client_commits.is_empty() {
            // A response asked for now would answer whatever is latest when it runs, not this
            // segment: keep holding until the session is idle.
            return;
        }
        // Find the quietest 20 ms frame between the written end and `cut_by`.
        let start = live.base + live.written;
        let samples: Vec<i16> = self
            .pending
            .iter()
            .flat_map(|c| {
                let from = start.saturating_sub(c.offset).min(c.samples.len() as u64) as usize;
                c.samples[from..].iter().copied()
            })
            .take(cut_by.saturating_sub(start) as usize)
            .collect();
        let frame = (20 * PER_MS) as usize;
        let mut best = (f64::MAX, samples.len());
        for (i, f) in samples.chunks(frame).enumerate() {
            let e: f64 = f.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / f.len().max(1) as f64;
            if e < best.0 {
                best = (e, i * frame + f.len() / 2);
            }
        }
        let cut = start + best.1 as u64;
        // Write up to the cut, commit, ask for a response; the rest follows.
        let mut at = start;
        for c in &self.pending {
            let end = c.offset + c.samples.len() as u64;
            if end <= at || at >= cut {
                continue;
            }
            let from = at.saturating_sub(c.offset) as usize;
            let to = cut.min(end).saturating_sub(c.offset) as usize;
            if to <= from {
                continue;
            }
            live.send(Input::Audio(c.samples[from..to].to_vec()));
            live.written += (to - from) as u64;
            at += (to - from) as u64;
        }
        live.send(Input::Commit);
        live.send(Input::CreateResponse);
        live.client_commits.push_back(Some(at));
        live.speech_start = at;
        // The speaker goes on: the next segment starts at the cut.
        self.last_cut = at;
        self.stats.segments_cut.fetch_add(1, Relaxed);
        self.holding = false;
        if at > self.first_written_upto {
            self.stats.frames_sent.fetch_add(at - self.first_written_upto, Relaxed);
            self.first_written_upto = at;
        }
        tracing::debug!("route {}: cut a long utterance at {:.2} s", self.stats.name, at as f64 / 24e3);
    }

    async fn run(&mut self, mut rx: mpsc::Receiver<RouteIn>) -> Result<(), String> {
        self.connect(false).await?;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.shared.shutdown.level() >= Level::Now || self.shared.is_stopped(self.r) {
                self.close_all();
                return Ok(());
            }
            if self.input_ended && self.drained() {
                self.close_all();
                return Ok(());
            }
            let reserve_tx = self.live.as_ref().filter(|l| !l.outbox.is_empty()).map(|l| l.input.clone());
            // Lossless: input the session has not taken yet waits in the source (backpressure)
            // rather than overflowing the replay buffer.
            let room = !self.lossless || self.unwritten() < self.settings().replay_buffer_ms.max(1000) * PER_MS / 2;
            tokio::select! {
                msg = rx.recv(), if !self.input_ended && room => match msg {
                    Some(RouteIn::Audio(c)) => {
                        self.stats.lag_ms.store(self.received.saturating_sub(self.cursor) / PER_MS, Relaxed);
                        self.on_input(c)
                    }
                    Some(RouteIn::End) | None => self.end_input(),
                },
                out = next_output(&mut self.live) => {
                    let generation = self.live.as_ref().map(|l| l.generation).unwrap_or(0);
                    match out {
                        Some(o) => {
                            if let Some(reason) = self.on_output(generation, o, false) {
                                self.on_closed(reason).await?;
                            }
                        }
                        None => self.on_closed(CloseReason::Dropped).await?,
                    }
                }
                out = next_old(&mut self.old) => {
                    let generation = self.old.front().map(|l| l.generation).unwrap_or(0);
                    match out {
                        Some(o) => {
                            if self.on_output(generation, o, true).is_some() {
                                self.retire_old(generation);
                            }
                        }
                        None => self.retire_old(generation),
                    }
                }
                opened = join_next(&mut self.next) => {
                    self.next = None;
                    match opened {
                        Ok(handle) => self.rotate_to(handle),
                        Err(e) => tracing::warn!("route {}: rotation: cannot open the next session: {e}", self.stats.name),
                    }
                }
                permit = reserve(reserve_tx) => {
                    match (permit, self.live.as_mut()) {
                        (Some(p), Some(live)) => {
                            if let Some(x) = live.outbox.pop_front() {
                                p.send(x);
                            }
                            live.flush();
                        }
                        // The session's input is closed: its close output follows.
                        (None, Some(live)) => live.outbox.clear(),
                        _ => {}
                    }
                    self.write_pending();
                }
                _ = tick.tick() => self.on_tick(),
            }
        }
    }

    /// The source ended: write what remains, then commit it. The answer to that commit (an
    /// item, or "buffer too small") proves the session has seen every sample; the item is
    /// answered if the speaker was still talking, else deleted.
    fn end_input(&mut self) {
        self.input_ended = true;
        self.check_segment();
        self.write_pending();
        self.stats.set_state(RouteState::Draining);
        self.send_final_commit();
    }

    /// Asks for the final commit, sent once every pending sample has been written.
    fn send_final_commit(&mut self) {
        self.final_ack = false;
        match &mut self.live {
            // Past the budget nothing more is asked for.
            Some(_) if self.over_budget => self.final_ack = true,
            Some(live) => live.final_wanted = true,
            // No session to ask: nothing more can be answered.
            None => self.final_ack = true,
        }
        self.write_pending();
    }

    /// Everything answered: the final commit acknowledged, no response open or owed, every
    /// older session retired and every slot played.
    fn drained(&self) -> bool {
        let live_done =
            self.live.as_ref().is_none_or(|l| self.final_ack && l.open_responses == 0 && l.commits.is_empty());
        live_done && self.old.is_empty() && self.slots.iter().all(|s| s.done)
    }

    fn on_tick(&mut self) {
        for l in self.old.iter_mut() {
            l.flush();
        }
        if self.shared.over_budget.load(Relaxed) && !self.over_budget {
            self.over_budget = true;
            self.stats.set_state(RouteState::OverBudget);
            self.pending.clear();
            if let Some(live) = &mut self.live {
                live.send(Input::Clear);
            }
        }
        if self.over_budget
            && let Some(live) = &self.live
            && live.open_responses == 0
        {
            // Nothing more will be asked of this session: close it.
            let mut l = self.live.take().expect("live");
            l.send(Input::Close);
            for s in self.slots.iter_mut().filter(|s| s.generation == l.generation) {
                s.done = true;
            }
            self.old.clear();
            self.final_ack = true;
            self.advance();
        }
        self.check_segment();
        self.write_pending();
        if self.parked.is_some() && self.live.as_ref().is_none_or(|l| !l.in_speech) && !self.holding {
            let h = self.parked.take().expect("parked");
            self.rotate_to(h);
        }
        // Rotation: open the next session ahead of expiry.
        let margin = self.settings().rotate_margin_s;
        if self.next.is_none()
            && self.parked.is_none()
            && !self.input_ended
            && let Some(live) = &self.live
            && let Some(exp) = live.expires_at
        {
            let now = unix_now();
            if now + margin >= exp {
                // Instructions are fetched again and the session opened in the background.
                let maker = self.maker.clone();
                self.next = Some(tokio::spawn(async move {
                    let spec = maker.spec().await?;
                    realtime::open(spec).await.map_err(|e| e.to_string())
                }));
                tracing::info!(
                    "route {}: session expires in {} s: opening the next one",
                    self.stats.name,
                    exp.saturating_sub(now)
                );
            }
        }
    }

    /// Switches to a freshly opened session at an utterance boundary (or now, if the old one
    /// has closed). Audio after the old session's last commit goes to the new one.
    fn rotate_to(&mut self, handle: SessionHandle) {
        let boundary = self.live.as_ref().map(|l| !l.in_speech && !self.holding).unwrap_or(true);
        if !boundary {
            // Kept until the speaker pauses (checked every tick).
            self.parked = Some(handle);
            return;
        }
        if let Some(old) = self.live.take() {
            // Input after its last commit was never used: it goes to the new session.
            self.confirmed = self.confirmed.max(old.committed_upto.min(old.base + old.written));
            self.trim_confirmed();
            self.old.push_back(old);
            self.stats.rotations.fetch_add(1, Relaxed);
            if let Some(o) = self.old.back()
                && o.open_responses == 0
                && o.commits.is_empty()
            {
                let g = o.generation;
                self.retire_old(g);
            }
        }
        self.first_written_upto = self.first_written_upto.max(self.confirmed);
        self.install(handle, false);
        // Unused input the old session had (trailing silence) is written again, not counted twice.
    }

    fn retire_old(&mut self, generation: u64) {
        if let Some(i) = self.old.iter().position(|l| l.generation == generation) {
            let mut l = self.old.remove(i).expect("present");
            l.send(Input::Close);
        }
        for s in self.slots.iter_mut().filter(|s| s.generation == generation) {
            s.done = true;
        }
        self.advance();
    }

    /// The live session closed: reconnect (dropped), reopen (expired) or fail (fatal).
    async fn on_closed(&mut self, reason: CloseReason) -> Result<(), String> {
        let Some(old) = self.live.take() else { return Ok(()) };
        for s in self.slots.iter_mut().filter(|s| s.generation == old.generation) {
            s.done = true;
        }
        self.advance();
        if self.input_ended && self.pending_unanswered() == 0 {
            self.final_ack = true;
            return Ok(());
        }
        match reason {
            CloseReason::Fatal(m) => Err(format!("session failed: {m}")),
            CloseReason::Normal if self.input_ended => Ok(()),
            CloseReason::Expired => {
                tracing::info!("route {}: session expired before rotation: reopening", self.stats.name);
                self.stats.rotations.fetch_add(1, Relaxed);
                self.connect(false).await?;
                if self.input_ended {
                    self.send_final_commit();
                }
                Ok(())
            }
            CloseReason::Dropped | CloseReason::Normal => {
                tracing::warn!("route {}: connection dropped: reconnecting", self.stats.name);
                self.stats.reconnects.fetch_add(1, Relaxed);
                self.stats.set_state(RouteState::Reconnecting);
                self.connect(true).await?;
                if self.input_ended {
                    self.send_final_commit();
                }
                Ok(())
            }
        }
    }

    /// Input frames received but not yet written to the live session.
    fn unwritten(&self) -> u64 {
        let written = self.live.as_ref().map(|l| l.base + l.written).unwrap_or(self.confirmed);
        self.received.saturating_sub(written)
    }

    /// Input frames not yet used by a session.
    fn pending_unanswered(&self) -> u64 {
        self.received.saturating_sub(self.confirmed)
    }

    fn trim_confirmed(&mut self) {
        while let Some(front) = self.pending.front() {
            if front.offset + front.samples.len() as u64 <= self.confirmed {
                self.pending.pop_front();
            } else {
                break;
            }
        }
    }

    /// Handles one output of session `generation`; returns the close reason when it closed.
    fn on_output(&mut self, generation: u64, out: Output, old: bool) -> Option<CloseReason> {
        tracing::trace!(route = %self.stats.name, generation, "{out:?}");
        let live = if old { self.old.iter_mut().find(|l| l.generation == generation)? } else { self.live.as_mut()? };
        match out {
            Output::SpeechStarted { audio_start_ms, .. } => {
                live.in_speech = true;
                live.speech_start = live.base + audio_start_ms * PER_MS;
            }
            Output::SpeechStopped { audio_end_ms, .. } => {
                live.in_speech = false;
                let end = live.base + audio_end_ms * PER_MS;
                let speech_end = end.saturating_sub(self.silence_ms * PER_MS);
                let born = self
                    .pending
                    .iter()
                    .find(|c| c.offset <= speech_end && speech_end < c.offset + c.samples.len() as u64)
                    .map(|c| c.born);
                live.committed_upto = live.committed_upto.max(end.min(live.base + live.written));
                live.commits.push_back(Commit {
                    upto: live.committed_upto,
                    anchor: speech_end,
                    born,
                    item: String::new(),
                });
            }
            Output::Committed { item_id } => {
                let written_end = live.base + live.written;
                if let Some(c) = live.commits.back_mut().filter(|c| c.item.is_empty()) {
                    // The item of the VAD stop just seen.
                    c.item = item_id;
                } else {
                    // A client commit: they are answered in the order they were sent.
                    match live.client_commits.pop_front() {
                        Some(Some(at)) => {
                            // A segment cut (its response was requested with the commit).
                            live.committed_upto = at;
                            let born = self
                                .pending
                                .iter()
                                .find(|c| c.offset <= at && at <= c.offset + c.samples.len() as u64)
                                .map(|c| c.born);
                            live.commits.push_back(Commit { upto: at, anchor: at, born, item: item_id });
                        }
                        _ => {
                            // The final commit.
                            self.final_ack = true;
                            if live.in_speech && !self.over_budget {
                                // The speaker was still talking when the input ended: answer it.
                                live.in_speech = false;
                                live.committed_upto = written_end;
                                let born = Some(Instant::now());
                                live.commits.push_back(Commit {
                                    upto: written_end,
                                    anchor: written_end,
                                    born,
                                    item: item_id,
                                });
                                live.send(Input::CreateResponse);
                            } else {
                                // Only the silence the server keeps for padding: no response.
                                live.send(Input::DeleteItem(item_id));
                            }
                        }
                    }
                }
            }
            Output::Error(e) if live.client_commits.front().is_some_and(Option::is_none) => {
                // "buffer too small": nothing was left to commit at the end.
                tracing::debug!("route {}: final commit: {e}", self.stats.name);
                live.client_commits.pop_front();
                self.final_ack = true;
            }
            Output::SourceTranscriptDelta { delta, .. } => {
                let (start, end) = (live.speech_start / PER_MS, (live.base + live.written) / PER_MS);
                self.text(TextRole::Source, false, self.source_utterances + 1, delta, start, end);
            }
            Output::SourceTranscript { text, .. } => {
                self.source_utterances += 1;
                let (start, end) = (live.speech_start / PER_MS, live.committed_upto / PER_MS);
                self.text(TextRole::Source, true, self.source_utterances, text, start, end);
            }
            Output::ResponseStarted { response_id } if self.over_budget => {
                // Past the budget: a response the service had queued is cancelled, not played.
                live.open_responses += 1;
                live.commits.pop_front();
                live.send(Input::Cancel);
                self.slots.push_back(Slot {
                    generation,
                    response_id,
                    anchor: self.cursor,
                    start: None,
                    played: 0,
                    audio: vec![],
                    text: vec![],
                    done: true,
                    utterance: 0,
                    speech_end: None,
                    first_audio: true,
                });
            }
            Output::ResponseStarted { response_id } => {
                live.open_responses += 1;
                let written_end = live.base + live.written;
                let c = live.commits.pop_front().unwrap_or(Commit {
                    upto: written_end,
                    anchor: written_end,
                    born: None,
                    item: String::new(),
                });
                let (anchor, speech_end, user_item) = (c.upto, c.born, c.item);
                let start_at = c.anchor;
                // The input up to this commit has been used: no replay needed.
                let used = anchor.min(live.base + live.written);
                if !old && used > self.confirmed {
                    self.confirmed = used;
                    self.trim_confirmed();
                }
                self.utterances += 1;
                self.turns.push_back(Turn {
                    generation,
                    items: vec![user_item].into_iter().filter(|s| !s.is_empty()).collect(),
                });
                self.slots.push_back(Slot {
                    generation,
                    response_id,
                    anchor: start_at,
                    start: None,
                    played: 0,
                    audio: vec![],
                    text: vec![],
                    done: false,
                    utterance: self.utterances,
                    speech_end,
                    first_audio: false,
                });
                self.advance();
            }
            Output::Audio { response_id, samples, .. } => {
                if let Some(i) = self.slot(generation, &response_id) {
                    self.slots[i].audio.push(samples);
                    self.advance();
                }
            }
            Output::TranscriptDelta { response_id, delta, .. } => {
                if let Some(i) = self.slot(generation, &response_id) {
                    self.slots[i].text.push((false, delta));
                    self.advance();
                }
            }
            Output::Transcript { response_id, text, .. } => {
                if let Some(i) = self.slot(generation, &response_id) {
                    self.slots[i].text.push((true, text));
                    self.advance();
                }
            }
            Output::ResponseDone { response_id, usage, output_item_ids, status } => {
                live.open_responses = live.open_responses.saturating_sub(1);
                if status != "completed" {
                    tracing::warn!("route {}: response {response_id} ended {status}", self.stats.name);
                }
                self.account(&usage);
                if let Some(t) = self.turns.iter_mut().rev().find(|t| t.generation == generation) {
                    t.items.extend(output_item_ids);
                }
                if let Some(i) = self.slot(generation, &response_id) {
                    self.slots[i].done = true;
                }
                self.stats.responses.fetch_add(1, Relaxed);
                self.advance();
                self.delete_old_turns(generation);
                if old {
                    let l = self.old.iter().find(|l| l.generation == generation)?;
                    if l.open_responses == 0 && l.commits.is_empty() {
                        return Some(CloseReason::Normal);
                    }
                }
            }
            Output::Error(e) => {
                tracing::warn!("route {}: session error: {e}", self.stats.name);
            }
            Output::Closed { reason } => return Some(reason),
            _ => {}
        }
        None
    }

    fn slot(&self, generation: u64, response_id: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.generation == generation && s.response_id == response_id)
    }

    /// Deletes turns beyond `keep_turns` from session `generation`'s conversation.
    fn delete_old_turns(&mut self, generation: u64) {
        let keep = self.settings().keep_turns;
        let mine = self.turns.iter().filter(|t| t.generation == generation).count();
        if mine <= keep {
            // Turns of sessions no longer open are simply forgotten.
            self.turns.retain(|t| {
                t.generation == generation || self.live.as_ref().is_some_and(|l| l.generation == t.generation)
            });
            return;
        }
        let mut deletions = vec![];
        let mut excess = mine - keep;
        let mut i = 0;
        while excess > 0 && i < self.turns.len() {
            if self.turns[i].generation == generation {
                deletions.extend(self.turns.remove(i).expect("present").items);
                excess -= 1;
            } else {
                i += 1;
            }
        }
        let live = match self.live.as_mut().filter(|l| l.generation == generation) {
            Some(l) => l,
            None => match self.old.iter_mut().find(|l| l.generation == generation) {
                Some(l) => l,
                None => return,
            },
        };
        for item in deletions {
            live.send(Input::DeleteItem(item));
            self.stats.items_deleted.fetch_add(1, Relaxed);
        }
    }

    fn account(&self, usage: &Usage) {
        let t = Tokens::from(usage);
        let cost = t.cost(&self.settings().prices);
        self.stats.cost_micro_usd.fetch_add((cost * 1e6).round() as u64, Relaxed);
        let input = usage.input_tokens.max(t.input());
        self.stats.last_input_tokens.store(input, Relaxed);
        self.stats.max_input_tokens.fetch_max(input, Relaxed);
        for (i, n) in [t.audio_in, t.cached_audio_in + t.cached_text_in, t.text_in, t.audio_out, t.text_out]
            .into_iter()
            .enumerate()
        {
            self.stats.tokens[i].fetch_add(n, Relaxed);
        }
    }

    /// Plays what the head slot has; moves on to the next slot when the head is done.
    fn advance(&mut self) {
        while let Some(head) = self.slots.front_mut() {
            let fresh = head.start.is_none();
            let start = *head.start.get_or_insert(self.cursor.max(head.anchor));
            let _ = head;
            if fresh && self.lossless && start > self.cursor && start - self.cursor <= MAX_FILL_MS * PER_MS {
                // Offline, the recordings get the silence between translations from tolk, so
                // that a gap in them always means lost audio. (Live sinks play in real time:
                // silence would only delay them.)
                let silence = Chunk {
                    offset: self.cursor,
                    samples: Arc::from(vec![0i16; (start - self.cursor) as usize]),
                    born: Instant::now(),
                };
                self.cursor = start;
                self.release_floor(silence.offset);
                self.deliver(&silence);
                // Silence is not interpretation: "audio out" counts speech only.
                self.stats.frames_out.fetch_sub(silence.samples.len() as u64, Relaxed);
            }
            let head = self.slots.front_mut().expect("head");
            let audio = std::mem::take(&mut head.audio);
            let text = std::mem::take(&mut head.text);
            let utterance = head.utterance;
            for samples in audio {
                if samples.is_empty() {
                    continue;
                }
                let head = self.slots.front_mut().expect("head");
                let offset = start + head.played;
                head.played += samples.len() as u64;
                let first = !head.first_audio;
                head.first_audio = true;
                let speech_end = head.speech_end;
                let chunk = Chunk { offset, samples: Arc::from(samples), born: Instant::now() };
                self.cursor = self.cursor.max(offset + chunk.samples.len() as u64);
                self.release_floor(chunk.offset);
                self.deliver(&chunk);
                self.shared.gates.played(self.r, &self.shared.plan.routes[self.r].sinks, chunk.samples.len());
                if first && let Some(t) = speech_end {
                    self.stats.record_ear_voice(t.elapsed());
                }
            }
            let head = self.slots.front().expect("head");
            let (s_ms, e_ms) = (start / PER_MS, (start + head.played) / PER_MS);
            for (is_final, t) in text {
                self.text(TextRole::Translation, is_final, utterance, t, s_ms, e_ms);
            }
            if self.slots.front().is_some_and(|s| s.done) {
                self.slots.pop_front();
            } else {
                break;
            }
        }
        if self.slots.is_empty() {
            self.stats.lag_ms.store(0, Relaxed);
        }
    }

    fn deliver(&mut self, chunk: &Chunk) {
        if self.lossless {
            let (shared, r) = (&self.shared, self.r);
            tokio::task::block_in_place(|| shared.deliver_audio(r, chunk));
        } else {
            self.shared.deliver_audio(self.r, chunk);
        }
        if !self.relays.is_empty() && !self.shared.is_stopped(self.r) {
            self.relay(chunk);
        }
    }

    /// Feeds the output to the relay routes as their input, on this route's clock: the
    /// silence between translations (which live sinks never get) is filled in, so a relay's
    /// speech detector hears the pauses and its input has no gaps. Offline the relays are
    /// waited for; live, a relay that is a minute behind loses input (counted as its gap).
    fn relay(&mut self, chunk: &Chunk) {
        const FILL: u64 = RATE as u64;
        let send = |c: Chunk, relays: &mut Vec<mpsc::Sender<RouteIn>>, lossless: bool| {
            relays.retain(|tx| {
                let item = RouteIn::Audio(c.clone());
                if lossless {
                    tokio::task::block_in_place(|| tx.blocking_send(item)).is_ok()
                } else {
                    !matches!(tx.try_send(item), Err(mpsc::error::TrySendError::Closed(_)))
                }
            });
        };
        while self.relay_fed < chunk.offset {
            let n = (chunk.offset - self.relay_fed).min(FILL);
            let silence =
                Chunk { offset: self.relay_fed, samples: Arc::from(vec![0i16; n as usize]), born: chunk.born };
            send(silence, &mut self.relays, self.lossless);
            self.relay_fed += n;
        }
        let end = chunk.offset + chunk.samples.len() as u64;
        if end > self.relay_fed {
            send(chunk.clone(), &mut self.relays, self.lossless);
            self.relay_fed = end;
        }
    }

    fn text(&self, role: TextRole, is_final: bool, utterance_id: u64, text: String, start_ms: u64, end_ms: u64) {
        let language: Arc<str> = match role {
            TextRole::Source => Arc::from(self.source_language.as_str()),
            TextRole::Translation => Arc::clone(&self.target_language),
        };
        self.shared.deliver_text(self.r, TextItem { role, is_final, utterance_id, language, text, start_ms, end_ms });
    }

    /// Marks every slot done (the route is ending) and plays what they hold.
    fn finish_slots(&mut self) {
        for s in self.slots.iter_mut() {
            s.done = true;
        }
        self.advance();
    }

    fn close_all(&mut self) {
        self.parked = None;
        if let Some(mut l) = self.live.take() {
            l.send(Input::Close);
        }
        for mut l in self.old.drain(..) {
            l.send(Input::Close);
        }
        if let Some(n) = self.next.take() {
            n.abort();
        }
    }
}

/// What a session spec is made of; cloned into the task that opens the next session.
#[derive(Clone)]
struct SpecMaker {
    engine: EngineTarget,
    prompt: Option<crossbeam_channel::Sender<PromptCall>>,
    route: String,
    source_language: String,
    target_language: String,
    voice: Option<String>,
}

impl SpecMaker {
    /// The spec of a new session, with fresh instructions from the prompt provider (on its
    /// own thread).
    async fn spec(&self) -> Result<SessionSpec, String> {
        let instructions = match &self.prompt {
            None => default_instructions(&self.source_language, &self.target_language),
            Some(p) => {
                let (tx, rx) = oneshot::channel();
                let call = PromptCall {
                    route_id: self.route.clone(),
                    source_language: self.source_language.clone(),
                    target_language: self.target_language.clone(),
                    reply: tx,
                };
                p.send(call).map_err(|_| "the prompt provider is gone".to_string())?;
                match rx.await {
                    Ok(Ok((text, _hint))) => text,
                    Ok(Err(e)) => return Err(format!("prompt provider: {e}")),
                    Err(_) => return Err("the prompt provider is gone".into()),
                }
            }
        };
        let mut spec =
            SessionSpec::new(&self.engine.engine, instructions, &self.source_language, &self.target_language);
        spec.voice = self.voice.clone();
        spec.url = self.engine.url.clone();
        Ok(spec)
    }
}

/// Instructions for a route without a prompt provider.
pub fn default_instructions(source: &str, target: &str) -> String {
    format!(
        "You are a simultaneous interpreter. Translate everything the speaker says from {source} into {target}, \
         speaking in the first person as the speaker. Never answer questions, never add comments, never summarise: \
         only interpret.\nTarget language: {target}"
    )
}

/// Room for one input in a session's channel; pending forever without a sender.
async fn reserve(tx: Option<mpsc::Sender<Input>>) -> Option<mpsc::OwnedPermit<Input>> {
    match tx {
        Some(tx) => tx.reserve_owned().await.ok(),
        None => std::future::pending().await,
    }
}

async fn next_output(live: &mut Option<Live>) -> Option<Output> {
    match live {
        Some(l) => l.handle.next().await,
        None => std::future::pending().await,
    }
}

async fn next_old(old: &mut VecDeque<Live>) -> Option<Output> {
    match old.front_mut() {
        Some(l) => l.handle.next().await,
        None => std::future::pending().await,
    }
}

async fn join_next(
    next: &mut Option<tokio::task::JoinHandle<Result<SessionHandle, String>>>,
) -> Result<SessionHandle, String> {
    match next {
        Some(h) => match h.await {
            Ok(r) => r,
            Err(e) => Err(format!("the opening task failed: {e}")),
        },
        None => std::future::pending().await,
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
