//! Opus encode/decode of mono 20 ms frames (libopus through audiopus).
//!
//! Owns [`OpusEncoder`] and [`OpusDecoder`]: thin, panic-free wrappers that
//! fix the choices frontdesk makes (mono, VoIP application, 20 ms frames on
//! the encode side) and turn every libopus failure — wrong frame length,
//! garbage packet — into [`AudioError::Opus`]. Resampling to a rate Opus
//! takes is the caller's job ([`super::resample`]).

use audiopus::coder::{Decoder, Encoder};
use audiopus::{Application, Channels, SampleRate};

use super::AudioError;

/// Largest packet we produce; libopus recommends 4000 bytes as "enough".
const MAX_PACKET: usize = 4000;

fn opus_rate(sample_rate: u32) -> Result<SampleRate, AudioError> {
    Ok(match sample_rate {
        8000 => SampleRate::Hz8000,
        12000 => SampleRate::Hz12000,
        16000 => SampleRate::Hz16000,
        24000 => SampleRate::Hz24000,
        48000 => SampleRate::Hz48000,
        other => return Err(AudioError::UnsupportedRate(other)),
    })
}

fn opus_err(what: &str, e: audiopus::Error) -> AudioError {
    AudioError::Opus(format!("{what}: {e}"))
}

/// Mono Opus encoder (VoIP application) taking one 20 ms frame per call.
pub struct OpusEncoder {
    inner: Encoder,
    frame_samples: usize,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("frame_samples", &self.frame_samples)
            .finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// An encoder at `sample_rate` (8000, 12000, 16000, 24000 or 48000 Hz;
    /// anything else is [`AudioError::UnsupportedRate`]).
    pub fn new(sample_rate: u32) -> Result<Self, AudioError> {
        let rate = opus_rate(sample_rate)?;
        let inner = Encoder::new(rate, Channels::Mono, Application::Voip)
            .map_err(|e| opus_err("creating encoder", e))?;
        Ok(Self {
            inner,
            frame_samples: (sample_rate / 50) as usize,
            scratch: vec![0; MAX_PACKET],
        })
    }

    /// Samples in the one frame length [`encode`](Self::encode) accepts
    /// (20 ms at this rate).
    pub fn frame_samples(&self) -> usize {
        self.frame_samples
    }

    /// Samples of look-ahead the encoder adds (the codec delay a decoded
    /// stream is shifted by), at this encoder's rate.
    pub fn lookahead(&self) -> Result<usize, AudioError> {
        self.inner
            .lookahead()
            .map(|n| n as usize)
            .map_err(|e| opus_err("reading look-ahead", e))
    }

    /// Encodes exactly one 20 ms frame `pcm`, appends the packet to `out`
    /// and returns its length in bytes. Any other length is an
    /// [`AudioError::Opus`].
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<usize, AudioError> {
        if pcm.len() != self.frame_samples {
            return Err(AudioError::Opus(format!(
                "encode takes one 20 ms frame of {} samples, got {}",
                self.frame_samples,
                pcm.len()
            )));
        }
        let n = self
            .inner
            .encode(pcm, &mut self.scratch)
            .map_err(|e| opus_err("encoding", e))?;
        out.extend_from_slice(&self.scratch[..n]);
        Ok(n)
    }
}

/// Mono Opus decoder; accepts packets of any valid duration (2.5–120 ms).
pub struct OpusDecoder {
    inner: Decoder,
    sample_rate: u32,
    scratch: Vec<i16>,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder")
            .field("sample_rate", &self.sample_rate)
            .finish_non_exhaustive()
    }
}

impl OpusDecoder {
    /// A decoder producing mono audio at `sample_rate` (8000, 12000, 16000,
    /// 24000 or 48000 Hz).
    pub fn new(sample_rate: u32) -> Result<Self, AudioError> {
        let rate = opus_rate(sample_rate)?;
        let inner =
            Decoder::new(rate, Channels::Mono).map_err(|e| opus_err("creating decoder", e))?;
        Ok(Self {
            inner,
            sample_rate,
            // 120 ms, the longest an Opus packet can be.
            scratch: vec![0; (sample_rate as usize) * 120 / 1000],
        })
    }

    /// Decodes one packet, appends the samples to `out` and returns how many.
    /// An empty or malformed packet is an [`AudioError::Opus`] and leaves
    /// `out` unchanged.
    pub fn decode(&mut self, packet: &[u8], out: &mut Vec<i16>) -> Result<usize, AudioError> {
        if packet.is_empty() {
            return Err(AudioError::Opus("empty packet".into()));
        }
        let n = self
            .inner
            .decode(Some(packet), &mut self.scratch[..], false)
            .map_err(|e| opus_err("decoding", e))?;
        let n = n.min(self.scratch.len());
        out.extend_from_slice(&self.scratch[..n]);
        Ok(n)
    }

    /// Packet-loss concealment: appends one 20 ms frame synthesised from the
    /// decoder's state (fading to silence over repeated losses) and returns
    /// how many samples.
    pub fn decode_lost(&mut self, out: &mut Vec<i16>) -> Result<usize, AudioError> {
        let frame = (self.sample_rate / 50) as usize;
        let n = self
            .inner
            .decode(None::<&[u8]>, &mut self.scratch[..frame], false)
            .map_err(|e| opus_err("concealing a lost packet", e))?;
        let n = n.min(frame);
        out.extend_from_slice(&self.scratch[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::resample::StreamResampler;
    use crate::audio::wav::load_8k;

    fn fixture_16k(name: &str) -> Vec<i16> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name);
        let pcm8 = load_8k(&path).unwrap();
        let mut rs = StreamResampler::new(8000, 16000).unwrap();
        let mut out = Vec::new();
        rs.process(&pcm8, &mut out);
        rs.flush(&mut out);
        out
    }

    /// Normalised cross-correlation of `a` with `b` over their common length.
    fn ncc(a: &[i16], b: &[i16]) -> f64 {
        let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
        for (&x, &y) in a.iter().zip(b) {
            let (x, y) = (f64::from(x), f64::from(y));
            ab += x * y;
            aa += x * x;
            bb += y * y;
        }
        ab / (aa * bb).sqrt().max(1e-9)
    }

    /// Mean over 20 ms segments with speech (> −40 dBFS) of each segment's
    /// SNR clamped to [−10, 35] dB (the usual segmental-SNR convention).
    fn seg_snr_db(want: &[i16], got: &[i16], seg: usize) -> f64 {
        let mut sum = 0.0;
        let mut n = 0;
        for (w, g) in want.chunks_exact(seg).zip(got.chunks_exact(seg)) {
            let sig: f64 = w.iter().map(|&x| f64::from(x).powi(2)).sum();
            if sig / (seg as f64) < (32768.0f64 * 0.01).powi(2) {
                continue;
            }
            let err: f64 = w
                .iter()
                .zip(g)
                .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
                .sum();
            sum += (10.0 * (sig / err.max(1e-9)).log10()).clamp(-10.0, 35.0);
            n += 1;
        }
        sum / f64::from(n.max(1))
    }

    #[test]
    fn speech_survives_an_opus_round_trip_at_16k() {
        let speech = fixture_16k("demo_request.wav");
        let mut enc = OpusEncoder::new(16000).unwrap();
        let mut dec = OpusDecoder::new(16000).unwrap();
        let frame = enc.frame_samples();
        assert_eq!(frame, 320);
        let mut decoded = Vec::new();
        let mut bytes = 0;
        for pcm in speech.chunks(frame) {
            let mut padded = pcm.to_vec();
            padded.resize(frame, 0);
            let mut packet = Vec::new();
            let n = enc.encode(&padded, &mut packet).unwrap();
            assert_eq!(n, packet.len());
            bytes += n;
            assert_eq!(dec.decode(&packet, &mut decoded).unwrap(), frame);
        }
        let kbps = bytes as f64 * 8.0 / (speech.len() as f64 / 16000.0) / 1000.0;

        // The decoded stream lags by the encoder's look-ahead; find the best
        // lag near it and check it is that.
        let lookahead = enc.lookahead().unwrap();
        let (lag, corr) = (0..400)
            .map(|l| (l, ncc(&speech, &decoded[l..])))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        let seg = seg_snr_db(&speech, &decoded[lag..], 320);
        eprintln!(
            "Opus 16 kHz: {kbps:.1} kbit/s, look-ahead {lookahead}, best lag {lag}, \
             NCC {corr:.3}, segmental SNR {seg:.1} dB"
        );
        assert!(
            lag.abs_diff(lookahead) <= 2,
            "lag {lag} vs look-ahead {lookahead}"
        );
        // Opus is a perceptual codec: it keeps the waveform only roughly, so
        // SNR is modest even when it sounds transparent. A different
        // utterance (or noise) aligned like this correlates < 0.1.
        assert!(corr > 0.9, "NCC {corr:.3}");
        assert!(seg > 5.0, "segmental SNR {seg:.1} dB");
        let other = ncc(&fixture_16k("pricing.wav"), &decoded[lag..]);
        eprintln!("NCC against a different utterance: {other:.3}");
        assert!(other.abs() < 0.2);
    }

    #[test]
    fn every_supported_rate_encodes_and_decodes_a_frame() {
        for rate in [8000u32, 12000, 16000, 24000, 48000] {
            let mut enc = OpusEncoder::new(rate).unwrap();
            let mut dec = OpusDecoder::new(rate).unwrap();
            let pcm: Vec<i16> = (0..rate / 50)
                .map(|i| ((i as f64 * 0.1).sin() * 8000.0) as i16)
                .collect();
            let mut packet = Vec::new();
            enc.encode(&pcm, &mut packet).unwrap();
            let mut out = Vec::new();
            assert_eq!(dec.decode(&packet, &mut out).unwrap(), pcm.len());
            assert_eq!(dec.decode_lost(&mut out).unwrap(), pcm.len());
            assert_eq!(out.len(), 2 * pcm.len());
        }
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(matches!(
            OpusEncoder::new(44100),
            Err(AudioError::UnsupportedRate(44100))
        ));
        assert!(matches!(
            OpusDecoder::new(22050),
            Err(AudioError::UnsupportedRate(22050))
        ));
        let mut enc = OpusEncoder::new(16000).unwrap();
        let mut packet = Vec::new();
        for len in [0, 160, 319, 321, 640] {
            assert!(
                matches!(
                    enc.encode(&vec![0; len], &mut packet),
                    Err(AudioError::Opus(_))
                ),
                "{len} samples"
            );
        }
        assert!(packet.is_empty());
        let mut dec = OpusDecoder::new(16000).unwrap();
        let mut out = Vec::new();
        // Empty; code-3 packet claiming 63 frames (> 120 ms); code-1 packet
        // whose two "equal" frames cannot split an odd payload; code-3 VBR
        // packet whose frame-length byte is cut off.
        for garbage in [&[][..], &[0xFF, 0xFF], &[0x01, 0x00], &[0x7B, 0x83, 0xFF]] {
            assert!(
                matches!(dec.decode(garbage, &mut out), Err(AudioError::Opus(_))),
                "{garbage:?}"
            );
        }
        assert!(out.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_packets_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut dec = OpusDecoder::new(8000).unwrap();
            let mut out = Vec::new();
            if let Ok(n) = dec.decode(&bytes, &mut out) {
                proptest::prop_assert!(n <= 960 && out.len() == n);
            }
        }
    }
}
