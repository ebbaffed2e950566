//! Why a library could not be loaded, as one line that names the library and says what to do.

use std::{fmt, path::PathBuf};

/// A library that could not be loaded.
#[derive(Debug, Clone)]
pub enum LoadError {
    /// The OS loader refused it (not a shared library, missing dependency, wrong arch).
    Open { path: PathBuf, reason: String },
    /// The file is cut short or its structure is broken; it was never handed to the loader.
    Corrupt { path: PathBuf, reason: String },
    /// Loading it killed the probing child process (see `plugin_host::probe`); not loaded here.
    Crashed { path: PathBuf, reason: String },
    /// A shared library without tolk's header.
    NotAPlugin { path: PathBuf },
    /// Built for another ABI version.
    AbiMismatch { path: PathBuf, crate_name: String, plugin_abi: (u16, u16) },
    /// abi_stable's layout check failed. `detail` is its full (very long) report, shown with `-v`.
    Abi { path: PathBuf, summary: String, detail: String },
    /// The library loaded but listing or checking its plugins failed.
    Plugin { path: PathBuf, message: String },
}

impl LoadError {
    /// The library concerned.
    pub fn path(&self) -> &PathBuf {
        match self {
            LoadError::Open { path, .. }
            | LoadError::Corrupt { path, .. }
            | LoadError::Crashed { path, .. }
            | LoadError::NotAPlugin { path }
            | LoadError::AbiMismatch { path, .. }
            | LoadError::Abi { path, .. }
            | LoadError::Plugin { path, .. } => path,
        }
    }

    /// The long report behind the line, if any (abi_stable's layout dump).
    pub fn detail(&self) -> Option<&str> {
        match self {
            LoadError::Abi { detail, .. } => Some(detail),
            _ => None,
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Open { path, reason } => write!(f, "{}: cannot load library: {reason}", path.display()),
            LoadError::Corrupt { path, reason } => write!(
                f,
                "{}: truncated or corrupt library, not loaded: {reason} (rebuild or reinstall it)",
                path.display()
            ),
            LoadError::Crashed { path, reason } => write!(
                f,
                "{}: truncated or corrupt library, not loaded: loading it in a separate process {reason} (rebuild or reinstall it)",
                path.display()
            ),
            LoadError::NotAPlugin { path } => write!(
                f,
                "{}: not a tolk plugin (the library has no tolk plugin header; plugins are built with tolk_plugin_api::export_plugins!)",
                path.display()
            ),
            LoadError::AbiMismatch { path, crate_name, plugin_abi } => {
                let (maj, min) = *plugin_abi;
                let (hmaj, hmin) = (tolk_plugin_api::ABI_MAJOR, tolk_plugin_api::ABI_MINOR);
                // A header older than the crate-name field has no name to show.
                let who =
                    if crate_name.is_empty() { "this plugin".to_string() } else { format!("plugin {crate_name}") };
                write!(
                    f,
                    "{}: {who} was built for tolk plugin ABI {maj}.{min}; this tolk speaks {hmaj}.{hmin} — rebuild it against tolk-plugin-api {hmaj}.{hmin}",
                    path.display()
                )
            }
            LoadError::Abi { path, summary, .. } => {
                write!(f, "{}: {summary} (run with -v for abi_stable's full layout report)", path.display())
            }
            LoadError::Plugin { path, message } => write!(f, "{}: {message}", path.display()),
        }
    }
}

impl std::error::Error for LoadError {}
