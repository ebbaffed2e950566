//! The files a run writes, as its sink instances declare them (`OutputSink::output_files`),
//! checked before anything starts: each can be written, and no two outputs share a file.
//!
//! Nothing here writes, creates or opens a file, so `tolk check` stays side-effect free and
//! never blocks (opening a FIFO for writing would wait for a reader). What can be known without
//! writing is checked: a NUL in the name, a directory or a FIFO where the file should be, a
//! nearest existing folder that is a file, on a read-only file system, or not writable for
//! this user (`access(2)`, which root passes except on read-only mounts). Missing folders are
//! fine: the sinks create them when the run starts.
//!
//! Two outputs are the same file when their paths are, after making them absolute, resolving
//! the part that exists (symbolic links, `..`) and cleaning the rest (`out/./x`, `out/../out/x`).

use std::{
    io,
    path::{Component, Path, PathBuf},
};

/// The path for messages: as is, or quoted with Rust escapes when it holds a control character
/// (a NUL shows as `\0`, a newline as `\n`), so every message stays one line.
pub fn shown(path: &Path) -> String {
    let s = path.to_string_lossy();
    if s.chars().any(char::is_control) { format!("{s:?}") } else { s.into_owned() }
}

/// Why `path` cannot be written, found without writing; `None` when nothing is known against it.
pub fn unwritable(path: &Path) -> Option<String> {
    let p = shown(path);
    if path.as_os_str().as_encoded_bytes().contains(&0) {
        return Some(format!("{p} contains a NUL byte, which no file name can hold"));
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => return Some(format!("cannot write {p}: it is a directory")),
        Ok(meta) if is_pipe_or_socket(&meta) => {
            return Some(format!("cannot write {p}: it is a FIFO or socket, not a regular file"));
        }
        Ok(_) => return access_denied(path).map(|why| format!("cannot write {p}: {why}")),
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => {}
        Err(e) => return Some(format!("cannot write {p}: {e}")),
    }
    // The file does not exist yet: look at the nearest folder that does.
    for dir in path.ancestors().skip(1) {
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => {
                return access_denied(dir).map(|why| format!("cannot write {p}: {} {why}", shown(dir)));
            }
            Ok(_) => return Some(format!("cannot write {p}: {} is not a directory", shown(dir))),
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => continue,
            Err(e) => return Some(format!("cannot write {p}: {}: {e}", shown(dir))),
        }
    }
    None
}

#[cfg(unix)]
fn is_pipe_or_socket(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_fifo() || meta.file_type().is_socket()
}

#[cfg(not(unix))]
fn is_pipe_or_socket(_: &std::fs::Metadata) -> bool {
    false
}

/// Why this user may not write `path` (a file, or a folder to create files in), per
/// `access(2)`: `is on a read-only file system`, or the system's message.
#[cfg(unix)]
fn access_denied(path: &Path) -> Option<String> {
    use rustix::{fs::Access, io::Errno};
    let mode = if path.is_dir() { Access::WRITE_OK | Access::EXEC_OK } else { Access::WRITE_OK };
    match rustix::fs::access(path, mode) {
        Ok(()) => None,
        Err(Errno::ROFS) => Some("is on a read-only file system".into()),
        Err(e) => Some(format!("is not writable: {}", io::Error::from(e))),
    }
}

#[cfg(not(unix))]
fn access_denied(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().readonly() => Some("is read-only".into()),
        _ => None,
    }
}

/// What makes two paths the same file: absolute and cleaned of `.` and `..`, then the part
/// that exists resolved by the file system (symbolic links).
pub fn identity(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut clean = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                clean.pop();
            }
            other => clean.push(other),
        }
    }
    let mut rest = vec![];
    let mut existing = clean.as_path();
    loop {
        if let Ok(mut real) = existing.canonicalize() {
            real.extend(rest.iter().rev());
            return real;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return clean,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_file_however_spelt() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("out")).unwrap();
        let a = identity(&d.join("out/es.wav"));
        assert_eq!(identity(&d.join("out/./es.wav")), a);
        assert_eq!(identity(&d.join("out/../out/es.wav")), a);
        assert_eq!(identity(&d.join("new/../out/es.wav")), a);
        assert_ne!(identity(&d.join("out/fr.wav")), a);
        // Not yet existing folders too.
        assert_eq!(identity(&d.join("x/y/../z.vtt")), identity(&d.join("x/z.vtt")));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(d.join("out"), d.join("link")).unwrap();
            assert_eq!(identity(&d.join("link/es.wav")), a);
        }
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(shown(Path::new("out/es.wav")), "out/es.wav");
        assert_eq!(shown(Path::new("out/a\0b.wav")), r#""out/a\0b.wav""#);
        assert_eq!(shown(Path::new("out/a\nb.wav")), r#""out/a\nb.wav""#);
    }

    #[test]
    fn what_cannot_be_written_is_said() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("file"), "x").unwrap();
        assert_eq!(unwritable(&d.join("new/sub/x.wav")), None);
        assert_eq!(unwritable(&d.join("file")), None);
        let under = d.join("file/x.wav");
        assert_eq!(
            unwritable(&under).unwrap(),
            format!("cannot write {}: {} is not a directory", under.display(), d.join("file").display())
        );
        assert_eq!(unwritable(d).unwrap(), format!("cannot write {}: it is a directory", d.display()));
    }
}
