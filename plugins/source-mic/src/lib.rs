//! `tolk.mic` (source) — a microphone, a mixer's feed into an audio interface, or any other
//! capture device, through cpal.
//!
//! The decisions a reader must know:
//!
//! - **All cpal code is in `device.rs`.** This file never names cpal: it resolves the device
//!   at `new` (so `tolk check` reports a missing device, listing the ones that exist), and
//!   owns the device thread.
//! - **The stream lives on a thread the plugin owns** (`tolk-mic-<id>`). The audio callback
//!   only converts the device's native frames to mono `f32` and pushes them into a lock-free
//!   ring ([`rtrb`]); it never blocks, never allocates, never calls the host. The device
//!   thread drains the ring into the host's [`AudioWriter`] every few milliseconds.
//! - **Native format at the edge.** The source declares the device's own rate (or
//!   `sample_rate`), mono, `f32`; the host resamples to the session rate. `channel` picks one
//!   channel of a multi-channel interface; without it, all channels are mixed.
//! - **Nothing is silent about losses.** Samples the ring could not hold (overruns), samples
//!   the host did not accept, and xruns the backend reports are counted; increases are logged
//!   as warnings once a second and the totals at `stop`.
//! - **An unplugged device does not stop the route.** When the backend reports the device gone
//!   (or the callbacks stop for 2 s), the thread logs it, writes silence in real time so the
//!   route's clock keeps running, and tries to reopen the device every `reopen_ms`; when it
//!   returns, capture resumes. With `on_missing = "wait"` a device that is absent at start is
//!   handled the same way instead of being an error.

// NOTE: `device.rs` serves both device plugins (tolk.speaker includes it by path), so each
// crate uses only its own direction's half. `supervise.rs` (keeping a device thread's stream
// alive, the shared config checks) is shared the same way.
#[allow(dead_code)]
mod device;
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
use tolk_plugin_api::{device::DeviceInfo, prelude::*};

// 1. The config.
/// The `[source.config]` table of `tolk.mic`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MicConfig {
    /// `default`, a device's exact name, or a unique part of it (case-insensitive).
    pub device: String,
    /// The channel to capture, counting from 1; absent or 0 mixes all channels to mono.
    pub channel: u16,
    /// Ask the device for this rate instead of its default (0 = the device's default).
    pub sample_rate: u32,
    /// The device buffer in frames (a fixed size: small is low latency; 480 is 10 ms at 48 kHz).
    pub buffer_frames: u32,
    /// What to do when the device is not there at start: `error` (a config error listing the
    /// devices that exist) or `wait` (write silence and open it when it appears).
    pub on_missing: OnMissing,
    /// How often to look for a lost device, ms.
    pub reopen_ms: u64,
}

impl Default for MicConfig {
    fn default() -> Self {
        MicConfig {
            device: "default".into(),
            channel: 0,
            sample_rate: 0,
            buffer_frames: 480,
            on_missing: OnMissing::Error,
            reopen_ms: 1000,
        }
    }
}

/// What `new` and `start` do when the device is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnMissing {
    /// Fail with a config error that lists the devices that exist.
    Error,
    /// Carry on: write silence and open the device when it appears.
    Wait,
}

// 2. The plugin struct.
/// The microphone source.
pub struct Mic {
    config: MicConfig,
    channel: Channel,
    /// The rate we declared in `format()` and open the device at.
    rate: u32,
    /// The device's name as resolved at `new` (or the configured name when it was absent).
    name: String,
    host: Host,
    /// Set by `stop`; the device thread checks it every poll.
    stop: Arc<AtomicBool>,
    /// The device thread: owns the stream and the ring's consumer. Joined by `stop`.
    thread: Option<JoinHandle<()>>,
}

// 3. The trait impl.
impl AudioSource for Mic {
    const ID: &'static str = "tolk.mic";
    const NAME: &'static str = "Microphone";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "captures a microphone or audio interface input (one channel or a mix)";
    // `wait`: the conformance kit must run on a machine without any audio device; there the
    // source writes silence (and opens the default device if there is one).
    const EXAMPLE_CONFIG: &'static str = "device = \"default\"\non_missing = \"wait\"\n";
    const CAPABILITIES: &'static [&'static str] = &[tolk_plugin_api::device::CAPABILITY];

    type Config = MicConfig;

    fn new(config: MicConfig, host: &Host) -> Result<Self, PluginError> {
        supervise::check_device(&config.device, config.buffer_frames, config.reopen_ms)?;
        supervise::check_rate(config.sample_rate)?;
        let (channel, name, rate) = supervise::resolve(
            Direction::Input,
            &DeviceConfig {
                device: &config.device,
                channel: config.channel,
                sample_rate: config.sample_rate,
                buffer_frames: config.buffer_frames,
                wait: config.on_missing == OnMissing::Wait,
            },
            host,
        )?;
        Ok(Mic {
            config,
            channel,
            rate,
            name,
            host: host.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        })
    }

    fn format(&self) -> AudioFormat {
        AudioFormat::new(self.rate, 1, SampleFormat::F32)
    }

    fn start(&mut self, writer: AudioWriter) -> Result<(), PluginError> {
        if self.thread.is_some() {
            return Err(PluginError::state("already started"));
        }
        self.stop.store(false, Ordering::Release);
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let ctx = DeviceThread {
            wanted: self.config.device.clone(),
            name: self.name.clone(),
            rate: self.rate,
            channel: self.channel,
            buffer_frames: self.config.buffer_frames,
            reopen: Duration::from_millis(self.config.reopen_ms),
            wait_if_missing: self.config.on_missing == OnMissing::Wait,
            host: self.host.clone(),
            stop: Arc::clone(&self.stop),
            writer,
        };
        let thread = std::thread::Builder::new()
            .name(format!("tolk-mic-{}", self.host.instance_id()))
            .spawn(move || ctx.run(ready_tx))
            .map_err(|e| PluginError::io(format!("cannot start the device thread: {e}")))?;
        // The thread opens the device (the stream must live on it) and says how that went.
        self.thread = Some(supervise::await_ready(&ready_rx, thread, &self.stop, &self.name)?);
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PluginError> {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.join().map_err(|_| PluginError::other("the device thread panicked"))?;
        }
        Ok(())
    }

    fn devices() -> Result<Vec<DeviceInfo>, PluginError> {
        device::list(Direction::Input)
    }
}

impl Drop for Mic {
    fn drop(&mut self) {
        let _ = AudioSource::stop(self);
    }
}

/// Everything the device thread needs; moved onto it at `start`.
struct DeviceThread {
    /// The configured device (what we look for when reopening).
    wanted: String,
    /// Its display name, for log lines.
    name: String,
    rate: u32,
    channel: Channel,
    buffer_frames: u32,
    reopen: Duration,
    wait_if_missing: bool,
    host: Host,
    stop: Arc<AtomicBool>,
    writer: AudioWriter,
}

/// The producer half of the ring between the callback and the device thread. The mutex only
/// lets the successive streams of a device (after a reopen) share it: each stream's callback
/// holds an `Arc` and uses `try_lock`, and nobody else ever locks it. The old stream is dropped
/// before a new one opens, so the lock is never contended; if it ever were, the callback would
/// count the chunk as an overrun rather than wait.
type SharedProducer = Arc<Mutex<rtrb::Producer<f32>>>;

impl DeviceThread {
    fn open(
        &self,
        backend: &device::Backend,
        producer: &SharedProducer,
        counters: &Arc<Counters>,
    ) -> Result<device::Stream, PluginError> {
        let producer = Arc::clone(producer);
        let c = Arc::clone(counters);
        device::open_input(
            backend,
            &self.wanted,
            self.rate,
            self.channel,
            self.buffer_frames,
            Arc::clone(counters),
            move |mono| {
                let Ok(mut p) = producer.try_lock() else {
                    Counters::add(&c.overrun_frames, mono.len() as u64);
                    return;
                };
                let n = p.slots().min(mono.len());
                if let Ok(mut chunk) = p.write_chunk(n) {
                    let (a, b) = chunk.as_mut_slices();
                    a.copy_from_slice(&mono[..a.len()]);
                    b.copy_from_slice(&mono[a.len()..n]);
                    chunk.commit_all();
                }
                Counters::add(&c.overrun_frames, (mono.len() - n) as u64);
            },
        )
    }

    fn run(self, ready: std::sync::mpsc::SyncSender<Result<(), PluginError>>) {
        // Half a second of ring: the thread drains it every few ms, so it only fills when the
        // machine stalls that long.
        let capacity = (self.rate as usize / 2).max(8 * self.buffer_frames as usize);
        let (producer, mut consumer) = rtrb::RingBuffer::<f32>::new(capacity);
        let producer: SharedProducer = Arc::new(Mutex::new(producer));
        let counters = Arc::new(Counters::default());
        let mut backend = device::Backend::new();
        let mut keeper = Keeper::new(
            Direction::Input,
            &self.wanted,
            &self.name,
            self.reopen,
            &self.host,
            "capturing",
            "writing silence",
            "no audio",
        );
        let opened = self.open(&backend, &producer, &counters);
        let started = format!("capturing from {:?} at {} Hz", self.name, self.rate);
        // While the device is away: when it went, silence written since, next reopen attempt.
        let Some((mut stream, mut absent)) = keeper.first_open(opened, self.wait_if_missing, started, &ready) else {
            return;
        };

        let poll = Duration::from_micros(
            (u64::from(self.buffer_frames) * 500_000 / u64::from(self.rate)).clamp(1_000, 10_000),
        );
        let mut scratch = vec![0.0f32; capacity];
        let silence = vec![0.0f32; (self.rate as usize / 50).max(1)];
        let mut stats = Stats::default();
        let mut last_report = Instant::now();
        while !self.stop.load(Ordering::Acquire) && !self.writer.is_closed() {
            // Drain what the callback captured into the host.
            let n = consumer.slots().min(scratch.len());
            if n > 0
                && let Ok(chunk) = consumer.read_chunk(n)
            {
                let (a, b) = chunk.as_slices();
                scratch[..a.len()].copy_from_slice(a);
                scratch[a.len()..n].copy_from_slice(b);
                chunk.commit_all();
                let took = self.writer.write_f32(&scratch[..n]);
                stats.written += took as u64;
                stats.refused += (n - took) as u64;
            }
            keeper.check(&mut stream, &mut absent, &backend, &counters);
            if let Some((since, written, _)) = absent.as_mut() {
                // Keep the route's clock running: silence at the declared rate.
                let due = (since.elapsed().as_secs_f64() * f64::from(self.rate)) as u64;
                while *written < due {
                    let k = ((due - *written) as usize).min(silence.len());
                    let took = self.writer.write_f32(&silence[..k]);
                    *written += k as u64;
                    stats.silence += took as u64;
                    if took < k {
                        break;
                    }
                }
            }
            keeper.retry(&mut stream, &mut absent, &mut backend, &counters, |b| self.open(b, &producer, &counters));
            if last_report.elapsed() >= Duration::from_secs(1) {
                stats.report(&self.host, &counters, false);
                last_report = Instant::now();
            }
            std::thread::sleep(poll);
        }
        drop(stream);
        stats.losses = keeper.losses;
        stats.report(&self.host, &counters, true);
    }
}

/// What the device thread counts and reports.
#[derive(Default)]
struct Stats {
    /// Frames handed to the host.
    written: u64,
    /// Frames the host did not accept (its lane was full).
    refused: u64,
    /// Frames of silence written while the device was away.
    silence: u64,
    /// Times the device was lost.
    losses: u64,
    /// Counter values at the last report, to log only increases.
    seen: (u64, u64, u64),
}

impl Stats {
    fn report(&mut self, host: &Host, c: &Counters, last: bool) {
        let now = (Counters::get(&c.overrun_frames), self.refused, Counters::get(&c.xruns));
        if now != self.seen {
            host.warn(format!(
                "capture losses: {} frames overrun in the callback, {} frames refused by the host, {} device xruns ({} frames lost) (totals)",
                now.0,
                now.1,
                now.2,
                Counters::get(&c.xrun_frames)
            ));
            self.seen = now;
        }
        if last {
            host.info(format!(
                "stopped: {} frames captured, {} delivered, {} of silence while the device was away; overruns {} frames, refused {} frames, device xruns {} ({} frames), device losses {}",
                Counters::get(&c.frames),
                self.written,
                self.silence,
                now.0,
                now.1,
                now.2,
                Counters::get(&c.xrun_frames),
                self.losses
            ));
        }
    }
}

// 4. The export line.
tolk_plugin_api::export_plugins! {
    sources: [Mic],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_the_conformance_kit() {
        // On a machine without audio this runs against the silence of `on_missing = "wait"`;
        // with a PulseAudio server it captures from the default source.
        let report = tolk_plugin_api::testing::check_source::<Mic>(Mic::EXAMPLE_CONFIG);
        assert!(report.passed(), "{report}");
    }

    #[test]
    fn config_errors_name_the_key() {
        let e = |toml: &str| match tolk_plugin_api::testing::new_source::<Mic>(toml) {
            Ok(_) => panic!("accepted: {toml}"),
            Err(e) => e.to_string(),
        };
        assert_eq!(e("buffer_frames = 4"), "buffer_frames: 4 is outside 16..=16384");
        assert_eq!(e("device = \"\""), "device: must not be empty (use \"default\")");
        assert_eq!(e("channel = 0\nreopen_ms = 5"), "reopen_ms: 5 is outside 50..=60000");
        let bad = e("on_missing = \"later\"");
        assert!(bad.starts_with("on_missing: unknown variant `later`"), "{bad}");
        let missing = e("device = \"no such microphone 7f3a\"");
        assert!(missing.starts_with("device: no input device matches \"no such microphone 7f3a\"; "), "{missing}");
        assert!(!missing.contains('\n'));
    }
}
