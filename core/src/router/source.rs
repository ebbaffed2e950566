//! The thread that owns a source instance (`tolk-src-<id>`): starts it on a lane, converts
//! each block to the internal format at the edge, and hands one shared chunk to every route
//! of the source. It applies the failure policy to its source (restart here; stop-route and
//! exit through the control loop) and ends the routes when the source ends.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tokio::sync::mpsc::{self, error::TrySendError};
use tolk_plugin_api::{AudioFormat, PluginError, PluginKind, Samples};

use super::{
    Chunk, Control, MAX_RESTARTS, RATE, RouteIn, Shared,
    metrics::RouteState,
    restart_delay,
    source_lane::{self, LaneEvent, LaneReader, Policy},
    what,
};
use crate::{
    audio::Converter,
    config::{FailurePolicy, run::Delivery},
    plugin_host::SourceInstance,
    shutdown::Level,
};

/// A route fed by a source.
#[derive(Clone)]
pub(crate) enum Consumer {
    /// A floor route: chunks go straight to its sinks.
    Floor(usize),
    /// A translated route: chunks go to its session task.
    Session(usize, mpsc::Sender<RouteIn>),
}

impl Consumer {
    fn route(&self) -> usize {
        match self {
            Consumer::Floor(r) | Consumer::Session(r, _) => *r,
        }
    }
}

/// Starts the thread for source `idx`.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    idx: usize,
    instance: SourceInstance,
    consumers: Vec<Consumer>,
    frames: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
) -> JoinHandle<()> {
    let name = format!("tolk-src-{}", shared.config.sources[idx].id);
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let mut t = SourceThread { shared, idx, consumers, frames, refused, out_pos: 0 };
            t.run(instance);
            let _ = t.shared.control.send(Control::SourceDone);
        })
        .expect("spawn a source thread")
}

/// Most frames (24 kHz) of queued source blocks joined into one chunk: 200 ms.
const MAX_CHUNK: usize = RATE as usize / 5;

struct SourceThread {
    shared: Arc<Shared>,
    idx: usize,
    consumers: Vec<Consumer>,
    frames: Arc<AtomicU64>,
    /// Audio the source wrote faster than its lane took it and dropped (24 kHz frames).
    refused: Arc<AtomicU64>,
    /// Next frame offset on the internal (24 kHz) stream clock.
    out_pos: u64,
}

enum Ended {
    /// End of stream or shutdown: routes end normally.
    Normal,
    /// The source failed.
    Failed(PluginError),
}

impl SourceThread {
    fn run(&mut self, mut instance: SourceInstance) {
        let spec = self.shared.config.sources[self.idx].clone();
        let who = what(PluginKind::Source, &spec.id);
        let mut restarts = 0;
        loop {
            match self.play(&mut instance) {
                Ended::Normal => break,
                Ended::Failed(e) => {
                    let policy = self.shared.plan.source_policy(self.idx);
                    if policy == FailurePolicy::Restart && restarts < MAX_RESTARTS {
                        restarts += 1;
                        let delay = restart_delay(restarts);
                        tracing::error!(
                            "{who} failed: {e}; restarting it in {} ms ({restarts}/{MAX_RESTARTS})",
                            delay.as_millis()
                        );
                        let _ =
                            self.shared.control.send(Control::Restarted { what: who.clone(), error: e.to_string() });
                        let _ = instance.stop();
                        if !self.shared.sleep_unless_stopping(delay) {
                            break;
                        }
                        match self.shared.registry.create_source(
                            &spec.plugin,
                            &spec.config,
                            self.shared.host(&spec.id, &spec.plugin),
                        ) {
                            Ok(i) => {
                                instance = i;
                                continue;
                            }
                            Err(e2) => {
                                self.fail(&who, e2, FailurePolicy::StopRoute);
                                return;
                            }
                        }
                    }
                    let policy = if policy == FailurePolicy::Restart { FailurePolicy::StopRoute } else { policy };
                    self.fail(&who, e, policy);
                    let _ = instance.stop();
                    return;
                }
            }
        }
        let _ = instance.stop();
        for c in &self.consumers {
            match c {
                Consumer::Floor(r) => self.shared.end_route(*r),
                Consumer::Session(r, tx) => {
                    if self.shared.config.run.delivery == Delivery::Lossless {
                        let _ = tx.blocking_send(RouteIn::End);
                    } else if tx.try_send(RouteIn::End).is_err() {
                        // A full input cannot take the end mark: the route ends as it is.
                        let _ = tx.blocking_send(RouteIn::End);
                    }
                    let _ = r;
                }
            }
        }
    }

    /// Reports a failure the control loop must handle; the consumers are dropped (session
    /// routes see their input close).
    fn fail(&mut self, who: &str, error: PluginError, policy: FailurePolicy) {
        let routes: Vec<usize> = self.consumers.iter().map(Consumer::route).collect();
        let _ = self.shared.control.send(Control::Failed { what: who.to_string(), error, policy, routes });
        self.consumers.clear();
    }

    /// Starts the instance and pumps its lane until it ends, fails or the run stops.
    fn play(&mut self, instance: &mut SourceInstance) -> Ended {
        let format = match instance.format() {
            Ok(f) => f,
            Err(e) => return Ended::Failed(e),
        };
        let mut converter = match Converter::new(format, AudioFormat::SESSION) {
            Ok(c) => c,
            Err(e) => return Ended::Failed(PluginError::unsupported(e.to_string())),
        };
        let cap = Duration::from_millis(self.shared.config.run.source_buffer_ms);
        let (writer, reader) = source_lane::lane(format, cap, Policy::Backpressure);
        if let Err(e) = instance.start(writer.to_ffi()) {
            return Ended::Failed(e);
        }
        for c in &self.consumers {
            self.shared.route_stats[c.route()].set_state(RouteState::Running);
        }
        let mut refused = Refused::default();
        let ended = self.pump(&reader, &mut converter, format, &mut refused);
        // The end of the stream counts a refusal the source never came back for.
        refused.account(self, &reader, format);
        reader.close();
        if let Ended::Normal = ended {
            let born = Instant::now();
            let tail: Vec<i16> = match converter.finish() {
                Samples::I16(s) => s.to_vec(),
                Samples::F32(_) => vec![],
            };
            self.emit(tail, born);
        }
        ended
    }

    fn pump(
        &mut self,
        reader: &LaneReader,
        converter: &mut Converter,
        format: AudioFormat,
        refused: &mut Refused,
    ) -> Ended {
        let mut expected_in: u64 = 0;
        // Blocks already queued behind the first are converted into the same chunk (up to
        // MAX_CHUNK): they are waiting anyway, so this adds no latency, and a source running
        // faster than real time then reaches every route and sink in a few large chunks
        // instead of one per 20 ms block.
        let mut out: Vec<i16> = Vec::new();
        let mut born = Instant::now();
        let mut next: Option<LaneEvent> = None;
        loop {
            if self.shared.shutdown.level() >= Level::Graceful {
                self.emit(std::mem::take(&mut out), born);
                return Ended::Normal;
            }
            refused.account(self, reader, format);
            let wait = if out.is_empty() { Duration::from_millis(100) } else { Duration::ZERO };
            let event = match next.take() {
                Some(e) => Some(e),
                None => reader.recv_timeout(wait),
            };
            match event {
                Some(LaneEvent::Audio(block)) => {
                    if block.frame_offset > expected_in {
                        // Audio lost before the lane: keep the stream clock right.
                        if !out.is_empty() {
                            self.emit(std::mem::take(&mut out), born);
                            next = Some(LaneEvent::Audio(block));
                            continue;
                        }
                        let gap = block.frame_offset - expected_in;
                        self.out_pos += gap * u64::from(RATE) / u64::from(format.sample_rate);
                    }
                    if out.is_empty() {
                        born = Instant::now();
                    }
                    let ch = usize::from(format.channels.max(1));
                    let n_in = match &block.samples {
                        source_lane::OwnedSamples::I16(v) => v.len(),
                        source_lane::OwnedSamples::F32(v) => v.len(),
                    } / ch;
                    expected_in = block.frame_offset + n_in as u64;
                    if let Samples::I16(s) = converter.process(block.samples.as_samples()) {
                        out.extend_from_slice(s);
                    }
                    if out.len() >= MAX_CHUNK {
                        self.emit(std::mem::take(&mut out), born);
                    }
                }
                Some(LaneEvent::End) => {
                    self.emit(std::mem::take(&mut out), born);
                    return Ended::Normal;
                }
                Some(LaneEvent::Failed(e)) => {
                    self.emit(std::mem::take(&mut out), born);
                    return Ended::Failed(e);
                }
                None => self.emit(std::mem::take(&mut out), born),
            }
        }
    }

    /// Hands one converted block to every route.
    fn emit(&mut self, samples: Vec<i16>, born: Instant) {
        if samples.is_empty() {
            return;
        }
        let n = samples.len() as u64;
        let chunk = Chunk { offset: self.out_pos, samples: Arc::from(samples), born };
        self.out_pos += n;
        self.frames.fetch_add(n, Relaxed);
        let lossless = self.shared.config.run.delivery == Delivery::Lossless;
        if let Some(hub) = &self.shared.listen {
            // The floor for the listeners whose language the operator switched to it.
            hub.source_audio(self.idx, &chunk);
        }
        for c in &self.consumers {
            let r = c.route();
            if self.shared.is_stopped(r) {
                continue;
            }
            self.shared.route_stats[r].frames_in.fetch_add(n, Relaxed);
            self.shared.route_stats[r].level_in.record(&chunk.samples);
            match c {
                Consumer::Floor(r) => self.shared.deliver_audio(*r, &chunk),
                Consumer::Session(r, tx) => {
                    if lossless {
                        let _ = tx.blocking_send(RouteIn::Audio(chunk.clone()));
                    } else {
                        match tx.try_send(RouteIn::Audio(chunk.clone())) {
                            Ok(()) | Err(TrySendError::Closed(_)) => {}
                            Err(TrySendError::Full(_)) => {
                                self.shared.route_stats[*r].gap_frames.fetch_add(n, Relaxed);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// How often at most the warning about refused audio repeats while it grows.
const REFUSED_WARN_EVERY: Duration = Duration::from_secs(5);

/// Accounting of the audio one lane refused and its source dropped: the run's counter, and a
/// warning while it grows, at most every [`REFUSED_WARN_EVERY`].
#[derive(Default)]
struct Refused {
    /// What this lane had refused at the last look (source frames).
    seen: u64,
    /// When the last warning was given.
    warned: Option<Instant>,
    /// Refused audio not warned about yet.
    unwarned: bool,
}

impl Refused {
    fn account(&mut self, t: &SourceThread, reader: &LaneReader, format: AudioFormat) {
        let now = reader.refused_frames();
        if now > self.seen {
            let frames = (now - self.seen) * u64::from(RATE) / u64::from(format.sample_rate.max(1));
            self.seen = now;
            t.refused.fetch_add(frames, Relaxed);
            self.unwarned = true;
        }
        if self.unwarned && self.warned.is_none_or(|w| w.elapsed() >= REFUSED_WARN_EVERY) {
            self.unwarned = false;
            self.warned = Some(Instant::now());
            tracing::warn!(
                "source \"{}\": {:.1} s of audio refused so far: it writes faster than its lane ({} ms) takes it, and the source drops what is refused",
                t.shared.config.sources[t.idx].id,
                t.refused.load(Relaxed) as f64 / f64::from(RATE),
                t.shared.config.run.source_buffer_ms
            );
        }
    }
}
