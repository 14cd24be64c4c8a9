//! Contacts, contact activities, calls and their activity log, transcripts,
//! voicemails and leads.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{from_ms, new_id, to_ms, Store, StoreError};
use crate::pii::Pii;

/// A contact to create or update, keyed by its E.164 phone number (already
/// normalised by [`crate::phone`]). `None` fields keep the stored value.
#[derive(Debug, Clone)]
pub struct NewContact {
    /// E.164 number (`+447700900123`).
    pub phone_e164: Pii<String>,
    /// Full name.
    pub name: Option<Pii<String>>,
    /// Email address.
    pub email: Option<Pii<String>>,
    /// IANA time zone of the person.
    pub timezone: Option<String>,
}

/// A stored contact.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ContactRecord {
    /// Id (UUID text).
    pub id: String,
    /// E.164 number, unique.
    pub phone_e164: Pii<String>,
    /// Full name.
    pub name: Option<Pii<String>>,
    /// Email address.
    pub email: Option<Pii<String>>,
    /// IANA time zone.
    pub timezone: Option<String>,
    /// First seen.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct ContactRow {
    id: String,
    phone_e164: String,
    name: Option<String>,
    email: Option<String>,
    timezone: Option<String>,
    created_ms: i64,
    updated_ms: i64,
}

impl ContactRow {
    fn into_record(self) -> Result<ContactRecord, StoreError> {
        Ok(ContactRecord {
            id: self.id,
            phone_e164: Pii::new(self.phone_e164),
            name: self.name.map(Pii::new),
            email: self.email.map(Pii::new),
            timezone: self.timezone,
            created_at: from_ms(self.created_ms, "contacts", "created_ms")?,
            updated_at: from_ms(self.updated_ms, "contacts", "updated_ms")?,
        })
    }
}

const CONTACT_COLUMNS: &str = "id, phone_e164, name, email, timezone, created_ms, updated_ms";

/// Insert or update a contact by phone: `$1` new id, `$2` phone, `$3` name,
/// `$4` email, `$5` zone, `$6` now. `None` fields keep the stored value.
macro_rules! upsert_contact_returning {
    ($columns:literal) => {
        concat!(
            "INSERT INTO contacts (id, phone_e164, name, email, timezone, created_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) \
             ON CONFLICT (phone_e164) DO UPDATE SET \
               name = COALESCE(excluded.name, contacts.name), \
               email = COALESCE(excluded.email, contacts.email), \
               timezone = COALESCE(excluded.timezone, contacts.timezone), \
               updated_ms = excluded.updated_ms \
             RETURNING ",
            $columns
        )
    };
}

const UPSERT_CONTACT: &str =
    upsert_contact_returning!("id, phone_e164, name, email, timezone, created_ms, updated_ms");

/// The contact upsert answering only the id (for [`super::slots`]).
pub(super) const UPSERT_CONTACT_ID: &str = upsert_contact_returning!("id");

/// A lead as posted to `POST /api/ingest/lead`, validated and normalised.
#[derive(Debug, Clone)]
pub struct NewLead {
    /// The person.
    pub contact: NewContact,
    /// Carrier call id; a lead is stored once per `call_sid`.
    pub call_sid: Option<String>,
    /// Intent label (`new_enquiry_demo`).
    pub intent: Option<String>,
    /// Tier `A`–`D`.
    pub tier: Option<String>,
    /// Where it came from (`inbound_call`, `web_form`).
    pub source: Option<String>,
    /// Transcript reference.
    pub transcript_id: Option<String>,
    /// Summary for the rep (personal data).
    pub notes: Option<Pii<String>>,
    /// Team or person the lead is routed to.
    pub routing_owner: Option<String>,
}

/// A stored lead.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LeadRecord {
    /// Id (UUID text).
    pub id: String,
    /// The contact it belongs to.
    pub contact_id: String,
    /// Carrier call id, if any.
    pub call_sid: Option<String>,
    /// Name as given with this lead.
    pub name: Option<Pii<String>>,
    /// Email as given with this lead.
    pub email: Option<Pii<String>>,
    /// E.164 phone number.
    pub phone: Pii<String>,
    /// Intent label.
    pub intent: Option<String>,
    /// Tier `A`–`D`.
    pub tier: Option<String>,
    /// Source.
    pub source: Option<String>,
    /// Transcript reference.
    pub transcript_id: Option<String>,
    /// IANA time zone.
    pub timezone: Option<String>,
    /// Summary for the rep.
    pub notes: Option<Pii<String>>,
    /// Routing owner.
    pub routing_owner: Option<String>,
    /// `new` until a later stage changes it.
    pub status: String,
    /// How the call ended for this lead (`booked`, `transferred`,
    /// `callback`, `answered`, `opted_out`), when a call decided it.
    pub outcome: Option<String>,
    /// The call came outside business hours.
    pub after_hours: bool,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct LeadRow {
    id: String,
    contact_id: String,
    call_sid: Option<String>,
    name: Option<String>,
    email: Option<String>,
    phone_e164: String,
    intent: Option<String>,
    tier: Option<String>,
    source: Option<String>,
    transcript_id: Option<String>,
    timezone: Option<String>,
    notes: Option<String>,
    routing_owner: Option<String>,
    status: String,
    outcome: Option<String>,
    after_hours: i64,
    created_ms: i64,
}

const LEAD_COLUMNS: &str =
    "id, contact_id, call_sid, name, email, phone_e164, intent, tier, source, \
     transcript_id, timezone, notes, routing_owner, status, outcome, after_hours, created_ms";

impl LeadRow {
    fn into_record(self) -> Result<LeadRecord, StoreError> {
        Ok(LeadRecord {
            id: self.id,
            contact_id: self.contact_id,
            call_sid: self.call_sid,
            name: self.name.map(Pii::new),
            email: self.email.map(Pii::new),
            phone: Pii::new(self.phone_e164),
            intent: self.intent,
            tier: self.tier,
            source: self.source,
            transcript_id: self.transcript_id,
            timezone: self.timezone,
            notes: self.notes.map(Pii::new),
            routing_owner: self.routing_owner,
            status: self.status,
            outcome: self.outcome,
            after_hours: self.after_hours != 0,
            created_at: from_ms(self.created_ms, "leads", "created_ms")?,
        })
    }
}

/// The result of ingesting a lead.
#[derive(Debug, Clone)]
pub struct IngestOutcome {
    /// The stored lead (the earlier one on a replay).
    pub lead: LeadRecord,
    /// The contact after the upsert (on a replay: as stored, untouched).
    pub contact: ContactRecord,
    /// False when a lead with the same `call_sid` already existed.
    pub created: bool,
}

/// Filters of `GET /api/leads`.
#[derive(Debug, Clone, Default)]
pub struct LeadFilter {
    /// Only leads stored at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Only this tier.
    pub tier: Option<String>,
    /// Only this status.
    pub status: Option<String>,
    /// At most this many (newest first).
    pub limit: i64,
}

/// A stored call with its activity log.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    /// Id (UUID text).
    pub id: String,
    /// Carrier call id.
    pub call_sid: Option<String>,
    /// The caller, when known.
    pub contact_id: Option<String>,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// Caller number.
    pub from: Option<Pii<String>>,
    /// Called number.
    pub to: Option<Pii<String>>,
    /// Last known status (`in-progress`, `completed`, …).
    pub status: String,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End, once over.
    pub ended_at: Option<DateTime<Utc>>,
    /// Every routing attempt, transfer and outcome, oldest first.
    pub events: Vec<CallEventRecord>,
}

/// One timestamped entry of a call's activity log.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CallEventRecord {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened (`ring_attempt`, `transfer`, `voicemail`, `lead_recorded`, …).
    pub kind: String,
    /// Free text (never a raw phone number: callers pass masked values).
    pub detail: String,
}

#[derive(sqlx::FromRow)]
struct CallRow {
    id: String,
    call_sid: Option<String>,
    contact_id: Option<String>,
    direction: String,
    from_e164: Option<String>,
    to_e164: Option<String>,
    status: String,
    started_ms: i64,
    ended_ms: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct CallEventRow {
    call_id: String,
    at_ms: i64,
    kind: String,
    detail: String,
}

/// A call to record (`call_sid` makes it idempotent).
#[derive(Debug, Clone)]
pub struct NewCall {
    /// Carrier call id.
    pub call_sid: Option<String>,
    /// The caller, when known.
    pub contact_id: Option<String>,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// Caller number (E.164).
    pub from: Option<Pii<String>>,
    /// Called number (E.164).
    pub to: Option<Pii<String>>,
    /// Initial status.
    pub status: String,
}

/// One activity row of the local CRM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityRecord {
    /// Id.
    pub id: String,
    /// `note`, `task`, `call` or `meeting`.
    pub kind: String,
    /// Subject or title.
    pub subject: Option<String>,
    /// Body (personal data).
    pub body: Option<Pii<String>>,
    /// When (the due time of a task, the start of a meeting).
    pub at: DateTime<Utc>,
    /// End of a meeting.
    pub end: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct ActivityRow {
    id: String,
    kind: String,
    subject: Option<String>,
    body: Option<String>,
    at_ms: i64,
    end_ms: Option<i64>,
}

pub(super) fn opt_expose(v: &Option<Pii<String>>) -> Option<String> {
    v.as_ref().map(|p| p.expose().clone())
}

impl Store {
    /// Insert or update the contact with this phone number (one row per
    /// number, enforced by a unique index). Returns the stored contact.
    pub async fn upsert_contact(
        &self,
        c: &NewContact,
        now: DateTime<Utc>,
    ) -> Result<ContactRecord, StoreError> {
        let row: ContactRow = on_pool!(self, |p| {
            sqlx::query_as(UPSERT_CONTACT)
                .bind(new_id())
                .bind(c.phone_e164.expose())
                .bind(opt_expose(&c.name))
                .bind(opt_expose(&c.email))
                .bind(c.timezone.clone())
                .bind(to_ms(now))
                .fetch_one(p)
                .await?
        });
        row.into_record()
    }

    /// The contact with this E.164 number.
    pub async fn contact_by_phone(
        &self,
        phone_e164: &str,
    ) -> Result<Option<ContactRecord>, StoreError> {
        let sql = format!("SELECT {CONTACT_COLUMNS} FROM contacts WHERE phone_e164 = $1");
        let row: Option<ContactRow> = on_pool!(self, |p| {
            sqlx::query_as(&sql)
                .bind(phone_e164)
                .fetch_optional(p)
                .await?
        });
        row.map(ContactRow::into_record).transpose()
    }

    /// The contact with this id.
    pub async fn contact_by_id(&self, id: &str) -> Result<Option<ContactRecord>, StoreError> {
        let sql = format!("SELECT {CONTACT_COLUMNS} FROM contacts WHERE id = $1");
        let row: Option<ContactRow> = on_pool!(self, |p| sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(p)
            .await?);
        row.map(ContactRow::into_record).transpose()
    }

    /// How many contacts exist (for tests and the dashboard).
    pub async fn count_contacts(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = on_pool!(self, |p| {
            sqlx::query_as("SELECT COUNT(*) FROM contacts")
                .fetch_one(p)
                .await?
        });
        Ok(n)
    }

    /// Record a note, task, call or meeting against a contact. `None` when the
    /// contact does not exist.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_activity(
        &self,
        contact_id: &str,
        kind: &str,
        subject: Option<&str>,
        body: Option<&str>,
        at: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        let id = new_id();
        let inserted = on_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO contact_activities (id, contact_id, kind, subject, body, at_ms, end_ms, created_ms) \
                 SELECT $1, id, $3, $4, $5, $6, $7, $8 FROM contacts WHERE id = $2",
            )
            .bind(&id)
            .bind(contact_id)
            .bind(kind)
            .bind(subject)
            .bind(body)
            .bind(to_ms(at))
            .bind(end.map(to_ms))
            .bind(to_ms(now))
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok((inserted == 1).then_some(id))
    }

    /// Every activity of a contact, oldest first.
    pub async fn activities(&self, contact_id: &str) -> Result<Vec<ActivityRecord>, StoreError> {
        let rows: Vec<ActivityRow> = on_pool!(self, |p| {
            sqlx::query_as(
                "SELECT id, kind, subject, body, at_ms, end_ms FROM contact_activities \
                 WHERE contact_id = $1 ORDER BY at_ms, created_ms",
            )
            .bind(contact_id)
            .fetch_all(p)
            .await?
        });
        rows.into_iter()
            .map(|r| {
                Ok(ActivityRecord {
                    id: r.id,
                    kind: r.kind,
                    subject: r.subject,
                    body: r.body.map(Pii::new),
                    at: from_ms(r.at_ms, "contact_activities", "at_ms")?,
                    end: r
                        .end_ms
                        .map(|ms| from_ms(ms, "contact_activities", "end_ms"))
                        .transpose()?,
                })
            })
            .collect()
    }

    /// Store a lead in one transaction: upsert its contact (de-duplicated by
    /// phone), insert the lead unless one with the same `call_sid` exists,
    /// make sure the call exists and log it, and queue a `lead.created`
    /// outbox item. Either all of it is stored or none of it.
    ///
    /// A replay (a `call_sid` already stored) changes nothing: it answers the
    /// stored lead and its contact as they are, whatever the replay carries.
    /// Two first ingests of one `call_sid` racing each other store one lead;
    /// the loser's transaction, contact upsert included, is rolled back and it
    /// answers the winner's lead.
    pub async fn ingest_lead(
        &self,
        lead: &NewLead,
        now: DateTime<Utc>,
    ) -> Result<IngestOutcome, StoreError> {
        if let Some(out) = self.ingest_lead_once(lead, now).await? {
            return Ok(out);
        }
        // Lost the race: the winner has committed, so this finds its lead.
        match self.ingest_lead_once(lead, now).await? {
            Some(out) => Ok(out),
            None => Err(StoreError::Corrupt {
                table: "leads",
                column: "call_sid",
            }),
        }
    }

    /// One attempt of [`Store::ingest_lead`]; `None` when a concurrent ingest
    /// stored a lead with the same `call_sid` first (this one rolled back).
    async fn ingest_lead_once(
        &self,
        lead: &NewLead,
        now: DateTime<Utc>,
    ) -> Result<Option<IngestOutcome>, StoreError> {
        let now_ms = to_ms(now);
        let lead_id = new_id();
        let insert_lead =
            "INSERT INTO leads (id, contact_id, call_sid, name, email, phone_e164, intent, tier, \
             source, transcript_id, timezone, notes, routing_owner, status, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'new', $14) \
             ON CONFLICT (call_sid) DO NOTHING RETURNING id";
        let select_lead = format!("SELECT {LEAD_COLUMNS} FROM leads WHERE id = $1");
        let select_by_sid = format!("SELECT {LEAD_COLUMNS} FROM leads WHERE call_sid = $1");
        let payload = |lead_id: &str, contact_id: &str| {
            serde_json::json!({
                "lead_id": lead_id,
                "contact_id": contact_id,
                "tier": lead.tier,
                "call_sid": lead.call_sid,
            })
            .to_string()
        };
        let select_contact = format!("SELECT {CONTACT_COLUMNS} FROM contacts WHERE id = $1");
        let (contact, lead_row): (ContactRow, LeadRow) = in_tx!(self, |tx| {
            // A replay is answered before anything is written.
            let existing: Option<LeadRow> = match &lead.call_sid {
                Some(sid) => {
                    sqlx::query_as(&select_by_sid)
                        .bind(sid)
                        .fetch_optional(&mut *tx)
                        .await?
                }
                None => None,
            };
            if let Some(row) = existing {
                let contact: Option<ContactRow> = sqlx::query_as(&select_contact)
                    .bind(&row.contact_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(contact) = contact else {
                    return Err(StoreError::Corrupt {
                        table: "leads",
                        column: "contact_id",
                    });
                };
                return Ok(Some(IngestOutcome {
                    lead: row.into_record()?,
                    contact: contact.into_record()?,
                    created: false,
                }));
            }
            let contact: ContactRow = sqlx::query_as(UPSERT_CONTACT)
                .bind(new_id())
                .bind(lead.contact.phone_e164.expose())
                .bind(opt_expose(&lead.contact.name))
                .bind(opt_expose(&lead.contact.email))
                .bind(lead.contact.timezone.clone())
                .bind(now_ms)
                .fetch_one(&mut *tx)
                .await?;
            let inserted: Option<(String,)> = sqlx::query_as(insert_lead)
                .bind(&lead_id)
                .bind(&contact.id)
                .bind(lead.call_sid.clone())
                .bind(opt_expose(&lead.contact.name))
                .bind(opt_expose(&lead.contact.email))
                .bind(lead.contact.phone_e164.expose())
                .bind(lead.intent.clone())
                .bind(lead.tier.clone())
                .bind(lead.source.clone())
                .bind(lead.transcript_id.clone())
                .bind(lead.contact.timezone.clone())
                .bind(opt_expose(&lead.notes))
                .bind(lead.routing_owner.clone())
                .bind(now_ms)
                .fetch_optional(&mut *tx)
                .await?;
            match inserted {
                Some(_) => {
                    if let Some(sid) = &lead.call_sid {
                        let call_id: (String,) = sqlx::query_as(
                            "INSERT INTO calls (id, call_sid, contact_id, direction, from_e164, status, started_ms) \
                             VALUES ($1, $2, $3, 'inbound', $4, 'completed', $5) \
                             ON CONFLICT (call_sid) DO UPDATE SET \
                               contact_id = COALESCE(calls.contact_id, excluded.contact_id) \
                             RETURNING id",
                        )
                        .bind(new_id())
                        .bind(sid)
                        .bind(&contact.id)
                        .bind(lead.contact.phone_e164.expose())
                        .bind(now_ms)
                        .fetch_one(&mut *tx)
                        .await?;
                        sqlx::query(
                            "INSERT INTO call_events (id, call_id, at_ms, kind, detail) \
                             VALUES ($1, $2, $3, 'lead_recorded', $4)",
                        )
                        .bind(new_id())
                        .bind(&call_id.0)
                        .bind(now_ms)
                        .bind(format!("lead {lead_id}"))
                        .execute(&mut *tx)
                        .await?;
                    }
                    sqlx::query(
                        "INSERT INTO outbox (id, kind, payload, idempotency_key, attempts, next_attempt_ms, status, created_ms) \
                         VALUES ($1, 'lead.created', $2, $3, 0, $4, 'pending', $4) \
                         ON CONFLICT (idempotency_key) DO NOTHING",
                    )
                    .bind(new_id())
                    .bind(payload(&lead_id, &contact.id))
                    .bind(format!("lead.created:{lead_id}"))
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                    let row: LeadRow = sqlx::query_as(&select_lead)
                        .bind(&lead_id)
                        .fetch_one(&mut *tx)
                        .await?;
                    (contact, row)
                }
                // A concurrent ingest stored this call_sid after our check:
                // returning drops the transaction, rolling back the upsert.
                None => return Ok(None),
            }
        });
        Ok(Some(IngestOutcome {
            lead: lead_row.into_record()?,
            contact: contact.into_record()?,
            created: true,
        }))
    }

    /// One lead by id.
    pub async fn lead_by_id(&self, id: &str) -> Result<Option<LeadRecord>, StoreError> {
        let sql = format!("SELECT {LEAD_COLUMNS} FROM leads WHERE id = $1");
        let row: Option<LeadRow> = on_pool!(self, |p| sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(p)
            .await?);
        row.map(LeadRow::into_record).transpose()
    }

    /// Leads, newest first.
    pub async fn list_leads(&self, f: &LeadFilter) -> Result<Vec<LeadRecord>, StoreError> {
        let sql = format!(
            "SELECT {LEAD_COLUMNS} FROM leads \
             WHERE (CAST($1 AS BIGINT) IS NULL OR created_ms >= CAST($1 AS BIGINT)) \
               AND (CAST($2 AS TEXT) IS NULL OR tier = CAST($2 AS TEXT)) \
               AND (CAST($3 AS TEXT) IS NULL OR status = CAST($3 AS TEXT)) \
             ORDER BY created_ms DESC, id LIMIT $4"
        );
        let rows: Vec<LeadRow> = on_pool!(self, |p| {
            sqlx::query_as(&sql)
                .bind(f.since.map(to_ms))
                .bind(f.tier.clone())
                .bind(f.status.clone())
                .bind(f.limit.max(0))
                .fetch_all(p)
                .await?
        });
        rows.into_iter().map(LeadRow::into_record).collect()
    }

    /// Insert a call, or return the id of the existing one with this `call_sid`.
    pub async fn upsert_call(&self, c: &NewCall, now: DateTime<Utc>) -> Result<String, StoreError> {
        let (id,): (String,) = on_pool!(self, |p| {
            sqlx::query_as(
                "INSERT INTO calls (id, call_sid, contact_id, direction, from_e164, to_e164, status, started_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (call_sid) DO UPDATE SET \
                   contact_id = COALESCE(calls.contact_id, excluded.contact_id) \
                 RETURNING id",
            )
            .bind(new_id())
            .bind(c.call_sid.clone())
            .bind(c.contact_id.clone())
            .bind(&c.direction)
            .bind(opt_expose(&c.from))
            .bind(opt_expose(&c.to))
            .bind(&c.status)
            .bind(to_ms(now))
            .fetch_one(p)
            .await?
        });
        Ok(id)
    }

    /// Append one timestamped entry to a call's activity log (a routing
    /// attempt, a transfer, the outcome). False when the call does not exist.
    pub async fn add_call_event(
        &self,
        call_id: &str,
        at: DateTime<Utc>,
        kind: &str,
        detail: &str,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO call_events (id, call_id, at_ms, kind, detail) \
                 SELECT $1, id, $3, $4, $5 FROM calls WHERE id = $2",
            )
            .bind(new_id())
            .bind(call_id)
            .bind(to_ms(at))
            .bind(kind)
            .bind(detail)
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Set a call's status, and its end time when given.
    pub async fn set_call_status(
        &self,
        call_id: &str,
        status: &str,
        ended: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, |p| {
            sqlx::query(
                "UPDATE calls SET status = $2, ended_ms = COALESCE($3, ended_ms) WHERE id = $1",
            )
            .bind(call_id)
            .bind(status)
            .bind(ended.map(to_ms))
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Calls, newest first, each with its activity log.
    pub async fn list_calls(
        &self,
        since: Option<DateTime<Utc>>,
        limit: i64,
    ) -> Result<Vec<CallRecord>, StoreError> {
        let filter = "(CAST($1 AS BIGINT) IS NULL OR started_ms >= CAST($1 AS BIGINT))";
        let calls_sql = format!(
            "SELECT id, call_sid, contact_id, direction, from_e164, to_e164, status, started_ms, ended_ms \
             FROM calls WHERE {filter} ORDER BY started_ms DESC, id LIMIT $2"
        );
        let events_sql = format!(
            "SELECT e.call_id, e.at_ms, e.kind, e.detail FROM call_events e \
             JOIN (SELECT id FROM calls WHERE {filter} ORDER BY started_ms DESC, id LIMIT $2) c \
               ON c.id = e.call_id \
             ORDER BY e.at_ms, e.id"
        );
        let since_ms = since.map(to_ms);
        let limit = limit.max(0);
        let (calls, events): (Vec<CallRow>, Vec<CallEventRow>) = on_pool!(self, |p| {
            let calls = sqlx::query_as(&calls_sql)
                .bind(since_ms)
                .bind(limit)
                .fetch_all(p)
                .await?;
            let events = sqlx::query_as(&events_sql)
                .bind(since_ms)
                .bind(limit)
                .fetch_all(p)
                .await?;
            (calls, events)
        });
        let mut out = Vec::with_capacity(calls.len());
        for c in calls {
            let evs = events
                .iter()
                .filter(|e| e.call_id == c.id)
                .map(|e| {
                    Ok(CallEventRecord {
                        at: from_ms(e.at_ms, "call_events", "at_ms")?,
                        kind: e.kind.clone(),
                        detail: e.detail.clone(),
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            out.push(CallRecord {
                started_at: from_ms(c.started_ms, "calls", "started_ms")?,
                ended_at: c
                    .ended_ms
                    .map(|ms| from_ms(ms, "calls", "ended_ms"))
                    .transpose()?,
                id: c.id,
                call_sid: c.call_sid,
                contact_id: c.contact_id,
                direction: c.direction,
                from: c.from_e164.map(Pii::new),
                to: c.to_e164.map(Pii::new),
                status: c.status,
                events: evs,
            });
        }
        Ok(out)
    }

    /// Store a transcript (optionally of a call). Returns its id.
    pub async fn add_transcript(
        &self,
        call_id: Option<&str>,
        body: &Pii<String>,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let id = new_id();
        on_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO transcripts (id, call_id, body, created_ms) VALUES ($1, $2, $3, $4)",
            )
            .bind(&id)
            .bind(call_id)
            .bind(body.expose())
            .bind(to_ms(now))
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(id)
    }

    /// Store a voicemail. Returns its id.
    pub async fn add_voicemail(
        &self,
        call_id: Option<&str>,
        contact_id: Option<&str>,
        recording_url: &str,
        duration_ms: Option<i64>,
        transcript: Option<&Pii<String>>,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let id = new_id();
        on_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO voicemails (id, call_id, contact_id, recording_url, duration_ms, transcript, created_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&id)
            .bind(call_id)
            .bind(contact_id)
            .bind(recording_url)
            .bind(duration_ms)
            .bind(transcript.map(|t| t.expose().clone()))
            .bind(to_ms(now))
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(id)
    }
}
