//! G.711 μ-law and A-law (ITU-T G.711), the codecs of the phone network.
//!
//! The encoders follow the Sun/`audioop` reference: shift first, then
//! negate, so `encode_ulaw(-1) == 0x7E` (the "classic" variant gives 0x7F; both
//! are valid, tests pin this one). All arithmetic is in `i32`, so
//! `-32768` cannot overflow. Decoding goes through 256-entry tables built at
//! compile time; encoding through a 16 K table indexed by `pcm >> 2`.

const ULAW_BIAS: i32 = 0x84;
const SEG_END_ULAW: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
const SEG_END_ALAW: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

const fn ulaw_decode_calc(u: u8) -> i16 {
    let u = !u as i32;
    let mut t = ((u & 0x0F) << 3) + ULAW_BIAS;
    t <<= (u & 0x70) >> 4;
    (if u & 0x80 != 0 {
        ULAW_BIAS - t
    } else {
        t - ULAW_BIAS
    }) as i16
}

const fn alaw_decode_calc(a: u8) -> i16 {
    let a = (a ^ 0x55) as i32;
    let mut t = (a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    t = match seg {
        0 => t + 8,
        1 => t + 0x108,
        s => (t + 0x108) << (s - 1),
    };
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

const fn ulaw_encode_calc(pcm: i32) -> u8 {
    let mut x = pcm >> 2;
    let mask: i32;
    if x < 0 {
        x = -x;
        mask = 0x7F;
    } else {
        mask = 0xFF;
    }
    if x > 8159 {
        x = 8159;
    }
    x += ULAW_BIAS >> 2;
    let mut seg = 0;
    while seg < 8 && x > SEG_END_ULAW[seg] {
        seg += 1;
    }
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    (((seg as i32) << 4 | ((x >> (seg + 1)) & 0x0F)) ^ mask) as u8
}

const fn alaw_encode_calc(pcm: i32) -> u8 {
    let mut x = pcm >> 3;
    let mask: i32;
    if x >= 0 {
        mask = 0xD5;
    } else {
        mask = 0x55;
        x = -x - 1;
    }
    let mut seg = 0;
    while seg < 8 && x > SEG_END_ALAW[seg] {
        seg += 1;
    }
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let mant = if seg < 2 { x >> 1 } else { x >> seg };
    (((seg as i32) << 4 | (mant & 0x0F)) ^ mask) as u8
}

const fn build_decode(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw {
            alaw_decode_calc(i as u8)
        } else {
            ulaw_decode_calc(i as u8)
        };
        i += 1;
    }
    t
}

/// μ-law encoding depends only on `pcm >> 2` (14 bits), so one table covers all inputs.
const fn build_ulaw_encode() -> [u8; 16384] {
    let mut t = [0u8; 16384];
    let mut i = 0;
    while i < 16384 {
        // Index i holds (pcm >> 2) + 8192, i.e. pcm >> 2 in -8192..8192.
        t[i] = ulaw_encode_calc(((i as i32) - 8192) << 2);
        i += 1;
    }
    t
}

/// A-law encoding depends only on `pcm >> 3` (13 bits).
const fn build_alaw_encode() -> [u8; 8192] {
    let mut t = [0u8; 8192];
    let mut i = 0;
    while i < 8192 {
        t[i] = alaw_encode_calc(((i as i32) - 4096) << 3);
        i += 1;
    }
    t
}

static ULAW_DECODE: [i16; 256] = build_decode(false);
static ALAW_DECODE: [i16; 256] = build_decode(true);
static ULAW_ENCODE: [u8; 16384] = build_ulaw_encode();
static ALAW_ENCODE: [u8; 8192] = build_alaw_encode();

/// Decode one μ-law byte.
#[inline]
pub fn ulaw_to_linear(u: u8) -> i16 {
    ULAW_DECODE[u as usize]
}

/// Encode one linear sample as μ-law.
#[inline]
pub fn linear_to_ulaw(pcm: i16) -> u8 {
    ULAW_ENCODE[((pcm as i32 >> 2) + 8192) as usize]
}

/// Decode one A-law byte.
#[inline]
pub fn alaw_to_linear(a: u8) -> i16 {
    ALAW_DECODE[a as usize]
}

/// Encode one linear sample as A-law.
#[inline]
pub fn linear_to_alaw(pcm: i16) -> u8 {
    ALAW_ENCODE[((pcm as i32 >> 3) + 4096) as usize]
}

/// Decode μ-law bytes, appending samples to `out`.
pub fn decode_ulaw_into(input: &[u8], out: &mut Vec<i16>) {
    out.extend(input.iter().map(|&b| ULAW_DECODE[b as usize]));
}

/// Encode samples as μ-law, appending bytes to `out`.
pub fn encode_ulaw_into(input: &[i16], out: &mut Vec<u8>) {
    out.extend(input.iter().map(|&s| linear_to_ulaw(s)));
}

/// Decode A-law bytes, appending samples to `out`.
pub fn decode_alaw_into(input: &[u8], out: &mut Vec<i16>) {
    out.extend(input.iter().map(|&b| ALAW_DECODE[b as usize]));
}

/// Encode samples as A-law, appending bytes to `out`.
pub fn encode_alaw_into(input: &[i16], out: &mut Vec<u8>) {
    out.extend(input.iter().map(|&s| linear_to_alaw(s)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference vectors: ITU-T G.711 tables (μ-law and A-law encode, decode).
    const VECTORS: [(i16, u8, i16, u8, i16); 8] = [
        (0, 0xFF, 0, 0xD5, 8),
        (-1, 0x7E, -8, 0x55, -8),
        (100, 0xF2, 104, 0xD3, 104),
        (-100, 0x72, -104, 0x53, -104),
        (1000, 0xCE, 988, 0xFA, 1008),
        (8000, 0xA0, 7932, 0x8A, 8064),
        (32767, 0x80, 32124, 0xAA, 32256),
        (-32768, 0x00, -32124, 0x2A, -32256),
    ];

    #[test]
    fn spec_vectors() {
        for (pcm, u, upcm, a, apcm) in VECTORS {
            assert_eq!(linear_to_ulaw(pcm), u, "ulaw enc {pcm}");
            assert_eq!(ulaw_to_linear(u), upcm, "ulaw dec {u:#x}");
            assert_eq!(linear_to_alaw(pcm), a, "alaw enc {pcm}");
            assert_eq!(alaw_to_linear(a), apcm, "alaw dec {a:#x}");
        }
    }

    #[test]
    fn tables_match_the_reference_formula_for_all_65536_inputs() {
        for pcm in i16::MIN..=i16::MAX {
            assert_eq!(linear_to_ulaw(pcm), ulaw_encode_calc(pcm as i32), "{pcm}");
            assert_eq!(linear_to_alaw(pcm), alaw_encode_calc(pcm as i32), "{pcm}");
        }
    }

    #[test]
    fn all_65536_inputs_round_trip_within_one_quantisation_step() {
        for pcm in i16::MIN..=i16::MAX {
            let p = pcm as i32;
            let u = ulaw_to_linear(linear_to_ulaw(pcm)) as i32;
            let a = alaw_to_linear(linear_to_alaw(pcm)) as i32;
            // The step grows with magnitude (half a step is at most ~1/16 of the value, plus the
            // low bits the encoder drops);
            // both codecs clip at ±32124 / ±32256.
            let utol = p.abs() / 8 + 16;
            let clip_u = p.clamp(-32124, 32124);
            assert!((u - clip_u).abs() <= utol, "ulaw {pcm} -> {u}");
            let clip_a = p.clamp(-32256, 32256);
            let atol = p.abs() / 8 + 16;
            assert!((a - clip_a).abs() <= atol, "alaw {pcm} -> {a}");
            // Sign is preserved for anything audible.
            if p.abs() > 64 {
                assert_eq!(u.signum(), p.signum());
                assert_eq!(a.signum(), p.signum());
            }
        }
    }

    #[test]
    fn decode_then_encode_reproduces_every_byte() {
        for b in 0..=255u8 {
            let expect_u = if b == 0x7F { 0xFF } else { b };
            assert_eq!(linear_to_ulaw(ulaw_to_linear(b)), expect_u, "ulaw {b:#x}");
            assert_eq!(linear_to_alaw(alaw_to_linear(b)), b, "alaw {b:#x}");
        }
    }

    #[test]
    fn encoding_is_monotonic() {
        let mut last_u = i32::MIN;
        let mut last_a = i32::MIN;
        for pcm in i16::MIN..=i16::MAX {
            let u = ulaw_to_linear(linear_to_ulaw(pcm)) as i32;
            let a = alaw_to_linear(linear_to_alaw(pcm)) as i32;
            assert!(u >= last_u && a >= last_a, "{pcm}");
            last_u = u;
            last_a = a;
        }
    }

    proptest! {
        #[test]
        fn slice_codecs_never_panic_and_keep_length(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut pcm = Vec::new();
            decode_ulaw_into(&bytes, &mut pcm);
            prop_assert_eq!(pcm.len(), bytes.len());
            let mut back = Vec::new();
            encode_ulaw_into(&pcm, &mut back);
            prop_assert_eq!(back.len(), bytes.len());
            let mut apcm = Vec::new();
            decode_alaw_into(&bytes, &mut apcm);
            let mut aback = Vec::new();
            encode_alaw_into(&apcm, &mut aback);
            prop_assert_eq!(aback, bytes);
        }
    }
}
