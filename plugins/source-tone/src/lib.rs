//! `tolk.tone` — a sine tone, the smallest complete tolk source plugin.
//!
//! Read this file top to bottom if you are writing your own plugin: it is the template that
//! `plugin-api/README.md` points to. The parts come in a fixed order: config, plugin struct,
//! trait impl, export line, tests.
//!
//! The tone is deterministic (sample `n` is always the same value), which the tolk test suite
//! relies on. With `duration_ms` it ends after that long; without, it plays until stopped.

use std::{
    f64::consts::TAU,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tolk_plugin_api::prelude::*;

// 1. The config: your plugin's table in the tolk config file. `deny_unknown_fields` makes a
//    misspelt key an error that names it, instead of a silently ignored setting.
/// The `[source.config]` table of `tolk.tone`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToneConfig {
    /// Pitch in Hz.
    pub frequency_hz: f64,
    /// Peak level, 0.0 – 1.0.
    pub amplitude: f64,
    /// Output rate in Hz.
    pub sample_rate: u32,
    /// Stop after this long; 0 plays until stopped.
    pub duration_ms: u64,
    /// Pace the samples in real time (true) or produce them as fast as the host takes them.
    pub realtime: bool,
}

impl Default for ToneConfig {
    fn default() -> Self {
        ToneConfig { frequency_hz: 440.0, amplitude: 0.5, sample_rate: 24_000, duration_ms: 0, realtime: true }
    }
}

// 2. The plugin struct: what `new` builds and the host keeps. A source owns the thread that
//    produces audio, so it keeps the handle and a stop flag to end it.
/// The tone source.
pub struct Tone {
    config: ToneConfig,
    host: Host,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

// 3. The trait impl. `new` validates everything, so a bad config fails at `tolk check`.
impl AudioSource for Tone {
    const ID: &'static str = "tolk.tone";
    const NAME: &'static str = "Test tone";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "a deterministic sine tone; the template for plugin authors";
    const EXAMPLE_CONFIG: &'static str = "frequency_hz = 440.0\namplitude = 0.5\nduration_ms = 1000\n";

    type Config = ToneConfig;

    fn new(config: ToneConfig, host: &Host) -> Result<Self, PluginError> {
        if !(config.frequency_hz > 0.0 && config.frequency_hz < f64::from(config.sample_rate) / 2.0) {
            return Err(PluginError::config(format!(
                "frequency_hz: {} Hz must be above 0 and below half the sample rate",
                config.frequency_hz
            )));
        }
        if !(0.0..=1.0).contains(&config.amplitude) {
            return Err(PluginError::config(format!("amplitude: {} is outside 0.0..=1.0", config.amplitude)));
        }
        AudioFormat::new(config.sample_rate, 1, SampleFormat::I16)
            .validate()
            .map_err(|e| PluginError::config(format!("sample_rate: {e}")))?;
        Ok(Tone { config, host: host.clone(), stop: Arc::new(AtomicBool::new(false)), thread: None })
    }

    fn format(&self) -> AudioFormat {
        AudioFormat::new(self.config.sample_rate, 1, SampleFormat::I16)
    }

    fn start(&mut self, writer: AudioWriter) -> Result<(), PluginError> {
        if self.thread.is_some() {
            return Err(PluginError::state("already started"));
        }
        self.stop.store(false, Ordering::SeqCst);
        let stop = Arc::clone(&self.stop);
        let (rate, freq, amp) = (self.config.sample_rate, self.config.frequency_hz, self.config.amplitude);
        let total = self.config.duration_ms * u64::from(rate) / 1000;
        let realtime = self.config.realtime;
        // Name your threads: panics and logs then say which plugin they came from.
        let name = format!("tolk-src-{}", self.host.instance_id());
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let block = (rate / 50) as usize; // 20 ms
                let started = Instant::now();
                let mut n: u64 = 0;
                let mut buf = Vec::with_capacity(block);
                while !stop.load(Ordering::Relaxed) && !writer.is_closed() && (total == 0 || n < total) {
                    let len = if total == 0 { block } else { block.min((total - n) as usize) };
                    buf.clear();
                    buf.extend((0..len as u64).map(|i| {
                        let t = (n + i) as f64 / f64::from(rate);
                        ((TAU * freq * t).sin() * amp * f64::from(i16::MAX)).round() as i16
                    }));
                    // The writer never blocks. A file-like source that must not lose samples
                    // waits for room; a live source would drop what did not fit.
                    let mut done = 0;
                    while done < len && !stop.load(Ordering::Relaxed) && !writer.is_closed() {
                        done += writer.write_i16(&buf[done..]);
                        if done < len {
                            writer.wait_writable(Duration::from_millis(50));
                        }
                    }
                    n += len as u64;
                    if realtime {
                        let due = Duration::from_secs_f64(n as f64 / f64::from(rate));
                        if let Some(wait) = due.checked_sub(started.elapsed()) {
                            std::thread::sleep(wait);
                        }
                    }
                }
                if total != 0 && n >= total {
                    writer.end_of_stream();
                }
            })
            .map_err(|e| PluginError::io(format!("cannot start the tone thread: {e}")))?;
        self.thread = Some(thread);
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PluginError> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().map_err(|_| PluginError::other("the tone thread panicked"))?;
        }
        Ok(())
    }
}

// Joining in Drop too means a host that drops the source without `stop` leaves no thread behind.
impl Drop for Tone {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

// 4. The export line: one per library, listing every plugin it contains.
tolk_plugin_api::export_plugins! {
    sources: [Tone],
}

// 5. Tests: run the conformance kit on your type, in-process.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_a_frequency_above_nyquist() {
        let err = tolk_plugin_api::testing::new_source::<Tone>("frequency_hz = 20000.0").err().unwrap();
        assert_eq!(err.message(), "frequency_hz: 20000 Hz must be above 0 and below half the sample rate");
    }

    #[test]
    fn passes_the_conformance_kit() {
        let report = tolk_plugin_api::testing::check_source::<Tone>(Tone::EXAMPLE_CONFIG);
        assert!(report.passed(), "{report}");
    }
}
