//! `GET /dashboard`: whether leads get called back, as the seed's four
//! numbers — overall and by hour of day in the business time zone — over
//! the last `?days=N` days (default 7, 1–90), with server-rendered SVG
//! charts (no script, no outside asset) and the recent leads with their
//! status. `GET /dashboard/data.json` answers the same numbers as JSON.
//!
//! # Who may look
//!
//! Everything here needs `FRONTDESK_API_TOKEN`: either `Authorization:
//! Bearer <token>`, or the session cookie `POST /dashboard/login` sets when
//! the login form is given the token. The cookie is `HttpOnly`,
//! `SameSite=Strict`, `Path=/dashboard` (and `Secure` when
//! `server.public_url` is `https://`); its value is an expiry and a random
//! nonce signed with HMAC-SHA256 under a key derived from the token — never
//! the token itself — and it lasts [`SESSION_TTL_H`] hours. Changing the token
//! ends every session; `POST /dashboard/logout` deletes the browser's cookie.
//! A browser without a valid session is sent to the login form (303); a
//! wrong bearer token gets 401. With no token configured the dashboard is
//! locked like `/api/*` (which answers 401): the login form says so and
//! accepts nothing.
//!
//! Phone numbers are shown masked (`+…23`) even to a signed-in user: the
//! page is meant for a shared screen, and the call-back link has the number.
//!
//! # The four numbers
//!
//! Over inbound calls (and their leads) whose call started in the window
//! `[now − days, now)`; a lead with no call on record counts from when it
//! was stored. "By hour" groups by the hour of day the call started, in
//! `business.timezone`. What counts is decided from what the store records
//! (see [`crate::store::CallBucket`] and [`crate::store::LeadFact`]):
//!
//! 1. **Answer rate** — answered inbound calls ÷ inbound calls. A call is
//!    answered when the AI receptionist took part (a turn on record) or a
//!    human picked up a ring or transfer leg (an `answered` activity entry).
//!    Voicemail is not an answer.
//! 2. **Booking rate on answered calls** — booked answered calls ÷ answered
//!    calls. A call is booked when the calendar confirmed a booking on it
//!    (`confirm_booking ok` in its activity log) or its lead is tier A.
//! 3. **Median time to first human contact, tier B/C, in hours** — over the
//!    tier B and C leads whose call was in business hours (`[business.hours]`
//!    minus holidays; after-hours leads are the fourth number's): the median
//!    of the time from the end of the call (when the lead was stored, if the
//!    call's end is not on record) to the first human contact, which is the
//!    earliest of a human answering on the call itself (a transfer: 0 h), the
//!    claim's first click-to-call dial, or the claim itself when no dial was
//!    placed (the `tel:` fallback). Leads nobody has contacted yet are not in
//!    the median; the page says how many of how many were.
//! 4. **Overnight tier B claim rate before 10:00** — over the tier B leads
//!    whose call was after hours: the share claimed (or taken by a human on
//!    the call) by 10:00 business time on the day of the first opening after
//!    the call (a Friday-night lead has until Monday 10:00). A lead whose
//!    10:00 has not come yet and that nobody claimed is *pending* and not
//!    counted either way.
//!
//! An empty window shows "—" for a number with nothing to count, never 0 %
//! or NaN.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use chrono::{DateTime, Duration, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::app::{App, Services};
use crate::notify::BusinessHours;
use crate::pii::{mask, Secret};
use crate::store::{CallBucket, LeadFact, StoreError};

type HmacSha256 = Hmac<Sha256>;

/// The session cookie's name.
pub const COOKIE: &str = "fd_session";
/// How long a dashboard session lasts.
pub const SESSION_TTL_H: i64 = 12;
/// The window when `?days` is absent or not a number.
pub const DEFAULT_DAYS: u32 = 7;
/// The longest window `?days` may ask for (a larger one is cut to this).
pub const MAX_DAYS: u32 = 90;
/// Recent leads listed on the page.
pub const RECENT: usize = 25;
/// The local hour overnight tier B leads should be claimed by.
pub const MORNING_DEADLINE_H: u32 = 10;
/// How far ahead the first opening after an after-hours call is looked for.
const OPENING_LOOKAHEAD_DAYS: i64 = 31;

/// What the dashboard routes need besides the services: the token, the
/// session key, how to set the cookie, and the opening hours.
#[derive(Debug)]
pub struct DashboardState {
    token: Option<Secret<String>>,
    session_key: Option<Secret<[u8; 32]>>,
    secure_cookie: bool,
    hours: Option<BusinessHours>,
}

impl DashboardState {
    /// The dashboard of `app` (locked when it has no API token).
    pub fn new(app: &App) -> DashboardState {
        let hours = match crate::app::business_hours(&app.config, app.services.business_tz) {
            Ok(h) => Some(h),
            Err(e) => {
                // `App::build` validated these already; this cannot happen
                // short of a bug, and only the after-hours split is lost.
                tracing::warn!(error = %e, "dashboard: no business hours");
                None
            }
        };
        DashboardState::with(
            app.api_token.clone(),
            app.config.server.public_url.starts_with("https://"),
            hours,
        )
    }

    /// A dashboard for `token` (None or empty: locked).
    pub fn with(
        token: Option<Secret<String>>,
        secure_cookie: bool,
        hours: Option<BusinessHours>,
    ) -> DashboardState {
        let token = token.filter(|t| !t.expose().is_empty());
        let session_key = token.as_ref().map(|t| Secret::new(derive_key(t)));
        DashboardState {
            token,
            session_key,
            secure_cookie,
            hours,
        }
    }

    fn token_matches(&self, given: &str) -> bool {
        let Some(expected) = &self.token else {
            return false;
        };
        // Digests, so the comparison takes the same time whatever the lengths.
        let a = Sha256::digest(given.trim().as_bytes());
        let b = Sha256::digest(expected.expose().as_bytes());
        a.ct_eq(&b).into()
    }

    /// A fresh session cookie value valid until `now` + [`SESSION_TTL_H`].
    fn new_session(&self, now: DateTime<Utc>) -> Option<String> {
        let key = self.session_key.as_ref()?;
        let exp = (now + Duration::hours(SESSION_TTL_H)).timestamp();
        let nonce: [u8; 16] = rand::random();
        let body = format!("v1.{exp}.{}", hex::encode(nonce));
        Some(format!("{body}.{}", hex::encode(session_mac(key, &body))))
    }

    /// Whether `value` is a session this server signed and that has not expired.
    fn session_valid(&self, value: &str, now: DateTime<Utc>) -> bool {
        let Some(key) = &self.session_key else {
            return false;
        };
        let Some((body, mac)) = value.rsplit_once('.') else {
            return false;
        };
        let mut parts = body.split('.');
        let (Some("v1"), Some(exp), Some(_nonce), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let Ok(mac) = hex::decode(mac) else {
            return false;
        };
        let Ok(exp) = exp.parse::<i64>() else {
            return false;
        };
        let mut m = keyed(key);
        m.update(body.as_bytes());
        m.verify_slice(&mac).is_ok() && now.timestamp() < exp
    }

    /// How the request identifies itself.
    fn auth(&self, headers: &HeaderMap, now: DateTime<Utc>) -> Auth {
        if let Some(h) = headers.get(header::AUTHORIZATION) {
            let bearer = h
                .to_str()
                .ok()
                .and_then(|h| h.trim().split_once([' ', '\t']))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim());
            return match bearer {
                Some(t) if self.token_matches(t) => Auth::Ok,
                _ => Auth::Refused,
            };
        }
        let session = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .filter(|(k, _)| *k == COOKIE)
            .any(|(_, v)| self.session_valid(v, now));
        if session {
            Auth::Ok
        } else {
            Auth::None
        }
    }

    fn cookie(&self, value: &str, max_age_s: i64) -> String {
        format!(
            "{COOKIE}={value}; Path=/dashboard; Max-Age={max_age_s}; HttpOnly; SameSite=Strict{}",
            if self.secure_cookie { "; Secure" } else { "" }
        )
    }
}

/// The session key: HMAC-SHA256 of a fixed label under the API token, so a
/// cookie says nothing about the token and a new token ends old sessions.
fn derive_key(token: &Secret<String>) -> [u8; 32] {
    // HMAC takes keys of any length: `new_from_slice` cannot fail.
    let mut m = HmacSha256::new_from_slice(token.expose().as_bytes()).expect("HMAC takes any key");
    m.update(b"frontdesk.dashboard.session.v1");
    m.finalize().into_bytes().into()
}

fn keyed(key: &Secret<[u8; 32]>) -> HmacSha256 {
    // A 32-byte key: `new_from_slice` cannot fail.
    HmacSha256::new_from_slice(key.expose()).expect("HMAC takes any key")
}

fn session_mac(key: &Secret<[u8; 32]>, body: &str) -> Vec<u8> {
    let mut m = keyed(key);
    m.update(body.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// The result of checking a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// The right bearer token or a valid session.
    Ok,
    /// No credentials (or an expired or forged cookie): go and log in.
    None,
    /// An `Authorization` header with the wrong token.
    Refused,
}

/// The dashboard routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(dashboard))
        .route("/dashboard/data.json", get(data))
        .route("/dashboard/login", get(login_form).post(login))
        .route("/dashboard/logout", post(logout))
}

// ---------------------------------------------------------------------------
// The numbers (pure: facts, zone, hours and `now` in; the report out)
// ---------------------------------------------------------------------------

/// A share: `num` of `den`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Ratio {
    /// Counted.
    pub num: u64,
    /// Out of.
    pub den: u64,
}

impl Ratio {
    /// `num / den`; `None` when there is nothing to count.
    pub fn value(&self) -> Option<f64> {
        (self.den > 0).then(|| self.num as f64 / self.den as f64)
    }

    fn count(&mut self, hit: bool) {
        self.den += 1;
        self.num += u64::from(hit);
    }
}

/// The four numbers for one slice of the window (all of it, or one hour).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Numbers {
    /// Answered ÷ inbound calls.
    pub answer: Ratio,
    /// Booked ÷ answered calls.
    pub booking: Ratio,
    /// Hours from call end to first human contact, of each contacted
    /// in-hours tier B/C lead.
    pub contact_h: Vec<f64>,
    /// In-hours tier B/C leads, contacted or not.
    pub contact_of: u64,
    /// After-hours tier B leads claimed by 10:00 ÷ those decided.
    pub overnight: Ratio,
    /// After-hours tier B leads unclaimed whose 10:00 is still to come.
    pub overnight_pending: u64,
}

impl Numbers {
    /// The median of [`Numbers::contact_h`] (the mean of the middle two for
    /// an even count); `None` when nobody was contacted.
    pub fn median_contact_h(&self) -> Option<f64> {
        median(&self.contact_h)
    }
}

/// The median of `v` (`None` when empty).
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let mid = s.len() / 2;
    Some(if s.len().is_multiple_of(2) {
        (s[mid - 1] + s[mid]) / 2.0
    } else {
        s[mid]
    })
}

/// One recent lead as the page lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecentLead {
    /// Lead id.
    pub id: String,
    /// Name given (shown escaped).
    pub name: Option<String>,
    /// The number, masked (`+…23`).
    pub phone: String,
    /// Intent label.
    pub intent: Option<String>,
    /// Tier.
    pub tier: Option<String>,
    /// When the call started.
    pub called_at: DateTime<Utc>,
    /// After hours (or `None` without business hours).
    pub after_hours: Option<bool>,
    /// Who claimed it.
    pub claimed_by: Option<String>,
    /// When.
    pub claimed_at: Option<DateTime<Utc>>,
    /// First click-to-call dial.
    pub dialed_at: Option<DateTime<Utc>>,
    /// `booked`, `transferred`, `voicemail`, `call-back` (tier B/C) or
    /// `answered` (tier D, or no tier).
    pub outcome: &'static str,
}

/// Everything the page shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Window length.
    pub days: u32,
    /// Window start.
    pub from: DateTime<Utc>,
    /// Window end (now).
    pub to: DateTime<Utc>,
    /// The business time zone the hours are in.
    pub tz: Tz,
    /// The whole window.
    pub overall: Numbers,
    /// Per hour of day 0–23 (business time).
    pub by_hour: Vec<Numbers>,
    /// The newest leads, at most [`RECENT`].
    pub recent: Vec<RecentLead>,
}

/// 10:00 business time on the day of the first business-day opening after
/// `t` (`None` when nothing opens within [`OPENING_LOOKAHEAD_DAYS`]).
pub fn morning_deadline(hours: &BusinessHours, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let tz = hours.tz();
    let first_day = t.with_timezone(&tz).date_naive();
    let end_of_day = NaiveTime::from_hms_opt(23, 59, 59)?;
    let ten = NaiveTime::from_hms_opt(MORNING_DEADLINE_H, 0, 0)?;
    for k in 0..=OPENING_LOOKAHEAD_DAYS {
        let day = first_day.checked_add_signed(Duration::days(k))?;
        let Some(probe) = tz.from_local_datetime(&day.and_time(end_of_day)).latest() else {
            continue;
        };
        let Some(opening) = hours.last_opening(probe.with_timezone(&Utc)) else {
            continue;
        };
        if opening > t {
            let open_day = opening.with_timezone(&tz).date_naive();
            let deadline = tz
                .from_local_datetime(&open_day.and_time(ten))
                .earliest()
                // 10:00 skipped by a clock change: the hour after.
                .or_else(|| {
                    tz.from_local_datetime(&(open_day.and_time(ten) + Duration::hours(1)))
                        .earliest()
                })?;
            return Some(deadline.with_timezone(&Utc));
        }
    }
    None
}

/// What happened to a lead, for the list.
fn outcome(l: &LeadFact) -> &'static str {
    let tier = l.tier.as_deref().unwrap_or("");
    if l.booked_on_call || tier == "A" {
        "booked"
    } else if l.human_answered_at.is_some() {
        "transferred"
    } else if l.voicemail || l.intent.as_deref() == Some("voicemail") {
        "voicemail"
    } else if matches!(tier, "B" | "C") {
        "call-back"
    } else {
        "answered"
    }
}

/// The first human contact of a lead (see the module doc, number 3).
fn first_contact(l: &LeadFact) -> Option<DateTime<Utc>> {
    let claim_as_contact = l.claimed_at.filter(|_| l.dialed_at.is_none());
    [l.human_answered_at, l.dialed_at, claim_as_contact]
        .into_iter()
        .flatten()
        .min()
}

/// The report of a window: `calls` and `leads` as the store reads them for
/// `[now − days, now)`, hours in `tz`.
pub fn report(
    calls: &[CallBucket],
    leads: &[LeadFact],
    tz: Tz,
    hours: Option<&BusinessHours>,
    days: u32,
    now: DateTime<Utc>,
) -> Report {
    let mut overall = Numbers::default();
    let mut by_hour = vec![Numbers::default(); 24];
    for b in calls {
        let h = b.start.with_timezone(&tz).hour() as usize;
        let answered = u64::try_from(b.answered).unwrap_or(0);
        let all = u64::try_from(b.calls).unwrap_or(0);
        let booked = u64::try_from(b.booked).unwrap_or(0);
        for n in [&mut overall, &mut by_hour[h]] {
            n.answer.num += answered;
            n.answer.den += all;
            n.booking.num += booked;
            n.booking.den += answered;
        }
    }
    for l in leads {
        let h = l.call_at.with_timezone(&tz).hour() as usize;
        let open = hours.map(|hs| hs.is_open(l.call_at));
        let tier = l.tier.as_deref().unwrap_or("");
        if matches!(tier, "B" | "C") && open != Some(false) {
            let since = l.call_ended_at.unwrap_or(l.created_at);
            let delay = first_contact(l)
                .map(|c| ((c - since).num_milliseconds().max(0)) as f64 / 3_600_000.0);
            for n in [&mut overall, &mut by_hour[h]] {
                n.contact_of += 1;
                n.contact_h.extend(delay);
            }
        }
        if tier == "B" && open == Some(false) {
            let Some(deadline) = hours.and_then(|hs| morning_deadline(hs, l.call_at)) else {
                continue;
            };
            let taken = [l.claimed_at, l.human_answered_at]
                .into_iter()
                .flatten()
                .min()
                .is_some_and(|t| t <= deadline);
            for n in [&mut overall, &mut by_hour[h]] {
                if taken || now >= deadline {
                    n.overnight.count(taken);
                } else {
                    n.overnight_pending += 1;
                }
            }
        }
    }
    let recent = leads
        .iter()
        .take(RECENT)
        .map(|l| RecentLead {
            id: l.id.clone(),
            name: l.name.as_ref().map(|n| n.expose().clone()),
            phone: mask(l.phone.expose()),
            intent: l.intent.clone(),
            tier: l.tier.clone(),
            called_at: l.call_at,
            after_hours: hours.map(|hs| !hs.is_open(l.call_at)),
            claimed_by: l.claimed_by.clone(),
            claimed_at: l.claimed_at,
            dialed_at: l.dialed_at,
            outcome: outcome(l),
        })
        .collect();
    Report {
        days,
        from: now - Duration::days(i64::from(days)),
        to: now,
        tz,
        overall,
        by_hour,
        recent,
    }
}

/// `?days=N`: absent or not a whole number → [`DEFAULT_DAYS`]; otherwise
/// kept within 1–[`MAX_DAYS`].
pub fn window_days(q: &HashMap<String, String>) -> u32 {
    q.get("days")
        .and_then(|d| d.trim().parse::<u64>().ok())
        .map_or(DEFAULT_DAYS, |d| d.clamp(1, u64::from(MAX_DAYS)) as u32)
}

// ---------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------

#[derive(Serialize)]
struct RatioJson {
    value: Option<f64>,
    num: u64,
    den: u64,
}

impl From<Ratio> for RatioJson {
    fn from(r: Ratio) -> Self {
        RatioJson {
            value: r.value(),
            num: r.num,
            den: r.den,
        }
    }
}

#[derive(Serialize)]
struct NumbersJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    hour: Option<u32>,
    answer_rate: RatioJson,
    booking_rate: RatioJson,
    median_first_contact_h: MedianJson,
    overnight_claim_rate: OvernightJson,
}

#[derive(Serialize)]
struct MedianJson {
    value: Option<f64>,
    contacted: usize,
    of: u64,
}

#[derive(Serialize)]
struct OvernightJson {
    value: Option<f64>,
    num: u64,
    den: u64,
    pending: u64,
}

fn numbers_json(n: &Numbers, hour: Option<u32>) -> NumbersJson {
    NumbersJson {
        hour,
        answer_rate: n.answer.into(),
        booking_rate: n.booking.into(),
        median_first_contact_h: MedianJson {
            value: n.median_contact_h(),
            contacted: n.contact_h.len(),
            of: n.contact_of,
        },
        overnight_claim_rate: OvernightJson {
            value: n.overnight.value(),
            num: n.overnight.num,
            den: n.overnight.den,
            pending: n.overnight_pending,
        },
    }
}

#[derive(Serialize)]
struct ReportJson<'a> {
    days: u32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    timezone: &'a str,
    overall: NumbersJson,
    by_hour: Vec<NumbersJson>,
    recent_leads: &'a [RecentLead],
}

// ---------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------

/// Security headers of every dashboard response: nothing cached, no script,
/// nothing from elsewhere, not framed.
fn hardened(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{CSS}</style></head><body>{body}</body></html>",
        esc(title)
    );
    hardened((status, Html(page)).into_response())
}

fn unauthorised_json() -> Response {
    hardened(
        (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({"error": "unauthorised", "message": "bearer token or dashboard session required"})),
        )
            .into_response(),
    )
}

fn failed(e: &StoreError) -> Response {
    tracing::error!(error = %e, "dashboard query failed");
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Dashboard unavailable",
        "<main class=\"narrow\"><h1>The dashboard is unavailable</h1><p>The database did not answer. Try again in a moment.</p></main>",
    )
}

fn unavailable() -> Response {
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        "Dashboard unavailable",
        "<main class=\"narrow\"><h1>No store configured</h1></main>",
    )
}

async fn load(svc: &Services, d: &DashboardState, days: u32) -> Result<Report, StoreError> {
    let now = svc.clock.now();
    let from = now - Duration::days(i64::from(days));
    let calls = svc.store.dashboard_calls(from, now).await?;
    let leads = svc.store.dashboard_leads(from, now).await?;
    Ok(report(
        &calls,
        &leads,
        svc.business_tz,
        d.hours.as_ref(),
        days,
        now,
    ))
}

async fn dashboard(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(svc) = s.api.services() else {
        return unavailable();
    };
    match s.dashboard.auth(&headers, svc.clock.now()) {
        Auth::Ok => {}
        Auth::None => return hardened(Redirect::to("/dashboard/login").into_response()),
        Auth::Refused => {
            return html(
                StatusCode::UNAUTHORIZED,
                "Not signed in",
                "<main class=\"narrow\"><h1>Wrong token</h1><p><a href=\"/dashboard/login\">Sign in</a></p></main>",
            )
        }
    }
    match load(svc, &s.dashboard, window_days(&q)).await {
        Ok(r) => html(StatusCode::OK, "frontdesk dashboard", &render(&r)),
        Err(e) => failed(&e),
    }
}

async fn data(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(svc) = s.api.services() else {
        return unavailable();
    };
    if s.dashboard.auth(&headers, svc.clock.now()) != Auth::Ok {
        return unauthorised_json();
    }
    match load(svc, &s.dashboard, window_days(&q)).await {
        Ok(r) => hardened(
            Json(ReportJson {
                days: r.days,
                from: r.from,
                to: r.to,
                timezone: r.tz.name(),
                overall: numbers_json(&r.overall, None),
                by_hour: r
                    .by_hour
                    .iter()
                    .zip(0u32..)
                    .map(|(n, h)| numbers_json(n, Some(h)))
                    .collect(),
                recent_leads: &r.recent,
            })
            .into_response(),
        ),
        Err(e) => {
            tracing::error!(error = %e, "dashboard query failed");
            hardened(StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
    }
}

fn login_page(status: StatusCode, d: &DashboardState, message: Option<&str>) -> Response {
    let body = if d.token.is_none() {
        "<main class=\"narrow\"><h1>frontdesk dashboard</h1>\
         <p class=\"error\">The dashboard is locked: no API token is configured.</p>\
         <p>Set <code>FRONTDESK_API_TOKEN</code> in the server's environment and restart it; \
         then sign in here with that token.</p></main>"
            .to_string()
    } else {
        format!(
            "<main class=\"narrow\"><h1>frontdesk dashboard</h1>{}\
             <form method=\"post\" action=\"/dashboard/login\" class=\"login\">\
             <label for=\"token\">API token (<code>FRONTDESK_API_TOKEN</code>)</label>\
             <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus>\
             <button type=\"submit\">Sign in</button></form></main>",
            message
                .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(m)))
                .unwrap_or_default()
        )
    };
    html(status, "Sign in · frontdesk", &body)
}

async fn login_form(State(s): State<AppState>) -> Response {
    login_page(StatusCode::OK, &s.dashboard, None)
}

/// The login form's body.
#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
}

async fn login(
    State(s): State<AppState>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let d = &s.dashboard;
    let given = form.map(|Form(f)| f.token).unwrap_or_default();
    if d.token.is_none() {
        return login_page(StatusCode::UNAUTHORIZED, d, None);
    }
    if !d.token_matches(&given) {
        tracing::info!("dashboard sign-in refused: wrong token");
        return login_page(
            StatusCode::UNAUTHORIZED,
            d,
            Some("That is not the API token."),
        );
    }
    let Some(value) = s
        .api
        .services()
        .and_then(|svc| d.new_session(svc.clock.now()))
    else {
        return login_page(StatusCode::UNAUTHORIZED, d, None);
    };
    let mut r = Redirect::to("/dashboard").into_response();
    if let Ok(v) = HeaderValue::from_str(&d.cookie(&value, SESSION_TTL_H * 3600)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    hardened(r)
}

async fn logout(State(s): State<AppState>) -> Response {
    let mut r = Redirect::to("/dashboard/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&s.dashboard.cookie("", 0)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    hardened(r)
}

// ---------------------------------------------------------------------------
// HTML and SVG
// ---------------------------------------------------------------------------

/// Escape text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A rate as a percentage: `75%`, `66.7%`; `—` when there is nothing to count.
pub fn fmt_pct(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(v) => {
            let p = (v * 1000.0).round() / 10.0;
            if p.fract() == 0.0 {
                format!("{p:.0}%")
            } else {
                format!("{p:.1}%")
            }
        }
    }
}

/// Hours with two decimals (`0.25 h`); `—` when there is none.
pub fn fmt_hours(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |h| format!("{h:.2} h"))
}

const CSS: &str = "\
:root{--ink:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#f6f8fa;--card:#fff}\
*{box-sizing:border-box}\
body{margin:0;font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;color:var(--ink);background:var(--bg)}\
header{display:flex;flex-wrap:wrap;gap:.75rem 1.5rem;align-items:center;justify-content:space-between;padding:.9rem 1.5rem;background:#fff;border-bottom:1px solid var(--line)}\
header h1{font-size:1.2rem;margin:0}\
header .window{color:var(--muted)}\
nav a{display:inline-block;padding:.2rem .6rem;margin-left:.2rem;border:1px solid var(--line);border-radius:1rem;color:var(--ink);text-decoration:none;font-size:.9rem}\
nav a.on{background:var(--ink);color:#fff;border-color:var(--ink)}\
nav form{display:inline}\
nav button{font:inherit;font-size:.9rem;margin-left:.8rem;padding:.2rem .7rem;border:1px solid var(--line);border-radius:.3rem;background:#fff;cursor:pointer}\
main{padding:1.2rem 1.5rem;max-width:1400px;margin:0 auto}\
main.narrow{max-width:28rem;margin:3rem auto;background:#fff;border:1px solid var(--line);border-radius:.5rem;padding:1.5rem}\
.stats{display:grid;grid-template-columns:repeat(auto-fit,minmax(270px,1fr));gap:1rem}\
.stat,.chart,.leads{background:var(--card);border:1px solid var(--line);border-radius:.5rem;padding:1rem 1.1rem}\
.stat h2,.chart h2,.leads h2{font-size:.95rem;margin:0 0 .3rem;font-weight:600}\
.stat .value{font-size:2.3rem;font-weight:700;margin:.1rem 0;font-variant-numeric:tabular-nums}\
.stat .of{margin:0;color:var(--ink)}\
.stat .def,.chart .def,.muted{color:var(--muted);font-size:.85rem;margin:.4rem 0 0}\
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:1rem;margin-top:1rem}\
svg{width:100%;height:auto;display:block}\
svg text{font:11px system-ui,'DejaVu Sans',sans-serif;fill:var(--muted)}\
details{margin-top:.3rem;font-size:.85rem}\
details table{margin-top:.4rem}\
.leads{margin-top:1rem;overflow-x:auto}\
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}\
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid var(--line);white-space:nowrap}\
th{font-weight:600;color:var(--muted);font-size:.85rem}\
td.wrap{white-space:normal}\
.tag{display:inline-block;padding:0 .45rem;border-radius:.7rem;font-size:.8rem;border:1px solid var(--line)}\
.tag.booked{background:#dafbe1;border-color:#aceebb}\
.tag.call-back{background:#fff8c5;border-color:#eed888}\
.tag.transferred{background:#ddf4ff;border-color:#b6e3ff}\
.tag.voicemail{background:#ffebe9;border-color:#ffcecb}\
.waiting{color:#9a6700;font-weight:600}\
.error{color:#d1242f}\
form.login{display:grid;gap:.6rem;margin-top:1rem}\
form.login input{font:inherit;padding:.5rem;border:1px solid var(--line);border-radius:.3rem}\
form.login button{font:inherit;padding:.55rem;border:0;border-radius:.3rem;background:#1f883d;color:#fff;cursor:pointer}\
";

/// One metric: its key, title, what it means, the seed's target, the bar
/// colour, and how to read a value of [`Numbers`].
struct Metric {
    key: &'static str,
    title: &'static str,
    def: &'static str,
    target: &'static str,
    colour: &'static str,
    hours: bool,
    value: fn(&Numbers) -> Option<f64>,
    of: fn(&Numbers) -> String,
    /// Whether the slice has anything for this metric to count.
    counted: fn(&Numbers) -> bool,
}

const METRICS: [Metric; 4] = [
    Metric {
        key: "answer_rate",
        title: "Answer rate",
        def: "Inbound calls the AI receptionist or a person answered (voicemail is not an answer).",
        target: "Target 100%",
        colour: "#0969da",
        hours: false,
        value: |n| n.answer.value(),
        of: |n| format!("{} of {} calls", n.answer.num, n.answer.den),
        counted: |n| n.answer.den > 0,
    },
    Metric {
        key: "booking_rate",
        title: "Booking rate on answered calls",
        def: "Answered calls on which a meeting was booked (a confirmed booking, or a tier A lead).",
        target: "Typically 20–35%",
        colour: "#1a7f37",
        hours: false,
        value: |n| n.booking.value(),
        of: |n| format!("{} of {} answered", n.booking.num, n.booking.den),
        counted: |n| n.booking.den > 0,
    },
    Metric {
        key: "median_first_contact_h",
        title: "Median time to first human contact (tier B/C)",
        def: "In-hours tier B/C leads: from the end of the call to a human answering a transfer, the first click-to-call dial, or the claim.",
        target: "Target under 5 min (0.08 h)",
        colour: "#bc4c00",
        hours: true,
        value: Numbers::median_contact_h,
        of: |n| format!("{} of {} leads contacted", n.contact_h.len(), n.contact_of),
        counted: |n| n.contact_of > 0,
    },
    Metric {
        key: "overnight_claim_rate",
        title: "Overnight tier B claimed before 10:00",
        def: "After-hours tier B leads claimed by 10:00 on the next business day.",
        target: "Target over 90%",
        colour: "#8250df",
        hours: false,
        value: |n| n.overnight.value(),
        of: |n| {
            let mut s = format!("{} of {} leads", n.overnight.num, n.overnight.den);
            if n.overnight_pending > 0 {
                let _ = write!(s, " · {} pending", n.overnight_pending);
            }
            s
        },
        counted: |n| n.overnight.den + n.overnight_pending > 0,
    },
];

impl Metric {
    fn fmt(&self, v: Option<f64>) -> String {
        if self.hours {
            fmt_hours(v)
        } else {
            fmt_pct(v)
        }
    }
}

fn fmt_local(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%a %d %b %H:%M").to_string()
}

/// A round upper bound for an hours axis: 1, 2 or 5 × 10ⁿ, at least `v`.
fn nice_ceiling(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 || v.is_infinite() {
        return 1.0;
    }
    let mut step = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * step >= v {
            step *= m;
            return step;
        }
    }
    step * 10.0
}

/// The by-hour bar chart of one metric: 24 bars, the axis in percent (or
/// hours), each bar titled with its value and count; an hour with nothing
/// to count has a grey mark and no bar.
fn chart(m: &Metric, r: &Report) -> String {
    const W: f64 = 600.0;
    const H: f64 = 210.0;
    const LEFT: f64 = 46.0;
    const RIGHT: f64 = 8.0;
    const TOP: f64 = 12.0;
    const BOTTOM: f64 = 36.0;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let base = TOP + plot_h;
    let values: Vec<Option<f64>> = r.by_hour.iter().map(|n| (m.value)(n)).collect();
    let max = if m.hours {
        nice_ceiling(values.iter().flatten().copied().fold(0.0, f64::max))
    } else {
        1.0
    };
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{} by hour of day\" data-chart=\"{}\">",
        esc(m.title),
        m.key
    );
    for i in 0..=4 {
        let f = f64::from(i) / 4.0;
        let y = base - f * plot_h;
        let label = if m.hours {
            let v = max * f;
            if max <= 1.0 {
                format!("{v:.2} h")
            } else {
                format!("{v:.1} h")
            }
        } else {
            format!("{:.0}%", f * 100.0)
        };
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{}\" stroke-width=\"1\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>",
            W - RIGHT,
            if i == 0 { "#8c959f" } else { "#eaeef2" },
            LEFT - 6.0,
            y + 4.0
        );
    }
    let slot = plot_w / 24.0;
    for (h, (n, v)) in r.by_hour.iter().zip(&values).enumerate() {
        let x = LEFT + slot * h as f64;
        let label = format!("{h:02}:00–{:02}:00", (h + 1) % 24);
        match v {
            Some(v) => {
                let bh = ((v / max).min(1.0) * plot_h).max(2.0);
                let _ = write!(
                    s,
                    "<rect class=\"bar\" data-hour=\"{h}\" data-value=\"{v}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" rx=\"2\" fill=\"{}\"><title>{label}: {} ({})</title></rect>",
                    x + slot * 0.15,
                    base - bh,
                    slot * 0.7,
                    m.colour,
                    m.fmt(Some(*v)),
                    esc(&(m.of)(n))
                );
            }
            None => {
                let _ = write!(
                    s,
                    "<rect class=\"empty\" data-hour=\"{h}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"2\" fill=\"#d0d7de\"><title>{label}: nothing to count</title></rect>",
                    x + slot * 0.3,
                    base - 1.0,
                    slot * 0.4
                );
            }
        }
        if h % 3 == 0 {
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{h:02}</text>",
                x + slot / 2.0,
                base + 15.0
            );
        }
    }
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">hour of day ({})</text></svg>",
        LEFT + plot_w / 2.0,
        H - 4.0,
        esc(r.tz.name())
    );
    s
}

/// The by-hour values of one metric as a table (inside a closed `details`).
fn hour_table(m: &Metric, r: &Report) -> String {
    let mut s = format!(
        "<details><summary>By hour, as a table</summary><table data-table=\"{}\"><tr><th>Hour</th><th>Value</th><th>Of</th></tr>",
        m.key
    );
    for (h, n) in r.by_hour.iter().enumerate() {
        let v = (m.value)(n);
        if !(m.counted)(n) {
            continue;
        }
        let _ = write!(
            s,
            "<tr data-hour=\"{h}\"><td>{h:02}:00</td><td class=\"v\">{}</td><td>{}</td></tr>",
            m.fmt(v),
            esc(&(m.of)(n))
        );
    }
    s.push_str("</table></details>");
    s
}

fn opt_time(t: Option<DateTime<Utc>>, tz: Tz) -> String {
    t.map_or_else(|| "—".into(), |t| esc(&fmt_local(t, tz)))
}

fn leads_table(r: &Report) -> String {
    let mut s = String::from("<section class=\"leads\"><h2>Recent leads</h2>");
    if r.recent.is_empty() {
        s.push_str("<p class=\"muted\">No leads in this window.</p></section>");
        return s;
    }
    s.push_str(
        "<table data-table=\"recent_leads\"><tr><th>Call</th><th>Name</th><th>Phone</th><th>Intent</th>\
         <th>Tier</th><th>Claimed by</th><th>Claimed</th><th>First dial</th><th>Outcome</th></tr>",
    );
    for l in &r.recent {
        let claimed_by = match (&l.claimed_by, l.tier.as_deref()) {
            (Some(rep), _) => esc(rep),
            (None, Some("B" | "C")) if l.outcome != "transferred" => {
                "<span class=\"waiting\">waiting</span>".into()
            }
            (None, _) => "—".into(),
        };
        let when = format!(
            "{}{}",
            esc(&fmt_local(l.called_at, r.tz)),
            if l.after_hours == Some(true) {
                " <span class=\"tag\">after hours</span>"
            } else {
                ""
            }
        );
        let _ = write!(
            s,
            "<tr data-lead=\"{}\"><td>{when}</td><td class=\"wrap\">{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{claimed_by}</td><td>{}</td><td>{}</td><td><span class=\"tag {}\">{}</span></td></tr>",
            esc(&l.id),
            l.name.as_deref().map_or_else(|| "—".into(), esc),
            esc(&l.phone),
            l.intent.as_deref().map_or_else(|| "—".into(), esc),
            l.tier.as_deref().map_or_else(|| "—".into(), esc),
            opt_time(l.claimed_at, r.tz),
            opt_time(l.dialed_at, r.tz),
            l.outcome,
            l.outcome
        );
    }
    s.push_str("</table></section>");
    s
}

/// The dashboard's body.
fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<header><div><h1>frontdesk · are leads called back?</h1>\
         <div class=\"window\">Last {} day{}: {} – {} ({})</div></div><nav>",
        r.days,
        if r.days == 1 { "" } else { "s" },
        esc(&fmt_local(r.from, r.tz)),
        esc(&fmt_local(r.to, r.tz)),
        esc(r.tz.name())
    );
    for d in [1, 7, 30, 90] {
        let _ = write!(
            s,
            "<a href=\"/dashboard?days={d}\"{}>{d} day{}</a>",
            if d == r.days { " class=\"on\"" } else { "" },
            if d == 1 { "" } else { "s" }
        );
    }
    s.push_str(
        "<form method=\"post\" action=\"/dashboard/logout\"><button type=\"submit\">Sign out</button></form></nav></header><main><section class=\"stats\">",
    );
    for m in &METRICS {
        let v = (m.value)(&r.overall);
        let _ = write!(
            s,
            "<article class=\"stat\"><h2>{}</h2><p class=\"value\" data-metric=\"{}\">{}</p>\
             <p class=\"of\">{}</p><p class=\"def\">{} {}.</p></article>",
            esc(m.title),
            m.key,
            m.fmt(v),
            esc(&(m.of)(&r.overall)),
            esc(m.def),
            esc(m.target)
        );
    }
    s.push_str("</section><section class=\"charts\">");
    for m in &METRICS {
        let _ = write!(
            s,
            "<article class=\"chart\"><h2>{} by hour of day</h2>{}{}</article>",
            esc(m.title),
            chart(m, r),
            hour_table(m, r)
        );
    }
    s.push_str("</section>");
    s.push_str(&leads_table(r));
    s.push_str("</main>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::booking::WeekHours;
    use crate::pii::Pii;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn london() -> BusinessHours {
        BusinessHours::new(
            "business.hours",
            chrono_tz::Europe::London,
            &WeekHours::weekdays("09:00-17:30"),
            &[],
        )
        .unwrap()
    }

    fn lead(tier: &str, call_at: &str) -> LeadFact {
        LeadFact {
            id: format!("l-{call_at}"),
            name: Some(Pii::new("<b>Ann</b>".into())),
            phone: Pii::new("+447700900123".into()),
            intent: Some("new_enquiry".into()),
            tier: Some(tier.into()),
            created_at: at(call_at) + Duration::minutes(5),
            call_at: at(call_at),
            call_ended_at: Some(at(call_at) + Duration::minutes(5)),
            human_answered_at: None,
            booked_on_call: false,
            voicemail: false,
            claimed_by: None,
            claimed_at: None,
            dialed_at: None,
        }
    }

    #[test]
    fn deadlines_are_ten_on_the_next_business_day() {
        let h = london();
        // Tuesday 1 Dec 2026, 23:10 → Wednesday 10:00.
        assert_eq!(
            morning_deadline(&h, at("2026-12-01T23:10:00Z")),
            Some(at("2026-12-02T10:00:00Z"))
        );
        // Early Wednesday, before opening → the same morning.
        assert_eq!(
            morning_deadline(&h, at("2026-12-02T06:00:00Z")),
            Some(at("2026-12-02T10:00:00Z"))
        );
        // Friday evening → Monday.
        assert_eq!(
            morning_deadline(&h, at("2026-12-04T19:00:00Z")),
            Some(at("2026-12-07T10:00:00Z"))
        );
        // Summer time: 10:00 BST is 09:00 UTC.
        assert_eq!(
            morning_deadline(&h, at("2026-07-01T22:00:00Z")),
            Some(at("2026-07-02T09:00:00Z"))
        );
        let closed = BusinessHours::new("h", chrono_tz::UTC, &WeekHours::default(), &[]).unwrap();
        assert_eq!(morning_deadline(&closed, at("2026-12-01T23:00:00Z")), None);
    }

    #[test]
    fn empty_window_reads_as_dashes_not_nan() {
        let r = report(
            &[],
            &[],
            chrono_tz::Europe::London,
            Some(&london()),
            7,
            at("2026-12-08T12:00:00Z"),
        );
        assert_eq!(r.overall.answer.value(), None);
        assert_eq!(r.overall.median_contact_h(), None);
        let html = render(&r);
        assert!(!html.contains("NaN"), "{html}");
        for m in &METRICS {
            assert!(
                html.contains(&format!("data-metric=\"{}\">—<", m.key)),
                "{}",
                m.key
            );
        }
        assert!(html.contains("No leads in this window"));
        assert_eq!(html.matches("class=\"empty\"").count(), 4 * 24);
    }

    #[test]
    fn rates_medians_and_the_overnight_queue() {
        let calls = [
            CallBucket {
                start: at("2026-12-01T10:00:00Z"),
                calls: 3,
                answered: 2,
                booked: 1,
            },
            CallBucket {
                start: at("2026-12-01T10:45:00Z"),
                calls: 1,
                answered: 1,
                booked: 0,
            },
            CallBucket {
                start: at("2026-12-01T23:15:00Z"),
                calls: 1,
                answered: 0,
                booked: 0,
            },
        ];
        // In hours: contacted after 30 min (dial), 1 h (claim only), and
        // during the call (transfer); one never.
        let mut a = lead("B", "2026-12-01T10:00:00Z");
        a.claimed_at = Some(at("2026-12-01T10:20:00Z"));
        a.dialed_at = Some(at("2026-12-01T10:35:00Z"));
        let mut b = lead("C", "2026-12-01T10:10:00Z");
        b.claimed_at = Some(at("2026-12-01T11:15:00Z"));
        let mut c = lead("C", "2026-12-01T14:00:00Z");
        c.human_answered_at = Some(at("2026-12-01T14:03:00Z"));
        let d = lead("B", "2026-12-01T15:00:00Z");
        // After hours, tier B: claimed 09:30 (in time), claimed 10:30 (late),
        // one unclaimed whose 10:00 is still to come.
        let mut e = lead("B", "2026-12-01T23:15:00Z");
        e.claimed_at = Some(at("2026-12-02T09:30:00Z"));
        let mut f = lead("B", "2026-12-01T23:40:00Z");
        f.claimed_at = Some(at("2026-12-02T10:30:00Z"));
        let g = lead("B", "2026-12-03T06:00:00Z");
        let now = at("2026-12-03T08:00:00Z");
        let leads = [g, f, e, d, c, b, a];
        let r = report(
            &calls,
            &leads,
            chrono_tz::Europe::London,
            Some(&london()),
            7,
            now,
        );
        assert_eq!(r.overall.answer, Ratio { num: 3, den: 5 });
        assert_eq!(r.overall.booking, Ratio { num: 1, den: 3 });
        assert_eq!(r.by_hour[10].answer, Ratio { num: 3, den: 4 });
        assert_eq!(r.by_hour[23].answer, Ratio { num: 0, den: 1 });
        // Delays 0.5, 1.0, 0 → median 0.5; one of four not contacted.
        assert_eq!(r.overall.contact_of, 4);
        assert_eq!(r.overall.median_contact_h(), Some(0.5));
        assert_eq!(r.by_hour[10].median_contact_h(), Some(0.75));
        assert_eq!(r.overall.overnight, Ratio { num: 1, den: 2 });
        assert_eq!(r.overall.overnight_pending, 1);
        assert_eq!(r.by_hour[6].overnight_pending, 1);
        let html = render(&r);
        assert!(html.contains("data-metric=\"answer_rate\">60%<"), "{html}");
        assert!(html.contains("data-metric=\"booking_rate\">33.3%<"));
        assert!(html.contains("data-metric=\"median_first_contact_h\">0.50 h<"));
        assert!(html.contains("data-metric=\"overnight_claim_rate\">50%<"));
        assert!(html.contains("&lt;b&gt;Ann&lt;/b&gt;"), "names are escaped");
        assert!(!html.contains("<b>Ann"));
        assert!(!html.contains("900123"), "phone numbers are masked");
        assert!(html.contains("+…23"));
    }

    #[test]
    fn sessions_are_signed_expiring_and_not_the_token() {
        let d = DashboardState::with(Some(Secret::new("tok-123".into())), false, None);
        let now = at("2026-12-01T09:00:00Z");
        let v = d.new_session(now).unwrap();
        assert!(!v.contains("tok-123"));
        assert!(d.session_valid(&v, now));
        assert!(d.session_valid(
            &v,
            now + Duration::hours(SESSION_TTL_H) - Duration::seconds(1)
        ));
        assert!(!d.session_valid(&v, now + Duration::hours(SESSION_TTL_H)));
        // Another expiry under the same signature is refused.
        let (body, mac) = v.rsplit_once('.').unwrap();
        let nonce = body.rsplit('.').next().unwrap();
        let exp = (now + Duration::days(30)).timestamp();
        assert!(!d.session_valid(&format!("v1.{exp}.{nonce}.{mac}"), now));
        assert!(!d.session_valid("", now));
        assert!(!d.session_valid("v1.x.y.zz", now));
        let mut flipped = v.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == '0' { '1' } else { '0' });
        assert!(!d.session_valid(&flipped, now));
        // A new token ends the old sessions.
        let other = DashboardState::with(Some(Secret::new("tok-456".into())), false, None);
        assert!(!other.session_valid(&v, now));
        let locked = DashboardState::with(None, false, None);
        assert!(locked.new_session(now).is_none());
        assert!(!locked.token_matches(""));
        assert!(d.cookie("x", 60).contains("HttpOnly; SameSite=Strict"));
        assert!(!d.cookie("x", 60).contains("Secure"));
        let secure = DashboardState::with(Some(Secret::new("t".into())), true, None);
        assert!(secure.cookie("x", 60).ends_with("; Secure"));
    }

    #[test]
    fn window_is_bounded() {
        let q = |v: &str| HashMap::from([("days".to_string(), v.to_string())]);
        assert_eq!(window_days(&HashMap::new()), 7);
        assert_eq!(window_days(&q("30")), 30);
        assert_eq!(window_days(&q("0")), 1);
        assert_eq!(window_days(&q("100000")), 90);
        assert_eq!(window_days(&q("-3")), 7);
        assert_eq!(window_days(&q("lots")), 7);
    }

    #[test]
    fn numbers_format() {
        assert_eq!(fmt_pct(Some(0.75)), "75%");
        assert_eq!(fmt_pct(Some(2.0 / 3.0)), "66.7%");
        assert_eq!(fmt_pct(Some(0.0)), "0%");
        assert_eq!(fmt_pct(None), "—");
        assert_eq!(fmt_hours(Some(0.25)), "0.25 h");
        assert_eq!(fmt_hours(None), "—");
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(12.0), 20.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
