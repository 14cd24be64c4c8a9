//! Streaming speech-to-text, language model and text-to-speech providers.
//!
//! Each role is a trait held as `Arc<dyn …>` in app state. A session is a
//! pair of channels: inputs go in, events come out, and **dropping the
//! session cancels it** (the provider task notices the closed channel and
//! stops; a WebSocket provider sends its cancel/close message then). That
//! shape fits Deepgram (binary audio in, JSON results out), OpenAI-compatible
//! chat (SSE deltas and tool-call fragments out) and ElevenLabs/Cartesia
//! (text in, audio chunks out) without change.
//!
//! Errors say whether they are permanent (auth, bad request) or transient
//! (timeout, 5xx, 429): that decides retry, fail-over or apologise-and-hand-off.
//!
//! Fail-over is one more implementation of each trait
//! ([`chain`]): it holds the members in config order and moves a call to
//! the next on a permanent error or a stall. State that must be per call
//! (which member a call is on) lives in the value [`Providers::for_call`]
//! returns, so one call's fail-over never moves another call.
//!
//! The cloud clients ([`deepgram`], [`openai`], [`elevenlabs`],
//! [`cartesia`], [`aura`]) ask for μ-law 8 kHz on the phone, so the only
//! conversion is the lossless G.711 table lookup between the call's PCM and
//! the carrier's bytes. Keys come from [`crate::config::Env`] and live in
//! [`crate::pii::Secret`]s; no log line carries one.
//!
//! This module owns no call state; it must not know about carriers.

pub mod aura;
pub mod cartesia;
pub mod chain;
pub mod deepgram;
pub mod elevenlabs;
pub mod local;
pub mod openai;
pub mod scripted;
mod ws;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::config::{env, Config, Env, LlmConfig, SttConfig, TtsConfig};
use crate::metrics::Metrics;
use crate::pii::Secret;

/// A provider failure.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ProviderError {
    /// Will not succeed on retry: bad key, bad request, unsupported option.
    #[error("{provider}: {message}")]
    Permanent {
        /// Which provider.
        provider: &'static str,
        /// What it said.
        message: String,
    },
    /// May succeed on retry: timeout, 5xx, 429, dropped connection.
    #[error("{provider} (transient): {message}")]
    Transient {
        /// Which provider.
        provider: &'static str,
        /// What happened.
        message: String,
        /// How long the provider asked us to wait, if it said.
        retry_after: Option<Duration>,
    },
}

impl ProviderError {
    /// Whether retrying (or failing over) can help.
    pub fn is_transient(&self) -> bool {
        matches!(self, ProviderError::Transient { .. })
    }
}

// ---------------------------------------------------------------- STT

/// How a speech-to-text session should listen.
#[derive(Debug, Clone)]
pub struct SttParams {
    /// Sample rate of the PCM we send (8000 on the phone).
    pub sample_rate: u32,
    /// BCP-47 language, e.g. `en-GB`.
    pub language: String,
}

/// Sent to an STT session.
#[derive(Debug, Clone)]
pub enum SttInput {
    /// Caller audio, linear PCM at `SttParams::sample_rate`.
    Audio(Arc<[i16]>),
    /// Our VAD says the caller stopped: finalise what you have (Deepgram `Finalize`).
    EndOfUtterance,
    /// Send the words of the audio so far as an [`SttEvent::Interim`],
    /// without ending the utterance. A provider with interims of its own
    /// (Deepgram) ignores it.
    Peek,
    /// Forget the audio held for the current utterance: it was a cough or a
    /// backchannel under the bot's speech, not the caller's turn. A
    /// streaming provider that already sent it on ignores this.
    Forget,
}

/// Received from an STT session.
#[derive(Debug, Clone, PartialEq)]
pub enum SttEvent {
    /// The provider's own VAD heard speech start.
    SpeechStarted,
    /// A partial hypothesis; will be replaced.
    Interim(String),
    /// Final text for a stretch of audio. `end_of_utterance` marks the end of
    /// the caller's turn (Deepgram `speech_final`/`from_finalize`/`UtteranceEnd`).
    Final {
        /// The text (may be empty).
        text: String,
        /// Whether this closes the utterance.
        end_of_utterance: bool,
    },
    /// The session failed; no more events follow.
    Error(ProviderError),
}

/// A live STT session. Drop it to close.
#[derive(Debug)]
pub struct SttSession {
    /// Audio and control in.
    pub input: mpsc::Sender<SttInput>,
    /// Transcripts out.
    pub events: mpsc::Receiver<SttEvent>,
}

/// A streaming speech-to-text provider.
#[async_trait]
pub trait Stt: Send + Sync {
    /// Short name for logs and metrics.
    fn name(&self) -> &'static str;
    /// Whether the session needs caller audio (a scripted fake does not, which
    /// saves a channel hop per frame).
    fn wants_audio(&self) -> bool {
        true
    }
    /// Whether the session sends [`SttEvent::Interim`] words by itself
    /// while the caller talks (default true). `false`: it transcribes only
    /// at the end of an utterance or on [`SttInput::Peek`], so the call core
    /// peeks to tell a backchannel from an interruption.
    fn interims(&self) -> bool {
        true
    }
    /// Open a session for one call.
    async fn open(&self, params: SttParams) -> Result<SttSession, ProviderError>;
    /// A handle with its own per-call state, for providers that keep some
    /// (a fail-over chain); `None`: this one is stateless and shared.
    fn for_call(&self) -> Option<Arc<dyn Stt>> {
        None
    }
}

// ---------------------------------------------------------------- LLM

/// Who said a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions.
    System,
    /// The caller.
    User,
    /// The receptionist.
    Assistant,
    /// A tool result.
    Tool,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// The text (None for an assistant message that only calls tools).
    pub content: Option<String>,
    /// Tool calls the assistant made.
    pub tool_calls: Vec<ToolCall>,
    /// For `Role::Tool`: which call this answers.
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A plain text message.
    pub fn text(role: Role, content: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: Some(content.into()),
            tool_calls: vec![],
            tool_call_id: None,
        }
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// `[a-zA-Z0-9_-]{1,64}`.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of the arguments.
    pub parameters: serde_json::Value,
}

/// A complete tool call (fragments already joined).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The provider's call id, echoed in the tool result.
    pub id: String,
    /// Function name.
    pub name: String,
    /// Arguments as JSON text (validate before use: models make things up).
    pub arguments: String,
}

/// A chat request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LlmRequest {
    /// The conversation so far, system prompt first.
    pub messages: Vec<ChatMessage>,
    /// Tools offered.
    pub tools: Vec<ToolSpec>,
    /// Upper bound on generated tokens.
    pub max_tokens: Option<u32>,
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// Natural end.
    Stop,
    /// Hit the token limit.
    Length,
    /// Stopped to call tools.
    ToolCalls,
    /// Filtered.
    ContentFilter,
}

/// Streamed from an LLM.
#[derive(Debug, Clone, PartialEq)]
pub enum LlmEvent {
    /// A piece of the reply text.
    Text(String),
    /// A complete tool call.
    ToolCall(ToolCall),
    /// The end of the stream.
    Done(FinishReason),
}

/// A streaming chat model.
#[async_trait]
pub trait Llm: Send + Sync {
    /// Short name for logs and metrics.
    fn name(&self) -> &'static str;
    /// Start generating. Drop the receiver to cancel.
    async fn stream(
        &self,
        req: LlmRequest,
    ) -> Result<mpsc::Receiver<Result<LlmEvent, ProviderError>>, ProviderError>;
    /// A handle with its own per-call state (see [`Stt::for_call`]).
    fn for_call(&self) -> Option<Arc<dyn Llm>> {
        None
    }
}

// ---------------------------------------------------------------- TTS

/// How a TTS session should speak.
#[derive(Debug, Clone)]
pub struct TtsParams {
    /// Output sample rate (8000 for the phone).
    pub sample_rate: u32,
    /// Provider voice id, if any.
    pub voice: Option<String>,
}

/// Sent to a TTS session.
#[derive(Debug, Clone, PartialEq)]
pub enum TtsInput {
    /// More text (a sentence or clause).
    Text(String),
    /// No more text: finish, then send `Done`.
    End,
}

/// Received from a TTS session.
#[derive(Debug, Clone, PartialEq)]
pub enum TtsEvent {
    /// Audio, linear PCM at `TtsParams::sample_rate`.
    Audio(Vec<i16>),
    /// All text has been spoken.
    Done,
}

/// A live TTS session. Drop it to cancel.
#[derive(Debug)]
pub struct TtsSession {
    /// Text in.
    pub input: mpsc::Sender<TtsInput>,
    /// Audio out.
    pub events: mpsc::Receiver<Result<TtsEvent, ProviderError>>,
}

/// A streaming text-to-speech provider.
#[async_trait]
pub trait Tts: Send + Sync {
    /// Short name for logs and metrics.
    fn name(&self) -> &'static str;
    /// Open a session for one reply.
    async fn open(&self, params: TtsParams) -> Result<TtsSession, ProviderError>;
    /// A handle with its own per-call state (see [`Stt::for_call`]).
    fn for_call(&self) -> Option<Arc<dyn Tts>> {
        None
    }
}

// ---------------------------------------------------------------- set-up

/// The three providers a call uses.
#[derive(Clone)]
pub struct Providers {
    /// Speech to text.
    pub stt: Arc<dyn Stt>,
    /// The model.
    pub llm: Arc<dyn Llm>,
    /// Text to speech.
    pub tts: Arc<dyn Tts>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers")
            .field("stt", &self.stt.name())
            .field("llm", &self.llm.name())
            .field("tts", &self.tts.name())
            .finish()
    }
}

/// A provider could not be set up from config.
#[derive(Debug, thiserror::Error)]
#[error("config error at `{key}`: {message}")]
pub struct ProviderSetupError {
    /// The config key at fault.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl Providers {
    /// Build the providers `[providers]` asks for (loading files such as the
    /// scripted TTS audio now, at start-up), with keys from `env` and
    /// fail-over counted in `metrics`. Nothing connects yet.
    pub fn from_config(
        cfg: &Config,
        env: &Env,
        metrics: Arc<Metrics>,
    ) -> Result<Providers, ProviderSetupError> {
        let p = &cfg.providers;
        Ok(Providers {
            stt: build_stt(&p.stt, "providers.stt", env, &metrics)?,
            llm: build_llm(&p.llm, "providers.llm", env, &metrics)?,
            tts: build_tts(&p.tts, "providers.tts", env, &metrics)?,
        })
    }

    /// What [`Providers::from_config`] would reject, without loading the
    /// offline models (only their files are looked for): `check-config`
    /// and the validation before start-up run this.
    pub fn preflight(cfg: &Config, env: &Env) -> Result<(), ProviderSetupError> {
        fn stt(c: &SttConfig, at: &str, env: &Env) -> Result<(), ProviderSetupError> {
            match c {
                SttConfig::Local(l) => local::LocalStt::check(l, env, at),
                SttConfig::Chain(ch) => ch
                    .members
                    .iter()
                    .try_for_each(|m| stt(m, &format!("{at}.{}", crate::config::stt_kind(m)), env)),
                _ => Ok(()),
            }
        }
        fn tts(c: &TtsConfig, at: &str, env: &Env) -> Result<(), ProviderSetupError> {
            match c {
                TtsConfig::Scripted(_) => {
                    build_tts(c, at, env, &Arc::new(Metrics::default())).map(drop)
                }
                TtsConfig::Chain(ch) => ch
                    .members
                    .iter()
                    .try_for_each(|m| tts(m, &format!("{at}.{}", crate::config::tts_kind(m)), env)),
                _ => Ok(()),
            }
        }
        stt(&cfg.providers.stt, "providers.stt", env)?;
        tts(&cfg.providers.tts, "providers.tts", env)
    }

    /// The providers for one call: chains get fresh per-call state (which
    /// member the call is on); stateless providers are shared as they are.
    pub fn for_call(&self) -> Providers {
        Providers {
            stt: self.stt.for_call().unwrap_or_else(|| self.stt.clone()),
            llm: self.llm.for_call().unwrap_or_else(|| self.llm.clone()),
            tts: self.tts.for_call().unwrap_or_else(|| self.tts.clone()),
        }
    }
}

/// The key `var`, or a set-up error at `key` (App::validate reports a
/// missing key first, naming the variable; this is the backstop).
fn key(env: &Env, key: &str, var: &str) -> Result<Secret<String>, ProviderSetupError> {
    env.secret(var).ok_or_else(|| ProviderSetupError {
        key: key.to_string(),
        message: format!("needs the environment variable {var}, which is not set (or is blank)"),
    })
}

fn build_stt(
    c: &SttConfig,
    at: &str,
    env: &Env,
    metrics: &Arc<Metrics>,
) -> Result<Arc<dyn Stt>, ProviderSetupError> {
    Ok(match c {
        SttConfig::Scripted(c) => Arc::new(scripted::ScriptedStt::new(c.clone())),
        SttConfig::Local(c) => Arc::new(local::LocalStt::load(c, env, at)?),
        SttConfig::Deepgram(c) => Arc::new(deepgram::DeepgramStt::new(
            c.clone(),
            key(env, at, env::DEEPGRAM_API_KEY)?,
        )),
        SttConfig::Chain(ch) => {
            let members = ch
                .members
                .iter()
                .map(|m| {
                    build_stt(
                        m,
                        &format!("{at}.{}", crate::config::stt_kind(m)),
                        env,
                        metrics,
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            Arc::new(chain::ChainStt::new(
                members,
                Duration::from_millis(ch.stall_ms),
                metrics.clone(),
            ))
        }
    })
}

fn build_llm(
    c: &LlmConfig,
    at: &str,
    env: &Env,
    metrics: &Arc<Metrics>,
) -> Result<Arc<dyn Llm>, ProviderSetupError> {
    Ok(match c {
        LlmConfig::Scripted(c) => Arc::new(scripted::ScriptedLlm::new(c.clone())),
        LlmConfig::Openai(c) => {
            let k = if c.needs_key() {
                Some(key(env, at, env::OPENAI_API_KEY)?)
            } else {
                env.secret(env::OPENAI_API_KEY)
            };
            Arc::new(
                openai::OpenaiLlm::new(c.clone(), k).map_err(|e| ProviderSetupError {
                    key: format!("{at}.base_url"),
                    message: format!("cannot build the HTTP client: {e}"),
                })?,
            )
        }
        LlmConfig::Chain(ch) => {
            let members = ch
                .members
                .iter()
                .map(|m| {
                    build_llm(
                        m,
                        &format!("{at}.{}", crate::config::llm_kind(m)),
                        env,
                        metrics,
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            Arc::new(chain::ChainLlm::new(
                members,
                Duration::from_millis(ch.stall_ms),
                metrics.clone(),
            ))
        }
    })
}

fn build_tts(
    c: &TtsConfig,
    at: &str,
    env: &Env,
    metrics: &Arc<Metrics>,
) -> Result<Arc<dyn Tts>, ProviderSetupError> {
    Ok(match c {
        TtsConfig::Scripted(c) => Arc::new(scripted::ScriptedTts::from_config(c).map_err(
            // Name the member's own table inside a chain.
            |e| ProviderSetupError {
                key: e.key.replacen("providers.tts", at, 1),
                message: e.message,
            },
        )?),
        TtsConfig::Local(c) => Arc::new(local::LocalTts::load(c, env, at)?),
        TtsConfig::Elevenlabs(c) => Arc::new(elevenlabs::ElevenlabsTts::new(
            c.clone(),
            key(env, at, env::ELEVENLABS_API_KEY)?,
        )),
        TtsConfig::Cartesia(c) => Arc::new(cartesia::CartesiaTts::new(
            c.clone(),
            key(env, at, env::CARTESIA_API_KEY)?,
        )),
        TtsConfig::DeepgramAura(c) => Arc::new(aura::AuraTts::new(
            c.clone(),
            key(env, at, env::DEEPGRAM_API_KEY)?,
        )),
        TtsConfig::Chain(ch) => {
            let members = ch
                .members
                .iter()
                .map(|m| {
                    build_tts(
                        m,
                        &format!("{at}.{}", crate::config::tts_kind(m)),
                        env,
                        metrics,
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            Arc::new(chain::ChainTts::new(
                members,
                Duration::from_millis(ch.stall_ms),
                metrics.clone(),
            ))
        }
    })
}
