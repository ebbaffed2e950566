//! The lane in front of one sink instance: a bounded queue of audio chunks, text events and
//! end marks, written by routes (never blocking, unless the run is lossless) and read by the
//! sink's own thread.
//!
//! When the audio queued exceeds the lane's capacity, the **oldest audio** is dropped and
//! counted: a slow or hung sink loses its own audio and nothing else. Text and end marks are
//! never dropped by audio pressure (text is small; a caption sink must not lose lines because
//! an audio sink is slow), but text has its own cap of [`MAX_TEXT`] items.
//!
//! In lossless delivery a writer waits for room, up to the stall timeout; a sink that does not
//! make room in time is marked **stalled** and from then on drops like a live one, until its
//! queue has drained (then it is waited for again).

use std::{
    collections::VecDeque,
    sync::{Condvar, Mutex},
    time::{Duration, Instant},
};

use tolk_plugin_api::TextRole;

use super::Chunk;

/// Most text items queued before the oldest text is dropped too.
pub const MAX_TEXT: usize = 10_000;

/// An owned text event for a sink.
#[derive(Debug, Clone)]
pub struct TextItem {
    /// Source transcript or translation.
    pub role: TextRole,
    /// Final text of the utterance, or a delta.
    pub is_final: bool,
    /// The utterance.
    pub utterance_id: u64,
    /// Language of `text`.
    pub language: std::sync::Arc<str>,
    /// The text.
    pub text: String,
    /// Start on the run's clock (ms).
    pub start_ms: u64,
    /// End on the run's clock (ms).
    pub end_ms: u64,
}

/// One item of a sink lane.
#[derive(Debug, Clone)]
pub enum SinkItem {
    /// Audio of route `route` in the internal format.
    Audio {
        /// Index of the route (a sink instance may be fed by several).
        route: usize,
        /// Language of the speech.
        language: std::sync::Arc<str>,
        /// The samples (shared between every sink of the route).
        chunk: Chunk,
        /// When the chunk was queued (system-added latency).
        queued: Instant,
        /// The original speech under a translation (sent to the plugin as a floor block),
        /// rather than the route's own audio.
        floor: bool,
    },
    /// A caption or transcript update from route `route`.
    Text {
        /// Index of the route.
        route: usize,
        /// The event.
        item: TextItem,
    },
    /// Route `route` sends nothing more.
    End {
        /// Index of the route.
        route: usize,
    },
}

#[derive(Default)]
struct State {
    queue: VecDeque<SinkItem>,
    audio_frames: usize,
    text_items: usize,
    dropped_frames: u64,
    dropped_text: u64,
    /// The reader is gone (sink stopped or failed): pushes are discarded.
    closed: bool,
    stalled: bool,
    stalls: u64,
    /// Threads waiting in `pop` (for an item) and in `push` (for room). A wake-up is a system
    /// call, so it is only made when someone waits.
    waiting_readers: usize,
    waiting_writers: usize,
}

/// A sink lane.
pub struct SinkLane {
    state: Mutex<State>,
    changed: Condvar,
    capacity_frames: usize,
}

/// Counters of a lane.
#[derive(Debug, Clone, Copy, Default)]
pub struct LaneCounts {
    /// Audio frames (24 kHz) dropped because the lane was full.
    pub dropped_frames: u64,
    /// Text items dropped.
    pub dropped_text: u64,
    /// Audio frames queued now.
    pub queued_frames: usize,
    /// Times the sink was declared stalled (lossless delivery).
    pub stalls: u64,
}

impl SinkLane {
    /// A lane holding up to `capacity_frames` of 24 kHz audio.
    pub fn new(capacity_frames: usize) -> SinkLane {
        SinkLane { state: Mutex::default(), changed: Condvar::new(), capacity_frames: capacity_frames.max(1) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item`. With `wait` (lossless delivery) an audio item waits up to `wait` for
    /// room; otherwise (or after the wait) the oldest audio is dropped. Never blocks without
    /// `wait`.
    pub fn push(&self, item: SinkItem, wait: Option<Duration>) {
        let mut st = self.lock();
        if st.closed {
            return;
        }
        match &item {
            SinkItem::Audio { chunk, .. } => {
                let n = chunk.samples.len();
                if let Some(wait) = wait
                    && !st.stalled
                    && st.audio_frames + n > self.capacity_frames
                    && st.audio_frames > 0
                {
                    let deadline = Instant::now() + wait;
                    while st.audio_frames + n > self.capacity_frames && st.audio_frames > 0 && !st.closed {
                        let now = Instant::now();
                        if now >= deadline {
                            st.stalled = true;
                            st.stalls += 1;
                            break;
                        }
                        st.waiting_writers += 1;
                        st = self.changed.wait_timeout(st, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
                        st.waiting_writers -= 1;
                    }
                    if st.closed {
                        return;
                    }
                }
                st.audio_frames += n;
            }
            SinkItem::Text { .. } => st.text_items += 1,
            SinkItem::End { .. } => {}
        }
        st.queue.push_back(item);
        self.enforce(&mut st);
        if st.waiting_readers > 0 {
            self.changed.notify_all();
        }
    }

    /// Drops the oldest audio while over capacity (keeping the newest item), and the oldest
    /// text over [`MAX_TEXT`].
    fn enforce(&self, st: &mut State) {
        if st.audio_frames > self.capacity_frames {
            let mut i = 0;
            while st.audio_frames > self.capacity_frames && i + 1 < st.queue.len() {
                if let SinkItem::Audio { chunk, .. } = &st.queue[i] {
                    let n = chunk.samples.len();
                    st.audio_frames -= n;
                    st.dropped_frames += n as u64;
                    st.queue.remove(i);
                } else {
                    i += 1;
                }
            }
        }
        if st.text_items > MAX_TEXT
            && let Some(i) = st.queue.iter().position(|x| matches!(x, SinkItem::Text { .. }))
        {
            st.queue.remove(i);
            st.text_items -= 1;
            st.dropped_text += 1;
        }
    }

    /// The next item, waiting up to `timeout`.
    pub fn pop(&self, timeout: Duration) -> Option<SinkItem> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if let Some(item) = st.queue.pop_front() {
                match &item {
                    SinkItem::Audio { chunk, .. } => st.audio_frames -= chunk.samples.len(),
                    SinkItem::Text { .. } => st.text_items -= 1,
                    SinkItem::End { .. } => {}
                }
                if st.queue.is_empty() {
                    st.stalled = false;
                }
                // A waiting (lossless) writer is woken once the lane is half empty, so it
                // refills it in a burst rather than one item per wake-up.
                if st.waiting_writers > 0 && st.audio_frames <= self.capacity_frames / 2 {
                    self.changed.notify_all();
                }
                return Some(item);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            st.waiting_readers += 1;
            st = self.changed.wait_timeout(st, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
            st.waiting_readers -= 1;
        }
    }

    /// Discards everything queued and every later push (the sink is gone); wakes waiters.
    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        let dropped: usize = st
            .queue
            .iter()
            .map(|i| match i {
                SinkItem::Audio { chunk, .. } => chunk.samples.len(),
                _ => 0,
            })
            .sum();
        st.dropped_frames += dropped as u64;
        st.queue.clear();
        st.audio_frames = 0;
        st.text_items = 0;
        self.changed.notify_all();
    }

    /// Reopens a closed lane (a restarted sink).
    pub fn reopen(&self) {
        self.lock().closed = false;
    }

    /// The counters.
    pub fn counts(&self) -> LaneCounts {
        let st = self.lock();
        LaneCounts {
            dropped_frames: st.dropped_frames,
            dropped_text: st.dropped_text,
            queued_frames: st.audio_frames,
            stalls: st.stalls,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn audio(offset: u64, n: usize) -> SinkItem {
        SinkItem::Audio {
            route: 0,
            language: "en".into(),
            chunk: Chunk { offset, samples: Arc::from(vec![0i16; n]), born: Instant::now() },
            queued: Instant::now(),
            floor: false,
        }
    }

    fn text() -> SinkItem {
        SinkItem::Text {
            route: 0,
            item: TextItem {
                role: TextRole::Translation,
                is_final: true,
                utterance_id: 1,
                language: "es".into(),
                text: "hola".into(),
                start_ms: 0,
                end_ms: 1,
            },
        }
    }

    #[test]
    fn full_lane_drops_oldest_audio_but_keeps_text_and_ends() {
        let lane = SinkLane::new(100);
        lane.push(audio(0, 60), None);
        lane.push(text(), None);
        lane.push(audio(60, 60), None);
        lane.push(SinkItem::End { route: 0 }, None);
        assert_eq!(lane.counts().dropped_frames, 60);
        assert!(matches!(lane.pop(Duration::ZERO), Some(SinkItem::Text { .. })));
        assert!(matches!(lane.pop(Duration::ZERO), Some(SinkItem::Audio { chunk, .. }) if chunk.offset == 60));
        assert!(matches!(lane.pop(Duration::ZERO), Some(SinkItem::End { .. })));
        assert!(lane.pop(Duration::ZERO).is_none());
    }

    #[test]
    fn lossless_waits_then_declares_the_sink_stalled() {
        let lane = SinkLane::new(100);
        lane.push(audio(0, 100), Some(Duration::from_millis(10)));
        let t = Instant::now();
        lane.push(audio(100, 50), Some(Duration::from_millis(30)));
        assert!(t.elapsed() >= Duration::from_millis(25));
        let c = lane.counts();
        assert_eq!((c.stalls, c.dropped_frames), (1, 100));
        // Stalled: no more waiting until the queue drains.
        let t = Instant::now();
        lane.push(audio(150, 100), Some(Duration::from_secs(10)));
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn closed_lane_discards() {
        let lane = SinkLane::new(100);
        lane.push(audio(0, 10), None);
        lane.close();
        lane.push(audio(10, 10), None);
        assert!(lane.pop(Duration::ZERO).is_none());
        assert_eq!(lane.counts().dropped_frames, 10);
    }
}
