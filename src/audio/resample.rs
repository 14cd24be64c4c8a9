//! Streaming sample-rate conversion of mono `i16` audio (rubato underneath).
//!
//! Owns [`StreamResampler`]: one per direction per call (spec telephony §5.5).
//! It keeps the filter state across calls to [`StreamResampler::process`], so
//! audio fed in 20 ms frames has no clicks at frame edges, and it low-pass
//! filters before down-sampling (anti-aliasing). It must never be fed
//! companded bytes: decode μ-law/A-law first.
//!
//! ## How it works
//!
//! Input is buffered into fixed chunks of about 20 ms (rounded up to what
//! the rate pair needs) and each chunk goes through rubato's synchronous FFT
//! resampler ([`rubato::FftFixedInOut`]), whose windowed-sinc filter is one
//! chunk long. The output is made **time-aligned with the input**: the
//! filter's start-up delay ([`StreamResampler::delay_samples`] output
//! samples) is dropped from the front of the stream, and
//! [`StreamResampler::flush`] pushes zeros through to release the tail, so
//! output sample `k` corresponds to input time `k / to_hz` and a whole
//! stream of `n` inputs yields `round(n × to_hz / from_hz)` outputs.
//!
//! Because the output depends only on the concatenated input, splitting the
//! input differently (160, 37 or 480 samples per call) gives bit-identical
//! output.

use rubato::{FftFixedInOut, Resampler};

use super::AudioError;

/// Lowest sample rate accepted.
const MIN_RATE: u32 = 1000;
/// Highest sample rate accepted.
const MAX_RATE: u32 = 384_000;

/// A stateful streaming resampler for one mono stream.
///
/// Drive it with [`process`](Self::process) for each piece of input, and
/// [`flush`](Self::flush) once at the end of the stream (after which it is
/// reset and may be reused for a new stream).
pub struct StreamResampler {
    from_hz: u32,
    to_hz: u32,
    inner: Option<FftStage>,
}

/// The rubato part; absent when `from_hz == to_hz` (pass-through).
struct FftStage {
    resampler: FftFixedInOut<f32>,
    /// Input chunk length the resampler takes.
    chunk_in: usize,
    /// Pending input (always fewer than `chunk_in` samples between calls).
    pending: Vec<f32>,
    /// One-channel input/output buffers reused for every chunk.
    buf_in: Vec<Vec<f32>>,
    buf_out: Vec<Vec<f32>>,
    /// Output samples still to drop from the front (the filter delay).
    to_skip: usize,
    /// Input samples consumed since the start of the stream.
    total_in: u64,
    /// Output samples emitted since the start of the stream.
    total_out: u64,
}

impl std::fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamResampler")
            .field("from_hz", &self.from_hz)
            .field("to_hz", &self.to_hz)
            .field("delay_samples", &self.delay_samples())
            .finish()
    }
}

impl StreamResampler {
    /// A resampler from `from_hz` to `to_hz` (mono).
    ///
    /// Any pair whose chunk stays short is accepted, including 8000⇄16000,
    /// 8000⇄24000, 16000⇄24000, 22050/44100/48000→8000; `from == to` is a
    /// pass-through. Rates outside 1 kHz–384 kHz, or pairs whose smallest
    /// exact chunk is longer than 100 ms of input (e.g. 44101→8000), are
    /// [`AudioError::UnsupportedRate`].
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self, AudioError> {
        for rate in [from_hz, to_hz] {
            if !(MIN_RATE..=MAX_RATE).contains(&rate) {
                return Err(AudioError::UnsupportedRate(rate));
            }
        }
        if from_hz == to_hz {
            return Ok(Self {
                from_hz,
                to_hz,
                inner: None,
            });
        }
        let g = gcd(from_hz, to_hz);
        let min_chunk_in = from_hz / g;
        if min_chunk_in > from_hz / 10 {
            return Err(AudioError::UnsupportedRate(from_hz));
        }
        // About 20 ms of input: the filter is one chunk long, so this sets
        // both its sharpness and the latency.
        let wanted = (from_hz / 50) as usize;
        let resampler = FftFixedInOut::<f32>::new(from_hz as usize, to_hz as usize, wanted, 1)
            .map_err(|e| AudioError::Resample(e.to_string()))?;
        let chunk_in = resampler.input_frames_next();
        let buf_in = vec![vec![0.0; chunk_in]];
        let buf_out = resampler.output_buffer_allocate(true);
        let to_skip = resampler.output_delay();
        Ok(Self {
            from_hz,
            to_hz,
            inner: Some(FftStage {
                resampler,
                chunk_in,
                pending: Vec::with_capacity(chunk_in),
                buf_in,
                buf_out,
                to_skip,
                total_in: 0,
                total_out: 0,
            }),
        })
    }

    /// Input rate in Hz.
    pub fn from_hz(&self) -> u32 {
        self.from_hz
    }

    /// Output rate in Hz.
    pub fn to_hz(&self) -> u32 {
        self.to_hz
    }

    /// Output latency in output samples: how far the output stream lags the
    /// input when input is fed in 20 ms frames (the filter delay, which is
    /// trimmed from the front of the output; 0 for pass-through). Feeding
    /// pieces that do not fill a chunk adds up to one chunk (≈ 20 ms) of
    /// buffering on top.
    pub fn delay_samples(&self) -> usize {
        self.inner
            .as_ref()
            .map_or(0, |s| s.resampler.output_delay())
    }

    /// Feeds `input` (any length) and appends whatever output is ready to
    /// `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let Some(stage) = self.inner.as_mut() else {
            out.extend_from_slice(input);
            return;
        };
        stage.total_in += input.len() as u64;
        let mut rest = input;
        while !rest.is_empty() {
            let take = (stage.chunk_in - stage.pending.len()).min(rest.len());
            let (now, later) = rest.split_at(take);
            stage.pending.extend(now.iter().map(|&s| i16_to_f32(s)));
            rest = later;
            if stage.pending.len() == stage.chunk_in {
                stage.run_chunk(out, u64::MAX);
            }
        }
    }

    /// Ends the stream: pushes zeros through the filter and appends the rest
    /// of the output, so that the whole stream produced
    /// `round(inputs × to_hz / from_hz)` samples. Resets the resampler for
    /// reuse.
    pub fn flush(&mut self, out: &mut Vec<i16>) {
        let (from_hz, to_hz) = (self.from_hz, self.to_hz);
        let Some(stage) = self.inner.as_mut() else {
            return;
        };
        let wanted_total =
            (stage.total_in * u64::from(to_hz) + u64::from(from_hz) / 2) / u64::from(from_hz);
        while stage.total_out < wanted_total {
            stage.pending.resize(stage.chunk_in, 0.0);
            stage.run_chunk(out, wanted_total);
        }
        stage.resampler.reset();
        stage.pending.clear();
        stage.to_skip = stage.resampler.output_delay();
        stage.total_in = 0;
        stage.total_out = 0;
    }
}

impl FftStage {
    /// Resamples the full `pending` chunk, appending at most up to
    /// `limit` total output samples (after the start-up skip).
    fn run_chunk(&mut self, out: &mut Vec<i16>, limit: u64) {
        std::mem::swap(&mut self.buf_in[0], &mut self.pending);
        self.pending.clear();
        let produced =
            match self
                .resampler
                .process_into_buffer(&self.buf_in, &mut self.buf_out, None)
            {
                Ok((_, n)) => n,
                // Cannot happen: the buffers were sized by the resampler itself
                // (`chunk_in` in, `output_buffer_allocate` out). Emit silence of
                // the right length rather than panic so timing is preserved.
                Err(_) => {
                    let n = self.buf_out[0].len();
                    self.buf_out[0].iter_mut().for_each(|s| *s = 0.0);
                    n
                }
            };
        let skip = self.to_skip.min(produced);
        self.to_skip -= skip;
        let room = limit.saturating_sub(self.total_out);
        let keep = ((produced - skip) as u64).min(room) as usize;
        out.extend(
            self.buf_out[0][skip..skip + keep]
                .iter()
                .map(|&s| f32_to_i16(s)),
        );
        self.total_out += keep as u64;
    }
}

/// `i16` → `f32` in [-1, 1).
#[inline]
pub(crate) fn i16_to_f32(s: i16) -> f32 {
    f32::from(s) / 32768.0
}

/// `f32` → `i16`, rounded and clamped (filter overshoot near full scale
/// must saturate, not wrap).
#[inline]
pub(crate) fn f32_to_i16(s: f32) -> i16 {
    (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    /// The rate pairs the media path uses.
    const PAIRS: [(u32, u32); 10] = [
        (8000, 16000),
        (16000, 8000),
        (8000, 24000),
        (24000, 8000),
        (16000, 24000),
        (24000, 16000),
        (22050, 8000),
        (44100, 8000),
        (48000, 8000),
        (8000, 8000),
    ];

    fn sine(rate: u32, hz: f64, amp: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (amp * (2.0 * PI * hz * i as f64 / f64::from(rate)).sin()).round() as i16)
            .collect()
    }

    fn rms_db(x: &[i16]) -> f64 {
        let p: f64 = x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64;
        10.0 * (p.max(1e-9) / (32768.0f64 * 32768.0)).log10()
    }

    /// SNR of `got` against `want` in dB.
    fn snr_db(want: &[i16], got: &[i16]) -> f64 {
        let (mut sig, mut err) = (0.0f64, 0.0f64);
        for (&w, &g) in want.iter().zip(got) {
            sig += f64::from(w).powi(2);
            err += (f64::from(w) - f64::from(g)).powi(2);
        }
        10.0 * (sig / err.max(1e-9)).log10()
    }

    /// Feeds `input` in pieces of `sizes` (cycled), then flushes; returns
    /// the output and the output length after each `process` call.
    fn run(rs: &mut StreamResampler, input: &[i16], sizes: &[usize]) -> (Vec<i16>, Vec<usize>) {
        let mut out = Vec::new();
        let mut edges = Vec::new();
        let mut rest = input;
        let mut k = 0;
        while !rest.is_empty() {
            let n = sizes[k % sizes.len()].min(rest.len());
            rs.process(&rest[..n], &mut out);
            edges.push(out.len());
            rest = &rest[n..];
            k += 1;
        }
        rs.flush(&mut out);
        (out, edges)
    }

    fn max_jump(x: &[i16], at: impl Iterator<Item = usize>) -> i32 {
        at.filter(|&i| i > 0 && i < x.len())
            .map(|i| (i32::from(x[i]) - i32::from(x[i - 1])).abs())
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn round_trip_8k_16k_8k_has_no_clicks_and_high_snr() {
        let input = sine(8000, 440.0, 16000.0, 8000);
        let mut up = StreamResampler::new(8000, 16000).unwrap();
        let mut down = StreamResampler::new(16000, 8000).unwrap();
        let (wide, edges) = run(&mut up, &input, &[160]);
        let (back, back_edges) = run(&mut down, &wide, &[320]);
        assert_eq!(wide.len(), 16000);
        assert_eq!(back.len(), 8000);

        // No clicks: the largest sample-to-sample step within 8 samples of
        // a chunk edge is no larger than the largest step well away from
        // the edges, and neither exceeds a clean sine's steepest step
        // (2π·f/fs·A: ≈ 2765 at 16 kHz, ≈ 5530 at 8 kHz). A resampler rebuilt
        // per chunk fails this (edge steps ≈ 7960 at 16 kHz).
        for (x, edges, rate) in [(&wide, &edges, 16000.0), (&back, &back_edges, 8000.0)] {
            let near_edge = |i: usize| edges.iter().any(|&e| i.abs_diff(e) <= 8);
            let inner = 200..x.len() - 200;
            let at_edges = max_jump(x, inner.clone().filter(|&i| near_edge(i)));
            let elsewhere = max_jump(x, inner.filter(|&i| !near_edge(i)));
            let sine_max = (2.0 * PI * 440.0 / rate * 16000.0 * 1.01) as i32;
            assert!(
                at_edges <= elsewhere + 2 && at_edges <= sine_max,
                "click at chunk edge: {at_edges} vs {elsewhere} elsewhere, sine max {sine_max}"
            );
        }

        // The output is time-aligned with the input (the filter delay is
        // trimmed): the best lag is 0. Skip the first and last 20 ms, where
        // the filter sees the zeros around the stream.
        let (a, b) = (160, 8000 - 160);
        let best_lag = (-8i32..=8)
            .max_by(|&l1, &l2| {
                let s = |l: i32| {
                    snr_db(
                        &input[a..b],
                        &back[(a as i32 + l) as usize..(b as i32 + l) as usize],
                    )
                };
                s(l1).total_cmp(&s(l2))
            })
            .unwrap();
        assert_eq!(best_lag, 0);
        let snr = snr_db(&input[a..b], &back[a..b]);
        eprintln!("8k→16k→8k round trip SNR {snr:.1} dB");
        assert!(snr > 30.0, "round-trip SNR {snr:.1} dB");
    }

    #[test]
    fn speech_round_trips_through_16k_and_24k() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo_request.wav");
        let speech = crate::audio::wav::load_8k(&path).unwrap();
        for wide_rate in [16000, 24000] {
            let mut up = StreamResampler::new(8000, wide_rate).unwrap();
            let mut down = StreamResampler::new(wide_rate, 8000).unwrap();
            let (wide, _) = run(&mut up, &speech, &[160]);
            let (back, _) = run(&mut down, &wide, &[wide_rate as usize / 50]);
            assert_eq!(back.len(), speech.len());
            // Speech at 8 kHz has energy right up to the 4 kHz band edge,
            // where both anti-aliasing filters roll off (flat to ≈ 3.3 kHz,
            // the top of the phone band); that is the residual error. A sum
            // of phone-band tones (300–3300 Hz) shows the passband itself.
            let snr = snr_db(&speech, &back);
            let tones: Vec<i16> = (0..8000)
                .map(|i| {
                    let t = i as f64 / 8000.0;
                    [300.0, 1000.0, 2200.0, 3300.0]
                        .iter()
                        .map(|f| 6000.0 * (2.0 * PI * f * t).sin())
                        .sum::<f64>() as i16
                })
                .collect();
            let (tw, _) = run(&mut up, &tones, &[160]);
            let (tb, _) = run(&mut down, &tw, &[wide_rate as usize / 50]);
            let tone_snr = snr_db(&tones[160..7840], &tb[160..7840]);
            eprintln!(
                "8k→{wide_rate}→8k: speech SNR {snr:.1} dB, 300–3300 Hz tones {tone_snr:.1} dB"
            );
            assert!(snr > 20.0, "speech 8k→{wide_rate}→8k SNR {snr:.1} dB");
            assert!(
                tone_snr > 30.0,
                "tones 8k→{wide_rate}→8k SNR {tone_snr:.1} dB"
            );
        }
    }

    #[test]
    fn any_chunking_gives_the_same_output_as_one_big_chunk() {
        for (from, to) in PAIRS {
            let n = from as usize * 3 / 4 + 17; // 0.75 s, not a chunk multiple
            let input: Vec<i16> = (0..n)
                .map(|i| (((i * 7919) % 30011) as i32 - 15000) as i16)
                .collect();
            let mut rs = StreamResampler::new(from, to).unwrap();
            let (whole, _) = run(&mut rs, &input, &[n]);
            for sizes in [&[160usize][..], &[37], &[480], &[1, 2, 3, 500, 7], &[441]] {
                // `rs` was reset by flush, so reusing it must also match.
                let (pieces, _) = run(&mut rs, &input, sizes);
                assert_eq!(pieces, whole, "{from}→{to} in pieces {sizes:?}");
            }
        }
    }

    #[test]
    fn down_sampling_to_8k_keeps_the_passband_and_rejects_aliases() {
        let n = 24000;
        let mid = 800..7200; // steady state, away from the stream edges
        let mut rs = StreamResampler::new(24000, 8000).unwrap();
        let tone = sine(24000, 3500.0, 16000.0, n);
        let (out, _) = run(&mut rs, &tone, &[480]);
        let kept = rms_db(&out[mid.clone()]) - rms_db(&tone);
        let alias_in = sine(24000, 6000.0, 16000.0, n);
        let (alias, _) = run(&mut rs, &alias_in, &[480]);
        let rejected = rms_db(&alias[mid.clone()]) - rms_db(&alias_in);
        let low = sine(24000, 1000.0, 16000.0, n);
        let (low_out, _) = run(&mut rs, &low, &[480]);
        let low_kept = rms_db(&low_out[mid]) - rms_db(&low);
        eprintln!(
            "24k→8k: 1 kHz {low_kept:+.2} dB, 3.5 kHz {kept:+.2} dB, 6 kHz {rejected:+.1} dB"
        );
        assert!(low_kept.abs() < 0.1, "1 kHz changed by {low_kept:.2} dB");
        assert!(kept.abs() < 1.0, "3.5 kHz changed by {kept:.2} dB");
        assert!(rejected < -30.0, "6 kHz only {rejected:.1} dB down");
    }

    #[test]
    fn output_length_is_input_times_ratio_after_flush() {
        for (from, to) in PAIRS {
            for n in [0usize, 1, 37, 160, 441, 1000, 12345] {
                let input = vec![100i16; n];
                let mut rs = StreamResampler::new(from, to).unwrap();
                let (out, _) = run(&mut rs, &input, &[160]);
                let want = (n as u64 * u64::from(to) + u64::from(from) / 2) / u64::from(from);
                assert_eq!(out.len() as u64, want, "{from}→{to}, {n} in");
            }
        }
    }

    #[test]
    fn identity_is_a_pass_through() {
        let mut rs = StreamResampler::new(8000, 8000).unwrap();
        assert_eq!(rs.delay_samples(), 0);
        let input = sine(8000, 440.0, 10000.0, 1000);
        let (out, _) = run(&mut rs, &input, &[37]);
        assert_eq!(out, input);
    }

    #[test]
    fn delay_is_reported_and_small() {
        for (from, to) in PAIRS {
            let rs = StreamResampler::new(from, to).unwrap();
            let ms = rs.delay_samples() as f64 * 1000.0 / f64::from(to);
            assert!(ms <= 12.0, "{from}→{to}: {ms} ms");
        }
    }

    #[test]
    fn full_scale_input_saturates_instead_of_wrapping() {
        // A full-scale square wave overshoots after filtering (Gibbs).
        let input: Vec<i16> = (0..4000)
            .map(|i| if (i / 20) % 2 == 0 { 32767 } else { -32768 })
            .collect();
        let mut rs = StreamResampler::new(8000, 16000).unwrap();
        let (out, _) = run(&mut rs, &input, &[160]);
        // Wrapping would put large values of the wrong sign next to the peaks.
        for w in out.windows(2) {
            assert!((i32::from(w[0]) - i32::from(w[1])).abs() < 40000);
        }
    }

    #[test]
    fn unsupported_rates_are_errors() {
        for (from, to) in [
            (0, 8000),
            (8000, 0),
            (7, 8000),
            (8000, 1_000_000),
            (44101, 8000),
        ] {
            assert!(
                matches!(
                    StreamResampler::new(from, to),
                    Err(AudioError::UnsupportedRate(_))
                ),
                "{from}→{to}"
            );
        }
    }
}
