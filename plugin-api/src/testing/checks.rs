//! The checks themselves. They work on ABI objects (`SourceBox`, `SinkBox`, `PromptBox`), so
//! the same code checks an author's type in-process and a loaded library out-of-process.

use std::{
    sync::mpsc,
    time::{Duration, Instant},
};

use crate::{
    Descriptor, ErrorKind, PluginError, PluginKind, PromptRequest, SampleFormat, TextEvent, TextRole,
    ffi::{HostBox, PromptBox, SinkBox, SourceBox},
    is_valid_id,
};

use super::{
    CheckResult, Outcome, Report,
    harness::{CollectingWriter, SinkHarness, TestHost},
};

/// A live plugin instance of any kind.
pub enum Instance {
    /// An audio source.
    Source(SourceBox),
    /// A prompt provider.
    Prompt(PromptBox),
    /// An output sink.
    Sink(SinkBox),
}

/// Creates instances of the plugin under test from config text.
pub trait Factory {
    /// A fresh instance built from `config`.
    fn create(&self, config: &str, host: HostBox) -> Result<Instance, PluginError>;
}

/// A check's name, what it verifies and which kinds it applies to.
#[derive(Debug, Clone, Copy)]
pub struct CheckInfo {
    /// Kebab-case name, stable (used to skip a check).
    pub name: &'static str,
    /// One sentence.
    pub description: &'static str,
    /// The kinds it runs on.
    pub kinds: &'static [PluginKind],
}

const ALL: &[PluginKind] = &[PluginKind::Source, PluginKind::Prompt, PluginKind::Sink];
const SOURCE: &[PluginKind] = &[PluginKind::Source];
const SINK: &[PluginKind] = &[PluginKind::Sink];
const PROMPT: &[PluginKind] = &[PluginKind::Prompt];
const AV: &[PluginKind] = &[PluginKind::Source, PluginKind::Sink];

/// Every check, in the order they run.
pub const CHECKS: &[CheckInfo] = &[
    CheckInfo {
        name: "descriptor-valid",
        description: "id is lower-case reverse-DNS, name is set, version is semver",
        kinds: ALL,
    },
    CheckInfo { name: "config-accepted", description: "the given (or example) config creates an instance", kinds: ALL },
    CheckInfo {
        name: "unknown-key-rejected",
        description: "an unknown config key is a config error that names the key",
        kinds: ALL,
    },
    CheckInfo { name: "error-text", description: "errors have one non-empty line of text", kinds: ALL },
    CheckInfo {
        name: "format-valid",
        description: "the declared audio format has a usable rate and channel count",
        kinds: AV,
    },
    CheckInfo {
        name: "stop-without-start",
        description: "stop and drop work on an instance that never started",
        kinds: AV,
    },
    CheckInfo {
        name: "start-stop-restart",
        description: "start, stop, start again and stop all succeed and produce audio",
        kinds: SOURCE,
    },
    CheckInfo {
        name: "whole-frames",
        description: "every write holds whole frames in the declared format",
        kinds: SOURCE,
    },
    CheckInfo { name: "stop-bounded", description: "stop returns within 2 s while audio is flowing", kinds: SOURCE },
    CheckInfo {
        name: "drop-without-stop",
        description: "dropping a started instance returns within 2 s",
        kinds: SOURCE,
    },
    CheckInfo {
        name: "full-writer",
        description: "a writer that accepts nothing does not make the source fail or spin",
        kinds: SOURCE,
    },
    CheckInfo {
        name: "odd-blocks",
        description: "blocks of 0, 1 and odd sizes and non-finite samples are accepted",
        kinds: SINK,
    },
    CheckInfo { name: "text-events", description: "caption deltas and finals of both roles are accepted", kinds: SINK },
    CheckInfo {
        name: "audio-call-budget",
        description: "on_audio returns within 5 ms (median) for 20 ms blocks",
        kinds: SINK,
    },
    CheckInfo {
        name: "prompt-answers",
        description: "a prompt for en to es is non-empty and asking again works",
        kinds: PROMPT,
    },
    CheckInfo {
        name: "other-thread",
        description: "an instance created on one thread works when called from another",
        kinds: ALL,
    },
];

/// Which checks to run, and how.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Names of checks to skip (reported as `skip`).
    pub skip: Vec<String>,
    /// The directory relative config paths resolve against (`Host::resolve_path`); the
    /// current directory when `None`.
    pub config_dir: Option<std::path::PathBuf>,
}

/// Runs every applicable check on one plugin and collects a report.
pub fn run_checks(descriptor: &Descriptor, config: &str, factory: &dyn Factory, options: &Options) -> Report {
    let plugin = format!("{} {}", descriptor.kind(), descriptor.id());
    let mut report = Report::default();
    for check in CHECKS.iter().filter(|c| c.kinds.contains(&descriptor.kind())) {
        let outcome = if options.skip.iter().any(|s| s == check.name) {
            Outcome::Skip("skipped by configuration".into())
        } else {
            run_check(check.name, descriptor, config, factory, options)
        };
        report.results.push(CheckResult { plugin: plugin.clone(), check: check.name.into(), outcome });
    }
    report
}

fn host(options: &Options) -> HostBox {
    match &options.config_dir {
        Some(dir) => TestHost::new().with_config_dir(dir).into_ffi(),
        None => TestHost::new().into_ffi(),
    }
}

fn create(factory: &dyn Factory, config: &str, options: &Options) -> Result<Instance, Outcome> {
    factory
        .create(config, host(options))
        .map_err(|e| Outcome::Fail(format!("creating an instance failed ({}): {e}", e.kind())))
}

macro_rules! tri {
    ($e:expr, $what:expr) => {
        match $e.into_result() {
            Ok(v) => v,
            Err(e) => return Outcome::Fail(format!("{} failed ({}): {}", $what, e.kind(), e)),
        }
    };
}

/// Runs the check called `name` on one plugin. Unknown names are skipped.
pub fn run_check(
    name: &str,
    descriptor: &Descriptor,
    config: &str,
    factory: &dyn Factory,
    options: &Options,
) -> Outcome {
    let o = options;
    match name {
        "descriptor-valid" => descriptor_valid(descriptor),
        "config-accepted" => match create(factory, config, o) {
            Ok(_) => Outcome::Pass,
            Err(o) => o,
        },
        "unknown-key-rejected" => unknown_key(factory, config, o, false),
        "error-text" => unknown_key(factory, config, o, true),
        "format-valid" => match create(factory, config, o) {
            Ok(Instance::Source(s)) => match s.format().into_result() {
                Ok(f) => f.validate().map(|_| Outcome::Pass).unwrap_or_else(|e| Outcome::Fail(e.to_string())),
                Err(e) => Outcome::Fail(format!("format failed: {e}")),
            },
            Ok(Instance::Sink(s)) => match s.format().into_result() {
                Ok(f) => match f.into_option() {
                    Some(f) => f.validate().map(|_| Outcome::Pass).unwrap_or_else(|e| Outcome::Fail(e.to_string())),
                    None => Outcome::Pass,
                },
                Err(e) => Outcome::Fail(format!("format failed: {e}")),
            },
            Ok(Instance::Prompt(_)) => Outcome::Skip("not an audio plugin".into()),
            Err(o) => o,
        },
        "stop-without-start" => match create(factory, config, o) {
            Ok(Instance::Source(mut s)) => {
                tri!(s.stop(), "stop");
                bounded_drop(s)
            }
            Ok(Instance::Sink(mut s)) => {
                tri!(s.stop(), "stop");
                bounded_drop(s)
            }
            Ok(Instance::Prompt(_)) => Outcome::Skip("not an audio plugin".into()),
            Err(o) => o,
        },
        "start-stop-restart" => with_source(factory, config, o, start_stop_restart),
        "whole-frames" => with_source(factory, config, o, whole_frames),
        "stop-bounded" => with_source(factory, config, o, stop_bounded),
        "drop-without-stop" => with_source(factory, config, o, |mut s| {
            let w = CollectingWriter::new();
            tri!(s.start(w.to_ffi()), "start");
            w.wait_for(1, Duration::from_millis(300));
            bounded_drop(s)
        }),
        "full-writer" => with_source(factory, config, o, full_writer),
        "odd-blocks" => with_sink(factory, config, o, odd_blocks),
        "text-events" => with_sink(factory, config, o, text_events),
        "audio-call-budget" => with_sink(factory, config, o, audio_budget),
        "prompt-answers" => match create(factory, config, o) {
            Ok(Instance::Prompt(mut p)) => prompt_answers(&mut p),
            Ok(_) => Outcome::Skip("not a prompt provider".into()),
            Err(o) => o,
        },
        "other-thread" => other_thread(factory, config, o),
        other => Outcome::Skip(format!("no check called {other:?}")),
    }
}

fn descriptor_valid(d: &Descriptor) -> Outcome {
    if !is_valid_id(d.id()) {
        return Outcome::Fail(format!("id {:?} is not a lower-case reverse-DNS name", d.id()));
    }
    if d.name().trim().is_empty() {
        return Outcome::Fail("name is empty".into());
    }
    let parts: Vec<&str> = d.version().split(['-', '+']).next().unwrap_or("").split('.').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty() || p.parse::<u64>().is_err()) {
        return Outcome::Fail(format!("version {:?} is not semver (MAJOR.MINOR.PATCH)", d.version()));
    }
    if d.description().contains('\n') {
        return Outcome::Warn("description spans several lines".into());
    }
    Outcome::Pass
}

const BOGUS_KEY: &str = "tolk_conformance_bogus_key";

fn unknown_key(factory: &dyn Factory, config: &str, options: &Options, text_only: bool) -> Outcome {
    // Put the key first so it lands in the plugin's own table, not in a sub-table.
    let bad = format!("{BOGUS_KEY} = 1\n{config}");
    match factory.create(&bad, host(options)) {
        Ok(_) => {
            if text_only {
                Outcome::Skip("no error to look at: the unknown key was accepted".into())
            } else {
                Outcome::Fail(format!("accepted the unknown key `{BOGUS_KEY}`; use #[serde(deny_unknown_fields)]"))
            }
        }
        Err(e) if text_only => {
            let msg = e.message();
            if msg.trim().is_empty() {
                Outcome::Fail("error message is empty".into())
            } else if msg.contains('\n') {
                Outcome::Fail("error message spans several lines".into())
            } else {
                Outcome::Pass
            }
        }
        Err(e) if e.kind() != ErrorKind::CONFIG => {
            Outcome::Fail(format!("the error's kind is {}, expected config: {e}", e.kind()))
        }
        Err(e) if !e.message().contains(BOGUS_KEY) => Outcome::Fail(format!("the error does not name the key: {e}")),
        Err(_) => Outcome::Pass,
    }
}

/// Drops `value` on a helper thread and waits at most 2 s for it.
fn bounded_drop<T: Send + 'static>(value: T) -> Outcome {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        drop(value);
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(2)) {
        Ok(()) => Outcome::Pass,
        Err(_) => Outcome::Fail("drop did not return within 2 s".into()),
    }
}

fn with_source(factory: &dyn Factory, config: &str, o: &Options, f: impl FnOnce(SourceBox) -> Outcome) -> Outcome {
    match create(factory, config, o) {
        Ok(Instance::Source(s)) => f(s),
        Ok(_) => Outcome::Skip("not a source".into()),
        Err(o) => o,
    }
}

fn with_sink(factory: &dyn Factory, config: &str, o: &Options, f: impl FnOnce(SinkBox) -> Outcome) -> Outcome {
    match create(factory, config, o) {
        Ok(Instance::Sink(s)) => f(s),
        Ok(_) => Outcome::Skip("not a sink".into()),
        Err(o) => o,
    }
}

const AUDIO_WAIT: Duration = Duration::from_secs(2);

fn start_stop_restart(mut s: SourceBox) -> Outcome {
    for round in ["first", "second"] {
        let w = CollectingWriter::new();
        tri!(s.start(w.to_ffi()), format!("{round} start"));
        let got = w.wait_for(1, AUDIO_WAIT);
        w.close();
        tri!(s.stop(), format!("{round} stop"));
        if let Some(e) = got.failed {
            return Outcome::Fail(format!("the source reported a failure after the {round} start: {e}"));
        }
        if got.samples.is_empty() && !got.ended {
            return Outcome::Fail(format!("no audio within {} s of the {round} start", AUDIO_WAIT.as_secs()));
        }
    }
    Outcome::Pass
}

fn whole_frames(mut s: SourceBox) -> Outcome {
    let format = tri!(s.format(), "format");
    let w = CollectingWriter::new();
    tri!(s.start(w.to_ffi()), "start");
    let got = w.wait_for(format.sample_rate as usize / 5, AUDIO_WAIT);
    w.close();
    tri!(s.stop(), "stop");
    if got.partial_frames > 0 {
        return Outcome::Fail(format!("{} writes held a partial frame", got.partial_frames));
    }
    match got.format {
        Some(f) if f.sample_rate != format.sample_rate || f.channels != format.channels => {
            Outcome::Fail(format!("wrote {f} but declared {format}"))
        }
        None if !got.ended => Outcome::Fail("wrote nothing".into()),
        _ => Outcome::Pass,
    }
}

fn stop_bounded(mut s: SourceBox) -> Outcome {
    let w = CollectingWriter::new();
    tri!(s.start(w.to_ffi()), "start");
    w.wait_for(1, AUDIO_WAIT);
    let t = Instant::now();
    tri!(s.stop(), "stop");
    let took = t.elapsed();
    if took > Duration::from_secs(2) {
        Outcome::Fail(format!("stop took {} ms", took.as_millis()))
    } else {
        Outcome::Pass
    }
}

fn full_writer(mut s: SourceBox) -> Outcome {
    let w = CollectingWriter::with_capacity(0);
    tri!(s.start(w.to_ffi()), "start");
    std::thread::sleep(Duration::from_millis(300));
    let got = w.captured();
    w.close();
    tri!(s.stop(), "stop");
    if let Some(e) = got.failed {
        return Outcome::Fail(format!("the source failed when the host had no room: {e}"));
    }
    // A source that retries without waiting makes thousands of calls in 300 ms.
    if got.writes > 2_000 {
        return Outcome::Warn(format!(
            "{} write attempts in 300 ms against a full writer: use wait_writable",
            got.writes
        ));
    }
    Outcome::Pass
}

fn odd_blocks(sink: SinkBox) -> Outcome {
    let mut h = match SinkHarness::start(sink) {
        Ok(h) => h,
        Err(e) => return Outcome::Fail(format!("start failed: {e}")),
    };
    let Some(format) = h.format else {
        return match h.stop() {
            Ok(_) => Outcome::Skip("text-only sink".into()),
            Err(e) => Outcome::Fail(format!("stop failed: {e}")),
        };
    };
    let ch = usize::from(format.channels);
    let mut blocks: Vec<Vec<f32>> = vec![vec![], vec![0.25; ch], vec![-0.5; 7 * ch], vec![0.1; 481 * ch]];
    if format.sample == SampleFormat::F32 {
        blocks.push(
            [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 2.0, -2.0].iter().copied().cycle().take(5 * ch).collect(),
        );
    } else {
        blocks.push([2.0f32, -2.0, f32::NAN].iter().copied().cycle().take(3 * ch).collect());
    }
    for (i, b) in blocks.iter().enumerate() {
        if let Err(e) = h.audio(b, "es") {
            return Outcome::Fail(format!("on_audio of block {i} ({} frames) failed: {e}", b.len() / ch));
        }
    }
    match h.stop() {
        Ok(_) => Outcome::Pass,
        Err(e) => Outcome::Fail(format!("stop failed: {e}")),
    }
}

fn text_events(sink: SinkBox) -> Outcome {
    let mut h = match SinkHarness::start(sink) {
        Ok(h) => h,
        Err(e) => return Outcome::Fail(format!("start failed: {e}")),
    };
    let events = [
        TextEvent::new(TextRole::Source, false, 1, "en", "Good ", 0, 400),
        TextEvent::new(TextRole::Source, true, 1, "en", "Good morning.", 0, 900),
        TextEvent::new(TextRole::Translation, false, 1, "es", "Buenos ", 300, 700),
        TextEvent::new(TextRole::Translation, true, 1, "es", "Buenos días.", 300, 1400),
        TextEvent::new(TextRole::Translation, true, 2, "es", "", 1500, 1500),
        TextEvent::new(
            TextRole::Translation,
            true,
            3,
            "es",
            "Línea con \"comillas\" --> y <etiquetas>\ny saltos.",
            1600,
            2600,
        ),
    ];
    for (i, e) in events.into_iter().enumerate() {
        if let Err(err) = h.text(e) {
            return Outcome::Fail(format!("on_text of event {i} failed: {err}"));
        }
    }
    match h.stop() {
        Ok(_) => Outcome::Pass,
        Err(e) => Outcome::Fail(format!("stop failed: {e}")),
    }
}

fn audio_budget(sink: SinkBox) -> Outcome {
    let mut h = match SinkHarness::start(sink) {
        Ok(h) => h,
        Err(e) => return Outcome::Fail(format!("start failed: {e}")),
    };
    let Some(format) = h.format else {
        let _ = h.stop();
        return Outcome::Skip("text-only sink".into());
    };
    let frames = format.sample_rate as usize / 50;
    let block: Vec<f32> = (0..frames * usize::from(format.channels)).map(|i| ((i as f32) * 0.01).sin() * 0.3).collect();
    let mut times = Vec::with_capacity(100);
    for _ in 0..100 {
        let t = Instant::now();
        if let Err(e) = h.audio(&block, "es") {
            return Outcome::Fail(format!("on_audio failed: {e}"));
        }
        times.push(t.elapsed());
    }
    if let Err(e) = h.stop() {
        return Outcome::Fail(format!("stop failed: {e}"));
    }
    times.sort();
    let median = times[times.len() / 2];
    if median > Duration::from_millis(5) {
        Outcome::Warn(format!("median on_audio took {:.2} ms for a 20 ms block", median.as_secs_f64() * 1e3))
    } else {
        Outcome::Pass
    }
}

fn prompt_answers(p: &mut PromptBox) -> Outcome {
    for round in ["first", "second"] {
        let prompt = tri!(p.prompt(PromptRequest::new("stage:es", "en", "es")), format!("{round} prompt"));
        if prompt.instructions().trim().is_empty() {
            return Outcome::Fail(format!("{round} prompt has empty instructions"));
        }
    }
    Outcome::Pass
}

fn other_thread(factory: &dyn Factory, config: &str, o: &Options) -> Outcome {
    let instance = match create(factory, config, o) {
        Ok(i) => i,
        Err(o) => return o,
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let outcome = match instance {
            Instance::Source(s) => start_stop_restart(s),
            Instance::Sink(s) => text_events(s),
            Instance::Prompt(mut p) => prompt_answers(&mut p),
        };
        let _ = tx.send(outcome);
    });
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| Outcome::Fail("calls from another thread did not finish within 10 s".into()))
}
