//! CPU per live session: tolk's Realtime client against the official `openai` Python SDK,
//! with the same traffic to the same `tolk serve`, in the same run.
//!
//! - **tolk**: `tolk run` with one real-time source (the keynote sample, looped, with a pause
//!   after every 4 s so the server's VAD ends a turn there) and one route into N languages,
//!   each with a WAV recording and captions (VTT + JSONL): N sessions of 20 ms appends, and
//!   every response's audio and text written to the sinks.
//! - **Python**: `client_cpu.py` beside this file, N sessions through the SDK's
//!   `client.realtime.connect`, the same input in the same 20 ms appends in real time, every
//!   server event parsed by the SDK, audio deltas decoded and kept.
//!
//! Each client runs for a warm-up (5 s), then the CPU time (user + sys, from `/proc/PID/stat`)
//! of its process is measured over the next `TOLK_BENCH_SECONDS`; the bench prints CPU seconds
//! per session-minute for both, the ratio tolk / Python (target ≤ 0.10), the server's CPU over
//! each window (the traffic was the same if it is about the same), and the load average. With
//! `TOLK_BENCH_RUNS` > 1 the clients alternate and the median of the per-round ratios is shown.
//!
//! ```sh
//! cargo bench -p tolk-core --bench client_cpu                  # 8 sessions × 60 s, 1 round
//! TOLK_BENCH_SESSIONS=8 TOLK_BENCH_SECONDS=300 TOLK_BENCH_RUNS=3 cargo bench -p tolk-core --bench client_cpu
//! ```
//!
//! It builds the release `tolk` and its plugins into `target/bench-build` (never replacing
//! `target/release/tolk`), makes the Python virtualenv `target/pyenv` with `openai[realtime]`
//! if it is missing (as tests/python/run.sh does; needs python3-venv and PyPI), and removes
//! its files (`target/bench-client/`) at the end.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

mod common;

use common::{Guard, Scratch, build_release, cpu_seconds, dirs, env_num, keynote_with_pauses, load, serve};

const WARMUP: Duration = Duration::from_secs(5);
const LANGS: [&str; 16] =
    ["es", "fr", "de", "it", "pt", "nl", "sv", "pl", "ru", "ja", "ko", "zh", "ar", "hi", "tr", "cs"];

fn main() {
    let sessions = env_num("TOLK_BENCH_SESSIONS", 8).min(LANGS.len() as u64) as usize;
    let seconds = env_num("TOLK_BENCH_SECONDS", 60);
    let runs = env_num("TOLK_BENCH_RUNS", 1) as usize;
    let (root, target) = dirs();
    let tolk = build_release(&root, &target, &["tolk-source-wav", "tolk-sink-wav", "tolk-sink-captions"]);
    let python = pyenv(&target.join("pyenv"));

    let scratch = Scratch(target.join("bench-client"));
    let dir = scratch.0.clone();
    std::fs::create_dir_all(&dir).expect("bench dir");
    let input = dir.join("speech.wav");
    keynote_with_pauses(&root.join("configs/samples/keynote-en.wav"), &input);

    let (serve, url) = serve(&tolk);
    let serve_pid = serve.0.id();
    let config = dir.join("live.toml");
    std::fs::write(&config, config_text(&url, &input, &LANGS[..sessions])).expect("write the config");

    let load_before = load();
    let mut results: Vec<(Window, Window)> = vec![];
    for round in 0..runs {
        let tolk_first = round % 2 == 0;
        let mut t = None;
        let mut p = None;
        for first in [true, false] {
            if first == tolk_first {
                t = Some(run_tolk(&tolk, &config, &dir, seconds, serve_pid));
            } else {
                p = Some(run_python(&python, &root, &url, sessions, &input, seconds, serve_pid));
            }
        }
        let (t, p) = (t.expect("tolk ran"), p.expect("python ran"));
        eprintln!(
            "round {}: tolk cpu {:.2} s (server {:.2} s) | python cpu {:.2} s (server {:.2} s) {}",
            round + 1,
            t.cpu,
            t.server_cpu,
            p.cpu,
            p.server_cpu,
            p.note
        );
        results.push((t, p));
    }
    let load_after = load();

    let session_minutes = sessions as f64 * seconds as f64 / 60.0;
    let med = |f: &dyn Fn(&(Window, Window)) -> f64| {
        let mut x: Vec<f64> = results.iter().map(f).collect();
        x.sort_by(f64::total_cmp);
        x[x.len() / 2]
    };
    println!(
        "client CPU, {sessions} live sessions × {seconds} s of real-time speech against tolk serve, {runs} round(s)"
    );
    println!("  load average before: {load_before}; after: {load_after}");
    println!(
        "  tolk run           {:.3} CPU s per session-minute  (user+sys {:.2} s; server {:.2} s)",
        med(&|r| r.0.cpu) / session_minutes,
        med(&|r| r.0.cpu),
        med(&|r| r.0.server_cpu)
    );
    println!(
        "  openai Python SDK  {:.3} CPU s per session-minute  (user+sys {:.2} s; server {:.2} s)",
        med(&|r| r.1.cpu) / session_minutes,
        med(&|r| r.1.cpu),
        med(&|r| r.1.server_cpu)
    );
    println!("  ratio tolk/python (median of rounds): {:.3}× (target ≤ 0.10×)", med(&|r| r.0.cpu / r.1.cpu));
    drop(serve);
    drop(scratch);
}

/// CPU seconds of a client and of the server over one measuring window.
struct Window {
    cpu: f64,
    server_cpu: f64,
    note: String,
}

fn run_tolk(tolk: &Path, config: &Path, dir: &Path, seconds: u64, serve_pid: u32) -> Window {
    let _ = std::fs::remove_dir_all(dir.join("out"));
    let mut child = Guard(
        Command::new(tolk)
            .args(["-q", "run", "--no-status"])
            .arg(config)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tolk run"),
    );
    std::thread::sleep(WARMUP);
    let w = window(child.0.id(), serve_pid, seconds);
    assert!(child.0.try_wait().expect("wait").is_none(), "tolk run ended early");
    let _ = Command::new("kill").args(["-INT", &child.0.id().to_string()]).status();
    let _ = child.0.wait();
    Window { note: String::new(), ..w }
}

fn run_python(
    python: &Path,
    root: &Path,
    url: &str,
    sessions: usize,
    input: &Path,
    seconds: u64,
    serve_pid: u32,
) -> Window {
    let mut child = Guard(
        Command::new(python)
            .arg(root.join("core/benches/client_cpu.py"))
            .args(["--url", url, "--sessions", &sessions.to_string(), "--wav"])
            .arg(input)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the Python client"),
    );
    let mut out = BufReader::new(child.0.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read the Python client");
    assert_eq!(line.trim(), "ready", "the Python client did not start");
    std::thread::sleep(WARMUP);
    let w = window(child.0.id(), serve_pid, seconds);
    assert!(child.0.try_wait().expect("wait").is_none(), "the Python client ended early");
    let _ = Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status();
    line.clear();
    let _ = out.read_line(&mut line);
    let _ = child.0.wait();
    Window { note: format!("[python {}]", line.trim()), ..w }
}

/// CPU seconds used by `pid` and `serve_pid` over the next `seconds`.
fn window(pid: u32, serve_pid: u32, seconds: u64) -> Window {
    let (c0, s0) = (cpu_seconds(pid), cpu_seconds(serve_pid));
    std::thread::sleep(Duration::from_secs(seconds));
    let (c1, s1) = (cpu_seconds(pid), cpu_seconds(serve_pid));
    Window { cpu: c1 - c0, server_cpu: s1 - s0, note: String::new() }
}

/// The Python interpreter of a virtualenv with `openai[realtime]`, made if missing.
fn pyenv(dir: &Path) -> PathBuf {
    let python = dir.join("bin").join("python");
    let ready = || Command::new(&python).args(["-c", "import openai, websockets"]).status().is_ok_and(|s| s.success());
    if !ready() {
        eprintln!("making the Python virtualenv {} with openai[realtime] …", dir.display());
        let ok = Command::new("python3").args(["-m", "venv"]).arg(dir).status().is_ok_and(|s| s.success())
            && Command::new(dir.join("bin").join("pip"))
                .args(["install", "--quiet", "--disable-pip-version-check", "openai[realtime]"])
                .status()
                .is_ok_and(|s| s.success());
        assert!(ok && ready(), "cannot make {} (python3-venv and PyPI are needed)", dir.display());
    }
    python
}

fn config_text(url: &str, input: &Path, langs: &[&str]) -> String {
    let to = langs.iter().map(|l| format!("\"{l}\"")).collect::<Vec<_>>().join(", ");
    format!(
        "# Written by core/benches/client_cpu.rs\n[engine]\nprovider = \"local\"\nurl = \"{url}/v1/realtime\"\n\n\
         [[source]]\nid = \"stage\"\nplugin = \"tolk.wav\"\nlanguage = \"en\"\n[source.config]\npath = \"{}\"\n\
         realtime = true\nloop = true\n\n[[route]]\nsource = \"stage\"\nto = [{to}]\nsinks = [\"rec\", \"cap\"]\n\n\
         [[sink]]\nid = \"rec\"\nplugin = \"tolk.wav\"\n[sink.config]\npath = \"out/{{lang}}.wav\"\n\n\
         [[sink]]\nid = \"cap\"\nplugin = \"tolk.captions\"\n[sink.config]\nvtt = \"out/{{lang}}.vtt\"\n\
         jsonl = \"out/{{lang}}.jsonl\"\n",
        input.display()
    )
}
