//! `tolk.captions` — captions and transcripts as WebVTT, SRT and JSON Lines files.
//!
//! A text-only sink: it receives a route's text events (deltas and one final per utterance, of
//! the original speech and of its interpretation) and writes
//!
//! - **WebVTT** and **SRT** captions: one or more cues per final, each at most `max_lines`
//!   lines of at most `max_chars_per_line` characters, shown for at most `max_cue_ms`;
//! - **JSON Lines**: one object per final (and per delta with `jsonl_deltas`) with the text
//!   exactly as received, for tools that index or re-segment transcripts.
//!
//! The decisions a reader must know:
//!
//! - **Files are opened at `start`, never in `new`.** `tolk check` creates every instance to
//!   validate the config, and must not create or truncate anyone's outputs. `new` only checks.
//! - **A restart never overwrites.** A second `start` for a file this process already wrote
//!   (the host restarting the sink after a failure) appends to it: cut back to its last whole
//!   cue or row, no second header, SRT numbering continued.
//! - **Cues are written in the order finals arrive.** tolk delivers the finals of one stream in
//!   order, so the files are in time order; nothing is sorted or buffered for it. With
//!   `role = "both"`, source and translation cues share the files and overlap in time.
//! - **Every flush leaves valid files.** Each cue is formatted whole and handed to the file's
//!   buffer in one call, and `flush` pushes the buffers out, so a run that is killed after a
//!   flush leaves files that end at a cue boundary.
//! - **A short last cue waits for the next one.** A cue shorter than `min_cue_ms` is lengthened,
//!   but not past the start of the next cue of the same role. The last cue of an utterance is
//!   therefore held until the next final or the next flush, whichever comes first; when the
//!   flush comes first, the next start is unknown and the cue gets the full `min_cue_ms`.

use std::{
    collections::HashSet,
    fs::{File, OpenOptions},
    io::{BufWriter, Write},
    ops::Range,
    path::PathBuf,
    sync::{Mutex, OnceLock},
};

use serde::Serialize;
use tolk_plugin_api::prelude::*;

// 1. The config. Every key has a default except the outputs, of which at least one is needed;
//    `new` checks the rest.
/// Which text events become cues and rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Roles {
    /// The interpretation only: captions for the audience.
    #[default]
    Translation,
    /// The transcript of the original speech only.
    Source,
    /// Both, into the same files, in the order their finals arrive.
    Both,
}

impl Roles {
    fn accepts(self, role: TextRole) -> bool {
        match self {
            Roles::Translation => role == TextRole::Translation,
            Roles::Source => role == TextRole::Source,
            Roles::Both => true,
        }
    }
}

/// The `[sink.config]` table of `tolk.captions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptionsConfig {
    /// WebVTT file, relative to the config file's directory.
    pub vtt: Option<PathBuf>,
    /// SRT file.
    pub srt: Option<PathBuf>,
    /// JSON Lines file.
    pub jsonl: Option<PathBuf>,
    /// Which events become cues (and JSONL rows).
    pub role: Roles,
    /// Longest caption line, in characters (Unicode scalar values).
    pub max_chars_per_line: usize,
    /// Most lines per cue.
    pub max_lines: usize,
    /// Longest time a cue stays up; longer finals are split into several cues.
    pub max_cue_ms: u64,
    /// Shortest time a cue stays up, when the next cue leaves room for it.
    pub min_cue_ms: u64,
    /// Also write deltas (`"final": false` rows) to the JSONL file.
    pub jsonl_deltas: bool,
}

impl Default for CaptionsConfig {
    fn default() -> Self {
        CaptionsConfig {
            vtt: None,
            srt: None,
            jsonl: None,
            role: Roles::Translation,
            max_chars_per_line: 42,
            max_lines: 2,
            max_cue_ms: 6_000,
            min_cue_ms: 800,
            jsonl_deltas: false,
        }
    }
}

// 2. The plugin struct. A sink is called on one host thread, in order, so plain fields do: no
//    locks, no threads of its own.
/// The captions sink: one instance writes one set of files (one per language with `{lang}`).
pub struct Captions {
    /// Line, cue and timing limits from the config.
    layout: Layout,
    /// Which roles become cues and rows.
    roles: Roles,
    /// Write delta rows to the JSONL file too.
    jsonl_deltas: bool,
    /// The outputs: resolved in `new`, opened (created or truncated) at `start`, closed at
    /// `stop`.
    vtt: Option<Output>,
    srt: Option<Output>,
    jsonl: Option<Output>,
    /// The number of the next SRT cue; back to 1 whenever the files are opened.
    srt_number: u64,
    /// The last cue of the latest final while it is shorter than `min_cue_ms`. Written, with
    /// its extension, when the next cue or a flush comes, so it never outlives a flush.
    held: Option<Cue>,
    /// Where in the lifecycle the files are.
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Created by `new`: nothing on disk yet.
    Created,
    /// Between `start` and `stop`: the files are open.
    Open,
    /// After `stop`: the files are complete; `start` would begin them anew.
    Stopped,
}

// 3. The trait impl.
impl OutputSink for Captions {
    const ID: &'static str = "tolk.captions";
    const NAME: &'static str = "Captions";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "writes captions and transcripts as WebVTT, SRT and JSON Lines";
    // The conformance run writes these next to its config; the `conformance` prefix marks them.
    const EXAMPLE_CONFIG: &'static str = "vtt = \"conformance-captions.vtt\"\n\
                                          srt = \"conformance-captions.srt\"\n\
                                          jsonl = \"conformance-captions.jsonl\"\n\
                                          role = \"translation\"\n\
                                          max_chars_per_line = 42\n";

    type Config = CaptionsConfig;

    fn new(config: CaptionsConfig, host: &Host) -> Result<Self, PluginError> {
        if config.vtt.is_none() && config.srt.is_none() && config.jsonl.is_none() {
            return Err(PluginError::config("vtt: set at least one of vtt, srt, jsonl"));
        }
        if config.max_chars_per_line < 10 {
            return Err(PluginError::config(format!(
                "max_chars_per_line: must be at least 10 (got {})",
                config.max_chars_per_line
            )));
        }
        if config.max_lines == 0 {
            return Err(PluginError::config("max_lines: must be at least 1 (got 0)"));
        }
        if config.max_cue_ms < 1_000 {
            return Err(PluginError::config(format!("max_cue_ms: must be at least 1000 (got {})", config.max_cue_ms)));
        }
        if config.min_cue_ms > config.max_cue_ms {
            return Err(PluginError::config(format!(
                "min_cue_ms: {} is longer than max_cue_ms ({})",
                config.min_cue_ms, config.max_cue_ms
            )));
        }
        // Resolve and check the paths now, so a bad one fails at `tolk check`; but create
        // nothing: that waits for `start`.
        let mut outputs: Vec<(&str, PathBuf)> = Vec::new();
        for (key, path) in [("vtt", &config.vtt), ("srt", &config.srt), ("jsonl", &config.jsonl)] {
            let Some(path) = path else { continue };
            if path.as_os_str().is_empty() {
                return Err(PluginError::config(format!("{key}: path is empty")));
            }
            let path = host.resolve_path(path);
            if path.is_dir() {
                return Err(PluginError::config(format!("{key}: {} is a directory", path.display())));
            }
            if let Some((other, _)) = outputs.iter().find(|(_, p)| *p == path) {
                return Err(PluginError::config(format!("{key}: same file as {other}")));
            }
            outputs.push((key, path));
        }
        let output = |key: &str| {
            outputs.iter().find(|(k, _)| *k == key).map(|(_, path)| Output { path: path.clone(), writer: None })
        };
        Ok(Captions {
            layout: Layout {
                max_chars: config.max_chars_per_line,
                max_lines: config.max_lines,
                max_cue_ms: config.max_cue_ms,
                min_cue_ms: config.min_cue_ms,
            },
            roles: config.role,
            jsonl_deltas: config.jsonl_deltas,
            vtt: output("vtt"),
            srt: output("srt"),
            jsonl: output("jsonl"),
            srt_number: 1,
            held: None,
            state: State::Created,
        })
    }

    // Text only: the host sends this sink no audio at all.
    fn format(&self) -> Option<AudioFormat> {
        None
    }

    fn start(&mut self) -> Result<(), PluginError> {
        if self.state == State::Open {
            return Err(PluginError::state("already started"));
        }
        self.open()
    }

    fn on_text(&mut self, event: &TextEvent<'_>) -> Result<(), PluginError> {
        if !self.roles.accepts(event.role()) {
            return Ok(());
        }
        match self.state {
            State::Open => {}
            // A host that skips `start` still gets its files.
            State::Created => self.open()?,
            State::Stopped => return Err(PluginError::state("text after stop")),
        }
        if !event.is_final() {
            // A delta may be just a space: the deltas of an utterance add up to its final.
            if self.jsonl_deltas && !event.text().is_empty() {
                self.write_row(event)?;
            }
            return Ok(());
        }
        // An empty final (the interpreter said nothing) makes no row and no cue.
        if event.text().trim().is_empty() {
            return Ok(());
        }
        self.write_row(event)?;
        let mut cues = self.layout.cues(event.role(), event.text(), event.start_ms(), event.end_ms());
        let Some(last) = cues.pop() else { return Ok(()) };
        let next_start = cues.first().unwrap_or(&last).start_ms;
        if let Some(mut held) = self.held.take() {
            let limit = (held.role == last.role).then_some(next_start);
            held.extend(self.layout.min_cue_ms, limit);
            self.write_cue(&held)?;
        }
        // Cues of one final follow each other without a gap: only the last can be lengthened.
        for cue in &cues {
            self.write_cue(cue)?;
        }
        if last.end_ms - last.start_ms < self.layout.min_cue_ms {
            self.held = Some(last);
        } else {
            self.write_cue(&last)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), PluginError> {
        if self.state != State::Open {
            return Ok(());
        }
        self.release_held()?;
        for output in self.outputs() {
            output.flush()?;
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PluginError> {
        if self.state == State::Open {
            self.release_held()?;
            for output in self.outputs() {
                output.close()?;
            }
        }
        self.state = State::Stopped;
        Ok(())
    }

    // The host checks, before the run, that no other output shares these files.
    fn output_files(&self) -> Vec<OutputFile> {
        [("vtt", &self.vtt), ("srt", &self.srt), ("jsonl", &self.jsonl)]
            .into_iter()
            .filter_map(|(key, output)| output.as_ref().map(|o| OutputFile::new(key, &o.path)))
            .collect()
    }
}

impl Captions {
    /// Creates (or truncates) every output and writes the headers; continues the outputs this
    /// process already wrote (a restart).
    fn open(&mut self) -> Result<(), PluginError> {
        self.srt_number = 1;
        self.held = None;
        if let Some(vtt) = &mut self.vtt {
            vtt.open("WEBVTT\n\n", "\n\n")?;
        }
        if let Some(srt) = &mut self.srt
            && let Some(earlier) = srt.open("", "\n\n")?
        {
            // Cue text never holds `-->` (it becomes `->`): one per cue, in its timing line.
            self.srt_number = 1 + earlier.lines().filter(|l| l.contains(" --> ")).count() as u64;
        }
        if let Some(jsonl) = &mut self.jsonl {
            jsonl.open("", "\n")?;
        }
        self.state = State::Open;
        Ok(())
    }

    fn outputs(&mut self) -> impl Iterator<Item = &mut Output> {
        [&mut self.vtt, &mut self.srt, &mut self.jsonl].into_iter().flatten()
    }

    /// Writes the held cue, if any, with the full `min_cue_ms`: the next start is not known.
    fn release_held(&mut self) -> Result<(), PluginError> {
        if let Some(mut held) = self.held.take() {
            held.extend(self.layout.min_cue_ms, None);
            self.write_cue(&held)?;
        }
        Ok(())
    }

    fn write_cue(&mut self, cue: &Cue) -> Result<(), PluginError> {
        if let Some(vtt) = &mut self.vtt {
            vtt.write(&vtt_cue(cue))?;
        }
        if let Some(srt) = &mut self.srt {
            srt.write(&srt_cue(self.srt_number, cue))?;
            self.srt_number += 1;
        }
        Ok(())
    }

    fn write_row(&mut self, event: &TextEvent<'_>) -> Result<(), PluginError> {
        let Some(jsonl) = &mut self.jsonl else { return Ok(()) };
        let row = Row {
            utterance: event.utterance_id(),
            role: match event.role() {
                TextRole::Source => "source",
                TextRole::Translation => "translation",
            },
            language: event.language(),
            is_final: event.is_final(),
            start_ms: event.start_ms(),
            end_ms: event.end_ms(),
            text: event.text(),
        };
        let mut line = serde_json::to_string(&row).map_err(|e| PluginError::other(format!("jsonl: {e}")))?;
        line.push('\n');
        jsonl.write(&line)
    }
}

// A host that drops the sink without `stop` (after a failure elsewhere) still gets the held cue
// and the buffered ones on disk.
impl Drop for Captions {
    fn drop(&mut self) {
        if self.state == State::Open {
            let _ = self.flush();
        }
    }
}

// 4. The pieces: output files, cue layout and the three formats.

/// One output file: where it goes and, while open, its buffered writer.
struct Output {
    path: PathBuf,
    writer: Option<BufWriter<File>>,
}

/// The outputs this process has opened: a later `start` for one of them is a restart.
fn opened() -> &'static Mutex<HashSet<PathBuf>> {
    static OPENED: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    OPENED.get_or_init(Mutex::default)
}

impl Output {
    /// Creates the file with `header`; or, when this process already wrote it (the sink is
    /// being restarted), opens it to append, cut back to the end of its last whole piece
    /// (ending in `end`), and returns what it holds.
    fn open(&mut self, header: &str, end: &str) -> Result<Option<String>, PluginError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| PluginError::io(format!("cannot create directory {}: {e}", dir.display())))?;
        }
        let cannot = |e: std::io::Error| PluginError::io(format!("cannot create {}: {e}", self.path.display()));
        let again = !opened().lock().unwrap_or_else(|p| p.into_inner()).insert(self.path.clone());
        if again && let Ok(text) = std::fs::read(&self.path) {
            // What a failed write left half done goes; the header stays.
            let keep = text.windows(end.len()).rposition(|w| w == end.as_bytes()).map_or(0, |i| i + end.len());
            let keep = keep.max(header.len().min(text.len()));
            let file = OpenOptions::new().append(true).open(&self.path).map_err(cannot)?;
            file.set_len(keep as u64).map_err(cannot)?;
            self.writer = Some(BufWriter::new(file));
            return Ok(Some(String::from_utf8_lossy(&text[..keep]).into_owned()));
        }
        let file = File::create(&self.path).map_err(cannot)?;
        self.writer = Some(BufWriter::new(file));
        // An empty file is not valid WebVTT: the header goes to disk at once.
        self.write(header)?;
        self.flush()?;
        Ok(None)
    }

    /// Writes one whole piece (a header, a cue, a row) in one call: the buffer then only ever
    /// reaches the file at piece boundaries.
    fn write(&mut self, text: &str) -> Result<(), PluginError> {
        let Some(writer) = &mut self.writer else { return Ok(()) };
        writer
            .write_all(text.as_bytes())
            .map_err(|e| PluginError::io(format!("cannot write {}: {e}", self.path.display())))
    }

    fn flush(&mut self) -> Result<(), PluginError> {
        let Some(writer) = &mut self.writer else { return Ok(()) };
        writer.flush().map_err(|e| PluginError::io(format!("cannot write {}: {e}", self.path.display())))
    }

    /// Flushes, syncs to disk and closes. Only a regular file is synced: a device or a pipe
    /// (`/dev/null`, a FIFO read by another program) has nothing to sync and refuses to.
    fn close(&mut self) -> Result<(), PluginError> {
        self.flush()?;
        if let Some(writer) = self.writer.take() {
            let file = writer.get_ref();
            if file.metadata().is_ok_and(|m| m.is_file()) {
                file.sync_all().map_err(|e| PluginError::io(format!("cannot sync {}: {e}", self.path.display())))?;
            }
        }
        Ok(())
    }
}

/// One JSONL row; the field order is the column order users see.
#[derive(Serialize)]
struct Row<'a> {
    utterance: u64,
    role: &'static str,
    language: &'a str,
    #[serde(rename = "final")]
    is_final: bool,
    start_ms: u64,
    end_ms: u64,
    text: &'a str,
}

/// One caption: a time span and 1..=`max_lines` lines of text.
#[derive(Debug, Clone, PartialEq)]
struct Cue {
    role: TextRole,
    start_ms: u64,
    end_ms: u64,
    lines: Vec<String>,
}

impl Cue {
    /// Lengthens a cue shorter than `min_ms`, but not past `limit` (the next cue's start) when
    /// that is known. Never shortens, so the end never falls before the start.
    fn extend(&mut self, min_ms: u64, limit: Option<u64>) {
        let wanted = self.start_ms.saturating_add(min_ms);
        self.end_ms = self.end_ms.max(limit.map_or(wanted, |l| wanted.min(l)));
    }
}

/// How text is cut into cues and lines.
#[derive(Debug, Clone, Copy)]
struct Layout {
    max_chars: usize,
    max_lines: usize,
    max_cue_ms: u64,
    min_cue_ms: u64,
}

/// A piece of text that is never split: a word, or a line-long slice of a longer word (a URL,
/// or a sentence in a language written without spaces).
#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    text: &'a str,
    chars: usize,
    /// No space before it: it continues the previous token's word.
    glued: bool,
}

impl Token<'_> {
    fn gap(&self) -> usize {
        usize::from(!self.glued)
    }
}

impl Layout {
    /// The cues for one final. Line breaks and runs of spaces fold into single spaces; the text
    /// is cut at word boundaries into cues that fit `max_lines` × `max_chars` and last at most
    /// `max_cue_ms`, of similar length; the utterance's time is shared between them in
    /// proportion to their characters (spaces not counted).
    fn cues(&self, role: TextRole, text: &str, start_ms: u64, end_ms: u64) -> Vec<Cue> {
        let tokens = tokens(text, self.max_chars);
        let total: usize = tokens.iter().map(|t| t.chars).sum();
        let Some(longest) = tokens.iter().map(|t| t.chars).max() else { return Vec::new() };
        let duration = end_ms.saturating_sub(start_ms);
        // The most characters a cue may hold and still last at most `max_cue_ms`.
        let time_cap = if duration == 0 {
            usize::MAX
        } else {
            usize::try_from(u128::from(self.max_cue_ms) * total as u128 / u128::from(duration)).unwrap_or(usize::MAX)
        };
        let loose = time_cap.max(longest);
        let count = self.split(&tokens, loose).len();
        // Balance: the smallest cap that needs no more cues, so the cues come out of similar
        // length instead of full ones and a short remainder. Fewer cues never need a smaller
        // cap, so a binary search finds it.
        let (mut lo, mut hi) = (longest, loose);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.split(&tokens, mid).len() <= count {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        let at = |chars: usize| start_ms + (u128::from(duration) * chars as u128 / total as u128) as u64;
        let mut done = 0;
        self.split(&tokens, lo)
            .into_iter()
            .map(|range| {
                let cue_start = at(done);
                done += tokens[range.clone()].iter().map(|t| t.chars).sum::<usize>();
                // A single word can outlast `max_cue_ms`; it leaves the screen in time anyway.
                let cue_end = at(done).min(cue_start.saturating_add(self.max_cue_ms));
                Cue { role, start_ms: cue_start, end_ms: cue_end, lines: self.lines(&tokens[range]) }
            })
            .collect()
    }

    /// Cuts `tokens` greedily into ranges of at most `max_lines` lines and `cap` characters.
    fn split(&self, tokens: &[Token<'_>], cap: usize) -> Vec<Range<usize>> {
        let mut ranges = Vec::new();
        let (mut start, mut chars, mut lines, mut line_len) = (0, 0, 0, 0);
        for (i, t) in tokens.iter().enumerate() {
            let (more_lines, more_len) = if i == start {
                (1, t.chars)
            } else if line_len + t.gap() + t.chars <= self.max_chars {
                (lines, line_len + t.gap() + t.chars)
            } else {
                (lines + 1, t.chars)
            };
            if i > start && (more_lines > self.max_lines || chars + t.chars > cap) {
                ranges.push(start..i);
                (start, chars, lines, line_len) = (i, t.chars, 1, t.chars);
            } else {
                (chars, lines, line_len) = (chars + t.chars, more_lines, more_len);
            }
        }
        ranges.push(start..tokens.len());
        ranges
    }

    /// The lines of one cue: as few as at `max_chars`, but as even as possible (the narrowest
    /// width that needs no more lines).
    fn lines(&self, tokens: &[Token<'_>]) -> Vec<String> {
        let count = wrap(tokens, self.max_chars).len();
        let (mut lo, mut hi) = (tokens.iter().map(|t| t.chars).max().unwrap_or(0), self.max_chars);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if wrap(tokens, mid).len() <= count {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        wrap(tokens, lo)
    }
}

/// Splits text into words at any whitespace (so line breaks fold into spaces) and cuts words
/// longer than a line into line-long slices.
fn tokens(text: &str, max_chars: usize) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    for word in text.split_whitespace() {
        let mut rest = word;
        let mut glued = false;
        while !rest.is_empty() {
            let cut = rest.char_indices().nth(max_chars).map_or(rest.len(), |(i, _)| i);
            let (piece, tail) = rest.split_at(cut);
            tokens.push(Token { text: piece, chars: piece.chars().count(), glued });
            (rest, glued) = (tail, true);
        }
    }
    tokens
}

/// Greedy line wrapping at `width` characters.
fn wrap(tokens: &[Token<'_>], width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut len = 0;
    for t in tokens {
        match lines.last_mut() {
            Some(line) if len + t.gap() + t.chars <= width => {
                if !t.glued {
                    line.push(' ');
                }
                line.push_str(t.text);
                len += t.gap() + t.chars;
            }
            _ => {
                lines.push(t.text.to_string());
                len = t.chars;
            }
        }
    }
    lines
}

/// `HH:MM:SS.mmm` (WebVTT, `sep = '.'`) or `HH:MM:SS,mmm` (SRT, `sep = ','`); hours grow past
/// two digits when they must.
fn timestamp(ms: u64, sep: char) -> String {
    let (h, m, s, ms) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1_000 % 60, ms % 1_000);
    format!("{h:02}:{m:02}:{s:02}{sep}{ms:03}")
}

/// A WebVTT cue block. `&`, `<` and `>` are escaped, which also keeps `-->` out of the text.
fn vtt_cue(cue: &Cue) -> String {
    let text: Vec<String> =
        cue.lines.iter().map(|l| l.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")).collect();
    format!("{} --> {}\n{}\n\n", timestamp(cue.start_ms, '.'), timestamp(cue.end_ms, '.'), text.join("\n"))
}

/// An SRT cue block. SRT has no escapes; only `-->`, which parsers take for a timing line, is
/// changed (to `->`).
fn srt_cue(number: u64, cue: &Cue) -> String {
    let text: Vec<String> = cue.lines.iter().map(|l| l.replace("-->", "->")).collect();
    format!("{number}\n{} --> {}\n{}\n\n", timestamp(cue.start_ms, ','), timestamp(cue.end_ms, ','), text.join("\n"))
}

// 5. The export line.
tolk_plugin_api::export_plugins! {
    sinks: [Captions],
}

// 6. Tests: the conformance kit, golden files, and every config error.
#[cfg(test)]
mod tests {
    use std::path::Path;

    use tolk_plugin_api::testing::{SinkHarness, check_sink, new_sink};

    use super::*;

    /// A config writing all three files into `dir`, plus `extra` lines.
    fn config_in(dir: &Path, extra: &str) -> String {
        let p = |name: &str| dir.join(name).display().to_string();
        format!("vtt = '{}'\nsrt = '{}'\njsonl = '{}'\n{extra}", p("c.vtt"), p("c.srt"), p("c.jsonl"))
    }

    fn read(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).unwrap()
    }

    fn tr<'a>(is_final: bool, id: u64, text: &'a str, start_ms: u64, end_ms: u64) -> TextEvent<'a> {
        TextEvent::new(TextRole::Translation, is_final, id, "es", text, start_ms, end_ms)
    }

    fn src<'a>(is_final: bool, id: u64, text: &'a str, start_ms: u64, end_ms: u64) -> TextEvent<'a> {
        TextEvent::new(TextRole::Source, is_final, id, "en", text, start_ms, end_ms)
    }

    fn layout() -> Layout {
        Layout { max_chars: 42, max_lines: 2, max_cue_ms: 6_000, min_cue_ms: 800 }
    }

    #[test]
    fn writes_to_a_device_and_stops_cleanly() {
        // `jsonl = "/dev/null"` (the plugin_boundary bench does it): nothing to sync, no error.
        let mut h = SinkHarness::start(new_sink::<Captions>("jsonl = '/dev/null'").unwrap()).unwrap();
        h.text(tr(true, 1, "Hola.", 0, 1_000)).unwrap();
        h.flush().unwrap();
        h.stop().unwrap();
    }

    #[test]
    fn passes_the_conformance_kit() {
        let dir = tempfile::tempdir().unwrap();
        let report = check_sink::<Captions>(&config_in(&dir.path().join("out"), "role = \"both\"\n"));
        assert!(report.passed(), "{report}");
        assert!(read(&dir.path().join("out"), "c.vtt").starts_with("WEBVTT\n\n"));
    }

    /// A realistic stream: deltas, a source transcript the default role ignores, a long final
    /// split into cues, markup to escape, an empty final, a short final held and lengthened up
    /// to the next cue, and timestamps past one hour.
    fn golden_events() -> Vec<TextEvent<'static>> {
        vec![
            src(false, 1, "Good morning ", 0, 600),
            tr(false, 1, "Buenos ", 300, 700),
            tr(false, 1, "días a todos.", 300, 1_900),
            src(true, 1, "Good morning, everyone.", 0, 1_500),
            tr(true, 1, "Buenos días a todos.", 300, 1_900),
            tr(
                true,
                2,
                "Hoy vamos a hablar de aprendizaje automático:\ncómo entrenamos los modelos, \
                 cuánto cuestan y qué significa todo esto para los equipos que los despliegan.",
                2_000,
                14_000,
            ),
            tr(true, 3, "Usad <b> & \"-->\" con cuidado.", 14_500, 17_000),
            tr(true, 4, "  ", 17_000, 17_100),
            tr(true, 5, "Gracias.", 3_723_400, 3_723_700),
            tr(true, 6, "Bienvenidos.", 3_724_000, 3_725_200),
        ]
    }

    const GOLDEN_VTT: &str = "\
WEBVTT

00:00:00.300 --> 00:00:01.900
Buenos días a todos.

00:00:02.000 --> 00:00:06.000
Hoy vamos a hablar de
aprendizaje automático: cómo

00:00:06.000 --> 00:00:10.372
entrenamos los modelos, cuánto
cuestan y qué significa

00:00:10.372 --> 00:00:14.000
todo esto para los equipos
que los despliegan.

00:00:14.500 --> 00:00:17.000
Usad &lt;b&gt; &amp; \"--&gt;\" con cuidado.

01:02:03.400 --> 01:02:04.000
Gracias.

01:02:04.000 --> 01:02:05.200
Bienvenidos.

";

    const GOLDEN_SRT: &str = "\
1
00:00:00,300 --> 00:00:01,900
Buenos días a todos.

2
00:00:02,000 --> 00:00:06,000
Hoy vamos a hablar de
aprendizaje automático: cómo

3
00:00:06,000 --> 00:00:10,372
entrenamos los modelos, cuánto
cuestan y qué significa

4
00:00:10,372 --> 00:00:14,000
todo esto para los equipos
que los despliegan.

5
00:00:14,500 --> 00:00:17,000
Usad <b> & \"->\" con cuidado.

6
01:02:03,400 --> 01:02:04,000
Gracias.

7
01:02:04,000 --> 01:02:05,200
Bienvenidos.

";

    const GOLDEN_JSONL: &str = r#"{"utterance":1,"role":"translation","language":"es","final":false,"start_ms":300,"end_ms":700,"text":"Buenos "}
{"utterance":1,"role":"translation","language":"es","final":false,"start_ms":300,"end_ms":1900,"text":"días a todos."}
{"utterance":1,"role":"translation","language":"es","final":true,"start_ms":300,"end_ms":1900,"text":"Buenos días a todos."}
{"utterance":2,"role":"translation","language":"es","final":true,"start_ms":2000,"end_ms":14000,"text":"Hoy vamos a hablar de aprendizaje automático:\ncómo entrenamos los modelos, cuánto cuestan y qué significa todo esto para los equipos que los despliegan."}
{"utterance":3,"role":"translation","language":"es","final":true,"start_ms":14500,"end_ms":17000,"text":"Usad <b> & \"-->\" con cuidado."}
{"utterance":5,"role":"translation","language":"es","final":true,"start_ms":3723400,"end_ms":3723700,"text":"Gracias."}
{"utterance":6,"role":"translation","language":"es","final":true,"start_ms":3724000,"end_ms":3725200,"text":"Bienvenidos."}
"#;

    #[test]
    fn golden_vtt_srt_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path(), "jsonl_deltas = true\n");
        let mut h = SinkHarness::start(new_sink::<Captions>(&config).unwrap()).unwrap();
        for e in golden_events() {
            h.text(e).unwrap();
        }
        h.stop().unwrap();
        assert_eq!(read(dir.path(), "c.vtt"), GOLDEN_VTT);
        assert_eq!(read(dir.path(), "c.srt"), GOLDEN_SRT);
        assert_eq!(read(dir.path(), "c.jsonl"), GOLDEN_JSONL);
    }

    /// Checks the shape of a WebVTT or SRT file: header, then blocks of (number,) timing line
    /// with start <= end, and 1..=2 non-empty text lines without `-->`; ends at a block end.
    fn assert_valid_cues(text: &str, srt: bool) -> usize {
        let body = if srt { text } else { text.strip_prefix("WEBVTT\n\n").expect("WEBVTT header") };
        assert!(body.is_empty() || body.ends_with("\n\n"), "ends mid-cue: {text:?}");
        let mut count = 0;
        for block in body.split_terminator("\n\n") {
            let mut lines = block.lines();
            if srt {
                count += 1;
                assert_eq!(lines.next().unwrap(), count.to_string());
            } else {
                count += 1;
            }
            let (start, end) = lines.next().unwrap().split_once(" --> ").expect("timing line");
            assert!(start <= end, "{start} > {end}");
            let text: Vec<&str> = lines.collect();
            assert!((1..=2).contains(&text.len()), "{block:?}");
            assert!(text.iter().all(|l| !l.trim().is_empty() && !l.contains("-->")), "{block:?}");
        }
        count
    }

    fn assert_valid_jsonl(text: &str) -> usize {
        assert!(text.is_empty() || text.ends_with('\n'));
        for line in text.lines() {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(row["start_ms"].as_u64().unwrap() <= row["end_ms"].as_u64().unwrap());
        }
        text.lines().count()
    }

    #[test]
    fn files_are_valid_after_flush_without_stop() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = SinkHarness::start(new_sink::<Captions>(&config_in(dir.path(), "")).unwrap()).unwrap();
        for e in golden_events().into_iter().take(9) {
            h.text(e).unwrap();
        }
        h.flush().unwrap();
        // Still running: every cue so far is on disk, the held short one included.
        let vtt = read(dir.path(), "c.vtt");
        assert_eq!(assert_valid_cues(&vtt, false), 6);
        assert!(vtt.ends_with("01:02:03.400 --> 01:02:04.200\nGracias.\n\n"), "{vtt}");
        assert_eq!(assert_valid_cues(&read(dir.path(), "c.srt"), true), 6);
        assert_eq!(assert_valid_jsonl(&read(dir.path(), "c.jsonl")), 4);
        // One more short final, then the host drops the sink without `stop`.
        h.text(tr(true, 6, "Bienvenidos.", 3_724_000, 3_724_100)).unwrap();
        drop(h);
        let vtt = read(dir.path(), "c.vtt");
        assert_eq!(assert_valid_cues(&vtt, false), 7);
        assert!(vtt.ends_with("01:02:04.000 --> 01:02:04.800\nBienvenidos.\n\n"), "{vtt}");
        assert_eq!(assert_valid_cues(&read(dir.path(), "c.srt"), true), 7);
        assert_eq!(assert_valid_jsonl(&read(dir.path(), "c.jsonl")), 5);
    }

    #[test]
    fn new_touches_no_file_and_start_creates_them() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out").join("es");
        let sink = new_sink::<Captions>(&config_in(&out, "")).unwrap();
        assert!(!dir.path().join("out").exists());
        let h = SinkHarness::start(sink).unwrap();
        assert_eq!(read(&out, "c.vtt"), "WEBVTT\n\n");
        h.stop().unwrap();
        assert_eq!(read(&out, "c.vtt"), "WEBVTT\n\n");
        assert_eq!(read(&out, "c.srt"), "");
        assert_eq!(read(&out, "c.jsonl"), "");
        // Stopping an instance that never started writes nothing either.
        let other = dir.path().join("never");
        new_sink::<Captions>(&config_in(&other, "")).unwrap().stop().unwrap();
        assert!(!other.exists());
    }

    #[test]
    fn the_example_config_is_accepted() {
        // `new` only resolves and checks: the example's relative files are not created.
        new_sink::<Captions>(Captions::EXAMPLE_CONFIG).unwrap().stop().unwrap();
        assert!(!Path::new("conformance-captions.vtt").exists());
    }

    #[test]
    fn a_restart_appends_after_the_last_whole_cue() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = SinkHarness::start(new_sink::<Captions>(&config_in(dir.path(), "")).unwrap()).unwrap();
        h.text(tr(true, 1, "Uno.", 0, 2_000)).unwrap();
        h.stop().unwrap();
        // A failed write left half a cue and half a row behind.
        for (name, half) in [("c.vtt", "00:00:03.000 --> 00"), ("c.srt", "2\n00:00:03"), ("c.jsonl", "{\"utter")] {
            std::fs::OpenOptions::new()
                .append(true)
                .open(dir.path().join(name))
                .unwrap()
                .write_all(half.as_bytes())
                .unwrap();
        }
        // The restarted instance (same files, same process) continues them.
        let mut h = SinkHarness::start(new_sink::<Captions>(&config_in(dir.path(), "")).unwrap()).unwrap();
        h.text(tr(true, 2, "Dos.", 3_000, 5_000)).unwrap();
        h.stop().unwrap();
        assert_eq!(
            read(dir.path(), "c.vtt"),
            "WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nUno.\n\n00:00:03.000 --> 00:00:05.000\nDos.\n\n"
        );
        assert_eq!(
            read(dir.path(), "c.srt"),
            "1\n00:00:00,000 --> 00:00:02,000\nUno.\n\n2\n00:00:03,000 --> 00:00:05,000\nDos.\n\n"
        );
        let rows: Vec<String> = read(dir.path(), "c.jsonl").lines().map(String::from).collect();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(rows[0].contains("\"Uno.\"") && rows[1].contains("\"Dos.\""), "{rows:?}");
    }

    #[test]
    fn role_source_and_both() {
        let dir = tempfile::tempdir().unwrap();
        let events = || {
            [
                src(false, 1, "Thank ", 0, 300),
                src(true, 1, "Thank you.", 0, 500),
                tr(false, 1, "Gracias", 200, 700),
                tr(true, 1, "Gracias.", 200, 900),
                src(true, 2, "Next slide, please.", 5_000, 6_500),
                tr(true, 2, "Siguiente diapositiva, por favor.", 5_100, 7_000),
            ]
        };
        let run = |extra: &str| {
            // Each run stands for a new process: not a restart, which would append.
            opened().lock().unwrap().clear();
            let mut h = SinkHarness::start(new_sink::<Captions>(&config_in(dir.path(), extra)).unwrap()).unwrap();
            for e in events() {
                h.text(e).unwrap();
            }
            h.stop().unwrap();
            (read(dir.path(), "c.vtt"), read(dir.path(), "c.jsonl"))
        };

        let (vtt, jsonl) = run("role = \"source\"\n");
        assert_eq!(
            vtt,
            "WEBVTT\n\n\
             00:00:00.000 --> 00:00:00.800\nThank you.\n\n\
             00:00:05.000 --> 00:00:06.500\nNext slide, please.\n\n"
        );
        // No deltas without `jsonl_deltas`.
        assert_eq!(
            jsonl,
            "{\"utterance\":1,\"role\":\"source\",\"language\":\"en\",\"final\":true,\"start_ms\":0,\"end_ms\":500,\"text\":\"Thank you.\"}\n\
             {\"utterance\":2,\"role\":\"source\",\"language\":\"en\",\"final\":true,\"start_ms\":5000,\"end_ms\":6500,\"text\":\"Next slide, please.\"}\n"
        );

        // Both roles share the files in arrival order; a short cue is lengthened by min_cue_ms
        // (the next cue, of the other role, does not bound it).
        let (vtt, jsonl) = run("role = \"both\"\njsonl_deltas = true\n");
        assert_eq!(
            vtt,
            "WEBVTT\n\n\
             00:00:00.000 --> 00:00:00.800\nThank you.\n\n\
             00:00:00.200 --> 00:00:01.000\nGracias.\n\n\
             00:00:05.000 --> 00:00:06.500\nNext slide, please.\n\n\
             00:00:05.100 --> 00:00:07.000\nSiguiente diapositiva, por favor.\n\n"
        );
        let roles: Vec<String> = jsonl
            .lines()
            .map(|l| {
                let row: serde_json::Value = serde_json::from_str(l).unwrap();
                format!("{}/{}", row["role"].as_str().unwrap(), row["final"])
            })
            .collect();
        assert_eq!(
            roles,
            ["source/false", "source/true", "translation/false", "translation/true", "source/true", "translation/true"]
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let cases = [
            (String::new(), "vtt: set at least one of vtt, srt, jsonl".to_string()),
            ("role = \"both\"".into(), "vtt: set at least one of vtt, srt, jsonl".into()),
            ("srt = \"\"".into(), "srt: path is empty".into()),
            (format!("vtt = '{d}'"), format!("vtt: {d} is a directory")),
            (format!("vtt = '{d}/a.txt'\njsonl = '{d}/a.txt'"), "jsonl: same file as vtt".into()),
            (
                format!("vtt = '{d}/a'\nmax_chars_per_line = 5"),
                "max_chars_per_line: must be at least 10 (got 5)".into(),
            ),
            (format!("vtt = '{d}/a'\nmax_lines = 0"), "max_lines: must be at least 1 (got 0)".into()),
            (format!("vtt = '{d}/a'\nmax_cue_ms = 500"), "max_cue_ms: must be at least 1000 (got 500)".into()),
            (format!("vtt = '{d}/a'\nmin_cue_ms = 7000"), "min_cue_ms: 7000 is longer than max_cue_ms (6000)".into()),
            (
                format!("vtt = '{d}/a'\nrole = \"all\""),
                "role: unknown variant `all`, expected one of `translation`, `source`, `both`".into(),
            ),
            (format!("vtt = '{d}/a'\nmax_lines = -1"), "max_lines: invalid value: integer `-1`, expected usize".into()),
            ("vtt = 3".into(), "vtt: invalid type: integer `3`, expected path string".into()),
            (
                format!("vtt = '{d}/a'\nlines = 2"),
                "lines: unknown key (expected one of: vtt, srt, jsonl, role, max_chars_per_line, max_lines, \
                 max_cue_ms, min_cue_ms, jsonl_deltas)"
                    .into(),
            ),
        ];
        for (config, want) in cases {
            let err = new_sink::<Captions>(&config).err().unwrap_or_else(|| panic!("accepted: {config}"));
            assert_eq!(err.message(), want, "{config}");
        }
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "a failed config wrote something");
    }

    #[test]
    fn long_finals_split_by_length_and_by_time() {
        let l = layout();
        // 60 words in 3 s: cut by length into cues of at most 2 lines of 42.
        let words = vec!["palabra"; 60].join(" ");
        let cues = l.cues(TextRole::Translation, &words, 0, 3_000);
        assert_eq!(cues.len(), 6);
        assert!(cues.iter().all(|c| c.lines.len() <= 2 && c.lines.iter().all(|x| x.chars().count() <= 42)));
        assert_eq!((cues[0].start_ms, cues[5].end_ms), (0, 3_000));
        assert!(cues.windows(2).all(|w| w[0].end_ms == w[1].start_ms));
        // A short text spoken slowly: cut by time, so no cue lasts over 6 s.
        let cues = l.cues(TextRole::Translation, "uno dos tres cuatro cinco seis", 10_000, 30_000);
        assert!(cues.iter().all(|c| c.end_ms - c.start_ms <= 6_000), "{cues:?}");
        assert_eq!(
            cues.iter().map(|c| c.lines.join(" ")).collect::<Vec<_>>(),
            ["uno dos", "tres", "cuatro", "cinco", "seis"]
        );
        assert_eq!((cues[0].start_ms, cues[0].end_ms, cues[4].end_ms), (10_000, 14_800, 30_000));
        // One word cannot be split: it is cut short instead.
        let cues = l.cues(TextRole::Translation, "Sí.", 0, 20_000);
        assert_eq!((cues[0].start_ms, cues[0].end_ms), (0, 6_000));
        // No time at all: cues of zero length, never ending before they start.
        let cues = l.cues(TextRole::Translation, &words, 5_000, 5_000);
        assert!(cues.iter().all(|c| c.start_ms == 5_000 && c.end_ms == 5_000));
        // Absurd times do not overflow.
        let cues = l.cues(TextRole::Translation, &words, u64::MAX - 10, u64::MAX);
        assert!(cues.iter().all(|c| c.start_ms <= c.end_ms));
        let cues = l.cues(TextRole::Translation, &words, 0, u64::MAX);
        assert!(cues.iter().all(|c| c.start_ms <= c.end_ms && c.end_ms - c.start_ms <= 6_000));
    }

    #[test]
    fn words_longer_than_a_line_and_unspaced_scripts_are_cut() {
        let l = Layout { max_chars: 16, ..layout() };
        let cues = l.cues(TextRole::Translation, "我们今天要讨论机器学习以及它对开发团队意味着什么。", 0, 4_000);
        let lines: Vec<String> = cues.iter().flat_map(|c| c.lines.clone()).collect();
        assert_eq!(lines, ["我们今天要讨论机器学习以及它对开", "发团队意味着什么。"]);
        let cues = l.cues(TextRole::Translation, "see https://example.com/a/very/long/path now", 0, 4_000);
        let lines: Vec<Vec<String>> = cues.into_iter().map(|c| c.lines).collect();
        assert_eq!(lines, [["see", "https://example."], ["com/a/very/long/", "path now"]]);
    }

    #[test]
    fn lines_are_balanced() {
        let cues = layout().cues(
            TextRole::Translation,
            "Esta frase ocupa dos líneas de longitud parecida en pantalla.",
            0,
            3_000,
        );
        assert_eq!(cues[0].lines, ["Esta frase ocupa dos líneas de", "longitud parecida en pantalla."]);
    }

    #[test]
    fn short_cues_are_lengthened_up_to_the_next_cue() {
        let mut cue = Cue { role: TextRole::Translation, start_ms: 1_000, end_ms: 1_200, lines: vec!["Sí.".into()] };
        let mut a = cue.clone();
        a.extend(800, None);
        assert_eq!(a.end_ms, 1_800);
        let mut b = cue.clone();
        b.extend(800, Some(1_500));
        assert_eq!(b.end_ms, 1_500);
        // The next cue starts before this one ends (overlapping speech): never shortened.
        cue.extend(800, Some(900));
        assert_eq!(cue.end_ms, 1_200);
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(0, '.'), "00:00:00.000");
        assert_eq!(timestamp(3_723_456, ','), "01:02:03,456");
        assert_eq!(timestamp(360_000_000 + 59_999, '.'), "100:00:59.999");
    }
}
