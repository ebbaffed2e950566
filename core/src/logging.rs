//! Logging: `tracing` to stderr. Default level is info for tolk and warn for dependencies;
//! `-v` debug, `-vv` trace, `-q` errors only; `TOLK_LOG` (an env-filter directive) overrides.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls do nothing.
pub fn init(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn,tolk=info,tolk_core=info",
        (false, 1) => "info,tolk=debug,tolk_core=debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_env("TOLK_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}
