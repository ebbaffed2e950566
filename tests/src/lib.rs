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
    process::{Command, Output},
    sync::OnceLock,
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
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .arg("build")
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir().join("fixtures"))
        .output()
        .expect("run cargo");
    assert!(out.status.success(), "cargo build in {} failed:\n{}", dir.display(), String::from_utf8_lossy(&out.stderr));
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
