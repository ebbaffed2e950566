//! Pricing: the usage of each `response.done`, per token class, at the run's [`Prices`]
//! (USD per million tokens). Also the estimate `tolk check` prints per hour of speech.

use crate::{config::run::Prices, realtime::Usage};

/// The token counts of one response (or a sum of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Uncached audio input.
    pub audio_in: u64,
    /// Cached input (audio and text; priced at the cached rates).
    pub cached_audio_in: u64,
    /// Cached text input.
    pub cached_text_in: u64,
    /// Uncached text input.
    pub text_in: u64,
    /// Audio output.
    pub audio_out: u64,
    /// Text output.
    pub text_out: u64,
}

impl Tokens {
    /// All input tokens (what a turn re-bills when context grows).
    /// Saturating: the counts come from the service and may be anything.
    pub fn input(&self) -> u64 {
        self.audio_in
            .saturating_add(self.cached_audio_in)
            .saturating_add(self.cached_text_in)
            .saturating_add(self.text_in)
    }

    /// The cost in USD at `prices`.
    pub fn cost(&self, p: &Prices) -> f64 {
        (self.audio_in as f64 * p.audio_input
            + self.cached_audio_in as f64 * p.cached_audio_input
            + self.cached_text_in as f64 * p.cached_text_input
            + self.text_in as f64 * p.text_input
            + self.audio_out as f64 * p.audio_output
            + self.text_out as f64 * p.text_output)
            / 1e6
    }
}

/// Audio tokens per second of speech, in and out (the Realtime models bill audio at about 10
/// tokens per second in and 20 per second out).
pub const AUDIO_IN_TOKENS_PER_S: f64 = 10.0;
/// See [`AUDIO_IN_TOKENS_PER_S`].
pub const AUDIO_OUT_TOKENS_PER_S: f64 = 20.0;

impl From<&Usage> for Tokens {
    /// The classes of a `response.done` usage: cached tokens are taken out of the uncached
    /// counts (a usage with only a cached total attributes it to text first: the instructions
    /// are what gets cached).
    fn from(u: &Usage) -> Tokens {
        let (mut cached_audio, mut cached_text) = (u.input_cached_audio, u.input_cached_text);
        if cached_audio == 0 && cached_text == 0 && u.input_cached > 0 {
            cached_text = u.input_cached.min(u.input_text);
            cached_audio = u.input_cached - cached_text;
        }
        let mut t = Tokens {
            audio_in: u.input_audio.saturating_sub(cached_audio),
            cached_audio_in: cached_audio.min(u.input_audio),
            cached_text_in: cached_text.min(u.input_text),
            text_in: u.input_text.saturating_sub(cached_text),
            audio_out: u.output_audio,
            text_out: u.output_text,
        };
        // A usage without details: everything is text.
        if t == Tokens::default() {
            t.text_in = u.input_tokens;
            t.text_out = u.output_tokens;
        }
        t
    }
}

/// An estimate of what one translated route costs per hour of continuous speech: every second
/// heard once as input (old items are deleted, so context stays small: instructions, cached
/// after the first turn, plus the kept turns), every second spoken once as output, and the
/// transcript text of both.
pub fn estimate_per_hour(p: &Prices, keep_turns: usize) -> f64 {
    let secs = 3600.0;
    let turn_s = 8.0; // a typical utterance
    let turns = secs / turn_s;
    let audio_in = secs * AUDIO_IN_TOKENS_PER_S;
    // Kept turns (input and output audio) are re-read, cached, on every turn.
    let context = turns * keep_turns as f64 * turn_s * (AUDIO_IN_TOKENS_PER_S + AUDIO_OUT_TOKENS_PER_S);
    let instructions = turns * 600.0;
    let audio_out = secs * AUDIO_OUT_TOKENS_PER_S;
    let text_out = turns * 40.0;
    (audio_in * p.audio_input
        + context * p.cached_audio_input
        + instructions * p.cached_text_input
        + audio_out * p.audio_output
        + text_out * p.text_output)
        / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_usage_per_class() {
        let usage = serde_json::json!({
            "total_tokens": 1300, "input_tokens": 1000, "output_tokens": 300,
            "input_token_details": {"text_tokens": 600, "audio_tokens": 400, "cached_tokens": 500,
                "cached_tokens_details": {"text_tokens": 500, "audio_tokens": 0}},
            "output_token_details": {"text_tokens": 100, "audio_tokens": 200}
        });
        let t = Tokens::from(&Usage::from_json(&usage));
        assert_eq!(
            t,
            Tokens {
                audio_in: 400,
                cached_audio_in: 0,
                cached_text_in: 500,
                text_in: 100,
                audio_out: 200,
                text_out: 100
            }
        );
        let (p, _) = Prices::published("gpt-realtime");
        // 400·32 + 500·0.4 + 100·4 + 200·64 + 100·16 = 27_800 → $0.0278
        assert!((t.cost(&p) - 0.0278).abs() < 1e-9);
        assert_eq!(t.input(), 1000);
    }

    #[test]
    fn hourly_estimate_is_plausible() {
        let (p, _) = Prices::published("gpt-realtime");
        let e = estimate_per_hour(&p, 2);
        assert!((5.0..30.0).contains(&e), "{e}");
    }
}
