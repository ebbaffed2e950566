//! Nothing lost silently at the sink side: a sink that fails (a real full disk, on a small
//! tmpfs), hangs, is slow or is restarted stops or loses only its own audio, never overwrites
//! what it recorded, is warned about while it happens, and every loss is in the summary and the
//! JSON status under its route and makes the exit status 1.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use tolk_tests::{fixtures, read_wav_i16, run, run_in, run_tolk, signal, status, tolk, write, write_wav_i16};

use crate::run::{floor_config, speech, translated_config, wav_sink};

/// A small tmpfs mounted for one test (unmounted on drop, before the test's directory goes).
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`200k`) at `dir`. Without the right to mount (not root) it
    /// prints a skip note and returns `None`, unless `CI` is set (CI runs as root): then it
    /// fails.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).output();
        let why = match out {
            Ok(o) if o.status.success() => return Some(Tmpfs(dir.to_path_buf())),
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => e.to_string(),
        };
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot mount a tmpfs at {} ({why}); CI must run as root",
            dir.display()
        );
        eprintln!("skipped: the full-disk test needs a tmpfs and cannot mount one here ({why})");
        None
    }

    /// Fills the file system up to `free` bytes left, with one file; returns it.
    fn fill(&self, free: u64) -> PathBuf {
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![7u8; 4096];
        while f.write_all(&block).and_then(|()| f.flush()).is_ok() {}
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(free)).unwrap();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A floor route of `stage` (a WAV read as fast as the sinks take it, in 20 ms blocks) into
/// sinks `good` (out/good.wav) and `small` (small/rec.wav), with `policy`.
fn two_recorders(dir: &Path, input: &[i16], policy: &str) -> PathBuf {
    write_wav_i16(&dir.join("in.wav"), 24_000, 1, input);
    let sinks = wav_sink("good", "out/good.wav", "") + &wav_sink("small", "small/rec.wav", "");
    let config = floor_config(dir, &dir.join("in.wav"), "[run]\ndelivery = \"lossless\"", &sinks, &["good", "small"]);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "sinks = [\"good\", \"small\"]\n",
        &format!("sinks = [\"good\", \"small\"]\non_plugin_failure = \"{policy}\"\n"),
    );
    write(dir, "run.toml", &text)
}

/// The JSON status entry of route 0's losses at sink `sink`.
fn route_loss(st: &serde_json::Value, sink: &str) -> serde_json::Value {
    let losses = st["routes"][0]["sink_losses"].as_array().unwrap_or_else(|| panic!("no sink_losses: {st}"));
    losses.iter().find(|l| l["sink"] == sink).unwrap_or_else(|| panic!("no loss at {sink}: {st}")).clone()
}

#[test]
fn a_full_disk_stops_only_that_sink_and_keeps_what_it_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_disk) = Tmpfs::mount(&dir.path().join("small"), "200k") else { return };
    let input = signal(24_000 * 20, 11, 6_000);
    let config = two_recorders(dir.path(), &input, "stop-route");
    let r =
        run_tolk(&config, &["--json-status", "status.json", "--prometheus", "metrics.prom"], Duration::from_secs(60));
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let prom = std::fs::read_to_string(dir.path().join("metrics.prom")).unwrap();
    assert!(
        prom.contains(
            "tolk_route_sink_lost_seconds{route=\"stage→floor\",source=\"stage\",language=\"floor\",sink=\"small\"} "
        ),
        "{prom}"
    );
    // The other sink of the route got everything.
    let (_, good) = read_wav_i16(&dir.path().join("out/good.wav"));
    assert!(good == input, "the good sink got {} of {} samples", good.len(), input.len());
    // The full one is a valid file holding the start of the input, bit for bit.
    let (_, rec) = read_wav_i16(&dir.path().join("small/rec.wav"));
    assert!(rec.len() >= 24_000 && input.starts_with(&rec), "{} samples", rec.len());
    assert!(r.stderr.contains("No space left on device"), "{}", r.stderr);
    assert!(r.stderr.contains("route stage→floor runs on for its other sinks"), "{}", r.stderr);
    // What it lost is said under the route: summary, JSON, exit status.
    assert!(r.stdout.contains("    lost at sink \"small\" (stopped): "), "{}", r.stdout);
    let st = status(dir.path());
    assert_eq!(st["routes"][0]["state"], "done", "{st}");
    let loss = route_loss(&st, "small");
    assert_eq!(loss["state"], "stopped", "{loss}");
    assert!(loss["failures"].as_u64().unwrap() >= 1, "{loss}");
    let lost = loss["dropped_s"].as_f64().unwrap();
    let kept = rec.len() as f64 / 24_000.0;
    assert!(lost >= 20.0 - kept - 2.0, "lost {lost} s, kept {kept} s of 20 s: {loss}");
    assert_eq!(st["routes"][0]["sink_losses"].as_array().unwrap().len(), 1, "{st}");
}

#[test]
fn a_restarted_recorder_continues_its_file_and_the_run_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    let Some(disk) = Tmpfs::mount(&small, "2m") else { return };
    // 100 kB free: the recording fails after about 2 s; room again once the filler goes.
    let filler = disk.fill(100_000);
    let input = signal(24_000 * 20, 12, 6_000);
    let config = two_recorders(dir.path(), &input, "restart");
    let mut cmd = tolk();
    cmd.args(["run", "--no-status", "--json-status", "status.json"]).arg(&config);
    let mut freed = false;
    let r = run_in(cmd, dir.path(), Duration::from_secs(60), |_| {
        let err = std::fs::read_to_string(dir.path().join("stderr.txt")).unwrap_or_default();
        if !freed && err.contains("restarting it") {
            std::fs::remove_file(&filler).unwrap();
            freed = true;
        }
    });
    assert!(freed, "the sink never failed:\n{}", r.stderr);
    // A restart that worked is still a failure of the run, and the summary says what.
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("restarting it in 250 ms (1/5)"), "{}", r.stderr);
    assert!(r.stderr.contains("sink \"small\" failed and was restarted 1 time (latest failure: "), "{}", r.stderr);
    assert!(r.stdout.contains("    lost at sink \"small\" (done): "), "{}", r.stdout);
    assert!(r.stdout.contains("restarted 1 time"), "{}", r.stdout);
    // One file, continued, not overwritten: its start is the input's start, and every sample
    // is the input's at the same position (aligned) or silence where audio was lost.
    let (_, rec) = read_wav_i16(&dir.path().join("small/rec.wav"));
    assert!(!small.join("rec-1.wav").exists());
    assert_eq!(rec.len(), input.len());
    assert!(rec[..24_000] == input[..24_000], "the start of the recording was overwritten");
    assert!(rec[rec.len() - 24_000..] == input[input.len() - 24_000..], "the rest was not recorded");
    assert!(rec.iter().zip(&input).all(|(r, i)| r == i || *r == 0), "the continued file is not aligned");
    let lost = rec.iter().filter(|&&s| s == 0).count();
    assert!((1..24_000 * 3).contains(&lost), "{lost} samples lost");
    let st = status(dir.path());
    let loss = route_loss(&st, "small");
    assert_eq!((loss["restarts"].as_u64(), loss["state"].as_str()), (Some(1), Some("done")), "{loss}");
    assert!(loss["dropped_s"].as_f64().unwrap() > 0.0, "{loss}");
    let (_, good) = read_wav_i16(&dir.path().join("out/good.wav"));
    assert!(good == input);
}

#[test]
fn a_sink_declaring_an_invalid_format_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let input = signal(24_000, 13, 6_000);
    write_wav_i16(&dir.path().join("in.wav"), 24_000, 1, &input);
    let sinks =
        wav_sink("good", "out/good.wav", "") + "\n[[sink]]\nid = \"odd\"\nplugin = \"com.example.bad-format\"\n";
    let extra = format!("[plugins]\npath = \"{}\"", fixtures().display());
    let config = floor_config(dir.path(), &dir.path().join("in.wav"), &extra, &sinks, &["good", "odd"]);
    let want = vec![format!(
        "error: {}: sink[1]: plugin \"com.example.bad-format\" declares an invalid audio format: sample rate 0 Hz \
         is outside 1000..=768000",
        config.display()
    )];
    let errors = |r: &tolk_tests::Run| -> Vec<String> {
        r.err_lines().into_iter().filter(|l| l.starts_with("error: ")).map(String::from).collect()
    };
    let r = run_tolk(&config, &[], Duration::from_secs(30));
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(errors(&r), want, "{}", r.stderr);
    assert!(!dir.path().join("out/good.wav").exists(), "the run started");
    let r = run(tolk().arg("check").arg(&config));
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(errors(&r), want, "{}", r.stderr);
}

#[test]
fn a_live_run_warns_about_no_missing_audio_when_none_was_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = speech(3, 600, 700);
    write_wav_i16(&dir.path().join("in.wav"), 24_000, 1, &input);
    let config = translated_config(dir.path(), &["es"], None, true, "");
    let r = run_tolk(&config, &["--json-status", "status.json"], Duration::from_secs(60));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    // Nothing was dropped: no sink says audio is missing, and tolk reports no drop.
    for word in ["missing", "silence", "dropped", "falling behind"] {
        assert!(!r.stderr.contains(word), "{word}:\n{}", r.stderr);
    }
    let st = status(dir.path());
    assert_eq!(st["routes"][0]["responses"], 3, "{st}");
    assert_eq!(st["routes"][0]["sink_losses"], serde_json::json!([]), "{st}");
}

/// A live floor route (8 s, 20 ms blocks) into `good` and a fixture sink configured by `cfg`.
fn live_with(dir: &Path, secs: usize, cfg: &str, run: &str) -> (PathBuf, Vec<i16>) {
    let input = signal(24_000 * secs, 14, 6_000);
    write_wav_i16(&dir.join("in.wav"), 24_000, 1, &input);
    let sinks = wav_sink("good", "out/good.wav", "")
        + "\n[[sink]]\nid = \"odd\"\nplugin = \"com.example.block-forever\"\n"
        + &format!("[sink.config]\n{cfg}\n");
    let extra = format!("[plugins]\npath = \"{}\"\n[run]\n{run}", fixtures().display());
    let config = floor_config(dir, &dir.join("in.wav"), &extra, &sinks, &["good", "odd"]);
    let text = std::fs::read_to_string(&config).unwrap().replace("realtime = false", "realtime = true\nblock_ms = 20");
    (write(dir, "run.toml", &text), input)
}

#[test]
fn a_hung_sink_is_warned_about_while_it_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let (config, input) = live_with(dir.path(), 8, "block_after = 3", "drain_timeout_ms = 1000");
    let mut cmd = tolk();
    cmd.args(["run", "--no-status", "--json-status", "status.json"]).arg(&config);
    let started = Instant::now();
    let mut seen = None;
    let r = run_in(cmd, dir.path(), Duration::from_secs(60), |_| {
        let err = std::fs::read_to_string(dir.path().join("stderr.txt")).unwrap_or_default();
        if seen.is_none() && err.contains("sink \"odd\" is stalled") {
            seen = Some(started.elapsed());
        }
    });
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    // Warned while the source was still playing, long before the end.
    let seen = seen.unwrap_or_else(|| panic!("no stall warning while running:\n{}", r.stderr));
    assert!(seen < Duration::from_secs(7), "first warned after {seen:?}");
    // At a bounded rate: once, then every 10 s at most (the run takes about 12 s).
    let warnings = r.stderr.matches("sink \"odd\" is stalled").count();
    assert!((1..=2).contains(&warnings), "{warnings} warnings:\n{}", r.stderr);
    let (_, good) = read_wav_i16(&dir.path().join("out/good.wav"));
    assert!(good == input);
    let st = status(dir.path());
    let loss = route_loss(&st, "odd");
    assert_eq!(loss["state"], "abandoned", "{loss}");
    assert!(loss["dropped_s"].as_f64().unwrap() > 6.0, "{loss}");
}

#[test]
fn a_slow_sink_that_drops_audio_fails_the_run_and_says_so_per_route() {
    let dir = tempfile::tempdir().unwrap();
    // 60 ms for each 20 ms block: three times slower than real time.
    let (config, input) = live_with(dir.path(), 6, "delay_ms = 60", "sink_buffer_ms = 500");
    let r = run_tolk(&config, &["--json-status", "status.json"], Duration::from_secs(60));
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("sink \"odd\" is falling behind: its lane dropped"), "{}", r.stderr);
    let line = r.stdout.lines().find(|l| l.starts_with("    lost at sink \"odd\" (done): ")).unwrap_or_else(|| {
        panic!("no loss line in the summary:\n{}", r.stdout);
    });
    assert!(line.contains(" s of audio not delivered"), "{line}");
    let st = status(dir.path());
    assert_eq!(st["exit_status"], 1);
    let loss = route_loss(&st, "odd");
    let dropped = loss["dropped_s"].as_f64().unwrap();
    assert!((2.0..6.0).contains(&dropped), "{loss}");
    assert_eq!((loss["failures"].as_u64(), loss["restarts"].as_u64()), (Some(0), Some(0)), "{loss}");
    let (_, good) = read_wav_i16(&dir.path().join("out/good.wav"));
    assert!(good == input, "the good sink lost audio");
}
