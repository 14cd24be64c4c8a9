//! A Piper voice (VITS, exported to ONNX) on ONNX Runtime.
//!
//! Text → clauses → IPA phonemes from libespeak-ng → the voice's phoneme
//! ids (`^`, each phoneme followed by the pad `_`, `$`) → one ONNX run per
//! sentence → float audio at the voice's rate (22,050 Hz for `medium`),
//! peak-normalised, resampled to the phone's 8 kHz.
//!
//! ONNX Runtime is the shared library `scripts/fetch-models` takes out of
//! the `onnxruntime` wheel, loaded at run time (`ort`'s `load-dynamic`), so
//! the build needs no ONNX Runtime at all.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use ort::session::Session;
use ort::value::Tensor;
use unicode_normalization::UnicodeNormalization;

use super::espeak::with_espeak;
use super::Synth;
use crate::audio::resample::StreamResampler;
use crate::audio::PHONE_RATE;

/// The `.onnx.json` beside a voice: what the model needs to be driven.
#[derive(Debug, serde::Deserialize)]
struct VoiceJson {
    audio: AudioJson,
    #[serde(default)]
    inference: InferenceJson,
    phoneme_id_map: HashMap<String, Vec<i64>>,
}

#[derive(Debug, serde::Deserialize)]
struct AudioJson {
    sample_rate: u32,
}

#[derive(Debug, serde::Deserialize)]
#[serde(default)]
struct InferenceJson {
    noise_scale: f32,
    length_scale: f32,
    noise_w: f32,
}

impl Default for InferenceJson {
    fn default() -> Self {
        InferenceJson {
            noise_scale: 0.667,
            length_scale: 1.0,
            noise_w: 0.8,
        }
    }
}

/// The process's ONNX Runtime environment (one per process, by ort's rule).
static ORT: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

fn ort_env(lib: &Path) -> Result<&'static ort::environment::Environment, String> {
    ORT.get_or_init(|| {
        ort::init_from(lib)
            .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", lib.display()))?
            .with_name("frontdesk")
            .with_telemetry(false)
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime: {e}"))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// A loaded voice with a small pool of ONNX sessions (one synthesis each).
pub struct Piper {
    sessions: Mutex<Vec<Session>>,
    free: std::sync::Condvar,
    ids: HashMap<char, Vec<i64>>,
    rate: u32,
    scales: [f32; 3],
}

impl std::fmt::Debug for Piper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Piper").field("rate", &self.rate).finish()
    }
}

impl Piper {
    /// Load `model` (and `model` + `.json`) with ONNX Runtime from `ort_lib`:
    /// `sessions` parallel syntheses of `threads` threads each, speaking at
    /// `length_scale` (above 1 slower) with `variation` times the voice's
    /// own noise (0: the same audio for the same text every time).
    pub fn load(
        model: &Path,
        ort_lib: &Path,
        sessions: usize,
        threads: usize,
        length_scale: f32,
        variation: f32,
    ) -> Result<Piper, String> {
        let json_path = {
            let mut p = model.as_os_str().to_owned();
            p.push(".json");
            std::path::PathBuf::from(p)
        };
        let json = std::fs::read_to_string(&json_path)
            .map_err(|e| format!("cannot read {}: {e}", json_path.display()))?;
        let voice: VoiceJson = serde_json::from_str(&json)
            .map_err(|e| format!("{} is not a Piper voice config: {e}", json_path.display()))?;
        let mut ids = HashMap::new();
        for (k, v) in voice.phoneme_id_map {
            let mut chars = k.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                ids.insert(c, v);
            }
        }
        for needed in ['^', '_', '$'] {
            if !ids.contains_key(&needed) {
                return Err(format!(
                    "{}: phoneme_id_map has no `{needed}`",
                    json_path.display()
                ));
            }
        }
        if !(8000..=48_000).contains(&voice.audio.sample_rate) {
            return Err(format!(
                "{}: sample_rate {} is not a voice rate",
                json_path.display(),
                voice.audio.sample_rate
            ));
        }
        let env = ort_env(ort_lib)?;
        let mut pool = Vec::with_capacity(sessions);
        for _ in 0..sessions.max(1) {
            let s = Session::builder(env)
                .map_err(|e| format!("ONNX Runtime: {e}"))?
                .with_intra_threads(threads.max(1))
                .map_err(|e| format!("ONNX Runtime: {e}"))?
                .with_inter_threads(1)
                .map_err(|e| format!("ONNX Runtime: {e}"))?
                .commit_from_file(model)
                .map_err(|e| format!("cannot load the voice {}: {e}", model.display()))?;
            pool.push(s);
        }
        let inf = voice.inference;
        Ok(Piper {
            sessions: Mutex::new(pool),
            free: std::sync::Condvar::new(),
            ids,
            rate: voice.audio.sample_rate,
            scales: [
                inf.noise_scale * variation,
                inf.length_scale * length_scale,
                inf.noise_w * variation,
            ],
        })
    }

    /// The voice's phoneme ids for one sentence.
    fn sentence_ids(&self, sentence: &str) -> Result<Vec<i64>, String> {
        let phonemes = phonemize(sentence)?;
        let pad = &self.ids[&'_'];
        let mut out = self.ids[&'^'].clone();
        out.extend_from_slice(pad);
        for c in phonemes.nfd() {
            if let Some(id) = self.ids.get(&c) {
                out.extend_from_slice(id);
                out.extend_from_slice(pad);
            }
        }
        out.extend_from_slice(&self.ids[&'$']);
        Ok(out)
    }

    fn run(&self, ids: Vec<i64>) -> Result<Vec<f32>, String> {
        let mut session = {
            let mut pool = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(s) = pool.pop() {
                    break s;
                }
                pool = self.free.wait(pool).unwrap_or_else(|p| p.into_inner());
            }
        };
        let result = (|| {
            let n = ids.len();
            let input = Tensor::from_array(([1usize, n], ids)).map_err(|e| e.to_string())?;
            let lengths =
                Tensor::from_array(([1usize], vec![n as i64])).map_err(|e| e.to_string())?;
            let scales =
                Tensor::from_array(([3usize], self.scales.to_vec())).map_err(|e| e.to_string())?;
            let outputs = session
                .run(ort::inputs![
                    "input" => input,
                    "input_lengths" => lengths,
                    "scales" => scales,
                ])
                .map_err(|e| format!("Piper inference: {e}"))?;
            let (_, audio) = outputs[0]
                .try_extract_tensor::<f32>()
                .map_err(|e| format!("Piper output: {e}"))?;
            Ok(audio.to_vec())
        })();
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(session);
        self.free.notify_one();
        result
    }
}

impl Synth for Piper {
    fn name(&self) -> &'static str {
        "piper"
    }

    fn synth(&self, sentence: &str) -> Result<Vec<i16>, String> {
        let ids = self.sentence_ids(sentence)?;
        if ids.len() <= 3 {
            return Ok(Vec::new());
        }
        let audio = self.run(ids)?;
        let peak = audio.iter().fold(0.0f32, |m, &x| m.max(x.abs())).max(0.01);
        let gain = 32_767.0 * 0.9 / peak;
        let pcm: Vec<i16> = audio
            .iter()
            .map(|&x| (x * gain).clamp(-32_768.0, 32_767.0) as i16)
            .collect();
        to_phone_rate(&pcm, self.rate)
    }
}

/// Resample a whole clip to 8 kHz.
pub fn to_phone_rate(pcm: &[i16], rate: u32) -> Result<Vec<i16>, String> {
    if rate == PHONE_RATE {
        return Ok(pcm.to_vec());
    }
    let mut r = StreamResampler::new(rate, PHONE_RATE).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(pcm.len() * PHONE_RATE as usize / rate as usize + 256);
    r.process(pcm, &mut out);
    r.flush(&mut out);
    Ok(out)
}

/// IPA for a sentence the way Piper was trained on it: espeak-ng's
/// phonemes clause by clause, with each clause's punctuation put back
/// (Debian's libespeak-ng drops it) and a space after inner punctuation.
pub fn phonemize(sentence: &str) -> Result<String, String> {
    let clauses = split_clauses(sentence);
    with_espeak(|e| {
        let mut out = String::new();
        for (text, punct) in &clauses {
            let ph = e.phonemes(text);
            if ph.is_empty() {
                continue;
            }
            if !out.is_empty() && !out.ends_with(' ') {
                out.push(' ');
            }
            out.push_str(&ph);
            if let Some(p) = punct {
                out.push(*p);
                if matches!(p, ',' | ';' | ':') {
                    out.push(' ');
                }
            }
        }
        out.trim_end().to_string()
    })
}

/// Clauses of a sentence with the punctuation that ended each.
fn split_clauses(s: &str) -> Vec<(String, Option<char>)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let next_breaks = chars.get(i + 1).is_none_or(|n| n.is_whitespace());
        if matches!(c, ',' | ';' | ':' | '.' | '?' | '!') && next_breaks {
            if !cur.trim().is_empty() {
                out.push((cur.trim().to_string(), Some(c)));
            }
            cur.clear();
        } else {
            cur.push(c);
        }
    }
    if !cur.trim().is_empty() {
        out.push((cur.trim().to_string(), None));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clauses_keep_their_punctuation() {
        assert_eq!(
            split_clauses("Hi, it's 9.30 now. Ok?"),
            vec![
                ("Hi".to_string(), Some(',')),
                ("it's 9.30 now".to_string(), Some('.')),
                ("Ok".to_string(), Some('?')),
            ]
        );
        assert_eq!(split_clauses("  "), vec![]);
    }

    #[test]
    fn phonemes_carry_punctuation() {
        let p = phonemize("Hello, world.").expect("espeak-ng");
        assert!(p.contains(", "), "{p}");
        assert!(p.ends_with('.'), "{p}");
    }
}
