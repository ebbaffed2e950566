//! Loading one library: handshake, abi_stable's layout check, descriptor sanity.

use std::path::Path;

use abi_stable::library::LibraryError;
use tolk_plugin_api::{
    Descriptor, PluginKind,
    ffi::{PluginLibRef, header::PluginHeader},
    is_valid_id,
};

use super::{error::LoadError, handshake};

/// A loaded plugin library.
pub struct Library {
    /// Where it was loaded from.
    pub path: std::path::PathBuf,
    /// Its tolk header (crate name and version, ABI).
    pub header: PluginHeader,
    /// Its root module: descriptors and constructors.
    pub module: PluginLibRef,
    /// Its plugins.
    pub descriptors: Vec<Descriptor>,
    /// Found in one of tolk's own plugin directories (may use `tolk.` ids).
    pub builtin: bool,
}

/// Loads the library at `path`. `builtin` libraries may use the reserved `tolk.` prefix.
pub fn load(path: &Path, builtin: bool) -> Result<Library, LoadError> {
    load_candidate(handshake::Candidate::open(path)?, builtin)
}

/// Loads a library file already opened and checked.
pub(crate) fn load_candidate(candidate: handshake::Candidate, builtin: bool) -> Result<Library, LoadError> {
    let path = candidate.path.clone();
    let path = path.as_path();
    let opened = handshake::open_candidate(candidate)?;
    let module = opened.lib_header.init_root_module::<PluginLibRef>().map_err(|e| abi_error(path, e))?;
    let descriptors = match module.descriptors()() {
        abi_stable::std_types::ROk(d) => d.into_vec(),
        abi_stable::std_types::RErr(e) => {
            return Err(LoadError::Plugin {
                path: path.to_path_buf(),
                message: format!("listing its plugins failed: {e}"),
            });
        }
    };
    let mut seen: Vec<(PluginKind, &str)> = Vec::new();
    for d in &descriptors {
        if !is_valid_id(d.id()) {
            return Err(LoadError::Plugin {
                path: path.to_path_buf(),
                message: format!("plugin id {:?} is not a lower-case reverse-DNS name", d.id()),
            });
        }
        if !builtin && d.id().starts_with("tolk.") {
            return Err(LoadError::Plugin {
                path: path.to_path_buf(),
                message: format!(
                    "plugin id \"{}\" uses the prefix \"tolk.\", which is reserved for plugins shipped with tolk",
                    d.id()
                ),
            });
        }
        if seen.contains(&(d.kind(), d.id())) {
            return Err(LoadError::Plugin {
                path: path.to_path_buf(),
                message: format!("exports two {}s with id \"{}\"", d.kind(), d.id()),
            });
        }
        seen.push((d.kind(), d.id()));
    }
    Ok(Library { path: path.to_path_buf(), header: opened.header, module, descriptors, builtin })
}

fn abi_error(path: &Path, e: LibraryError) -> LoadError {
    let detail = e.to_string();
    // abi_stable's report is thousands of lines; its `Error:` lines say what differs.
    let first =
        detail.lines().map(str::trim).find(|l| l.starts_with("Error:")).map(|l| l.trim_start_matches("Error:").trim());
    let summary = match (&e, first) {
        (LibraryError::AbiInstability(_), Some(first)) => format!("incompatible plugin ABI layout: {first}"),
        (LibraryError::AbiInstability(_), None) => "incompatible plugin ABI layout".to_string(),
        (LibraryError::IncompatibleVersionNumber { .. }, _) => {
            "built against an incompatible tolk-plugin-api version; rebuild it against this tolk's".to_string()
        }
        _ => detail.split_whitespace().collect::<Vec<_>>().join(" "),
    };
    LoadError::Abi { path: path.to_path_buf(), summary, detail }
}
