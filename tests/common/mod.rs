//! Shared test helpers: isolated databases (a temp SQLite file, or a fresh
//! PostgreSQL schema dropped afterwards), an API server on a loopback port,
//! and the trait-level contract suites every Calendar and Crm must pass.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use frontdesk::booking::{Attendee, BookingError, Calendar, SlotKey};
use frontdesk::clock::{Clock, ManualClock};
use frontdesk::config::{env, Config, Env};
use frontdesk::crm::{CallLog, ContactInput, Crm, Direction, Meeting, Task};
use frontdesk::http::api::Services;
use frontdesk::phone;
use frontdesk::pii::Pii;
use serde_json::Value;
use sqlx::Connection;

/// The PostgreSQL the tests use.
pub fn pg_url() -> String {
    std::env::var("FRONTDESK_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// `2025-10-13T08:00:00Z` style literal.
pub fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("test timestamp")
        .with_timezone(&Utc)
}

/// An isolated database, removed on drop.
pub struct TestDb {
    /// The URL to connect to.
    pub url: String,
    kind: Kind,
}

enum Kind {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { schema: String },
}

impl TestDb {
    /// A fresh SQLite file in a temp dir.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/frontdesk.db", dir.path().display());
        TestDb {
            url,
            kind: Kind::Sqlite(dir),
        }
    }

    /// A fresh schema on the test PostgreSQL; connections to `url` use it.
    pub async fn postgres() -> TestDb {
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut c = sqlx::PgConnection::connect(&pg_url())
            .await
            .expect("PostgreSQL at FRONTDESK_TEST_PG_URL");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut c)
            .await
            .expect("create schema");
        let base = pg_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        TestDb {
            url: format!("{base}{sep}options=-c%20search_path%3D{schema}"),
            kind: Kind::Postgres { schema },
        }
    }

    /// Which backend.
    pub fn is_postgres(&self) -> bool {
        matches!(self.kind, Kind::Postgres { .. })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Kind::Postgres { schema } = &self.kind {
            let schema = schema.clone();
            // Drop can't await: use a private runtime on a plain thread.
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async {
                    if let Ok(mut c) = sqlx::PgConnection::connect(&pg_url()).await {
                        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                            .execute(&mut c)
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

/// Run an async test body once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($name:ident, $body:path) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $body($crate::common::TestDb::sqlite().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $body($crate::common::TestDb::postgres().await).await
            }
        }
    };
}

/// The test config: the demo business with a small pool.
pub fn config() -> Config {
    let mut c = Config::default();
    c.storage.max_connections = 5;
    c
}

pub const TOKEN: &str = "test-token-123";

/// A running API server.
pub struct App {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub http: reqwest::Client,
    pub services: Services,
    pub token: Option<String>,
}

/// Build the app for `config` on `url` through the composition root, then serve it.
pub async fn spawn_app(config: Config, url: &str, clock: Arc<ManualClock>) -> App {
    serve(config, url, clock, Some(TOKEN)).await
}

/// The one place that builds `AppState` for tests: [`frontdesk::app::App::build`]
/// with an environment naming the database and (optionally) the API token.
pub async fn serve(config: Config, url: &str, clock: Arc<ManualClock>, token: Option<&str>) -> App {
    let mut env = Env::from_pairs([(env::DATABASE_URL, url)]);
    if let Some(t) = token {
        env = env.with(env::API_TOKEN, t);
    }
    serve_env(config, env, clock, token).await
}

/// [`serve`] with a whole environment of the test's own (e.g. with
/// `TWILIO_AUTH_TOKEN`); `token` is the API token requests carry.
pub async fn serve_env(
    config: Config,
    env: Env,
    clock: Arc<ManualClock>,
    token: Option<&str>,
) -> App {
    let app = frontdesk::app::App::build(config, &env, clock)
        .await
        .expect("app");
    let services = app.services.clone();
    let state = frontdesk::http::AppState::new(&app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = frontdesk::http::router(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    App {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        services,
        token: token.map(str::to_string),
    }
}

impl App {
    fn auth(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn send(&self, r: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = self.auth(r).send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    pub async fn post_raw(&self, path: &str, body: &'static str) -> (u16, Value) {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }
}

fn gb(s: &str) -> phone::E164 {
    phone::normalise(s, phonenumber::country::Id::GB).expect("test number")
}

/// The contract every [`Calendar`] keeps. `owner` must have at least two free
/// slots from its next business day; `clock` is the calendar's clock.
pub async fn calendar_contract(cal: &dyn Calendar, clock: &ManualClock, owner: &str) {
    let utc: chrono_tz::Tz = chrono_tz::UTC;
    let slots = cal
        .available_slots(owner, None, 7, utc)
        .await
        .expect("slots");
    assert!(slots.len() >= 2, "need two free slots, got {}", slots.len());
    assert!(slots.windows(2).all(|w| w[0].start < w[1].start));
    assert!(slots.iter().all(|s| s.start > clock.now()));
    let key = SlotKey {
        owner: owner.to_string(),
        start: slots[0].start,
    };
    let ttl = Duration::from_secs(90);

    // One holder at a time.
    let h1 = cal.hold(&key, ttl).await.expect("first hold");
    assert_eq!(h1.start, key.start);
    assert!(h1.expires_at > clock.now());
    assert!(matches!(
        cal.hold(&key, ttl).await,
        Err(BookingError::Taken)
    ));
    let after = cal
        .available_slots(owner, None, 7, utc)
        .await
        .expect("slots");
    assert!(
        after.iter().all(|s| s.start != key.start),
        "held slot offered"
    );

    // Release frees it at once, and releasing twice is fine.
    cal.release(&h1.id).await.expect("release");
    cal.release(&h1.id).await.expect("release again");
    let h2 = cal.hold(&key, ttl).await.expect("hold after release");
    assert_ne!(h2.id, h1.id);
    assert!(matches!(
        cal.confirm(&h1.id, &attendee()).await,
        Err(BookingError::HoldReleased | BookingError::HoldNotFound | BookingError::HoldExpired)
    ));

    // Confirm books it; a booked slot can't be held, a hold can't be booked twice.
    let b = cal.confirm(&h2.id, &attendee()).await.expect("confirm");
    assert_eq!((b.start, b.owner.as_str()), (key.start, owner));
    assert!(matches!(
        cal.hold(&key, ttl).await,
        Err(BookingError::Taken)
    ));
    assert!(matches!(
        cal.confirm(&h2.id, &attendee()).await,
        Err(BookingError::AlreadyConfirmed)
    ));
    let after = cal
        .available_slots(owner, None, 7, utc)
        .await
        .expect("slots");
    assert!(
        after.iter().all(|s| s.start != key.start),
        "booked slot offered"
    );

    // Cancelling frees it.
    cal.cancel(&b.id).await.expect("cancel");
    let h3 = cal.hold(&key, ttl).await.expect("hold after cancel");
    cal.release(&h3.id).await.expect("release");

    // Expiry needs no timer: move the clock, and the slot is free again.
    let key2 = SlotKey {
        owner: owner.to_string(),
        start: slots[1].start,
    };
    let h4 = cal.hold(&key2, ttl).await.expect("hold");
    assert!(matches!(
        cal.hold(&key2, ttl).await,
        Err(BookingError::Taken)
    ));
    clock.set(h4.expires_at + chrono::Duration::seconds(1));
    assert!(cal
        .available_slots(owner, None, 7, utc)
        .await
        .expect("slots")
        .iter()
        .any(|s| s.start == key2.start));
    assert!(matches!(
        cal.confirm(&h4.id, &attendee()).await,
        Err(BookingError::HoldExpired)
    ));
    let h5 = cal.hold(&key2, ttl).await.expect("hold after expiry");
    cal.confirm(&h5.id, &attendee()).await.expect("confirm");

    // Unknowns.
    assert!(matches!(
        cal.confirm("no-such-hold", &attendee()).await,
        Err(BookingError::HoldNotFound)
    ));
    assert!(matches!(
        cal.cancel("no-such-booking").await,
        Err(BookingError::BookingNotFound)
    ));
    assert!(matches!(
        cal.hold(
            &SlotKey {
                owner: "nobody".into(),
                start: key.start
            },
            ttl
        )
        .await,
        Err(BookingError::UnknownOwner(_))
    ));
}

/// A test attendee.
pub fn attendee() -> Attendee {
    Attendee {
        name: Pii::new("Alex Rivera".into()),
        email: Some(Pii::new("alex@example.com".into())),
        phone: Some(gb("+447700900123")),
        timezone: Some(chrono_tz::Europe::London),
        contact_id: None,
    }
}

/// The contract every [`Crm`] keeps.
pub async fn crm_contract(crm: &dyn Crm) {
    let first = gb("020 7946 0123");
    assert!(crm.lookup_by_phone(&first).await.expect("lookup").is_none());
    let c1 = crm
        .upsert(&ContactInput {
            phone: first.clone(),
            name: Some(Pii::new("Alex Rivera".into())),
            email: Some(Pii::new("alex@example.com".into())),
            timezone: Some("Europe/London".into()),
        })
        .await
        .expect("create");
    let found = crm
        .lookup_by_phone(&gb("+44 20 7946 0123"))
        .await
        .expect("lookup")
        .expect("found by another spelling");
    assert_eq!(found.id, c1.id);
    assert_eq!(
        found.name.as_ref().map(|n| n.expose().as_str()),
        Some("Alex Rivera")
    );

    // Upsert with the third spelling updates the same contact; absent fields stay.
    let c2 = crm
        .upsert(&ContactInput {
            phone: gb("442079460123"),
            name: None,
            email: Some(Pii::new("alex.rivera@example.com".into())),
            timezone: None,
        })
        .await
        .expect("update");
    assert_eq!(c2.id, c1.id);
    assert_eq!(
        c2.name.as_ref().map(|n| n.expose().as_str()),
        Some("Alex Rivera")
    );
    assert_eq!(
        c2.email.as_ref().map(|n| n.expose().as_str()),
        Some("alex.rivera@example.com")
    );

    let other = crm
        .upsert(&ContactInput {
            phone: gb("+447700900123"),
            name: Some(Pii::new("Sam Other".into())),
            email: None,
            timezone: None,
        })
        .await
        .expect("second contact");
    assert_ne!(other.id, c1.id);

    let at = t("2025-10-14T16:05:00Z");
    let note = crm
        .add_note(&c1.id, &Pii::new("AI call: wants a demo".into()), at)
        .await
        .expect("note");
    let task = crm
        .add_task(
            &c1.id,
            &Task {
                subject: "Call back".into(),
                body: None,
                due: at + chrono::Duration::minutes(5),
            },
        )
        .await
        .expect("task");
    let call = crm
        .log_call(
            &c1.id,
            &CallLog {
                title: "AI call".into(),
                body: Some(Pii::new("summary".into())),
                direction: Direction::Inbound,
                started: at,
                duration: Duration::from_secs(95),
                from: Some(first.clone()),
                to: None,
                status: "COMPLETED".into(),
            },
        )
        .await
        .expect("call");
    let meeting = crm
        .add_meeting(
            &c1.id,
            &Meeting {
                title: "Demo".into(),
                body: None,
                start: at + chrono::Duration::days(1),
                end: at + chrono::Duration::days(1) + chrono::Duration::minutes(30),
            },
        )
        .await
        .expect("meeting");
    let ids = [&note, &task, &call, &meeting];
    assert!(ids.iter().all(|i| !i.is_empty()));
    for (i, a) in ids.iter().enumerate() {
        for b in &ids[i + 1..] {
            assert_ne!(a, b);
        }
    }
}
