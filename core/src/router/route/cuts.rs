//! Segment cuts: the client-side speech detector, and cutting an utterance that runs past
//! `max_segment_ms` at the quietest 20 ms of its last second.

use std::sync::atomic::Ordering::Relaxed;

use super::{PER_MS, RouteTask};
use crate::router::Chunk;
use crate::{
    audio::vad::{Vad, VadEvent},
    realtime::Input,
};

/// Window searched for the quietest cut point before `max_segment_ms`.
const CUT_WINDOW_MS: u64 = 1000;

impl RouteTask {
    /// Runs the client-side speech detector (the server's parameters) over a chunk, so that
    /// long utterances can be cut however far ahead of the server's events the input runs.
    pub(super) fn detect(&mut self, chunk: &Chunk) {
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
                    self.speech_end_seen = self.speech_end_seen.max(end);
                    self.heard_ends.push_back(end);
                    if let Some(last) = self.spans.back_mut() {
                        last.1 = Some(end);
                    }
                }
            }
        }
    }

    /// The hold point and cut deadline of the first utterance, from the written position on,
    /// that runs longer than `max_segment_ms` (counted from its start or the last cut).
    pub(super) fn hold_limit(&self, written: u64) -> Option<(u64, u64)> {
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
    pub(super) fn check_segment(&mut self) {
        let written = self.live.as_ref().map(|l| l.base + l.written).unwrap_or(0);
        while self.spans.front().is_some_and(|(_, e)| e.is_some_and(|e| e <= written)) {
            self.spans.pop_front();
        }
        let Some((hold_from, cut_by)) = self.hold_limit(written) else { return };
        if written < hold_from || self.received < cut_by {
            return;
        }
        // The segment began at the utterance's start or the last cut (`hold_limit`).
        let from = cut_by.saturating_sub(self.settings().max_segment_ms * PER_MS);
        let Some(live) = &mut self.live else { return };
        if live.open_responses > 0 || !live.commits.is_empty() || !live.client_commits.is_empty() {
            // Its answer would come after those: keep holding until the session is idle, so
            // that answers stay in input order.
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
        // Write up to the cut and commit; the response is asked for the committed item by id
        // once the service names it (`Output::Committed`), and the rest of the input waits
        // until that response has started, so nothing the server commits later can come first.
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
        live.client_commits.push_back(Some((from, at)));
        live.cut_unanswered = true;
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
}
