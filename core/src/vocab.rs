//! The protocol vocabulary: the one place that says which names and values the Realtime
//! protocols accept — voices per protocol, value ranges and value sets of session fields, and the
//! beta ↔ GA event renames. Its users:
//!
//! - the config validator (`tolk check`), so a config passes `check` only when the server will
//!   take its `session.update` (`protocol = "legacy"` with `voice = "marin"` is caught there, not
//!   after eight retries in `tolk run`);
//! - the client (`crate::realtime`), which encodes those values;
//! - `tolk serve` (`crate::serve::protocol`), which validates a client's `session.update` with
//!   the real service's errors and names its events per dialect.
//!
//! Language tags are part of the vocabulary too; they live in [`tolk_plugin_api::lang`]
//! (re-exported as `crate::config::lang`) because plugins, which do not link tolk-core, parse
//! them as well.
//!
//! The event catalogue itself is the client's typed enums (`crate::realtime::events`: every
//! event's wire name next to its payload type); the server's output is checked against it by
//! tests (every event `tolk serve` emits must decode as a known client event).
//! Values follow `/work/shared/realtime-protocol.md` §4 ("The session object", "Voices per
//! generation").

use std::ops::RangeInclusive;

use crate::config::Protocol;

/// Voices of the legacy (beta) protocol since late October 2024.
pub const LEGACY_VOICES: &[&str] = &["alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse"];

/// Voices of the GA protocol: the legacy eight plus `marin` and `cedar`.
pub const GA_VOICES: &[&str] =
    &["alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"];

/// The voices a protocol accepts; the Translation API has no voice (empty).
pub fn voices(protocol: Protocol) -> &'static [&'static str] {
    match protocol {
        Protocol::Ga => GA_VOICES,
        Protocol::Legacy => LEGACY_VOICES,
        Protocol::Translation => &[],
    }
}

/// `turn_detection.type` values (`none` in a config means `turn_detection: null`).
pub const TURN_DETECTION_TYPES: &[&str] = &["server_vad", "semantic_vad"];
/// `semantic_vad` eagerness.
pub const EAGERNESS: &[&str] = &["low", "medium", "high", "auto"];
/// `noise_reduction.type`.
pub const NOISE_REDUCTION: &[&str] = &["near_field", "far_field"];

/// `server_vad` `threshold`.
pub const VAD_THRESHOLD: RangeInclusive<f64> = 0.0..=1.0;
/// `server_vad` `prefix_padding_ms`.
pub const PREFIX_PADDING_MS: RangeInclusive<u32> = 0..=10_000;
/// `server_vad` `silence_duration_ms`.
pub const SILENCE_DURATION_MS: RangeInclusive<u32> = 0..=10_000;
/// `server_vad` `idle_timeout_ms` (GA only).
pub const IDLE_TIMEOUT_MS: RangeInclusive<u32> = 5_000..=30_000;
/// `audio.output.speed` (GA) / `speed` (beta).
pub const SPEED: RangeInclusive<f64> = 0.25..=1.5;
/// `max_output_tokens` / `max_response_output_tokens` when not `"inf"`.
pub const MAX_OUTPUT_TOKENS: RangeInclusive<u32> = 1..=4096;
/// Beta `temperature` (removed in GA).
pub const TEMPERATURE: RangeInclusive<f64> = 0.6..=1.2;

/// Server events renamed between the beta protocol and GA: `(GA name, beta name)`. Every other
/// event has the same name in both.
pub const BETA_RENAMES: &[(&str, &str)] = &[
    ("response.output_text.delta", "response.text.delta"),
    ("response.output_text.done", "response.text.done"),
    ("response.output_audio.delta", "response.audio.delta"),
    ("response.output_audio.done", "response.audio.done"),
    ("response.output_audio_transcript.delta", "response.audio_transcript.delta"),
    ("response.output_audio_transcript.done", "response.audio_transcript.done"),
];

/// The beta name of a GA server event (the GA name itself when it was not renamed).
pub fn beta_name(ga: &'static str) -> &'static str {
    BETA_RENAMES.iter().find(|(g, _)| *g == ga).map_or(ga, |(_, b)| b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::events::{BetaServerEvent, ServerEvent};

    #[test]
    fn legacy_voices_are_a_subset_of_ga() {
        assert!(LEGACY_VOICES.iter().all(|v| GA_VOICES.contains(v)));
        assert!(!voices(Protocol::Legacy).contains(&"marin") && !voices(Protocol::Legacy).contains(&"cedar"));
        assert!(voices(Protocol::Ga).contains(&"marin") && voices(Protocol::Translation).is_empty());
    }

    /// The renames agree with the client's two catalogues: the GA name is only in the GA enum,
    /// the beta name only in the beta enum.
    #[test]
    fn renames_match_the_client_catalogues() {
        for (ga, beta) in BETA_RENAMES {
            assert!(ServerEvent::TYPES.contains(ga) && !ServerEvent::TYPES.contains(beta), "{ga}");
            assert!(BetaServerEvent::TYPES.contains(beta) && !BetaServerEvent::TYPES.contains(ga), "{beta}");
            assert_eq!(beta_name(ga), *beta);
        }
        // Every beta event is either a renamed GA event or has the GA name.
        for beta in BetaServerEvent::TYPES {
            let ga = BETA_RENAMES.iter().find(|(_, b)| b == beta).map_or(*beta, |(g, _)| g);
            assert!(ServerEvent::TYPES.contains(&ga), "beta {beta} has no GA counterpart");
        }
        assert_eq!(beta_name("response.done"), "response.done");
    }
}
