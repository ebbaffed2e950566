//! Live plugin instances as the host holds them: each call goes through a poison check, and a
//! `panicked` error poisons the instance so it is never entered again (the adapter on the plugin
//! side does the same; this is the host's own guarantee).

use std::path::PathBuf;

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, ROption, RResult, RStr, RString, Tuple2},
};
use tolk_plugin_api::{
    AudioBlock, AudioFormat, ErrorKind, LogLevel, PluginError, Prompt, PromptRequest, TextEvent,
    ffi::{FfiHost, FfiHost_TO, HostBox, PromptBox, SinkBox, SourceBox, WriterBox},
};

/// The host services behind [`tolk_plugin_api::Host`] for one instance: logs go to tracing,
/// tagged with the instance id.
pub struct HostServices {
    /// The instance id from the config (`stage`, `file:es`).
    pub instance_id: String,
    /// The plugin id, for log lines.
    pub plugin_id: String,
    /// Directory of the config file, for relative paths.
    pub config_dir: PathBuf,
}

impl HostServices {
    /// The ABI object handed to a constructor.
    pub fn into_ffi(self) -> HostBox {
        FfiHost_TO::from_ptr(RArc::new(self), TD_Opaque)
    }
}

impl FfiHost for HostServices {
    fn log(&self, level: LogLevel, message: RStr<'_>) {
        let (id, plugin, msg) = (self.instance_id.as_str(), self.plugin_id.as_str(), message.as_str());
        match level {
            LogLevel::Trace => tracing::trace!(target: "tolk::plugin", instance = id, plugin, "{msg}"),
            LogLevel::Debug => tracing::debug!(target: "tolk::plugin", instance = id, plugin, "{msg}"),
            LogLevel::Info => tracing::info!(target: "tolk::plugin", instance = id, plugin, "{msg}"),
            LogLevel::Warn => tracing::warn!(target: "tolk::plugin", instance = id, plugin, "{msg}"),
            LogLevel::Error => tracing::error!(target: "tolk::plugin", instance = id, plugin, "{msg}"),
        }
    }
    fn instance_id(&self) -> RString {
        self.instance_id.as_str().into()
    }
    fn config_dir(&self) -> RString {
        self.config_dir.to_string_lossy().into_owned().into()
    }
}

/// The poison flag shared by the three instance kinds.
struct Guard<B> {
    inner: B,
    poisoned: Option<PluginError>,
}

impl<B> Guard<B> {
    fn call<R>(&mut self, f: impl FnOnce(&mut B) -> RResult<R, PluginError>) -> Result<R, PluginError> {
        if let Some(p) = &self.poisoned {
            return Err(PluginError::new(
                ErrorKind::POISONED,
                format!("not called: poisoned by an earlier panic ({p})"),
            ));
        }
        let r = f(&mut self.inner).into_result();
        if let Err(e) = &r
            && (e.kind() == ErrorKind::PANICKED || e.kind() == ErrorKind::POISONED)
        {
            self.poisoned = Some(e.clone());
        }
        r
    }
}

/// A source instance.
pub struct SourceInstance {
    guard: Guard<SourceBox>,
    /// The instance id.
    pub id: String,
}

impl SourceInstance {
    pub(crate) fn new(inner: SourceBox, id: String) -> Self {
        SourceInstance { guard: Guard { inner, poisoned: None }, id }
    }
    /// The format the source writes.
    pub fn format(&mut self) -> Result<AudioFormat, PluginError> {
        self.guard.call(|s| s.format())
    }
    /// Starts it writing into `writer`.
    pub fn start(&mut self, writer: WriterBox) -> Result<(), PluginError> {
        self.guard.call(|s| s.start(writer))
    }
    /// Stops it.
    pub fn stop(&mut self) -> Result<(), PluginError> {
        self.guard.call(|s| s.stop())
    }
    /// The panic that poisoned it, if any.
    pub fn poisoned(&self) -> Option<&PluginError> {
        self.guard.poisoned.as_ref()
    }
}

/// A sink instance.
pub struct SinkInstance {
    guard: Guard<SinkBox>,
    /// The instance id.
    pub id: String,
}

impl SinkInstance {
    pub(crate) fn new(inner: SinkBox, id: String) -> Self {
        SinkInstance { guard: Guard { inner, poisoned: None }, id }
    }
    /// The audio format it wants, `None` for text-only sinks. A format outside what the host
    /// converts to (`AudioFormat::validate`) is an error naming it, never fed unconverted audio.
    pub fn format(&mut self) -> Result<Option<AudioFormat>, PluginError> {
        let format = self.guard.call(|s| s.format()).map(ROption::into_option)?;
        if let Some(f) = format
            && let Err(e) = f.validate()
        {
            return Err(PluginError::unsupported(format!("declares an invalid audio format: {e}")));
        }
        Ok(format)
    }
    /// Starts it.
    pub fn start(&mut self) -> Result<(), PluginError> {
        self.guard.call(|s| s.start())
    }
    /// Delivers audio (already in its format).
    pub fn on_audio(&mut self, block: AudioBlock<'_>) -> Result<(), PluginError> {
        self.guard.call(|s| s.on_audio(block))
    }
    /// Delivers a text event.
    pub fn on_text(&mut self, event: TextEvent<'_>) -> Result<(), PluginError> {
        self.guard.call(|s| s.on_text(event))
    }
    /// Flushes it.
    pub fn flush(&mut self) -> Result<(), PluginError> {
        self.guard.call(|s| s.flush())
    }
    /// Stops it.
    pub fn stop(&mut self) -> Result<(), PluginError> {
        self.guard.call(|s| s.stop())
    }
    /// The files it will write: (config key, path), as it declares them.
    pub fn output_files(&mut self) -> Result<Vec<(String, PathBuf)>, PluginError> {
        self.guard
            .call(|s| s.output_files())
            .map(|v| v.into_iter().map(|Tuple2(k, p)| (k.into_string(), PathBuf::from(p.into_string()))).collect())
    }
    /// The panic that poisoned it, if any.
    pub fn poisoned(&self) -> Option<&PluginError> {
        self.guard.poisoned.as_ref()
    }
}

/// A prompt provider instance.
pub struct PromptInstance {
    guard: Guard<PromptBox>,
    /// The instance id.
    pub id: String,
}

impl PromptInstance {
    pub(crate) fn new(inner: PromptBox, id: String) -> Self {
        PromptInstance { guard: Guard { inner, poisoned: None }, id }
    }
    /// The prompt for one route.
    pub fn prompt(&mut self, request: PromptRequest<'_>) -> Result<Prompt, PluginError> {
        self.guard.call(|p| p.prompt(request))
    }
}
