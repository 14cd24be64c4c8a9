//! Click-to-call through Twilio's REST API (telephony.md §3.5): ring the
//! rep's phone with TwiML that whispers the lead summary and then dials the
//! prospect with the business number as caller ID.

use std::time::Duration;

use serde_json::Value;

use crate::pii::{Pii, Secret};

/// A failed create-call request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialError {
    /// The request did not get an answer, or Twilio answered 5xx/429.
    #[error("transient: {0}")]
    Transient(String),
    /// Twilio refused it (auth, bad number).
    #[error("refused: {0}")]
    Refused(String),
}

/// Twilio `Calls.json` client.
#[derive(Debug, Clone)]
pub struct TwilioDialer {
    http: reqwest::Client,
    base: String,
    sid: String,
    token: Secret<String>,
    caller_id: String,
}

/// Escape text for an XML element or attribute.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The TwiML the rep's leg runs: whisper, then bridge to the prospect.
pub fn whisper_twiml(summary: &str, prospect: &str, caller_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Say>{}</Say>\
         <Dial callerId=\"{}\"><Number>{}</Number></Dial></Response>",
        xml_escape(summary),
        xml_escape(caller_id),
        xml_escape(prospect)
    )
}

impl TwilioDialer {
    /// A dialer on `base` (`[twilio] api_base_url`) for account `sid`,
    /// calling prospects from `caller_id` (the business number).
    pub fn new(
        base: &str,
        sid: Secret<String>,
        token: Secret<String>,
        caller_id: &str,
    ) -> Result<TwilioDialer, reqwest::Error> {
        Ok(TwilioDialer {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            base: base.trim_end_matches('/').to_string(),
            sid: sid.expose().clone(),
            token,
            caller_id: caller_id.to_string(),
        })
    }

    /// Ring `rep_phone`; when answered, say `summary` and dial `prospect`.
    /// Returns the new call's `sid`.
    pub async fn call(
        &self,
        rep_phone: &Pii<String>,
        prospect: &Pii<String>,
        summary: &str,
    ) -> Result<String, DialError> {
        let twiml = whisper_twiml(summary, prospect.expose(), &self.caller_id);
        let url = format!("{}/2010-04-01/Accounts/{}/Calls.json", self.base, self.sid);
        let form = [
            ("To", rep_phone.expose().as_str()),
            ("From", self.caller_id.as_str()),
            ("Twiml", twiml.as_str()),
            ("Timeout", "30"),
        ];
        match post_form(&self.http, &url, &self.sid, &self.token, &form).await {
            Ok(sid) => Ok(sid),
            Err(TwilioFailure::Transient(m)) => Err(DialError::Transient(m)),
            Err(TwilioFailure::Refused { message, .. }) => Err(DialError::Refused(message)),
        }
    }
}

/// Why a Twilio REST `POST` failed: worth retrying or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TwilioFailure {
    /// No answer, a 5xx or a 429.
    Transient(String),
    /// Any other refusal, with Twilio's error code (its `message` can quote
    /// a phone number, so only the code is kept).
    Refused {
        /// Twilio's error code (0 when it gave none).
        code: i64,
        /// `"{status}: code {code}"`.
        message: String,
    },
}

/// `POST` a form to a Twilio REST resource with the account's Basic auth;
/// the created resource's `sid`. Shared by click-to-call and SMS.
pub(crate) async fn post_form(
    http: &reqwest::Client,
    url: &str,
    account_sid: &str,
    token: &Secret<String>,
    form: &[(&str, &str)],
) -> Result<String, TwilioFailure> {
    let resp = http
        .post(url)
        .basic_auth(account_sid, Some(token.expose()))
        .form(form)
        .send()
        .await
        .map_err(|e| TwilioFailure::Transient(e.without_url().to_string()))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return body
            .get("sid")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| TwilioFailure::Transient("no sid in the answer".into()));
    }
    let code = body.get("code").and_then(Value::as_i64).unwrap_or(0);
    let message = format!("{status}: code {code}");
    if status.is_server_error() || status.as_u16() == 429 {
        Err(TwilioFailure::Transient(message))
    } else {
        Err(TwilioFailure::Refused { code, message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twiml_is_escaped() {
        let t = whisper_twiml(
            "Jane <wants> \"demo\" & more",
            "+447700900123",
            "+442079460000",
        );
        assert!(
            t.contains("<Say>Jane &lt;wants&gt; &quot;demo&quot; &amp; more</Say>"),
            "{t}"
        );
        assert!(
            t.contains("<Dial callerId=\"+442079460000\"><Number>+447700900123</Number></Dial>")
        );
    }
}
