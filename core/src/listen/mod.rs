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
//! - [`server`]: HTTP(S), the fixed set of paths, listener sessions, the operator console and
//!   its API (token-protected).
//! - [`icecast`]: each language also to an Icecast server, Ogg/Opus by HTTP PUT (optional).
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
//! The operator console (`/operator`, with `operator_token`) shows route state, levels, drops
//! and listener counts from the router's [`crate::router::metrics::RunStats`], and its
//! controls (mute a language, floor-only, announcements to every route's session) act on this hub — all of which live in core; the
//! listener server is the same HTTP server, so it lives there too, fed directly from
//! the router's delivery points (no conversion per sink, one Opus encode per language however
//! many sinks exist). A third party who wants another delivery (Icecast, HLS, SIP) still
//! writes a sink plugin: the sink ABI gives it the same per-route audio (24 kHz mono with
//! offsets) and the same text events (translation and source, deltas and finals) that feed
//! this hub.

pub mod assets;
pub mod hub;
pub mod icecast;
pub mod names;
pub mod server;

pub use hub::Hub;
pub use server::ListenServer;

/// `text` (a URL) as a QR code for a terminal: two modules per character cell, the dark modules
/// drawn as spaces on light blocks, so it scans on the usual dark terminal background.
pub fn qr(text: &str) -> Result<String, String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|e| format!("cannot make a QR code of {text}: {e}"))?;
    Ok(code.render::<Dense1x2>().dark_color(Dense1x2::Light).light_color(Dense1x2::Dark).quiet_zone(true).build())
}

/// `text` as an SVG QR code, `px` pixels wide (for the printable page).
pub fn qr_svg(text: &str, px: u32) -> Result<String, String> {
    use qrcode::render::svg;
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|e| format!("cannot make a QR code of {text}: {e}"))?;
    Ok(code.render::<svg::Color>().min_dimensions(px, px).quiet_zone(true).build())
}

/// `url` with `key=value` added to its query.
pub fn with_query(url: &str, key: &str, value: &str) -> String {
    format!("{url}{}{key}={value}", if url.contains('?') { '&' } else { '?' })
}

/// The URL listeners open: `public_url`, else the server's own; with `?code=` when the event
/// has a code.
pub fn listener_url(settings: &crate::config::listen::ListenSettings, server_url: &str) -> String {
    let base = settings.public_url.as_deref().unwrap_or(server_url);
    match &settings.event_code {
        Some(code) => with_query(base, "code", code),
        None => base.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_qr_code_is_a_square_of_block_characters() {
        let q = qr("https://192.168.1.20:8443/?code=acme-2026").unwrap();
        let lines: Vec<&str> = q.lines().collect();
        let width = lines[0].chars().count();
        // Version 3 (29 modules) + 4-module quiet zones = 37 wide, two rows per line.
        assert_eq!(width, 37, "{q}");
        assert_eq!(lines.len(), 37usize.div_ceil(2));
        assert!(lines.iter().all(|l| l.chars().count() == width && l.chars().all(|c| " ▀▄█".contains(c))));
    }
}
