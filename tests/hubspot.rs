//! The HubSpot v3 CRM against a local mock speaking HubSpot's wire format:
//! contact search with OR-ed filter groups and calculated phone properties,
//! eventually consistent search, 409 on duplicate email, engagements with
//! association type ids, 429 with `Retry-After` and the DAILY policy.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use frontdesk::clock::RecordingSleeper;
use frontdesk::crm::hubspot::HubspotConfig;
use frontdesk::crm::{ContactInput, Crm, CrmError, HubspotCrm};
use frontdesk::phone;
use frontdesk::pii::{Pii, Secret};
use serde_json::{json, Value};

const TOKEN: &str = "pat-test";

#[derive(Default)]
struct MockState {
    contacts: Vec<(String, HashMap<String, String>)>,
    /// Contacts search cannot see yet (HubSpot's search lags behind writes).
    hidden: HashSet<String>,
    lag: bool,
    engagements: Vec<(String, Value)>,
    throttle: u32,
    policy: String,
    log: Vec<(String, String)>,
}

type Mock = Arc<Mutex<MockState>>;

fn err(status: StatusCode, category: &str, message: &str) -> Response {
    (status, Json(json!({"status": "error", "message": message, "category": category, "correlationId": "c-1"}))).into_response()
}

fn national(v: &str) -> Option<String> {
    phone::normalise(v, phonenumber::country::Id::GB)
        .ok()
        .map(|e| e.national_digits())
}

fn object(id: &str, p: &HashMap<String, String>) -> Value {
    json!({"id": id, "properties": p, "createdAt": "2025-10-13T08:00:00Z", "updatedAt": "2025-10-13T08:00:00Z", "archived": false})
}

async fn handle(
    State(m): State<Mock>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = uri.path().to_string();
    let mut s = m.lock().unwrap();
    s.log.push((method.to_string(), path.clone()));
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return err(
            StatusCode::FORBIDDEN,
            "MISSING_SCOPES",
            "This app hasn't been granted all required scopes",
        );
    }
    if s.throttle > 0 {
        s.throttle -= 1;
        let policy = if s.policy.is_empty() {
            "TEN_SECONDLY_ROLLING".to_string()
        } else {
            s.policy.clone()
        };
        let mut r = (StatusCode::TOO_MANY_REQUESTS, Json(json!({"status": "error",
            "message": "You have reached your ten_secondly_rolling limit.", "errorType": "RATE_LIMIT",
            "policyName": policy, "correlationId": "c-2", "requestId": "r-1"}))).into_response();
        r.headers_mut().insert("retry-after", "1".parse().unwrap());
        return r;
    }
    let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), seg.as_slice()) {
        ("POST", ["crm", "v3", "objects", "contacts", "search"]) => {
            let groups = body["filterGroups"].as_array().cloned().unwrap_or_default();
            if groups.len() > 5 {
                return err(
                    StatusCode::BAD_REQUEST,
                    "VALIDATION_ERROR",
                    "too many filter groups",
                );
            }
            let matches = |p: &HashMap<String, String>| {
                groups.iter().any(|g| {
                    g["filters"].as_array().into_iter().flatten().all(|f| {
                        let prop = f["propertyName"].as_str().unwrap_or("");
                        let want = f["value"].as_str().unwrap_or("");
                        let have = match prop {
                            "hs_searchable_calculated_phone_number" => {
                                p.get("phone").and_then(|v| national(v))
                            }
                            "hs_searchable_calculated_mobile_number" => {
                                p.get("mobilephone").and_then(|v| national(v))
                            }
                            other => p.get(other).cloned(),
                        };
                        f["operator"] == "EQ" && have.as_deref() == Some(want)
                    })
                })
            };
            let results: Vec<Value> = s
                .contacts
                .iter()
                .filter(|(id, p)| !s.hidden.contains(id) && matches(p))
                .map(|(id, p)| object(id, p))
                .collect();
            Json(json!({"total": results.len(), "results": results})).into_response()
        }
        ("POST", ["crm", "v3", "objects", "contacts"]) => {
            let props: HashMap<String, String> =
                serde_json::from_value(body["properties"].clone()).unwrap_or_default();
            if let Some(email) = props.get("email") {
                if let Some((id, _)) = s
                    .contacts
                    .iter()
                    .find(|(_, p)| p.get("email") == Some(email))
                {
                    return err(
                        StatusCode::CONFLICT,
                        "CONFLICT",
                        &format!("Contact already exists. Existing ID: {id}"),
                    );
                }
            }
            let id = (51 + s.contacts.len()).to_string();
            s.contacts.push((id.clone(), props.clone()));
            if s.lag {
                s.hidden.insert(id.clone());
            }
            (StatusCode::CREATED, Json(object(&id, &props))).into_response()
        }
        ("GET", ["crm", "v3", "objects", "contacts", id]) => {
            match s.contacts.iter().find(|(i, _)| i == id) {
                Some((i, p)) => Json(object(i, p)).into_response(),
                None => err(
                    StatusCode::NOT_FOUND,
                    "OBJECT_NOT_FOUND",
                    "resource not found",
                ),
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
                None => err(
                    StatusCode::NOT_FOUND,
                    "OBJECT_NOT_FOUND",
                    "resource not found",
                ),
            }
        }
        ("POST", ["crm", "v3", "objects", kind]) => {
            let type_id = match *kind {
                "notes" => 202,
                "tasks" => 204,
                "meetings" => 200,
                "calls" => 194,
                _ => return err(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", "unknown object"),
            };
            let assoc = &body["associations"][0];
            let to = assoc["to"]["id"].as_str().unwrap_or("");
            if body["properties"]["hs_timestamp"].as_str().is_none()
                || assoc["types"][0]["associationTypeId"] != type_id
                || assoc["types"][0]["associationCategory"] != "HUBSPOT_DEFINED"
            {
                return err(
                    StatusCode::BAD_REQUEST,
                    "VALIDATION_ERROR",
                    "invalid engagement",
                );
            }
            if !s.contacts.iter().any(|(i, _)| i == to) {
                return err(
                    StatusCode::NOT_FOUND,
                    "OBJECT_NOT_FOUND",
                    "association target not found",
                );
            }
            let id = format!("{}", 9000 + s.engagements.len());
            s.engagements.push((kind.to_string(), body.clone()));
            (
                StatusCode::CREATED,
                Json(json!({"id": id, "properties": body["properties"]})),
            )
                .into_response()
        }
        _ => err(StatusCode::NOT_FOUND, "NOT_FOUND", "no route"),
    }
}

async fn fixture(token: &str) -> (HubspotCrm, Mock, Arc<RecordingSleeper>) {
    let mock: Mock = Arc::new(Mutex::new(MockState::default()));
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(mock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let cfg = HubspotConfig {
        base_url: format!("http://{addr}"),
        ..HubspotConfig::default()
    };
    let sleeper = Arc::new(RecordingSleeper::default());
    let crm = HubspotCrm::new(&cfg, Secret::new(token.to_string()), sleeper.clone()).unwrap();
    (crm, mock, sleeper)
}

fn gb(s: &str) -> phone::E164 {
    phone::normalise(s, phonenumber::country::Id::GB).unwrap()
}

#[tokio::test]
async fn hubspot_passes_the_crm_contract_despite_search_lag() {
    let (crm, mock, _) = fixture(TOKEN).await;
    // Every contact created is invisible to search: only the phone → id
    // memory keeps the contract (no duplicates) true.
    mock.lock().unwrap().lag = true;
    common::crm_contract(&crm).await;
    let s = mock.lock().unwrap();
    assert_eq!(s.contacts.len(), 2, "no duplicate contacts");
    let (_, alex) = &s.contacts[0];
    assert_eq!(
        alex.get("phone_e164").map(String::as_str),
        Some("+442079460123")
    );
    assert_eq!(alex.get("firstname").map(String::as_str), Some("Alex"));
    assert_eq!(alex.get("lastname").map(String::as_str), Some("Rivera"));
    assert_eq!(
        alex.get("email").map(String::as_str),
        Some("alex.rivera@example.com")
    );
    let kinds: Vec<(&str, i64, &str)> = s
        .engagements
        .iter()
        .map(|(k, b)| {
            (
                k.as_str(),
                b["associations"][0]["types"][0]["associationTypeId"]
                    .as_i64()
                    .unwrap(),
                b["associations"][0]["to"]["id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("notes", 202, "51"),
            ("tasks", 204, "51"),
            ("calls", 194, "51"),
            ("meetings", 200, "51")
        ]
    );
    let call = &s.engagements[2].1["properties"];
    assert_eq!(call["hs_call_direction"], "INBOUND");
    assert_eq!(call["hs_call_duration"], "95000");
    assert_eq!(call["hs_call_from_number"], "+442079460123");
    assert_eq!(
        s.engagements[0].1["properties"]["hs_note_body"],
        "<p>AI call: wants a demo</p>"
    );
}

#[tokio::test]
async fn finds_contacts_entered_by_hand_and_skips_lookalikes() {
    let (crm, mock, _) = fixture(TOKEN).await;
    {
        let mut s = mock.lock().unwrap();
        // A US number with the same national digits: must not be taken for ours.
        s.contacts.push((
            "7".into(),
            HashMap::from([
                ("phone".into(), "+1 207-946-0123".into()),
                ("firstname".into(), "Decoy".into()),
            ]),
        ));
        // Typed in by a rep, free text, no E.164 property.
        s.contacts.push((
            "8".into(),
            HashMap::from([
                ("phone".into(), "(020) 7946 0123".into()),
                ("firstname".into(), "Pat".into()),
            ]),
        ));
    }
    let found = crm
        .lookup_by_phone(&gb("+442079460123"))
        .await
        .unwrap()
        .expect("found");
    assert_eq!(found.id, "8");
    assert_eq!(
        found.name.as_ref().map(|n| n.expose().as_str()),
        Some("Pat")
    );
    let c = crm
        .upsert(&ContactInput {
            phone: gb("020 7946 0123"),
            name: None,
            email: Some(Pii::new("pat@example.com".into())),
            timezone: None,
        })
        .await
        .unwrap();
    assert_eq!(c.id, "8");
    let s = mock.lock().unwrap();
    assert_eq!(s.contacts.len(), 2, "updated, not created");
    assert_eq!(
        s.contacts[1].1.get("phone_e164").map(String::as_str),
        Some("+442079460123")
    );
    assert_eq!(
        s.contacts[1].1.get("firstname").map(String::as_str),
        Some("Pat"),
        "absent name kept"
    );
}

#[tokio::test]
async fn duplicate_email_updates_the_existing_contact() {
    let (crm, mock, _) = fixture(TOKEN).await;
    mock.lock().unwrap().contacts.push((
        "60".into(),
        HashMap::from([("email".into(), "jo@example.com".into())]),
    ));
    let c = crm
        .upsert(&ContactInput {
            phone: gb("07700 900456"),
            name: Some(Pii::new("Jo".into())),
            email: Some(Pii::new("jo@example.com".into())),
            timezone: None,
        })
        .await
        .unwrap();
    assert_eq!(c.id, "60");
    let s = mock.lock().unwrap();
    assert_eq!(s.contacts.len(), 1);
    assert_eq!(
        s.contacts[0].1.get("phone_e164").map(String::as_str),
        Some("+447700900456")
    );
}

#[tokio::test]
async fn rate_limits_back_off_per_retry_after_and_daily_stops() {
    let (crm, mock, sleeper) = fixture(TOKEN).await;
    mock.lock().unwrap().throttle = 2;
    assert!(crm
        .lookup_by_phone(&gb("02079460123"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(sleeper.waits(), vec![Duration::from_secs(1); 2]);
    // Out of retries (3): RateLimited, with HubSpot's policy name.
    mock.lock().unwrap().throttle = 10;
    let e = crm.lookup_by_phone(&gb("02079460124")).await.unwrap_err();
    assert!(
        matches!(&e, CrmError::RateLimited { policy, retry_after: Some(_) } if policy == "TEN_SECONDLY_ROLLING"),
        "{e:?}"
    );
    assert_eq!(mock.lock().unwrap().throttle, 6);
    // The daily limit is not retried at all.
    let (crm, mock, sleeper) = fixture(TOKEN).await;
    {
        let mut s = mock.lock().unwrap();
        s.throttle = 1;
        s.policy = "DAILY".into();
    }
    let e = crm.lookup_by_phone(&gb("02079460123")).await.unwrap_err();
    assert!(matches!(&e, CrmError::RateLimited { policy, .. } if policy == "DAILY"));
    assert!(sleeper.waits().is_empty());
}

#[tokio::test]
async fn auth_and_unknown_contacts_are_typed_errors() {
    let (crm, _, _) = fixture("pat-wrong").await;
    match crm.lookup_by_phone(&gb("02079460123")).await {
        Err(CrmError::Remote {
            status: Some(403),
            category,
            transient: false,
            ..
        }) => assert_eq!(category, "MISSING_SCOPES"),
        other => panic!("{other:?}"),
    }
    let (crm, _, _) = fixture(TOKEN).await;
    let e = crm
        .add_note(
            "999",
            &Pii::new("x".into()),
            common::t("2025-10-13T08:00:00Z"),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, CrmError::ContactNotFound), "{e:?}");
}
