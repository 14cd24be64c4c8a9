//! Twilio webhook signatures (`X-Twilio-Signature`) and the expiring stream
//! token that ties a media stream to the webhook that started it.
//!
//! **Webhooks** (specs/telephony.md §3.2): base64 HMAC-SHA1, keyed with the
//! auth token, over the exact URL Twilio requested followed by every form
//! parameter as `name` + `value`, sorted by name then value (bytes). The URL is
//! rebuilt from `server.public_url`, never from the request's `Host`, and is
//! accepted both without and with the scheme's default port, as Twilio's own
//! validator does. Comparison is constant-time.
//!
//! **Stream token**: `<Connect><Stream>` carries `<Parameter>`s that arrive in
//! the media stream's `start.customParameters`. One of them, `token`, is
//! `{expiry unix seconds}.{hex HMAC-SHA256(key, call_sid "." expiry)}` with a
//! key derived from the auth token, so a stream nobody routed here (or a
//! replay after expiry) is refused by [`verify_stream_token`].

use std::collections::BTreeMap;

use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::pii::Pii;

/// Seconds a stream token stays valid after the TwiML that carries it is built.
pub const STREAM_TOKEN_TTL_S: i64 = 300;

/// The `X-Twilio-Signature` of a form POST to `url` with `params`.
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort_by(|a, b| {
        a.0.as_bytes()
            .cmp(b.0.as_bytes())
            .then_with(|| a.1.as_bytes().cmp(b.1.as_bytes()))
    });
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(auth_token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The URL as given, and with the default port added or removed.
fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_string()];
    let (scheme, port) = if let Some(rest) = url.strip_prefix("https://") {
        (("https://", rest), ":443")
    } else if let Some(rest) = url.strip_prefix("http://") {
        (("http://", rest), ":80")
    } else {
        return out;
    };
    let (prefix, rest) = scheme;
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(split);
    if let Some(host) = authority.strip_suffix(port) {
        out.push(format!("{prefix}{host}{tail}"));
    } else if !authority.contains(':') || authority.ends_with(']') {
        out.push(format!("{prefix}{authority}{port}{tail}"));
    }
    out
}

/// Whether `signature` is Twilio's signature of this request.
pub fn verify_twilio_signature(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    signature: &str,
) -> bool {
    let given = signature.trim().as_bytes();
    let mut ok = false;
    for u in url_variants(url) {
        let expected = twilio_signature(auth_token, &u, params);
        ok |= bool::from(expected.as_bytes().ct_eq(given));
    }
    ok
}

/// The key stream tokens are signed with, derived from the Twilio auth token
/// (so rotating the token rotates it). `Debug` never shows it.
#[derive(Clone)]
pub struct StreamKey([u8; 32]);

impl std::fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamKey(<secret>)")
    }
}

impl StreamKey {
    /// HMAC-SHA256(auth token, "frontdesk stream token v1").
    pub fn from_auth_token(auth_token: &str) -> StreamKey {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(auth_token.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(b"frontdesk stream token v1");
        let mut key = [0u8; 32];
        key.copy_from_slice(&mac.finalize().into_bytes());
        StreamKey(key)
    }

    fn mac(&self, call_sid: &str, expiry: i64) -> Hmac<Sha256> {
        // A 32-byte key is always accepted.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(call_sid.as_bytes());
        mac.update(b".");
        mac.update(expiry.to_string().as_bytes());
        mac
    }
}

/// A token for the stream of `call_sid`, valid until `expires_at`.
pub fn sign_stream_token(call_sid: &str, expires_at: DateTime<Utc>, key: &StreamKey) -> String {
    let expiry = expires_at.timestamp();
    let tag = key.mac(call_sid, expiry).finalize().into_bytes();
    format!("{expiry}.{}", hex::encode(tag))
}

/// Why a media stream's parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamTokenError {
    /// No `token` or no `call_sid` parameter.
    #[error("stream parameters carry no token")]
    Missing,
    /// The token is not `{expiry}.{hex}`.
    #[error("stream token is malformed")]
    Malformed,
    /// The signature does not match (forged, other call, other key).
    #[error("stream token signature does not match")]
    BadSignature,
    /// Past its expiry.
    #[error("stream token expired")]
    Expired,
}

/// The call context a verified stream carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamContext {
    /// The call the token was minted for (compare with `start.callSid`).
    pub call_sid: String,
    /// Caller.
    pub from: Pii<String>,
    /// Called number.
    pub to: Pii<String>,
    /// `primary` or `backup`.
    pub mode: String,
    /// The configured number that routed the call (empty: unconfigured).
    pub number: Pii<String>,
    /// True when a warm transfer failed and the caller is back with the AI.
    pub transfer_failed: bool,
}

/// Check the `token` in a stream's `start.customParameters` against its
/// `call_sid` parameter, `key` and `now`; the lead's media session refuses
/// the stream on `Err`. The caller must also check that
/// [`StreamContext::call_sid`] equals the stream's `start.callSid`.
pub fn verify_stream_token(
    params: &BTreeMap<String, Pii<String>>,
    key: &StreamKey,
    now: DateTime<Utc>,
) -> Result<StreamContext, StreamTokenError> {
    let get = |k: &str| params.get(k).map(|v| v.expose().as_str());
    let (Some(token), Some(call_sid)) = (get("token"), get("call_sid")) else {
        return Err(StreamTokenError::Missing);
    };
    let (expiry, tag) = token.split_once('.').ok_or(StreamTokenError::Malformed)?;
    let expiry: i64 = expiry.parse().map_err(|_| StreamTokenError::Malformed)?;
    let tag = hex::decode(tag).map_err(|_| StreamTokenError::Malformed)?;
    key.mac(call_sid, expiry)
        .verify_slice(&tag)
        .map_err(|_| StreamTokenError::BadSignature)?;
    if now.timestamp() > expiry {
        return Err(StreamTokenError::Expired);
    }
    let s = |k: &str| Pii::new(get(k).unwrap_or_default().to_string());
    Ok(StreamContext {
        call_sid: call_sid.to_string(),
        from: s("from"),
        to: s("to"),
        mode: get("mode").unwrap_or("primary").to_string(),
        number: s("number"),
        transfer_failed: get("transfer_failed") == Some("true"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Twilio's published test vector (twilio-python `tests/unit/test_request_validator.py`).
    #[test]
    fn matches_twilios_reference_vector() {
        let params = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            twilio_signature("12345", url, &params),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        assert!(verify_twilio_signature(
            "12345",
            url,
            &params,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        // The same request signed with the default port also passes.
        let with_port = twilio_signature(
            "12345",
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            &params,
        );
        assert!(verify_twilio_signature("12345", url, &params, &with_port));
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let params = pairs(&[("CallSid", "CA1"), ("From", "+447700900123")]);
        let url = "https://fd.example/twilio/voice";
        let sig = twilio_signature("tok", url, &params);
        assert!(verify_twilio_signature("tok", url, &params, &sig));
        assert!(!verify_twilio_signature("other", url, &params, &sig));
        assert!(!verify_twilio_signature(
            "tok",
            "https://fd.example/twilio/status",
            &params,
            &sig
        ));
        let tampered = pairs(&[("CallSid", "CA1"), ("From", "+447700900124")]);
        assert!(!verify_twilio_signature("tok", url, &tampered, &sig));
        assert!(!verify_twilio_signature("tok", url, &params, ""));
        // Order of the form does not matter; repeated names sort by value.
        let rev = pairs(&[("From", "+447700900123"), ("CallSid", "CA1")]);
        assert!(verify_twilio_signature("tok", url, &rev, &sig));
        let a = pairs(&[("E", "b"), ("E", "a")]);
        let b = pairs(&[("E", "a"), ("E", "b")]);
        assert_eq!(
            twilio_signature("t", url, &a),
            twilio_signature("t", url, &b)
        );
    }

    #[test]
    fn port_variants() {
        assert_eq!(
            url_variants("https://h.example/x?y=1"),
            vec!["https://h.example/x?y=1", "https://h.example:443/x?y=1"]
        );
        assert_eq!(
            url_variants("http://h.example:80/x"),
            vec!["http://h.example:80/x", "http://h.example/x"]
        );
        assert_eq!(url_variants("http://h:8080/x"), vec!["http://h:8080/x"]);
    }

    fn params(token: &str, sid: &str) -> BTreeMap<String, Pii<String>> {
        [
            ("token", token),
            ("call_sid", sid),
            ("from", "+447700900123"),
            ("mode", "backup"),
            ("transfer_failed", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Pii::new(v.to_string())))
        .collect()
    }

    #[test]
    fn stream_token_round_trip_expiry_and_forgery() {
        let key = StreamKey::from_auth_token("auth-token");
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let exp = now + chrono::Duration::seconds(STREAM_TOKEN_TTL_S);
        let tok = sign_stream_token("CA42", exp, &key);
        let ctx = verify_stream_token(&params(&tok, "CA42"), &key, now).unwrap();
        assert_eq!(ctx.call_sid, "CA42");
        assert_eq!(ctx.mode, "backup");
        assert!(ctx.transfer_failed);
        assert_eq!(ctx.from.expose(), "+447700900123");
        // At the expiry second still valid, one second later not.
        assert!(verify_stream_token(&params(&tok, "CA42"), &key, exp).is_ok());
        assert_eq!(
            verify_stream_token(
                &params(&tok, "CA42"),
                &key,
                exp + chrono::Duration::seconds(1)
            ),
            Err(StreamTokenError::Expired)
        );
        // Another call's token, another key, a moved expiry, garbage, nothing.
        assert_eq!(
            verify_stream_token(&params(&tok, "CA43"), &key, now),
            Err(StreamTokenError::BadSignature)
        );
        let other = StreamKey::from_auth_token("other");
        assert_eq!(
            verify_stream_token(&params(&tok, "CA42"), &other, now),
            Err(StreamTokenError::BadSignature)
        );
        let (_, tag) = tok.split_once('.').unwrap();
        let moved = format!("{}.{tag}", exp.timestamp() + 3600);
        assert_eq!(
            verify_stream_token(&params(&moved, "CA42"), &key, now),
            Err(StreamTokenError::BadSignature)
        );
        assert_eq!(
            verify_stream_token(&params("nonsense", "CA42"), &key, now),
            Err(StreamTokenError::Malformed)
        );
        assert_eq!(
            verify_stream_token(&BTreeMap::new(), &key, now),
            Err(StreamTokenError::Missing)
        );
        assert!(!format!("{key:?}").contains(&hex::encode(key.0)));
    }
}
