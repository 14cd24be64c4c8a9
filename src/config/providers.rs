//! `[providers.stt]`, `[providers.llm]`, `[providers.tts]`: which provider
//! plays each role, its options, and the fail-over chain.
//!
//! Each role's table is either one provider —
//!
//! ```toml
//! [providers.stt]
//! kind = "deepgram"
//! model = "nova-3"
//! ```
//!
//! — or an ordered chain with each member's options in a sub-table named
//! after its kind (a member without one takes its defaults):
//!
//! ```toml
//! [providers.stt]
//! chain = ["deepgram", "scripted"]
//! stall_ms = 2000
//! [providers.stt.deepgram]
//! model = "nova-3"
//! ```
//!
//! Keys come from the environment only; [`ProvidersConfig::required_env`]
//! says which variable each configured provider needs, so `App::validate`
//! can name it. This module parses and range-checks; it opens nothing.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{check_range, env, from_table, split_kind, ConfigError, PATH_MARK};

/// `[providers]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProvidersConfig {
    /// `[providers.stt]`
    pub stt: SttConfig,
    /// `[providers.llm]`
    pub llm: LlmConfig,
    /// `[providers.tts]`
    pub tts: TtsConfig,
}

/// An ordered fail-over list: the call starts on the first member and moves
/// to the next on a permanent error or a stall, for the rest of the call.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainConfig<T> {
    /// The members in order (1–4, each kind once).
    pub members: Vec<T>,
    /// Milliseconds a member may take to its first event (an LLM's first
    /// token, a TTS's first audio, an STT's transcript after the end of an
    /// utterance) before the call moves on (default 2000, 100–60000).
    pub stall_ms: u64,
}

/// Default `stall_ms`.
pub const DEFAULT_STALL_MS: u64 = 2000;

/// Parse a role's table: `kind = …` or `chain = [...]`.
fn parse_role<T, E: serde::de::Error>(
    mut t: toml::Table,
    member: impl Fn(&str, toml::Table) -> Result<T, E>,
) -> Result<(Option<T>, Option<ChainConfig<T>>), E> {
    let Some(chain) = t.remove("chain") else {
        let (kind, rest) = split_kind::<E>(t)?;
        return Ok((Some(member(&kind, rest)?), None));
    };
    let names: Vec<String> = match chain {
        toml::Value::Array(a) => a
            .into_iter()
            .map(|v| match v {
                toml::Value::String(s) => Ok(s),
                _ => Err(E::custom(format!(
                    "{PATH_MARK}chain{PATH_MARK}must be a list of provider kinds"
                ))),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(E::custom(format!(
                "{PATH_MARK}chain{PATH_MARK}must be a list of provider kinds, e.g. [\"deepgram\", \"scripted\"]"
            )))
        }
    };
    if names.is_empty() || names.len() > 4 {
        return Err(E::custom(format!(
            "{PATH_MARK}chain{PATH_MARK}needs 1–4 providers, has {}",
            names.len()
        )));
    }
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(E::custom(format!(
                "{PATH_MARK}chain{PATH_MARK}names `{n}` twice"
            )));
        }
    }
    if t.contains_key("kind") {
        return Err(E::custom(format!(
            "{PATH_MARK}kind{PATH_MARK}give either `kind` or `chain`, not both"
        )));
    }
    let stall_ms = match t.remove("stall_ms") {
        None => DEFAULT_STALL_MS,
        Some(toml::Value::Integer(v)) if (100..=60_000).contains(&v) => v as u64,
        Some(v) => {
            return Err(E::custom(format!(
                "{PATH_MARK}stall_ms{PATH_MARK}{v} is out of range; allowed 100–60000 ms"
            )))
        }
    };
    let mut members = Vec::with_capacity(names.len());
    for n in &names {
        let sub = match t.remove(n) {
            None => toml::Table::new(),
            Some(toml::Value::Table(sub)) => sub,
            Some(_) => {
                return Err(E::custom(format!(
                    "{PATH_MARK}{n}{PATH_MARK}must be a table of `{n}` options"
                )))
            }
        };
        // Nest the member's own error path under its table name.
        let m = member(n, sub).map_err(|e| {
            let msg = e.to_string();
            let mut parts = msg.splitn(3, PATH_MARK);
            match (parts.next(), parts.next(), parts.next()) {
                // An unknown kind is a bad entry of the list itself.
                (Some(_), Some("kind"), Some(m)) => {
                    E::custom(format!("{PATH_MARK}chain{PATH_MARK}{m}"))
                }
                (Some(_), Some(sub), Some(m)) => {
                    E::custom(format!("{PATH_MARK}{n}.{sub}{PATH_MARK}{m}"))
                }
                _ => E::custom(format!("{PATH_MARK}chain{PATH_MARK}{msg}")),
            }
        })?;
        members.push(m);
    }
    if let Some(extra) = t.keys().next() {
        return Err(E::custom(format!(
            "{PATH_MARK}{extra}{PATH_MARK}unknown key (not a member of `chain`)"
        )));
    }
    Ok((None, Some(ChainConfig { members, stall_ms })))
}

fn unknown_kind<E: serde::de::Error>(other: &str, allowed: &str) -> E {
    E::custom(format!(
        "{PATH_MARK}kind{PATH_MARK}unknown kind `{other}`, expected one of: {allowed}"
    ))
}

// ------------------------------------------------------------------ STT

/// `[providers.stt]`, chosen by `kind` (or `chain`).
#[derive(Debug, Clone)]
pub enum SttConfig {
    /// Fixed-latency fake: a final transcript `final_after_ms` after each utterance ends.
    Scripted(ScriptedSttConfig),
    /// Deepgram live streaming (`DEEPGRAM_API_KEY`).
    Deepgram(DeepgramSttConfig),
    /// Embedded whisper.cpp on this machine (the default).
    Local(LocalSttConfig),
    /// Fail-over across the members, in order.
    Chain(ChainConfig<SttConfig>),
}

const STT_KINDS: &str = "local, scripted, deepgram";

fn stt_member<E: serde::de::Error>(kind: &str, rest: toml::Table) -> Result<SttConfig, E> {
    match kind {
        "scripted" => Ok(SttConfig::Scripted(from_table(rest)?)),
        "deepgram" => Ok(SttConfig::Deepgram(from_table(rest)?)),
        "local" => Ok(SttConfig::Local(from_table(rest)?)),
        other => Err(unknown_kind(other, STT_KINDS)),
    }
}

impl<'de> Deserialize<'de> for SttConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match parse_role::<_, D::Error>(toml::Table::deserialize(d)?, stt_member::<D::Error>)? {
            (Some(one), _) => Ok(one),
            (None, Some(chain)) => Ok(SttConfig::Chain(chain)),
            // parse_role returns one or the other.
            (None, None) => Err(serde::de::Error::custom("missing `kind`")),
        }
    }
}

impl Default for SttConfig {
    fn default() -> Self {
        SttConfig::Local(LocalSttConfig::default())
    }
}

/// `kind = "local"` STT: whisper.cpp on each VAD-endpointed utterance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalSttConfig {
    /// Model file, relative to the models folder (`FRONTDESK_MODELS_DIR`,
    /// default `models/`) unless absolute (default `ggml-tiny.en.bin`).
    pub model: PathBuf,
    /// Utterances decoded at once, each on its own blocking thread (default:
    /// the number of CPU cores, 1–64). Further utterances wait their turn.
    pub decoders: Option<u32>,
    /// Threads per decode (default 1, 1–16: on a busy server, parallel
    /// calls use the cores better than parallel threads within one decode).
    pub threads: u32,
    /// Shrink the encoder's window to the utterance (default true): a 3 s
    /// utterance then costs a tenth of the 30 s window Whisper was trained on.
    pub fit_audio_ctx: bool,
    /// Longest utterance decoded, in milliseconds (default 20000,
    /// 1000–30000); only the last part of a longer one is kept.
    pub max_utterance_ms: u32,
    /// whisper.cpp's flash attention in the encoder and decoder (default
    /// false).
    pub flash_attn: bool,
}

impl Default for LocalSttConfig {
    fn default() -> Self {
        LocalSttConfig {
            model: PathBuf::from("ggml-tiny.en.bin"),
            decoders: None,
            threads: 1,
            fit_audio_ctx: true,
            max_utterance_ms: 20_000,
            flash_attn: false,
        }
    }
}

/// `kind = "scripted"` STT.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScriptedSttConfig {
    /// Milliseconds from the end of an utterance to its final transcript (default 100, 0–60000).
    pub final_after_ms: u64,
    /// Transcripts returned in turn; after the last, the last repeats (default `["hello"]`).
    pub transcripts: Vec<String>,
}

impl Default for ScriptedSttConfig {
    fn default() -> Self {
        ScriptedSttConfig {
            final_after_ms: 100,
            transcripts: vec!["hello".into()],
        }
    }
}

/// `kind = "deepgram"` STT: the live streaming API, caller μ-law sent as is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeepgramSttConfig {
    /// WebSocket URL of the listen endpoint (default `wss://api.deepgram.com/v1/listen`).
    pub base_url: String,
    /// Model (default `nova-3`).
    pub model: String,
    /// Milliseconds of silence before Deepgram marks `speech_final` (default 300, 10–5000).
    pub endpointing_ms: u64,
    /// Milliseconds after the last word before `UtteranceEnd` (default 1000, 1000–5000).
    pub utterance_end_ms: u64,
    /// Punctuation, numerals and casing (default true).
    pub smart_format: bool,
    /// Words to listen out for (nova-3 `keyterm`; default none).
    pub keyterms: Vec<String>,
    /// Milliseconds the WebSocket handshake may take (default 5000, 100–60000).
    pub connect_timeout_ms: u64,
    /// Milliseconds without audio before a `KeepAlive` is sent (default 4000,
    /// 500–9000; Deepgram closes an idle stream after 10 s).
    pub keepalive_ms: u64,
}

impl Default for DeepgramSttConfig {
    fn default() -> Self {
        DeepgramSttConfig {
            base_url: "wss://api.deepgram.com/v1/listen".into(),
            model: "nova-3".into(),
            endpointing_ms: 300,
            utterance_end_ms: 1000,
            smart_format: true,
            keyterms: vec![],
            connect_timeout_ms: 5000,
            keepalive_ms: 4000,
        }
    }
}

// ------------------------------------------------------------------ LLM

/// `[providers.llm]`, chosen by `kind` (or `chain`).
#[derive(Debug, Clone)]
pub enum LlmConfig {
    /// Fixed-latency fake streaming a canned reply.
    Scripted(ScriptedLlmConfig),
    /// OpenAI Chat Completions, or a compatible server (Ollama, vLLM,
    /// llama.cpp) at `base_url`.
    Openai(OpenaiLlmConfig),
    /// Fail-over across the members, in order.
    Chain(ChainConfig<LlmConfig>),
}

const LLM_KINDS: &str = "scripted, openai";

fn llm_member<E: serde::de::Error>(kind: &str, rest: toml::Table) -> Result<LlmConfig, E> {
    match kind {
        "scripted" => Ok(LlmConfig::Scripted(from_table(rest)?)),
        "openai" => Ok(LlmConfig::Openai(from_table(rest)?)),
        other => Err(unknown_kind(other, LLM_KINDS)),
    }
}

impl<'de> Deserialize<'de> for LlmConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match parse_role::<_, D::Error>(toml::Table::deserialize(d)?, llm_member::<D::Error>)? {
            (Some(one), _) => Ok(one),
            (None, Some(chain)) => Ok(LlmConfig::Chain(chain)),
            (None, None) => Err(serde::de::Error::custom("missing `kind`")),
        }
    }
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig::Scripted(ScriptedLlmConfig::default())
    }
}

/// `kind = "scripted"` LLM.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScriptedLlmConfig {
    /// Milliseconds from the request to the first token (default 200, 0–60000).
    pub first_token_ms: u64,
    /// Milliseconds between later tokens (default 0: the rest arrives at once; 0–10000).
    pub token_interval_ms: u64,
    /// The reply text, streamed word by word.
    pub reply: String,
}

impl Default for ScriptedLlmConfig {
    fn default() -> Self {
        ScriptedLlmConfig {
            first_token_ms: 200,
            token_interval_ms: 0,
            reply: "Thanks, I can help with that. Could I take your name, please?".into(),
        }
    }
}

/// `kind = "openai"` LLM: streaming Chat Completions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenaiLlmConfig {
    /// API base, up to and including `/v1` (default `https://api.openai.com/v1`;
    /// Ollama `http://127.0.0.1:11434/v1`, vLLM `http://127.0.0.1:8000/v1`,
    /// llama.cpp `http://127.0.0.1:8080/v1`).
    pub base_url: String,
    /// Model name, as the server serves it (default `gpt-4o-mini`).
    pub model: String,
    /// Sampling temperature (default: the server's; 0–2).
    pub temperature: Option<f64>,
    /// Milliseconds to the response headers, and between streamed events,
    /// before the request counts as timed out (default 10000, 100–120000).
    pub timeout_ms: u64,
}

impl Default for OpenaiLlmConfig {
    fn default() -> Self {
        OpenaiLlmConfig {
            base_url: "https://api.openai.com/v1".into(),
            model: "gpt-4o-mini".into(),
            temperature: None,
            timeout_ms: 10_000,
        }
    }
}

impl OpenaiLlmConfig {
    /// Whether `OPENAI_API_KEY` is required: yes for any server but a local
    /// one (a loopback or private address, or a one-label host name such as
    /// a compose service `ollama`), which accepts any key or none.
    pub fn needs_key(&self) -> bool {
        !is_local_url(&self.base_url)
    }
}

/// Whether an http(s)/ws(s) URL points at this machine or a private network.
pub fn is_local_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return match ip {
            std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_private(),
            std::net::IpAddr::V6(v6) => v6.is_loopback(),
        };
    }
    !host.is_empty() && !host.contains('.')
}

// ------------------------------------------------------------------ TTS

/// `[providers.tts]`, chosen by `kind` (or `chain`).
#[derive(Debug, Clone)]
pub enum TtsConfig {
    /// Fixed-latency fake that answers every text with the same audio.
    Scripted(ScriptedTtsConfig),
    /// ElevenLabs WebSocket stream-input (`ELEVENLABS_API_KEY`).
    Elevenlabs(ElevenlabsTtsConfig),
    /// Cartesia WebSocket contexts (`CARTESIA_API_KEY`).
    Cartesia(CartesiaTtsConfig),
    /// Deepgram Aura WebSocket (`DEEPGRAM_API_KEY`).
    DeepgramAura(AuraTtsConfig),
    /// Embedded Piper voice on this machine (the default; espeak-ng when
    /// the voice files are missing).
    Local(LocalTtsConfig),
    /// Fail-over across the members, in order.
    Chain(ChainConfig<TtsConfig>),
}

const TTS_KINDS: &str = "local, scripted, elevenlabs, cartesia, deepgram_aura";

fn tts_member<E: serde::de::Error>(kind: &str, rest: toml::Table) -> Result<TtsConfig, E> {
    match kind {
        "scripted" => Ok(TtsConfig::Scripted(from_table(rest)?)),
        "elevenlabs" => Ok(TtsConfig::Elevenlabs(from_table(rest)?)),
        "cartesia" => Ok(TtsConfig::Cartesia(from_table(rest)?)),
        "deepgram_aura" => Ok(TtsConfig::DeepgramAura(from_table(rest)?)),
        "local" => Ok(TtsConfig::Local(from_table(rest)?)),
        other => Err(unknown_kind(other, TTS_KINDS)),
    }
}

impl<'de> Deserialize<'de> for TtsConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match parse_role::<_, D::Error>(toml::Table::deserialize(d)?, tts_member::<D::Error>)? {
            (Some(one), _) => Ok(one),
            (None, Some(chain)) => Ok(TtsConfig::Chain(chain)),
            (None, None) => Err(serde::de::Error::custom("missing `kind`")),
        }
    }
}

impl TtsConfig {
    /// The provider voice id replies are spoken with when one provider
    /// speaks them; `None` for the scripted fake and for a chain (each
    /// member then uses its own `voice_id`).
    pub fn voice(&self) -> Option<String> {
        match self {
            TtsConfig::Scripted(_) | TtsConfig::Chain(_) => None,
            TtsConfig::Local(c) => Some(c.voice.clone()),
            TtsConfig::Elevenlabs(c) => Some(c.voice_id.clone()),
            TtsConfig::Cartesia(c) => Some(c.voice_id.clone()),
            TtsConfig::DeepgramAura(c) => Some(c.model.clone()),
        }
    }
}

impl Default for TtsConfig {
    fn default() -> Self {
        TtsConfig::Local(LocalTtsConfig::default())
    }
}

/// `kind = "local"` TTS: a Piper voice on ONNX Runtime, sentence by sentence.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalTtsConfig {
    /// Voice name: `<voice>.onnx` and `<voice>.onnx.json` in the models
    /// folder (default `en_US-joe-medium`).
    pub voice: String,
    /// Speaking rate: above 1 is slower (Piper `length_scale`; default 1.0, 0.5–2.0).
    pub length_scale: f32,
    /// How much two sayings of a sentence differ in rhythm and tone
    /// (Piper's noise: 1 = the voice's own, 0 = the same audio every time;
    /// default 1.0, 0–1.5).
    pub variation: f32,
    /// Sentences synthesised at once (default: half the CPU cores, at least 1; 1–16).
    pub synthesizers: Option<u32>,
    /// Threads per synthesis (default 1, 1–16).
    pub threads: u32,
    /// Sentences kept synthesised in memory, so a phrase said on every call
    /// (the greeting, "one moment") costs nothing after its first time
    /// (default 256, 0–100000).
    pub cache_sentences: u32,
}

impl LocalTtsConfig {
    /// Check the values (`p` is the key prefix, e.g. `providers.tts.`);
    /// `frontdesk say` checks its flags with it too.
    pub fn validate(&self, p: &str) -> Result<(), ConfigError> {
        let name_ok = !self.voice.is_empty()
            && self
                .voice
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok || self.voice.starts_with('.') {
            return Err(ConfigError::invalid(
                format!("{p}voice"),
                format!(
                    "`{}` is not a voice name such as `en_US-joe-medium`",
                    self.voice
                ),
            ));
        }
        check_float(&format!("{p}length_scale"), self.length_scale, 0.5, 2.0)?;
        check_float(&format!("{p}variation"), self.variation, 0.0, 1.5)?;
        if let Some(n) = self.synthesizers {
            check_range(&format!("{p}synthesizers"), n.into(), 1, 16, "")?;
        }
        check_range(&format!("{p}threads"), self.threads.into(), 1, 16, "")?;
        check_range(
            &format!("{p}cache_sentences"),
            self.cache_sentences.into(),
            0,
            100_000,
            "",
        )
    }
}

/// `v` within `lo..=hi` (NaN is not).
fn check_float<T: PartialOrd + Copy + std::fmt::Display>(
    key: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<(), ConfigError> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("{v} is out of range; allowed {lo}–{hi}"),
        ))
    }
}

impl Default for LocalTtsConfig {
    fn default() -> Self {
        LocalTtsConfig {
            voice: "en_US-joe-medium".into(),
            length_scale: 1.0,
            variation: 1.0,
            synthesizers: None,
            threads: 1,
            cache_sentences: 256,
        }
    }
}

/// `kind = "scripted"` TTS.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScriptedTtsConfig {
    /// Milliseconds from the first text to the first audio (default 150, 0–60000).
    pub first_audio_ms: Option<u64>,
    /// Path to any WAV file (any rate, mono or stereo), resampled to 8 kHz
    /// μ-law at start-up. Default: the built-in 2-second reply.
    pub audio: Option<PathBuf>,
}

impl ScriptedTtsConfig {
    /// First-audio latency with its default applied.
    pub fn first_audio_ms(&self) -> u64 {
        self.first_audio_ms.unwrap_or(150)
    }
}

/// `kind = "elevenlabs"` TTS: `…/stream-input`, `output_format=ulaw_8000`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ElevenlabsTtsConfig {
    /// WebSocket API base (default `wss://api.elevenlabs.io/v1`).
    pub base_url: String,
    /// Voice id (default `21m00Tcm4TlvDq8ikWAM`, the stock "Rachel").
    pub voice_id: String,
    /// Model (default `eleven_flash_v2_5`).
    pub model_id: String,
    /// Milliseconds the WebSocket handshake may take (default 5000, 100–60000).
    pub connect_timeout_ms: u64,
}

impl Default for ElevenlabsTtsConfig {
    fn default() -> Self {
        ElevenlabsTtsConfig {
            base_url: "wss://api.elevenlabs.io/v1".into(),
            voice_id: "21m00Tcm4TlvDq8ikWAM".into(),
            model_id: "eleven_flash_v2_5".into(),
            connect_timeout_ms: 5000,
        }
    }
}

/// `kind = "cartesia"` TTS: one context per reply, `pcm_mulaw` at 8 kHz.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CartesiaTtsConfig {
    /// WebSocket URL (default `wss://api.cartesia.ai/tts/websocket`).
    pub base_url: String,
    /// Voice id (a UUID from the Cartesia voice library; required).
    pub voice_id: String,
    /// Model (default `sonic-3`).
    pub model_id: String,
    /// `Cartesia-Version` header (default `2026-03-01`).
    pub version: String,
    /// Language (default `en`).
    pub language: String,
    /// Milliseconds the WebSocket handshake may take (default 5000, 100–60000).
    pub connect_timeout_ms: u64,
}

impl Default for CartesiaTtsConfig {
    fn default() -> Self {
        CartesiaTtsConfig {
            base_url: "wss://api.cartesia.ai/tts/websocket".into(),
            voice_id: String::new(),
            model_id: "sonic-3".into(),
            version: "2026-03-01".into(),
            language: "en".into(),
            connect_timeout_ms: 5000,
        }
    }
}

/// `kind = "deepgram_aura"` TTS: Speak/Flush/Clear, mulaw at 8 kHz.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuraTtsConfig {
    /// WebSocket URL of the speak endpoint (default `wss://api.deepgram.com/v1/speak`).
    pub base_url: String,
    /// Voice model (default `aura-2-thalia-en`).
    pub model: String,
    /// Milliseconds the WebSocket handshake may take (default 5000, 100–60000).
    pub connect_timeout_ms: u64,
}

impl Default for AuraTtsConfig {
    fn default() -> Self {
        AuraTtsConfig {
            base_url: "wss://api.deepgram.com/v1/speak".into(),
            model: "aura-2-thalia-en".into(),
            connect_timeout_ms: 5000,
        }
    }
}

// ------------------------------------------------------------------ checks

/// A provider that needs an environment variable: the config key that
/// turned it on, its value as written, and the variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvNeed {
    /// `providers.stt.kind` or `providers.stt.chain`.
    pub key: String,
    /// `"deepgram"`.
    pub value: String,
    /// `DEEPGRAM_API_KEY`.
    pub var: &'static str,
}

fn need(out: &mut Vec<EnvNeed>, role: &str, chained: bool, kind: &str, var: &'static str) {
    let key = if chained { "chain" } else { "kind" };
    out.push(EnvNeed {
        key: format!("providers.{role}.{key}"),
        value: format!("\"{kind}\""),
        var,
    });
}

fn check_ws_url(key: &str, url: &str) -> Result<(), ConfigError> {
    if url.starts_with("ws://") || url.starts_with("wss://") {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("`{url}` is not a ws:// or wss:// URL"),
        ))
    }
}

fn stt_validate(c: &SttConfig, p: &str) -> Result<(), ConfigError> {
    match c {
        SttConfig::Scripted(s) if s.transcripts.is_empty() => Err(ConfigError::invalid(
            format!("{p}transcripts"),
            "needs at least one transcript",
        )),
        SttConfig::Scripted(s) => check_range(
            &format!("{p}final_after_ms"),
            s.final_after_ms,
            0,
            60_000,
            "ms",
        ),
        SttConfig::Deepgram(d) => {
            check_ws_url(&format!("{p}base_url"), &d.base_url)?;
            check_range(
                &format!("{p}endpointing_ms"),
                d.endpointing_ms,
                10,
                5000,
                "ms",
            )?;
            check_range(
                &format!("{p}utterance_end_ms"),
                d.utterance_end_ms,
                1000,
                5000,
                "ms",
            )?;
            check_range(
                &format!("{p}connect_timeout_ms"),
                d.connect_timeout_ms,
                100,
                60_000,
                "ms",
            )?;
            check_range(&format!("{p}keepalive_ms"), d.keepalive_ms, 500, 9000, "ms")
        }
        SttConfig::Local(l) => {
            if l.model.as_os_str().is_empty() {
                return Err(ConfigError::invalid(format!("{p}model"), "is empty"));
            }
            if let Some(d) = l.decoders {
                check_range(&format!("{p}decoders"), d.into(), 1, 64, "")?;
            }
            check_range(&format!("{p}threads"), l.threads.into(), 1, 16, "")?;
            check_range(
                &format!("{p}max_utterance_ms"),
                l.max_utterance_ms.into(),
                1000,
                30_000,
                "ms",
            )
        }
        SttConfig::Chain(ch) => ch.members.iter().try_for_each(|m| {
            let sub = format!("{p}{}.", stt_kind(m));
            stt_validate(m, &sub)
        }),
    }
}

fn llm_validate(c: &LlmConfig, p: &str) -> Result<(), ConfigError> {
    match c {
        LlmConfig::Scripted(llm) => {
            check_range(
                &format!("{p}first_token_ms"),
                llm.first_token_ms,
                0,
                60_000,
                "ms",
            )?;
            check_range(
                &format!("{p}token_interval_ms"),
                llm.token_interval_ms,
                0,
                10_000,
                "ms",
            )
        }
        LlmConfig::Openai(o) => {
            if !(o.base_url.starts_with("http://") || o.base_url.starts_with("https://")) {
                return Err(ConfigError::invalid(
                    format!("{p}base_url"),
                    "must be an http(s) URL",
                ));
            }
            if o.model.trim().is_empty() {
                return Err(ConfigError::invalid(format!("{p}model"), "is empty"));
            }
            if let Some(t) = o.temperature {
                check_float(&format!("{p}temperature"), t, 0.0, 2.0)?;
            }
            check_range(&format!("{p}timeout_ms"), o.timeout_ms, 100, 120_000, "ms")
        }
        LlmConfig::Chain(ch) => ch.members.iter().try_for_each(|m| {
            let sub = format!("{p}{}.", llm_kind(m));
            llm_validate(m, &sub)
        }),
    }
}

fn tts_validate(c: &TtsConfig, p: &str) -> Result<(), ConfigError> {
    let connect = |v: u64| check_range(&format!("{p}connect_timeout_ms"), v, 100, 60_000, "ms");
    match c {
        TtsConfig::Scripted(tts) => check_range(
            &format!("{p}first_audio_ms"),
            tts.first_audio_ms(),
            0,
            60_000,
            "ms",
        ),
        TtsConfig::Elevenlabs(e) => {
            check_ws_url(&format!("{p}base_url"), &e.base_url)?;
            if e.voice_id.trim().is_empty() {
                return Err(ConfigError::invalid(format!("{p}voice_id"), "is empty"));
            }
            connect(e.connect_timeout_ms)
        }
        TtsConfig::Cartesia(c) => {
            check_ws_url(&format!("{p}base_url"), &c.base_url)?;
            if c.voice_id.trim().is_empty() {
                return Err(ConfigError::invalid(
                    format!("{p}voice_id"),
                    "is required (a voice UUID from the Cartesia library)",
                ));
            }
            connect(c.connect_timeout_ms)
        }
        TtsConfig::DeepgramAura(a) => {
            check_ws_url(&format!("{p}base_url"), &a.base_url)?;
            connect(a.connect_timeout_ms)
        }
        TtsConfig::Local(l) => l.validate(p),
        TtsConfig::Chain(ch) => ch.members.iter().try_for_each(|m| {
            let sub = format!("{p}{}.", tts_kind(m));
            tts_validate(m, &sub)
        }),
    }
}

/// The `kind` an STT member was written as.
pub fn stt_kind(c: &SttConfig) -> &'static str {
    match c {
        SttConfig::Scripted(_) => "scripted",
        SttConfig::Deepgram(_) => "deepgram",
        SttConfig::Local(_) => "local",
        SttConfig::Chain(_) => "chain",
    }
}

/// The `kind` an LLM member was written as.
pub fn llm_kind(c: &LlmConfig) -> &'static str {
    match c {
        LlmConfig::Scripted(_) => "scripted",
        LlmConfig::Openai(_) => "openai",
        LlmConfig::Chain(_) => "chain",
    }
}

/// The `kind` a TTS member was written as.
pub fn tts_kind(c: &TtsConfig) -> &'static str {
    match c {
        TtsConfig::Scripted(_) => "scripted",
        TtsConfig::Elevenlabs(_) => "elevenlabs",
        TtsConfig::Cartesia(_) => "cartesia",
        TtsConfig::DeepgramAura(_) => "deepgram_aura",
        TtsConfig::Local(_) => "local",
        TtsConfig::Chain(_) => "chain",
    }
}

impl ProvidersConfig {
    /// Range and shape checks, naming the dotted key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        stt_validate(&self.stt, "providers.stt.")?;
        llm_validate(&self.llm, "providers.llm.")?;
        tts_validate(&self.tts, "providers.tts.")
    }

    /// The environment variables the configured providers need, in config
    /// order (a provider named twice is listed once).
    pub fn required_env(&self) -> Vec<EnvNeed> {
        let mut out = Vec::new();
        let stt = |c: &SttConfig, chained: bool, out: &mut Vec<EnvNeed>| {
            if let SttConfig::Deepgram(_) = c {
                need(out, "stt", chained, "deepgram", env::DEEPGRAM_API_KEY);
            }
        };
        match &self.stt {
            SttConfig::Chain(ch) => ch.members.iter().for_each(|m| stt(m, true, &mut out)),
            one => stt(one, false, &mut out),
        }
        let llm = |c: &LlmConfig, chained: bool, out: &mut Vec<EnvNeed>| {
            if let LlmConfig::Openai(o) = c {
                if o.needs_key() {
                    need(out, "llm", chained, "openai", env::OPENAI_API_KEY);
                }
            }
        };
        match &self.llm {
            LlmConfig::Chain(ch) => ch.members.iter().for_each(|m| llm(m, true, &mut out)),
            one => llm(one, false, &mut out),
        }
        let tts = |c: &TtsConfig, chained: bool, out: &mut Vec<EnvNeed>| match c {
            TtsConfig::Elevenlabs(_) => {
                need(out, "tts", chained, "elevenlabs", env::ELEVENLABS_API_KEY)
            }
            TtsConfig::Cartesia(_) => need(out, "tts", chained, "cartesia", env::CARTESIA_API_KEY),
            TtsConfig::DeepgramAura(_) => {
                need(out, "tts", chained, "deepgram_aura", env::DEEPGRAM_API_KEY)
            }
            _ => {}
        };
        match &self.tts {
            TtsConfig::Chain(ch) => ch.members.iter().for_each(|m| tts(m, true, &mut out)),
            one => tts(one, false, &mut out),
        }
        out
    }

    /// Relative paths (the scripted TTS audio) are relative to the config file.
    pub fn resolve_relative_paths(&mut self, base: &Path) {
        fn fix(c: &mut TtsConfig, base: &Path) {
            match c {
                TtsConfig::Scripted(tts) => {
                    if let Some(p) = &tts.audio {
                        if p.is_relative() {
                            tts.audio = Some(base.join(p));
                        }
                    }
                }
                TtsConfig::Chain(ch) => ch.members.iter_mut().for_each(|m| fix(m, base)),
                _ => {}
            }
        }
        fix(&mut self.tts, base);
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, SttConfig, TtsConfig};

    fn err(text: &str) -> String {
        Config::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn a_chain_with_member_tables_parses() {
        let cfg = Config::from_toml(
            r#"
            [providers.stt]
            chain = ["deepgram", "scripted"]
            stall_ms = 1500
            [providers.stt.deepgram]
            model = "nova-2-phonecall"
            [providers.tts]
            kind = "cartesia"
            voice_id = "a0e99841-438c-4a64-b679-ae501e7d6091"
            "#,
        )
        .unwrap();
        let SttConfig::Chain(ch) = &cfg.providers.stt else {
            panic!("{:?}", cfg.providers.stt)
        };
        assert_eq!(ch.stall_ms, 1500);
        assert!(matches!(&ch.members[0], SttConfig::Deepgram(d) if d.model == "nova-2-phonecall"));
        assert!(matches!(&ch.members[1], SttConfig::Scripted(_)));
        assert!(matches!(cfg.providers.tts, TtsConfig::Cartesia(_)));
    }

    #[test]
    fn bad_chains_name_the_key() {
        for (text, key) in [
            (
                "[providers.stt]\nchain = [\"deepgram\", \"deepgram\"]\n",
                "providers.stt.chain",
            ),
            ("[providers.stt]\nchain = []\n", "providers.stt.chain"),
            (
                "[providers.stt]\nchain = [\"whisperx\"]\n",
                "providers.stt.chain",
            ),
            (
                "[providers.llm]\nchain = [\"openai\"]\n[providers.llm.openai]\nmodle = \"x\"\n",
                "providers.llm.openai.modle",
            ),
            (
                "[providers.llm]\nchain = [\"openai\"]\n[providers.llm.scripted]\n",
                "providers.llm.scripted",
            ),
            (
                "[providers.tts]\nchain = [\"scripted\"]\nstall_ms = 5\n",
                "providers.tts.stall_ms",
            ),
            (
                "[providers.tts]\nchain = [\"cartesia\"]\n",
                "providers.tts.cartesia.voice_id",
            ),
            (
                "[providers.stt]\nkind = \"deepgram\"\nbase_url = \"https://x\"\n",
                "providers.stt.base_url",
            ),
            (
                "[providers.llm]\nkind = \"openai\"\ntemperature = 3.0\n",
                "providers.llm.temperature",
            ),
        ] {
            let e = Config::from_toml(text).expect_err(text);
            assert_eq!(e.key(), key, "{text}: {e}");
            assert!(!e.to_string().contains('\u{1}'), "{e}");
        }
        assert!(
            err("[providers.stt]\nkind = \"deepgram\"\nchain = [\"scripted\"]\n")
                .contains("not both")
        );
    }

    #[test]
    fn keys_are_needed_by_kind_and_openai_only_off_this_machine() {
        let cfg = Config::from_toml(
            r#"
            [providers.stt]
            chain = ["deepgram", "scripted"]
            [providers.llm]
            kind = "openai"
            base_url = "http://127.0.0.1:11434/v1"
            [providers.tts]
            kind = "deepgram_aura"
            "#,
        )
        .unwrap();
        let vars: Vec<_> = cfg
            .providers
            .required_env()
            .into_iter()
            .map(|n| (n.key, n.var))
            .collect();
        assert_eq!(
            vars,
            [
                ("providers.stt.chain".to_string(), "DEEPGRAM_API_KEY"),
                ("providers.tts.kind".to_string(), "DEEPGRAM_API_KEY"),
            ]
        );
        for (url, local) in [
            ("https://api.openai.com/v1", false),
            ("http://localhost:8000/v1", true),
            ("http://192.168.1.20:8000/v1", true),
            ("http://ollama:11434/v1", true),
            ("https://api.groq.com/openai/v1", false),
            ("http://[::1]:8080/v1", true),
        ] {
            assert_eq!(super::is_local_url(url), local, "{url}");
        }
    }
}
