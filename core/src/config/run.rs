//! `[run]`: how `tolk run` behaves — delivery (live or lossless), lane sizes, the long-event
//! knobs of translated routes (rotation margin, replay buffer, maximum segment, items kept),
//! prices and the budget. Every key has a default, so the section is optional.

use serde::Deserialize;

/// How audio reaches sinks when one is slower than the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// A live event: a slow sink drops its own oldest audio; nothing ever waits for it.
    Live,
    /// A recording processed as fast as possible: the fan-out waits for a slow sink, up to
    /// `stall_timeout_ms`; a sink that takes longer is declared stalled and drops as in `Live`.
    Lossless,
}

impl Delivery {
    /// Config spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Delivery::Live => "live",
            Delivery::Lossless => "lossless",
        }
    }
}

/// Prices in US dollars per million tokens, per token class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prices {
    /// Audio input tokens.
    pub audio_input: f64,
    /// Cached audio input tokens.
    pub cached_audio_input: f64,
    /// Audio output tokens.
    pub audio_output: f64,
    /// Text input tokens.
    pub text_input: f64,
    /// Cached text input tokens.
    pub cached_text_input: f64,
    /// Text output tokens.
    pub text_output: f64,
}

impl Prices {
    /// The published prices of `model` (USD per 1M tokens, OpenAI's price list of 2025), and
    /// whether the model was known; unknown models are priced as `gpt-realtime`.
    pub fn published(model: &str) -> (Prices, bool) {
        let p = |ai, cai, ao, ti, cti, to| Prices {
            audio_input: ai,
            cached_audio_input: cai,
            audio_output: ao,
            text_input: ti,
            cached_text_input: cti,
            text_output: to,
        };
        let m = model.to_ascii_lowercase();
        if m.starts_with("gpt-realtime-mini") || m.starts_with("gpt-4o-mini-realtime") {
            (p(10.0, 0.3, 20.0, 0.6, 0.06, 2.4), true)
        } else if m.starts_with("gpt-4o-realtime") {
            (p(40.0, 2.5, 80.0, 5.0, 2.5, 20.0), true)
        } else if m.starts_with("gpt-realtime") {
            (p(32.0, 0.4, 64.0, 4.0, 0.4, 16.0), m == "gpt-realtime" || m.starts_with("gpt-realtime-20"))
        } else {
            (p(32.0, 0.4, 64.0, 4.0, 0.4, 16.0), false)
        }
    }
}

/// `[run]`, validated.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Live or lossless delivery to sinks.
    pub delivery: Delivery,
    /// Audio each sink lane holds before dropping its oldest (ms).
    pub sink_buffer_ms: u64,
    /// Lossless only: how long the fan-out waits for a full sink lane before declaring the sink
    /// stalled (ms).
    pub stall_timeout_ms: u64,
    /// Audio a source lane holds (ms).
    pub source_buffer_ms: u64,
    /// A speaker who never pauses is cut (committed) at the quietest point after this (ms).
    pub max_segment_ms: u64,
    /// Rotate to a fresh session this long before the current one expires (s).
    pub rotate_margin_s: u64,
    /// Input audio kept for replay after a dropped socket (ms); longer drops leave a gap.
    pub replay_buffer_ms: u64,
    /// First reconnect delay (ms); doubled per attempt with jitter, up to `reconnect_max_ms`.
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay (ms).
    pub reconnect_max_ms: u64,
    /// Completed turns kept in the session's conversation; older items are deleted.
    pub keep_turns: usize,
    /// How long a graceful end waits for pending translations and sinks (ms).
    pub drain_timeout_ms: u64,
    /// Stop new responses once the run's cost reaches this (USD); warn at 80 %.
    pub budget_usd: Option<f64>,
    /// Token prices.
    pub prices: Prices,
    /// Whether `prices` are the model's published ones (false: a default guess or overridden).
    pub prices_known: bool,
}

impl RunSettings {
    /// The defaults for `model`.
    pub fn defaults(model: &str) -> RunSettings {
        let (prices, prices_known) = Prices::published(model);
        RunSettings {
            delivery: Delivery::Live,
            sink_buffer_ms: 5_000,
            stall_timeout_ms: 5_000,
            source_buffer_ms: 2_000,
            max_segment_ms: 15_000,
            rotate_margin_s: 120,
            replay_buffer_ms: 30_000,
            reconnect_min_ms: 200,
            reconnect_max_ms: 10_000,
            keep_turns: 2,
            drain_timeout_ms: 60_000,
            budget_usd: None,
            prices,
            prices_known,
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRun {
    delivery: Option<String>,
    sink_buffer_ms: Option<u64>,
    stall_timeout_ms: Option<u64>,
    source_buffer_ms: Option<u64>,
    max_segment_ms: Option<u64>,
    rotate_margin_s: Option<u64>,
    replay_buffer_ms: Option<u64>,
    reconnect_min_ms: Option<u64>,
    reconnect_max_ms: Option<u64>,
    keep_turns: Option<usize>,
    drain_timeout_ms: Option<u64>,
    budget_usd: Option<f64>,
    prices: Option<RawPrices>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPrices {
    audio_input: Option<f64>,
    cached_audio_input: Option<f64>,
    audio_output: Option<f64>,
    text_input: Option<f64>,
    cached_text_input: Option<f64>,
    text_output: Option<f64>,
}

/// Validates `[run]`; `err(key, message)` records a problem.
pub(super) fn validate(raw: RawRun, model: &str, err: &mut dyn FnMut(String, String)) -> RunSettings {
    let mut s = RunSettings::defaults(model);
    match raw.delivery.as_deref() {
        None | Some("live") => {}
        Some("lossless") => s.delivery = Delivery::Lossless,
        Some(other) => {
            err("run.delivery".into(), format!("unknown delivery \"{other}\" (expected one of: live, lossless)"))
        }
    }
    let mut range = |key: &str, v: Option<u64>, lo: u64, hi: u64, out: &mut u64| {
        if let Some(v) = v {
            if (lo..=hi).contains(&v) {
                *out = v;
            } else {
                err(format!("run.{key}"), format!("{v} is outside {lo}..={hi}"));
            }
        }
    };
    range("sink_buffer_ms", raw.sink_buffer_ms, 100, 600_000, &mut s.sink_buffer_ms);
    range("stall_timeout_ms", raw.stall_timeout_ms, 10, 600_000, &mut s.stall_timeout_ms);
    range("source_buffer_ms", raw.source_buffer_ms, 50, 600_000, &mut s.source_buffer_ms);
    range("max_segment_ms", raw.max_segment_ms, 2_000, 600_000, &mut s.max_segment_ms);
    range("rotate_margin_s", raw.rotate_margin_s, 0, 3_000, &mut s.rotate_margin_s);
    range("replay_buffer_ms", raw.replay_buffer_ms, 0, 3_600_000, &mut s.replay_buffer_ms);
    range("reconnect_min_ms", raw.reconnect_min_ms, 1, 60_000, &mut s.reconnect_min_ms);
    range("reconnect_max_ms", raw.reconnect_max_ms, 1, 600_000, &mut s.reconnect_max_ms);
    range("drain_timeout_ms", raw.drain_timeout_ms, 100, 3_600_000, &mut s.drain_timeout_ms);
    if s.reconnect_max_ms < s.reconnect_min_ms {
        err("run.reconnect_max_ms".into(), format!("{} is below reconnect_min_ms", s.reconnect_max_ms));
    }
    if let Some(k) = raw.keep_turns {
        if (1..=100).contains(&k) {
            s.keep_turns = k;
        } else {
            err("run.keep_turns".into(), format!("{k} is outside 1..=100"));
        }
    }
    if let Some(b) = raw.budget_usd {
        if b.is_finite() && b > 0.0 {
            s.budget_usd = Some(b);
        } else {
            err("run.budget_usd".into(), format!("{b} is not a positive amount"));
        }
    }
    if let Some(p) = raw.prices {
        let fields = [
            ("audio_input", p.audio_input, &mut s.prices.audio_input),
            ("cached_audio_input", p.cached_audio_input, &mut s.prices.cached_audio_input),
            ("audio_output", p.audio_output, &mut s.prices.audio_output),
            ("text_input", p.text_input, &mut s.prices.text_input),
            ("cached_text_input", p.cached_text_input, &mut s.prices.cached_text_input),
            ("text_output", p.text_output, &mut s.prices.text_output),
        ];
        for (key, v, out) in fields {
            if let Some(v) = v {
                if v.is_finite() && v >= 0.0 {
                    *out = v;
                } else {
                    err(format!("run.prices.{key}"), format!("{v} is not a price (USD per 1M tokens, ≥ 0)"));
                }
            }
        }
        // Overridden prices are what the user says they are: not a guess.
        s.prices_known = true;
    }
    s
}
