//! `tolk.speaker` (sink) — plays a route's interpretation on loudspeakers or headphones through
//! cpal, optionally with the original speech (the *floor*) ducked underneath.
//!
//! The decisions a reader must know:
//!
//! - **All cpal code is in the mic plugin's `device.rs`**, which this crate includes by path:
//!   one file talks to the audio backend for both device plugins. This file never names cpal.
//!   Likewise the device thread's keeping of the stream (loss detection, reopening) and the
//!   shared config checks are the mic plugin's `supervise.rs`, included the same way.
//! - **Queues, not locks.** `on_audio` (the sink's host thread) pushes into lock-free rings
//!   ([`rtrb`]); the audio callback pops from them, mixes, and writes the device's native
//!   frames. The callback never blocks and never allocates. The playback state it reads sits
//!   behind a mutex that it only ever `try_lock`s; the only other user is this plugin's own
//!   device thread while the device is away, never the host.
//! - **Native format at the edge.** The sink asks the host for mono `f32` at the device's own
//!   rate (or `sample_rate`); the host resamples. `channel` plays on one channel of a
//!   multi-channel interface (a language per headset channel), silence on the others; without
//!   it, every channel gets the signal.
//! - **Floor mix.** With `floor_mix = true`, blocks of role [`AudioRole::Floor`] (the source's
//!   own speech, sent by routes that mix the floor) play under the translation through a
//!   [`Ducker`]: `duck_db` while the translation speaks, `floor_db` in its pauses, with
//!   `attack_ms`/`release_ms` ramps. Without it, floor blocks are ignored. The floor is real
//!   time, so its queue is kept short (`floor_latency_ms`): excess is skipped, not delayed.
//! - **Losses are counted and logged.** Translation that does not fit the queue (overrun),
//!   playback running dry in the middle of a continuous stream (underrun: a block arrives
//!   that continues the previous one after the queue had emptied), and backend xruns are
//!   counted, logged as warnings once a second when they grow, and summed up at `stop`.
//! - **An unplugged device does not stop the route.** The device thread notices (backend
//!   error, or callbacks stopping for 2 s), logs it, discards audio in real time while the
//!   device is away (so it does not come back minutes behind) and reopens it every
//!   `reopen_ms`.

// NOTE: one cpal file for both device plugins; this crate uses its output half.
#[allow(dead_code)]
#[path = "../../source-mic/src/device.rs"]
mod device;
#[path = "../../source-mic/src/supervise.rs"]
mod supervise;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use device::{Channel, Counters, Direction};
use supervise::{DeviceConfig, Keeper};
use tolk_plugin_api::{
    device::DeviceInfo,
    dsp::{Ducker, DuckerSettings},
    prelude::*,
};

// 1. The config.
/// The `[sink.config]` table of `tolk.speaker`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpeakerConfig {
    /// `default`, a device's exact name, or a unique part of it (case-insensitive).
    pub device: String,
    /// The channel to play on, counting from 1; absent or 0 plays on every channel.
    pub channel: u16,
    /// Ask the device for this rate instead of its default (0 = the device's default).
    pub sample_rate: u32,
    /// The device buffer in frames (a fixed size: small is low latency).
    pub buffer_frames: u32,
    /// What to do when the device is not there at start: `error` or `wait`.
    pub on_missing: OnMissing,
    /// How often to look for a lost device, ms.
    pub reopen_ms: u64,
    /// Most translation audio queued ahead of playback, ms (Realtime output arrives faster
    /// than real time); beyond it, new audio is dropped and counted.
    pub queue_ms: u64,
    /// Mix the floor (blocks of role `floor`) under the translation, ducked.
    pub floor_mix: bool,
    /// Floor level while the translation speaks, dB.
    pub duck_db: f32,
    /// Floor level in the translation's pauses, dB.
    pub floor_db: f32,
    /// Ramp down, ms.
    pub attack_ms: f32,
    /// Ramp up, ms.
    pub release_ms: f32,
    /// Translation silence before the floor comes back up, ms.
    pub hold_ms: f32,
    /// Most floor audio kept queued, ms; the excess is skipped so the floor stays live.
    pub floor_latency_ms: u64,
}

impl Default for SpeakerConfig {
    fn default() -> Self {
        let d = DuckerSettings::default();
        SpeakerConfig {
            device: "default".into(),
            channel: 0,
            sample_rate: 0,
            buffer_frames: 480,
            on_missing: OnMissing::Error,
            reopen_ms: 1000,
            queue_ms: 30_000,
            floor_mix: false,
            duck_db: d.duck_db,
            floor_db: d.floor_db,
            attack_ms: d.attack_ms,
            release_ms: d.release_ms,
            hold_ms: d.hold_ms,
            floor_latency_ms: 100,
        }
    }
}

/// What `new` and `start` do when the device is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnMissing {
    /// Fail with a config error that lists the devices that exist.
    Error,
    /// Carry on: discard audio in real time and open the device when it appears.
    Wait,
}

/// How long `stop` lets queued translation finish playing.
const DRAIN_AT_STOP: Duration = Duration::from_millis(1500);

/// What the audio callback reads: the two queues and the ducker. Shared with the callback
/// through an `Arc<Mutex<_>>` that the callback only `try_lock`s (see the crate docs).
struct Playback {
    translation: rtrb::Consumer<f32>,
    floor: rtrb::Consumer<f32>,
    ducker: Option<Ducker>,
    /// Floor samples kept at most; the callback skips the excess.
    floor_max: usize,
    /// The previous callback ended with translation still queued.
    playing: bool,
    counters: Arc<Counters>,
    /// Times the translation queue ran dry while playing (the sink decides which were
    /// underruns).
    dry_outs: Arc<std::sync::atomic::AtomicU64>,
}

impl Playback {
    /// Fills `out` (mono): the real-time half of the sink, run inside the audio callback.
    fn render(&mut self, out: &mut [f32]) {
        let excess = self.floor.slots().saturating_sub(self.floor_max);
        if excess > 0
            && let Ok(chunk) = self.floor.read_chunk(excess)
        {
            chunk.commit_all();
        }
        let mut dry = false;
        for s in out.iter_mut() {
            let t = match self.translation.pop() {
                Ok(v) => v,
                Err(_) => {
                    dry = true;
                    0.0
                }
            };
            *s = match self.ducker.as_mut() {
                Some(d) => d.mix_sample(t, self.floor.pop().unwrap_or(0.0)),
                None => t,
            };
        }
        if dry && self.playing {
            self.dry_outs.fetch_add(1, Ordering::Relaxed);
        }
        self.playing = !self.translation.is_empty() || !dry;
        let _ = &self.counters;
    }

    /// Throws away `frames` of queued audio (the device is away: keep the queues live).
    fn discard(&mut self, frames: usize) {
        for q in [&mut self.translation, &mut self.floor] {
            let n = q.slots().min(frames);
            if let Ok(chunk) = q.read_chunk(n) {
                chunk.commit_all();
            }
        }
    }
}

// 2. The plugin struct.
/// The speaker sink.
pub struct Speaker {
    config: SpeakerConfig,
    channel: Channel,
    ducking: Option<DuckerSettings>,
    /// The rate we asked the host for and open the device at.
    rate: u32,
    name: String,
    host: Host,
    /// From `start` to `stop`: the producer halves of the queues, the device thread.
    running: Option<Running>,
}

/// A started speaker.
struct Running {
    translation: rtrb::Producer<f32>,
    floor: rtrb::Producer<f32>,
    counters: Arc<Counters>,
    dry_outs: Arc<std::sync::atomic::AtomicU64>,
    /// Dry-outs already accounted for at the last translation block.
    dry_seen: u64,
    /// Where the last translation block ended on its stream clock.
    last_end: Option<u64>,
    /// Translation frames dropped because the queue was full.
    overrun_frames: u64,
    floor_dropped: u64,
    /// Set by `stop`; the device thread checks it every poll. Joined by `stop`.
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Reusable conversion buffer for i16 blocks (the sink thread, not the callback).
    scratch: Vec<f32>,
}

// 3. The trait impl.
impl OutputSink for Speaker {
    const ID: &'static str = "tolk.speaker";
    const NAME: &'static str = "Speaker";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "plays the interpretation on a sound card, optionally over the ducked floor";
    // `wait`: the conformance kit must run on a machine without any audio device.
    const EXAMPLE_CONFIG: &'static str = "device = \"default\"\non_missing = \"wait\"\nfloor_mix = true\n";
    const CAPABILITIES: &'static [&'static str] = &[tolk_plugin_api::device::CAPABILITY];

    type Config = SpeakerConfig;

    fn new(config: SpeakerConfig, host: &Host) -> Result<Self, PluginError> {
        supervise::check_device(&config.device, config.buffer_frames, config.reopen_ms)?;
        if !(100..=600_000).contains(&config.queue_ms) {
            return Err(PluginError::config(format!("queue_ms: {} is outside 100..=600000", config.queue_ms)));
        }
        if !(10..=2_000).contains(&config.floor_latency_ms) {
            return Err(PluginError::config(format!(
                "floor_latency_ms: {} is outside 10..=2000",
                config.floor_latency_ms
            )));
        }
        supervise::check_rate(config.sample_rate)?;
        let settings = DuckerSettings {
            duck_db: config.duck_db,
            floor_db: config.floor_db,
            attack_ms: config.attack_ms,
            release_ms: config.release_ms,
            hold_ms: config.hold_ms,
            ..DuckerSettings::default()
        };
        settings.validate().map_err(PluginError::config)?;
        let (channel, name, rate) = supervise::resolve(
            Direction::Output,
            &DeviceConfig {
                device: &config.device,
                channel: config.channel,
                sample_rate: config.sample_rate,
                buffer_frames: config.buffer_frames,
                wait: config.on_missing == OnMissing::Wait,
            },
            host,
        )?;
        let ducking = config.floor_mix.then_some(settings);
        Ok(Speaker { config, channel, ducking, rate, name, host: host.clone(), running: None })
    }

    fn format(&self) -> Option<AudioFormat> {
        Some(AudioFormat::new(self.rate, 1, SampleFormat::F32))
    }

    fn start(&mut self) -> Result<(), PluginError> {
        if self.running.is_some() {
            return Err(PluginError::state("already started"));
        }
        let ms = |ms: u64| (ms * u64::from(self.rate) / 1000).max(1) as usize;
        let (t_prod, t_cons) = rtrb::RingBuffer::<f32>::new(ms(self.config.queue_ms));
        let floor_max = ms(self.config.floor_latency_ms);
        let (f_prod, f_cons) = rtrb::RingBuffer::<f32>::new(floor_max * 2 + self.config.buffer_frames as usize);
        let counters = Arc::new(Counters::default());
        let dry_outs = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let playback = Arc::new(Mutex::new(Playback {
            translation: t_cons,
            floor: f_cons,
            ducker: self.ducking.map(|s| Ducker::new(s, self.rate)),
            floor_max,
            playing: false,
            counters: Arc::clone(&counters),
            dry_outs: Arc::clone(&dry_outs),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = DeviceThread {
            wanted: self.config.device.clone(),
            name: self.name.clone(),
            rate: self.rate,
            channel: self.channel,
            buffer_frames: self.config.buffer_frames,
            reopen: Duration::from_millis(self.config.reopen_ms),
            wait_if_missing: self.config.on_missing == OnMissing::Wait,
            host: self.host.clone(),
            stop: Arc::clone(&stop),
            playback,
            counters: Arc::clone(&counters),
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(format!("tolk-speaker-{}", self.host.instance_id()))
            .spawn(move || ctx.run(ready_tx))
            .map_err(|e| PluginError::io(format!("cannot start the device thread: {e}")))?;
        let thread = supervise::await_ready(&ready_rx, thread, &stop, &self.name)?;
        self.running = Some(Running {
            translation: t_prod,
            floor: f_prod,
            counters,
            dry_outs,
            dry_seen: 0,
            last_end: None,
            overrun_frames: 0,
            floor_dropped: 0,
            stop,
            thread: Some(thread),
            scratch: Vec::new(),
        });
        Ok(())
    }

    fn on_audio(&mut self, block: &AudioBlock<'_>) -> Result<(), PluginError> {
        let Some(run) = self.running.as_mut() else {
            return Err(PluginError::state("audio before start"));
        };
        let got = block.format();
        if (got.sample_rate, got.channels) != (self.rate, 1) {
            return Err(PluginError::unsupported(format!(
                "a block in {got} does not fit the speaker ({})",
                AudioFormat::new(self.rate, 1, SampleFormat::F32)
            )));
        }
        let samples: &[f32] = match block.samples() {
            Samples::F32(s) => s,
            Samples::I16(s) => {
                run.scratch.clear();
                run.scratch.extend(s.iter().map(|&x| f32::from(x) / 32768.0));
                &run.scratch
            }
        };
        match block.role() {
            AudioRole::Floor => {
                if self.ducking.is_some() {
                    run.floor_dropped += push(&mut run.floor, samples) as u64;
                }
            }
            AudioRole::Translation => {
                if samples.is_empty() {
                    return Ok(());
                }
                // A block that continues the previous one, after the queue ran dry in between:
                // the listener heard a gap inside continuous speech.
                let dry = run.dry_outs.load(Ordering::Relaxed);
                if run.last_end == Some(block.frame_offset()) && dry > run.dry_seen {
                    Counters::add(&run.counters.underruns, 1);
                }
                run.dry_seen = dry;
                run.last_end = Some(block.frame_offset() + samples.len() as u64);
                let lost = push(&mut run.translation, samples);
                if lost > 0 {
                    run.overrun_frames += lost as u64;
                    Counters::add(&run.counters.overrun_frames, lost as u64);
                }
            }
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PluginError> {
        let Some(mut run) = self.running.take() else {
            return Ok(());
        };
        // Let what is queued finish playing, within the bound of a control call.
        let until = Instant::now() + DRAIN_AT_STOP;
        while run.translation.slots() < run.translation.buffer().capacity() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        run.stop.store(true, Ordering::Release);
        if let Some(t) = run.thread.take() {
            t.join().map_err(|_| PluginError::other("the device thread panicked"))?;
        }
        if run.floor_dropped > 0 {
            self.host.debug(format!("{} floor frames did not fit the floor queue", run.floor_dropped));
        }
        Ok(())
    }

    fn devices() -> Result<Vec<DeviceInfo>, PluginError> {
        device::list(Direction::Output)
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        if let Some(run) = self.running.as_mut() {
            // No draining on drop: just stop the device thread.
            run.stop.store(true, Ordering::Release);
            if let Some(t) = run.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Pushes as much of `samples` as fits; returns how many did not.
fn push(q: &mut rtrb::Producer<f32>, samples: &[f32]) -> usize {
    let n = q.slots().min(samples.len());
    if let Ok(mut chunk) = q.write_chunk(n) {
        let (a, b) = chunk.as_mut_slices();
        let split = a.len();
        a.copy_from_slice(&samples[..split]);
        b.copy_from_slice(&samples[split..n]);
        chunk.commit_all();
    }
    samples.len() - n
}

/// Everything the device thread needs; moved onto it at `start`.
struct DeviceThread {
    wanted: String,
    name: String,
    rate: u32,
    channel: Channel,
    buffer_frames: u32,
    reopen: Duration,
    wait_if_missing: bool,
    host: Host,
    stop: Arc<AtomicBool>,
    playback: Arc<Mutex<Playback>>,
    counters: Arc<Counters>,
}

impl DeviceThread {
    fn open(&self, backend: &device::Backend) -> Result<device::Stream, PluginError> {
        let playback = Arc::clone(&self.playback);
        let counters = Arc::clone(&self.counters);
        device::open_output(
            backend,
            &self.wanted,
            self.rate,
            self.channel,
            self.buffer_frames,
            Arc::clone(&self.counters),
            move |out| {
                match playback.try_lock() {
                    Ok(mut p) => p.render(out),
                    Err(_) => {
                        // Only while the device thread discards audio for an absent device: play
                        // silence, count it.
                        out.fill(0.0);
                        Counters::add(&counters.xruns, 1);
                        Counters::add(&counters.xrun_frames, out.len() as u64);
                    }
                }
            },
        )
    }

    fn run(self, ready: std::sync::mpsc::SyncSender<Result<(), PluginError>>) {
        let mut backend = device::Backend::new();
        let mut keeper = Keeper::new(
            Direction::Output,
            &self.wanted,
            &self.name,
            self.reopen,
            &self.host,
            "playing",
            "discarding audio",
            "no callbacks",
        );
        let started = format!("playing on {:?} at {} Hz", self.name, self.rate);
        let Some((mut stream, mut absent)) =
            keeper.first_open(self.open(&backend), self.wait_if_missing, started, &ready)
        else {
            return;
        };
        let poll = Duration::from_millis(10);
        let mut last_report = Instant::now();
        let mut seen = (0, 0, 0);
        let c = &self.counters;
        while !self.stop.load(Ordering::Acquire) {
            keeper.check(&mut stream, &mut absent, &backend, c);
            if let Some((since, discarded, _)) = absent.as_mut() {
                let due = (since.elapsed().as_secs_f64() * f64::from(self.rate)) as u64;
                if due > *discarded {
                    if let Ok(mut p) = self.playback.lock() {
                        p.discard((due - *discarded) as usize);
                    }
                    *discarded = due;
                }
            }
            keeper.retry(&mut stream, &mut absent, &mut backend, c, |b| self.open(b));
            if last_report.elapsed() >= Duration::from_secs(1) {
                let now = (Counters::get(&c.overrun_frames), Counters::get(&c.underruns), Counters::get(&c.xruns));
                if now != seen {
                    self.host.warn(format!(
                        "playback losses: {} frames overrun (queue full), {} underruns, {} device xruns ({} frames of silence) (totals)",
                        now.0,
                        now.1,
                        now.2,
                        Counters::get(&c.xrun_frames)
                    ));
                    seen = now;
                }
                last_report = Instant::now();
            }
            std::thread::sleep(poll);
        }
        drop(stream);
        self.host.info(format!(
            "stopped: {} frames played; overruns {} frames, underruns {}, device xruns {} ({} frames), device losses {}",
            Counters::get(&c.frames),
            Counters::get(&c.overrun_frames),
            Counters::get(&c.underruns),
            Counters::get(&c.xruns),
            Counters::get(&c.xrun_frames),
            keeper.losses,
        ));
    }
}

// 4. The export line.
tolk_plugin_api::export_plugins! {
    sinks: [Speaker],
}

#[cfg(test)]
mod tests {
    use super::*;
    use tolk_plugin_api::testing::{check_sink, new_sink};

    #[test]
    fn passes_the_conformance_kit() {
        let report = check_sink::<Speaker>(Speaker::EXAMPLE_CONFIG);
        assert!(report.passed(), "{report}");
    }

    #[test]
    fn config_errors_name_the_key() {
        let e = |toml: &str| match new_sink::<Speaker>(toml) {
            Ok(_) => panic!("accepted: {toml}"),
            Err(e) => e.to_string(),
        };
        assert_eq!(e("queue_ms = 5"), "queue_ms: 5 is outside 100..=600000");
        assert_eq!(e("floor_mix = true\nduck_db = 3.0"), "duck_db: 3 is above floor_db (0); ducking lowers the floor");
        assert_eq!(e("attack_ms = 0.0"), "attack_ms: 0 is outside 1..=10000 (a shorter ramp clicks)");
        let missing = e("device = \"no such speaker 7f3a\"");
        assert!(missing.starts_with("device: no output device matches \"no such speaker 7f3a\"; "), "{missing}");
    }

    fn playback(ducking: bool) -> (rtrb::Producer<f32>, rtrb::Producer<f32>, Playback) {
        let (tp, tc) = rtrb::RingBuffer::new(48_000);
        let (fp, fc) = rtrb::RingBuffer::new(48_000);
        let p = Playback {
            translation: tc,
            floor: fc,
            ducker: ducking.then(|| Ducker::new(DuckerSettings::default(), 48_000)),
            floor_max: 4_800,
            playing: false,
            counters: Arc::new(Counters::default()),
            dry_outs: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        };
        (tp, fp, p)
    }

    #[test]
    fn render_plays_translation_and_counts_dry_outs() {
        let (mut t, _f, mut p) = playback(false);
        push(&mut t, &[0.5; 100]);
        let mut out = [1.0f32; 64];
        p.render(&mut out);
        assert!(out.iter().all(|&s| s == 0.5));
        p.render(&mut out);
        assert_eq!(&out[..36], &[0.5; 36]);
        assert!(out[36..].iter().all(|&s| s == 0.0));
        assert_eq!(p.dry_outs.load(Ordering::Relaxed), 1);
        p.render(&mut out);
        assert_eq!(p.dry_outs.load(Ordering::Relaxed), 1, "silence after silence is no new dry-out");
    }

    #[test]
    fn render_ducks_the_floor_under_speech() {
        let (mut t, mut f, mut p) = playback(true);
        // Floor alone: full level.
        push(&mut f, &[0.25; 480]);
        let mut out = [0.0f32; 480];
        p.render(&mut out);
        assert!(out.iter().all(|&s| (s - 0.25).abs() < 1e-6));
        // Translation speaks: within the attack (60 ms) the floor is down at -18 dB.
        push(&mut t, &[0.1; 4_800]);
        push(&mut f, &[0.25; 4_800]);
        let mut out = vec![0.0f32; 4_800];
        p.render(&mut out);
        let floor_part = out[4_799] - 0.1;
        assert!((floor_part - 0.25 * tolk_plugin_api::dsp::db_to_gain(-18.0)).abs() < 1e-4, "{floor_part}");
        assert!(out.windows(2).all(|w| w[1] <= w[0] + 1e-6), "the duck ramps down without a jump up");
    }

    #[test]
    fn the_floor_queue_stays_short() {
        let (_t, mut f, mut p) = playback(true);
        push(&mut f, &vec![0.1; 20_000]);
        let mut out = [0.0f32; 10];
        p.render(&mut out);
        assert_eq!(p.floor.slots(), 4_800 - 10, "excess floor skipped to floor_max");
    }
}
