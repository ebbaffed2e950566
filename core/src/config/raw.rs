//! The serde mirror of the TOML file. Nothing outside `config` sees these types: they are
//! validated into [`Config`](super::Config). Unknown keys are rejected everywhere.

use serde::Deserialize;

/// `[engine]`: where the Realtime sessions go.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawEngine {
    pub provider: Option<String>,
    pub engine: Option<String>,
    pub model: Option<String>,
    pub url: Option<String>,
    pub endpoint: Option<String>,
    pub api_key_env: Option<String>,
    pub protocol: Option<String>,
    pub api_version: Option<String>,
    pub mode: Option<String>,
    pub transcription: Option<bool>,
    pub transcription_model: Option<String>,
    pub turn_detection: Option<String>,
    pub vad_threshold: Option<f64>,
    pub prefix_padding_ms: Option<u32>,
    pub silence_duration_ms: Option<u32>,
    pub idle_timeout_ms: Option<u32>,
    pub eagerness: Option<String>,
    pub create_response: Option<bool>,
    pub interrupt_response: Option<bool>,
    pub noise_reduction: Option<String>,
    pub max_output_tokens: Option<u32>,
    pub speed: Option<f64>,
    pub connect_timeout_ms: Option<u64>,
    pub event_timeout_ms: Option<u64>,
    pub ping_interval_ms: Option<u64>,
}

/// `[plugins]`: extra directories to search.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPlugins {
    #[serde(default)]
    pub path: PathList,
}

/// One directory or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PathList {
    One(String),
    Many(Vec<String>),
}

impl Default for PathList {
    fn default() -> Self {
        PathList::Many(Vec::new())
    }
}

/// `[[source]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub id: String,
    pub plugin: String,
    pub language: String,
    #[serde(default)]
    pub config: toml::Table,
}

/// `[[prompt]]` and `[[sink]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlugin {
    pub id: String,
    pub plugin: String,
    #[serde(default)]
    pub config: toml::Table,
}

/// `[[route]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub source: String,
    pub to: Vec<String>,
    pub via: Option<String>,
    pub voice: Option<String>,
    pub prompt: Option<String>,
    #[serde(default)]
    pub sinks: Vec<String>,
    pub on_plugin_failure: Option<String>,
    #[serde(default)]
    pub floor: bool,
    #[serde(default)]
    pub gate_while: Vec<String>,
    pub gate_release_ms: Option<u64>,
}
