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
//! queue has drained (then it is waited for again). Room is measured in audio for audio, and
//! in **stream time** for text: a text item waits while it lies more than the lane's capacity
//! past what the sink has taken. So in a lossless run no sink, text-only ones included, falls
//! further behind its routes than the buffer, and the sinks of a run end up (and, after a
//! crash, are left) about as far along one another.
//!
//! Every loss is counted **per route**: audio dropped from a full lane, what was queued when
//! the lane closed (the sink failed or was abandoned), everything pushed to it after that, and
//! blocks the sink failed to write ([`SinkLane::lost`]). The run's summary and JSON status
//! report them under each route, and any of them makes the exit status non-zero.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use tolk_plugin_api::TextRole;

use super::{Chunk, RATE};

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
    /// Start on the source stream's clock (ms).
    pub start_ms: u64,
    /// End on the source stream's clock (ms).
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

impl SinkItem {
    /// The route the item comes from.
    pub fn route(&self) -> usize {
        match self {
            SinkItem::Audio { route, .. } | SinkItem::Text { route, .. } | SinkItem::End { route } => *route,
        }
    }
}

/// What one route lost in one sink lane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteDrops {
    /// The route's own audio (24 kHz frames) that never reached the sink.
    pub frames: u64,
    /// Floor audio (the original under a translation) that never reached the sink.
    pub floor_frames: u64,
    /// Text events that never reached the sink.
    pub texts: u64,
}

impl RouteDrops {
    /// Counts `item` (audio, floor audio or text; an end mark is nothing).
    pub fn add(&mut self, item: &SinkItem) {
        match item {
            SinkItem::Audio { chunk, floor: true, .. } => self.floor_frames += chunk.samples.len() as u64,
            SinkItem::Audio { chunk, .. } => self.frames += chunk.samples.len() as u64,
            SinkItem::Text { .. } => self.texts += 1,
            SinkItem::End { .. } => {}
        }
    }

    /// True when nothing was lost.
    pub fn is_empty(&self) -> bool {
        *self == RouteDrops::default()
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<SinkItem>,
    audio_frames: usize,
    text_items: usize,
    dropped_frames: u64,
    dropped_text: u64,
    /// Per route index: what it lost here.
    by_route: BTreeMap<usize, RouteDrops>,
    /// The reader is gone (sink stopped or failed): pushes are discarded.
    closed: bool,
    /// The sink takes no audio (a text-only sink): audio is not queued, and not a loss.
    text_only: bool,
    stalled: bool,
    stalls: u64,
    /// Threads waiting in `pop` (for an item) and in `push` (for room). A wake-up is a system
    /// call, so it is only made when someone waits.
    waiting_readers: usize,
    waiting_writers: usize,
    /// Per (route, source transcript or not): the furthest end (ms) of the text the sink has
    /// taken. Source transcripts run ahead of the translations (input is read ahead of the
    /// answers), so each stream of text is measured on its own.
    taken_ms: BTreeMap<(usize, bool), u64>,
    /// Text writers waiting for the sink to take text.
    text_writers: usize,
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
    /// The lane is closed (its sink failed or was abandoned).
    pub closed: bool,
}

impl State {
    /// Counts `item` as dropped by the lane (full or closed): in the lane's totals and its
    /// route's.
    fn drop_item(&mut self, item: &SinkItem) {
        match item {
            SinkItem::Audio { chunk, .. } => self.dropped_frames += chunk.samples.len() as u64,
            SinkItem::Text { .. } => self.dropped_text += 1,
            SinkItem::End { .. } => {}
        }
        self.route_lost(item);
    }

    /// Counts `item` as lost to its route.
    fn route_lost(&mut self, item: &SinkItem) {
        if !matches!(item, SinkItem::End { .. }) {
            self.by_route.entry(item.route()).or_default().add(item);
        }
    }
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
        if st.text_only && matches!(item, SinkItem::Audio { .. }) {
            return;
        }
        if st.closed {
            st.drop_item(&item);
            return;
        }
        match &item {
            SinkItem::Audio { chunk, .. } => {
                let n = chunk.samples.len();
                let full = |st: &State| st.audio_frames + n > self.capacity_frames && st.audio_frames > 0;
                if let Some(wait) = wait
                    && !st.stalled
                    && full(&st)
                {
                    st = self.wait_while(st, wait, false, full);
                    if st.closed {
                        st.drop_item(&item);
                        return;
                    }
                }
                st.audio_frames += n;
            }
            SinkItem::Text { route, item: text } => {
                let ahead = (self.capacity_frames / (RATE as usize / 1000)) as u64;
                let key = (*route, text.role == TextRole::Source);
                let behind = |st: &State| text.end_ms > st.taken_ms.get(&key).copied().unwrap_or(0) + ahead;
                let full = |st: &State| behind(st) && !st.queue.is_empty();
                if let Some(wait) = wait
                    && !st.stalled
                    && full(&st)
                {
                    st = self.wait_while(st, wait, true, full);
                    if st.closed {
                        st.drop_item(&item);
                        return;
                    }
                }
                st.text_items += 1;
            }
            SinkItem::End { .. } => {}
        }
        st.queue.push_back(item);
        self.enforce(&mut st);
        if st.waiting_readers > 0 {
            self.changed.notify_all();
        }
    }

    /// Lossless delivery: waits up to `wait` while `full` holds (and the lane is open), counted
    /// among the waiting audio or `text` writers; a sink that does not make room in time is
    /// declared stalled.
    fn wait_while<'a>(
        &self,
        mut st: MutexGuard<'a, State>,
        wait: Duration,
        text: bool,
        full: impl Fn(&State) -> bool,
    ) -> MutexGuard<'a, State> {
        fn writers(st: &mut State, text: bool) -> &mut usize {
            if text { &mut st.text_writers } else { &mut st.waiting_writers }
        }
        let deadline = Instant::now() + wait;
        while full(&st) && !st.closed {
            let now = Instant::now();
            if now >= deadline {
                st.stalled = true;
                st.stalls += 1;
                break;
            }
            *writers(&mut st, text) += 1;
            st = self.changed.wait_timeout(st, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
            *writers(&mut st, text) -= 1;
        }
        st
    }

    /// Drops the oldest audio while over capacity (keeping the newest item), and the oldest
    /// text over [`MAX_TEXT`].
    fn enforce(&self, st: &mut State) {
        if st.audio_frames > self.capacity_frames {
            let mut i = 0;
            while st.audio_frames > self.capacity_frames && i + 1 < st.queue.len() {
                if let SinkItem::Audio { chunk, .. } = &st.queue[i] {
                    st.audio_frames -= chunk.samples.len();
                    if let Some(item) = st.queue.remove(i) {
                        st.drop_item(&item);
                    }
                } else {
                    i += 1;
                }
            }
        }
        if st.text_items > MAX_TEXT
            && let Some(i) = st.queue.iter().position(|x| matches!(x, SinkItem::Text { .. }))
        {
            st.text_items -= 1;
            if let Some(item) = st.queue.remove(i) {
                st.drop_item(&item);
            }
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
                    SinkItem::Text { route, item } => {
                        st.text_items -= 1;
                        let taken = st.taken_ms.entry((*route, item.role == TextRole::Source)).or_default();
                        *taken = (*taken).max(item.end_ms);
                    }
                    SinkItem::End { .. } => {}
                }
                if st.queue.is_empty() {
                    st.stalled = false;
                }
                // A waiting (lossless) writer is woken once the lane is half empty, so it
                // refills it in a burst rather than one item per wake-up; a text writer
                // whenever the sink takes text (or the lane drains).
                let audio_due = st.waiting_writers > 0 && st.audio_frames <= self.capacity_frames / 2;
                let text_due = st.text_writers > 0 && (matches!(item, SinkItem::Text { .. }) || st.queue.is_empty());
                if audio_due || text_due {
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

    /// Wakes the reader waiting in [`pop`](Self::pop) without giving it anything (it has
    /// something else to look at: the run is stopping).
    pub fn wake(&self) {
        let _st = self.lock();
        self.changed.notify_all();
    }

    /// Discards everything queued and every later push (the sink is gone); wakes waiters.
    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        for item in std::mem::take(&mut st.queue) {
            st.drop_item(&item);
        }
        st.audio_frames = 0;
        st.text_items = 0;
        self.changed.notify_all();
    }

    /// Marks the sink text-only (it declared no audio format): audio queued or pushed from now
    /// on is discarded, as nothing it wants.
    pub fn set_text_only(&self) {
        let mut st = self.lock();
        st.text_only = true;
        st.queue.retain(|i| !matches!(i, SinkItem::Audio { .. }));
        st.audio_frames = 0;
        self.changed.notify_all();
    }

    /// Counts `item`, taken from the lane, as lost to its route: the sink failed to write it.
    /// (Not a drop of the lane: its totals count what it dropped itself.)
    pub fn lost(&self, item: &SinkItem) {
        self.lock().route_lost(item);
    }

    /// Counts `drops` of route `route`, written to the sink but lost in it (a flush that
    /// failed loses what the plugin held since the last one), as lost to the route.
    pub fn lost_in_sink(&self, route: usize, drops: RouteDrops) {
        let mut st = self.lock();
        let d = st.by_route.entry(route).or_default();
        d.frames += drops.frames;
        d.floor_frames += drops.floor_frames;
        d.texts += drops.texts;
    }

    /// What route `route` lost in this lane so far.
    pub fn route_drops(&self, route: usize) -> RouteDrops {
        self.lock().by_route.get(&route).copied().unwrap_or_default()
    }

    /// The counters.
    pub fn counts(&self) -> LaneCounts {
        let st = self.lock();
        LaneCounts {
            dropped_frames: st.dropped_frames,
            dropped_text: st.dropped_text,
            queued_frames: st.audio_frames,
            stalls: st.stalls,
            closed: st.closed,
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

    fn text_at(end_ms: u64) -> SinkItem {
        match text() {
            SinkItem::Text { route, mut item } => {
                item.end_ms = end_ms;
                SinkItem::Text { route, item }
            }
            _ => unreachable!(),
        }
    }

    /// A text-only sink in a lossless run: a caption more than the lane's capacity (100 frames
    /// = 4 ms here) past what the sink took waits until the sink takes up to it.
    #[test]
    fn lossless_text_waits_for_a_sink_more_than_its_buffer_behind() {
        let lane = Arc::new(SinkLane::new(100));
        lane.set_text_only();
        lane.push(text_at(10), None);
        lane.push(text_at(12), None);
        let reader = {
            let lane = Arc::clone(&lane);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(150));
                lane.pop(Duration::ZERO).unwrap(); // taken: 10 ms, the writer still waits (20 > 10 + 4)
                std::thread::sleep(Duration::from_millis(150));
                lane.pop(Duration::ZERO).unwrap(); // taken: 12 ms, and the queue is empty
            })
        };
        let t = Instant::now();
        lane.push(text_at(20), Some(Duration::from_secs(30)));
        assert!(t.elapsed() >= Duration::from_millis(300), "the caption did not wait for the sink");
        reader.join().unwrap();
        assert!(matches!(lane.pop(Duration::ZERO), Some(SinkItem::Text { item, .. }) if item.end_ms == 20));
        // Within the buffer (taken: 20 ms): no wait, though the queue is not empty.
        lane.push(text_at(21), None);
        let t = Instant::now();
        lane.push(text_at(23), Some(Duration::from_secs(30)));
        assert!(t.elapsed() < Duration::from_secs(10));
        assert_eq!(lane.counts().stalls, 0);
        // A sink that takes nothing is declared stalled after the wait, and the text is kept.
        lane.push(text_at(100), Some(Duration::from_millis(20)));
        assert_eq!(lane.counts().stalls, 1);
        assert_eq!(lane.counts().dropped_text, 0);
    }

    /// Source transcripts run ahead of the translations: taking one does not count as having
    /// taken the translations up to it.
    #[test]
    fn lossless_text_measures_each_role_on_its_own() {
        let lane = SinkLane::new(100);
        lane.set_text_only();
        let source = match text_at(1_000) {
            SinkItem::Text { route, mut item } => {
                item.role = TextRole::Source;
                SinkItem::Text { route, item }
            }
            _ => unreachable!(),
        };
        lane.push(source, None);
        lane.pop(Duration::ZERO).unwrap();
        lane.push(text_at(1), None);
        lane.push(text_at(50), Some(Duration::from_millis(20)));
        assert_eq!(lane.counts().stalls, 1, "the translation 50 ms ahead of the sink did not wait");
    }

    fn of(route: usize, floor: bool, offset: u64, n: usize) -> SinkItem {
        match audio(offset, n) {
            SinkItem::Audio { language, chunk, queued, .. } => {
                SinkItem::Audio { route, language, chunk, queued, floor }
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn every_loss_is_counted_per_route() {
        let lane = SinkLane::new(100);
        lane.push(of(0, false, 0, 60), None);
        lane.push(of(1, true, 0, 30), None);
        lane.push(of(1, false, 0, 50), None); // over capacity: route 0's 60 frames go
        assert_eq!(lane.route_drops(0), RouteDrops { frames: 60, ..RouteDrops::default() });
        assert!(lane.route_drops(1).is_empty());
        // A block the sink failed to write.
        let item = lane.pop(Duration::ZERO).unwrap();
        lane.lost(&item);
        assert_eq!(lane.route_drops(1).floor_frames, 30);
        // Closing loses what is queued, and everything pushed later, text included.
        lane.close();
        lane.push(of(1, false, 50, 20), None);
        lane.push(
            SinkItem::Text {
                route: 0,
                item: match text() {
                    SinkItem::Text { item, .. } => item,
                    _ => unreachable!(),
                },
            },
            None,
        );
        assert_eq!(lane.route_drops(1), RouteDrops { frames: 70, floor_frames: 30, texts: 0 });
        assert_eq!(lane.route_drops(0), RouteDrops { frames: 60, floor_frames: 0, texts: 1 });
        // The lane's own totals: what it dropped (full, then closed), not the failed write.
        let c = lane.counts();
        assert_eq!((c.dropped_frames, c.dropped_text, c.closed), (130, 1, true));
    }

    #[test]
    fn a_text_only_lane_takes_no_audio_and_loses_none() {
        let lane = SinkLane::new(100);
        lane.push(audio(0, 60), None);
        lane.set_text_only();
        lane.push(audio(60, 600), None);
        lane.push(text(), None);
        assert!(matches!(lane.pop(Duration::ZERO), Some(SinkItem::Text { .. })));
        assert!(lane.pop(Duration::ZERO).is_none());
        assert_eq!(lane.counts().dropped_frames, 0);
        assert!(lane.route_drops(0).is_empty());
    }

    #[test]
    fn closed_lane_discards() {
        let lane = SinkLane::new(100);
        lane.push(audio(0, 10), None);
        lane.close();
        lane.push(audio(10, 10), None);
        assert!(lane.pop(Duration::ZERO).is_none());
        // What was queued and what came later: both lost, both counted.
        assert_eq!(lane.counts().dropped_frames, 20);
    }
}
