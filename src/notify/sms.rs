//! Texts through Twilio Messages (`POST …/Accounts/{sid}/Messages.json`,
//! Basic auth, form fields `To`, `From`, `Body`; telephony.md §3.6), and the
//! rules of who may be texted.
//!
//! Error mapping decides retry: no answer, 5xx and 429 are transient; any
//! other 4xx is permanent and keeps only Twilio's numeric `code` (21610: the
//! recipient replied STOP; 21211: not a valid number), never its `message`,
//! which can quote the phone number.

use std::time::Duration;

use crate::pii::{Pii, Secret};

/// Twilio's error code for a recipient who has opted out (replied STOP).
pub const UNSUBSCRIBED: i64 = 21610;

/// A failed send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmsError {
    /// No answer, 5xx or 429: try again later.
    #[error("transient: {0}")]
    Transient(String),
    /// Twilio refused it (opted out, bad number, auth): retrying cannot help.
    #[error("refused: {message}")]
    Refused {
        /// Twilio's error code (0 when the body had none).
        code: i64,
        /// Status and code, without anything personal.
        message: String,
    },
}

/// Twilio `Messages.json` client.
#[derive(Debug, Clone)]
pub struct TwilioSms {
    http: reqwest::Client,
    base: String,
    sid: String,
    token: Secret<String>,
    from: String,
}

impl TwilioSms {
    /// A sender on `base` (`[twilio] api_base_url`) for account `sid`, from
    /// `from` (`[twilio] sms_from`).
    pub fn new(
        base: &str,
        sid: Secret<String>,
        token: Secret<String>,
        from: &str,
        timeout: Duration,
    ) -> Result<TwilioSms, reqwest::Error> {
        Ok(TwilioSms {
            http: reqwest::Client::builder().timeout(timeout).build()?,
            base: base.trim_end_matches('/').to_string(),
            sid: sid.expose().clone(),
            token,
            from: from.to_string(),
        })
    }

    /// Send `body` to `to`; the message's `sid` on success.
    pub async fn send(&self, to: &Pii<String>, body: &str) -> Result<String, SmsError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.base, self.sid
        );
        let form = [
            ("To", to.expose().as_str()),
            ("From", self.from.as_str()),
            ("Body", body),
        ];
        match super::dial::post_form(&self.http, &url, &self.sid, &self.token, &form).await {
            Ok(sid) => Ok(sid),
            Err(super::dial::TwilioFailure::Transient(m)) => Err(SmsError::Transient(m)),
            Err(super::dial::TwilioFailure::Refused { code, message }) => {
                Err(SmsError::Refused { code, message })
            }
        }
    }
}

/// The placeholder numbers Twilio puts in `From` when the caller ID is
/// withheld: Anonymous, Restricted, Blocked, Unknown, Unavailable.
pub const WITHHELD: &[&str] = &[
    "+266696687",
    "+7378742833",
    "+2562533",
    "+8656696",
    "+86282452253",
];

/// Whether a caller ID may get a text: an E.164 number (`+` and 8–15
/// digits; a withheld, `anonymous` or short-code caller ID may not) that is
/// none of the business's own numbers.
pub fn may_text(number: &str, own: &[String]) -> bool {
    let digits = number.strip_prefix('+').unwrap_or("");
    (8..=15).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit())
        && !digits.starts_with('0')
        && !WITHHELD.contains(&number)
        && !own.iter().any(|o| o == number)
}

/// `template` with `{key}` replaced by each value.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_be_texted() {
        let own = vec!["+442079460000".to_string()];
        assert!(may_text("+447700900123", &own));
        assert!(!may_text("+442079460000", &own), "own number");
        for bad in [
            "",
            "anonymous",
            "+266696687",
            "+7378742833",
            "07700900123",
            "+44 7700 900123",
            "12345",
            "+0123456789",
        ] {
            assert!(!may_text(bad, &own), "{bad} must not be texted");
        }
    }

    #[test]
    fn templates() {
        assert_eq!(
            render(
                "{business}: booked {when}",
                &[("business", "Acme"), ("when", "Tue 09:00")]
            ),
            "Acme: booked Tue 09:00"
        );
    }
}
