//! Support for tolk's integration tests: where the built artifacts are, building the fixture
//! libraries, running the `tolk` binary, writing and reading WAV files.
//!
//! The tests load real plugin libraries from disk, so `cargo build --workspace` must run
//! before `cargo test` (cargo does not build cdylibs for tests); a missing artifact fails with
//! that instruction. The fixture libraries (deliberately broken plugins) live in their own
//! workspace under `tests/fixtures` and are built here, once per test run, into
//! `target/fixtures`, so they never sit next to the `tolk` binary.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// `target/<profile>`: where `tolk` and the built-in plugins are.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

/// The cargo target directory.
pub fn target_dir() -> PathBuf {
    bin_dir().parent().expect("target dir").to_path_buf()
}

fn need(path: PathBuf) -> PathBuf {
    assert!(path.exists(), "{} is missing: run `cargo build --workspace` before `cargo test`", path.display());
    path
}

/// The `tolk` binary.
pub fn tolk_path() -> PathBuf {
    need(bin_dir().join(format!("tolk{}", std::env::consts::EXE_SUFFIX)))
}

/// A `tolk` command with a clean plugin environment.
pub fn tolk() -> Command {
    let mut c = Command::new(tolk_path());
    c.env_remove("TOLK_PLUGIN_PATH").env_remove("TOLK_LOG");
    c
}

/// The file name of library `name` on this platform (`libname.so`).
pub fn lib_file(name: &str) -> String {
    format!("{}{name}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX)
}

/// A built-in plugin library, e.g. `builtin("tolk_source_wav")`.
pub fn builtin(name: &str) -> PathBuf {
    need(bin_dir().join(lib_file(name)))
}

/// Runs cargo `args` in `dir` with `target/fixtures` as the target directory; panics with
/// cargo's output on failure.
pub fn cargo_build(dir: &Path, args: &[&str]) {
    let out = cargo_build_output(dir, args);
    assert!(out.status.success(), "cargo build in {} failed:\n{}", dir.display(), String::from_utf8_lossy(&out.stderr));
}

/// [`cargo_build`] that returns cargo's output instead of asserting success (for crates that
/// must fail to compile).
pub fn cargo_build_output(dir: &Path, args: &[&str]) -> Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    Command::new(cargo)
        .arg("build")
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir().join("fixtures"))
        .output()
        .expect("run cargo")
}

/// Builds the fixture workspace once; returns the directory holding its libraries.
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        cargo_build(&root().join("tests/fixtures"), &["--quiet"]);
        target_dir().join("fixtures").join("debug")
    })
}

/// A fixture library, e.g. `fixture("fixture_wrong_abi")`.
pub fn fixture(name: &str) -> PathBuf {
    need(fixtures().join(lib_file(name)))
}

/// A finished process, with its output as text.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`-1` when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// The non-empty lines of stderr.
    pub fn err_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| !l.trim().is_empty()).collect()
    }
}

/// Runs `cmd` to completion.
pub fn run(cmd: &mut Command) -> Run {
    let Output { status, stdout, stderr } = cmd.output().expect("spawn");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Runs `cmd` in `dir` with stdout and stderr in `dir/stdout.txt` and `dir/stderr.txt`,
/// calling `poll` with its process id every 20 ms while it runs; kills it and panics with both
/// outputs when it takes longer than `limit`.
pub fn run_in(mut cmd: Command, dir: &Path, limit: Duration, mut poll: impl FnMut(u32)) -> Run {
    let (out, err) = (dir.join("stdout.txt"), dir.join("stderr.txt"));
    let mut child = cmd
        .current_dir(dir)
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
        .spawn()
        .expect("spawn tolk");
    let started = Instant::now();
    let status = loop {
        poll(child.id());
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "tolk run did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                std::fs::read_to_string(&out).unwrap_or_default(),
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
    }
}

/// Runs `tolk run --no-status CONFIG ARGS…` in the config's directory, killing it after `limit`.
pub fn run_tolk(config: &Path, args: &[&str], limit: Duration) -> Run {
    let mut cmd = tolk();
    cmd.args(["run", "--no-status"]).arg(config).args(args);
    run_in(cmd, config.parent().unwrap(), limit, |_| {})
}

/// Writes `text` to `dir/name`; returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The JSON status file `dir/status.json`.
pub fn status(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("status.json")).expect("status.json")).unwrap()
}

/// A deterministic, never-silent speech stand-in of `n` samples (no zero sample), amplitude
/// below `amp`, full of detail.
pub fn signal(n: usize, seed: u32, amp: i32) -> Vec<i16> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let v = ((x >> 16) as i32 % amp) as i16;
            if v == 0 { 1 } else { v }
        })
        .collect()
}

/// The non-silent runs of `samples` as (start, end): runs of at least `gap` zeros split them.
pub fn active(samples: &[i16], gap: usize) -> Vec<(usize, usize)> {
    let mut out = vec![];
    let mut i = 0;
    while i < samples.len() {
        while i < samples.len() && samples[i] == 0 {
            i += 1;
        }
        let (start, mut end, mut zeros) = (i, i, 0);
        while i < samples.len() && zeros < gap {
            if samples[i] == 0 {
                zeros += 1;
            } else {
                zeros = 0;
                end = i + 1;
            }
            i += 1;
        }
        if end > start {
            out.push((start, end));
        }
    }
    out
}

/// The non-silent runs of `samples` themselves (see [`active`]).
pub fn runs(samples: &[i16], gap: usize) -> Vec<&[i16]> {
    active(samples, gap).into_iter().map(|(a, b)| &samples[a..b]).collect()
}

/// Writes a 16-bit WAV.
pub fn write_wav_i16(path: &Path, rate: u32, channels: u16, samples: &[i16]) {
    let spec =
        hound::WavSpec { channels, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for &s in samples {
        w.write_sample(s).expect("write sample");
    }
    w.finalize().expect("finalize wav");
}

/// Reads a WAV as (spec, samples as f32 in -1..1).
pub fn read_wav(path: &Path) -> (hound::WavSpec, Vec<f32>) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let spec = r.spec();
    let samples = match spec.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().map(|s| s.expect("sample")).collect(),
        hound::SampleFormat::Int => {
            let scale = (1i64 << (spec.bits_per_sample - 1)) as f32;
            r.samples::<i32>().map(|s| s.expect("sample") as f32 / scale).collect()
        }
    };
    (spec, samples)
}

/// Reads a 16-bit WAV's raw samples.
pub fn read_wav_i16(path: &Path) -> (hound::WavSpec, Vec<i16>) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let spec = r.spec();
    (spec, r.samples::<i16>().map(|s| s.expect("sample")).collect())
}

/// Asserts two strings are equal, showing both in full on failure (ripgrep's `eqnice!`).
#[macro_export]
macro_rules! eqnice {
    ($expected:expr, $got:expr) => {{
        let (expected, got) = (&$expected, &$got);
        if expected != got {
            panic!("\nexpected:\n{}\n\ngot:\n{}\n", expected, got);
        }
    }};
}
