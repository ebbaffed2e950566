//! Configuration: TOML text → raw serde structs (`raw`, unknown keys rejected) → a validated,
//! typed [`Config`] (`validate`). Every problem becomes a [`ConfigError`] — one line with the
//! file and the key path — and all of them are collected and reported together
//! (`configs/x.toml: sink[1].plugin: no sink plugin with id "tolk.wavv" (did you mean
//! "tolk.wav"?)`). Nothing past this module touches raw TOML.
//!
//! The schema is documented in `configs/README.md`.

/// Language tags: the shared parser of `tolk-plugin-api`, so plugins read tags as the host does.
pub use tolk_plugin_api::lang;
pub mod listen;
pub mod outputs;
mod raw;
pub mod run;
mod validate;

use std::{
    fmt,
    path::{Path, PathBuf},
};

pub use validate::{PluginCheck, check_plugins, parse, parse_str};

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file as the user named it.
    pub file: String,
    /// Key path (`sink[1].plugin`); empty for file-level problems.
    pub key: String,
    /// What is wrong, lower case, one line.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.message)
        }
    }
}

/// Which Realtime service the sessions use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// tolk's own server (`tolk serve`), no account needed.
    Local,
    /// OpenAI Realtime, prompted `gpt-realtime*` models.
    OpenAi,
    /// OpenAI Realtime Translation API.
    OpenAiTranslate,
    /// Azure OpenAI Realtime (GA path).
    Azure,
}

impl Provider {
    /// Config spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Provider::Local => "local",
            Provider::OpenAi => "openai",
            Provider::OpenAiTranslate => "openai-translate",
            Provider::Azure => "azure",
        }
    }
}

/// `[engine]`, validated.
#[derive(Debug, Clone)]
pub struct Engine {
    /// The service.
    pub provider: Provider,
    /// With `provider = "local"`: the engine of the in-process `tolk serve`, `test` (the
    /// default: tones and echoes, no translation) or `offline` (Whisper + apertium + espeak-ng,
    /// cargo feature `tolk-core/offline`).
    pub local_engine: String,
    /// Model (or Azure deployment) name.
    pub model: String,
    /// Endpoint URL override.
    pub url: Option<String>,
    /// Azure resource endpoint (`https://NAME.openai.azure.com`).
    pub endpoint: Option<String>,
    /// Name of the environment variable holding the API key (never the key itself).
    pub api_key_env: Option<String>,
    /// Wire protocol: GA, legacy preview, or the Translation API (implied by `openai-translate`).
    pub protocol: Protocol,
    /// Azure preview `api-version` (legacy protocol on Azure only).
    pub api_version: String,
    /// Interpretation (one-way) or conversation (barge-in) behaviour.
    pub mode: Mode,
    /// Input transcription model (source captions); `None` turns transcription off.
    pub transcription_model: Option<String>,
    /// Turn detection (VAD) sent in `session.update`.
    pub turn_detection: TurnDetection,
    /// `near_field` / `far_field` input noise reduction; `None` = off.
    pub noise_reduction: Option<String>,
    /// Cap on output tokens per response; `None` = the service default (`inf`).
    pub max_output_tokens: Option<u32>,
    /// Output speech speed 0.25–1.5; `None` = the service default (1.0).
    pub speed: Option<f64>,
    /// How long connecting plus session setup may take.
    pub connect_timeout_ms: u64,
    /// A session owing an event (an answer to a commit, a running response's next delta, the
    /// turn of speech it was sent) that sends nothing for this long is stalled: dropped and
    /// reconnected. Also how long a ping may go unanswered.
    pub event_timeout_ms: u64,
    /// After this long without any frame from the service, the session pings it (0 = never).
    pub ping_interval_ms: u64,
}

impl Default for Engine {
    /// The local engine with every session default.
    fn default() -> Self {
        Engine {
            provider: Provider::Local,
            local_engine: "test".into(),
            model: "gpt-realtime".into(),
            url: None,
            endpoint: None,
            api_key_env: None,
            protocol: Protocol::Ga,
            api_version: DEFAULT_AZURE_PREVIEW_API_VERSION.into(),
            mode: Mode::Interpret,
            transcription_model: Some(DEFAULT_TRANSCRIPTION_MODEL.into()),
            turn_detection: TurnDetection::ServerVad {
                threshold: 0.5,
                prefix_padding_ms: 300,
                silence_duration_ms: 500,
                idle_timeout_ms: None,
                create_response: true,
                interrupt_response: false,
            },
            noise_reduction: None,
            max_output_tokens: None,
            speed: None,
            connect_timeout_ms: 10_000,
            event_timeout_ms: 15_000,
            ping_interval_ms: 5_000,
        }
    }
}

/// The default input transcription model (GA and local).
pub const DEFAULT_TRANSCRIPTION_MODEL: &str = "gpt-4o-mini-transcribe";
/// The default `api-version` of the Azure preview (legacy) path.
pub const DEFAULT_AZURE_PREVIEW_API_VERSION: &str = "2025-04-01-preview";

/// The wire protocol of a Realtime session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The GA Realtime protocol (OpenAI and Azure `/openai/v1/realtime`).
    Ga,
    /// The retired 2024-10-01 preview shape (`OpenAI-Beta: realtime=v1`, Azure `api-version`).
    Legacy,
    /// The Realtime Translation API (`/v1/realtime/translations`): continuous, no turns.
    Translation,
}

impl Protocol {
    /// Config spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Ga => "ga",
            Protocol::Legacy => "legacy",
            Protocol::Translation => "translation",
        }
    }
}

/// How a session treats the speaker talking over the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// One-way interpretation: the translation is never cut off (`interrupt_response: false`).
    #[default]
    Interpret,
    /// Two-way room use: speech during playback stops, truncates and cancels the answer.
    Conversation,
}

impl Mode {
    /// Config spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Interpret => "interpret",
            Mode::Conversation => "conversation",
        }
    }
}

/// Turn detection as sent to the service.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnDetection {
    /// No VAD: the client commits and asks for responses itself.
    None,
    /// Energy-based server VAD.
    ServerVad {
        /// Activation threshold 0.0–1.0.
        threshold: f64,
        /// Audio kept before detected speech.
        prefix_padding_ms: u32,
        /// Silence that ends a turn.
        silence_duration_ms: u32,
        /// Commit after this much idle time (5000–30000 ms, GA only).
        idle_timeout_ms: Option<u32>,
        /// Start a response at the end of each turn.
        create_response: bool,
        /// Cancel the running response when speech starts.
        interrupt_response: bool,
    },
    /// Semantic VAD (end of turn judged by a model).
    SemanticVad {
        /// `low`, `medium`, `high` or `auto`.
        eagerness: String,
        /// Start a response at the end of each turn.
        create_response: bool,
        /// Cancel the running response when speech starts.
        interrupt_response: bool,
    },
}

/// What a route does when one of its plugins fails or panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Stop this route; the others keep running.
    StopRoute,
    /// Recreate the failed plugin instance and carry on.
    Restart,
    /// Stop the whole run with exit status 1.
    Exit,
}

/// A `[[source]]`.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// Unique id.
    pub id: String,
    /// Plugin id.
    pub plugin: String,
    /// The speaker's language (canonical BCP-47).
    pub language: String,
    /// The plugin's own table as TOML text.
    pub config: String,
    /// Key path of this entry (`source[0]`).
    pub key: String,
}

/// A `[[prompt]]` or `[[sink]]`.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// Unique id within its kind.
    pub id: String,
    /// Plugin id.
    pub plugin: String,
    /// The plugin's own table.
    pub config: toml::Table,
    /// Key path of this entry (`sink[1]`).
    pub key: String,
}

impl PluginSpec {
    /// True when the config mentions `{lang}`: one instance per target language.
    pub fn per_language(&self) -> bool {
        self.config_text(None).contains("{lang}")
    }

    /// The config as TOML text, with `{lang}` replaced when `lang` is given.
    pub fn config_text(&self, lang: Option<&str>) -> String {
        let text = toml::to_string(&self.config).unwrap_or_default();
        match lang {
            Some(l) => text.replace("{lang}", l),
            None => text,
        }
    }
}

/// The pseudo-language of a floor route in `to`: the original audio and source transcript,
/// untranslated, with no Realtime session (`to = ["floor", "es"]`).
pub const FLOOR: &str = "floor";

/// Default of `gate_release_ms`: room reverberation plus device latency.
pub const GATE_RELEASE_MS: u64 = 300;

/// A `[[route]]` (before expansion into one route per target language).
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// Source id.
    pub source: String,
    /// Target languages (canonical BCP-47).
    pub to: Vec<String>,
    /// Relay: the pivot language (canonical) whose translation of `source` (another route's
    /// output) is this route's input, instead of the source itself.
    pub via: Option<String>,
    /// Voice for the translated speech.
    pub voice: Option<String>,
    /// Prompt provider id.
    pub prompt: Option<String>,
    /// Sink ids.
    pub sinks: Vec<String>,
    /// Failure policy.
    pub on_plugin_failure: FailurePolicy,
    /// Also deliver the source's own audio to the route's sinks as floor blocks (translated
    /// routes), for sinks that mix it under the translation.
    pub floor: bool,
    /// Sink ids or route ids (`source:lang`) whose playback of translation closes this route's
    /// input (echo safety in rooms).
    pub gate_while: Vec<String>,
    /// How long the gate stays closed after that playback ends (ms).
    pub gate_release_ms: u64,
    /// Key path (`route[0]`).
    pub key: String,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file as the user named it (used in messages).
    pub file: String,
    /// Its directory: relative paths in plugin configs resolve against it.
    pub dir: PathBuf,
    /// `[engine]`.
    pub engine: Engine,
    /// `[plugins] path`, resolved against `dir`.
    pub plugin_dirs: Vec<PathBuf>,
    /// `[[source]]`s.
    pub sources: Vec<SourceSpec>,
    /// `[[prompt]]`s.
    pub prompts: Vec<PluginSpec>,
    /// `[[sink]]`s.
    pub sinks: Vec<PluginSpec>,
    /// `[[route]]`s.
    pub routes: Vec<RouteSpec>,
    /// `[run]`: delivery, lanes, long-event knobs, prices, budget.
    pub run: run::RunSettings,
    /// `[listen]`: the listener web app, when the section is there.
    pub listen: Option<listen::ListenSettings>,
    /// Things that are allowed but probably not meant (an unused sink).
    pub warnings: Vec<String>,
}

impl Config {
    /// The target languages of every route that uses sink `id`.
    pub fn sink_languages(&self, id: &str) -> Vec<String> {
        let mut langs: Vec<String> =
            self.routes.iter().filter(|r| r.sinks.iter().any(|s| s == id)).flat_map(|r| r.to.iter().cloned()).collect();
        langs.sort();
        langs.dedup();
        langs
    }

    /// The source with `id`.
    pub fn source(&self, id: &str) -> Option<&SourceSpec> {
        self.sources.iter().find(|s| s.id == id)
    }
}

/// The directory of a config file, for relative paths.
pub fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
