//! Echo gating for rooms (`gate_while` on a `[[route]]`): while a named sink (or route) is
//! playing translation, a gated route's input is replaced by silence of the same length, and
//! its floor is silenced too.
//!
//! Each sink instance and each route has a *playout clock*: when a block of `d` of translation
//! is handed to it at time `t`, it plays until `end = max(end, t) + d` (a speaker plays its
//! queue in real time). A gated route is closed while `now < end + gate_release_ms` for any
//! clock it names. Only translation moves the clocks: floor blocks and the silence written
//! between translations never open or close a gate.
//!
//! The clocks are atomics (microseconds since the run started), updated with a compare-and-swap
//! loop: the route tasks that hand out translation never wait for each other.

use std::{
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Instant,
};

use super::{RATE, plan::Plan};
use crate::config::Config;

/// One playout clock: when the audio handed so far will have played (µs since the epoch).
#[derive(Debug, Default)]
pub struct PlayoutClock {
    end_us: AtomicU64,
}

impl PlayoutClock {
    /// `d_us` of audio handed to the player at `now_us`.
    pub fn push(&self, now_us: u64, d_us: u64) {
        let _ = self.end_us.fetch_update(Relaxed, Relaxed, |end| Some(advance(end, now_us, d_us)));
    }

    /// When the audio handed so far will have played.
    pub fn end_us(&self) -> u64 {
        self.end_us.load(Relaxed)
    }
}

/// The clock rule: audio handed at `now` plays after what is queued, or at once if the player
/// is idle.
pub fn advance(end_us: u64, now_us: u64, d_us: u64) -> u64 {
    end_us.max(now_us).saturating_add(d_us)
}

/// True while any of `ends` (playout ends, µs) plus `release_us` is still ahead of `now_us`.
pub fn closed(ends: impl IntoIterator<Item = u64>, now_us: u64, release_us: u64) -> bool {
    ends.into_iter().any(|end| end > 0 && now_us < end.saturating_add(release_us))
}

/// What gates one route.
#[derive(Debug, Default, Clone)]
struct RouteGate {
    /// Sink instances whose playback closes it.
    sinks: Vec<usize>,
    /// Routes whose playback closes it.
    routes: Vec<usize>,
    release_us: u64,
}

/// The clocks and gates of a run.
#[derive(Debug)]
pub struct Gates {
    epoch: Instant,
    /// Per sink instance.
    sinks: Vec<PlayoutClock>,
    /// Per route.
    routes: Vec<PlayoutClock>,
    /// Per route: what gates it (empty: never gated).
    gates: Vec<RouteGate>,
    /// Whether any route is gated (otherwise no clock is kept).
    any: bool,
}

impl Gates {
    /// The gates of `plan` as `config` asks for them. A `gate_while` entry is a sink id (every
    /// instance of it, per-language ones included) or a route id `source:lang`.
    pub fn new(config: &Config, plan: &Plan) -> Gates {
        let mut gates = vec![RouteGate::default(); plan.routes.len()];
        for (r, rp) in plan.routes.iter().enumerate() {
            let Some(spec) = config.routes.get(rp.spec) else { continue };
            let g = &mut gates[r];
            g.release_us = spec.gate_release_ms * 1000;
            for name in &spec.gate_while {
                for (s, sp) in plan.sinks.iter().enumerate() {
                    let same = sp.id == *name || sp.id.strip_prefix(name.as_str()).is_some_and(|x| x.starts_with(':'));
                    if same && !g.sinks.contains(&s) {
                        g.sinks.push(s);
                    }
                }
                if let Some((src, lang)) = name.split_once(':') {
                    for (o, op) in plan.routes.iter().enumerate() {
                        if !op.is_floor() && op.language == lang && config.sources[op.source].id == src {
                            g.routes.push(o);
                        }
                    }
                }
            }
        }
        let any = gates.iter().any(|g| !g.sinks.is_empty() || !g.routes.is_empty());
        Gates {
            epoch: Instant::now(),
            sinks: plan.sinks.iter().map(|_| PlayoutClock::default()).collect(),
            routes: plan.routes.iter().map(|_| PlayoutClock::default()).collect(),
            gates,
            any,
        }
    }

    fn now_us(&self) -> u64 {
        // Never 0, so that 0 can mean "never played".
        self.epoch.elapsed().as_micros() as u64 + 1
    }

    /// Route `r` handed `frames` frames (24 kHz) of translation to `sinks`.
    pub fn played(&self, r: usize, sinks: &[usize], frames: usize) {
        if !self.any || frames == 0 {
            return;
        }
        let (now, d) = (self.now_us(), frames as u64 * 1_000_000 / u64::from(RATE));
        self.routes[r].push(now, d);
        for &s in sinks {
            self.sinks[s].push(now, d);
        }
    }

    /// Whether route `r`'s input is gated now.
    pub fn is_closed(&self, r: usize) -> bool {
        let Some(g) = self.gates.get(r).filter(|g| !g.sinks.is_empty() || !g.routes.is_empty()) else {
            return false;
        };
        let ends =
            g.sinks.iter().map(|&s| self.sinks[s].end_us()).chain(g.routes.iter().map(|&o| self.routes[o].end_us()));
        closed(ends, self.now_us(), g.release_us)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn clock_queues_audio_behind_what_is_playing() {
        // Idle player: plays at once.
        assert_eq!(advance(0, 1_000, 200), 1_200);
        // Handed while playing: queued behind.
        assert_eq!(advance(1_200, 1_100, 200), 1_400);
        // Handed after it finished: starts at the hand-over.
        assert_eq!(advance(1_400, 5_000, 100), 5_100);
        let c = PlayoutClock::default();
        for i in 0..10 {
            // Ten 20 ms blocks handed in a burst at t = 1 s: playing until 1.2 s.
            c.push(1_000_000 + i, 20_000);
        }
        assert_eq!(c.end_us(), 1_200_000);
    }

    #[test]
    fn gate_is_closed_until_release_after_the_end() {
        let release = 300_000;
        assert!(!closed([0], 5_000_000, release), "a clock that never ran does not gate");
        assert!(closed([1_200_000], 1_000_000, release), "while playing");
        assert!(closed([1_200_000], 1_499_999, release), "during the release");
        assert!(!closed([1_200_000], 1_500_000, release), "reopened after the release");
        assert!(closed([1_200_000, 3_000_000], 2_000_000, release), "any clock keeps it closed");
        assert!(!closed([1_200_000], 1_200_000, 0), "no release: open at the end");
    }

    #[test]
    fn gate_keys_are_validated_with_one_line_errors() {
        let base = "[[source]]\nid = \"a\"\nplugin = \"tolk.wav\"\nlanguage = \"en\"\n[[sink]]\nid = \"spk\"\nplugin = \
                    \"tolk.wav\"\n[[route]]\nsource = \"a\"\nto = [\"floor\", \"es\"]\nsinks = [\"spk\"]\n";
        let errors = |extra: &str| -> Vec<String> {
            let (_, e) = crate::config::parse_str(&format!("{base}{extra}"), "t.toml", Path::new("."));
            e.iter().map(|e| e.to_string()).collect()
        };
        assert!(errors("floor = true\ngate_while = [\"spk\", \"a:es\"]\ngate_release_ms = 0\n").is_empty());
        assert_eq!(
            errors("gate_while = [\"spkr\"]\n"),
            ["t.toml: route[0].gate_while[0]: no sink or translated route with id \"spkr\" (did you mean \"spk\"?)"]
        );
        // The floor route is not a translation: it gates nothing.
        assert_eq!(errors("gate_while = [\"a:floor\"]\n").len(), 1);
        assert_eq!(
            errors("gate_while = [\"spk\", \"spk\"]\n"),
            ["t.toml: route[0].gate_while[1]: \"spk\" is listed twice"]
        );
        assert_eq!(
            errors("gate_release_ms = 90000\n"),
            ["t.toml: route[0].gate_release_ms: 90000 is outside 0..=60000"]
        );
        assert_eq!(errors("floor = \"yes\"\n").len(), 1);
    }

    #[test]
    fn gates_resolve_sink_and_route_ids() {
        let text = r#"
[[source]]
id = "a"
plugin = "tolk.wav"
language = "en"
[[source]]
id = "b"
plugin = "tolk.wav"
language = "es"
[[route]]
source = "a"
to = ["es"]
sinks = ["spk"]
[[route]]
source = "b"
to = ["en", "fr"]
sinks = ["rec"]
gate_while = ["spk", "a:es"]
gate_release_ms = 0
[[sink]]
id = "spk"
plugin = "tolk.wav"
[sink.config]
path = "spk.wav"
[[sink]]
id = "rec"
plugin = "tolk.wav"
[sink.config]
path = "{lang}.wav"
"#;
        let (config, errors) = crate::config::parse_str(text, "t.toml", Path::new("."));
        assert!(errors.is_empty(), "{errors:?}");
        let plan = Plan::new(&config);
        let gates = Gates::new(&config, &plan);
        assert!(gates.any);
        assert_eq!(gates.gates[1].sinks, [0]);
        assert_eq!(gates.gates[1].routes, [0]);
        assert!(gates.gates[0].sinks.is_empty() && gates.gates[0].routes.is_empty());
        assert!(!gates.is_closed(1));
        // Ten seconds of translation handed to "spk": both routes of "b" close; "a" never does.
        gates.played(0, &plan.routes[0].sinks, 240_000);
        assert!(gates.is_closed(1) && gates.is_closed(2));
        assert!(!gates.is_closed(0));
    }
}
