//! Nothing lost silently at the edges: WAV input the RIFF rules allow is read whole and WAV input
//! with something wrong is refused in one line naming the file; `tolk check` catches outputs
//! that cannot be written and outputs that collide (without writing and without blocking); a
//! closed stdout is a quiet exit. Real files, the real plugin libraries, the real `tolk` binary.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use tolk_tests::{read_wav_i16, run_in, run_tolk, signal, tolk, write};

// ---------------------------------------------------------------------------------------------
// WAV files, byte by byte (hound writes none of these).

/// A 24 kHz mono 16-bit fmt chunk (header and body).
fn fmt_chunk() -> Vec<u8> {
    fmt_chunk_of(1, 16)
}

/// A 24 kHz mono fmt chunk with format `tag` and `bits` per sample.
fn fmt_chunk_of(tag: u16, bits: u16) -> Vec<u8> {
    let bytes = u32::from(bits / 8);
    let mut v = b"fmt ".to_vec();
    v.extend(16u32.to_le_bytes());
    v.extend(tag.to_le_bytes());
    v.extend(1u16.to_le_bytes());
    v.extend(24_000u32.to_le_bytes());
    v.extend((24_000 * bytes).to_le_bytes());
    v.extend((bytes as u16).to_le_bytes());
    v.extend(bits.to_le_bytes());
    v
}

fn chunk(id: &[u8; 4], size: u32, body: &[u8]) -> Vec<u8> {
    let mut v = id.to_vec();
    v.extend(size.to_le_bytes());
    v.extend(body);
    v
}

fn pcm(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// `RIFF` with `riff_size`, `WAVE`, then `chunks`.
fn wav_bytes(riff_size: Option<u32>, chunks: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = chunks.concat();
    let mut v = b"RIFF".to_vec();
    v.extend(riff_size.unwrap_or(4 + body.len() as u32).to_le_bytes());
    v.extend(b"WAVE");
    v.extend(body);
    v
}

/// A config: `source` (a `tolk.wav` path) → floor → a WAV sink at `out/floor.wav`.
fn floor_run(dir: &Path, source: &Path) -> PathBuf {
    write(
        dir,
        "run.toml",
        &format!(
            "[run]\ndelivery = \"lossless\"\n\n[[source]]\nid = \"stage\"\nplugin = \"tolk.wav\"\nlanguage = \"en\"\n[source.config]\npath = \"{}\"\nrealtime = false\n\n[[route]]\nsource = \"stage\"\nto = [\"floor\"]\nsinks = [\"file\"]\n\n[[sink]]\nid = \"file\"\nplugin = \"tolk.wav\"\n[sink.config]\npath = \"out/floor.wav\"\n",
            source.display()
        ),
    )
}

/// `tolk check` in `dir`, killed (and the test failed) after 20 s.
fn check_in(dir: &Path, config: &str) -> tolk_tests::Run {
    let mut cmd = tolk();
    cmd.arg("check").arg(config);
    run_in(cmd, dir, Duration::from_secs(20), |_| {})
}

fn errors(r: &tolk_tests::Run) -> Vec<&str> {
    r.stderr.lines().filter_map(|l| l.strip_prefix("error: ")).collect()
}

#[test]
fn wav_files_the_riff_rules_allow_are_played_whole() {
    let input = signal(24_000 + 77, 3, 6_000);
    let data = pcm(&input);
    let size = data.len() as u32;
    let cases: [(&str, Vec<u8>); 4] = [
        // A metadata chunk of odd length before the data, with its pad byte.
        ("padded", wav_bytes(None, &[chunk(b"bext", 3, b"abc\0"), fmt_chunk(), chunk(b"data", size, &data)])),
        // Streamed: the sizes are unknown (0xFFFFFFFF) or left at 0; the data runs to the end.
        ("streamed-ffff", wav_bytes(Some(u32::MAX), &[fmt_chunk(), chunk(b"data", u32::MAX, &data)])),
        ("streamed-zero", wav_bytes(Some(0), &[fmt_chunk(), chunk(b"data", 0, &data)])),
        // A LIST chunk after the data is still no audio.
        ("trailer", wav_bytes(None, &[fmt_chunk(), chunk(b"data", size, &data), chunk(b"LIST", 5, b"INFOx\0")])),
    ];
    for (name, bytes) in cases {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join(format!("{name}.wav"));
        std::fs::write(&src, bytes).unwrap();
        let config = floor_run(dir.path(), &src);
        let r = run_tolk(&config, &[], Duration::from_secs(60));
        assert_eq!(r.code, 0, "{name}: {}\n{}", r.stdout, r.stderr);
        let (_, got) = read_wav_i16(&dir.path().join("out/floor.wav"));
        assert!(got == input, "{name}: played {} of {} samples, or other ones", got.len(), input.len());
    }
}

#[test]
fn wav_files_with_something_wrong_are_refused_in_one_line_naming_the_file() {
    let data = pcm(&signal(2_400, 4, 6_000));
    let size = data.len() as u32;
    let cases: [(&str, Vec<u8>, &str); 3] = [
        (
            "two-data",
            wav_bytes(None, &[fmt_chunk(), chunk(b"data", size, &data), chunk(b"data", size, &data)]),
            "has a second data chunk (at byte 4844; the first is at byte 36): a WAV file has one, and tolk.wav would play only the first",
        ),
        (
            "header-only",
            wav_bytes(None, &[fmt_chunk(), chunk(b"data", 0, &[])]),
            "has no audio: its data chunk is empty",
        ),
        ("no-data", wav_bytes(None, &[fmt_chunk()]), "has no audio: it has no data chunk"),
    ];
    for (name, bytes, why) in cases {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join(format!("{name}.wav"));
        std::fs::write(&src, bytes).unwrap();
        floor_run(dir.path(), &src);
        let r = check_in(dir.path(), "run.toml");
        assert_eq!(r.code, 2, "{name}: {}\n{}", r.stdout, r.stderr);
        assert_eq!(
            errors(&r),
            [format!("run.toml: source[0].config.path: {} {why}", src.display()).as_str()],
            "{name}"
        );
    }
}

#[test]
fn an_all_nan_wav_fails_the_run_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("nan.wav");
    let data: Vec<u8> = std::iter::repeat_n(f32::NAN.to_le_bytes(), 4_800).flatten().collect();
    std::fs::write(&src, wav_bytes(None, &[fmt_chunk_of(3, 32), chunk(b"data", data.len() as u32, &data)])).unwrap();
    let config = floor_run(dir.path(), &src);
    let r = run_tolk(&config, &["--json-status", "status.json"], Duration::from_secs(60));
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let why = format!("{}: every sample (4800) is NaN or infinite: the file holds no audio", src.display());
    assert!(r.stderr.contains(&why), "{}", r.stderr);
    // The first bad sample is named too (a warning, once).
    assert_eq!(r.stderr.matches("is NaN; NaN and infinite samples are played as silence").count(), 1, "{}", r.stderr);
}

#[test]
fn a_fifo_as_wav_source_is_refused_at_check_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.wav");
    let ok = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(ok.success());
    floor_run(dir.path(), &fifo);
    // Before the fix `tolk check` opened the FIFO and waited for a writer forever; `check_in`
    // kills it after 20 s and fails the test.
    let r = check_in(dir.path(), "run.toml");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(
        errors(&r),
        [format!("run.toml: source[0].config.path: {} is a FIFO (named pipe), not a regular file", fifo.display())
            .as_str()]
    );
}

// ---------------------------------------------------------------------------------------------
// Outputs: what `tolk check` can know without writing.

/// A tone source into `to`, with `sinks` (TOML) all used by the route.
fn sinks_config(to: &[&str], sinks: &str, ids: &[&str]) -> String {
    let q = |v: &[&str]| v.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
    format!(
        "[[source]]\nid = \"stage\"\nplugin = \"tolk.tone\"\nlanguage = \"en\"\n\n[[route]]\nsource = \"stage\"\nto = [{}]\nsinks = [{}]\n{sinks}",
        q(to),
        q(ids)
    )
}

fn wav(id: &str, path: &str) -> String {
    format!("\n[[sink]]\nid = \"{id}\"\nplugin = \"tolk.wav\"\n[sink.config]\npath = \"{path}\"\n")
}

fn captions(id: &str, vtt: &str) -> String {
    format!("\n[[sink]]\nid = \"{id}\"\nplugin = \"tolk.captions\"\n[sink.config]\nvtt = \"{vtt}\"\n")
}

#[test]
fn outputs_that_cannot_be_written_fail_check() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("plain-file"), "x").unwrap();
    let ok = Command::new("mkfifo").arg(d.join("fifo.vtt")).status().expect("mkfifo");
    assert!(ok.success());
    let sinks =
        wav("nul", "out/a\\u0000b.wav") + &captions("under-file", "plain-file/x.vtt") + &captions("fifo", "fifo.vtt");
    write(d, "x.toml", &sinks_config(&["floor"], &sinks, &["nul", "under-file", "fifo"]));
    let r = check_in(d, "x.toml");
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        errors(&r),
        [
            r#"x.toml: sink[0].config.path: "./out/a\0b.wav" contains a NUL byte, which no file name can hold"#,
            "x.toml: sink[1].config.vtt: cannot write ./plain-file/x.vtt: ./plain-file is not a directory",
            "x.toml: sink[2].config.vtt: cannot write ./fifo.vtt: it is a FIFO or socket, not a regular file",
        ]
    );
    let mut names: Vec<_> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["fifo.vtt", "plain-file", "stderr.txt", "stdout.txt", "x.toml"], "tolk check created files");
}

/// Mounts a read-only tmpfs on `dir`; false (with a note) when this machine cannot, which CI
/// must be able to.
fn mount_read_only(dir: &Path) -> bool {
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "ro,size=64k", "tolk-ro", &dir.display().to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "CI must be able to mount a read-only tmpfs (run as root)");
        eprintln!("note: skipping the read-only mount case: cannot mount a tmpfs here (not root?)");
    }
    ok
}

#[test]
fn an_output_on_a_read_only_mount_fails_check() {
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    if !mount_read_only(&ro) {
        return;
    }
    // Root ignores permission bits, not a read-only file system.
    let sinks = wav("file", "ro/out/{lang}.wav") + &captions("captions", "ro/{lang}.vtt");
    write(dir.path(), "x.toml", &sinks_config(&["es"], &sinks, &["file", "captions"]));
    let r = check_in(dir.path(), "x.toml");
    let _ = Command::new("umount").arg(&ro).status();
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        errors(&r),
        [
            "x.toml: sink[0].config.path: cannot write ./ro/out/es.wav: ./ro is on a read-only file system (for es)",
            "x.toml: sink[1].config.vtt: cannot write ./ro/es.vtt: ./ro is on a read-only file system (for es)",
        ]
    );
}

#[test]
fn an_output_in_a_folder_closed_to_the_user_fails_check() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(d.join("locked")).unwrap();
    std::fs::set_permissions(d.join("locked"), std::fs::Permissions::from_mode(0o555)).unwrap();
    write(d, "x.toml", &sinks_config(&["floor"], &wav("file", "locked/{lang}.wav"), &["file"]));
    // Root ignores permission bits: run tolk as `nobody` then.
    let is_root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let mut cmd = if is_root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(tolk_tests::tolk_path());
        c
    } else {
        tolk()
    };
    cmd.env_remove("TOLK_PLUGIN_PATH").arg("check").arg("x.toml");
    let r = run_in(cmd, d, Duration::from_secs(20), |_| {});
    if is_root && r.stderr.contains("setpriv") {
        assert!(std::env::var_os("CI").is_none(), "CI must be able to run setpriv as root: {}", r.stderr);
        eprintln!("note: skipping the closed-folder case: cannot switch to user nobody ({})", r.stderr.trim());
        return;
    }
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        errors(&r),
        [
            "x.toml: sink[0].config.path: cannot write ./locked/floor.wav: ./locked is not writable: Permission denied (os error 13) (for floor)"
        ]
    );
}

#[test]
fn two_sinks_writing_one_file_fail_check_naming_both_keys() {
    // (what, target languages, sinks, sink ids used by the route, the errors)
    type Case<'a> = (&'a str, &'a [&'a str], String, &'a [&'a str], &'a [&'a str]);
    let cases: [Case; 4] = [
        (
            "wav and vtt",
            &["es"],
            wav("file", "out/{lang}.wav") + &captions("captions", "out/{lang}.wav"),
            &["file", "captions"],
            &[
                "x.toml: sink[1].config.vtt: ./out/es.wav is also written by sink[0].config.path (instance file:es); two outputs in one file corrupt each other",
            ],
        ),
        (
            "two wav sinks",
            &["es"],
            wav("a", "out/same.wav") + &wav("b", "out/./same.wav"),
            &["a", "b"],
            &[
                "x.toml: sink[1].config.path: ./out/./same.wav is also written by sink[0].config.path (instance a); two outputs in one file corrupt each other",
            ],
        ),
        (
            "two caption sinks",
            &["es", "fr"],
            captions("c1", "out/{lang}.vtt") + &captions("c2", "out/../out/{lang}.vtt"),
            &["c1", "c2"],
            &[
                "x.toml: sink[1].config.vtt: ./out/../out/es.vtt is also written by sink[0].config.vtt (instance c1:es); two outputs in one file corrupt each other",
                "x.toml: sink[1].config.vtt: ./out/../out/fr.vtt is also written by sink[0].config.vtt (instance c1:fr); two outputs in one file corrupt each other",
            ],
        ),
        (
            "one wav file for two languages",
            &["es", "fr"],
            wav("file", "out/all.wav"),
            &["file"],
            &[
                "x.toml: sink[0].config.path: ./out/all.wav would hold the audio of 2 languages (es, fr) in one file; put {lang} in the path for one file per language",
            ],
        ),
    ];
    for (name, to, sinks, ids, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "x.toml", &sinks_config(to, &sinks, ids));
        let r = check_in(dir.path(), "x.toml");
        assert_eq!(r.code, 2, "{name}: {}\n{}", r.stdout, r.stderr);
        assert_eq!(errors(&r), want, "{name}");
    }
    // Different files, and per-language files, are fine.
    let dir = tempfile::tempdir().unwrap();
    let sinks = wav("file", "out/{lang}.wav") + &captions("captions", "out/{lang}.vtt");
    write(dir.path(), "x.toml", &sinks_config(&["es", "fr"], &sinks, &["file", "captions"]));
    let r = check_in(dir.path(), "x.toml");
    assert_eq!(r.code, 0, "{}", r.stderr);
}

// ---------------------------------------------------------------------------------------------
// A closed stdout.

/// Runs `tolk ARGS` in `dir` with its stdout a pipe closed before tolk writes to it (as
/// `| head -0` would), and its stderr too when `stderr_closed`; returns (exit code, stderr).
fn with_closed_pipes(dir: &Path, args: &[&str], stderr_closed: bool) -> (i32, String) {
    let mut child =
        tolk().args(args).current_dir(dir).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn tolk");
    drop(child.stdout.take());
    let mut err = String::new();
    let mut stderr = child.stderr.take().unwrap();
    if stderr_closed {
        drop(stderr);
    } else {
        stderr.read_to_string(&mut err).unwrap();
    }
    (child.wait().unwrap().code().unwrap_or(-1), err)
}

#[test]
fn a_closed_stdout_is_a_quiet_exit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tolk_tests::write_wav_i16(&d.join("in.wav"), 24_000, 1, &signal(4_800, 5, 6_000));
    floor_run(d, &d.join("in.wav"));
    for args in [
        &["check", "run.toml"][..],
        &["plugins"],
        &["plugins", "check", "--list-checks", "any.so"],
        &["run", "--no-status", "run.toml"],
    ] {
        let (code, err) = with_closed_pipes(d, args, false);
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "tolk {args:?}: {err}");
        assert_eq!(code, 0, "tolk {args:?}: {err}");
    }
    // The run ran to the end all the same.
    let (_, got) = read_wav_i16(&d.join("out/floor.wav"));
    assert_eq!(got.len(), 4_800);
    // `2>&1 | head -0`: with stderr closed too, errors cannot be said, but the exit status
    // still tells (a panic would make it 101).
    write(d, "bad.toml", "[[source]]\nid = \"s\"\nplugin = \"tolk.tonee\"\nlanguage = \"en\"\n");
    assert_eq!(with_closed_pipes(d, &["check", "bad.toml"], true).0, 2);
    assert_eq!(with_closed_pipes(d, &["check", "run.toml"], true).0, 0);
}

// ---------------------------------------------------------------------------------------------
// A live source writing faster than its lane takes it.

#[test]
fn audio_a_live_source_loses_at_its_lane_is_counted_warned_and_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 200 blocks of 0.2 s, 30 ms apart (over 6 s), into a lane of 0.1 s: at least half of
    // every block is refused.
    let config = write(
        d,
        "flood.toml",
        &format!(
            "[plugins]\npath = \"{}\"\n[run]\nsource_buffer_ms = 100\n\n[[source]]\nid = \"mic\"\nplugin = \"com.example.flood\"\nlanguage = \"en\"\n[source.config]\nblocks = 200\nblock_frames = 4800\npause_ms = 30\n\n[[route]]\nsource = \"mic\"\nto = [\"floor\"]\nsinks = [\"file\"]\n{}",
            tolk_tests::fixtures().display(),
            wav("file", "out/floor.wav")
        ),
    );
    let r =
        run_tolk(&config, &["--json-status", "status.json", "--prometheus", "metrics.prom"], Duration::from_secs(60));
    // What the source offered and what the host accepted, in the source's own words.
    let (offered, accepted) = r
        .stderr
        .lines()
        .find_map(|l| {
            let rest = l.split("flood: offered ").nth(1)?;
            let (o, rest) = rest.split_once(" frames, ")?;
            Some((o.parse::<u64>().ok()?, rest.split_once(' ')?.0.parse::<u64>().ok()?))
        })
        .unwrap_or_else(|| panic!("no flood line: {}", r.stderr));
    assert_eq!(offered, 200 * 4800);
    let refused = offered - accepted;
    assert!(refused >= offered / 2, "the lane refused only {refused} of {offered} frames");
    let (_, got) = read_wav_i16(&d.join("out/floor.wav"));
    assert_eq!(got.len() as u64, accepted, "the recording is not what the lane accepted");

    // The host counted it: exit status, summary, JSON status, Prometheus.
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let secs = refused as f64 / 24_000.0;
    let line =
        format!("  source mic: {secs:.1} s of audio refused and lost: it wrote faster than its lane (100 ms) took it");
    assert!(r.stdout.lines().any(|l| l == line), "no line {line:?} in:\n{}", r.stdout);
    assert!(r.stdout.contains("finished with problems"), "{}", r.stdout);
    let st = tolk_tests::status(d);
    assert_eq!(st["exit_status"], 1);
    assert_eq!(st["sources"][0]["refused_s"].as_f64().unwrap(), secs, "{st}");
    assert_eq!(st["routes"][0]["source_refused_s"].as_f64().unwrap(), secs, "{st}");
    let prom = std::fs::read_to_string(d.join("metrics.prom")).unwrap();
    assert!(prom.contains(&format!("tolk_source_refused_seconds{{source=\"mic\"}} {secs}")), "{prom}");
    // Warned while it grew (again after 5 s), at a bounded rate: not once per block.
    let warnings = r.stderr.lines().filter(|l| l.contains("WARN") && l.contains("refused so far")).count();
    assert!((2..=3).contains(&warnings), "{warnings} warnings:\n{}", r.stderr);
}
