//! Sample-encoding and channel conversions on interleaved slices: i16 ↔ f32, sanitising f32,
//! downmix, upmix, general N → M remix and picking one channel.
//!
//! Everything here is a pure function over slices: no state, no I/O, no allocation beyond
//! growing the caller's `Vec`. The slice functions **append** to `out`, so a caller that
//! keeps its `Vec`s between blocks (as [`Converter`](super::Converter) does) clears them first
//! and allocates nothing in steady state. A trailing partial frame (fewer samples than the
//! channel count) is ignored.
//!
//! The two sample conventions are fixed, because other parts of tolk rely on them:
//! i16 → f32 is `x / 32768`, and f32 → i16 is `round(x · 32768)` clamped to the i16 range, with
//! NaN → 0. So i16 → f32 → i16 is exact, and ±∞ clip to full scale.

/// One i16 sample as f32: `x / 32768`, so `-32768` maps to exactly `-1.0` and `32767` to just
/// under `1.0`.
#[inline]
pub fn i16_to_f32(x: i16) -> f32 {
    f32::from(x) / 32768.0
}

/// One f32 sample as i16: `round(x · 32768)` (halves away from zero), clamped to
/// `-32768..=32767`. NaN becomes 0 and ±∞ clip to full scale.
#[inline]
pub fn f32_to_i16(x: f32) -> i16 {
    if x.is_nan() {
        return 0;
    }
    // NOTE: the clamp makes the cast exact; `as` alone would also saturate, but spelling it out
    // keeps the convention readable.
    (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// One f32 sample made safe for an f32 output: NaN → 0, ±∞ → ±1, and anything else clipped
/// to `-1.0..=1.0`.
#[inline]
pub fn sanitize_f32(x: f32) -> f32 {
    if x.is_nan() { 0.0 } else { x.clamp(-1.0, 1.0) }
}

/// Appends `input` converted with [`i16_to_f32`] to `out`.
pub fn i16_to_f32_slice(input: &[i16], out: &mut Vec<f32>) {
    out.extend(input.iter().map(|&x| i16_to_f32(x)));
}

/// Appends `input` converted with [`f32_to_i16`] to `out`.
pub fn f32_to_i16_slice(input: &[f32], out: &mut Vec<i16>) {
    out.extend(input.iter().map(|&x| f32_to_i16(x)));
}

/// Appends `input` passed through [`sanitize_f32`] to `out`.
pub fn sanitize_f32_slice(input: &[f32], out: &mut Vec<f32>) {
    out.extend(input.iter().map(|&x| sanitize_f32(x)));
}

/// Applies [`sanitize_f32`] to every sample of `samples` in place.
pub fn sanitize_f32_in_place(samples: &mut [f32]) {
    samples.iter_mut().for_each(|x| *x = sanitize_f32(*x));
}

/// The whole frames of `input`: its first `len / channels * channels` samples.
///
/// # Panics
/// If `channels` is 0.
#[inline]
pub fn whole_frames<T>(input: &[T], channels: usize) -> &[T] {
    assert!(channels > 0, "channel count must be at least 1");
    &input[..input.len() / channels * channels]
}

/// Appends the average of each frame's `channels` samples to `out` (one sample per frame).
///
/// With one channel this is a plain copy. Stereo has a fast path, `(l + r) / 2`.
///
/// # Panics
/// If `channels` is 0.
pub fn downmix_to_mono(input: &[f32], channels: usize, out: &mut Vec<f32>) {
    let input = whole_frames(input, channels);
    match channels {
        1 => out.extend_from_slice(input),
        2 => out.extend(input.chunks_exact(2).map(|f| (f[0] + f[1]) * 0.5)),
        n => {
            let scale = n as f32;
            out.extend(input.chunks_exact(n).map(|f| f.iter().sum::<f32>() / scale));
        }
    }
}

/// Appends each mono sample of `input` `channels` times to `out` (the same signal on every
/// channel).
///
/// # Panics
/// If `channels` is 0.
pub fn upmix_mono<T: Copy>(input: &[T], channels: usize, out: &mut Vec<T>) {
    assert!(channels > 0, "channel count must be at least 1");
    match channels {
        1 => out.extend_from_slice(input),
        2 => out.extend(input.iter().flat_map(|&x| [x, x])),
        n => {
            out.reserve(input.len() * n);
            for &x in input {
                out.extend(std::iter::repeat_n(x, n));
            }
        }
    }
}

/// Appends `input` (interleaved, `from` channels) remixed to `to` channels onto `out`.
///
/// Equal counts copy; `to == 1` averages ([`downmix_to_mono`]); `from == 1` copies the mono
/// signal to every channel ([`upmix_mono`]); any other pair averages each frame to mono and
/// copies that to all `to` channels (no speaker-layout guessing).
///
/// # Panics
/// If `from` or `to` is 0.
pub fn remix(input: &[f32], from: usize, to: usize, out: &mut Vec<f32>) {
    assert!(to > 0, "channel count must be at least 1");
    let input = whole_frames(input, from);
    if from == to {
        out.extend_from_slice(input);
    } else if to == 1 {
        downmix_to_mono(input, from, out);
    } else if from == 1 {
        upmix_mono(input, to, out);
    } else {
        let scale = from as f32;
        out.reserve(input.len() / from * to);
        for frame in input.chunks_exact(from) {
            let mono = frame.iter().sum::<f32>() / scale;
            out.extend(std::iter::repeat_n(mono, to));
        }
    }
}

/// Appends channel `k` (0-based) of `input` (interleaved, `channels` channels) to `out`.
///
/// # Panics
/// If `channels` is 0 or `k >= channels`.
pub fn select_channel<T: Copy>(input: &[T], channels: usize, k: usize, out: &mut Vec<T>) {
    assert!(k < channels, "channel {k} does not exist in {channels}-channel audio");
    out.extend(whole_frames(input, channels).chunks_exact(channels).map(|f| f[k]));
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: f32 = 32767.0 / 32768.0;

    #[test]
    fn i16_to_f32_table() {
        let table: &[(i16, f32)] =
            &[(0, 0.0), (1, 1.0 / 32768.0), (-1, -1.0 / 32768.0), (16384, 0.5), (-32768, -1.0), (32767, FULL)];
        for &(x, want) in table {
            assert_eq!(i16_to_f32(x), want, "i16 {x}");
        }
    }

    #[test]
    fn f32_to_i16_table() {
        let table: &[(f32, i16)] = &[
            (0.0, 0),
            (-0.0, 0),
            (0.5, 16384),
            (-0.5, -16384),
            (FULL, 32767),
            (1.0, 32767),
            (-1.0, -32768),
            (1.5, 32767),
            (-1.5, -32768),
            (f32::INFINITY, 32767),
            (f32::NEG_INFINITY, -32768),
            (f32::NAN, 0),
            (-f32::NAN, 0),
            (f32::MAX, 32767),
            (f32::MIN, -32768),
            (0.4 / 32768.0, 0),
            (0.5 / 32768.0, 1),
            (-0.5 / 32768.0, -1),
            (1.5 / 32768.0, 2),
            (2.49 / 32768.0, 2),
            (f32::MIN_POSITIVE, 0),
        ];
        for &(x, want) in table {
            assert_eq!(f32_to_i16(x), want, "f32 {x:e}");
        }
    }

    #[test]
    fn i16_f32_i16_round_trip_is_exact_for_every_value() {
        for x in i16::MIN..=i16::MAX {
            assert_eq!(f32_to_i16(i16_to_f32(x)), x);
        }
    }

    #[test]
    fn sanitize_table() {
        let table: &[(f32, f32)] = &[
            (0.25, 0.25),
            (-0.25, -0.25),
            (1.0, 1.0),
            (-1.0, -1.0),
            (1.0001, 1.0),
            (-7.0, -1.0),
            (f32::INFINITY, 1.0),
            (f32::NEG_INFINITY, -1.0),
            (f32::NAN, 0.0),
            (f32::MIN_POSITIVE / 2.0, f32::MIN_POSITIVE / 2.0),
        ];
        for &(x, want) in table {
            assert_eq!(sanitize_f32(x), want, "f32 {x:e}");
        }
        let mut block = vec![f32::NAN, 2.0, -0.5, f32::NEG_INFINITY];
        sanitize_f32_in_place(&mut block);
        assert_eq!(block, [0.0, 1.0, -0.5, -1.0]);
    }

    #[test]
    fn slice_conversions_append_and_handle_odd_sizes() {
        for len in [0usize, 1, 3, 7, 481] {
            let input: Vec<i16> = (0..len).map(|i| (i as i16).wrapping_mul(997)).collect();
            let mut f = vec![9.0];
            i16_to_f32_slice(&input, &mut f);
            assert_eq!(f.len(), len + 1);
            assert_eq!(f[0], 9.0, "appends, keeps what was there");
            let mut back = Vec::new();
            f32_to_i16_slice(&f[1..], &mut back);
            assert_eq!(back, input);
            let mut clean = Vec::new();
            sanitize_f32_slice(&f[1..], &mut clean);
            assert_eq!(clean, f[1..]);
        }
    }

    #[test]
    fn downmix_table() {
        // (channels, interleaved input, expected mono)
        let table: &[(usize, &[f32], &[f32])] = &[
            (1, &[0.1, -0.2, 0.3], &[0.1, -0.2, 0.3]),
            (2, &[1.0, 0.0, 0.5, 0.5, -1.0, 1.0], &[0.5, 0.5, 0.0]),
            (2, &[1.0, 1.0, 0.25], &[1.0]), // trailing partial frame ignored
            (2, &[0.7], &[]),
            (3, &[0.3, 0.6, 0.9, -0.3, -0.3, -0.3, 1.0], &[0.6, -0.3]),
            (4, &[], &[]),
        ];
        for &(channels, input, want) in table {
            let mut out = Vec::new();
            downmix_to_mono(input, channels, &mut out);
            assert_eq!(out.len(), want.len(), "{channels} ch {input:?}");
            for (got, want) in out.iter().zip(want) {
                assert!((got - want).abs() < 1e-6, "{channels} ch {input:?}: {out:?}");
            }
        }
    }

    #[test]
    fn upmix_and_remix_table() {
        let mut out = Vec::new();
        upmix_mono(&[0.5f32, -0.25], 2, &mut out);
        assert_eq!(out, [0.5, 0.5, -0.25, -0.25]);
        out.clear();
        upmix_mono(&[0.5f32], 3, &mut out);
        assert_eq!(out, [0.5, 0.5, 0.5]);

        // (from, to, input, expected)
        let table: &[(usize, usize, &[f32], &[f32])] = &[
            (2, 2, &[0.1, 0.2, 0.3], &[0.1, 0.2]),
            (2, 1, &[1.0, 0.0, 0.0, -1.0], &[0.5, -0.5]),
            (1, 2, &[0.5, -0.25], &[0.5, 0.5, -0.25, -0.25]),
            (1, 4, &[0.5], &[0.5, 0.5, 0.5, 0.5]),
            (2, 3, &[1.0, 0.0, 0.5, 0.5, 9.0], &[0.5, 0.5, 0.5, 0.5, 0.5, 0.5]),
            (4, 2, &[1.0, 1.0, 0.0, 0.0], &[0.5, 0.5]),
            (3, 2, &[0.3, 0.3], &[]),
        ];
        for &(from, to, input, want) in table {
            let mut out = Vec::new();
            remix(input, from, to, &mut out);
            assert_eq!(out, want, "{from} → {to}: {input:?}");
        }
    }

    #[test]
    fn select_channel_table() {
        let stereo = [1i16, 2, 3, 4, 5, 6, 7];
        let mut out = Vec::new();
        select_channel(&stereo, 2, 0, &mut out);
        assert_eq!(out, [1, 3, 5]);
        out.clear();
        select_channel(&stereo, 2, 1, &mut out);
        assert_eq!(out, [2, 4, 6]);
        out.clear();
        select_channel(&stereo, 3, 2, &mut out);
        assert_eq!(out, [3, 6]);
        out.clear();
        select_channel(&stereo, 1, 0, &mut out);
        assert_eq!(out, stereo);
    }

    #[test]
    #[should_panic(expected = "channel 2 does not exist in 2-channel audio")]
    fn select_channel_out_of_range_panics() {
        select_channel(&[0.0f32; 4], 2, 2, &mut Vec::new());
    }
}
