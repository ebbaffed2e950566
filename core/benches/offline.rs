//! The offline engine on this machine (feature `offline`; models from `scripts/models.sh`):
//! the keynote cut into turns by the server VAD's detector (400 ms silence, as a live session
//! would), each turn through the engine's whole cascade into Spanish and into Catalan (two
//! routes), `TOLK_BENCH_RUNS` passes (default 3), the recognition cache cleared every time so
//! that Whisper runs for every turn. Prints median and p95 of, per turn:
//!
//! - ASR, MT and TTS seconds;
//! - ear-voice span: end of the source turn → first translated audio chunk = the VAD's
//!   end-of-speech wait (400 ms) + the engine's time to its first audio chunk;
//! - CPU seconds of this process and its espeak-ng calls per second of source speech, per route
//!   (≤ 1.0 for two routes keeps them within real time on 2 cores);
//!
//! and ASR word accuracy on the keynote (reference: `configs/samples/keynote-en.txt`).
//!
//! ```sh
//! cargo bench -p tolk-core --features offline --bench offline
//! ```

use std::time::{Duration, Instant};

use tolk_core::{
    audio::vad::{Vad, VadEvent, VadParams},
    serve::{
        engine::{Chunk, Engine, EngineRequest},
        offline::OfflineEngine,
    },
};

const SILENCE_MS: u32 = 400;

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14–17 (utime, stime, and those of waited-for children: the espeak-ng calls) of
    // /proc/PID/stat, counted after the command name. The long-running apertium pipelines are
    // not waited for, so their CPU (a few ms per turn, see MT) is not in it.
    (ticks(11) + ticks(12) + ticks(13) + ticks(14)) / 100.0
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[((v.len() - 1) as f64 * q).round() as usize] }
}

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric() && c != '\'').filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

fn word_accuracy(reference: &str, hyp: &str) -> f64 {
    let (r, h) = (words(reference), words(hyp));
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(rw != hw)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    1.0 - prev[h.len()] as f64 / r.len().max(1) as f64
}

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut reader = hound::WavReader::open(root.join("configs/samples/keynote-en.wav")).expect("keynote");
    let keynote: Vec<i16> = reader.samples::<i16>().map(|s| s.expect("sample")).collect();
    let reference = std::fs::read_to_string(root.join("configs/samples/keynote-en.txt")).expect("reference text");
    let runs: usize = std::env::var("TOLK_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);

    // The turns, as the server VAD cuts them (its end includes the silence wait; drop it).
    let mut input = keynote.clone();
    input.resize(input.len() + 24 * 1500, 0);
    let mut vad = Vad::new(VadParams { threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: SILENCE_MS }, 0);
    let mut evs = Vec::new();
    vad.push(&input, &mut evs);
    let mut turns = Vec::new();
    let mut start = 0;
    for e in evs {
        match e {
            VadEvent::SpeechStarted { start: s } => start = s as usize,
            VadEvent::SpeechStopped { end } => turns.push(input[start..end as usize].to_vec()),
        }
    }
    let speech_secs: f64 = turns.iter().map(|t| t.len() as f64 / 24_000.0).sum();

    let t = Instant::now();
    let engine = OfflineEngine::load().unwrap_or_else(|e| panic!("{e}"));
    println!(
        "offline bench: {} turns, {speech_secs:.1} s of speech; engine loaded in {:.2} s",
        turns.len(),
        t.elapsed().as_secs_f64()
    );

    let (mut asr, mut mt, mut tts, mut evs_s) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut cpu_per_route = Vec::new();
    let mut heard = String::new();
    for run in 0..runs {
        for lang in ["es", "ca"] {
            let cpu0 = cpu_seconds();
            for (i, turn) in turns.iter().enumerate() {
                engine.clear_cache();
                let started = Instant::now();
                let mut chunks = engine.respond(&EngineRequest {
                    utterance: i as u64 + 1,
                    samples: turn,
                    text: None,
                    language: lang,
                    voice: "alloy",
                    audio: true,
                });
                let mut first_audio = None;
                loop {
                    match chunks.next() {
                        Some(Chunk::Pending) => std::thread::sleep(Duration::from_millis(1)),
                        Some(Chunk::Audio(_)) if first_audio.is_none() => first_audio = Some(started.elapsed()),
                        Some(_) => {}
                        None => break,
                    }
                }
                if let Some(f) = first_audio {
                    evs_s.push(SILENCE_MS as f64 / 1000.0 + f.as_secs_f64());
                }
                if run == 0 && lang == "es" {
                    let text = engine.transcribe(i as u64 + 1, turn, "en");
                    heard.push_str(&text);
                    heard.push(' ');
                }
            }
            cpu_per_route.push((cpu_seconds() - cpu0) / speech_secs);
            for t in engine.take_timings() {
                asr.push(t.asr);
                mt.push(t.mt);
                tts.push(t.tts);
            }
        }
    }
    let row = |name: &str, v: &mut Vec<f64>| {
        println!("{name:<34} median {:>7.3}  p95 {:>7.3}  (n = {})", quantile(v, 0.5), quantile(v, 0.95), v.len());
    };
    row("ASR s per turn (tiny.en)", &mut asr);
    row("MT s per turn (apertium)", &mut mt);
    row("TTS s per turn (espeak-ng)", &mut tts);
    row("ear-voice span s", &mut evs_s);
    row("CPU s per speech s, per route", &mut cpu_per_route);
    println!("recognised: {}", heard.trim());
    println!("ASR word accuracy on the keynote: {:.1} %", word_accuracy(&reference, &heard) * 100.0);
}
