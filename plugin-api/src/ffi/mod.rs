//! The ABI itself. Authors never use this module; the export macro, the host and the
//! conformance kit do. It is the only place in the crate with `unsafe` and `extern`.
//!
//! - [`header`]: tolk's own version header, read before anything of abi_stable's.
//! - the `#[sabi_trait]` mirrors of the author traits (`Ffi*`), and of the host services;
//! - [`PluginLib`], the root module every plugin library exports;
//! - [`adapters`]: wrap an author type into its `Ffi*` object, catching every panic.

// NOTE: abi_stable's derive and sabi_trait macros generate items that trip these lints on
// current rustc; they are allowed here only, so `-D warnings` stays on everywhere else.
#![allow(non_local_definitions, non_camel_case_types, missing_docs, clippy::all)]
#![allow(unsafe_code)]

pub mod adapters;
pub mod header;

pub use abi_stable;

use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RArc, RBox, ROk, ROption, RResult, RStr, RString, RVec, Tuple2},
};

use crate::{
    AudioBlock, AudioFormat, Descriptor, LogLevel, PluginError, PluginKind, Prompt, PromptRequest, TextEvent,
    device::DeviceInfo,
};

/// Host services lent to one plugin instance (implemented by the host).
#[sabi_trait]
pub trait FfiHost: Send + Sync {
    fn log(&self, level: LogLevel, message: RStr<'_>);
    fn instance_id(&self) -> RString;
    #[sabi(last_prefix_field)]
    fn config_dir(&self) -> RString;
}

/// Where a source writes (implemented by the host).
#[sabi_trait]
pub trait FfiWriter: Send + Sync {
    fn write(&self, block: AudioBlock<'_>) -> u64;
    fn free_frames(&self) -> u64;
    fn wait_writable(&self, timeout_ms: u64) -> bool;
    fn is_closed(&self) -> bool;
    fn end_of_stream(&self);
    #[sabi(last_prefix_field)]
    fn fail(&self, error: PluginError);
}

/// Mirror of [`AudioSource`](crate::AudioSource).
#[sabi_trait]
pub trait FfiSource: Send {
    fn format(&self) -> RResult<AudioFormat, PluginError>;
    fn start(&mut self, writer: WriterBox) -> RResult<(), PluginError>;
    #[sabi(last_prefix_field)]
    fn stop(&mut self) -> RResult<(), PluginError>;
}

/// Mirror of [`PromptProvider`](crate::PromptProvider).
#[sabi_trait]
pub trait FfiPrompt: Send {
    #[sabi(last_prefix_field)]
    fn prompt(&mut self, request: PromptRequest<'_>) -> RResult<Prompt, PluginError>;
}

/// Mirror of [`OutputSink`](crate::OutputSink).
#[sabi_trait]
pub trait FfiSink: Send {
    fn format(&self) -> RResult<ROption<AudioFormat>, PluginError>;
    fn start(&mut self) -> RResult<(), PluginError>;
    fn on_audio(&mut self, block: AudioBlock<'_>) -> RResult<(), PluginError>;
    fn on_text(&mut self, event: TextEvent<'_>) -> RResult<(), PluginError>;
    fn flush(&mut self) -> RResult<(), PluginError>;
    #[sabi(last_prefix_field)]
    fn stop(&mut self) -> RResult<(), PluginError>;
    /// [`OutputSink::output_files`](crate::OutputSink::output_files): (config key, path) pairs. After the
    /// last prefix field, with a default body, so the host can call it on any instance.
    fn output_files(&self) -> RResult<RVec<Tuple2<RString, RString>>, PluginError> {
        ROk(RVec::new())
    }
}

/// A host services object as passed to a plugin.
pub type HostBox = FfiHost_TO<'static, RArc<()>>;
/// A writer object as passed to a source.
pub type WriterBox = FfiWriter_TO<'static, RArc<()>>;
/// A source instance owned by the host.
pub type SourceBox = FfiSource_TO<'static, RBox<()>>;
/// A prompt provider instance owned by the host.
pub type PromptBox = FfiPrompt_TO<'static, RBox<()>>;
/// A sink instance owned by the host.
pub type SinkBox = FfiSink_TO<'static, RBox<()>>;

/// The root module of a plugin library: its descriptors and one constructor per kind.
///
/// Evolution: fields are only ever appended after the last one, and each appended field gets
/// a default for libraries that lack it (see `plugin-api/UPGRADING.md`).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginLibRef)))]
#[sabi(missing_field(panic))]
pub struct PluginLib {
    pub descriptors: extern "C" fn() -> RResult<RVec<Descriptor>, PluginError>,
    /// (plugin id, config TOML text, host) → instance; the same shape for the three kinds.
    pub new_source: extern "C" fn(id: RStr<'_>, config: RStr<'_>, host: HostBox) -> RResult<SourceBox, PluginError>,
    pub new_prompt: extern "C" fn(id: RStr<'_>, config: RStr<'_>, host: HostBox) -> RResult<PromptBox, PluginError>,
    #[sabi(last_prefix_field)]
    pub new_sink: extern "C" fn(id: RStr<'_>, config: RStr<'_>, host: HostBox) -> RResult<SinkBox, PluginError>,
    /// (kind, plugin id) → the devices it can open (capability `tolk.devices/1`). Appended
    /// after the last prefix field, so the host reads it as optional (`devices() -> Option`).
    #[sabi(missing_field(option))]
    pub devices: extern "C" fn(kind: PluginKind, id: RStr<'_>) -> RResult<RVec<DeviceInfo>, PluginError>,
}

impl RootModule for PluginLibRef {
    declare_root_module_statics! {PluginLibRef}
    const BASE_NAME: &'static str = "tolk_plugin";
    const NAME: &'static str = "tolk plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
