//! Routing: the graph sources → routes → sinks of a run, and the threads and lanes that carry
//! audio along it.
//!
//! ```text
//!  source plugin ─AudioWriter─▶ source lane ─▶ source thread: convert to 24 kHz mono i16,
//!                                              one Arc'd chunk fanned out to every route
//!      ├─▶ floor route: the chunk itself to each sink lane (no copy per route or sink)
//!      └─▶ translated route (tokio task, `route`): Realtime session(s) → audio + text
//!                                                         │
//!  sink lane (bounded, drops its own oldest audio) ◀──────┘ one per sink instance
//!      └─▶ sink thread: convert to the sink's format, call the plugin
//! ```
//!
//! The one decision to know: **nothing on the audio path waits for a sink.** Every sink
//! instance has its own lane and thread; a full lane drops that sink's oldest audio and counts
//! it. Only in `lossless` delivery (recordings processed faster than real time) does the
//! fan-out wait for a full lane, and then only up to the stall timeout, after which that sink
//! is declared stalled and drops like a live one. Control (ends, failures, shutdown) travels
//! on its own channel to the control loop in [`run`], never behind audio.
//!
//! - [`source_lane`]: the source lane behind a source's `AudioWriter`.
//! - [`sink_lane`]: the lane in front of a sink instance.
//! - [`plan`]: the route graph built from the config.
//! - [`metrics`]: counters, status line, JSON and Prometheus output.
//! - [`route`]: the translated route stage on Realtime sessions.
//! - [`cost`]: pricing usage per token class.
//! - `source`, `sink`, `prompt`: the threads that own plugin instances.

pub mod cost;
pub mod gate;
pub mod metrics;
pub mod plan;
mod prompt;
pub mod route;
mod sink;
pub mod sink_lane;
mod source;
pub mod source_lane;

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, Sender};
use tolk_plugin_api::{PluginError, PluginKind};

use self::{
    metrics::{RouteState, RouteStats, RunStats, SinkStats},
    plan::Plan,
    sink_lane::{SinkItem, SinkLane, TextItem},
};
use crate::{
    config::{Config, FailurePolicy, run::Delivery},
    plugin_host::{HostServices, Registry},
    shutdown::{Level, Shutdown},
};

/// The sample rate of internal audio.
pub const RATE: u32 = 24_000;

/// How many times an instance is restarted under `restart` before its routes are stopped.
pub const MAX_RESTARTS: u32 = 5;

/// How long before restart number `n` (1-based) of a failed instance: 250 ms, doubled per
/// restart (250 ms, 0.5, 1, 2, 4 s), so a fault that persists (a full disk) is not hammered
/// and the five restarts span seconds rather than a tenth of one.
pub fn restart_delay(n: u32) -> Duration {
    Duration::from_millis(250) * 2u32.pow(n.saturating_sub(1).min(10))
}

/// A sink hung in one plugin call this long is warned about (and then every
/// [`STALL_WARN_EVERY`] while it stays hung, or while its lane keeps dropping).
pub const STALL_WARN_AFTER: Duration = Duration::from_secs(2);

/// The most often one sink is warned about (stalled, dropping).
pub const STALL_WARN_EVERY: Duration = Duration::from_secs(10);

/// One block of internal audio (24 kHz mono i16), shared by every route and sink that gets it.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Frame offset of the first sample on its stream's clock (24 kHz).
    pub offset: u64,
    /// The samples.
    pub samples: Arc<[i16]>,
    /// When tolk got it (from the source, or from a session): system-added latency.
    pub born: Instant,
}

/// What a translated route receives from its source.
#[derive(Debug)]
pub enum RouteIn {
    /// Audio.
    Audio(Chunk),
    /// The source ended (or stopped): finish pending translations and end.
    End,
}

/// Messages to the control loop.
#[derive(Debug)]
pub(crate) enum Control {
    /// A source thread finished.
    SourceDone,
    /// A route ended (its sinks got their end mark).
    RouteDone,
    /// A sink thread finished.
    SinkDone,
    /// A plugin failed and its policy needs the control loop: stop these routes, or exit.
    Failed {
        /// `sink "rec:es"`, `source "stage"` …
        what: String,
        /// The error.
        error: PluginError,
        /// StopRoute or Exit (Restart is handled where the instance lives).
        policy: FailurePolicy,
        /// Routes that use the instance.
        routes: Vec<usize>,
    },
    /// A failed sink stopped itself (its lane is closed); its routes run on for their other
    /// sinks.
    SinkFailed {
        /// The sink instance's index.
        sink: usize,
        /// `sink "rec:es"`.
        what: String,
        /// The error.
        error: PluginError,
    },
    /// A failed instance is being restarted (policy `restart`): the run will exit 1 and its
    /// summary says what was restarted how often.
    Restarted {
        /// `sink "rec:es"`, `source "stage"` …
        what: String,
        /// The failure that caused it.
        error: String,
    },
    /// A non-plugin problem that stops a route (a session that cannot be opened).
    RouteFailed {
        /// The route.
        route: usize,
        /// One line.
        message: String,
    },
}

/// State shared by every thread and task of a run.
pub(crate) struct Shared {
    /// Where plugins come from (restarts create new instances).
    pub registry: Arc<Registry>,
    /// The config (file name, directory, specs).
    pub config: Arc<Config>,
    /// The route graph.
    pub plan: Plan,
    /// The run's shutdown signal.
    pub shutdown: Shutdown,
    /// To the control loop.
    pub control: Sender<Control>,
    /// Per route: stopped by the failure policy (or the budget): deliver nothing more.
    pub route_stopped: Vec<AtomicBool>,
    /// Per route: its end mark has been sent to its sinks.
    pub route_ended: Vec<AtomicBool>,
    /// Per route: the language its audio carries (the source's for the floor).
    pub route_language: Vec<Arc<str>>,
    /// Per route counters.
    pub route_stats: Vec<Arc<RouteStats>>,
    /// Per sink instance: its lane.
    pub sink_lanes: Vec<Arc<SinkLane>>,
    /// Per sink instance counters.
    pub sink_stats: Vec<Arc<SinkStats>>,
    /// Set when the budget is used up: no new responses.
    pub over_budget: AtomicBool,
    /// Echo gates and the playout clocks they watch.
    pub gates: gate::Gates,
    /// Per route: the inputs of the relay routes fed by its translated output, taken by the
    /// route's task (dropping them ends the relays' input).
    pub relay_inputs: Vec<std::sync::Mutex<Vec<tokio::sync::mpsc::Sender<RouteIn>>>>,
    /// The listener hub (`[listen]`): gets every offered route's output, never waits.
    pub listen: Option<Arc<crate::listen::Hub>>,
}

impl Shared {
    /// How long a push to a full sink lane may wait.
    fn wait(&self) -> Option<Duration> {
        (self.config.run.delivery == Delivery::Lossless)
            .then(|| Duration::from_millis(self.config.run.stall_timeout_ms))
    }

    /// True when route `r` delivers nothing more.
    pub fn is_stopped(&self, r: usize) -> bool {
        self.route_stopped[r].load(Relaxed) || self.route_ended[r].load(Relaxed)
    }

    /// Sends audio of route `r` to its sinks (the chunk is shared, not copied).
    pub fn deliver_audio(&self, r: usize, chunk: &Chunk) {
        if self.is_stopped(r) {
            return;
        }
        self.route_stats[r].frames_out.fetch_add(chunk.samples.len() as u64, Relaxed);
        self.route_stats[r].level_out.record(&chunk.samples);
        if let Some(hub) = &self.listen {
            hub.audio(r, chunk);
        }
        let wait = self.wait();
        for &s in &self.plan.routes[r].sinks {
            let item = SinkItem::Audio {
                route: r,
                language: Arc::clone(&self.route_language[r]),
                chunk: chunk.clone(),
                queued: Instant::now(),
                floor: false,
            };
            self.sink_lanes[s].push(item, wait);
        }
    }

    /// Sends the floor (the source's own audio) of translated route `r` to its sinks, as floor
    /// blocks for the sinks that mix it under the translation.
    pub fn deliver_floor(&self, r: usize, chunk: &Chunk) {
        if self.is_stopped(r) {
            return;
        }
        let wait = self.wait();
        let language: Arc<str> = Arc::from(self.plan.input_language(&self.config, r));
        for &s in &self.plan.routes[r].sinks {
            let item = SinkItem::Audio {
                route: r,
                language: Arc::clone(&language),
                chunk: chunk.clone(),
                queued: Instant::now(),
                floor: true,
            };
            self.sink_lanes[s].push(item, wait);
        }
    }

    /// Sends a text event of route `r` to its sinks (in lossless delivery waiting, like audio,
    /// for a sink more than its buffer behind).
    pub fn deliver_text(&self, r: usize, item: TextItem) {
        if self.is_stopped(r) {
            return;
        }
        if let Some(hub) = &self.listen {
            hub.text(r, &item);
        }
        let wait = self.wait();
        for &s in &self.plan.routes[r].sinks {
            self.sink_lanes[s].push(SinkItem::Text { route: r, item: item.clone() }, wait);
        }
    }

    /// Ends route `r` once: its sinks get the end mark, the control loop is told.
    pub fn end_route(&self, r: usize) {
        if self.route_ended[r].swap(true, Relaxed) {
            return;
        }
        self.route_stats[r].set_state(RouteState::Done);
        for &s in &self.plan.routes[r].sinks {
            self.sink_lanes[s].push(SinkItem::End { route: r }, None);
        }
        let _ = self.control.send(Control::RouteDone);
    }

    /// Stops route `r` (failure policy): nothing more is delivered; its sinks finish cleanly.
    pub fn stop_route(&self, r: usize) {
        self.route_stopped[r].store(true, Relaxed);
        self.route_stats[r].force_state(RouteState::Stopped);
        self.end_route(r);
    }

    /// Sleeps `d`, waking early when the run is told to stop now; false in that case.
    pub fn sleep_unless_stopping(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            if self.shutdown.level() >= Level::Now {
                return false;
            }
            let now = Instant::now();
            if now >= end {
                return true;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(50)));
        }
    }

    /// Host services for instance `id` of `plugin`.
    pub fn host(&self, id: &str, plugin: &str) -> HostServices {
        HostServices { instance_id: id.into(), plugin_id: plugin.into(), config_dir: self.config.dir.clone() }
    }
}

/// How a run reports on itself.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Draw the live status line on stderr (only on a terminal).
    pub status_line: bool,
    /// Write the JSON status here, periodically and at the end.
    pub json_status: Option<PathBuf>,
    /// Write the Prometheus text exposition here, periodically and at the end.
    pub prometheus: Option<PathBuf>,
    /// Period of the status outputs.
    pub interval: Duration,
    /// The listener hub, when `[listen]` is configured.
    pub listen: Option<Arc<crate::listen::Hub>>,
}

/// How a run ended.
pub struct Outcome {
    /// Exit status: 0 all done, 1 something failed, was abandoned, or the budget ran out.
    pub exit: u8,
    /// The counters.
    pub stats: Arc<RunStats>,
    /// What went wrong, one line each.
    pub problems: Vec<String>,
    /// The budget ran out.
    pub budget_exhausted: bool,
}

/// Where the translated routes' sessions go.
#[derive(Clone)]
pub struct EngineTarget {
    /// The engine settings.
    pub engine: crate::config::Engine,
    /// URL override (the in-process local server's address).
    pub url: Option<String>,
}

/// Runs `config` until its sources end (then drains everything) or the shutdown signal.
/// Plugins come from `registry`; translated routes open their sessions on `engine` through
/// `rt`. Blocks the calling thread, which runs the control loop.
pub fn run(
    config: Arc<Config>,
    registry: Arc<Registry>,
    engine: Option<EngineTarget>,
    rt: &tokio::runtime::Handle,
    shutdown: Shutdown,
    options: &RunOptions,
) -> Result<Outcome, Vec<String>> {
    let plan = Plan::new(&config);
    let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded();
    let settings = &config.run;
    let cap = (settings.sink_buffer_ms * u64::from(RATE) / 1000) as usize;

    // Create every instance before starting anything, so a failure here starts nothing.
    let mut errors = vec![];
    let mut sinks = vec![];
    for s in &plan.sinks {
        match registry.create_sink(&s.plugin, &s.config, host(&config, &s.id, &s.plugin)) {
            Ok(i) => sinks.push(i),
            Err(e) => errors.push(format!("sink \"{}\": {e}", s.id)),
        }
    }
    let mut sources = vec![];
    for s in &config.sources {
        match registry.create_source(&s.plugin, &s.config, host(&config, &s.id, &s.plugin)) {
            Ok(i) => sources.push(i),
            Err(e) => errors.push(format!("source \"{}\": {e}", s.id)),
        }
    }
    let mut prompts = vec![];
    for p in &config.prompts {
        match registry.create_prompt(&p.plugin, &p.config_text(None), host(&config, &p.id, &p.plugin)) {
            Ok(i) => prompts.push(i),
            Err(e) => errors.push(format!("prompt \"{}\": {e}", p.id)),
        }
    }
    if plan.routes.iter().any(|r| !r.is_floor()) && engine.is_none() {
        errors.push("translated routes need an engine".into());
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let route_stats: Vec<Arc<RouteStats>> = plan
        .routes
        .iter()
        .map(|r| {
            let source = &config.sources[r.source].id;
            // A relay is named by its path: `stage→es→sw`.
            let from = match r.via {
                Some(p) => format!("{source}→{}", plan.routes[p].language),
                None => source.clone(),
            };
            Arc::new(RouteStats::new(&from, &r.language))
        })
        .collect();
    // Relay inputs exist before any route task starts, so that every pivot finds its relays.
    let mut relay_rx: Vec<Option<tokio::sync::mpsc::Receiver<RouteIn>>> = plan.routes.iter().map(|_| None).collect();
    let relay_inputs: Vec<std::sync::Mutex<Vec<tokio::sync::mpsc::Sender<RouteIn>>>> =
        plan.routes.iter().map(|_| std::sync::Mutex::new(vec![])).collect();
    for (r, rp) in plan.routes.iter().enumerate() {
        if let Some(p) = rp.via {
            let (tx, rx) = tokio::sync::mpsc::channel(3000);
            relay_rx[r] = Some(rx);
            relay_inputs[p].lock().unwrap_or_else(|e| e.into_inner()).push(tx);
        }
    }
    let sink_stats: Vec<Arc<SinkStats>> = plan.sinks.iter().map(|s| Arc::new(SinkStats::new(&s.id))).collect();
    let sink_lanes: Vec<Arc<SinkLane>> = plan.sinks.iter().map(|_| Arc::new(SinkLane::new(cap))).collect();
    let source_frames: Vec<Arc<AtomicU64>> = config.sources.iter().map(|_| Arc::new(AtomicU64::new(0))).collect();
    let source_refused: Vec<Arc<AtomicU64>> = config.sources.iter().map(|_| Arc::new(AtomicU64::new(0))).collect();
    let stats = Arc::new(RunStats {
        started: Instant::now(),
        routes: route_stats.clone(),
        sinks: sink_stats.iter().cloned().zip(sink_lanes.iter().cloned()).collect(),
        route_sinks: plan.routes.iter().map(|r| r.sinks.clone()).collect(),
        sources: config.sources.iter().map(|s| s.id.clone()).zip(source_frames.iter().cloned()).collect(),
        source_refused: source_refused.clone(),
        source_buffer_ms: settings.source_buffer_ms,
        budget_usd: settings.budget_usd,
    });
    if let Some(hub) = &options.listen {
        hub.attach(Arc::clone(&stats));
    }
    let shared = Arc::new(Shared {
        registry,
        route_stopped: plan.routes.iter().map(|_| AtomicBool::new(false)).collect(),
        route_ended: plan.routes.iter().map(|_| AtomicBool::new(false)).collect(),
        route_language: plan
            .routes
            .iter()
            .map(|r| {
                Arc::from(if r.is_floor() { config.sources[r.source].language.as_str() } else { r.language.as_str() })
            })
            .collect(),
        plan: plan.clone(),
        config: Arc::clone(&config),
        shutdown: shutdown.clone(),
        control: ctl_tx,
        route_stats,
        sink_lanes,
        sink_stats,
        over_budget: AtomicBool::new(false),
        gates: gate::Gates::new(&config, &plan),
        relay_inputs,
        listen: options.listen.clone(),
    });

    // Sinks first, so that nothing produced is lost; sources last.
    let mut threads: Vec<JoinHandle<()>> = vec![];
    for (i, inst) in sinks.into_iter().enumerate() {
        threads.push(sink::spawn(Arc::clone(&shared), i, inst));
    }
    let prompt_lanes: Vec<_> =
        prompts.into_iter().enumerate().map(|(i, inst)| prompt::spawn(Arc::clone(&shared), i, inst)).collect();
    let mut consumers: Vec<Vec<source::Consumer>> = vec![vec![]; config.sources.len()];
    let mut route_inputs_ok = true;
    for (r, rp) in plan.routes.iter().enumerate() {
        if rp.is_floor() {
            consumers[rp.source].push(source::Consumer::Floor(r));
            shared.route_stats[r].set_state(RouteState::Running);
        } else if let Some(engine) = &engine {
            // Room for a minute of 20 ms chunks: the task reads continuously, so this only
            // fills if the runtime is starved. A relay reads its pivot's output instead.
            let rx = match relay_rx[r].take() {
                Some(rx) => rx,
                None => {
                    let (tx, rx) = tokio::sync::mpsc::channel(3000);
                    consumers[rp.source].push(source::Consumer::Session(r, tx));
                    rx
                }
            };
            let prompt = rp.prompt.map(|p| prompt_lanes[p].clone());
            rt.spawn(route::run_route(Arc::clone(&shared), r, engine.clone(), prompt, rx));
        } else {
            route_inputs_ok = false;
        }
    }
    debug_assert!(route_inputs_ok);
    let n_sources = config.sources.len();
    for (i, (inst, cons)) in sources.into_iter().zip(consumers).enumerate() {
        let (frames, refused) = (Arc::clone(&source_frames[i]), Arc::clone(&source_refused[i]));
        threads.push(source::spawn(Arc::clone(&shared), i, inst, cons, frames, refused));
    }
    drop(prompt_lanes);

    let outcome = control_loop(&shared, ctl_rx, &stats, options, n_sources);
    // Threads that finished are joined; a hung one (a sink stuck in the plugin) is left behind.
    for t in threads {
        if t.is_finished() {
            let _ = t.join();
        }
    }
    Ok(outcome)
}

fn host(config: &Config, id: &str, plugin: &str) -> HostServices {
    HostServices { instance_id: id.into(), plugin_id: plugin.into(), config_dir: config.dir.clone() }
}

/// Waits for every source, route and sink to finish, applying failure policies and drain
/// deadlines, and refreshing the status outputs.
fn control_loop(
    shared: &Arc<Shared>,
    rx: Receiver<Control>,
    stats: &Arc<RunStats>,
    options: &RunOptions,
    n_sources: usize,
) -> Outcome {
    let settings = &shared.config.run;
    let (mut sources_left, mut routes_left, mut sinks_left) =
        (n_sources, shared.plan.routes.len(), shared.plan.sinks.len());
    let mut problems: Vec<String> = vec![];
    let mut exit = 0u8;
    let mut drain_deadline: Option<Instant> = None;
    let mut hard_deadline: Option<Instant> = None;
    let mut next_status = Instant::now();
    let mut warned_budget = false;
    let mut budget_exhausted = false;
    let interval = if options.interval.is_zero() { Duration::from_secs(1) } else { options.interval };
    let mut status = StatusWriter::new(options);
    // What was restarted (in order of first restart): how often, and the latest failure.
    let mut restarted: Vec<(String, u64, String)> = vec![];
    let mut watch: Vec<SinkWatch> = stats.sinks.iter().map(|_| SinkWatch::default()).collect();
    loop {
        watch_sinks(stats, &mut watch);
        if sources_left == 0 && routes_left == 0 && sinks_left == 0 {
            break;
        }
        let now = Instant::now();
        let level = shared.shutdown.level();
        if drain_deadline.is_none() && (level >= Level::Graceful || sources_left == 0) {
            drain_deadline = Some(now + Duration::from_millis(settings.drain_timeout_ms));
        }
        if hard_deadline.is_none() && level >= Level::Now {
            hard_deadline = Some(now + Duration::from_secs(3));
            // Idle sink threads sleep until their lane wakes them: they stop now.
            for lane in &shared.sink_lanes {
                lane.wake();
            }
        }
        if let Some(d) = drain_deadline
            && now >= d
            && level < Level::Now
        {
            problems.push(format!("not finished {} ms after the end: stopping now", settings.drain_timeout_ms));
            shared.shutdown.raise(Level::Now);
            continue;
        }
        if let Some(d) = hard_deadline
            && now >= d
        {
            for (s, lane) in &stats.sinks {
                if s.state.load(Relaxed) == 0 {
                    s.state.store(3, Relaxed);
                    lane.close();
                    problems.push(format!("sink \"{}\": did not finish: abandoned", s.name));
                }
            }
            exit = 1;
            break;
        }
        if now >= next_status {
            status.write(stats, false, None);
            next_status = now + interval;
        }
        // The budget: warn at 80 %, stop new responses at 100 %.
        if let Some(b) = settings.budget_usd {
            let cost = stats.cost_usd();
            if !warned_budget && cost >= 0.8 * b {
                warned_budget = true;
                tracing::warn!("cost ${cost:.4} has reached 80 % of the budget (${b:.2})");
            }
            if !budget_exhausted && cost >= b {
                budget_exhausted = true;
                shared.over_budget.store(true, Relaxed);
                problems.push(format!("budget of ${b:.2} reached (${cost:.4}): no new responses"));
                tracing::error!("cost ${cost:.4} has reached the budget (${b:.2}): no new responses");
            }
        }
        let mut wait = next_status.saturating_duration_since(now).min(Duration::from_millis(200));
        for d in [drain_deadline, hard_deadline].into_iter().flatten() {
            wait = wait.min(d.saturating_duration_since(now));
        }
        match rx.recv_timeout(wait) {
            Ok(Control::SourceDone) => sources_left -= 1,
            Ok(Control::RouteDone) => routes_left -= 1,
            Ok(Control::SinkDone) => sinks_left -= 1,
            Ok(Control::Failed { what, error, policy, routes }) => {
                exit = 1;
                match policy {
                    FailurePolicy::Exit => {
                        problems.push(format!("{what}: {error} (on_plugin_failure = \"exit\": stopping the run)"));
                        tracing::error!("{what} failed: {error}; stopping the run");
                        shared.shutdown.raise(Level::Now);
                    }
                    _ => {
                        let names: Vec<&str> = routes.iter().map(|&r| shared.route_stats[r].name.as_str()).collect();
                        problems.push(format!("{what}: {error} (stopped route {})", names.join(", ")));
                        tracing::error!("{what} failed: {error}; stopping route {}", names.join(", "));
                        for r in routes {
                            shared.stop_route(r);
                        }
                    }
                }
            }
            Ok(Control::SinkFailed { sink, what, error }) => {
                exit = 1;
                // The routes it served run on for their other sinks; one left with none stops.
                let mut orphaned = vec![];
                let mut running = vec![];
                for (r, rp) in shared.plan.routes.iter().enumerate() {
                    // A route that already ended may still be draining into its sinks.
                    if !rp.sinks.contains(&sink) || shared.route_stopped[r].load(Relaxed) {
                        continue;
                    }
                    let name = shared.route_stats[r].name.clone();
                    if rp.sinks.iter().all(|&s| s == sink || shared.sink_stats[s].gone()) {
                        orphaned.push((r, name));
                    } else {
                        running.push(name);
                    }
                }
                let mut what_next = vec![];
                if !running.is_empty() {
                    what_next.push(format!("route {} runs on for its other sinks", running.join(", ")));
                }
                if !orphaned.is_empty() {
                    let names: Vec<&str> = orphaned.iter().map(|(_, n)| n.as_str()).collect();
                    what_next.push(format!("stopped route {}, which has no other sink", names.join(", ")));
                }
                let what_next =
                    if what_next.is_empty() { "stopped this sink".to_string() } else { what_next.join("; ") };
                problems.push(format!("{what}: {error} ({what_next})"));
                tracing::error!("{what} failed: {error}; {what_next}");
                for (r, _) in orphaned {
                    shared.stop_route(r);
                }
            }
            Ok(Control::Restarted { what, error }) => {
                exit = 1;
                match restarted.iter_mut().find(|(w, ..)| *w == what) {
                    Some((_, n, e)) => {
                        *n += 1;
                        *e = error;
                    }
                    None => restarted.push((what, 1, error)),
                }
            }
            Ok(Control::RouteFailed { route, message }) => {
                exit = 1;
                let name = &shared.route_stats[route].name;
                problems.push(format!("route {name}: {message}"));
                tracing::error!("route {name}: {message}");
                shared.stop_route(route);
            }
            Err(_) => {}
        }
    }
    if budget_exhausted {
        exit = 1;
    }
    for (what, n, error) in restarted {
        problems.push(format!(
            "{what} failed and was restarted {n} time{} (latest failure: {error})",
            if n == 1 { "" } else { "s" }
        ));
    }
    // Audio or text a sink lost (dropped, undelivered, failed writes, restarts) is a loss of
    // the run: the summary lists it per route. So is audio a source wrote and its lane refused.
    if stats.any_sink_loss() || stats.source_refused.iter().any(|r| r.load(Relaxed) > 0) {
        exit = 1;
    }
    // Nothing lost silently: a route that lost input or output fails the run and says what.
    for r in &stats.routes {
        if let Some(lost) = r.losses() {
            exit = 1;
            problems.push(format!("route {}: lost {lost}", r.name));
        }
    }
    status.write(stats, true, Some(exit));
    status.clear_line();
    Outcome { exit, stats: Arc::clone(stats), problems, budget_exhausted }
}

/// What the control loop last said about one sink.
#[derive(Default)]
struct SinkWatch {
    /// When it was last warned about.
    warned: Option<Instant>,
    /// Frames its lane had dropped then.
    dropped: u64,
    /// It was reported hung in a plugin call.
    hung: bool,
}

/// Warns about sinks that hang in a plugin call or whose lanes drop audio, while it happens:
/// at once, then at most every [`STALL_WARN_EVERY`] per sink.
fn watch_sinks(stats: &RunStats, watch: &mut [SinkWatch]) {
    for ((s, lane), w) in stats.sinks.iter().zip(watch.iter_mut()) {
        if s.state.load(Relaxed) != 0 {
            continue;
        }
        let c = lane.counts();
        let busy = s.busy_for();
        if w.hung && busy.is_none() {
            w.hung = false;
            tracing::info!("sink \"{}\" is writing again", s.name);
        }
        if c.closed || w.warned.is_some_and(|t| t.elapsed() < STALL_WARN_EVERY) {
            continue;
        }
        let secs = |f: u64| f as f64 / f64::from(RATE);
        let new = c.dropped_frames.saturating_sub(w.dropped);
        match busy.filter(|b| *b >= STALL_WARN_AFTER) {
            Some(b) => {
                w.hung = true;
                tracing::warn!(
                    "sink \"{}\" is stalled: one call into the plugin has not returned for {:.1} s; its lane drops \
                     its oldest audio ({:.1} s so far)",
                    s.name,
                    b.as_secs_f64(),
                    secs(c.dropped_frames)
                );
            }
            None if new > 0 => {
                tracing::warn!(
                    "sink \"{}\" is falling behind: its lane dropped {:.1} s of audio, oldest first ({:.1} s so far)",
                    s.name,
                    secs(new),
                    secs(c.dropped_frames)
                );
            }
            None => continue,
        }
        w.warned = Some(Instant::now());
        w.dropped = c.dropped_frames;
    }
}

/// The status outputs of [`RunOptions`].
struct StatusWriter {
    listen: Option<Arc<crate::listen::Hub>>,
    line: bool,
    json: Option<PathBuf>,
    prometheus: Option<PathBuf>,
    drawn: bool,
    warned: bool,
}

impl StatusWriter {
    fn new(o: &RunOptions) -> StatusWriter {
        StatusWriter {
            listen: o.listen.clone(),
            line: o.status_line,
            json: o.json_status.clone(),
            prometheus: o.prometheus.clone(),
            drawn: false,
            warned: false,
        }
    }

    fn write(&mut self, stats: &RunStats, final_: bool, exit: Option<u8>) {
        if self.line && !final_ {
            let width = terminal_width();
            eprint!("\r\x1b[K{}", stats.status_line(width));
            self.drawn = true;
        }
        let mut fail = |path: &PathBuf, e: std::io::Error| {
            if !self.warned {
                tracing::warn!("cannot write {}: {e}", path.display());
                self.warned = true;
            }
        };
        if let Some(p) = &self.json {
            let mut v = stats.json(final_, exit);
            if let Some(hub) = &self.listen {
                v["listeners"] = hub.json();
            }
            let text = serde_json::to_string_pretty(&v).unwrap_or_default() + "\n";
            if let Err(e) = metrics::write_atomic(p, &text) {
                fail(p, e);
            }
        }
        let prometheus = || {
            let mut text = stats.prometheus();
            if let Some(hub) = &self.listen {
                text += &hub.prometheus();
            }
            text
        };
        if let Some(p) = &self.prometheus
            && let Err(e) = metrics::write_atomic(p, &prometheus())
        {
            fail(p, e);
        }
    }

    fn clear_line(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[K");
        }
    }
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).unwrap_or(160)
}

/// The instance kind in messages.
pub(crate) fn what(kind: PluginKind, id: &str) -> String {
    format!("{kind} \"{id}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off() {
        let ms: Vec<u128> = (1..=MAX_RESTARTS).map(|n| restart_delay(n).as_millis()).collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 4000]);
        assert_eq!(restart_delay(u32::MAX), restart_delay(11));
    }
}
