//! Adapters from the author traits to their `Ffi*` mirrors, the panic guard, and the pieces
//! the export macro assembles into a library's root module.
//!
//! Every call into author code runs inside [`guard`]: a panic becomes a `panicked` error
//! carrying the panic message, the adapter marks itself poisoned, and every later call returns
//! `poisoned` without entering author code again. abi_stable would otherwise abort the process.

use std::{
    any::Any,
    panic::{AssertUnwindSafe, catch_unwind},
};

use abi_stable::{
    library::{__call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult},
    prefix_type::PrefixTypeTrait,
    sabi_trait::TD_Opaque,
    std_types::{RErr, ROk, ROption, RResult, RStr, RString, RVec, Tuple2},
};

use super::{
    FfiPrompt, FfiPrompt_TO, FfiSink, FfiSink_TO, FfiSource, FfiSource_TO, HostBox, PluginLib, PluginLibRef, PromptBox,
    SinkBox, SourceBox, WriterBox,
};
use crate::{
    AudioBlock, AudioFormat, AudioSource, AudioWriter, Descriptor, ErrorKind, Host, OutputSink, PluginError,
    PluginKind, Prompt, PromptProvider, PromptRequest, TextEvent, config::parse_config, device::DeviceInfo,
};

/// Text of a panic payload (`&str` or `String`), or a placeholder.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Runs `f`, turning a panic into a `panicked` error.
pub fn guard<T>(what: &str, f: impl FnOnce() -> Result<T, PluginError>) -> RResult<T, PluginError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => ROk(v),
        Ok(Err(e)) => RErr(e),
        Err(payload) => {
            RErr(PluginError::new(ErrorKind::PANICKED, format!("panicked in {what}: {}", panic_message(&*payload))))
        }
    }
}

/// The state every adapter shares: the author's value and the poison flag.
struct Guarded<T> {
    inner: Option<T>,
    poisoned: Option<PluginError>,
}

impl<T> Guarded<T> {
    fn new(value: T) -> Self {
        Guarded { inner: Some(value), poisoned: None }
    }

    fn call<R>(&mut self, what: &str, f: impl FnOnce(&mut T) -> Result<R, PluginError>) -> RResult<R, PluginError> {
        if let Some(p) = &self.poisoned {
            return RErr(PluginError::new(ErrorKind::POISONED, format!("poisoned by an earlier panic: {p}")));
        }
        let Some(inner) = self.inner.as_mut() else {
            return RErr(PluginError::new(ErrorKind::POISONED, "instance is gone"));
        };
        let out = guard(what, || f(inner));
        if let RErr(e) = &out
            && e.kind() == ErrorKind::PANICKED
        {
            self.poisoned = Some(e.clone());
        }
        out
    }

    fn call_ref<R>(&self, what: &str, f: impl FnOnce(&T) -> Result<R, PluginError>) -> RResult<R, PluginError> {
        if let Some(p) = &self.poisoned {
            return RErr(PluginError::new(ErrorKind::POISONED, format!("poisoned by an earlier panic: {p}")));
        }
        match self.inner.as_ref() {
            Some(inner) => guard(what, || f(inner)),
            None => RErr(PluginError::new(ErrorKind::POISONED, "instance is gone")),
        }
    }
}

impl<T> Drop for Guarded<T> {
    fn drop(&mut self) {
        // A panic in the author's Drop must not unwind into the host either.
        let inner = self.inner.take();
        let _ = catch_unwind(AssertUnwindSafe(move || drop(inner)));
    }
}

/// Wraps an [`AudioSource`].
pub struct SourceAdapter<T: AudioSource>(Guarded<T>);

impl<T: AudioSource> FfiSource for SourceAdapter<T> {
    fn format(&self) -> RResult<AudioFormat, PluginError> {
        self.0.call_ref("format", |s| Ok(s.format()))
    }
    fn start(&mut self, writer: WriterBox) -> RResult<(), PluginError> {
        self.0.call("start", |s| {
            let format = s.format();
            s.start(AudioWriter::from_ffi(writer, format))
        })
    }
    fn stop(&mut self) -> RResult<(), PluginError> {
        self.0.call("stop", |s| s.stop())
    }
}

/// Wraps a [`PromptProvider`].
pub struct PromptAdapter<T: PromptProvider>(Guarded<T>);

impl<T: PromptProvider> FfiPrompt for PromptAdapter<T> {
    fn prompt(&mut self, request: PromptRequest<'_>) -> RResult<Prompt, PluginError> {
        self.0.call("prompt", |p| p.prompt(&request))
    }
}

/// Wraps an [`OutputSink`].
pub struct SinkAdapter<T: OutputSink>(Guarded<T>);

impl<T: OutputSink> FfiSink for SinkAdapter<T> {
    fn format(&self) -> RResult<ROption<AudioFormat>, PluginError> {
        self.0.call_ref("format", |s| Ok(s.format().into()))
    }
    fn start(&mut self) -> RResult<(), PluginError> {
        self.0.call("start", |s| s.start())
    }
    fn on_audio(&mut self, block: AudioBlock<'_>) -> RResult<(), PluginError> {
        self.0.call("on_audio", |s| s.on_audio(&block))
    }
    fn on_text(&mut self, event: TextEvent<'_>) -> RResult<(), PluginError> {
        self.0.call("on_text", |s| s.on_text(&event))
    }
    fn flush(&mut self) -> RResult<(), PluginError> {
        self.0.call("flush", |s| s.flush())
    }
    fn stop(&mut self) -> RResult<(), PluginError> {
        self.0.call("stop", |s| s.stop())
    }
    fn output_files(&self) -> RResult<RVec<Tuple2<RString, RString>>, PluginError> {
        self.0.call_ref("output_files", |s| {
            Ok(s.output_files()
                .into_iter()
                .map(|o| Tuple2(RString::from(o.key), RString::from(o.path.to_string_lossy().into_owned())))
                .collect())
        })
    }
}

/// Builds a source of type `T` from config text: the in-library half of `new_source`.
pub fn new_source<T: AudioSource>(config: &str, host: HostBox) -> Result<SourceBox, PluginError> {
    let config = parse_config::<T::Config>(config)?;
    let value = T::new(config, &Host::from_ffi(host))?;
    Ok(FfiSource_TO::from_value(SourceAdapter(Guarded::new(value)), TD_Opaque))
}

/// Builds a prompt provider of type `T` from config text.
pub fn new_prompt<T: PromptProvider>(config: &str, host: HostBox) -> Result<PromptBox, PluginError> {
    let config = parse_config::<T::Config>(config)?;
    let value = T::new(config, &Host::from_ffi(host))?;
    Ok(FfiPrompt_TO::from_value(PromptAdapter(Guarded::new(value)), TD_Opaque))
}

/// Builds a sink of type `T` from config text.
pub fn new_sink<T: OutputSink>(config: &str, host: HostBox) -> Result<SinkBox, PluginError> {
    let config = parse_config::<T::Config>(config)?;
    let value = T::new(config, &Host::from_ffi(host))?;
    Ok(FfiSink_TO::from_value(SinkAdapter(Guarded::new(value)), TD_Opaque))
}

/// The descriptor of a source type.
pub fn source_descriptor<T: AudioSource>() -> Descriptor {
    Descriptor::new(T::ID, PluginKind::Source, T::NAME, T::VERSION, T::DESCRIPTION, T::EXAMPLE_CONFIG, T::CAPABILITIES)
}

/// The descriptor of a prompt provider type.
pub fn prompt_descriptor<T: PromptProvider>() -> Descriptor {
    Descriptor::new(T::ID, PluginKind::Prompt, T::NAME, T::VERSION, T::DESCRIPTION, T::EXAMPLE_CONFIG, &[])
}

/// The descriptor of a sink type.
pub fn sink_descriptor<T: OutputSink>() -> Descriptor {
    Descriptor::new(T::ID, PluginKind::Sink, T::NAME, T::VERSION, T::DESCRIPTION, T::EXAMPLE_CONFIG, T::CAPABILITIES)
}

/// What the export macro implements for a library: the list of its plugins and a dispatch
/// from id to constructor. `None` means "no plugin of this kind with this id".
pub trait Exports: 'static {
    /// Every plugin of the library.
    fn descriptors() -> Vec<Descriptor>;
    /// Constructs the source with `id`.
    fn new_source(id: &str, config: &str, host: HostBox) -> Option<Result<SourceBox, PluginError>>;
    /// Constructs the prompt provider with `id`.
    fn new_prompt(id: &str, config: &str, host: HostBox) -> Option<Result<PromptBox, PluginError>>;
    /// Constructs the sink with `id`.
    fn new_sink(id: &str, config: &str, host: HostBox) -> Option<Result<SinkBox, PluginError>>;
    /// The devices of the source or sink with `id` (`tolk.devices/1`).
    fn devices(kind: PluginKind, id: &str) -> Option<Result<Vec<DeviceInfo>, PluginError>>;
}

fn unknown(kind: PluginKind, id: &str) -> PluginError {
    PluginError::new(ErrorKind::UNKNOWN_PLUGIN, format!("this library has no {kind} with id \"{id}\""))
}

extern "C" fn ffi_descriptors<E: Exports>() -> RResult<RVec<Descriptor>, PluginError> {
    guard("descriptors", || Ok(E::descriptors().into()))
}

extern "C" fn ffi_new_source<E: Exports>(
    id: RStr<'_>,
    config: RStr<'_>,
    host: HostBox,
) -> RResult<SourceBox, PluginError> {
    guard("new", || {
        E::new_source(id.as_str(), config.as_str(), host)
            .unwrap_or_else(|| Err(unknown(PluginKind::Source, id.as_str())))
    })
}

extern "C" fn ffi_new_prompt<E: Exports>(
    id: RStr<'_>,
    config: RStr<'_>,
    host: HostBox,
) -> RResult<PromptBox, PluginError> {
    guard("new", || {
        E::new_prompt(id.as_str(), config.as_str(), host)
            .unwrap_or_else(|| Err(unknown(PluginKind::Prompt, id.as_str())))
    })
}

extern "C" fn ffi_new_sink<E: Exports>(id: RStr<'_>, config: RStr<'_>, host: HostBox) -> RResult<SinkBox, PluginError> {
    guard("new", || {
        E::new_sink(id.as_str(), config.as_str(), host).unwrap_or_else(|| Err(unknown(PluginKind::Sink, id.as_str())))
    })
}

extern "C" fn ffi_devices<E: Exports>(kind: PluginKind, id: RStr<'_>) -> RResult<RVec<DeviceInfo>, PluginError> {
    guard("devices", || match E::devices(kind, id.as_str()) {
        Some(r) => r.map(RVec::from),
        None => Err(unknown(kind, id.as_str())),
    })
}

/// The root module for the library whose plugins `E` lists.
pub fn root_module<E: Exports>() -> PluginLibRef {
    PluginLib {
        descriptors: ffi_descriptors::<E>,
        new_source: ffi_new_source::<E>,
        new_prompt: ffi_new_prompt::<E>,
        new_sink: ffi_new_sink::<E>,
        devices: ffi_devices::<E>,
    }
    .leak_into_prefix()
}

extern "C" fn root_loader<E: Exports>() -> RootModuleResult {
    __call_root_module_loader(root_module::<E>)
}

/// abi_stable's library header for the library whose plugins `E` lists. The export macro
/// stores it under abi_stable's fixed symbol name ([`ROOT_MODULE_SYMBOL`]).
pub const fn lib_header<E: Exports>() -> LibHeader {
    // SAFETY: `root_loader::<E>` returns the module built by `root_module::<E>`, a
    // `PluginLibRef`, which is the type named here; this is what abi_stable's own
    // `#[export_root_module]` expands to.
    unsafe { LibHeader::from_constructor::<PluginLibRef>(root_loader::<E>, CheckTypeLayout::Yes) }
}

/// The symbol under which abi_stable 0.11 looks for the library header. Spelled out because
/// the export macro must name the static; a unit test ties it to abi_stable's constant.
pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_module_symbol_matches_abi_stable() {
        assert_eq!(ROOT_MODULE_SYMBOL, abi_stable::library::ROOT_MODULE_LOADER_NAME);
    }

    #[test]
    fn guard_turns_panics_into_errors() {
        let r: RResult<(), PluginError> = guard("start", || panic!("boom {}", 7));
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PANICKED);
        assert_eq!(e.message(), "panicked in start: boom 7");
    }
}
