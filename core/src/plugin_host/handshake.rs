//! Reading tolk's version header from a library before abi_stable sees it, so that a
//! library built for another ABI, or one that is no tolk plugin at all, gets one clear line.
//!
//! This and `plugin-api/src/ffi/` are the only places with `unsafe`.

#![allow(unsafe_code)]

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use abi_stable::library::{LibHeader, RawLibrary, lib_header_from_raw_library};
use tolk_plugin_api::ffi::header::{HEADER_SYMBOL, MAGIC, PluginHeader};

use super::{error::LoadError, validate};

/// The part of every header ever made: magic, `header_size`, ABI major and minor.
const FIXED_PREFIX: usize = std::mem::offset_of!(PluginHeader, api_version);

/// An opened library whose tolk header was read. The library stays loaded for the life of
/// the process (abi_stable never unloads either).
pub struct Opened {
    /// The header as the plugin wrote it.
    pub header: PluginHeader,
    /// abi_stable's header, not yet checked.
    pub lib_header: &'static LibHeader,
}

/// A library file opened and checked (see [`super::validate`]) but not yet handed to the
/// loader. Loading goes through the open descriptor, so what is loaded is what was checked.
pub struct Candidate {
    /// The library's path, as found.
    pub path: PathBuf,
    file: File,
    /// Its run-time search path uses `$ORIGIN`: it must be loaded by its real path.
    uses_origin: bool,
}

impl Candidate {
    /// Opens and checks `path`.
    pub fn open(path: &Path) -> Result<Candidate, LoadError> {
        let open_error =
            |e: std::io::Error| LoadError::Open { path: path.to_path_buf(), reason: one_line(&e.to_string()) };
        let file = File::open(path).map_err(open_error)?;
        let len = file.metadata().map_err(open_error)?.len();
        let checked =
            validate::check(&file, len).map_err(|reason| LoadError::Corrupt { path: path.to_path_buf(), reason })?;
        Ok(Candidate { path: path.to_path_buf(), file, uses_origin: checked.uses_origin })
    }

    /// The path under which process `pid` (this one, or its parent for a probing child) loads
    /// exactly the checked file: `/proc/PID/fd/N` on Linux unless the library needs its real
    /// directory for `$ORIGIN`; elsewhere the path itself.
    pub fn load_path(&self, pid: Option<u32>) -> PathBuf {
        #[cfg(target_os = "linux")]
        if !self.uses_origin {
            use std::os::fd::AsRawFd;
            let who = pid.map(|p| p.to_string()).unwrap_or_else(|| "self".into());
            return PathBuf::from(format!("/proc/{who}/fd/{}", self.file.as_raw_fd()));
        }
        let _ = pid;
        self.path.clone()
    }
}

/// Loads a checked file and reads its tolk header. abi_stable's layout check is *not* run here.
pub fn open_candidate(candidate: Candidate) -> Result<Opened, LoadError> {
    let path = candidate.path.as_path();
    let load_path = candidate.load_path(None);
    let lib = RawLibrary::load_at(&load_path).map_err(|e| LoadError::Open {
        path: path.to_path_buf(),
        reason: one_line(&e.to_string().replace(&load_path.display().to_string(), &path.display().to_string())),
    })?;
    // The loader knows the library by the descriptor's name, so the descriptor stays open (and
    // its number unused by any other library) for the life of the process, like the mapping.
    std::mem::forget(candidate.file);
    // SAFETY: the symbol is a `PluginHeader` static in every library made by
    // `export_plugins!`; a library that has the symbol but not our magic is rejected before any
    // other field is used. `PluginHeader` is `repr(C)`, plain bytes and integers, `Copy`. The
    // first 16 bytes (magic, `header_size`, ABI) are frozen and present in every header; past
    // them exactly `header_size` bytes are read (never more than this tolk knows), so a plugin
    // built with an older, shorter header is never read past its end. Fields it does not have
    // stay zero (empty strings).
    let header = unsafe {
        // The symbol's value is the static's address, so it is looked up as a pointer.
        match lib.get::<*const PluginHeader>(format!("{HEADER_SYMBOL}\0").as_bytes()) {
            Ok(sym) => {
                let ptr: *const PluginHeader = *sym;
                if ptr.is_null() {
                    return Err(LoadError::NotAPlugin { path: path.to_path_buf() });
                }
                let magic = std::ptr::read(ptr.cast::<[u8; 8]>());
                if magic != MAGIC {
                    return Err(LoadError::NotAPlugin { path: path.to_path_buf() });
                }
                let size = std::ptr::read_unaligned(ptr.cast::<u8>().add(8).cast::<u32>()) as usize;
                if size < FIXED_PREFIX {
                    return Err(LoadError::Plugin {
                        path: path.to_path_buf(),
                        message: format!(
                            "its tolk plugin header says it is {size} bytes long, shorter than the {FIXED_PREFIX} bytes every header has"
                        ),
                    });
                }
                let mut header = PluginHeader::zeroed();
                let n = size.min(std::mem::size_of::<PluginHeader>());
                std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), (&raw mut header).cast::<u8>(), n);
                header
            }
            Err(_) => return Err(LoadError::NotAPlugin { path: path.to_path_buf() }),
        }
    };
    if header.abi_major != tolk_plugin_api::ABI_MAJOR || header.abi_minor > tolk_plugin_api::ABI_MINOR {
        return Err(LoadError::AbiMismatch {
            path: path.to_path_buf(),
            crate_name: header.crate_name(),
            plugin_abi: (header.abi_major, header.abi_minor),
        });
    }
    // SAFETY: the library exported tolk's header with a matching ABI, so it was built by
    // `export_plugins!`, which exports abi_stable's header under the symbol this reads.
    let lib_header = unsafe { lib_header_from_raw_library(&lib) }.map_err(|e| LoadError::Abi {
        path: path.to_path_buf(),
        summary: "abi_stable could not read the library header".into(),
        detail: e.to_string(),
    })?;
    // Never unload: objects and vtables from the library live as long as the process.
    std::mem::forget(lib);
    Ok(Opened { header, lib_header })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
