//! `tolk.wav` (sink) — records a route's audio (usually one interpretation language) to a WAV
//! file.
//!
//! The decisions a reader must know:
//!
//! - **Files are opened at `start`, never in `new`.** `tolk check` creates every instance to
//!   validate the config, and must not create or truncate anyone's recordings. `new` only
//!   checks that the file could be created (the nearest existing parent is a directory) and
//!   that `if_exists = "error"` would not refuse it.
//! - **The header is valid after a crash.** A WAV header carries the data length, which a
//!   writer normally fills in at the end. This sink rewrites it (hound's `WavWriter::flush`)
//!   whenever `flush_ms` of audio has been written since the last time, and at every `flush`,
//!   so a killed run leaves a playable file that lacks at most the last `flush_ms`.
//! - **The recording stays time-aligned with the captions.** Each block says where it starts
//!   in its stream (`frame_offset`). Where the stream has no audio — before the first
//!   translation, between translations of a live run, or audio dropped upstream — the hole is
//!   filled with silence (`fill_gaps`); audio that overlaps what is already written is
//!   skipped. A hole is not a warning here: the sink cannot tell a pause from a loss, and the
//!   host warns about (and counts) the audio it actually dropped.
//! - **A restart never overwrites a recording.** A second `start` for the same path in one
//!   process (the host restarting this sink after a failure) continues the file the first one
//!   wrote — its header is read, whatever it does not cover is cut off, and the recording goes
//!   on aligned, the time the sink was down filled with silence. A file that cannot be
//!   continued (not a WAV of this format) is left alone and the rest goes to the next free
//!   numbered part (`es-1.wav`).
//! - **16-bit recordings are bit-exact**: `i16` blocks are written as they arrive. Float
//!   recordings get non-finite samples as 0.0 and values clipped to -1..=1.
//! - **Floor mix** (`floor_mix = true`): the file records what a listener in the room hears —
//!   the floor (blocks of role [`AudioRole::Floor`]) with the translation on top, the floor
//!   ducked under it by the same [`Ducker`] the speaker sink uses. The file then follows the
//!   floor's clock (it is real time); translation blocks queue up and are laid over the floor
//!   as it is written, and what is still queued at `stop` is written over silence. Without
//!   `floor_mix`, floor blocks are ignored.

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io::{self, BufReader, BufWriter, Seek},
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
};

use std::collections::VecDeque;

use tolk_plugin_api::{
    dsp::{Ducker, DuckerSettings},
    prelude::*,
};

// 1. The config. Only `path` is required; the format defaults to tolk's session format.
/// The `[sink.config]` table of `tolk.wav`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WavSinkConfig {
    /// The file to write, relative to the config file's directory. Missing parent
    /// directories are created at `start`.
    pub path: PathBuf,
    /// Frames per second of the file; the host resamples to it.
    #[serde(default = "default_sample_rate")]
    pub sample_rate: u32,
    /// Channels of the file; the host mixes or duplicates to it.
    #[serde(default = "default_channels")]
    pub channels: u16,
    /// How samples are stored.
    #[serde(default)]
    pub sample_format: WavSampleFormat,
    /// What to do when the file is already there.
    #[serde(default)]
    pub if_exists: IfExists,
    /// Rewrite the header (making the file valid up to here) after this much audio.
    #[serde(default = "default_flush_ms")]
    pub flush_ms: u64,
    /// Fill audio dropped upstream with silence, so the file stays aligned with its stream.
    #[serde(default = "default_fill_gaps")]
    pub fill_gaps: bool,
    /// Record the floor (the original speech, sent by routes that mix it) under the
    /// translation, ducked.
    #[serde(default)]
    pub floor_mix: bool,
    /// Floor level while the translation speaks, dB.
    #[serde(default = "default_duck_db")]
    pub duck_db: f32,
    /// Floor level in the translation's pauses, dB.
    #[serde(default = "default_floor_db")]
    pub floor_db: f32,
    /// Ramp down, ms.
    #[serde(default = "default_attack_ms")]
    pub attack_ms: f32,
    /// Ramp up, ms.
    #[serde(default = "default_release_ms")]
    pub release_ms: f32,
    /// Translation silence before the floor comes back up, ms.
    #[serde(default = "default_hold_ms")]
    pub hold_ms: f32,
}

/// The sample encoding of the recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WavSampleFormat {
    /// 16-bit integers, what the Realtime API speaks: bit-exact, half the size.
    #[default]
    I16,
    /// 32-bit floats (WAVE_FORMAT_EXTENSIBLE).
    F32,
}

/// What `start` does when the file already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IfExists {
    /// Replace it.
    #[default]
    Overwrite,
    /// Refuse: `new` fails (so `tolk check` does), and so does `start` if the file appeared
    /// in between.
    Error,
    /// Keep it and write `name-1.wav`, `name-2.wav`, … beside it, the first that is free.
    Number,
}

fn default_sample_rate() -> u32 {
    24_000
}

fn default_channels() -> u16 {
    1
}

fn default_flush_ms() -> u64 {
    500
}

fn default_fill_gaps() -> bool {
    true
}

fn default_duck_db() -> f32 {
    DuckerSettings::default().duck_db
}

fn default_floor_db() -> f32 {
    DuckerSettings::default().floor_db
}

fn default_attack_ms() -> f32 {
    DuckerSettings::default().attack_ms
}

fn default_release_ms() -> f32 {
    DuckerSettings::default().release_ms
}

fn default_hold_ms() -> f32 {
    DuckerSettings::default().hold_ms
}

/// Translation queued ahead of the floor at most, in seconds; beyond it, the oldest is written
/// over silence (a route whose floor stopped must not hold its translation back forever).
const MAX_QUEUE_SECONDS: u64 = 120;

// 2. The plugin struct. A sink is called on one host thread, in order, so plain fields do: no
//    locks, no threads of its own.
/// The WAV recorder.
pub struct WavSink {
    /// The configured file, resolved against the config file's directory.
    path: PathBuf,
    /// The format of the file, which the host converts every block to.
    format: AudioFormat,
    if_exists: IfExists,
    /// Rewrite the header after this many frames.
    flush_frames: u64,
    fill_gaps: bool,
    /// For warnings about gaps and the size limit.
    host: Host,
    /// The open recording, from `start` until `stop` finalizes it (or drop does).
    recording: Option<Recording>,
    /// The floor mix, with `floor_mix`: its settings, and from `start` its state.
    floor: Option<FloorMix>,
}

/// The floor mix of a recording: the translation queued ahead of the floor, and the ducker.
struct FloorMix {
    settings: DuckerSettings,
    ducker: Ducker,
    /// Interleaved translation samples not yet laid over the floor.
    queue: VecDeque<f32>,
    /// Reused output buffer.
    mixed: Vec<f32>,
    /// The queue overflowed (reported once).
    overflowed: bool,
}

impl FloorMix {
    /// Mixes `frames` frames of floor (`None`: silence) with the queued translation into
    /// `self.mixed`.
    fn mix(&mut self, floor: Option<&[f32]>, frames: usize, channels: usize) {
        self.mixed.clear();
        for i in 0..frames {
            let start = self.mixed.len();
            let mut peak = 0.0f32;
            for _ in 0..channels {
                let t = self.queue.pop_front().unwrap_or(0.0);
                peak = peak.max(if t.is_finite() { t.abs() } else { 0.0 });
                self.mixed.push(if t.is_finite() { t } else { 0.0 });
            }
            let g = self.ducker.next_gain(peak);
            for c in 0..channels {
                let f = floor.map(|f| f[i * channels + c]).unwrap_or(0.0);
                let f = if f.is_finite() { f } else { 0.0 };
                let v = &mut self.mixed[start + c];
                *v = (*v + f * g).clamp(-1.0, 1.0);
            }
        }
    }
}

// 3. The trait impl.
impl OutputSink for WavSink {
    const ID: &'static str = "tolk.wav";
    const NAME: &'static str = "WAV recorder";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "records audio to a WAV file that stays valid if the run is killed";
    // The conformance run writes this next to its config; the `conformance` prefix marks it.
    const EXAMPLE_CONFIG: &'static str = "path = \"conformance-recording.wav\"\n";

    type Config = WavSinkConfig;

    fn new(config: WavSinkConfig, host: &Host) -> Result<Self, PluginError> {
        if !(1_000..=768_000).contains(&config.sample_rate) {
            return Err(PluginError::config(format!("sample_rate: {} is outside 1000..=768000", config.sample_rate)));
        }
        if !(1..=64).contains(&config.channels) {
            return Err(PluginError::config(format!("channels: {} is outside 1..=64", config.channels)));
        }
        if !(1..=60_000).contains(&config.flush_ms) {
            return Err(PluginError::config(format!("flush_ms: {} is outside 1..=60000", config.flush_ms)));
        }
        if config.path.as_os_str().is_empty() {
            return Err(PluginError::config("path: must not be empty"));
        }
        // Check now, so a bad path fails at `tolk check`; but create nothing: that waits for
        // `start`.
        let path = host.resolve_path(&config.path);
        if path.is_dir() {
            return Err(PluginError::config(format!("path: {} is a directory", path.display())));
        }
        check_parent(&path)?;
        // A file this process recorded is the one a restart continues, not someone else's.
        let ours = recorded().lock().unwrap_or_else(|p| p.into_inner()).contains_key(&path);
        if config.if_exists == IfExists::Error && path.exists() && !ours {
            return Err(PluginError::config(exists_message(&path)));
        }
        let sample = match config.sample_format {
            WavSampleFormat::I16 => SampleFormat::I16,
            WavSampleFormat::F32 => SampleFormat::F32,
        };
        let settings = DuckerSettings {
            duck_db: config.duck_db,
            floor_db: config.floor_db,
            attack_ms: config.attack_ms,
            release_ms: config.release_ms,
            hold_ms: config.hold_ms,
            ..DuckerSettings::default()
        };
        settings.validate().map_err(PluginError::config)?;
        let floor = config.floor_mix.then(|| FloorMix {
            settings,
            ducker: Ducker::new(settings, config.sample_rate),
            queue: VecDeque::new(),
            mixed: Vec::new(),
            overflowed: false,
        });
        Ok(WavSink {
            path,
            format: AudioFormat::new(config.sample_rate, config.channels, sample),
            if_exists: config.if_exists,
            flush_frames: (config.flush_ms * u64::from(config.sample_rate) / 1000).max(1),
            fill_gaps: config.fill_gaps,
            host: host.clone(),
            recording: None,
            floor,
        })
    }

    fn format(&self) -> Option<AudioFormat> {
        Some(self.format)
    }

    fn start(&mut self) -> Result<(), PluginError> {
        if self.recording.is_some() {
            return Err(PluginError::state("already started"));
        }
        // A file this process already recorded to (the host restarting the sink) is continued,
        // never overwritten.
        let earlier = recorded().lock().unwrap_or_else(|p| p.into_inner()).get(&self.path).cloned();
        let recording = match earlier {
            Some(path) => self.resume(path)?,
            None => {
                let (file, path) = self.create()?;
                self.new_recording(file, path)?
            }
        };
        recorded().lock().unwrap_or_else(|p| p.into_inner()).insert(self.path.clone(), recording.path.clone());
        self.recording = Some(recording);
        if let Some(f) = self.floor.as_mut() {
            f.ducker = Ducker::new(f.settings, self.format.sample_rate);
            f.queue.clear();
        }
        Ok(())
    }

    fn on_audio(&mut self, block: &AudioBlock<'_>) -> Result<(), PluginError> {
        let format = self.format;
        let Some(rec) = self.recording.as_mut() else {
            return Err(PluginError::state("audio before start"));
        };
        let got = block.format();
        if (got.sample_rate, got.channels) != (format.sample_rate, format.channels) {
            return Err(PluginError::unsupported(format!(
                "a block in {got} does not fit {} ({format})",
                rec.path.display()
            )));
        }
        match (block.role(), self.floor.is_some()) {
            (AudioRole::Floor, false) => return Ok(()),
            (AudioRole::Floor, true) => return self.on_floor(block),
            (AudioRole::Translation, true) => return self.queue_translation(block),
            (AudioRole::Translation, false) => {}
        }
        let channels = usize::from(format.channels);
        let frames = block.frames();
        if frames == 0 {
            // No audio, so nothing to align: a gap, if any, is filled by the next real block.
            return Ok(());
        }
        let mut skip = 0;
        if self.fill_gaps {
            let gap;
            (gap, skip) = rec.align(block.frame_offset(), frames);
            if gap > 0 {
                let fill = gap.min(MAX_GAP_SECONDS * u64::from(format.sample_rate));
                let ms = |frames: u64| frames * 1000 / u64::from(format.sample_rate);
                if fill < gap {
                    // The file no longer follows the stream's clock: worth a warning.
                    self.host.warn(format!(
                        "{}: the stream jumped {} ms ahead; filled the first {} ms with silence, the file runs \
                         behind the stream from here",
                        rec.path.display(),
                        ms(gap),
                        ms(fill)
                    ));
                } else {
                    // A pause, or audio the host dropped (which it warns about and counts).
                    self.host.debug(format!(
                        "{}: no audio for {} ms of the stream; filled with silence",
                        rec.path.display(),
                        ms(gap)
                    ));
                }
                rec.write_silence(fill, format, &self.host)?;
            }
        }
        let (from, to) = (skip * channels, frames * channels);
        match block.samples() {
            Samples::I16(s) => rec.write(Samples::I16(&s[from..to]), format, &self.host)?,
            Samples::F32(s) => rec.write(Samples::F32(&s[from..to]), format, &self.host)?,
        }
        if rec.unflushed >= self.flush_frames {
            rec.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), PluginError> {
        match self.recording.as_mut() {
            Some(rec) => rec.flush(),
            None => Ok(()),
        }
    }

    fn stop(&mut self) -> Result<(), PluginError> {
        // With a floor mix, the translation still queued is written over silence.
        if let (Some(rec), Some(fm)) = (self.recording.as_mut(), self.floor.as_mut()) {
            let channels = usize::from(self.format.channels);
            while !fm.queue.is_empty() {
                let frames = (fm.queue.len() / channels).clamp(1, 4096);
                fm.mix(None, frames, channels);
                rec.write(Samples::F32(&fm.mixed), self.format, &self.host)?;
            }
        }
        match self.recording.take() {
            Some(rec) => rec.finish(&self.host),
            None => Ok(()),
        }
    }

    // The host checks, before the run, that no other output shares this file.
    fn output_files(&self) -> Vec<OutputFile> {
        vec![OutputFile::new("path", &self.path)]
    }
}

// A host that drops the sink without `stop` (after a failure elsewhere) still gets a complete
// file.
impl Drop for WavSink {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The longest gap filled with silence, in seconds: a longer one means the stream's clock
/// jumped, and minutes of silence would only bloat the file.
const MAX_GAP_SECONDS: u64 = 600;

/// The most data bytes a WAV file can hold: its lengths are 32-bit, and the RIFF length also
/// counts the header (at most 60 bytes for WAVE_FORMAT_EXTENSIBLE).
const MAX_DATA_BYTES: u64 = u32::MAX as u64 - 64;

/// `Recording::next_offset` of a recording whose first block sets where it starts.
const UNANCHORED: u64 = u64::MAX;

/// An open recording.
struct Recording {
    /// hound keeps the data length and rewrites the header at `flush`/`finalize`.
    writer: hound::WavWriter<BufWriter<File>>,
    /// The file actually written (with `if_exists = "number"`, not the configured one).
    path: PathBuf,
    /// The stream frame the next frame of the file stands for (gap filling only).
    next_offset: u64,
    /// Frames in the file.
    frames: u64,
    /// Frames written since the header was last rewritten.
    unflushed: u64,
    /// The 4 GiB limit was reached (and reported once); everything after it is dropped.
    full: bool,
}

impl Recording {
    /// Places a block of `frames` starting at stream frame `offset` against what the file
    /// already holds: returns the frames missing before it (a gap to fill, dropped upstream)
    /// and how many of its own leading frames were already written (a repeat or overlap after
    /// a resync, to skip), and advances the file's stream position. After a gap longer than
    /// the fill cap the file runs behind the stream; from here on it follows the stream again.
    fn align(&mut self, offset: u64, frames: usize) -> (u64, usize) {
        if self.next_offset == UNANCHORED {
            self.next_offset = offset;
        }
        let gap = offset.saturating_sub(self.next_offset);
        let skip = usize::try_from(self.next_offset.saturating_sub(offset)).unwrap_or(usize::MAX).min(frames);
        self.next_offset = self.next_offset.max(offset + frames as u64);
        (gap, skip)
    }

    /// Appends whole frames, converting to the file's encoding, up to the WAV size limit.
    fn write(&mut self, samples: Samples<'_>, format: AudioFormat, host: &Host) -> Result<(), PluginError> {
        let channels = usize::from(format.channels);
        let frames = self.room(samples.len() / channels, format, host);
        if frames == 0 {
            return Ok(());
        }
        let n = frames * channels;
        let w = &mut self.writer;
        let result = match (format.sample, samples) {
            (SampleFormat::I16, Samples::I16(s)) => {
                // hound's 16-bit writer fills one buffer and writes it in one call.
                let mut out = w.get_i16_writer(n as u32);
                s[..n].iter().for_each(|&x| out.write_sample(x));
                out.flush()
            }
            (SampleFormat::I16, Samples::F32(s)) => {
                let mut out = w.get_i16_writer(n as u32);
                s[..n].iter().for_each(|&x| out.write_sample(f32_to_i16(x)));
                out.flush()
            }
            (SampleFormat::F32, Samples::F32(s)) => s[..n].iter().try_for_each(|&x| w.write_sample(clean(x))),
            (SampleFormat::F32, Samples::I16(s)) => {
                s[..n].iter().try_for_each(|&x| w.write_sample(f32::from(x) / 32768.0))
            }
        };
        result.map_err(|e| self.error(e))?;
        self.frames += frames as u64;
        self.unflushed += frames as u64;
        Ok(())
    }

    /// Appends `frames` frames of silence.
    fn write_silence(&mut self, frames: u64, format: AudioFormat, host: &Host) -> Result<(), PluginError> {
        const CHUNK: usize = 4096;
        let channels = usize::from(format.channels);
        let zeros = vec![0i16; CHUNK * channels];
        let zeros_f32 = vec![0f32; CHUNK * channels];
        let mut left = frames;
        while left > 0 && !self.full {
            let n = left.min(CHUNK as u64) as usize * channels;
            match format.sample {
                SampleFormat::I16 => self.write(Samples::I16(&zeros[..n]), format, host)?,
                SampleFormat::F32 => self.write(Samples::F32(&zeros_f32[..n]), format, host)?,
            }
            left -= (n / channels) as u64;
        }
        Ok(())
    }

    /// How many of `frames` still fit in the file; warns once when the limit is reached.
    fn room(&mut self, frames: usize, format: AudioFormat, host: &Host) -> usize {
        let frame_bytes = u64::from(format.channels) * if format.sample == SampleFormat::I16 { 2 } else { 4 };
        let room = (MAX_DATA_BYTES / frame_bytes).saturating_sub(self.frames);
        if (frames as u64) > room && !self.full {
            self.full = true;
            host.warn(format!(
                "{} reached the WAV format's 4 GiB limit; the rest of the audio is not recorded",
                self.path.display()
            ));
        }
        frames.min(room as usize)
    }

    /// Rewrites the header with the current length and pushes everything to the file.
    fn flush(&mut self) -> Result<(), PluginError> {
        self.writer.flush().map_err(|e| self.error(e))?;
        self.unflushed = 0;
        Ok(())
    }

    /// Completes the file.
    fn finish(self, host: &Host) -> Result<(), PluginError> {
        let (path, frames, rate) = (self.path, self.frames, self.writer.spec().sample_rate);
        self.writer.finalize().map_err(|e| PluginError::io(format!("cannot write {}: {e}", path.display())))?;
        host.debug(format!("wrote {} ({} s)", path.display(), frames / u64::from(rate)));
        Ok(())
    }

    fn error(&self, e: hound::Error) -> PluginError {
        PluginError::io(format!("cannot write {}: {e}", self.path.display()))
    }
}

impl WavSink {
    /// A floor block: the file's clock. Lays the queued translation over it, ducked.
    fn on_floor(&mut self, block: &AudioBlock<'_>) -> Result<(), PluginError> {
        let format = self.format;
        let (Some(rec), Some(fm)) = (self.recording.as_mut(), self.floor.as_mut()) else {
            return Err(PluginError::state("audio before start"));
        };
        let channels = usize::from(format.channels);
        let frames = block.frames();
        if frames == 0 {
            return Ok(());
        }
        let mut skip = 0;
        if self.fill_gaps {
            let gap;
            (gap, skip) = rec.align(block.frame_offset(), frames);
            if gap > 0 {
                // Floor dropped upstream: the translation goes on over silence meanwhile.
                let mut left = gap.min(MAX_GAP_SECONDS * u64::from(format.sample_rate)) as usize;
                while left > 0 {
                    let n = left.min(4096);
                    fm.mix(None, n, channels);
                    rec.write(Samples::F32(&fm.mixed), format, &self.host)?;
                    left -= n;
                }
            }
        }
        let floor: Vec<f32> = match block.samples() {
            Samples::F32(s) => s[skip * channels..frames * channels].to_vec(),
            Samples::I16(s) => s[skip * channels..frames * channels].iter().map(|&x| f32::from(x) / 32768.0).collect(),
        };
        fm.mix(Some(&floor), frames - skip, channels);
        rec.write(Samples::F32(&fm.mixed), format, &self.host)?;
        if rec.unflushed >= self.flush_frames {
            rec.flush()?;
        }
        Ok(())
    }

    /// A translation block under `floor_mix`: queued until the floor carries it.
    fn queue_translation(&mut self, block: &AudioBlock<'_>) -> Result<(), PluginError> {
        let format = self.format;
        let (Some(rec), Some(fm)) = (self.recording.as_mut(), self.floor.as_mut()) else {
            return Err(PluginError::state("audio before start"));
        };
        let channels = usize::from(format.channels);
        let whole = block.frames() * channels;
        match block.samples() {
            Samples::F32(s) => fm.queue.extend(&s[..whole]),
            Samples::I16(s) => fm.queue.extend(s[..whole].iter().map(|&x| f32::from(x) / 32768.0)),
        }
        let max = (MAX_QUEUE_SECONDS * u64::from(format.sample_rate)) as usize * channels;
        if fm.queue.len() > max {
            if !fm.overflowed {
                fm.overflowed = true;
                self.host.warn(format!(
                    "{}: more than {MAX_QUEUE_SECONDS} s of translation ahead of the floor (is the floor still \
                     arriving?); writing the oldest over silence",
                    rec.path.display()
                ));
            }
            let frames = (fm.queue.len() - max).div_ceil(channels);
            fm.mix(None, frames, channels);
            rec.write(Samples::F32(&fm.mixed), format, &self.host)?;
        }
        Ok(())
    }

    /// The WAV header of this sink's format.
    fn spec(&self) -> hound::WavSpec {
        hound::WavSpec {
            channels: self.format.channels,
            sample_rate: self.format.sample_rate,
            bits_per_sample: if self.format.sample == SampleFormat::I16 { 16 } else { 32 },
            sample_format: match self.format.sample {
                SampleFormat::I16 => hound::SampleFormat::Int,
                SampleFormat::F32 => hound::SampleFormat::Float,
            },
        }
    }

    /// A new recording in `file` (just created, empty).
    fn new_recording(&self, file: File, path: PathBuf) -> Result<Recording, PluginError> {
        let writer = hound::WavWriter::new(BufWriter::with_capacity(64 * 1024, file), self.spec())
            .map_err(|e| PluginError::io(format!("cannot write {}: {e}", path.display())))?;
        self.host.debug(format!("recording to {} ({})", path.display(), self.format));
        Ok(Recording { writer, path, next_offset: 0, frames: 0, unflushed: 0, full: false })
    }

    /// Continues `path`, which an earlier instance in this process recorded to: after the
    /// audio its header covers (a tail it does not cover, written before a failure, is cut
    /// off), aligned so that its frame N is still stream frame N. When that is not possible,
    /// `path` is left as it is and the recording goes on in the next free numbered part.
    fn resume(&self, path: PathBuf) -> Result<Recording, PluginError> {
        match self.reopen(&path) {
            Ok(rec) => {
                self.host.info(format!(
                    "restarted: continuing {} after its {:.1} s",
                    path.display(),
                    rec.frames as f64 / f64::from(self.format.sample_rate)
                ));
                Ok(rec)
            }
            Err(why) => {
                let (file, next) = self.next_part()?;
                self.host.warn(format!(
                    "restarted: cannot continue {} ({why}); it is kept, and the rest goes to {}",
                    path.display(),
                    next.display()
                ));
                let mut rec = self.new_recording(file, next)?;
                // A part starts where the stream is, not at its beginning.
                rec.next_offset = UNANCHORED;
                Ok(rec)
            }
        }
    }

    /// Opens `path` to append to it; `Err` says why it cannot be continued.
    fn reopen(&self, path: &Path) -> Result<Recording, String> {
        let file = OpenOptions::new().read(true).write(true).open(path).map_err(|e| e.to_string())?;
        let mut reader = hound::WavReader::new(BufReader::new(file)).map_err(|e| e.to_string())?;
        let spec = reader.spec();
        if spec != self.spec() {
            return Err(format!(
                "it holds {} Hz, {} ch, {}-bit audio",
                spec.sample_rate, spec.channels, spec.bits_per_sample
            ));
        }
        let samples = u64::from(reader.len());
        let data_start =
            reader.seek(0).and_then(|()| reader.into_inner().stream_position()).map_err(|e| e.to_string())?;
        let data_end = data_start + samples * u64::from(spec.bits_per_sample / 8);
        let file = OpenOptions::new().write(true).open(path).map_err(|e| e.to_string())?;
        file.set_len(data_end).map_err(|e| e.to_string())?;
        drop(file);
        let writer = hound::WavWriter::append(path).map_err(|e| e.to_string())?;
        let frames = samples / u64::from(spec.channels);
        Ok(Recording { writer, path: path.to_path_buf(), next_offset: frames, frames, unflushed: 0, full: false })
    }

    /// Creates the next free numbered part of the configured path.
    fn next_part(&self) -> Result<(File, PathBuf), PluginError> {
        for n in 1..=MAX_NUMBER {
            let path = numbered(&self.path, n);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(f) => return Ok((f, path)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(PluginError::io(format!("path: cannot create {}: {e}", path.display()))),
            }
        }
        Err(PluginError::io(format!(
            "path: {} and its numbered versions up to -{MAX_NUMBER} all exist",
            self.path.display()
        )))
    }

    /// Creates the parent directories and the file, following `if_exists`.
    fn create(&self) -> Result<(File, PathBuf), PluginError> {
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| PluginError::io(format!("path: cannot create directory {}: {e}", parent.display())))?;
        }
        let cannot_create =
            |path: &Path, e: io::Error| PluginError::io(format!("path: cannot create {}: {e}", path.display()));
        match self.if_exists {
            IfExists::Overwrite => {
                File::create(&self.path).map(|f| (f, self.path.clone())).map_err(|e| cannot_create(&self.path, e))
            }
            IfExists::Error => match OpenOptions::new().write(true).create_new(true).open(&self.path) {
                Ok(f) => Ok((f, self.path.clone())),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(PluginError::io(exists_message(&self.path))),
                Err(e) => Err(cannot_create(&self.path, e)),
            },
            IfExists::Number => {
                for n in 0..=MAX_NUMBER {
                    let path = if n == 0 { self.path.clone() } else { numbered(&self.path, n) };
                    match OpenOptions::new().write(true).create_new(true).open(&path) {
                        Ok(f) => return Ok((f, path)),
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                        Err(e) => return Err(cannot_create(&path, e)),
                    }
                }
                Err(PluginError::io(format!(
                    "path: {} and its numbered versions up to -{MAX_NUMBER} all exist",
                    self.path.display()
                )))
            }
        }
    }
}

/// How far `if_exists = "number"` counts before giving up.
const MAX_NUMBER: u32 = 9_999;

/// The files recorded by this process, by configured path (resolved): where the latest
/// instance for that path wrote. A later `start` for the same path is a restart: it continues.
fn recorded() -> &'static Mutex<HashMap<PathBuf, PathBuf>> {
    static RECORDED: OnceLock<Mutex<HashMap<PathBuf, PathBuf>>> = OnceLock::new();
    RECORDED.get_or_init(Mutex::default)
}

/// `dir/name-n.ext` for `dir/name.ext`.
fn numbered(path: &Path, n: u32) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{n}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{n}"),
    };
    path.with_file_name(name)
}

fn exists_message(path: &Path) -> String {
    format!("path: {} exists (set if_exists = \"overwrite\" or \"number\")", path.display())
}

/// Fails when `path` could not be created: its nearest existing ancestor is not a directory.
fn check_parent(path: &Path) -> Result<(), PluginError> {
    for dir in path.ancestors().skip(1).filter(|d| !d.as_os_str().is_empty()) {
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => return Ok(()),
            Ok(_) => {
                return Err(PluginError::config(format!(
                    "path: cannot create {}: {} is not a directory",
                    path.display(),
                    dir.display()
                )));
            }
            // Under a file, the OS says "not a directory" before we reach the file itself.
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => continue,
            Err(e) => return Err(PluginError::config(format!("path: cannot create {}: {e}", path.display()))),
        }
    }
    Ok(())
}

/// A float sample as stored in an f32 file: non-finite becomes silence, the rest is clipped.
fn clean(x: f32) -> f32 {
    if x.is_finite() { x.clamp(-1.0, 1.0) } else { 0.0 }
}

/// Float to i16 as the host converts: `x * 32768`, rounded and clipped, NaN is silence.
fn f32_to_i16(x: f32) -> i16 {
    if x.is_nan() { 0 } else { (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16 }
}

// 4. The export line. The source in `plugins/source-wav` has the same id: ids are unique per
//    kind.
tolk_plugin_api::export_plugins! {
    sinks: [WavSink],
}

// 5. Tests: the conformance kit, round trips read back with hound, gaps, overlaps, existing
//    files, a killed run, and every config error.
#[cfg(test)]
mod tests {
    use std::io::Write;

    use tolk_plugin_api::{
        ErrorKind,
        testing::{SinkHarness, check_sink, new_sink},
    };

    use super::*;

    fn config(path: &Path, extra: &str) -> String {
        format!("path = '{}'\n{extra}", path.display())
    }

    fn started(path: &Path, extra: &str) -> SinkHarness {
        SinkHarness::start(new_sink::<WavSink>(&config(path, extra)).unwrap()).unwrap()
    }

    fn read_i16(path: &Path) -> (hound::WavSpec, Vec<i16>) {
        let mut r = hound::WavReader::open(path).unwrap();
        (r.spec(), r.samples::<i16>().map(Result::unwrap).collect())
    }

    fn read_f32(path: &Path) -> (hound::WavSpec, Vec<f32>) {
        let mut r = hound::WavReader::open(path).unwrap();
        (r.spec(), r.samples::<f32>().map(Result::unwrap).collect())
    }

    /// Sends an i16 block at `offset` straight to the sink (the harness numbers its own).
    fn block(h: &mut SinkHarness, samples: &[i16], offset: u64) {
        let format = h.format.unwrap();
        h.sink.on_audio(AudioBlock::new(format, Samples::I16(samples), offset, "es")).unwrap();
    }

    /// Forgets what this process recorded, as a new process would.
    fn forget_recordings() {
        recorded().lock().unwrap().clear();
    }

    fn error(config: &str) -> String {
        let e = new_sink::<WavSink>(config).err().unwrap_or_else(|| panic!("accepted: {config}"));
        assert_eq!(e.kind(), ErrorKind::CONFIG, "{e}");
        e.message().to_string()
    }

    #[test]
    fn passes_the_conformance_kit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out").join("es.wav");
        let report = check_sink::<WavSink>(&config(&path, ""));
        assert!(report.passed(), "{report}");
        assert_eq!(read_i16(&path).0.sample_rate, 24_000);
    }

    #[test]
    fn passes_the_conformance_kit_in_f32_stereo() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("es.wav");
        let report = check_sink::<WavSink>(&config(&path, "sample_format = 'f32'\nchannels = 2\nsample_rate = 48000"));
        assert!(report.passed(), "{report}");
        let (spec, _) = read_f32(&path);
        assert_eq!((spec.sample_rate, spec.channels, spec.bits_per_sample), (48_000, 2, 32));
    }

    #[test]
    fn the_example_config_touches_no_file() {
        // `new` only resolves and checks: the example's relative file is not created.
        let sink = new_sink::<WavSink>(WavSink::EXAMPLE_CONFIG).unwrap();
        assert_eq!(sink.format().unwrap().into_option(), Some(AudioFormat::SESSION));
        drop(sink);
        assert!(!Path::new("conformance-recording.wav").exists());
    }

    #[test]
    fn new_creates_nothing_and_start_creates_the_directories_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a").join("b").join("es.wav");
        let mut sink = new_sink::<WavSink>(&config(&path, "")).unwrap();
        sink.stop().unwrap();
        drop(sink);
        assert!(!dir.path().join("a").exists());
        let h = started(&path, "");
        h.stop().unwrap();
        let (spec, samples) = read_i16(&path);
        assert_eq!((spec.sample_rate, spec.channels, spec.bits_per_sample), (24_000, 1, 16));
        assert!(samples.is_empty());
    }

    #[test]
    fn i16_is_written_bit_exact() {
        let dir = tempfile::tempdir().unwrap();
        let samples: Vec<i16> = (i16::MIN..=i16::MAX).step_by(7).chain([i16::MIN, i16::MAX, 0, -1, 1]).collect();
        // Blocks of i16, as the host delivers them to an i16 sink.
        let direct = dir.path().join("direct.wav");
        let mut h = started(&direct, "sample_rate = 16000");
        block(&mut h, &samples[..1000], 0);
        block(&mut h, &samples[1000..], 1000);
        h.stop().unwrap();
        let (spec, got) = read_i16(&direct);
        assert_eq!(
            (spec.sample_rate, spec.bits_per_sample, spec.sample_format),
            (16_000, 16, hound::SampleFormat::Int)
        );
        assert_eq!(got, samples);
        // Through the harness, which converts x / 32768 floats back to i16 as the host does.
        let harness = dir.path().join("harness.wav");
        let mut h = started(&harness, "");
        let floats: Vec<f32> = samples.iter().map(|&x| f32::from(x) / 32768.0).collect();
        for chunk in floats.chunks(481) {
            h.audio(chunk, "es").unwrap();
        }
        h.stop().unwrap();
        assert_eq!(read_i16(&harness).1, samples);
    }

    #[test]
    fn f32_is_written_clean_and_clipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("es.wav");
        let mut h = started(&path, "sample_format = 'f32'\nchannels = 2");
        let samples = [0.25, -0.5, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 2.0, -2.0, 1.0, -1.0, 0.0, 1e-7, 0.999];
        h.audio(&samples, "es").unwrap();
        h.audio(&[0.5, 0.5, 0.1], "es").unwrap(); // the odd last sample is not a whole frame
        h.stop().unwrap();
        let (spec, got) = read_f32(&path);
        assert_eq!((spec.channels, spec.sample_format, spec.bits_per_sample), (2, hound::SampleFormat::Float, 32));
        assert_eq!(got, vec![0.25, -0.5, 0.0, 0.0, 0.0, 1.0, -1.0, 1.0, -1.0, 0.0, 1e-7, 0.999, 0.5, 0.5]);
    }

    #[test]
    fn gaps_are_filled_with_silence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("es.wav");
        let mut h = started(&path, "channels = 2");
        let a: Vec<i16> = (1..=200).collect(); // 100 frames
        let b: Vec<i16> = (-200..=-1).collect();
        block(&mut h, &a, 50); // late first block: 50 frames of silence first
        block(&mut h, &b, 300); // frames 150..300 were dropped upstream
        block(&mut h, &a, 400); // contiguous
        h.stop().unwrap();
        let (_, got) = read_i16(&path);
        let want: Vec<i16> = [vec![0; 100], a.clone(), vec![0; 300], b, a].concat();
        assert_eq!(got, want);
    }

    #[test]
    fn overlaps_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("es.wav");
        let mut h = started(&path, "");
        let a: Vec<i16> = (0..100).collect();
        let b: Vec<i16> = (1000..1100).collect();
        block(&mut h, &a, 0);
        block(&mut h, &b, 50); // its first 50 frames are already written
        block(&mut h, &a[..30], 120); // entirely old
        block(&mut h, &[], 500); // an empty block moves nothing
        block(&mut h, &[7, 8], 150);
        h.stop().unwrap();
        let (_, got) = read_i16(&path);
        let want: Vec<i16> = [&a[..], &b[50..], &[7, 8]].concat();
        assert_eq!(got, want);
    }

    #[test]
    fn without_fill_gaps_blocks_are_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("es.wav");
        let mut h = started(&path, "fill_gaps = false");
        block(&mut h, &[1, 2, 3], 100);
        block(&mut h, &[4, 5], 1);
        block(&mut h, &[6], 9_000);
        h.stop().unwrap();
        assert_eq!(read_i16(&path).1, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn a_gap_longer_than_ten_minutes_is_capped_and_the_file_follows_the_stream_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("es.wav");
        let mut h = started(&path, "sample_rate = 1000");
        block(&mut h, &[1; 10], 0);
        let far = 10 + 600_000 + 5_000; // 10 minutes and 5 s missing
        block(&mut h, &[2; 10], far);
        block(&mut h, &[3; 10], far + 10); // contiguous: no second gap
        block(&mut h, &[4; 10], far + 25); // 5 frames missing
        h.stop().unwrap();
        let (_, got) = read_i16(&path);
        let want: Vec<i16> =
            [vec![1; 10], vec![0; 600_000], vec![2; 10], vec![3; 10], vec![0; 5], vec![4; 10]].concat();
        assert_eq!(got.len(), want.len());
        assert!(got == want);
    }

    #[test]
    fn if_exists_overwrite_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("es.wav");
        std::fs::write(&path, "old").unwrap();
        let mut h = started(&path, "");
        block(&mut h, &[5, 6], 0);
        h.stop().unwrap();
        assert_eq!(read_i16(&path).1, vec![5, 6]);
    }

    #[test]
    fn if_exists_error_refuses_in_new_and_in_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("es.wav");
        std::fs::write(&path, "old").unwrap();
        let message = format!("path: {} exists (set if_exists = \"overwrite\" or \"number\")", path.display());
        assert_eq!(error(&config(&path, "if_exists = 'error'")), message);
        // The file appears between `tolk check` (new) and the run (start).
        std::fs::remove_file(&path).unwrap();
        let mut sink = new_sink::<WavSink>(&config(&path, "if_exists = 'error'")).unwrap();
        std::fs::write(&path, "old").unwrap();
        let e = sink.start().unwrap_err();
        assert_eq!((e.kind(), e.message()), (ErrorKind::IO, message.as_str()));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
    }

    #[test]
    fn if_exists_number_writes_beside_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("es.wav");
        for (i, name) in ["es.wav", "es-1.wav", "es-2.wav"].iter().enumerate() {
            // Each start stands for a new run (process): not a restart, which would continue.
            forget_recordings();
            let mut h = started(&path, "if_exists = 'number'");
            block(&mut h, &[i as i16], 0);
            h.stop().unwrap();
            assert_eq!(read_i16(&dir.path().join(name)).1, vec![i as i16]);
        }
        assert_eq!(read_i16(&path).1, vec![0]);
        assert_eq!(numbered(Path::new("/x/rec"), 3), Path::new("/x/rec-3"));
        assert_eq!(numbered(Path::new("/x/a.b.wav"), 12), Path::new("/x/a.b-12.wav"));
    }

    #[test]
    fn a_killed_run_leaves_a_valid_file_up_to_the_last_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("es.wav");
        let mut h = started(&path, "");
        let samples: Vec<i16> = (0..4_800).map(|i| i as i16).collect();
        block(&mut h, &samples, 0);
        h.flush().unwrap();
        block(&mut h, &[1; 480], 4_800); // after the flush: lost with the process
        // Simulate a crash: nothing of the sink runs again (no stop, no drop).
        std::mem::forget(h);
        let (spec, got) = read_i16(&path);
        assert_eq!(spec.sample_rate, 24_000);
        assert_eq!(got, samples);
    }

    #[test]
    fn the_header_is_rewritten_every_flush_ms_without_being_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("es.wav");
        let mut h = started(&path, "flush_ms = 100");
        // 20 ms blocks: the header is rewritten after blocks 5, 10, 15 (2400 frames each).
        for i in 0..17 {
            block(&mut h, &[i as i16; 480], i * 480);
        }
        std::mem::forget(h);
        let (_, got) = read_i16(&path);
        assert_eq!(got.len(), 15 * 480);
        assert_eq!(got[got.len() - 1], 14);
    }

    #[test]
    fn a_restart_continues_the_file_aligned_and_cuts_what_its_header_does_not_cover() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("es.wav");
        let mut h = started(&path, "flush_ms = 10");
        block(&mut h, &[1; 480], 0);
        block(&mut h, &[2; 480], 480);
        h.stop().unwrap();
        // A failure left bytes after the data the header covers (half a write).
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&[9, 9, 9]).unwrap();
        // The restarted instance (same path, same process) continues: frames 960..1440 were
        // lost meanwhile and become silence, so frame N of the file is still frame N.
        let mut h = started(&path, "flush_ms = 10");
        block(&mut h, &[3; 480], 1_440);
        h.stop().unwrap();
        let (_, got) = read_i16(&path);
        assert_eq!(got, [vec![1; 480], vec![2; 480], vec![0; 480], vec![3; 480]].concat());
        assert!(!dir.path().join("es-1.wav").exists());
        // Even where an existing file is an error: it is this process's own recording.
        let mut h = started(&path, "if_exists = 'error'");
        block(&mut h, &[4; 10], 1_920);
        h.stop().unwrap();
        assert_eq!(read_i16(&path).1.len(), 1_930);
    }

    #[test]
    fn a_restart_that_cannot_continue_writes_the_next_part_and_keeps_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("es.wav");
        let mut h = started(&path, "");
        block(&mut h, &[1; 100], 0);
        h.stop().unwrap();
        // The file is not one this sink can continue (another format).
        let stereo = new_sink::<WavSink>(&config(&path, "channels = 2")).unwrap();
        let mut h = SinkHarness::start(stereo).unwrap();
        let format = h.format.unwrap();
        h.sink.on_audio(AudioBlock::new(format, Samples::I16(&[5; 20]), 5_000, "es")).unwrap();
        h.stop().unwrap();
        assert_eq!(read_i16(&path).1, vec![1; 100]);
        // The part starts where the stream was: no silence for what is in the first file.
        let (spec, got) = read_i16(&dir.path().join("es-1.wav"));
        assert_eq!((spec.channels, got), (2, vec![5; 20]));
    }

    #[test]
    fn drop_without_stop_finalizes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("es.wav");
        let mut h = started(&path, "");
        block(&mut h, &[3; 1000], 0);
        drop(h);
        assert_eq!(read_i16(&path).1, vec![3; 1000]);
    }

    #[test]
    fn blocks_in_another_shape_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("es.wav");
        let mut h = started(&path, "");
        let wrong = AudioFormat::new(48_000, 1, SampleFormat::I16);
        let e = h.sink.on_audio(AudioBlock::new(wrong, Samples::I16(&[1, 2]), 0, "es")).unwrap_err();
        assert_eq!(
            e.message(),
            format!("a block in 48000 Hz, 1 ch, i16 does not fit {} (24000 Hz, 1 ch, i16)", path.display())
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let path = d.join("es.wav");
        assert_eq!(error("channels = 2"), "path: missing required key");
        assert_eq!(error("path = ''"), "path: must not be empty");
        assert_eq!(error(&config(d, "")), format!("path: {} is a directory", d.display()));
        let file = d.join("file");
        std::fs::write(&file, "").unwrap();
        let under_file = file.join("sub").join("es.wav");
        assert_eq!(
            error(&config(&under_file, "")),
            format!("path: cannot create {}: {} is not a directory", under_file.display(), file.display())
        );
        assert_eq!(error(&config(&path, "sample_rate = 500")), "sample_rate: 500 is outside 1000..=768000");
        assert_eq!(error(&config(&path, "channels = 0")), "channels: 0 is outside 1..=64");
        assert_eq!(error(&config(&path, "channels = 65")), "channels: 65 is outside 1..=64");
        assert_eq!(error(&config(&path, "flush_ms = 0")), "flush_ms: 0 is outside 1..=60000");
        assert_eq!(
            error(&config(&path, "sample_format = 'i24'")),
            "sample_format: unknown variant `i24`, expected `i16` or `f32`"
        );
        assert_eq!(
            error(&config(&path, "if_exists = 'append'")),
            "if_exists: unknown variant `append`, expected one of `overwrite`, `error`, `number`"
        );
        assert_eq!(
            error(&config(&path, "rate = 1")),
            "rate: unknown key (expected one of: path, sample_rate, channels, sample_format, if_exists, flush_ms, \
             fill_gaps, floor_mix, duck_db, floor_db, attack_ms, release_ms, hold_ms)"
        );
        assert_eq!(error(&config(&path, "fill_gaps = 1")), "fill_gaps: invalid type: integer `1`, expected a boolean");
        assert_eq!(
            error(&config(&path, "floor_mix = true\nduck_db = -3.0\nfloor_db = -6.0")),
            "duck_db: -3 is above floor_db (-6); ducking lowers the floor"
        );
    }

    // Issue 5: the floor mix.
    fn floor_block(h: &mut SinkHarness, samples: &[f32], offset: u64) {
        let format = AudioFormat { sample: SampleFormat::F32, ..h.format.unwrap() };
        h.sink.on_audio(AudioBlock::floor(format, Samples::F32(samples), offset, "en")).unwrap();
    }

    fn translation_block(h: &mut SinkHarness, samples: &[f32], offset: u64) {
        let format = AudioFormat { sample: SampleFormat::F32, ..h.format.unwrap() };
        h.sink.on_audio(AudioBlock::new(format, Samples::F32(samples), offset, "es")).unwrap();
    }

    #[test]
    fn without_floor_mix_floor_blocks_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("es.wav");
        let mut h = started(&path, "sample_format = 'f32'");
        floor_block(&mut h, &[0.5; 100], 0);
        translation_block(&mut h, &[0.25; 10], 0);
        h.stop().unwrap();
        assert_eq!(read_f32(&path).1, vec![0.25; 10]);
    }

    #[test]
    fn floor_mix_records_the_ducked_floor_under_the_translation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("es.wav");
        // 24 kHz: attack 50 ms = 1200 frames, hold 100 ms = 2400, release 100 ms = 2400.
        let mut h = started(
            &path,
            "sample_format = 'f32'\nfloor_mix = true\nduck_db = -18.0\nfloor_db = -6.0\nattack_ms = 50.0\n\
             release_ms = 100.0\nhold_ms = 100.0",
        );
        // The translation arrives early (as Realtime output does); the floor paces the file.
        translation_block(&mut h, &[0.0; 2400], 0);
        translation_block(&mut h, &[0.1; 4800], 2400);
        for i in 0..30 {
            floor_block(&mut h, &[0.4; 480], i * 480);
        }
        h.stop().unwrap();
        let (_, got) = read_f32(&path);
        assert_eq!(got.len(), 14_400, "the file follows the floor's clock");
        let g = |db: f32| tolk_plugin_api::dsp::db_to_gain(db);
        // Before the translation: the floor at -6 dB.
        assert!((got[2000] - 0.4 * g(-6.0)).abs() < 1e-4, "{}", got[2000]);
        // Under it, after the attack: translation + floor at -18 dB.
        assert!((got[5000] - (0.1 + 0.4 * g(-18.0))).abs() < 1e-4, "{}", got[5000]);
        // After it, hold and release: back to -6 dB.
        assert!((got[14_000] - 0.4 * g(-6.0)).abs() < 1e-4, "{}", got[14_000]);
        // No clicks: the floor part moves by at most one ramp step per sample.
        let floor_part: Vec<f32> =
            got.iter().enumerate().map(|(i, &v)| if (2400..7200).contains(&i) { v - 0.1 } else { v }).collect();
        let max_step = floor_part.windows(2).map(|w| (w[1] - w[0]).abs()).fold(0.0f32, f32::max);
        assert!(max_step < 0.4 * (1.0 - g(-12.0 / 1200.0)) + 1e-4, "step {max_step}");
    }

    #[test]
    fn floor_mix_writes_the_queued_translation_at_stop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("es.wav");
        let mut h = started(&path, "sample_format = 'f32'\nfloor_mix = true");
        translation_block(&mut h, &[0.5; 300], 0);
        floor_block(&mut h, &[0.0; 100], 0);
        h.stop().unwrap();
        let (_, got) = read_f32(&path);
        assert_eq!(got.len(), 300);
        assert!(got.iter().all(|&v| (v - 0.5).abs() < 1e-6));
    }
}
