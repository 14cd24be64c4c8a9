//! The HTTP API over loopback, on SQLite and PostgreSQL: the acceptance
//! scenarios of the storage issue (one contact per person, one holder per
//! slot even across server processes, time zones and DST) and the API's
//! refusal paths (no token, bad payloads).

mod common;

use std::sync::Arc;

use common::{t, TestDb};
use frontdesk::clock::ManualClock;
use serde_json::{json, Value};

fn clock(at: &str) -> Arc<ManualClock> {
    Arc::new(ManualClock::new(t(at)))
}

/// Acceptance 1: web form, first call, re-call a week later with the number
/// written differently: one contact, three leads.
async fn same_person_three_ways_is_one_contact(db: TestDb) {
    let clock = clock("2025-10-13T08:00:00Z");
    let app = common::spawn_app(common::config(), &db.url, clock.clone()).await;
    let (s, form) = app
        .post(
            "/api/ingest/lead",
            json!({"name": "Alex Rivera", "email": "alex@example.com", "phone": "020 7946 0123",
                   "source": "web_form", "intent": "new_enquiry_demo", "tier": "C"}),
        )
        .await;
    assert_eq!(s, 201, "{form}");
    let (s, call1) = app
        .post(
            "/api/ingest/lead",
            json!({"name": "Alex Rivera", "phone": "+44 20 7946 0123", "source": "inbound_call",
                   "call_sid": "CA0001", "transcript_id": "tr_1", "timezone": "Europe/London",
                   "notes": "Evaluating AI booking for a 15-person team.", "tier": "B",
                   "routing_owner": "team_sdr", "intent": "new_enquiry_demo"}),
        )
        .await;
    assert_eq!(s, 201, "{call1}");
    clock.advance(chrono::Duration::days(7));
    let (s, call2) = app
        .post(
            "/api/ingest/lead",
            json!({"phone": "442079460123", "source": "inbound_call", "call_sid": "CA0002", "tier": "b"}),
        )
        .await;
    assert_eq!(s, 201, "{call2}");
    let id = form["contact"]["id"].as_str().expect("contact id");
    assert_eq!(call1["contact"]["id"], id);
    assert_eq!(call2["contact"]["id"], id);
    assert_eq!(call2["contact"]["phone_e164"], "+442079460123");
    assert_eq!(
        call2["contact"]["email"], "alex@example.com",
        "earlier fields kept"
    );
    assert_eq!(app.services.store.count_contacts().await.expect("count"), 1);

    // Any spelling finds it.
    for q in ["020%207946%200123", "%2B442079460123", "442079460123"] {
        let (s, body) = app.get(&format!("/api/contacts?phone={q}")).await;
        assert_eq!(s, 200);
        assert_eq!(body["contacts"].as_array().map(Vec::len), Some(1), "{q}");
        assert_eq!(body["contacts"][0]["id"], id);
    }
    let (_, none) = app.get("/api/contacts?phone=07700900999").await;
    assert_eq!(none["contacts"], json!([]));

    // Three leads, one contact; filters work.
    let (s, leads) = app.get("/api/leads").await;
    assert_eq!(s, 200);
    let leads = leads["leads"].as_array().expect("leads").clone();
    assert_eq!(leads.len(), 3);
    assert!(leads.iter().all(|l| l["contact_id"] == id));
    let (_, b) = app.get("/api/leads?tier=B").await;
    assert_eq!(b["leads"].as_array().map(Vec::len), Some(2));
    let (_, recent) = app.get("/api/leads?since=2025-10-15").await;
    assert_eq!(recent["leads"].as_array().map(Vec::len), Some(1));
    assert_eq!(recent["leads"][0]["call_sid"], "CA0002");
    let (_, new) = app.get("/api/leads?status=new&limit=2").await;
    assert_eq!(new["leads"].as_array().map(Vec::len), Some(2));

    // Replaying a call's lead is idempotent.
    let (s, replay) = app
        .post(
            "/api/ingest/lead",
            json!({"phone": "+44 20 7946 0123", "call_sid": "CA0001"}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(replay["created"], false);
    assert_eq!(replay["lead"]["id"], call1["lead"]["id"]);
    let (_, all) = app.get("/api/leads").await;
    assert_eq!(all["leads"].as_array().map(Vec::len), Some(3));

    // The calls were recorded with their activity log; outbox has one item per lead.
    let (s, calls) = app.get("/api/calls").await;
    assert_eq!(s, 200);
    let calls = calls["calls"].as_array().expect("calls").clone();
    assert_eq!(calls.len(), 2);
    assert!(calls
        .iter()
        .all(|c| c["contact_id"] == id && c["events"][0]["kind"] == "lead_recorded"));
    let queued = app
        .services
        .store
        .outbox_items("lead.created")
        .await
        .expect("outbox");
    assert_eq!(queued.len(), 3);
}
on_both_databases!(
    acceptance1_one_contact,
    super::same_person_three_ways_is_one_contact
);

async fn fifty_holds(apps: &[&common::App], start: &str) -> (usize, usize, Vec<u16>) {
    let mut tasks = Vec::new();
    for i in 0..50 {
        let http = apps[i % apps.len()].http.clone();
        let url = format!("{}/api/holds", apps[i % apps.len()].base);
        let start = start.to_string();
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .bearer_auth(common::TOKEN)
                .json(&json!({"owner": "alex", "start": start, "ttl_s": 90}))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap_or(0));
    }
    let created = codes.iter().filter(|&&c| c == 201).count();
    let conflict = codes.iter().filter(|&&c| c == 409).count();
    (created, conflict, codes)
}

/// Acceptance 2: 50 concurrent holds of one slot: exactly one wins.
async fn fifty_concurrent_holds_one_winner(db: TestDb) {
    let app = common::spawn_app(common::config(), &db.url, clock("2025-10-13T08:00:00Z")).await;
    let (created, conflict, codes) = fifty_holds(&[&app], "2025-10-14T09:00:00Z").await;
    assert_eq!((created, conflict), (1, 49), "{codes:?}");
    // The slot is gone from the offer.
    let (_, slots) = app.get("/api/slots?owner=alex&days=1").await;
    let starts: Vec<&str> = slots["slots"]
        .as_array()
        .expect("slots")
        .iter()
        .filter_map(|s| s["start"].as_str())
        .collect();
    assert!(!starts.is_empty());
    assert!(!starts.contains(&"2025-10-14T09:00:00Z"), "{starts:?}");
}
on_both_databases!(
    acceptance2_fifty_holds,
    super::fifty_concurrent_holds_one_winner
);

/// Acceptance 2: two server instances, each with its own pool, one PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acceptance2_two_servers_one_postgres() {
    let db = TestDb::postgres().await;
    let a = common::spawn_app(common::config(), &db.url, clock("2025-10-13T08:00:00Z")).await;
    let b = common::spawn_app(common::config(), &db.url, clock("2025-10-13T08:00:00Z")).await;
    for start in [
        "2025-10-14T09:30:00Z",
        "2025-10-14T10:00:00Z",
        "2025-10-14T10:30:00Z",
    ] {
        let (created, conflict, codes) = fifty_holds(&[&a, &b], start).await;
        assert_eq!((created, conflict), (1, 49), "{start}: {codes:?}");
    }
    // A hold taken on one node is seen, released and re-taken across nodes.
    let (s, hold) = a
        .post(
            "/api/holds",
            json!({"owner": "alex", "start": "2025-10-14T11:00:00Z"}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, _) = b
        .post(
            "/api/holds",
            json!({"owner": "alex", "start": "2025-10-14T11:00:00Z"}),
        )
        .await;
    assert_eq!(s, 409);
    let id = hold["id"].as_str().expect("id");
    let (s, _) = b.delete(&format!("/api/holds/{id}")).await;
    assert_eq!(s, 204);
    let (s, _) = b
        .post(
            "/api/holds",
            json!({"owner": "alex", "start": "2025-10-14T11:00:00Z"}),
        )
        .await;
    assert_eq!(s, 201);
}

/// Acceptance 3 over HTTP: confirm after expiry is a 409, the slot is free
/// again; a booked slot answers 409 forever; cancel frees it.
async fn hold_confirm_cancel_over_http(db: TestDb) {
    let clock = clock("2025-10-13T08:00:00Z");
    let app = common::spawn_app(common::config(), &db.url, clock.clone()).await;
    let slot = json!({"owner": "sam", "start": "2025-10-14T09:00:00Z", "ttl_s": 30});
    let (s, hold) = app.post("/api/holds", slot.clone()).await;
    assert_eq!(s, 201, "{hold}");
    assert_eq!(hold["expires_at"], "2025-10-13T08:00:30Z");
    clock.advance(chrono::Duration::seconds(31));
    let who = json!({"name": "Alex Rivera", "email": "alex@example.com", "phone": "07700 900123"});
    let id = hold["id"].as_str().expect("id");
    let (s, body) = app
        .post(&format!("/api/holds/{id}/confirm"), who.clone())
        .await;
    assert_eq!((s, body["error"].as_str()), (409, Some("hold_expired")));
    let (s, hold) = app.post("/api/holds", slot.clone()).await;
    assert_eq!(s, 201);
    let id = hold["id"].as_str().expect("id");
    let (s, booking) = app
        .post(&format!("/api/holds/{id}/confirm"), who.clone())
        .await;
    assert_eq!(s, 201, "{booking}");
    assert_eq!(booking["start"], "2025-10-14T09:00:00Z");
    clock.advance(chrono::Duration::days(1) - chrono::Duration::hours(4));
    let (s, body) = app
        .post(
            "/api/holds",
            json!({"owner": "sam", "start": "2025-10-14T09:00:00Z"}),
        )
        .await;
    assert_eq!((s, body["error"].as_str()), (409, Some("slot_taken")));
    // The attendee became a contact.
    let (_, c) = app.get("/api/contacts?phone=%2B447700900123").await;
    assert_eq!(c["contacts"][0]["name"], "Alex Rivera");
    let bid = booking["id"].as_str().expect("booking id");
    assert_eq!(app.delete(&format!("/api/bookings/{bid}")).await.0, 204);
    assert_eq!(app.delete(&format!("/api/bookings/{bid}")).await.0, 204);
    assert_eq!(app.delete("/api/bookings/nope").await.0, 404);
    assert_eq!(app.delete("/api/holds/nope").await.0, 404);
    let (s, _) = app
        .post(
            "/api/holds",
            json!({"owner": "sam", "start": "2025-10-14T09:00:00Z"}),
        )
        .await;
    assert_eq!(s, 201);
}
on_both_databases!(acceptance3_http, super::hold_confirm_cancel_over_http);

fn dst_config() -> frontdesk::config::Config {
    let mut c = common::config();
    c.calendar.owners = vec![frontdesk::booking::OwnerConfig {
        id: "london".into(),
        name: "Priya".into(),
        timezone: "Europe/London".into(),
        hours: frontdesk::booking::WeekHours::weekdays("09:00-17:00"),
        calcom_event_type_id: None,
    }];
    c
}

/// Acceptance 4: a New York caller books a London owner. Proposals (default:
/// from the next business day) are spoken in New York time and stored in
/// UTC, across the weeks when only one side has changed its clocks.
async fn new_york_caller_london_owner_across_dst(db: TestDb) {
    // (now, London 10:00 the next day as UTC, spoken for New York, NY offset)
    let cases = [
        // Both on winter time: 5 hours apart.
        (
            "2025-03-03T12:00:00Z",
            "2025-03-04T10:00:00Z",
            "tomorrow at 5 am New York time",
            "-05:00",
        ),
        // US moved on 9 March, UK not until 30 March: 4 hours apart.
        (
            "2025-03-17T12:00:00Z",
            "2025-03-18T10:00:00Z",
            "tomorrow at 6 am New York time",
            "-04:00",
        ),
        // Both on summer time: 5 hours apart again, London 10:00 is 09:00 UTC.
        (
            "2025-03-31T12:00:00Z",
            "2025-04-01T09:00:00Z",
            "tomorrow at 5 am New York time",
            "-04:00",
        ),
        // UK back on 26 October, US not until 2 November: 4 hours apart.
        (
            "2025-10-27T12:00:00Z",
            "2025-10-28T10:00:00Z",
            "tomorrow at 6 am New York time",
            "-04:00",
        ),
        // Both back on winter time.
        (
            "2025-11-03T12:00:00Z",
            "2025-11-04T10:00:00Z",
            "tomorrow at 5 am New York time",
            "-05:00",
        ),
    ];
    let clock = clock(cases[0].0);
    let app = common::spawn_app(dst_config(), &db.url, clock.clone()).await;
    for (now, utc_start, spoken, offset) in cases {
        clock.set(t(now));
        let (s, body) = app
            .get("/api/slots?owner=london&days=1&tz=America/New_York")
            .await;
        assert_eq!(s, 200, "{body}");
        let slots = body["slots"].as_array().expect("slots");
        assert_eq!(
            slots.len(),
            16,
            "{now}: a full working day of 30-minute slots"
        );
        let slot = slots
            .iter()
            .find(|s| s["start"] == utc_start)
            .unwrap_or_else(|| panic!("{now}: no slot at {utc_start}: {body}"));
        assert_eq!(slot["spoken"], spoken, "{now}");
        assert!(
            slot["local_start"]
                .as_str()
                .is_some_and(|l| l.ends_with(offset)),
            "{slot}"
        );
        // Hold and book it as the caller; it is stored as that UTC instant.
        let (s, hold) = app
            .post(
                "/api/holds",
                json!({"owner": "london", "start": slot["local_start"]}),
            )
            .await;
        assert_eq!(s, 201, "{hold}");
        assert_eq!(hold["start"], utc_start);
        let id = hold["id"].as_str().expect("id");
        let (s, booking) = app
            .post(
                &format!("/api/holds/{id}/confirm"),
                json!({"name": "Jordan Lee", "phone": "+1 212 555 0100", "timezone": "America/New_York"}),
            )
            .await;
        assert_eq!(s, 201, "{booking}");
        let stored = app
            .services
            .store
            .booking(booking["id"].as_str().expect("id"))
            .await
            .expect("get")
            .expect("booking");
        assert_eq!(stored.start, t(utc_start));
    }
}
on_both_databases!(
    acceptance4_timezones,
    super::new_york_caller_london_owner_across_dst
);

async fn locked_without_token(db: TestDb) {
    let cfg = common::config();
    let open = common::serve(cfg.clone(), &db.url, clock("2025-10-13T08:00:00Z"), None).await;
    let mut wrong = common::serve(
        cfg,
        &db.url,
        clock("2025-10-13T08:00:00Z"),
        Some(common::TOKEN),
    )
    .await;
    for app in [&open] {
        assert_eq!(app.get("/api/leads").await.0, 401);
        assert_eq!(app.get("/api/slots").await.0, 401);
        assert_eq!(
            app.post("/api/ingest/lead", json!({"phone": "02079460123"}))
                .await
                .0,
            401
        );
        assert_eq!(app.post("/api/holds", json!({})).await.0, 401);
        assert_eq!(app.delete("/api/bookings/x").await.0, 401);
    }
    // A server with a token refuses no token and the wrong token.
    wrong.token = None;
    assert_eq!(wrong.get("/api/leads").await.0, 401);
    wrong.token = Some("test-token-12".into());
    assert_eq!(wrong.get("/api/calls").await.0, 401);
    wrong.token = Some(common::TOKEN.into());
    assert_eq!(wrong.get("/api/calls").await.0, 200);
}
on_both_databases!(auth, super::locked_without_token);

async fn bad_payloads_name_the_field_and_store_nothing(db: TestDb) {
    let app = common::spawn_app(common::config(), &db.url, clock("2025-10-13T08:00:00Z")).await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"name": "x"}), "phone"),
        (json!({"phone": "call me"}), "phone"),
        (json!({"phone": "12"}), "phone"),
        (json!({"phone": "02079460123", "email": "nope"}), "email"),
        (json!({"phone": "02079460123", "tier": "E"}), "tier"),
        (
            json!({"phone": "02079460123", "timezone": "Mars/Olympus"}),
            "timezone",
        ),
        (
            json!({"phone": "02079460123", "call_sid": "CA 1"}),
            "call_sid",
        ),
        (json!({"phone": "02079460123", "phnoe": "x"}), "phnoe"),
        (json!({"phone": 2079460123u64}), "phone"),
        (
            json!({"phone": "02079460123", "notes": "x".repeat(10_001)}),
            "notes",
        ),
        (json!([1, 2]), "(body)"),
    ];
    for (body, field) in cases {
        let (s, resp) = app.post("/api/ingest/lead", body.clone()).await;
        assert_eq!(s, 400, "{body}: {resp}");
        assert_eq!(resp["field"], field, "{body}: {resp}");
    }
    let (s, resp) = app.post_raw("/api/ingest/lead", "{\"phone\": ").await;
    assert_eq!((s, resp["field"].as_str()), (400, Some("(body)")));
    assert_eq!(app.services.store.count_contacts().await.expect("count"), 0);
    let (_, leads) = app.get("/api/leads").await;
    assert_eq!(leads["leads"], json!([]));

    let holds: Vec<(Value, &str)> = vec![
        (
            json!({"owner": "zed", "start": "2025-10-14T09:00:00Z"}),
            "owner",
        ),
        (json!({"owner": "alex", "start": "tuesday"}), "start"),
        (
            json!({"owner": "alex", "start": "2025-10-14T09:10:00Z"}),
            "start",
        ),
        (
            json!({"owner": "alex", "start": "2025-10-18T09:00:00Z"}),
            "start",
        ),
        (
            json!({"owner": "alex", "start": "2025-10-14T09:00:00Z", "ttl_s": 0}),
            "ttl_s",
        ),
        (json!({"owner": "alex"}), "start"),
    ];
    for (body, field) in holds {
        let (s, resp) = app.post("/api/holds", body.clone()).await;
        assert_eq!(
            (s, resp["field"].as_str()),
            (400, Some(field)),
            "{body}: {resp}"
        );
    }
    // In the past or inside the 2-hour notice: a conflict, not a bad request.
    let (s, resp) = app
        .post(
            "/api/holds",
            json!({"owner": "alex", "start": "2025-10-13T09:00:00Z"}),
        )
        .await;
    assert_eq!((s, resp["error"].as_str()), (409, Some("slot_unavailable")));
    for (q, field) in [
        ("/api/slots?owner=zed", "owner"),
        ("/api/slots?days=0", "days"),
        ("/api/slots?tz=Nowhere", "tz"),
        ("/api/slots?from=yesterday", "from"),
        ("/api/slots?colour=red", "colour"),
        ("/api/leads?since=soon", "since"),
        ("/api/leads?limit=0", "limit"),
        ("/api/contacts", "phone"),
        ("/api/contacts?phone=abc", "phone"),
    ] {
        let (s, resp) = app.get(q).await;
        assert_eq!(
            (s, resp["field"].as_str()),
            (400, Some(field)),
            "{q}: {resp}"
        );
    }
    let (s, hold) = app
        .post(
            "/api/holds",
            json!({"owner": "alex", "start": "2025-10-14T09:00:00Z"}),
        )
        .await;
    assert_eq!(s, 201);
    let id = hold["id"].as_str().expect("id");
    let (s, resp) = app
        .post(&format!("/api/holds/{id}/confirm"), json!({"name": "A"}))
        .await;
    assert_eq!((s, resp["field"].as_str()), (400, Some("phone")));
    let (s, resp) = app
        .post(
            &format!("/api/holds/{id}/confirm"),
            json!({"email": "a@b.co"}),
        )
        .await;
    assert_eq!((s, resp["field"].as_str()), (400, Some("name")));
    assert_eq!(app.services.store.count_contacts().await.expect("count"), 0);
}
on_both_databases!(
    validation,
    super::bad_payloads_name_the_field_and_store_nothing
);

/// All owners are offered when `owner` is left out; the demo business has two.
async fn slots_of_all_owners_default_to_next_business_day(db: TestDb) {
    // Friday afternoon: the next business day is Monday.
    let app = common::spawn_app(common::config(), &db.url, clock("2025-10-10T15:00:00Z")).await;
    let (s, body) = app.get("/api/slots?days=1").await;
    assert_eq!(s, 200, "{body}");
    let slots = body["slots"].as_array().expect("slots");
    let owners: std::collections::BTreeSet<&str> =
        slots.iter().filter_map(|s| s["owner"].as_str()).collect();
    assert_eq!(owners.into_iter().collect::<Vec<_>>(), ["alex", "sam"]);
    assert_eq!(slots[0]["start"], "2025-10-13T08:00:00Z"); // Monday 09:00 BST
    assert_eq!(slots[0]["spoken"], "Monday at 9 am");
    assert!(slots
        .windows(2)
        .all(|w| w[0]["start"].as_str() <= w[1]["start"].as_str()));
}
on_both_databases!(
    slots_all_owners,
    super::slots_of_all_owners_default_to_next_business_day
);

/// The contact's (name, email) as stored, by phone.
async fn stored_contact(app: &common::App, e164: &str) -> Option<(Value, Value)> {
    let (s, body) = app
        .get(&format!("/api/contacts?phone={}", e164.replace('+', "%2B")))
        .await;
    assert_eq!(s, 200, "{body}");
    let c = body["contacts"].get(0)?;
    Some((c["name"].clone(), c["email"].clone()))
}

/// Confirming a hold that is missing, expired, released or already booked
/// answers 404/409 and leaves every contact as it was: the check comes
/// before the write.
async fn failed_confirms_write_no_contact(db: TestDb) {
    let clock = clock("2025-10-13T08:00:00Z");
    let app = common::spawn_app(common::config(), &db.url, clock.clone()).await;
    let (s, lead) = app
        .post(
            "/api/ingest/lead",
            json!({"name": "Alex Rivera", "email": "alex@example.com", "phone": "07700 900123"}),
        )
        .await;
    assert_eq!(s, 201, "{lead}");
    let original = Some((json!("Alex Rivera"), json!("alex@example.com")));
    let count = |app: &common::App| {
        let store = app.services.store.clone();
        async move { store.count_contacts().await.expect("count") }
    };
    let intruder =
        json!({"name": "Mallory", "email": "mallory@example.net", "phone": "+44 7700 900123"});
    let stranger = json!({"name": "Stranger", "email": "s@example.net", "phone": "07700 900999"});

    // Missing hold.
    for who in [&intruder, &stranger] {
        let (s, body) = app
            .post("/api/holds/no-such-hold/confirm", who.clone())
            .await;
        assert_eq!(
            (s, body["error"].as_str()),
            (404, Some("not_found")),
            "{body}"
        );
    }
    assert_eq!(count(&app).await, 1);
    assert_eq!(stored_contact(&app, "+447700900123").await, original);

    // Expired hold.
    let (s, hold) = app
        .post(
            "/api/holds",
            json!({"owner": "sam", "start": "2025-10-14T09:00:00Z", "ttl_s": 30}),
        )
        .await;
    assert_eq!(s, 201, "{hold}");
    clock.advance(chrono::Duration::seconds(31));
    let id = hold["id"].as_str().expect("id");
    for who in [&intruder, &stranger] {
        let (s, body) = app
            .post(&format!("/api/holds/{id}/confirm"), who.clone())
            .await;
        assert_eq!(
            (s, body["error"].as_str()),
            (409, Some("hold_expired")),
            "{body}"
        );
    }
    assert_eq!(count(&app).await, 1);
    assert_eq!(stored_contact(&app, "+447700900123").await, original);

    // Released hold.
    let (s, hold) = app
        .post(
            "/api/holds",
            json!({"owner": "sam", "start": "2025-10-14T09:00:00Z"}),
        )
        .await;
    assert_eq!(s, 201, "{hold}");
    let id = hold["id"].as_str().expect("id").to_string();
    assert_eq!(app.delete(&format!("/api/holds/{id}")).await.0, 204);
    let (s, body) = app
        .post(&format!("/api/holds/{id}/confirm"), intruder.clone())
        .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (409, Some("hold_released")),
        "{body}"
    );
    assert_eq!(count(&app).await, 1);
    assert_eq!(stored_contact(&app, "+447700900123").await, original);

    // A live hold: the booking and the contact update happen together.
    let (_, hold) = app
        .post(
            "/api/holds",
            json!({"owner": "sam", "start": "2025-10-14T09:00:00Z"}),
        )
        .await;
    let id = hold["id"].as_str().expect("id").to_string();
    let (s, booking) = app
        .post(
            &format!("/api/holds/{id}/confirm"),
            json!({"name": "Alex R. Rivera", "phone": "07700 900123"}),
        )
        .await;
    assert_eq!(s, 201, "{booking}");
    let after = Some((json!("Alex R. Rivera"), json!("alex@example.com")));
    assert_eq!(stored_contact(&app, "+447700900123").await, after);
    let stored = app
        .services
        .store
        .booking(booking["id"].as_str().expect("booking id"))
        .await
        .expect("get")
        .expect("booking");
    assert_eq!(stored.contact_id.as_deref(), lead["contact"]["id"].as_str());
    // Already booked: nothing more changes.
    let (s, body) = app
        .post(&format!("/api/holds/{id}/confirm"), stranger.clone())
        .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (409, Some("already_confirmed")),
        "{body}"
    );
    assert_eq!(count(&app).await, 1);
    assert_eq!(stored_contact(&app, "+447700900123").await, after);
}
on_both_databases!(
    confirm_checks_before_writing,
    super::failed_confirms_write_no_contact
);

/// 50 concurrent confirms of one hold, each for a different person: one
/// booking, one contact.
async fn fifty_concurrent_confirms_one_contact(db: TestDb) {
    let app = common::spawn_app(common::config(), &db.url, clock("2025-10-13T08:00:00Z")).await;
    let (s, hold) = app
        .post(
            "/api/holds",
            json!({"owner": "alex", "start": "2025-10-14T09:00:00Z", "ttl_s": 600}),
        )
        .await;
    assert_eq!(s, 201, "{hold}");
    let url = format!(
        "{}/api/holds/{}/confirm",
        app.base,
        hold["id"].as_str().expect("id")
    );
    let mut tasks = Vec::new();
    for i in 0..50 {
        let http = app.http.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .bearer_auth(common::TOKEN)
                .json(&json!({"name": format!("Caller {i}"), "phone": format!("07700 900{:03}", 100 + i)}))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap_or(0));
    }
    let won = codes.iter().filter(|&&c| c == 200 || c == 201).count();
    let lost = codes.iter().filter(|&&c| c == 409).count();
    assert_eq!((won, lost), (1, 49), "{codes:?}");
    assert_eq!(app.services.store.count_contacts().await.expect("count"), 1);
}
on_both_databases!(fifty_confirms, super::fifty_concurrent_confirms_one_contact);

/// Replaying a lead with a known `call_sid` answers the stored lead and
/// changes nothing: not the contact's name, email or zone, and no new contact
/// for a different number.
async fn lead_replay_changes_nothing(db: TestDb) {
    let clock = clock("2025-10-13T08:00:00Z");
    let app = common::spawn_app(common::config(), &db.url, clock.clone()).await;
    let (s, first) = app
        .post(
            "/api/ingest/lead",
            json!({"name": "Alex Rivera", "email": "alex@example.com", "phone": "020 7946 0123",
                   "call_sid": "CA0009", "timezone": "Europe/London", "tier": "B"}),
        )
        .await;
    assert_eq!(s, 201, "{first}");
    clock.advance(chrono::Duration::minutes(5));
    for replay in [
        json!({"name": "Someone Else", "email": "else@example.net", "phone": "+44 20 7946 0123",
               "call_sid": "CA0009", "timezone": "America/New_York", "tier": "A"}),
        json!({"name": "Third Person", "phone": "07700 900777", "call_sid": "CA0009"}),
    ] {
        let (s, again) = app.post("/api/ingest/lead", replay.clone()).await;
        assert_eq!(s, 200, "{replay}: {again}");
        assert_eq!(again["created"], false);
        assert_eq!(again["lead"], first["lead"], "{replay}");
        assert_eq!(again["contact"], first["contact"], "{replay}");
    }
    assert_eq!(app.services.store.count_contacts().await.expect("count"), 1);
    let (_, found) = app.get("/api/contacts?phone=02079460123").await;
    assert_eq!(found["contacts"][0], first["contact"]);
    let (_, leads) = app.get("/api/leads").await;
    assert_eq!(leads["leads"].as_array().map(Vec::len), Some(1));
    let outbox = app
        .services
        .store
        .outbox_items("lead.created")
        .await
        .expect("outbox");
    assert_eq!(outbox.len(), 1);
}
on_both_databases!(lead_replay, super::lead_replay_changes_nothing);

/// JSON routes need `Content-Type: application/json` (parameters allowed):
/// anything else is a 415 with the usual error body, and nothing is stored.
async fn json_routes_need_a_json_content_type(db: TestDb) {
    let app = common::spawn_app(common::config(), &db.url, clock("2025-10-13T08:00:00Z")).await;
    let lead = r#"{"phone": "020 7946 0123", "name": "Alex Rivera"}"#;
    let send = |path: &str, ctype: Option<&str>, body: &'static str, token: Option<&str>| {
        let mut r = app.http.post(format!("{}{path}", app.base)).body(body);
        if let Some(c) = ctype {
            r = r.header("content-type", c);
        }
        if let Some(t) = token {
            r = r.header("authorization", t);
        }
        async move {
            let resp = r.send().await.expect("request");
            let s = resp.status().as_u16();
            let v: Value =
                serde_json::from_str(&resp.text().await.expect("body")).unwrap_or(Value::Null);
            (s, v)
        }
    };
    let bearer = format!("Bearer {}", common::TOKEN);
    for ctype in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonx"),
        Some("application/json-patch+json"),
        Some("application/json; charset=latin1"),
        Some("multipart/form-data; boundary=x"),
    ] {
        for path in [
            "/api/ingest/lead",
            "/api/holds",
            "/api/holds/some-hold/confirm",
        ] {
            let (s, body) = send(path, ctype, "{}", Some(&bearer)).await;
            assert_eq!(s, 415, "{path} {ctype:?}: {body}");
            assert_eq!(body["error"], "unsupported_media_type", "{body}");
            assert!(
                body["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("application/json")),
                "{body}"
            );
        }
        let (s, body) = send("/api/ingest/lead", ctype, lead, Some(&bearer)).await;
        assert_eq!(s, 415, "{ctype:?}: {body}");
    }
    assert_eq!(app.services.store.count_contacts().await.expect("count"), 0);
    // Without the token it is a 401 whatever the type.
    let (s, _) = send("/api/ingest/lead", Some("text/plain"), "{}", None).await;
    assert_eq!(s, 401);
    // application/json with or without parameters, any case, is accepted.
    for (i, ctype) in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=\"UTF-8\"",
    ]
    .into_iter()
    .enumerate()
    {
        let body: &'static str = match i {
            0 => r#"{"phone": "020 7946 0001"}"#,
            1 => r#"{"phone": "020 7946 0002"}"#,
            _ => r#"{"phone": "020 7946 0003"}"#,
        };
        let (s, resp) = send("/api/ingest/lead", Some(ctype), body, Some(&bearer)).await;
        assert_eq!(s, 201, "{ctype}: {resp}");
    }
    // Bearer tokens are compared trimmed (the configured one is trimmed too):
    // extra spaces around the token are accepted, a changed token is not.
    for (auth, want) in [
        (format!("Bearer   {}", common::TOKEN), 200),
        (format!("bearer {}", common::TOKEN), 200),
        (format!("Bearer {} x", common::TOKEN), 401),
        (format!("Bearer{}", common::TOKEN), 401),
    ] {
        let resp = app
            .http
            .get(format!("{}/api/leads", app.base))
            .header("authorization", auth.clone())
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), want, "{auth:?}");
    }
}
on_both_databases!(content_type, super::json_routes_need_a_json_content_type);

/// 20 first ingests of one new `call_sid` at once, each naming someone else:
/// one lead, one contact, and every answer is that one lead.
async fn concurrent_first_ingests_store_one_lead(db: TestDb) {
    let app = common::spawn_app(common::config(), &db.url, clock("2025-10-13T08:00:00Z")).await;
    let url = format!("{}/api/ingest/lead", app.base);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let http = app.http.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let resp = http
                .post(url)
                .bearer_auth(common::TOKEN)
                .json(&json!({"name": format!("Caller {i}"), "phone": format!("07700 900{:03}", 200 + i),
                              "call_sid": "CA_RACE"}))
                .send()
                .await
                .expect("request");
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.expect("json");
            (status, body)
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.expect("task"));
    }
    let created: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created.len(), 1, "{answers:?}");
    assert!(
        answers.iter().all(|(s, _)| *s == 200 || *s == 201),
        "{answers:?}"
    );
    let winner = created[0];
    for (_, b) in &answers {
        assert_eq!(b["lead"]["id"], winner["lead"]["id"], "{b}");
        assert_eq!(b["contact"], winner["contact"], "{b}");
    }
    assert_eq!(app.services.store.count_contacts().await.expect("count"), 1);
    let (_, leads) = app.get("/api/leads").await;
    assert_eq!(leads["leads"].as_array().map(Vec::len), Some(1));
}
on_both_databases!(
    concurrent_first_ingests,
    super::concurrent_first_ingests_store_one_lead
);
