//! # tolk-plugin-api
//!
//! The only crate a tolk plugin depends on. A plugin is a Rust `cdylib` that implements one or
//! more of three plain-Rust traits and ends with one [`export_plugins!`] line:
//!
//! - [`AudioSource`] — produces audio (a WAV file, a microphone, a network feed);
//! - [`PromptProvider`] — writes the interpreter's instructions for a language pair;
//! - [`OutputSink`] — consumes translated audio and captions (files, speakers, platforms).
//!
//! tolk loads plugins at run time from shared libraries, through a stable ABI built on
//! [abi_stable]: a plugin built once keeps working with every tolk that speaks the same ABI
//! major version (see [`ABI_MAJOR`], `UPGRADING.md`). You never write `unsafe`, `extern`, or
//! abi_stable types: the traits speak `&str`, `&[i16]`, `Result`.
//!
//! ## The design decision: sources push
//!
//! A source is handed an [`AudioWriter`] at `start` and writes into it from a thread it owns.
//! Pull (the host asking "give me 20 ms") cannot work for a sound card, whose callback decides
//! when audio exists, nor for a network feed; push fits both and a file reader too. The writer
//! never blocks: it reports how much it took, and the host's lanes behind it are bounded, so a
//! slow consumer can never stall a source's real-time thread.
//!
//! Sinks are pushed to as well (`on_audio`, `on_text`), each on its own host thread behind a
//! bounded lane, so a slow sink only ever delays itself.
//!
//! ## Threads and blocking
//!
//! Every trait method's doc ends with a tag: `[control]` calls come from the host's control
//! thread for the instance and may block briefly (≤ 2 s); `[sink thread]` calls come from the
//! sink's own host thread; `[source thread]` means the source's own thread. Plugin code never
//! runs inside the host's async runtime. A plugin that needs async owns its own runtime.
//!
//! ## Panics
//!
//! Every call into plugin code is wrapped in `catch_unwind` on the plugin's side of the
//! boundary. A panic becomes an error of kind [`ErrorKind::PANICKED`]; the instance is then
//! poisoned (never called again) and the host applies the route's failure policy.
//!
//! ## Layout
//!
//! - [`types`]: formats, audio blocks, text events, descriptors, errors;
//! - [`source`], [`prompt`], [`sink`]: the three author traits;
//! - [`host`]: [`Host`] and [`AudioWriter`], implemented by tolk;
//! - [`config`]: config parsing with key-naming errors;
//! - [`lang`]: language tags, parsed exactly as the host parses them;
//! - [`dsp`]: real-time-safe helpers for sinks (the floor [`dsp::Ducker`]);
//! - [`device`]: the optional device-listing capability (`tolk.devices/1`);
//! - `testing` (feature `testing`): the conformance kit;
//! - `ffi` (hidden): the ABI mirror traits, root module and adapters.
//!
//! Start with `plugin-api/README.md` ("write a plugin in ten minutes") and the template plugin
//! `plugins/source-tone`.

#![deny(missing_docs)]

pub mod config;
pub mod device;
pub mod dsp;
mod export;
#[doc(hidden)]
pub mod ffi;
pub mod host;
pub mod lang;
pub mod prompt;
pub mod sink;
pub mod source;
#[cfg(feature = "testing")]
pub mod testing;
pub mod types;

pub use config::parse_config;
pub use host::{AudioWriter, Host};
pub use prompt::PromptProvider;
pub use sink::{OutputFile, OutputSink};
pub use source::AudioSource;
pub use types::{
    AudioBlock, AudioFormat, AudioRole, Descriptor, ErrorKind, LogLevel, PluginError, PluginKind, Prompt,
    PromptRequest, SampleFormat, Samples, TextEvent, TextRole,
};

/// Re-exported for the prelude's `Deserialize`. serde's derive expands to code that names the
/// `serde` crate itself, so a plugin crate deriving `Deserialize` needs its own `serde`
/// dependency (`serde = { version = "1", features = ["derive"] }`, as in the README), or
/// `#[serde(crate = "tolk_plugin_api::serde")]` on each derived type.
pub use serde;

/// ABI major version this crate speaks: the crate's major version (`CARGO_PKG_VERSION_MAJOR`),
/// so bumping `version` in Cargo.toml is all it takes. A host loads a plugin only when the
/// majors match.
pub const ABI_MAJOR: u16 = parse_u16(env!("CARGO_PKG_VERSION_MAJOR"));
/// ABI minor version this crate speaks: the crate's minor version (`CARGO_PKG_VERSION_MINOR`).
/// A host loads a plugin whose minor is at most its own.
pub const ABI_MINOR: u16 = parse_u16(env!("CARGO_PKG_VERSION_MINOR"));

/// A decimal `u16` at compile time (for the version parts above; anything else fails the build).
const fn parse_u16(s: &str) -> u16 {
    let b = s.as_bytes();
    assert!(!b.is_empty(), "empty version number");
    let mut v: u32 = 0;
    let mut i = 0;
    while i < b.len() {
        assert!(b[i].is_ascii_digit(), "version number is not decimal");
        v = v * 10 + (b[i] - b'0') as u32;
        assert!(v <= u16::MAX as u32, "version number does not fit in u16");
        i += 1;
    }
    v as u16
}
/// The version of this crate, written into every plugin's header.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Everything a plugin's `lib.rs` needs: `use tolk_plugin_api::prelude::*;`.
pub mod prelude {
    pub use crate::serde::Deserialize;
    pub use crate::{
        AudioBlock, AudioFormat, AudioRole, AudioSource, AudioWriter, Host, LogLevel, OutputFile, OutputSink,
        PluginError, Prompt, PromptProvider, PromptRequest, SampleFormat, Samples, TextEvent, TextRole,
    };
}

/// True when `id` is a valid plugin id: lower-case reverse-DNS, labels of `a-z`, `0-9` and `-`
/// (not at either end of a label), at least two labels, at most 128 bytes.
pub const fn is_valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    if b.is_empty() || b.len() > 128 {
        return false;
    }
    let mut labels = 1;
    let mut label_len = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'.' {
            if label_len == 0 || b[i - 1] == b'-' {
                return false;
            }
            labels += 1;
            label_len = 0;
        } else if c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' {
            if c == b'-' && label_len == 0 {
                return false;
            }
            label_len += 1;
        } else {
            return false;
        }
        i += 1;
    }
    labels >= 2 && label_len > 0 && b[b.len() - 1] != b'-'
}

/// What the export macro expands to. Not part of the public API: may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::export::check_ids;
    pub use crate::ffi::adapters::{
        Exports, lib_header, new_prompt, new_sink, new_source, prompt_descriptor, sink_descriptor, source_descriptor,
    };
    pub use crate::ffi::header::PluginHeader;
    pub use crate::ffi::{HostBox, PromptBox, SinkBox, SourceBox};
    pub use abi_stable::library::LibHeader;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_version_follows_crate_version() {
        let mut parts = API_VERSION.split('.');
        assert_eq!(parts.next().unwrap().parse::<u16>().unwrap(), ABI_MAJOR);
        assert_eq!(parts.next().unwrap().parse::<u16>().unwrap(), ABI_MINOR);
    }

    #[test]
    fn ids() {
        for good in ["tolk.wav", "com.acme.ndi-in", "a.b", "x1.y2.z3"] {
            assert!(is_valid_id(good), "{good}");
        }
        for bad in
            ["", "wav", "Tolk.wav", "tolk..wav", ".tolk", "tolk.", "tolk.-x", "tolk.x-", "tolk wav", "tolk_wav.x"]
        {
            assert!(!is_valid_id(bad), "{bad}");
        }
    }
}
