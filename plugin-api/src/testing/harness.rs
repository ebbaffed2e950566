//! Host-side stand-ins for tests: a [`TestHost`] that records log lines, a
//! [`CollectingWriter`] that keeps everything a source writes, and drivers for sources and
//! sinks.

use std::{
    path::PathBuf,
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, RResult, RStr, RString},
};

use crate::{
    AudioBlock, AudioFormat, LogLevel, PluginError, SampleFormat, Samples, TextEvent,
    ffi::{FfiHost, FfiHost_TO, FfiWriter, FfiWriter_TO, HostBox, SinkBox, SourceBox, WriterBox},
};

/// A host that records log lines and resolves paths against `config_dir`.
#[derive(Clone)]
pub struct TestHost {
    /// Lines logged by the plugin.
    pub log: Arc<Mutex<Vec<(LogLevel, String)>>>,
    /// What `Host::resolve_path` resolves relative paths against.
    pub config_dir: PathBuf,
    /// The instance id the plugin sees.
    pub instance_id: String,
}

impl TestHost {
    /// A host whose config dir is the current directory.
    pub fn new() -> Self {
        TestHost {
            log: Arc::default(),
            config_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            instance_id: "test".into(),
        }
    }

    /// The same host with another config directory.
    pub fn with_config_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config_dir = dir.into();
        self
    }

    /// The ABI object handed to a plugin constructor.
    pub fn into_ffi(self) -> HostBox {
        FfiHost_TO::from_ptr(RArc::new(self), TD_Opaque)
    }
}

impl Default for TestHost {
    fn default() -> Self {
        Self::new()
    }
}

impl FfiHost for TestHost {
    fn log(&self, level: LogLevel, message: RStr<'_>) {
        self.log.lock().unwrap().push((level, message.to_string()));
    }
    fn instance_id(&self) -> RString {
        self.instance_id.as_str().into()
    }
    fn config_dir(&self) -> RString {
        self.config_dir.to_string_lossy().into_owned().into()
    }
}

/// Everything a source wrote, as floats, plus how its stream ended.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    /// The format of the writes (the last one seen).
    pub format: Option<AudioFormat>,
    /// Interleaved samples converted to f32 (i16 → `x / 32768`).
    pub samples: Vec<f32>,
    /// The samples as written when they were i16 (empty if any write was f32).
    pub samples_i16: Vec<i16>,
    /// Number of `write` calls.
    pub writes: u64,
    /// Writes whose length was not a whole number of frames.
    pub partial_frames: u64,
    /// The source called `end_of_stream`.
    pub ended: bool,
    /// The source called `fail`.
    pub failed: Option<PluginError>,
}

#[derive(Default)]
struct WriterState {
    captured: Captured,
    closed: bool,
    capacity: Option<usize>,
}

/// A writer that keeps everything (up to an optional capacity in frames, after which it
/// accepts nothing, like a full host lane that is never drained).
#[derive(Clone, Default)]
pub struct CollectingWriter {
    state: Arc<(Mutex<WriterState>, Condvar)>,
}

impl CollectingWriter {
    /// An unbounded writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer that accepts at most `frames` frames in total.
    pub fn with_capacity(frames: usize) -> Self {
        let w = Self::default();
        w.state.0.lock().unwrap().capacity = Some(frames);
        w
    }

    /// The ABI object handed to `start`.
    pub fn to_ffi(&self) -> WriterBox {
        FfiWriter_TO::from_ptr(RArc::new(self.clone()), TD_Opaque)
    }

    /// A copy of what was captured so far.
    pub fn captured(&self) -> Captured {
        self.state.0.lock().unwrap().captured.clone()
    }

    /// Frames captured so far.
    pub fn frames(&self) -> usize {
        let s = self.state.0.lock().unwrap();
        let ch = s.captured.format.map(|f| usize::from(f.channels.max(1))).unwrap_or(1);
        s.captured.samples.len() / ch
    }

    /// Marks the writer closed (`is_closed` returns true from now on).
    pub fn close(&self) {
        self.state.0.lock().unwrap().closed = true;
        self.state.1.notify_all();
    }

    /// Waits until `frames` frames arrived, the stream ended or failed, or `timeout` passed.
    pub fn wait_for(&self, frames: usize, timeout: Duration) -> Captured {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.state;
        let mut s = lock.lock().unwrap();
        loop {
            let ch = s.captured.format.map(|f| usize::from(f.channels.max(1))).unwrap_or(1);
            if s.captured.samples.len() / ch >= frames || s.captured.ended || s.captured.failed.is_some() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            s = cv.wait_timeout(s, deadline - now).unwrap().0;
        }
        s.captured.clone()
    }
}

impl FfiWriter for CollectingWriter {
    fn write(&self, block: AudioBlock<'_>) -> u64 {
        let (lock, cv) = &*self.state;
        let mut s = lock.lock().unwrap();
        if s.closed || s.captured.ended || s.captured.failed.is_some() {
            return 0;
        }
        let format = block.format();
        let ch = usize::from(format.channels.max(1));
        let samples = block.samples();
        if !samples.len().is_multiple_of(ch) {
            s.captured.partial_frames += 1;
        }
        let mut frames = samples.len() / ch;
        if let Some(cap) = s.capacity {
            let have = s.captured.samples.len() / ch;
            frames = frames.min(cap.saturating_sub(have));
        }
        let n = frames * ch;
        let first = s.captured.writes == 0;
        s.captured.writes += 1;
        s.captured.format = Some(format);
        match samples {
            Samples::I16(x) => {
                if first || !s.captured.samples_i16.is_empty() || s.captured.samples.is_empty() {
                    s.captured.samples_i16.extend_from_slice(&x[..n]);
                }
                s.captured.samples.extend(x[..n].iter().map(|&v| f32::from(v) / 32768.0));
            }
            Samples::F32(x) => {
                s.captured.samples_i16.clear();
                s.captured.samples.extend_from_slice(&x[..n]);
            }
        }
        cv.notify_all();
        frames as u64
    }
    fn free_frames(&self) -> u64 {
        let s = self.state.0.lock().unwrap();
        match s.capacity {
            Some(cap) => {
                let ch = s.captured.format.map(|f| usize::from(f.channels.max(1))).unwrap_or(1);
                cap.saturating_sub(s.captured.samples.len() / ch) as u64
            }
            None => u64::MAX / 2,
        }
    }
    fn wait_writable(&self, timeout_ms: u64) -> bool {
        if self.free_frames() > 0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(timeout_ms.min(50)));
        self.free_frames() > 0
    }
    fn is_closed(&self) -> bool {
        self.state.0.lock().unwrap().closed
    }
    fn end_of_stream(&self) {
        self.state.0.lock().unwrap().captured.ended = true;
        self.state.1.notify_all();
    }
    fn fail(&self, error: PluginError) {
        self.state.0.lock().unwrap().captured.failed = Some(error);
        self.state.1.notify_all();
    }
}

fn ok<T>(r: RResult<T, PluginError>) -> Result<T, PluginError> {
    r.into_result()
}

/// Starts `source`, collects until `max_frames` frames arrived, the stream ended, or `timeout`
/// passed, then stops it. Returns what was written.
pub fn run_source(source: &mut SourceBox, max_frames: usize, timeout: Duration) -> Result<Captured, PluginError> {
    let writer = CollectingWriter::new();
    ok(source.start(writer.to_ffi()))?;
    writer.wait_for(max_frames, timeout);
    writer.close();
    ok(source.stop())?;
    Ok(writer.captured())
}

/// Drives a sink the way the host does: `start`, blocks in the sink's own format, text
/// events, `flush`, `stop`.
pub struct SinkHarness {
    /// The sink under test.
    pub sink: SinkBox,
    /// The format the sink asked for (`None` for text-only sinks).
    pub format: Option<AudioFormat>,
    frames: u64,
}

impl SinkHarness {
    /// Asks the sink for its format and starts it.
    pub fn start(mut sink: SinkBox) -> Result<Self, PluginError> {
        let format = ok(sink.format())?.into_option();
        ok(sink.start())?;
        Ok(SinkHarness { sink, format, frames: 0 })
    }

    /// Sends interleaved float samples, converted to the sink's sample format.
    pub fn audio(&mut self, samples: &[f32], language: &str) -> Result<(), PluginError> {
        let Some(format) = self.format else {
            return Ok(());
        };
        let ch = u64::from(format.channels.max(1));
        let offset = self.frames;
        self.frames += samples.len() as u64 / ch;
        match format.sample {
            SampleFormat::F32 => {
                ok(self.sink.on_audio(AudioBlock::new(format, Samples::F32(samples), offset, language)))
            }
            SampleFormat::I16 => {
                let ints: Vec<i16> = samples.iter().map(|&x| f32_to_i16(x)).collect();
                ok(self.sink.on_audio(AudioBlock::new(format, Samples::I16(&ints), offset, language)))
            }
        }
    }

    /// Sends a text event.
    pub fn text(&mut self, event: TextEvent<'_>) -> Result<(), PluginError> {
        ok(self.sink.on_text(event))
    }

    /// Flushes the sink.
    pub fn flush(&mut self) -> Result<(), PluginError> {
        ok(self.sink.flush())
    }

    /// Stops the sink and hands it back.
    pub fn stop(mut self) -> Result<SinkBox, PluginError> {
        ok(self.sink.flush())?;
        ok(self.sink.stop())?;
        Ok(self.sink)
    }
}

/// Float to i16 the way the host converts: `x * 32768`, rounded and clipped to the i16 range,
/// NaN becomes silence. The inverse of `i16 / 32768`, so i16 → f32 → i16 is exact.
pub fn f32_to_i16(x: f32) -> i16 {
    if x.is_nan() { 0 } else { (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16 }
}
