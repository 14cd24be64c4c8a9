//! Voice activity detection with hysteresis, and the barge-in policy.
//!
//! [`VoiceDetector`] classifies each 20 ms frame at 8 kHz with webrtc-vad
//! (gated by an energy floor, so line hiss is never speech) and turns the
//! frame decisions into [`VadEvent::SpeechStarted`] after `start_ms` of voiced
//! audio and [`VadEvent::SpeechEnded`] after `end_ms` of silence. Timestamps are
//! media time (milliseconds of audio since the stream started), so the
//! detector is deterministic and needs no clock.
//!
//! [`BargeIn`] decides, while the bot is speaking, whether caller sound is an
//! interruption; see its docs. Neither type does I/O.

mod barge_in;

pub use barge_in::{is_backchannel, BargeIn, BargeInDecision};

use crate::audio::FRAME_SAMPLES;
use crate::config::VadConfig;

/// A change in whether the caller is speaking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// `start_ms` of voiced audio seen; `at_ms` is the media time of its first voiced frame.
    SpeechStarted {
        /// Media time (ms) where the speech began.
        at_ms: u64,
    },
    /// `end_ms` of silence seen; `at_ms` is the media time where the last voiced frame ended.
    SpeechEnded {
        /// Media time (ms) where the speech stopped.
        at_ms: u64,
    },
}

/// The classification of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameDecision {
    /// Whether this frame is voiced (after the energy gate).
    pub voiced: bool,
    /// A state change this frame caused.
    pub event: Option<VadEvent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Silence,
    /// Voiced frames seen, not yet `start_ms` of them.
    Pending {
        first_ms: u64,
        voiced_ms: u32,
        gap_ms: u32,
    },
    /// Speaking; `silence_ms` of trailing silence so far.
    Speech {
        last_voiced_end_ms: u64,
        silence_ms: u32,
    },
}

/// Gaps this short inside a pending onset do not reset it (plosives, stops).
const ONSET_GAP_MS: u32 = 40;

/// webrtc-vad's handle is a raw pointer to a heap-allocated C struct with no
/// thread affinity; it is safe to move between threads as long as it is used
/// from one at a time, which `&mut self` guarantees.
struct SendVad(webrtc_vad::Vad);
// SAFETY: libfvad's instance is plain heap memory (no thread-locals, no
// shared globals); ownership moves with the struct and all use is via &mut.
unsafe impl Send for SendVad {}

/// webrtc-vad plus an energy gate plus start/end hysteresis.
pub struct VoiceDetector {
    vad: SendVad,
    start_ms: u32,
    end_ms: u32,
    /// Mean square below which a frame is unvoiced, in i16² units.
    floor_ms: f64,
    state: State,
    /// Media time of the next frame.
    media_ms: u64,
}

impl std::fmt::Debug for VoiceDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceDetector")
            .field("state", &self.state)
            .field("media_ms", &self.media_ms)
            .finish()
    }
}

impl VoiceDetector {
    /// A detector with the thresholds of `[vad]`.
    pub fn new(cfg: &VadConfig) -> Self {
        let mode = match cfg.mode {
            0 => webrtc_vad::VadMode::Quality,
            1 => webrtc_vad::VadMode::LowBitrate,
            2 => webrtc_vad::VadMode::Aggressive,
            _ => webrtc_vad::VadMode::VeryAggressive,
        };
        let vad = webrtc_vad::Vad::new_with_rate_and_mode(webrtc_vad::SampleRate::Rate8kHz, mode);
        let full_scale = 32768.0f64;
        let floor_rms = full_scale * 10f64.powf(cfg.energy_floor_dbfs as f64 / 20.0);
        VoiceDetector {
            vad: SendVad(vad),
            start_ms: cfg.start_ms,
            end_ms: cfg.end_ms,
            floor_ms: floor_rms * floor_rms,
            state: State::Silence,
            media_ms: 0,
        }
    }

    /// Silence that ends a turn from now on.
    pub fn set_end_ms(&mut self, ms: u32) {
        self.end_ms = ms;
    }

    /// Media time (ms) of the next frame.
    pub fn media_ms(&self) -> u64 {
        self.media_ms
    }

    /// Whether the detector currently considers the caller to be speaking.
    pub fn in_speech(&self) -> bool {
        matches!(self.state, State::Speech { .. })
    }

    /// Classify one frame of exactly [`FRAME_SAMPLES`] samples (other lengths
    /// are treated as unvoiced, never a panic).
    pub fn push_frame(&mut self, frame: &[i16]) -> FrameDecision {
        let at = self.media_ms;
        self.media_ms += 20;
        let voiced = self.classify(frame);
        let event = self.step(voiced, at);
        FrameDecision { voiced, event }
    }

    fn classify(&mut self, frame: &[i16]) -> bool {
        if frame.len() != FRAME_SAMPLES {
            return false;
        }
        let energy: i64 = frame.iter().map(|&s| (s as i64) * (s as i64)).sum();
        if (energy as f64 / FRAME_SAMPLES as f64) < self.floor_ms {
            return false;
        }
        // A 160-sample frame at 8 kHz is a length webrtc-vad accepts; treat an error as silence.
        self.vad.0.is_voice_segment(frame).unwrap_or(false)
    }

    fn step(&mut self, voiced: bool, at: u64) -> Option<VadEvent> {
        match (self.state, voiced) {
            (State::Silence, false) => None,
            (State::Silence, true) => {
                self.state = State::Pending {
                    first_ms: at,
                    voiced_ms: 20,
                    gap_ms: 0,
                };
                self.check_onset()
            }
            (
                State::Pending {
                    first_ms,
                    voiced_ms,
                    ..
                },
                true,
            ) => {
                self.state = State::Pending {
                    first_ms,
                    voiced_ms: voiced_ms + 20,
                    gap_ms: 0,
                };
                self.check_onset()
            }
            (
                State::Pending {
                    first_ms,
                    voiced_ms,
                    gap_ms,
                },
                false,
            ) => {
                let gap_ms = gap_ms + 20;
                self.state = if gap_ms > ONSET_GAP_MS {
                    State::Silence
                } else {
                    State::Pending {
                        first_ms,
                        voiced_ms,
                        gap_ms,
                    }
                };
                None
            }
            (State::Speech { .. }, true) => {
                self.state = State::Speech {
                    last_voiced_end_ms: at + 20,
                    silence_ms: 0,
                };
                None
            }
            (
                State::Speech {
                    last_voiced_end_ms,
                    silence_ms,
                },
                false,
            ) => {
                let silence_ms = silence_ms + 20;
                if silence_ms >= self.end_ms {
                    self.state = State::Silence;
                    Some(VadEvent::SpeechEnded {
                        at_ms: last_voiced_end_ms,
                    })
                } else {
                    self.state = State::Speech {
                        last_voiced_end_ms,
                        silence_ms,
                    };
                    None
                }
            }
        }
    }

    fn check_onset(&mut self) -> Option<VadEvent> {
        if let State::Pending {
            first_ms,
            voiced_ms,
            ..
        } = self.state
        {
            if voiced_ms >= self.start_ms {
                self.state = State::Speech {
                    last_voiced_end_ms: self.media_ms,
                    silence_ms: 0,
                };
                return Some(VadEvent::SpeechStarted { at_ms: first_ms });
            }
        }
        None
    }

    /// Treat the caller as speaking from now on (a barge-in decided it was
    /// speech before `start_ms` elapsed); no `SpeechStarted` is emitted.
    pub fn force_speech(&mut self) {
        if !self.in_speech() {
            self.state = State::Speech {
                last_voiced_end_ms: self.media_ms,
                silence_ms: 0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A voiced, speech-like frame: harmonics of a 140 Hz pitch.
    pub(crate) fn voiced_frame(n: usize) -> Vec<i16> {
        (0..FRAME_SAMPLES)
            .map(|i| {
                let t = (n * FRAME_SAMPLES + i) as f64 / 8000.0;
                let s: f64 = (1..=12)
                    .map(|h| (2.0 * std::f64::consts::PI * 140.0 * h as f64 * t).sin() / h as f64)
                    .sum();
                (s * 6000.0) as i16
            })
            .collect()
    }

    fn cfg(start_ms: u32, end_ms: u32) -> VadConfig {
        VadConfig {
            start_ms,
            end_ms,
            ..VadConfig::default()
        }
    }

    fn run(det: &mut VoiceDetector, pattern: &[(bool, usize)]) -> Vec<(u64, VadEvent)> {
        let silent = vec![0i16; FRAME_SAMPLES];
        let mut out = vec![];
        let mut n = 0;
        for &(voiced, frames) in pattern {
            for _ in 0..frames {
                let at = det.media_ms();
                let f = if voiced {
                    voiced_frame(n)
                } else {
                    silent.clone()
                };
                n += 1;
                if let Some(e) = det.push_frame(&f).event {
                    out.push((at, e));
                }
            }
        }
        out
    }

    #[test]
    fn speech_starts_after_start_ms_and_ends_after_end_ms() {
        let mut det = VoiceDetector::new(&cfg(200, 300));
        let events = run(&mut det, &[(false, 5), (true, 30), (false, 20)]);
        assert_eq!(events.len(), 2, "{events:?}");
        // Voiced from 100 ms; the detector may need a frame or two to lock on.
        let (seen_at, VadEvent::SpeechStarted { at_ms }) = events[0] else {
            panic!("{events:?}")
        };
        assert!((100..=140).contains(&at_ms), "{at_ms}");
        assert_eq!(
            seen_at,
            at_ms + 180,
            "reported on the frame completing 200 ms"
        );
        let (seen_at, VadEvent::SpeechEnded { at_ms }) = events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(at_ms, 700, "speech ended where the voiced frames ended");
        assert_eq!(seen_at, 700 + 280, "after 300 ms of silence");
    }

    #[test]
    fn bursts_shorter_than_start_ms_are_not_speech() {
        let mut det = VoiceDetector::new(&cfg(200, 300));
        let events = run(&mut det, &[(true, 5), (false, 10), (true, 4), (false, 20)]);
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn quiet_noise_is_never_speech() {
        let mut det = VoiceDetector::new(&cfg(200, 300));
        // Pseudo-random hiss at about −60 dBFS.
        let mut x: u32 = 12345;
        for _ in 0..200 {
            let f: Vec<i16> = (0..FRAME_SAMPLES)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    ((x >> 16) as i16 as i32 / 1000) as i16
                })
                .collect();
            let d = det.push_frame(&f);
            assert!(!d.voiced && d.event.is_none());
        }
    }

    #[test]
    fn wrong_length_frames_are_unvoiced() {
        let mut det = VoiceDetector::new(&cfg(20, 20));
        assert!(!det.push_frame(&voiced_frame(0)[..100]).voiced);
        assert!(!det.push_frame(&[]).voiced);
    }
}
