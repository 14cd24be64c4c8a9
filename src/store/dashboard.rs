//! What the dashboard reads: inbound calls counted per quarter hour, and the
//! leads of a window with their claim, first dial and call facts.
//!
//! The rates are computed from these facts by `http::dashboard`, in the
//! business time zone. Calls are aggregated here, in SQL, per UTC quarter
//! hour (`started_ms / 900000`): every time-zone offset in use, and every
//! daylight-saving change, falls on a quarter hour, so each bucket lies in
//! one local hour of the day whatever the zone, and the work stays
//! proportional to the window rather than to the number of calls. Leads are
//! read one by one (there are far fewer of them, and a median needs each
//! value).
//!
//! The facts, as this module decides them from what the store records:
//!
//! - a call is **answered** when the AI receptionist took part in it (at
//!   least one turn in `call_turns`) or a human picked up a ring or transfer
//!   leg (an `answered` entry in its activity log, `call_events`);
//! - a call is **booked** when the calendar confirmed a booking on it (a
//!   `tool_finished` entry `confirm_booking ok`) or its lead is tier A (the
//!   seed's "self-serve booking" tier, as an outside agent posts it to
//!   `POST /api/ingest/lead`).

use chrono::{DateTime, Utc};

use super::{from_ms, to_ms, Store, StoreError};
use crate::pii::Pii;

/// Width of one call bucket.
pub const BUCKET_MS: i64 = 15 * 60 * 1000;

/// Inbound calls that started in one UTC quarter hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallBucket {
    /// The start of the quarter hour.
    pub start: DateTime<Utc>,
    /// Inbound calls that started in it.
    pub calls: i64,
    /// Of those, answered (by the AI or a human).
    pub answered: i64,
    /// Of the answered ones, booked.
    pub booked: i64,
}

/// One lead of the window, with what the store knows about its call-back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadFact {
    /// Lead id.
    pub id: String,
    /// Name given with the lead.
    pub name: Option<Pii<String>>,
    /// E.164 number.
    pub phone: Pii<String>,
    /// Intent label.
    pub intent: Option<String>,
    /// Tier `A`–`D`, as stored.
    pub tier: Option<String>,
    /// When the lead was stored.
    pub created_at: DateTime<Utc>,
    /// When its call started (the lead's own time when it has no call on
    /// record): the instant the window and the hour of day are taken from.
    pub call_at: DateTime<Utc>,
    /// When its call ended, if it is on record and over.
    pub call_ended_at: Option<DateTime<Utc>>,
    /// The first `answered` entry of its call: a human picked up a ring or
    /// transfer leg while the caller was on the line.
    pub human_answered_at: Option<DateTime<Utc>>,
    /// The calendar confirmed a booking on its call.
    pub booked_on_call: bool,
    /// A voicemail was left on its call.
    pub voicemail: bool,
    /// Who claimed it (display name).
    pub claimed_by: Option<String>,
    /// When it was claimed.
    pub claimed_at: Option<DateTime<Utc>>,
    /// When click-to-call first dialled the rep for it.
    pub dialed_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct BucketRow {
    q: i64,
    calls: i64,
    answered: i64,
    booked: i64,
}

#[derive(sqlx::FromRow)]
struct LeadFactRow {
    id: String,
    name: Option<String>,
    phone_e164: String,
    intent: Option<String>,
    tier: Option<String>,
    created_ms: i64,
    started_ms: Option<i64>,
    ended_ms: Option<i64>,
    answered_ms: Option<i64>,
    booked_on_call: bool,
    voicemail: bool,
    rep_name: Option<String>,
    claimed_ms: Option<i64>,
    dialed_ms: Option<i64>,
}

/// The call `c` was answered (see the module doc), as an SQL condition.
const ANSWERED: &str = "(EXISTS (SELECT 1 FROM call_turns t WHERE t.call_id = c.id) \
     OR EXISTS (SELECT 1 FROM call_events e WHERE e.call_id = c.id AND e.kind = 'answered'))";

/// The calendar confirmed a booking on call `c`, as an SQL condition.
const BOOKED_ON_CALL: &str = "EXISTS (SELECT 1 FROM call_events e WHERE e.call_id = c.id \
     AND e.kind = 'tool_finished' AND e.detail = 'confirm_booking ok')";

/// Most leads one window reads (a guard, far above any real window).
pub const MAX_LEADS: i64 = 50_000;

impl Store {
    /// Inbound calls that started in `[from, to)`, per UTC quarter hour
    /// (only the quarter hours that had calls), oldest first.
    pub async fn dashboard_calls(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<CallBucket>, StoreError> {
        let sql = format!(
            "SELECT q, COUNT(*) AS calls, SUM(a) AS answered, \
               SUM(CASE WHEN a = 1 AND b = 1 THEN 1 ELSE 0 END) AS booked \
             FROM (SELECT c.started_ms / {BUCKET_MS} AS q, \
                     CASE WHEN {ANSWERED} THEN 1 ELSE 0 END AS a, \
                     CASE WHEN {BOOKED_ON_CALL} OR EXISTS (SELECT 1 FROM leads l \
                       WHERE l.call_sid = c.call_sid AND l.tier = 'A') THEN 1 ELSE 0 END AS b \
                   FROM calls c \
                   WHERE c.direction = 'inbound' AND c.started_ms >= $1 AND c.started_ms < $2) x \
             GROUP BY q ORDER BY q"
        );
        let rows: Vec<BucketRow> = on_pool!(self, |p| {
            sqlx::query_as(&sql)
                .bind(to_ms(from))
                .bind(to_ms(to))
                .fetch_all(p)
                .await?
        });
        rows.into_iter()
            .map(|r| {
                Ok(CallBucket {
                    start: from_ms(r.q * BUCKET_MS, "calls", "started_ms")?,
                    calls: r.calls,
                    answered: r.answered,
                    booked: r.booked,
                })
            })
            .collect()
    }

    /// The leads whose call started in `[from, to)` (see
    /// [`LeadFact::call_at`]), newest first, at most [`MAX_LEADS`].
    pub async fn dashboard_leads(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<LeadFact>, StoreError> {
        let sql = format!(
            "SELECT l.id, l.name, l.phone_e164, l.intent, l.tier, l.created_ms, \
               c.started_ms, c.ended_ms, \
               (SELECT MIN(e.at_ms) FROM call_events e \
                 WHERE e.call_id = c.id AND e.kind = 'answered') AS answered_ms, \
               {BOOKED_ON_CALL} AS booked_on_call, \
               EXISTS (SELECT 1 FROM voicemails v WHERE v.call_id = c.id) AS voicemail, \
               k.rep_name, k.claimed_ms, k.dialed_ms \
             FROM leads l \
             LEFT JOIN calls c ON c.call_sid = l.call_sid \
             LEFT JOIN lead_claims k ON k.lead_id = l.id \
             WHERE COALESCE(c.started_ms, l.created_ms) >= $1 \
               AND COALESCE(c.started_ms, l.created_ms) < $2 \
             ORDER BY COALESCE(c.started_ms, l.created_ms) DESC, l.id LIMIT $3"
        );
        let rows: Vec<LeadFactRow> = on_pool!(self, |p| {
            sqlx::query_as(&sql)
                .bind(to_ms(from))
                .bind(to_ms(to))
                .bind(MAX_LEADS)
                .fetch_all(p)
                .await?
        });
        rows.into_iter().map(LeadFactRow::into_fact).collect()
    }
}

impl LeadFactRow {
    fn into_fact(self) -> Result<LeadFact, StoreError> {
        let opt =
            |ms: Option<i64>, table, column| ms.map(|v| from_ms(v, table, column)).transpose();
        Ok(LeadFact {
            created_at: from_ms(self.created_ms, "leads", "created_ms")?,
            call_at: from_ms(
                self.started_ms.unwrap_or(self.created_ms),
                "calls",
                "started_ms",
            )?,
            call_ended_at: opt(self.ended_ms, "calls", "ended_ms")?,
            human_answered_at: opt(self.answered_ms, "call_events", "at_ms")?,
            claimed_at: opt(self.claimed_ms, "lead_claims", "claimed_ms")?,
            dialed_at: opt(self.dialed_ms, "lead_claims", "dialed_ms")?,
            id: self.id,
            name: self.name.map(Pii::new),
            phone: Pii::new(self.phone_e164),
            intent: self.intent,
            tier: self.tier,
            booked_on_call: self.booked_on_call,
            voicemail: self.voicemail,
            claimed_by: self.rep_name,
        })
    }
}
