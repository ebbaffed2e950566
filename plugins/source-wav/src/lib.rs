//! `tolk.wav` (source) — plays a WAV file into tolk, paced in real time or as fast as the host
//! takes it, once or in a loop.
//!
//! Use it to rehearse an event from a recording, to test a setup without a microphone, or to
//! interpret a recorded talk after the fact (`realtime = false`).
//!
//! The decisions a reader must know:
//!
//! - **The file is streamed, never loaded.** A three-hour event recording is gigabytes. The
//!   header is read by [`riff`] (which follows the RIFF rules hound does not: pad bytes after
//!   odd-sized chunks, and the sizes `0xFFFFFFFF` or `0` of a streamed file, whose data runs to
//!   the end of the file); after that the plugin reads the data chunk in 64 KiB reads and
//!   decodes each block of little-endian samples in one pass into a reused buffer. Only the
//!   data chunk's own length is played, so chunks after it (`LIST`, `id3 `) are never mistaken
//!   for audio.
//! - **Nothing is skipped without a word.** A file with no audio (a header only, an empty data
//!   chunk), a second data chunk, or a FIFO instead of a file fails `new` with one line naming
//!   the file; a float file with NaN or infinite samples plays them as silence with a warning
//!   naming the file and where, and a file whose every sample is NaN fails the stream.
//! - **16-bit files are delivered bit-exact** as `i16`; every other encoding (8-, 24-, 32-bit
//!   integer, 32-bit float) as `f32`, integers scaled by 1/2^(bits-1).
//! - **No sample is ever dropped.** When the host accepts less than a whole block, the rest is
//!   offered again after [`AudioWriter::wait_writable`]; in real-time mode the pacing then
//!   catches up, because each block's due time is computed from the frames sent since `start`,
//!   never by adding up sleeps.
//! - **`new` opens and checks the file**, so a missing or unsupported file fails at
//!   `tolk check` (and never blocks: only regular files are opened); `start` opens it again
//!   and starts from the beginning every time.

use std::{
    fs::File,
    io::{self, BufReader, Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tolk_plugin_api::prelude::*;

mod riff;

// 1. The config. `path` is required; everything else has a default, so the smallest config is
//    one line.
/// The `[source.config]` table of `tolk.wav`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WavSourceConfig {
    /// The WAV file, relative to the config file's directory.
    pub path: PathBuf,
    /// Pace the blocks in real time (true) or deliver them as fast as the host takes them.
    #[serde(default = "default_realtime")]
    pub realtime: bool,
    /// Start over at the end of the file instead of ending the stream.
    #[serde(default, rename = "loop")]
    pub looping: bool,
    /// Length of each block written to the host, in milliseconds (1 – 1000).
    #[serde(default = "default_block_ms")]
    pub block_ms: u32,
}

fn default_realtime() -> bool {
    true
}

fn default_block_ms() -> u32 {
    20
}

// 2. The plugin struct. Like every source, it owns the thread that produces audio: the handle
//    and a stop flag are all `stop` needs to end it.
/// The WAV file source.
pub struct WavSource {
    /// The file, resolved against the config file's directory.
    path: PathBuf,
    /// What `new` found in the header. `format()` reports it; `start` checks the file still
    /// has this format.
    info: WavInfo,
    /// Frames per block written to the host.
    block_frames: usize,
    /// Pace in real time.
    realtime: bool,
    /// Start over at the end.
    looping: bool,
    /// For the thread's name and its warnings.
    host: Host,
    /// Set by `stop` (and drop) to end the playback thread, cleared by `start`.
    stop: Arc<AtomicBool>,
    /// The playback thread, from `start` until `stop` joins it.
    thread: Option<JoinHandle<()>>,
}

// 3. The trait impl. `new` opens the file and reads its header, so a wrong path or an
//    unsupported encoding fails at `tolk check`, with an error that names the key.
impl AudioSource for WavSource {
    const ID: &'static str = "tolk.wav";
    const NAME: &'static str = "WAV file player";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "plays a WAV file, in real time or as fast as the host takes it";
    const EXAMPLE_CONFIG: &'static str = "path = \"speech.wav\"\nrealtime = false\n";

    type Config = WavSourceConfig;

    fn new(config: WavSourceConfig, host: &Host) -> Result<Self, PluginError> {
        if !(1..=1000).contains(&config.block_ms) {
            return Err(PluginError::config(format!("block_ms: {} is outside 1..=1000", config.block_ms)));
        }
        if config.path.as_os_str().is_empty() {
            return Err(PluginError::config("path: must not be empty"));
        }
        let path = host.resolve_path(&config.path);
        let (_, info) = open_wav(&path)?;
        let block_frames = (u64::from(info.format.sample_rate) * u64::from(config.block_ms) / 1000).max(1) as usize;
        Ok(WavSource {
            path,
            info,
            block_frames,
            realtime: config.realtime,
            looping: config.looping,
            host: host.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        })
    }

    fn format(&self) -> AudioFormat {
        self.info.format
    }

    fn start(&mut self, writer: AudioWriter) -> Result<(), PluginError> {
        if self.thread.is_some() {
            return Err(PluginError::state("already started"));
        }
        // Open the file again: every start plays it from the beginning, and it may have been
        // replaced since `new` looked at it. A new length is fine; a new format is not, because
        // the host has set up its conversion for the one `format()` reported.
        let (reader, info) = open_wav(&self.path).map_err(|e| PluginError::io(e.message()))?;
        if (info.format, info.encoding) != (self.info.format, self.info.encoding) {
            return Err(PluginError::io(format!(
                "path: {} changed since it was checked (was {}, now {})",
                self.path.display(),
                self.info.format,
                info.format
            )));
        }
        self.stop.store(false, Ordering::SeqCst);
        let playback = Playback {
            reader,
            info,
            path: self.path.clone(),
            block_frames: self.block_frames,
            realtime: self.realtime,
            looping: self.looping,
            writer,
            host: self.host.clone(),
            stop: Arc::clone(&self.stop),
            non_finite: 0,
        };
        // Name your threads: panics and logs then say which plugin instance they came from.
        let thread = std::thread::Builder::new()
            .name(format!("tolk-src-{}", self.host.instance_id()))
            .spawn(move || playback.run())
            .map_err(|e| PluginError::io(format!("cannot start the playback thread: {e}")))?;
        self.thread = Some(thread);
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PluginError> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            // The thread may be parked until its next block is due (up to `block_ms`); wake it
            // so `stop` returns at once.
            thread.thread().unpark();
            thread.join().map_err(|_| PluginError::other("the playback thread panicked"))?;
        }
        Ok(())
    }
}

// Joining in Drop too means a host that drops the source without `stop` leaves no thread behind.
impl Drop for WavSource {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Size of each read from the file. Large reads keep a fast (`realtime = false`) run of a
/// multi-gigabyte file at disk speed; small blocks are then copied out of the buffer.
const READ_CHUNK: usize = 64 * 1024;

/// How long the playback thread waits at most before looking again at the stop flag and the
/// writer (while the host is full, or between real-time blocks). `stop` also wakes it at once.
const POLL: Duration = Duration::from_millis(50);

/// What the header says, in the terms the playback thread needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WavInfo {
    /// Rate and channels of the file; `i16` for 16-bit files, `f32` for the rest.
    format: AudioFormat,
    /// How the samples are stored in the data chunk.
    encoding: Encoding,
    /// Byte offset of the first sample in the file.
    data_start: u64,
    /// Length of the data chunk in bytes, a whole number of frames; `None` for a streamed
    /// file (its header gives no size), whose data runs to the end of the file.
    data_len: Option<u64>,
}

impl WavInfo {
    fn frame_bytes(&self) -> usize {
        usize::from(self.format.channels) * self.encoding.bytes()
    }
}

/// The sample encodings the plugin decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// 8-bit unsigned integers, silence at 128: WAV's one unsigned encoding.
    U8,
    /// Signed little-endian integers in containers of 2, 3 or 4 bytes. Samples with fewer
    /// valid bits than the container (24 in 32, from WAVE_FORMAT_EXTENSIBLE) are aligned to
    /// the container's top bit, so scaling by the container's range is right for them too.
    Int { bytes: u8 },
    /// 32-bit IEEE float.
    F32,
}

impl Encoding {
    /// The encoding of samples with format `tag` and `bits` valid bits in `container` bytes,
    /// or the name of the encoding when it is not supported.
    fn new(tag: u16, bits: u16, container: u16) -> Result<Self, String> {
        match tag {
            0x0003 if bits == 32 && container == 4 => Ok(Encoding::F32),
            0x0003 => Err(format!("{bits}-bit float")),
            0x0001 if !matches!(bits, 8 | 16 | 24 | 32) => Err(format!("{bits}-bit integer")),
            0x0001 => match container {
                1 if bits == 8 => Ok(Encoding::U8),
                2..=4 if bits <= container * 8 => Ok(Encoding::Int { bytes: container as u8 }),
                _ => Err(format!("{bits}-bit integer in {}-bit containers", u32::from(container) * 8)),
            },
            other => Err(encoding_name(other, bits)),
        }
    }

    /// Bytes per sample in the file.
    fn bytes(&self) -> usize {
        match self {
            Encoding::U8 => 1,
            Encoding::Int { bytes } => usize::from(*bytes),
            Encoding::F32 => 4,
        }
    }

    /// What the host receives: 16-bit integers unchanged, everything else as floats.
    fn sample_format(&self) -> SampleFormat {
        match self {
            Encoding::Int { bytes: 2 } => SampleFormat::I16,
            _ => SampleFormat::F32,
        }
    }

    /// Decodes whole samples of `bytes` into one of the two reused buffers and returns them.
    fn decode<'a>(&self, bytes: &[u8], ints: &'a mut Vec<i16>, floats: &'a mut Vec<f32>) -> Samples<'a> {
        // Integers are first placed in the top bits of an i32, so every width shares one scale.
        const SCALE: f32 = 1.0 / 2_147_483_648.0;
        ints.clear();
        floats.clear();
        match self {
            Encoding::Int { bytes: 2 } => {
                ints.extend(bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])));
                return Samples::I16(ints);
            }
            Encoding::U8 => floats.extend(bytes.iter().map(|&b| (f32::from(b) - 128.0) / 128.0)),
            Encoding::Int { bytes: 3 } => {
                floats.extend(bytes.chunks_exact(3).map(|b| i32::from_le_bytes([0, b[0], b[1], b[2]]) as f32 * SCALE))
            }
            Encoding::Int { .. } => floats
                .extend(bytes.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32 * SCALE)),
            Encoding::F32 => floats.extend(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        }
        Samples::F32(floats)
    }
}

/// Opens `path`, reads its header and leaves the reader at the first sample. Errors are
/// config errors that start with the key.
fn open_wav(path: &Path) -> Result<(BufReader<File>, WavInfo), PluginError> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| PluginError::config(format!("path: cannot open {shown}: {e}")))?;
    if meta.is_dir() {
        return Err(PluginError::config(format!("path: {shown} is a directory")));
    }
    // Opening a FIFO blocks until someone writes to it, and `tolk check` must never block; a
    // device or socket has no header to check either. Only regular files are played.
    if !meta.is_file() {
        return Err(PluginError::config(format!("path: {shown} is {}, not a regular file", special_kind(&meta))));
    }
    let file = File::open(path).map_err(|e| PluginError::config(format!("path: cannot open {shown}: {e}")))?;
    let mut reader = BufReader::with_capacity(READ_CHUNK, file);
    let header = riff::read_header(&mut reader, meta.len()).map_err(|e| match e {
        riff::HeaderError::Invalid(why) => PluginError::config(format!("path: {shown} {why}")),
        riff::HeaderError::Io(e) => PluginError::config(format!("path: cannot read {shown}: {e}")),
    })?;
    let encoding = Encoding::new(header.tag, header.bits, header.container)
        .map_err(|name| PluginError::config(format!("path: unsupported WAV encoding: {name}")))?;
    let format = AudioFormat::new(header.sample_rate, header.channels, encoding.sample_format());
    format.validate().map_err(|e| PluginError::config(format!("path: unsupported WAV format: {e}")))?;
    Ok((reader, WavInfo { format, encoding, data_start: header.data_start, data_len: header.data_len }))
}

/// What a file that is not a regular one is, for messages.
fn special_kind(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
    }
    let _ = meta;
    "a special file"
}

/// A readable name for a WAV format tag.
fn encoding_name(tag: u16, bits: u16) -> String {
    match tag {
        0x0001 => format!("{bits}-bit integer"),
        0x0003 => format!("{bits}-bit float"),
        0x0002 => "Microsoft ADPCM".into(),
        0x0006 => "A-law".into(),
        0x0007 => "μ-law".into(),
        0x0011 => "IMA ADPCM".into(),
        0x0055 => "MP3".into(),
        other => format!("format tag {other:#06x}"),
    }
}

/// Everything the playback thread owns.
struct Playback {
    /// Positioned at the first sample by `open_wav`.
    reader: BufReader<File>,
    info: WavInfo,
    /// For messages.
    path: PathBuf,
    block_frames: usize,
    realtime: bool,
    looping: bool,
    /// The host's end of the stream; dropped when the thread ends.
    writer: AudioWriter,
    host: Host,
    /// Set by `WavSource::stop`.
    stop: Arc<AtomicBool>,
    /// NaN and infinite samples in this pass so far.
    non_finite: u64,
}

impl Playback {
    /// The thread's body: play, then tell the host how the stream ended.
    fn run(mut self) {
        self.host.debug(format!("playing {} ({})", self.path.display(), self.info.format));
        match self.play() {
            Ok(true) => self.writer.end_of_stream(),
            Ok(false) => {}
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                self.writer.fail(PluginError::io(format!("{}: {e}", self.path.display())))
            }
            Err(e) => self.writer.fail(PluginError::io(format!("cannot read {}: {e}", self.path.display()))),
        }
    }

    /// Plays until the end of the file (returns true) or until stopped (false).
    fn play(&mut self) -> io::Result<bool> {
        let frame_bytes = self.info.frame_bytes();
        let rate = u128::from(self.info.format.sample_rate);
        let mut bytes = vec![0; self.block_frames * frame_bytes];
        let (mut ints, mut floats) = (Vec::new(), Vec::new());
        let started = Instant::now();
        let mut sent: u64 = 0;
        // A streamed file (no size in its header) is read to its end.
        let full = self.info.data_len.unwrap_or(u64::MAX);
        let mut left = full;
        let mut frames_this_pass: u64 = 0;
        let mut warned_short = false;
        loop {
            if self.stopping() {
                return Ok(false);
            }
            if left == 0 {
                self.report_non_finite(frames_this_pass)?;
                // A pass that produced nothing (an empty or truncated data chunk) would loop
                // forever without a sample; end instead.
                if !self.looping || frames_this_pass == 0 {
                    return Ok(true);
                }
                self.reader.seek(SeekFrom::Start(self.info.data_start))?;
                left = full;
                frames_this_pass = 0;
                continue;
            }
            let want = left.min(bytes.len() as u64) as usize;
            let got = read_full(&mut self.reader, &mut bytes[..want])?;
            if got < want {
                // The file ends: where a streamed file ends, or shorter than its header says
                // (a recording that was cut off): play what is there.
                if !warned_short && self.info.data_len.is_some() {
                    warned_short = true;
                    self.host.warn(format!(
                        "{} ends {} bytes before the length its header gives; playing what is there",
                        self.path.display(),
                        left - got as u64
                    ));
                } else if !warned_short && got % frame_bytes != 0 {
                    warned_short = true;
                    self.host.warn(format!(
                        "{} ends in the middle of a frame: its last {} bytes are not played",
                        self.path.display(),
                        got % frame_bytes
                    ));
                }
                left = 0;
            } else {
                left -= want as u64;
            }
            let whole = got - got % frame_bytes;
            if whole == 0 {
                continue;
            }
            let delivered = if self.info.encoding == Encoding::F32 {
                // Only float files can hold NaN; decoding fills `floats`.
                let _ = self.info.encoding.decode(&bytes[..whole], &mut ints, &mut floats);
                self.silence_non_finite(&mut floats, frames_this_pass);
                self.deliver(Samples::F32(&floats))
            } else {
                self.deliver(self.info.encoding.decode(&bytes[..whole], &mut ints, &mut floats))
            };
            if !delivered {
                return Ok(false);
            }
            let frames = (whole / frame_bytes) as u64;
            sent += frames;
            frames_this_pass += frames;
            if self.realtime {
                // The due time of the next block comes from the frames sent since `start`, so
                // sleeping late now and then never adds up to drift.
                let due = Duration::from_nanos((u128::from(sent) * 1_000_000_000 / rate) as u64);
                self.sleep_until(started + due);
            }
        }
    }

    /// Replaces NaN and infinite samples with silence (the host would turn them into silence
    /// or noise without a word), counts them, and warns at the first one of a pass. `first` is
    /// the frame of the pass where `floats` starts.
    fn silence_non_finite(&mut self, floats: &mut [f32], first: u64) {
        for (i, x) in floats.iter_mut().enumerate() {
            if !x.is_finite() {
                if self.non_finite == 0 {
                    let frame = first + (i / usize::from(self.info.format.channels)) as u64;
                    self.host.warn(format!(
                        "{}: sample {} (at {:.3} s) is {}; NaN and infinite samples are played as silence",
                        self.path.display(),
                        first * u64::from(self.info.format.channels) + i as u64,
                        frame as f64 / f64::from(self.info.format.sample_rate),
                        if x.is_nan() { "NaN" } else { "infinite" }
                    ));
                }
                self.non_finite += 1;
                *x = 0.0;
            }
        }
    }

    /// At the end of a pass: says how many samples were NaN or infinite, and fails the stream
    /// when every one was (a file with no audio in it).
    fn report_non_finite(&mut self, frames: u64) -> io::Result<()> {
        let total = frames * u64::from(self.info.format.channels);
        let bad = std::mem::take(&mut self.non_finite);
        if bad == 0 {
            return Ok(());
        }
        if bad == total {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("every sample ({total}) is NaN or infinite: the file holds no audio"),
            ));
        }
        self.host.warn(format!(
            "{}: {bad} of {total} samples were NaN or infinite and were played as silence",
            self.path.display()
        ));
        Ok(())
    }

    /// Writes all of `samples`, waiting for room when the host takes only part. Returns false
    /// when stopped first.
    fn deliver(&self, samples: Samples<'_>) -> bool {
        let channels = usize::from(self.info.format.channels);
        let frames = samples.len() / channels;
        let mut done = 0;
        while done < frames {
            if self.stopping() {
                return false;
            }
            let rest = match samples {
                Samples::I16(s) => Samples::I16(&s[done * channels..]),
                Samples::F32(s) => Samples::F32(&s[done * channels..]),
            };
            done += self.writer.write(rest);
            if done < frames {
                self.writer.wait_writable(POLL);
            }
        }
        true
    }

    /// Sleeps until `due`, or until stopped (`stop` unparks the thread).
    fn sleep_until(&self, due: Instant) {
        while !self.stopping() {
            let now = Instant::now();
            if now >= due {
                return;
            }
            std::thread::park_timeout((due - now).min(POLL));
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.writer.is_closed()
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

// 4. The export line. The sink in `plugins/sink-wav` has the same id: ids are unique per kind.
tolk_plugin_api::export_plugins! {
    sources: [WavSource],
}

// 5. Tests: the conformance kit, every encoding on real files, looping, pacing, config errors.
#[cfg(test)]
mod tests {
    use std::{io::Write, time::Duration};

    use hound::{SampleFormat as HoundFormat, WavSpec, WavWriter};
    use tolk_plugin_api::testing::{Captured, CollectingWriter, check_source, new_source, run_source};

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    fn spec(rate: u32, channels: u16, bits: u16, format: HoundFormat) -> WavSpec {
        WavSpec { sample_rate: rate, channels, bits_per_sample: bits, sample_format: format }
    }

    /// Writes a WAV file with hound.
    fn write_wav<S: hound::Sample + Copy>(path: &Path, spec: WavSpec, samples: &[S]) {
        let mut w = WavWriter::create(path, spec).unwrap();
        for &s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
    }

    /// Writes a WAV file by hand, for what hound does not write: other containers, extra
    /// chunks, wrong lengths, compressed tags. `fmt` is the fmt chunk's body.
    fn write_raw(path: &Path, fmt: &[u8], data_len: u32, data: &[u8], after: &[u8]) {
        let mut f = File::create(path).unwrap();
        let riff_len = 4 + 12 + 8 + fmt.len() + 8 + data.len() + after.len();
        f.write_all(b"RIFF").unwrap();
        f.write_all(&(riff_len as u32).to_le_bytes()).unwrap();
        f.write_all(b"WAVE").unwrap();
        // An unknown chunk before fmt, which readers must skip.
        f.write_all(b"JUNK\x04\x00\x00\x00\x00\x00\x00\x00").unwrap();
        f.write_all(b"fmt ").unwrap();
        f.write_all(&(fmt.len() as u32).to_le_bytes()).unwrap();
        f.write_all(fmt).unwrap();
        f.write_all(b"data").unwrap();
        f.write_all(&data_len.to_le_bytes()).unwrap();
        f.write_all(data).unwrap();
        f.write_all(after).unwrap();
    }

    /// A fmt chunk body: plain (16 bytes) or WAVE_FORMAT_EXTENSIBLE (40 bytes) with `sub_tag`.
    fn fmt_chunk(tag: u16, channels: u16, rate: u32, container: u16, bits: u16, extensible: Option<u16>) -> Vec<u8> {
        let align = channels * container;
        let mut v = Vec::new();
        v.extend((if extensible.is_some() { 0xfffe } else { tag }).to_le_bytes());
        v.extend(channels.to_le_bytes());
        v.extend(rate.to_le_bytes());
        v.extend((rate * u32::from(align)).to_le_bytes());
        v.extend(align.to_le_bytes());
        v.extend((container * 8).to_le_bytes());
        if let Some(valid) = extensible {
            v.extend(22u16.to_le_bytes());
            v.extend(valid.to_le_bytes());
            v.extend(0u32.to_le_bytes());
            v.extend(tag.to_le_bytes());
            v.extend([0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71]);
        } else if bits != container * 8 {
            unreachable!("plain fmt chunks have bits == container");
        }
        v
    }

    fn config(path: &Path, extra: &str) -> String {
        format!("path = '{}'\nrealtime = false\n{extra}", path.display())
    }

    /// Plays `path` to the end (or `frames` frames) through the ABI, as the host would.
    fn play(path: &Path, extra: &str, frames: usize) -> Captured {
        let mut source = new_source::<WavSource>(&config(path, extra)).unwrap();
        let got = run_source(&mut source, frames, WAIT).unwrap();
        assert!(got.failed.is_none(), "{:?}", got.failed);
        assert_eq!(got.partial_frames, 0);
        got
    }

    fn error(config: &str) -> String {
        let e = new_source::<WavSource>(config).err().unwrap_or_else(|| panic!("accepted: {config}"));
        assert_eq!(e.kind(), tolk_plugin_api::ErrorKind::CONFIG, "{e}");
        e.message().to_string()
    }

    /// A test signal that visits the whole range, the extremes included.
    fn ramp_i32(n: usize, bits: u32) -> Vec<i32> {
        let max = (1i64 << (bits - 1)) - 1;
        let min = -(1i64 << (bits - 1));
        let mut v: Vec<i32> =
            (0..n as i64).map(|i| (min + (i * 7919 * (max - min) / n as i64) % (max - min)) as i32).collect();
        v[0] = min as i32;
        v[1] = max as i32;
        v[2] = 0;
        v
    }

    #[test]
    fn passes_the_conformance_kit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("speech.wav");
        let samples: Vec<i16> = (0..24_000).map(|i| (i % 200 * 100 - 10_000) as i16).collect();
        write_wav(&path, spec(24_000, 1, 16, HoundFormat::Int), &samples);
        let report = check_source::<WavSource>(&config(&path, ""));
        assert!(report.passed(), "{report}");
    }

    #[test]
    fn passes_the_conformance_kit_in_real_time_with_long_blocks() {
        // Real time with one-second blocks: `stop` must still return at once, mid-sleep.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.wav");
        write_wav(&path, spec(16_000, 2, 16, HoundFormat::Int), &vec![100i16; 2 * 16_000]);
        let config = format!("path = '{}'\nloop = true\nblock_ms = 1000\n", path.display());
        let report = check_source::<WavSource>(&config);
        assert!(report.passed(), "{report}");
    }

    #[test]
    fn the_example_config_parses() {
        let config: WavSourceConfig = tolk_plugin_api::parse_config(WavSource::EXAMPLE_CONFIG).unwrap();
        assert_eq!(config.path, Path::new("speech.wav"));
        assert!(!config.realtime && !config.looping);
        assert_eq!(config.block_ms, 20);
    }

    #[test]
    fn reads_16_bit_bit_exact_as_i16() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let samples: Vec<i16> = ramp_i32(10_007, 16).into_iter().map(|x| x as i16).collect();
        write_wav(&path, spec(24_000, 1, 16, HoundFormat::Int), &samples);
        let source = new_source::<WavSource>(&config(&path, "")).unwrap();
        assert_eq!(source.format().unwrap(), AudioFormat::new(24_000, 1, SampleFormat::I16));
        let got = play(&path, "", usize::MAX);
        assert!(got.ended);
        assert_eq!(got.format, Some(AudioFormat::new(24_000, 1, SampleFormat::I16)));
        assert_eq!(got.samples_i16, samples);
    }

    #[test]
    fn reads_8_bit_unsigned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        // hound takes signed values and stores them with WAV's offset of 128.
        let samples: Vec<i8> = (-128..=127).collect();
        write_wav(&path, spec(8_000, 1, 8, HoundFormat::Int), &samples);
        let got = play(&path, "", usize::MAX);
        assert_eq!(got.format, Some(AudioFormat::new(8_000, 1, SampleFormat::F32)));
        let want: Vec<f32> = samples.iter().map(|&x| f32::from(x) / 128.0).collect();
        assert_eq!(got.samples, want);
        assert_eq!(got.samples[0], -1.0);
        assert_eq!(got.samples[128], 0.0);
    }

    #[test]
    fn reads_24_bit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let samples = ramp_i32(5_001, 24);
        // hound writes 24-bit files as WAVE_FORMAT_EXTENSIBLE, 3-byte containers.
        write_wav(&path, spec(48_000, 1, 24, HoundFormat::Int), &samples);
        let got = play(&path, "", usize::MAX);
        assert_eq!(got.format, Some(AudioFormat::new(48_000, 1, SampleFormat::F32)));
        let want: Vec<f32> = samples.iter().map(|&x| x as f32 / 8_388_608.0).collect();
        assert_eq!(got.samples, want);
        assert_eq!(got.samples[0], -1.0);
    }

    #[test]
    fn reads_24_bit_in_plain_fmt_and_in_32_bit_containers() {
        let dir = tempfile::tempdir().unwrap();
        let samples = ramp_i32(999, 24);
        let want: Vec<f32> = samples.iter().map(|&x| x as f32 / 8_388_608.0).collect();
        // Plain WAVE_FORMAT_PCM header, 3-byte samples.
        let plain = dir.path().join("plain.wav");
        let data: Vec<u8> = samples.iter().flat_map(|x| x.to_le_bytes()[..3].to_vec()).collect();
        write_raw(&plain, &fmt_chunk(1, 1, 48_000, 3, 24, None), data.len() as u32, &data, &[]);
        assert_eq!(play(&plain, "", usize::MAX).samples, want);
        // EXTENSIBLE with 24 valid bits in 4-byte containers, aligned to the top.
        let wide = dir.path().join("wide.wav");
        let data: Vec<u8> = samples.iter().flat_map(|x| (x << 8).to_le_bytes()).collect();
        write_raw(&wide, &fmt_chunk(1, 1, 48_000, 4, 24, Some(24)), data.len() as u32, &data, &[]);
        assert_eq!(hound::WavReader::open(&wide).unwrap().spec().bits_per_sample, 24);
        assert_eq!(play(&wide, "", usize::MAX).samples, want);
    }

    #[test]
    fn reads_32_bit_int() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let samples = ramp_i32(4_096, 32);
        write_wav(&path, spec(32_000, 1, 32, HoundFormat::Int), &samples);
        let got = play(&path, "", usize::MAX);
        assert_eq!(got.format, Some(AudioFormat::new(32_000, 1, SampleFormat::F32)));
        let want: Vec<f32> = samples.iter().map(|&x| x as f32 / 2_147_483_648.0).collect();
        assert_eq!(got.samples, want);
        assert_eq!(got.samples[0], -1.0);
    }

    #[test]
    fn reads_32_bit_float_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let samples: Vec<f32> = (0..3_000).map(|i| ((i as f32) * 0.013).sin() * 0.9).chain([1.0, -1.0, 0.0]).collect();
        write_wav(&path, spec(22_050, 1, 32, HoundFormat::Float), &samples);
        let got = play(&path, "", usize::MAX);
        assert_eq!(got.format, Some(AudioFormat::new(22_050, 1, SampleFormat::F32)));
        assert_eq!(got.samples, samples);
    }

    #[test]
    fn reads_stereo_at_44_1_khz() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        // Left and right differ, so a swap or a dropped sample shows.
        let samples: Vec<i16> = (0..44_100 * 2)
            .map(|i| if i % 2 == 0 { (i / 2 % 30_000) as i16 } else { -((i / 2 % 30_000) as i16) })
            .collect();
        write_wav(&path, spec(44_100, 2, 16, HoundFormat::Int), &samples);
        let source = new_source::<WavSource>(&config(&path, "")).unwrap();
        assert_eq!(source.format().unwrap(), AudioFormat::new(44_100, 2, SampleFormat::I16));
        let got = play(&path, "", usize::MAX);
        assert_eq!(got.samples_i16, samples);
        assert!(got.ended);
    }

    #[test]
    fn reads_many_channels_of_extensible_float() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let samples: Vec<f32> = (0..6 * 500).map(|i| (i % 6) as f32 / 10.0 - (i / 6) as f32 / 1000.0).collect();
        write_wav(&path, spec(48_000, 6, 32, HoundFormat::Float), &samples);
        let got = play(&path, "", usize::MAX);
        assert_eq!(got.format, Some(AudioFormat::new(48_000, 6, SampleFormat::F32)));
        assert_eq!(got.samples, samples);
    }

    #[test]
    fn chunks_after_the_data_are_not_audio() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let samples: Vec<i16> = (1..=300).collect();
        let data: Vec<u8> = samples.iter().flat_map(|x| x.to_le_bytes()).collect();
        let mut list = b"LIST".to_vec();
        list.extend(12u32.to_le_bytes());
        list.extend(b"INFOISFT\x04\x00\x00\x00");
        write_raw(&path, &fmt_chunk(1, 1, 16_000, 2, 16, None), data.len() as u32, &data, &list);
        let got = play(&path, "", usize::MAX);
        assert!(got.ended);
        assert_eq!(got.samples_i16, samples);
    }

    #[test]
    fn a_file_cut_short_plays_what_is_there() {
        // A recording whose header promises more than was written before the crash.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let samples: Vec<i16> = (1..=301).collect();
        let mut data: Vec<u8> = samples.iter().flat_map(|x| x.to_le_bytes()).collect();
        data.pop(); // half a sample at the end
        write_raw(&path, &fmt_chunk(1, 1, 16_000, 2, 16, None), 10_000, &data, &[]);
        let got = play(&path, "", usize::MAX);
        assert!(got.ended);
        assert_eq!(got.samples_i16, samples[..300]);
        // Looping replays what is there.
        let got = play(&path, "loop = true", 700);
        assert!(!got.ended && got.samples_i16.len() >= 700);
        assert!(got.samples_i16.iter().enumerate().all(|(i, &s)| s == samples[i % 300]));
    }

    #[test]
    fn a_file_with_no_audio_is_refused_not_played_as_nothing() {
        // A header with an empty data chunk, as a recorder that never got a sample leaves it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        write_wav::<i16>(&path, spec(24_000, 1, 16, HoundFormat::Int), &[]);
        assert_eq!(
            error(&config(&path, "")),
            format!("path: {} has no audio: its data chunk is empty", path.display())
        );
    }

    #[test]
    fn a_streamed_file_plays_to_its_end_and_loops() {
        // A WAV written to a pipe: sizes 0xFFFFFFFF, the data runs to the end of the file.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let samples: Vec<i16> = (1..=501).collect();
        let data: Vec<u8> = samples.iter().flat_map(|x| x.to_le_bytes()).collect();
        write_raw(&path, &fmt_chunk(1, 1, 16_000, 2, 16, None), u32::MAX, &data, &[]);
        let got = play(&path, "", usize::MAX);
        assert!(got.ended);
        assert_eq!(got.samples_i16, samples);
        let got = play(&path, "loop = true", 1_200);
        assert!(got.samples_i16.iter().enumerate().all(|(i, &s)| s == samples[i % 501]));
    }

    #[test]
    fn nan_and_infinite_samples_become_silence_and_an_all_nan_file_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let samples = [0.5, f32::NAN, -0.25, f32::INFINITY, f32::NEG_INFINITY, 0.125];
        write_wav(&path, spec(8_000, 1, 32, HoundFormat::Float), &samples);
        let got = play(&path, "", usize::MAX);
        assert!(got.ended);
        assert_eq!(got.samples, [0.5, 0.0, -0.25, 0.0, 0.0, 0.125]);

        write_wav(&path, spec(8_000, 2, 32, HoundFormat::Float), &[f32::NAN; 800]);
        let mut source = new_source::<WavSource>(&config(&path, "")).unwrap();
        let got = run_source(&mut source, usize::MAX, WAIT).unwrap();
        let failed = got.failed.expect("an all-NaN file fails the stream");
        assert_eq!(
            failed.message(),
            format!("{}: every sample (800) is NaN or infinite: the file holds no audio", path.display())
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_opening_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipe.wav");
        assert!(std::process::Command::new("mkfifo").arg(&path).status().unwrap().success());
        // Opening it would block until a writer comes; `new` must return at once.
        assert_eq!(
            error(&config(&path, "")),
            format!("path: {} is a FIFO (named pipe), not a regular file", path.display())
        );
    }

    #[test]
    fn loop_starts_over_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let samples: Vec<i16> = (0..1_000).map(|i| i * 3 - 1_500).collect();
        write_wav(&path, spec(8_000, 1, 16, HoundFormat::Int), &samples);
        let got = play(&path, "loop = true\nblock_ms = 7", 3_500);
        assert!(!got.ended);
        assert!(got.samples_i16.len() >= 3_500);
        for (i, &s) in got.samples_i16.iter().enumerate() {
            assert_eq!(s, samples[i % 1_000], "sample {i}");
        }
    }

    #[test]
    fn real_time_mode_delivers_the_same_samples() {
        // Pacing is not timed here (machines are busy); what must hold is that real-time mode
        // delivers exactly the file, in whole blocks, and ends.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let samples: Vec<i16> = (0..2 * 4_000).map(|i| (i * 5 % 30_000) as i16).collect();
        write_wav(&path, spec(40_000, 2, 16, HoundFormat::Int), &samples);
        let mut source = new_source::<WavSource>(&format!("path = '{}'\nblock_ms = 10", path.display())).unwrap();
        let got = run_source(&mut source, usize::MAX, WAIT).unwrap();
        assert!(got.ended);
        assert_eq!(got.samples_i16, samples);
        assert_eq!(got.writes, 10);
    }

    #[test]
    fn restart_plays_from_the_beginning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let samples: Vec<i16> = (0..48_000).map(|i| (i % 1_000) as i16).collect();
        write_wav(&path, spec(48_000, 1, 16, HoundFormat::Int), &samples);
        let mut source = new_source::<WavSource>(&format!("path = '{}'", path.display())).unwrap();
        for _ in 0..2 {
            let got = run_source(&mut source, 2_000, WAIT).unwrap();
            assert!(got.samples_i16.len() >= 2_000);
            assert_eq!(got.samples_i16[..], samples[..got.samples_i16.len()]);
        }
    }

    #[test]
    fn a_full_host_gets_every_sample_later_never_a_gap() {
        // The host takes 1500 frames and then nothing: the source must offer the rest of the
        // second block again (waiting), not skip to the third.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let samples: Vec<i16> = (0..10_000).map(|i| i as i16).collect();
        write_wav(&path, spec(50_000, 1, 16, HoundFormat::Int), &samples);
        let mut source = new_source::<WavSource>(&config(&path, "")).unwrap();
        let writer = CollectingWriter::with_capacity(1_500);
        source.start(writer.to_ffi()).unwrap();
        writer.wait_for(1_500, WAIT);
        std::thread::sleep(Duration::from_millis(200));
        writer.close();
        source.stop().unwrap();
        let got = writer.captured();
        assert_eq!(got.samples_i16, samples[..1_500]);
        assert!(!got.ended && got.failed.is_none());
        // A handful of waits, not a spin.
        assert!(got.writes < 100, "{} writes", got.writes);
    }

    #[test]
    fn a_file_changed_after_new_fails_start_not_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        write_wav(&path, spec(24_000, 1, 16, HoundFormat::Int), &[1i16, 2, 3]);
        let mut source = new_source::<WavSource>(&config(&path, "")).unwrap();
        write_wav(&path, spec(48_000, 1, 16, HoundFormat::Int), &[1i16, 2, 3]);
        let e = source.start(CollectingWriter::new().to_ffi()).unwrap_err();
        assert_eq!(e.kind(), tolk_plugin_api::ErrorKind::IO);
        assert_eq!(
            e.message(),
            format!(
                "path: {} changed since it was checked (was 24000 Hz, 1 ch, i16, now 48000 Hz, 1 ch, i16)",
                path.display()
            )
        );
        std::fs::remove_file(&path).unwrap();
        let e = source.start(CollectingWriter::new().to_ffi()).unwrap_err();
        assert_eq!(
            e.message(),
            format!("path: cannot open {}: No such file or directory (os error 2)", path.display())
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let good = d.join("good.wav");
        write_wav(&good, spec(24_000, 1, 16, HoundFormat::Int), &[0i16; 10]);

        assert_eq!(error("realtime = false"), "path: missing required key");
        assert_eq!(error("path = ''"), "path: must not be empty");
        assert_eq!(
            error(&config(&good, "looping = true")),
            "looping: unknown key (expected one of: path, realtime, loop, block_ms)"
        );
        assert_eq!(error(&config(&good, "block_ms = 0")), "block_ms: 0 is outside 1..=1000");
        assert_eq!(error(&config(&good, "block_ms = 1001")), "block_ms: 1001 is outside 1..=1000");
        assert_eq!(error(&config(&good, "loop = 'yes'")), "loop: invalid type: string \"yes\", expected a boolean");

        let missing = d.join("x.wav");
        assert_eq!(
            error(&config(&missing, "")),
            format!("path: cannot open {}: No such file or directory (os error 2)", missing.display())
        );
        assert_eq!(error(&config(d, "")), format!("path: {} is a directory", d.display()));

        let text = d.join("x.txt");
        std::fs::write(&text, "hello, this is not audio\n").unwrap();
        assert_eq!(error(&config(&text, "")), format!("path: {} is not a WAV file: no RIFF tag found", text.display()));
        let short = d.join("short.wav");
        std::fs::write(&short, b"RIFF\x04\x00\x00\x00WAVE").unwrap();
        assert_eq!(
            error(&config(&short, "")),
            format!("path: {} is not a WAV file: it ends before the audio data", short.display())
        );

        // 12 valid bits in 16-bit containers: a real WAV file, but not an encoding we play.
        let twelve = d.join("12.wav");
        write_raw(&twelve, &fmt_chunk(1, 1, 24_000, 2, 12, Some(12)), 4, &[0; 4], &[]);
        assert_eq!(error(&config(&twelve, "")), "path: unsupported WAV encoding: 12-bit integer");
        let double = d.join("f64.wav");
        write_raw(&double, &fmt_chunk(3, 1, 24_000, 8, 64, None), 8, &[0; 8], &[]);
        assert_eq!(error(&config(&double, "")), "path: unsupported WAV encoding: 64-bit float");
        let double_ext = d.join("f64x.wav");
        write_raw(&double_ext, &fmt_chunk(3, 1, 24_000, 8, 64, Some(64)), 8, &[0; 8], &[]);
        assert_eq!(error(&config(&double_ext, "")), "path: unsupported WAV encoding: 64-bit float");
        let mulaw = d.join("mulaw.wav");
        write_raw(&mulaw, &fmt_chunk(7, 1, 8_000, 1, 8, None), 2, &[0; 2], &[]);
        assert_eq!(error(&config(&mulaw, "")), "path: unsupported WAV encoding: μ-law");

        let slow = d.join("slow.wav");
        write_wav(&slow, spec(500, 1, 16, HoundFormat::Int), &[0i16; 10]);
        assert_eq!(
            error(&config(&slow, "")),
            "path: unsupported WAV format: sample rate 500 Hz is outside 1000..=768000"
        );
    }
}

// 6. Fuzz tests: whatever the bytes, the reader never panics, and playing what it accepts never
//    panics or hangs: arbitrary bytes, RIFF-shaped chunk soups, and every cut of valid files.
#[cfg(test)]
mod fuzz {
    use std::{io::Cursor, time::Duration};

    use proptest::prelude::*;
    use tolk_plugin_api::testing::{new_source, run_source};

    use super::*;

    /// A chunk: an id from the ones that matter (or any four bytes), a size that is honest,
    /// odd, zero, streamed or a lie, and a body.
    fn chunk() -> impl Strategy<Value = Vec<u8>> {
        let id = prop_oneof![Just(*b"fmt "), Just(*b"data"), Just(*b"LIST"), Just(*b"JUNK"), any::<[u8; 4]>(),];
        let body = prop::collection::vec(any::<u8>(), 0..80);
        (id, body, 0..5u8, any::<u32>()).prop_map(|(id, body, how, lie)| {
            let size = match how {
                0 | 1 => body.len() as u32,
                2 => 0,
                3 => u32::MAX,
                _ => lie,
            };
            let mut v = id.to_vec();
            v.extend(size.to_le_bytes());
            v.extend(body);
            v
        })
    }

    /// A plausible fmt chunk: any tag among the interesting ones, small channel counts, any
    /// bits and block size.
    fn fmt() -> impl Strategy<Value = Vec<u8>> {
        (prop_oneof![Just(1u16), Just(3), Just(0xfffe), any::<u16>()], 0..4u16, 0..70u16, 0..20u16, any::<bool>())
            .prop_map(|(tag, channels, bits, align, ext)| {
                let mut body = vec![];
                body.extend(tag.to_le_bytes());
                body.extend(channels.to_le_bytes());
                body.extend(8_000u32.to_le_bytes());
                body.extend(16_000u32.to_le_bytes());
                body.extend(align.to_le_bytes());
                body.extend(bits.to_le_bytes());
                if ext {
                    body.extend(22u16.to_le_bytes());
                    body.extend(bits.to_le_bytes());
                    body.extend(0u32.to_le_bytes());
                    body.extend(if tag == 0xfffe { 1u16 } else { tag }.to_le_bytes());
                    body.extend([0; 14]);
                }
                let mut v = b"fmt ".to_vec();
                v.extend((body.len() as u32).to_le_bytes());
                v.extend(body);
                v
            })
    }

    /// RIFF-shaped bytes: the tags, then chunks (a fmt chunk among them, most of the time).
    fn riff_soup() -> impl Strategy<Value = Vec<u8>> {
        (any::<u32>(), prop::collection::vec(chunk(), 0..5), prop::option::of(fmt()), 0..5usize).prop_map(
            |(size, mut chunks, fmt, at)| {
                if let Some(f) = fmt {
                    chunks.insert(at.min(chunks.len()), f);
                }
                let mut v = b"RIFF".to_vec();
                v.extend(size.to_le_bytes());
                v.extend(b"WAVE");
                v.extend(chunks.concat());
                v
            },
        )
    }

    /// A valid file: one of the supported encodings, 1–3 channels, some frames, an odd chunk
    /// before the data and one after it.
    fn valid_wav() -> impl Strategy<Value = Vec<u8>> {
        (
            prop_oneof![Just((1u16, 8u16)), Just((1, 16)), Just((1, 24)), Just((1, 32)), Just((3, 32))],
            1..4u16,
            1..300usize,
            any::<bool>(),
        )
            .prop_flat_map(|((tag, bits), channels, frames, streamed)| {
                let n = frames * usize::from(channels) * usize::from(bits / 8);
                (Just((tag, bits, channels, streamed)), prop::collection::vec(any::<u8>(), n))
            })
            .prop_map(|((tag, bits, channels, streamed), data)| {
                let align = channels * bits / 8;
                let mut fmt = b"fmt ".to_vec();
                fmt.extend(16u32.to_le_bytes());
                fmt.extend(tag.to_le_bytes());
                fmt.extend(channels.to_le_bytes());
                fmt.extend(8_000u32.to_le_bytes());
                fmt.extend((8_000 * u32::from(align)).to_le_bytes());
                fmt.extend(align.to_le_bytes());
                fmt.extend(bits.to_le_bytes());
                let mut v = b"RIFF\0\0\0\0WAVEbext\x03\0\0\0abc\0".to_vec();
                v.extend(fmt);
                v.extend(b"data");
                v.extend(if streamed { u32::MAX } else { data.len() as u32 }.to_le_bytes());
                v.extend(&data);
                if !streamed {
                    v.extend(b"LIST\x05\0\0\0INFOx\0");
                }
                let len = v.len() as u32 - 8;
                v[4..8].copy_from_slice(&len.to_le_bytes());
                v
            })
    }

    fn header(bytes: &[u8]) -> Option<riff::Header> {
        riff::read_header(&mut Cursor::new(bytes), bytes.len() as u64).ok()
    }

    /// Plays `bytes` as a file through the plugin: refused, or played to an end or a failure.
    fn play_bytes(bytes: &[u8]) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fuzz.wav");
        std::fs::write(&path, bytes).unwrap();
        let Ok(mut source) = new_source::<WavSource>(&format!("path = '{}'\nrealtime = false", path.display())) else {
            return;
        };
        let got = run_source(&mut source, usize::MAX, Duration::from_secs(20)).unwrap();
        assert!(got.ended || got.failed.is_some(), "neither ended nor failed: {got:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic_the_reader(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = header(&bytes);
        }

        #[test]
        fn riff_shaped_bytes_never_panic_the_reader(bytes in riff_soup()) {
            if let Some(h) = header(&bytes) {
                prop_assert!(h.data_start <= bytes.len() as u64);
                prop_assert!(h.channels > 0 && h.container > 0);
            }
        }

        #[test]
        fn every_cut_of_a_valid_file_reads_or_is_refused(bytes in valid_wav(), cut in any::<prop::sample::Index>()) {
            prop_assert!(header(&bytes).is_some());
            let _ = header(&bytes[..cut.index(bytes.len() + 1)]);
        }
    }

    proptest! {
        // Each case plays a file on the plugin's own thread: fewer of them.
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn playing_riff_shaped_bytes_never_panics_or_hangs(bytes in riff_soup()) {
            play_bytes(&bytes);
        }

        #[test]
        fn playing_a_cut_valid_file_never_panics_or_hangs(bytes in valid_wav(), cut in any::<prop::sample::Index>()) {
            play_bytes(&bytes[..cut.index(bytes.len() + 1)]);
        }
    }
}
