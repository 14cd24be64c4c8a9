//! Notification config: `[slack]`, `[links]`, `[webhooks]`, `[sms]` and the
//! REST half of `[twilio]` (key names from DESIGN.md §5). Parsing and range checks
//! only; the secrets these features need are checked by
//! [`crate::app::App::validate`].

use serde::Deserialize;

use crate::config_error::ConfigError;

/// How Slack cards are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlackMode {
    /// No Slack (default).
    #[default]
    Off,
    /// Web API `chat.postMessage` / `chat.update` with `SLACK_BOT_TOKEN`.
    Bot,
    /// One incoming webhook (`webhook_url`); messages cannot be edited.
    Webhook,
}

/// `[slack]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlackConfig {
    /// `off` (default), `bot` or `webhook`.
    pub mode: SlackMode,
    /// Web API base URL (default `https://slack.com/api`).
    pub api_base_url: String,
    /// Incoming-webhook URL (`mode = "webhook"`; default empty).
    pub webhook_url: String,
    /// Minutes after opening at which unclaimed overnight tier B leads are
    /// escalated (default 15, 0–1440).
    pub escalate_after_min: u32,
    /// Who the escalation mentions, e.g. `<@U012AB3CD>` or `<!here>` (default empty).
    pub oncall_mention: String,
    /// Request timeout in ms (default 10000, 100–120000).
    pub timeout_ms: u64,
    /// `[slack.channels]`: channel ids.
    pub channels: SlackChannels,
}

impl Default for SlackConfig {
    fn default() -> Self {
        SlackConfig {
            mode: SlackMode::Off,
            api_base_url: "https://slack.com/api".into(),
            webhook_url: String::new(),
            escalate_after_min: 15,
            oncall_mention: String::new(),
            timeout_ms: 10_000,
            channels: SlackChannels::default(),
        }
    }
}

/// `[slack.channels]` (channel ids; in webhook mode they are ignored).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlackChannels {
    /// After-hours cards, the opening digest and escalations.
    pub overnight: String,
    /// In-hours tier B cards (flagged as priority).
    pub sdr: String,
    /// Every other in-hours card.
    pub leads: String,
}

/// `[links]`: signed call-back links and who may claim them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinksConfig {
    /// Hours a link stays valid (default 72, 1–720).
    pub ttl_h: u32,
    /// Caller ID of click-to-call legs to the prospect: the business number,
    /// E.164 (default empty: click-to-call falls back to a `tel:` link).
    pub caller_id: String,
    /// `[[links.reps]]`: the reps who call leads back.
    pub reps: Vec<RepConfig>,
}

impl Default for LinksConfig {
    fn default() -> Self {
        LinksConfig {
            ttl_h: 72,
            caller_id: String::new(),
            reps: Vec::new(),
        }
    }
}

/// A rep who claims leads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepConfig {
    /// Id (letters, digits, `-`, `_`).
    pub id: String,
    /// Display name ("Claimed by <name>").
    pub name: String,
    /// Phone click-to-call rings first (E.164).
    pub phone: String,
    /// Slack user id, so a button click maps to this rep; in-hours tier A
    /// FYI cards of leads routed to this rep go to it as a direct message.
    pub slack_id: String,
    /// Slack channel id for this rep's FYI cards instead of a direct
    /// message (default empty).
    pub slack_channel: String,
}

/// `[webhooks]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Where each finished call is POSTed (default empty: off).
    pub post_call_url: String,
    /// Request timeout in ms (default 10000, 100–120000).
    pub timeout_ms: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            post_call_url: String::new(),
            timeout_ms: 10_000,
        }
    }
}

/// `[sms]`: texts through Twilio Messages, sent from `[twilio] sms_from`
/// (empty: no SMS at all). Each text may use `{business}`; the booking
/// confirmation also `{when}` (the start in the business time zone) and
/// `{owner}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsConfig {
    /// Sent to the caller when a booking is confirmed (empty: none).
    pub booking_confirmation: String,
    /// Sent to a caller whose call ended in voicemail or unanswered (empty: none).
    pub missed_call_text: String,
    /// Hours before one caller gets another missed-call text (default 24, 1–720).
    pub cooldown_h: u32,
}

impl Default for SmsConfig {
    fn default() -> Self {
        SmsConfig {
            booking_confirmation:
                "{business}: you are booked for {when}. Reply STOP to opt out.".into(),
            missed_call_text:
                "Sorry we missed your call at {business}. We will call you back soon, or reply to this text.".into(),
            cooldown_h: 24,
        }
    }
}

impl SmsConfig {
    /// Range checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (k, v) in [
            ("sms.booking_confirmation", &self.booking_confirmation),
            ("sms.missed_call_text", &self.missed_call_text),
        ] {
            if v.chars().count() > 1600 {
                return Err(ConfigError::invalid(
                    k,
                    "is longer than Twilio's 1600 characters",
                ));
            }
        }
        if !(1..=720).contains(&self.cooldown_h) {
            return Err(ConfigError::invalid(
                "sms.cooldown_h",
                "out of range; allowed 1–720 hours",
            ));
        }
        Ok(())
    }
}

fn http_url(key: &str, v: &str) -> Result<(), ConfigError> {
    if v.starts_with("http://") || v.starts_with("https://") {
        Ok(())
    } else {
        Err(ConfigError::invalid(key, "must be an http(s) URL"))
    }
}

fn e164(key: &str, v: &str) -> Result<(), ConfigError> {
    let digits = v.strip_prefix('+').unwrap_or("");
    if (8..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!(
                "`{}` is not an E.164 number (e.g. +442079460000)",
                crate::pii::mask(v)
            ),
        ))
    }
}

fn timeout(key: &str, v: u64) -> Result<(), ConfigError> {
    if (100..=120_000).contains(&v) {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            "out of range; allowed 100–120000 ms",
        ))
    }
}

impl SlackConfig {
    /// Range and format checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        http_url("slack.api_base_url", &self.api_base_url)?;
        timeout("slack.timeout_ms", self.timeout_ms)?;
        if self.escalate_after_min > 1440 {
            return Err(ConfigError::invalid(
                "slack.escalate_after_min",
                "out of range; allowed 0–1440 minutes",
            ));
        }
        match self.mode {
            SlackMode::Off => {}
            SlackMode::Webhook => http_url("slack.webhook_url", &self.webhook_url)?,
            SlackMode::Bot => {
                let c = &self.channels;
                for (k, v) in [
                    ("overnight", &c.overnight),
                    ("sdr", &c.sdr),
                    ("leads", &c.leads),
                ] {
                    if v.is_empty() {
                        return Err(ConfigError::invalid(
                            format!("slack.channels.{k}"),
                            "needs a channel id when slack.mode = \"bot\"",
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

impl LinksConfig {
    /// Range and format checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=720).contains(&self.ttl_h) {
            return Err(ConfigError::invalid(
                "links.ttl_h",
                "out of range; allowed 1–720 hours",
            ));
        }
        if !self.caller_id.is_empty() {
            e164("links.caller_id", &self.caller_id)?;
        }
        let mut seen = std::collections::HashSet::new();
        for (i, r) in self.reps.iter().enumerate() {
            if r.id.is_empty()
                || r.id.len() > 64
                || !r
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(ConfigError::invalid(
                    format!("links.reps[{i}].id"),
                    "needs 1–64 letters, digits, `-` or `_`",
                ));
            }
            if !seen.insert(r.id.as_str()) {
                return Err(ConfigError::invalid(
                    format!("links.reps[{i}].id"),
                    format!("`{}` appears twice", r.id),
                ));
            }
            if !r.phone.is_empty() {
                e164(&format!("links.reps[{i}].phone"), &r.phone)?;
            }
        }
        Ok(())
    }
}

impl WebhooksConfig {
    /// Range and format checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.post_call_url.is_empty() {
            http_url("webhooks.post_call_url", &self.post_call_url)?;
        }
        timeout("webhooks.timeout_ms", self.timeout_ms)
    }
}

/// Range and format checks of `[twilio]` (its REST half: click-to-call, SMS).
pub fn validate_twilio(t: &super::routing::TwilioConfig) -> Result<(), ConfigError> {
    http_url("twilio.api_base_url", &t.api_base_url)?;
    if !t.sms_from.is_empty() {
        e164("twilio.sms_from", &t.sms_from)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn defaults_are_off_and_documented_values() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.links.ttl_h, 72);
        assert_eq!(c.slack.escalate_after_min, 15);
        assert_eq!(c.slack.mode, super::SlackMode::Off);
        assert!(c.webhooks.post_call_url.is_empty());
        assert_eq!(c.sms.cooldown_h, 24);
        assert!(c.sms.missed_call_text.contains("{business}"));
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = |t: &str| Config::from_toml(t).unwrap_err().to_string();
        assert!(e("[links]\nttl_h = 0\n").contains("links.ttl_h"));
        assert!(e("[slack]\nmode = \"bot\"\n").contains("slack.channels.overnight"));
        assert!(e("[slack]\nmode = \"webhook\"\n").contains("slack.webhook_url"));
        assert!(e("[webhooks]\npost_call_url = \"ftp://x\"\n").contains("webhooks.post_call_url"));
        assert!(e("[[links.reps]]\nid = \"a b\"\n").contains("links.reps[0].id"));
        assert!(e("[sms]\ncooldown_h = 0\n").contains("sms.cooldown_h"));
        let e2 = e("[links]\ncaller_id = \"07700900123\"\n");
        assert!(
            e2.contains("links.caller_id") && !e2.contains("7700900"),
            "{e2}"
        );
    }
}
