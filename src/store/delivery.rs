//! What the deliveries beyond Slack read and claim: everything the store
//! knows about one finished call (for the post-call webhook and the
//! missed-call text-back), and the per-caller SMS cooldown that several
//! nodes must agree on.

use chrono::{DateTime, Utc};

use super::{from_ms, new_id, to_ms, BookingRecord, LeadRecord, Store, StoreError};
use crate::pii::Pii;

/// One call as the post-call webhook describes it.
#[derive(Debug, Clone)]
pub struct CallFacts {
    /// Id (UUID text).
    pub id: String,
    /// Carrier call id.
    pub call_sid: String,
    /// Caller number.
    pub from: Option<Pii<String>>,
    /// Called number.
    pub to: Option<Pii<String>>,
    /// Last stored status (`completed`, `handed_off`, `dropped`, …).
    pub status: String,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End, when recorded.
    pub ended_at: Option<DateTime<Utc>>,
    /// The activity log, oldest first: `(at, kind, detail)`.
    pub events: Vec<(DateTime<Utc>, String, String)>,
    /// Caller turns the AI heard.
    pub caller_turns: i64,
    /// Voicemails left on the call.
    pub voicemails: i64,
    /// The lead stored for the call.
    pub lead: Option<LeadRecord>,
    /// A booking the caller made while the call lasted.
    pub booking: Option<BookingRecord>,
}

impl CallFacts {
    /// Whether the activity log has an entry of `kind`.
    pub fn has(&self, kind: &str) -> bool {
        self.events.iter().any(|(_, k, _)| k == kind)
    }

    /// The last activity entry of `kind`.
    pub fn last(&self, kind: &str) -> Option<&(DateTime<Utc>, String, String)> {
        self.events.iter().rev().find(|(_, k, _)| k == kind)
    }
}

type FactsRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    i64,
    Option<i64>,
);

/// Activity log, caller turns, voicemails, and the lead (id, contact).
type Details = (
    Vec<(i64, String, String)>,
    (i64,),
    (i64,),
    Option<(String, String)>,
);

/// How long after a call's end a booking still counts as made on it (the
/// confirm can land a little after the stream closed).
const BOOKING_GRACE_MS: i64 = 5 * 60 * 1000;

impl Store {
    /// Everything known about the call with this carrier id.
    pub async fn call_facts(
        &self,
        call_sid: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<CallFacts>, StoreError> {
        let row: Option<FactsRow> = on_pool!(self, |p| {
            sqlx::query_as(
                "SELECT id, contact_id, from_e164, to_e164, status, started_ms, ended_ms \
                 FROM calls WHERE call_sid = $1",
            )
            .bind(call_sid)
            .fetch_optional(p)
            .await?
        });
        let Some((id, contact_id, from, to, status, started_ms, ended_ms)) = row else {
            return Ok(None);
        };
        let (events, caller_turns, voicemails, lead_id): Details = on_pool!(self, |p| {
            let events = sqlx::query_as(
                "SELECT at_ms, kind, detail FROM call_events WHERE call_id = $1 ORDER BY at_ms, id",
            )
            .bind(&id)
            .fetch_all(p)
            .await?;
            let turns = sqlx::query_as(
                "SELECT COUNT(*) FROM call_turns WHERE call_id = $1 AND role = 'caller'",
            )
            .bind(&id)
            .fetch_one(p)
            .await?;
            let vms = sqlx::query_as("SELECT COUNT(*) FROM voicemails WHERE call_id = $1")
                .bind(&id)
                .fetch_one(p)
                .await?;
            let lead = sqlx::query_as("SELECT id, contact_id FROM leads WHERE call_sid = $1")
                .bind(call_sid)
                .fetch_optional(p)
                .await?;
            (events, turns, vms, lead)
        });
        let lead = match &lead_id {
            Some((lid, _)) => self.lead_by_id(lid).await?,
            None => None,
        };
        let contact = contact_id.or_else(|| lead_id.map(|(_, c)| c));
        let until = ended_ms.unwrap_or_else(|| to_ms(now)) + BOOKING_GRACE_MS;
        let booking = match &contact {
            Some(c) => {
                let b: Option<(String,)> = on_pool!(self, |p| {
                    sqlx::query_as(
                        "SELECT id FROM bookings WHERE contact_id = $1 AND status = 'confirmed' \
                         AND created_ms >= $2 AND created_ms <= $3 \
                         ORDER BY created_ms DESC, id LIMIT 1",
                    )
                    .bind(c)
                    .bind(started_ms)
                    .bind(until)
                    .fetch_optional(p)
                    .await?
                });
                match b {
                    Some((bid,)) => self.booking(&bid).await?,
                    None => None,
                }
            }
            None => None,
        };
        let events = events
            .into_iter()
            .map(|(at, k, d)| Ok((from_ms(at, "call_events", "at_ms")?, k, d)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(CallFacts {
            id,
            call_sid: call_sid.to_string(),
            from: from.map(Pii::new),
            to: to.map(Pii::new),
            status,
            started_at: from_ms(started_ms, "calls", "started_ms")?,
            ended_at: ended_ms
                .map(|ms| from_ms(ms, "calls", "ended_ms"))
                .transpose()?,
            events,
            caller_turns: caller_turns.0,
            voicemails: voicemails.0,
            lead,
            booking,
        }))
    }

    /// Queue an SMS to `phone` unless one went to it after `cutoff`: the
    /// caller's cooldown row and the outbox item are written in one
    /// transaction, and the cooldown is taken by a conditional upsert, so
    /// two nodes handling two calls of one caller queue one text. False when
    /// the caller is still cooling down or `key` is queued already.
    pub async fn enqueue_sms_with_cooldown(
        &self,
        phone: &Pii<String>,
        cutoff: DateTime<Utc>,
        kind: &str,
        payload: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let now_ms = to_ms(now);
        let queued = in_tx!(self, |tx| {
            let took = sqlx::query(
                "INSERT INTO sms_cooldowns (phone_e164, last_ms) VALUES ($1, $2) \
                 ON CONFLICT (phone_e164) DO UPDATE SET last_ms = excluded.last_ms \
                 WHERE sms_cooldowns.last_ms <= $3",
            )
            .bind(phone.expose())
            .bind(now_ms)
            .bind(to_ms(cutoff))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if took != 1 {
                return Ok(false);
            }
            let n = sqlx::query(
                "INSERT INTO outbox (id, kind, payload, idempotency_key, attempts, next_attempt_ms, status, created_ms) \
                 VALUES ($1, $2, $3, $4, 0, $5, 'pending', $5) \
                 ON CONFLICT (idempotency_key) DO NOTHING",
            )
            .bind(new_id())
            .bind(kind)
            .bind(payload)
            .bind(key)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n != 1 {
                // Queued already (a replayed webhook): keep the old cooldown.
                return Ok(false);
            }
            true
        });
        Ok(queued)
    }
}
