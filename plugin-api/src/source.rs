//! [`AudioSource`]: where audio comes from (a file, a microphone, a network feed).

use serde::de::DeserializeOwned;

use crate::{AudioFormat, AudioWriter, Host, PluginError, device::DeviceInfo};

/// A plugin that produces audio and pushes it to the host.
///
/// # Push model
///
/// The host does not poll a source. At [`start`](AudioSource::start) the source receives an
/// [`AudioWriter`] and writes interleaved samples into it **from a thread it owns** (a file
/// reader's pacing loop, a sound card's callback), because the source knows when its audio
/// is ready and the host does not. The writer never blocks: it returns how many frames it
/// accepted, and a live source simply drops what did not fit (the host counts it). A file
/// source that must not lose audio may wait with [`AudioWriter::wait_writable`].
///
/// When a finite source runs out (end of file), it calls
/// [`AudioWriter::end_of_stream`]; a source that fails on its own thread calls
/// [`AudioWriter::fail`]. A live source never ends by itself.
///
/// # Lifecycle
///
/// `new` → `format` → `start` → … → `stop` → (`start` → `stop`)* → drop. `stop` and drop must
/// also work when `start` was never called. Every call comes from one host thread per
/// instance (not necessarily the thread that called `new`); panics are caught, reported as
/// `panicked`, and the instance is never called again.
///
/// See `plugins/source-tone` in the tolk repository for the smallest complete example.
pub trait AudioSource: Sized + Send + 'static {
    /// Stable reverse-DNS id, lower case: `com.acme.ndi-in`. `tolk.` is reserved for built-ins.
    const ID: &'static str;
    /// Display name.
    const NAME: &'static str;
    /// The plugin's version; write `env!("CARGO_PKG_VERSION")`.
    const VERSION: &'static str;
    /// One-line description for `tolk plugins list`.
    const DESCRIPTION: &'static str = "";
    /// A config table body (TOML) this plugin accepts; docs and the conformance kit use it.
    const EXAMPLE_CONFIG: &'static str = "";

    /// Optional capabilities, CLAP-style ids (`vendor.name/REV`), written into the descriptor.
    /// Built-in ones: [`device::CAPABILITY`](crate::device::CAPABILITY) (implement
    /// [`devices`](Self::devices) too).
    const CAPABILITIES: &'static [&'static str] = &[];

    /// The plugin's own config table, deserialized from the `[source.config]` table. Use
    /// `#[serde(deny_unknown_fields)]` so a misspelt key is reported, not ignored.
    type Config: DeserializeOwned;

    /// Creates the source from its config. Check everything here (files exist, devices are
    /// there) so that a bad config fails at `tolk check`, not in the middle of an event.
    ///
    /// `[control]` may block briefly (≤ 2 s); no audio flows yet.
    fn new(config: Self::Config, host: &Host) -> Result<Self, PluginError>;

    /// The format of the samples this source will write. Called after `new` and before each
    /// `start`; must not change while started.
    ///
    /// `[control]` must not block.
    fn format(&self) -> AudioFormat;

    /// Starts producing audio into `writer`, from a thread the source owns. Return as soon as
    /// production is under way; do not produce audio on the calling thread.
    ///
    /// `[control]` may block briefly (≤ 2 s), e.g. to open a device.
    fn start(&mut self, writer: AudioWriter) -> Result<(), PluginError>;

    /// Stops producing audio and joins the source's threads. After it returns, the source
    /// must not touch the writer again. Called also without a prior `start`.
    ///
    /// `[control]` may block for as long as joining takes (≤ 2 s).
    fn stop(&mut self) -> Result<(), PluginError> {
        Ok(())
    }

    /// The input devices this plugin can open, for `tolk devices`: only for plugins that list
    /// [`device::CAPABILITY`](crate::device::CAPABILITY) in [`CAPABILITIES`](Self::CAPABILITIES).
    /// No instance is needed; the names are what `device = "…"` in the config accepts.
    ///
    /// `[control]` may block briefly (≤ 2 s) while the backend enumerates.
    fn devices() -> Result<Vec<DeviceInfo>, PluginError> {
        Err(PluginError::unsupported(format!("{} does not list devices", Self::ID)))
    }
}
