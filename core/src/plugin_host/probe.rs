//! Loading every library once in a child process before the host loads it, so that a file
//! that kills the loader (a corrupt relocation, a broken version table, an init function that
//! crashes) costs a child, not the host: the host prints one line naming it and loads the
//! others.
//!
//! [`super::validate`] already turns a cut-short file into an error without mapping it; the
//! probe covers what a structural check cannot see. One child loads all the libraries of a
//! scan in turn (`tolk plugins __child probe FILE…`), printing `start I` and `done I` around
//! each; when it dies, the library it had started is the culprit and a new child carries on
//! with the rest. The child loads the very files the host checked and will load: the host's
//! open descriptors, through `/proc/HOST_PID/fd/N` (see [`super::handshake::Candidate`]), so
//! a library replaced on disk between the probe and the load cannot slip in unprobed.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use super::handshake::Candidate;

/// How long one child may take over one library before it is killed and the library reported.
pub const LIBRARY_TIMEOUT: Duration = Duration::from_secs(10);

/// Loads `candidates` in child processes of `exe` (the `tolk` binary); returns, by index,
/// why the ones that took their child down did (`killed by signal 11 (SIGSEGV)`, …).
pub fn probe(exe: &Path, candidates: &[&Candidate]) -> BTreeMap<usize, String> {
    let mut failed = BTreeMap::new();
    let pid = std::process::id();
    let mut next = 0;
    while next < candidates.len() {
        let rest: Vec<PathBuf> = candidates[next..].iter().map(|c| c.load_path(Some(pid))).collect();
        match run(exe, &rest) {
            Ok(()) => break,
            Err((Some(i), why)) => {
                failed.insert(next + i, why);
                next += i + 1;
            }
            // The child died before it started on any library: probing is not possible here
            // (no tolk binary to run); the host loads as it would without a probe.
            Err((None, why)) => {
                tracing::debug!("plugin probe unavailable: {why}");
                break;
            }
        }
    }
    failed
}

/// One child over `files`: `Err((index it died on, why))` when it did not finish.
fn run(exe: &Path, files: &[PathBuf]) -> Result<(), (Option<usize>, String)> {
    let mut child = Command::new(exe)
        .args(["plugins", "__child", "probe"])
        .args(files)
        .env_remove("TOLK_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| (None, format!("cannot start {}: {e}", exe.display())))?;
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let (t_out, t_err) = (super::check::drain(out), super::check::drain(err));
    let limit = LIBRARY_TIMEOUT * u32::try_from(files.len()).unwrap_or(u32::MAX).max(1);
    let started = Instant::now();
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                timed_out = true;
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(1)),
            Err(_) => break None,
        }
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    let mut current = None;
    for line in stdout.lines() {
        if let Some(i) = line.strip_prefix("start ").and_then(|i| i.parse::<usize>().ok()) {
            current = Some(i);
        } else if line.strip_prefix("done ").and_then(|i| i.parse::<usize>().ok()).is_some() {
            current = None;
        }
    }
    let why = match status {
        Some(s) if s.success() && current.is_none() => return Ok(()),
        _ if timed_out => format!("did not finish loading within {} s", LIBRARY_TIMEOUT.as_secs()),
        Some(s) => describe_exit(s, &stderr),
        None => "the probing process was lost".to_string(),
    };
    Err((current, why))
}

fn describe_exit(status: std::process::ExitStatus, stderr: &str) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("killed the loader with signal {sig}{}", super::check::signal_name(sig));
        }
    }
    let last = stderr.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no output");
    format!("the loader gave up ({status}): {last}")
}

/// The child's side: loads each of `files` in turn, announcing each on stdout.
pub fn child(files: &[PathBuf]) {
    use std::io::Write;
    let mut out = std::io::stdout();
    for (i, f) in files.iter().enumerate() {
        let _ = writeln!(out, "start {i}");
        let _ = out.flush();
        // Load errors are the host's to report; only surviving the load matters here.
        let _ = super::load::load(f, true);
        let _ = writeln!(out, "done {i}");
        let _ = out.flush();
    }
}
