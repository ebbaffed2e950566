//! The output order: one slot per response, in the order responses start; only the head
//! plays, at the later of the end of the previous slot and the end of the speech it translates.

use std::{
    sync::{Arc, atomic::Ordering::Relaxed},
    time::Instant,
};

use tolk_plugin_api::TextRole;

use super::{PER_MS, RouteTask};
use crate::router::Chunk;

/// Longest silence written between translations in lossless delivery.
const MAX_FILL_MS: u64 = 600_000;

/// A response's place in the output order.
pub(super) struct Slot {
    pub(super) generation: u64,
    pub(super) response_id: String,
    /// Earliest start: the end of the speech it translates (route offset).
    pub(super) anchor: u64,
    /// Where it plays from, once it is the head.
    pub(super) start: Option<u64>,
    /// Frames played so far.
    pub(super) played: u64,
    /// Audio waiting for the slot to become the head.
    pub(super) audio: Vec<Vec<i16>>,
    /// Text waiting likewise: (is_final, text).
    pub(super) text: Vec<(bool, String)>,
    pub(super) done: bool,
    pub(super) utterance: u64,
    /// Wall time the speech ended, for the ear-voice span.
    pub(super) speech_end: Option<Instant>,
    pub(super) first_audio: bool,
    /// Route offset of the input it answers (used once the response is done).
    pub(super) used: u64,
    /// Leading frames not to play: what the listener already heard of the response it
    /// replaces (see [`Redo`]); counts down as frames are skipped.
    pub(super) skip: u64,
    /// The skip it started with.
    pub(super) heard_before: u64,
}

/// A response cut short by a dropped connection: the same input is answered again by the next
/// session, and of that answer only what was not heard yet is played.
pub(super) struct Redo {
    /// Route offset of the input it answered.
    pub(super) used: u64,
    /// Frames of it played (or handed on to be played).
    pub(super) heard: u64,
    /// Its utterance number (the answer again keeps it).
    pub(super) utterance: u64,
}

impl RouteTask {
    pub(super) fn slot(&self, generation: u64, response_id: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.generation == generation && s.response_id == response_id)
    }

    /// Plays what the head slot has; moves on to the next slot when the head is done.
    pub(super) fn advance(&mut self) {
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
            for mut samples in audio {
                let head = self.slots.front_mut().expect("head");
                if head.skip > 0 {
                    // Already heard from the response this one replaces.
                    let n = head.skip.min(samples.len() as u64);
                    head.skip -= n;
                    samples.drain(..n as usize);
                }
                if samples.is_empty() {
                    continue;
                }
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

    /// Marks every slot done (the route is ending) and plays what they hold.
    pub(super) fn finish_slots(&mut self) {
        for s in self.slots.iter_mut() {
            s.done = true;
        }
        self.advance();
    }
}
