//! The command line: clap definitions and one function per subcommand. Each returns an exit
//! status from [`crate::exit`]: 0 ok, 1 runtime failure, 2 usage, configuration or plugin-load
//! error. Errors are printed one per line on stderr.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use tolk_plugin_api::PluginKind;

use crate::{
    config, exit,
    plugin_host::{self, Registry, SearchPath, check::CheckConfig},
};

/// tolk — a live speech interpretation router.
///
/// Speech comes in from sources, each target language gets its own Realtime session, and the
/// interpretation goes out to sinks (files, captions, speakers). Sources, prompt providers and
/// sinks are plugins loaded from shared libraries.
#[derive(Debug, Parser)]
#[command(name = "tolk", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// More output: -v shows debug logs and full plugin-load reports, -vv traces.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a configuration and load its plugins, creating each plugin instance once so
    /// that every plugin checks its own table; start nothing.
    ///
    /// Prints every problem found, one line each with file and key, and exits 2 if there is
    /// any.
    Check {
        /// The configuration file (TOML; see configs/README.md).
        config: PathBuf,
    },
    /// Run a configuration: until its file sources end (then every pending translation and
    /// sink is drained, exit 0), or until Ctrl-C / SIGTERM (graceful; a second Ctrl-C stops
    /// at once). Files are closed valid either way. With a [listen] section it also serves the
    /// listener web app (URL printed at start, with a QR code on a terminal).
    ///
    /// Exit status: 0 all done; 1 a plugin failed (even if restarted), a route could not run,
    /// a sink lost audio or was abandoned, the budget ran out or a source's audio was refused
    /// and lost; 2 configuration or plugin-load error.
    Run {
        /// The configuration file (TOML; see configs/README.md).
        config: PathBuf,
        /// Write the status as JSON to FILE, every --interval and at the end.
        #[arg(long, value_name = "FILE")]
        json_status: Option<PathBuf>,
        /// Write Prometheus text-format metrics to FILE, every --interval and at the end.
        #[arg(long, value_name = "FILE")]
        prometheus: Option<PathBuf>,
        /// Period of the status line and status files, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 1000)]
        interval: u64,
        /// No live status line (it is drawn only when stderr is a terminal anyway).
        #[arg(long)]
        no_status: bool,
    },
    /// List installed plugins, or check a plugin library.
    Plugins(PluginsArgs),
    /// Run tolk's own Realtime-compatible WebSocket server (GA, translation, Azure and legacy
    /// beta paths) on its deterministic test engine, which proves the plumbing and does not
    /// translate.
    ///
    /// Prints `tolk serve: listening on ws://ADDR` (`wss://` with --tls-cert/--tls-key) as its
    /// first line, then serves until Ctrl-C. Requests that are no WebSocket upgrade get an HTTP
    /// 404/405/426 with a short JSON body.
    Serve(crate::serve::ServeArgs),
    /// List the audio input and output devices (with their rates and channels; * marks the
    /// defaults), or show a live level meter for one input.
    ///
    /// Devices come from the plugins that open them (tolk.mic, tolk.speaker, and any plugin
    /// with the tolk.devices/1 capability). The meter draws a dBFS bar on stderr until Ctrl-C
    /// or --seconds, then prints the peak and RMS level on stdout.
    Devices(DevicesCliArgs),
}

/// `tolk devices`.
#[derive(Debug, Args)]
pub struct DevicesCliArgs {
    /// Show a live level meter for this input device (`default`, its name, or a unique part).
    #[arg(long, value_name = "NAME")]
    pub meter: Option<String>,
    /// Stop the meter after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "N", requires = "meter")]
    pub seconds: Option<f64>,
    /// The source plugin that opens the device for the meter.
    #[arg(long, value_name = "ID", default_value = "tolk.mic", requires = "meter")]
    pub plugin: String,
    /// Also search this directory for plugins (before TOLK_PLUGIN_PATH and the built-ins).
    #[arg(long = "path", value_name = "DIR")]
    pub paths: Vec<PathBuf>,
}

/// `tolk plugins`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct PluginsArgs {
    #[command(subcommand)]
    pub command: Option<PluginsCommand>,
    #[command(flatten)]
    pub list: ListArgs,
}

/// Options of `tolk plugins list`.
#[derive(Debug, Args, Default)]
pub struct ListArgs {
    /// Also search this directory (before TOLK_PLUGIN_PATH and the built-in directories).
    #[arg(long = "path", value_name = "DIR")]
    pub paths: Vec<PathBuf>,
    /// Print one JSON object per plugin instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `tolk plugins …` subcommands.
#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// List plugins found on the search path: id, kind, version, description, library (the
    /// default).
    ///
    /// The search path is --path, then TOLK_PLUGIN_PATH (':'-separated), then tolk's own
    /// directories next to the binary. Libraries that fail to load are reported after the
    /// list, all of them, and make the exit status 2.
    List(ListArgs),
    /// Run the conformance checks on a plugin library, each check in its own process, so a
    /// crash is reported as `crashed` rather than taking the checker down.
    ///
    /// Plugins are configured with their example config unless --config gives a table for
    /// them. Without --config, relative paths in the configs resolve against a scratch check
    /// directory that holds `speech.wav` (3 s of generated speech-like audio, 24 kHz mono
    /// 16-bit) for example configs that read a file. Exit status 0 when nothing failed or
    /// crashed, 1 otherwise, 2 when the library does not load.
    Check {
        /// Path to the shared library (.so / .dylib / .dll).
        #[arg(required_unless_present = "list_checks")]
        library: Option<PathBuf>,
        /// TOML file with config tables per plugin (`[source."tolk.wav"]`, `[sink."x.y"]`) and
        /// `[checks] skip = ["name", …]`.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Run only this check (repeat for more; --list-checks shows the names).
        #[arg(long = "only", value_name = "NAME")]
        only: Vec<String>,
        /// Show only the checks that failed or crashed (and the summary line).
        #[arg(long)]
        failed: bool,
        /// List the checks and exit (no library needed).
        #[arg(long)]
        list_checks: bool,
    },
    #[command(name = "__child", hide = true)]
    Child {
        #[command(subcommand)]
        what: ChildCommand,
    },
}

/// The hidden child side of `tolk plugins check` and of the load probe.
#[derive(Debug, Subcommand)]
pub enum ChildCommand {
    Probe {
        files: Vec<PathBuf>,
    },
    Describe {
        library: PathBuf,
        #[arg(long)]
        full_report: bool,
    },
    Check {
        library: PathBuf,
        #[arg(long)]
        kind: String,
        #[arg(long)]
        id: String,
        #[arg(long)]
        check: String,
        #[arg(long)]
        config_dir: PathBuf,
    },
}

/// Runs a parsed command line; returns the exit status.
pub fn run(cli: Cli) -> u8 {
    match cli.command {
        Command::Check { config } => check(&config, cli.verbose),
        Command::Run { config, json_status, prometheus, interval, no_status } => {
            crate::run::run(&crate::run::RunArgs {
                config,
                json_status,
                prometheus,
                interval_ms: interval,
                no_status,
                verbose: cli.verbose,
            })
        }
        Command::Devices(a) => crate::devices::run(&crate::devices::DevicesArgs {
            paths: a.paths,
            meter: a.meter,
            seconds: a.seconds.unwrap_or(0.0),
            plugin: Some(a.plugin),
        }),
        Command::Serve(args) => crate::serve::run_cli(args),
        Command::Plugins(args) => match args.command {
            None => list(&args.list, cli.verbose),
            Some(PluginsCommand::List(list_args)) => list(&list_args, cli.verbose),
            Some(PluginsCommand::Check { library, config, only, failed, list_checks }) => {
                if list_checks {
                    for c in tolk_plugin_api::testing::CHECKS {
                        let kinds: Vec<&str> = c.kinds.iter().map(PluginKind::as_str).collect();
                        crate::outln!("{:<24} [{}] {}", c.name, kinds.join(","), c.description);
                    }
                    return exit::OK;
                }
                // clap requires the library unless --list-checks is given.
                let Some(library) = library else { return exit::USAGE };
                check_library(&library, config.as_deref(), &only, failed, cli.verbose)
            }
            Some(PluginsCommand::Child { what }) => child(what),
        },
    }
}

fn print_load_error(e: &plugin_host::LoadError, verbose: u8) {
    crate::errln!("error: {e}");
    if verbose > 0
        && let Some(detail) = e.detail()
    {
        crate::errln!("{detail}");
    }
}

fn list(args: &ListArgs, verbose: u8) -> u8 {
    let mut search = SearchPath::new(&args.paths);
    for p in &args.paths {
        if !p.is_dir() {
            crate::errln!("error: --path {}: not a directory", p.display());
            return exit::USAGE;
        }
    }
    search.dirs.retain(|(d, _)| d.is_dir());
    let reg = Registry::discover_probed(&search);
    if args.json {
        for e in reg.plugins.values() {
            let d = &e.descriptor;
            let v = serde_json::json!({
                "id": d.id(), "kind": d.kind().as_str(), "name": d.name(), "version": d.version(),
                "description": d.description(), "library": e.library.path.display().to_string(),
            });
            crate::outln!("{v}");
        }
    } else if reg.plugins.is_empty() {
        crate::outln!("no plugins found");
    } else {
        let rows: Vec<[String; 5]> = reg
            .plugins
            .values()
            .map(|e| {
                let d = &e.descriptor;
                [
                    d.id().to_string(),
                    d.kind().to_string(),
                    d.version().to_string(),
                    d.description().to_string(),
                    e.library.path.display().to_string(),
                ]
            })
            .collect();
        let width = |i: usize, min: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(min).max(min);
        let (w0, w2, w3) = (width(0, 2), width(2, 7), width(3, 11));
        crate::outln!("{:<w0$}  {:<6}  {:<w2$}  {:<w3$}  LIBRARY", "ID", "KIND", "VERSION", "DESCRIPTION");
        for r in rows {
            crate::outln!("{:<w0$}  {:<6}  {:<w2$}  {:<w3$}  {}", r[0], r[1], r[2], r[3], r[4]);
        }
    }
    if verbose > 0 {
        for (d, o) in &search.dirs {
            crate::errln!("searched {} ({o:?})", d.display());
        }
        if let Some((n, t)) = reg.probe_time {
            crate::errln!("loaded {n} libraries in a probing child process first in {:.2} ms", t.as_secs_f64() * 1e3);
        }
        for (p, t) in &reg.load_times {
            crate::errln!("loaded {} in {:.2} ms", p.display(), t.as_secs_f64() * 1e3);
        }
        for p in &reg.skipped {
            crate::errln!("skipped {}: not a tolk plugin", p.display());
        }
    }
    for w in &reg.warnings {
        crate::errln!("warning: {w}");
    }
    for e in &reg.errors {
        print_load_error(e, verbose);
    }
    if reg.errors.is_empty() { exit::OK } else { exit::USAGE }
}

fn check(path: &Path, verbose: u8) -> u8 {
    let (config, _, plugins) = match crate::run::load(path, verbose) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let routes: usize = config.routes.iter().map(|r| r.to.len()).sum();
    let count = |k: PluginKind| plugins.instances.iter().filter(|(kind, _)| *kind == k).count();
    crate::outln!(
        "{}: ok — {} source{}, {} route{}, {} prompt provider{}, {} sink instance{} (engine: {} {})",
        config.file,
        count(PluginKind::Source),
        plural(count(PluginKind::Source)),
        routes,
        plural(routes),
        count(PluginKind::Prompt),
        plural(count(PluginKind::Prompt)),
        count(PluginKind::Sink),
        plural(count(PluginKind::Sink)),
        config.engine.provider.as_str(),
        config.engine.model,
    );
    for r in &config.routes {
        let src = config.source(&r.source).map(|s| s.language.as_str()).unwrap_or("?");
        let via = r.via.as_ref().map(|v| format!(" via {v}")).unwrap_or_default();
        crate::outln!(
            "  {} ({src}){via} → {}  sinks: {}",
            r.source,
            r.to.join(", "),
            if r.sinks.is_empty() { "none".into() } else { r.sinks.join(", ") }
        );
    }
    if let Some(l) = &config.listen {
        let scheme = if l.tls.is_some() { "https" } else { "http" };
        crate::outln!("  listeners: {scheme}://{}/ offers {}", l.address, l.routes.join(", "));
    }
    let translated = config.routes.iter().flat_map(|r| &r.to).filter(|l| *l != config::FLOOR).count();
    if translated > 0 {
        let per_route = crate::router::cost::estimate_per_hour(&config.run.prices, config.run.keep_turns);
        crate::outln!(
            "  estimated cost: ${:.2} per hour of continuous speech ({translated} translated route{} × ${per_route:.2}{})",
            per_route * translated as f64,
            plural(translated),
            if config.run.prices_known { "" } else { "; prices of gpt-realtime assumed for this model" }
        );
    }
    exit::OK
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn check_library(library: &Path, config: Option<&Path>, only: &[String], failed_only: bool, verbose: u8) -> u8 {
    let mut config = match config.map(CheckConfig::from_file).transpose() {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => {
            crate::errln!("error: {e}");
            return exit::USAGE;
        }
    };
    let names = || tolk_plugin_api::testing::CHECKS.iter().map(|c| c.name);
    for name in only {
        if !names().any(|n| n == name) {
            crate::errln!(
                "error: --only: no check called \"{name}\"{}; --list-checks shows them",
                crate::util::did_you_mean(name, names())
            );
            return exit::USAGE;
        }
    }
    config.only = only.to_vec();
    if !library.is_file() {
        crate::errln!("error: {}: no such file", library.display());
        return exit::USAGE;
    }
    match plugin_host::check::run(library, &config, verbose > 0) {
        Ok(report) if failed_only => {
            for r in report.results.iter().filter(|r| r.outcome.is_failure()) {
                crate::outln!("{r}");
            }
            crate::outln!("{}", report.summary());
            if report.passed() { exit::OK } else { exit::RUNTIME }
        }
        Ok(report) => {
            crate::outln!("{report}");
            if report.passed() { exit::OK } else { exit::RUNTIME }
        }
        Err(e) => {
            crate::errln!("error: {e}");
            exit::USAGE
        }
    }
}

fn child(what: ChildCommand) -> u8 {
    match what {
        ChildCommand::Probe { files } => {
            plugin_host::probe::child(&files);
            exit::OK
        }
        ChildCommand::Describe { library, full_report } => {
            match plugin_host::check::child_describe(&library, full_report) {
                Ok(()) => exit::OK,
                Err(e) => {
                    crate::errln!("error: {e}");
                    exit::USAGE
                }
            }
        }
        ChildCommand::Check { library, kind, id, check, config_dir } => {
            match plugin_host::check::child_check(&library, &kind, &id, &check, &config_dir) {
                Ok(()) => exit::OK,
                Err(e) => {
                    crate::errln!("error: {e}");
                    exit::USAGE
                }
            }
        }
    }
}
