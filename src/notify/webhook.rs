//! The post-call webhook: one signed JSON POST per finished call.
//!
//! Headers: `X-Frontdesk-Timestamp: <unix seconds>` and
//! `X-Frontdesk-Signature: v1=<hex HMAC-SHA256(FRONTDESK_WEBHOOK_SECRET,
//! "<timestamp>.<raw body>")>`. A receiver recomputes the HMAC over the raw
//! bytes, compares in constant time and rejects timestamps more than five
//! minutes away from its clock (README "Post-call webhook").

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::pii::Secret;
use crate::store::CallFacts;

type HmacSha256 = Hmac<Sha256>;

/// The header carrying the signing time.
pub const TIMESTAMP_HEADER: &str = "X-Frontdesk-Timestamp";
/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Frontdesk-Signature";
/// Schema version in every body.
pub const SCHEMA: &str = "frontdesk.post_call.v1";

/// The fixed body of the post-call webhook (README documents each field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostCall {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// The call.
    pub call: PostCallCall,
    /// The lead captured on it, if any.
    pub lead: Option<PostCallLead>,
    /// `booked`, `lead_captured`, `transferred`, `voicemail`, `answered`, `abandoned`.
    pub outcome: String,
    /// The booking made on the call, if any.
    pub booking: Option<PostCallBooking>,
    /// The transfer, if the call was handed to a human.
    pub transfer: Option<PostCallTransfer>,
    /// 1–3 sentence summary.
    pub summary: Option<String>,
}

/// `call`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostCallCall {
    /// Carrier call id (the idempotency key: one webhook per call).
    pub call_sid: String,
    /// Caller number, E.164.
    pub from: Option<String>,
    /// Called number, E.164.
    pub to: Option<String>,
    /// RFC 3339.
    pub started_at: DateTime<Utc>,
    /// RFC 3339.
    pub ended_at: Option<DateTime<Utc>>,
    /// Seconds.
    pub duration_s: Option<i64>,
}

/// `lead`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostCallLead {
    /// Lead id.
    pub id: String,
    /// Name.
    pub name: Option<String>,
    /// Intent label.
    pub intent: Option<String>,
    /// Tier A–D.
    pub tier: Option<String>,
}

/// `booking`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostCallBooking {
    /// Booking id.
    pub id: String,
    /// Calendar owner.
    pub owner: String,
    /// RFC 3339.
    pub start: DateTime<Utc>,
    /// RFC 3339.
    pub end: DateTime<Utc>,
}

/// `transfer`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostCallTransfer {
    /// Who it went to (user id or number).
    pub target: String,
    /// `answered`, `no_answer`, `busy`, `failed`.
    pub result: String,
}

/// `v1=<hex>` over `"{timestamp}.{body}"`.
pub fn sign(secret: &Secret<String>, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut m =
        HmacSha256::new_from_slice(secret.expose().as_bytes()).expect("HMAC accepts any key");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    format!("v1={}", hex::encode(m.finalize().into_bytes()))
}

/// The receiver's check (the documented recipe, also used by our tests).
pub fn verify(
    secret: &Secret<String>,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> bool {
    let Ok(ts) = timestamp.trim().parse::<i64>() else {
        return false;
    };
    if (now.timestamp() - ts).abs() > 300 {
        return false;
    }
    let Some(hex_sig) = signature.trim().strip_prefix("v1=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut m =
        HmacSha256::new_from_slice(secret.expose().as_bytes()).expect("HMAC accepts any key");
    m.update(ts.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.verify_slice(&sig).is_ok()
}

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// Timeout, connection error, 5xx or 429.
    #[error("transient: {0}")]
    Transient(String),
    /// Another 4xx: the receiver refuses it.
    #[error("refused: {0}")]
    Refused(String),
}

/// Posts signed webhooks.
#[derive(Debug, Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    url: String,
    secret: Secret<String>,
}

impl WebhookClient {
    /// A client posting to `url`.
    pub fn new(
        url: &str,
        secret: Secret<String>,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        Ok(WebhookClient {
            http: reqwest::Client::builder().timeout(timeout).build()?,
            url: url.to_string(),
            secret,
        })
    }

    /// POST `body` (already serialised, so retries send identical bytes).
    pub async fn post(&self, body: &str, now: DateTime<Utc>) -> Result<(), WebhookError> {
        let ts = now.timestamp();
        let resp = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(SIGNATURE_HEADER, sign(&self.secret, ts, body.as_bytes()))
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| WebhookError::Transient(e.without_url().to_string()))?;
        let s = resp.status();
        if s.is_success() {
            Ok(())
        } else if s.is_server_error() || s.as_u16() == 429 || s.as_u16() == 408 {
            Err(WebhookError::Transient(s.to_string()))
        } else {
            Err(WebhookError::Refused(s.to_string()))
        }
    }
}

/// What the transfer legs of a call's activity log say: `(leg, result)` of
/// the last dial outcome on a leg whose label starts with `leg`.
fn dial_result(facts: &CallFacts, leg: &str) -> Option<&'static str> {
    facts.events.iter().rev().find_map(|(_, kind, detail)| {
        let rest = detail.strip_prefix(leg)?.strip_prefix(" leg: dial ")?;
        match kind.as_str() {
            "answered" => Some("answered"),
            "no_answer" if rest.starts_with("busy") => Some("busy"),
            "no_answer" if rest.starts_with("no-answer") => Some("no_answer"),
            "no_answer" => Some("failed"),
            _ => None,
        }
    })
}

/// The `transfer` of a call: the AI's hand-off to a human (target from the
/// hand-off entry, result from the transfer leg's dial), else a routing ring
/// a human answered.
fn transfer_of(facts: &CallFacts) -> Option<PostCallTransfer> {
    if let Some((_, _, detail)) = facts.last(crate::store::HANDOFF_KIND) {
        let v: serde_json::Value = serde_json::from_str(detail).unwrap_or_default();
        let target = v
            .get("target")
            .and_then(|t| t.as_str())
            .unwrap_or_default()
            .trim()
            .to_string();
        if target != "hangup" && target != "voicemail" {
            return Some(PostCallTransfer {
                target: if target.is_empty() {
                    "transfer_to".into()
                } else {
                    target
                },
                result: dial_result(facts, "transfer")
                    .unwrap_or("failed")
                    .to_string(),
            });
        }
    }
    for (leg, target) in [
        ("number", "ring"),
        ("assigned", "assigned"),
        ("oncall", "oncall"),
    ] {
        if dial_result(facts, leg) == Some("answered") {
            return Some(PostCallTransfer {
                target: target.into(),
                result: "answered".into(),
            });
        }
    }
    None
}

/// The body of the post-call webhook from what the store knows of a
/// finished call; `finished_at` stands in for a missing end time (a routed
/// call whose final status callback has not come).
pub fn post_call_body(facts: &CallFacts, finished_at: DateTime<Utc>) -> PostCall {
    let ended = facts.ended_at.unwrap_or(finished_at).max(facts.started_at);
    let transfer = transfer_of(facts);
    let handoff_summary = facts
        .last(crate::store::HANDOFF_KIND)
        .and_then(|(_, _, d)| serde_json::from_str::<serde_json::Value>(d).ok())
        .and_then(|v| {
            v.get("summary")
                .and_then(|s| s.as_str())
                .map(str::to_string)
        })
        .filter(|s| !s.trim().is_empty());
    let summary = handoff_summary.or_else(|| {
        facts
            .lead
            .as_ref()
            .and_then(|l| l.notes.as_ref())
            .map(|n| n.expose().chars().take(600).collect())
    });
    let human_answered = transfer.as_ref().is_some_and(|t| t.result == "answered");
    let ai_handed_off = facts.has(crate::store::HANDOFF_KIND);
    let outcome = if facts.booking.is_some() {
        "booked"
    } else if human_answered && ai_handed_off {
        "transferred"
    } else if facts.voicemails > 0 {
        "voicemail"
    } else if facts.lead.is_some() {
        "lead_captured"
    } else if human_answered || facts.caller_turns > 0 {
        "answered"
    } else {
        "abandoned"
    };
    PostCall {
        schema: SCHEMA.into(),
        call: PostCallCall {
            call_sid: facts.call_sid.clone(),
            from: facts.from.as_ref().map(|p| p.expose().clone()),
            to: facts.to.as_ref().map(|p| p.expose().clone()),
            started_at: facts.started_at,
            ended_at: Some(ended),
            duration_s: Some((ended - facts.started_at).num_seconds()),
        },
        lead: facts.lead.as_ref().map(|l| PostCallLead {
            id: l.id.clone(),
            name: l.name.as_ref().map(|n| n.expose().clone()),
            intent: l.intent.clone(),
            tier: l.tier.clone(),
        }),
        outcome: outcome.into(),
        booking: facts.booking.as_ref().map(|b| PostCallBooking {
            id: b.id.clone(),
            owner: b.owner_id.clone(),
            start: b.start,
            end: b.end,
        }),
        transfer,
        summary,
    }
}
