//! Counters of a run, shared by its threads and tasks (atomics; no lock on the audio path
//! except the latency reservoirs), and the three ways they leave the process: the live status
//! line on a terminal, the JSON status file and the Prometheus text file.
//!
//! Audio is counted in frames of the internal format (24 kHz); seconds are derived.

use std::{
    fmt::Write as _,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use serde_json::json;

use super::sink_lane::{RouteDrops, SinkLane};

const RATE: f64 = 24_000.0;

/// What a route is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RouteState {
    /// Opening its first session / waiting for audio.
    Starting = 0,
    /// Audio flowing.
    Running = 1,
    /// Reconnecting after a dropped socket.
    Reconnecting = 2,
    /// Its source ended: finishing pending translations.
    Draining = 3,
    /// Finished normally.
    Done = 4,
    /// Stopped by the failure policy.
    Stopped = 5,
    /// Out of budget: no new responses.
    OverBudget = 6,
}

impl RouteState {
    fn from_u8(v: u8) -> RouteState {
        match v {
            1 => RouteState::Running,
            2 => RouteState::Reconnecting,
            3 => RouteState::Draining,
            4 => RouteState::Done,
            5 => RouteState::Stopped,
            6 => RouteState::OverBudget,
            _ => RouteState::Starting,
        }
    }

    /// Lower-case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            RouteState::Starting => "starting",
            RouteState::Running => "running",
            RouteState::Reconnecting => "reconnecting",
            RouteState::Draining => "draining",
            RouteState::Done => "done",
            RouteState::Stopped => "stopped",
            RouteState::OverBudget => "over-budget",
        }
    }
}

/// A bounded reservoir of latency samples (the most recent ones), for percentiles.
#[derive(Debug, Default)]
pub struct Reservoir {
    samples: Vec<f64>,
    next: usize,
    count: u64,
}

const RESERVOIR: usize = 4096;

impl Reservoir {
    /// Records one sample.
    pub fn record(&mut self, v: f64) {
        if self.samples.len() < RESERVOIR {
            self.samples.push(v);
        } else {
            self.samples[self.next] = v;
            self.next = (self.next + 1) % RESERVOIR;
        }
        self.count += 1;
    }

    /// The `q` quantile (0..=1) of the samples kept, `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.samples.is_empty() {
            return None;
        }
        let mut v = self.samples.clone();
        v.sort_by(f64::total_cmp);
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        Some(v[i])
    }

    /// Samples recorded in total.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// Window of a level meter (ms).
pub const LEVEL_WINDOW_MS: u64 = 100;

/// A level meter: the RMS level (dBFS) of the audio that passed it over the latest
/// [`LEVEL_WINDOW_MS`], lock-free (a window's sum of squares and count in atomics, published
/// as it closes). A meter nothing passed for 3 windows reads `None` (no audio).
#[derive(Debug)]
pub struct Level {
    epoch: Instant,
    /// Start of the open window (ms since `epoch`).
    window_start: AtomicU64,
    sum_sq: AtomicU64,
    count: AtomicU64,
    /// The latest closed window's level (f64 bits) and when it closed (ms since `epoch`).
    last_db: AtomicU64,
    last_at: AtomicU64,
}

impl Default for Level {
    fn default() -> Level {
        Level {
            epoch: Instant::now(),
            window_start: AtomicU64::new(0),
            sum_sq: AtomicU64::new(0),
            count: AtomicU64::new(0),
            last_db: AtomicU64::new(f64::NEG_INFINITY.to_bits()),
            last_at: AtomicU64::new(0),
        }
    }
}

impl Level {
    /// Adds `samples` to the open window (closing it first when it is over).
    pub fn record(&self, samples: &[i16]) {
        let now = self.epoch.elapsed().as_millis() as u64;
        let start = self.window_start.load(Relaxed);
        if now.saturating_sub(start) >= LEVEL_WINDOW_MS
            && self.window_start.compare_exchange(start, now, Relaxed, Relaxed).is_ok()
        {
            let (sum, n) = (self.sum_sq.swap(0, Relaxed), self.count.swap(0, Relaxed));
            if n > 0 {
                self.last_db.store(dbfs(sum, n).to_bits(), Relaxed);
                self.last_at.store(now.max(1), Relaxed);
            }
        }
        let sum: u64 = samples.iter().map(|&s| (i64::from(s) * i64::from(s)) as u64).sum();
        self.sum_sq.fetch_add(sum, Relaxed);
        self.count.fetch_add(samples.len() as u64, Relaxed);
    }

    /// The level now: the latest window's dBFS (`-inf` for digital silence); `None` when no
    /// audio passed for 3 windows.
    pub fn dbfs(&self) -> Option<f64> {
        let now = self.epoch.elapsed().as_millis() as u64;
        let (start, n) = (self.window_start.load(Relaxed), self.count.load(Relaxed));
        if n > 0 && now.saturating_sub(start) >= LEVEL_WINDOW_MS {
            // The open window is over but nothing closed it yet: it is the latest (unless it
            // is more than 3 windows old).
            return (now - start <= 4 * LEVEL_WINDOW_MS).then(|| dbfs(self.sum_sq.load(Relaxed), n));
        }
        let at = self.last_at.load(Relaxed);
        (at > 0 && now.saturating_sub(at) <= 3 * LEVEL_WINDOW_MS).then(|| f64::from_bits(self.last_db.load(Relaxed)))
    }

    /// [`Level::dbfs`] for JSON: a number rounded to 0.1 dB, `-120` for digital silence, null
    /// for no audio.
    pub fn json(&self) -> serde_json::Value {
        match self.dbfs() {
            Some(db) => json!((db.max(-120.0) * 10.0).round() / 10.0),
            None => serde_json::Value::Null,
        }
    }
}

/// The RMS level of `n` samples whose squares sum to `sum`, in dBFS (full-scale sine: -3).
fn dbfs(sum: u64, n: u64) -> f64 {
    let ms = sum as f64 / n as f64 / (32768.0 * 32768.0);
    if ms <= 0.0 { f64::NEG_INFINITY } else { 10.0 * ms.log10() }
}

/// Counters of one route.
#[derive(Debug)]
pub struct RouteStats {
    /// `stage→es` (or `stage→floor`).
    pub name: String,
    /// Source id.
    pub source: String,
    /// Target language, or `floor`.
    pub language: String,
    state: AtomicU8,
    /// Frames received from the source.
    pub frames_in: AtomicU64,
    /// Frames delivered towards the sinks.
    pub frames_out: AtomicU64,
    /// Input frames lost (route input full, or a reconnect longer than the replay buffer).
    pub gap_frames: AtomicU64,
    /// Input frames replaced by silence while the route's echo gate was closed (`gate_while`).
    pub gated_frames: AtomicU64,
    /// Input frames sent to a session (each counted once, replays not counted again).
    pub frames_sent: AtomicU64,
    /// Input frames replayed after a reconnect.
    pub frames_replayed: AtomicU64,
    /// Sessions opened.
    pub sessions: AtomicU64,
    /// Reconnects after a dropped socket.
    pub reconnects: AtomicU64,
    /// Rotations to a fresh session before expiry.
    pub rotations: AtomicU64,
    /// Responses completed.
    pub responses: AtomicU64,
    /// Sessions dropped because they owed an event and sent nothing (`engine.event_timeout_ms`).
    pub stalls: AtomicU64,
    /// Responses cut short by a drop and answered again (only the unheard tail played).
    pub responses_resumed: AtomicU64,
    /// Responses cut short and never completed (a drop not answered again, `failed` or
    /// `incomplete`): lost output.
    pub responses_cut_short: AtomicU64,
    /// Turns the service committed that never got a response: lost output.
    pub utterances_unanswered: AtomicU64,
    /// Segments cut by the maximum segment length.
    pub segments_cut: AtomicU64,
    /// Conversation items deleted.
    pub items_deleted: AtomicU64,
    /// Cost in micro-dollars.
    pub cost_micro_usd: AtomicU64,
    /// Input tokens of the latest response (flat when old items are deleted).
    pub last_input_tokens: AtomicU64,
    /// Most input tokens of any response.
    pub max_input_tokens: AtomicU64,
    /// Tokens by class: audio in, cached in, text in, audio out, text out.
    pub tokens: [AtomicU64; 5],
    /// Current lag: how far the output trails the input (ms).
    pub lag_ms: AtomicU64,
    /// Ear-voice span samples (ms).
    pub ear_voice_ms: Mutex<Reservoir>,
    /// System-added latency samples (ms): time tolk holds a chunk on one leg.
    pub system_ms: Mutex<Reservoir>,
    /// Level of the route's input (its source's audio, after conversion).
    pub level_in: Level,
    /// Level of the route's output (as it is delivered towards the sinks and listeners).
    pub level_out: Level,
}

impl RouteStats {
    /// New counters for a route.
    pub fn new(source: &str, language: &str) -> RouteStats {
        RouteStats {
            name: format!("{source}→{language}"),
            source: source.into(),
            language: language.into(),
            state: AtomicU8::new(RouteState::Starting as u8),
            frames_in: AtomicU64::new(0),
            frames_out: AtomicU64::new(0),
            gap_frames: AtomicU64::new(0),
            gated_frames: AtomicU64::new(0),
            frames_sent: AtomicU64::new(0),
            frames_replayed: AtomicU64::new(0),
            sessions: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            rotations: AtomicU64::new(0),
            responses: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            responses_resumed: AtomicU64::new(0),
            responses_cut_short: AtomicU64::new(0),
            utterances_unanswered: AtomicU64::new(0),
            segments_cut: AtomicU64::new(0),
            items_deleted: AtomicU64::new(0),
            cost_micro_usd: AtomicU64::new(0),
            last_input_tokens: AtomicU64::new(0),
            max_input_tokens: AtomicU64::new(0),
            tokens: Default::default(),
            lag_ms: AtomicU64::new(0),
            ear_voice_ms: Mutex::default(),
            system_ms: Mutex::default(),
            level_in: Level::default(),
            level_out: Level::default(),
        }
    }

    /// The state.
    pub fn state(&self) -> RouteState {
        RouteState::from_u8(self.state.load(Relaxed))
    }

    /// Sets the state (a finished or stopped route keeps its final state).
    pub fn set_state(&self, s: RouteState) {
        let _ = self.state.fetch_update(Relaxed, Relaxed, |cur| {
            let cur = RouteState::from_u8(cur);
            (!matches!(cur, RouteState::Done | RouteState::Stopped) || s == cur).then_some(s as u8)
        });
    }

    /// Sets the state even over a final one (the failure policy stopped a finished route).
    pub fn force_state(&self, s: RouteState) {
        self.state.store(s as u8, Relaxed);
    }

    /// Records a system-added latency sample.
    pub fn record_system(&self, held: Duration) {
        self.system_ms.lock().unwrap_or_else(|p| p.into_inner()).record(held.as_secs_f64() * 1e3);
    }

    /// Records an ear-voice span sample.
    pub fn record_ear_voice(&self, span: Duration) {
        self.ear_voice_ms.lock().unwrap_or_else(|p| p.into_inner()).record(span.as_secs_f64() * 1e3);
    }

    /// What this route lost, in words (`None`: nothing): input gaps, turns not answered,
    /// responses cut short.
    pub fn losses(&self) -> Option<String> {
        let mut parts = vec![];
        let gap = self.gap_frames.load(Relaxed);
        if gap > 0 {
            parts.push(format!("{:.1} s of input not translated (input gap)", gap as f64 / RATE));
        }
        let n = self.utterances_unanswered.load(Relaxed);
        if n > 0 {
            parts.push(format!("{n} utterance{} not answered", if n == 1 { "" } else { "s" }));
        }
        let n = self.responses_cut_short.load(Relaxed);
        if n > 0 {
            parts.push(format!("{n} response{} cut short", if n == 1 { "" } else { "s" }));
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    /// Cost so far in USD.
    pub fn cost_usd(&self) -> f64 {
        self.cost_micro_usd.load(Relaxed) as f64 / 1e6
    }

    fn json(&self) -> serde_json::Value {
        let q = |r: &Mutex<Reservoir>, p: f64| r.lock().unwrap_or_else(|e| e.into_inner()).quantile(p);
        let t = |i: usize| self.tokens[i].load(Relaxed);
        json!({
            "route": self.name,
            "source": self.source,
            "language": self.language,
            "state": self.state().as_str(),
            "audio_in_s": self.frames_in.load(Relaxed) as f64 / RATE,
            "audio_out_s": self.frames_out.load(Relaxed) as f64 / RATE,
            "lag_s": self.lag_ms.load(Relaxed) as f64 / 1e3,
            "input_gap_s": self.gap_frames.load(Relaxed) as f64 / RATE,
            "input_gated_s": self.gated_frames.load(Relaxed) as f64 / RATE,
            "input_sent_frames": self.frames_sent.load(Relaxed),
            "input_replayed_frames": self.frames_replayed.load(Relaxed),
            "sessions": self.sessions.load(Relaxed),
            "reconnects": self.reconnects.load(Relaxed),
            "rotations": self.rotations.load(Relaxed),
            "responses": self.responses.load(Relaxed),
            "stalls": self.stalls.load(Relaxed),
            "responses_resumed": self.responses_resumed.load(Relaxed),
            "responses_cut_short": self.responses_cut_short.load(Relaxed),
            "utterances_unanswered": self.utterances_unanswered.load(Relaxed),
            "lost": self.losses(),
            "segments_cut": self.segments_cut.load(Relaxed),
            "items_deleted": self.items_deleted.load(Relaxed),
            "last_input_tokens": self.last_input_tokens.load(Relaxed),
            "max_input_tokens": self.max_input_tokens.load(Relaxed),
            "tokens": {"audio_in": t(0), "cached_in": t(1), "text_in": t(2), "audio_out": t(3), "text_out": t(4)},
            "cost_usd": self.cost_usd(),
            "ear_voice_ms": {"p50": q(&self.ear_voice_ms, 0.5), "p99": q(&self.ear_voice_ms, 0.99)},
            "system_ms": {"p50": q(&self.system_ms, 0.5), "p99": q(&self.system_ms, 0.99)},
            "level_in_dbfs": self.level_in.json(),
            "level_out_dbfs": self.level_out.json(),
        })
    }
}

/// Counters of one sink instance.
#[derive(Debug)]
pub struct SinkStats {
    /// Instance id (`recording:es`).
    pub name: String,
    /// Frames delivered (24 kHz count).
    pub frames: AtomicU64,
    /// Text events delivered.
    pub texts: AtomicU64,
    /// Failures (errors and panics).
    pub failures: AtomicU64,
    /// Restarts by the failure policy.
    pub restarts: AtomicU64,
    /// 0 running, 1 done, 2 failed/stopped, 3 abandoned.
    pub state: AtomicU8,
    /// Since when the sink thread has been inside a plugin call, in ms after `epoch` plus
    /// one; 0 while it is not (a hung or slow sink shows here while it hangs).
    busy_since: AtomicU64,
    epoch: Instant,
}

impl SinkStats {
    /// New counters.
    pub fn new(name: &str) -> SinkStats {
        SinkStats {
            name: name.into(),
            frames: AtomicU64::new(0),
            texts: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            state: AtomicU8::new(0),
            busy_since: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Marks the start (`true`) or end of a plugin call by the sink thread.
    pub fn set_busy(&self, busy: bool) {
        let v = if busy { self.epoch.elapsed().as_millis() as u64 + 1 } else { 0 };
        self.busy_since.store(v, Relaxed);
    }

    /// How long the current plugin call has been running (`None`: not in a call).
    pub fn busy_for(&self) -> Option<Duration> {
        match self.busy_since.load(Relaxed) {
            0 => None,
            v => Some(self.epoch.elapsed().saturating_sub(Duration::from_millis(v - 1))),
        }
    }

    /// True once the sink failed (and was not restarted) or was abandoned.
    pub fn gone(&self) -> bool {
        self.state.load(Relaxed) >= 2
    }

    fn state_str(&self) -> &'static str {
        match self.state.load(Relaxed) {
            0 => "running",
            1 => "done",
            2 => "stopped",
            _ => "abandoned",
        }
    }
}

/// What one route lost at one of its sinks.
#[derive(Debug, Clone)]
pub struct SinkLoss {
    /// The sink instance.
    pub sink: String,
    /// `running`, `done`, `stopped` (failed) or `abandoned`.
    pub state: &'static str,
    /// What the route's items lost in the sink's lane.
    pub drops: RouteDrops,
    /// Errors and panics of the sink (each may have lost buffered data).
    pub failures: u64,
    /// Restarts of the sink.
    pub restarts: u64,
}

impl SinkLoss {
    /// One phrase: `sink "rec:es" (stopped): 3.2 s of audio not delivered, 1 failure`.
    pub fn describe(&self) -> String {
        let mut parts = vec![];
        if self.drops.frames > 0 {
            parts.push(format!("{:.1} s of audio not delivered", self.drops.frames as f64 / RATE));
        }
        if self.drops.floor_frames > 0 {
            parts.push(format!("{:.1} s of floor not delivered", self.drops.floor_frames as f64 / RATE));
        }
        if self.drops.texts > 0 {
            parts.push(format!("{} text event{} not delivered", self.drops.texts, plural(self.drops.texts)));
        }
        if self.failures > 0 {
            parts.push(format!("{} failure{}", self.failures, plural(self.failures)));
        }
        if self.restarts > 0 {
            parts.push(format!("restarted {} time{}", self.restarts, plural(self.restarts)));
        }
        match parts.is_empty() {
            true => format!("sink \"{}\" ({})", self.sink, self.state),
            false => format!("sink \"{}\" ({}): {}", self.sink, self.state, parts.join(", ")),
        }
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "sink": self.sink,
            "state": self.state,
            "dropped_s": self.drops.frames as f64 / RATE,
            "dropped_floor_s": self.drops.floor_frames as f64 / RATE,
            "dropped_text": self.drops.texts,
            "failures": self.failures,
            "restarts": self.restarts,
        })
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Everything a run counts.
pub struct RunStats {
    /// When the run started.
    pub started: Instant,
    /// Per route, in route order.
    pub routes: Vec<Arc<RouteStats>>,
    /// Per sink instance, with its lane (for drop counts).
    pub sinks: Vec<(Arc<SinkStats>, Arc<SinkLane>)>,
    /// Per route: the indices (in `sinks`) of the sinks it feeds.
    pub route_sinks: Vec<Vec<usize>>,
    /// Per source: (id, frames read at 24 kHz).
    pub sources: Vec<(String, Arc<AtomicU64>)>,
    /// Per source (as `sources`): audio it wrote faster than its lane took it, refused and
    /// dropped (24 kHz frames).
    pub source_refused: Vec<Arc<AtomicU64>>,
    /// `[run] source_buffer_ms`, for messages.
    pub source_buffer_ms: u64,
    /// The budget, if any.
    pub budget_usd: Option<f64>,
}

impl RunStats {
    /// Total cost so far (USD).
    pub fn cost_usd(&self) -> f64 {
        self.routes.iter().map(|r| r.cost_usd()).sum()
    }

    /// Drops of every sink, in frames.
    pub fn sink_drops(&self) -> u64 {
        self.sinks.iter().map(|(_, l)| l.counts().dropped_frames).sum()
    }

    /// What route `r` lost at its sinks: one entry per sink that lost anything (dropped or
    /// undelivered audio or text, failures, restarts, abandonment). Empty when nothing was.
    pub fn sink_losses(&self, r: usize) -> Vec<SinkLoss> {
        let Some(sinks) = self.route_sinks.get(r) else { return vec![] };
        sinks
            .iter()
            .filter_map(|&i| {
                let (s, lane) = self.sinks.get(i)?;
                let loss = SinkLoss {
                    sink: s.name.clone(),
                    state: s.state_str(),
                    drops: lane.route_drops(r),
                    failures: s.failures.load(Relaxed),
                    restarts: s.restarts.load(Relaxed),
                };
                let lost = !loss.drops.is_empty() || loss.failures > 0 || loss.restarts > 0 || s.gone();
                lost.then_some(loss)
            })
            .collect()
    }

    /// True when any route lost anything at a sink.
    pub fn any_sink_loss(&self) -> bool {
        (0..self.routes.len()).any(|r| !self.sink_losses(r).is_empty())
    }

    /// Audio source `id` wrote and its lane refused (24 kHz frames).
    pub fn refused_frames(&self, id: &str) -> u64 {
        self.sources.iter().zip(&self.source_refused).find(|((s, _), _)| s == id).map_or(0, |(_, r)| r.load(Relaxed))
    }

    /// The status as JSON (for `--json-status`).
    pub fn json(&self, final_: bool, exit: Option<u8>) -> serde_json::Value {
        let mut v = self.json_counters(final_, exit);
        // Per route, what its source lost before any route saw it.
        if let Some(routes) = v["routes"].as_array_mut() {
            for (j, r) in routes.iter_mut().zip(&self.routes) {
                j["source_refused_s"] = json!(self.refused_frames(&r.source) as f64 / RATE);
            }
        }
        v
    }

    fn json_counters(&self, final_: bool, exit: Option<u8>) -> serde_json::Value {
        json!({
            "final": final_,
            "exit_status": exit,
            "elapsed_s": self.started.elapsed().as_secs_f64(),
            "cost_usd": self.cost_usd(),
            "budget_usd": self.budget_usd,
            "sources": self.sources.iter().zip(&self.source_refused).map(|((id, f), refused)| json!({
                "source": id, "audio_s": f.load(Relaxed) as f64 / RATE,
                "refused_s": refused.load(Relaxed) as f64 / RATE,
            })).collect::<Vec<_>>(),
            "routes": self.routes.iter().enumerate().map(|(i, r)| {
                let mut j = r.json();
                j["sink_losses"] = self.sink_losses(i).iter().map(SinkLoss::json).collect();
                j
            }).collect::<Vec<_>>(),
            "sinks": self.sinks.iter().map(|(s, l)| {
                let c = l.counts();
                json!({
                    "sink": s.name,
                    "state": s.state_str(),
                    "audio_s": s.frames.load(Relaxed) as f64 / RATE,
                    "texts": s.texts.load(Relaxed),
                    "dropped_s": c.dropped_frames as f64 / RATE,
                    "dropped_text": c.dropped_text,
                    "queued_s": c.queued_frames as f64 / RATE,
                    "stalls": c.stalls,
                    "failures": s.failures.load(Relaxed),
                    "restarts": s.restarts.load(Relaxed),
                    // How long the current call into the plugin has been running (a hung sink).
                    "busy_s": s.busy_for().map(|d| d.as_secs_f64()),
                })
            }).collect::<Vec<_>>(),
        })
    }

    /// The Prometheus text exposition of the counters.
    pub fn prometheus(&self) -> String {
        let mut o = String::new();
        let mut metric = |name: &str, help: &str, kind: &str, rows: Vec<(String, f64)>| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(o, "{name}{{{labels}}} {v}");
            }
        };
        let rl = |r: &RouteStats| format!("route=\"{}\",source=\"{}\",language=\"{}\"", r.name, r.source, r.language);
        let per_route = |f: &dyn Fn(&RouteStats) -> f64| self.routes.iter().map(|r| (rl(r), f(r))).collect::<Vec<_>>();
        metric(
            "tolk_route_audio_in_seconds",
            "Audio received from the source.",
            "counter",
            per_route(&|r| r.frames_in.load(Relaxed) as f64 / RATE),
        );
        metric(
            "tolk_route_audio_out_seconds",
            "Audio delivered to the sinks.",
            "counter",
            per_route(&|r| r.frames_out.load(Relaxed) as f64 / RATE),
        );
        metric(
            "tolk_route_input_gap_seconds",
            "Input audio lost before a session.",
            "counter",
            per_route(&|r| r.gap_frames.load(Relaxed) as f64 / RATE),
        );
        metric(
            "tolk_route_input_gated_seconds",
            "Input audio replaced by silence while the route's echo gate was closed.",
            "counter",
            per_route(&|r| r.gated_frames.load(Relaxed) as f64 / RATE),
        );
        metric(
            "tolk_route_lag_seconds",
            "How far the output trails the input.",
            "gauge",
            per_route(&|r| r.lag_ms.load(Relaxed) as f64 / 1e3),
        );
        // NaN while no audio passes (Prometheus' "no value" for a gauge); -120 for digital silence.
        let level = |l: &Level| l.dbfs().map_or(f64::NAN, |db| db.max(-120.0));
        metric(
            "tolk_route_level_in_dbfs",
            "RMS level of the route's input over the last 100 ms (dBFS).",
            "gauge",
            per_route(&|r| level(&r.level_in)),
        );
        metric(
            "tolk_route_level_out_dbfs",
            "RMS level of the route's output over the last 100 ms, as delivered (dBFS).",
            "gauge",
            per_route(&|r| level(&r.level_out)),
        );
        metric(
            "tolk_route_reconnects_total",
            "Reconnects after a dropped socket.",
            "counter",
            per_route(&|r| r.reconnects.load(Relaxed) as f64),
        );
        metric(
            "tolk_route_rotations_total",
            "Rotations to a fresh session.",
            "counter",
            per_route(&|r| r.rotations.load(Relaxed) as f64),
        );
        metric(
            "tolk_route_responses_total",
            "Responses completed.",
            "counter",
            per_route(&|r| r.responses.load(Relaxed) as f64),
        );
        metric("tolk_route_cost_usd", "Cost so far.", "counter", per_route(&|r| r.cost_usd()));
        metric(
            "tolk_route_last_input_tokens",
            "Input tokens of the latest response.",
            "gauge",
            per_route(&|r| r.last_input_tokens.load(Relaxed) as f64),
        );
        for (name, res, help) in [
            (
                "tolk_route_ear_voice_ms",
                &|r: &RouteStats| &r.ear_voice_ms as &Mutex<Reservoir>,
                "Ear-voice span: end of source speech to first translated audio at a sink.",
            ),
            (
                "tolk_route_system_added_ms",
                &|r: &RouteStats| &r.system_ms as &Mutex<Reservoir>,
                "Time tolk itself holds audio on one leg.",
            ),
        ] as [(&str, &dyn Fn(&RouteStats) -> &Mutex<Reservoir>, &str); 2]
        {
            let mut rows = vec![];
            for r in &self.routes {
                let res = res(r).lock().unwrap_or_else(|e| e.into_inner());
                for q in [0.5, 0.99] {
                    if let Some(v) = res.quantile(q) {
                        rows.push((format!("{},quantile=\"{q}\"", rl(r)), v));
                    }
                }
            }
            metric(name, help, "summary", rows);
        }
        let sink_rows = |f: &dyn Fn(&SinkStats, &SinkLane) -> f64| {
            self.sinks.iter().map(|(s, l)| (format!("sink=\"{}\"", s.name), f(s, l))).collect::<Vec<_>>()
        };
        metric(
            "tolk_sink_audio_seconds",
            "Audio delivered to the sink.",
            "counter",
            sink_rows(&|s, _| s.frames.load(Relaxed) as f64 / RATE),
        );
        metric(
            "tolk_sink_dropped_seconds",
            "Audio the sink's lane dropped (oldest first).",
            "counter",
            sink_rows(&|_, l| l.counts().dropped_frames as f64 / RATE),
        );
        metric(
            "tolk_sink_failures_total",
            "Sink errors and panics.",
            "counter",
            sink_rows(&|s, _| s.failures.load(Relaxed) as f64),
        );
        metric(
            "tolk_sink_restarts_total",
            "Sink restarts by the failure policy.",
            "counter",
            sink_rows(&|s, _| s.restarts.load(Relaxed) as f64),
        );
        let mut lost = vec![];
        for (i, r) in self.routes.iter().enumerate() {
            for l in self.sink_losses(i) {
                lost.push((format!("{},sink=\"{}\"", rl(r), l.sink), l.drops.frames as f64 / RATE));
            }
        }
        metric(
            "tolk_route_sink_lost_seconds",
            "The route's audio a sink never got (dropped from its lane, or the sink failed or hung).",
            "counter",
            lost,
        );
        metric(
            "tolk_source_refused_seconds",
            "Audio a source wrote faster than its lane took it, refused and lost.",
            "counter",
            self.sources
                .iter()
                .zip(&self.source_refused)
                .map(|((id, _), r)| (format!("source=\"{id}\""), r.load(Relaxed) as f64 / RATE))
                .collect(),
        );
        metric("tolk_run_cost_usd", "Cost of the run so far.", "counter", vec![(String::new(), self.cost_usd())]);
        o
    }

    /// The one-line live status.
    pub fn status_line(&self, width: usize) -> String {
        let mut s = format!("{:>6.1}s", self.started.elapsed().as_secs_f64());
        if self.routes.iter().any(|r| r.language != crate::config::FLOOR) {
            let _ = write!(s, " ${:.3}", self.cost_usd());
            if let Some(b) = self.budget_usd {
                let _ = write!(s, "/{b:.2}");
            }
        }
        let drops = self.sink_drops();
        if drops > 0 {
            let _ = write!(s, " sink-drop {:.1}s", drops as f64 / RATE);
        }
        for r in &self.routes {
            let _ = write!(
                s,
                " │ {} {} in {:.1}s out {:.1}s",
                r.name,
                r.state().as_str(),
                r.frames_in.load(Relaxed) as f64 / RATE,
                r.frames_out.load(Relaxed) as f64 / RATE
            );
            let lag = r.lag_ms.load(Relaxed);
            if lag > 0 {
                let _ = write!(s, " lag {:.1}s", lag as f64 / 1e3);
            }
            let gap = r.gap_frames.load(Relaxed);
            if gap > 0 {
                let _ = write!(s, " gap {:.1}s", gap as f64 / RATE);
            }
            let c = r.cost_usd();
            if c > 0.0 {
                let _ = write!(s, " ${c:.3}");
            }
        }
        if s.chars().count() > width {
            s = s.chars().take(width.saturating_sub(1)).collect::<String>() + "…";
        }
        s
    }
}

/// Writes `text` to `path` atomically (a temporary file beside it, then rename), so a reader
/// never sees half a file.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_meter_reads_the_rms_of_the_last_window_and_nothing_when_no_audio_passes() {
        let meter = Level::default();
        assert_eq!(meter.dbfs(), None, "nothing passed yet");
        // A sine of amplitude 0.5: RMS 0.5/√2, i.e. -9.03 dBFS.
        let sine: Vec<i16> = (0..2400)
            .map(|i| (16384.0 * (i as f64 * 2.0 * std::f64::consts::PI * 440.0 / 24_000.0).sin()) as i16)
            .collect();
        meter.record(&sine);
        std::thread::sleep(Duration::from_millis(LEVEL_WINDOW_MS + 10));
        let db = meter.dbfs().unwrap();
        assert!((db + 9.03).abs() < 0.1, "{db}");
        // The next window is silence: it closes the sine's, then reads -inf (JSON -120).
        meter.record(&[0; 480]);
        assert!((meter.dbfs().unwrap() + 9.03).abs() < 0.1, "the closed window is the sine's");
        std::thread::sleep(Duration::from_millis(LEVEL_WINDOW_MS + 10));
        assert_eq!(meter.json(), serde_json::json!(-120.0));
        // Nothing for 3 windows: no level at all.
        std::thread::sleep(Duration::from_millis(4 * LEVEL_WINDOW_MS));
        assert_eq!(meter.dbfs(), None);
    }

    #[test]
    fn reservoir_quantiles() {
        let mut r = Reservoir::default();
        assert_eq!(r.quantile(0.5), None);
        for i in 1..=101 {
            r.record(f64::from(i));
        }
        assert_eq!(r.quantile(0.5), Some(51.0));
        assert_eq!(r.quantile(0.99), Some(100.0));
    }

    #[test]
    fn sink_losses_are_listed_per_route() {
        use crate::router::{
            Chunk,
            sink_lane::{SinkItem, SinkLane},
        };
        let sinks: Vec<(Arc<SinkStats>, Arc<SinkLane>)> = ["rec:es", "captions:es"]
            .iter()
            .map(|n| (Arc::new(SinkStats::new(n)), Arc::new(SinkLane::new(100))))
            .collect();
        let stats = RunStats {
            started: Instant::now(),
            routes: vec![Arc::new(RouteStats::new("stage", "es")), Arc::new(RouteStats::new("stage", "fr"))],
            sinks: sinks.clone(),
            route_sinks: vec![vec![0, 1], vec![]],
            sources: vec![],
            source_refused: vec![],
            source_buffer_ms: 100,
            budget_usd: None,
        };
        assert!(!stats.any_sink_loss());
        assert_eq!(stats.json(false, None)["routes"][0]["sink_losses"], json!([]));
        let chunk = Chunk { offset: 0, samples: Arc::from(vec![1i16; 36_000]), born: Instant::now() };
        let item = SinkItem::Audio { route: 0, language: "es".into(), chunk, queued: Instant::now(), floor: false };
        sinks[0].1.lost(&item);
        sinks[0].0.failures.fetch_add(1, Relaxed);
        sinks[0].0.restarts.fetch_add(1, Relaxed);
        sinks[0].0.state.store(1, Relaxed);
        let losses = stats.sink_losses(0);
        assert_eq!(losses.len(), 1);
        assert_eq!(
            losses[0].describe(),
            "sink \"rec:es\" (done): 1.5 s of audio not delivered, 1 failure, restarted 1 time"
        );
        assert!(stats.any_sink_loss() && stats.sink_losses(1).is_empty());
        let j = &stats.json(true, Some(1))["routes"][0]["sink_losses"][0];
        assert_eq!(
            (j["sink"].as_str(), j["dropped_s"].as_f64(), j["restarts"].as_u64()),
            (Some("rec:es"), Some(1.5), Some(1))
        );
        // An abandoned sink is a loss even when nothing was counted yet.
        sinks[1].0.state.store(3, Relaxed);
        assert_eq!(stats.sink_losses(0)[1].describe(), "sink \"captions:es\" (abandoned)");
    }

    #[test]
    fn final_states_stick() {
        let r = RouteStats::new("stage", "es");
        r.set_state(RouteState::Running);
        r.set_state(RouteState::Stopped);
        r.set_state(RouteState::Running);
        assert_eq!(r.state(), RouteState::Stopped);
    }
}
