//! # tolk-core
//!
//! The tolk host: it loads plugins (sources, prompt providers, sinks) from shared libraries,
//! validates configurations, and — as the routing and Realtime issues land — runs one Realtime
//! session per (source, target language) route and fans the results out to sinks.
//!
//! ## The one decision to know
//!
//! Everything at the edges is a plugin behind a stable ABI, and **built-in plugins are loaded
//! exactly like third-party ones**: from `.so` files on the search path, through tolk's
//! version handshake and abi_stable's layout check. There is no in-process shortcut, so the
//! built-ins prove the ABI every time tolk runs.
//!
//! ## Layout
//!
//! - [`cli`]: the `tolk` command line (clap) and one function per subcommand.
//! - [`exit`]: the exit statuses every command returns: 0 ok, 1 runtime failure, 2
//!   usage/config/plugin-load error.
//! - [`config`]: TOML → raw serde structs → validated [`config::Config`], every error one line
//!   with file and key path, all collected; plugin references checked against the registry.
//! - [`plugin_host`]: discovery, the file check before loading and the load probe in a child
//!   process, the version handshake, loading, guarded instances, the out-of-process
//!   conformance runner.
//! - [`run`]: `tolk run` and the load path it shares with `tolk check`.
//! - [`router`]: sources → per-language Realtime sessions → sinks, with lanes, gating, relays,
//!   metrics and cost.
//! - [`realtime`]: the Realtime protocol client — GA, Translation API and legacy preview
//!   codecs over one session model; one [`realtime::SessionHandle`] per route.
//! - [`serve`]: `tolk serve`, tolk's own Realtime-compatible server on a deterministic test
//!   engine (also the engine of `provider = "local"`).
//! - [`tls`]: PEM certificate + key into a rustls server config, for `tolk serve` and any later
//!   listener.
//! - [`listen`]: the listener web app `tolk run` serves with `[listen]`: one Opus encode per
//!   language, fanned out over WebSockets to the audience's phones, with captions.
//! - [`devices`]: `tolk devices`, listing and metering through device plugins.
//! - [`audio`]: sample conversion, channel mixing and resampling.
//! - [`shutdown`]: the one shutdown signal (Ctrl-C, SIGTERM) every command uses.
//! - [`logging`]: the tracing subscriber behind `-v`/`-q` and `TOLK_LOG`.
//! - [`console`]: command output on stdout that survives a closed pipe ([`outln!`]).
//! - [`util`]: edit distance for "did you mean".
//!
//! Plugin code runs only on threads the host owns (or the plugin's own), never inside an
//! async task.

pub mod audio;
pub mod cli;
pub mod config;
pub mod console;
pub mod devices;
pub mod exit;
pub mod listen;
pub mod logging;
pub mod plugin_host;
pub mod realtime;
pub mod router;
pub mod run;
pub mod serve;
pub mod shutdown;
pub mod tls;
pub mod util;
pub mod vocab;

use clap::Parser;

/// Parses `std::env::args`, sets up logging, runs the command; returns the exit status.
pub fn main_with_args() -> u8 {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { exit::USAGE } else { exit::OK };
            let _ = e.print();
            return code;
        }
    };
    logging::init(cli.verbose, cli.quiet);
    let code = cli::run(cli);
    if code == exit::OK && console::failed() { exit::RUNTIME } else { code }
}
