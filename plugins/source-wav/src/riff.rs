//! The RIFF/WAVE header reader: walks the chunks of a WAV file and says where its samples are
//! and how they are stored, or what is wrong with the file, in words.
//!
//! It follows what the RIFF and WAVE rules allow, which is more than hound reads:
//!
//! - **Chunks of odd length are followed by a pad byte** that their size does not count. A
//!   writer that forgot the pad is tolerated too: when the byte after the pad is no chunk id
//!   but the pad byte itself starts one, the walk goes on from there.
//! - **Streamed files** (written to a pipe, or by a recorder that never came back to fix the
//!   header) carry `0xFFFFFFFF` or `0` as the RIFF and data sizes: the data then runs to the end
//!   of the file. The RIFF size is never needed and never trusted.
//! - **A file has one data chunk.** A second one is refused rather than skipped in silence; so
//!   is a file whose data chunk is empty or missing (a header with no audio).
//!
//! The reader is generic over `Read + Seek` so the fuzz tests run it on bytes in memory: it
//! must never panic, whatever the bytes.

use std::io::{self, Read, Seek, SeekFrom};

/// What the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// The fmt chunk's format tag (the sub-format's for `WAVE_FORMAT_EXTENSIBLE`).
    pub tag: u16,
    pub channels: u16,
    pub sample_rate: u32,
    /// Valid bits per sample.
    pub bits: u16,
    /// Bytes per sample in the data chunk (block align / channels).
    pub container: u16,
    /// Byte offset of the first sample.
    pub data_start: u64,
    /// Length of the audio in bytes, a whole number of frames; `None` for a streamed file,
    /// whose data runs to the end of the file.
    pub data_len: Option<u64>,
}

/// Why a file is refused: the words after `path: FILE` (`is not a WAV file: …`, `has no
/// audio: …`), or a read error.
#[derive(Debug)]
pub(crate) enum HeaderError {
    /// The file is not a WAV file we can read; the text says why.
    Invalid(String),
    /// Reading failed.
    Io(io::Error),
}

impl From<io::Error> for HeaderError {
    fn from(e: io::Error) -> Self {
        HeaderError::Io(e)
    }
}

fn invalid(why: impl Into<String>) -> HeaderError {
    HeaderError::Invalid(why.into())
}

/// The size value that means "unknown, to the end of the file".
const STREAMED: u32 = 0xFFFF_FFFF;

/// Reads `buf.len()` bytes; `Ok(false)` when the file ends first.
fn read_exact_or_eof(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// A chunk header at `pos`: (id, size), or `None` when fewer than 8 bytes are left.
fn chunk_at<R: Read + Seek>(r: &mut R, pos: u64) -> io::Result<Option<([u8; 4], u32)>> {
    r.seek(SeekFrom::Start(pos))?;
    let mut h = [0; 8];
    if !read_exact_or_eof(r, &mut h)? {
        return Ok(None);
    }
    Ok(Some(([h[0], h[1], h[2], h[3]], u32::from_le_bytes([h[4], h[5], h[6], h[7]]))))
}

/// Chunk ids are four printable ASCII characters (`fmt `, `LIST`, `id3 `).
fn is_chunk_id(id: &[u8; 4]) -> bool {
    id.iter().all(|b| (0x20..=0x7e).contains(b))
}

/// Where the chunk after the one at `pos` with `size` bytes starts: after the pad byte of an
/// odd-sized chunk, unless the file forgot the pad (then the unpadded position holds a chunk
/// id and the padded one does not).
fn next_chunk<R: Read + Seek>(r: &mut R, pos: u64, size: u32) -> io::Result<u64> {
    let unpadded = pos + 8 + u64::from(size);
    if size & 1 == 0 {
        return Ok(unpadded);
    }
    let padded = unpadded + 1;
    let id_at =
        |r: &mut R, at: u64| -> io::Result<bool> { Ok(chunk_at(r, at)?.is_some_and(|(id, _)| is_chunk_id(&id))) };
    if !id_at(r, padded)? && id_at(r, unpadded)? { Ok(unpadded) } else { Ok(padded) }
}

/// True when the bytes from `pos` to `len` are whole chunks with plausible ids, so an empty
/// data chunk followed by them is really empty rather than streamed.
fn only_chunks_follow<R: Read + Seek>(r: &mut R, mut pos: u64, len: u64) -> io::Result<bool> {
    for _ in 0..64 {
        if pos >= len {
            return Ok(pos == len || pos == len + 1);
        }
        match chunk_at(r, pos)? {
            Some((id, size)) if is_chunk_id(&id) && pos + 8 + u64::from(size) <= len => {
                pos = next_chunk(r, pos, size)?;
            }
            _ => return Ok(false),
        }
    }
    Ok(false)
}

/// Reads the header of a WAV file of `len` bytes.
pub(crate) fn read_header<R: Read + Seek>(r: &mut R, len: u64) -> Result<Header, HeaderError> {
    r.seek(SeekFrom::Start(0))?;
    let mut head = [0; 12];
    if !read_exact_or_eof(r, &mut head)? {
        return Err(if head.starts_with(b"RIFF") || len < 4 {
            invalid("is not a WAV file: it ends before the audio data")
        } else {
            invalid("is not a WAV file: no RIFF tag found")
        });
    }
    match &head[0..4] {
        b"RIFF" => {}
        b"RF64" => return Err(invalid("is an RF64 file, which tolk.wav does not read (convert it to WAV)")),
        _ => return Err(invalid("is not a WAV file: no RIFF tag found")),
    }
    if &head[8..12] != b"WAVE" {
        return Err(invalid("is not a WAV file: no WAVE tag found"));
    }
    let mut fmt: Option<(u16, u16, u16, u16)> = None; // tag, channels, bits, block align
    let mut rate = 0;
    let mut pos = 12u64;
    loop {
        let Some((id, size)) = chunk_at(r, pos)? else {
            return Err(match fmt {
                None => invalid("is not a WAV file: it ends before the audio data"),
                Some(_) => invalid("has no audio: it has no data chunk"),
            });
        };
        match &id {
            b"fmt " => {
                if size < 16 {
                    return Err(invalid(format!("is not a WAV file: its fmt chunk has {size} bytes (at least 16)")));
                }
                let mut body = [0; 40];
                let n = (size as usize).min(40);
                if !read_exact_or_eof(r, &mut body[..n])? {
                    return Err(invalid("is not a WAV file: it ends before the audio data"));
                }
                let word = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
                let (mut tag, channels, align, mut bits) = (word(0), word(2), word(12), word(14));
                rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
                if tag == 0xfffe && n >= 40 {
                    // WAVE_FORMAT_EXTENSIBLE: the sub-format GUID starts with the real tag.
                    let valid = word(18);
                    if valid > 0 {
                        bits = valid;
                    }
                    tag = word(24);
                }
                fmt = Some((tag, channels, bits, align));
            }
            b"data" => {
                let Some((tag, channels, bits, align)) = fmt else {
                    return Err(invalid("is not a WAV file: its data chunk comes before the fmt chunk"));
                };
                if channels == 0 || align == 0 || align % channels != 0 {
                    return Err(invalid(format!(
                        "is not a WAV file: its fmt chunk gives a block size of {align} bytes for {channels} channels"
                    )));
                }
                let data_start = pos + 8;
                let frame = u64::from(align);
                let rest = len.saturating_sub(data_start);
                let streamed = size == STREAMED || (size == 0 && rest > 0 && !only_chunks_follow(r, data_start, len)?);
                if streamed {
                    if rest < frame {
                        return Err(invalid("has no audio: its data chunk is empty"));
                    }
                } else {
                    if size == 0 {
                        return Err(invalid("has no audio: its data chunk is empty"));
                    }
                    if u64::from(size) < frame {
                        return Err(invalid(format!(
                            "has no audio: its data chunk has {size} bytes, less than one frame"
                        )));
                    }
                    // One data chunk per file: look at the chunks after it.
                    let mut at = next_chunk(r, pos, size)?;
                    for _ in 0..1024 {
                        match chunk_at(r, at)? {
                            Some((id, _)) if &id == b"data" => {
                                return Err(invalid(format!(
                                    "has a second data chunk (at byte {at}; the first is at byte {pos}): a WAV file has one, and tolk.wav would play only the first"
                                )));
                            }
                            Some((id, size)) if is_chunk_id(&id) => at = next_chunk(r, at, size)?,
                            _ => break,
                        }
                    }
                }
                r.seek(SeekFrom::Start(data_start))?;
                return Ok(Header {
                    tag,
                    channels,
                    sample_rate: rate,
                    bits,
                    container: align / channels,
                    data_start,
                    data_len: (!streamed).then(|| u64::from(size) - u64::from(size) % frame),
                });
            }
            _ => {}
        }
        pos = next_chunk(r, pos, size)?;
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    /// A 16-bit mono fmt chunk body at `rate`.
    fn fmt16(rate: u32) -> Vec<u8> {
        let mut v = vec![];
        v.extend(1u16.to_le_bytes());
        v.extend(1u16.to_le_bytes());
        v.extend(rate.to_le_bytes());
        v.extend((rate * 2).to_le_bytes());
        v.extend(2u16.to_le_bytes());
        v.extend(16u16.to_le_bytes());
        v
    }

    fn chunk(id: &[u8; 4], size: u32, body: &[u8]) -> Vec<u8> {
        let mut v = id.to_vec();
        v.extend(size.to_le_bytes());
        v.extend(body);
        v
    }

    fn riff(size: u32, chunks: &[Vec<u8>]) -> Vec<u8> {
        let mut v = b"RIFF".to_vec();
        v.extend(size.to_le_bytes());
        v.extend(b"WAVE");
        for c in chunks {
            v.extend(c);
        }
        v
    }

    fn read(bytes: &[u8]) -> Result<Header, String> {
        read_header(&mut Cursor::new(bytes), bytes.len() as u64).map_err(|e| match e {
            HeaderError::Invalid(s) => s,
            HeaderError::Io(e) => format!("io: {e}"),
        })
    }

    #[test]
    fn an_odd_chunk_is_padded_and_an_unpadded_one_tolerated() {
        let data = chunk(b"data", 4, &[1, 0, 2, 0]);
        let padded = riff(0, &[chunk(b"bext", 3, &[7, 7, 7, 0]), chunk(b"fmt ", 16, &fmt16(8_000)), data.clone()]);
        let h = read(&padded).unwrap();
        assert_eq!((h.data_start, h.data_len), (12 + 12 + 24 + 8, Some(4)));
        let unpadded = riff(0, &[chunk(b"bext", 3, &[7, 7, 7]), chunk(b"fmt ", 16, &fmt16(8_000)), data]);
        assert_eq!(read(&unpadded).unwrap().data_len, Some(4));
    }

    #[test]
    fn streamed_sizes_run_to_the_end() {
        for size in [0, STREAMED] {
            let bytes = riff(size, &[chunk(b"fmt ", 16, &fmt16(8_000)), chunk(b"data", size, &[1, 0, 2, 0, 3])]);
            let h = read(&bytes).unwrap();
            assert_eq!(h.data_len, None, "{size:#x}");
            assert_eq!(h.data_start, 44);
        }
    }

    #[test]
    fn an_empty_data_chunk_followed_by_chunks_is_empty_not_streamed() {
        let bytes = riff(0, &[chunk(b"fmt ", 16, &fmt16(8_000)), chunk(b"data", 0, &[]), chunk(b"LIST", 4, b"INFO")]);
        assert_eq!(read(&bytes).unwrap_err(), "has no audio: its data chunk is empty");
    }

    #[test]
    fn what_is_wrong_is_said() {
        let fmt = chunk(b"fmt ", 16, &fmt16(8_000));
        let data = chunk(b"data", 2, &[1, 0]);
        assert_eq!(read(&riff(36, std::slice::from_ref(&fmt))).unwrap_err(), "has no audio: it has no data chunk");
        assert_eq!(
            read(&riff(36, &[fmt.clone(), chunk(b"data", 0, &[])])).unwrap_err(),
            "has no audio: its data chunk is empty"
        );
        assert_eq!(
            read(&riff(0, &[data.clone(), fmt.clone()])).unwrap_err(),
            "is not a WAV file: its data chunk comes before the fmt chunk"
        );
        assert_eq!(
            read(&riff(0, &[fmt.clone(), data.clone(), chunk(b"LIST", 2, b"ab"), data])).unwrap_err(),
            "has a second data chunk (at byte 56; the first is at byte 36): a WAV file has one, and tolk.wav would play only the first"
        );
        assert_eq!(read(b"RIFF").unwrap_err(), "is not a WAV file: it ends before the audio data");
        assert_eq!(read(b"hello, world").unwrap_err(), "is not a WAV file: no RIFF tag found");
        assert_eq!(
            read(&riff(0, &[chunk(b"fmt ", 4, &[1, 0, 1, 0])])).unwrap_err(),
            "is not a WAV file: its fmt chunk has 4 bytes (at least 16)"
        );
    }
}
