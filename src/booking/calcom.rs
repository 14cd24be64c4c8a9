//! Cal.com API v2 as a [`Calendar`](super::Calendar).
//!
//! Slots come from `GET /v2/slots`, holds are reservations (`POST
//! /v2/slots/reservations`, 5 minutes by Cal.com's default), release is
//! `DELETE /v2/slots/reservations/{uid}`, confirm books (`POST /v2/bookings`)
//! and then deletes the reservation (booking does not use it up), cancel is
//! `POST /v2/bookings/{uid}/cancel`. Each endpoint family gets its own
//! `cal-api-version`; without it Cal.com silently answers in legacy shapes.
//!
//! Cal.com, not this process, guarantees a slot is reserved once (422 for the
//! second caller). A 429 is retried after `Retry-After`; POSTs are never
//! retried after a 5xx or a timeout, since the first attempt may have landed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::local::{check_days, check_ttl};
use super::schedule::{next_business_day, spoken, window_end};
use super::{
    Attendee, Booking, BookingError, CalendarConfig, Clock, Hold, Owner, OwnerInfo, Rules, Sleeper,
    Slot, SlotKey,
};
use crate::config_error::ConfigError;
use crate::pii::Secret;
use crate::retry::{backoff, retry_after};

/// `cal-api-version` of the slots and reservations endpoints.
pub const SLOTS_API_VERSION: &str = "2024-09-04";
/// `cal-api-version` of the bookings endpoints.
pub const BOOKINGS_API_VERSION: &str = "2024-08-13";
/// The environment variable holding the API key.
pub const API_KEY_ENV: &str = "CALCOM_API_KEY";

/// `[calendar.calcom]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalcomConfig {
    /// API base URL (default `https://api.cal.com`).
    pub base_url: String,
    /// Send each hold's TTL (rounded up to whole minutes) as
    /// `reservationDuration`. Cal.com allows that only for the event's owner
    /// or team members (default false: Cal.com's 5-minute default applies).
    pub send_reservation_duration: bool,
    /// Per-request timeout in milliseconds (default 10000, 100–120000).
    pub timeout_ms: u64,
    /// Retries after a 429 (and, for GET/DELETE, a 5xx or network error)
    /// (default 2, 0–10).
    pub max_retries: u32,
    /// Longest wait between retries in milliseconds, whatever `Retry-After`
    /// says (default 30000, 0–600000).
    pub max_backoff_ms: u64,
}

impl Default for CalcomConfig {
    fn default() -> Self {
        CalcomConfig {
            base_url: "https://api.cal.com".into(),
            send_reservation_duration: false,
            timeout_ms: 10_000,
            max_retries: 2,
            max_backoff_ms: 30_000,
        }
    }
}

impl CalcomConfig {
    /// Range and format checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::config_error::check_http_client(
            "calendar.calcom",
            &self.base_url,
            self.timeout_ms,
            self.max_retries,
            self.max_backoff_ms,
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HoldState {
    Held,
    Released,
    Confirmed,
}

#[derive(Debug, Clone)]
struct KnownHold {
    owner: String,
    event_type_id: i64,
    start: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    state: HoldState,
}

/// Cal.com v2 client.
#[derive(Debug, Clone)]
pub struct CalcomCalendar {
    http: reqwest::Client,
    cfg: CalcomConfig,
    key: Secret<String>,
    owners: Arc<Vec<Owner>>,
    rules: Rules,
    clock: Arc<dyn Clock>,
    sleeper: Arc<dyn Sleeper>,
    /// Holds this process made: lets confirm/release answer "expired" or
    /// "released" precisely. Another node falls back to `GET` the reservation.
    holds: Arc<Mutex<HashMap<String, KnownHold>>>,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: Option<ErrorBody>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: Option<String>,
    message: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reservation {
    reservation_uid: Option<String>,
    event_type_id: Option<i64>,
    slot_start: String,
    slot_end: Option<String>,
    reservation_until: Option<String>,
}

#[derive(Deserialize)]
struct BookingData {
    uid: String,
    start: String,
    end: Option<String>,
    status: Option<String>,
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, BookingError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| remote_shape(format!("unparsable time `{s}`")))
}

fn remote_shape(message: String) -> BookingError {
    BookingError::Remote {
        status: None,
        code: "bad_response".into(),
        message,
        transient: false,
    }
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A Cal.com error response as a [`BookingError::Remote`].
fn remote_error(status: StatusCode, body: &Value) -> BookingError {
    let env: Option<ErrorEnvelope> = serde_json::from_value(body.clone()).ok();
    let (code, message) = match env {
        Some(ErrorEnvelope { error: Some(e), .. }) => (
            e.code.unwrap_or_default(),
            match e.message {
                Some(Value::String(s)) => s,
                Some(v) => v.to_string(),
                None => String::new(),
            },
        ),
        Some(ErrorEnvelope {
            message: Some(m), ..
        }) => (String::new(), m),
        _ => (String::new(), body.to_string()),
    };
    BookingError::Remote {
        status: Some(status.as_u16()),
        code,
        message: message.chars().take(500).collect(),
        transient: status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS,
    }
}

impl CalcomCalendar {
    /// Build from `[calendar]` (owners need `calcom_event_type_id`).
    pub fn new(
        cal: &CalendarConfig,
        key: Secret<String>,
        clock: Arc<dyn Clock>,
        sleeper: Arc<dyn Sleeper>,
    ) -> Result<CalcomCalendar, ConfigError> {
        cal.calcom.validate()?;
        let owners = cal.parse_owners()?;
        if let Some(i) = owners.iter().position(|o| o.calcom_event_type_id.is_none()) {
            return Err(ConfigError::invalid(
                format!("calendar.owners[{i}].calcom_event_type_id"),
                "required for the Cal.com calendar",
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(cal.calcom.timeout_ms))
            .build()
            .map_err(|e| ConfigError::invalid("calendar.calcom", e.to_string()))?;
        Ok(CalcomCalendar {
            http,
            cfg: cal.calcom.clone(),
            key,
            owners: Arc::new(owners),
            rules: cal.rules(),
            clock,
            sleeper,
            holds: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    fn owner(&self, id: &str) -> Result<(&Owner, i64), BookingError> {
        self.owners
            .iter()
            .find(|o| o.id == id)
            .and_then(|o| o.calcom_event_type_id.map(|e| (o, e)))
            .ok_or_else(|| BookingError::UnknownOwner(id.to_string()))
    }

    fn known(&self, uid: &str) -> Option<KnownHold> {
        self.holds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uid)
            .cloned()
    }

    fn set_state(&self, uid: &str, state: HoldState) {
        if let Some(h) = self
            .holds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(uid)
        {
            h.state = state;
        }
    }

    /// One API call with the retry policy of the module doc. Returns the
    /// status and the JSON body (`Null` when empty or not JSON).
    async fn call(
        &self,
        method: Method,
        path: &str,
        version: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), BookingError> {
        let url = format!("{}{}", self.cfg.base_url.trim_end_matches('/'), path);
        let idempotent = method == Method::GET || method == Method::DELETE;
        let cap = Duration::from_millis(self.cfg.max_backoff_ms);
        let mut attempt = 0u32;
        loop {
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(self.key.expose())
                .header("cal-api-version", version)
                .query(query);
            if let Some(b) = body {
                req = req.json(b);
            }
            let retries_left = attempt < self.cfg.max_retries;
            match req.send().await {
                Err(e) => {
                    if retries_left && (idempotent || e.is_connect()) {
                        self.sleeper
                            .sleep(backoff(attempt, Duration::from_millis(200), cap))
                            .await;
                        attempt += 1;
                        continue;
                    }
                    return Err(BookingError::Remote {
                        status: None,
                        code: "network".into(),
                        message: e.without_url().to_string(),
                        transient: true,
                    });
                }
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        let wait = retry_after(resp.headers());
                        if retries_left {
                            let d = wait
                                .unwrap_or_else(|| backoff(attempt, Duration::from_secs(1), cap))
                                .min(cap);
                            tracing::warn!(
                                path,
                                attempt,
                                wait_ms = d.as_millis() as u64,
                                "cal.com rate limit, backing off"
                            );
                            self.sleeper.sleep(d).await;
                            attempt += 1;
                            continue;
                        }
                        return Err(BookingError::RateLimited { retry_after: wait });
                    }
                    if status.is_server_error() && idempotent && retries_left {
                        self.sleeper
                            .sleep(backoff(attempt, Duration::from_millis(200), cap))
                            .await;
                        attempt += 1;
                        continue;
                    }
                    let bytes = resp.bytes().await.map_err(|e| BookingError::Remote {
                        status: Some(status.as_u16()),
                        code: "network".into(),
                        message: e.without_url().to_string(),
                        transient: true,
                    })?;
                    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    return Ok((status, json));
                }
            }
        }
    }

    async fn reservation(&self, uid: &str) -> Result<Option<Reservation>, BookingError> {
        let (status, body) = self
            .call(
                Method::GET,
                &format!("/v2/slots/reservations/{}", urlencode(uid)),
                SLOTS_API_VERSION,
                &[],
                None,
            )
            .await?;
        match status {
            s if s.is_success() => serde_json::from_value(body["data"].clone())
                .map(Some)
                .map_err(|e| remote_shape(format!("reservation: {e}"))),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(remote_error(s, &body)),
        }
    }
}

/// Percent-encode a path segment (uids are UUIDs, but never trust input).
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[async_trait]
impl super::Calendar for CalcomCalendar {
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
        let (o, event_type) = self.owner(owner)?;
        let start = from.unwrap_or_else(|| next_business_day(o, now));
        let end = window_end(start, days, o.tz).min(now + self.rules.horizon);
        let lo = start.max(now + self.rules.min_notice);
        if lo >= end {
            return Ok(Vec::new());
        }
        let query = [
            ("eventTypeId", event_type.to_string()),
            ("start", iso(lo)),
            ("end", iso(end)),
            ("timeZone", tz.name().to_string()),
        ];
        let (status, body) = self
            .call(Method::GET, "/v2/slots", SLOTS_API_VERSION, &query, None)
            .await?;
        if !status.is_success() {
            return Err(remote_error(status, &body));
        }
        let Some(days_map) = body.get("data").and_then(Value::as_object) else {
            return Err(remote_shape("slots: `data` is not an object".into()));
        };
        let mut out = Vec::new();
        for items in days_map.values() {
            for item in items.as_array().into_iter().flatten() {
                let Some(s) = item.get("start").and_then(Value::as_str) else {
                    continue;
                };
                let s = parse_time(s)?;
                let e = match item.get("end").and_then(Value::as_str) {
                    Some(e) => parse_time(e)?,
                    None => s + self.rules.slot,
                };
                if s >= lo && s < end {
                    out.push(Slot {
                        owner: o.id.clone(),
                        owner_name: o.name.clone(),
                        start: s,
                        end: e,
                        local_start: s.with_timezone(&tz).to_rfc3339(),
                        timezone: tz.name().to_string(),
                        spoken: spoken(s, tz, o.tz, now),
                    });
                }
            }
        }
        out.sort_by_key(|s| s.start);
        out.dedup_by_key(|s| s.start);
        Ok(out)
    }

    async fn hold(&self, slot: &SlotKey, ttl: Duration) -> Result<Hold, BookingError> {
        check_ttl(ttl)?;
        let now = self.clock.now();
        let (o, event_type) = self.owner(&slot.owner)?;
        if slot.start < now + self.rules.min_notice || slot.start >= now + self.rules.horizon {
            return Err(BookingError::Unavailable);
        }
        let mut body = json!({"eventTypeId": event_type, "slotStart": iso(slot.start)});
        if self.cfg.send_reservation_duration {
            body["reservationDuration"] = json!(ttl.as_secs().div_ceil(60).max(1));
        }
        let (status, resp) = self
            .call(
                Method::POST,
                "/v2/slots/reservations",
                SLOTS_API_VERSION,
                &[],
                Some(&body),
            )
            .await?;
        match status {
            s if s.is_success() => {}
            StatusCode::UNPROCESSABLE_ENTITY | StatusCode::CONFLICT => {
                return Err(BookingError::Taken)
            }
            StatusCode::BAD_REQUEST => {
                tracing::info!(error = %remote_error(status, &resp), "cal.com refused the slot");
                return Err(BookingError::NotASlot);
            }
            s => return Err(remote_error(s, &resp)),
        }
        let r: Reservation = serde_json::from_value(resp["data"].clone())
            .map_err(|e| remote_shape(format!("reservation: {e}")))?;
        let uid = r
            .reservation_uid
            .ok_or_else(|| remote_shape("reservation without reservationUid".into()))?;
        let start = parse_time(&r.slot_start)?;
        let end = match &r.slot_end {
            Some(e) => parse_time(e)?,
            None => start + self.rules.slot,
        };
        // Cal.com's default reservation is 5 minutes.
        let expires_at = match &r.reservation_until {
            Some(u) => parse_time(u)?,
            None => now + chrono::Duration::minutes(5),
        };
        self.holds.lock().unwrap_or_else(|p| p.into_inner()).insert(
            uid.clone(),
            KnownHold {
                owner: o.id.clone(),
                event_type_id: event_type,
                start,
                expires_at,
                state: HoldState::Held,
            },
        );
        Ok(Hold {
            id: uid,
            owner: o.id.clone(),
            start,
            end,
            expires_at,
        })
    }

    async fn release(&self, hold_id: &str) -> Result<(), BookingError> {
        let known = self.known(hold_id);
        if matches!(&known, Some(h) if h.state == HoldState::Confirmed) {
            return Err(BookingError::AlreadyConfirmed);
        }
        let (status, body) = self
            .call(
                Method::DELETE,
                &format!("/v2/slots/reservations/{}", urlencode(hold_id)),
                SLOTS_API_VERSION,
                &[],
                None,
            )
            .await?;
        match status {
            s if s.is_success() => {
                self.set_state(hold_id, HoldState::Released);
                Ok(())
            }
            // Already gone (expired or released): releasing is idempotent.
            StatusCode::NOT_FOUND if known.is_some() => {
                self.set_state(hold_id, HoldState::Released);
                Ok(())
            }
            StatusCode::NOT_FOUND => Err(BookingError::HoldNotFound),
            s => Err(remote_error(s, &body)),
        }
    }

    async fn confirm(&self, hold_id: &str, attendee: &Attendee) -> Result<Booking, BookingError> {
        let now = self.clock.now();
        let known = match self.known(hold_id) {
            Some(h) => h,
            None => {
                let r = self
                    .reservation(hold_id)
                    .await?
                    .ok_or(BookingError::HoldNotFound)?;
                let event_type_id = r
                    .event_type_id
                    .ok_or_else(|| remote_shape("reservation without eventTypeId".into()))?;
                let owner = self
                    .owners
                    .iter()
                    .find(|o| o.calcom_event_type_id == Some(event_type_id))
                    .map(|o| o.id.clone())
                    .ok_or_else(|| remote_shape("reservation of an unknown event type".into()))?;
                KnownHold {
                    owner,
                    event_type_id,
                    start: parse_time(&r.slot_start)?,
                    expires_at: match &r.reservation_until {
                        Some(u) => parse_time(u)?,
                        None => now,
                    },
                    state: HoldState::Held,
                }
            }
        };
        match known.state {
            HoldState::Released => return Err(BookingError::HoldReleased),
            HoldState::Confirmed => return Err(BookingError::AlreadyConfirmed),
            HoldState::Held if known.expires_at <= now => return Err(BookingError::HoldExpired),
            HoldState::Held => {}
        }
        if attendee.email.is_none() && attendee.phone.is_none() {
            return Err(BookingError::Invalid {
                field: "email",
                message: "Cal.com needs an email or a phone number".into(),
            });
        }
        let tz = attendee
            .timezone
            .map(|t| t.name().to_string())
            .unwrap_or_else(|| "UTC".into());
        let mut att = json!({"name": attendee.name.expose(), "timeZone": tz, "language": "en"});
        if let Some(e) = &attendee.email {
            att["email"] = json!(e.expose());
        }
        if let Some(p) = &attendee.phone {
            att["phoneNumber"] = json!(p.as_str());
        }
        let body = json!({
            "eventTypeId": known.event_type_id,
            "start": iso(known.start),
            "attendee": att,
            "metadata": {"frontdesk_hold": hold_id},
        });
        let (status, resp) = self
            .call(
                Method::POST,
                "/v2/bookings",
                BOOKINGS_API_VERSION,
                &[],
                Some(&body),
            )
            .await?;
        if !status.is_success() {
            return Err(match status {
                StatusCode::CONFLICT => BookingError::Taken,
                s => remote_error(s, &resp),
            });
        }
        let data = if resp["data"].is_array() {
            resp["data"][0].clone()
        } else {
            resp["data"].clone()
        };
        let b: BookingData =
            serde_json::from_value(data).map_err(|e| remote_shape(format!("booking: {e}")))?;
        let start = parse_time(&b.start)?;
        let end = match &b.end {
            Some(e) => parse_time(e)?,
            None => start + self.rules.slot,
        };
        self.set_state(hold_id, HoldState::Confirmed);
        // Booking does not use the reservation up: delete it, or it lingers
        // until it expires. A failure here is harmless (it expires anyway).
        match self
            .call(
                Method::DELETE,
                &format!("/v2/slots/reservations/{}", urlencode(hold_id)),
                SLOTS_API_VERSION,
                &[],
                None,
            )
            .await
        {
            Ok((s, _)) if s.is_success() || s == StatusCode::NOT_FOUND => {}
            Ok((s, body)) => {
                tracing::warn!(error = %remote_error(s, &body), "could not delete cal.com reservation after booking")
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not delete cal.com reservation after booking")
            }
        }
        Ok(Booking {
            id: b.uid,
            owner: known.owner,
            start,
            end,
            status: b.status.unwrap_or_else(|| "accepted".into()),
        })
    }

    async fn cancel(&self, booking_id: &str) -> Result<(), BookingError> {
        let body = json!({"cancellationReason": "Cancelled by frontdesk"});
        let (status, resp) = self
            .call(
                Method::POST,
                &format!("/v2/bookings/{}/cancel", urlencode(booking_id)),
                BOOKINGS_API_VERSION,
                &[],
                Some(&body),
            )
            .await?;
        match status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(BookingError::BookingNotFound),
            s => Err(remote_error(s, &resp)),
        }
    }
}
