//! Input replay: input is kept until a started response has used it, written to the live
//! session in order (bounded by the outbox and, offline, by unanswered turns), and replayed
//! into a new session after a drop.

use std::{
    collections::VecDeque,
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use super::{PER_MS, RouteTask};
use crate::realtime::{Input, SessionHandle};
use crate::router::{Chunk, RATE, metrics::RouteState};

/// Lossless delivery: unanswered turns a session may hold before input waits.
const AHEAD_TURNS: usize = 2;
/// Inputs queued ahead for a session before input waits in the replay buffer instead.
const OUTBOX_AHEAD: usize = 64;
/// Shortest time between two "replay buffer full" warnings.
const GAP_WARN_EVERY: Duration = Duration::from_secs(10);

/// One open session of the route.
pub(super) struct Live {
    pub(super) handle: SessionHandle,
    pub(super) input: mpsc::Sender<Input>,
    /// Generation number (sessions of the route, in opening order).
    pub(super) generation: u64,
    /// Route offset of the first input frame this session got.
    pub(super) base: u64,
    /// Input frames written to it.
    pub(super) written: u64,
    /// Inside an utterance (VAD speech started, not stopped).
    pub(super) in_speech: bool,
    /// Route offset where the current utterance started.
    pub(super) speech_start: u64,
    /// Route offsets of commits not yet answered by a started response, with the wall time
    /// the speech ended (for the ear-voice span) and the user item.
    pub(super) commits: VecDeque<Commit>,
    /// Route offset up to which the latest commit reached.
    pub(super) committed_upto: u64,
    /// When it expires (unix seconds).
    pub(super) expires_at: Option<u64>,
    /// Responses started and not done.
    pub(super) open_responses: usize,
    /// The commit that ends the input is due once all input is written.
    pub(super) final_wanted: bool,

    /// Inputs waiting for room in the session's channel, in order.
    pub(super) outbox: VecDeque<Input>,
    /// Client commits not yet answered, in order: `Some((segment start, cut))` (route offsets)
    /// for a segment cut, `None` for the commit that ends the input.
    pub(super) client_commits: VecDeque<Option<(u64, u64)>>,
    /// Committed user items whose transcript has not come yet: (item, start, end) of the
    /// speech each holds, on the route's clock. A transcript takes its times from here, not
    /// from the utterance going on when it arrives (a cut segment's transcript comes after
    /// the next segment began).
    pub(super) spans: VecDeque<(String, u64, u64)>,
    /// The item of the final commit when it held only padding silence (deleted, unanswered).
    pub(super) padding: Option<String>,
    /// A segment cut whose response has not started yet: no input is written meanwhile.
    pub(super) cut_unanswered: bool,
    /// When the session's latest output came (stall detection, see [`super::watchdog`]).
    pub(super) heard: Instant,
    /// Since when the session has owed an event (none owed: `None`).
    pub(super) owed_since: Option<Instant>,
}

impl Live {
    /// The route offset of `ms` into this session's input, as the service counts it, clamped
    /// to the input written (saturating: never a panic or a wrap, whatever the value).
    pub(super) fn input_at(&self, ms: u64) -> u64 {
        self.base.saturating_add(ms.saturating_mul(PER_MS)).min(self.base + self.written)
    }

    /// Queues `input` for the session, in order, and sends what its channel takes now.
    pub(super) fn send(&mut self, input: Input) {
        self.outbox.push_back(input);
        self.flush();
    }

    /// Sends queued inputs while the session's channel has room.
    pub(super) fn flush(&mut self) {
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
pub(super) struct Commit {
    /// Route offset the committed input reaches (what a started response has used).
    pub(super) upto: u64,
    /// Where the speech it holds ended: the earliest start of its translation.
    pub(super) anchor: u64,
    /// When that speech reached tolk (ear-voice span).
    pub(super) born: Option<Instant>,
    /// The user item (empty until the commit is confirmed).
    pub(super) item: String,
    /// A segment cut (the client's commit, answered by reference to `item`).
    pub(super) cut: bool,
    /// Where the speech it holds started.
    pub(super) from: u64,
}

/// Most committed items kept waiting for their transcript (a service that transcribes
/// nothing must not grow the list for hours).
const MAX_SPANS: usize = 64;

impl Live {
    /// Item `item` holds the speech `start..end` (route offsets).
    pub(super) fn span(&mut self, item: &str, start: u64, end: u64) {
        if self.spans.len() == MAX_SPANS {
            self.spans.pop_front();
        }
        self.spans.push_back((item.to_string(), start, end));
    }

    /// The speech item `item` holds, if it is known; `done` forgets it (and older ones).
    pub(super) fn span_of(&mut self, item: &str, done: bool) -> Option<(u64, u64)> {
        let i = self.spans.iter().position(|s| s.0 == item)?;
        let (_, start, end) = self.spans[i];
        if done {
            self.spans.drain(..=i);
        }
        Some((start, end))
    }
}

impl RouteTask {
    /// Makes `handle` the live session and writes the pending input to it.
    pub(super) fn install(&mut self, handle: SessionHandle, replay: bool) {
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
            spans: VecDeque::new(),
            padding: None,
            cut_unanswered: false,
            heard: Instant::now(),
            owed_since: None,
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
    pub(super) fn write_pending(&mut self) {
        if self.budget_reached() {
            return;
        }
        let translation = self.translation();
        let written = self.live.as_ref().map(|l| l.base + l.written).unwrap_or(0);
        // Never past the point where a long utterance is held for its cut.
        let limit = self.hold_limit(written).map_or(u64::MAX, |(hold_from, _)| hold_from);
        self.holding = written >= limit;
        let Some(live) = &mut self.live else { return };
        if live.cut_unanswered {
            // The cut's response is not running yet: later input could be committed (and
            // answered) by the server before it.
            return;
        }
        if self.lossless {
            // Offline, input can run far ahead of the answers; the turns committed but not yet
            // answered would all sit in the context. Wait for the answers: for the commits the
            // session reported, and — while it is busy with earlier turns, so this can never
            // wait on a turn the service did not hear — for the utterance ends tolk's own
            // detector found in what was written (the service's commits for them may still be
            // on their way when input arrives faster than its events).
            let slack = 1000 * PER_MS;
            let written_ends = self.heard_ends.iter().filter(|&&e| e > self.confirmed + slack && e <= written).count();
            let busy = !live.commits.is_empty() || live.open_responses > 0;
            if live.commits.len() >= AHEAD_TURNS || (busy && written_ends >= AHEAD_TURNS) {
                return;
            }
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
    pub(super) fn on_input(&mut self, chunk: Chunk) {
        let chunk = self.gate_and_floor(chunk);
        if self.budget_reached() {
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
                let lost = end - written_upto.max(front.offset);
                self.stats.gap_frames.fetch_add(lost, Relaxed);
                self.warn_gap(lost);
            }
            self.confirmed = self.confirmed.max(end);
        }
        self.check_segment();
        self.write_pending();
    }

    /// Warns about input lost to a full replay buffer: at once the first time, then at most
    /// every [`GAP_WARN_EVERY`] with the sum since the last warning (not once per chunk).
    fn warn_gap(&mut self, frames: u64) {
        self.gap_unwarned += frames;
        if self.gap_warned_at.is_some_and(|t| t.elapsed() < GAP_WARN_EVERY) {
            return;
        }
        self.gap_warned_at = Some(Instant::now());
        let lost = std::mem::take(&mut self.gap_unwarned);
        let total = self.stats.gap_frames.load(Relaxed);
        tracing::warn!(
            "route {}: replay buffer full: {:.2} s of input lost ({:.2} s in all)",
            self.stats.name,
            lost as f64 / f64::from(RATE),
            total as f64 / f64::from(RATE)
        );
    }

    /// Input frames received but not yet written to the live session.
    pub(super) fn unwritten(&self) -> u64 {
        let written = self.live.as_ref().map(|l| l.base + l.written).unwrap_or(self.confirmed);
        self.received.saturating_sub(written)
    }

    /// Input frames not yet used by a session.
    pub(super) fn pending_unanswered(&self) -> u64 {
        self.received.saturating_sub(self.confirmed)
    }

    pub(super) fn trim_confirmed(&mut self) {
        let slack = 1000 * PER_MS;
        while self.heard_ends.front().is_some_and(|&e| e <= self.confirmed + slack) {
            self.heard_ends.pop_front();
        }
        while let Some(front) = self.pending.front() {
            if front.offset + front.samples.len() as u64 <= self.confirmed {
                self.pending.pop_front();
            } else {
                break;
            }
        }
    }
}
