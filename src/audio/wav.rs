//! WAV loading (temporary: 16-bit 8 kHz mono only; replaced by the full loader).

use std::path::Path;

use super::AudioError;

/// Decode a WAV to 8 kHz mono PCM.
pub fn decode_to_8k(bytes: &[u8]) -> Result<Vec<i16>, AudioError> {
    let r = hound::WavReader::new(std::io::Cursor::new(bytes))
        .map_err(|e| AudioError::Wav(e.to_string()))?;
    r.into_samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AudioError::Wav(e.to_string()))
}

/// Read a WAV file as 8 kHz mono PCM.
pub fn load_8k(path: &Path) -> Result<Vec<i16>, AudioError> {
    let bytes =
        std::fs::read(path).map_err(|e| AudioError::Wav(format!("{}: {e}", path.display())))?;
    decode_to_8k(&bytes).map_err(|e| AudioError::Wav(format!("{}: {e}", path.display())))
}
