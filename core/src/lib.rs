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
//! - [`cli`]: the `tolk` command line (clap) and one function per subcommand; exit codes
//!   0 ok, 1 runtime failure, 2 usage/config/plugin-load error.
//! - [`config`]: TOML → raw serde structs → validated [`config::Config`], every error one line
//!   with file and key path, all collected.
//! - [`plugin_host`]: discovery, handshake, loading, guarded instances, the out-of-process
//!   conformance runner.
//! - [`realtime`]: the Realtime protocol client — GA, Translation API and legacy preview
//!   codecs over one session model; one [`realtime::SessionHandle`] per route.
//! - [`util`]: edit distance for "did you mean".
//!
//! Plugin code runs only on threads the host owns (or the plugin's own), never inside an
//! async task.

pub mod audio;
pub mod cli;
pub mod config;
pub mod devices;
pub mod logging;
pub mod plugin_host;
pub mod realtime;
pub mod router;
pub mod run;
pub mod serve;
pub mod shutdown;
pub mod util;
pub mod vocab;

use clap::Parser;

/// Parses `std::env::args`, sets up logging, runs the command; returns the exit status.
pub fn main_with_args() -> u8 {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { cli::EXIT_USAGE } else { cli::EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    logging::init(cli.verbose, cli.quiet);
    cli::run(cli)
}
