//! Token accounting that follows the real service's: audio input ≈ 10 tokens per second, audio
//! output ≈ 20 tokens per second, text ≈ one token per four characters, and every response
//! re-reads the whole conversation (instructions plus every item still in it) as input. So the
//! input tokens of a response grow with the conversation and fall back when the client deletes
//! items — the cost curve a long interpretation session has on the real service.
//!
//! Nothing is cached (`cached_tokens` is always 0), which is the conservative reading.

use serde_json::{Value, json};

/// Input audio tokens per second of user audio.
pub const AUDIO_IN_TOKENS_PER_S: u64 = 10;
/// Output audio tokens per second of generated audio (also what it costs when re-read).
pub const AUDIO_OUT_TOKENS_PER_S: u64 = 20;

/// Text tokens of `s`: characters / 4, rounded up.
pub fn text_tokens(s: &str) -> u64 {
    (s.chars().count() as u64).div_ceil(4)
}

/// Audio tokens of `samples` at 24 kHz and `per_s` tokens per second, rounded up.
pub fn audio_tokens(samples: usize, per_s: u64) -> u64 {
    (samples as u64 * per_s).div_ceil(24_000)
}

/// Text and audio tokens of one thing (an item, the instructions, an output).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub text: u64,
    pub audio: u64,
}

impl Tokens {
    /// The sum.
    pub fn total(self) -> u64 {
        self.text + self.audio
    }
}

impl std::ops::Add for Tokens {
    type Output = Tokens;
    fn add(self, o: Tokens) -> Tokens {
        Tokens { text: self.text + o.text, audio: self.audio + o.audio }
    }
}

impl std::iter::Sum for Tokens {
    fn sum<I: Iterator<Item = Tokens>>(iter: I) -> Tokens {
        iter.fold(Tokens::default(), |a, b| a + b)
    }
}

/// The usage of one response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Everything the response read: instructions and the conversation.
    pub input: Tokens,
    /// What it produced (transcript text and audio).
    pub output: Tokens,
}

impl Usage {
    /// The `response.usage` object; `legacy` leaves out what the 2024-10-01 beta shape did
    /// not have (`image_tokens`, `cached_tokens_details`).
    pub fn to_json(&self, legacy: bool) -> Value {
        let mut v = json!({
            "total_tokens": self.input.total() + self.output.total(),
            "input_tokens": self.input.total(),
            "output_tokens": self.output.total(),
            "input_token_details": {
                "text_tokens": self.input.text,
                "audio_tokens": self.input.audio,
                "image_tokens": 0,
                "cached_tokens": 0,
                "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": self.output.text, "audio_tokens": self.output.audio},
        });
        if legacy && let Some(d) = v["input_token_details"].as_object_mut() {
            d.remove("image_tokens");
            d.remove("cached_tokens_details");
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(audio_tokens(24_000, AUDIO_IN_TOKENS_PER_S), 10);
        assert_eq!(audio_tokens(36_000, AUDIO_OUT_TOKENS_PER_S), 30);
        assert_eq!(audio_tokens(1, AUDIO_IN_TOKENS_PER_S), 1, "rounded up");
        assert_eq!(audio_tokens(0, AUDIO_IN_TOKENS_PER_S), 0);
        assert_eq!(text_tokens(""), 0);
        assert_eq!(text_tokens("abcd"), 1);
        assert_eq!(text_tokens("abcde"), 2);
        assert_eq!(text_tokens("ñññññ"), 2, "characters, not bytes");
    }

    #[test]
    fn json_totals_add_up() {
        let u = Usage { input: Tokens { text: 30, audio: 25 }, output: Tokens { text: 9, audio: 40 } };
        let j = u.to_json(false);
        assert!(u.to_json(true)["input_token_details"].get("cached_tokens_details").is_none());
        assert_eq!(j["input_tokens"], 55);
        assert_eq!(j["output_tokens"], 49);
        assert_eq!(j["total_tokens"], 104);
        assert_eq!(j["input_token_details"]["cached_tokens"], 0);
        let sum: Tokens = [Tokens { text: 1, audio: 2 }, Tokens { text: 3, audio: 4 }].into_iter().sum();
        assert_eq!(sum, Tokens { text: 4, audio: 6 });
    }
}
