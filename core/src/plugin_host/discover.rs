//! Where plugins are looked for: the config's `[plugins] path`, then `TOLK_PLUGIN_PATH`, then
//! tolk's own directories next to the binary (so built-ins are found with no setup).

use std::path::{Path, PathBuf};

/// Why a directory is on the search path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `[plugins] path` in the config.
    Config,
    /// The `TOLK_PLUGIN_PATH` environment variable.
    Env,
    /// One of tolk's own directories (built-in plugins live there).
    Default,
}

/// An ordered list of directories; earlier ones win when two libraries export the same id.
#[derive(Debug, Clone, Default)]
pub struct SearchPath {
    /// The directories in search order.
    pub dirs: Vec<(PathBuf, Origin)>,
}

impl SearchPath {
    /// The search path for a run: `config_dirs`, then `TOLK_PLUGIN_PATH`, then the defaults.
    pub fn new(config_dirs: &[PathBuf]) -> Self {
        let mut sp = SearchPath::default();
        for d in config_dirs {
            sp.push(d.clone(), Origin::Config);
        }
        if let Some(env) = std::env::var_os("TOLK_PLUGIN_PATH") {
            for d in std::env::split_paths(&env).filter(|d| !d.as_os_str().is_empty()) {
                sp.push(d, Origin::Env);
            }
        }
        for d in default_dirs() {
            sp.push(d, Origin::Default);
        }
        sp
    }

    fn push(&mut self, dir: PathBuf, origin: Origin) {
        let key = dir.canonicalize().unwrap_or_else(|_| dir.clone());
        if !self.dirs.iter().any(|(d, _)| d.canonicalize().unwrap_or_else(|_| d.clone()) == key) {
            self.dirs.push((dir, origin));
        }
    }
}

/// tolk's own plugin directories: the binary's directory, `plugins/` beside it, and
/// `../lib/tolk/plugins` (an installed layout).
pub fn default_dirs() -> Vec<PathBuf> {
    let Some(exe_dir) = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)) else {
        return Vec::new();
    };
    let mut dirs = vec![exe_dir.clone(), exe_dir.join("plugins")];
    if let Some(prefix) = exe_dir.parent() {
        dirs.push(prefix.join("lib").join("tolk").join("plugins"));
    }
    // `cargo test` runs test binaries from target/<profile>/deps; the built-ins are one up.
    if exe_dir.file_name().is_some_and(|n| n == "deps")
        && let Some(up) = exe_dir.parent()
    {
        dirs.insert(0, up.to_path_buf());
    }
    dirs.into_iter().filter(|d| d.is_dir()).collect()
}

/// True when `path` looks like a shared library on this platform.
pub fn is_library(path: &Path) -> bool {
    let suffix = std::env::consts::DLL_SUFFIX.trim_start_matches('.');
    path.is_file() && path.extension().is_some_and(|e| e == suffix)
}

/// The libraries in `dir`, sorted by name.
pub fn libraries_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut libs: Vec<PathBuf> =
        std::fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| is_library(p)).collect();
    libs.sort();
    Ok(libs)
}
