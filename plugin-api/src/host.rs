//! What the host lends a plugin: [`Host`] (logging, identity, paths) and [`AudioWriter`] (where a
//! source pushes its samples). Both are implemented by the host and reached through the ABI.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use abi_stable::std_types::RStr;

use crate::{
    AudioBlock, AudioFormat, LogLevel, PluginError, Samples,
    ffi::{HostBox, WriterBox},
};

/// The host's services for one plugin instance. Cheap to clone; may be kept and used from any
/// thread the plugin owns.
#[derive(Clone)]
pub struct Host {
    inner: Arc<HostBox>,
}

impl Host {
    #[doc(hidden)]
    pub fn from_ffi(inner: HostBox) -> Self {
        Host { inner: Arc::new(inner) }
    }

    /// Writes a line to tolk's log, tagged with this instance. Plugins must not install a
    /// global logger; use this instead.
    ///
    /// `[any thread]` never blocks for long (the host buffers the line).
    pub fn log(&self, level: LogLevel, message: impl AsRef<str>) {
        self.inner.log(level, RStr::from_str(message.as_ref()));
    }

    /// [`log`](Self::log) at debug level.
    pub fn debug(&self, message: impl AsRef<str>) {
        self.log(LogLevel::Debug, message)
    }

    /// [`log`](Self::log) at info level.
    pub fn info(&self, message: impl AsRef<str>) {
        self.log(LogLevel::Info, message)
    }

    /// [`log`](Self::log) at warn level.
    pub fn warn(&self, message: impl AsRef<str>) {
        self.log(LogLevel::Warn, message)
    }

    /// [`log`](Self::log) at error level.
    pub fn error(&self, message: impl AsRef<str>) {
        self.log(LogLevel::Error, message)
    }

    /// The instance's id from the config (`stage`, `file:es`), for thread names and messages.
    pub fn instance_id(&self) -> String {
        self.inner.instance_id().into()
    }

    /// Resolves a path from the plugin's config: relative paths are taken relative to the
    /// directory of the config file that named them, as a user expects.
    pub fn resolve_path(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        if path.is_absolute() { path.to_path_buf() } else { PathBuf::from(self.inner.config_dir().as_str()).join(path) }
    }
}

/// Where a source writes its audio. Cloneable and `Send`, so the source's own thread (or a
/// sound card callback) can own a clone.
///
/// Every write is non-blocking and returns the number of whole frames accepted; a frame not
/// accepted is the caller's to drop (live sources) or retry (file sources). The host counts
/// refused frames as dropped when the source writes again (or ends) without calling
/// [`wait_writable`](Self::wait_writable) first, so a source that retries waits before it does.
#[derive(Clone)]
pub struct AudioWriter {
    inner: Arc<WriterBox>,
    format: AudioFormat,
}

impl AudioWriter {
    #[doc(hidden)]
    pub fn from_ffi(inner: WriterBox, format: AudioFormat) -> Self {
        AudioWriter { inner: Arc::new(inner), format }
    }

    /// The format the host expects: the one the source declared in `format()`.
    pub fn format(&self) -> AudioFormat {
        self.format
    }

    /// Writes interleaved 16-bit samples; returns the frames accepted.
    ///
    /// `[source thread]` never blocks.
    pub fn write_i16(&self, samples: &[i16]) -> usize {
        self.write(Samples::I16(samples))
    }

    /// Writes interleaved float samples (`-1.0..=1.0`); returns the frames accepted.
    ///
    /// `[source thread]` never blocks.
    pub fn write_f32(&self, samples: &[f32]) -> usize {
        self.write(Samples::F32(samples))
    }

    /// Writes interleaved samples of either encoding; returns the frames accepted. A trailing
    /// partial frame is ignored.
    ///
    /// `[source thread]` never blocks.
    pub fn write(&self, samples: Samples<'_>) -> usize {
        let block = AudioBlock::new(self.format, samples, 0, "");
        self.inner.write(block) as usize
    }

    /// Frames the host can accept right now without dropping anything.
    ///
    /// `[source thread]` never blocks.
    pub fn free_frames(&self) -> usize {
        self.inner.free_frames() as usize
    }

    /// Waits until the host can accept more audio, the writer is closed, or `timeout` passes.
    /// Returns true when there is room. For sources that must not lose audio (files); a live
    /// source must not call it from a sound card callback.
    ///
    /// `[source thread]` blocks up to `timeout`.
    pub fn wait_writable(&self, timeout: Duration) -> bool {
        self.inner.wait_writable(timeout.as_millis().min(u128::from(u64::MAX)) as u64)
    }

    /// True once the host no longer wants audio (the run is stopping); the source should wind
    /// down its thread.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Tells the host that the stream ended normally (end of file). Later writes are ignored.
    pub fn end_of_stream(&self) {
        self.inner.end_of_stream()
    }

    /// Tells the host the source failed on its own thread; the host applies the route's
    /// failure policy. Later writes are ignored.
    pub fn fail(&self, error: PluginError) {
        self.inner.fail(error)
    }
}
