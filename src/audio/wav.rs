//! WAV files in and out: any common WAV → mono 8 kHz `i16`, and 8 kHz PCM →
//! 16-bit WAV; raw μ-law → PCM.
//!
//! Owns the RIFF/WAVE parser (our own, because hound does not read the
//! G.711 WAVs — format tags 6 and 7 — that telephony tools write). Used at
//! start-up and by tools (fixtures, the load tester, `--out reply.wav`),
//! never on the per-call media path. Input is untrusted: every malformed,
//! truncated or unsupported file is an [`AudioError::Wav`], never a panic,
//! and nothing is allocated from a header field before it is checked
//! against the bytes actually present.

use std::path::Path;

use super::g711::{alaw_to_linear, decode_ulaw_into};
use super::resample::StreamResampler;
use super::{AudioError, PHONE_RATE};

const FORMAT_PCM: u16 = 1;
const FORMAT_FLOAT: u16 = 3;
const FORMAT_ALAW: u16 = 6;
const FORMAT_ULAW: u16 = 7;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;
/// Most channels we downmix (WAVE_FORMAT_EXTENSIBLE allows 18 speakers).
const MAX_CHANNELS: u16 = 32;

fn bad(msg: impl Into<String>) -> AudioError {
    AudioError::Wav(msg.into())
}

/// The parts of the `fmt ` chunk we use.
#[derive(Debug, Clone, Copy)]
struct Format {
    tag: u16,
    channels: u16,
    rate: u32,
    bits: u16,
    block_align: u16,
}

/// Reads a WAV (PCM 8/16/24/32-bit integer, 32/64-bit float, A-law, μ-law;
/// plain or WAVE_FORMAT_EXTENSIBLE; any channel count, averaged to mono; any
/// rate [`StreamResampler`] takes) and returns mono 8 kHz samples,
/// time-aligned with the source and `round(frames × 8000 / rate)` long.
pub fn decode_to_8k(bytes: &[u8]) -> Result<Vec<i16>, AudioError> {
    let (fmt, data) = parse(bytes)?;
    let mono = to_mono_i16(&fmt, data)?;
    if fmt.rate == PHONE_RATE {
        return Ok(mono);
    }
    let mut rs = StreamResampler::new(fmt.rate, PHONE_RATE)?;
    let mut out = Vec::with_capacity(
        (mono.len() as u64 * u64::from(PHONE_RATE) / u64::from(fmt.rate)) as usize + 1,
    );
    rs.process(&mono, &mut out);
    rs.flush(&mut out);
    Ok(out)
}

/// Reads the WAV file at `path` and decodes it like [`decode_to_8k`]; every
/// error names the path.
pub fn load_8k(path: &Path) -> Result<Vec<i16>, AudioError> {
    let bytes = std::fs::read(path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    decode_to_8k(&bytes).map_err(|e| match e {
        AudioError::Wav(m) => bad(format!("{}: {m}", path.display())),
        other => bad(format!("{}: {other}", path.display())),
    })
}

/// A complete 16-bit mono 8 kHz PCM WAV file holding `samples`.
///
/// More than ≈ 2³¹ samples (74 hours) would overflow the RIFF size fields;
/// such input is cut to what fits.
pub fn encode_wav_8k(samples: &[i16]) -> Vec<u8> {
    let max = (u32::MAX as usize - 36) / 2;
    let samples = &samples[..samples.len().min(max)];
    let data_len = (samples.len() * 2) as u32;
    let mut w = Vec::with_capacity(44 + samples.len() * 2);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data_len).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&FORMAT_PCM.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // channels
    w.extend_from_slice(&PHONE_RATE.to_le_bytes());
    w.extend_from_slice(&(PHONE_RATE * 2).to_le_bytes()); // byte rate
    w.extend_from_slice(&2u16.to_le_bytes()); // block align
    w.extend_from_slice(&16u16.to_le_bytes()); // bits
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        w.extend_from_slice(&s.to_le_bytes());
    }
    w
}

/// Headerless μ-law bytes (as carriers send them) → linear PCM at the same
/// rate.
pub fn decode_raw_ulaw(bytes: &[u8]) -> Vec<i16> {
    let mut out = Vec::with_capacity(bytes.len());
    decode_ulaw_into(bytes, &mut out);
    out
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Walks the RIFF chunks; returns the format and the data bytes (whole
/// frames only).
fn parse(bytes: &[u8]) -> Result<(Format, &[u8]), AudioError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(bad("not a RIFF/WAVE file"));
    }
    let mut pos = 12usize;
    let mut fmt: Option<Format> = None;
    let mut data: Option<&[u8]> = None;
    while pos + 8 <= bytes.len() && data.is_none() {
        let id = &bytes[pos..pos + 4];
        let size = u32_at(bytes, pos + 4).ok_or_else(|| bad("truncated chunk header"))?;
        let body_start = pos + 8;
        let remaining = bytes.len() - body_start;
        if id == b"data" {
            // 0xFFFFFFFF is what streaming writers put when the length was
            // unknown: take the rest of the file.
            let len = if size == u32::MAX {
                remaining
            } else if size as usize > remaining {
                return Err(bad(format!(
                    "data chunk truncated: header says {size} bytes, {remaining} present"
                )));
            } else {
                size as usize
            };
            data = Some(&bytes[body_start..body_start + len]);
            break;
        }
        if size as usize > remaining {
            return Err(bad(format!(
                "chunk {:?} truncated: header says {size} bytes, {remaining} present",
                String::from_utf8_lossy(id)
            )));
        }
        let body = &bytes[body_start..body_start + size as usize];
        if id == b"fmt " {
            fmt = Some(parse_fmt(body)?);
        }
        // Chunks are padded to an even length.
        pos = body_start + size as usize + (size as usize & 1);
    }
    let fmt = fmt.ok_or_else(|| bad("no fmt chunk before the data chunk"))?;
    let data = data.ok_or_else(|| bad("no data chunk"))?;
    let whole = data.len() - data.len() % usize::from(fmt.block_align);
    Ok((fmt, &data[..whole]))
}

fn parse_fmt(b: &[u8]) -> Result<Format, AudioError> {
    let short = || bad("fmt chunk too short");
    let mut tag = u16_at(b, 0).ok_or_else(short)?;
    let channels = u16_at(b, 2).ok_or_else(short)?;
    let rate = u32_at(b, 4).ok_or_else(short)?;
    let block_align = u16_at(b, 12).ok_or_else(short)?;
    let bits = u16_at(b, 14).ok_or_else(short)?;
    if tag == FORMAT_EXTENSIBLE {
        // cbSize(2) validBits(2) channelMask(4) then the sub-format GUID,
        // whose first two bytes are the real format tag.
        tag = u16_at(b, 24).ok_or_else(|| bad("WAVE_FORMAT_EXTENSIBLE fmt chunk too short"))?;
    }
    if channels == 0 || channels > MAX_CHANNELS {
        return Err(bad(format!("unsupported channel count {channels}")));
    }
    if rate == 0 {
        return Err(bad("sample rate 0"));
    }
    let supported = matches!(
        (tag, bits),
        (FORMAT_PCM, 8 | 16 | 24 | 32)
            | (FORMAT_FLOAT, 32 | 64)
            | (FORMAT_ALAW, 8)
            | (FORMAT_ULAW, 8)
    );
    if !supported {
        return Err(bad(format!(
            "unsupported encoding: format tag {tag}, {bits} bits per sample"
        )));
    }
    let expected_align = channels * (bits / 8);
    if block_align != expected_align {
        return Err(bad(format!(
            "block align {block_align} does not match {channels} channels × {bits} bits"
        )));
    }
    Ok(Format {
        tag,
        channels,
        rate,
        bits,
        block_align,
    })
}

/// Decodes one sample (`b` holds exactly `bits / 8` bytes) to `i32` on the
/// 16-bit scale.
fn sample(fmt: &Format, b: &[u8]) -> i32 {
    match (fmt.tag, b) {
        (FORMAT_ALAW, [x]) => i32::from(alaw_to_linear(*x)),
        (FORMAT_ULAW, [x]) => i32::from(super::g711::ulaw_to_linear(*x)),
        (FORMAT_PCM, [x]) => (i32::from(*x) - 128) << 8,
        (FORMAT_PCM, [a, b]) => i32::from(i16::from_le_bytes([*a, *b])),
        (FORMAT_PCM, [_, b, c]) => i32::from(i16::from_le_bytes([*b, *c])),
        (FORMAT_PCM, [_, _, c, d]) => i32::from(i16::from_le_bytes([*c, *d])),
        (FORMAT_FLOAT, [a, b, c, d]) => {
            float_to_16(f64::from(f32::from_le_bytes([*a, *b, *c, *d])))
        }
        (FORMAT_FLOAT, &[a, b, c, d, e, f, g, h]) => {
            float_to_16(f64::from_le_bytes([a, b, c, d, e, f, g, h]))
        }
        // parse_fmt admits only the combinations above.
        _ => 0,
    }
}

fn float_to_16(x: f64) -> i32 {
    if x.is_nan() {
        return 0;
    }
    (x * 32768.0).round().clamp(-32768.0, 32767.0) as i32
}

fn to_mono_i16(fmt: &Format, data: &[u8]) -> Result<Vec<i16>, AudioError> {
    let width = usize::from(fmt.bits / 8);
    let channels = usize::from(fmt.channels);
    let frame = usize::from(fmt.block_align);
    if frame == 0 {
        return Err(bad("zero-sized frames"));
    }
    let mut out = Vec::with_capacity(data.len() / frame);
    for f in data.chunks_exact(frame) {
        let sum: i32 = f.chunks_exact(width).map(|s| sample(fmt, s)).sum();
        // Channels ≤ 32, each ≤ 2¹⁵ in size: the sum fits, the mean is an i16.
        out.push((sum / channels as i32) as i16);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a WAV with an arbitrary fmt and data body.
    fn wav(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let align = channels * (bits / 8);
        let mut w = Vec::new();
        w.extend_from_slice(b"RIFF");
        w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        w.extend_from_slice(b"WAVEfmt ");
        w.extend_from_slice(&16u32.to_le_bytes());
        w.extend_from_slice(&tag.to_le_bytes());
        w.extend_from_slice(&channels.to_le_bytes());
        w.extend_from_slice(&rate.to_le_bytes());
        w.extend_from_slice(&(rate * u32::from(align)).to_le_bytes());
        w.extend_from_slice(&align.to_le_bytes());
        w.extend_from_slice(&bits.to_le_bytes());
        w.extend_from_slice(b"data");
        w.extend_from_slice(&(data.len() as u32).to_le_bytes());
        w.extend_from_slice(data);
        w
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let s: Vec<i16> = (0..800)
            .map(|i| ((i * 97) % 20000 - 10000) as i16)
            .collect();
        let w = encode_wav_8k(&s);
        assert_eq!(w.len(), 44 + 1600);
        assert_eq!(decode_to_8k(&w).unwrap(), s);
    }

    #[test]
    fn hound_reads_what_we_write() {
        let s: Vec<i16> = vec![0, 1, -1, 32767, -32768];
        let w = encode_wav_8k(&s);
        let mut r = hound::WavReader::new(std::io::Cursor::new(w)).unwrap();
        assert_eq!(r.spec().sample_rate, 8000);
        assert_eq!(r.spec().channels, 1);
        let back: Vec<i16> = r.samples::<i16>().map(|x| x.unwrap()).collect();
        assert_eq!(back, s);
    }

    #[test]
    fn reads_ulaw_and_alaw_wavs() {
        use crate::audio::g711::{linear_to_alaw, linear_to_ulaw, ulaw_to_linear};
        let pcm: Vec<i16> = vec![0, 100, -100, 1000, 8000, -8000];
        let u: Vec<u8> = pcm.iter().map(|&s| linear_to_ulaw(s)).collect();
        let a: Vec<u8> = pcm.iter().map(|&s| linear_to_alaw(s)).collect();
        let got_u = decode_to_8k(&wav(FORMAT_ULAW, 1, 8000, 8, &u)).unwrap();
        let got_a = decode_to_8k(&wav(FORMAT_ALAW, 1, 8000, 8, &a)).unwrap();
        assert_eq!(
            got_u,
            u.iter().map(|&b| ulaw_to_linear(b)).collect::<Vec<_>>()
        );
        assert_eq!(
            got_a,
            a.iter().map(|&b| alaw_to_linear(b)).collect::<Vec<_>>()
        );
        assert_eq!(decode_raw_ulaw(&u), got_u);
    }

    #[test]
    fn reads_every_pcm_width_and_float_and_downmixes_stereo() {
        // Value 0.25 full scale = 8192 in 16 bits, in every encoding.
        let cases: Vec<(u16, u16, Vec<u8>)> = vec![
            (FORMAT_PCM, 8, vec![128 + 32]),
            (FORMAT_PCM, 16, 8192i16.to_le_bytes().to_vec()),
            (FORMAT_PCM, 24, (8192i32 << 8).to_le_bytes()[..3].to_vec()),
            (FORMAT_PCM, 32, (8192i32 << 16).to_le_bytes().to_vec()),
            (FORMAT_FLOAT, 32, 0.25f32.to_le_bytes().to_vec()),
            (FORMAT_FLOAT, 64, 0.25f64.to_le_bytes().to_vec()),
        ];
        for (tag, bits, one) in cases {
            let data: Vec<u8> = one.repeat(10);
            let got = decode_to_8k(&wav(tag, 1, 8000, bits, &data)).unwrap();
            assert_eq!(got, vec![8192; 10], "tag {tag} bits {bits}");
        }
        // Stereo: left 1000, right 3000 → 2000.
        let mut st = Vec::new();
        for _ in 0..4 {
            st.extend_from_slice(&1000i16.to_le_bytes());
            st.extend_from_slice(&3000i16.to_le_bytes());
        }
        assert_eq!(
            decode_to_8k(&wav(FORMAT_PCM, 2, 8000, 16, &st)).unwrap(),
            vec![2000; 4]
        );
    }

    #[test]
    fn resamples_other_rates_to_8k_with_the_right_length() {
        for rate in [16000u32, 22050, 24000, 44100, 48000] {
            let n = rate as usize; // one second
            let data: Vec<u8> = (0..n)
                .flat_map(|i| {
                    let t = i as f64 / f64::from(rate);
                    let v = (8000.0 * (2.0 * std::f64::consts::PI * 300.0 * t).sin()) as i16;
                    v.to_le_bytes()
                })
                .collect();
            let got = decode_to_8k(&wav(FORMAT_PCM, 1, rate, 16, &data)).unwrap();
            assert_eq!(got.len(), 8000, "rate {rate}");
            // Level is kept: peak ≈ 8000 in the steady middle.
            let peak = got[2000..6000]
                .iter()
                .map(|s| s.unsigned_abs())
                .max()
                .unwrap();
            assert!((7600..=8400).contains(&peak), "rate {rate}: peak {peak}");
        }
    }

    #[test]
    fn rejects_malformed_input() {
        let good = wav(FORMAT_PCM, 1, 8000, 16, &[0; 20]);
        // Truncated data chunk.
        assert!(decode_to_8k(&good[..good.len() - 4]).is_err());
        // Not RIFF, empty, header only.
        assert!(decode_to_8k(b"").is_err());
        assert!(decode_to_8k(b"RIFF\0\0\0\0WAVE").is_err());
        assert!(decode_to_8k(&good[..20]).is_err());
        // Unsupported encodings and nonsense fields.
        assert!(decode_to_8k(&wav(2, 1, 8000, 4, &[0; 8])).is_err()); // ADPCM
        assert!(decode_to_8k(&wav(FORMAT_PCM, 0, 8000, 16, &[0; 8])).is_err());
        assert!(decode_to_8k(&wav(FORMAT_PCM, 1, 0, 16, &[0; 8])).is_err());
        assert!(decode_to_8k(&wav(FORMAT_PCM, 1, 7, 16, &[0; 8])).is_err());
        assert!(decode_to_8k(&wav(FORMAT_PCM, 1, 44101, 16, &[0; 8])).is_err());
        let e = load_8k(Path::new("/nonexistent/caller.wav")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/caller.wav"), "{e}");
    }

    #[test]
    fn accepts_unknown_length_data_and_odd_chunks() {
        // A LIST chunk of odd size (padded) before data; data size unknown.
        let mut w = wav(FORMAT_PCM, 1, 8000, 16, &[]);
        let data_hdr = w.len() - 8;
        w.truncate(data_hdr);
        w.extend_from_slice(b"LIST");
        w.extend_from_slice(&3u32.to_le_bytes());
        w.extend_from_slice(&[1, 2, 3, 0]);
        w.extend_from_slice(b"data");
        w.extend_from_slice(&u32::MAX.to_le_bytes());
        w.extend_from_slice(&[1, 0, 2, 0, 3]); // 2.5 frames → 2
        assert_eq!(decode_to_8k(&w).unwrap(), vec![1, 2]);
    }

    /// The committed fixtures (scripts/gen-fixtures) as `load_8k` sees them.
    mod fixtures {
        use super::*;

        fn load(name: &str) -> Vec<i16> {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures")
                .join(name);
            load_8k(&path).unwrap()
        }

        fn secs(x: &[i16]) -> f64 {
            x.len() as f64 / f64::from(PHONE_RATE)
        }

        fn dbfs(v: f64) -> f64 {
            20.0 * (v.max(1e-9) / 32768.0).log10()
        }

        fn rms_dbfs(x: &[i16]) -> f64 {
            let p = x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len().max(1) as f64;
            dbfs(p.sqrt())
        }

        fn peak_dbfs(x: &[i16]) -> f64 {
            dbfs(f64::from(
                x.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0),
            ))
        }

        /// (file, shortest s, longest s, peak dBFS)
        const UTTERANCES: [(&str, f64, f64, f64); 7] = [
            ("demo_request.wav", 4.5, 6.5, -3.0),
            ("pricing.wav", 2.5, 4.5, -3.0),
            ("existing_customer.wav", 4.5, 6.5, -3.0),
            ("referral.wav", 3.5, 5.5, -3.0),
            ("unclear.wav", 1.5, 3.5, -9.0),
            ("backchannel.wav", 0.3, 0.5, -3.0),
            ("short_burst.wav", 0.08, 0.15, -3.0),
        ];

        #[test]
        fn utterances_have_their_length_level_and_no_edge_silence() {
            for (name, min, max, peak) in UTTERANCES {
                let x = load(name);
                let (d, p) = (secs(&x), peak_dbfs(&x));
                assert!((min..=max).contains(&d), "{name}: {d:.3} s");
                assert!((p - peak).abs() < 0.5, "{name}: peak {p:.2} dBFS");
                // Speech starts and ends at the file edges: no digital
                // silence in the first or last 10 ms, and the first and last
                // 50 ms are above the −55 dBFS line-noise floor (speech
                // fades in/out there, so not by much at a soft consonant).
                for (edge, ms10, ms50) in [
                    ("leading", &x[..80], &x[..400]),
                    ("trailing", &x[x.len() - 80..], &x[x.len() - 400..]),
                ] {
                    assert!(peak_dbfs(ms10) > -60.0, "{name}: {edge} silence");
                    let r = rms_dbfs(ms50);
                    assert!(r > -50.0, "{name}: {edge} 50 ms at {r:.1} dBFS");
                }
            }
        }

        #[test]
        fn line_noise_is_quiet_and_three_seconds() {
            let x = load("line_noise.wav");
            let r = rms_dbfs(&x);
            assert!((2.99..=3.01).contains(&secs(&x)), "{} s", secs(&x));
            assert!(r < -45.0 && r > -65.0, "line noise RMS {r:.1} dBFS");
        }

        /// Share of 20 ms frames, after the first `skip`, that webrtc-vad
        /// (quality mode, the most permissive) calls voiced.
        fn voiced_share(x: &[i16], skip: usize) -> f64 {
            let mut vad = webrtc_vad::Vad::new_with_rate_and_mode(
                webrtc_vad::SampleRate::Rate8kHz,
                webrtc_vad::VadMode::Quality,
            );
            let calls: Vec<bool> = x
                .chunks_exact(160)
                .map(|f| vad.is_voice_segment(f).unwrap_or(false))
                .skip(skip)
                .collect();
            calls.iter().filter(|&&v| v).count() as f64 / calls.len().max(1) as f64
        }

        #[test]
        fn a_vad_hears_speech_in_utterances_but_not_in_line_noise() {
            // A fresh webrtc-vad calls the first 4–5 frames (80–100 ms) of
            // line noise voiced in every mode, before its noise model has
            // adapted; after that, none. (The VAD's minimum speech duration
            // has to cover that start-up.)
            let noise = load("line_noise.wav");
            let noise_after_warmup = voiced_share(&noise, 10);
            eprintln!("webrtc-vad voiced share after 200 ms: line_noise {noise_after_warmup:.2}");
            assert_eq!(noise_after_warmup, 0.0, "line noise looks like speech");
            for (name, ..) in UTTERANCES {
                let v = voiced_share(&load(name), 0);
                eprintln!("webrtc-vad voiced share: {name} {v:.2}");
                assert!(v > 0.5, "{name}: only {v:.2} of frames voiced");
            }
        }

        #[test]
        fn bot_reply_is_two_seconds() {
            let x = load("bot_reply.wav");
            assert!((secs(&x) - 2.0).abs() <= 0.020, "{} s", secs(&x));
            assert!((peak_dbfs(&x) + 3.0).abs() < 0.5);
        }

        #[test]
        fn fixtures_are_small_plain_8k_wavs() {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
            for (name, ..) in UTTERANCES {
                let bytes = std::fs::read(dir.join(name)).unwrap();
                assert!(bytes.len() < 100_000, "{name}: {} bytes", bytes.len());
                let (fmt, _) = parse(&bytes).unwrap();
                assert_eq!(
                    (fmt.tag, fmt.channels, fmt.rate, fmt.bits),
                    (1, 1, 8000, 16)
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode_to_8k(&bytes);
        }

        #[test]
        fn arbitrary_bodies_after_a_valid_header_never_panic(
            tag in proptest::sample::select(vec![1u16, 3, 6, 7, 0xFFFE, 2]),
            channels in 0u16..4,
            rate in proptest::sample::select(vec![0u32, 1, 8000, 11025, 16000, 22050, 44100, 48000, 96000]),
            bits in proptest::sample::select(vec![0u16, 8, 16, 24, 32, 64]),
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            cut in 0usize..400,
        ) {
            let mut w = wav(tag, channels, rate, bits, &body);
            w.truncate(w.len().saturating_sub(cut));
            let _ = decode_to_8k(&w);
        }
    }
}
