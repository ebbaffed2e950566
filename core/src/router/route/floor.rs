//! A translated route's floor and echo gate (`floor = true`, `gate_while` on a `[[route]]`).
//!
//! - **Gate.** Each input chunk is checked against the route's gate (see
//!   [`gate`](crate::router::gate)) when the route takes it: while closed, the chunk is
//!   replaced by silence of the same length and offset, so the session's clock, its VAD and
//!   the floor stay aligned; the replaced frames are counted (`input_gated_s`).
//! - **Floor.** The (gated) input is also sent to the route's sinks as floor blocks. Live, at
//!   once: the sinks mix it in real time under whatever translation is playing. Offline
//!   (`lossless`), on the translation's timeline: the floor is held and released up to each
//!   translation block's offset just before that block is delivered, so a mixing sink, which
//!   lays queued translation over the floor as the floor arrives, puts the translation exactly
//!   where the route placed it. A floor held longer than [`MAX_HOLD_MS`] while no translation
//!   is pending moves the translation clock on (silence), keeping memory bounded.

use std::{
    collections::VecDeque,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::Instant,
};

use super::{PER_MS, RouteTask};
use crate::router::Chunk;

/// Most floor audio held ahead of the translation while nothing is pending (offline).
const MAX_HOLD_MS: u64 = 30_000;

/// The floor of a route with `floor = true`.
#[derive(Default)]
pub(super) struct Floor {
    /// Offline: chunks not yet released, oldest first.
    held: VecDeque<Chunk>,
    /// Route offset up to which the floor has been released.
    released: u64,
}

impl Floor {
    /// Offline: splits off and returns the held floor before `upto`.
    fn take_until(&mut self, upto: u64) -> Vec<Chunk> {
        let mut out = vec![];
        while let Some(front) = self.held.front() {
            let end = front.offset + front.samples.len() as u64;
            if end <= upto {
                self.released = end;
                out.push(self.held.pop_front().expect("front"));
            } else if front.offset < upto {
                let n = (upto - front.offset) as usize;
                let head = Chunk { offset: front.offset, samples: Arc::from(&front.samples[..n]), born: front.born };
                let tail = Chunk { offset: upto, samples: Arc::from(&front.samples[n..]), born: front.born };
                self.held[0] = tail;
                self.released = upto;
                out.push(head);
                break;
            } else {
                break;
            }
        }
        out
    }

    fn held_until(&self) -> Option<u64> {
        self.held.back().map(|c| c.offset + c.samples.len() as u64)
    }
}

impl RouteTask {
    /// Applies the echo gate to an input chunk and passes it on as floor; returns what the
    /// session gets.
    pub(super) fn gate_and_floor(&mut self, chunk: Chunk) -> Chunk {
        let chunk = if self.shared.gates.is_closed(self.r) {
            self.stats.gated_frames.fetch_add(chunk.samples.len() as u64, Relaxed);
            Chunk { offset: chunk.offset, samples: Arc::from(vec![0i16; chunk.samples.len()]), born: chunk.born }
        } else {
            chunk
        };
        if self.floor.is_some() {
            if self.lossless {
                self.floor.as_mut().expect("floor").held.push_back(chunk.clone());
                self.bound_floor();
            } else {
                self.shared.deliver_floor(self.r, &chunk);
            }
        }
        chunk
    }

    /// Offline: releases the held floor up to route offset `upto` (`u64::MAX`: all of it).
    pub(super) fn release_floor(&mut self, upto: u64) {
        let Some(floor) = self.floor.as_mut() else { return };
        let chunks = floor.take_until(upto);
        let (shared, r) = (&self.shared, self.r);
        for c in chunks {
            tokio::task::block_in_place(|| shared.deliver_floor(r, &c));
        }
    }

    /// Offline: a floor held too far ahead of a translation clock that has nothing pending
    /// moves that clock on with silence, and is released up to it.
    fn bound_floor(&mut self) {
        let Some(until) = self.floor.as_ref().and_then(Floor::held_until) else { return };
        let limit = MAX_HOLD_MS * PER_MS;
        let idle =
            self.slots.is_empty() && self.live.as_ref().is_none_or(|l| l.open_responses == 0 && l.commits.is_empty());
        if !idle || until <= self.cursor + limit {
            return;
        }
        let to = until - limit;
        let silence = Chunk {
            offset: self.cursor,
            samples: Arc::from(vec![0i16; (to - self.cursor) as usize]),
            born: Instant::now(),
        };
        self.release_floor(silence.offset);
        self.cursor = to;
        self.deliver(&silence);
        // Silence is not interpretation: "audio out" counts speech only.
        self.stats.frames_out.fetch_sub(silence.samples.len() as u64, Relaxed);
        self.release_floor(to);
    }

    /// The route has `floor = true` (translated routes only).
    pub(super) fn wants_floor(shared: &crate::router::Shared, r: usize) -> Option<Floor> {
        let rp = &shared.plan.routes[r];
        let on = !rp.is_floor() && shared.config.routes.get(rp.spec).is_some_and(|s| s.floor) && !rp.sinks.is_empty();
        on.then(Floor::default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(offset: u64, n: usize) -> Chunk {
        Chunk {
            offset,
            samples: Arc::from((0..n).map(|i| (offset as usize + i) as i16).collect::<Vec<_>>()),
            born: Instant::now(),
        }
    }

    #[test]
    fn held_floor_is_released_exactly_up_to_an_offset() {
        let mut f = Floor::default();
        for i in 0..5 {
            f.held.push_back(chunk(i * 480, 480));
        }
        assert!(f.take_until(0).is_empty());
        let out = f.take_until(1000);
        assert_eq!(
            out.iter().map(|c| (c.offset, c.samples.len())).collect::<Vec<_>>(),
            [(0, 480), (480, 480), (960, 40)]
        );
        assert_eq!(out[2].samples[0], 960);
        assert_eq!(f.held[0].offset, 1000);
        assert_eq!(f.held[0].samples[0], 1000);
        let rest = f.take_until(u64::MAX);
        let total: usize = rest.iter().map(|c| c.samples.len()).sum();
        assert_eq!(total, 2400 - 1000);
        assert_eq!(f.released, 2400);
        assert_eq!(f.held_until(), None);
    }
}
