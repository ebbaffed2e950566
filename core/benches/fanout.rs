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
//! Each run is timed with GNU time (wall, user + sys, max RSS) after a `sync`, tolk and
//! GStreamer alternating; the bench prints every run, the medians and the ratio
//! GStreamer / tolk (above 1.0: tolk is faster). Run it with
//!
//! ```sh
//! cargo bench -p tolk-core --bench fanout            # 5 runs each
//! TOLK_BENCH_RUNS=9 cargo bench -p tolk-core --bench fanout
//! ```
//!
//! It builds the release `tolk` and the two WAV plugins itself, and installs the GStreamer
//! Debian packages when `gst-launch-1.0` is missing and it runs as root (never in CI: this is
//! not part of the test suite). Files go to `target/bench-fanout/`.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    process::Command,
};

const SECONDS: u32 = 600;
const RATE: u32 = 48_000;
const OUTPUTS: usize = 8;

fn main() {
    // `cargo bench` passes `--bench`; nothing else is understood.
    let runs: usize = std::env::var("TOLK_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5).max(1);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let target = if target.is_absolute() { target } else { root.join(target) };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("building release tolk and plugins …");
    let ok = Command::new(&cargo)
        .args(["build", "--release", "-p", "tolk-core", "-p", "tolk-source-wav", "-p", "tolk-sink-wav"])
        .current_dir(&root)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "cargo build --release failed");
    let tolk = target.join("release").join("tolk");

    let dir = target.join("bench-fanout");
    std::fs::create_dir_all(dir.join("out-tolk")).expect("bench dir");
    std::fs::create_dir_all(dir.join("out-gst")).expect("bench dir");
    let input = dir.join("ten.wav");
    if std::fs::metadata(&input).map(|m| m.len()).unwrap_or(0) != 44 + u64::from(SECONDS * RATE * 4) {
        eprintln!("writing {} (10 min, 48 kHz stereo) …", input.display());
        write_input(&input).expect("write the input WAV");
    }
    let config = dir.join("fanout.toml");
    std::fs::write(&config, config_text(&input, &dir.join("out-tolk"))).expect("write the config");

    let gst = gst_available();
    if !gst {
        eprintln!("gst-launch-1.0 is not available: timing tolk only");
    }
    let time = Path::new("/usr/bin/time");
    assert!(time.exists(), "GNU time (/usr/bin/time) is needed: apt-get install time");

    let mut tolk_runs = vec![];
    let mut gst_runs = vec![];
    for i in 0..runs {
        let t = timed(time, &dir, Command::new(&tolk).args(["-q", "run", "--no-status"]).arg(&config));
        check_outputs(&dir.join("out-tolk"));
        eprintln!("run {}: tolk      wall {:.2} s  cpu {:.2} s  rss {} MB", i + 1, t.wall, t.cpu, t.rss_kb / 1024);
        tolk_runs.push(t);
        if gst {
            let mut cmd = Command::new("gst-launch-1.0");
            cmd.arg("-q").args(gst_pipeline(&input, &dir.join("out-gst")));
            let t = timed(time, &dir, &mut cmd);
            check_outputs(&dir.join("out-gst"));
            eprintln!("run {}: gstreamer wall {:.2} s  cpu {:.2} s  rss {} MB", i + 1, t.wall, t.cpu, t.rss_kb / 1024);
            gst_runs.push(t);
        }
    }
    let med = |v: &[Timing], f: fn(&Timing) -> f64| {
        let mut x: Vec<f64> = v.iter().map(f).collect();
        x.sort_by(f64::total_cmp);
        x[x.len() / 2]
    };
    println!("fan-out, 10 min 48 kHz stereo → 24 kHz mono → {OUTPUTS} WAV files, {runs} runs each (median)");
    let (tw, tc) = (med(&tolk_runs, |t| t.wall), med(&tolk_runs, |t| t.cpu));
    println!(
        "  tolk       wall {tw:.2} s  user+sys {tc:.2} s  max RSS {} MB",
        med(&tolk_runs, |t| t.rss_kb as f64) as u64 / 1024
    );
    if gst {
        let (gw, gc) = (med(&gst_runs, |t| t.wall), med(&gst_runs, |t| t.cpu));
        println!(
            "  gstreamer  wall {gw:.2} s  user+sys {gc:.2} s  max RSS {} MB",
            med(&gst_runs, |t| t.rss_kb as f64) as u64 / 1024
        );
        println!("  ratio gstreamer/tolk: wall {:.2}, cpu {:.2} (≥ 1.0: tolk at least as fast)", gw / tw, gc / tc);
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

fn config_text(input: &Path, out: &Path) -> String {
    let mut c = format!(
        "# Written by core/benches/fanout.rs\n[run]\ndelivery = \"lossless\"\n\n[[source]]\nid = \"ten\"\nplugin = \"tolk.wav\"\nlanguage = \"en\"\n[source.config]\npath = \"{}\"\nrealtime = false\nblock_ms = 100\n\n[[route]]\nsource = \"ten\"\nto = [\"floor\"]\nsinks = [{}]\n",
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
