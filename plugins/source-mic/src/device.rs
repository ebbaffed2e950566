//! All of tolk's cpal code, shared by the two device plugins: `tolk.mic` compiles this file as
//! its `device` module and `tolk.speaker` includes the same file by path (so there is one
//! place that talks to the audio backend and no extra crate between two cdylibs).
//!
//! What it owns:
//! - finding a device by exact name, by a unique substring, or `default`; a miss is one line
//!   listing the devices that do exist;
//! - the listing behind `tolk devices` ([`list`]);
//! - opening a stream in the device's **native** rate-independent format (its own sample type
//!   and channel count) with a small fixed buffer, and converting at the edge: the plugin sees
//!   mono `f32` only ([`Channel`] picks one channel of a multi-channel interface, or mixes);
//! - the data callbacks. They never block, never allocate (scratch space is allocated when the
//!   stream is built) and take no lock: they hand mono samples to the plugin's closure, which
//!   does ring-buffer writes only, and count what they could not deliver in [`Counters`].
//!
//! What it must not do: keep a `Stream` anywhere but on the plugin's own device thread (cpal
//! streams are not `Send` on every platform), or call into the host.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use cpal::{
    BufferSize, FromSample, Sample, SampleFormat as CpalFormat, SizedSample, StreamConfig, SupportedBufferSize,
    traits::{DeviceTrait, HostTrait, StreamTrait},
};
use tolk_plugin_api::{PluginError, device::DeviceInfo};

/// Frames converted per step inside a callback: the scratch buffer's size. A device buffer
/// larger than this is processed in several steps, so nothing is allocated on the hot path.
const CHUNK_FRAMES: usize = 2048;

/// How long building a stream may take before we give up (a hung server must not hang us).
const BUILD_TIMEOUT: Duration = Duration::from_secs(2);

/// Rates offered in listings, when the device's ranges contain them.
const COMMON_RATES: [u32; 12] =
    [8_000, 11_025, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 88_200, 96_000, 176_400, 192_000];

/// Capture or playback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Microphones, line inputs, monitors of outputs.
    Input,
    /// Loudspeakers, headphones.
    Output,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Input => "input",
            Direction::Output => "output",
        }
    }
}

/// Which channels of a device frame the plugin's mono signal comes from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Input: the average of all channels. Output: the same signal on every channel.
    All,
    /// One channel, zero-based (config files say `channel = 1` for the first). Output: the
    /// other channels get silence.
    One(u16),
}

/// What the callbacks and the device thread count. Shared through an `Arc`; all atomics, so
/// the callback never waits for anyone.
#[derive(Debug, Default)]
pub struct Counters {
    /// Data callbacks so far (the device thread's watchdog: a stream that stops calling back
    /// is treated as lost).
    pub callbacks: AtomicU64,
    /// Frames that went through the device.
    pub frames: AtomicU64,
    /// Frames the plugin could not take or give in time (ring full on capture, queue full on
    /// playback).
    pub overrun_frames: AtomicU64,
    /// Playback ran dry in the middle of a continuous stream (counted by the speaker).
    pub underruns: AtomicU64,
    /// Device buffer over/underruns: reported by the backend, or detected by [`Pace`] (the
    /// device ran dry or dropped input because a callback came too late).
    pub xruns: AtomicU64,
    /// Frames the device lost in those xruns (as far as [`Pace`] can tell).
    pub xrun_frames: AtomicU64,
    /// Set by the error callback when the device went away; the device thread reopens.
    pub lost: AtomicBool,
    /// The last backend error, for the log line (written by the error callback only).
    pub last_error: Mutex<String>,
}

impl Counters {
    /// Adds `n` to a counter (relaxed: these are statistics).
    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// A device as resolved at `new`: its display name and the native format we will open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The device's name, as listings show it.
    pub name: String,
    /// The rate the stream runs at (the plugin's declared rate).
    pub rate: u32,
    /// The channel count the stream opens with.
    pub channels: u16,
    /// The native sample type, for the log.
    pub sample_format: String,
}

/// Why a device could not be resolved.
#[derive(Debug)]
pub enum FindError {
    /// No such device (or it cannot be opened now); the message lists the existing ones.
    Missing(String),
    /// Anything else (an ambiguous name, an unsupported rate or channel).
    Other(PluginError),
}

impl FindError {
    /// The error as a config error (what `new` reports).
    pub fn into_plugin_error(self) -> PluginError {
        match self {
            FindError::Missing(m) => PluginError::config(m),
            FindError::Other(e) => e,
        }
    }
}

/// A running stream. Lives on the plugin's device thread only; dropping it stops the device.
pub struct Stream {
    _stream: cpal::Stream,
}

fn host() -> cpal::Host {
    cpal::default_host()
}

/// A connection to the audio backend, kept by a device thread to open streams and to check
/// that its device is still there. PulseAudio *moves* a stream whose device disappears to
/// another device instead of failing it, so "still there" is checked by name, not inferred
/// from the stream.
pub struct Backend {
    host: cpal::Host,
}

impl Backend {
    /// Connects to the default host (PulseAudio when a server is reachable, ALSA otherwise).
    pub fn new() -> Backend {
        Backend { host: host() }
    }

    /// True when `wanted` names an existing device of `dir` (`default` always does while
    /// there is a default device).
    pub fn present(&self, dir: Direction, wanted: &str) -> bool {
        find(&self.host, dir, wanted).is_ok()
    }
}

fn name_of(d: &cpal::Device) -> String {
    d.description().map(|d| d.name().to_string()).unwrap_or_else(|_| d.to_string())
}

fn id_of(d: &cpal::Device) -> String {
    d.id().map(|i| i.id().to_string()).unwrap_or_default()
}

fn devices(host: &cpal::Host, dir: Direction) -> Result<Vec<cpal::Device>, PluginError> {
    let list = match dir {
        Direction::Input => host.input_devices().map(|d| d.collect()),
        Direction::Output => host.output_devices().map(|d| d.collect()),
    };
    list.map_err(|e| PluginError::io(format!("cannot list {} devices ({}): {e}", dir.as_str(), host.id())))
}

fn default_device(host: &cpal::Host, dir: Direction) -> Option<cpal::Device> {
    let d = match dir {
        Direction::Input => host.default_input_device(),
        Direction::Output => host.default_output_device(),
    }?;
    // A bare ALSA system names a "default" device that cannot be opened: that is no device.
    default_config(&d, dir).ok().map(|_| d)
}

fn default_config(d: &cpal::Device, dir: Direction) -> Result<cpal::SupportedStreamConfig, cpal::Error> {
    match dir {
        Direction::Input => d.default_input_config(),
        Direction::Output => d.default_output_config(),
    }
}

fn ranges(d: &cpal::Device, dir: Direction) -> Vec<cpal::SupportedStreamConfigRange> {
    let r = match dir {
        Direction::Input => d.supported_input_configs().map(|i| i.collect()),
        Direction::Output => d.supported_output_configs().map(|i| i.collect()),
    };
    r.unwrap_or_default()
}

/// The devices of `dir`, for `tolk devices`, with their rates and channels; the default one
/// marked.
pub fn list(dir: Direction) -> Result<Vec<DeviceInfo>, PluginError> {
    let host = host();
    let default_id = default_device(&host, dir).map(|d| id_of(&d));
    let mut out = Vec::new();
    for d in devices(&host, dir)? {
        let Ok(def) = default_config(&d, dir) else { continue };
        let ranges = ranges(&d, dir);
        let max_channels = ranges.iter().map(|r| r.channels()).max().unwrap_or(def.channels());
        let mut rates: Vec<u32> = COMMON_RATES
            .iter()
            .copied()
            .filter(|&r| ranges.iter().any(|c| c.min_sample_rate() <= r && r <= c.max_sample_rate()))
            .collect();
        rates.push(def.sample_rate());
        let mut formats: Vec<String> = Vec::new();
        for f in std::iter::once(def.sample_format()).chain(ranges.iter().map(|r| r.sample_format())) {
            let f = f.to_string();
            if !formats.contains(&f) {
                formats.push(f);
            }
        }
        let id = id_of(&d);
        let name = name_of(&d);
        out.push(
            DeviceInfo::new(name.clone())
                .with_id(if id == name { String::new() } else { id.clone() })
                .with_default(default_id.as_deref() == Some(id.as_str()))
                .with_channels(max_channels, def.channels())
                .with_rates(rates, def.sample_rate())
                .with_sample_formats(formats.join(", ")),
        );
    }
    Ok(out)
}

/// One line naming the devices that exist, for "no such device" errors.
fn available(host: &cpal::Host, dir: Direction) -> String {
    let names: Vec<String> = match devices(host, dir) {
        Ok(list) => {
            list.iter().filter(|d| default_config(d, dir).is_ok()).map(|d| format!("{:?}", name_of(d))).collect()
        }
        Err(e) => return format!("listing them failed: {e}"),
    };
    if names.is_empty() {
        format!("there are no {} devices on this system ({} host)", dir.as_str(), host.id())
    } else {
        format!("{} devices: {}", dir.as_str(), names.join(", "))
    }
}

/// Finds `wanted` among the devices of `dir`: `default`, an exact name or backend id, or a
/// case-insensitive substring that matches exactly one device.
fn find(host: &cpal::Host, dir: Direction, wanted: &str) -> Result<cpal::Device, FindError> {
    if wanted == "default" {
        return default_device(host, dir).ok_or_else(|| {
            FindError::Missing(format!("device: no default {} device; {}", dir.as_str(), available(host, dir)))
        });
    }
    let all = devices(host, dir).map_err(FindError::Other)?;
    let named: Vec<(cpal::Device, String, String)> = all
        .into_iter()
        .map(|d| {
            let (n, i) = (name_of(&d), id_of(&d));
            (d, n, i)
        })
        .collect();
    if let Some((d, _, _)) = named.iter().find(|(_, n, i)| n == wanted || i == wanted) {
        return Ok(d.clone());
    }
    let w = wanted.to_lowercase();
    let hits: Vec<&(cpal::Device, String, String)> =
        named.iter().filter(|(_, n, i)| n.to_lowercase().contains(&w) || i.to_lowercase().contains(&w)).collect();
    match hits.as_slice() {
        [(d, _, _)] => Ok(d.clone()),
        [] => Err(FindError::Missing(format!(
            "device: no {} device matches {wanted:?}; {}",
            dir.as_str(),
            available(host, dir)
        ))),
        many => {
            let names: Vec<String> = many.iter().map(|(_, n, _)| format!("{n:?}")).collect();
            Err(FindError::Other(PluginError::config(format!(
                "device: {wanted:?} matches several {} devices ({}); give more of the name",
                dir.as_str(),
                names.join(", ")
            ))))
        }
    }
}

/// The stream config for `d`: its native sample type and channel count (enough channels for
/// `channel`), at `rate` (or its default rate), with a fixed buffer of `buffer_frames` clamped
/// into what the device supports.
fn stream_config(
    d: &cpal::Device,
    dir: Direction,
    rate: Option<u32>,
    channel: Channel,
    buffer_frames: u32,
) -> Result<(StreamConfig, CpalFormat), FindError> {
    let def = default_config(d, dir)
        .map_err(|e| FindError::Missing(format!("device: {:?} cannot be opened: {e}", name_of(d))))?;
    let rate = rate.unwrap_or(def.sample_rate());
    let format = def.sample_format();
    let need = match channel {
        Channel::All => 1,
        Channel::One(c) => c + 1,
    };
    let ranges = ranges(d, dir);
    let fits = |c: &cpal::SupportedStreamConfigRange| {
        c.sample_format() == format && c.min_sample_rate() <= rate && rate <= c.max_sample_rate()
    };
    let channels = if def.channels() >= need
        && (def.sample_rate() == rate || ranges.iter().any(|c| fits(c) && c.channels() == def.channels()))
    {
        def.channels()
    } else {
        match ranges.iter().filter(|c| fits(c) && c.channels() >= need).map(|c| c.channels()).min() {
            Some(c) => c,
            None if def.sample_rate() != rate && !ranges.iter().any(fits) => {
                return Err(FindError::Other(PluginError::config(format!(
                    "sample_rate: device {:?} does not support {rate} Hz (its default is {} Hz)",
                    name_of(d),
                    def.sample_rate()
                ))));
            }
            None => {
                let max = ranges.iter().map(|c| c.channels()).max().unwrap_or(def.channels());
                return Err(FindError::Other(PluginError::config(format!(
                    "channel: device {:?} has {max} channel{}, there is no channel {need}",
                    name_of(d),
                    if max == 1 { "" } else { "s" }
                ))));
            }
        }
    };
    let buffer = match def.buffer_size() {
        SupportedBufferSize::Range { min, max } => buffer_frames.clamp(*min, (*max).max(*min)),
        SupportedBufferSize::Unknown => buffer_frames,
    };
    Ok((StreamConfig { channels, sample_rate: rate, buffer_size: BufferSize::Fixed(buffer) }, format))
}

/// Resolves `wanted` at `new`: checks the device exists and supports what the config asks.
pub fn resolve(
    dir: Direction,
    wanted: &str,
    rate: Option<u32>,
    channel: Channel,
    buffer_frames: u32,
) -> Result<Resolved, FindError> {
    let host = host();
    let d = find(&host, dir, wanted)?;
    let (config, format) = stream_config(&d, dir, rate, channel, buffer_frames)?;
    Ok(Resolved {
        name: name_of(&d),
        rate: config.sample_rate,
        channels: config.channels,
        sample_format: format.to_string(),
    })
}

fn error_callback(counters: std::sync::Arc<Counters>) -> impl FnMut(cpal::Error) + Send + 'static {
    move |e: cpal::Error| {
        // Not the data path: this may allocate.
        match e.kind() {
            cpal::ErrorKind::Xrun => Counters::add(&counters.xruns, 1),
            cpal::ErrorKind::DeviceChanged | cpal::ErrorKind::RealtimeDenied => {}
            _ => {
                if let Ok(mut last) = counters.last_error.lock() {
                    *last = format!("{e} ({:?})", e.kind());
                }
                counters.lost.store(true, Ordering::Release);
            }
        }
    }
}

fn open_error(name: &str, dir: Direction, e: cpal::Error) -> PluginError {
    PluginError::io(format!("device {name:?}: cannot open the {} stream: {e}", dir.as_str()))
}

/// Detects device xruns from the callbacks' timing, for backends that do not report them
/// (cpal's PulseAudio host does not): a device consumes (or produces) frames at its rate, so
/// if more wall time passed since the stream started than the frames exchanged account for,
/// beyond a tolerance of two buffers plus 20 ms, the device must have run dry (playback) or
/// dropped input (capture). Rebased every 5 s so that the drift between the device's clock
/// and the system's never adds up to a false alarm. Arithmetic and a vDSO clock read only:
/// real-time safe.
#[derive(Debug, Clone)]
pub struct Pace {
    start: Option<std::time::Instant>,
    frames: u64,
    rate: f64,
    tolerance: f64,
}

impl Pace {
    /// A detector for a stream at `rate` with `buffer_frames` buffers.
    pub fn new(rate: u32, buffer_frames: u32) -> Self {
        Pace {
            start: None,
            frames: 0,
            rate: f64::from(rate),
            tolerance: 2.0 * f64::from(buffer_frames) + f64::from(rate) / 50.0,
        }
    }

    /// Records `frames` exchanged at `now`; returns the frames missing when an xrun is seen.
    /// For playback, call it before counting the callback's own frames (`frames` = 0 there
    /// and [`add`](Self::add) after); for capture, with the frames just received.
    pub fn check(&mut self, now: std::time::Instant, frames: u64) -> Option<u64> {
        let Some(start) = self.start else {
            self.start = Some(now);
            self.frames = frames;
            return None;
        };
        self.frames += frames;
        let elapsed = now.saturating_duration_since(start).as_secs_f64();
        let missing = elapsed * self.rate - self.frames as f64;
        if missing > self.tolerance || elapsed > 5.0 {
            self.start = Some(now);
            self.frames = 0;
            if missing > self.tolerance {
                return Some(missing as u64);
            }
        }
        None
    }
}

/// `$build!(T)` for the cpal sample type `T` of `$format` (a [`CpalFormat`]); for a format we do
/// not handle, returns an unsupported-format error naming the device `$name` from the function.
macro_rules! for_format {
    ($format:expr, $name:expr, $build:ident) => {
        match $format {
            CpalFormat::I8 => $build!(i8),
            CpalFormat::I16 => $build!(i16),
            CpalFormat::I24 => $build!(cpal::I24),
            CpalFormat::I32 => $build!(i32),
            CpalFormat::U8 => $build!(u8),
            CpalFormat::U16 => $build!(u16),
            CpalFormat::F32 => $build!(f32),
            CpalFormat::F64 => $build!(f64),
            other => {
                return Err(PluginError::unsupported(format!(
                    "device {:?}: sample format {other} is not supported",
                    $name
                )));
            }
        }
    };
}

/// Opens the input stream of `wanted` at `rate` and starts it. `capture` receives mono `f32`
/// chunks from the audio callback: it must only write to a ring buffer (no locks, no
/// allocation) and count what did not fit.
pub fn open_input(
    backend: &Backend,
    wanted: &str,
    rate: u32,
    channel: Channel,
    buffer_frames: u32,
    counters: std::sync::Arc<Counters>,
    capture: impl FnMut(&[f32]) + Send + 'static,
) -> Result<Stream, PluginError> {
    let dir = Direction::Input;
    let d = find(&backend.host, dir, wanted).map_err(FindError::into_plugin_error)?;
    let (config, format) =
        stream_config(&d, dir, Some(rate), channel, buffer_frames).map_err(FindError::into_plugin_error)?;
    let name = name_of(&d);
    macro_rules! build {
        ($t:ty) => {
            d.build_input_stream::<$t, _, _>(
                config,
                input_callback::<$t>(
                    rate,
                    buffer_frames,
                    usize::from(config.channels),
                    channel,
                    counters.clone(),
                    capture,
                ),
                error_callback(counters.clone()),
                Some(BUILD_TIMEOUT),
            )
        };
    }
    let stream = for_format!(format, name, build).map_err(|e| open_error(&name, dir, e))?;
    stream.play().map_err(|e| open_error(&name, dir, e))?;
    Ok(Stream { _stream: stream })
}

/// Opens the output stream of `wanted` at `rate` and starts it. `render` fills mono `f32`
/// chunks from the audio callback: it must only read ring buffers (no locks, no allocation).
pub fn open_output(
    backend: &Backend,
    wanted: &str,
    rate: u32,
    channel: Channel,
    buffer_frames: u32,
    counters: std::sync::Arc<Counters>,
    render: impl FnMut(&mut [f32]) + Send + 'static,
) -> Result<Stream, PluginError> {
    let dir = Direction::Output;
    let d = find(&backend.host, dir, wanted).map_err(FindError::into_plugin_error)?;
    let (config, format) =
        stream_config(&d, dir, Some(rate), channel, buffer_frames).map_err(FindError::into_plugin_error)?;
    let name = name_of(&d);
    macro_rules! build {
        ($t:ty) => {
            d.build_output_stream::<$t, _, _>(
                config,
                output_callback::<$t>(
                    rate,
                    buffer_frames,
                    usize::from(config.channels),
                    channel,
                    counters.clone(),
                    render,
                ),
                error_callback(counters.clone()),
                Some(BUILD_TIMEOUT),
            )
        };
    }
    let stream = for_format!(format, name, build).map_err(|e| open_error(&name, dir, e))?;
    stream.play().map_err(|e| open_error(&name, dir, e))?;
    Ok(Stream { _stream: stream })
}

/// The input data callback: native frames → mono f32 chunks → `capture`.
fn input_callback<T>(
    rate: u32,
    buffer_frames: u32,
    channels: usize,
    channel: Channel,
    counters: std::sync::Arc<Counters>,
    mut capture: impl FnMut(&[f32]) + Send + 'static,
) -> impl FnMut(&[T], &cpal::InputCallbackInfo) + Send + 'static
where
    T: SizedSample,
    f32: FromSample<T>,
{
    // Allocated here, when the stream is built; the callback only reuses it.
    let mut scratch = vec![0.0f32; CHUNK_FRAMES];
    let channels = channels.max(1);
    let mut pace = Pace::new(rate, buffer_frames);
    move |data: &[T], _: &cpal::InputCallbackInfo| {
        counters.callbacks.fetch_add(1, Ordering::Relaxed);
        if let Some(lost) = pace.check(std::time::Instant::now(), (data.len() / channels) as u64) {
            Counters::add(&counters.xruns, 1);
            Counters::add(&counters.xrun_frames, lost);
        }
        for chunk in data.chunks(CHUNK_FRAMES * channels) {
            let frames = frames_to_mono(chunk, channels, channel, &mut scratch);
            capture(&scratch[..frames]);
            Counters::add(&counters.frames, frames as u64);
        }
    }
}

/// The output data callback: `render` → mono f32 chunks → native frames.
fn output_callback<T>(
    rate: u32,
    buffer_frames: u32,
    channels: usize,
    channel: Channel,
    counters: std::sync::Arc<Counters>,
    mut render: impl FnMut(&mut [f32]) + Send + 'static,
) -> impl FnMut(&mut [T], &cpal::OutputCallbackInfo) + Send + 'static
where
    T: SizedSample + FromSample<f32>,
{
    let mut scratch = vec![0.0f32; CHUNK_FRAMES];
    let channels = channels.max(1);
    let mut pace = Pace::new(rate, buffer_frames);
    let mut previous = 0u64;
    move |data: &mut [T], _: &cpal::OutputCallbackInfo| {
        counters.callbacks.fetch_add(1, Ordering::Relaxed);
        // What the device had before this callback is what the previous ones gave it.
        if let Some(lost) = pace.check(std::time::Instant::now(), previous) {
            Counters::add(&counters.xruns, 1);
            Counters::add(&counters.xrun_frames, lost);
        }
        previous = (data.len() / channels) as u64;
        for chunk in data.chunks_mut(CHUNK_FRAMES * channels) {
            let frames = chunk.len() / channels;
            render(&mut scratch[..frames]);
            mono_to_frames(&scratch[..frames], chunk, channels, channel);
            Counters::add(&counters.frames, frames as u64);
        }
    }
}

/// Converts interleaved native frames to mono f32 in `out` (one value per whole frame):
/// the selected channel, or the average of all. Non-finite input becomes silence. Returns
/// the number of frames written (limited by `out`).
pub fn frames_to_mono<T>(data: &[T], channels: usize, channel: Channel, out: &mut [f32]) -> usize
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let channels = channels.max(1);
    let mut n = 0;
    for (frame, slot) in data.chunks_exact(channels).zip(out.iter_mut()) {
        let v = match channel {
            Channel::One(c) => frame.get(usize::from(c)).map(|&s| f32::from_sample(s)).unwrap_or(0.0),
            Channel::All => frame.iter().map(|&s| f32::from_sample(s)).sum::<f32>() / channels as f32,
        };
        *slot = if v.is_finite() { v.clamp(-1.0, 1.0) } else { 0.0 };
        n += 1;
    }
    n
}

/// Writes mono f32 `samples` into interleaved native frames: on every channel, or on the
/// selected one with silence elsewhere. Values are clipped to -1..=1; NaN becomes silence.
pub fn mono_to_frames<T>(samples: &[f32], data: &mut [T], channels: usize, channel: Channel)
where
    T: SizedSample + FromSample<f32>,
{
    let channels = channels.max(1);
    let silence = T::from_sample(0.0f32);
    for (frame, &v) in data.chunks_exact_mut(channels).zip(samples) {
        let v = if v.is_finite() { v.clamp(-1.0, 1.0) } else { 0.0 };
        let s = T::from_sample(v);
        match channel {
            Channel::All => frame.fill(s),
            Channel::One(c) => {
                for (i, slot) in frame.iter_mut().enumerate() {
                    *slot = if i == usize::from(c) { s } else { silence };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pace_sees_a_device_running_dry_and_not_a_steady_one() {
        let t0 = std::time::Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut p = Pace::new(48_000, 480);
        // Steady 10 ms callbacks of 480 frames, a little jitter: nothing.
        assert_eq!(p.check(ms(0), 0), None);
        for i in 1..200u64 {
            assert_eq!(p.check(ms(i * 10 + (i % 3)), 480), None, "callback {i}");
        }
        // A callback 100 ms late: the device ran dry for about 90 ms.
        let lost = p.check(ms(2100), 480).expect("an xrun");
        assert!((3_000..5_000).contains(&lost), "{lost}");
        // And it carries on from there without another alarm.
        assert_eq!(p.check(ms(2110), 480), None);
    }

    #[test]
    fn one_channel_of_a_multichannel_frame() {
        // Four channels; channel 3 (index 2) carries the signal.
        let data: Vec<i16> = (0..5).flat_map(|i| [100, -100, i * 1000, 7]).collect();
        let mut out = [9.0f32; 8];
        assert_eq!(frames_to_mono(&data, 4, Channel::One(2), &mut out), 5);
        let want: Vec<f32> = (0..5).map(|i| (i * 1000) as f32 / 32768.0).collect();
        assert_eq!(&out[..5], &want[..]);
        assert_eq!(out[5], 9.0, "nothing past the frames is touched");
    }

    #[test]
    fn mixing_all_channels_averages() {
        let data = [0.5f32, -0.5, 1.0, 0.0, f32::NAN, 0.0];
        let mut out = [0.0f32; 3];
        assert_eq!(frames_to_mono(&data, 2, Channel::All, &mut out), 3);
        assert_eq!(out, [0.0, 0.5, 0.0]);
    }

    #[test]
    fn a_partial_frame_and_a_short_output_are_ignored() {
        let data = [1i16, 2, 3, 4, 5];
        let mut out = [0.0f32; 1];
        assert_eq!(frames_to_mono(&data, 2, Channel::One(1), &mut out), 1);
        assert_eq!(out[0], 2.0 / 32768.0);
    }

    #[test]
    fn native_formats_convert_to_full_scale_f32() {
        let mut out = [0.0f32; 2];
        frames_to_mono(&[u8::MIN, 128u8], 1, Channel::All, &mut out);
        assert_eq!(out, [-1.0, 0.0]);
        frames_to_mono(&[i32::MIN, 0i32], 1, Channel::All, &mut out);
        assert_eq!(out, [-1.0, 0.0]);
        frames_to_mono(&[0.25f64, -2.0f64], 1, Channel::All, &mut out);
        assert_eq!(out, [0.25, -1.0], "out-of-range floats are clipped");
        frames_to_mono(&[u16::MAX, 32768u16], 1, Channel::All, &mut out);
        assert!((out[0] - 1.0).abs() < 1e-4 && out[1] == 0.0, "{out:?}");
    }

    #[test]
    fn output_to_every_channel_or_one() {
        let mut data = [0i16; 6];
        mono_to_frames(&[0.5, -1.0], &mut data, 3, Channel::All);
        assert_eq!(data, [16384, 16384, 16384, -32768, -32768, -32768]);
        let mut data = [1.0f32; 6];
        mono_to_frames(&[0.25, f32::INFINITY, 3.0], &mut data, 2, Channel::One(1));
        assert_eq!(data, [0.0, 0.25, 0.0, 0.0, 0.0, 1.0], "NaN/inf silent, clipped, other channel silent");
        let mut data = [0u8; 2];
        mono_to_frames(&[-1.0, 0.0], &mut data, 1, Channel::All);
        assert_eq!(data, [0, 128]);
    }
}
