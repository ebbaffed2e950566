//! The listener web app: `tolk run` with a `[listen]` section serves a page where the audience
//! picks a language, taps Listen and hears the interpretation with captions on their own
//! phones — no app to install.
//!
//! ```text
//!  router: Shared::deliver_audio / deliver_text (per route, never waiting)
//!      └─▶ hub (one per run): per offered language an inbox, one pacing thread that encodes
//!          each language ONCE to Opus (20 ms) and frames PCM, broadcast to its listeners
//!              └─▶ server: GET / (page), /api/languages, /ws?lang=es&codec=opus|pcm
//!                     └─▶ one task per listener: packets + caption JSON over its WebSocket
//! ```
//!
//! - [`hub`]: the route → language fan-out, pacing and encoding.
//! - [`server`]: HTTP(S), the fixed set of paths, listener sessions.
//! - [`assets`]: the page (HTML, JS, AudioWorklet, CSS) compiled into the binary.
//! - [`names`]: language names in their own language.
//!
//! ## Wire format of `/ws`
//!
//! The first frame is JSON text: `{"type":"hello","lang","name","codec","sample_rate":24000,
//! "frame_ms":20,"title"}`. Then every 20 ms one **binary** frame: a 12-byte header
//! (sequence number u32 big-endian, send time u64 big-endian in µs since the Unix epoch) and
//! the payload — one Opus packet (24 kHz mono, 32 kbit/s) for `codec=opus`, or 480 samples of
//! 16-bit little-endian PCM for `codec=pcm`. Silence is sent as silence, so the stream is
//! continuous. Captions are JSON text frames: `{"type":"caption","role":"translation"|"source",
//! "final":bool,"utterance","language","text","start_ms","end_ms"}` (`start_ms`/`end_ms` on
//! the source's clock). A client may send `{"type":"ping","t":X}` and gets `{"type":"pong","t":X}`.
//!
//! ## Why in core, not a sink plugin
//!
//! The operator console (next) shows route state, levels, drops and listener counts, and its
//! controls (mute a route, floor-only, announcements) act on the router — all of which live in
//! core; the listener server is the same HTTP server, so it lives there too, fed directly from
//! the router's delivery points (no conversion per sink, one Opus encode per language however
//! many sinks exist). A third party who wants another delivery (Icecast, HLS, SIP) still
//! writes a sink plugin: the sink ABI gives it the same per-route audio (24 kHz mono with
//! offsets) and the same text events (translation and source, deltas and finals) that feed
//! this hub.

pub mod assets;
pub mod hub;
pub mod names;
pub mod server;

pub use hub::Hub;
pub use server::ListenServer;
