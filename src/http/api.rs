//! The JSON API under `/api`: leads, calls, contacts, slots, holds and
//! bookings, behind a bearer token (`FRONTDESK_API_TOKEN`).
//!
//! This module owns request parsing and validation (a bad payload is a 400
//! naming the field, and nothing is stored), authentication (no token
//! configured means every route answers 401: the API is never open), and the
//! mapping of domain errors to status codes. It holds no business rules of its
//! own: contacts and leads go through [`crate::store`], slots and holds through
//! the [`Calendar`](crate::booking::Calendar) — the same code the brain's actions call.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::booking::{schedule, Attendee, BookingError, SlotKey};
use crate::phone;
use crate::pii::{Pii, Secret};
use crate::store::{LeadFilter, NewContact, NewLead, StoreError};

/// Most rows a list endpoint returns.
const MAX_LIMIT: i64 = 1000;

pub use crate::app::Services;

/// Everything the API handlers need. `ApiState::default()` has no token and
/// no services: every route answers 401.
#[derive(Debug, Default)]
pub struct ApiState {
    token: Option<Secret<String>>,
    services: Option<Services>,
}

impl ApiState {
    /// An API over `services`; `token: None` locks every route (401).
    pub fn new(services: Services, token: Option<Secret<String>>) -> ApiState {
        ApiState {
            token: token.filter(|t| !t.expose().is_empty()),
            services: Some(services),
        }
    }

    /// The services, when configured.
    pub fn services(&self) -> Option<&Services> {
        self.services.as_ref()
    }

    fn authorised(&self, header: Option<&HeaderValue>) -> bool {
        let Some(expected) = &self.token else {
            return false;
        };
        // White space around the scheme and the token is ignored, on
        // purpose: the configured token is trimmed too (`Env::secret`), and a
        // client that pastes a token with a trailing space or newline should
        // get in with the right token. The token itself must match exactly:
        // white space inside it is a different token.
        let Some(given) = header
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.trim().split_once([' ', '\t']))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
        else {
            return false;
        };
        // Compare digests so the comparison takes the same time whatever the
        // lengths are.
        let a = Sha256::digest(given.as_bytes());
        let b = Sha256::digest(expected.expose().as_bytes());
        a.ct_eq(&b).into()
    }
}

/// The `/api/*` routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/ingest/lead", post(ingest_lead))
        .route("/api/leads", get(list_leads))
        .route("/api/calls", get(list_calls))
        .route("/api/contacts", get(find_contacts))
        .route("/api/slots", get(list_slots))
        .route("/api/holds", post(create_hold))
        .route("/api/holds/{id}", delete(release_hold))
        .route("/api/holds/{id}/confirm", post(confirm_hold))
        .route("/api/bookings/{id}", delete(cancel_booking))
        .route("/api/outbox", get(list_outbox))
}

/// An API error: a status and a short JSON body; details go to the log.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    field: Option<String>,
    message: String,
    retry_after: Option<Duration>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            field: None,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 naming the offending field.
    fn field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        let field = field.into();
        let message = format!("{field}: {}", message.into());
        ApiError {
            field: Some(field),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", message)
        }
    }

    fn internal(e: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "api request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({
            "error": self.code,
            "field": self.field,
            "message": self.message,
        }));
        let mut resp = (self.status, body).into_response();
        if let Some(d) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&d.as_secs().max(1).to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::internal(&e)
    }
}

impl From<BookingError> for ApiError {
    fn from(e: BookingError) -> ApiError {
        use BookingError as B;
        let conflict = |code, msg: &str| ApiError::new(StatusCode::CONFLICT, code, msg);
        match e {
            B::UnknownOwner(_) => ApiError::field("owner", "unknown calendar owner"),
            B::NotASlot => ApiError::field("start", "not a slot start of this owner"),
            B::Invalid { field, message } => ApiError::field(field, message),
            B::Unavailable => conflict(
                "slot_unavailable",
                "slot is inside the minimum notice or past the horizon",
            ),
            B::Taken => conflict("slot_taken", "slot is held or booked by someone else"),
            B::HoldExpired => conflict("hold_expired", "the hold expired"),
            B::HoldReleased => conflict("hold_released", "the hold was released"),
            B::AlreadyConfirmed => conflict("already_confirmed", "the hold is already booked"),
            B::HoldNotFound => ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such hold"),
            B::BookingNotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such booking")
            }
            B::RateLimited { retry_after } => ApiError {
                retry_after: Some(retry_after.unwrap_or(Duration::from_secs(5))),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "calendar_busy",
                    "calendar provider rate limit; retry later",
                )
            },
            e @ B::Remote { .. } => {
                tracing::warn!(error = %e, "calendar provider failed");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "calendar_unavailable",
                    "calendar provider failed",
                )
            }
            B::Store(e) => ApiError::internal(&e),
        }
    }
}

/// Extractor: the request carries the right bearer token. Yields the services.
pub struct Authorised(Services);

impl FromRequestParts<AppState> for Authorised {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let api = &state.api;
        if !api.authorised(parts.headers.get(header::AUTHORIZATION)) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong bearer token",
            ));
        }
        match &api.services {
            Some(s) => Ok(Authorised(s.clone())),
            None => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_configured",
                "the API has no store",
            )),
        }
    }
}

/// Extractor: the body of a JSON route. A request whose `Content-Type` is
/// not `application/json` (parameters allowed, a `charset` must be UTF-8) is
/// refused with 415 before its body is read.
pub struct JsonBody(Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Content-Type must be application/json",
            ));
        }
        Bytes::from_request(req, state)
            .await
            .map(JsonBody)
            .map_err(|e| ApiError::new(e.status(), "invalid_body", e.body_text()))
    }
}

/// `application/json`, any case, with optional parameters (`; charset=utf-8`).
fn is_json(v: Option<&HeaderValue>) -> bool {
    let Some(v) = v.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut parts = v.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        && parts.all(|p| match p.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
                v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            }
            Some(_) => true,
            None => p.trim().is_empty(),
        })
}

/// Parse a JSON body, naming the field on failure.
fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        ApiError::field(
            "(body)",
            msg.split(" at line ").next().unwrap_or("not JSON"),
        )
    })?;
    // serde would read a struct from an array too; only objects are payloads.
    if !value.is_object() {
        return Err(ApiError::field("(body)", "must be a JSON object"));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        // serde names a missing or unknown field only in its message.
        let quoted = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.starts_with("missing field") || msg.starts_with("unknown field"));
        let field = match (path.as_str(), quoted) {
            (".", Some(q)) | ("", Some(q)) => q.to_string(),
            (".", None) | ("", None) => "(body)".to_string(),
            // serde_path_to_error's path already ends with the unknown field.
            (p, _) => p.to_string(),
        };
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        ApiError::field(field, msg)
    })
}

/// Trim; empty → None; longer than `max` characters → 400.
fn text(field: &str, v: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    let v = v.trim().to_string();
    if v.is_empty() {
        return Ok(None);
    }
    if v.chars().count() > max {
        return Err(ApiError::field(
            field,
            format!("longer than {max} characters"),
        ));
    }
    if v.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ApiError::field(field, "contains control characters"));
    }
    Ok(Some(v))
}

fn email(v: Option<String>) -> Result<Option<Pii<String>>, ApiError> {
    let Some(v) = text("email", v, 254)? else {
        return Ok(None);
    };
    let ok = match v.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
                && !v.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if !ok {
        return Err(ApiError::field("email", "not an email address"));
    }
    Ok(Some(Pii::new(v)))
}

fn phone_number(s: &Services, field: &str, v: &str) -> Result<phone::E164, ApiError> {
    phone::normalise(v, s.region).map_err(|e| ApiError::field(field, e.to_string()))
}

fn timezone(field: &str, v: Option<String>) -> Result<Option<Tz>, ApiError> {
    match text(field, v, 64)? {
        None => Ok(None),
        Some(t) => t
            .parse::<Tz>()
            .map(Some)
            .map_err(|_| ApiError::field(field, "not an IANA time zone (e.g. Europe/London)")),
    }
}

/// RFC 3339 instant, or a bare date (midnight in `tz`).
fn instant(field: &str, v: &str, tz: Tz) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d")
        .map(|d| schedule::start_of_day(tz, d))
        .map_err(|_| ApiError::field(field, "not an RFC 3339 time or a YYYY-MM-DD date"))
}

fn only_params(q: &HashMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
    match q.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::field(
            k.clone(),
            format!("unknown parameter; allowed: {}", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

fn limit(q: &HashMap<String, String>) -> Result<i64, ApiError> {
    match q.get("limit") {
        None => Ok(100),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::field("limit", format!("must be 1–{MAX_LIMIT}"))),
    }
}

fn path_id(id: &str) -> Result<&str, ApiError> {
    if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control()) {
        return Err(ApiError::field("id", "not an id"));
    }
    Ok(id)
}

fn query_map(
    q: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(m)| m)
        .map_err(|e| ApiError::field("(query)", e.body_text()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeadIn {
    name: Option<String>,
    email: Option<String>,
    phone: String,
    intent: Option<String>,
    tier: Option<String>,
    source: Option<String>,
    call_sid: Option<String>,
    transcript_id: Option<String>,
    timezone: Option<String>,
    notes: Option<String>,
    routing_owner: Option<String>,
}

fn validate_lead(s: &Services, l: LeadIn) -> Result<NewLead, ApiError> {
    let phone = phone_number(s, "phone", &l.phone)?;
    let tier = match text("tier", l.tier, 1)? {
        None => None,
        Some(t) => {
            let t = t.to_ascii_uppercase();
            if !["A", "B", "C", "D"].contains(&t.as_str()) {
                return Err(ApiError::field("tier", "must be A, B, C or D"));
            }
            Some(t)
        }
    };
    let call_sid = text("call_sid", l.call_sid, 64)?;
    if let Some(sid) = &call_sid {
        if !sid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(ApiError::field(
                "call_sid",
                "may contain only letters, digits, - _ .",
            ));
        }
    }
    Ok(NewLead {
        contact: NewContact {
            phone_e164: phone.to_pii(),
            name: text("name", l.name, 200)?.map(Pii::new),
            email: email(l.email)?,
            timezone: timezone("timezone", l.timezone)?.map(|t| t.name().to_string()),
        },
        call_sid,
        intent: text("intent", l.intent, 100)?,
        tier,
        source: text("source", l.source, 100)?,
        transcript_id: text("transcript_id", l.transcript_id, 100)?,
        notes: text("notes", l.notes, 10_000)?.map(Pii::new),
        routing_owner: text("routing_owner", l.routing_owner, 100)?,
    })
}

/// `POST /api/ingest/lead`: 201 with the new lead, or 200 with the existing
/// one when a lead with the same `call_sid` was ingested before.
async fn ingest_lead(
    Authorised(s): Authorised,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let lead = validate_lead(&s, parse_body(&body)?)?;
    let out = s.store.ingest_lead(&lead, s.clock.now()).await?;
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    tracing::info!(lead = %out.lead.id, contact = %out.contact.id, created = out.created, "lead ingested");
    Ok((
        status,
        Json(json!({"lead": out.lead, "contact": out.contact, "created": out.created})),
    )
        .into_response())
}

/// `GET /api/leads?since=&tier=&status=&limit=`
async fn list_leads(
    Authorised(s): Authorised,
    q: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query_map(q)?;
    only_params(&q, &["since", "tier", "status", "limit"])?;
    let since = q
        .get("since")
        .map(|v| instant("since", v, s.business_tz))
        .transpose()?;
    let tier = match q.get("tier") {
        Some(t) if ["A", "B", "C", "D"].contains(&t.to_ascii_uppercase().as_str()) => {
            Some(t.to_ascii_uppercase())
        }
        Some(_) => return Err(ApiError::field("tier", "must be A, B, C or D")),
        None => None,
    };
    let status = text("status", q.get("status").cloned(), 32)?;
    let leads = s
        .store
        .list_leads(&LeadFilter {
            since,
            tier,
            status,
            limit: limit(&q)?,
        })
        .await?;
    Ok(Json(json!({ "leads": leads })).into_response())
}

/// `GET /api/outbox?status=pending|delivered|failed&limit=`: deliveries
/// (Slack, SMS, webhooks), newest first, with their attempts and last
/// error. Payloads are left out: they carry phone numbers and texts.
async fn list_outbox(
    Authorised(s): Authorised,
    q: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    use crate::store::OutboxStatus;
    let q = query_map(q)?;
    only_params(&q, &["status", "limit"])?;
    let status = match q.get("status").map(|v| v.trim().to_ascii_lowercase()) {
        None => None,
        Some(v) if v == "pending" => Some(OutboxStatus::Pending),
        Some(v) if v == "delivered" => Some(OutboxStatus::Delivered),
        Some(v) if v == "failed" => Some(OutboxStatus::Failed),
        Some(_) => {
            return Err(ApiError::field(
                "status",
                "must be pending, delivered or failed",
            ))
        }
    };
    let items = s.store.outbox_by_status(status, limit(&q)?).await?;
    let items: Vec<_> = items
        .into_iter()
        .map(|i| {
            json!({
                "id": i.id,
                "kind": i.kind,
                "key": i.idempotency_key,
                "status": i.status,
                "attempts": i.attempts,
                "next_attempt_at": i.next_attempt_at,
                "last_error": i.last_error,
                "created_at": i.created_at,
            })
        })
        .collect();
    Ok(Json(json!({ "items": items })).into_response())
}

/// `GET /api/calls?since=&limit=`
async fn list_calls(
    Authorised(s): Authorised,
    q: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query_map(q)?;
    only_params(&q, &["since", "limit", "turns"])?;
    let since = q
        .get("since")
        .map(|v| instant("since", v, s.business_tz))
        .transpose()?;
    let with_turns = match q.get("turns").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(_) => return Err(ApiError::field("turns", "must be true or false")),
    };
    let calls = s.store.list_calls(since, limit(&q)?).await?;
    if !with_turns {
        return Ok(Json(json!({ "calls": calls })).into_response());
    }
    // `?turns=true`: each call with its transcript, turn by turn.
    let mut out = Vec::with_capacity(calls.len());
    for c in calls {
        let turns = s.store.turns(&c.id).await?;
        let mut v = serde_json::to_value(&c).map_err(|e| ApiError::internal(&e))?;
        v["turns"] = serde_json::to_value(&turns).map_err(|e| ApiError::internal(&e))?;
        out.push(v);
    }
    Ok(Json(json!({ "calls": out })).into_response())
}

/// `GET /api/contacts?phone=` (any format): `{"contacts": [..]}` with zero or one entry.
async fn find_contacts(
    Authorised(s): Authorised,
    q: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query_map(q)?;
    only_params(&q, &["phone"])?;
    let raw = q
        .get("phone")
        .ok_or_else(|| ApiError::field("phone", "required"))?;
    let e164 = phone_number(&s, "phone", raw)?;
    let found = s.store.contact_by_phone(e164.as_str()).await?;
    Ok(Json(json!({ "contacts": found.into_iter().collect::<Vec<_>>() })).into_response())
}

/// `GET /api/slots?owner=&from=&days=&tz=`
async fn list_slots(
    Authorised(s): Authorised,
    q: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query_map(q)?;
    only_params(&q, &["owner", "from", "days", "tz"])?;
    let tz = timezone("tz", q.get("tz").cloned())?.unwrap_or(s.business_tz);
    let from = q.get("from").map(|v| instant("from", v, tz)).transpose()?;
    let days = match q.get("days") {
        None => 7,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|d| (1..=60).contains(d))
            .ok_or_else(|| ApiError::field("days", "must be 1–60"))?,
    };
    let owners: Vec<String> = match q.get("owner").filter(|o| !o.is_empty()) {
        Some(o) => {
            if !s.calendar.owners().iter().any(|x| &x.id == o) {
                return Err(ApiError::field("owner", "unknown calendar owner"));
            }
            vec![o.clone()]
        }
        None => s.calendar.owners().into_iter().map(|o| o.id).collect(),
    };
    let mut slots = Vec::new();
    for o in owners {
        slots.extend(s.calendar.available_slots(&o, from, days, tz).await?);
    }
    slots.sort_by(|a, b| a.start.cmp(&b.start).then_with(|| a.owner.cmp(&b.owner)));
    Ok(Json(json!({ "timezone": tz.name(), "slots": slots })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldIn {
    owner: String,
    start: String,
    ttl_s: Option<u64>,
}

/// `POST /api/holds` → 201 with the hold, or 409 when the slot is taken.
async fn create_hold(
    Authorised(s): Authorised,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let h: HoldIn = parse_body(&body)?;
    let owner =
        text("owner", Some(h.owner), 64)?.ok_or_else(|| ApiError::field("owner", "required"))?;
    let start = DateTime::parse_from_rfc3339(h.start.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| ApiError::field("start", "not an RFC 3339 time"))?;
    let ttl = match h.ttl_s {
        None => s.hold_ttl,
        Some(t) if (1..=3600).contains(&t) => Duration::from_secs(t),
        Some(_) => return Err(ApiError::field("ttl_s", "must be 1–3600 seconds")),
    };
    let hold = s.calendar.hold(&SlotKey { owner, start }, ttl).await?;
    Ok((StatusCode::CREATED, Json(hold)).into_response())
}

/// `DELETE /api/holds/{id}` → 204.
async fn release_hold(
    Authorised(s): Authorised,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    s.calendar.release(path_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmIn {
    name: String,
    email: Option<String>,
    phone: Option<String>,
    timezone: Option<String>,
}

/// `POST /api/holds/{id}/confirm` → 201 with the booking; 409 if the hold
/// expired or was released.
async fn confirm_hold(
    Authorised(s): Authorised,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?.to_string();
    let c: ConfirmIn = parse_body(&body)?;
    let name =
        text("name", Some(c.name), 200)?.ok_or_else(|| ApiError::field("name", "required"))?;
    let email = email(c.email)?;
    let phone = match text("phone", c.phone, 40)? {
        Some(p) => Some(phone_number(&s, "phone", &p)?),
        None => None,
    };
    let tz = timezone("timezone", c.timezone)?;
    if email.is_none() && phone.is_none() {
        return Err(ApiError::field(
            "phone",
            "an email or a phone number is required",
        ));
    }
    // The attendee becomes (or updates) a contact, keyed by phone — only if
    // the booking is made: a missing, expired or lost hold writes nothing.
    let contact = phone.as_ref().map(|p| NewContact {
        phone_e164: p.to_pii(),
        name: Some(Pii::new(name.clone())),
        email: email.clone(),
        timezone: tz.map(|t| t.name().to_string()),
    });
    let attendee = Attendee {
        name: Pii::new(name),
        email,
        phone,
        timezone: tz,
        contact_id: None,
    };
    let booking = match &contact {
        None => s.calendar.confirm(&id, &attendee).await?,
        Some(c) => {
            let (booking, written) = s.calendar.confirm_with_contact(&id, &attendee, c).await?;
            if !written {
                // A remote calendar booked it; the contact follows. The
                // booking stands even if this fails, so report it booked.
                if let Err(e) = s.store.upsert_contact(c, s.clock.now()).await {
                    tracing::error!(error = %e, booking = %booking.id, "booked, but the attendee's contact was not saved");
                }
            }
            booking
        }
    };
    // The confirmation text to the attendee (through the outbox; off unless
    // `[twilio] sms_from` is set). The booking stands whatever happens here.
    if let (Some(n), Some(p)) = (&s.notify, &attendee.phone) {
        n.enqueue_booking_followups(&booking, p.as_str(), attendee.name.expose(), s.clock.now())
            .await;
    }
    Ok((StatusCode::CREATED, Json(booking)).into_response())
}

/// `DELETE /api/bookings/{id}` → 204.
async fn cancel_booking(
    Authorised(s): Authorised,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    s.calendar.cancel(path_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(token: Option<&str>) -> ApiState {
        ApiState {
            token: token.map(|t| Secret::new(t.to_string())),
            services: None,
        }
    }

    #[test]
    fn no_token_configured_means_nobody_is_authorised() {
        let s = state(None);
        assert!(!s.authorised(Some(&HeaderValue::from_static("Bearer "))));
        assert!(!s.authorised(None));
        assert!(!ApiState::default().authorised(Some(&HeaderValue::from_static("Bearer x"))));
    }

    #[test]
    fn bearer_token_must_match_exactly() {
        let s = state(Some("s3cret"));
        assert!(s.authorised(Some(&HeaderValue::from_static("Bearer s3cret"))));
        assert!(s.authorised(Some(&HeaderValue::from_static("bearer s3cret"))));
        assert!(!s.authorised(Some(&HeaderValue::from_static("Bearer s3cre"))));
        assert!(!s.authorised(Some(&HeaderValue::from_static("Basic s3cret"))));
        assert!(!s.authorised(Some(&HeaderValue::from_static("s3cret"))));
    }

    #[test]
    fn white_space_around_the_token_is_ignored_inside_it_is_not() {
        let s = state(Some("s3cret"));
        for ok in [
            "Bearer   s3cret",
            "  Bearer s3cret  ",
            "Bearer\ts3cret",
            "Bearer s3cret\t",
        ] {
            assert!(
                s.authorised(Some(&HeaderValue::from_str(ok).unwrap())),
                "{ok:?}"
            );
        }
        for bad in [
            "Bearer s3 cret",
            "Bearer s3cret x",
            "Bearers3cret",
            "Bearer",
            "Bearer  ",
        ] {
            assert!(
                !s.authorised(Some(&HeaderValue::from_str(bad).unwrap())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON;charset=\"UTF-8\"",
            "application/json ;",
        ] {
            assert!(is_json(Some(&HeaderValue::from_static(ok))), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/jsonx",
            "application/json-seq",
            "application/json; charset=latin1",
            "application/problem+json",
            "",
        ] {
            assert!(!is_json(Some(&HeaderValue::from_static(bad))), "{bad}");
        }
        assert!(!is_json(None));
    }

    #[test]
    fn body_errors_name_the_field() {
        let e = parse_body::<LeadIn>(&Bytes::from_static(b"{\"name\":\"x\"}"))
            .err()
            .expect("an error");
        assert_eq!(e.field.as_deref(), Some("phone"));
        let e = parse_body::<LeadIn>(&Bytes::from_static(b"{\"phone\":\"1\",\"phon\":2}"))
            .err()
            .expect("an error");
        assert_eq!(e.field.as_deref(), Some("phon"));
        let e = parse_body::<LeadIn>(&Bytes::from_static(b"{\"phone\":5}"))
            .err()
            .expect("an error");
        assert_eq!(e.field.as_deref(), Some("phone"));
        let e = parse_body::<LeadIn>(&Bytes::from_static(b"not json"))
            .err()
            .expect("an error");
        assert_eq!(e.field.as_deref(), Some("(body)"));
    }

    #[test]
    fn emails() {
        assert!(email(Some("a@b.co".into())).is_ok());
        assert!(email(Some("".into())).unwrap().is_none());
        for bad in ["a@b", "@b.co", "a b@c.co", "ab.co", "a@@b.co"] {
            assert!(email(Some(bad.into())).is_err(), "{bad}");
        }
    }
}
