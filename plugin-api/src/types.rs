//! The plain data that crosses the plugin boundary: audio formats and blocks, text events,
//! plugin descriptors and errors.
//!
//! Every type here is `#[repr(C)]` and `StableAbi`, so the host and a plugin built at another
//! time agree on its layout. Fields that hold abi_stable types are private; authors use the
//! constructors and accessors, which speak plain Rust (`&str`, `&[i16]`, `String`).

use std::fmt;

use abi_stable::{
    StableAbi,
    std_types::{RSlice, RStr, RString, RVec},
};

/// How samples are stored: signed 16-bit integers or 32-bit floats in `-1.0..=1.0`.
///
/// Other encodings (24-bit, 32-bit integers, μ-law …) are converted by the plugin that reads
/// them; the host speaks these two.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SampleFormat {
    /// Signed 16-bit integer, the Realtime API's own encoding.
    I16 = 0,
    /// 32-bit float; `-1.0..=1.0` is full scale, values outside are clipped by the host.
    F32 = 1,
}

impl fmt::Display for SampleFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SampleFormat::I16 => "i16",
            SampleFormat::F32 => "f32",
        })
    }
}

/// The shape of an audio stream: rate, channel count and sample encoding.
///
/// Samples are always interleaved (`L R L R …` for stereo).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AudioFormat {
    /// Frames per second (one frame holds one sample per channel).
    pub sample_rate: u32,
    /// Channels per frame, at least 1.
    pub channels: u16,
    /// How each sample is stored.
    pub sample: SampleFormat,
}

impl AudioFormat {
    /// The format of tolk's internal audio and of the Realtime API: 24 kHz, mono, 16-bit.
    pub const SESSION: AudioFormat = AudioFormat::new(24_000, 1, SampleFormat::I16);

    /// A format with the given rate, channel count and sample encoding.
    pub const fn new(sample_rate: u32, channels: u16, sample: SampleFormat) -> Self {
        AudioFormat { sample_rate, channels, sample }
    }

    /// Checks that the rate and channel count are usable (rate 1 kHz – 768 kHz, 1 – 64 channels).
    pub fn validate(&self) -> Result<(), PluginError> {
        if !(1_000..=768_000).contains(&self.sample_rate) {
            return Err(PluginError::unsupported(format!(
                "sample rate {} Hz is outside 1000..=768000",
                self.sample_rate
            )));
        }
        if !(1..=64).contains(&self.channels) {
            return Err(PluginError::unsupported(format!("{} channels is outside 1..=64", self.channels)));
        }
        Ok(())
    }
}

impl fmt::Display for AudioFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} Hz, {} ch, {}", self.sample_rate, self.channels, self.sample)
    }
}

/// Borrowed interleaved samples in one of the two encodings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Samples<'a> {
    /// 16-bit integer samples.
    I16(&'a [i16]),
    /// 32-bit float samples.
    F32(&'a [f32]),
}

impl Samples<'_> {
    /// Number of samples (not frames).
    pub fn len(&self) -> usize {
        match self {
            Samples::I16(s) => s.len(),
            Samples::F32(s) => s.len(),
        }
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The encoding of these samples.
    pub fn sample_format(&self) -> SampleFormat {
        match self {
            Samples::I16(_) => SampleFormat::I16,
            Samples::F32(_) => SampleFormat::F32,
        }
    }
}

/// What a block of audio handed to a sink carries: the interpretation, or the original
/// speech (the *floor*) for mixing underneath it.
///
/// A route configured to mix the floor sends each of its sinks the source's own audio as
/// `Floor` blocks, interleaved with the `Translation` blocks, both in the sink's format and
/// each on its own stream clock ([`AudioBlock::frame_offset`]). A sink that does not mix the
/// floor ignores `Floor` blocks; one that does (the speaker and WAV sinks with `floor_mix`)
/// plays them ducked under the translation, e.g. with [`dsp::Ducker`](crate::dsp::Ducker).
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AudioRole {
    /// The interpretation: what a sink plays or records (the default).
    #[default]
    Translation = 0,
    /// The original speech of the route's source, for sinks that mix it under the
    /// translation. Real time: one block per source block, in stream order.
    Floor = 1,
}

impl fmt::Display for AudioRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AudioRole::Translation => "translation",
            AudioRole::Floor => "floor",
        })
    }
}

/// A block of interleaved audio handed to a sink, with where it sits in its stream.
///
/// The host delivers blocks in the format the sink asked for ([`OutputSink::format`]); the
/// block's [`format`](AudioBlock::format) says so explicitly. Its [`role`](AudioBlock::role)
/// says whether it is the translation ([`AudioBlock::new`]) or the original speech for a
/// floor mix ([`AudioBlock::floor`] / [`with_role`](AudioBlock::with_role)); sinks that do
/// not mix the floor must ignore [`AudioRole::Floor`] blocks.
///
/// [`OutputSink::format`]: crate::OutputSink::format
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct AudioBlock<'a> {
    format: AudioFormat,
    i16_samples: RSlice<'a, i16>,
    f32_samples: RSlice<'a, f32>,
    frame_offset: u64,
    language: RStr<'a>,
    role: AudioRole,
}

impl<'a> AudioBlock<'a> {
    /// A block of `samples` in `format`, whose first frame is frame number `frame_offset` of
    /// its stream, carrying speech in `language` (a BCP-47 tag such as `es`, or empty).
    pub fn new(format: AudioFormat, samples: Samples<'a>, frame_offset: u64, language: &'a str) -> Self {
        let (i16_samples, f32_samples) = match samples {
            Samples::I16(s) => (RSlice::from_slice(s), RSlice::empty()),
            Samples::F32(s) => (RSlice::empty(), RSlice::from_slice(s)),
        };
        let format = AudioFormat { sample: samples.sample_format(), ..format };
        AudioBlock {
            format,
            i16_samples,
            f32_samples,
            frame_offset,
            language: RStr::from_str(language),
            role: AudioRole::Translation,
        }
    }

    /// A block of the original speech (the floor), for sinks that mix it under the
    /// translation: [`new`](Self::new) with role [`AudioRole::Floor`]. `language` is the
    /// source's language.
    pub fn floor(format: AudioFormat, samples: Samples<'a>, frame_offset: u64, language: &'a str) -> Self {
        Self::new(format, samples, frame_offset, language).with_role(AudioRole::Floor)
    }

    /// The same block with another role.
    pub fn with_role(self, role: AudioRole) -> Self {
        AudioBlock { role, ..self }
    }

    /// Translation (the default) or floor; see [`AudioRole`].
    pub fn role(&self) -> AudioRole {
        self.role
    }

    /// The stream's format; `format().sample` matches [`samples`](Self::samples).
    pub fn format(&self) -> AudioFormat {
        self.format
    }

    /// The interleaved samples.
    pub fn samples(&self) -> Samples<'a> {
        match self.format.sample {
            SampleFormat::I16 => Samples::I16(self.i16_samples.as_slice()),
            SampleFormat::F32 => Samples::F32(self.f32_samples.as_slice()),
        }
    }

    /// Number of whole frames in the block.
    pub fn frames(&self) -> usize {
        self.samples().len() / usize::from(self.format.channels.max(1))
    }

    /// Index of the block's first frame since its stream started (the stream's clock).
    pub fn frame_offset(&self) -> u64 {
        self.frame_offset
    }

    /// Start of the block in milliseconds since its stream started.
    pub fn start_ms(&self) -> u64 {
        self.frame_offset * 1000 / u64::from(self.format.sample_rate.max(1))
    }

    /// Language of the speech in the block (BCP-47, e.g. `es`), or `""` when unknown.
    pub fn language(&self) -> &'a str {
        self.language.as_str()
    }
}

/// Whether a text event transcribes the original speech or carries its translation.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextRole {
    /// A transcript of the speaker's own words, in the source language.
    Source = 0,
    /// The interpretation, in the target language (what captions show).
    Translation = 1,
}

/// A caption or transcript update: a growing `delta` or the `final` text of one utterance.
///
/// Deltas of one utterance arrive in order and, concatenated, make up the final text. Timing is
/// in milliseconds on the clock of the route's source stream: 0 is the first frame that source
/// delivered, the same clock as [`AudioBlock::frame_offset`] (which counts 24 kHz frames), not
/// the wall clock and not the start of the run. Streams of different sources have clocks of
/// their own, and a source that starts late starts its clock late.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct TextEvent<'a> {
    role: TextRole,
    is_final: bool,
    utterance_id: u64,
    language: RStr<'a>,
    text: RStr<'a>,
    start_ms: u64,
    end_ms: u64,
}

impl<'a> TextEvent<'a> {
    /// A partial text (`is_final == false`) or the final text of utterance `utterance_id`.
    pub fn new(
        role: TextRole,
        is_final: bool,
        utterance_id: u64,
        language: &'a str,
        text: &'a str,
        start_ms: u64,
        end_ms: u64,
    ) -> Self {
        TextEvent {
            role,
            is_final,
            utterance_id,
            language: RStr::from_str(language),
            text: RStr::from_str(text),
            start_ms,
            end_ms: end_ms.max(start_ms),
        }
    }

    /// Source transcript or translation.
    pub fn role(&self) -> TextRole {
        self.role
    }
    /// True for the complete text of the utterance, false for a delta.
    pub fn is_final(&self) -> bool {
        self.is_final
    }
    /// Identifies the utterance; increases through a stream, shared by its deltas and final.
    pub fn utterance_id(&self) -> u64 {
        self.utterance_id
    }
    /// Language of `text` (BCP-47, e.g. `fr`).
    pub fn language(&self) -> &'a str {
        self.language.as_str()
    }
    /// The delta or the whole final text.
    pub fn text(&self) -> &'a str {
        self.text.as_str()
    }
    /// When the utterance's speech started, in ms since the run started.
    pub fn start_ms(&self) -> u64 {
        self.start_ms
    }
    /// When it ended (for a delta: the latest time it covers), in ms since the run started.
    pub fn end_ms(&self) -> u64 {
        self.end_ms
    }
}

/// The three kinds of plugin.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PluginKind {
    /// Produces audio ([`AudioSource`](crate::AudioSource)).
    Source = 0,
    /// Produces interpretation instructions ([`PromptProvider`](crate::PromptProvider)).
    Prompt = 1,
    /// Consumes audio and text ([`OutputSink`](crate::OutputSink)).
    Sink = 2,
}

impl PluginKind {
    /// Lower-case name used in configs and listings: `source`, `prompt`, `sink`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PluginKind::Source => "source",
            PluginKind::Prompt => "prompt",
            PluginKind::Sink => "sink",
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a library says about one plugin it exports. Built by the export macro from the
/// trait's associated constants.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct Descriptor {
    id: RString,
    kind: PluginKind,
    name: RString,
    version: RString,
    description: RString,
    example_config: RString,
    capabilities: RVec<RString>,
}

impl Descriptor {
    /// A descriptor; `capabilities` are CLAP-style ids (`vendor.name/REV`) of optional features.
    pub fn new(
        id: &str,
        kind: PluginKind,
        name: &str,
        version: &str,
        description: &str,
        example_config: &str,
        capabilities: &[&str],
    ) -> Self {
        Descriptor {
            id: id.into(),
            kind,
            name: name.into(),
            version: version.into(),
            description: description.into(),
            example_config: example_config.into(),
            capabilities: capabilities.iter().map(|c| RString::from(*c)).collect(),
        }
    }
    /// Stable reverse-DNS id, e.g. `com.acme.glossary`.
    pub fn id(&self) -> &str {
        self.id.as_str()
    }
    /// Source, prompt provider or sink.
    pub fn kind(&self) -> PluginKind {
        self.kind
    }
    /// Display name.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }
    /// The plugin's version (semver), normally its crate's.
    pub fn version(&self) -> &str {
        self.version.as_str()
    }
    /// One-line description.
    pub fn description(&self) -> &str {
        self.description.as_str()
    }
    /// A TOML table body that the plugin accepts, used by docs and the conformance kit.
    pub fn example_config(&self) -> &str {
        self.example_config.as_str()
    }
    /// Optional capabilities, CLAP-style ids (`vendor.name/REV`).
    pub fn capabilities(&self) -> impl Iterator<Item = &str> {
        self.capabilities.iter().map(|c| c.as_str())
    }
}

/// The category of a [`PluginError`]. A `u8` newtype rather than an enum so that new kinds
/// can be added without breaking the ABI; unknown kinds display as `error`.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorKind(pub u8);

impl ErrorKind {
    /// Anything else.
    pub const OTHER: ErrorKind = ErrorKind(0);
    /// The plugin's configuration is invalid; the message names the key.
    pub const CONFIG: ErrorKind = ErrorKind(1);
    /// A file, device or network operation failed.
    pub const IO: ErrorKind = ErrorKind(2);
    /// The plugin panicked; the instance is poisoned and will not be called again.
    pub const PANICKED: ErrorKind = ErrorKind(3);
    /// The request is valid but this plugin cannot do it (format, rate, …).
    pub const UNSUPPORTED: ErrorKind = ErrorKind(4);
    /// The library has no plugin with the requested id and kind.
    pub const UNKNOWN_PLUGIN: ErrorKind = ErrorKind(5);
    /// An earlier panic poisoned this instance (set by the host).
    pub const POISONED: ErrorKind = ErrorKind(6);
    /// The call was made in the wrong state (e.g. `start` twice).
    pub const STATE: ErrorKind = ErrorKind(7);

    /// Short lower-case name of the kind.
    pub fn as_str(&self) -> &'static str {
        match *self {
            ErrorKind::CONFIG => "config",
            ErrorKind::IO => "io",
            ErrorKind::PANICKED => "panicked",
            ErrorKind::UNSUPPORTED => "unsupported",
            ErrorKind::UNKNOWN_PLUGIN => "unknown plugin",
            ErrorKind::POISONED => "poisoned",
            ErrorKind::STATE => "state",
            _ => "error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error every plugin call returns: a [`kind`](Self::kind) and a one-line lower-case
/// message that names the culprit (a config key, a file, a device).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    kind: ErrorKind,
    message: RString,
}

impl PluginError {
    /// An error of `kind`. Line breaks in `message` are folded so it stays one line.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let message: String = message.into();
        let message =
            if message.contains('\n') { message.split_whitespace().collect::<Vec<_>>().join(" ") } else { message };
        PluginError { kind, message: message.into() }
    }
    /// A configuration error; start the message with the key, e.g. `"path: file not found"`.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::CONFIG, message)
    }
    /// An I/O error; name the file or device.
    pub fn io(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::IO, message)
    }
    /// The plugin cannot do what was asked.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::UNSUPPORTED, message)
    }
    /// A call in the wrong state.
    pub fn state(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::STATE, message)
    }
    /// Anything else.
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::OTHER, message)
    }
    /// The category.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// The one-line message.
    pub fn message(&self) -> &str {
        self.message.as_str()
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message.as_str())
    }
}

impl std::error::Error for PluginError {}

impl From<std::io::Error> for PluginError {
    fn from(e: std::io::Error) -> Self {
        PluginError::io(e.to_string())
    }
}

/// Severity of a log line sent through [`Host::log`](crate::Host::log).
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Fine detail, shown with `-vv`.
    Trace = 0,
    /// Detail, shown with `-v`.
    Debug = 1,
    /// Normal progress.
    Info = 2,
    /// Something is off but the plugin carries on.
    Warn = 3,
    /// Something failed.
    Error = 4,
}

/// What the host asks a prompt provider for: the language pair of one route.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct PromptRequest<'a> {
    route_id: RStr<'a>,
    source_language: RStr<'a>,
    target_language: RStr<'a>,
}

impl<'a> PromptRequest<'a> {
    /// A request for the route `route_id`, interpreting `source_language` into `target_language`.
    pub fn new(route_id: &'a str, source_language: &'a str, target_language: &'a str) -> Self {
        PromptRequest {
            route_id: route_id.into(),
            source_language: source_language.into(),
            target_language: target_language.into(),
        }
    }
    /// The route's id, e.g. `stage:es`.
    pub fn route_id(&self) -> &'a str {
        self.route_id.as_str()
    }
    /// Language the speaker speaks (BCP-47).
    pub fn source_language(&self) -> &'a str {
        self.source_language.as_str()
    }
    /// Language to interpret into (BCP-47).
    pub fn target_language(&self) -> &'a str {
        self.target_language.as_str()
    }
}

/// A prompt provider's answer: the session instructions and an optional hint for the input
/// transcription model (names and terms it should spell right).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, Default)]
pub struct Prompt {
    instructions: RString,
    transcription_hint: RString,
}

impl Prompt {
    /// Instructions only.
    pub fn new(instructions: impl Into<String>) -> Self {
        Prompt { instructions: RString::from(instructions.into()), transcription_hint: RString::new() }
    }
    /// Adds a hint for the input transcription (vocabulary, names).
    pub fn with_transcription_hint(mut self, hint: impl Into<String>) -> Self {
        self.transcription_hint = RString::from(hint.into());
        self
    }
    /// The session instructions.
    pub fn instructions(&self) -> &str {
        self.instructions.as_str()
    }
    /// The transcription hint, `""` when none.
    pub fn transcription_hint(&self) -> &str {
        self.transcription_hint.as_str()
    }
}
