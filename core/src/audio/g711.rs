//! G.711 companding (ITU-T G.711): μ-law and A-law bytes ↔ linear PCM16, one sample at a time.
//!
//! Pure per-sample arithmetic at the codec's own rate (8 kHz); rate conversion to and from the
//! session rate is the caller's business (the test server's `audio/pcmu` / `audio/pcma` formats
//! in [`crate::serve::protocol`]).

/// Expands one μ-law byte to linear PCM16.
pub fn ulaw_to_linear(u: u8) -> i16 {
    let u = !u;
    let exp = (u >> 4) & 7;
    let s = ((((u & 0x0f) as i32) << 3) + 0x84) << exp;
    let s = s - 0x84;
    (if u & 0x80 != 0 { -s } else { s }) as i16
}

/// Compands one linear PCM16 sample to a μ-law byte (clipped at 32635).
pub fn linear_to_ulaw(s: i16) -> u8 {
    let mut x = s as i32;
    let sign = if x < 0 {
        x = -x;
        0x80
    } else {
        0
    };
    x = x.min(32635) + 0x84;
    let mut exp = 7;
    let mut mask = 0x4000;
    while exp > 0 && x & mask == 0 {
        exp -= 1;
        mask >>= 1;
    }
    let mant = (x >> (exp + 3)) & 0x0f;
    !((sign | (exp << 4) | mant) as u8)
}

/// Expands one A-law byte to linear PCM16.
pub fn alaw_to_linear(a: u8) -> i16 {
    let a = a ^ 0x55;
    let exp = ((a >> 4) & 7) as i32;
    let mant = (a & 0x0f) as i32;
    let s = if exp == 0 { (mant << 4) + 8 } else { ((mant << 4) + 0x108) << (exp - 1) };
    (if a & 0x80 != 0 { s } else { -s }) as i16
}

/// Compands one linear PCM16 sample to an A-law byte.
pub fn linear_to_alaw(s: i16) -> u8 {
    let mut x = s as i32;
    let sign = if x >= 0 {
        0x80
    } else {
        x = -x - 1;
        0
    };
    let (exp, mant) = if x < 256 {
        (0, x >> 4)
    } else {
        let mut exp = 1;
        while exp < 7 && x >= (256 << exp) {
            exp += 1;
        }
        (exp, (x >> (exp + 3)) & 0x0f)
    };
    ((sign | (exp << 4) | mant) as u8) ^ 0x55
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_survives_a_round_trip() {
        // Each of the 256 codes decodes to a level that compands back to a code of that level.
        for b in 0..=255u8 {
            let u = ulaw_to_linear(b);
            assert_eq!(ulaw_to_linear(linear_to_ulaw(u)), u, "μ-law {b:#04x}");
            let a = alaw_to_linear(b);
            assert_eq!(alaw_to_linear(linear_to_alaw(a)), a, "A-law {b:#04x}");
        }
    }
}
