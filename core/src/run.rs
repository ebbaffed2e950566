//! `tolk run CONFIG`: load the configuration and its plugins exactly as `tolk check` does, start
//! the engine (for `provider = "local"`, tolk's own server in-process on 127.0.0.1), run the
//! router until the sources end or Ctrl-C, and print the summary.
//!
//! Exit status: 0 when everything ran to the end; 1 when a plugin failed (whatever its
//! policy did, a successful restart included), a route could not run, a sink lost anything
//! (dropped or undelivered audio or text, failed writes; listed per route in the summary), a
//! sink had to be abandoned, the budget ran out, or a source wrote faster than its lane took it
//! and lost the refused audio; 2 for configuration and plugin-load errors (nothing started).

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
    sync::{Arc, atomic::Ordering::Relaxed},
    time::Duration,
};

use crate::{
    config::{self, Config, FLOOR, Provider},
    exit,
    plugin_host::{Registry, SearchPath},
    router::{self, EngineTarget, Outcome, RunOptions, metrics::RunStats},
    shutdown::Shutdown,
};

/// Options of `tolk run`.
#[derive(Debug, Clone, Default)]
pub struct RunArgs {
    /// The configuration file.
    pub config: PathBuf,
    /// JSON status file.
    pub json_status: Option<PathBuf>,
    /// Prometheus text file.
    pub prometheus: Option<PathBuf>,
    /// Status period.
    pub interval_ms: u64,
    /// Never draw the status line.
    pub no_status: bool,
    /// Verbosity (for load reports).
    pub verbose: u8,
}

/// Loads `path` and its plugins and checks every plugin reference and table; prints every
/// warning and error (`tolk check` and `tolk run` print the same, in the same order and
/// words); `Err(exit status)` when it cannot run.
pub fn load(path: &Path, verbose: u8) -> Result<(Config, Registry, config::PluginCheck), u8> {
    let (config, config_errors) = config::parse(path);
    let reg = discover(&config);
    // Plugins are checked even after config errors, so one pass shows everything to fix. A
    // library that failed to load comes first: it explains the plugins found missing.
    let plugins = config::check_plugins(&config, &reg);
    let errors: Vec<config::ConfigError> =
        plugins.load_errors.iter().chain(&config_errors).chain(&plugins.errors).cloned().collect();
    print_warnings(&config, &plugins.warnings);
    if print_errors(&config, &errors, &reg, verbose) {
        return Err(exit::USAGE);
    }
    Ok((config, reg, plugins))
}

/// The plugins found in `config`'s plugin directories that exist (what `tolk check` and `tolk
/// run` load).
fn discover(config: &Config) -> Registry {
    let mut search = SearchPath::new(&config.plugin_dirs);
    search.dirs.retain(|(d, _)| d.is_dir());
    Registry::discover_probed(&search)
}

/// Prints the configuration's warnings and then `more`.
fn print_warnings(config: &Config, more: &[String]) {
    for w in config.warnings.iter().chain(more) {
        crate::errln!("warning: {w}");
    }
}

/// Prints `errors` (with the plugin-load details when `verbose`) and their count; true when
/// there were any.
fn print_errors(config: &Config, errors: &[config::ConfigError], reg: &Registry, verbose: u8) -> bool {
    if errors.is_empty() {
        return false;
    }
    for e in errors {
        crate::errln!("error: {e}");
    }
    if verbose > 0 {
        for e in &reg.errors {
            if let Some(d) = e.detail() {
                crate::errln!("{d}");
            }
        }
    }
    let n = errors.len();
    crate::errln!("{}: {n} error{}", config.file, if n == 1 { "" } else { "s" });
    true
}

/// `tolk run`.
pub fn run(args: &RunArgs) -> u8 {
    // Listen first: a SIGTERM while the plugins load must end the run cleanly, not kill it.
    let shutdown = Shutdown::on_signals();
    let (config, registry, _) = match load(&args.config, args.verbose) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            crate::errln!("error: cannot start the async runtime: {e}");
            return exit::RUNTIME;
        }
    };
    let translated = config.routes.iter().any(|r| r.to.iter().any(|l| l != FLOOR));
    let mut server = None;
    let engine = if translated {
        match start_engine(&config, &rt) {
            Ok((e, s)) => {
                server = s;
                Some(e)
            }
            Err(msg) => {
                crate::errln!("error: {}: {msg}", config.file);
                return exit::USAGE;
            }
        }
    } else {
        None
    };
    let (hub, listen_server) = match start_listen(&config) {
        Ok(Some((hub, server, listen_rt))) => (Some(hub), Some((server, listen_rt))),
        Ok(None) => (None, None),
        Err(msg) => {
            crate::errln!("error: {}: {msg}", config.file);
            return exit::RUNTIME;
        }
    };
    let options = RunOptions {
        status_line: !args.no_status && std::io::stderr().is_terminal(),
        json_status: args.json_status.clone(),
        prometheus: args.prometheus.clone(),
        interval: Duration::from_millis(if args.interval_ms == 0 { 1000 } else { args.interval_ms }),
        listen: hub.clone(),
    };
    let config = Arc::new(config);
    let outcome = match router::run(Arc::clone(&config), Arc::new(registry), engine, rt.handle(), shutdown, &options) {
        Ok(o) => o,
        Err(errors) => {
            for e in errors {
                crate::errln!("error: {}: {e}", config.file);
            }
            return exit::RUNTIME;
        }
    };
    print_summary(&config, &outcome);
    if let Some(hub) = &hub {
        print_listeners(hub);
    }
    if let Some((s, listen_rt)) = listen_server {
        listen_rt.block_on(s.shutdown());
        listen_rt.shutdown_timeout(Duration::from_secs(1));
    }
    if let Some(hub) = &hub {
        hub.stop();
    }
    if let Some(s) = server {
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(2), s.shutdown()).await.ok() });
    }
    // Sessions are closed by now; a hung plugin thread must not keep the process alive.
    rt.shutdown_timeout(Duration::from_secs(2));
    outcome.exit
}

/// The listener hub, its server and the server's runtime, when `[listen]` is configured.
type Listen = Option<(Arc<crate::listen::Hub>, crate::listen::ListenServer, tokio::runtime::Runtime)>;

/// Starts the listener hub and server of `[listen]` (nothing without the section) and prints
/// the page's URL on stderr.
///
/// The server runs on a runtime of its own: an audience's sockets never queue behind (or in
/// front of) the routes' Realtime sessions on the run's runtime.
fn start_listen(config: &Config) -> Result<Listen, String> {
    let (Some(settings), Some(hub)) = (&config.listen, crate::listen::Hub::start(config)?) else {
        return Ok(None);
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tolk-listen-io")
        .enable_all()
        .build()
        .map_err(|e| format!("listen: cannot start its runtime: {e}"))?;
    let server = rt.block_on(crate::listen::ListenServer::start(settings, Arc::clone(&hub)))?;
    crate::errln!("listeners: {}", server.url());
    if settings.tls == Some(crate::config::listen::ListenTls::SelfSigned) {
        crate::errln!(
            "warning: {}: listen.tls_self_signed: a certificate made just now, for a trial only: every browser warns \
             that the connection is not private and listeners must accept that first; give listen.tls_cert and \
             listen.tls_key for an event",
            config.file
        );
    }
    // The QR code for phones, on a terminal only (a log gets the URL line above).
    if std::io::stderr().is_terminal() {
        let url = crate::listen::listener_url(settings, &server.url());
        match crate::listen::qr(&url) {
            Ok(q) => crate::errln!("listeners open {url}:\n{q}"),
            Err(e) => tracing::warn!("{e}"),
        }
    }
    Ok(Some((hub, server, rt)))
}

/// Per offered language: the most listeners at once and what slow listeners skipped.
fn print_listeners(hub: &crate::listen::Hub) {
    for c in &hub.channels {
        let mut line = format!(
            "  listeners {:<8} peak {}  packets {}  skipped by slow listeners {}",
            c.code,
            c.peak_listeners.load(Relaxed),
            c.packets.load(Relaxed),
            c.dropped.load(Relaxed)
        );
        let lost = c.input_dropped.load(Relaxed);
        if lost > 0 {
            line += &format!("  route audio dropped {:.1} s", lost as f64 / 24_000.0);
        }
        crate::outln!("{line}");
    }
}

/// Starts the engine the translated routes talk to: for `provider = "local"` without a `url`,
/// tolk's own server in-process on 127.0.0.1 (a free port), kept running in the returned
/// handle; otherwise the configured service.
fn start_engine(
    config: &Config,
    rt: &tokio::runtime::Runtime,
) -> Result<(EngineTarget, Option<crate::serve::ServerHandle>), String> {
    match config.engine.provider {
        Provider::Local if config.engine.url.is_none() => {
            let engine = crate::serve::engine_by_name(&config.engine.local_engine)?;
            let server = rt
                .block_on(crate::serve::Server::bind(crate::serve::ServeOptions { engine, ..Default::default() }))
                .map_err(|e| format!("cannot start the local server: {e}"))?;
            let handle = {
                let _guard = rt.enter();
                server.spawn()
            };
            tracing::info!("local engine listening on {}", handle.url());
            // The path the protocol uses on the real service (the legacy shape is told apart by
            // its header, as there).
            let path = match config.engine.protocol {
                config::Protocol::Translation => "/v1/realtime/translations",
                _ => "/v1/realtime",
            };
            let url = format!("{}{path}", handle.url());
            Ok((EngineTarget { engine: config.engine.clone(), url: Some(url) }, Some(handle)))
        }
        _ => {
            // A missing key or endpoint is a configuration error: say so before starting.
            crate::realtime::Endpoint::resolve(&config.engine, None, |k| std::env::var(k).ok())
                .map_err(|e| e.to_string())?;
            Ok((EngineTarget { engine: config.engine.clone(), url: None }, None))
        }
    }
}

/// The closing summary on stdout: per route audio, responses, latency, cost; then problems.
pub fn print_summary(config: &Config, outcome: &Outcome) {
    let stats: &RunStats = &outcome.stats;
    let secs = |f: u64| f as f64 / 24_000.0;
    crate::outln!(
        "{}: {} in {:.1} s — {} route{}, cost ${:.4}{}",
        config.file,
        if outcome.exit == exit::OK { "done" } else { "finished with problems" },
        stats.started.elapsed().as_secs_f64(),
        stats.routes.len(),
        if stats.routes.len() == 1 { "" } else { "s" },
        stats.cost_usd(),
        config.run.budget_usd.map(|b| format!(" of ${b:.2} budget")).unwrap_or_default(),
    );
    for (i, r) in stats.routes.iter().enumerate() {
        let mut line = format!(
            "  {:<14} {:<11} in {:>7.1} s  out {:>7.1} s",
            r.name,
            r.state().as_str(),
            secs(r.frames_in.load(Relaxed)),
            secs(r.frames_out.load(Relaxed))
        );
        if r.language != FLOOR {
            let ev = r.ear_voice_ms.lock().unwrap_or_else(|e| e.into_inner());
            line += &format!(
                "  responses {}  ear-voice p50 {}  sessions {} (reconnects {}, rotations {})  ${:.4}",
                r.responses.load(Relaxed),
                ev.quantile(0.5).map(|v| format!("{:.0} ms", v)).unwrap_or_else(|| "-".into()),
                r.sessions.load(Relaxed),
                r.reconnects.load(Relaxed),
                r.rotations.load(Relaxed),
                r.cost_usd()
            );
            let stalls = r.stalls.load(Relaxed);
            if stalls > 0 {
                line += &format!("  stalls {stalls}");
            }
            let resumed = r.responses_resumed.load(Relaxed);
            if resumed > 0 {
                line += &format!("  resumed after a drop {resumed}");
            }
            if let Some(lost) = r.losses() {
                line += &format!("  LOST: {lost}");
            }
        }
        let sys = r.system_ms.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(p50), Some(p99)) = (sys.quantile(0.5), sys.quantile(0.99)) {
            line += &format!("  system p50 {p50:.2} ms p99 {p99:.2} ms");
        }
        crate::outln!("{line}");
        // What this route lost at its sinks (nothing is lost silently).
        for loss in stats.sink_losses(i) {
            crate::outln!("    lost at {}", loss.describe());
        }
    }
    for (id, _) in &stats.sources {
        let refused = stats.refused_frames(id);
        if refused > 0 {
            crate::outln!(
                "  source {id}: {:.1} s of audio refused and lost: it wrote faster than its lane ({} ms) took it",
                secs(refused),
                stats.source_buffer_ms
            );
        }
    }
    for (s, lane) in &stats.sinks {
        let stalls = lane.counts().stalls;
        if stalls > 0 {
            crate::outln!("  sink {}: stalled {stalls} time{}", s.name, if stalls == 1 { "" } else { "s" });
        }
    }
    for p in &outcome.problems {
        crate::errln!("error: {p}");
    }
}
