//! The thread that owns a sink instance (`tolk-sink-<id>`): pops its lane, converts audio
//! from the internal format to the sink's own (one converter per route feeding it), and calls
//! the plugin. A failing sink is restarted here under `restart` (with a growing delay, see
//! [`restart_delay`]); otherwise it **stops itself only**: its lane is closed, and its routes
//! run on for their other sinks (the control loop stops a route once none is left). `exit`
//! goes to the control loop. The thread ends when every route feeding it has ended, or at once
//! when the run stops now; either way the sink is flushed and stopped, so its files are valid.
//!
//! Each plugin call runs with the sink marked busy ([`SinkStats::set_busy`]), so the control
//! loop warns about a sink that hangs while it hangs.
//!
//! **Flushing is bounded in time and in data, for every sink, live and lossless.** A sink that
//! wrote something is flushed once [`FLUSH_INTERVAL`] of wall time has passed since its last
//! flush, or once one of its streams (a route's output: audio offsets and caption times, on the
//! run's clock; or a route's source transcripts, which run ahead of its output and so are
//! measured apart) has moved [`FLUSH_STREAM_MS`] past the point of that flush, whichever comes
//! first. The wall bound keeps a live run's files at most a second behind; the stream bound
//! keeps a run processed faster than real time consistent across sinks, so after a `kill -9`
//! its captions end about where its recording ends. Between flushes the plugins buffer (a write per block would cost
//! a system call per block per sink); so a flush that fails (a full disk) loses what the plugin
//! took since its last good flush, and that is counted as lost to each route it came from.
//!
//! [`SinkStats::set_busy`]: super::metrics::SinkStats::set_busy

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, atomic::Ordering::Relaxed},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tolk_plugin_api::{AudioBlock, AudioFormat, AudioRole, PluginError, PluginKind, Samples, TextEvent, TextRole};

use super::{
    Control, MAX_RESTARTS, RATE, Shared, restart_delay,
    sink_lane::{RouteDrops, SinkItem},
    what,
};
use crate::{audio::Converter, config::FailurePolicy, plugin_host::SinkInstance, shutdown::Level};

/// Most wall time a sink keeps written data unflushed.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Most stream time (ms on the run's clock) a sink keeps written data unflushed.
pub(crate) const FLUSH_STREAM_MS: u64 = 1_000;

/// Which stream a written item moves: a route's output (its audio, floor and translations)
/// or its source transcripts, which run ahead of the output (input is read ahead of the
/// answers) and so are measured on their own.
type StreamKey = (usize, bool);

/// When a sink is due for a flush: the bookkeeping of the two bounds.
#[derive(Debug)]
struct FlushClock {
    /// Something was written since the last flush.
    dirty: bool,
    /// Wall time of the last flush (or of the first write after it).
    since: Instant,
    /// Per stream: (furthest position written, position at the last flush), in ms.
    streams: Vec<(StreamKey, u64, u64)>,
    /// Some stream moved [`FLUSH_STREAM_MS`] past its last flush.
    stream_due: bool,
}

impl FlushClock {
    fn new() -> FlushClock {
        FlushClock { dirty: false, since: Instant::now(), streams: vec![], stream_due: false }
    }

    /// Something up to `stream_ms` of stream `key` was written.
    fn wrote(&mut self, key: StreamKey, stream_ms: u64) {
        if !self.dirty {
            // The wall bound counts from the first unflushed write: an idle sink owes nothing.
            self.dirty = true;
            self.since = Instant::now();
        }
        let i = match self.streams.iter().position(|s| s.0 == key) {
            Some(i) => i,
            None => {
                self.streams.push((key, stream_ms, 0));
                self.streams.len() - 1
            }
        };
        let s = &mut self.streams[i];
        s.1 = s.1.max(stream_ms);
        self.stream_due |= s.1 >= s.2 + FLUSH_STREAM_MS;
    }

    fn due(&self) -> bool {
        self.dirty && (self.stream_due || self.since.elapsed() >= FLUSH_INTERVAL)
    }

    /// How long the thread may wait for its lane before a flush is due. An idle sink sleeps
    /// until something comes (the lane wakes it, also when the run stops now): 16 sink threads
    /// polling every 100 ms were a fifth of a live run's context switches.
    fn wait(&self) -> Duration {
        let idle = Duration::from_secs(1);
        if self.dirty { FLUSH_INTERVAL.saturating_sub(self.since.elapsed()) } else { idle }
    }

    fn flushed(&mut self) {
        self.dirty = false;
        self.stream_due = false;
        for s in &mut self.streams {
            s.2 = s.1;
        }
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
            stats.set_busy(false);
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
    /// Returns true when the sink finished (every route ended, or the run stopped now);
    /// false when it failed and was not restarted.
    fn run(&mut self, instance: SinkInstance) -> bool {
        let mut instance = instance;
        if let Err(e) = self.busy(|t| t.begin(&mut instance)) {
            match self.recover(instance, e, None) {
                Some(i) => instance = i,
                None => return false,
            }
        }
        let lane = Arc::clone(&self.shared.sink_lanes[self.idx]);
        let mut clock = FlushClock::new();
        // Per route: what the plugin took since its last good flush. A flush that fails loses
        // it (the plugin could not write it out), and it is counted so.
        let mut unflushed: BTreeMap<usize, RouteDrops> = BTreeMap::new();
        let lose_unflushed = |unflushed: &mut BTreeMap<usize, RouteDrops>| {
            for (route, drops) in std::mem::take(unflushed) {
                lane.lost_in_sink(route, drops);
            }
        };
        while !self.pending.is_empty() {
            if self.shared.shutdown.level() >= Level::Now {
                // What is still queued is not delivered: counted as lost, per route.
                lane.close();
                break;
            }
            if let Some(item) = lane.pop(clock.wait()) {
                match self.busy(|t| t.handle(&mut instance, &item)) {
                    Ok(Some((key, stream_ms))) => {
                        clock.wrote(key, stream_ms);
                        unflushed.entry(item.route()).or_default().add(&item);
                    }
                    Ok(None) => {}
                    Err(e) => match self.recover(instance, e, Some(&item)) {
                        // A restarted instance has nothing of ours buffered.
                        Some(i) => {
                            instance = i;
                            clock.flushed();
                            unflushed.clear();
                        }
                        None => return false,
                    },
                }
            }
            if clock.due() {
                clock.flushed();
                let flushed = self.busy(|_| instance.flush());
                if flushed.is_ok() {
                    unflushed.clear();
                }
                if let Err(e) = flushed {
                    lose_unflushed(&mut unflushed);
                    match self.recover(instance, e, None) {
                        Some(i) => instance = i,
                        None => return false,
                    }
                }
            }
        }
        // A last write that fails (a full disk at the end) is a failure like any other.
        let flushed = self.busy(|_| instance.flush());
        if flushed.is_err() {
            lose_unflushed(&mut unflushed);
        }
        let stopped = self.busy(|_| instance.stop());
        for (call, r) in [("flush", flushed), ("stop", stopped)] {
            if let Err(e) = r {
                self.shared.sink_stats[self.idx].failures.fetch_add(1, Relaxed);
                tracing::error!("{}: {call}: {e}", what(PluginKind::Sink, &self.shared.plan.sinks[self.idx].id));
            }
        }
        true
    }

    /// Runs `f` (a plugin call) with the sink marked busy, so the control loop can warn
    /// about a sink that hangs while it hangs.
    fn busy<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        let stats = Arc::clone(&self.shared.sink_stats[self.idx]);
        stats.set_busy(true);
        let r = f(self);
        stats.set_busy(false);
        r
    }

    fn begin(&mut self, instance: &mut SinkInstance) -> Result<(), PluginError> {
        let format = instance.format()?;
        if let Some(f) = format {
            // A format the host cannot convert to is refused, never fed unconverted audio.
            Converter::new(AudioFormat::SESSION, f).map_err(|e| {
                PluginError::unsupported(format!("declares an audio format tolk cannot convert to ({f}): {e}"))
            })?;
        }
        if format.is_none() {
            self.shared.sink_lanes[self.idx].set_text_only();
        }
        self.format = format;
        self.streams.clear();
        instance.start()
    }

    /// Applies the failure policy to error `e` of `old` (while it handled `item`, which is
    /// counted as lost). Returns the instance to carry on with (a restarted one), or `None`
    /// when the sink is done for: then its lane is closed (what its routes send it from now
    /// on is counted as lost) and the control loop is told. A failing sink stops only itself;
    /// its routes run on for their other sinks.
    fn recover(&mut self, old: SinkInstance, e: PluginError, item: Option<&SinkItem>) -> Option<SinkInstance> {
        let shared = Arc::clone(&self.shared);
        let plan = &shared.plan.sinks[self.idx];
        let who = what(PluginKind::Sink, &plan.id);
        let stats = &shared.sink_stats[self.idx];
        let lane = &shared.sink_lanes[self.idx];
        stats.failures.fetch_add(1, Relaxed);
        if let Some(item) = item {
            lane.lost(item);
        }
        // The failed instance is stopped and dropped before anything else opens its files: a
        // restarted recorder continues the file the old one closed.
        let mut old = old;
        if old.poisoned().is_none() {
            let _ = self.busy(|_| old.stop());
        }
        drop(old);
        let mut error = e;
        if plan.policy == FailurePolicy::Restart {
            while self.restarts < MAX_RESTARTS {
                self.restarts += 1;
                stats.restarts.fetch_add(1, Relaxed);
                let delay = restart_delay(self.restarts);
                tracing::error!(
                    "{who} failed: {error}; restarting it in {} ms ({}/{MAX_RESTARTS})",
                    delay.as_millis(),
                    self.restarts
                );
                let _ = shared.control.send(Control::Restarted { what: who.clone(), error: error.to_string() });
                // Meanwhile the lane keeps the newest audio (dropping, and counting, the oldest).
                if !shared.sleep_unless_stopping(delay) {
                    break;
                }
                let attempt =
                    shared.registry.create_sink(&plan.plugin, &plan.config, shared.host(&plan.id, &plan.plugin));
                match attempt {
                    Ok(mut fresh) => match self.busy(|t| t.begin(&mut fresh)) {
                        Ok(()) => return Some(fresh),
                        Err(e) => {
                            stats.failures.fetch_add(1, Relaxed);
                            error = e;
                        }
                    },
                    Err(e) => {
                        stats.failures.fetch_add(1, Relaxed);
                        error = e;
                    }
                }
            }
        }
        lane.close();
        let _ = shared.control.send(if plan.policy == FailurePolicy::Exit {
            Control::Failed { what: who, error, policy: FailurePolicy::Exit, routes: self.pending.clone() }
        } else {
            Control::SinkFailed { sink: self.idx, what: who, error }
        });
        None
    }

    /// Delivers one item; returns the stream it moved and the position (ms on the run's clock)
    /// up to which audio or text was written, if anything was.
    fn handle(
        &mut self,
        instance: &mut SinkInstance,
        item: &SinkItem,
    ) -> Result<Option<(StreamKey, u64)>, PluginError> {
        match *item {
            SinkItem::Audio { route, ref language, ref chunk, queued: _, floor } => {
                let Some(format) = self.format else { return Ok(None) };
                if !self.pending.contains(&route) {
                    return Ok(None);
                }
                let st =
                    match self.streams.entry((route, floor)) {
                        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                        std::collections::hash_map::Entry::Vacant(v) => v.insert(Stream {
                            // `begin` made sure the format converts.
                            converter: match format == AudioFormat::SESSION {
                                true => None,
                                false => Some(Converter::new(AudioFormat::SESSION, format).map_err(|e| {
                                    PluginError::unsupported(format!("cannot convert to {format}: {e}"))
                                })?),
                            },
                            expected_in: chunk.offset,
                            out_pos: chunk.offset * u64::from(format.sample_rate) / u64::from(RATE),
                            started: false,
                        }),
                    };
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
                    AudioBlock::floor(format, samples, offset, language)
                } else {
                    AudioBlock::new(format, samples, offset, language)
                };
                instance.on_audio(block)?;
                if st.converter.is_some() {
                    st.out_pos += frames as u64;
                }
                let end_ms = (chunk.offset + chunk.samples.len() as u64) * 1000 / u64::from(RATE);
                if floor {
                    // The floor is not the route's output: no latency or frame counts.
                    return Ok(Some(((route, false), end_ms)));
                }
                self.shared.route_stats[route].record_system(chunk.born.elapsed());
                self.shared.sink_stats[self.idx].frames.fetch_add(chunk.samples.len() as u64, Relaxed);
                Ok(Some(((route, false), end_ms)))
            }
            SinkItem::Text { route, ref item } => {
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
                Ok(Some(((route, item.role == TextRole::Source), item.end_ms)))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Source transcripts run far ahead of the output; they must not hide the output's own
    /// progress from the stream bound (the cause of captions 10 s behind the recording after a
    /// `kill -9` of a fast run).
    #[test]
    fn the_stream_bound_measures_output_and_source_transcripts_apart() {
        let mut clock = FlushClock::new();
        clock.wrote((0, true), 60_000);
        assert!(clock.due(), "a new stream is measured from 0");
        clock.flushed();
        clock.wrote((0, false), 20_000);
        assert!(clock.due());
        clock.flushed();
        clock.wrote((0, false), 20_600);
        clock.wrote((0, true), 60_900);
        assert!(!clock.due(), "neither stream moved a second");
        clock.wrote((0, false), 21_000);
        assert!(clock.due(), "the output moved a second past its flush");
        clock.flushed();
        // Another route's output is a stream of its own.
        clock.wrote((1, false), 500);
        assert!(!clock.due());
        clock.wrote((1, false), 1_000);
        assert!(clock.due());
    }
}
