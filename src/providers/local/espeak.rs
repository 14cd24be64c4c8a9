//! libespeak-ng, through its C API: IPA phonemes for the Piper voice, and
//! its own (robotic) synthesis for when no voice is installed.
//!
//! The library keeps global state and is not thread-safe, so every call
//! goes through one process-wide mutex ([`with_espeak`]). It is initialised
//! once, in synchronous mode (no audio device), at 22,050 Hz.

use std::ffi::{c_char, c_int, c_short, c_uint, c_void, CStr, CString};
use std::sync::{Mutex, OnceLock};

#[link(name = "espeak-ng")]
extern "C" {
    fn espeak_Initialize(
        output: c_int,
        buflength: c_int,
        path: *const c_char,
        options: c_int,
    ) -> c_int;
    fn espeak_SetVoiceByName(name: *const c_char) -> c_int;
    fn espeak_TextToPhonemes(
        textptr: *mut *const c_void,
        textmode: c_int,
        phonememode: c_int,
    ) -> *const c_char;
    fn espeak_SetSynthCallback(cb: Option<SynthCallback>);
    fn espeak_Synth(
        text: *const c_void,
        size: usize,
        position: c_uint,
        position_type: c_int,
        end_position: c_uint,
        flags: c_uint,
        unique_identifier: *mut c_uint,
        user_data: *mut c_void,
    ) -> c_int;
    fn espeak_Synchronize() -> c_int;
}

type SynthCallback = unsafe extern "C" fn(*mut c_short, c_int, *mut c_void) -> c_int;

/// `AUDIO_OUTPUT_SYNCHRONOUS`: audio comes back through the callback, no device.
const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 2;
/// `espeakINITIALIZE_DONT_EXIT`: report a missing data folder instead of exiting.
const INITIALIZE_DONT_EXIT: c_int = 0x8000;
/// `espeakCHARS_UTF8`.
const CHARS_UTF8: c_int = 1;
/// Phoneme mode bit 1: IPA as UTF-8.
const PHONEMES_IPA: c_int = 0x02;
/// `POS_CHARACTER`.
const POS_CHARACTER: c_int = 1;
/// `EE_OK`.
const EE_OK: c_int = 0;

/// The rate espeak-ng synthesises at.
pub const ESPEAK_RATE: u32 = 22_050;

/// The handle to the initialised library; only reachable under the lock.
pub struct Espeak {
    _private: (),
}

static ESPEAK: OnceLock<Result<Mutex<Espeak>, String>> = OnceLock::new();

/// Run `f` with the library, initialising it on first use. Errors when
/// libespeak-ng cannot find its data or the `en-us` voice.
pub fn with_espeak<T>(f: impl FnOnce(&mut Espeak) -> T) -> Result<T, String> {
    let lib = ESPEAK.get_or_init(|| {
        // SAFETY: called once, under OnceLock, before any other espeak call.
        let rate = unsafe {
            espeak_Initialize(
                AUDIO_OUTPUT_SYNCHRONOUS,
                200,
                std::ptr::null(),
                INITIALIZE_DONT_EXIT,
            )
        };
        if rate <= 0 {
            return Err("libespeak-ng could not initialise (is espeak-ng-data installed?)".into());
        }
        // SAFETY: the library is initialised; the name is a valid C string.
        if unsafe { espeak_SetVoiceByName(c"en-us".as_ptr()) } != EE_OK {
            return Err("libespeak-ng has no `en-us` voice".into());
        }
        // SAFETY: a plain function pointer that lives for the whole process.
        unsafe { espeak_SetSynthCallback(Some(collect_audio)) };
        Ok(Mutex::new(Espeak { _private: () }))
    });
    match lib {
        Ok(m) => {
            let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
            Ok(f(&mut g))
        }
        Err(e) => Err(e.clone()),
    }
}

/// Where [`collect_audio`] appends; set only while [`Espeak::speak`] runs.
struct Sink {
    samples: Vec<i16>,
}

unsafe extern "C" fn collect_audio(wav: *mut c_short, n: c_int, events: *mut c_void) -> c_int {
    // The first event carries the user data passed to espeak_Synth.
    // Layout (speak_lib.h espeak_EVENT): type, unique_identifier,
    // text_position, length, audio_position, sample (6 × int), then user_data.
    if events.is_null() || wav.is_null() || n <= 0 {
        return 0;
    }
    let user = *(events.cast::<u8>().add(6 * std::mem::size_of::<c_int>()) as *const *mut Sink);
    if let Some(sink) = user.as_mut() {
        sink.samples
            .extend_from_slice(std::slice::from_raw_parts(wav, n as usize));
    }
    0
}

impl Espeak {
    /// IPA phonemes of one clause (no punctuation of its own), as espeak-ng
    /// renders them for `en-us`.
    pub fn phonemes(&mut self, clause: &str) -> String {
        let Ok(text) = CString::new(clause.replace('\0', " ")) else {
            return String::new();
        };
        let mut out = String::new();
        let mut ptr: *const c_void = text.as_ptr().cast();
        // espeak advances `ptr` clause by clause and sets it to NULL at the end.
        while !ptr.is_null() {
            // SAFETY: `ptr` points into `text`, NUL-terminated, alive here.
            let ph = unsafe { espeak_TextToPhonemes(&mut ptr, CHARS_UTF8, PHONEMES_IPA) };
            if ph.is_null() {
                break;
            }
            // SAFETY: espeak returns a NUL-terminated static buffer.
            let s = unsafe { CStr::from_ptr(ph) }.to_string_lossy();
            let s = s.trim();
            if !s.is_empty() {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(s);
            }
        }
        out
    }

    /// espeak-ng's own voice: 16-bit PCM at [`ESPEAK_RATE`].
    pub fn speak(&mut self, text: &str) -> Vec<i16> {
        let Ok(c) = CString::new(text.replace('\0', " ")) else {
            return Vec::new();
        };
        let mut sink = Sink {
            samples: Vec::new(),
        };
        let bytes = c.as_bytes_with_nul();
        // SAFETY: synchronous mode: the callback runs inside espeak_Synth,
        // while `sink` is alive; the lock keeps other threads out.
        unsafe {
            espeak_Synth(
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                POS_CHARACTER,
                0,
                CHARS_UTF8 as c_uint,
                std::ptr::null_mut(),
                (&mut sink as *mut Sink).cast(),
            );
            espeak_Synchronize();
        }
        sink.samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phonemes_are_ipa() {
        let ph = with_espeak(|e| e.phonemes("hello world")).expect("espeak-ng");
        assert!(ph.contains('h') && ph.contains('w'), "{ph}");
        assert!(!ph.is_ascii(), "IPA expected: {ph}");
    }

    #[test]
    fn own_voice_makes_audio() {
        let pcm = with_espeak(|e| e.speak("Good morning.")).expect("espeak-ng");
        // About half a second or more of sound at 22,050 Hz.
        assert!(pcm.len() > ESPEAK_RATE as usize / 3, "{}", pcm.len());
        assert!(pcm.iter().any(|&s| s.unsigned_abs() > 1000));
    }
}
