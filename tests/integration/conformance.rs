//! Every built-in plugin passes the conformance kit out-of-process, through `tolk plugins
//! check` on its built library. (Each plugin crate also runs the kit in-process in its own
//! tests.)

use tolk_tests::{builtin, run, tolk, write_wav_i16};

fn check(lib: &str, config: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let speech: Vec<i16> = (0..24_000).map(|i| ((i as f32 * 0.07).sin() * 8000.0) as i16).collect();
    write_wav_i16(&dir.path().join("speech.wav"), 24_000, 1, &speech);
    let mut cmd = tolk();
    cmd.args(["plugins", "check"]).arg(builtin(lib)).current_dir(dir.path());
    if let Some(c) = config {
        std::fs::write(dir.path().join("check.toml"), c).unwrap();
        cmd.arg("--config").arg(dir.path().join("check.toml"));
    }
    let r = run(&mut cmd);
    assert_eq!(r.code, 0, "{lib}:\n{}\n{}", r.stdout, r.stderr);
    let last = r.stdout.lines().last().unwrap_or("");
    assert!(last.contains(" 0 failed") && last.ends_with(" 0 crashed"), "{lib}: {last}");
    assert!(!last.starts_with("0 passed"), "{lib} ran no check: {last}");
    // Nothing was written next to the user's files.
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| n == "speech.wav" || n == "check.toml" || n.starts_with("conformance")), "{names:?}");
}

#[test]
fn tone_source_passes() {
    check("tolk_source_tone", None);
}

#[test]
fn wav_source_passes() {
    check("tolk_source_wav", Some("[source.\"tolk.wav\"]\npath = \"speech.wav\"\nrealtime = false\n"));
}

#[test]
fn wav_sink_passes() {
    check("tolk_sink_wav", None);
}

#[test]
fn captions_sink_passes() {
    check("tolk_sink_captions", None);
}

#[test]
fn interpreter_prompt_passes() {
    check("tolk_prompt_interpreter", None);
}

#[test]
fn skipping_a_check_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), "[checks]\nskip = [\"full-writer\"]\n").unwrap();
    let r = run(tolk()
        .args(["plugins", "check"])
        .arg(builtin("tolk_source_tone"))
        .arg("--config")
        .arg(dir.path().join("c.toml")));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.lines().any(|l| l.starts_with("skip") && l.contains("full-writer")), "{}", r.stdout);
    std::fs::write(dir.path().join("c.toml"), "[checks]\nskip = [\"ful-writer\"]\n").unwrap();
    let r = run(tolk()
        .args(["plugins", "check"])
        .arg(builtin("tolk_source_tone"))
        .arg("--config")
        .arg(dir.path().join("c.toml")));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("checks.skip: no check called \"ful-writer\" (did you mean \"full-writer\"?)"),
        "{}",
        r.stderr
    );
}
