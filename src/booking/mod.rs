//! Calendar booking with hold/release: the [`Calendar`] trait, a local calendar
//! kept in the store ([`LocalCalendar`]) and Cal.com v2 ([`CalcomCalendar`]).
//!
//! This module owns which times are bookable (owners, working hours, slot
//! length, buffer, notice, horizon), the hold → confirm | release lifecycle,
//! and how a slot is spoken to a caller ([`schedule::spoken`]). The guarantee
//! that one slot is never held or booked twice lives in the database
//! ([`crate::store`] `slot_claims`), never in process memory, so it holds across
//! server nodes. Holds expire by timestamp comparison; no timer runs for them.
//!
//! It must not read the wall clock directly (`now` comes from a [`Clock`]),
//! must not log names, phone numbers or emails unmasked, and must not decide
//! *whether* to book (that is the brain's job): it only books what it is asked.

pub mod calcom;
mod local;
pub mod schedule;

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

pub use calcom::CalcomCalendar;
pub use local::LocalCalendar;

use crate::clock::{Clock, Sleeper};
use crate::config_error::ConfigError;
use crate::phone::E164;
use crate::pii::Pii;
use crate::store::StoreError;

/// `[calendar]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalendarConfig {
    /// Where bookings live: `local` (the store, default) or `calcom`.
    pub provider: CalendarProvider,
    /// Slot length in minutes (default 30, 5–480).
    pub slot_minutes: u32,
    /// Minutes left free after each slot (default 0, 0–240).
    pub buffer_minutes: u32,
    /// No slot starts sooner than this many minutes from now (default 120, 0–43200).
    pub min_notice_minutes: u32,
    /// No slot starts later than this many days from now (default 60, 1–365).
    pub horizon_days: u32,
    /// Seconds a hold lasts when the caller gives no TTL (default 90, 5–3600).
    pub hold_ttl_s: u32,
    /// `[calendar.calcom]`: used when `provider = "calcom"`.
    pub calcom: calcom::CalcomConfig,
    /// `[[calendar.owners]]`: the people who can be booked. Default: the demo
    /// business's two owners, `alex` and `sam`, in Europe/London.
    pub owners: Vec<OwnerConfig>,
}

/// Which calendar implementation to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CalendarProvider {
    /// Holds and bookings in the frontdesk database.
    #[default]
    Local,
    /// Cal.com API v2 (`CALCOM_API_KEY`).
    Calcom,
}

/// `[[calendar.owners]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OwnerConfig {
    /// Stable id used in the API (`alex`; letters, digits, `-`, `_`; required).
    pub id: String,
    /// Name said to callers (default: the id).
    pub name: String,
    /// IANA time zone of the owner's working hours (default `Europe/London`).
    pub timezone: String,
    /// Working hours per weekday, in the owner's zone.
    pub hours: WeekHours,
    /// Cal.com event type booked for this owner (required with `provider = "calcom"`).
    pub calcom_event_type_id: Option<i64>,
}

impl Default for OwnerConfig {
    fn default() -> Self {
        OwnerConfig {
            id: String::new(),
            name: String::new(),
            timezone: "Europe/London".into(),
            hours: WeekHours::default(),
            calcom_event_type_id: None,
        }
    }
}

/// Working hours per weekday: each a list of `"HH:MM-HH:MM"` ranges in the
/// owner's time zone (default: none, i.e. not working that day).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WeekHours {
    /// Monday.
    pub mon: Vec<String>,
    /// Tuesday.
    pub tue: Vec<String>,
    /// Wednesday.
    pub wed: Vec<String>,
    /// Thursday.
    pub thu: Vec<String>,
    /// Friday.
    pub fri: Vec<String>,
    /// Saturday.
    pub sat: Vec<String>,
    /// Sunday.
    pub sun: Vec<String>,
}

impl WeekHours {
    fn days(&self) -> [(&'static str, &Vec<String>); 7] {
        [
            ("mon", &self.mon),
            ("tue", &self.tue),
            ("wed", &self.wed),
            ("thu", &self.thu),
            ("fri", &self.fri),
            ("sat", &self.sat),
            ("sun", &self.sun),
        ]
    }

    /// Same ranges Monday to Friday.
    pub fn weekdays(range: &str) -> WeekHours {
        let r = vec![range.to_string()];
        WeekHours {
            mon: r.clone(),
            tue: r.clone(),
            wed: r.clone(),
            thu: r.clone(),
            fri: r,
            ..WeekHours::default()
        }
    }
}

impl Default for CalendarConfig {
    fn default() -> Self {
        let mut sam_hours = WeekHours::weekdays("10:00-12:30");
        for day in [&mut sam_hours.mon, &mut sam_hours.tue, &mut sam_hours.thu] {
            day.push("13:30-18:00".into());
        }
        CalendarConfig {
            provider: CalendarProvider::Local,
            slot_minutes: 30,
            buffer_minutes: 0,
            min_notice_minutes: 120,
            horizon_days: 60,
            hold_ttl_s: 90,
            calcom: calcom::CalcomConfig::default(),
            owners: vec![
                OwnerConfig {
                    id: "alex".into(),
                    name: "Alex Morgan".into(),
                    timezone: "Europe/London".into(),
                    hours: WeekHours::weekdays("09:00-17:00"),
                    calcom_event_type_id: None,
                },
                OwnerConfig {
                    id: "sam".into(),
                    name: "Sam Patel".into(),
                    timezone: "Europe/London".into(),
                    hours: sam_hours,
                    calcom_event_type_id: None,
                },
            ],
        }
    }
}

/// A calendar owner with parsed zone and hours.
#[derive(Debug, Clone)]
pub struct Owner {
    /// Id.
    pub id: String,
    /// Spoken name.
    pub name: String,
    /// Time zone of the working hours.
    pub tz: Tz,
    /// Working ranges per weekday (index 0 = Monday), minutes since local midnight.
    pub week: [Vec<(u32, u32)>; 7],
    /// Cal.com event type.
    pub calcom_event_type_id: Option<i64>,
}

impl Owner {
    /// What the API and the brain show of this owner.
    pub fn info(&self) -> OwnerInfo {
        OwnerInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            timezone: self.tz.name().to_string(),
        }
    }
}

/// Slot arithmetic rules, parsed from [`CalendarConfig`].
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Slot length.
    pub slot: chrono::Duration,
    /// Distance between consecutive slot starts (slot + buffer).
    pub step: chrono::Duration,
    /// Minimum notice.
    pub min_notice: chrono::Duration,
    /// Booking horizon.
    pub horizon: chrono::Duration,
    /// Default hold time.
    pub hold_ttl: Duration,
}

fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

/// Parse `"09:00-17:30"` into minutes since midnight.
pub fn parse_range(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once('-')?;
    let (a, b) = (parse_hhmm(a)?, parse_hhmm(b)?);
    (a < b).then_some((a, b))
}

impl CalendarConfig {
    /// Range and format checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ranges: [(&str, u32, u32, u32); 5] = [
            ("calendar.slot_minutes", self.slot_minutes, 5, 480),
            ("calendar.buffer_minutes", self.buffer_minutes, 0, 240),
            (
                "calendar.min_notice_minutes",
                self.min_notice_minutes,
                0,
                43_200,
            ),
            ("calendar.horizon_days", self.horizon_days, 1, 365),
            ("calendar.hold_ttl_s", self.hold_ttl_s, 5, 3600),
        ];
        for (key, v, lo, hi) in ranges {
            if v < lo || v > hi {
                return Err(ConfigError::invalid(
                    key,
                    format!("{v} is out of range; allowed {lo}–{hi}"),
                ));
            }
        }
        self.calcom.validate()?;
        self.parse_owners().map(|_| ())
    }

    /// The slot rules.
    pub fn rules(&self) -> Rules {
        Rules {
            slot: chrono::Duration::minutes(i64::from(self.slot_minutes)),
            step: chrono::Duration::minutes(i64::from(self.slot_minutes + self.buffer_minutes)),
            min_notice: chrono::Duration::minutes(i64::from(self.min_notice_minutes)),
            horizon: chrono::Duration::days(i64::from(self.horizon_days)),
            hold_ttl: Duration::from_secs(u64::from(self.hold_ttl_s)),
        }
    }

    /// Owners with parsed zones and hours; errors name the key.
    pub fn parse_owners(&self) -> Result<Vec<Owner>, ConfigError> {
        if self.owners.is_empty() {
            return Err(ConfigError::invalid(
                "calendar.owners",
                "needs at least one owner",
            ));
        }
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(self.owners.len());
        for (i, o) in self.owners.iter().enumerate() {
            let key = |k: &str| format!("calendar.owners[{i}].{k}");
            if o.id.is_empty()
                || o.id.len() > 64
                || !o
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(ConfigError::invalid(
                    key("id"),
                    "needs 1–64 letters, digits, `-` or `_`",
                ));
            }
            if !seen.insert(o.id.clone()) {
                return Err(ConfigError::invalid(
                    key("id"),
                    format!("`{}` is used by an earlier owner", o.id),
                ));
            }
            let tz: Tz = o.timezone.parse().map_err(|_| {
                ConfigError::invalid(
                    key("timezone"),
                    format!("`{}` is not an IANA time zone", o.timezone),
                )
            })?;
            let mut week: [Vec<(u32, u32)>; 7] = Default::default();
            for (d, (name, ranges)) in o.hours.days().into_iter().enumerate() {
                for (j, r) in ranges.iter().enumerate() {
                    let parsed = parse_range(r).ok_or_else(|| {
                        ConfigError::invalid(
                            format!("calendar.owners[{i}].hours.{name}[{j}]"),
                            format!("`{r}` is not a range like \"09:00-17:00\" (start before end)"),
                        )
                    })?;
                    if week[d].iter().any(|&(a, b)| parsed.0 < b && a < parsed.1) {
                        return Err(ConfigError::invalid(
                            format!("calendar.owners[{i}].hours.{name}[{j}]"),
                            format!("`{r}` overlaps an earlier range of the same day"),
                        ));
                    }
                    week[d].push(parsed);
                }
                week[d].sort_unstable();
            }
            if self.provider == CalendarProvider::Calcom && o.calcom_event_type_id.is_none() {
                return Err(ConfigError::invalid(
                    key("calcom_event_type_id"),
                    "required when calendar.provider = \"calcom\"",
                ));
            }
            out.push(Owner {
                id: o.id.clone(),
                name: if o.name.is_empty() {
                    o.id.clone()
                } else {
                    o.name.clone()
                },
                tz,
                week,
                calcom_event_type_id: o.calcom_event_type_id,
            });
        }
        Ok(out)
    }
}

/// An owner as the API lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OwnerInfo {
    /// Id.
    pub id: String,
    /// Spoken name.
    pub name: String,
    /// IANA zone.
    pub timezone: String,
}

/// Which slot: an owner and a start instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotKey {
    /// Owner id.
    pub owner: String,
    /// Start (UTC).
    pub start: DateTime<Utc>,
}

/// A free slot offered to a caller.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Slot {
    /// Owner id.
    pub owner: String,
    /// Owner's spoken name.
    pub owner_name: String,
    /// Start (UTC).
    pub start: DateTime<Utc>,
    /// End (UTC).
    pub end: DateTime<Utc>,
    /// Start in the caller's zone (RFC 3339 with offset).
    pub local_start: String,
    /// The caller's zone the slot was rendered in.
    pub timezone: String,
    /// What the receptionist says ("Tuesday at 10:30 am").
    pub spoken: String,
}

/// A held slot.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Hold {
    /// Hold id (a Cal.com reservation uid for Cal.com).
    pub id: String,
    /// Owner id.
    pub owner: String,
    /// Start (UTC).
    pub start: DateTime<Utc>,
    /// End (UTC).
    pub end: DateTime<Utc>,
    /// The hold lapses at this instant unless confirmed.
    pub expires_at: DateTime<Utc>,
}

/// Who is being booked.
#[derive(Debug, Clone)]
pub struct Attendee {
    /// Name.
    pub name: Pii<String>,
    /// Email.
    pub email: Option<Pii<String>>,
    /// Phone.
    pub phone: Option<E164>,
    /// The attendee's zone (confirmation times are rendered in it).
    pub timezone: Option<Tz>,
    /// The local contact, when known.
    pub contact_id: Option<String>,
}

/// A confirmed booking.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Booking {
    /// Booking id (a Cal.com booking uid for Cal.com).
    pub id: String,
    /// Owner id.
    pub owner: String,
    /// Start (UTC).
    pub start: DateTime<Utc>,
    /// End (UTC).
    pub end: DateTime<Utc>,
    /// `confirmed` (local) or Cal.com's status (`accepted`, `pending`).
    pub status: String,
}

/// Why a calendar operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BookingError {
    /// No owner with this id.
    #[error("unknown calendar owner `{0}`")]
    UnknownOwner(String),
    /// The start is not a slot of the owner's schedule (off-grid, outside hours).
    #[error("not a slot start of this owner")]
    NotASlot,
    /// The slot is in the past, inside the minimum notice, or past the horizon.
    #[error("slot is no longer offered (notice or horizon)")]
    Unavailable,
    /// Someone else holds or has booked the slot.
    #[error("slot is taken")]
    Taken,
    /// No such hold.
    #[error("no such hold")]
    HoldNotFound,
    /// The hold expired before it was confirmed.
    #[error("hold expired")]
    HoldExpired,
    /// The hold was released.
    #[error("hold was released")]
    HoldReleased,
    /// The hold was already turned into a booking.
    #[error("hold already confirmed")]
    AlreadyConfirmed,
    /// No such booking.
    #[error("no such booking")]
    BookingNotFound,
    /// A bad argument (`field`: what is wrong).
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The argument.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The remote calendar refused or failed. `transient` says whether a retry
    /// may succeed (timeouts, 5xx, 429) or not (auth, bad request).
    #[error("calendar provider error (status {status:?}, {code}): {message}")]
    Remote {
        /// HTTP status, if a response came.
        status: Option<u16>,
        /// Provider error code (`BadRequestException`) or `network`.
        code: String,
        /// Provider message.
        message: String,
        /// Worth retrying later.
        transient: bool,
    },
    /// Still rate-limited after the allowed retries.
    #[error("calendar provider rate limit")]
    RateLimited {
        /// The wait the provider asked for.
        retry_after: Option<Duration>,
    },
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A calendar: slots, holds with a time to live, bookings.
///
/// Every implementation guarantees that a slot held or booked by one caller
/// cannot be held by another until the hold is released or expires, or the
/// booking is cancelled, and that an expired hold cannot be confirmed.
#[async_trait]
pub trait Calendar: Send + Sync + std::fmt::Debug {
    /// The bookable owners.
    fn owners(&self) -> Vec<OwnerInfo>;

    /// Free slots of `owner` from `from` (default: the start of the owner's
    /// next business day) for `days` days, rendered in the caller's zone `tz`.
    async fn available_slots(
        &self,
        owner: &str,
        from: Option<DateTime<Utc>>,
        days: u32,
        tz: Tz,
    ) -> Result<Vec<Slot>, BookingError>;

    /// Hold a slot for `ttl`. [`BookingError::Taken`] when someone else has it.
    async fn hold(&self, slot: &SlotKey, ttl: Duration) -> Result<Hold, BookingError>;

    /// Give a hold back (idempotent for a hold that is released or expired).
    async fn release(&self, hold_id: &str) -> Result<(), BookingError>;

    /// Book a held slot for `attendee`. [`BookingError::HoldExpired`] when the
    /// hold lapsed first.
    async fn confirm(&self, hold_id: &str, attendee: &Attendee) -> Result<Booking, BookingError>;

    /// [`Calendar::confirm`], recording the attendee as the local contact
    /// `contact` only if the booking is made: nothing is written when the
    /// hold is missing, expired, released, booked, or lost to a concurrent
    /// confirm. Returns whether the calendar wrote the contact itself (the
    /// local calendar does, in the booking's transaction); on `false` the
    /// caller writes it, now that the booking exists.
    async fn confirm_with_contact(
        &self,
        hold_id: &str,
        attendee: &Attendee,
        contact: &crate::store::NewContact,
    ) -> Result<(Booking, bool), BookingError> {
        let _ = contact;
        Ok((self.confirm(hold_id, attendee).await?, false))
    }

    /// Cancel a booking; its slot becomes free.
    async fn cancel(&self, booking_id: &str) -> Result<(), BookingError>;
}

/// Midnight-anchored local time helper: minutes since midnight → `NaiveTime`.
pub(crate) fn minutes_to_time(m: u32) -> Option<NaiveTime> {
    NaiveTime::from_hms_opt(m / 60, m % 60, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_business_has_two_owners_with_hours() {
        let cfg = CalendarConfig::default();
        cfg.validate().unwrap();
        let owners = cfg.parse_owners().unwrap();
        assert!(owners.len() >= 2);
        assert!(owners.iter().all(|o| o.week.iter().any(|d| !d.is_empty())));
    }

    #[test]
    fn bad_hours_name_the_key() {
        let mut cfg = CalendarConfig::default();
        cfg.owners[1].hours.wed = vec!["17:00-09:00".into()];
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("calendar.owners[1].hours.wed[0]"), "{e}");
        let mut cfg = CalendarConfig::default();
        cfg.owners[0].timezone = "Mars/Base".into();
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("calendar.owners[0].timezone"), "{e}");
        let mut cfg = CalendarConfig::default();
        cfg.owners[1].id = "alex".into();
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("calendar.owners[1].id"));
        let mut cfg = CalendarConfig::default();
        cfg.owners[0].hours.mon = vec!["09:00-12:00".into(), "11:00-13:00".into()];
        assert!(cfg.validate().unwrap_err().to_string().contains("overlaps"));
        let cfg = CalendarConfig {
            provider: CalendarProvider::Calcom,
            ..CalendarConfig::default()
        };
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("calcom_event_type_id"));
    }

    #[test]
    fn ranges_parse() {
        assert_eq!(parse_range("09:00-17:30"), Some((540, 1050)));
        assert_eq!(parse_range("00:00-24:00"), Some((0, 1440)));
        assert_eq!(parse_range("9-17"), None);
        assert_eq!(parse_range("10:00-10:00"), None);
        assert_eq!(parse_range("10:61-11:00"), None);
    }

    #[test]
    fn calendar_config_from_toml() {
        let cfg = crate::config::Config::from_toml(
            r#"
            [calendar]
            slot_minutes = 45
            [[calendar.owners]]
            id = "dr-lee"
            name = "Dr Lee"
            timezone = "America/New_York"
            hours = { mon = ["08:00-12:00", "13:00-16:00"], sat = ["10:00-12:00"] }
            "#,
        )
        .unwrap();
        let owners = cfg.calendar.parse_owners().unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].week[0], vec![(480, 720), (780, 960)]);
        assert_eq!(owners[0].week[5], vec![(600, 720)]);
        let e = crate::config::Config::from_toml("[[calendar.owners]]\nid = \"x\"\nhourz = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("hourz"), "{e}");
    }
}
