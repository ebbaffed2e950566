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
        let line = r.stdout.lines().find(|l| l.starts_with(&format!("{id} ")) && l.contains(&format!(" {kind} ")));
        let line = line.unwrap_or_else(|| panic!("{id} ({kind}) not listed:\n{}", r.stdout));
        assert!(line.contains("0.1.0"), "{line}");
        assert!(line.ends_with(&path.display().to_string()), "{line}");
    }
    // Each plugin's description is shown.
    let tone = r.stdout.lines().find(|l| l.starts_with("tolk.tone ")).unwrap();
    assert!(tone.contains("  a deterministic sine tone; the template for plugin authors  "), "{tone}");
    assert!(r.stdout.lines().next().unwrap().contains(" DESCRIPTION "), "{}", r.stdout);
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

/// A plugin directory holding a real built plugin library cut to 1, 4, 10, 100 and 600 kB
/// (what an interrupted copy or download leaves), and a config that uses it as its plugin path.
fn truncated_plugin_dir() -> (tempfile::TempDir, Vec<std::path::PathBuf>, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let whole = std::fs::read(builtin("tolk_sink_captions")).unwrap();
    let mut cut = Vec::new();
    for kb in [1usize, 4, 10, 100, 600] {
        let path = plugins.join(lib_file(&format!("cut_{kb}k")));
        std::fs::write(&path, &whole[..kb * 1024]).unwrap();
        cut.push(path);
    }
    let config = dir.path().join("tone.toml");
    std::fs::write(
        &config,
        "[plugins]\npath = \"plugins\"\n\n[[source]]\nid = \"tone\"\nplugin = \"tolk.tone\"\nlanguage = \"en\"\n[source.config]\nduration_ms = 200\n\n[[sink]]\nid = \"out\"\nplugin = \"tolk.wav\"\n[sink.config]\npath = \"out.wav\"\n\n[[route]]\nsource = \"tone\"\nto = [\"floor\"]\nsinks = [\"out\"]\n",
    )
    .unwrap();
    (dir, cut, config)
}

/// Each cut library is named on exactly one stderr line saying it is truncated or corrupt.
fn assert_each_cut_named_once(r: &tolk_tests::Run, cut: &[std::path::PathBuf]) {
    for path in cut {
        let lines: Vec<&str> = r.err_lines().into_iter().filter(|l| l.contains(&path.display().to_string())).collect();
        assert_eq!(lines.len(), 1, "{} must be named once:\n{}", path.display(), r.stderr);
        assert!(lines[0].contains("truncated or corrupt"), "{}", lines[0]);
    }
}

#[test]
fn truncated_libraries_are_one_line_each_and_the_rest_loads() {
    let (dir, cut, config) = truncated_plugin_dir();
    let plugins = dir.path().join("plugins");

    let r = run(tolk().args(["plugins", "--path"]).arg(&plugins));
    assert_eq!(r.code, 2, "killed by a signal or wrong status:\n{}", r.stderr);
    assert_each_cut_named_once(&r, &cut);
    assert!(r.stdout.contains("tolk.tone") && r.stdout.contains("tolk.captions"), "{}", r.stdout);

    // The config needs nothing from the broken libraries: they are warnings, and it runs.
    let r = run(tolk().arg("check").arg(&config));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_each_cut_named_once(&r, &cut);
    assert!(r.stdout.contains(": ok"), "{}", r.stdout);

    let r = run(tolk().arg("run").arg(&config).current_dir(dir.path()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_each_cut_named_once(&r, &cut);
    assert!(dir.path().join("out.wav").is_file());
}

/// A copy of a real plugin library whose first dynamic relocation points far outside the
/// library: well-formed on disk, but the loader writes through it and dies (SIGSEGV).
fn library_with_a_wild_relocation(from: &std::path::Path, to: &std::path::Path) {
    use object::{
        elf,
        read::elf::{Dyn, FileHeader, ProgramHeader},
    };
    let mut bytes = std::fs::read(from).unwrap();
    let data = bytes.as_slice();
    let header = elf::FileHeader64::<object::Endianness>::parse(data).unwrap();
    let endian = header.endian().unwrap();
    let phdrs = header.program_headers(endian, data).unwrap();
    let dynamic = phdrs.iter().find_map(|p| p.dynamic(endian, data).unwrap()).unwrap();
    let rela = dynamic.iter().find(|d| d.d_tag(endian) == elf::DT_RELA).unwrap().val(endian);
    let load = phdrs
        .iter()
        .find(|p| {
            let (v, s) = (p.p_vaddr(endian), p.p_filesz(endian));
            p.p_type(endian) == elf::PT_LOAD && rela >= v && rela < v + s
        })
        .unwrap();
    let offset = (rela - load.p_vaddr(endian) + load.p_offset(endian)) as usize;
    // r_offset of the first Elf64_Rela entry.
    bytes[offset..offset + 8].copy_from_slice(&0x0000_4000_0000_0000u64.to_le_bytes());
    std::fs::write(to, bytes).unwrap();
}

#[test]
fn a_library_that_crashes_the_loader_is_one_line_and_the_rest_loads() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join(lib_file("wild_relocation"));
    library_with_a_wild_relocation(&builtin("tolk_sink_captions"), &bad);
    std::fs::copy(fixture("fixture_bad_plugins"), dir.path().join(lib_file("fixture_bad_plugins"))).unwrap();
    let r = run(tolk().args(["plugins", "--path"]).arg(dir.path()));
    assert_eq!(r.code, 2, "killed by a signal or wrong status:\n{}", r.stderr);
    assert_each_cut_named_once(&r, std::slice::from_ref(&bad));
    assert!(r.stderr.contains("SIGSEGV"), "{}", r.stderr);
    assert!(r.stdout.contains("com.example.panic-on-start") && r.stdout.contains("tolk.captions"), "{}", r.stdout);
}

#[test]
fn a_library_replaced_on_disk_during_scans_never_crashes_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join(lib_file("fixture_bad_plugins"));
    let whole = std::fs::read(fixture("fixture_bad_plugins")).unwrap();
    std::fs::write(&target, &whole).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Replace the library, as installers do (write a new file, rename it over the old one),
    // alternating a whole copy and copies cut short at ever other lengths.
    let replacer = {
        let (dir, target, stop) = (dir.path().to_path_buf(), target.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let len = if n.is_multiple_of(2) { whole.len() } else { (n * 7919 * 1024) % whole.len() };
                let tmp = dir.join("incoming.tmp");
                std::fs::write(&tmp, &whole[..len]).unwrap();
                std::fs::rename(&tmp, &target).unwrap();
            }
            n
        })
    };
    let mut listed = 0;
    for _ in 0..25 {
        let r = run(tolk().args(["plugins", "--path"]).arg(dir.path()));
        assert!(r.code == 0 || r.code == 2, "status {}:\n{}", r.code, r.stderr);
        if r.stdout.contains("com.example.panic-on-start") {
            listed += 1;
        } else {
            assert_each_cut_named_once(&r, std::slice::from_ref(&target));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let replaced = replacer.join().unwrap();
    assert!(replaced > 25, "the library was replaced only {replaced} times");
    eprintln!("listed whole in {listed} of 25 scans, {replaced} replacements");
}

#[test]
fn a_shorter_older_header_is_read_only_as_far_as_its_size() {
    let lib = fixture("fixture_short_header");
    let r = run(tolk().args(["plugins", "check"]).arg(&lib));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(
        r.err_lines(),
        [format!(
            "error: {}: this plugin was built for tolk plugin ABI 2.1; this tolk speaks 1.0 — rebuild it against tolk-plugin-api 1.0",
            lib.display()
        )]
    );
}

/// A config whose source plugin lives in a library that fails to load (built for ABI 2.1),
/// with one unrelated config error as well.
fn config_needing_a_broken_library() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let lib = plugins.join(lib_file("fixture_wrong_abi"));
    std::fs::copy(fixture("fixture_wrong_abi"), &lib).unwrap();
    let config = dir.path().join("future.toml");
    std::fs::write(
        &config,
        "[plugins]\npath = \"plugins\"\n\n[run]\nbudget_usd = -1\n\n[[source]]\nid = \"a\"\nplugin = \"com.example.future\"\nlanguage = \"en\"\n\n[[source]]\nid = \"b\"\nplugin = \"com.example.future\"\nlanguage = \"de\"\n\n[[sink]]\nid = \"out\"\nplugin = \"tolk.wav\"\n[sink.config]\npath = \"out.wav\"\n\n[[route]]\nsource = \"a\"\nto = [\"floor\"]\nsinks = [\"out\"]\n\n[[route]]\nsource = \"b\"\nto = [\"floor\"]\nsinks = [\"out\"]\n",
    )
    .unwrap();
    (dir, config, lib)
}

#[test]
fn a_library_that_fails_to_load_is_reported_before_the_plugins_it_leaves_missing() {
    let (_dir, config, lib) = config_needing_a_broken_library();
    let r = run(tolk().arg("check").arg(&config));
    assert_eq!(r.code, 2, "{}", r.stderr);
    let lines = r.err_lines();
    assert!(
        lines[0].contains(&format!(
            "plugin library failed to load: {}: plugin fixture-wrong-abi was built for tolk plugin ABI 2.1",
            lib.display()
        )),
        "the cause must come first:\n{}",
        r.stderr
    );
    let missing: Vec<&str> = lines.iter().copied().filter(|l| l.contains("no source plugin with id")).collect();
    assert_eq!(missing.len(), 2, "{}", r.stderr);
    for l in missing {
        assert!(l.contains(&format!("{}, which failed to load", lib.display())), "not tied to its cause: {l}");
    }
}

#[test]
fn run_reports_the_same_errors_as_check_in_the_same_order_and_words() {
    let (_dir, config, _lib) = config_needing_a_broken_library();
    let check = run(tolk().arg("check").arg(&config));
    let run_ = run(tolk().arg("run").arg(&config));
    assert_eq!(check.code, 2);
    assert_eq!(run_.code, 2);
    // A config error (the budget) and the plugin errors: all of them, from both.
    assert!(check.stderr.contains("run.budget_usd"), "{}", check.stderr);
    assert!(check.stderr.contains("no source plugin"), "{}", check.stderr);
    assert_eq!(run_.stderr, check.stderr);
}
