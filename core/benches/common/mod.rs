//! What the process-level benches (`fanout`, `client_cpu`, `live_scale`) share: the release
//! build into `target/bench-build` (never replacing `target/release/tolk`), a scratch folder
//! removed at the end, child processes killed on the way out, CPU time and RSS from `/proc`,
//! the load average and medians.

#![allow(dead_code)] // each bench uses a part

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
};

/// The workspace root and the target folder (`CARGO_TARGET_DIR` or `target/`).
pub fn dirs() -> (PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let target = if target.is_absolute() { target } else { root.join(target) };
    (root, target)
}

/// Builds the release `tolk` and the plugin `packages` into `target/bench-build` (kept between
/// runs as a build cache); returns the `tolk` binary.
pub fn build_release(root: &Path, target: &Path, packages: &[&str]) -> PathBuf {
    let build = target.join("bench-build");
    eprintln!("building release tolk and plugins into {} …", build.display());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--release", "-p", "tolk-core"]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    let ok = cmd.arg("--target-dir").arg(&build).current_dir(root).status().is_ok_and(|s| s.success());
    assert!(ok, "cargo build --release failed");
    build.join("release").join("tolk")
}

/// Removes the bench's data directory when dropped (also on a panic).
pub struct Scratch(pub PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (if still running) when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A positive number from the environment, or `default`.
pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default).max(1)
}

/// utime + stime of a process, in seconds (`/proc/PID/stat`, clock ticks of 1/100 s).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
    ticks as f64 / 100.0
}

/// Resident memory of a process (MB), from `/proc/PID/status`.
pub fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kb / 1024.0
}

/// The 1-, 5- and 15-minute load averages.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The median (upper middle) of `v`.
pub fn median(v: impl Iterator<Item = f64>) -> f64 {
    let mut x: Vec<f64> = v.collect();
    x.sort_by(f64::total_cmp);
    x[x.len() / 2]
}

/// Starts `tolk serve` on a free loopback port; returns it and its URL.
pub fn serve(tolk: &Path) -> (Guard, String) {
    use std::io::{BufRead, BufReader};
    let mut serve = Guard(
        Command::new(tolk)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start tolk serve"),
    );
    let mut line = String::new();
    BufReader::new(serve.0.stdout.take().expect("stdout")).read_line(&mut line).expect("read tolk serve");
    let url = line.trim().strip_prefix("tolk serve: listening on ").expect("tolk serve did not start").to_string();
    (serve, url)
}

/// The keynote sample with 800 ms of silence after every 4 s, so the server's VAD ends a turn
/// there (the sample's own pauses are too short for it).
pub fn keynote_with_pauses(sample: &Path, out: &Path) {
    let mut r = hound::WavReader::open(sample).expect("open the keynote sample");
    let spec = r.spec();
    assert_eq!((spec.sample_rate, spec.channels, spec.bits_per_sample), (24_000, 1, 16));
    let samples: Vec<i16> = r.samples::<i16>().map(|s| s.expect("sample")).collect();
    let mut w = hound::WavWriter::create(out, spec).expect("create the input");
    for piece in samples.chunks(4 * 24_000) {
        for &s in piece.iter().chain(std::iter::repeat_n(&0, 800 * 24)) {
            w.write_sample(s).expect("write the input");
        }
    }
    w.finalize().expect("write the input");
}
