//! The Cal.com v2 calendar against a local mock server that speaks Cal.com's
//! wire format: envelopes, per-family `cal-api-version`, 422 for a taken slot,
//! 5-minute default reservations, 429 with `Retry-After`.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Datelike, Timelike, Utc};
use common::t;
use frontdesk::booking::{
    BookingError, CalcomCalendar, Calendar, CalendarConfig, CalendarProvider, OwnerConfig, SlotKey,
    WeekHours,
};
use frontdesk::clock::{Clock, ManualClock, RecordingSleeper};
use frontdesk::pii::Secret;
use serde_json::{json, Value};

const KEY: &str = "cal_test_key";

#[derive(Default)]
struct MockState {
    reservations: HashMap<String, (i64, DateTime<Utc>, DateTime<Utc>)>,
    bookings: HashMap<String, (i64, DateTime<Utc>, bool)>,
    /// Answer this many requests with 429 first.
    throttle: u32,
    /// Answer this many GETs with 500 first.
    fail_gets: u32,
    /// (method, path, cal-api-version, body)
    log: Vec<(String, String, String, Value)>,
}

#[derive(Clone)]
struct Mock {
    clock: Arc<ManualClock>,
    state: Arc<Mutex<MockState>>,
}

fn envelope(status: StatusCode, code: &str, message: &str, path: &str) -> Response {
    (
        status,
        Json(
            json!({"status": "error", "timestamp": "2025-10-13T08:00:00.000Z", "path": path,
                    "error": {"code": code, "message": message}}),
        ),
    )
        .into_response()
}

/// Weekdays 09:00–17:00 UTC, 30-minute slots, event types 123 and 456.
fn on_grid(start: DateTime<Utc>) -> bool {
    start.weekday().num_days_from_monday() < 5
        && (9..17).contains(&start.hour())
        && (start.minute() == 0 || start.minute() == 30)
        && start.second() == 0
}

fn taken(s: &MockState, et: i64, start: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    s.reservations
        .values()
        .any(|&(e, st, until)| e == et && st == start && until > now)
        || s.bookings
            .values()
            .any(|&(e, st, live)| e == et && st == start && live)
}

async fn handle(
    State(m): State<Mock>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let version = headers
        .get("cal-api-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let json_body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let now = m.clock.now();
    let mut s = m.state.lock().unwrap();
    s.log.push((
        method.to_string(),
        path.clone(),
        version.clone(),
        json_body.clone(),
    ));
    if s.throttle > 0 {
        s.throttle -= 1;
        let mut r = envelope(
            StatusCode::TOO_MANY_REQUESTS,
            "ThrottlerException",
            "Too Many Requests",
            &path,
        );
        r.headers_mut().insert("retry-after", "2".parse().unwrap());
        return r;
    }
    if method == Method::GET && s.fail_gets > 0 {
        s.fail_gets -= 1;
        return envelope(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerErrorException",
            "boom",
            &path,
        );
    }
    let want = if path.starts_with("/v2/bookings") {
        "2024-08-13"
    } else {
        "2024-09-04"
    };
    if version != want {
        // Without the header Cal.com silently serves legacy shapes; make that loud.
        return envelope(
            StatusCode::BAD_REQUEST,
            "BadRequestException",
            "legacy cal-api-version",
            &path,
        );
    }
    let authed = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {KEY}"));
    if !(authed || (method == Method::GET && path == "/v2/slots")) {
        return envelope(
            StatusCode::UNAUTHORIZED,
            "UnauthorizedException",
            "Invalid API key",
            &path,
        );
    }
    let event_ok = |et: i64| et == 123 || et == 456;
    let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), seg.as_slice()) {
        ("GET", ["v2", "slots"]) => {
            let q: HashMap<String, String> =
                uri.query().map(serde_urlencoded_parse).unwrap_or_default();
            let (Some(et), Some(start), Some(end)) = (
                q.get("eventTypeId").and_then(|v| v.parse::<i64>().ok()),
                q.get("start")
                    .and_then(|v| DateTime::parse_from_rfc3339(v).ok()),
                q.get("end")
                    .and_then(|v| DateTime::parse_from_rfc3339(v).ok()),
            ) else {
                return envelope(
                    StatusCode::BAD_REQUEST,
                    "BadRequestException",
                    "bad range",
                    &path,
                );
            };
            let tz: chrono_tz::Tz = q
                .get("timeZone")
                .and_then(|z| z.parse().ok())
                .unwrap_or(chrono_tz::UTC);
            let mut days: serde_json::Map<String, Value> = serde_json::Map::new();
            let mut cur = start.with_timezone(&Utc);
            let cur_min = cur.minute();
            cur = cur + chrono::Duration::minutes(((30 - cur_min % 30) % 30) as i64)
                - chrono::Duration::seconds(cur.second() as i64);
            while cur < end.with_timezone(&Utc) {
                if on_grid(cur) && !taken(&s, et, cur, now) {
                    let local = cur.with_timezone(&tz);
                    let key = local.format("%Y-%m-%d").to_string();
                    let entry = days.entry(key).or_insert_with(|| json!([]));
                    if let Value::Array(a) = entry {
                        a.push(
                            json!({"start": local.format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string()}),
                        );
                    }
                }
                cur += chrono::Duration::minutes(30);
            }
            Json(json!({"status": "success", "data": days})).into_response()
        }
        ("POST", ["v2", "slots", "reservations"]) => {
            let et = json_body["eventTypeId"].as_i64().unwrap_or(0);
            if !event_ok(et) {
                return envelope(
                    StatusCode::NOT_FOUND,
                    "NotFoundException",
                    "event type not found",
                    &path,
                );
            }
            let Some(start) = json_body["slotStart"]
                .as_str()
                .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
            else {
                return envelope(
                    StatusCode::BAD_REQUEST,
                    "BadRequestException",
                    "bad slotStart",
                    &path,
                );
            };
            let start = start.with_timezone(&Utc);
            if !on_grid(start) {
                return envelope(
                    StatusCode::BAD_REQUEST,
                    "BadRequestException",
                    "not an available slot",
                    &path,
                );
            }
            if taken(&s, et, start, now) {
                return envelope(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "UnprocessableEntityException",
                    "This time slot is already reserved by another user",
                    &path,
                );
            }
            let minutes = json_body["reservationDuration"].as_i64().unwrap_or(5);
            let until = now + chrono::Duration::minutes(minutes);
            let uid = uuid::Uuid::new_v4().to_string();
            s.reservations.insert(uid.clone(), (et, start, until));
            (StatusCode::CREATED, Json(json!({"status": "success", "data": {
                "eventTypeId": et, "slotStart": start.to_rfc3339(), "slotEnd": (start + chrono::Duration::minutes(30)).to_rfc3339(),
                "slotDuration": 30, "reservationUid": uid, "reservationDuration": minutes,
                "reservationUntil": until.to_rfc3339()}}))).into_response()
        }
        ("GET", ["v2", "slots", "reservations", uid]) => match s.reservations.get(*uid) {
            Some(&(et, start, until)) if until > now => Json(json!({"status": "success", "data": {
                "eventTypeId": et, "slotStart": start.to_rfc3339(), "reservationUid": uid,
                "reservationUntil": until.to_rfc3339()}}))
            .into_response(),
            _ => envelope(
                StatusCode::NOT_FOUND,
                "NotFoundException",
                "reservation not found",
                &path,
            ),
        },
        ("DELETE", ["v2", "slots", "reservations", uid]) => match s.reservations.remove(*uid) {
            Some(_) => Json(json!({"status": "success"})).into_response(),
            None => envelope(
                StatusCode::NOT_FOUND,
                "NotFoundException",
                "reservation not found",
                &path,
            ),
        },
        ("POST", ["v2", "bookings"]) => {
            let et = json_body["eventTypeId"].as_i64().unwrap_or(0);
            let start = json_body["start"]
                .as_str()
                .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
                .map(|d| d.with_timezone(&Utc));
            let att = &json_body["attendee"];
            let Some(start) = start.filter(|_| {
                event_ok(et)
                    && att["name"].is_string()
                    && att["timeZone"].is_string()
                    && (att["email"].is_string() || att["phoneNumber"].is_string())
            }) else {
                return envelope(
                    StatusCode::BAD_REQUEST,
                    "BadRequestException",
                    "invalid booking input",
                    &path,
                );
            };
            if s.bookings
                .values()
                .any(|&(e, st, live)| e == et && st == start && live)
            {
                return envelope(
                    StatusCode::BAD_REQUEST,
                    "BadRequestException",
                    "User either already has booking at this time or is not available",
                    &path,
                );
            }
            let uid = uuid::Uuid::new_v4().to_string();
            s.bookings.insert(uid.clone(), (et, start, true));
            (StatusCode::CREATED, Json(json!({"status": "success", "data": {
                "id": s.bookings.len(), "uid": uid, "title": "30 min", "status": "accepted",
                "start": start.to_rfc3339(), "end": (start + chrono::Duration::minutes(30)).to_rfc3339(),
                "duration": 30, "eventType": {"id": et, "slug": "30min"}}}))).into_response()
        }
        ("POST", ["v2", "bookings", uid, "cancel"]) => match s.bookings.get_mut(*uid) {
            Some(b) => {
                b.2 = false;
                Json(json!({"status": "success", "data": {"uid": uid, "status": "cancelled"}}))
                    .into_response()
            }
            None => envelope(
                StatusCode::NOT_FOUND,
                "NotFoundException",
                "booking not found",
                &path,
            ),
        },
        _ => envelope(
            StatusCode::NOT_FOUND,
            "NotFoundException",
            "no route",
            &path,
        ),
    }
}

fn serde_urlencoded_parse(q: &str) -> HashMap<String, String> {
    reqwest::Url::parse(&format!("http://x/?{q}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

struct Fixture {
    cal: CalcomCalendar,
    clock: Arc<ManualClock>,
    state: Arc<Mutex<MockState>>,
    sleeper: Arc<RecordingSleeper>,
    cfg: CalendarConfig,
}

async fn fixture(key: &str, tweak: impl FnOnce(&mut CalendarConfig)) -> Fixture {
    let clock = Arc::new(ManualClock::new(t("2025-10-13T08:00:00Z")));
    let state = Arc::new(Mutex::new(MockState::default()));
    let mock = Mock {
        clock: clock.clone(),
        state: state.clone(),
    };
    let app = axum::Router::new().fallback(handle).with_state(mock);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let owner = |id: &str, et| OwnerConfig {
        id: id.into(),
        name: id.into(),
        timezone: "Europe/London".into(),
        hours: WeekHours::weekdays("09:00-17:00"),
        calcom_event_type_id: Some(et),
    };
    let mut cfg = CalendarConfig {
        provider: CalendarProvider::Calcom,
        owners: vec![owner("alex", 123), owner("sam", 456)],
        ..CalendarConfig::default()
    };
    cfg.calcom.base_url = format!("http://{addr}");
    tweak(&mut cfg);
    let sleeper = Arc::new(RecordingSleeper::default());
    let cal = CalcomCalendar::new(
        &cfg,
        Secret::new(key.to_string()),
        clock.clone(),
        sleeper.clone(),
    )
    .unwrap();
    Fixture {
        cal,
        clock,
        state,
        sleeper,
        cfg,
    }
}

#[tokio::test]
async fn calcom_passes_the_calendar_contract() {
    let f = fixture(KEY, |_| {}).await;
    common::calendar_contract(&f.cal, &f.clock, "alex").await;
    let s = f.state.lock().unwrap();
    // Every endpoint family carried its own cal-api-version (the mock refuses
    // anything else), and every booking was followed by deleting its hold.
    assert!(s.log.iter().all(|(_, p, v, _)| v
        == if p.starts_with("/v2/bookings") {
            "2024-08-13"
        } else {
            "2024-09-04"
        }));
    let posts: Vec<usize> = s
        .log
        .iter()
        .enumerate()
        .filter(|(_, l)| l.0 == "POST" && l.1 == "/v2/bookings")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(posts.len(), 2);
    for i in posts {
        assert_eq!(s.log[i + 1].0, "DELETE");
        assert!(s.log[i + 1].1.starts_with("/v2/slots/reservations/"));
    }
    assert!(s.reservations.is_empty() || s.reservations.values().all(|r| r.2 <= f.clock.now()));
}

#[tokio::test]
async fn reservations_default_to_five_minutes_unless_configured() {
    let f = fixture(KEY, |_| {}).await;
    let key = SlotKey {
        owner: "alex".into(),
        start: t("2025-10-14T10:00:00Z"),
    };
    let h = f.cal.hold(&key, Duration::from_secs(90)).await.unwrap();
    assert_eq!(h.expires_at, t("2025-10-13T08:05:00Z"));
    assert_eq!(h.end, t("2025-10-14T10:30:00Z"));
    let body = f.state.lock().unwrap().log.last().unwrap().3.clone();
    assert_eq!(
        body,
        json!({"eventTypeId": 123, "slotStart": "2025-10-14T10:00:00Z"})
    );

    let f = fixture(KEY, |c| c.calcom.send_reservation_duration = true).await;
    let h = f.cal.hold(&key, Duration::from_secs(90)).await.unwrap();
    assert_eq!(
        h.expires_at,
        t("2025-10-13T08:02:00Z"),
        "90 s rounds up to 2 minutes"
    );
    let body = f.state.lock().unwrap().log.last().unwrap().3.clone();
    assert_eq!(body["reservationDuration"], 2);
}

#[tokio::test]
async fn rate_limits_are_retried_after_retry_after_then_reported() {
    let f = fixture(KEY, |_| {}).await;
    f.state.lock().unwrap().throttle = 2;
    let slots = f
        .cal
        .available_slots("alex", None, 1, chrono_tz::UTC)
        .await
        .unwrap();
    assert_eq!(slots.len(), 16);
    assert_eq!(f.sleeper.waits(), vec![Duration::from_secs(2); 2]);
    // POSTs are retried on 429 too (a 429 was never processed).
    f.state.lock().unwrap().throttle = 1;
    let key = SlotKey {
        owner: "sam".into(),
        start: slots[0].start,
    };
    f.cal.hold(&key, Duration::from_secs(90)).await.unwrap();
    // Past the retry budget (2): RateLimited with the server's wait.
    f.state.lock().unwrap().throttle = 10;
    let e = f
        .cal
        .available_slots("alex", None, 1, chrono_tz::UTC)
        .await
        .unwrap_err();
    assert!(
        matches!(e, BookingError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(2)),
        "{e:?}"
    );
    assert_eq!(f.state.lock().unwrap().throttle, 7, "1 try + 2 retries");
}

#[tokio::test]
async fn errors_are_typed() {
    let f = fixture("cal_wrong", |_| {}).await;
    let key = SlotKey {
        owner: "alex".into(),
        start: t("2025-10-14T10:00:00Z"),
    };
    match f.cal.hold(&key, Duration::from_secs(90)).await {
        Err(BookingError::Remote {
            status: Some(401),
            code,
            transient: false,
            ..
        }) => assert_eq!(code, "UnauthorizedException"),
        other => panic!("{other:?}"),
    }
    let f = fixture(KEY, |_| {}).await;
    let off_grid = SlotKey {
        owner: "alex".into(),
        start: t("2025-10-14T10:10:00Z"),
    };
    assert!(matches!(
        f.cal.hold(&off_grid, Duration::from_secs(90)).await,
        Err(BookingError::NotASlot)
    ));
    assert!(matches!(
        f.cal
            .hold(
                &SlotKey {
                    owner: "zed".into(),
                    start: key.start
                },
                Duration::from_secs(90)
            )
            .await,
        Err(BookingError::UnknownOwner(_))
    ));
    // A 500 on a read is retried; past the budget it is a transient error.
    f.state.lock().unwrap().fail_gets = 1;
    assert!(f
        .cal
        .available_slots("alex", None, 1, chrono_tz::UTC)
        .await
        .is_ok());
    f.state.lock().unwrap().fail_gets = 5;
    assert!(matches!(
        f.cal.available_slots("alex", None, 1, chrono_tz::UTC).await,
        Err(BookingError::Remote {
            status: Some(500),
            transient: true,
            ..
        })
    ));
    // Another node (no memory of the hold) confirms it via GET reservation.
    f.state.lock().unwrap().fail_gets = 0;
    let h = f.cal.hold(&key, Duration::from_secs(90)).await.unwrap();
    let node2 = CalcomCalendar::new(
        &f.cfg,
        Secret::new(KEY.into()),
        f.clock.clone(),
        f.sleeper.clone(),
    )
    .unwrap();
    assert!(matches!(
        node2.confirm("no-such-uid", &common::attendee()).await,
        Err(BookingError::HoldNotFound)
    ));
    let b = node2.confirm(&h.id, &common::attendee()).await.unwrap();
    assert_eq!((b.owner.as_str(), b.start), ("alex", key.start));
    assert!(f
        .state
        .lock()
        .unwrap()
        .log
        .iter()
        .any(|l| l.0 == "GET" && l.1 == format!("/v2/slots/reservations/{}", h.id)));
}

/// Over the API with Cal.com as the calendar: the attendee's contact is
/// written only after Cal.com accepted the booking; a missing or expired
/// reservation changes no contact.
#[tokio::test]
async fn api_confirm_over_calcom_writes_the_contact_only_after_booking() {
    let f = fixture(KEY, |_| {}).await;
    let db = common::TestDb::sqlite().await;
    let mut config = common::config();
    config.calendar = f.cfg.clone();
    let env = frontdesk::config::Env::from_pairs([
        (frontdesk::config::env::DATABASE_URL, db.url.as_str()),
        (frontdesk::config::env::API_TOKEN, common::TOKEN),
        (frontdesk::config::env::CALCOM_API_KEY, KEY),
    ]);
    let app = frontdesk::app::App::build(config, &env, f.clock.clone())
        .await
        .expect("app");
    let store = app.services.store.clone();
    let state = frontdesk::http::AppState::new(&app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, frontdesk::http::router(state)).await;
    });
    let http = reqwest::Client::new();
    let post = |path: String, body: Value| {
        let req = http
            .post(format!("{base}{path}"))
            .bearer_auth(common::TOKEN)
            .json(&body);
        async move {
            let resp = req.send().await.expect("request");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let who = json!({"name": "Alex Rivera", "phone": "07700 900123"});

    let (s, body) = post("/api/holds/no-such-uid/confirm".into(), who.clone()).await;
    assert_eq!(s, 404, "{body}");
    assert_eq!(store.count_contacts().await.unwrap(), 0);

    let (s, hold) = post(
        "/api/holds".into(),
        json!({"owner": "alex", "start": "2025-10-14T09:00:00Z"}),
    )
    .await;
    assert_eq!(s, 201, "{hold}");
    let id = hold["id"].as_str().expect("id").to_string();
    f.clock.advance(chrono::Duration::minutes(6));
    let (s, body) = post(format!("/api/holds/{id}/confirm"), who.clone()).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (409, Some("hold_expired")),
        "{body}"
    );
    assert_eq!(store.count_contacts().await.unwrap(), 0);

    let (s, hold) = post(
        "/api/holds".into(),
        json!({"owner": "alex", "start": "2025-10-14T09:30:00Z"}),
    )
    .await;
    assert_eq!(s, 201, "{hold}");
    let id = hold["id"].as_str().expect("id").to_string();
    let (s, booking) = post(format!("/api/holds/{id}/confirm"), who.clone()).await;
    assert_eq!(s, 201, "{booking}");
    let c = store
        .contact_by_phone("+447700900123")
        .await
        .unwrap()
        .expect("contact written after the booking");
    assert_eq!(
        c.name.as_ref().map(|n| n.expose().as_str()),
        Some("Alex Rivera")
    );
    assert_eq!(store.count_contacts().await.unwrap(), 1);
}
