//! CRM writes through the outbox against a mock HubSpot: a lead posted to
//! `/api/ingest/lead` becomes a contact, a note and (tier B/C) a call-back
//! task due by its tier's SLA; a booking confirmed through the API becomes a
//! meeting. A HubSpot outage of an hour loses nothing, and when HubSpot
//! recovers each write is delivered exactly once.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::Duration;
use common::{t, TestDb};
use frontdesk::clock::ManualClock;
use frontdesk::config::{env, Config, Env};
use frontdesk::notify::kind;
use frontdesk::notify::worker::Worker;
use frontdesk::store::OutboxStatus;
use serde_json::{json, Value};

const TOKEN: &str = "pat-sync";
const API: &str = "api-token-1";

#[derive(Default)]
struct Hub {
    contacts: Vec<(String, HashMap<String, String>)>,
    /// (object kind, body) of each engagement created.
    engagements: Vec<(String, Value)>,
    down: bool,
    refused_while_down: usize,
}

type HubMock = Arc<Mutex<Hub>>;

fn object(id: &str, p: &HashMap<String, String>) -> Value {
    json!({"id": id, "properties": p, "createdAt": "2026-12-01T10:00:00Z",
           "updatedAt": "2026-12-01T10:00:00Z", "archived": false})
}

async fn hub(
    State(m): State<HubMock>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = m.lock().unwrap();
    if s.down {
        s.refused_while_down += 1;
        return (StatusCode::SERVICE_UNAVAILABLE, "maintenance").into_response();
    }
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"category": "INVALID_AUTHENTICATION"})),
        )
            .into_response();
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = uri.path().to_string();
    let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), seg.as_slice()) {
        ("POST", ["crm", "v3", "objects", "contacts", "search"]) => {
            let wanted: Vec<String> = body["filterGroups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["filters"].as_array().cloned().unwrap_or_default())
                .filter_map(|f| f["value"].as_str().map(str::to_string))
                .collect();
            let results: Vec<Value> = s
                .contacts
                .iter()
                .filter(|(_, p)| p.values().any(|v| wanted.contains(v)))
                .map(|(id, p)| object(id, p))
                .collect();
            Json(json!({"total": results.len(), "results": results})).into_response()
        }
        ("POST", ["crm", "v3", "objects", "contacts"]) => {
            let props: HashMap<String, String> =
                serde_json::from_value(body["properties"].clone()).unwrap_or_default();
            let id = (51 + s.contacts.len()).to_string();
            s.contacts.push((id.clone(), props.clone()));
            (StatusCode::CREATED, Json(object(&id, &props))).into_response()
        }
        ("GET", ["crm", "v3", "objects", "contacts", id]) => {
            match s.contacts.iter().find(|(i, _)| i == id) {
                Some((i, p)) => Json(object(i, p)).into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
        ("PATCH", ["crm", "v3", "objects", "contacts", id]) => {
            let props: HashMap<String, String> =
                serde_json::from_value(body["properties"].clone()).unwrap_or_default();
            match s.contacts.iter_mut().find(|(i, _)| i == id) {
                Some((i, p)) => {
                    p.extend(props);
                    Json(object(i, p)).into_response()
                }
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
        ("POST", ["crm", "v3", "objects", kind]) => {
            let id = format!("{}", 9000 + s.engagements.len());
            s.engagements.push((kind.to_string(), body.clone()));
            (
                StatusCode::CREATED,
                Json(json!({"id": id, "properties": body["properties"]})),
            )
                .into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn config(hub_base: &str) -> Config {
    let text = format!(
        r#"
        [crm]
        provider = "hubspot"
        [crm.hubspot]
        base_url = "{hub_base}"
        max_retries = 0
        "#
    );
    let mut c = Config::from_toml(&text).expect("config");
    c.storage.max_connections = 5;
    c
}

async fn sync_survives_an_outage(db: TestDb) {
    let m = HubMock::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hub_base = format!("http://{}", listener.local_addr().unwrap());
    let router = Router::new().fallback(hub).with_state(m.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    // Tuesday 10:00 London: in hours.
    let clock = Arc::new(ManualClock::new(t("2026-12-01T10:00:00Z")));
    let env = Env::from_pairs([(env::DATABASE_URL, db.url.as_str())])
        .with(env::API_TOKEN, API)
        .with(env::HUBSPOT_TOKEN, TOKEN);
    let app = common::serve_env(config(&hub_base), env, clock.clone(), Some(API)).await;
    let notify = app
        .services
        .notify
        .clone()
        .expect("notify with a remote CRM");
    let worker = Worker::new(notify);

    m.lock().unwrap().down = true;
    let (code, body) = app
        .post(
            "/api/ingest/lead",
            json!({"phone": "07700 900123", "name": "Jane Doe", "tier": "B",
                   "call_sid": "CAcrm1", "intent": "new_enquiry_demo",
                   "notes": "Wants a demo for 40 seats."}),
        )
        .await;
    assert_eq!(code, 201, "{body}");

    // An hour of outage in virtual time: retried with back-off, nothing lost.
    for _ in 0..12 {
        worker.run_once().await.unwrap();
        clock.advance(Duration::minutes(5));
    }
    assert!(m.lock().unwrap().refused_while_down > 3);
    for k in [kind::CRM_NOTE, kind::CRM_TASK] {
        let items = app.services.store.outbox_items(k).await.unwrap();
        assert_eq!(items.len(), 1, "{k}");
        assert_eq!(items[0].status, OutboxStatus::Pending, "{k} still pending");
        assert!(items[0].last_error.is_some());
    }

    m.lock().unwrap().down = false;
    clock.advance(Duration::minutes(10));
    for _ in 0..10 {
        worker.run_once().await.unwrap();
    }
    clock.advance(Duration::hours(3));
    for _ in 0..5 {
        worker.run_once().await.unwrap();
    }
    {
        let s = m.lock().unwrap();
        assert_eq!(s.contacts.len(), 1, "one contact");
        assert_eq!(
            s.contacts[0].1.get("phone_e164").map(String::as_str),
            Some("+447700900123")
        );
        let kinds: Vec<&str> = s.engagements.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            kinds.iter().filter(|k| **k == "notes").count(),
            1,
            "{kinds:?}"
        );
        assert_eq!(
            kinds.iter().filter(|k| **k == "tasks").count(),
            1,
            "{kinds:?}"
        );
        let task = &s.engagements.iter().find(|(k, _)| k == "tasks").unwrap().1;
        // Tier B in hours: due five minutes after the call.
        assert_eq!(
            task["properties"]["hs_timestamp"],
            "2026-12-01T10:05:00.000Z"
        );
        let note = &s.engagements.iter().find(|(k, _)| k == "notes").unwrap().1;
        assert!(note["properties"]["hs_note_body"]
            .as_str()
            .unwrap_or_default()
            .contains("40 seats"));
    }

    // A booking made through the API becomes one meeting.
    let (code, hold) = app
        .post(
            "/api/holds",
            json!({"owner": "alex", "start": "2026-12-02T15:00:00Z"}),
        )
        .await;
    assert_eq!(code, 201, "{hold}");
    let id = hold["id"].as_str().unwrap();
    let (code, _) = app
        .post(
            &format!("/api/holds/{id}/confirm"),
            json!({"name": "Jane Doe", "phone": "+447700900123"}),
        )
        .await;
    assert_eq!(code, 201);
    for _ in 0..3 {
        worker.run_once().await.unwrap();
    }
    let s = m.lock().unwrap();
    let meetings: Vec<&Value> = s
        .engagements
        .iter()
        .filter(|(k, _)| k == "meetings")
        .map(|(_, b)| b)
        .collect();
    assert_eq!(meetings.len(), 1);
    assert_eq!(s.contacts.len(), 1, "the same contact");
}
on_both_databases!(crm_outage_then_recovery, super::sync_survives_an_outage);
