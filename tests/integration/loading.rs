//! Loading plugin libraries from disk: the built-ins, and fixtures that fail on purpose. Each
//! failure is one line naming the library, and the host carries on.

use std::time::Duration;

use tolk_core::{
    plugin_host::{self, HostServices, LoadError, Registry, SearchPath, discover::Origin},
    router::source_lane,
};
use tolk_plugin_api::{AudioBlock, AudioFormat, ErrorKind, PluginKind, Samples};
use tolk_tests::{bin_dir, builtin, fixture, fixtures, lib_file, run, tolk};

fn host(id: &str) -> HostServices {
    HostServices { instance_id: id.into(), plugin_id: id.into(), config_dir: std::env::temp_dir() }
}

#[test]
fn builtins_are_listed_with_kind_version_and_library() {
    let r = run(tolk().arg("plugins"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    for (id, kind, lib) in [
        ("tolk.tone", "source", "tolk_source_tone"),
        ("tolk.wav", "source", "tolk_source_wav"),
        ("tolk.wav", "sink", "tolk_sink_wav"),
        ("tolk.captions", "sink", "tolk_sink_captions"),
        ("tolk.interpreter", "prompt", "tolk_prompt_interpreter"),
    ] {
        let path = bin_dir().join(lib_file(lib));
        let line = r.stdout.lines().find(|l| l.starts_with(&format!("{id} ")) && l.contains(kind));
        let line = line.unwrap_or_else(|| panic!("{id} ({kind}) not listed:\n{}", r.stdout));
        assert!(line.contains("0.1.0"), "{line}");
        assert!(line.ends_with(&path.display().to_string()), "{line}");
    }
    // The same through --json.
    let r = run(tolk().args(["plugins", "list", "--json"]));
    assert_eq!(r.code, 0);
    let rows: Vec<serde_json::Value> = r.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(rows.iter().any(|v| v["id"] == "tolk.captions" && v["kind"] == "sink"));
}

#[test]
fn not_a_plugin_is_one_line() {
    let lib = fixture("fixture_not_a_plugin");
    let r = run(tolk().args(["plugins", "check"]).arg(&lib));
    assert_eq!(r.code, 2);
    assert_eq!(
        r.err_lines(),
        [format!(
            "error: {}: not a tolk plugin (the library has no tolk plugin header; plugins are built with tolk_plugin_api::export_plugins!)",
            lib.display()
        )]
    );
}

#[test]
fn wrong_abi_is_one_line_saying_what_to_rebuild_against() {
    let lib = fixture("fixture_wrong_abi");
    let r = run(tolk().args(["plugins", "check"]).arg(&lib));
    assert_eq!(r.code, 2);
    assert_eq!(
        r.err_lines(),
        [format!(
            "error: {}: plugin fixture-wrong-abi was built for tolk plugin ABI 2.1; this tolk speaks 1.0 — rebuild it against tolk-plugin-api 1.0",
            lib.display()
        )]
    );
}

#[test]
fn a_file_that_is_no_library_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join(lib_file("garbage"));
    std::fs::write(&lib, "this is not an ELF file").unwrap();
    let r = run(tolk().args(["plugins", "check"]).arg(&lib));
    assert_eq!(r.code, 2);
    assert_eq!(r.err_lines().len(), 1, "{}", r.stderr);
    assert!(r.stderr.starts_with(&format!("error: {}: cannot load library: ", lib.display())), "{}", r.stderr);
}

#[test]
fn all_load_errors_are_reported_together_and_good_plugins_still_load() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["fixture_wrong_abi", "fixture_not_a_plugin", "fixture_bad_plugins"] {
        std::fs::copy(fixture(name), dir.path().join(lib_file(name))).unwrap();
    }
    std::fs::write(dir.path().join(lib_file("garbage")), "nope").unwrap();
    let r = run(tolk().args(["plugins", "--path"]).arg(dir.path()));
    assert_eq!(r.code, 2, "{}", r.stderr);
    let errors: Vec<&str> = r.err_lines().into_iter().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 2, "{}", r.stderr);
    assert!(errors.iter().any(|l| l.contains("libgarbage") && l.contains("cannot load library")));
    assert!(errors.iter().any(|l| l.contains("fixture_wrong_abi") && l.contains("ABI 2.1")));
    // The good ones, third-party and built-in, are listed; the non-plugin is skipped silently.
    assert!(r.stdout.contains("com.example.panic-on-start"));
    assert!(r.stdout.contains("tolk.tone"));
    assert!(!r.stdout.contains("not_a_plugin"));

    // The same through the library API.
    let mut search = SearchPath::default();
    search.dirs.push((dir.path().to_path_buf(), Origin::Config));
    let reg = Registry::discover(&search);
    assert_eq!(reg.errors.len(), 2);
    assert!(reg.errors.iter().any(|e| matches!(e, LoadError::AbiMismatch { plugin_abi: (2, 1), .. })));
    assert_eq!(reg.skipped.len(), 1);
    assert!(reg.get(PluginKind::Sink, "com.example.panic-on-write").is_some());
}

#[test]
fn third_party_libraries_may_not_use_the_tolk_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(lib_file("impostor"));
    std::fs::copy(builtin("tolk_source_tone"), &copy).unwrap();
    let err = plugin_host::load::load(&copy, false).err().expect("must be refused");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: plugin id \"tolk.tone\" uses the prefix \"tolk.\", which is reserved for plugins shipped with tolk",
            copy.display()
        )
    );
}

fn bad_registry() -> Registry {
    let mut reg = Registry::default();
    reg.add(plugin_host::load::load(&fixture("fixture_bad_plugins"), false).unwrap());
    reg.add(plugin_host::load::load(&builtin("tolk_source_tone"), true).unwrap());
    reg
}

#[test]
fn a_failing_constructor_gives_its_error() {
    let reg = bad_registry();
    let err = reg.create_source("com.example.new-fails", "", host("mic")).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::IO);
    assert_eq!(err.to_string(), "device \"Stage Mic\" is not connected");
    let err = reg.create_source("com.example.nope", "", host("x")).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::UNKNOWN_PLUGIN);
}

#[test]
fn a_panic_in_start_poisons_only_that_instance() {
    let reg = bad_registry();
    let mut bad = reg.create_source("com.example.panic-on-start", "", host("bad")).unwrap();
    let (w, _r) = source_lane::lane(AudioFormat::SESSION, Duration::from_secs(1), source_lane::Policy::DropOldest);
    let err = bad.start(w.to_ffi()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PANICKED);
    assert_eq!(err.to_string(), "panicked in start: the fixture panics in start");
    assert!(bad.poisoned().is_some());
    // Every later call is refused without entering the plugin.
    let err = bad.stop().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::POISONED);
    assert!(err.to_string().contains("poisoned by an earlier panic"), "{err}");

    // The host carries on: another plugin from the same host works.
    let mut tone = reg.create_source("tolk.tone", "duration_ms = 100\nrealtime = false", host("tone")).unwrap();
    let (w, r) = source_lane::lane(tone.format().unwrap(), Duration::from_secs(1), source_lane::Policy::Backpressure);
    tone.start(w.to_ffi()).unwrap();
    let mut frames = 0;
    loop {
        match r.recv_timeout(Duration::from_secs(5)) {
            Some(source_lane::LaneEvent::Audio(b)) => frames += b.samples.as_samples().len(),
            Some(source_lane::LaneEvent::End) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    tone.stop().unwrap();
    assert_eq!(frames, 2400);
}

#[test]
fn a_panic_in_a_sink_write_poisons_only_that_instance() {
    let reg = bad_registry();
    let mut sink = reg.create_sink("com.example.panic-on-write", "panic_after = 2", host("sink")).unwrap();
    let fmt = sink.format().unwrap().unwrap();
    sink.start().unwrap();
    let samples = vec![0i16; 480];
    let block = || AudioBlock::new(fmt, Samples::I16(&samples), 0, "es");
    sink.on_audio(block()).unwrap();
    sink.on_audio(block()).unwrap();
    let err = sink.on_audio(block()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PANICKED);
    assert_eq!(err.to_string(), "panicked in on_audio: the fixture panics in on_audio (block 3)");
    assert_eq!(sink.on_audio(block()).unwrap_err().kind(), ErrorKind::POISONED);
    assert_eq!(sink.stop().unwrap_err().kind(), ErrorKind::POISONED);
    // A second instance of the same plugin is unaffected.
    let mut other = reg.create_sink("com.example.panic-on-write", "panic_after = 5", host("other")).unwrap();
    other.start().unwrap();
    other.on_audio(block()).unwrap();
    other.stop().unwrap();
}

#[test]
fn the_checker_survives_panics_and_reports_crashes() {
    let lib = fixture("fixture_bad_plugins");
    let r = run(tolk().args(["plugins", "check"]).arg(&lib));
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let line = |check: &str, plugin: &str| {
        r.stdout
            .lines()
            .find(|l| l.contains(&format!(" {check} ")) && l.contains(plugin))
            .unwrap_or_else(|| panic!("no {check} line for {plugin}:\n{}", r.stdout))
            .to_string()
    };
    assert!(line("start-stop-restart", "com.example.abort-on-start").starts_with("crashed"));
    assert!(line("start-stop-restart", "com.example.abort-on-start").ends_with("killed by signal 6 (SIGABRT)"));
    let l = line("start-stop-restart", "com.example.panic-on-start");
    assert!(l.starts_with("fail") && l.ends_with("panicked in start: the fixture panics in start"), "{l}");
    let l = line("config-accepted", "com.example.new-fails");
    assert!(l.starts_with("fail") && l.contains("device \"Stage Mic\" is not connected"), "{l}");
    // After the crashes the checker went on to the sink.
    assert!(line("text-events", "com.example.panic-on-write").starts_with("pass"));
    assert!(r.stdout.lines().last().unwrap().contains("crashed"));
    let _ = fixtures();
}
