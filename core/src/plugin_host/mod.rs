//! The plugin host: finds plugin libraries on the search path, loads each through tolk's
//! handshake and abi_stable's layout check (one root module per library, never the
//! `RootModule` cache, which would hand back the first library for every file), and creates
//! instances. Built-in plugins go through exactly the same path as third-party ones.
//!
//! Loading never stops at the first bad library: every error is collected in
//! [`Registry::errors`] and reported together.
//!
//! - `discover`: the search path; `validate`: the file's structure, checked before the loader
//!   maps it (a cut or corrupt file is one error line, not SIGBUS); `handshake`: tolk's version
//!   header (the only `unsafe`); `load`: one library; `instance`: guarded instances; `check`: the out-of-process
//!   conformance runner behind `tolk plugins check`.

pub mod check;
pub mod discover;
pub mod error;
mod handshake;
pub mod instance;
pub mod load;
pub mod probe;
pub mod validate;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use abi_stable::std_types::RStr;
pub use discover::{Origin, SearchPath};
pub use error::LoadError;
pub use instance::{HostServices, PromptInstance, SinkInstance, SourceInstance};
pub use load::Library;
use tolk_plugin_api::{Descriptor, PluginError, PluginKind};

/// One plugin as found: its descriptor and the library it lives in.
#[derive(Clone)]
pub struct PluginEntry {
    /// What the library says about it.
    pub descriptor: Descriptor,
    /// Where it lives.
    pub library: Arc<Library>,
}

/// Every plugin found on a search path, plus what went wrong on the way.
#[derive(Default)]
pub struct Registry {
    /// Loaded libraries in search order.
    pub libraries: Vec<Arc<Library>>,
    /// Plugins by (kind, id); the first library on the search path wins.
    pub plugins: BTreeMap<(PluginKind, String), PluginEntry>,
    /// Libraries that failed to load.
    pub errors: Vec<LoadError>,
    /// Non-fatal notes (a shadowed plugin, a missing directory).
    pub warnings: Vec<String>,
    /// Shared libraries skipped because they are not tolk plugins.
    pub skipped: Vec<PathBuf>,
    /// Load time per library.
    pub load_times: Vec<(PathBuf, Duration)>,
    /// How many libraries were loaded first in a child process, and how long that took.
    pub probe_time: Option<(usize, Duration)>,
}

impl Registry {
    /// Loads every plugin library on `search` in this process (after checking each file's
    /// structure: a cut-short file is an error, never mapped). Use [`Registry::discover_probed`]
    /// where a library that crashes the loader must not take the process down.
    pub fn discover(search: &SearchPath) -> Registry {
        Registry::scan(search, None)
    }

    /// [`Registry::discover`], with every library first loaded once in a child process of
    /// this executable, which must be the `tolk` binary (see [`probe`]): a library that kills
    /// its child is reported as one error and not loaded here. What the `tolk` commands use.
    pub fn discover_probed(search: &SearchPath) -> Registry {
        match std::env::current_exe() {
            Ok(exe) => Registry::scan(search, Some(&exe)),
            Err(_) => Registry::scan(search, None),
        }
    }

    fn scan(search: &SearchPath, probe_exe: Option<&Path>) -> Registry {
        let mut reg = Registry::default();
        // Open and check every file first, in search order, so that one child probes them all.
        let mut found: Vec<(Result<handshake::Candidate, LoadError>, bool)> = Vec::new();
        for (dir, origin) in &search.dirs {
            let libs = match discover::libraries_in(dir) {
                Ok(libs) => libs,
                Err(e) => {
                    if *origin != Origin::Default {
                        reg.warnings.push(format!("plugin directory {}: {e}", dir.display()));
                    }
                    continue;
                }
            };
            for path in libs {
                found.push((handshake::Candidate::open(&path), *origin == Origin::Default));
            }
        }
        let crashed = match probe_exe {
            Some(exe) => {
                let started = Instant::now();
                let ok: Vec<(usize, &handshake::Candidate)> =
                    found.iter().enumerate().filter_map(|(i, (c, _))| c.as_ref().ok().map(|c| (i, c))).collect();
                let list: Vec<&handshake::Candidate> = ok.iter().map(|(_, c)| *c).collect();
                let crashed = probe::probe(exe, &list).into_iter().map(|(k, why)| (ok[k].0, why)).collect();
                reg.probe_time = Some((list.len(), started.elapsed()));
                crashed
            }
            None => BTreeMap::new(),
        };
        for (i, (candidate, builtin)) in found.into_iter().enumerate() {
            let started = Instant::now();
            let loaded = candidate.and_then(|c| match crashed.get(&i) {
                Some(why) => Err(LoadError::Crashed { path: c.path.clone(), reason: why.clone() }),
                None => load::load_candidate(c, builtin),
            });
            match loaded {
                Ok(lib) => {
                    reg.load_times.push((lib.path.clone(), started.elapsed()));
                    reg.add(lib);
                }
                // A plugin directory may hold other shared libraries (dependencies).
                Err(LoadError::NotAPlugin { path }) => {
                    tracing::debug!("skipping {}: not a tolk plugin", path.display());
                    reg.skipped.push(path);
                }
                Err(e) => reg.errors.push(e),
            }
        }
        reg
    }

    /// Adds a loaded library; plugins already known keep their first library.
    pub fn add(&mut self, lib: Library) {
        let lib = Arc::new(lib);
        for d in &lib.descriptors {
            let key = (d.kind(), d.id().to_string());
            if let Some(first) = self.plugins.get(&key) {
                if first.library.path != lib.path {
                    self.warnings.push(format!(
                        "{} {} in {} is shadowed by the one in {}",
                        d.kind(),
                        d.id(),
                        lib.path.display(),
                        first.library.path.display()
                    ));
                }
                continue;
            }
            self.plugins.insert(key, PluginEntry { descriptor: d.clone(), library: Arc::clone(&lib) });
        }
        self.libraries.push(lib);
    }

    /// The plugin of `kind` with `id`.
    pub fn get(&self, kind: PluginKind, id: &str) -> Option<&PluginEntry> {
        self.plugins.get(&(kind, id.to_string()))
    }

    /// The closest known id of `kind` to a misspelt `id`, if one is close.
    pub fn suggest(&self, kind: PluginKind, id: &str) -> Option<String> {
        crate::util::closest(id, self.plugins.keys().filter(|(k, _)| *k == kind).map(|(_, i)| i.as_str()))
    }

    /// Creates a source instance from its config text.
    pub fn create_source(&self, plugin: &str, config: &str, host: HostServices) -> Result<SourceInstance, PluginError> {
        let entry = self.entry(PluginKind::Source, plugin)?;
        let id = host.instance_id.clone();
        let b = (entry.library.module.new_source())(RStr::from_str(plugin), RStr::from_str(config), host.into_ffi());
        b.into_result().map(|b| SourceInstance::new(b, id))
    }

    /// Creates a sink instance from its config text.
    pub fn create_sink(&self, plugin: &str, config: &str, host: HostServices) -> Result<SinkInstance, PluginError> {
        let entry = self.entry(PluginKind::Sink, plugin)?;
        let id = host.instance_id.clone();
        let b = (entry.library.module.new_sink())(RStr::from_str(plugin), RStr::from_str(config), host.into_ffi());
        b.into_result().map(|b| SinkInstance::new(b, id))
    }

    /// Creates a prompt provider instance from its config text.
    pub fn create_prompt(&self, plugin: &str, config: &str, host: HostServices) -> Result<PromptInstance, PluginError> {
        let entry = self.entry(PluginKind::Prompt, plugin)?;
        let id = host.instance_id.clone();
        let b = (entry.library.module.new_prompt())(RStr::from_str(plugin), RStr::from_str(config), host.into_ffi());
        b.into_result().map(|b| PromptInstance::new(b, id))
    }

    fn entry(&self, kind: PluginKind, id: &str) -> Result<&PluginEntry, PluginError> {
        self.get(kind, id).ok_or_else(|| {
            PluginError::new(tolk_plugin_api::ErrorKind::UNKNOWN_PLUGIN, format!("no {kind} plugin with id \"{id}\""))
        })
    }
}

/// Loads one library given by path (for `tolk plugins check LIB`), as a third-party library.
pub fn load_one(path: &Path) -> Result<Library, LoadError> {
    let canon = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let builtin = discover::default_dirs().iter().any(|d| d.canonicalize().ok().as_deref() == canon.parent());
    load::load(path, builtin)
}
