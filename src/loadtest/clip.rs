//! Fixture audio, precomputed once per run: every 20 ms frame of a clip is
//! μ-law encoded and base64'd up front and shared by all calls, so sending a
//! frame is a memcpy of 216 bytes.

use std::path::Path;

use base64::Engine as _;

use super::LoadtestError;
use crate::audio::g711::linear_to_ulaw;
use crate::carrier::playout::FRAME_BYTES;

/// Base64 length of one 160-byte frame (padded).
pub const B64_FRAME: usize = FRAME_BYTES.div_ceil(3) * 4;

/// Samples per frame at 8 kHz.
const FRAME_SAMPLES: usize = FRAME_BYTES;

/// A clip as base64 μ-law frames.
#[derive(Debug)]
pub struct Clip {
    name: String,
    /// `frames × B64_FRAME` ASCII bytes.
    b64: Box<[u8]>,
}

impl Clip {
    /// Encode 8 kHz mono PCM; the last frame is padded with silence.
    pub fn from_pcm(name: &str, pcm: &[i16]) -> Self {
        let frames = pcm.len().div_ceil(FRAME_SAMPLES).max(1);
        let mut b64 = vec![0u8; frames * B64_FRAME];
        let mut ulaw = [0u8; FRAME_BYTES];
        for (i, out) in b64.chunks_exact_mut(B64_FRAME).enumerate() {
            let start = (i * FRAME_SAMPLES).min(pcm.len());
            let end = ((i + 1) * FRAME_SAMPLES).min(pcm.len());
            let chunk = &pcm[start..end];
            for (j, u) in ulaw.iter_mut().enumerate() {
                *u = linear_to_ulaw(chunk.get(j).copied().unwrap_or(0));
            }
            // Exact size by construction: 160 bytes always encode to 216.
            let written = base64::engine::general_purpose::STANDARD
                .encode_slice(ulaw, out)
                .unwrap_or(0);
            debug_assert_eq!(written, B64_FRAME);
        }
        Self {
            name: name.to_string(),
            b64: b64.into_boxed_slice(),
        }
    }

    /// Load an 8 kHz mono 16-bit WAV.
    pub fn load_wav(name: &str, path: &Path) -> Result<Self, LoadtestError> {
        let bad = |reason: String| LoadtestError::Fixture {
            path: path.to_path_buf(),
            reason,
        };
        let reader = hound::WavReader::open(path).map_err(|e| bad(e.to_string()))?;
        let spec = reader.spec();
        if spec.sample_rate != 8000
            || spec.channels != 1
            || spec.bits_per_sample != 16
            || spec.sample_format != hound::SampleFormat::Int
        {
            return Err(bad(format!(
                "want 8000 Hz mono 16-bit PCM, got {} Hz, {} channel(s), {}-bit {:?}",
                spec.sample_rate, spec.channels, spec.bits_per_sample, spec.sample_format
            )));
        }
        let pcm = reader
            .into_samples::<i16>()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if pcm.is_empty() {
            return Err(bad("no samples".into()));
        }
        Ok(Self::from_pcm(name, &pcm))
    }

    /// Low-level line noise (about −50 dBFS), one second, deterministic.
    pub fn synthetic_noise() -> Self {
        let mut x: u32 = 0x2545_F491;
        let pcm: Vec<i16> = (0..8000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                ((x >> 16) as i16 as i32 * 100 / 32768) as i16
            })
            .collect();
        Self::from_pcm("line_noise (synthetic)", &pcm)
    }

    /// Fixture name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of 20 ms frames.
    pub fn len(&self) -> usize {
        self.b64.len() / B64_FRAME
    }

    /// Never true: a clip has at least one frame.
    pub fn is_empty(&self) -> bool {
        self.b64.is_empty()
    }

    /// Base64 of frame `i` (wraps around).
    pub fn frame(&self, i: usize) -> &[u8] {
        let i = i % self.len();
        &self.b64[i * B64_FRAME..(i + 1) * B64_FRAME]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::g711::ulaw_to_linear;

    #[test]
    fn frames_round_trip_and_pad() {
        let pcm: Vec<i16> = (0..400).map(|i| (i * 50) as i16).collect();
        let c = Clip::from_pcm("t", &pcm);
        assert_eq!(B64_FRAME, 216);
        assert_eq!(c.len(), 3);
        let f = base64::engine::general_purpose::STANDARD
            .decode(c.frame(2))
            .unwrap_or_default();
        assert_eq!(f.len(), 160);
        // Samples 320..400 then silence.
        assert!((i32::from(ulaw_to_linear(f[0])) - 16000).abs() < 600);
        assert_eq!(ulaw_to_linear(f[100]), 0);
        assert_eq!(c.frame(3), c.frame(0));
    }
}
