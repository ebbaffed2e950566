//! The output order: one slot per response, in the order responses start; only the head
//! plays, at the later of the end of the previous slot and the end of the speech it translates.
//!
//! [`SlotQueue`] is the ordering itself, with no I/O: [`SlotQueue::advance`] says what to play
//! where on the route clock ([`Play`]); [`RouteTask::advance`] delivers it (floor, sinks,
//! relays, gates, text sinks, ear-voice span).

use std::{
    collections::VecDeque,
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

impl Slot {
    /// The slot of a response that has just started: nothing played or buffered yet.
    pub(super) fn new(
        generation: u64,
        response_id: String,
        anchor: u64,
        utterance: u64,
        speech_end: Option<Instant>,
    ) -> Slot {
        Slot {
            generation,
            response_id,
            anchor,
            start: None,
            played: 0,
            audio: vec![],
            text: vec![],
            done: false,
            utterance,
            speech_end,
            first_audio: false,
            used: 0,
            skip: 0,
            heard_before: 0,
        }
    }
}

/// What the head of the queue plays, in order, on the route clock.
#[derive(Debug, PartialEq)]
pub(super) enum Play {
    /// Silence from the end of what was played up to the next slot's start (lossless only).
    Silence { offset: u64, frames: u64 },
    /// Audio of the head slot at `offset`; `ear_voice` is the slot's speech end on its first audio.
    Audio { offset: u64, samples: Vec<i16>, ear_voice: Option<Instant> },
    /// Text of the head slot, spanning the audio it has played so far.
    Text { is_final: bool, utterance: u64, text: String, start_ms: u64, end_ms: u64 },
}

/// The responses of a route in output order, and the route's output clock.
#[derive(Default)]
pub(super) struct SlotQueue {
    slots: VecDeque<Slot>,
    /// Route output clock: end of what has been played.
    pub(super) cursor: u64,
}

impl SlotQueue {
    /// Every slot, in output order.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.slots.iter_mut()
    }

    /// Appends the slot of a response that has started.
    pub(super) fn push(&mut self, slot: Slot) {
        self.slots.push_back(slot);
    }

    /// The slot of response `response_id` of session `generation`.
    pub(super) fn find_mut(&mut self, generation: u64, response_id: &str) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.generation == generation && s.response_id == response_id)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Every slot's response is done (nothing more will arrive for any of them).
    pub(super) fn all_done(&self) -> bool {
        self.slots.iter().all(|s| s.done)
    }

    /// Marks the slots of session `generation` done (it closed or was retired).
    pub(super) fn finish_generation(&mut self, generation: u64) {
        for s in self.slots.iter_mut().filter(|s| s.generation == generation) {
            s.done = true;
        }
    }

    /// Marks every slot done (the route is ending).
    pub(super) fn finish_all(&mut self) {
        for s in self.slots.iter_mut() {
            s.done = true;
        }
    }

    /// Plays what the head slot has into `out`; moves on to the next slot when the head is
    /// done. A slot starts at the later of the cursor and its anchor; offline (`lossless`) the
    /// gap before it is filled with silence (up to [`MAX_FILL_MS`]).
    pub(super) fn advance(&mut self, lossless: bool, out: &mut Vec<Play>) {
        while let Some(head) = self.slots.front_mut() {
            let fresh = head.start.is_none();
            let start = *head.start.get_or_insert(self.cursor.max(head.anchor));
            if fresh && lossless && start > self.cursor && start - self.cursor <= MAX_FILL_MS * PER_MS {
                // Offline, the recordings get the silence between translations from tolk, so
                // that a gap in them always means lost audio. (Live sinks play in real time:
                // silence would only delay them.)
                out.push(Play::Silence { offset: self.cursor, frames: start - self.cursor });
                self.cursor = start;
            }
            let audio = std::mem::take(&mut head.audio);
            let text = std::mem::take(&mut head.text);
            for mut samples in audio {
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
                self.cursor = self.cursor.max(offset + samples.len() as u64);
                out.push(Play::Audio { offset, samples, ear_voice: head.speech_end.filter(|_| first) });
            }
            let (start_ms, end_ms) = (start / PER_MS, (start + head.played) / PER_MS);
            for (is_final, text) in text {
                out.push(Play::Text { is_final, utterance: head.utterance, text, start_ms, end_ms });
            }
            if head.done {
                self.slots.pop_front();
            } else {
                break;
            }
        }
    }
}

impl RouteTask {
    /// Plays what the head slot has; moves on to the next slot when the head is done.
    pub(super) fn advance(&mut self) {
        let mut plays = vec![];
        self.slots.advance(self.lossless, &mut plays);
        for play in plays {
            match play {
                Play::Silence { offset, frames } => {
                    let silence =
                        Chunk { offset, samples: Arc::from(vec![0i16; frames as usize]), born: Instant::now() };
                    self.release_floor(silence.offset);
                    self.deliver(&silence);
                    // Silence is not interpretation: "audio out" counts speech only.
                    self.stats.frames_out.fetch_sub(silence.samples.len() as u64, Relaxed);
                }
                Play::Audio { offset, samples, ear_voice } => {
                    let chunk = Chunk { offset, samples: Arc::from(samples), born: Instant::now() };
                    self.release_floor(chunk.offset);
                    self.deliver(&chunk);
                    self.shared.gates.played(self.r, &self.shared.plan.routes[self.r].sinks, chunk.samples.len());
                    if let Some(t) = ear_voice {
                        self.stats.record_ear_voice(t.elapsed());
                    }
                }
                Play::Text { is_final, utterance, text, start_ms, end_ms } => {
                    self.text(TextRole::Translation, is_final, utterance, text, start_ms, end_ms);
                }
            }
        }
        if self.slots.is_empty() {
            self.stats.lag_ms.store(0, Relaxed);
        }
    }

    /// Marks every slot done (the route is ending) and plays what they hold.
    pub(super) fn finish_slots(&mut self) {
        self.slots.finish_all();
        self.advance();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames in `ms` milliseconds.
    fn ms(ms: u64) -> u64 {
        ms * PER_MS
    }

    fn advance(q: &mut SlotQueue, lossless: bool) -> Vec<Play> {
        let mut out = vec![];
        q.advance(lossless, &mut out);
        out
    }

    /// (offset, frames) of the audio and silence played, in order.
    fn spans(plays: &[Play]) -> Vec<(u64, u64)> {
        plays
            .iter()
            .filter_map(|p| match p {
                Play::Audio { offset, samples, .. } => Some((*offset, samples.len() as u64)),
                Play::Silence { offset, frames } => Some((*offset, *frames)),
                Play::Text { .. } => None,
            })
            .collect()
    }

    fn audio(q: &mut SlotQueue, generation: u64, id: &str, frames: u64) {
        q.find_mut(generation, id).expect("slot").audio.push(vec![1; frames as usize]);
    }

    #[test]
    fn a_later_response_waits_for_the_head_and_starts_where_it_ended() {
        let mut q = SlotQueue::default();
        q.push(Slot::new(1, "a".into(), ms(1000), 1, None));
        q.push(Slot::new(1, "b".into(), ms(1200), 2, None));
        // b's audio arrives first: it is held back while a is the head.
        audio(&mut q, 1, "b", ms(200));
        assert_eq!(advance(&mut q, false), []);
        // a plays from its anchor (the end of the speech it translates).
        audio(&mut q, 1, "a", ms(1000));
        assert_eq!(spans(&advance(&mut q, false)), [(ms(1000), ms(1000))]);
        audio(&mut q, 1, "a", ms(500));
        assert_eq!(spans(&advance(&mut q, false)), [(ms(2000), ms(500))]);
        // a is done: b starts at the end of a, not at its own (earlier) anchor — no overlap.
        q.find_mut(1, "a").expect("a").done = true;
        assert_eq!(spans(&advance(&mut q, false)), [(ms(2500), ms(200))]);
        assert_eq!(q.cursor, ms(2700));
        // b, now the head, plays what follows at once, right after what it played.
        audio(&mut q, 1, "b", ms(100));
        assert_eq!(spans(&advance(&mut q, false)), [(ms(2700), ms(100))]);
        assert!(!q.is_empty() && !q.all_done());
        q.find_mut(1, "b").expect("b").done = true;
        assert_eq!(advance(&mut q, false), []);
        assert!(q.is_empty() && q.all_done());
    }

    #[test]
    fn a_gap_before_a_slot_is_silence_offline_only() {
        for lossless in [false, true] {
            let mut q = SlotQueue::default();
            q.push(Slot::new(1, "a".into(), ms(500), 1, None));
            audio(&mut q, 1, "a", ms(300));
            q.find_mut(1, "a").expect("a").done = true;
            q.push(Slot::new(1, "b".into(), ms(2000), 2, None));
            audio(&mut q, 1, "b", ms(100));
            let played = spans(&advance(&mut q, lossless));
            if lossless {
                // The recording gets every frame from 0: silence up to each slot's start.
                assert_eq!(played, [(0, ms(500)), (ms(500), ms(300)), (ms(800), ms(1200)), (ms(2000), ms(100))]);
            } else {
                assert_eq!(played, [(ms(500), ms(300)), (ms(2000), ms(100))]);
            }
            assert_eq!(q.cursor, ms(2100));
        }
    }

    #[test]
    fn a_gap_longer_than_the_fill_limit_is_left_open() {
        let mut q = SlotQueue::default();
        let far = ms(MAX_FILL_MS) + 1;
        q.push(Slot::new(1, "a".into(), far, 1, None));
        audio(&mut q, 1, "a", 10);
        assert_eq!(spans(&advance(&mut q, true)), [(far, 10)]);
        // Exactly the limit is still filled.
        let mut q = SlotQueue::default();
        q.push(Slot::new(1, "a".into(), ms(MAX_FILL_MS), 1, None));
        audio(&mut q, 1, "a", 10);
        assert_eq!(spans(&advance(&mut q, true)), [(0, ms(MAX_FILL_MS)), (ms(MAX_FILL_MS), 10)]);
    }

    #[test]
    fn text_waits_with_its_slot_and_spans_the_audio_played() {
        let mut q = SlotQueue::default();
        q.push(Slot::new(1, "a".into(), ms(1000), 7, None));
        q.push(Slot::new(1, "b".into(), ms(1000), 8, None));
        q.find_mut(1, "b").expect("b").text.push((true, "later".into()));
        audio(&mut q, 1, "a", ms(400));
        q.find_mut(1, "a").expect("a").text.push((false, "hal".into()));
        let out = advance(&mut q, false);
        assert_eq!(
            out[1],
            Play::Text { is_final: false, utterance: 7, text: "hal".into(), start_ms: 1000, end_ms: 1400 }
        );
        assert_eq!(out.len(), 2, "b's text is held while a plays: {out:?}");
        q.find_mut(1, "a").expect("a").done = true;
        let out = advance(&mut q, false);
        assert_eq!(
            out,
            [Play::Text { is_final: true, utterance: 8, text: "later".into(), start_ms: 1400, end_ms: 1400 }]
        );
    }

    #[test]
    fn ear_voice_is_taken_on_the_first_audio_only_and_empty_audio_is_skipped() {
        let t = Instant::now();
        let mut q = SlotQueue::default();
        q.push(Slot::new(1, "a".into(), 0, 1, Some(t)));
        let a = q.find_mut(1, "a").expect("a");
        a.audio.push(vec![]);
        a.audio.push(vec![5; 3]);
        a.audio.push(vec![6; 2]);
        let out = advance(&mut q, false);
        assert_eq!(
            out,
            [
                Play::Audio { offset: 0, samples: vec![5; 3], ear_voice: Some(t) },
                Play::Audio { offset: 3, samples: vec![6; 2], ear_voice: None },
            ]
        );
        audio(&mut q, 1, "a", 4);
        assert_eq!(advance(&mut q, false), [Play::Audio { offset: 5, samples: vec![1; 4], ear_voice: None }]);
    }

    #[test]
    fn a_closed_session_releases_the_slots_behind_its_own() {
        let mut q = SlotQueue::default();
        q.push(Slot::new(1, "a".into(), ms(100), 1, None));
        audio(&mut q, 1, "a", ms(50));
        q.push(Slot::new(2, "a".into(), ms(120), 2, None));
        audio(&mut q, 2, "a", ms(80));
        // The same response id in another session is another slot.
        assert_eq!(spans(&advance(&mut q, false)), [(ms(100), ms(50))]);
        q.finish_generation(1);
        assert_eq!(spans(&advance(&mut q, false)), [(ms(150), ms(80))]);
        assert!(!q.all_done());
        q.finish_all();
        assert!(q.all_done());
        assert_eq!(advance(&mut q, false), []);
        assert!(q.is_empty());
    }

    #[test]
    fn an_answer_again_after_a_drop_plays_only_what_was_not_heard() {
        let mut q = SlotQueue::default();
        // 300 frames of the cut-short answer were heard; the new answer repeats them first.
        q.push(Slot { skip: 300, heard_before: 300, ..Slot::new(2, "r".into(), ms(1000), 4, None) });
        let r = q.find_mut(2, "r").expect("r");
        r.audio.push(vec![1; 200]);
        r.audio.push((0..250).collect());
        let out = advance(&mut q, false);
        // 200 + 100 frames skipped; the rest plays from the slot's start, with no gap.
        assert_eq!(out, [Play::Audio { offset: ms(1000), samples: (100..250).collect(), ear_voice: None }]);
        let r = q.find_mut(2, "r").expect("r");
        assert_eq!((r.skip, r.played), (0, 150));
        r.audio.push(vec![7; 10]);
        assert_eq!(spans(&advance(&mut q, false)), [(ms(1000) + 150, 10)]);
    }

    #[test]
    fn a_cancelled_response_neither_plays_nor_holds_up_the_queue() {
        let mut q = SlotQueue { cursor: ms(300), ..SlotQueue::default() };
        q.push(Slot { done: true, first_audio: true, ..Slot::new(1, "x".into(), q.cursor, 0, None) });
        q.push(Slot::new(1, "y".into(), ms(200), 1, None));
        audio(&mut q, 1, "y", ms(10));
        assert_eq!(spans(&advance(&mut q, true)), [(ms(300), ms(10))]);
        assert_eq!(q.cursor, ms(310));
    }
}
