//! Audio: G.711 μ-law / A-law, 20 ms PCM frames, streaming resampling
//! (rubato), Opus (audiopus) and WAV loading.
//!
//! Everything here is pure computation on buffers the caller owns; nothing
//! here does I/O except [`wav`], which reads files at start-up only.

pub mod g711;
pub mod ogg;
pub mod opus;
pub mod resample;
pub mod wav;

/// Errors from the audio module. All are about the input or the
/// configuration, none is transient: retrying the same call fails again.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// A WAV file or buffer that is unreadable, truncated, malformed or in an
    /// unsupported encoding; the text says which (and the path, when a file).
    #[error("WAV: {0}")]
    Wav(String),
    /// The resampler could not be built or run.
    #[error("resampling: {0}")]
    Resample(String),
    /// Opus encoder/decoder failure: a bad packet, a wrong frame length or a
    /// libopus error.
    #[error("Opus: {0}")]
    Opus(String),
    /// A sample rate this module does not handle (for Opus: not one of
    /// 8/12/16/24/48 kHz; for resampling: outside 1–384 kHz or an awkward
    /// ratio).
    #[error("unsupported sample rate {0} Hz")]
    UnsupportedRate(u32),
    /// An Ogg stream that is truncated, corrupt (CRC) or not Ogg Opus.
    #[error("Ogg: {0}")]
    Format(String),
    /// Reading or writing a file failed.
    #[error("I/O: {0}")]
    Io(String),
}

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

#[cfg(test)]
mod tests {
    /// Per-call codec and resampler state moves into the call's task.
    #[test]
    fn per_call_state_is_send() {
        fn is_send<T: Send>() {}
        is_send::<super::resample::StreamResampler>();
        is_send::<super::opus::OpusEncoder>();
        is_send::<super::opus::OpusDecoder>();
        is_send::<super::AudioError>();
    }
}
