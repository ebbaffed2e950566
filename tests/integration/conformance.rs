//! Every built-in plugin passes the conformance kit out-of-process, through `tolk plugins
//! check` on its built library. (Each plugin crate also runs the kit in-process in its own
//! tests.)

use tolk_tests::{builtin, run, tolk, write_wav_i16};

fn check(lib: &str, config: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = tolk();
    cmd.args(["plugins", "check"]).arg(builtin(lib)).current_dir(dir.path());
    // With no --config, `tolk plugins check LIB` alone must do: the checker provides what the
    // example configs need.
    if let Some(c) = config {
        let speech: Vec<i16> = (0..24_000).map(|i| ((i as f32 * 0.07).sin() * 8000.0) as i16).collect();
        write_wav_i16(&dir.path().join("speech.wav"), 24_000, 1, &speech);
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
    check("tolk_source_wav", None);
}

#[test]
fn wav_source_passes_with_a_config_naming_the_users_file() {
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

#[test]
fn list_checks_needs_no_library() {
    let r = run(tolk().args(["plugins", "check", "--list-checks"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.lines().any(|l| l.starts_with("full-writer ")), "{}", r.stdout);
    // Checking still needs one.
    let r = run(tolk().args(["plugins", "check"]));
    assert_eq!(r.code, 2);
}

#[test]
fn only_runs_the_named_checks() {
    let r = run(tolk()
        .args(["plugins", "check", "--only", "full-writer", "--only", "whole-frames"])
        .arg(builtin("tolk_source_tone")));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    let checks: Vec<&str> = lines[..lines.len() - 1].iter().filter_map(|l| l.split_whitespace().nth(1)).collect();
    assert_eq!(checks, ["whole-frames", "full-writer"], "{}", r.stdout);
    assert_eq!(lines.last(), Some(&"2 passed, 0 failed, 0 skipped, 0 warned, 0 crashed"));
    let r = run(tolk().args(["plugins", "check", "--only", "ful-writer"]).arg(builtin("tolk_source_tone")));
    assert_eq!(r.code, 2);
    assert_eq!(
        r.err_lines(),
        ["error: --only: no check called \"ful-writer\" (did you mean \"full-writer\"?); --list-checks shows them"]
    );
}

#[test]
fn failed_shows_only_failures_and_the_whole_summary() {
    let lib = tolk_tests::fixture("fixture_bad_plugins");
    let all = run(tolk().args(["plugins", "check"]).arg(&lib));
    let failed = run(tolk().args(["plugins", "check", "--failed"]).arg(&lib));
    assert_eq!(all.code, 1, "{}", all.stderr);
    assert_eq!(failed.code, 1);
    let lines: Vec<&str> = failed.stdout.lines().collect();
    let (summary, shown) = lines.split_last().unwrap();
    assert!(
        !shown.is_empty() && shown.iter().all(|l| l.starts_with("fail ") || l.starts_with("crashed ")),
        "{}",
        failed.stdout
    );
    let expected: Vec<&str> =
        all.stdout.lines().filter(|l| l.starts_with("fail ") || l.starts_with("crashed ")).collect();
    assert_eq!(shown, expected.as_slice());
    assert_eq!(Some(*summary), all.stdout.lines().last());
}
