//! [`PromptProvider`]: how a route's interpreter is instructed.

use serde::de::DeserializeOwned;

use crate::{Host, PluginError, Prompt, PromptRequest};

/// A plugin that writes the instructions for a route's Realtime session: the language pair,
/// the register, the terminology, the names that must stay as they are.
///
/// The host asks once when a session starts and again for every new session of the same route
/// (a session rotated before it expires, a reconnect), so a provider may return fresher text
/// each time (say, a glossary fetched from a terminology service).
///
/// Calls come from the host's control thread, never from an audio thread; a provider may
/// block (e.g. on a network fetch) for up to 2 s per call.
///
/// # The target language line
///
/// tolk's own engine (`tolk serve`, and `provider = "local"` in a config: the demo, the tests,
/// anyone trying tolk without a key) answers in the language it reads from the instructions:
/// a line `Target language: <tag>` (a BCP-47 tag, e.g. `Target language: pt-BR`) wins; without
/// one, the first "into <Name>" with a known English language name ("…from English into
/// Spanish…"); without either, `und`, and every language of such a run looks alike. Put a line
/// `Target language: <tag>` with `request.target_language()` in every prompt you return (the built-in
/// `tolk.interpreter` does). The real services ignore the line's form and simply read it as
/// part of the instructions.
pub trait PromptProvider: Sized + Send + 'static {
    /// Stable reverse-DNS id, lower case. `tolk.` is reserved for built-ins.
    const ID: &'static str;
    /// Display name.
    const NAME: &'static str;
    /// The plugin's version; write `env!("CARGO_PKG_VERSION")`.
    const VERSION: &'static str;
    /// One-line description for `tolk plugins list`.
    const DESCRIPTION: &'static str = "";
    /// A config table body (TOML) this plugin accepts.
    const EXAMPLE_CONFIG: &'static str = "";

    /// The plugin's own config table (`[prompt.config]`); use `#[serde(deny_unknown_fields)]`.
    type Config: DeserializeOwned;

    /// Creates the provider from its config.
    ///
    /// `[control]` may block ≤ 2 s.
    fn new(config: Self::Config, host: &Host) -> Result<Self, PluginError>;

    /// The prompt for one route's session.
    ///
    /// `[control]` may block ≤ 2 s; called at every session start of every route that uses
    /// this instance.
    fn prompt(&mut self, request: &PromptRequest<'_>) -> Result<Prompt, PluginError>;
}
