//! The command line itself: help, usage errors, exit codes.

use tolk_tests::{run, tolk};

#[test]
fn help_lists_every_command() {
    let r = run(tolk().arg("--help"));
    assert_eq!(r.code, 0);
    for cmd in ["check", "plugins"] {
        assert!(r.stdout.contains(cmd), "--help does not mention {cmd}:\n{}", r.stdout);
    }
    assert!(!r.stdout.contains("__child"), "hidden command leaked into --help");
    for sub in [
        &["check", "--help"][..],
        &["plugins", "--help"],
        &["plugins", "check", "--help"],
        &["plugins", "list", "--help"],
    ] {
        let r = run(tolk().args(sub));
        assert_eq!(r.code, 0, "{sub:?}");
        assert!(r.stdout.contains("Usage:"), "{sub:?}:\n{}", r.stdout);
    }
}

#[test]
fn usage_errors_exit_2() {
    let r = run(tolk().arg("frobnicate"));
    assert_eq!(r.code, 2);
    let r = run(tolk().args(["check"]));
    assert_eq!(r.code, 2);
    let r = run(tolk().args(["check", "/nonexistent/x.toml"]));
    assert_eq!(r.code, 2);
    assert_eq!(r.err_lines()[0], "error: /nonexistent/x.toml: cannot read: No such file or directory (os error 2)");
}

#[test]
fn version_is_printed() {
    let r = run(tolk().arg("--version"));
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with("tolk "), "{}", r.stdout);
}
