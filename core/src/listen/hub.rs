//! The listener hub: per offered language, the route's output turned into a paced 20 ms packet
//! stream (Opus, encoded **once**, and 16-bit PCM), fanned out to every listener of that
//! language through a `tokio::sync::broadcast` channel, plus its captions as JSON.
//!
//! ```text
//!  route (deliver_audio) ─try_send─▶ per-language inbox (bounded; full: counted, dropped)
//!                                        │
//!  one "tolk-listen" thread, every 20 ms: take 480 samples per language (silence when the
//!  route has nothing), encode Opus once, frame PCM once ─broadcast─▶ every listener task
//!  route (deliver_text)  ─────────────── caption JSON ─broadcast─▶ every listener task
//! ```
//!
//! Nothing here waits for a listener: `broadcast` keeps the last [`PACKETS_KEPT`] packets and a
//! listener that falls further behind skips its own oldest ones (tokio's `Lagged`), which are
//! counted per language ([`Channel::dropped`]). A route never waits for the hub either: its
//! push is a `try_send`.
//!
//! The output of a translated route comes in bursts (a response's audio arrives faster than
//! it plays) with silence between them; the thread plays it out at real time and fills the
//! gaps with silence, so a listener's jitter buffer sees one steady stream.

use std::{
    collections::VecDeque,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::{Bytes, Utf8Bytes};
use tolk_plugin_api::TextRole;

use crate::{
    config::{Config, FLOOR},
    router::{Chunk, RATE, metrics::RunStats, plan::Plan, sink_lane::TextItem},
};

/// Samples in one packet: 20 ms at 24 kHz.
pub const FRAME: usize = (RATE as usize) / 50;
/// The packet period.
pub const FRAME_PERIOD: Duration = Duration::from_millis(20);
/// Packets a listener may fall behind before it skips its oldest (2.56 s; a power of two, as
/// tokio's broadcast rounds its capacity up to one).
pub const PACKETS_KEPT: usize = 128;
/// Bytes of the header before every packet's payload: sequence (u32 BE), send time (u64 BE,
/// µs since the Unix epoch).
pub const HEADER_BYTES: usize = 12;
/// Chunks a route may have queued for the hub before further ones are dropped (and counted).
const INBOX_CHUNKS: usize = 4_096;
/// Audio a language may have waiting to play before its oldest is dropped (30 s).
const MAX_PENDING: usize = 30 * RATE as usize;
/// Opus bitrate (bit/s): speech, mono.
const OPUS_BITRATE: i32 = 32_000;

/// One offered language.
pub struct Channel {
    /// The route language (`es`, `pt-BR`, `floor`).
    pub code: String,
    /// Its name in its own language (`Español`); for the floor, "Floor" and the source's.
    pub name: String,
    /// The untranslated original.
    pub floor: bool,
    /// The language actually spoken (the source's for the floor).
    pub spoken: String,
    /// Opus packets (header + one Opus frame).
    pub opus: broadcast::Sender<Bytes>,
    /// PCM packets (header + 480 samples, i16 little-endian).
    pub pcm: broadcast::Sender<Bytes>,
    /// Caption JSON text frames.
    pub captions: broadcast::Sender<Utf8Bytes>,
    /// Listeners connected now.
    pub listeners: AtomicU64,
    /// Most listeners at once.
    pub peak_listeners: AtomicU64,
    /// Packets listeners skipped because they fell behind (sum over listeners).
    pub dropped: AtomicU64,
    /// Route audio (24 kHz frames) the hub dropped: inbox full or too much waiting.
    pub input_dropped: AtomicU64,
    /// Packets produced.
    pub packets: AtomicU64,
    /// The operator muted it: listeners hear silence and get no captions (sinks go on).
    pub muted: AtomicBool,
    /// The operator switched it to the floor: listeners hear the source's own audio (and its
    /// transcript), not the translation.
    pub floor_only: AtomicBool,
    /// The route that feeds it.
    pub route: usize,
    /// The source of that route (its floor).
    source: usize,
    inbox: Sender<Chunk>,
}

impl Channel {
    /// Counts one more listener.
    pub fn join(&self) {
        let n = self.listeners.fetch_add(1, Relaxed) + 1;
        self.peak_listeners.fetch_max(n, Relaxed);
    }

    /// Counts one listener less.
    pub fn leave(&self) {
        self.listeners.fetch_sub(1, Relaxed);
    }

    fn push(&self, chunk: &Chunk) {
        match self.inbox.try_send(chunk.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(c) | TrySendError::Disconnected(c)) => {
                self.input_dropped.fetch_add(c.samples.len() as u64, Relaxed);
            }
        }
    }
}

/// The hub of a run: the channels, which route feeds which, and the pacing thread.
pub struct Hub {
    /// Offered languages, in `[listen] routes` order.
    pub channels: Vec<Arc<Channel>>,
    /// Per route index: the channel its audio and captions go to.
    by_route: Vec<Option<usize>>,
    /// Per route index: the floor channel its source transcripts also go to (the first
    /// translated route of each source that has an offered floor).
    source_text_to: Vec<Option<usize>>,
    stop: Arc<AtomicBool>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// The run's counters, once the router has made them (the operator console's status).
    stats: OnceLock<Arc<RunStats>>,
    /// The operator's announcements, to every translated route's task (each speaks it on its
    /// session).
    pub announcements: broadcast::Sender<Arc<str>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let codes: Vec<&str> = self.channels.iter().map(|c| c.code.as_str()).collect();
        f.debug_struct("Hub").field("channels", &codes).finish()
    }
}

impl Hub {
    /// Builds the hub for `config`'s `[listen]` section and starts its pacing thread; `None`
    /// without the section. `Err` when the Opus encoder cannot be created.
    pub fn start(config: &Config) -> Result<Option<Arc<Hub>>, String> {
        let Some(listen) = &config.listen else { return Ok(None) };
        let plan = Plan::new(config);
        let mut channels = vec![];
        let mut inboxes = vec![];
        let mut by_route = vec![None; plan.routes.len()];
        let mut source_text_to = vec![None; plan.routes.len()];
        for code in &listen.routes {
            let Some(r) = plan.routes.iter().position(|r| &r.language == code) else { continue };
            let floor = code == FLOOR;
            let spoken = if floor { config.sources[plan.routes[r].source].language.clone() } else { code.clone() };
            let name = if floor {
                format!("Floor · {}", super::names::native_name(&spoken))
            } else {
                super::names::native_name(code).to_string()
            };
            let (tx, rx) = crossbeam_channel::bounded(INBOX_CHUNKS);
            let c = channels.len();
            by_route[r] = Some(c);
            if floor {
                let src = plan.routes[r].source;
                if let Some(t) = plan.routes.iter().position(|x| x.source == src && !x.is_floor() && x.via.is_none()) {
                    source_text_to[t] = Some(c);
                }
            }
            channels.push(Arc::new(Channel {
                code: code.clone(),
                name,
                floor,
                spoken,
                opus: broadcast::channel(PACKETS_KEPT).0,
                pcm: broadcast::channel(PACKETS_KEPT).0,
                captions: broadcast::channel(256).0,
                listeners: AtomicU64::new(0),
                peak_listeners: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                input_dropped: AtomicU64::new(0),
                packets: AtomicU64::new(0),
                muted: AtomicBool::new(false),
                floor_only: AtomicBool::new(false),
                route: r,
                source: plan.routes[r].source,
                inbox: tx,
            }));
            inboxes.push(rx);
        }
        let mut encoders = vec![];
        for c in &channels {
            let mut e = opus::Encoder::new(RATE, opus::Channels::Mono, opus::Application::Audio)
                .map_err(|e| format!("listen: cannot create the Opus encoder for \"{}\": {e}", c.code))?;
            e.set_bitrate(opus::Bitrate::Bits(OPUS_BITRATE))
                .map_err(|e| format!("listen: cannot set the Opus bitrate: {e}"))?;
            encoders.push(e);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let pacer = Pacer {
            channels: channels.clone(),
            inboxes,
            encoders,
            pending: channels.iter().map(|_| VecDeque::new()).collect(),
            modes: channels.iter().map(|_| (false, false)).collect(),
            stop: Arc::clone(&stop),
        };
        let thread = std::thread::Builder::new()
            .name("tolk-listen".into())
            .spawn(move || pacer.run())
            .map_err(|e| format!("listen: cannot start the packet thread: {e}"))?;
        Ok(Some(Arc::new(Hub {
            channels,
            by_route,
            source_text_to,
            stop,
            thread: std::sync::Mutex::new(Some(thread)),
            stats: OnceLock::new(),
            announcements: broadcast::channel(16).0,
        })))
    }

    /// The channel of language `code`.
    pub fn channel(&self, code: &str) -> Option<&Arc<Channel>> {
        self.channels.iter().find(|c| c.code.eq_ignore_ascii_case(code))
    }

    /// Route `r`'s output audio (never waits). Not taken while its language is muted or
    /// switched to the floor.
    pub fn audio(&self, r: usize, chunk: &Chunk) {
        let Some(Some(c)) = self.by_route.get(r) else { return };
        let ch = &self.channels[*c];
        if ch.muted.load(Relaxed) || ch.floor_only.load(Relaxed) {
            return;
        }
        ch.push(chunk);
    }

    /// Source `s`'s own audio (never waits): taken only by the languages the operator
    /// switched to the floor.
    pub fn source_audio(&self, s: usize, chunk: &Chunk) {
        for ch in &self.channels {
            if ch.source == s && ch.floor_only.load(Relaxed) && !ch.muted.load(Relaxed) {
                ch.push(chunk);
            }
        }
    }

    /// Sends the operator's typed announcement to every translated route (each speaks and
    /// captions it in its language: a text item and a response on its session) and, as a
    /// caption, to the floor's listeners. Returns the number of routes it went to.
    pub fn announce(&self, text: &str) -> usize {
        let routes = self.announcements.send(Arc::from(text)).unwrap_or(0);
        for ch in self.channels.iter().filter(|c| c.floor && !c.muted.load(Relaxed)) {
            let item = TextItem {
                role: TextRole::Translation,
                is_final: true,
                utterance_id: 0,
                language: Arc::from(ch.spoken.as_str()),
                text: text.to_string(),
                start_ms: 0,
                end_ms: 0,
            };
            let _ = ch.captions.send(caption_json(&item));
        }
        tracing::info!("operator: announcement of {} characters to {routes} route(s)", text.chars().count());
        routes
    }

    /// Gives the hub the run's counters (the router calls it once it has made them).
    pub fn attach(&self, stats: Arc<RunStats>) {
        let _ = self.stats.set(stats);
    }

    /// Mutes or unmutes language `code`; `Err` names an unknown language.
    pub fn set_muted(&self, code: &str, on: bool) -> Result<(), String> {
        let ch = self.channel(code).ok_or_else(|| format!("no language \"{code}\" here"))?;
        ch.muted.store(on, Relaxed);
        tracing::info!("operator: {} {}", ch.code, if on { "muted" } else { "unmuted" });
        Ok(())
    }

    /// Switches language `code` to the floor (or back to its translation); `Err` names an
    /// unknown language or the floor itself.
    pub fn set_floor_only(&self, code: &str, on: bool) -> Result<(), String> {
        let ch = self.channel(code).ok_or_else(|| format!("no language \"{code}\" here"))?;
        if ch.floor {
            return Err(format!("\"{}\" is the floor already", ch.code));
        }
        ch.floor_only.store(on, Relaxed);
        tracing::info!(
            "operator: {} {}",
            ch.code,
            if on { "switched to the floor" } else { "back to its translation" }
        );
        Ok(())
    }

    /// The operator console's status: per route its state, levels, latency, reconnects,
    /// rotations, losses and cost, with its listeners and controls; the run's cost per hour
    /// against the budget.
    pub fn operator_json(&self) -> serde_json::Value {
        let Some(stats) = self.stats.get() else {
            return serde_json::json!({"routes": [], "starting": true});
        };
        let elapsed = stats.started.elapsed().as_secs_f64();
        let per_hour = |usd: f64| if elapsed >= 1.0 { usd * 3600.0 / elapsed } else { 0.0 };
        let routes: Vec<_> = stats
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let q = |m: &std::sync::Mutex<crate::router::metrics::Reservoir>, p: f64| {
                    m.lock().unwrap_or_else(|e| e.into_inner()).quantile(p).map(|v| (v * 10.0).round() / 10.0)
                };
                let sink_dropped: u64 =
                    stats.sink_losses(i).iter().map(|l| l.drops.frames + l.drops.floor_frames).sum();
                let listen = self.by_route.get(i).copied().flatten().map(|c| {
                    let ch = &self.channels[c];
                    serde_json::json!({
                        "language": ch.code,
                        "name": ch.name,
                        "floor": ch.floor,
                        "listeners": ch.listeners.load(Relaxed),
                        "peak_listeners": ch.peak_listeners.load(Relaxed),
                        "packets_skipped": ch.dropped.load(Relaxed),
                        "audio_dropped_s": ch.input_dropped.load(Relaxed) as f64 / f64::from(RATE),
                        "muted": ch.muted.load(Relaxed),
                        "floor_only": ch.floor_only.load(Relaxed),
                    })
                });
                serde_json::json!({
                    "route": r.name,
                    "language": r.language,
                    "state": r.state().as_str(),
                    "level_in_dbfs": r.level_in.json(),
                    "level_out_dbfs": r.level_out.json(),
                    "ear_voice_ms": {"p50": q(&r.ear_voice_ms, 0.5), "p99": q(&r.ear_voice_ms, 0.99)},
                    "system_ms": {"p50": q(&r.system_ms, 0.5), "p99": q(&r.system_ms, 0.99)},
                    "reconnects": r.reconnects.load(Relaxed),
                    "rotations": r.rotations.load(Relaxed),
                    "responses": r.responses.load(Relaxed),
                    "input_gap_s": r.gap_frames.load(Relaxed) as f64 / f64::from(RATE),
                    "sink_dropped_s": sink_dropped as f64 / f64::from(RATE),
                    "lost": r.losses(),
                    "cost_usd": r.cost_usd(),
                    "cost_per_hour_usd": per_hour(r.cost_usd()),
                    "listen": listen,
                })
            })
            .collect();
        serde_json::json!({
            "elapsed_s": elapsed,
            "cost_usd": stats.cost_usd(),
            "cost_per_hour_usd": per_hour(stats.cost_usd()),
            "budget_usd": stats.budget_usd,
            "routes": routes,
        })
    }

    /// Route `r`'s text event, as a caption for its listeners (never waits).
    pub fn text(&self, r: usize, item: &TextItem) {
        let mut json: Option<Utf8Bytes> = None;
        let translation = item.role == TextRole::Translation;
        let targets = [
            self.by_route.get(r).copied().flatten(),
            match item.role {
                TextRole::Source => self.source_text_to.get(r).copied().flatten(),
                TextRole::Translation => None,
            },
        ];
        for c in targets.into_iter().flatten() {
            let ch = &self.channels[c];
            // Muted: no captions; on the floor: the original's transcript only.
            if ch.muted.load(Relaxed) || (translation && ch.floor_only.load(Relaxed)) {
                continue;
            }
            let text = json.get_or_insert_with(|| caption_json(item)).clone();
            // No receiver: nobody listens; not a loss.
            let _ = self.channels[c].captions.send(text);
        }
    }

    /// Per language for `--json-status` (`listeners`): connected now, the most at once,
    /// packets produced, packets slow listeners skipped, route audio the hub dropped (s).
    pub fn json(&self) -> serde_json::Value {
        self.channels
            .iter()
            .map(|c| {
                serde_json::json!({
                    "language": c.code,
                    "listeners": c.listeners.load(Relaxed),
                    "peak_listeners": c.peak_listeners.load(Relaxed),
                    "packets": c.packets.load(Relaxed),
                    "packets_skipped": c.dropped.load(Relaxed),
                    "route_audio_dropped_s": c.input_dropped.load(Relaxed) as f64 / f64::from(RATE),
                })
            })
            .collect()
    }

    /// The same in the Prometheus text format (`tolk_listeners{language="es"}` …).
    pub fn prometheus(&self) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        type Row = (&'static str, &'static str, &'static str, fn(&Channel) -> f64);
        let rows: [Row; 4] = [
            ("tolk_listeners", "Listeners connected now.", "gauge", |c| c.listeners.load(Relaxed) as f64),
            ("tolk_listener_packets_total", "20 ms packets produced.", "counter", |c| c.packets.load(Relaxed) as f64),
            (
                "tolk_listener_packets_skipped_total",
                "Packets listeners skipped because they fell behind.",
                "counter",
                |c| c.dropped.load(Relaxed) as f64,
            ),
            (
                "tolk_listener_route_audio_dropped_seconds",
                "Route audio the listener hub dropped (its inbox full or over 30 s waiting).",
                "counter",
                |c| c.input_dropped.load(Relaxed) as f64 / f64::from(RATE),
            ),
        ];
        for (name, help, kind, f) in rows {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for c in &self.channels {
                let _ = writeln!(o, "{name}{{language=\"{}\"}} {}", c.code, f(c));
            }
        }
        o
    }

    /// Stops the pacing thread (listeners' audio ends).
    pub fn stop(&self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}

/// The caption frame of a text event.
pub fn caption_json(item: &TextItem) -> Utf8Bytes {
    let role = match item.role {
        TextRole::Source => "source",
        TextRole::Translation => "translation",
    };
    serde_json::json!({
        "type": "caption",
        "role": role,
        "final": item.is_final,
        "utterance": item.utterance_id,
        "language": &*item.language,
        "text": item.text,
        "start_ms": item.start_ms,
        "end_ms": item.end_ms,
    })
    .to_string()
    .into()
}

/// A packet: the header, then `payload`.
pub fn packet(seq: u32, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    out.extend_from_slice(&seq.to_be_bytes());
    let us = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
    out.extend_from_slice(&us.to_be_bytes());
    out.extend_from_slice(payload);
    out.into()
}

/// The pacing thread's state.
struct Pacer {
    channels: Vec<Arc<Channel>>,
    inboxes: Vec<Receiver<Chunk>>,
    encoders: Vec<opus::Encoder>,
    pending: Vec<VecDeque<i16>>,
    /// Per channel the (muted, floor_only) its pending audio belongs to: a switch drops it.
    modes: Vec<(bool, bool)>,
    stop: Arc<AtomicBool>,
}

impl Pacer {
    fn run(mut self) {
        let start = Instant::now();
        let mut seq: u32 = 0;
        let mut frame = vec![0i16; FRAME];
        let mut pcm = vec![0u8; FRAME * 2];
        let mut opus_out = vec![0u8; 1500];
        while !self.stop.load(Relaxed) {
            // Absolute deadlines: a late tick is made up by the next, the rate never drifts.
            let due = start + FRAME_PERIOD * seq;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            } else if now - due > Duration::from_millis(200) {
                // Far behind (the machine stalled): skip ahead rather than burst.
                seq += ((now - due).as_millis() / FRAME_PERIOD.as_millis()) as u32;
                continue;
            }
            for c in 0..self.channels.len() {
                let ch = &self.channels[c];
                let pending = &mut self.pending[c];
                let mode = (ch.muted.load(Relaxed), ch.floor_only.load(Relaxed));
                if mode != self.modes[c] {
                    // Switched: what waits belongs to the other mode (unmuting does not replay
                    // what was said meanwhile, the floor does not follow the translation).
                    self.modes[c] = mode;
                    pending.clear();
                    while self.inboxes[c].try_recv().is_ok() {}
                }
                while let Ok(chunk) = self.inboxes[c].try_recv() {
                    pending.extend(chunk.samples.iter().copied());
                }
                if pending.len() > MAX_PENDING {
                    let over = pending.len() - MAX_PENDING;
                    pending.drain(..over);
                    ch.input_dropped.fetch_add(over as u64, Relaxed);
                }
                let n = pending.len().min(FRAME);
                for (i, s) in frame.iter_mut().enumerate() {
                    *s = if i < n { pending[i] } else { 0 };
                }
                pending.drain(..n);
                ch.packets.fetch_add(1, Relaxed);
                // Encoded once per language, whoever listens; skipped only with nobody at all.
                if ch.opus.receiver_count() > 0 {
                    match self.encoders[c].encode(&frame, &mut opus_out) {
                        Ok(len) => {
                            let _ = ch.opus.send(packet(seq, &opus_out[..len]));
                        }
                        Err(e) => tracing::warn!("listen: Opus encoding for \"{}\" failed: {e}", ch.code),
                    }
                }
                if ch.pcm.receiver_count() > 0 {
                    for (i, s) in frame.iter().enumerate() {
                        pcm[2 * i..2 * i + 2].copy_from_slice(&s.to_le_bytes());
                    }
                    let _ = ch.pcm.send(packet(seq, &pcm));
                }
            }
            seq = seq.wrapping_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Arc<Hub> {
        let text = r#"
[listen]
[[source]]
id = "stage"
plugin = "tolk.tone"
language = "en"
[[route]]
source = "stage"
to = ["floor", "es"]
"#;
        let (config, errors) = crate::config::parse_str(text, "t.toml", std::path::Path::new("."));
        assert!(errors.is_empty(), "{errors:?}");
        Hub::start(&config).unwrap().unwrap()
    }

    fn samples(p: &Bytes) -> Vec<i16> {
        p[HEADER_BYTES..].chunks(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
    }

    #[tokio::test]
    async fn a_burst_is_played_out_in_20_ms_packets_then_silence() {
        let hub = hub();
        assert_eq!(hub.channels.iter().map(|c| c.code.as_str()).collect::<Vec<_>>(), ["floor", "es"]);
        let es = Arc::clone(hub.channel("es").unwrap());
        let mut rx = es.pcm.subscribe();
        // 50 ms of a ramp arrives at once (a response's audio comes faster than it plays).
        let burst: Vec<i16> = (1..=1200).collect();
        let chunk = Chunk { offset: 0, samples: Arc::from(burst.clone()), born: Instant::now() };
        // Route 1 is `es`: wait for a packet first so the burst is not split by a tick.
        rx.recv().await.unwrap();
        hub.audio(1, &chunk);
        let mut got = vec![];
        let mut seqs = vec![];
        let start = Instant::now();
        while got.len() < 1200 + 2 * FRAME {
            let p = rx.recv().await.unwrap();
            seqs.push(u32::from_be_bytes(p[..4].try_into().unwrap()));
            let s = samples(&p);
            assert_eq!(s.len(), FRAME);
            // Skip the silent packets before the burst arrived.
            if got.is_empty() && s.iter().all(|&x| x == 0) {
                continue;
            }
            got.extend(s);
        }
        assert_eq!(&got[..1200], &burst[..], "the burst in order, nothing lost");
        assert!(got[1200..].iter().all(|&x| x == 0), "silence after it");
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "consecutive packets: {seqs:?}");
        // 5+ packets of 20 ms: paced at real time, not sent at once (lower bound only).
        assert!(start.elapsed() >= Duration::from_millis(60), "{:?}", start.elapsed());
        assert_eq!(es.input_dropped.load(Relaxed), 0);
        hub.stop();
    }

    #[test]
    fn source_transcripts_also_caption_the_floor_translations_only_their_language() {
        let hub = hub();
        let (floor, es) = (hub.channel("floor").unwrap(), hub.channel("es").unwrap());
        let (mut f, mut e) = (floor.captions.subscribe(), es.captions.subscribe());
        let item = |role, text: &str| TextItem {
            role,
            is_final: true,
            utterance_id: 3,
            language: Arc::from(if role == TextRole::Source { "en" } else { "es" }),
            text: text.into(),
            start_ms: 1000,
            end_ms: 2500,
        };
        hub.text(1, &item(TextRole::Source, "[en] utterance 3"));
        hub.text(1, &item(TextRole::Translation, "[es] utterance 3"));
        let json = |t: Utf8Bytes| serde_json::from_str::<serde_json::Value>(&t).unwrap();
        let got_es: Vec<_> = [e.try_recv().unwrap(), e.try_recv().unwrap()].map(json).into();
        assert_eq!(got_es[0]["role"], "source");
        assert_eq!(got_es[1]["text"], "[es] utterance 3");
        assert_eq!(got_es[1]["start_ms"], 1000);
        assert_eq!(got_es[1]["type"], "caption");
        assert_eq!(json(f.try_recv().unwrap())["text"], "[en] utterance 3");
        assert!(f.try_recv().is_err(), "no translation on the floor");
        hub.stop();
    }

    #[tokio::test]
    async fn muted_is_silence_without_captions_and_the_floor_replaces_the_translation() {
        let hub = hub();
        let es = Arc::clone(hub.channel("es").unwrap());
        let (mut audio, mut captions) = (es.pcm.subscribe(), es.captions.subscribe());
        let chunk = |v: i16| Chunk { offset: 0, samples: Arc::from(vec![v; 2 * FRAME]), born: Instant::now() };
        let item = |role| TextItem {
            role,
            is_final: true,
            utterance_id: 1,
            language: Arc::from("es"),
            text: "x".into(),
            start_ms: 0,
            end_ms: 0,
        };
        // Plays the chunk given on the next tick and returns the first packet with sound.
        async fn loud(rx: &mut broadcast::Receiver<Bytes>, feed: impl Fn()) -> Option<i16> {
            rx.recv().await.unwrap();
            feed();
            for _ in 0..5 {
                let s = samples(&rx.recv().await.unwrap());
                if let Some(&x) = s.iter().find(|&&x| x != 0) {
                    return Some(x);
                }
            }
            None
        }
        assert_eq!(loud(&mut audio, || hub.audio(1, &chunk(500))).await, Some(500), "the translation plays");
        hub.set_muted("es", true).unwrap();
        assert_eq!(loud(&mut audio, || hub.audio(1, &chunk(500))).await, None, "muted: silence");
        hub.text(1, &item(TextRole::Translation));
        hub.text(1, &item(TextRole::Source));
        assert!(captions.try_recv().is_err(), "muted: no caption");
        hub.set_muted("es", false).unwrap();
        hub.set_floor_only("es", true).unwrap();
        let both = || {
            hub.audio(1, &chunk(500));
            hub.source_audio(0, &chunk(-7));
        };
        assert_eq!(loud(&mut audio, both).await, Some(-7), "on the floor: the source, not the translation");
        hub.text(1, &item(TextRole::Translation));
        hub.text(1, &item(TextRole::Source));
        let c: serde_json::Value = serde_json::from_str(&captions.try_recv().unwrap()).unwrap();
        assert_eq!(c["role"], "source", "the original's transcript only");
        assert!(captions.try_recv().is_err());
        assert_eq!(hub.set_floor_only("floor", true).unwrap_err(), "\"floor\" is the floor already");
        assert_eq!(hub.set_muted("de", true).unwrap_err(), "no language \"de\" here");
        hub.stop();
    }

    #[tokio::test]
    async fn a_listener_that_does_not_read_skips_its_own_oldest_packets_only() {
        let hub = hub();
        let floor = Arc::clone(hub.channel("floor").unwrap());
        let mut slow = floor.opus.subscribe();
        let mut fast = floor.opus.subscribe();
        let mut last = None;
        // More packets than the PACKETS_KEPT a listener may fall behind.
        for _ in 0..(PACKETS_KEPT + 30) {
            let p = fast.recv().await.unwrap();
            let seq = u32::from_be_bytes(p[..4].try_into().unwrap());
            if let Some(l) = last {
                assert_eq!(seq, l + 1, "the reading listener misses nothing");
            }
            last = Some(seq);
            assert!(p.len() > HEADER_BYTES, "an Opus packet follows the header");
        }
        match slow.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => assert!(n >= 30, "{n}"),
            other => panic!("the idle listener should have lagged: {other:?}"),
        }
        // After skipping, it reads the newest packets kept.
        assert!(slow.recv().await.is_ok());
        hub.stop();
    }
}
