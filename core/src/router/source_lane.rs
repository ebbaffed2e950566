//! The audio lane behind a source's [`AudioWriter`](tolk_plugin_api::AudioWriter): a bounded
//! queue of blocks, written by the source's own thread and read by the host.
//!
//! The writer never blocks. When the lane is full:
//! - [`Policy::DropOldest`] (live sources): the oldest queued audio is dropped and counted, so
//!   the newest audio always gets through and latency stays bounded;
//! - [`Policy::Backpressure`] (file sources): the write accepts only what fits and the source
//!   waits with `wait_writable`, so nothing is lost.
//!
//! Blocks are stamped with their frame offset on the source's stream clock as they arrive.
//!
//! **Refused frames are counted.** A write that does not fit is accepted in part; the rest is
//! the source's to retry or drop. A source that retries waits with `wait_writable` first (as
//! the API asks of sources that must not lose audio); a live source writes on. So a refusal
//! followed by another write (or the end of the stream) without a wait in between is audio
//! the source dropped, and [`LaneReader::refused_frames`] counts it.

use std::{
    collections::VecDeque,
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use abi_stable::{sabi_trait::TD_Opaque, std_types::RArc};
use tolk_plugin_api::{
    AudioBlock, AudioFormat, PluginError, Samples,
    ffi::{FfiWriter, FfiWriter_TO, WriterBox},
};

/// What to do when the lane is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Drop the oldest queued audio (live sources).
    DropOldest,
    /// Accept only what fits; the source waits (file sources).
    Backpressure,
}

/// Owned samples of one block.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnedSamples {
    /// 16-bit.
    I16(Vec<i16>),
    /// Float.
    F32(Vec<f32>),
}

impl OwnedSamples {
    /// Borrowed view.
    pub fn as_samples(&self) -> Samples<'_> {
        match self {
            OwnedSamples::I16(v) => Samples::I16(v),
            OwnedSamples::F32(v) => Samples::F32(v),
        }
    }
}

/// One block as queued.
#[derive(Debug, Clone)]
pub struct Block {
    /// Frame offset of the first frame on the source's stream clock.
    pub frame_offset: u64,
    /// Interleaved samples (whole frames).
    pub samples: OwnedSamples,
}

/// What the reading side gets.
#[derive(Debug)]
pub enum LaneEvent {
    /// Audio.
    Audio(Block),
    /// The source ended normally; nothing follows.
    End,
    /// The source failed on its own thread; nothing follows.
    Failed(PluginError),
}

#[derive(Default)]
struct State {
    queue: VecDeque<Block>,
    queued_frames: usize,
    next_offset: u64,
    dropped_frames: u64,
    /// Frames refused and then dropped by the source (see the module docs).
    refused_frames: u64,
    /// Frames the last write refused, until the source waits (a retry) or writes on (lost).
    pending_refused: u64,
    ended: bool,
    failed: Option<PluginError>,
    closed: bool,
    delivered_end: bool,
    /// Threads waiting for an event and for room. A wake-up is a system call, so it is only
    /// made when someone waits — and a waiting writer only once the lane is half empty, so a
    /// fast source refills it in a burst instead of one block per wake-up.
    waiting_readers: usize,
    waiting_writers: usize,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    format: AudioFormat,
    capacity_frames: usize,
    policy: Policy,
}

/// Creates a lane for a source writing `format`, holding at most `capacity` of audio.
pub fn lane(format: AudioFormat, capacity: Duration, policy: Policy) -> (LaneWriter, LaneReader) {
    let capacity_frames = ((capacity.as_secs_f64() * f64::from(format.sample_rate)) as usize).max(1);
    let shared = Arc::new(Shared { state: Mutex::default(), changed: Condvar::new(), format, capacity_frames, policy });
    (LaneWriter { shared: Arc::clone(&shared) }, LaneReader { shared })
}

/// The writing side, handed to the source as its `AudioWriter`.
#[derive(Clone)]
pub struct LaneWriter {
    shared: Arc<Shared>,
}

impl LaneWriter {
    /// The ABI object for `AudioSource::start`.
    pub fn to_ffi(&self) -> WriterBox {
        FfiWriter_TO::from_ptr(RArc::new(self.clone()), TD_Opaque)
    }
}

impl FfiWriter for LaneWriter {
    fn write(&self, block: AudioBlock<'_>) -> u64 {
        let sh = &*self.shared;
        let ch = usize::from(sh.format.channels.max(1));
        let mut st = sh.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.closed || st.ended || st.failed.is_some() {
            return 0;
        }
        let samples = block.samples();
        let offered = samples.len() / ch;
        let mut frames = offered;
        if sh.policy == Policy::Backpressure {
            frames = frames.min(sh.capacity_frames.saturating_sub(st.queued_frames));
        }
        // Writing on without waiting after a refusal: the refused audio was dropped.
        st.refused_frames += std::mem::take(&mut st.pending_refused);
        st.pending_refused = (offered - frames) as u64;
        if frames == 0 {
            return 0;
        }
        let n = frames * ch;
        let owned = match samples {
            Samples::I16(s) => OwnedSamples::I16(s[..n].to_vec()),
            Samples::F32(s) => OwnedSamples::F32(s[..n].to_vec()),
        };
        let offset = st.next_offset;
        st.next_offset += frames as u64;
        st.queued_frames += frames;
        st.queue.push_back(Block { frame_offset: offset, samples: owned });
        while st.queued_frames > sh.capacity_frames && st.queue.len() > 1 {
            if let Some(old) = st.queue.pop_front() {
                let f = match &old.samples {
                    OwnedSamples::I16(v) => v.len(),
                    OwnedSamples::F32(v) => v.len(),
                } / ch;
                st.queued_frames -= f;
                st.dropped_frames += f as u64;
            }
        }
        if st.waiting_readers > 0 {
            sh.changed.notify_all();
        }
        frames as u64
    }
    fn free_frames(&self) -> u64 {
        let st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        self.shared.capacity_frames.saturating_sub(st.queued_frames) as u64
    }
    fn wait_writable(&self, timeout_ms: u64) -> bool {
        let sh = &*self.shared;
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let mut st = sh.state.lock().unwrap_or_else(|p| p.into_inner());
        // The source waits to offer the refused audio again: not lost.
        st.pending_refused = 0;
        loop {
            if st.closed {
                return false;
            }
            if st.queued_frames < sh.capacity_frames {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st.waiting_writers += 1;
            st = sh.changed.wait_timeout(st, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
            st.waiting_writers -= 1;
        }
    }
    fn is_closed(&self) -> bool {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner()).closed
    }
    fn end_of_stream(&self) {
        let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        st.refused_frames += std::mem::take(&mut st.pending_refused);
        st.ended = true;
        self.shared.changed.notify_all();
    }
    fn fail(&self, error: PluginError) {
        let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        st.refused_frames += std::mem::take(&mut st.pending_refused);
        if st.failed.is_none() {
            st.failed = Some(error);
        }
        self.shared.changed.notify_all();
    }
}

/// The reading side, owned by the host.
pub struct LaneReader {
    shared: Arc<Shared>,
}

impl LaneReader {
    /// The source's format.
    pub fn format(&self) -> AudioFormat {
        self.shared.format
    }

    /// The next event, waiting up to `timeout`; `None` on timeout or after the final event.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<LaneEvent> {
        let sh = &*self.shared;
        let deadline = Instant::now() + timeout;
        let mut st = sh.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(b) = st.queue.pop_front() {
                let ch = usize::from(sh.format.channels.max(1));
                st.queued_frames -= match &b.samples {
                    OwnedSamples::I16(v) => v.len(),
                    OwnedSamples::F32(v) => v.len(),
                } / ch;
                if st.waiting_writers > 0 && st.queued_frames <= sh.capacity_frames / 2 {
                    sh.changed.notify_all();
                }
                return Some(LaneEvent::Audio(b));
            }
            if !st.delivered_end {
                if let Some(e) = st.failed.clone() {
                    st.delivered_end = true;
                    return Some(LaneEvent::Failed(e));
                }
                if st.ended {
                    st.delivered_end = true;
                    return Some(LaneEvent::End);
                }
            } else {
                return None;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            st.waiting_readers += 1;
            st = sh.changed.wait_timeout(st, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
            st.waiting_readers -= 1;
        }
    }

    /// Frames dropped so far because the lane was full (DropOldest only).
    pub fn dropped_frames(&self) -> u64 {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner()).dropped_frames
    }

    /// Frames the source wrote that the lane refused and the source then dropped (a live source
    /// writing faster than the host reads), in the source's frames.
    pub fn refused_frames(&self) -> u64 {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner()).refused_frames
    }

    /// Tells the source to stop writing (`is_closed` becomes true) and wakes waiters.
    pub fn close(&self) {
        let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        st.closed = true;
        self.shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use tolk_plugin_api::SampleFormat;

    use super::*;

    fn fmt() -> AudioFormat {
        AudioFormat::new(1000, 1, SampleFormat::I16)
    }

    fn write(w: &LaneWriter, n: usize) -> u64 {
        let s: Vec<i16> = (0..n as i16).collect();
        w.write(AudioBlock::new(fmt(), Samples::I16(&s), 0, ""))
    }

    #[test]
    fn backpressure_accepts_only_what_fits_and_keeps_offsets() {
        let (w, r) = lane(fmt(), Duration::from_millis(100), Policy::Backpressure);
        assert_eq!(write(&w, 60), 60);
        assert_eq!(write(&w, 60), 40);
        assert_eq!(w.free_frames(), 0);
        assert!(!w.wait_writable(10));
        let Some(LaneEvent::Audio(b)) = r.recv_timeout(Duration::ZERO) else { panic!() };
        assert_eq!(b.frame_offset, 0);
        assert!(w.wait_writable(10));
        let Some(LaneEvent::Audio(b)) = r.recv_timeout(Duration::ZERO) else { panic!() };
        assert_eq!(b.frame_offset, 60);
        assert_eq!(b.samples, OwnedSamples::I16((0..40).collect()));
        assert_eq!(r.dropped_frames(), 0);
        // Refused, then waited for and offered again: nothing lost.
        assert_eq!(r.refused_frames(), 0);
    }

    #[test]
    fn refused_frames_a_source_writes_on_from_are_counted_once() {
        let (w, r) = lane(fmt(), Duration::from_millis(100), Policy::Backpressure);
        // A live source: 60 of 150 refused, then it writes on (the 60 are gone).
        assert_eq!(write(&w, 150), 100);
        assert_eq!(r.refused_frames(), 0, "not lost before the source writes on");
        assert_eq!(write(&w, 10), 0);
        assert_eq!(r.refused_frames(), 50);
        let _ = r.recv_timeout(Duration::ZERO);
        assert_eq!(write(&w, 10), 10);
        assert_eq!(r.refused_frames(), 60);
        // A refusal right before the end is lost too.
        assert_eq!(write(&w, 200), 90);
        w.end_of_stream();
        assert_eq!(r.refused_frames(), 170);
        // A retrying source waits first: nothing counted.
        let (w, r) = lane(fmt(), Duration::from_millis(100), Policy::Backpressure);
        assert_eq!(write(&w, 150), 100);
        let _ = r.recv_timeout(Duration::ZERO);
        assert!(w.wait_writable(10));
        assert_eq!(write(&w, 50), 50);
        assert_eq!(r.refused_frames(), 0);
    }

    #[test]
    fn drop_oldest_counts_what_it_drops() {
        let (w, r) = lane(fmt(), Duration::from_millis(100), Policy::DropOldest);
        for _ in 0..5 {
            assert_eq!(write(&w, 40), 40);
        }
        assert_eq!(r.dropped_frames(), 120);
        let Some(LaneEvent::Audio(b)) = r.recv_timeout(Duration::ZERO) else { panic!() };
        assert_eq!(b.frame_offset, 120);
        w.end_of_stream();
        assert!(matches!(r.recv_timeout(Duration::ZERO), Some(LaneEvent::Audio(_))));
        assert!(matches!(r.recv_timeout(Duration::ZERO), Some(LaneEvent::End)));
        assert!(r.recv_timeout(Duration::ZERO).is_none());
        assert_eq!(write(&w, 10), 0);
    }
}
