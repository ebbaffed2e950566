//! `tolk run` end to end: the real binary, real plugins, and for translated routes tolk's own
//! Realtime server (in-process in tolk, or in this test process when faults are injected).
//!
//! Translated audio comes from the deterministic test engine: each response is a 200 ms tone
//! whose pitch names the target language, then the input utterance sample for sample. So a
//! sink's recording can be split into (marker, utterance) pairs and checked against the input:
//! the right language, every utterance, in order, none twice.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use tolk_core::serve::{
    ServeOptions, Server, ServerHandle,
    engine::{goertzel, marker_hz, marker_samples},
    faults::Faults,
};
use tolk_tests::{fixtures, read_wav_i16, run_tolk, runs, signal, status, tolk, write, write_wav_i16};

/// `count` utterances of `speech_ms` (distinct signals) separated by `pause_ms` of silence,
/// after 300 ms of silence; returns (all samples, the utterances).
pub(crate) fn speech(count: usize, speech_ms: usize, pause_ms: usize) -> (Vec<i16>, Vec<Vec<i16>>) {
    let mut all = vec![0i16; 300 * 24];
    let mut utts = vec![];
    for i in 0..count {
        let u = signal(speech_ms * 24, i as u32 + 7, 6_000);
        all.extend_from_slice(&u);
        all.extend(std::iter::repeat_n(0, pause_ms * 24));
        utts.push(u);
    }
    (all, utts)
}

/// Checks a translated recording: (marker of `lang`, utterance) pairs; returns the indices of
/// the input utterances found, in order (a truncated one counts if it is a prefix).
fn utterances_in(path: &Path, lang: &str, others: &[&str], utts: &[Vec<i16>]) -> Vec<usize> {
    let (spec, samples) = read_wav_i16(path);
    assert_eq!((spec.sample_rate, spec.channels), (24_000, 1), "{}", path.display());
    let rs = runs(&samples, 240);
    let mut found = vec![];
    let mut i = 0;
    while i < rs.len() {
        let m = rs[i];
        assert!(
            (marker_samples() - 10..=marker_samples() + 10).contains(&m.len()),
            "{}: run {i} of {} samples is not a marker",
            path.display(),
            m.len()
        );
        let own = goertzel(m, 24_000, marker_hz(lang));
        assert!(own > 0.1, "{}: marker {i} is not {lang} ({own})", path.display());
        for o in others {
            let a = goertzel(m, 24_000, marker_hz(o));
            assert!(a < 0.03, "{}: marker {i} sounds like {o} too ({a}): cross-talk", path.display());
        }
        let u = rs.get(i + 1).unwrap_or_else(|| panic!("{}: marker {i} without an utterance", path.display()));
        let k = utts
            .iter()
            .position(|x| x.as_slice() == *u || (u.len() >= 2400 && x.starts_with(u)))
            .unwrap_or_else(|| panic!("{}: run {} ({} samples) is no input utterance", path.display(), i + 1, u.len()));
        found.push(k);
        i += 2;
    }
    found
}

pub(crate) fn floor_config(dir: &Path, input: &Path, extra: &str, sinks: &str, route_sinks: &[&str]) -> PathBuf {
    let list = route_sinks.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
    write(
        dir,
        "run.toml",
        &format!(
            "{extra}\n[[source]]\nid = \"stage\"\nplugin = \"tolk.wav\"\nlanguage = \"en\"\n[source.config]\npath = \"{}\"\nrealtime = false\n\n[[route]]\nsource = \"stage\"\nto = [\"floor\"]\nsinks = [{list}]\n{sinks}",
            input.display()
        ),
    )
}

pub(crate) fn wav_sink(id: &str, path: &str, extra: &str) -> String {
    format!("\n[[sink]]\nid = \"{id}\"\nplugin = \"tolk.wav\"\n[sink.config]\npath = \"{path}\"\n{extra}\n")
}

#[test]
fn floor_route_is_bit_exact_and_converts_per_sink() {
    let dir = tempfile::tempdir().unwrap();
    let input: Vec<i16> = signal(24_000 * 3 + 123, 1, 6_000);
    write_wav_i16(&dir.path().join("in.wav"), 24_000, 1, &input);
    let sinks = wav_sink("same", "out/same.wav", "")
        + &wav_sink("wide", "out/wide-{lang}.wav", "sample_rate = 48000\nchannels = 2");
    let config = floor_config(
        dir.path(),
        &dir.path().join("in.wav"),
        "[run]\ndelivery = \"lossless\"",
        &sinks,
        &["same", "wide"],
    );
    let r =
        run_tolk(&config, &["--json-status", "status.json", "--prometheus", "metrics.prom"], Duration::from_secs(60));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let (_, same) = read_wav_i16(&dir.path().join("out/same.wav"));
    assert!(same == input, "the floor is not bit-exact");
    let (spec, wide) = read_wav_i16(&dir.path().join("out/wide-floor.wav"));
    assert_eq!((spec.sample_rate, spec.channels), (48_000, 2));
    assert_eq!(wide.len(), input.len() * 4);
    let st = status(dir.path());
    assert_eq!(st["final"], true);
    assert_eq!(st["exit_status"], 0);
    assert_eq!(st["routes"][0]["route"], "stage→floor");
    let prom = std::fs::read_to_string(dir.path().join("metrics.prom")).unwrap();
    assert!(prom.contains("tolk_sink_dropped_seconds{sink=\"same\"} 0"), "{prom}");
}

#[test]
fn a_hung_sink_loses_only_its_own_audio() {
    let dir = tempfile::tempdir().unwrap();
    let input: Vec<i16> = signal(24_000 * 20, 2, 6_000);
    write_wav_i16(&dir.path().join("in.wav"), 24_000, 1, &input);
    let sinks = wav_sink("good", "out/good.wav", "")
        + "\n[[sink]]\nid = \"hung\"\nplugin = \"com.example.block-forever\"\n[sink.config]\nblock_after = 3\n";
    let extra = format!(
        "[plugins]\npath = \"{}\"\n[run]\ndelivery = \"lossless\"\nstall_timeout_ms = 200\nsink_buffer_ms = 1000\ndrain_timeout_ms = 1000",
        fixtures().display()
    );
    let config = floor_config(dir.path(), &dir.path().join("in.wav"), &extra, &sinks, &["good", "hung"]);
    let r = run_tolk(&config, &["--json-status", "status.json"], Duration::from_secs(60));
    // The hung sink cannot be closed: the run says so, after everything else finished.
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("sink \"hung\": did not finish: abandoned"), "{}", r.stderr);
    let (_, good) = read_wav_i16(&dir.path().join("out/good.wav"));
    assert!(good == input, "the good sink lost audio because of the hung one");
    let st = status(dir.path());
    let hung = st["sinks"].as_array().unwrap().iter().find(|s| s["sink"] == "hung").unwrap();
    assert_eq!(hung["state"], "abandoned");
    // Its lane dropped (and counted) instead of growing: memory stays bounded.
    assert!(hung["dropped_s"].as_f64().unwrap() > 15.0, "{hung}");
    assert!(hung["queued_s"].as_f64().unwrap() <= 1.1, "{hung}");
}

/// Two sources, each with a floor route: one into a sink that panics, one into a good sink.
fn panic_config(dir: &Path, policy: &str) -> PathBuf {
    let input: Vec<i16> = signal(24_000 * 4, 3, 6_000);
    write_wav_i16(&dir.join("in.wav"), 24_000, 1, &input);
    let mut c = format!("[plugins]\npath = \"{}\"\n[run]\ndelivery = \"lossless\"\n", fixtures().display());
    for id in ["a", "b"] {
        c += &format!(
            "\n[[source]]\nid = \"{id}\"\nplugin = \"tolk.wav\"\nlanguage = \"en\"\n[source.config]\npath = \"in.wav\"\nrealtime = false\n"
        );
    }
    c += &format!(
        "\n[[route]]\nsource = \"a\"\nto = [\"floor\"]\nsinks = [\"bad\"]\non_plugin_failure = \"{policy}\"\n"
    );
    c += "\n[[route]]\nsource = \"b\"\nto = [\"floor\"]\nsinks = [\"good\"]\n";
    c += "\n[[sink]]\nid = \"bad\"\nplugin = \"com.example.panic-on-write\"\n[sink.config]\npanic_after = 1\n";
    c += &wav_sink("good", "out/good.wav", "");
    write(dir, "run.toml", &c)
}

#[test]
fn a_panicking_sink_stops_its_route_and_the_rest_runs_on() {
    let dir = tempfile::tempdir().unwrap();
    let config = panic_config(dir.path(), "stop-route");
    let r = run_tolk(&config, &["--json-status", "status.json"], Duration::from_secs(60));
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("sink \"bad\"") && r.stderr.contains("panicked"), "{}", r.stderr);
    assert!(r.stderr.contains("stopped route a→floor"), "{}", r.stderr);
    let (_, good) = read_wav_i16(&dir.path().join("out/good.wav"));
    assert_eq!(good.len(), 24_000 * 4);
    let st = status(dir.path());
    assert_eq!(st["routes"][0]["state"], "stopped");
    assert_eq!(st["routes"][1]["state"], "done");
}

#[test]
fn a_panicking_sink_is_restarted_then_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = panic_config(dir.path(), "restart");
    let r = run_tolk(&config, &["--json-status", "status.json"], Duration::from_secs(60));
    let st = status(dir.path());
    let bad = st["sinks"].as_array().unwrap().iter().find(|s| s["sink"] == "bad").unwrap().clone();
    // Each new instance takes 1 block and panics on the 2nd (a file source read faster than real
    // time reaches the sinks in chunks of up to 200 ms); after 5 restarts the route stops.
    assert_eq!(bad["restarts"], 5, "{bad}\n{}", r.stderr);
    assert_eq!(bad["failures"], 6, "{bad}");
    assert_eq!(r.code, 1);
    // The restarts back off (250 ms, doubled each time), and the summary counts them.
    for (n, ms) in [(1, 250), (2, 500), (5, 4000)] {
        assert!(r.stderr.contains(&format!("restarting it in {ms} ms ({n}/5)")), "{}", r.stderr);
    }
    assert!(r.stderr.contains("sink \"bad\" failed and was restarted 5 times (latest failure: "), "{}", r.stderr);
    assert!(r.stdout.contains("    lost at sink \"bad\" (stopped): "), "{}", r.stdout);
    let (_, good) = read_wav_i16(&dir.path().join("out/good.wav"));
    assert_eq!(good.len(), 24_000 * 4);
}

#[test]
fn a_panicking_sink_with_exit_policy_stops_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = panic_config(dir.path(), "exit");
    let r = run_tolk(&config, &[], Duration::from_secs(60));
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("on_plugin_failure = \"exit\": stopping the run"), "{}", r.stderr);
}

const LANGS: [&str; 8] = ["es", "fr", "de", "it", "pt", "nl", "pl", "ru"];

/// A translated config: `to` languages, one WAV sink per language, engine at `url` (or tolk's
/// own server when `None`).
pub(crate) fn translated_config(dir: &Path, to: &[&str], url: Option<&str>, realtime: bool, run: &str) -> PathBuf {
    let engine = match url {
        Some(u) => format!("[engine]\nprovider = \"local\"\nurl = \"{u}\"\n"),
        None => "[engine]\nprovider = \"local\"\n".into(),
    };
    let to = to.iter().map(|l| format!("\"{l}\"")).collect::<Vec<_>>().join(", ");
    write(
        dir,
        "run.toml",
        &format!(
            "{engine}\n[run]\n{run}\n\n[[source]]\nid = \"stage\"\nplugin = \"tolk.wav\"\nlanguage = \"en\"\n[source.config]\npath = \"in.wav\"\nrealtime = {realtime}\n\n[[route]]\nsource = \"stage\"\nto = [{to}]\nsinks = [\"rec\", \"captions\"]\n\n[[sink]]\nid = \"rec\"\nplugin = \"tolk.wav\"\n[sink.config]\npath = \"out/{{lang}}.wav\"\n\n[[sink]]\nid = \"captions\"\nplugin = \"tolk.captions\"\n[sink.config]\njsonl = \"out/{{lang}}.jsonl\"\n"
        ),
    )
}

/// tolk's server in this process, with `faults` and `max_session`.
fn server(faults: Faults, max_session: Option<Duration>) -> (tokio::runtime::Runtime, ServerHandle, String) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let mut o = ServeOptions { faults, ..ServeOptions::default() };
    if let Some(m) = max_session {
        o.max_session = m;
    }
    let handle = rt.block_on(async { Server::bind(o).await.unwrap().spawn() });
    let url = format!("{}/v1/realtime", handle.url());
    (rt, handle, url)
}

#[test]
fn eight_routes_each_get_only_their_own_translation_in_order_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    let (input, utts) = speech(6, 700, 700);
    write_wav_i16(&dir.path().join("in.wav"), 24_000, 1, &input);
    let config = translated_config(dir.path(), &LANGS, None, false, "delivery = \"lossless\"");
    let r = run_tolk(&config, &["--json-status", "status.json"], Duration::from_secs(90));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    for lang in LANGS {
        let others: Vec<&str> = LANGS.iter().copied().filter(|l| *l != lang).collect();
        let found = utterances_in(&dir.path().join(format!("out/{lang}.wav")), lang, &others, &utts);
        assert_eq!(found, (0..utts.len()).collect::<Vec<_>>(), "{lang}: utterances out of order or missing");
        let captions = std::fs::read_to_string(dir.path().join(format!("out/{lang}.jsonl"))).unwrap();
        assert_eq!(captions.lines().count(), utts.len(), "{captions}");
        assert!(captions.lines().all(|l| l.contains(&format!("\"[{lang}] utterance"))), "{captions}");
    }
    let st = status(dir.path());
    for route in st["routes"].as_array().unwrap() {
        assert_eq!(route["responses"], utts.len() as u64, "{route}");
        assert!(route["cost_usd"].as_f64().unwrap() > 0.0);
    }
    assert!(r.stdout.contains("stage→ru"), "{}", r.stdout);
}

#[test]
fn dropped_sockets_lose_no_input_and_repeat_none() {
    let dir = tempfile::tempdir().unwrap();
    let (input, utts) = speech(8, 600, 700);
    write_wav_i16(&dir.path().join("in.wav"), 24_000, 1, &input);
    let faults = Faults { close_after: Some(Duration::from_millis(2500)), ..Faults::default() };
    let (_rt, _server, url) = server(faults, None);
    let config =
        translated_config(dir.path(), &["es", "fr"], Some(&url), true, "reconnect_min_ms = 50\nreconnect_max_ms = 200");
    let r = run_tolk(&config, &["--json-status", "status.json"], Duration::from_secs(60));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let st = status(dir.path());
    for (lang, route) in ["es", "fr"].iter().zip(st["routes"].as_array().unwrap()) {
        assert!(route["reconnects"].as_u64().unwrap() >= 2, "{route}");
        // Every input sample went to a session once (replays are counted apart).
        assert_eq!(route["input_sent_frames"].as_u64().unwrap(), input.len() as u64, "{route}");
        assert_eq!(route["input_gap_s"], 0.0, "{route}");
        let found = utterances_in(&dir.path().join(format!("out/{lang}.wav")), lang, &[], &utts);
        let mut sorted = found.clone();
        sorted.dedup();
        assert_eq!(sorted, found, "{lang}: an utterance was translated twice: {found:?}");
        assert!(found.windows(2).all(|w| w[0] < w[1]), "{lang}: out of order: {found:?}");
        assert!(found.len() >= utts.len() - 1, "{lang}: utterances lost: {found:?}");
    }
}

#[test]
fn sessions_rotate_before_expiry_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let (input, utts) = speech(8, 600, 700);
    write_wav_i16(&dir.path().join("in.wav"), 24_000, 1, &input);
    let (_rt, _server, url) = server(Faults::default(), Some(Duration::from_secs(5)));
    let config = translated_config(dir.path(), &["de"], Some(&url), true, "rotate_margin_s = 3");
    let r = run_tolk(&config, &["--json-status", "status.json"], Duration::from_secs(60));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let st = status(dir.path());
    let route = &st["routes"][0];
    assert!(route["rotations"].as_u64().unwrap() >= 2, "{route}");
    assert_eq!(route["reconnects"], 0, "{route}");
    let found = utterances_in(&dir.path().join("out/de.wav"), "de", &[], &utts);
    assert_eq!(found, (0..utts.len()).collect::<Vec<_>>(), "gap or duplicate across rotations");
}

#[test]
fn old_turns_are_deleted_so_input_tokens_stay_flat() {
    let max_tokens = |n: usize| {
        let dir = tempfile::tempdir().unwrap();
        let (input, _) = speech(n, 500, 600);
        write_wav_i16(&dir.path().join("in.wav"), 24_000, 1, &input);
        let config = translated_config(dir.path(), &["es"], None, false, "delivery = \"lossless\"\nkeep_turns = 2");
        let r = run_tolk(&config, &["--json-status", "status.json"], Duration::from_secs(90));
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        let st = status(dir.path());
        let route = st["routes"][0].clone();
        assert_eq!(route["responses"], n as u64, "{route}");
        route["max_input_tokens"].as_u64().unwrap()
    };
    // A long event (accelerated: read as fast as the engine takes it) re-reads no more
    // context per turn than a short one that has reached its steady state. The peak can be a
    // turn or two above the steady state when a deletion reaches the server just after the
    // next response started (timing, on a loaded machine); without deletion 60 turns would
    // re-read four times what 15 do, so half again is still a clear line between the two.
    let short = max_tokens(15);
    let long = max_tokens(60);
    assert!(long <= short + short / 2, "input tokens per turn grew from {short} to {long}");
}

#[test]
fn reaching_the_budget_stops_new_responses() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = speech(20, 600, 700);
    write_wav_i16(&dir.path().join("in.wav"), 24_000, 1, &input);
    let config = translated_config(dir.path(), &["es"], None, false, "delivery = \"lossless\"\nbudget_usd = 0.02");
    let r = run_tolk(&config, &["--json-status", "status.json"], Duration::from_secs(60));
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("budget of $0.02 reached"), "{}", r.stderr);
    let st = status(dir.path());
    let route = &st["routes"][0];
    let responses = route["responses"].as_u64().unwrap();
    assert!((1..20).contains(&responses), "{route}");
    assert_eq!(route["state"], "done");
}

#[test]
fn sigterm_ends_the_run_gracefully_with_valid_files() {
    let dir = tempfile::tempdir().unwrap();
    let input: Vec<i16> = signal(24_000 * 30, 4, 6_000);
    write_wav_i16(&dir.path().join("in.wav"), 24_000, 1, &input);
    let text = std::fs::read_to_string(floor_config(
        dir.path(),
        &dir.path().join("in.wav"),
        "",
        &wav_sink("rec", "out/rec.wav", ""),
        &["rec"],
    ))
    .unwrap()
    .replace("realtime = false", "realtime = true");
    let config = write(dir.path(), "run.toml", &text);
    let mut child = tolk()
        .args(["run", "--no-status"])
        .arg(&config)
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let killed = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(killed.success());
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "tolk did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    // The recording is a valid WAV holding the start of the input, bit for bit.
    let (_, rec) = read_wav_i16(&dir.path().join("out/rec.wav"));
    assert!(rec.len() >= 24_000 / 2 && rec.len() < input.len(), "{} samples", rec.len());
    assert!(input.starts_with(&rec));
}

#[test]
fn a_speaker_who_never_pauses_is_cut_into_bounded_segments() {
    let dir = tempfile::tempdir().unwrap();
    // 12 s of speech without a pause, then silence.
    let mut input = signal(24_000 * 12, 5, 6_000);
    input.extend(std::iter::repeat_n(0, 24_000));
    write_wav_i16(&dir.path().join("in.wav"), 24_000, 1, &input);
    let config = translated_config(dir.path(), &["fr"], None, false, "delivery = \"lossless\"\nmax_segment_ms = 4000");
    let r = run_tolk(&config, &["--json-status", "status.json"], Duration::from_secs(60));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let st = status(dir.path());
    assert!(st["routes"][0]["segments_cut"].as_u64().unwrap() >= 2, "{}", st["routes"][0]);
    // The test engine's transcripts give each segment's length: all bounded, none lost.
    let captions = std::fs::read_to_string(dir.path().join("out/fr.jsonl")).unwrap();
    let secs: Vec<f64> = captions
        .lines()
        .map(|l| {
            let text = l.split("utterance ").nth(1).unwrap();
            text.split(": ").nth(1).unwrap().split(" s").next().unwrap().parse().unwrap()
        })
        .collect();
    assert!(secs.len() >= 3, "{captions}");
    assert!(secs.iter().all(|s| *s <= 4.05), "a segment is longer than max_segment_ms: {secs:?}");
    let total: f64 = secs.iter().sum();
    assert!((12.0..=12.9).contains(&total), "segments cover {total} s of 12 s of speech: {secs:?}");
}

/// Samples the header of the WAV at `path` declares (what a player reads after a crash); 0
/// while it has no valid header yet.
fn wav_header_samples(path: &Path) -> u64 {
    match hound::WavReader::open(path) {
        Ok(r) => u64::from(r.len()),
        Err(_) => 0,
    }
}

/// The `end_ms` of the last complete translation row of a captions JSONL file (0 if none).
fn last_caption_end_ms(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["role"] == "translation" && v["final"] == true)
        .filter_map(|v| v["end_ms"].as_u64())
        .max()
        .unwrap_or(0)
}

/// Issue 8: every sink is flushed at least every second of wall time and every second of
/// stream, and in lossless delivery no sink (the text-only captions sink included) is let
/// fall more than its buffer (`sink_buffer_ms`) behind the route, so a faster-than-real-time
/// run killed with SIGKILL leaves captions that reach as far as its recording, give or take
/// the buffer, the flush bound (1 s), the recording's own `flush_ms` (0.5 s) and the one
/// utterance in flight (a caption is written when its utterance has played).
#[test]
fn a_fast_run_killed_with_sigkill_leaves_captions_as_far_as_its_recording() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = speech(150, 700, 500);
    write_wav_i16(&dir.path().join("in.wav"), 24_000, 1, &input);
    let config = translated_config(dir.path(), &["es"], None, false, "delivery = \"lossless\"\nsink_buffer_ms = 1000");
    let mut child = tolk()
        .args(["run", "--no-status"])
        .arg(&config)
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let wav = dir.path().join("out/es.wav");
    let started = Instant::now();
    // Mid-way: once the recording holds 40 s (of 180 s), kill it without warning.
    while wav_header_samples(&wav) < 40 * 24_000 {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it was killed");
        assert!(started.elapsed() < Duration::from_secs(120), "no 40 s of recording after 120 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let wav_ms = wav_header_samples(&wav) / 24;
    let captions_ms = last_caption_end_ms(&dir.path().join("out/es.jsonl"));
    // The buffer (1 s), the flush bound (1 s), the WAV header's own interval (500 ms), and one
    // utterance in flight (a 200 ms marker, 700 ms of speech, 500 ms of pause). A 10 s flush
    // interval, as before the bound, left them 9.6 s apart; a captions lane without a bound in
    // stream time let a CPU-starved captions thread trail the recording by 8 s.
    let bound = 1_000 + 1_000 + 500 + 1_400;
    assert!(
        wav_ms.abs_diff(captions_ms) <= bound,
        "after SIGKILL the recording covers {wav_ms} ms and the captions {captions_ms} ms (bound {bound} ms)"
    );
}

/// tolk's server in this process with `options`; returns its GA URL.
fn server_with(options: ServeOptions) -> (tokio::runtime::Runtime, ServerHandle, String) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let handle = rt.block_on(async { Server::bind(options).await.unwrap().spawn() });
    let url = format!("{}/v1/realtime", handle.url());
    (rt, handle, url)
}

/// Runs `tolk run -vv` on `config` with the key variable `TOLK_TEST_KEY` set to `key`.
fn run_with_key(config: &Path, key: &str, extra: &[&str]) -> tolk_tests::Run {
    let mut cmd = tolk();
    cmd.args(["run", "--no-status", "-vv"]).arg(config).args(extra).env("TOLK_TEST_KEY", key);
    tolk_tests::run_in(cmd, config.parent().unwrap(), Duration::from_secs(60), |_| {})
}

/// Every file under `dir` (recursively) that contains `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut hits = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            hits.extend(files_containing(&p, needle));
        } else if std::fs::read(&p).unwrap().windows(needle.len()).any(|w| w == needle.as_bytes()) {
            hits.push(p);
        }
    }
    hits
}

// Issue 8: a refused key stops at once with the service's message, not 8 attempts over 31 s.
#[test]
fn a_refused_key_stops_the_route_at_once_with_the_services_message() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = speech(2, 500, 600);
    write_wav_i16(&dir.path().join("in.wav"), 24_000, 1, &input);
    let (_rt, server, url) =
        server_with(ServeOptions { token: Some("right-key-0123456789".into()), ..ServeOptions::default() });
    let config = translated_config(dir.path(), &["es", "fr"], Some(&url), true, "");
    let text =
        std::fs::read_to_string(&config).unwrap().replace("[engine]\n", "[engine]\napi_key_env = \"TOLK_TEST_KEY\"\n");
    let config = write(dir.path(), "run.toml", &text);
    let key = "sk-wrong-key-abcdef0123456789";
    let r = run_with_key(&config, key, &[]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    // One handshake per route: nothing was retried.
    assert_eq!(server.stats().refused.load(std::sync::atomic::Ordering::Relaxed), 2, "{}", r.stderr);
    assert!(r.stderr.contains("HTTP 401 Unauthorized: Incorrect API key provided"), "{}", r.stderr);
    // Issue 8: the key appears nowhere, even at -vv (the WebSocket library traces its request).
    assert_eq!(files_containing(dir.path(), key), Vec::<PathBuf>::new(), "{}", r.stderr);
    assert!(r.stderr.contains("<redacted>"), "the request trace is expected at -vv:\n{}", r.stderr);
}

// Issue 8: the key never appears in any output or written file at the highest verbosity, on a
// run that works (every request of every session carries it).
#[test]
fn the_api_key_appears_nowhere_at_the_highest_verbosity() {
    let dir = tempfile::tempdir().unwrap();
    let (input, utts) = speech(3, 500, 600);
    write_wav_i16(&dir.path().join("in.wav"), 24_000, 1, &input);
    let key = "sk-right-key-abcdef0123456789";
    let (_rt, _server, url) = server_with(ServeOptions { token: Some(key.into()), ..ServeOptions::default() });
    let config = translated_config(dir.path(), &["es"], Some(&url), false, "delivery = \"lossless\"");
    let text =
        std::fs::read_to_string(&config).unwrap().replace("[engine]\n", "[engine]\napi_key_env = \"TOLK_TEST_KEY\"\n");
    let config = write(dir.path(), "run.toml", &text);
    let r = run_with_key(&config, key, &["--json-status", "status.json", "--prometheus", "metrics.prom"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(utterances_in(&dir.path().join("out/es.wav"), "es", &[], &utts), vec![0, 1, 2]);
    assert!(r.stderr.lines().count() > 100, "-vv is expected to trace: {} lines", r.stderr.lines().count());
    assert_eq!(files_containing(dir.path(), key), Vec::<PathBuf>::new());
}

// Issue 9: a session setup the service would reject (`invalid_value`: the legacy dialect has no
// voice "marin") used to be retried 8 times over ~30 s. The shared vocabulary now refuses it at
// the config check, before any session is opened; a server that rejects a setup anyway stops
// the route at once (`RealtimeError::is_retryable`, unit-tested in `realtime::error`).
#[test]
fn a_setup_the_service_would_reject_is_refused_before_any_session() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = speech(2, 500, 600);
    write_wav_i16(&dir.path().join("in.wav"), 24_000, 1, &input);
    let (_rt, server, url) = server_with(ServeOptions::default());
    let config = translated_config(dir.path(), &["es"], Some(&url), true, "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[engine]\n", "[engine]\nprotocol = \"legacy\"\n")
        .replace("to = [\"es\"]\n", "to = [\"es\"]\nvoice = \"marin\"\n");
    let config = write(dir.path(), "run.toml", &text);
    let r = run_tolk(&config, &[], Duration::from_secs(60));
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        server.stats().total.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "a session was opened:\n{}",
        r.stderr
    );
    assert!(r.stderr.contains("voice \"marin\" is not part of the legacy protocol"), "{}", r.stderr);
}

/// The utterance numbers and lengths (s) the test engine names in a caption file, in order.
fn captioned_utterances(path: &Path) -> Vec<(u64, f64)> {
    let captions = std::fs::read_to_string(path).unwrap();
    captions
        .lines()
        .map(|l| {
            let text = l.split("utterance ").nth(1).unwrap_or_else(|| panic!("{l}"));
            let (n, rest) = text.split_once(": ").unwrap();
            (n.parse().unwrap(), rest.split(" s").next().unwrap().parse().unwrap())
        })
        .collect()
}

// Issue 8: a response asked for after a client cut answers the cut segment, whatever else the
// server has committed by the time it runs. Offline input runs ahead of the server, so a cut
// is often made while the server is still committing the utterance before it; its
// `response.create` then waits behind that answer and the next utterance's.
#[test]
fn every_cut_segment_is_answered_once_whatever_is_latest_on_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = vec![0i16; 300 * 24];
    let mut speech_s = 0.0;
    for i in 0..6u32 {
        for (ms, seed) in [(700, 100 + i), (5200, 200 + i)] {
            input.extend(signal(ms * 24, seed, 6_000));
            input.extend(std::iter::repeat_n(0, 900 * 24));
            speech_s += ms as f64 / 1000.0;
        }
    }
    write_wav_i16(&dir.path().join("in.wav"), 24_000, 1, &input);
    let (_rt, server, url) = server(Faults::default(), None);
    let config = translated_config(
        dir.path(),
        &["es", "fr"],
        Some(&url),
        false,
        "delivery = \"lossless\"\nmax_segment_ms = 3000",
    );
    let r = run_tolk(&config, &["--json-status", "status.json"], Duration::from_secs(120));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let st = status(dir.path());
    for (lang, route) in ["es", "fr"].iter().zip(st["routes"].as_array().unwrap()) {
        assert!(route["segments_cut"].as_u64().unwrap() >= 6, "{route}");
        let found = captioned_utterances(&dir.path().join(format!("out/{lang}.jsonl")));
        let numbers: Vec<u64> = found.iter().map(|(n, _)| *n).collect();
        // Each utterance the server committed is answered once, in order: none answered twice,
        // none skipped (the server numbers its user items 1, 2, 3, …).
        assert_eq!(numbers, (1..=numbers.len() as u64).collect::<Vec<_>>(), "{lang}: {found:?}");
        let total: f64 = found.iter().map(|(_, s)| s).sum();
        // Every second of speech answered once: each item holds its speech plus at most the
        // server's padding (300 ms before, 500 ms of silence after).
        assert!(
            total >= speech_s && total <= speech_s + 0.85 * found.len() as f64,
            "{lang}: {total} s for {speech_s} s of speech: {found:?}"
        );
    }
    drop(server);
}

/// What one run of the keynote (`configs/samples/keynote-en.wav`, into `es` and `de`) produced
/// per language: final translation captions, and samples of translated speech (non-silent).
#[derive(Debug, PartialEq)]
struct Produced {
    lang: &'static str,
    utterances: usize,
    speech_samples: usize,
}

/// Runs the keynote through tolk against a server in this process with `faults` (response
/// audio at `speed` × real time), reading it live (`realtime`) or as fast as possible
/// (lossless), with extra `[engine]` and `[run]` keys. Returns the run, its status and what
/// it produced.
fn keynote(
    faults: Faults,
    speed: f64,
    realtime: bool,
    engine: &str,
    run: &str,
) -> (tolk_tests::Run, serde_json::Value, Vec<Produced>, tempfile::TempDir) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let o = ServeOptions { faults, engine_speed: speed, ..ServeOptions::default() };
    let server = rt.block_on(async { Server::bind(o).await.unwrap().spawn() });
    let dir = tempfile::tempdir().unwrap();
    let wav = tolk_tests::root().join("configs/samples/keynote-en.wav");
    let delivery = if realtime { "live" } else { "lossless" };
    let config = write(
        dir.path(),
        "run.toml",
        &format!(
            "[engine]\nprovider = \"local\"\nurl = \"{}/v1/realtime\"\nsilence_duration_ms = 200\n{engine}\n\n[run]\ndelivery = \"{delivery}\"\n{run}\n\n[[source]]\nid = \"stage\"\nplugin = \"tolk.wav\"\nlanguage = \"en\"\n[source.config]\npath = \"{}\"\nrealtime = {realtime}\n\n[[route]]\nsource = \"stage\"\nto = [\"es\", \"de\"]\nsinks = [\"rec\", \"captions\"]\n\n[[sink]]\nid = \"rec\"\nplugin = \"tolk.wav\"\n[sink.config]\npath = \"out/{{lang}}.wav\"\n\n[[sink]]\nid = \"captions\"\nplugin = \"tolk.captions\"\n[sink.config]\njsonl = \"out/{{lang}}.jsonl\"\n",
            server.url(),
            wav.display()
        ),
    );
    let r = run_tolk(&config, &["--json-status", "status.json"], Duration::from_secs(180));
    drop(server);
    let produced = ["es", "de"]
        .into_iter()
        .map(|lang| {
            let captions = std::fs::read_to_string(dir.path().join(format!("out/{lang}.jsonl"))).unwrap_or_default();
            let utterances = captions
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .filter(|c| c["role"] == "translation" && c["final"] == true)
                .count();
            let (_, samples) = read_wav_i16(&dir.path().join(format!("out/{lang}.wav")));
            Produced { lang, utterances, speech_samples: samples.iter().filter(|&&s| s != 0).count() }
        })
        .collect();
    let st = status(dir.path());
    (r, st, produced, dir)
}

/// The keynote with `faults` and without, at the same time: what each produced.
fn keynote_against_fault_free(
    faults: Faults,
    speed: f64,
    realtime: bool,
    engine: &str,
) -> (Vec<Produced>, (tolk_tests::Run, serde_json::Value, Vec<Produced>, tempfile::TempDir)) {
    let engine2 = engine.to_string();
    let clean = std::thread::spawn(move || keynote(Faults::default(), speed, realtime, &engine2, "").2);
    let faulty = keynote(faults, speed, realtime, engine, "");
    (clean.join().unwrap(), faulty)
}

#[test]
fn a_stalled_session_is_detected_and_its_input_answered() {
    // Every session stops sending 8 s after it starts (it keeps reading and answers pings).
    let faults = Faults { stall_after: Some(Duration::from_secs(8)), ..Faults::default() };
    let (clean, (r, st, produced, _dir)) =
        keynote_against_fault_free(faults, 10.0, true, "event_timeout_ms = 2000\nping_interval_ms = 500");
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(produced, clean, "the stalled run lost or doubled output\n{}\n{}", r.stdout, r.stderr);
    for route in st["routes"].as_array().unwrap() {
        assert!(route["stalls"].as_u64().unwrap() >= 1, "{route}");
        assert_eq!(route["lost"], serde_json::Value::Null, "{route}");
    }
    // Warned about once per stall, not once per frame.
    assert!(r.stderr.matches("stalled").count() <= 2 * st["routes"][0]["stalls"].as_u64().unwrap() as usize + 2);
}

#[test]
fn a_drop_during_a_response_plays_the_rest_of_it_once() {
    // Response audio comes at 4 × real time, so the drops (5 s into each session live, 3 s
    // into each lossless) land inside responses, which still finish between drops.
    for (realtime, close_after) in [(true, 5000), (false, 3000)] {
        let faults = Faults { close_after: Some(Duration::from_millis(close_after)), ..Faults::default() };
        let (clean, (r, st, produced, _dir)) = keynote_against_fault_free(faults, 4.0, realtime, "");
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        assert_eq!(produced, clean, "realtime {realtime}: the run with drops lost or doubled output\n{}", r.stdout);
        let routes = st["routes"].as_array().unwrap();
        // (Whether a drop lands inside a response depends on timing: `responses_resumed` says;
        // the output must equal the fault-free run's either way.)
        assert!(routes.iter().all(|r| r["reconnects"].as_u64().unwrap() >= 1), "{routes:?}");
        assert!(routes.iter().all(|r| r["lost"].is_null()), "{routes:?}");
    }
}

#[test]
fn a_run_that_lost_utterances_says_so_and_fails() {
    // The session stalls and the stall is not detected in time: the utterances after it are
    // never answered.
    let faults = Faults { stall_after: Some(Duration::from_secs(8)), ..Faults::default() };
    let (r, st, produced, _dir) = keynote(faults, 10.0, true, "event_timeout_ms = 600000", "drain_timeout_ms = 2000");
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(produced.iter().all(|p| p.utterances < 6), "{produced:?}");
    for route in st["routes"].as_array().unwrap() {
        let lost = route["lost"].as_str().unwrap_or_else(|| panic!("nothing reported lost: {route}"));
        assert!(lost.contains("not answered"), "{lost}");
        assert!(route["utterances_unanswered"].as_u64().unwrap() >= 1, "{route}");
        let name = route["route"].as_str().unwrap();
        assert!(r.stdout.contains("LOST:"), "{}", r.stdout);
        assert!(r.stderr.contains(&format!("route {name}: lost")), "{}", r.stderr);
    }
    assert_eq!(st["exit_status"], 1, "{st}");
}

/// Rows of a captions JSONL file: (role, start_ms, end_ms) of every final.
fn caption_rows(path: &Path) -> Vec<(String, u64, u64)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["final"] == true)
        .map(|v| {
            (v["role"].as_str().unwrap().to_string(), v["start_ms"].as_u64().unwrap(), v["end_ms"].as_u64().unwrap())
        })
        .collect()
}

/// Runs `input` (24 kHz mono) into French with captions of both roles (`delivery` etc. in
/// `run`); returns the sample where the recording first holds sound, and the caption rows.
fn run_into_french(dir: &Path, input: &[i16], realtime: bool, run: &str) -> (usize, Vec<(String, u64, u64)>) {
    write_wav_i16(&dir.join("in.wav"), 24_000, 1, input);
    let config = translated_config(dir, &["fr"], None, realtime, run);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("jsonl = ", "role = \"both\"\njsonl = ")).unwrap();
    let r = run_tolk(&config, &[], Duration::from_secs(60));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let (_, rec) = read_wav_i16(&dir.join("out/fr.wav"));
    let first = rec.iter().position(|s| s.unsigned_abs() > 500).expect("the recording holds a translation");
    (first, caption_rows(&dir.join("out/fr.jsonl")))
}

/// Issue 8, timing on the run's clock: a source silent for 30 s before it speaks leaves those
/// 30 s in the recording and the captions (the translation sits where the speech was), and
/// a segment cut by `max_segment_ms` reaches the sinks with a real span, not `start == end`.
#[test]
fn outputs_sit_on_the_runs_clock_after_a_long_silence_and_across_cuts() {
    let dir = tempfile::tempdir().unwrap();
    // 30 s of silence, 8 s of speech without a pause (cut at 3 s), a pause, 1 s more speech.
    let mut input = vec![0i16; 30 * 24_000];
    input.extend(signal(8 * 24_000, 5, 6_000));
    input.extend(std::iter::repeat_n(0, 24_000));
    input.extend(signal(24_000, 9, 6_000));
    input.extend(std::iter::repeat_n(0, 24_000));
    let (first, rows) = run_into_french(dir.path(), &input, false, "delivery = \"lossless\"\nmax_segment_ms = 3000");
    // The recording: silence until the speech began, 30 s in.
    assert!(
        first >= 30 * 24_000,
        "the translation starts {} ms into the recording, before the speech (30 s)",
        first / 24
    );
    assert!(first < 34 * 24_000, "the translation starts {} ms into the recording, long after the speech", first / 24);
    // The captions: every final spans time, on the run's clock.
    for role in ["source", "translation"] {
        let of: Vec<_> = rows.iter().filter(|r| r.0 == role).collect();
        assert!(of.len() >= 3, "{role}: {rows:?}");
        // (The speech detector keeps 300 ms before the speech it detects.)
        assert!(of.iter().all(|r| r.1 >= 29_700), "{role} captions before the speech began: {rows:?}");
        assert!(of.iter().all(|r| r.2 > r.1), "{role} captions with start_ms == end_ms: {rows:?}");
        assert!(of.windows(2).all(|w| w[1].1 >= w[0].1), "{role} captions out of order: {rows:?}");
    }
    // Source transcripts sit where the speech was: the cut segments of the 8 s spoken (from
    // 30 s, with the detector's 300 ms before it and its 500 ms of silence after) follow each
    // other without gap or overlap, and the last utterance (39-40 s) is one row of its own. The
    // silence tolk commits at the end of the input is not speech: no row.
    let source: Vec<(u64, u64)> = rows.iter().filter(|r| r.0 == "source").map(|r| (r.1, r.2)).collect();
    let (cut, last) = source.split_at(source.len() - 1);
    assert!(cut.len() >= 3, "8 s of speech cut at 3 s: {rows:?}");
    assert!((29_700..30_000).contains(&cut[0].0), "the first segment starts at {} ms: {rows:?}", cut[0].0);
    assert!(cut.windows(2).all(|w| w[1].0 == w[0].1), "the cut segments leave gaps or overlap: {rows:?}");
    assert!((38_000..=38_600).contains(&cut[cut.len() - 1].1), "the cut segments end at {:?}: {rows:?}", cut.last());
    assert!(last[0].0 >= 38_600 && last[0].1 <= 40_600, "the last utterance sits at {:?}: {rows:?}", last[0]);
}

/// Issue 8: a live run's outputs sit where they happened too: a source silent for 4 s, read
/// in real time, leaves those 4 s in the recording and the captions.
#[test]
fn a_live_runs_outputs_sit_where_they_happened() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = vec![0i16; 4 * 24_000];
    input.extend(signal(24_000, 5, 6_000));
    input.extend(std::iter::repeat_n(0, 24_000));
    let (first, rows) = run_into_french(dir.path(), &input, true, "");
    assert!(
        first >= 4 * 24_000,
        "the translation starts {} ms into the recording, before the speech (4 s)",
        first / 24
    );
    assert!(rows.iter().any(|r| r.0 == "source") && rows.iter().any(|r| r.0 == "translation"), "{rows:?}");
    assert!(rows.iter().all(|r| r.1 >= 3_700 && r.2 > r.1), "captions before the speech or without a span: {rows:?}");
}
