//! The lookups call routing needs: a call by carrier `call_sid`, the AI's
//! pending hand-off, a caller's recent calls, a call's voicemails.

use chrono::{DateTime, Utc};

use super::{from_ms, to_ms, Store, StoreError};
use crate::pii::Pii;

/// Activity-log kind the media session writes when the AI decides to hand
/// the call to a human; `detail` is JSON `{"target": "...", "summary": "..."}`.
pub const HANDOFF_KIND: &str = "handoff";
/// Activity-log kind routing writes when it acts on a hand-off; its detail
/// starts with `handoff=<event id>` so one hand-off is acted on once.
pub const TRANSFER_KIND: &str = "transfer";

/// id, contact_id, from_e164, to_e164, status.
type CallRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);

/// A call as routing sees it.
#[derive(Debug, Clone)]
pub struct CallRef {
    /// Id (UUID text).
    pub id: String,
    /// The caller's contact, when known.
    pub contact_id: Option<String>,
    /// Caller number.
    pub from: Option<Pii<String>>,
    /// Called number.
    pub to: Option<Pii<String>>,
    /// Last known status.
    pub status: String,
}

/// A `handoff` entry of a call's activity log.
#[derive(Debug, Clone)]
pub struct HandoffEvent {
    /// The event's id.
    pub id: String,
    /// When the session wrote it.
    pub at: DateTime<Utc>,
    /// The raw detail (JSON `{"target", "summary"}`).
    pub detail: String,
}

/// A stored voicemail.
#[derive(Debug, Clone)]
pub struct VoicemailRef {
    /// Id.
    pub id: String,
    /// The contact it is linked to.
    pub contact_id: Option<String>,
    /// Where the recording is.
    pub recording_url: String,
    /// Length, when known.
    pub duration_ms: Option<i64>,
}

impl Store {
    /// The call with this carrier id.
    pub async fn call_by_sid(&self, call_sid: &str) -> Result<Option<CallRef>, StoreError> {
        let row: Option<CallRow> = on_pool!(self, |p| {
            sqlx::query_as(
                "SELECT id, contact_id, from_e164, to_e164, status FROM calls WHERE call_sid = $1",
            )
            .bind(call_sid)
            .fetch_optional(p)
            .await?
        });
        Ok(row.map(|(id, contact_id, from, to, status)| CallRef {
            id,
            contact_id,
            from: from.map(Pii::new),
            to: to.map(Pii::new),
            status,
        }))
    }

    /// The latest `handoff` event of a call that no `transfer` event has
    /// acted on yet.
    pub async fn pending_handoff(&self, call_id: &str) -> Result<Option<HandoffEvent>, StoreError> {
        let Some(h) = self.latest_handoff(call_id).await? else {
            return Ok(None);
        };
        let marker = format!("handoff={}", h.id);
        let (used,): (i64,) = on_pool!(self, |p| {
            sqlx::query_as(
                "SELECT COUNT(*) FROM call_events WHERE call_id = $1 AND kind = $2 \
                 AND (detail = $3 OR detail LIKE $4)",
            )
            .bind(call_id)
            .bind(TRANSFER_KIND)
            .bind(&marker)
            .bind(format!("{marker} %"))
            .fetch_one(p)
            .await?
        });
        Ok((used == 0).then_some(h))
    }

    /// The latest `handoff` event of a call, acted on or not.
    pub async fn latest_handoff(&self, call_id: &str) -> Result<Option<HandoffEvent>, StoreError> {
        let row: Option<(String, i64, String)> = on_pool!(self, |p| {
            sqlx::query_as(
                "SELECT id, at_ms, detail FROM call_events WHERE call_id = $1 AND kind = $2 \
                 ORDER BY at_ms DESC, id DESC LIMIT 1",
            )
            .bind(call_id)
            .bind(HANDOFF_KIND)
            .fetch_optional(p)
            .await?
        });
        row.map(|(id, at_ms, detail)| {
            Ok(HandoffEvent {
                id,
                at: from_ms(at_ms, "call_events", "at_ms")?,
                detail,
            })
        })
        .transpose()
    }

    /// Start times of calls from `from_e164` since `since`, other than `except_sid`.
    pub async fn recent_calls_from(
        &self,
        from_e164: &str,
        since: DateTime<Utc>,
        except_sid: &str,
    ) -> Result<Vec<DateTime<Utc>>, StoreError> {
        let rows: Vec<(i64,)> = on_pool!(self, |p| {
            sqlx::query_as(
                "SELECT started_ms FROM calls WHERE from_e164 = $1 AND started_ms >= $2 \
                 AND (call_sid IS NULL OR call_sid <> $3) ORDER BY started_ms",
            )
            .bind(from_e164)
            .bind(to_ms(since))
            .bind(except_sid)
            .fetch_all(p)
            .await?
        });
        rows.into_iter()
            .map(|(ms,)| from_ms(ms, "calls", "started_ms"))
            .collect()
    }

    /// The voicemails of a call, oldest first.
    pub async fn voicemails_of_call(&self, call_id: &str) -> Result<Vec<VoicemailRef>, StoreError> {
        let rows: Vec<(String, Option<String>, String, Option<i64>)> = on_pool!(self, |p| {
            sqlx::query_as(
                "SELECT id, contact_id, recording_url, duration_ms FROM voicemails \
                 WHERE call_id = $1 ORDER BY created_ms, id",
            )
            .bind(call_id)
            .fetch_all(p)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(id, contact_id, recording_url, duration_ms)| VoicemailRef {
                    id,
                    contact_id,
                    recording_url,
                    duration_ms,
                },
            )
            .collect())
    }
}
