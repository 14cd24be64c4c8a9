//! The local calendar: owners and hours from config, holds and bookings in the
//! store. The store's `slot_claims` table is what makes a slot single-use
//! across processes; this type only decides which instants are slots.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::schedule::{next_business_day, slot_at, slots_between, spoken, window_end};
use super::{
    Attendee, Booking, BookingError, CalendarConfig, Clock, Hold, Owner, OwnerInfo, Rules, Slot,
    SlotKey,
};
use crate::config_error::ConfigError;
use crate::store::{
    CancelOutcome, ClaimOutcome, ConfirmOutcome, NewBooking, NewContact, ReleaseOutcome, Store,
};

/// Longest hold a caller may ask for.
pub const MAX_HOLD: Duration = Duration::from_secs(3600);

/// Calendar kept in the frontdesk database.
#[derive(Debug, Clone)]
pub struct LocalCalendar {
    store: Store,
    owners: Arc<Vec<Owner>>,
    rules: Rules,
    clock: Arc<dyn Clock>,
}

impl LocalCalendar {
    /// Build from `[calendar]`.
    pub fn new(
        store: Store,
        cfg: &CalendarConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<LocalCalendar, ConfigError> {
        Ok(LocalCalendar {
            store,
            owners: Arc::new(cfg.parse_owners()?),
            rules: cfg.rules(),
            clock,
        })
    }

    fn owner(&self, id: &str) -> Result<&Owner, BookingError> {
        self.owners
            .iter()
            .find(|o| o.id == id)
            .ok_or_else(|| BookingError::UnknownOwner(id.to_string()))
    }
}

/// Check a requested window length.
pub(crate) fn check_days(days: u32) -> Result<(), BookingError> {
    if days == 0 || days > 366 {
        return Err(BookingError::Invalid {
            field: "days",
            message: format!("{days} is out of range; allowed 1–366"),
        });
    }
    Ok(())
}

/// Check a requested hold time.
pub(crate) fn check_ttl(ttl: Duration) -> Result<(), BookingError> {
    if ttl < Duration::from_secs(1) || ttl > MAX_HOLD {
        return Err(BookingError::Invalid {
            field: "ttl_s",
            message: "must be 1–3600 seconds".into(),
        });
    }
    Ok(())
}

#[async_trait]
impl super::Calendar for LocalCalendar {
    fn owners(&self) -> Vec<OwnerInfo> {
        self.owners.iter().map(Owner::info).collect()
    }

    async fn available_slots(
        &self,
        owner: &str,
        from: Option<DateTime<Utc>>,
        days: u32,
        tz: Tz,
    ) -> Result<Vec<Slot>, BookingError> {
        check_days(days)?;
        let now = self.clock.now();
        let o = self.owner(owner)?;
        let start = from.unwrap_or_else(|| next_business_day(o, now));
        let end = window_end(start, days, o.tz).min(now + self.rules.horizon);
        let lo = start.max(now + self.rules.min_notice);
        if lo >= end {
            return Ok(Vec::new());
        }
        let claimed = self.store.claimed_starts(&o.id, lo, end, now).await?;
        Ok(slots_between(o, &self.rules, lo, end)
            .into_iter()
            .filter(|(s, _)| claimed.binary_search(s).is_err())
            .map(|(s, e)| Slot {
                owner: o.id.clone(),
                owner_name: o.name.clone(),
                start: s,
                end: e,
                local_start: s.with_timezone(&tz).to_rfc3339(),
                timezone: tz.name().to_string(),
                spoken: spoken(s, tz, o.tz, now),
            })
            .collect())
    }

    async fn hold(&self, slot: &SlotKey, ttl: Duration) -> Result<Hold, BookingError> {
        check_ttl(ttl)?;
        let now = self.clock.now();
        let o = self.owner(&slot.owner)?;
        let end = slot_at(o, &self.rules, slot.start).ok_or(BookingError::NotASlot)?;
        if slot.start < now + self.rules.min_notice || slot.start >= now + self.rules.horizon {
            return Err(BookingError::Unavailable);
        }
        // ttl ≤ 1 h (checked above), so the conversion cannot overflow.
        let expires = now + chrono::Duration::milliseconds(ttl.as_millis() as i64);
        match self
            .store
            .claim_slot(&o.id, slot.start, end, expires, now)
            .await?
        {
            ClaimOutcome::Held(h) => Ok(Hold {
                id: h.id,
                owner: h.owner_id,
                start: h.start,
                end: h.end,
                expires_at: h.expires_at,
            }),
            ClaimOutcome::Taken => Err(BookingError::Taken),
        }
    }

    async fn release(&self, hold_id: &str) -> Result<(), BookingError> {
        match self.store.release_hold(hold_id).await? {
            ReleaseOutcome::Released => Ok(()),
            ReleaseOutcome::NotFound => Err(BookingError::HoldNotFound),
            ReleaseOutcome::AlreadyConfirmed => Err(BookingError::AlreadyConfirmed),
        }
    }

    async fn confirm(&self, hold_id: &str, attendee: &Attendee) -> Result<Booking, BookingError> {
        self.book(hold_id, attendee, None).await
    }

    async fn confirm_with_contact(
        &self,
        hold_id: &str,
        attendee: &Attendee,
        contact: &NewContact,
    ) -> Result<(Booking, bool), BookingError> {
        // The store upserts the contact in the booking's own transaction,
        // after the hold has been checked and claimed.
        Ok((self.book(hold_id, attendee, Some(contact)).await?, true))
    }

    async fn cancel(&self, booking_id: &str) -> Result<(), BookingError> {
        match self
            .store
            .cancel_booking(booking_id, self.clock.now())
            .await?
        {
            CancelOutcome::Cancelled => Ok(()),
            CancelOutcome::NotFound => Err(BookingError::BookingNotFound),
        }
    }
}

impl LocalCalendar {
    /// Confirm `hold_id` for `attendee`, writing `contact` with the booking.
    async fn book(
        &self,
        hold_id: &str,
        attendee: &Attendee,
        contact: Option<&NewContact>,
    ) -> Result<Booking, BookingError> {
        let now = self.clock.now();
        let b = NewBooking {
            contact_id: attendee.contact_id.clone(),
            contact: contact.cloned(),
            name: attendee.name.clone(),
            email: attendee.email.clone(),
            phone: attendee.phone.as_ref().map(|p| p.to_pii()),
            timezone: attendee.timezone.map(|t| t.name().to_string()),
        };
        match self.store.confirm_hold(hold_id, &b, now).await? {
            ConfirmOutcome::Confirmed(r) => Ok(Booking {
                id: r.id,
                owner: r.owner_id,
                start: r.start,
                end: r.end,
                status: r.status,
            }),
            ConfirmOutcome::NotFound => Err(BookingError::HoldNotFound),
            ConfirmOutcome::Expired => Err(BookingError::HoldExpired),
            ConfirmOutcome::Released => Err(BookingError::HoldReleased),
            ConfirmOutcome::AlreadyConfirmed => Err(BookingError::AlreadyConfirmed),
        }
    }
}
