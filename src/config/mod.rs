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

pub mod brain;
pub mod env;
pub mod notify;
pub mod providers;
pub mod routing;
pub use env::Env;
pub use providers::*;

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
    /// `[recording]`: where recordings of the calls frontdesk answers go.
    pub recording: RecordingConfig,
    /// `[providers.stt|llm|tts]`.
    pub providers: ProvidersConfig,
    /// `[location]`: location-wide routing toggles and caller screening.
    pub location: routing::LocationConfig,
    /// `[[users]]`: the team members calls ring.
    pub users: Vec<routing::UserConfig>,
    /// `[[numbers]]`: per-number call forwarding (stages 1–3).
    pub numbers: Vec<routing::NumberConfig>,
    /// `[[ivr]]`: phone menus.
    pub ivr: Vec<routing::IvrConfig>,
    /// `[[oncall]]`: on-call rotations.
    pub oncall: Vec<routing::OncallConfig>,
    /// `[twilio]`: REST base URL, SMS sender.
    pub twilio: routing::TwilioConfig,
    /// `[slack]`: lead cards, digest, escalation.
    pub slack: notify::SlackConfig,
    /// `[links]`: signed call-back links and the reps who claim them.
    pub links: notify::LinksConfig,
    /// `[webhooks]`: the post-call webhook.
    pub webhooks: notify::WebhooksConfig,
    /// `[sms]`: booking confirmations and missed-call text-backs.
    pub sms: notify::SmsConfig,
    /// `[brain]`: which conversation answers calls (rules, scripted).
    pub brain: crate::config::brain::BrainConfig,
    /// `[tiers]`: the lead tiers A–D the brain routes by.
    pub tiers: crate::config::brain::TiersConfig,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to bind (default `127.0.0.1:8080`; `--listen` overrides it).
    pub listen: SocketAddr,
    /// Public base URL carriers use to reach us (default `http://localhost:8080`):
    /// `http(s)://host[:port]`, no path.
    pub public_url: String,
    /// Most calls held at once; further media streams are refused (default 2000, 1–100000).
    pub max_calls: usize,
    /// Seconds live calls get to finish after SIGTERM (default 30, 0–3600).
    pub drain_grace_s: u64,
    /// Largest carrier WebSocket message accepted, in bytes (default 65536, 1024–16777216).
    /// Larger messages are dropped, logged and counted; the call goes on.
    /// The WebSocket transport refuses messages more than a little larger
    /// than this outright (close code 1009).
    pub max_message_bytes: usize,
    /// Milliseconds an upgraded media WebSocket may take to send the
    /// stream's `start` before it is closed (default 5000, 100–60000). Only
    /// a started stream takes one of `max_calls`.
    pub start_timeout_ms: u64,
    /// Milliseconds a client gets to send a complete HTTP request head after
    /// connecting, or between requests on a kept-alive connection (default
    /// 10000, 100–300000). A connection that does not is closed, so silent or
    /// half-sent connections cannot pile up.
    pub header_timeout_ms: u32,
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
            header_timeout_ms: 10_000,
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
    /// `[business.hours]`: opening hours in `timezone`, `"HH:MM-HH:MM"` ranges
    /// per day; a day missing from a written table is closed (default, with
    /// no table: Monday–Friday 09:00–17:30). Used by `numbers[].ai_hours`.
    pub hours: crate::booking::WeekHours,
    /// Dates (`"2026-12-25"`) the business is closed all day (default none).
    pub holidays: Vec<String>,
}

impl Default for BusinessConfig {
    fn default() -> Self {
        BusinessConfig {
            name: "Frontdesk Demo Co".into(),
            timezone: "Europe/London".into(),
            default_region: "GB".into(),
            hours: crate::booking::WeekHours::weekdays("09:00-17:30"),
            holidays: Vec::new(),
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
    /// With an STT that sends no interim words (the offline Whisper): after
    /// `barge_in_min_ms` the words of the caller's sound are decoded, and
    /// the bot stays paused this much longer waiting for them; a backchannel
    /// ("uh-huh", "okay") resumes the reply, other words interrupt it, and
    /// no words by then interrupt it anyway (default 500, 0–5000, multiple of 20).
    pub barge_in_word_wait_ms: u32,
    /// webrtc-vad aggressiveness 0–3 (default 2: "aggressive").
    pub mode: u8,
    /// Frames quieter than this RMS level (dBFS) are never speech (default −50; line hiss sits below it).
    pub energy_floor_dbfs: f32,
    /// Milliseconds of silence that end the caller's turn while the
    /// receptionist waits for a phone number, an e-mail address or a
    /// spelling, so digits read in groups are not cut off (default 1200,
    /// 20–5000, multiple of 20, at least `end_ms`).
    pub slot_end_ms: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            start_ms: 200,
            end_ms: 500,
            barge_in_min_ms: 300,
            barge_in_word_wait_ms: 500,
            mode: 2,
            energy_floor_dbfs: -50.0,
            slot_end_ms: 1200,
        }
    }
}

/// `[recording]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    /// Directory of the Ogg Opus files, one per recorded call (default
    /// `recordings`, relative to the config file).
    pub dir: PathBuf,
    /// Days a recording is kept before it is deleted (default 90, 1–3650).
    pub retention_days: u32,
    /// Record every call frontdesk answers, not only those whose stream
    /// carries the `record` parameter (default false).
    pub always: bool,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            dir: PathBuf::from("recordings"),
            retention_days: 90,
            always: false,
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
    /// Give up waiting for the final transcript after this many ms (default 3000, 500–600000).
    pub transcript_timeout_ms: u64,
    /// Give up on a reply that produced no audio after this many ms (default 8000, 500–600000).
    pub reply_timeout_ms: u64,
    /// Hang up after this many ms with no media from the carrier (default 15000, 1000–3600000).
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

/// Range check for an integer setting; `unit` goes into the message.
fn check_range(key: &str, v: u64, lo: u64, hi: u64, unit: &str) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError::invalid(
            key,
            format!("{v} is out of range; allowed {lo}–{hi} {unit}"),
        ));
    }
    Ok(())
}

/// `server.public_url`: carriers are told to call `{public_url}/twilio/…`, so
/// it must be an http(s) URL with a host (and an optional port), nothing
/// after the host but an optional `/`.
fn check_public_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must be an http:// or https:// URL (e.g. https://frontdesk.example.com)")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if !(tail.is_empty() || tail == "/") {
        return Err("must be just scheme and host (and port): no path, query or fragment".into());
    }
    if authority.contains('@') {
        return Err("must not contain a user name or password".into());
    }
    let (host, port) = match authority.strip_prefix('[') {
        // [IPv6]:port
        Some(v6) => {
            let (h, after) = v6
                .split_once(']')
                .ok_or("has an unclosed `[` in the host")?;
            if h.parse::<std::net::Ipv6Addr>().is_err() {
                return Err("has an invalid IPv6 address".into());
            }
            (h, after.strip_prefix(':'))
        }
        None => match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == ':');
    if !host_ok {
        return Err("names no valid host".into());
    }
    if let Some(p) = port {
        if !p.parse::<u16>().is_ok_and(|p| p > 0) {
            return Err(format!("has an invalid port `{p}`; allowed 1–65535"));
        }
    }
    Ok(())
}

/// The dotted key whose value starts at byte `at` of `text`: the nearest
/// `[table]` header above it plus the key on its line. For errors the
/// deserializer reports without a path (an integer too large for TOML).
fn key_at(text: &str, at: usize) -> Option<String> {
    let before = text.get(..at)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(line_start..)?.lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    let table = before[..line_start].lines().rev().find_map(|l| {
        let l = l.trim();
        let inner = l.strip_prefix("[[").and_then(|r| r.strip_suffix("]]"));
        let inner = inner.or_else(|| l.strip_prefix('[').and_then(|r| r.strip_suffix(']')));
        inner.map(|t| t.trim().to_string())
    });
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_string(),
    })
}

impl Config {
    /// Parse TOML text. Errors name the dotted key.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let key = if path.is_empty() || path == "." {
                // No path (e.g. an integer beyond TOML's i64): find the key
                // from where the error is in the text.
                inner
                    .span()
                    .and_then(|sp| key_at(text, sp.start))
                    .unwrap_or_else(|| "(root)".to_string())
            } else {
                path
            };
            // toml's own message carries a code snippet; keep only its last line.
            let inner = inner.to_string();
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
        if self.recording.dir.is_relative() {
            self.recording.dir = base.join(&self.recording.dir);
        }
        self.providers.resolve_relative_paths(base);
        for p in [
            &mut self.brain.phrases,
            &mut self.brain.knowledge,
            &mut self.brain.prompt,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
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

    /// The routing sections, for [`routing::validate`] and [`crate::routing`].
    pub fn routing_sections(&self) -> routing::Sections<'_> {
        routing::Sections {
            location: &self.location,
            users: &self.users,
            numbers: &self.numbers,
            ivr: &self.ivr,
            oncall: &self.oncall,
            twilio: &self.twilio,
        }
    }

    /// Check ranges and cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let v = &self.vad;
        check_ms("vad.start_ms", v.start_ms, 20, 2000, true)?;
        check_ms("vad.end_ms", v.end_ms, 20, 5000, true)?;
        check_ms("vad.barge_in_min_ms", v.barge_in_min_ms, 20, 5000, true)?;
        check_ms(
            "vad.barge_in_word_wait_ms",
            v.barge_in_word_wait_ms,
            0,
            5000,
            true,
        )?;
        check_ms("vad.slot_end_ms", v.slot_end_ms, 20, 5000, true)?;
        if v.slot_end_ms < v.end_ms {
            return Err(ConfigError::invalid(
                "vad.slot_end_ms",
                format!("{} is below vad.end_ms ({})", v.slot_end_ms, v.end_ms),
            ));
        }
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
        check_range(
            "call.transcript_timeout_ms",
            c.transcript_timeout_ms,
            500,
            600_000,
            "ms",
        )?;
        check_range(
            "call.reply_timeout_ms",
            c.reply_timeout_ms,
            500,
            600_000,
            "ms",
        )?;
        check_range(
            "call.media_timeout_ms",
            c.media_timeout_ms,
            1000,
            3_600_000,
            "ms",
        )?;
        check_range(
            "recording.retention_days",
            u64::from(self.recording.retention_days),
            1,
            3650,
            "days",
        )?;
        let srv = &self.server;
        check_range(
            "server.start_timeout_ms",
            srv.start_timeout_ms,
            100,
            60_000,
            "ms",
        )?;
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
        // The call semaphore panics above its own limit, and each call holds
        // memory: a box cannot hold more than this many.
        check_range(
            "server.max_calls",
            srv.max_calls as u64,
            1,
            100_000,
            "calls",
        )?;
        check_range("server.drain_grace_s", srv.drain_grace_s, 0, 3600, "s")?;
        if srv.max_message_bytes < 1024 {
            return Err(ConfigError::invalid(
                "server.max_message_bytes",
                "must be at least 1024 (a Twilio start message is larger than that)",
            ));
        }
        check_range(
            "server.max_message_bytes",
            srv.max_message_bytes as u64,
            1024,
            16 * 1024 * 1024,
            "bytes",
        )?;
        check_public_url(&srv.public_url)
            .map_err(|m| ConfigError::invalid("server.public_url", m))?;
        check_ms(
            "server.header_timeout_ms",
            self.server.header_timeout_ms,
            100,
            300_000,
            false,
        )?;
        if self.business.timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(ConfigError::invalid(
                "business.timezone",
                format!(
                    "`{}` is not an IANA time zone (e.g. Europe/London)",
                    self.business.timezone
                ),
            ));
        }
        self.providers.validate()?;
        self.storage.validate()?;
        routing::validate_business_hours(&self.business.hours, &self.business.holidays)?;
        routing::validate(self.routing_sections())?;
        self.calendar.validate()?;
        self.crm.validate()?;
        self.slack.validate()?;
        self.links.validate()?;
        self.webhooks.validate()?;
        self.sms.validate()?;
        notify::validate_twilio(&self.twilio)?;
        self.brain.validate()?;
        if self.brain.kind == brain::BrainKind::Llm {
            llm_brain_model(&self.providers.llm, "providers.llm")?;
        }
        self.tiers.validate()?;
        Ok(())
    }
}

/// `[brain] kind = "llm"` needs a model that can call tools: an OpenAI
/// (or OpenAI-compatible) provider, or a chain of them. The scripted fake
/// streams a canned line and never calls a tool; in a chain it would
/// answer for a failing model, where the llm brain hands the call to the
/// rules brain instead.
fn llm_brain_model(c: &LlmConfig, at: &str) -> Result<(), ConfigError> {
    match c {
        LlmConfig::Openai(_) => Ok(()),
        LlmConfig::Chain(ch) => ch
            .members
            .iter()
            .try_for_each(|m| llm_brain_model(m, &format!("{at}.{}", llm_kind(m)))),
        LlmConfig::Scripted(_) => Err(ConfigError::invalid(
            "brain.kind",
            format!(
                "\"llm\" needs a model that can call tools, but `{at}` is the scripted fake: \
                 set [providers.llm] kind = \"openai\" (OpenAI or any OpenAI-compatible server), \
                 or use [brain] kind = \"rules\""
            ),
        )),
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
        let SttConfig::Scripted(stt) = &cfg.providers.stt else {
            panic!("scripted stt")
        };
        assert_eq!(stt.final_after_ms, 100);
        let LlmConfig::Scripted(llm) = &cfg.providers.llm else {
            panic!("scripted llm")
        };
        assert_eq!((llm.first_token_ms, llm.reply.as_str()), (200, "Sure."));
        let TtsConfig::Scripted(tts) = &cfg.providers.tts else {
            panic!("scripted tts")
        };
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

    /// Values `check-config` used to accept although `serve` panics on them
    /// or runs a server that cannot hold a call.
    #[test]
    fn values_that_break_serve_name_the_key() {
        for (text, key) in [
            (
                "[server]\nmax_calls = 9223372036854775807\n",
                "server.max_calls",
            ),
            ("[server]\nmax_calls = 0\n", "server.max_calls"),
            ("[server]\nmax_calls = 100001\n", "server.max_calls"),
            ("[call]\nmedia_timeout_ms = 0\n", "call.media_timeout_ms"),
            ("[call]\nmedia_timeout_ms = 999\n", "call.media_timeout_ms"),
            (
                "[call]\nmedia_timeout_ms = 3600001\n",
                "call.media_timeout_ms",
            ),
            ("[call]\nreply_timeout_ms = 0\n", "call.reply_timeout_ms"),
            (
                "[call]\ntranscript_timeout_ms = 0\n",
                "call.transcript_timeout_ms",
            ),
            (
                "[call]\ntranscript_timeout_ms = 9223372036854775807\n",
                "call.transcript_timeout_ms",
            ),
            (
                "[server]\ndrain_grace_s = 18446744073709551615\n",
                "server.drain_grace_s",
            ),
            (
                "[server]\ndrain_grace_s = 18446744073709551614\n",
                "server.drain_grace_s",
            ),
            (
                "[server]\ndrain_grace_s = 9223372036854775807\n",
                "server.drain_grace_s",
            ),
            ("[server]\ndrain_grace_s = 3601\n", "server.drain_grace_s"),
            ("[server]\ndrain_grace_s = -1\n", "server.drain_grace_s"),
            (
                "[server]\npublic_url = \"not a url\"\n",
                "server.public_url",
            ),
            (
                "[server]\npublic_url = \"ftp://example.com\"\n",
                "server.public_url",
            ),
            ("[server]\npublic_url = \"https://\"\n", "server.public_url"),
            (
                "[server]\npublic_url = \"https://example.com/voice\"\n",
                "server.public_url",
            ),
            (
                "[server]\npublic_url = \"https://example.com?x=1\"\n",
                "server.public_url",
            ),
            (
                "[server]\npublic_url = \"https://u:p@example.com\"\n",
                "server.public_url",
            ),
            (
                "[server]\npublic_url = \"https://exa mple.com\"\n",
                "server.public_url",
            ),
            (
                "[server]\npublic_url = \"https://example.com:99999\"\n",
                "server.public_url",
            ),
            (
                "[server]\nmax_message_bytes = 9223372036854775807\n",
                "server.max_message_bytes",
            ),
            (
                "[providers.stt]\nkind = \"scripted\"\nfinal_after_ms = 9223372036854775807\n",
                "providers.stt.final_after_ms",
            ),
            (
                "[providers.llm]\nkind = \"scripted\"\nfirst_token_ms = 9223372036854775807\n",
                "providers.llm.first_token_ms",
            ),
            (
                "[providers.tts]\nkind = \"scripted\"\nfirst_audio_ms = 9223372036854775807\n",
                "providers.tts.first_audio_ms",
            ),
        ] {
            let e = Config::from_toml(text).expect_err(text);
            assert_eq!(e.key(), key, "{text}: {e}");
            assert!(e.to_string().contains(&format!("`{key}`")), "{text}: {e}");
            assert_eq!(e.to_string().lines().count(), 1, "{text}: {e}");
        }
        for ok in [
            "[server]\nmax_calls = 100000\ndrain_grace_s = 0\n",
            "[server]\ndrain_grace_s = 3600\n",
            "[server]\npublic_url = \"https://frontdesk.example.com\"\n",
            "[server]\npublic_url = \"https://frontdesk.example.com/\"\n",
            "[server]\npublic_url = \"http://10.0.0.7:8080\"\n",
            "[server]\npublic_url = \"http://[::1]:8080\"\n",
            "[call]\nmedia_timeout_ms = 1000\nreply_timeout_ms = 500\ntranscript_timeout_ms = 500\n",
        ] {
            assert!(Config::from_toml(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn out_of_range_values_name_the_key() {
        assert!(err("[vad]\nstart_ms = 0\n").contains("vad.start_ms"));
        assert!(err("[vad]\nend_ms = 210\n").contains("multiple of 20"));
        assert!(err("[call]\nmax_ahead_ms = 100\n").contains("call.max_ahead_ms"));
        assert!(err("[business]\ntimezone = \"Mars/Olympus\"\n").contains("business.timezone"));
        assert!(err("[server]\nheader_timeout_ms = 0\n").contains("server.header_timeout_ms"));
        assert!(err("[server]\nheader_timeout_ms = 300001\n").contains("server.header_timeout_ms"));
        assert!(err("[providers.tts]\nkind = \"shouty\"\n").contains("providers.tts"));
        let e = err("[providers.llm]\nkind = \"scripted\"\nreply = 5\n");
        assert!(e.contains("`providers.llm.reply`"), "{e}");
        assert!(!e.contains('\u{1}'));
    }
}
