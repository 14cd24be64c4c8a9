//! Scripted providers: fixed latencies and canned output, for tests,
//! benchmarks and running with no keys and no network.
//!
//! * STT: a final transcript `final_after_ms` after each end of utterance.
//! * LLM: the first token `first_token_ms` after the request, the rest word by word.
//! * TTS: the same audio for every reply, `first_audio_ms` after the first text.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{
    FinishReason, Llm, LlmEvent, LlmRequest, ProviderError, ProviderSetupError, Stt, SttEvent,
    SttInput, SttParams, SttSession, Tts, TtsEvent, TtsInput, TtsParams, TtsSession,
};
use crate::config::{ScriptedLlmConfig, ScriptedSttConfig, ScriptedTtsConfig};

/// The built-in two-second reply (fixtures/bot_reply.wav).
const BUILTIN_REPLY_WAV: &[u8] = include_bytes!("../../fixtures/bot_reply.wav");

/// Wait `d`; a zero latency means no timer at all (a tokio timer rounds up
/// to its next 1 ms tick, which would add latency a zero-latency fake must not).
async fn pause(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

/// Scripted speech-to-text.
#[derive(Debug, Clone)]
pub struct ScriptedStt {
    cfg: ScriptedSttConfig,
}

impl ScriptedStt {
    /// From `[providers.stt]`.
    pub fn new(cfg: ScriptedSttConfig) -> Self {
        ScriptedStt { cfg }
    }
}

#[async_trait]
impl Stt for ScriptedStt {
    fn name(&self) -> &'static str {
        "scripted"
    }

    fn wants_audio(&self) -> bool {
        false
    }

    async fn open(&self, _params: SttParams) -> Result<SttSession, ProviderError> {
        let (in_tx, mut in_rx) = mpsc::channel::<SttInput>(64);
        let (ev_tx, ev_rx) = mpsc::channel(16);
        let cfg = self.cfg.clone();
        tokio::spawn(async move {
            let mut turn = 0usize;
            while let Some(input) = in_rx.recv().await {
                if let SttInput::EndOfUtterance = input {
                    pause(Duration::from_millis(cfg.final_after_ms)).await;
                    // Config validation guarantees at least one transcript.
                    let text =
                        cfg.transcripts[turn.min(cfg.transcripts.len().saturating_sub(1))].clone();
                    turn += 1;
                    let ev = SttEvent::Final {
                        text,
                        end_of_utterance: true,
                    };
                    if ev_tx.send(ev).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(SttSession {
            input: in_tx,
            events: ev_rx,
        })
    }
}

/// Scripted language model.
#[derive(Debug, Clone)]
pub struct ScriptedLlm {
    cfg: ScriptedLlmConfig,
}

impl ScriptedLlm {
    /// From `[providers.llm]`.
    pub fn new(cfg: ScriptedLlmConfig) -> Self {
        ScriptedLlm { cfg }
    }
}

#[async_trait]
impl Llm for ScriptedLlm {
    fn name(&self) -> &'static str {
        "scripted"
    }

    async fn stream(
        &self,
        _req: LlmRequest,
    ) -> Result<mpsc::Receiver<Result<LlmEvent, ProviderError>>, ProviderError> {
        let (tx, rx) = mpsc::channel(64);
        let cfg = self.cfg.clone();
        tokio::spawn(async move {
            pause(Duration::from_millis(cfg.first_token_ms)).await;
            for (i, word) in cfg.reply.split_inclusive(' ').enumerate() {
                if i > 0 && cfg.token_interval_ms > 0 {
                    pause(Duration::from_millis(cfg.token_interval_ms)).await;
                }
                if tx.send(Ok(LlmEvent::Text(word.to_string()))).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(Ok(LlmEvent::Done(FinishReason::Stop))).await;
        });
        Ok(rx)
    }
}

/// Scripted text-to-speech: one canned clip per reply.
#[derive(Debug, Clone)]
pub struct ScriptedTts {
    first_audio: Duration,
    audio: Arc<[i16]>,
}

/// Audio is handed over in pieces of this many samples (100 ms), all at once,
/// like a real provider that synthesises faster than real time.
const CHUNK: usize = 800;

impl ScriptedTts {
    /// A scripted TTS with explicit audio (8 kHz PCM).
    pub fn new(first_audio: Duration, audio: Arc<[i16]>) -> Self {
        ScriptedTts { first_audio, audio }
    }

    /// From `[providers.tts]`: loads and resamples the WAV now.
    pub fn from_config(cfg: &ScriptedTtsConfig) -> Result<Self, ProviderSetupError> {
        let audio = match &cfg.audio {
            Some(path) => crate::audio::wav::load_8k(path),
            None => crate::audio::wav::decode_to_8k(BUILTIN_REPLY_WAV),
        }
        .map_err(|e| ProviderSetupError {
            key: "providers.tts.audio".into(),
            message: e.to_string(),
        })?;
        if audio.is_empty() {
            return Err(ProviderSetupError {
                key: "providers.tts.audio".into(),
                message: "the WAV file holds no audio".into(),
            });
        }
        Ok(ScriptedTts::new(
            Duration::from_millis(cfg.first_audio_ms()),
            audio.into(),
        ))
    }

    /// The clip every reply plays.
    pub fn audio(&self) -> &[i16] {
        &self.audio
    }
}

#[async_trait]
impl Tts for ScriptedTts {
    fn name(&self) -> &'static str {
        "scripted"
    }

    async fn open(&self, _params: TtsParams) -> Result<TtsSession, ProviderError> {
        let (in_tx, mut in_rx) = mpsc::channel::<TtsInput>(64);
        let (ev_tx, ev_rx) = mpsc::channel(64);
        let (first_audio, audio) = (self.first_audio, self.audio.clone());
        tokio::spawn(async move {
            let mut spoken = false;
            let mut ended = false;
            while let Some(input) = in_rx.recv().await {
                match input {
                    TtsInput::Text(t) if !spoken && !t.trim().is_empty() => {
                        spoken = true;
                        pause(first_audio).await;
                        for piece in audio.chunks(CHUNK) {
                            if ev_tx
                                .send(Ok(TtsEvent::Audio(piece.to_vec())))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                    TtsInput::End => {
                        ended = true;
                        break;
                    }
                    _ => {}
                }
            }
            if ended {
                let _ = ev_tx.send(Ok(TtsEvent::Done)).await;
            }
        });
        Ok(TtsSession {
            input: in_tx,
            events: ev_rx,
        })
    }
}
