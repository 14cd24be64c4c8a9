//! Typed configuration: one TOML file plus secrets from the environment.
//!
//! Every section denies unknown keys, every field has a documented default and
//! unit, and [`Config::validate`] checks ranges before any port is bound. A bad
//! config is one precise line naming the key (`frontdesk` exits 64 on it).
//!
//! This module owns parsing and validation only; it must not open files other
//! than the config itself (the scripted TTS audio is loaded by
//! [`crate::providers`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub mod env;
pub mod notify;
pub use env::Env;

pub use crate::config_error::{check_http_client, ConfigError};

/// The whole configuration. Every section is optional; `Config::default()` is
/// the built-in demo business with scripted providers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`: where to listen and how the outside world reaches us.
    pub server: ServerConfig,
    /// `[business]`: name, time zone, phone region.
    pub business: BusinessConfig,
    /// `[storage]`: database URL.
    pub storage: crate::store::StorageConfig,
    /// `[calendar]`: booking owners and slot rules.
    pub calendar: crate::booking::CalendarConfig,
    /// `[crm]`: which CRM to write contacts to.
    pub crm: crate::crm::CrmConfig,
    /// `[vad]`: voice activity detection and barge-in thresholds.
    pub vad: VadConfig,
    /// `[call]`: greeting, playout pacing, timeouts.
    pub call: CallConfig,
    /// `[providers.stt|llm|tts]`.
    pub providers: ProvidersConfig,
    /// `[slack]`: lead cards, digest, escalation.
    pub slack: notify::SlackConfig,
    /// `[links]`: signed call-back links and the reps who claim them.
    pub links: notify::LinksConfig,
    /// `[webhooks]`: the post-call webhook.
    pub webhooks: notify::WebhooksConfig,
    /// `[twilio]`: REST base URL (click-to-call), SMS sender.
    pub twilio: notify::TwilioConfig,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to bind (default `127.0.0.1:8080`; `--listen` overrides it).
    pub listen: SocketAddr,
    /// Public base URL carriers use to reach us (default `http://localhost:8080`).
    pub public_url: String,
    /// Most calls held at once; further media streams are refused (default 2000).
    pub max_calls: usize,
    /// Seconds live calls get to finish after SIGTERM (default 30).
    pub drain_grace_s: u64,
    /// Largest carrier WebSocket message accepted, in bytes (default 65536).
    /// Larger messages are dropped, logged and counted; the call goes on.
    pub max_message_bytes: usize,
    /// Milliseconds an upgraded media WebSocket may take to send the
    /// stream's `start` before it is closed (default 5000, 100–60000). Only
    /// a started stream takes one of `max_calls`.
    pub start_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: "http://localhost:8080".into(),
            max_calls: 2000,
            drain_grace_s: 30,
            max_message_bytes: 64 * 1024,
            start_timeout_ms: 5000,
        }
    }
}

/// `[business]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusinessConfig {
    /// The business name the receptionist says (default "Frontdesk Demo Co").
    pub name: String,
    /// IANA time zone of the business (default `Europe/London`).
    pub timezone: String,
    /// Default region for phone numbers written without a country code (ISO 3166, default `GB`).
    pub default_region: String,
}

impl Default for BusinessConfig {
    fn default() -> Self {
        BusinessConfig {
            name: "Frontdesk Demo Co".into(),
            timezone: "Europe/London".into(),
            default_region: "GB".into(),
        }
    }
}

/// `[vad]`: see `docs/turn-taking.md` for how these interact.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VadConfig {
    /// Milliseconds of voiced audio before the caller counts as speaking (default 200, 20–2000, multiple of 20).
    pub start_ms: u32,
    /// Milliseconds of silence before the caller's turn is over (default 500, 20–5000, multiple of 20).
    pub end_ms: u32,
    /// While the bot speaks, caller speech at least this long interrupts it (default 300, 20–5000, multiple of 20).
    pub barge_in_min_ms: u32,
    /// webrtc-vad aggressiveness 0–3 (default 2: "aggressive").
    pub mode: u8,
    /// Frames quieter than this RMS level (dBFS) are never speech (default −50; line hiss sits below it).
    pub energy_floor_dbfs: f32,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            start_ms: 200,
            end_ms: 500,
            barge_in_min_ms: 300,
            mode: 2,
            energy_floor_dbfs: -50.0,
        }
    }
}

/// `[call]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallConfig {
    /// What the bot says when the stream starts; empty string = no greeting.
    pub greeting: String,
    /// The callers' language, BCP-47, passed to speech-to-text (default `en`).
    pub language: String,
    /// Send a Twilio `mark` at least every this many ms of bot audio (default 200, 20–1000).
    pub mark_every_ms: u32,
    /// Never have more than this many ms of bot audio beyond the last echoed mark (default 400, ≥ mark_every_ms).
    pub max_ahead_ms: u32,
    /// Largest single outbound media message in ms of audio (default 100, 20–1000, multiple of 20).
    pub chunk_ms: u32,
    /// Give up waiting for the final transcript after this many ms (default 3000).
    pub transcript_timeout_ms: u64,
    /// Give up on a reply that produced no audio after this many ms (default 8000).
    pub reply_timeout_ms: u64,
    /// Hang up after this many ms with no media from the carrier (default 15000).
    pub media_timeout_ms: u64,
}

impl Default for CallConfig {
    fn default() -> Self {
        CallConfig {
            greeting: "Thanks for calling. This is the front desk, how can I help?".into(),
            language: "en".into(),
            mark_every_ms: 200,
            max_ahead_ms: 400,
            chunk_ms: 100,
            transcript_timeout_ms: 3000,
            reply_timeout_ms: 8000,
            media_timeout_ms: 15000,
        }
    }
}

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

/// `[providers.stt]`, chosen by `kind`.
#[derive(Debug, Clone)]
pub enum SttConfig {
    /// Fixed-latency fake: a final transcript `final_after_ms` after each utterance ends.
    Scripted(ScriptedSttConfig),
}

impl<'de> Deserialize<'de> for SttConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (kind, rest) = split_kind::<D::Error>(toml::Table::deserialize(d)?)?;
        match kind.as_str() {
            "scripted" => Ok(SttConfig::Scripted(from_table(rest)?)),
            other => Err(serde::de::Error::custom(format!(
                "unknown kind `{other}`, expected one of: scripted"
            ))),
        }
    }
}

impl Default for SttConfig {
    fn default() -> Self {
        SttConfig::Scripted(ScriptedSttConfig::default())
    }
}

/// `kind = "scripted"` STT.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScriptedSttConfig {
    /// Milliseconds from the end of an utterance to its final transcript (default 100).
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

/// `[providers.llm]`, chosen by `kind`.
#[derive(Debug, Clone)]
pub enum LlmConfig {
    /// Fixed-latency fake streaming a canned reply.
    Scripted(ScriptedLlmConfig),
}

impl<'de> Deserialize<'de> for LlmConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (kind, rest) = split_kind::<D::Error>(toml::Table::deserialize(d)?)?;
        match kind.as_str() {
            "scripted" => Ok(LlmConfig::Scripted(from_table(rest)?)),
            other => Err(serde::de::Error::custom(format!(
                "unknown kind `{other}`, expected one of: scripted"
            ))),
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
    /// Milliseconds from the request to the first token (default 200).
    pub first_token_ms: u64,
    /// Milliseconds between later tokens (default 0: the rest arrives at once).
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

/// `[providers.tts]`, chosen by `kind`.
#[derive(Debug, Clone)]
pub enum TtsConfig {
    /// Fixed-latency fake that answers every text with the same audio.
    Scripted(ScriptedTtsConfig),
}

impl<'de> Deserialize<'de> for TtsConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (kind, rest) = split_kind::<D::Error>(toml::Table::deserialize(d)?)?;
        match kind.as_str() {
            "scripted" => Ok(TtsConfig::Scripted(from_table(rest)?)),
            other => Err(serde::de::Error::custom(format!(
                "unknown kind `{other}`, expected one of: scripted"
            ))),
        }
    }
}

impl TtsConfig {
    /// The provider voice id replies are spoken with, if the provider has voices.
    pub fn voice(&self) -> Option<String> {
        match self {
            TtsConfig::Scripted(_) => None,
        }
    }
}

impl Default for TtsConfig {
    fn default() -> Self {
        TtsConfig::Scripted(ScriptedTtsConfig::default())
    }
}

/// `kind = "scripted"` TTS.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScriptedTtsConfig {
    /// Milliseconds from the first text to the first audio (default 150).
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

/// Marks a nested key path inside a custom error so [`Config::from_toml`] can
/// report the full dotted key.
const PATH_MARK: char = '\u{1}';

/// Take `kind` out of a provider table.
fn split_kind<E: serde::de::Error>(mut t: toml::Table) -> Result<(String, toml::Table), E> {
    match t.remove("kind") {
        Some(toml::Value::String(k)) => Ok((k, t)),
        Some(_) => Err(E::custom(format!(
            "{PATH_MARK}kind{PATH_MARK}must be a string"
        ))),
        None => Err(E::custom("missing `kind` (e.g. kind = \"scripted\")")),
    }
}

/// Deserialize the rest of a provider table, keeping the key path of errors.
fn from_table<T: serde::de::DeserializeOwned, E: serde::de::Error>(t: toml::Table) -> Result<T, E> {
    serde_path_to_error::deserialize(toml::Value::Table(t)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let message = inner
            .lines()
            .last()
            .unwrap_or("invalid value")
            .trim()
            .to_string();
        E::custom(format!("{PATH_MARK}{path}{PATH_MARK}{message}"))
    })
}

/// Range check for a millisecond setting.
fn check_ms(key: &str, v: u32, lo: u32, hi: u32, multiple_of_20: bool) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError::invalid(
            key,
            format!("{v} is out of range; allowed {lo}–{hi} ms"),
        ));
    }
    if multiple_of_20 && !v.is_multiple_of(20) {
        return Err(ConfigError::invalid(
            key,
            format!("{v} is not a multiple of 20 ms (the audio frame length)"),
        ));
    }
    Ok(())
}

impl Config {
    /// Parse TOML text. Errors name the dotted key.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let key = if path.is_empty() || path == "." {
                "(root)".to_string()
            } else {
                path
            };
            // toml's own message carries a code snippet; keep only its last line.
            let inner = e.into_inner().to_string();
            let message = inner
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid value")
                .trim()
                .to_string();
            // A nested path from a hand-written section deserializer.
            let mut parts = message.splitn(3, PATH_MARK);
            if let (Some(_), Some(sub), Some(msg)) = (parts.next(), parts.next(), parts.next()) {
                let key = if sub.is_empty() || sub == "." {
                    key
                } else {
                    format!("{key}.{sub}")
                };
                return ConfigError::Parse {
                    key,
                    message: msg.to_string(),
                };
            }
            ConfigError::Parse { key, message }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Config::from_toml(&text)?;
        cfg.resolve_relative_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(cfg)
    }

    /// Relative paths in the file are relative to the file itself.
    fn resolve_relative_paths(&mut self, base: &Path) {
        let TtsConfig::Scripted(tts) = &mut self.providers.tts;
        if let Some(p) = &tts.audio {
            if p.is_relative() {
                tts.audio = Some(base.join(p));
            }
        }
    }

    /// The database URL: `FRONTDESK_DATABASE_URL` if set, else `[storage]
    /// url`, else `sqlite://frontdesk.db`. A variable that is set but blank,
    /// or a URL frontdesk cannot use, is an error naming where it came from.
    pub fn database_url(&self, env: &Env) -> Result<String, ConfigError> {
        match env.raw(env::DATABASE_URL) {
            Some(v) if v.trim().is_empty() => Err(ConfigError::BadEnv {
                var: env::DATABASE_URL.into(),
                message: "is set but empty; unset it to use `[storage] url` or the default sqlite://frontdesk.db".into(),
            }),
            Some(v) => {
                crate::store::check_url(v).map_err(|message| ConfigError::BadEnv {
                    var: env::DATABASE_URL.into(),
                    message,
                })?;
                Ok(v.trim().to_string())
            }
            None => {
                let url = self
                    .storage
                    .url
                    .clone()
                    .unwrap_or_else(|| crate::store::DEFAULT_URL.to_string());
                crate::store::check_url(&url)
                    .map_err(|m| ConfigError::invalid("storage.url", m))?;
                Ok(url.trim().to_string())
            }
        }
    }

    /// Check ranges and cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let v = &self.vad;
        check_ms("vad.start_ms", v.start_ms, 20, 2000, true)?;
        check_ms("vad.end_ms", v.end_ms, 20, 5000, true)?;
        check_ms("vad.barge_in_min_ms", v.barge_in_min_ms, 20, 5000, true)?;
        if v.mode > 3 {
            return Err(ConfigError::invalid(
                "vad.mode",
                format!("{} is not 0, 1, 2 or 3", v.mode),
            ));
        }
        if !(-100.0..=0.0).contains(&v.energy_floor_dbfs) {
            return Err(ConfigError::invalid(
                "vad.energy_floor_dbfs",
                format!(
                    "{} is out of range; allowed −100 to 0 dBFS",
                    v.energy_floor_dbfs
                ),
            ));
        }
        let c = &self.call;
        check_ms("call.mark_every_ms", c.mark_every_ms, 20, 1000, true)?;
        check_ms("call.chunk_ms", c.chunk_ms, 20, 1000, true)?;
        check_ms("call.max_ahead_ms", c.max_ahead_ms, 20, 10_000, true)?;
        if c.max_ahead_ms < c.mark_every_ms {
            return Err(ConfigError::invalid(
                "call.max_ahead_ms",
                format!(
                    "{} is below call.mark_every_ms ({}): playout would stall",
                    c.max_ahead_ms, c.mark_every_ms
                ),
            ));
        }
        if c.greeting.len() > 2000 {
            return Err(ConfigError::invalid(
                "call.greeting",
                "longer than 2000 bytes",
            ));
        }
        if self.server.max_calls == 0 {
            return Err(ConfigError::invalid(
                "server.max_calls",
                "must be at least 1",
            ));
        }
        if !(100..=60_000).contains(&self.server.start_timeout_ms) {
            return Err(ConfigError::invalid(
                "server.start_timeout_ms",
                format!(
                    "{} is out of range; allowed 100–60000 ms",
                    self.server.start_timeout_ms
                ),
            ));
        }
        let lang = &self.call.language;
        if lang.is_empty()
            || lang.len() > 35
            || !lang.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(ConfigError::invalid(
                "call.language",
                format!("`{lang}` is not a BCP-47 language tag (e.g. en, en-GB)"),
            ));
        }
        if self.server.max_message_bytes < 1024 {
            return Err(ConfigError::invalid(
                "server.max_message_bytes",
                "must be at least 1024 (a Twilio start message is larger than that)",
            ));
        }
        if self.business.timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(ConfigError::invalid(
                "business.timezone",
                format!(
                    "`{}` is not an IANA time zone (e.g. Europe/London)",
                    self.business.timezone
                ),
            ));
        }
        match &self.providers.stt {
            SttConfig::Scripted(s) if s.transcripts.is_empty() => {
                return Err(ConfigError::invalid(
                    "providers.stt.transcripts",
                    "needs at least one transcript",
                ))
            }
            SttConfig::Scripted(_) => {}
        }
        self.storage.validate()?;
        self.calendar.validate()?;
        self.crm.validate()?;
        self.slack.validate()?;
        self.links.validate()?;
        self.webhooks.validate()?;
        self.twilio.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn empty_file_is_the_demo_defaults() {
        let cfg = Config::from_toml("").unwrap();
        assert_eq!(cfg.vad.start_ms, 200);
        assert_eq!(cfg.call.max_ahead_ms, 400);
        assert!(!cfg.call.greeting.is_empty());
    }

    #[test]
    fn benchmark_keys_parse_with_their_names() {
        let cfg = Config::from_toml(
            r#"
            [vad]
            start_ms = 200
            end_ms = 200
            barge_in_min_ms = 200
            [providers.stt]
            kind = "scripted"
            final_after_ms = 100
            [providers.llm]
            kind = "scripted"
            first_token_ms = 200
            reply = "Sure."
            [providers.tts]
            kind = "scripted"
            first_audio_ms = 150
            audio = "reply.wav"
            [call]
            greeting = ""
            "#,
        )
        .unwrap();
        assert_eq!(cfg.vad.end_ms, 200);
        let SttConfig::Scripted(stt) = &cfg.providers.stt;
        assert_eq!(stt.final_after_ms, 100);
        let LlmConfig::Scripted(llm) = &cfg.providers.llm;
        assert_eq!((llm.first_token_ms, llm.reply.as_str()), (200, "Sure."));
        let TtsConfig::Scripted(tts) = &cfg.providers.tts;
        assert_eq!(tts.first_audio_ms(), 150);
        assert_eq!(tts.audio.as_deref(), Some(Path::new("reply.wav")));
        assert!(cfg.call.greeting.is_empty());
    }

    #[test]
    fn unknown_key_is_named() {
        let e = err("[vad]\nstart_msx = 3\n");
        assert!(e.contains("start_msx"), "{e}");
        let e = err("[providers.llm]\nkind = \"scripted\"\nfirst_tokn_ms = 3\n");
        assert!(e.contains("first_tokn_ms"), "{e}");
        let e = err("[nonsense]\n");
        assert!(e.contains("nonsense"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = err("[vad]\nstart_ms = \"soon\"\n");
        assert!(e.contains("vad.start_ms"), "{e}");
    }

    #[test]
    fn out_of_range_values_name_the_key() {
        assert!(err("[vad]\nstart_ms = 0\n").contains("vad.start_ms"));
        assert!(err("[vad]\nend_ms = 210\n").contains("multiple of 20"));
        assert!(err("[call]\nmax_ahead_ms = 100\n").contains("call.max_ahead_ms"));
        assert!(err("[business]\ntimezone = \"Mars/Olympus\"\n").contains("business.timezone"));
        assert!(err("[providers.tts]\nkind = \"shouty\"\n").contains("providers.tts"));
        let e = err("[providers.llm]\nkind = \"scripted\"\nreply = 5\n");
        assert!(e.contains("`providers.llm.reply`"), "{e}");
        assert!(!e.contains('\u{1}'));
    }
}
