//! The thread that owns a sink instance (`tolk-sink-<id>`): pops its lane, converts audio
//! from the internal format to the sink's own (one converter per route feeding it), and calls
//! the plugin. A failing sink is restarted here under `restart`; `stop-route` and `exit` go to
//! the control loop. The thread ends when every route feeding it has ended, or at once when
//! the run stops now; either way the sink is flushed and stopped, so its files are valid.
//!
//! **Flushing is bounded in time and in data, for every sink, live and lossless.** A sink that
//! wrote something is flushed once [`FLUSH_INTERVAL`] of wall time has passed since its last
//! flush, or once its stream (audio offsets and caption times, on the run's clock) has moved
//! [`FLUSH_STREAM_MS`] past the point of that flush, whichever comes first. The wall bound
//! keeps a live run's files at most a second behind; the stream bound keeps a run processed
//! faster than real time consistent across sinks, so after a `kill -9` its captions end about
//! where its recording ends. Between flushes the plugins buffer (a write per block would cost
//! a system call per block per sink).

use std::{
    collections::HashMap,
    sync::{Arc, atomic::Ordering::Relaxed},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tolk_plugin_api::{AudioBlock, AudioFormat, AudioRole, PluginError, PluginKind, Samples, TextEvent};

use super::{Control, MAX_RESTARTS, RATE, Shared, sink_lane::SinkItem, what};
use crate::{audio::Converter, config::FailurePolicy, plugin_host::SinkInstance, shutdown::Level};

/// Most wall time a sink keeps written data unflushed.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Most stream time (ms on the run's clock) a sink keeps written data unflushed.
pub(crate) const FLUSH_STREAM_MS: u64 = 1_000;

/// When a sink is due for a flush: the bookkeeping of the two bounds.
#[derive(Debug)]
struct FlushClock {
    /// Something was written since the last flush.
    dirty: bool,
    /// Wall time of the last flush (or of the first write after it).
    since: Instant,
    /// Furthest stream position written (ms).
    stream_ms: u64,
    /// Stream position at the last flush (ms).
    flushed_ms: u64,
}

impl FlushClock {
    fn new() -> FlushClock {
        FlushClock { dirty: false, since: Instant::now(), stream_ms: 0, flushed_ms: 0 }
    }

    /// Something up to `stream_ms` was written.
    fn wrote(&mut self, stream_ms: u64) {
        if !self.dirty {
            // The wall bound counts from the first unflushed write: an idle sink owes nothing.
            self.dirty = true;
            self.since = Instant::now();
        }
        self.stream_ms = self.stream_ms.max(stream_ms);
    }

    fn due(&self) -> bool {
        self.dirty && (self.since.elapsed() >= FLUSH_INTERVAL || self.stream_ms >= self.flushed_ms + FLUSH_STREAM_MS)
    }

    /// How long the thread may wait for its lane before a flush is due.
    fn wait(&self) -> Duration {
        let idle = Duration::from_millis(100);
        if self.dirty { FLUSH_INTERVAL.saturating_sub(self.since.elapsed()).min(idle) } else { idle }
    }

    fn flushed(&mut self) {
        self.dirty = false;
        self.flushed_ms = self.stream_ms;
    }
}

/// Starts the thread for sink instance `idx`.
pub(crate) fn spawn(shared: Arc<Shared>, idx: usize, instance: SinkInstance) -> JoinHandle<()> {
    let name = format!("tolk-sink-{}", shared.plan.sinks[idx].id);
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let mut t = SinkThread {
                pending: shared.plan.sinks[idx].routes.clone(),
                shared,
                idx,
                format: None,
                streams: HashMap::new(),
                restarts: 0,
            };
            let done = t.run(instance);
            let stats = &t.shared.sink_stats[idx];
            stats.state.store(if done { 1 } else { 2 }, Relaxed);
            let _ = t.shared.control.send(Control::SinkDone);
        })
        .expect("spawn a sink thread")
}

/// Per route feeding the sink: its converter and where its stream is.
struct Stream {
    converter: Option<Converter>,
    /// Next expected input offset (24 kHz).
    expected_in: u64,
    /// Next output offset (sink rate).
    out_pos: u64,
    started: bool,
}

struct SinkThread {
    shared: Arc<Shared>,
    idx: usize,
    /// Routes that have not ended yet.
    pending: Vec<usize>,
    format: Option<AudioFormat>,
    /// Per (route, floor): the translation and the floor of a route are separate streams.
    streams: HashMap<(usize, bool), Stream>,
    restarts: u32,
}

impl SinkThread {
    /// Returns true when the sink finished normally.
    fn run(&mut self, mut instance: SinkInstance) -> bool {
        if let Err(e) = self.begin(&mut instance) {
            match self.recover(&mut instance, e) {
                true => {}
                false => return false,
            }
        }
        let lane = Arc::clone(&self.shared.sink_lanes[self.idx]);
        let mut clock = FlushClock::new();
        while !self.pending.is_empty() {
            if self.shared.shutdown.level() >= Level::Now {
                break;
            }
            if let Some(item) = lane.pop(clock.wait()) {
                match self.handle(&mut instance, item) {
                    Ok(Some(stream_ms)) => clock.wrote(stream_ms),
                    Ok(None) => {}
                    Err(e) => {
                        if !self.recover(&mut instance, e) {
                            return false;
                        }
                        // A restarted instance has nothing of ours buffered.
                        clock.flushed();
                    }
                }
            }
            if clock.due() {
                clock.flushed();
                if let Err(e) = instance.flush()
                    && !self.recover(&mut instance, e)
                {
                    return false;
                }
            }
        }
        let finished = self.pending.is_empty();
        let _ = instance.flush();
        if let Err(e) = instance.stop() {
            tracing::warn!("{}: stop: {e}", what(PluginKind::Sink, &self.shared.plan.sinks[self.idx].id));
        }
        finished
    }

    fn begin(&mut self, instance: &mut SinkInstance) -> Result<(), PluginError> {
        self.format = instance.format()?;
        self.streams.clear();
        instance.start()
    }

    /// Applies the failure policy to error `e`. Returns true when the sink carries on (it was
    /// restarted), false when the thread must end.
    fn recover(&mut self, instance: &mut SinkInstance, e: PluginError) -> bool {
        let shared = Arc::clone(&self.shared);
        let plan = &shared.plan.sinks[self.idx];
        let who = what(PluginKind::Sink, &plan.id);
        let stats = &shared.sink_stats[self.idx];
        stats.failures.fetch_add(1, Relaxed);
        let mut error = e;
        if plan.policy == FailurePolicy::Restart {
            while self.restarts < MAX_RESTARTS {
                self.restarts += 1;
                stats.restarts.fetch_add(1, Relaxed);
                tracing::error!("{who} failed: {error}; restarting it ({}/{MAX_RESTARTS})", self.restarts);
                let _ = instance.stop();
                match self.shared.registry.create_sink(
                    &plan.plugin,
                    &plan.config,
                    self.shared.host(&plan.id, &plan.plugin),
                ) {
                    Ok(mut fresh) => match self.begin(&mut fresh) {
                        Ok(()) => {
                            *instance = fresh;
                            return true;
                        }
                        Err(e) => error = e,
                    },
                    Err(e) => error = e,
                }
            }
        }
        let policy = if plan.policy == FailurePolicy::Exit { FailurePolicy::Exit } else { FailurePolicy::StopRoute };
        // A poisoned instance is not entered again; an erring one is asked to close its files.
        if instance.poisoned().is_none() {
            let _ = instance.stop();
        }
        self.shared.sink_lanes[self.idx].close();
        let _ = self.shared.control.send(Control::Failed { what: who, error, policy, routes: self.pending.clone() });
        false
    }

    /// Delivers one item; returns the stream position (ms on the run's clock) up to which
    /// audio or text was written, if anything was.
    fn handle(&mut self, instance: &mut SinkInstance, item: SinkItem) -> Result<Option<u64>, PluginError> {
        match item {
            SinkItem::Audio { route, language, chunk, queued: _, floor } => {
                let Some(format) = self.format else { return Ok(None) };
                if !self.pending.contains(&route) {
                    return Ok(None);
                }
                let st = self.streams.entry((route, floor)).or_insert_with(|| Stream {
                    converter: (format != AudioFormat::SESSION)
                        .then(|| Converter::new(AudioFormat::SESSION, format).ok())
                        .flatten(),
                    expected_in: chunk.offset,
                    out_pos: chunk.offset * u64::from(format.sample_rate) / u64::from(RATE),
                    started: false,
                });
                if st.started && chunk.offset > st.expected_in {
                    st.out_pos += (chunk.offset - st.expected_in) * u64::from(format.sample_rate) / u64::from(RATE);
                }
                st.started = true;
                st.expected_in = chunk.offset + chunk.samples.len() as u64;
                let (samples, offset) = match &mut st.converter {
                    None => (Samples::I16(&chunk.samples), chunk.offset),
                    Some(c) => (c.process(Samples::I16(&chunk.samples)), st.out_pos),
                };
                let frames = samples.len() / usize::from(format.channels.max(1));
                let block = if floor {
                    AudioBlock::floor(format, samples, offset, &language)
                } else {
                    AudioBlock::new(format, samples, offset, &language)
                };
                instance.on_audio(block)?;
                if st.converter.is_some() {
                    st.out_pos += frames as u64;
                }
                let end_ms = (chunk.offset + chunk.samples.len() as u64) * 1000 / u64::from(RATE);
                if floor {
                    // The floor is not the route's output: no latency or frame counts.
                    return Ok(Some(end_ms));
                }
                self.shared.route_stats[route].record_system(chunk.born.elapsed());
                self.shared.sink_stats[self.idx].frames.fetch_add(chunk.samples.len() as u64, Relaxed);
                Ok(Some(end_ms))
            }
            SinkItem::Text { route, item } => {
                if !self.pending.contains(&route) {
                    return Ok(None);
                }
                let ev = TextEvent::new(
                    item.role,
                    item.is_final,
                    item.utterance_id,
                    &item.language,
                    &item.text,
                    item.start_ms,
                    item.end_ms,
                );
                instance.on_text(ev)?;
                self.shared.sink_stats[self.idx].texts.fetch_add(1, Relaxed);
                Ok(Some(item.end_ms))
            }
            SinkItem::End { route } => {
                self.pending.retain(|&r| r != route);
                for floor in [false, true] {
                    if let (Some(format), Some(st)) = (self.format, self.streams.get_mut(&(route, floor)))
                        && let Some(c) = &mut st.converter
                    {
                        let tail = c.finish();
                        if !tail.is_empty() {
                            let language = if floor {
                                self.shared.plan.input_language(&self.shared.config, route)
                            } else {
                                &self.shared.route_language[route]
                            };
                            let role = if floor { AudioRole::Floor } else { AudioRole::Translation };
                            instance.on_audio(AudioBlock::new(format, tail, st.out_pos, language).with_role(role))?;
                        }
                    }
                }
                Ok(None)
            }
        }
    }
}
