//! Secrets and overrides from the environment, read in one place.
//!
//! `frontdesk` reads the process environment once, at start-up, into an
//! [`Env`]; everything else asks the `Env` it is handed. Tests build their
//! own with [`Env::from_pairs`], so no test depends on (or changes) the
//! process environment.

use std::collections::BTreeMap;

use crate::pii::Secret;

/// Config file path (the `--config` flag wins).
pub const CONFIG: &str = "FRONTDESK_CONFIG";
/// Database URL, overriding `[storage] url`.
pub const DATABASE_URL: &str = "FRONTDESK_DATABASE_URL";
/// Bearer token of `/api` and the dashboard.
pub const API_TOKEN: &str = "FRONTDESK_API_TOKEN";
/// Directory of the offline models (default `models/`).
pub const MODELS_DIR: &str = "FRONTDESK_MODELS_DIR";
/// Signing key of rep call-back links.
pub const LINK_SECRET: &str = "FRONTDESK_LINK_SECRET";
/// Signing key of the post-call webhook.
pub const WEBHOOK_SECRET: &str = "FRONTDESK_WEBHOOK_SECRET";
/// Cal.com API key (`calendar.provider = "calcom"`).
pub const CALCOM_API_KEY: &str = "CALCOM_API_KEY";
/// HubSpot private-app token (`crm.provider = "hubspot"`).
pub const HUBSPOT_TOKEN: &str = "HUBSPOT_TOKEN";
/// Deepgram key.
pub const DEEPGRAM_API_KEY: &str = "DEEPGRAM_API_KEY";
/// OpenAI (or compatible) key.
pub const OPENAI_API_KEY: &str = "OPENAI_API_KEY";
/// ElevenLabs key.
pub const ELEVENLABS_API_KEY: &str = "ELEVENLABS_API_KEY";
/// Cartesia key.
pub const CARTESIA_API_KEY: &str = "CARTESIA_API_KEY";
/// Slack bot token.
pub const SLACK_BOT_TOKEN: &str = "SLACK_BOT_TOKEN";
/// Slack request-signing secret.
pub const SLACK_SIGNING_SECRET: &str = "SLACK_SIGNING_SECRET";
/// Twilio account SID.
pub const TWILIO_ACCOUNT_SID: &str = "TWILIO_ACCOUNT_SID";
/// Twilio auth token (webhook signatures, REST).
pub const TWILIO_AUTH_TOKEN: &str = "TWILIO_AUTH_TOKEN";

/// Every variable frontdesk reads. Nothing else of the environment is kept.
pub const KNOWN: &[&str] = &[
    CONFIG,
    DATABASE_URL,
    API_TOKEN,
    MODELS_DIR,
    LINK_SECRET,
    WEBHOOK_SECRET,
    CALCOM_API_KEY,
    HUBSPOT_TOKEN,
    DEEPGRAM_API_KEY,
    OPENAI_API_KEY,
    ELEVENLABS_API_KEY,
    CARTESIA_API_KEY,
    SLACK_BOT_TOKEN,
    SLACK_SIGNING_SECRET,
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
];

/// The environment frontdesk was started with (only the [`KNOWN`] names).
/// `Debug` never shows a value.
#[derive(Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.vars.keys()).finish()
    }
}

impl Env {
    /// Read the [`KNOWN`] variables of this process. A value that is not
    /// UTF-8 is treated as set but empty (and so reported as unusable).
    pub fn from_process() -> Env {
        let vars = KNOWN
            .iter()
            .filter_map(|k| match std::env::var(k) {
                Ok(v) => Some((k.to_string(), v)),
                Err(std::env::VarError::NotUnicode(_)) => Some((k.to_string(), String::new())),
                Err(std::env::VarError::NotPresent) => None,
            })
            .collect();
        Env { vars }
    }

    /// An environment made of these pairs (tests, embedding).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Env {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The same environment with `name` set to `value`.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Env {
        self.vars.insert(name.to_string(), value.into());
        self
    }

    /// The raw value, exactly as set (possibly empty).
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Whether the variable is set at all (even to the empty string).
    pub fn is_set(&self, name: &str) -> bool {
        self.vars.contains_key(name)
    }

    /// A secret: the value with surrounding whitespace trimmed (a token
    /// pasted with a trailing newline still works); unset or blank is `None`.
    pub fn secret(&self, name: &str) -> Option<Secret<String>> {
        self.raw(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| Secret::new(v.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_trimmed_and_blank_is_unset() {
        let env = Env::from_pairs([(API_TOKEN, "  tok\n"), (HUBSPOT_TOKEN, "   ")]);
        assert_eq!(
            env.secret(API_TOKEN).map(|s| s.expose().clone()),
            Some("tok".into())
        );
        assert!(env.secret(HUBSPOT_TOKEN).is_none());
        assert!(env.is_set(HUBSPOT_TOKEN));
        assert!(!env.is_set(CALCOM_API_KEY));
    }

    #[test]
    fn debug_shows_names_only() {
        let env = Env::from_pairs([(API_TOKEN, "super-secret")]);
        let d = format!("{env:?}");
        assert!(d.contains(API_TOKEN) && !d.contains("super-secret"), "{d}");
    }
}
