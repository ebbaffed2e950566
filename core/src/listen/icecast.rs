//! Icecast publishing: each offered language is also sent to an Icecast server as Ogg/Opus by
//! HTTP PUT, one mount per language (`/es.ogg`), so Icecast relays or a CDN carry it to an
//! audience larger than one machine serves.
//!
//! The packets are the hub's own (encoded **once** per language; see [`super::hub`]): this
//! module only wraps them in Ogg pages (`OpusHead`, `OpusTags`, then one page per 20 ms packet,
//! granule positions at 48 kHz as RFC 7845 wants) and writes them to the mount. A mount that
//! refuses (wrong password, mount taken) or a connection that breaks is tried again with a
//! back-off from 1 s up to 10 s, each failure logged once per streak; it never slows a route or
//! a listener (it reads the same broadcast channel as a listener does, and skips what it falls
//! behind on).
//!
//! Latency: Icecast buffers (its `burst-size`, 64 KiB by default, ~16 s of 32 kbit/s Opus, sent
//! to each new client at once) and players buffer several seconds more, so a listener through
//! Icecast hears the speech **several seconds** after one on the page's WebSocket (~0.1 s on a
//! LAN). It is for the overflow audience and relays, not for the room.

use std::{
    io::Write,
    sync::{Arc, Mutex, atomic::Ordering::Relaxed},
    time::Duration,
};

use base64::Engine as _;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::{broadcast::error::RecvError, watch},
    task::JoinHandle,
};

use super::hub::{Channel, HEADER_BYTES, Hub};
use crate::config::listen::Icecast;

/// The mount of language `code`.
pub fn mount(code: &str) -> String {
    format!("/{code}.ogg")
}

/// Starts one publisher per offered language on the current runtime; they end when `stop`
/// turns true.
pub fn spawn(ice: &Icecast, title: &str, hub: &Hub, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    hub.channels
        .iter()
        .map(|c| {
            let (ice, title, channel, stop) = (ice.clone(), title.to_string(), Arc::clone(c), stop.clone());
            tokio::spawn(async move { publish(ice, title, channel, stop).await })
        })
        .collect()
}

async fn publish(ice: Icecast, title: String, channel: Arc<Channel>, mut stop: watch::Receiver<bool>) {
    let mut delay = Duration::from_secs(1);
    let mut failing = false;
    loop {
        let result = tokio::select! {
            r = session(&ice, &title, &channel) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        match result {
            Ok(()) => delay = Duration::from_secs(1),
            Err(e) if !failing => {
                tracing::warn!("icecast {}{}: {e}; trying again", ice.host, mount(&channel.code));
                failing = true;
            }
            Err(e) => tracing::debug!("icecast {}{}: {e}", ice.host, mount(&channel.code)),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// A `Write` into a shared buffer (the Ogg writer's output, taken after each packet).
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// `OpusHead` (RFC 7845 §5.1): version 1, mono, pre-skip 312 (libopus's look-ahead at 24 kHz,
/// in 48 kHz samples), input rate 24 kHz, no gain, mapping family 0.
pub fn opus_head() -> Vec<u8> {
    let mut h = b"OpusHead".to_vec();
    h.push(1);
    h.push(1);
    h.extend_from_slice(&312u16.to_le_bytes());
    h.extend_from_slice(&crate::router::RATE.to_le_bytes());
    h.extend_from_slice(&0i16.to_le_bytes());
    h.push(0);
    h
}

/// `OpusTags` (RFC 7845 §5.2) with tolk as vendor and the stream's title.
pub fn opus_tags(title: &str) -> Vec<u8> {
    let vendor = concat!("tolk ", env!("CARGO_PKG_VERSION"));
    let mut t = b"OpusTags".to_vec();
    t.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    t.extend_from_slice(vendor.as_bytes());
    let comment = format!("TITLE={title}");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(&(comment.len() as u32).to_le_bytes());
    t.extend_from_slice(comment.as_bytes());
    t
}

/// One PUT to the mount: the answer, then pages until the connection breaks or the run ends.
async fn session(ice: &Icecast, title: &str, channel: &Channel) -> Result<(), String> {
    let mut tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(&ice.host))
        .await
        .map_err(|_| "connect: timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("source:{}", ice.password.expose()));
    let name = format!("{title} — {}", channel.name).replace(['\r', '\n'], " ");
    let head = format!(
        "PUT {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {auth}\r\nContent-Type: audio/ogg\r\nIce-Name: {name}\r\n\
         Ice-Public: 0\r\nExpect: 100-continue\r\n\r\n",
        mount(&channel.code),
        ice.host
    );
    tcp.write_all(head.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    // The answer: 100 Continue or 200 OK before any audio; anything else is the refusal.
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") && answer.len() < 4096 {
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut byte)).await {
            Ok(Ok(1)) => answer.push(byte[0]),
            Ok(Ok(_)) => return Err("the server closed the connection before answering".into()),
            Ok(Err(e)) => return Err(format!("read: {e}")),
            Err(_) => return Err("no answer within 5 s".into()),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.lines().next().unwrap_or("").trim().to_string();
    let code = status.split(' ').nth(1).unwrap_or("");
    if code == "401" {
        return Err(format!("{status}: listen.icecast_password is wrong"));
    }
    if code != "100" && code != "200" {
        return Err(format!("the server refused the mount: {status}"));
    }
    tracing::info!("icecast: publishing {} to {}{}", channel.code, ice.host, mount(&channel.code));
    let mut packets = channel.opus.subscribe();
    let buffer = Buffer::default();
    let mut ogg = ogg::writing::PacketWriter::new(buffer.clone());
    // The stream's serial number: FNV-1a of the language code (stable across reconnects).
    let serial = channel.code.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    use ogg::writing::PacketWriteEndInfo::EndPage;
    ogg.write_packet(opus_head(), serial, EndPage, 0).map_err(|e| format!("ogg: {e}"))?;
    ogg.write_packet(opus_tags(&name), serial, EndPage, 0).map_err(|e| format!("ogg: {e}"))?;
    let mut granule: u64 = 0;
    loop {
        let out = buffer.take();
        if !out.is_empty() {
            match tokio::time::timeout(super::server::WRITE_TIMEOUT, tcp.write_all(&out)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("write: {e}")),
                Err(_) => return Err("write: timed out".into()),
            }
        }
        let p = match packets.recv().await {
            Ok(p) => p,
            Err(RecvError::Lagged(n)) => {
                channel.dropped.fetch_add(n, Relaxed);
                continue;
            }
            Err(RecvError::Closed) => return Ok(()),
        };
        // 20 ms at 48 kHz per packet.
        granule += 960;
        ogg.write_packet(p[HEADER_BYTES..].to_vec(), serial, EndPage, granule).map_err(|e| format!("ogg: {e}"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opus_headers_follow_rfc_7845() {
        let h = opus_head();
        assert_eq!(h.len(), 19);
        assert_eq!(&h[..8], b"OpusHead");
        assert_eq!((h[8], h[9]), (1, 1), "version 1, mono");
        assert_eq!(u32::from_le_bytes(h[12..16].try_into().unwrap()), 24_000);
        let t = opus_tags("Keynote — Español");
        assert_eq!(&t[..8], b"OpusTags");
        let vendor_len = u32::from_le_bytes(t[8..12].try_into().unwrap()) as usize;
        assert!(String::from_utf8_lossy(&t[12..12 + vendor_len]).starts_with("tolk "));
        assert!(t.ends_with("TITLE=Keynote — Español".as_bytes()));
    }
}
