//! Stall detection: a session that owes an event and sends nothing for
//! `engine.event_timeout_ms` is treated as a dropped connection (reconnect, replay, answer again
//! what was cut short).
//!
//! A session owes an event while a response of it runs (its next delta or `response.done`),
//! while a turn it committed waits for its response, while a client commit waits for its
//! answer, and once it has been sent the whole of an utterance the client-side detector heard
//! end (the server's detector ends the turn too; `server_vad` only). The time counts from the
//! later of the moment the debt arose and the session's latest output, so a session that keeps
//! talking is never called stalled. (A connection that carries nothing at all, pongs included,
//! is caught by the session's own ping; see [`crate::realtime`].)
//!
//! An utterance end that led to a stall once does not lead to another: if the new session's
//! detector disagrees with tolk's, the route does not reconnect forever.

use std::{
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant},
};

use super::{PER_MS, RouteTask};
use crate::realtime::CloseReason;

/// How far the session's latest turn may end before an utterance end tolk heard for that
/// utterance to count as answered.
const TURN_SLACK_MS: u64 = 1000;

impl RouteTask {
    /// Whether the live session owes an event and has been silent for the event timeout.
    fn stall_due(&mut self) -> bool {
        let timeout = Duration::from_millis(self.maker.engine.engine.event_timeout_ms);
        let server_vad = self.silence_ms > 0 && !self.translation();
        let (speech_end, already) = (self.speech_end_seen, self.speech_stalled_upto);
        let Some(live) = &mut self.live else { return false };
        let written = live.base + live.written;
        let speech_owed = server_vad
            && speech_end > already
            && speech_end > live.base
            && written >= speech_end
            && live.committed_upto + TURN_SLACK_MS * PER_MS < speech_end;
        let owed =
            live.open_responses > 0 || !live.commits.is_empty() || !live.client_commits.is_empty() || speech_owed;
        if !owed {
            live.owed_since = None;
            return false;
        }
        let since = *live.owed_since.get_or_insert_with(Instant::now);
        since.max(live.heard).elapsed() >= timeout
    }

    /// The route is ending: turns still waiting for a response and responses cut short that
    /// were not answered again are lost output (past the budget they were given up on purpose).
    pub(super) fn count_unanswered(&mut self) {
        if self.over_budget {
            return;
        }
        let waiting: usize = self.live.iter().chain(self.old.iter()).map(|l| l.commits.len()).sum();
        // Utterances tolk's own detector heard whose input no response has used (a session
        // that stalled before its detector reported them leaves no turn behind).
        let slack = TURN_SLACK_MS * PER_MS;
        let heard = if self.silence_ms > 0 && !self.translation() {
            self.heard_ends.iter().filter(|&&e| e > self.confirmed + slack).count()
        } else {
            0
        };
        self.stats.utterances_unanswered.fetch_add(waiting.max(heard) as u64, Relaxed);
        self.stats.responses_cut_short.fetch_add(self.redo.len() as u64, Relaxed);
        self.redo.clear();
    }

    /// Checks the live session for a stall (every tick); a stalled one is dropped and the
    /// route reconnects.
    pub(super) async fn check_stall(&mut self) -> Result<(), String> {
        if !self.stall_due() {
            return Ok(());
        }
        // Outputs already waiting prove the session alive (the loop had not read them yet).
        let mut alive = false;
        while let Some(live) = &mut self.live
            && let Ok(Some(out)) = live.handle.try_next()
        {
            alive = true;
            let generation = live.generation;
            if let Some(reason) = self.on_output(generation, out, false) {
                return self.on_closed(reason).await;
            }
        }
        if alive {
            return Ok(());
        }
        let ms = self.maker.engine.engine.event_timeout_ms;
        tracing::warn!(
            "route {}: the session owes an answer and has sent nothing for {ms} ms (engine.event_timeout_ms): stalled",
            self.stats.name
        );
        self.stats.stalls.fetch_add(1, Relaxed);
        self.speech_stalled_upto = self.speech_end_seen;
        self.on_closed(CloseReason::Dropped).await
    }
}
