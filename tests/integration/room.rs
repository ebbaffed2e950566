//! Rooms: the floor under the translation (`floor = true` into a WAV sink with `floor_mix`)
//! and the echo gate (`gate_while`), through the real `tolk run` binary, WAV sources and sinks,
//! and tolk's in-process local server with its deterministic test engine (each response is a
//! language marker tone, then the input utterance sample for sample).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use tolk_tests::{active, read_wav_i16, run_tolk, signal, status, write, write_wav_i16};

fn floor_config(dir: &Path, floor: bool) -> PathBuf {
    let sink = if floor {
        "path = \"out/mixed.wav\"\nfloor_mix = true\nduck_db = -20.0\nfloor_db = -6.0\nattack_ms = 20.0\nhold_ms = 200.0\nrelease_ms = 300.0"
    } else {
        "path = \"out/plain.wav\""
    };
    write(
        dir,
        if floor { "mixed.toml" } else { "plain.toml" },
        &format!(
            "[engine]\nprovider = \"local\"\n\n[run]\ndelivery = \"lossless\"\n\n[[source]]\nid = \"stage\"\nplugin = \
             \"tolk.wav\"\nlanguage = \"en\"\n[source.config]\npath = \"in.wav\"\nrealtime = false\n\n[[route]]\nsource = \
             \"stage\"\nto = [\"es\"]\nsinks = [\"rec\", \"captions\"]\nfloor = {floor}\n\n[[sink]]\nid = \"rec\"\nplugin = \
             \"tolk.wav\"\n[sink.config]\n{sink}\n\n[[sink]]\nid = \"captions\"\nplugin = \"tolk.captions\"\n[sink.config]\n\
             jsonl = \"out/{}.jsonl\"\n",
            if floor { "mixed" } else { "plain" }
        ),
    )
}

/// The floor's gain in `mixed` over `range`: least squares of (mixed − translation) on the floor.
fn gain(mixed: &[i16], plain: &[i16], floor: &[i16], range: std::ops::Range<usize>) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for i in range {
        let f = f64::from(floor[i]);
        num += (f64::from(mixed[i]) - f64::from(plain[i])) * f;
        den += f * f;
    }
    num / den
}

#[test]
fn the_floor_is_ducked_under_the_translation_and_restored_in_pauses() {
    let dir = tempfile::tempdir().unwrap();
    // A quiet room tone everywhere (−50 dBFS, below the VAD threshold), two utterances with
    // long pauses: the translation of each plays in the pause after it.
    let n = 24 * 9_000;
    let mut input: Vec<i16> =
        (0..n).map(|i| (150.0 * (i as f64 * 2.0 * std::f64::consts::PI * 97.0 / 24e3).sin()) as i16).collect();
    for (k, at_ms) in [300usize, 4_800].into_iter().enumerate() {
        let u = signal(24 * 1_000, k as u32 + 3, 6_000);
        input[at_ms * 24..at_ms * 24 + u.len()].copy_from_slice(&u);
    }
    write_wav_i16(&dir.path().join("in.wav"), 24_000, 1, &input);

    // The same run twice: without the floor (the translation alone, aligned with the input by
    // lossless delivery) and with it (the floor mixed under the translation).
    for floor in [false, true] {
        let config = floor_config(dir.path(), floor);
        let r = run_tolk(&config, &["--json-status", "status.json"], Duration::from_secs(60));
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    }
    let (_, plain) = read_wav_i16(&dir.path().join("out/plain.wav"));
    let (spec, mixed) = read_wav_i16(&dir.path().join("out/mixed.wav"));
    assert_eq!((spec.sample_rate, spec.channels), (24_000, 1));
    assert!(mixed.len() >= input.len(), "the mix is shorter than the floor: {} < {}", mixed.len(), input.len());
    // Each translation is a marker then the utterance (which carries the room tone, so the
    // two touch): one sounding span per utterance.
    let translations = active(&plain, 240);
    assert_eq!(translations.len(), 2, "expected two translations: {translations:?}");
    assert!(translations[0].0 >= 24 * 1_300, "the first translation starts before its speech ended: {translations:?}");

    let len = input.len().min(plain.len()).min(mixed.len());
    let window = 24 * 50;
    let (duck, level) = (10f64.powf(-20.0 / 20.0), 10f64.powf(-6.0 / 20.0));
    let (mut ducked, mut restored) = (0, 0);
    // Where the translation speaks: 10 ms blocks above the ducker's threshold (−45 dBFS). (The
    // echoed utterances begin and end with the room tone, which is below it.)
    let loud: Vec<bool> = plain.chunks(240).map(|b| b.iter().any(|&x| x.unsigned_abs() > 200)).collect();
    let all_loud = |from: usize, to: usize| (from / 240..to.div_ceil(240)).all(|b| loud.get(b) == Some(&true));
    let none_loud = |from: usize, to: usize| (from / 240..to.div_ceil(240)).all(|b| loud.get(b) != Some(&true));
    for start in (24 * 100..len - window).step_by(window) {
        let end = start + window;
        // Ducked: the translation has spoken for at least the attack (20 ms) and throughout.
        let under = all_loud(start - 24 * 60, end);
        // Restored: silent for the hold (200 ms) and release (300 ms), with a margin.
        let pause = none_loud(start.saturating_sub(24 * 700), end);
        let g = gain(&mixed, &plain, &input, start..end);
        if under {
            assert!(
                (g - duck).abs() < 0.02,
                "floor at {g:.3} under the translation at {} ms (want {duck:.3})",
                start / 24
            );
            ducked += 1;
        } else if pause {
            assert!((g - level).abs() < 0.03, "floor at {g:.3} in a pause at {} ms (want {level:.3})", start / 24);
            restored += 1;
        }
    }
    assert!(ducked >= 30 && restored >= 60, "too few windows checked: {ducked} ducked, {restored} restored");
    // The plain run's recording is unchanged by the floor option of the other: translation only.
    assert!(plain[..translations[0].0].iter().all(|&s| s == 0));
}

#[test]
fn a_gated_microphone_is_silenced_while_the_other_side_plays() {
    let dir = tempfile::tempdir().unwrap();
    // Table A (English) says one thing; table B (Spanish) talks without a pause throughout,
    // as a microphone hearing the room's loudspeakers would. Both in real time.
    let mut a = vec![0i16; 24 * 9_000];
    a[24 * 300..24 * 1_300].copy_from_slice(&signal(24 * 1_000, 11, 6_000));
    write_wav_i16(&dir.path().join("a.wav"), 24_000, 1, &a);
    write_wav_i16(&dir.path().join("b.wav"), 24_000, 1, &signal(24 * 9_000, 12, 3_000));
    let text = "[engine]\nprovider = \"local\"\n\n\
        [[source]]\nid = \"table-a\"\nplugin = \"tolk.wav\"\nlanguage = \"en\"\n[source.config]\npath = \"a.wav\"\nrealtime = true\n\n\
        [[source]]\nid = \"table-b\"\nplugin = \"tolk.wav\"\nlanguage = \"es\"\n[source.config]\npath = \"b.wav\"\nrealtime = true\n\n\
        [[route]]\nsource = \"table-a\"\nto = [\"es\"]\nsinks = [\"speakers-es\"]\n\n\
        [[route]]\nsource = \"table-b\"\nto = [\"en\"]\nsinks = [\"speakers-en\"]\ngate_while = [\"speakers-es\"]\ngate_release_ms = 300\n\n\
        [[sink]]\nid = \"speakers-es\"\nplugin = \"tolk.wav\"\n[sink.config]\npath = \"out/es.wav\"\n\n\
        [[sink]]\nid = \"speakers-en\"\nplugin = \"tolk.wav\"\n[sink.config]\npath = \"out/en.wav\"\n";
    let config = write(dir.path(), "room.toml", text);
    let r = run_tolk(&config, &["--json-status", "status.json"], Duration::from_secs(60));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let st = status(dir.path());
    let routes = st["routes"].as_array().unwrap();
    let route = |name: &str| routes.iter().find(|x| x["route"] == name).unwrap_or_else(|| panic!("{name}: {st}"));
    let (ra, rb) = (route("table-a→es"), route("table-b→en"));
    let played = ra["audio_out_s"].as_f64().unwrap();
    assert!(played > 1.0, "table A was not interpreted: {ra}");
    assert_eq!(ra["input_gated_s"].as_f64().unwrap(), 0.0, "an ungated route was gated: {ra}");
    // B's microphone was closed at least while A's interpretation played (plus the release,
    // as long as B was still talking; B talks for 9 s, A's interpretation ends near 3 s).
    let gated = rb["input_gated_s"].as_f64().unwrap();
    assert!(gated >= played, "table B gated for {gated} s while {played} s of interpretation played: {rb}");
    assert!(gated < 8.0, "table B gated almost throughout: {rb}");
    // Replaced by silence, not dropped: every frame reached the session, none was lost.
    assert_eq!(rb["input_gap_s"].as_f64().unwrap(), 0.0, "{rb}");
    let (sent, got) = (rb["input_sent_frames"].as_f64().unwrap(), rb["audio_in_s"].as_f64().unwrap() * 24_000.0);
    assert!((sent - got).abs() < 1.0, "{rb}");
    // What the server got: B never pauses, so ungated it is one utterance (one response, at
    // the end); the silence put in by the gate ends one utterance and a second one begins.
    assert!(rb["responses"].as_u64().unwrap() >= 2, "the gate did not silence B's input at the server: {rb}");
    // And B's interpretation, which echoes what the server heard (after a marker tone per
    // response), lacks the gated audio: what is not silent in it is at most what B said
    // minus the gated time.
    let (_, en) = read_wav_i16(&dir.path().join("out/en.wav"));
    let heard = active(&en, 240).iter().map(|(s, e)| e - s).sum::<usize>() as f64 / 24e3;
    let markers = rb["responses"].as_f64().unwrap() * 0.2;
    assert!(heard > 1.0, "nothing of table B was interpreted");
    assert!(heard <= 9.0 - gated + markers + 0.05, "B's interpretation has {heard} s of sound; gated {gated} s: {rb}");
}
