//! The outcome of a call on its lead: written as soon as the brain knows
//! it, updated as the call goes on (a decision numbered later always wins),
//! and the do-not-contact mark of a caller who opted out.

use chrono::{DateTime, Utc};

use super::records::{opt_expose, UPSERT_CONTACT_ID};
use super::{new_id, to_ms, NewLead, Store, StoreError};

/// A call's lead with how the call ended (or would end if it dropped now).
#[derive(Debug, Clone)]
pub struct LeadOutcome {
    /// The lead in the ingest shape (`call_sid` required).
    pub lead: NewLead,
    /// `booked` | `transferred` | `callback` | `answered` | `opted_out`.
    pub outcome: String,
    /// Decision order within the call: a write with a lower or equal
    /// number than the stored one changes nothing.
    pub seq: i64,
    /// The call came outside business hours.
    pub after_hours: bool,
    /// When the callback is due, for `callback`.
    pub callback_due: Option<DateTime<Utc>>,
}

/// What a returning number has on record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactHistory {
    /// Leads stored for the contact.
    pub leads: i64,
    /// The notes of the newest lead.
    pub last_notes: Option<String>,
    /// The contact asked not to be contacted.
    pub do_not_contact: bool,
}

impl Store {
    /// Write `o` onto the lead of its call: the first write stores the lead
    /// (and, unless the caller opted out, queues `lead.created` for the
    /// notifier, through [`Store::ingest_lead`]); later writes update it
    /// when their `seq` is higher. `opted_out` marks the contact
    /// do-not-contact and withdraws a `lead.created` nobody has picked up.
    /// Returns the lead id.
    pub async fn record_lead_outcome(
        &self,
        o: &LeadOutcome,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let Some(sid) = o.lead.call_sid.clone() else {
            return Err(StoreError::Corrupt {
                table: "leads",
                column: "call_sid",
            });
        };
        let opted = o.outcome == "opted_out";
        let id = match self.lead_id_by_sid(&sid).await? {
            Some(id) => id,
            None if !opted => self.ingest_lead(&o.lead, now).await?.lead.id,
            None => {
                let (contact_id,): (String,) = on_pool!(self, |p| {
                    sqlx::query_as(UPSERT_CONTACT_ID)
                        .bind(new_id())
                        .bind(o.lead.contact.phone_e164.expose())
                        .bind(opt_expose(&o.lead.contact.name))
                        .bind(opt_expose(&o.lead.contact.email))
                        .bind(o.lead.contact.timezone.clone())
                        .bind(to_ms(now))
                        .fetch_one(p)
                        .await?
                });
                on_pool!(self, |p| {
                    sqlx::query(
                        "INSERT INTO leads (id, contact_id, call_sid, phone_e164, status, created_ms) \
                         VALUES ($1, $2, $3, $4, 'new', $5) ON CONFLICT (call_sid) DO NOTHING",
                    )
                    .bind(new_id())
                    .bind(&contact_id)
                    .bind(&sid)
                    .bind(o.lead.contact.phone_e164.expose())
                    .bind(to_ms(now))
                    .execute(p)
                    .await?
                    .rows_affected()
                });
                self.lead_id_by_sid(&sid)
                    .await?
                    .ok_or(StoreError::Corrupt {
                        table: "leads",
                        column: "call_sid",
                    })?
            }
        };
        let l = &o.lead;
        on_pool!(self, |p| {
            sqlx::query(
                "UPDATE leads SET name = COALESCE($2, name), email = COALESCE($3, email), \
                   intent = $4, tier = $5, source = COALESCE($6, source), \
                   transcript_id = COALESCE($7, transcript_id), timezone = COALESCE($8, timezone), \
                   notes = $9, routing_owner = $10, outcome = $11, outcome_seq = $12, \
                   after_hours = $13, callback_due_ms = $14, phone_e164 = $15 \
                 WHERE id = $1 AND outcome_seq < $12",
            )
            .bind(&id)
            .bind(opt_expose(&l.contact.name))
            .bind(opt_expose(&l.contact.email))
            .bind(l.intent.clone())
            .bind(l.tier.clone())
            .bind(l.source.clone())
            .bind(l.transcript_id.clone())
            .bind(l.contact.timezone.clone())
            .bind(opt_expose(&l.notes))
            .bind(l.routing_owner.clone())
            .bind(&o.outcome)
            .bind(o.seq)
            .bind(i64::from(o.after_hours))
            .bind(o.callback_due.map(to_ms))
            .bind(l.contact.phone_e164.expose())
            .execute(p)
            .await?
            .rows_affected()
        });
        on_pool!(self, |p| {
            sqlx::query(
                "UPDATE contacts SET name = COALESCE($2, name), email = COALESCE($3, email), \
                   timezone = COALESCE($4, timezone), updated_ms = $5 WHERE phone_e164 = $1",
            )
            .bind(l.contact.phone_e164.expose())
            .bind(opt_expose(&l.contact.name))
            .bind(opt_expose(&l.contact.email))
            .bind(l.contact.timezone.clone())
            .bind(to_ms(now))
            .execute(p)
            .await?
            .rows_affected()
        });
        if opted {
            self.set_do_not_contact(l.contact.phone_e164.expose(), now)
                .await?;
            on_pool!(self, |p| {
                sqlx::query(
                    "DELETE FROM outbox WHERE idempotency_key = $1 AND status = 'pending' AND attempts = 0",
                )
                .bind(format!("lead.created:{id}"))
                .execute(p)
                .await?
                .rows_affected()
            });
        }
        Ok(id)
    }

    async fn lead_id_by_sid(&self, sid: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = on_pool!(self, |p| {
            sqlx::query_as("SELECT id FROM leads WHERE call_sid = $1")
                .bind(sid)
                .fetch_optional(p)
                .await?
        });
        Ok(row.map(|(id,)| id))
    }

    /// Mark the contact with this E.164 number do-not-contact (creating it
    /// if new: the wish must outlive this call).
    pub async fn set_do_not_contact(
        &self,
        phone_e164: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO contacts (id, phone_e164, created_ms, updated_ms, do_not_contact) \
                 VALUES ($1, $2, $3, $3, 1) \
                 ON CONFLICT (phone_e164) DO UPDATE SET do_not_contact = 1, updated_ms = excluded.updated_ms",
            )
            .bind(new_id())
            .bind(phone_e164)
            .bind(to_ms(now))
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(())
    }

    /// The leads and do-not-contact mark of a contact.
    pub async fn contact_history(&self, contact_id: &str) -> Result<ContactHistory, StoreError> {
        let dnc: Option<(i64,)> = on_pool!(self, |p| {
            sqlx::query_as("SELECT do_not_contact FROM contacts WHERE id = $1")
                .bind(contact_id)
                .fetch_optional(p)
                .await?
        });
        let (leads,): (i64,) = on_pool!(self, |p| {
            sqlx::query_as("SELECT COUNT(*) FROM leads WHERE contact_id = $1")
                .bind(contact_id)
                .fetch_one(p)
                .await?
        });
        let last: Option<(Option<String>,)> = on_pool!(self, |p| {
            sqlx::query_as(
                "SELECT notes FROM leads WHERE contact_id = $1 ORDER BY created_ms DESC, id LIMIT 1",
            )
            .bind(contact_id)
            .fetch_optional(p)
            .await?
        });
        Ok(ContactHistory {
            leads,
            last_notes: last.and_then(|(n,)| n),
            do_not_contact: dnc.is_some_and(|(d,)| d != 0),
        })
    }

    /// Whether the number is marked do-not-contact.
    pub async fn is_do_not_contact(&self, phone_e164: &str) -> Result<bool, StoreError> {
        let row: Option<(i64,)> = on_pool!(self, |p| {
            sqlx::query_as("SELECT do_not_contact FROM contacts WHERE phone_e164 = $1")
                .bind(phone_e164)
                .fetch_optional(p)
                .await?
        });
        Ok(row.is_some_and(|(d,)| d != 0))
    }
}
