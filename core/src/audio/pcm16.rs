//! PCM16 framing for the Realtime API: i16 samples ↔ little-endian bytes ↔ base64 text.
//!
//! The API carries audio as base64 of 16-bit little-endian PCM (`input_audio_buffer.append`,
//! `response.output_audio.delta`). These are pure functions; the `_into` variants append to
//! caller-owned buffers so a steady stream allocates nothing. No I/O.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::AudioError;

/// Appends `samples` as little-endian bytes (2 per sample) to `out`.
pub fn to_le_bytes(samples: &[i16], out: &mut Vec<u8>) {
    out.reserve(samples.len() * 2);
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
}

/// Appends the samples held in little-endian `bytes` to `out`.
///
/// Fails, appending nothing, when the byte count is odd.
pub fn from_le_bytes(bytes: &[u8], out: &mut Vec<i16>) -> Result<(), AudioError> {
    if !bytes.len().is_multiple_of(2) {
        return Err(AudioError::decode(format!("pcm16: odd byte count {} (samples are 2 bytes each)", bytes.len())));
    }
    out.extend(bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])));
    Ok(())
}

/// `samples` as base64 (standard alphabet, padded) of their little-endian bytes.
pub fn encode(samples: &[i16]) -> String {
    let mut text = String::new();
    encode_into(samples, &mut Vec::new(), &mut text);
    text
}

/// Appends the base64 of `samples` to `out`, using `bytes` as scratch (cleared first).
pub fn encode_into(samples: &[i16], bytes: &mut Vec<u8>, out: &mut String) {
    bytes.clear();
    to_le_bytes(samples, bytes);
    STANDARD.encode_string(bytes.as_slice(), out);
}

/// The samples in base64 text `b64` (standard alphabet, padded).
///
/// Fails on invalid base64 or an odd number of decoded bytes.
pub fn decode(b64: &str) -> Result<Vec<i16>, AudioError> {
    let mut samples = Vec::new();
    decode_into(b64, &mut Vec::new(), &mut samples)?;
    Ok(samples)
}

/// Appends the samples in base64 text `b64` to `out`, using `bytes` as scratch (cleared
/// first). On error nothing is appended.
pub fn decode_into(b64: &str, bytes: &mut Vec<u8>, out: &mut Vec<i16>) -> Result<(), AudioError> {
    bytes.clear();
    STANDARD.decode_vec(b64, bytes).map_err(|e| AudioError::decode(format!("pcm16: invalid base64: {e}")))?;
    from_le_bytes(bytes, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn le_bytes_table() {
        let table: &[(&[i16], &[u8])] = &[
            (&[], &[]),
            (&[0], &[0, 0]),
            (&[1], &[1, 0]),
            (&[-1], &[0xff, 0xff]),
            (&[0x1234], &[0x34, 0x12]),
            (&[i16::MIN, i16::MAX], &[0x00, 0x80, 0xff, 0x7f]),
        ];
        for &(samples, bytes) in table {
            let mut got = Vec::new();
            to_le_bytes(samples, &mut got);
            assert_eq!(got, bytes);
            let mut back = Vec::new();
            from_le_bytes(bytes, &mut back).unwrap();
            assert_eq!(back, samples);
        }
    }

    #[test]
    fn base64_table() {
        // Known encodings: 1, 2 and 3 samples exercise both padding lengths and none.
        let table: &[(&[i16], &str)] =
            &[(&[], ""), (&[0], "AAA="), (&[1, -1], "AQD//w=="), (&[0x1234, i16::MIN, i16::MAX], "NBIAgP9/")];
        for &(samples, text) in table {
            assert_eq!(encode(samples), text);
            assert_eq!(decode(text).unwrap(), samples);
        }
    }

    #[test]
    fn round_trip_every_block_size() {
        let (mut bytes, mut text, mut back) = (Vec::new(), String::new(), Vec::new());
        for len in [0usize, 1, 2, 3, 7, 480, 4801] {
            let samples: Vec<i16> = (0..len).map(|i| (i as i32 * 7919 % 65536 - 32768) as i16).collect();
            text.clear();
            encode_into(&samples, &mut bytes, &mut text);
            assert_eq!(text.len(), (2 * len).div_ceil(3) * 4);
            back.clear();
            decode_into(&text, &mut bytes, &mut back).unwrap();
            assert_eq!(back, samples);
        }
    }

    #[test]
    fn odd_byte_count_is_an_error() {
        // "AAAA" is 3 bytes, "AA==" is 1 byte.
        for (text, n) in [("AAAA", 3), ("AA==", 1), ("AAAAAAA=", 5)] {
            let mut out = vec![7];
            let err = decode_into(text, &mut Vec::new(), &mut out).unwrap_err();
            assert_eq!(err.to_string(), format!("pcm16: odd byte count {n} (samples are 2 bytes each)"));
            assert_eq!(err.kind(), crate::audio::AudioErrorKind::Decode);
            assert_eq!(out, [7], "nothing appended on error");
        }
        assert!(from_le_bytes(&[1], &mut Vec::new()).is_err());
    }

    #[test]
    fn invalid_base64_is_a_one_line_error() {
        let err = decode("AA!A").unwrap_err().to_string();
        assert!(err.starts_with("pcm16: invalid base64: "), "{err}");
        assert!(!err.contains('\n'));
    }
}
