//! Issue 4's remaining router paths, end to end with the real `tolk` binary: relay routes (a
//! rare language interpreted through a pivot language), the other engine paths (Translation
//! API, legacy protocol, Azure path, conversation mode) against tolk's own server, and memory
//! that stays flat over a long accelerated event.
//!
//! The test engine answers each utterance with a 200 ms tone naming the target language, then
//! the utterance itself; so a relay's recording holds, per utterance, its own marker, then the
//! pivot's marker, then the source utterance, sample for sample.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use tolk_core::serve::{
    ServeOptions, Server, ServerHandle,
    engine::{goertzel, marker_hz, marker_samples},
};
use tolk_tests::{Run, read_wav_i16, run_in, runs, signal, status, tolk, write, write_wav_i16};

/// A finished `tolk run`, with the peak resident memory seen while it ran.
struct Finished {
    run: Run,
    /// Largest `VmHWM` (else `VmRSS`) read from /proc while it ran, in kB.
    peak_kb: u64,
}

/// Runs `tolk run CONFIG --json-status status.json` with `env`, killing it after `limit`.
fn run_tolk(config: &Path, env: &[(&str, &str)], limit: Duration) -> Finished {
    let mut cmd = tolk();
    cmd.args(["run", "--no-status", "--json-status", "status.json"]).arg(config).envs(env.iter().copied());
    let mut peak_kb = 0;
    let run = run_in(cmd, config.parent().unwrap(), limit, |pid| {
        if let Some(kb) = peak_memory_kb(pid) {
            peak_kb = peak_kb.max(kb);
        }
    });
    Finished { run, peak_kb }
}

/// The process's peak resident set (`VmHWM`, else `VmRSS`) in kB, while it is alive.
fn peak_memory_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    field("VmHWM:").or_else(|| field("VmRSS:"))
}

/// `count` utterances of `speech_ms` separated by `pause_ms` of silence, after 300 ms of
/// silence; writes `in.wav` into `dir` and returns the utterances.
fn speech(dir: &Path, count: usize, speech_ms: usize, pause_ms: usize) -> Vec<Vec<i16>> {
    let mut all = vec![0i16; 300 * 24];
    let mut utts = vec![];
    for i in 0..count {
        let u = signal(speech_ms * 24, i as u32 + 11, 6_000);
        all.extend_from_slice(&u);
        all.extend(std::iter::repeat_n(0, pause_ms * 24));
        utts.push(u);
    }
    write_wav_i16(&dir.join("in.wav"), 24_000, 1, &all);
    utts
}

/// True when `run` is a marker tone of `lang`.
fn is_marker(run: &[i16], lang: &str) -> bool {
    (marker_samples() - 10..=marker_samples() + 10).contains(&run.len()) && goertzel(run, 24_000, marker_hz(lang)) > 0.1
}

/// Reads a recording made of groups (markers of `chain` in order, then an input utterance);
/// returns the indices of the utterances found, in recording order. Panics on anything else.
fn groups(path: &Path, chain: &[&str], utts: &[Vec<i16>]) -> Vec<usize> {
    let (spec, samples) = read_wav_i16(path);
    assert_eq!((spec.sample_rate, spec.channels), (24_000, 1), "{}", path.display());
    let rs = runs(&samples, 240);
    let lengths: Vec<usize> = rs.iter().map(|r| r.len()).collect();
    let path = &format!("{} (runs of {lengths:?} samples)", path.display());
    let path = Path::new(path);
    let mut found = vec![];
    let mut i = 0;
    while i < rs.len() {
        for (k, lang) in chain.iter().enumerate() {
            let r = rs.get(i + k).unwrap_or_else(|| panic!("{}: group at run {i} is cut short", path.display()));
            assert!(
                is_marker(r, lang),
                "{}: run {} ({} samples) is not the {lang} marker",
                path.display(),
                i + k,
                r.len()
            );
        }
        let u = rs.get(i + chain.len()).unwrap_or_else(|| panic!("{}: markers without an utterance", path.display()));
        let k = utts
            .iter()
            .position(|x| x.as_slice() == *u)
            .unwrap_or_else(|| panic!("{}: run {} ({} samples) is no input utterance", path.display(), i, u.len()));
        found.push(k);
        i += chain.len() + 1;
    }
    found
}

/// A config: `engine` table, source `stage` (English, `in.wav`), the `routes` given, a WAV and
/// a captions sink per language.
fn config(dir: &Path, engine: &str, run: &str, realtime: bool, routes: &str) -> PathBuf {
    write(
        dir,
        "run.toml",
        &format!(
            "[engine]\n{engine}\n\n[run]\n{run}\n\n[[source]]\nid = \"stage\"\nplugin = \"tolk.wav\"\nlanguage = \"en\"\n[source.config]\npath = \"in.wav\"\nrealtime = {realtime}\n\n{routes}\n\n[[sink]]\nid = \"rec\"\nplugin = \"tolk.wav\"\n[sink.config]\npath = \"out/{{lang}}.wav\"\n\n[[sink]]\nid = \"captions\"\nplugin = \"tolk.captions\"\n[sink.config]\njsonl = \"out/{{lang}}.jsonl\"\n"
        ),
    )
}

fn route(to: &[&str], via: Option<&str>) -> String {
    let to = to.iter().map(|l| format!("\"{l}\"")).collect::<Vec<_>>().join(", ");
    let via = via.map(|v| format!("via = \"{v}\"\n")).unwrap_or_default();
    format!("[[route]]\nsource = \"stage\"\n{via}to = [{to}]\nsinks = [\"rec\", \"captions\"]\n")
}

/// tolk's server in this process; returns its base `ws://` URL.
fn server() -> (tokio::runtime::Runtime, ServerHandle, String) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let handle = rt.block_on(async { Server::bind(ServeOptions::default()).await.unwrap().spawn() });
    let url = handle.url().to_string();
    (rt, handle, url)
}

/// Every utterance, once, in order.
fn all(utts: &[Vec<i16>]) -> Vec<usize> {
    (0..utts.len()).collect()
}

#[test]
fn a_relay_route_interprets_the_pivot_translation() {
    let dir = tempfile::tempdir().unwrap();
    // Pauses longer than a translation, so the relays hear the pivot's pauses too. (The test
    // engine echoes each turn with its VAD padding, 300 ms before and 500 ms after, so every
    // hop lengthens a turn by 1 s: two hops need pauses of 2.5 s to stay apart.)
    let utts = speech(dir.path(), 5, 600, 2500);
    // The relay route comes first in the file: pivots are found wherever they are. Polish is
    // two hops away: English → Spanish → Finnish → Polish.
    let routes = route(&["fi", "sv"], Some("es")) + "\n" + &route(&["es"], None) + "\n" + &route(&["pl"], Some("fi"));
    let config = config(dir.path(), "provider = \"local\"", "delivery = \"lossless\"", false, &routes);
    let f = run_tolk(&config, &[], Duration::from_secs(90));
    assert_eq!(f.run.code, 0, "{}\n{}", f.run.stdout, f.run.stderr);
    let out = dir.path().join("out");
    assert_eq!(groups(&out.join("es.wav"), &["es"], &utts), all(&utts), "the pivot");
    for lang in ["fi", "sv"] {
        // Its own marker, then the pivot's output: the relay took the Spanish, not the source.
        assert_eq!(groups(&out.join(format!("{lang}.wav")), &[lang, "es"], &utts), all(&utts), "relay {lang}");
        let captions = std::fs::read_to_string(out.join(format!("{lang}.jsonl"))).unwrap();
        assert_eq!(captions.lines().count(), utts.len(), "{captions}");
        assert!(captions.lines().all(|l| l.contains(&format!("\"[{lang}] utterance"))), "{captions}");
    }
    assert_eq!(groups(&out.join("pl.wav"), &["pl", "fi", "es"], &utts), all(&utts), "relay of a relay");
    let st = status(dir.path());
    let names: Vec<&str> = st["routes"].as_array().unwrap().iter().map(|r| r["route"].as_str().unwrap()).collect();
    assert_eq!(names, ["stage→es→fi", "stage→es→sv", "stage→es", "stage→fi→pl"]);
    for r in st["routes"].as_array().unwrap() {
        assert_eq!(r["responses"], utts.len() as u64, "{r}");
        assert_eq!(r["input_gap_s"], 0.0, "{r}");
    }
    assert!(f.run.stdout.contains("stage→es→fi"), "{}", f.run.stdout);
}

#[test]
fn a_live_relay_follows_the_pivot_in_real_time() {
    let dir = tempfile::tempdir().unwrap();
    let utts = speech(dir.path(), 3, 600, 1300);
    let routes = route(&["es"], None) + "\n" + &route(&["uk"], Some("es"));
    let config = config(dir.path(), "provider = \"local\"", "", true, &routes);
    let f = run_tolk(&config, &[], Duration::from_secs(60));
    assert_eq!(f.run.code, 0, "{}\n{}", f.run.stdout, f.run.stderr);
    let out = dir.path().join("out");
    assert_eq!(groups(&out.join("es.wav"), &["es"], &utts), all(&utts));
    assert_eq!(groups(&out.join("uk.wav"), &["uk", "es"], &utts), all(&utts));
}

#[test]
fn relay_mistakes_are_one_line_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    speech(dir.path(), 1, 300, 300);
    let check = |routes: &str| {
        let config = config(dir.path(), "provider = \"local\"", "", false, routes);
        let r = tolk_tests::run(tolk().arg("check").arg(&config));
        assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
        r.err_lines().iter().map(|l| l.to_string()).collect::<Vec<_>>()
    };
    let has =
        |lines: &[String], want: &str| assert!(lines.iter().any(|l| l.contains(want)), "{want:?} not in {lines:#?}");
    // No route makes the pivot.
    let e = check(&(route(&["es"], None) + &route(&["fi"], Some("de"))));
    has(&e, "route[1].via: no route translates source \"stage\" into \"de\"");
    // Not a language.
    let e = check(&(route(&["es"], None) + &route(&["fi"], Some("e s"))));
    has(&e, "route[1].via: ");
    // The source's own language, the pivot itself, the floor.
    let e = check(&route(&["fi"], Some("en")));
    has(&e, "route[0].via: \"en\" is the source's own language");
    let e = check(&(route(&["es"], None) + &route(&["es", "fi"], Some("es"))));
    has(&e, "route[1].to[0]: \"es\" is the pivot language");
    let e = check(&(route(&["es"], None) + &route(&["floor"], Some("es"))));
    has(&e, "route[1].to[0]: a relay route (with `via`) has no floor");
    // A cycle: es through fr, fr through es.
    let e = check(&(route(&["es"], Some("fr")) + &route(&["fr"], Some("es"))));
    has(&e, "route[0].via: relay cycle: es via fr via es");
    has(&e, "route[1].via: relay cycle: fr via es via fr");
    // `tolk check` shows a valid relay.
    let config =
        config(dir.path(), "provider = \"local\"", "", false, &(route(&["es"], None) + &route(&["fi"], Some("es"))));
    let r = tolk_tests::run(tolk().arg("check").arg(&config));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("stage (en) via es → fi"), "{}", r.stdout);
}

/// Runs one language over `engine` (TOML lines) and checks the recording and captions.
fn engine_path(engine: &str, env: &[(&str, &str)], realtime: bool) {
    let dir = tempfile::tempdir().unwrap();
    let utts = speech(dir.path(), 3, 600, 1300);
    let run = if realtime { "" } else { "delivery = \"lossless\"" };
    let config = config(dir.path(), engine, run, realtime, &route(&["de"], None));
    let f = run_tolk(&config, env, Duration::from_secs(60));
    assert_eq!(f.run.code, 0, "{engine}\n{}\n{}", f.run.stdout, f.run.stderr);
    let out = dir.path().join("out");
    assert_eq!(groups(&out.join("de.wav"), &["de"], &utts), all(&utts), "{engine}");
    let captions = std::fs::read_to_string(out.join("de.jsonl")).unwrap();
    assert!(captions.lines().filter(|l| l.contains("\"[de] utterance")).count() >= utts.len(), "{engine}\n{captions}");
    let st = status(dir.path());
    assert_eq!(st["routes"][0]["responses"], utts.len() as u64, "{engine}: {}", st["routes"][0]);
    assert!(st["routes"][0]["cost_usd"].as_f64().unwrap() >= 0.0);
}

#[test]
fn the_translation_api_runs_through_the_router() {
    // tolk's own server, the Translation path chosen by the router's local mode …
    engine_path("provider = \"local\"\nprotocol = \"translation\"", &[], true);
    // … and `provider = "openai-translate"` (Bearer key) pointed at it.
    let (_rt, _server, base) = server();
    let engine = format!("provider = \"openai-translate\"\nurl = \"{base}/v1/realtime/translations\"");
    engine_path(&engine, &[("OPENAI_API_KEY", "sk-test-relay")], true);
}

#[test]
fn the_legacy_protocol_runs_through_the_router() {
    engine_path("provider = \"local\"\nprotocol = \"legacy\"", &[], false);
    let (_rt, _server, base) = server();
    let engine = format!("provider = \"openai\"\nprotocol = \"legacy\"\nurl = \"{base}/v1/realtime\"");
    engine_path(&engine, &[("OPENAI_API_KEY", "sk-test-relay")], false);
}

#[test]
fn the_azure_paths_run_through_the_router() {
    let (_rt, _server, base) = server();
    let key = [("AZURE_OPENAI_API_KEY", "azure-test-key")];
    engine_path(
        &format!("provider = \"azure\"\nmodel = \"gpt-realtime\"\nurl = \"{base}/openai/v1/realtime\""),
        &key,
        false,
    );
    let legacy = format!(
        "provider = \"azure\"\nmodel = \"gpt-realtime\"\nprotocol = \"legacy\"\nurl = \"{base}/openai/realtime?api-version=2025-04-01-preview&deployment=gpt-realtime\""
    );
    engine_path(&legacy, &key, false);
}

#[test]
fn conversation_mode_runs_through_the_router() {
    // Live pace, pauses longer than each answer: nobody talks over the output.
    engine_path("provider = \"local\"\nmode = \"conversation\"", &[], true);
}

#[test]
fn memory_stays_flat_over_a_long_accelerated_event() {
    let peak = |turns: usize| {
        let dir = tempfile::tempdir().unwrap();
        speech(dir.path(), turns, 500, 600);
        let config = config(
            dir.path(),
            "provider = \"local\"",
            "delivery = \"lossless\"\nkeep_turns = 2",
            false,
            &route(&["es"], None),
        );
        let f = run_tolk(&config, &[], Duration::from_secs(120));
        assert_eq!(f.run.code, 0, "{}\n{}", f.run.stdout, f.run.stderr);
        assert_eq!(status(dir.path())["routes"][0]["responses"], turns as u64);
        assert!(f.peak_kb > 0, "no memory reading");
        f.peak_kb
    };
    let short = peak(15);
    let long = peak(60);
    // Four times the event, not four times the memory: at most +25 % or +20 MB, whichever is more.
    let allowed = short + (short / 4).max(20 * 1024);
    eprintln!("peak RSS: 15 turns {short} kB, 60 turns {long} kB");
    assert!(long <= allowed, "peak RSS grew from {short} kB (15 turns) to {long} kB (60 turns)");
}

/// Runs a shipped config against tolk's own server: only the engine URL is added, the sample
/// read as fast as it goes, and the outputs kept in a temporary directory.
fn shipped(name: &str, path: &str, env: &[(&str, &str)], langs: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let root = tolk_tests::root().join("configs");
    let (_rt, _server, base) = server();
    let text = std::fs::read_to_string(root.join(name))
        .unwrap()
        .replacen("[engine]\n", &format!("[engine]\nurl = \"{base}{path}\"\n"), 1)
        .replace("path = \"samples/", &format!("path = \"{}/samples/", root.display()))
        .replace("realtime = true", "realtime = false")
        .replace("\"../out/", "\"out/");
    let config = write(dir.path(), name, &text);
    let f = run_tolk(&config, env, Duration::from_secs(90));
    assert_eq!(f.run.code, 0, "{name}\n{}\n{}", f.run.stdout, f.run.stderr);
    let st = status(dir.path());
    for (lang, route) in langs.iter().zip(st["routes"].as_array().unwrap()) {
        assert!(route["responses"].as_u64().unwrap() >= 1, "{name}: {route}");
        let sub = if name.starts_with("azure") { "azure" } else { "translate" };
        let (_, rec) = read_wav_i16(&dir.path().join(format!("out/{sub}/{lang}.wav")));
        // Real speech has no digital silence: the first response starts with the marker.
        let first = rec.iter().position(|&s| s != 0).expect("a silent recording");
        let marker = &rec[first..(first + marker_samples()).min(rec.len())];
        assert!(
            goertzel(marker, 24_000, marker_hz(lang)) > 0.1,
            "{name}: the {lang} recording does not start with its marker"
        );
        let vtt = std::fs::read_to_string(dir.path().join(format!("out/{sub}/{lang}.vtt"))).unwrap();
        assert!(vtt.starts_with("WEBVTT") && vtt.contains(&format!("[{lang}]")), "{name}: {vtt}");
    }
}

#[test]
fn the_shipped_azure_config_runs_against_the_local_server() {
    shipped("azure.toml", "/openai/v1/realtime", &[("AZURE_OPENAI_API_KEY", "azure-test-key")], &["es", "fr"]);
}

#[test]
fn the_shipped_translation_api_config_runs_against_the_local_server() {
    shipped("translate-api.toml", "/v1/realtime/translations", &[("OPENAI_API_KEY", "sk-test-relay")], &["es", "de"]);
}
