//! Slack request signatures (v0): `X-Slack-Signature = "v0=" +
//! hex(HMAC-SHA256(signing_secret, "v0:" + X-Slack-Request-Timestamp + ":" +
//! raw body))`, computed over the raw bytes before any decoding, compared in
//! constant time, and refused when the timestamp is more than five minutes
//! from `now` (replay window).

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::pii::Secret;

type HmacSha256 = Hmac<Sha256>;

/// The replay window in seconds.
pub const MAX_SKEW_S: i64 = 300;

/// Why a Slack request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A header is missing or not in the expected form.
    #[error("missing or malformed signature headers")]
    Malformed,
    /// The timestamp is outside the replay window.
    #[error("stale timestamp")]
    Stale,
    /// The signature does not match.
    #[error("signature mismatch")]
    Mismatch,
}

fn mac(secret: &Secret<String>, ts: &str, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut m =
        HmacSha256::new_from_slice(secret.expose().as_bytes()).expect("HMAC accepts any key");
    m.update(b"v0:");
    m.update(ts.as_bytes());
    m.update(b":");
    m.update(body);
    m
}

/// The `X-Slack-Signature` value for a body (what Slack, or a mock, sends).
pub fn slack_signature(secret: &Secret<String>, ts: &str, body: &[u8]) -> String {
    format!(
        "v0={}",
        hex::encode(mac(secret, ts, body).finalize().into_bytes())
    )
}

/// Check a request's headers and raw body at `now`.
pub fn verify_slack(
    secret: &Secret<String>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    let ts = timestamp.ok_or(SignatureError::Malformed)?.trim();
    let secs: i64 = ts.parse().map_err(|_| SignatureError::Malformed)?;
    if (now.timestamp() - secs).abs() > MAX_SKEW_S {
        return Err(SignatureError::Stale);
    }
    let sig = signature
        .ok_or(SignatureError::Malformed)?
        .trim()
        .strip_prefix("v0=")
        .ok_or(SignatureError::Malformed)?;
    let sig = hex::decode(sig).map_err(|_| SignatureError::Malformed)?;
    mac(secret, ts, body)
        .verify_slice(&sig)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_wrong_secret_stale_and_altered() {
        let s = Secret::new("8f742231b10e8888abcd99yyyzzz85a5".to_string());
        let now = DateTime::parse_from_rfc3339("2026-12-01T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let ts = now.timestamp().to_string();
        let body = b"payload=%7B%22type%22%3A%22block_actions%22%7D";
        let sig = slack_signature(&s, &ts, body);
        assert_eq!(verify_slack(&s, Some(&ts), Some(&sig), body, now), Ok(()));
        let other = Secret::new("other".to_string());
        assert_eq!(
            verify_slack(&other, Some(&ts), Some(&sig), body, now),
            Err(SignatureError::Mismatch)
        );
        let later = now + chrono::Duration::seconds(301);
        assert_eq!(
            verify_slack(&s, Some(&ts), Some(&sig), body, later),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_slack(&s, Some(&ts), Some(&sig), b"payload=%7B%7D", now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_slack(&s, None, Some(&sig), body, now),
            Err(SignatureError::Malformed)
        );
    }
}
