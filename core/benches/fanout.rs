//! Offline fan-out, tolk against GStreamer, on the same machine in the same run.
//!
//! The job (../shared/ENVIRONMENT.md §5): a 10-minute 48 kHz stereo 16-bit WAV → 24 kHz mono
//! 16-bit → 8 WAV files. tolk does it with `tolk run` on a config with one floor route and 8
//! `tolk.wav` sinks (lossless delivery, the source as fast as it can read); GStreamer with
//!
//! ```text
//! gst-launch-1.0 -q filesrc location=ten.wav ! wavparse ! audioconvert ! audioresample !
//!   audio/x-raw,format=S16LE,rate=24000,channels=1 ! tee name=t t. ! queue ! wavenc !
//!   filesink location=out/b0.wav … (8 branches)
//! ```
//!
//! Two tolk configurations are measured: **default** (what a user gets: the source's default
//! 20 ms blocks, every sink setting at its default) and **tuned** (`block_ms = 100`), labelled
//! apart. Each round runs tolk default, GStreamer, tolk tuned (the order alternates between
//! rounds), each after a `sync`, timed by GNU time (wall, user + sys, max RSS). Every tolk run
//! is paired with its round's GStreamer run; the bench prints every run, the medians, and the
//! **median of the pairwise ratios** tolk / GStreamer (below 1.0: tolk is cheaper), with the
//! load average before and after (the machine may be shared; CPU time is the steadier figure).
//!
//! ```sh
//! cargo bench -p tolk-core --bench fanout            # 5 rounds
//! TOLK_BENCH_RUNS=9 cargo bench -p tolk-core --bench fanout
//! ```
//!
//! It builds the release `tolk` and the two WAV plugins into its own target directory
//! (`target/bench-build`, kept between runs as a build cache), so `target/release/tolk`
//! is never replaced, and installs the GStreamer Debian packages when `gst-launch-1.0` is
//! missing (not in CI: this is not part of the test suite). The input and the outputs
//! (~0.6 GB) go to `target/bench-fanout/`, which is removed when the bench ends, also when it
//! fails.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    process::Command,
};

mod common;

use common::{Scratch, build_release, dirs, load, median};

const SECONDS: u32 = 600;
const RATE: u32 = 48_000;
const OUTPUTS: usize = 8;

/// The tolk configurations measured: label and extra `[source.config]` lines.
const CONFIGS: [(&str, &str); 2] = [("default", ""), ("tuned (block_ms = 100)", "block_ms = 100\n")];

fn main() {
    // `cargo bench` passes `--bench`; nothing else is understood.
    let runs: usize = std::env::var("TOLK_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5).max(1);
    let (root, target) = dirs();
    let tolk = build_release(&root, &target, &["tolk-source-wav", "tolk-sink-wav"]);

    let scratch = Scratch(target.join("bench-fanout"));
    let dir = scratch.0.clone();
    std::fs::create_dir_all(dir.join("out-tolk")).expect("bench dir");
    std::fs::create_dir_all(dir.join("out-gst")).expect("bench dir");
    let input = dir.join("ten.wav");
    eprintln!("writing {} (10 min, 48 kHz stereo) …", input.display());
    write_input(&input).expect("write the input WAV");
    let configs: Vec<PathBuf> = CONFIGS
        .iter()
        .enumerate()
        .map(|(i, (_, extra))| {
            let path = dir.join(format!("fanout-{i}.toml"));
            std::fs::write(&path, config_text(&input, &dir.join("out-tolk"), extra)).expect("write the config");
            path
        })
        .collect();

    let gst = gst_available();
    if !gst {
        eprintln!("gst-launch-1.0 is not available: timing tolk only");
    }
    let time = Path::new("/usr/bin/time");
    assert!(time.exists(), "GNU time (/usr/bin/time) is needed: apt-get install time");

    let load_before = load();
    // tolk_runs[config][round]; gst_runs[round].
    let mut tolk_runs: Vec<Vec<Timing>> = CONFIGS.iter().map(|_| vec![]).collect();
    let mut gst_runs = vec![];
    for round in 0..runs {
        let order: Vec<usize> = if round % 2 == 0 { vec![0, 1] } else { vec![1, 0] };
        let tolk_run = |c: usize, runs: &mut Vec<Vec<Timing>>| {
            let t = timed(time, &dir, Command::new(&tolk).args(["-q", "run", "--no-status"]).arg(&configs[c]));
            check_outputs(&dir.join("out-tolk"));
            clear(&dir.join("out-tolk"));
            eprintln!(
                "round {}: tolk {:<24} wall {:.2} s  cpu {:.2} s  rss {} MB",
                round + 1,
                CONFIGS[c].0,
                t.wall,
                t.cpu,
                t.rss_kb / 1024
            );
            runs[c].push(t);
        };
        tolk_run(order[0], &mut tolk_runs);
        if gst {
            let mut cmd = Command::new("gst-launch-1.0");
            cmd.arg("-q").args(gst_pipeline(&input, &dir.join("out-gst")));
            let t = timed(time, &dir, &mut cmd);
            check_outputs(&dir.join("out-gst"));
            clear(&dir.join("out-gst"));
            eprintln!(
                "round {}: gstreamer                    wall {:.2} s  cpu {:.2} s  rss {} MB",
                round + 1,
                t.wall,
                t.cpu,
                t.rss_kb / 1024
            );
            gst_runs.push(t);
        }
        tolk_run(order[1], &mut tolk_runs);
    }
    let load_after = load();

    println!("fan-out, 10 min 48 kHz stereo → 24 kHz mono → {OUTPUTS} WAV files, {runs} rounds (medians)");
    println!("  load average before: {load_before}; after: {load_after}");
    if gst {
        println!(
            "  gstreamer                    wall {:.2} s  user+sys {:.2} s  max RSS {} MB",
            median(gst_runs.iter().map(|t| t.wall)),
            median(gst_runs.iter().map(|t| t.cpu)),
            median(gst_runs.iter().map(|t| t.rss_kb as f64)) as u64 / 1024
        );
    }
    for (c, (label, _)) in CONFIGS.iter().enumerate() {
        let r = &tolk_runs[c];
        print!(
            "  tolk {label:<23} wall {:.2} s  user+sys {:.2} s  max RSS {} MB",
            median(r.iter().map(|t| t.wall)),
            median(r.iter().map(|t| t.cpu)),
            median(r.iter().map(|t| t.rss_kb as f64)) as u64 / 1024
        );
        if gst {
            let cpu = median(r.iter().zip(&gst_runs).map(|(t, g)| t.cpu / g.cpu));
            let wall = median(r.iter().zip(&gst_runs).map(|(t, g)| t.wall / g.wall));
            print!("  | tolk/gstreamer (median of pairs): cpu {cpu:.2}×, wall {wall:.2}×");
        }
        println!();
    }
    if gst {
        println!("  targets at the defaults: cpu ≤ 0.67× (≥ 1.5× cheaper), wall ≤ 1.00×");
    }
    drop(scratch);
}

/// Removes the outputs of a run (so no run is timed writing over the previous one's files).
fn clear(dir: &Path) {
    for i in 0..OUTPUTS {
        let _ = std::fs::remove_file(dir.join(format!("b{i}.wav")));
    }
}

/// One timed run.
struct Timing {
    wall: f64,
    cpu: f64,
    rss_kb: u64,
}

fn timed(time: &Path, dir: &Path, cmd: &mut Command) -> Timing {
    let _ = Command::new("sync").status();
    let report = dir.join("time.txt");
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let status = Command::new(time)
        .args(["-f", "%e %U %S %M", "-o"])
        .arg(&report)
        .arg(program)
        .args(args)
        .current_dir(dir)
        .status()
        .expect("run GNU time");
    assert!(status.success(), "{cmd:?} failed: {status}");
    let text = std::fs::read_to_string(&report).expect("time report");
    let f: Vec<f64> = text.lines().last().unwrap_or("").split_whitespace().filter_map(|x| x.parse().ok()).collect();
    assert_eq!(f.len(), 4, "unexpected GNU time output: {text}");
    Timing { wall: f[0], cpu: f[1] + f[2], rss_kb: f[3] as u64 }
}

/// 48 kHz stereo 16-bit: a 440 Hz sine left and a 660 Hz sine right at half scale (as `sox -n
/// -r 48000 -c 2 -b 16 ten.wav synth 600 sine 440 sine 660 vol 0.5`).
fn write_input(path: &Path) -> std::io::Result<()> {
    let frames = SECONDS * RATE;
    let data = frames * 4;
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path)?);
    w.write_all(b"RIFF")?;
    w.write_all(&(36 + data).to_le_bytes())?;
    w.write_all(b"WAVEfmt ")?;
    w.write_all(&16u32.to_le_bytes())?;
    w.write_all(&1u16.to_le_bytes())?;
    w.write_all(&2u16.to_le_bytes())?;
    w.write_all(&RATE.to_le_bytes())?;
    w.write_all(&(RATE * 4).to_le_bytes())?;
    w.write_all(&4u16.to_le_bytes())?;
    w.write_all(&16u16.to_le_bytes())?;
    w.write_all(b"data")?;
    w.write_all(&data.to_le_bytes())?;
    let (wl, wr) =
        (2.0 * std::f64::consts::PI * 440.0 / f64::from(RATE), 2.0 * std::f64::consts::PI * 660.0 / f64::from(RATE));
    for i in 0..frames {
        let t = f64::from(i);
        let l = (0.5 * (wl * t).sin() * 32767.0) as i16;
        let r = (0.5 * (wr * t).sin() * 32767.0) as i16;
        w.write_all(&l.to_le_bytes())?;
        w.write_all(&r.to_le_bytes())?;
    }
    w.flush()
}

fn config_text(input: &Path, out: &Path, extra: &str) -> String {
    let mut c = format!(
        "# Written by core/benches/fanout.rs\n[run]\ndelivery = \"lossless\"\n\n[[source]]\nid = \"ten\"\nplugin = \"tolk.wav\"\nlanguage = \"en\"\n[source.config]\npath = \"{}\"\nrealtime = false\n{extra}\n[[route]]\nsource = \"ten\"\nto = [\"floor\"]\nsinks = [{}]\n",
        input.display(),
        (0..OUTPUTS).map(|i| format!("\"b{i}\"")).collect::<Vec<_>>().join(", ")
    );
    for i in 0..OUTPUTS {
        c += &format!(
            "\n[[sink]]\nid = \"b{i}\"\nplugin = \"tolk.wav\"\n[sink.config]\npath = \"{}\"\n",
            out.join(format!("b{i}.wav")).display()
        );
    }
    c
}

fn gst_pipeline(input: &Path, out: &Path) -> Vec<String> {
    let mut p = format!(
        "filesrc location={} ! wavparse ! audioconvert ! audioresample ! audio/x-raw,format=S16LE,rate=24000,channels=1 ! tee name=t",
        input.display()
    );
    for i in 0..OUTPUTS {
        p += &format!(" t. ! queue ! wavenc ! filesink location={}", out.join(format!("b{i}.wav")).display());
    }
    p.split_whitespace().map(str::to_string).collect()
}

/// Every output holds exactly 10 minutes at 24 kHz mono 16-bit.
fn check_outputs(dir: &Path) {
    for i in 0..OUTPUTS {
        let p = dir.join(format!("b{i}.wav"));
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        let want = u64::from(SECONDS) * 24_000 * 2;
        assert!(
            len >= want && len < want + 4096,
            "{}: {len} bytes, expected {want} of audio plus a header",
            p.display()
        );
    }
}

fn gst_available() -> bool {
    let have = || Command::new("gst-launch-1.0").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if have() {
        return true;
    }
    if std::env::var("CI").is_ok() {
        return false;
    }
    eprintln!("installing GStreamer (gstreamer1.0-tools, -plugins-base, -plugins-good) …");
    let _ = Command::new("apt-get")
        .args([
            "install",
            "-y",
            "--no-install-recommends",
            "gstreamer1.0-tools",
            "gstreamer1.0-plugins-base",
            "gstreamer1.0-plugins-good",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    have()
}
