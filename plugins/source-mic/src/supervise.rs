//! What the two device plugins' device threads share, apart from the cpal code in `device.rs`:
//! resolving the configured device at `new`, waiting for the thread's first open at `start`,
//! and keeping a stream alive (noticing a lost device, reopening it). `tolk.mic` compiles this
//! file as its `supervise` module and `tolk.speaker` includes it by path, like `device.rs`.
//! Unlike `device.rs` it may call into the host (it logs); it never touches a stream's callback.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, SyncSender},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tolk_plugin_api::prelude::*;

use crate::device::{self, Backend, Channel, Counters, Direction, FindError, Stream};

/// The rate used for a device that is absent at `new` when no `sample_rate` is configured.
pub const FALLBACK_RATE: u32 = 48_000;
/// A stream whose callbacks stop for this long counts as lost.
pub const WATCHDOG: Duration = Duration::from_secs(2);

/// The device settings both plugins' configs share.
pub struct DeviceConfig<'a> {
    /// `default`, a device's exact name, or a unique part of it.
    pub device: &'a str,
    /// Counting from 1; 0 is every channel.
    pub channel: u16,
    /// 0 is the device's default.
    pub sample_rate: u32,
    pub buffer_frames: u32,
    /// `on_missing = "wait"`.
    pub wait: bool,
}

/// Checks the keys both device plugins share that come before the plugin's own.
pub fn check_device(device: &str, buffer_frames: u32, reopen_ms: u64) -> Result<(), PluginError> {
    if device.trim().is_empty() {
        return Err(PluginError::config("device: must not be empty (use \"default\")"));
    }
    if !(16..=16_384).contains(&buffer_frames) {
        return Err(PluginError::config(format!("buffer_frames: {buffer_frames} is outside 16..=16384")));
    }
    if !(50..=60_000).contains(&reopen_ms) {
        return Err(PluginError::config(format!("reopen_ms: {reopen_ms} is outside 50..=60000")));
    }
    Ok(())
}

/// Checks `sample_rate` (0 or 8000..=384000).
pub fn check_rate(sample_rate: u32) -> Result<(), PluginError> {
    if sample_rate != 0 && !(8_000..=384_000).contains(&sample_rate) {
        return Err(PluginError::config(format!("sample_rate: {sample_rate} is outside 8000..=384000")));
    }
    Ok(())
}

/// Resolves the configured device at `new`: (channel selection, display name, rate). A missing
/// device with `wait` is a warning and (the configured name, the wanted or fallback rate).
pub fn resolve(dir: Direction, c: &DeviceConfig<'_>, host: &Host) -> Result<(Channel, String, u32), PluginError> {
    let channel = if c.channel == 0 { Channel::All } else { Channel::One(c.channel - 1) };
    let wanted_rate = (c.sample_rate != 0).then_some(c.sample_rate);
    let (name, rate) = match device::resolve(dir, c.device, wanted_rate, channel, c.buffer_frames) {
        Ok(r) => {
            host.debug(format!("device {:?}: {} Hz, {} ch, {} (native)", r.name, r.rate, r.channels, r.sample_format));
            (r.name, r.rate)
        }
        Err(FindError::Missing(m)) if c.wait => {
            host.warn(format!("{m}; waiting for it (on_missing = \"wait\")"));
            (c.device.to_string(), wanted_rate.unwrap_or(FALLBACK_RATE))
        }
        Err(e) => return Err(e.into_plugin_error()),
    };
    Ok((channel, name, rate))
}

/// Waits (5 s at most) for the device thread to report its first open; on failure or timeout,
/// stops and joins it.
pub fn await_ready(
    ready: &Receiver<Result<(), PluginError>>,
    thread: JoinHandle<()>,
    stop: &AtomicBool,
    name: &str,
) -> Result<JoinHandle<()>, PluginError> {
    match ready.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok(())) => Ok(thread),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            stop.store(true, Ordering::Release);
            let _ = thread.join();
            Err(PluginError::io(format!("device {name:?}: opening it did not finish within 5 s")))
        }
    }
}

/// A device thread's stream keeper: what it logs, and when it looks at the device.
pub struct Keeper<'a> {
    pub dir: Direction,
    /// The configured device (what we look for when reopening).
    pub wanted: &'a str,
    /// Its display name, for log lines.
    pub name: &'a str,
    pub reopen: Duration,
    pub host: &'a Host,
    /// What the stream does, for log lines: "capturing", "playing".
    pub doing: &'static str,
    /// What the thread does while the device is away: "writing silence", "discarding audio".
    pub meanwhile: &'static str,
    /// What a stall is: "no audio", "no callbacks".
    pub stall: &'static str,
    /// Times the device was lost.
    pub losses: u64,
    /// The callback count last seen and when it changed.
    callbacks: (u64, Instant),
    /// When we last asked whether the device is still listed.
    presence: Instant,
}

/// The stream as the device thread holds it, and the device's absence: when it went, frames
/// made up for since, and the next reopen attempt.
pub type Absent = Option<(Instant, u64, Instant)>;

impl<'a> Keeper<'a> {
    /// A keeper with no loss seen yet; see the fields for the rest.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dir: Direction,
        wanted: &'a str,
        name: &'a str,
        reopen: Duration,
        host: &'a Host,
        doing: &'static str,
        meanwhile: &'static str,
        stall: &'static str,
    ) -> Self {
        Keeper {
            dir,
            wanted,
            name,
            reopen,
            host,
            doing,
            meanwhile,
            stall,
            losses: 0,
            callbacks: (0, Instant::now()),
            presence: Instant::now(),
        }
    }

    /// Reports the thread's first open to `ready` (`Ok` also when the device is missing and
    /// `wait`) and starts the keeper's clocks; `None` when the thread must end (the error went
    /// to `ready`).
    pub fn first_open(
        &mut self,
        opened: Result<Stream, PluginError>,
        wait: bool,
        started: String,
        ready: &SyncSender<Result<(), PluginError>>,
    ) -> Option<(Option<Stream>, Absent)> {
        let stream = match opened {
            Ok(s) => {
                self.host.info(started);
                Some(s)
            }
            Err(e) if wait => {
                self.host.warn(format!("{e}; {} until it appears", self.meanwhile));
                None
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return None;
            }
        };
        let _ = ready.send(Ok(()));
        self.callbacks = (0, Instant::now());
        self.presence = Instant::now();
        let absent = stream.is_none().then(|| (Instant::now(), 0, Instant::now() + self.reopen));
        Some((stream, absent))
    }

    /// Checks an open stream: lost when the callback reported an error, the callbacks stopped
    /// for [`WATCHDOG`], or (looked at every `reopen`) the device is no longer listed. A lost
    /// stream is logged, dropped and counted, and the absence starts.
    pub fn check(&mut self, stream: &mut Option<Stream>, absent: &mut Absent, backend: &Backend, c: &Counters) {
        if stream.is_none() {
            return;
        }
        let calls = Counters::get(&c.callbacks);
        if calls != self.callbacks.0 {
            self.callbacks = (calls, Instant::now());
        }
        let stalled = self.callbacks.1.elapsed() > WATCHDOG;
        let gone = self.presence.elapsed() >= self.reopen && {
            self.presence = Instant::now();
            !backend.present(self.dir, self.wanted)
        };
        if c.lost.swap(false, Ordering::AcqRel) || stalled || gone {
            let why = if stalled {
                format!("{} for {} s", self.stall, WATCHDOG.as_secs())
            } else if gone {
                "it is no longer listed".to_string()
            } else {
                c.last_error.lock().map(|e| e.clone()).unwrap_or_default()
            };
            self.host.warn(format!(
                "device {:?} lost ({why}); {} and retrying every {} ms",
                self.name,
                self.meanwhile,
                self.reopen.as_millis()
            ));
            *stream = None;
            self.losses += 1;
            *absent = Some((Instant::now(), 0, Instant::now() + self.reopen));
        }
    }

    /// While the device is away and a reopen attempt is due: opens it again on a fresh backend
    /// (the old connection may have died with the server). On success the stream is back and
    /// the absence over; else the next attempt is in `reopen`.
    pub fn retry(
        &mut self,
        stream: &mut Option<Stream>,
        absent: &mut Absent,
        backend: &mut Backend,
        c: &Counters,
        open: impl FnOnce(&Backend) -> Result<Stream, PluginError>,
    ) {
        let Some((_, _, next_try)) = absent.as_mut() else { return };
        if Instant::now() < *next_try {
            return;
        }
        *backend = Backend::new();
        match open(backend) {
            Ok(s) => {
                self.host.info(format!("device {:?} is back; {} again", self.name, self.doing));
                *stream = Some(s);
                *absent = None;
                self.callbacks = (Counters::get(&c.callbacks), Instant::now());
            }
            Err(e) => {
                self.host.debug(format!("still waiting for {:?}: {e}", self.name));
                *next_try = Instant::now() + self.reopen;
            }
        }
    }
}
