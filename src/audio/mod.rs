//! Audio: G.711 μ-law / A-law, 20 ms PCM frames, streaming resampling
//! (rubato), Opus (audiopus) and WAV loading.
//!
//! Everything here is pure computation on buffers the caller owns; nothing
//! here does I/O except [`wav`], which reads files at start-up only.

pub mod g711;

/// Telephone sample rate.
pub const PHONE_RATE: u32 = 8000;
/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;
/// Length of one frame in milliseconds.
pub const FRAME_MS: u32 = 20;

/// Milliseconds of 8 kHz audio in `samples` samples.
pub const fn samples_to_ms(samples: usize) -> u64 {
    (samples as u64) / 8
}

/// Samples of 8 kHz audio in `ms` milliseconds.
pub const fn ms_to_samples(ms: u64) -> usize {
    (ms as usize) * 8
}

pub mod wav;

/// An audio processing failure.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// An unreadable or unsupported WAV file.
    #[error("wav: {0}")]
    Wav(String),
}
