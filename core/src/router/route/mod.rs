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
//!   when the socket dropped is asked for again from the same input, and only what the
//!   listener has not heard yet is played (the unplayed tail; all of it when nothing was
//!   played), so nothing is lost and nothing is heard twice. Input counts as used once its
//!   response is *done*. Failures a retry cannot change — a refused key (HTTP 401/403, any
//!   other 4xx but 408/429) or a session setup the service rejects (`invalid_value`,
//!   `invalid_api_key`, …) — stop the route at once with the service's message
//!   ([`crate::realtime::RealtimeError::is_retryable`]).
//! - **Stalls are drops.** A session that owes an event (see [`watchdog`]) and sends nothing
//!   for `engine.event_timeout_ms` is dropped and reconnected like a broken socket.
//! - **Rotation before expiry.** `rotate_margin_s` before `expires_at` the next session is
//!   opened (instructions fetched again); the switch happens when the speaker is between
//!   utterances: audio after the old session's last commit goes to the new one, the old one
//!   finishes its responses and is closed. No gap, no double audio.
//! - **Flat context.** After each response, turns older than `keep_turns` are deleted.
//! - **Bounded segments.** A speaker who never pauses is cut after `max_segment_ms` at the
//!   quietest 20 ms within its last second (a client commit); the audio of that second is
//!   held back until the cut is chosen. The cut's response is asked for by reference to the
//!   committed item (`Input::RespondTo`, `response.input = [item_reference]`), so it answers
//!   the cut segment even if it waits behind other responses; the input after the cut is held
//!   until that response has started, so answers stay in input order.
//! - **Cost and budget.** Usage of each response is priced and added to the route's counters;
//!   past the budget no audio is sent, so no new responses start.
//!
//! Files by job: `mod.rs` (the task, its state and its `select!` loop), `replay` (input kept
//! and written to the live session, replayed after a drop), `cuts` (client-side VAD and segment
//! cuts), `lifecycle` (open, reconnect, rotate, drain, close), `output` (session outputs →
//! commits, transcripts, slots), `slots` (the output order), `delivery` (to sinks and relay
//! routes), `context` (turn deletion), `accounting` (usage → cost), `floor` (floor and echo
//! gate), `watchdog` (stall detection).

use std::{
    collections::VecDeque,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::Duration,
};

use tokio::sync::mpsc;

use super::{Chunk, Control, EngineTarget, RATE, RouteIn, Shared, metrics::RouteStats, prompt::PromptCall};
use crate::{
    audio::vad::{Vad, VadParams},
    config::{TurnDetection, run::Delivery},
    realtime::{CloseReason, Input, Output, SessionHandle},
    shutdown::Level,
};

mod accounting;
mod context;
mod cuts;
mod delivery;
mod floor;
mod lifecycle;
mod output;
mod replay;
mod slots;
mod watchdog;

#[cfg(test)]
mod fuzz;

use self::{
    context::Turn,
    lifecycle::SpecMaker,
    replay::Live,
    slots::{Redo, SlotQueue},
};
pub use lifecycle::default_instructions;

/// Frames per ms of internal audio.
const PER_MS: u64 = RATE as u64 / 1000;

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
    task.count_unanswered();
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
    /// The responses in output order, and the route's output clock (`slots.cursor`).
    slots: SlotQueue,
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
    /// Input lost to a full replay buffer since the last warning about it.
    gap_unwarned: u64,
    /// When that warning was last given.
    gap_warned_at: Option<std::time::Instant>,
    /// Route offset where the latest utterance heard by the client-side detector ended.
    speech_end_seen: u64,
    /// Ends of the utterances the client-side detector heard whose input is not yet answered.
    heard_ends: VecDeque<u64>,
    /// Utterance ends up to here already led to a stall once (never twice for the same one).
    speech_stalled_upto: u64,
    /// Responses cut short by a drop, to be asked for again (oldest first).
    redo: VecDeque<Redo>,
    /// The operator's announcements (`[listen]` console), spoken on the live session.
    announcements: Option<tokio::sync::broadcast::Receiver<Arc<str>>>,
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
        let announcements = shared.listen.as_ref().map(|h| h.announcements.subscribe());
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
            slots: SlotQueue::default(),
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
            gap_unwarned: 0,
            gap_warned_at: None,
            speech_end_seen: 0,
            heard_ends: VecDeque::new(),
            speech_stalled_upto: 0,
            redo: VecDeque::new(),
            announcements,
        }
    }

    fn settings(&self) -> &crate::config::run::RunSettings {
        &self.shared.config.run
    }

    /// The session speaks the Translation API (continuous, no turns, no commits).
    fn translation(&self) -> bool {
        self.maker.engine.engine.protocol == crate::config::Protocol::Translation
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
            // Past the budget the input is read and dropped (nothing more is sent), so the route
            // still sees its end.
            let room = self.over_budget
                || !self.lossless
                || self.unwritten() < self.settings().replay_buffer_ms.max(1000) * PER_MS / 2;
            // Announcements are spoken by live Realtime sessions within the budget.
            let speaks = !self.over_budget && !self.translation();
            tokio::select! {
                msg = rx.recv(), if !self.input_ended && room => match msg {
                    Some(RouteIn::Audio(c)) => {
                        self.stats.lag_ms.store(self.received.saturating_sub(self.slots.cursor) / PER_MS, Relaxed);
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
                a = next_announcement(&mut self.announcements) => match (a, self.live.as_mut()) {
                    (Some(text), Some(live)) if speaks => {
                        live.send(Input::Announce(text.to_string()))
                    }
                    (Some(_), _) => tracing::warn!(
                        "route {}: an announcement was not spoken (no session open, over budget, or the Translation API)",
                        self.stats.name
                    ),
                    (None, _) => {}
                },
                _ = tick.tick() => {
                    self.on_tick();
                    self.check_stall().await?;
                }
            }
        }
    }
}

/// Room for one input in a session's channel; pending forever without a sender.
async fn reserve(tx: Option<mpsc::Sender<Input>>) -> Option<mpsc::OwnedPermit<Input>> {
    match tx {
        Some(tx) => tx.reserve_owned().await.ok(),
        None => std::future::pending().await,
    }
}

/// The next announcement; `None` for one missed (too many at once); pending forever without a
/// hub or once it is gone.
async fn next_announcement(rx: &mut Option<tokio::sync::broadcast::Receiver<Arc<str>>>) -> Option<Arc<str>> {
    use tokio::sync::broadcast::error::RecvError;
    match rx {
        Some(r) => match r.recv().await {
            Ok(t) => Some(t),
            Err(RecvError::Lagged(_)) => None,
            Err(RecvError::Closed) => {
                *rx = None;
                None
            }
        },
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
