//! `tolk plugins check LIB`: the conformance kit run against a built library, one child
//! process per check (clap-validator's approach), so a plugin that crashes or hangs is reported
//! as `crashed` and the checker carries on.
//!
//! The parent runs `tolk plugins __child describe LIB` to list the library's plugins, then
//! `tolk plugins __child check LIB --kind K --id ID --check NAME` per check, writing the
//! plugin's config text to the child's stdin and reading one JSON line back.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tolk_plugin_api::{
    PluginError, PluginKind,
    ffi::HostBox,
    testing::{self, CheckResult, Factory, Instance, Options, Outcome, Report},
};

use super::{LoadError, load_one};

/// How long one check may take before its child is killed and reported as crashed.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

/// What `--config FILE` provides: config tables per plugin and checks to skip.
///
/// ```toml
/// [checks]
/// skip = ["audio-call-budget"]
///
/// [source."tolk.wav"]
/// path = "speech.wav"
/// ```
#[derive(Debug, Clone, Default)]
pub struct CheckConfig {
    /// Config text per (kind, id); plugins not listed use their example config.
    pub configs: BTreeMap<(PluginKind, String), String>,
    /// Checks to skip.
    pub skip: Vec<String>,
    /// When not empty, the only checks to run (the others are not reported at all).
    pub only: Vec<String>,
    /// Directory relative paths in the configs resolve against.
    pub dir: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheckConfig {
    #[serde(default)]
    checks: RawChecks,
    #[serde(default)]
    source: BTreeMap<String, toml::Table>,
    #[serde(default)]
    prompt: BTreeMap<String, toml::Table>,
    #[serde(default)]
    sink: BTreeMap<String, toml::Table>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawChecks {
    #[serde(default)]
    skip: Vec<String>,
}

impl CheckConfig {
    /// Reads a check config file; errors are one line naming the file and key.
    pub fn from_file(path: &Path) -> Result<CheckConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let raw: RawCheckConfig =
            tolk_plugin_api::parse_config(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut configs = BTreeMap::new();
        for (kind, tables) in
            [(PluginKind::Source, raw.source), (PluginKind::Prompt, raw.prompt), (PluginKind::Sink, raw.sink)]
        {
            for (id, table) in tables {
                let text = toml::to_string(&table).map_err(|e| format!("{}: {kind}.{id}: {e}", path.display()))?;
                configs.insert((kind, id), text);
            }
        }
        for name in &raw.checks.skip {
            if !testing::CHECKS.iter().any(|c| c.name == name) {
                return Err(format!(
                    "{}: checks.skip: no check called \"{name}\"{}",
                    path.display(),
                    crate::util::did_you_mean(name, testing::CHECKS.iter().map(|c| c.name))
                ));
            }
        }
        let dir = path.canonicalize().ok().and_then(|p| p.parent().map(Path::to_path_buf));
        Ok(CheckConfig { configs, skip: raw.checks.skip, only: Vec::new(), dir })
    }
}

#[derive(Serialize, Deserialize)]
struct Described {
    kind: String,
    id: String,
    example_config: String,
}

#[derive(Serialize, Deserialize)]
struct ChildOutcome {
    outcome: String,
    detail: String,
}

fn kind_from(s: &str) -> Option<PluginKind> {
    match s {
        "source" => Some(PluginKind::Source),
        "prompt" => Some(PluginKind::Prompt),
        "sink" => Some(PluginKind::Sink),
        _ => None,
    }
}

/// Runs every check on every plugin of the library at `lib`, each in a child process.
/// `Err` is a one-line reason the library could not be checked at all (it failed to load);
/// with `verbose`, the child's whole report (abi_stable's layout dump) is printed first.
pub fn run(lib: &Path, config: &CheckConfig, verbose: bool) -> Result<Report, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the tolk executable: {e}"))?;
    let lib = lib.canonicalize().map_err(|e| format!("{}: {e}", lib.display()))?;
    let scratch = tempdir()?;
    let mut describe: Vec<&std::ffi::OsStr> = vec!["describe".as_ref(), lib.as_os_str()];
    if verbose {
        describe.push("--full-report".as_ref());
    }
    let out = run_child(&exe, &describe, "", &scratch);
    let described: Vec<Described> = match out {
        ChildResult::Done { status_ok: true, stdout, .. } => stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: unreadable plugin list from the checker child: {e}", lib.display()))?,
        ChildResult::Done { stderr, .. } => {
            if verbose {
                // Everything but the final error line, which the caller prints.
                let lines: Vec<&str> = stderr.lines().collect();
                for l in &lines[..lines.len().saturating_sub(1)] {
                    crate::errln!("{l}");
                }
            }
            return Err(last_line(&stderr));
        }
        ChildResult::Crashed(why) => return Err(format!("{}: crashed while loading: {why}", lib.display())),
    };
    // What example configs may name, in the directory their relative paths resolve against.
    if config.dir.is_none() {
        write_speech_wav(&scratch.join(SPEECH_WAV))?;
    }
    let mut report = Report::default();
    for d in described {
        let Some(kind) = kind_from(&d.kind) else { continue };
        let text = config.configs.get(&(kind, d.id.clone())).cloned().unwrap_or(d.example_config.clone());
        let selected = |name: &str| config.only.is_empty() || config.only.iter().any(|o| o == name);
        for check in testing::CHECKS.iter().filter(|c| c.kinds.contains(&kind) && selected(c.name)) {
            let outcome = if config.skip.iter().any(|s| s == check.name) {
                Outcome::Skip("skipped by configuration".into())
            } else {
                let dir = config.dir.clone().unwrap_or_else(|| scratch.clone());
                let args = [
                    "check".as_ref(),
                    lib.as_os_str(),
                    "--kind".as_ref(),
                    d.kind.as_ref(),
                    "--id".as_ref(),
                    d.id.as_ref(),
                    "--check".as_ref(),
                    check.name.as_ref(),
                    "--config-dir".as_ref(),
                    dir.as_os_str(),
                ];
                match run_child(&exe, &args, &text, &scratch) {
                    ChildResult::Done { stdout, stderr, .. } => {
                        match stdout.lines().rev().find_map(|l| serde_json::from_str::<ChildOutcome>(l).ok()) {
                            Some(o) => match o.outcome.as_str() {
                                "pass" => Outcome::Pass,
                                "fail" => Outcome::Fail(o.detail),
                                "skip" => Outcome::Skip(o.detail),
                                "warn" => Outcome::Warn(o.detail),
                                _ => Outcome::Crashed(o.detail),
                            },
                            None => {
                                Outcome::Crashed(format!("the check process gave no result: {}", last_line(&stderr)))
                            }
                        }
                    }
                    ChildResult::Crashed(why) => Outcome::Crashed(why),
                }
            };
            report.results.push(CheckResult {
                plugin: format!("{} {}", d.kind, d.id),
                check: check.name.into(),
                outcome,
            });
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(report)
}

/// The file the check directory provides for example configs that read audio.
pub const SPEECH_WAV: &str = "speech.wav";

/// Writes 3 s of generated speech-like audio (24 kHz mono 16-bit): syllables of a voiced
/// harmonic sound with a gliding pitch and changing vowel formants, consonant noise bursts,
/// and pauses between words, so that sources reading it and anything gating on voice
/// activity see something like speech.
pub fn write_speech_wav(path: &Path) -> Result<(), String> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 24_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let fail = |e: hound::Error| format!("cannot write {}: {e}", path.display());
    let mut w = hound::WavWriter::create(path, spec).map_err(fail)?;
    for s in speech_like(24_000, 3.0) {
        w.write_sample(s).map_err(fail)?;
    }
    w.finalize().map_err(fail)
}

/// The samples behind [`write_speech_wav`]: deterministic, peak about -6 dBFS.
pub fn speech_like(rate: u32, seconds: f64) -> Vec<i16> {
    use std::f64::consts::TAU;
    // Vowel formants (F1, F2) in Hz: a, e, i, o, u.
    const VOWELS: [(f64, f64); 5] = [(730.0, 1090.0), (530.0, 1840.0), (270.0, 2290.0), (570.0, 840.0), (300.0, 870.0)];
    let rate_f = f64::from(rate);
    let n = (seconds * rate_f) as usize;
    let (syllable, gap, word_pause) = (0.18, 0.05, 0.3);
    let word = 3.0 * (syllable + gap) + word_pause;
    let mut phase = 0.0f64;
    let mut noise = 0x2545_f491_u32;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = i as f64 / rate_f;
        let in_word = t % word;
        let index = (t / word) as usize * 3 + (in_word / (syllable + gap)) as usize;
        let in_syllable = in_word % (syllable + gap);
        // Intonation: a slow glide around 140 Hz, falling over each word.
        let f0 = 140.0 + 25.0 * (TAU * 0.6 * t).sin() - 20.0 * (in_word / word);
        phase = (phase + TAU * f0 / rate_f) % TAU;
        noise ^= noise << 13;
        noise ^= noise >> 17;
        noise ^= noise << 5;
        let white = f64::from(noise) / f64::from(u32::MAX) * 2.0 - 1.0;
        let voiced = in_word < 3.0 * (syllable + gap) && in_syllable < syllable;
        let sample = if !voiced {
            0.0
        } else if in_syllable < 0.025 {
            // A consonant: a short noise burst.
            0.25 * white
        } else {
            let (f1, f2) = VOWELS[index % VOWELS.len()];
            let env = (std::f64::consts::PI * (in_syllable - 0.025) / (syllable - 0.025)).sin();
            let mut v = 0.0;
            for k in 1..=24 {
                let f = f0 * f64::from(k);
                if f > rate_f / 2.0 - 500.0 {
                    break;
                }
                let weight = (-((f - f1) / 150.0).powi(2)).exp() + 0.6 * (-((f - f2) / 200.0).powi(2)).exp() + 0.08;
                v += weight * (phase * f64::from(k)).sin() / f64::from(k).sqrt();
            }
            0.3 * env * v
        };
        out.push((sample.clamp(-1.0, 1.0) * 16_000.0) as i16);
    }
    out
}

fn last_line(s: &str) -> String {
    let line = s.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no output");
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

fn tempdir() -> Result<PathBuf, String> {
    let dir =
        std::env::temp_dir().join(format!("tolk-check-{}-{}", std::process::id(), Instant::now().elapsed().as_nanos()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

enum ChildResult {
    Done { status_ok: bool, stdout: String, stderr: String },
    Crashed(String),
}

fn run_child(exe: &Path, args: &[&std::ffi::OsStr], stdin: &str, cwd: &Path) -> ChildResult {
    let mut child = match Command::new(exe)
        .args(["plugins", "__child"])
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return ChildResult::Crashed(format!("cannot start the check process: {e}")),
    };
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.as_bytes());
    }
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let (t_out, t_err) = (drain(out), drain(err));
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > CHILD_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return ChildResult::Crashed(format!("timed out after {} s", CHILD_TIMEOUT.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return ChildResult::Crashed(format!("lost the check process: {e}")),
        }
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return ChildResult::Crashed(format!("killed by signal {sig}{}", signal_name(sig)));
        }
    }
    match status.code() {
        Some(0) | Some(2) => ChildResult::Done { status_ok: status.success(), stdout, stderr },
        Some(code) => ChildResult::Crashed(format!("exited with status {code}: {}", last_line(&stderr))),
        None => ChildResult::Crashed("exited abnormally".into()),
    }
}

pub(crate) fn signal_name(sig: i32) -> &'static str {
    match sig {
        6 => " (SIGABRT)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        7 => " (SIGBUS)",
        4 => " (SIGILL)",
        8 => " (SIGFPE)",
        _ => "",
    }
}

/// Child side of `describe`: prints one JSON line per plugin. Exit 2 with a one-line error
/// when the library does not load (preceded by the full report when `verbose`).
pub fn child_describe(lib: &Path, verbose: bool) -> Result<(), LoadError> {
    let lib = load_one(lib).inspect_err(|e| {
        if verbose && let Some(detail) = e.detail() {
            crate::errln!("{detail}");
        }
    })?;
    let mut out = std::io::stdout().lock();
    for d in &lib.descriptors {
        let line =
            Described { kind: d.kind().to_string(), id: d.id().into(), example_config: d.example_config().into() };
        let _ = writeln!(out, "{}", serde_json::to_string(&line).unwrap_or_default());
    }
    Ok(())
}

struct LibFactory {
    lib: super::Library,
    kind: PluginKind,
    id: String,
}

impl Factory for LibFactory {
    fn create(&self, config: &str, host: HostBox) -> Result<Instance, PluginError> {
        use abi_stable::std_types::RStr;
        let (id, cfg) = (RStr::from_str(&self.id), RStr::from_str(config));
        let m = &self.lib.module;
        match self.kind {
            PluginKind::Source => (m.new_source())(id, cfg, host).into_result().map(Instance::Source),
            PluginKind::Prompt => (m.new_prompt())(id, cfg, host).into_result().map(Instance::Prompt),
            PluginKind::Sink => (m.new_sink())(id, cfg, host).into_result().map(Instance::Sink),
        }
    }
}

/// Child side of `check`: runs one check and prints its outcome as a JSON line.
pub fn child_check(lib: &Path, kind: &str, id: &str, check: &str, config_dir: &Path) -> Result<(), String> {
    let kind = kind_from(kind).ok_or_else(|| format!("unknown plugin kind {kind:?}"))?;
    let lib = load_one(lib).map_err(|e| e.to_string())?;
    let descriptor = lib
        .descriptors
        .iter()
        .find(|d| d.kind() == kind && d.id() == id)
        .cloned()
        .ok_or_else(|| format!("{}: no {kind} with id \"{id}\"", lib.path.display()))?;
    let mut config = String::new();
    let _ = std::io::stdin().read_to_string(&mut config);
    let factory = LibFactory { lib, kind, id: id.into() };
    let options = Options { skip: vec![], config_dir: Some(config_dir.to_path_buf()) };
    let outcome = testing::run_check(check, &descriptor, &config, &factory, &options);
    let line = ChildOutcome { outcome: outcome.label().into(), detail: outcome.detail().into() };
    crate::outln!("{}", serde_json::to_string(&line).unwrap_or_default());
    Ok(())
}

/// Reads a child's pipe to the end on a thread of its own, so a chatty child cannot block on a
/// full pipe while the other is read; the thread returns what was read.
pub(super) fn drain<R: std::io::Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_string(&mut s);
        }
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speech_like_audio_has_voiced_syllables_and_pauses_at_a_sane_level() {
        let s = speech_like(24_000, 3.0);
        assert_eq!(s.len(), 72_000);
        let peak = s.iter().map(|v| i32::from(*v).abs()).max().unwrap();
        assert!((8_000..=32_000).contains(&peak), "peak {peak}");
        // 20 ms frames: some loud (syllables), some silent (gaps and pauses).
        let frames: Vec<f64> = s
            .chunks(480)
            .map(|f| (f.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / f.len() as f64).sqrt())
            .collect();
        let loud = frames.iter().filter(|r| **r > 1_000.0).count();
        let silent = frames.iter().filter(|r| **r < 1.0).count();
        assert!(
            loud > frames.len() / 3 && silent > frames.len() / 6,
            "loud {loud}, silent {silent} of {}",
            frames.len()
        );
    }
}
