//! Signed call-back links: `/c/{token}` where the token is an HMAC-SHA256
//! over the lead id, an optional rep id and an expiry, keyed with
//! `FRONTDESK_LINK_SECRET`. Nothing is stored per link; a tampered or
//! expired token is refused before the database is touched.
//!
//! Token: `base64url(lead_id "|" rep "|" expires_unix) "." base64url(mac)`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::pii::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Why a link was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Not a token of ours at all.
    #[error("malformed link")]
    Malformed,
    /// The signature does not match (tampered, or another key).
    #[error("bad link signature")]
    BadSignature,
    /// Past its expiry.
    #[error("link expired")]
    Expired,
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkClaims {
    /// The lead.
    pub lead_id: String,
    /// The rep the link was made for, if any.
    pub rep: Option<String>,
    /// Valid until.
    pub expires_at: DateTime<Utc>,
}

/// Signs and checks call-back links.
#[derive(Debug, Clone)]
pub struct LinkSigner {
    key: Secret<Vec<u8>>,
}

impl LinkSigner {
    /// A signer keyed with `secret`.
    pub fn new(secret: &Secret<String>) -> LinkSigner {
        LinkSigner {
            key: Secret::new(secret.expose().as_bytes().to_vec()),
        }
    }

    fn mac(&self, payload: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
        let mut m = HmacSha256::new_from_slice(self.key.expose()).expect("HMAC accepts any key");
        m.update(payload);
        m
    }

    /// A token for `lead_id` (and `rep`) valid until `expires_at`.
    pub fn sign(&self, lead_id: &str, rep: Option<&str>, expires_at: DateTime<Utc>) -> String {
        let payload = format!("{lead_id}|{}|{}", rep.unwrap_or(""), expires_at.timestamp());
        let mac = self.mac(payload.as_bytes()).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload.as_bytes()),
            URL_SAFE_NO_PAD.encode(mac)
        )
    }

    /// Check a token at `now`: signature first (constant time), then expiry.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<LinkClaims, LinkError> {
        if token.len() > 1024 {
            return Err(LinkError::Malformed);
        }
        let (p, s) = token.split_once('.').ok_or(LinkError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|_| LinkError::Malformed)?;
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| LinkError::Malformed)?;
        self.mac(&payload)
            .verify_slice(&sig)
            .map_err(|_| LinkError::BadSignature)?;
        let payload = String::from_utf8(payload).map_err(|_| LinkError::Malformed)?;
        let mut parts = payload.split('|');
        let (Some(lead), Some(rep), Some(exp), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(LinkError::Malformed);
        };
        let exp: i64 = exp.parse().map_err(|_| LinkError::Malformed)?;
        let expires_at = Utc
            .timestamp_opt(exp, 0)
            .single()
            .ok_or(LinkError::Malformed)?;
        if lead.is_empty() {
            return Err(LinkError::Malformed);
        }
        if now >= expires_at {
            return Err(LinkError::Expired);
        }
        Ok(LinkClaims {
            lead_id: lead.to_string(),
            rep: (!rep.is_empty()).then(|| rep.to_string()),
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn round_trip_tamper_expiry_and_other_key() {
        let s = LinkSigner::new(&Secret::new("k1".into()));
        let exp = at("2026-12-04T09:00:00Z");
        let tok = s.sign("lead-1", Some("alex"), exp);
        let c = s.verify(&tok, at("2026-12-01T09:00:00Z")).unwrap();
        assert_eq!(c.lead_id, "lead-1");
        assert_eq!(c.rep.as_deref(), Some("alex"));
        assert_eq!(s.verify(&tok, exp), Err(LinkError::Expired));
        // Another lead id under the same signature.
        let (_, sig) = tok.split_once('.').unwrap();
        let forged = format!(
            "{}.{sig}",
            URL_SAFE_NO_PAD.encode(format!("lead-2|alex|{}", exp.timestamp()))
        );
        assert_eq!(
            s.verify(&forged, at("2026-12-01T09:00:00Z")),
            Err(LinkError::BadSignature)
        );
        let other = LinkSigner::new(&Secret::new("k2".into()));
        assert_eq!(
            other.verify(&tok, at("2026-12-01T09:00:00Z")),
            Err(LinkError::BadSignature)
        );
        assert_eq!(s.verify("nonsense", exp), Err(LinkError::Malformed));
        let no_rep = s.sign("lead-1", None, exp);
        assert_eq!(
            s.verify(&no_rep, at("2026-12-01T09:00:00Z")).unwrap().rep,
            None
        );
    }
}
