//! The embedded offline speech stack: whisper.cpp for STT, a Piper voice on
//! ONNX Runtime for TTS (espeak-ng's own voice when no Piper voice is
//! installed). No key, no network; the model files come from
//! `scripts/fetch-models` into the models folder (`FRONTDESK_MODELS_DIR`,
//! default `models/`).
//!
//! Both engines are loaded once per process and shared by every call; the
//! heavy work runs on blocking threads from bounded pools, so a call task
//! never computes speech and a burst of calls queues instead of
//! oversubscribing the cores.

pub mod bench;
pub mod espeak;
pub mod piper;
pub mod whisper;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{
    ProviderError, ProviderSetupError, Stt, SttEvent, SttInput, SttParams, SttSession, Tts,
    TtsEvent, TtsInput, TtsParams, TtsSession,
};
use crate::audio::PHONE_RATE;
use crate::config::{env, Env, LocalSttConfig, LocalTtsConfig};

/// The ONNX Runtime library `scripts/fetch-models` installs.
pub const ORT_LIB: &str = "libonnxruntime.so";

/// The models folder: `FRONTDESK_MODELS_DIR`, else `models/` in the working
/// directory, else `models/` of the checkout the binary was built in
/// (`target/<profile>/frontdesk` → `../../models`).
pub fn models_dir(env: &Env) -> PathBuf {
    if let Some(d) = env.raw(env::MODELS_DIR).filter(|d| !d.trim().is_empty()) {
        return PathBuf::from(d);
    }
    let here = PathBuf::from("models");
    if here.is_dir() {
        return here;
    }
    if let Some(up) = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.join("models")))
        .filter(|d| d.is_dir())
    {
        return up;
    }
    here
}

fn setup_error(key: &str, message: impl Into<String>) -> ProviderSetupError {
    ProviderSetupError {
        key: key.to_string(),
        message: message.into(),
    }
}

fn missing(key: &str, what: &str, path: &Path) -> ProviderSetupError {
    setup_error(
        key,
        format!(
            "{what} {} is missing; run scripts/fetch-models (or set {} to the folder that has it)",
            path.display(),
            env::MODELS_DIR
        ),
    )
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

// ------------------------------------------------------------------ STT

/// Loaded models, shared by every provider value that names the same file
/// (a config reload or a chain must not load a second 270 MB copy).
static WHISPERS: Mutex<Vec<(PathBuf, Arc<whisper::Whisper>)>> = Mutex::new(Vec::new());

/// `kind = "local"` STT.
#[derive(Debug, Clone)]
pub struct LocalStt {
    engine: Arc<whisper::Whisper>,
    max_samples: usize,
}

impl LocalStt {
    fn model_path(cfg: &LocalSttConfig, env: &Env) -> PathBuf {
        if cfg.model.is_absolute() {
            cfg.model.clone()
        } else {
            models_dir(env).join(&cfg.model)
        }
    }

    /// Whether the model file is there (without loading it).
    pub fn check(cfg: &LocalSttConfig, env: &Env, key: &str) -> Result<(), ProviderSetupError> {
        let path = Self::model_path(cfg, env);
        if path.is_file() {
            Ok(())
        } else {
            Err(missing(key, "the Whisper model", &path))
        }
    }

    /// Load the model now (start-up), or say which file is missing.
    pub fn load(
        cfg: &LocalSttConfig,
        env: &Env,
        key: &str,
    ) -> Result<LocalStt, ProviderSetupError> {
        Self::check(cfg, env, key)?;
        let path = Self::model_path(cfg, env);
        let mut cache = WHISPERS.lock().unwrap_or_else(|p| p.into_inner());
        let engine = match cache.iter().find(|(p, _)| *p == path) {
            Some((_, e)) => e.clone(),
            None => {
                let decoders = cfg.decoders.map_or_else(cores, |d| d as usize);
                let e = Arc::new(
                    whisper::Whisper::load(
                        &path,
                        decoders,
                        cfg.threads as usize,
                        cfg.fit_audio_ctx,
                        cfg.flash_attn,
                    )
                    .map_err(|m| setup_error(key, m))?,
                );
                cache.push((path, e.clone()));
                e
            }
        };
        Ok(LocalStt {
            engine,
            max_samples: cfg.max_utterance_ms as usize * PHONE_RATE as usize / 1000,
        })
    }

    /// The shared engine (benchmarks decode with it directly).
    pub fn engine(&self) -> &Arc<whisper::Whisper> {
        &self.engine
    }
}

/// Sound above this RMS level (dBFS) counts as the caller's voice when
/// trimming an utterance; the VAD's own floor is −50.
const VOICE_DBFS: f64 = -42.0;
/// Audio kept before the first voiced frame and after the last.
const PAD_SAMPLES: usize = PHONE_RATE as usize * 3 / 10;

fn rms_dbfs(frame: &[i16]) -> f64 {
    if frame.is_empty() {
        return -120.0;
    }
    let sum: f64 = frame.iter().map(|&s| (s as f64) * (s as f64)).sum();
    let rms = (sum / frame.len() as f64).sqrt() / 32_768.0;
    20.0 * rms.max(1e-6).log10()
}

/// The audio of one utterance as it arrives: leading silence is kept only
/// as a short pre-roll, the length is capped, and trailing silence is cut
/// when it is taken.
#[derive(Debug, Default)]
struct Utterance {
    pcm: Vec<i16>,
    /// Index just past the last voiced frame (0: none yet).
    voiced_end: usize,
    voiced_samples: usize,
}

impl Utterance {
    fn push(&mut self, frame: &[i16], max: usize) {
        let voiced = rms_dbfs(frame) > VOICE_DBFS;
        if self.voiced_samples == 0 && !voiced {
            // Still before the speech: keep only the pre-roll.
            self.pcm.extend_from_slice(frame);
            if self.pcm.len() > PAD_SAMPLES {
                let cut = self.pcm.len() - PAD_SAMPLES;
                self.pcm.drain(..cut);
            }
            return;
        }
        self.pcm.extend_from_slice(frame);
        if voiced {
            self.voiced_samples += frame.len();
            self.voiced_end = self.pcm.len();
        }
        if self.pcm.len() > max {
            let cut = self.pcm.len() - max;
            self.pcm.drain(..cut);
            self.voiced_end = self.voiced_end.saturating_sub(cut);
        }
    }

    /// The speech with its padding, or `None` when there was none worth
    /// decoding (under 100 ms of voice).
    fn take(&mut self) -> Option<Vec<i16>> {
        let done = std::mem::take(self);
        if done.voiced_samples < PHONE_RATE as usize / 10 {
            return None;
        }
        let mut pcm = done.pcm;
        pcm.truncate((done.voiced_end + PAD_SAMPLES).min(pcm.len()));
        Some(pcm)
    }

    /// The speech so far, for a peek, leaving it in place.
    fn snapshot(&self) -> Option<Vec<i16>> {
        if self.voiced_samples < PHONE_RATE as usize / 10 {
            return None;
        }
        let end = (self.voiced_end + PAD_SAMPLES).min(self.pcm.len());
        Some(self.pcm[..end].to_vec())
    }
}

/// One decode for a call's session, in order.
enum Job {
    /// The end of an utterance (`None`: it held no speech).
    Final(Option<Vec<i16>>),
    /// A peek at the sound so far (`None`: no speech yet).
    Peek(Option<Vec<i16>>),
}

#[async_trait]
impl Stt for LocalStt {
    fn name(&self) -> &'static str {
        "local"
    }

    /// Whisper decodes whole stretches of audio: words come at the end of an
    /// utterance, or on a peek.
    fn interims(&self) -> bool {
        false
    }

    async fn open(&self, params: SttParams) -> Result<SttSession, ProviderError> {
        if params.sample_rate != PHONE_RATE {
            return Err(ProviderError::Permanent {
                provider: "local",
                message: format!("expects {PHONE_RATE} Hz audio, not {}", params.sample_rate),
            });
        }
        // Audio arrives every 20 ms while a decode may take a few hundred:
        // room for 5 s of frames.
        let (in_tx, mut in_rx) = mpsc::channel::<SttInput>(256);
        let (ev_tx, ev_rx) = mpsc::channel(16);
        // Decodes run one after another per call, in order, while the
        // session keeps taking audio.
        let (job_tx, mut job_rx) = mpsc::unbounded_channel::<Job>();
        let engine = self.engine.clone();
        let decode_tx = ev_tx.clone();
        tokio::spawn(async move {
            while let Some(job) = job_rx.recv().await {
                let ev = match job {
                    Job::Final(None) => SttEvent::Final {
                        text: String::new(),
                        end_of_utterance: true,
                    },
                    Job::Final(Some(pcm)) => match engine.transcribe(pcm).await {
                        Ok(text) => SttEvent::Final {
                            text,
                            end_of_utterance: true,
                        },
                        Err(message) => {
                            let _ = decode_tx
                                .send(SttEvent::Error(ProviderError::Transient {
                                    provider: "local",
                                    message,
                                    retry_after: None,
                                }))
                                .await;
                            return;
                        }
                    },
                    // Every peek is answered, with no words when there was
                    // no speech or the decode failed (the end of the
                    // utterance still gets its own decode).
                    Job::Peek(None) => SttEvent::Interim(String::new()),
                    Job::Peek(Some(pcm)) => {
                        SttEvent::Interim(engine.peek(pcm).await.unwrap_or_default())
                    }
                };
                if decode_tx.send(ev).await.is_err() {
                    return;
                }
            }
        });
        let max = self.max_samples;
        tokio::spawn(async move {
            let mut utt = Utterance::default();
            while let Some(input) = in_rx.recv().await {
                let job = match input {
                    SttInput::Audio(frame) => {
                        utt.push(&frame, max);
                        continue;
                    }
                    SttInput::Forget => {
                        utt = Utterance::default();
                        continue;
                    }
                    SttInput::Peek => Job::Peek(utt.snapshot()),
                    SttInput::EndOfUtterance => Job::Final(utt.take()),
                };
                if job_tx.send(job).is_err() {
                    return;
                }
            }
            drop(ev_tx);
        });
        Ok(SttSession {
            input: in_tx,
            events: ev_rx,
        })
    }
}

// ------------------------------------------------------------------ TTS

/// Text to 8 kHz speech, one sentence at a time, on the calling (blocking) thread.
pub trait Synth: Send + Sync {
    /// `piper` or `espeak-ng`.
    fn name(&self) -> &'static str;
    /// One sentence (or clause) to 8 kHz PCM.
    fn synth(&self, sentence: &str) -> Result<Vec<i16>, String>;
}

/// espeak-ng's own voice.
#[derive(Debug, Default)]
pub struct EspeakVoice;

impl Synth for EspeakVoice {
    fn name(&self) -> &'static str {
        "espeak-ng"
    }

    fn synth(&self, sentence: &str) -> Result<Vec<i16>, String> {
        let pcm = espeak::with_espeak(|e| e.speak(sentence))?;
        piper::to_phone_rate(&pcm, espeak::ESPEAK_RATE)
    }
}

/// Synthesised sentences by text, oldest dropped first.
struct Cache {
    cap: usize,
    map: HashMap<String, Arc<[i16]>>,
    order: VecDeque<String>,
}

impl Cache {
    fn get(&self, k: &str) -> Option<Arc<[i16]>> {
        self.map.get(k).cloned()
    }

    fn put(&mut self, k: String, v: Arc<[i16]>) {
        if self.cap == 0 || self.map.contains_key(&k) {
            return;
        }
        while self.map.len() >= self.cap {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(k.clone());
        self.map.insert(k, v);
    }
}

/// `kind = "local"` TTS.
#[derive(Clone)]
pub struct LocalTts {
    voice: Arc<dyn Synth>,
    cache: Arc<Mutex<Cache>>,
    permits: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for LocalTts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTts")
            .field("voice", &self.voice.name())
            .finish()
    }
}

impl LocalTts {
    /// Load the Piper voice now (start-up); with its files absent, fall back
    /// to espeak-ng with a warning. A present but broken voice is an error.
    pub fn load(
        cfg: &LocalTtsConfig,
        env: &Env,
        key: &str,
    ) -> Result<LocalTts, ProviderSetupError> {
        let dir = models_dir(env);
        let model = dir.join(format!("{}.onnx", cfg.voice));
        let json = dir.join(format!("{}.onnx.json", cfg.voice));
        let lib = dir.join(ORT_LIB);
        let workers = cfg
            .synthesizers
            .map_or_else(|| (cores() / 2).max(1), |n| n as usize);
        let voice: Arc<dyn Synth> = if model.is_file() && json.is_file() && lib.is_file() {
            Arc::new(
                piper::Piper::load(
                    &model,
                    &lib,
                    workers,
                    cfg.threads as usize,
                    cfg.length_scale,
                    cfg.variation,
                )
                .map_err(|m| setup_error(key, m))?,
            )
        } else {
            let absent = [&model, &json, &lib]
                .into_iter()
                .find(|p| !p.is_file())
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            tracing::warn!(
                file = %absent,
                "the Piper voice is not installed; speaking with espeak-ng (robotic). Run scripts/fetch-models"
            );
            espeak::with_espeak(|_| ()).map_err(|m| setup_error(key, m))?;
            Arc::new(EspeakVoice)
        };
        Ok(LocalTts {
            voice,
            cache: Arc::new(Mutex::new(Cache {
                cap: cfg.cache_sentences as usize,
                map: HashMap::new(),
                order: VecDeque::new(),
            })),
            permits: Arc::new(tokio::sync::Semaphore::new(workers)),
        })
    }

    /// Which voice speaks: `piper` or `espeak-ng`.
    pub fn voice_name(&self) -> &'static str {
        self.voice.name()
    }

    /// Synthesise `text` (kept in the cache), on a blocking thread.
    pub async fn say(&self, text: &str) -> Result<Arc<[i16]>, String> {
        let key = text.trim().to_string();
        if let Some(hit) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(hit);
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| "the synthesiser pool is closed".to_string())?;
        let voice = self.voice.clone();
        let k = key.clone();
        let pcm: Arc<[i16]> = tokio::task::spawn_blocking(move || voice.synth(&k))
            .await
            .map_err(|e| format!("synthesis failed: {e}"))??
            .into();
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(key, pcm.clone());
        Ok(pcm)
    }

    /// Synthesise fixed phrases now so calls find them in the cache.
    pub async fn warm(&self, phrases: &[String]) {
        for p in phrases {
            for s in sentences(p) {
                if let Err(e) = self.say(&s).await {
                    tracing::warn!(error = %e, "could not pre-synthesise a fixed phrase");
                }
            }
        }
    }
}

/// Sentences of a text, each with its closing punctuation.
pub fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        cur.push(c);
        let next_breaks = chars.get(i + 1).is_none_or(|n| n.is_whitespace());
        if matches!(c, '.' | '?' | '!') && next_breaks {
            if !cur.trim().is_empty() {
                out.push(cur.trim().to_string());
            }
            cur.clear();
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

#[async_trait]
impl Tts for LocalTts {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn open(&self, params: TtsParams) -> Result<TtsSession, ProviderError> {
        if params.sample_rate != PHONE_RATE {
            return Err(ProviderError::Permanent {
                provider: "local",
                message: format!("speaks at {PHONE_RATE} Hz, not {}", params.sample_rate),
            });
        }
        let (in_tx, mut in_rx) = mpsc::channel::<TtsInput>(32);
        let (ev_tx, ev_rx) = mpsc::channel(32);
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(input) = in_rx.recv().await {
                match input {
                    TtsInput::Text(t) => {
                        for s in sentences(&t) {
                            if ev_tx.is_closed() {
                                return; // cancelled
                            }
                            let ev = match me.say(&s).await {
                                Ok(pcm) => Ok(TtsEvent::Audio(pcm.to_vec())),
                                Err(message) => Err(ProviderError::Transient {
                                    provider: "local",
                                    message,
                                    retry_after: None,
                                }),
                            };
                            let failed = ev.is_err();
                            if ev_tx.send(ev).await.is_err() || failed {
                                return;
                            }
                        }
                    }
                    TtsInput::End => {
                        let _ = ev_tx.send(Ok(TtsEvent::Done)).await;
                        return;
                    }
                }
            }
        });
        Ok(TtsSession {
            input: in_tx,
            events: ev_rx,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(ms: usize, amp: f64) -> Vec<i16> {
        (0..ms * 8)
            .map(|i| (amp * (i as f64 * 0.3).sin()) as i16)
            .collect()
    }

    #[test]
    fn an_utterance_keeps_its_speech_and_trims_the_silence() {
        let mut u = Utterance::default();
        let max = 8000 * 20;
        for f in tone(3000, 0.0).chunks(160) {
            u.push(f, max); // long silence before
        }
        for f in tone(1000, 8000.0).chunks(160) {
            u.push(f, max);
        }
        for f in tone(1500, 0.0).chunks(160) {
            u.push(f, max); // the end-of-turn window
        }
        let pcm = u.take().expect("speech");
        // 0.3 s pre-roll + 1 s speech + 0.3 s tail.
        assert_eq!(pcm.len(), PAD_SAMPLES + 8000 + PAD_SAMPLES);
        assert!(u.take().is_none(), "taken once");
    }

    #[test]
    fn silence_and_clicks_are_not_decoded() {
        let mut u = Utterance::default();
        for f in tone(2000, 3.0).chunks(160) {
            u.push(f, 8000 * 20);
        }
        for f in tone(40, 9000.0).chunks(160) {
            u.push(f, 8000 * 20); // a 40 ms click
        }
        assert!(u.take().is_none());
    }

    #[test]
    fn a_peek_sees_the_speech_so_far_and_leaves_it() {
        let mut u = Utterance::default();
        let max = 8000 * 20;
        assert!(u.snapshot().is_none(), "nothing to peek at yet");
        for f in tone(1000, 0.0).chunks(160) {
            u.push(f, max);
        }
        for f in tone(400, 8000.0).chunks(160) {
            u.push(f, max);
        }
        let peek = u.snapshot().expect("speech");
        assert_eq!(peek.len(), PAD_SAMPLES + 3200);
        for f in tone(600, 8000.0).chunks(160) {
            u.push(f, max);
        }
        // The utterance goes on whole after the peek.
        assert_eq!(u.take().expect("speech").len(), PAD_SAMPLES + 8000);
    }

    #[test]
    fn a_long_utterance_keeps_its_end() {
        let mut u = Utterance::default();
        for f in tone(5000, 8000.0).chunks(160) {
            u.push(f, 8000 * 2);
        }
        assert_eq!(u.take().expect("speech").len(), 8000 * 2);
    }

    #[test]
    fn sentences_split_on_their_ends_only() {
        assert_eq!(
            sentences("It's 9.30 now. Shall I book it? Great"),
            vec!["It's 9.30 now.", "Shall I book it?", "Great"]
        );
    }

    #[test]
    fn the_cache_drops_the_oldest() {
        let mut c = Cache {
            cap: 2,
            map: HashMap::new(),
            order: VecDeque::new(),
        };
        for k in ["a", "b", "c"] {
            c.put(k.into(), Arc::from(vec![1i16]));
        }
        assert!(c.get("a").is_none());
        assert!(c.get("b").is_some() && c.get("c").is_some());
    }
}
