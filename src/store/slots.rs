//! Slot claims, holds and bookings: the database half of the booking
//! guarantee.
//!
//! `slot_claims` has one row per (owner, slot start) at most. A hold inserts
//! its claim with `INSERT … ON CONFLICT (owner_id, start_ms) DO UPDATE … WHERE
//! the existing claim is an expired hold`, so in one atomic statement it either
//! takes a free slot, takes over an expired hold, or gets nothing. On
//! PostgreSQL the conflicting row is locked and re-checked, so this holds with
//! any number of server processes; on SQLite writers are serialised. No timer
//! frees a hold: expiry is `expires_ms <= now` in every query.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::records::{opt_expose, UPSERT_CONTACT_ID};
use super::{from_ms, new_id, to_ms, NewContact, Store, StoreError};
use crate::pii::Pii;

/// The stored state of a hold. "Expired" is not stored: it is a `Held` hold
/// whose `expires_at` has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldStatus {
    /// Taken, live until `expires_at`.
    Held,
    /// Given back.
    Released,
    /// Turned into a booking.
    Confirmed,
}

impl HoldStatus {
    fn parse(s: &str) -> Result<HoldStatus, StoreError> {
        match s {
            "held" => Ok(HoldStatus::Held),
            "released" => Ok(HoldStatus::Released),
            "confirmed" => Ok(HoldStatus::Confirmed),
            _ => Err(StoreError::Corrupt {
                table: "holds",
                column: "status",
            }),
        }
    }
}

/// A stored hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRecord {
    /// Id (UUID text).
    pub id: String,
    /// Calendar owner.
    pub owner_id: String,
    /// Slot start (UTC).
    pub start: DateTime<Utc>,
    /// Slot end (UTC).
    pub end: DateTime<Utc>,
    /// The hold lapses at this instant.
    pub expires_at: DateTime<Utc>,
    /// Stored state.
    pub status: HoldStatus,
}

impl HoldRecord {
    /// Whether the hold still reserves its slot at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.status == HoldStatus::Held && self.expires_at > now
    }
}

#[derive(sqlx::FromRow)]
struct HoldRow {
    id: String,
    owner_id: String,
    start_ms: i64,
    end_ms: i64,
    expires_ms: i64,
    status: String,
}

impl HoldRow {
    fn into_record(self) -> Result<HoldRecord, StoreError> {
        Ok(HoldRecord {
            start: from_ms(self.start_ms, "holds", "start_ms")?,
            end: from_ms(self.end_ms, "holds", "end_ms")?,
            expires_at: from_ms(self.expires_ms, "holds", "expires_ms")?,
            status: HoldStatus::parse(&self.status)?,
            id: self.id,
            owner_id: self.owner_id,
        })
    }
}

/// The attendee details a booking is confirmed with.
#[derive(Debug, Clone)]
pub struct NewBooking {
    /// The contact, when the attendee is one.
    pub contact_id: Option<String>,
    /// Record the attendee as this contact (upserted by phone) in the same
    /// transaction as the booking, and link it; only if the booking is made.
    /// Takes precedence over `contact_id`.
    pub contact: Option<NewContact>,
    /// Name.
    pub name: Pii<String>,
    /// Email.
    pub email: Option<Pii<String>>,
    /// E.164 phone number.
    pub phone: Option<Pii<String>>,
    /// The attendee's IANA time zone.
    pub timezone: Option<String>,
}

/// A stored booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingRecord {
    /// Id (UUID text).
    pub id: String,
    /// The hold it came from.
    pub hold_id: Option<String>,
    /// Calendar owner.
    pub owner_id: String,
    /// Start (UTC).
    pub start: DateTime<Utc>,
    /// End (UTC).
    pub end: DateTime<Utc>,
    /// The attendee's contact.
    pub contact_id: Option<String>,
    /// Attendee name.
    pub attendee_name: Pii<String>,
    /// `confirmed` or `cancelled`.
    pub status: String,
}

#[derive(sqlx::FromRow)]
struct BookingRow {
    id: String,
    hold_id: Option<String>,
    owner_id: String,
    start_ms: i64,
    end_ms: i64,
    contact_id: Option<String>,
    attendee_name: String,
    status: String,
}

impl BookingRow {
    fn into_record(self) -> Result<BookingRecord, StoreError> {
        Ok(BookingRecord {
            start: from_ms(self.start_ms, "bookings", "start_ms")?,
            end: from_ms(self.end_ms, "bookings", "end_ms")?,
            id: self.id,
            hold_id: self.hold_id,
            owner_id: self.owner_id,
            contact_id: self.contact_id,
            attendee_name: Pii::new(self.attendee_name),
            status: self.status,
        })
    }
}

const BOOKING_COLUMNS: &str =
    "id, hold_id, owner_id, start_ms, end_ms, contact_id, attendee_name, status";

/// The outcome of trying to hold a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The slot is ours until `expires_at`.
    Held(HoldRecord),
    /// Someone holds or has booked it.
    Taken,
}

/// The outcome of confirming a hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmOutcome {
    /// Booked.
    Confirmed(BookingRecord),
    /// No such hold.
    NotFound,
    /// The hold lapsed before confirmation (its slot may be someone else's now).
    Expired,
    /// The hold was released.
    Released,
    /// The hold was already confirmed.
    AlreadyConfirmed,
}

/// The outcome of releasing a hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// Released now, or already released / expired (releasing is idempotent).
    Released,
    /// No such hold.
    NotFound,
    /// It became a booking; cancel the booking instead.
    AlreadyConfirmed,
}

/// The outcome of cancelling a booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// Cancelled now, or already cancelled (idempotent).
    Cancelled,
    /// No such booking.
    NotFound,
}

impl Store {
    /// Hold `owner`'s slot `[start, end)` until `expires_at`, unless a live
    /// hold or a booking claims it. Atomic across processes (see module doc).
    pub async fn claim_slot(
        &self,
        owner_id: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<ClaimOutcome, StoreError> {
        let hold_id = new_id();
        let claim = "INSERT INTO slot_claims (owner_id, start_ms, end_ms, hold_id, booking_id, expires_ms) \
             VALUES ($1, $2, $3, $4, NULL, $5) \
             ON CONFLICT (owner_id, start_ms) DO UPDATE SET \
               end_ms = excluded.end_ms, hold_id = excluded.hold_id, \
               booking_id = NULL, expires_ms = excluded.expires_ms \
             WHERE slot_claims.booking_id IS NULL AND slot_claims.expires_ms <= $6 \
             RETURNING hold_id";
        let insert_hold =
            "INSERT INTO holds (id, owner_id, start_ms, end_ms, expires_ms, status, created_ms) \
             VALUES ($1, $2, $3, $4, $5, 'held', $6)";
        let won = in_tx!(self, |tx| {
            let got: Option<(String,)> = sqlx::query_as(claim)
                .bind(owner_id)
                .bind(to_ms(start))
                .bind(to_ms(end))
                .bind(&hold_id)
                .bind(to_ms(expires_at))
                .bind(to_ms(now))
                .fetch_optional(&mut *tx)
                .await?;
            if got.is_some() {
                sqlx::query(insert_hold)
                    .bind(&hold_id)
                    .bind(owner_id)
                    .bind(to_ms(start))
                    .bind(to_ms(end))
                    .bind(to_ms(expires_at))
                    .bind(to_ms(now))
                    .execute(&mut *tx)
                    .await?;
            }
            got.is_some()
        });
        if !won {
            return Ok(ClaimOutcome::Taken);
        }
        Ok(ClaimOutcome::Held(HoldRecord {
            id: hold_id,
            owner_id: owner_id.to_string(),
            start,
            end,
            expires_at,
            status: HoldStatus::Held,
        }))
    }

    /// Release a hold: its slot is free again at once.
    pub async fn release_hold(&self, hold_id: &str) -> Result<ReleaseOutcome, StoreError> {
        let status: Option<(String,)> = in_tx!(self, |tx| {
            sqlx::query("DELETE FROM slot_claims WHERE hold_id = $1 AND booking_id IS NULL")
                .bind(hold_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE holds SET status = 'released' WHERE id = $1 AND status = 'held'")
                .bind(hold_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query_as("SELECT status FROM holds WHERE id = $1")
                .bind(hold_id)
                .fetch_optional(&mut *tx)
                .await?
        });
        Ok(match status.as_ref().map(|(s,)| s.as_str()) {
            None => ReleaseOutcome::NotFound,
            Some("confirmed") => ReleaseOutcome::AlreadyConfirmed,
            Some(_) => ReleaseOutcome::Released,
        })
    }

    /// Turn a live hold into a booking, in one transaction: the claim is kept
    /// (now carrying the booking, with no expiry) so the slot can never be held
    /// again until the booking is cancelled. The hold is checked first; the
    /// attendee's contact (`b.contact`) is written only once the claim is
    /// taken, in the same transaction, so a confirm that fails (missing,
    /// expired, released, already booked, or lost to a concurrent confirm)
    /// writes nothing.
    pub async fn confirm_hold(
        &self,
        hold_id: &str,
        b: &NewBooking,
        now: DateTime<Utc>,
    ) -> Result<ConfirmOutcome, StoreError> {
        let booking_id = new_id();
        let take = "UPDATE slot_claims SET booking_id = $2, expires_ms = NULL \
             WHERE hold_id = $1 AND booking_id IS NULL AND expires_ms > $3 \
             RETURNING owner_id, start_ms, end_ms";
        let insert = "INSERT INTO bookings (id, hold_id, owner_id, start_ms, end_ms, contact_id, attendee_name, \
             attendee_email, attendee_phone, attendee_timezone, status, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'confirmed', $11)";
        let select_booking = format!("SELECT {BOOKING_COLUMNS} FROM bookings WHERE id = $1");
        let outcome: Result<BookingRow, Option<String>> = in_tx!(self, |tx| {
            let claim: Option<(String, i64, i64)> = sqlx::query_as(take)
                .bind(hold_id)
                .bind(&booking_id)
                .bind(to_ms(now))
                .fetch_optional(&mut *tx)
                .await?;
            match claim {
                Some((owner_id, start_ms, end_ms)) => {
                    let contact_id = match &b.contact {
                        Some(c) => {
                            let (id,): (String,) = sqlx::query_as(UPSERT_CONTACT_ID)
                                .bind(new_id())
                                .bind(c.phone_e164.expose())
                                .bind(opt_expose(&c.name))
                                .bind(opt_expose(&c.email))
                                .bind(c.timezone.clone())
                                .bind(to_ms(now))
                                .fetch_one(&mut *tx)
                                .await?;
                            Some(id)
                        }
                        None => b.contact_id.clone(),
                    };
                    sqlx::query(insert)
                        .bind(&booking_id)
                        .bind(hold_id)
                        .bind(&owner_id)
                        .bind(start_ms)
                        .bind(end_ms)
                        .bind(contact_id)
                        .bind(b.name.expose())
                        .bind(b.email.as_ref().map(|e| e.expose().clone()))
                        .bind(b.phone.as_ref().map(|e| e.expose().clone()))
                        .bind(b.timezone.clone())
                        .bind(to_ms(now))
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("UPDATE holds SET status = 'confirmed' WHERE id = $1")
                        .bind(hold_id)
                        .execute(&mut *tx)
                        .await?;
                    let row: BookingRow = sqlx::query_as(&select_booking)
                        .bind(&booking_id)
                        .fetch_one(&mut *tx)
                        .await?;
                    Ok(row)
                }
                None => {
                    let status: Option<(String,)> =
                        sqlx::query_as("SELECT status FROM holds WHERE id = $1")
                            .bind(hold_id)
                            .fetch_optional(&mut *tx)
                            .await?;
                    Err(status.map(|(s,)| s))
                }
            }
        });
        Ok(match outcome {
            Ok(row) => ConfirmOutcome::Confirmed(row.into_record()?),
            Err(None) => ConfirmOutcome::NotFound,
            Err(Some(s)) => match s.as_str() {
                "released" => ConfirmOutcome::Released,
                "confirmed" => ConfirmOutcome::AlreadyConfirmed,
                // Still `held` but its claim is gone or lapsed: expired.
                _ => ConfirmOutcome::Expired,
            },
        })
    }

    /// Cancel a booking and free its slot.
    pub async fn cancel_booking(
        &self,
        booking_id: &str,
        now: DateTime<Utc>,
    ) -> Result<CancelOutcome, StoreError> {
        let exists: Option<(String,)> = in_tx!(self, |tx| {
            sqlx::query(
                "UPDATE bookings SET status = 'cancelled', cancelled_ms = $2 \
                 WHERE id = $1 AND status = 'confirmed'",
            )
            .bind(booking_id)
            .bind(to_ms(now))
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM slot_claims WHERE booking_id = $1")
                .bind(booking_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query_as("SELECT status FROM bookings WHERE id = $1")
                .bind(booking_id)
                .fetch_optional(&mut *tx)
                .await?
        });
        Ok(match exists {
            None => CancelOutcome::NotFound,
            Some(_) => CancelOutcome::Cancelled,
        })
    }

    /// Starts of `owner`'s slots in `[from, to)` that are claimed at `now`
    /// (booked, or held and not yet expired).
    pub async fn claimed_starts(
        &self,
        owner_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, StoreError> {
        let rows: Vec<(i64,)> = on_pool!(self, |p| {
            sqlx::query_as(
                "SELECT start_ms FROM slot_claims \
                 WHERE owner_id = $1 AND start_ms >= $2 AND start_ms < $3 \
                   AND (booking_id IS NOT NULL OR expires_ms > $4) \
                 ORDER BY start_ms",
            )
            .bind(owner_id)
            .bind(to_ms(from))
            .bind(to_ms(to))
            .bind(to_ms(now))
            .fetch_all(p)
            .await?
        });
        rows.into_iter()
            .map(|(ms,)| from_ms(ms, "slot_claims", "start_ms"))
            .collect()
    }

    /// Delete claims of holds that expired before `now`. Purely housekeeping:
    /// an expired claim already counts as free in every query.
    pub async fn sweep_expired_claims(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let n = on_pool!(self, |p| {
            sqlx::query("DELETE FROM slot_claims WHERE booking_id IS NULL AND expires_ms <= $1")
                .bind(to_ms(now))
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(n)
    }

    /// A hold by id.
    pub async fn hold(&self, hold_id: &str) -> Result<Option<HoldRecord>, StoreError> {
        let row: Option<HoldRow> = on_pool!(self, |p| {
            sqlx::query_as(
                "SELECT id, owner_id, start_ms, end_ms, expires_ms, status FROM holds WHERE id = $1",
            )
            .bind(hold_id)
            .fetch_optional(p)
            .await?
        });
        row.map(HoldRow::into_record).transpose()
    }

    /// A booking by id.
    pub async fn booking(&self, booking_id: &str) -> Result<Option<BookingRecord>, StoreError> {
        let sql = format!("SELECT {BOOKING_COLUMNS} FROM bookings WHERE id = $1");
        let row: Option<BookingRow> = on_pool!(self, |p| sqlx::query_as(&sql)
            .bind(booking_id)
            .fetch_optional(p)
            .await?);
        row.map(BookingRow::into_record).transpose()
    }

    /// Bookings of one owner in `[from, to)`, confirmed ones only.
    pub async fn bookings_between(
        &self,
        owner_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<BookingRecord>, StoreError> {
        let sql = format!(
            "SELECT {BOOKING_COLUMNS} FROM bookings \
             WHERE owner_id = $1 AND start_ms >= $2 AND start_ms < $3 AND status = 'confirmed' \
             ORDER BY start_ms"
        );
        let rows: Vec<BookingRow> = on_pool!(self, |p| {
            sqlx::query_as(&sql)
                .bind(owner_id)
                .bind(to_ms(from))
                .bind(to_ms(to))
                .fetch_all(p)
                .await?
        });
        rows.into_iter().map(BookingRow::into_record).collect()
    }
}
