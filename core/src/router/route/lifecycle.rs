//! Session lifecycle: opening with back-off, reconnecting after a drop, rotating before
//! expiry, the final commit and drain, closing; and the specs sessions are opened with.

use std::{sync::atomic::Ordering::Relaxed, time::Duration};

use tokio::sync::oneshot;

use super::{RouteTask, slots::Redo};
use crate::router::{EngineTarget, metrics::RouteState, prompt::PromptCall};
use crate::{
    realtime::{self, CloseReason, Input, SessionHandle, SessionSpec},
    shutdown::Level,
};

/// Consecutive failed opens before the route gives up.
const MAX_OPEN_FAILURES: u32 = 8;

impl RouteTask {
    /// Opens a session (with back-off between failed attempts), replaying pending input.
    pub(super) async fn connect(&mut self, after_drop: bool) -> Result<(), String> {
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
                    // A refused key or a rejected setup stays so however often it is tried.
                    if self.open_failures >= MAX_OPEN_FAILURES || !e.is_retryable() {
                        return Err(format!("cannot open a session: {e}"));
                    }
                }
            }
        }
    }

    /// The source ended: write what remains, then commit it. The answer to that commit (an
    /// item, or "buffer too small") proves the session has seen every sample; the item is
    /// answered if the speaker was still talking, else deleted.
    pub(super) fn end_input(&mut self) {
        self.input_ended = true;
        self.check_segment();
        self.write_pending();
        self.stats.set_state(RouteState::Draining);
        self.send_final_commit();
    }

    /// Asks for the final commit, sent once every pending sample has been written.
    pub(super) fn send_final_commit(&mut self) {
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
    pub(super) fn drained(&self) -> bool {
        let live_done =
            self.live.as_ref().is_none_or(|l| self.final_ack && l.open_responses == 0 && l.commits.is_empty());
        live_done && self.old.is_empty() && self.slots.all_done()
    }

    /// Past the run's budget (any route's usage may have crossed it): no more input is sent, so
    /// no new responses start. Returns whether the route is over budget.
    pub(super) fn budget_reached(&mut self) -> bool {
        if self.shared.over_budget.load(Relaxed) && !self.over_budget {
            self.over_budget = true;
            self.stats.set_state(RouteState::OverBudget);
            self.pending.clear();
            if let Some(live) = &mut self.live {
                live.send(Input::Clear);
            }
        }
        self.over_budget
    }

    pub(super) fn on_tick(&mut self) {
        for l in self.old.iter_mut() {
            l.flush();
        }
        self.budget_reached();
        if self.over_budget
            && let Some(live) = &self.live
            && live.open_responses == 0
        {
            // Nothing more will be asked of this session: close it.
            let mut l = self.live.take().expect("live");
            l.send(Input::Close);
            self.slots.finish_generation(l.generation);
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
    pub(super) fn rotate_to(&mut self, handle: SessionHandle) {
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

    pub(super) fn retire_old(&mut self, generation: u64) {
        if let Some(i) = self.old.iter().position(|l| l.generation == generation) {
            let mut l = self.old.remove(i).expect("present");
            l.send(Input::Close);
        }
        self.slots.finish_generation(generation);
        self.advance();
    }

    /// The live session closed: reconnect (dropped), reopen (expired) or fail (fatal).
    pub(super) async fn on_closed(&mut self, reason: CloseReason) -> Result<(), String> {
        let Some(old) = self.live.take() else { return Ok(()) };
        for s in self.slots.iter_mut().filter(|s| s.generation == old.generation) {
            if !s.done && s.used > self.confirmed && !self.over_budget {
                // Cut short: its input is replayed and answered again; the audio it has
                // (played, or waiting to be) is what the listener hears of it.
                let buffered = s.audio.iter().map(|a| a.len() as u64).sum::<u64>();
                let heard = s.heard_before + s.played + buffered.saturating_sub(s.skip);
                self.redo.push_back(Redo { used: s.used, heard, utterance: s.utterance });
            }
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

    pub(super) fn close_all(&mut self) {
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
pub(super) struct SpecMaker {
    pub(super) engine: EngineTarget,
    pub(super) prompt: Option<crossbeam_channel::Sender<PromptCall>>,
    pub(super) route: String,
    pub(super) source_language: String,
    pub(super) target_language: String,
    pub(super) voice: Option<String>,
}

impl SpecMaker {
    /// The spec of a new session, with fresh instructions from the prompt provider (on its
    /// own thread).
    pub(super) async fn spec(&self) -> Result<SessionSpec, String> {
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

pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
