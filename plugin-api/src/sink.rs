//! [`OutputSink`]: where translated audio and captions go.

use std::path::PathBuf;

use serde::de::DeserializeOwned;

use crate::{AudioBlock, AudioFormat, Host, PluginError, TextEvent, device::DeviceInfo};

/// A plugin that receives audio blocks and text events: a recorder, a caption writer, a
/// loudspeaker, a streaming platform.
///
/// The host runs every sink instance on **its own thread** behind a bounded lane: a sink that
/// is slow only loses its own oldest audio (the host counts it), never stalls a session or
/// another sink. Within one instance, calls are sequential and in order.
///
/// # Lifecycle
///
/// `new` → `format` → `start` → (`on_audio` | `on_text`)* → `flush`* → `stop` → drop.
/// Panics are caught and reported as `panicked`; the instance is not called again.
///
/// Under `on_plugin_failure = "restart"` a failed instance is stopped (unless it panicked) and
/// dropped, and a new one is created from the same config and started. A sink that writes
/// files should then **continue** what the failed one wrote (or start a numbered next part),
/// never truncate it: `tolk.wav` is the example.
pub trait OutputSink: Sized + Send + 'static {
    /// Stable reverse-DNS id, lower case. `tolk.` is reserved for built-ins.
    const ID: &'static str;
    /// Display name.
    const NAME: &'static str;
    /// The plugin's version; write `env!("CARGO_PKG_VERSION")`.
    const VERSION: &'static str;
    /// One-line description for `tolk plugins list`.
    const DESCRIPTION: &'static str = "";
    /// A config table body (TOML) this plugin accepts. `{lang}` in a value makes the host
    /// create one instance per target language.
    const EXAMPLE_CONFIG: &'static str = "";

    /// Optional capabilities, CLAP-style ids (`vendor.name/REV`), written into the descriptor.
    /// Built-in ones: [`device::CAPABILITY`](crate::device::CAPABILITY) (implement
    /// [`devices`](Self::devices) too).
    const CAPABILITIES: &'static [&'static str] = &[];

    /// The plugin's own config table (`[sink.config]`); use `#[serde(deny_unknown_fields)]`.
    type Config: DeserializeOwned;

    /// Creates the sink from its config. Open or check files here so that a bad path fails at
    /// `tolk check`.
    ///
    /// `[control]` may block ≤ 2 s.
    fn new(config: Self::Config, host: &Host) -> Result<Self, PluginError>;

    /// The audio format this sink wants, or `None` for a text-only sink (which then receives
    /// no `on_audio` calls). The host converts to it (rate, channels, sample encoding). A
    /// format that fails [`AudioFormat::validate`] is refused: `tolk check` and `tolk run` stop
    /// with one line naming the plugin, and the sink is never given audio.
    ///
    /// `[control]` must not block.
    fn format(&self) -> Option<AudioFormat> {
        None
    }

    /// Called once before the first block or event.
    ///
    /// `[sink thread]` may block ≤ 2 s.
    fn start(&mut self) -> Result<(), PluginError> {
        Ok(())
    }

    /// One block of audio, in the format returned by [`format`](Self::format). Blocks may
    /// have any length, including 0 frames, and arrive in stream order.
    ///
    /// `[sink thread]` should return quickly: time spent here delays only this sink, but once
    /// its lane is full its oldest audio is dropped.
    fn on_audio(&mut self, block: &AudioBlock<'_>) -> Result<(), PluginError> {
        let _ = block;
        Ok(())
    }

    /// A caption or transcript update.
    ///
    /// `[sink thread]` should return quickly.
    fn on_text(&mut self, event: &TextEvent<'_>) -> Result<(), PluginError> {
        let _ = event;
        Ok(())
    }

    /// Make everything received so far durable (flush files, update headers). Called before
    /// `stop` and, while the sink has been given something since its last flush, at least
    /// every second of wall time and every second of stream (audio offsets, caption times):
    /// buffer between flushes rather than writing per block.
    ///
    /// `[sink thread]` may block ≤ 2 s.
    fn flush(&mut self) -> Result<(), PluginError> {
        Ok(())
    }

    /// The stream is over: finish files so they are complete and valid.
    ///
    /// `[sink thread]` may block ≤ 2 s. Drop may follow without `stop` after a failure, so
    /// keep files valid at every `flush` too.
    fn stop(&mut self) -> Result<(), PluginError> {
        Ok(())
    }

    /// The output devices this plugin can open, for `tolk devices`: only for plugins that list
    /// [`device::CAPABILITY`](crate::device::CAPABILITY) in [`CAPABILITIES`](Self::CAPABILITIES).
    /// No instance is needed; the names are what `device = "…"` in the config accepts.
    ///
    /// `[control]` may block briefly (≤ 2 s) while the backend enumerates.
    fn devices() -> Result<Vec<DeviceInfo>, PluginError> {
        Err(PluginError::unsupported(format!("{} does not list devices", Self::ID)))
    }

    /// Every file this instance will write, each with the config key that names it, as the
    /// instance will open it (resolved with [`Host::resolve_path`], `{lang}` already
    /// replaced). Declare them and the host checks, at `tolk check` and before anything
    /// starts, that no two outputs of a run share a file (two sinks on one path, or one file
    /// receiving the audio of several languages), that each one can be written (its folder is
    /// a folder on a writable file system, no NUL in the name), and names the key when not.
    ///
    /// The default declares nothing: a sink that writes no files (a speaker, a network stream)
    /// keeps it.
    ///
    /// `[control]` must not block; called after `new`, before `start`.
    fn output_files(&self) -> Vec<OutputFile> {
        Vec::new()
    }
}

/// A file a sink instance writes: see [`OutputSink::output_files`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    /// The config key that names the file (`path`, `vtt`), for messages: `sink[1].config.vtt`.
    pub key: String,
    /// The file, as the instance will open it.
    pub path: PathBuf,
}

impl OutputFile {
    /// The file `path`, named by config key `key`.
    pub fn new(key: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        OutputFile { key: key.into(), path: path.into() }
    }
}
