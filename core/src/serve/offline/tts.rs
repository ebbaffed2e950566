//! Speech synthesis: the `espeak-ng` program (Debian `espeak-ng`, GPL-3.0: called as a program,
//! never linked), one call per sentence with `--stdout`, its WAV resampled to 24 kHz.

use std::process::{Command, Stdio};

use crate::audio::{
    convert::{f32_to_i16_slice, i16_to_f32_slice},
    resample::StreamResampler,
};

/// Whether `espeak-ng` runs and has a voice for `tag` (`espeak-ng --voices=<tag>`).
pub fn has_voice(tag: &str) -> bool {
    Command::new("espeak-ng")
        .arg(format!("--voices={tag}"))
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).lines().count() > 1)
}

/// Synthesises `text` in voice `tag`: 24 kHz mono PCM16.
pub fn speak(tag: &str, text: &str) -> Result<Vec<i16>, String> {
    let out = Command::new("espeak-ng")
        .args(["-v", tag, "--stdout", "--"])
        .arg(text)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("offline engine: espeak-ng (Debian espeak-ng) not runnable: {e}"))?;
    if !out.status.success() {
        return Err(format!("offline engine: espeak-ng -v {tag}: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let (rate, pcm) = parse_wav(&out.stdout).ok_or("offline engine: espeak-ng wrote no WAV")?;
    let mut f = Vec::with_capacity(pcm.len());
    i16_to_f32_slice(&pcm, &mut f);
    let mut r = StreamResampler::new(rate, 24_000, 1).map_err(|e| format!("offline engine: resampler: {e}"))?;
    let mut o = Vec::new();
    r.process(&f, &mut o);
    r.finish(&mut o);
    let mut samples = Vec::with_capacity(o.len());
    f32_to_i16_slice(&o, &mut samples);
    Ok(samples)
}

/// The rate and 16-bit mono samples of a WAV that espeak-ng streamed (its sizes are
/// placeholders: the data chunk runs to the end).
fn parse_wav(b: &[u8]) -> Option<(u32, Vec<i16>)> {
    if b.len() < 12 || &b[..4] != b"RIFF" || &b[8..12] != b"WAVE" {
        return None;
    }
    let (mut pos, mut rate) = (12, None);
    while pos + 8 <= b.len() {
        let id = &b[pos..pos + 4];
        let len = u32::from_le_bytes(b[pos + 4..pos + 8].try_into().ok()?) as usize;
        let body = pos + 8;
        if id == b"fmt " && body + 16 <= b.len() {
            let channels = u16::from_le_bytes([b[body + 2], b[body + 3]]);
            let bits = u16::from_le_bytes([b[body + 14], b[body + 15]]);
            if channels != 1 || bits != 16 {
                return None;
            }
            rate = Some(u32::from_le_bytes(b[body + 4..body + 8].try_into().ok()?));
        } else if id == b"data" {
            let data = &b[body.min(b.len())..];
            let pcm = data.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect();
            return Some((rate?, pcm));
        }
        pos = body.checked_add(len)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_streamed_wav_with_placeholder_sizes() {
        let mut b = b"RIFF\xf0\xff\xff\x7fWAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00".to_vec();
        b.extend_from_slice(&22_050u32.to_le_bytes());
        b.extend_from_slice(&44_100u32.to_le_bytes());
        b.extend_from_slice(&[2, 0, 16, 0]);
        b.extend_from_slice(b"data\xf0\xff\xff\x7f");
        b.extend_from_slice(&[1, 0, 0xff, 0xff]);
        assert_eq!(parse_wav(&b), Some((22_050, vec![1, -1])));
        assert_eq!(parse_wav(b"RIFF"), None);
    }
}
