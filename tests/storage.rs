//! The local calendar and local CRM against real SQLite and PostgreSQL: the
//! shared trait contracts, hold expiry without timers, and the outbox.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{t, TestDb};
use frontdesk::booking::{Calendar, LocalCalendar, SlotKey};
use frontdesk::clock::{Clock, ManualClock};
use frontdesk::crm::LocalCrm;
use frontdesk::store::{OutboxStatus, Store};

async fn store(db: &TestDb) -> Store {
    Store::connect(&db.url, &common::config().storage)
        .await
        .expect("connect")
}

async fn local_calendar_passes_the_calendar_contract(db: TestDb) {
    let clock = Arc::new(ManualClock::new(t("2025-10-13T08:00:00Z")));
    let cal = LocalCalendar::new(store(&db).await, &common::config().calendar, clock.clone())
        .expect("calendar");
    common::calendar_contract(&cal, &clock, "alex").await;
}
on_both_databases!(
    local_calendar_contract,
    super::local_calendar_passes_the_calendar_contract
);

async fn local_crm_passes_the_crm_contract(db: TestDb) {
    let clock = Arc::new(ManualClock::new(t("2025-10-13T08:00:00Z")));
    let s = store(&db).await;
    common::crm_contract(&LocalCrm::new(s.clone(), clock)).await;
    // The local CRM really stored one contact per number and every activity.
    assert_eq!(s.count_contacts().await.expect("count"), 2);
    let c = s
        .contact_by_phone("+442079460123")
        .await
        .expect("lookup")
        .expect("contact");
    let kinds: Vec<String> = s
        .activities(&c.id)
        .await
        .expect("activities")
        .into_iter()
        .map(|a| a.kind)
        .collect();
    assert_eq!(kinds, ["note", "call", "task", "meeting"]);
}
on_both_databases!(local_crm_contract, super::local_crm_passes_the_crm_contract);

/// Acceptance 3: an expired hold frees its slot with no timer anywhere; a
/// sweep is housekeeping only; a booked slot can never be held again.
async fn expired_hold_frees_slot_without_timer(db: TestDb) {
    let clock = Arc::new(ManualClock::new(t("2025-10-13T08:00:00Z")));
    let s = store(&db).await;
    let cal =
        LocalCalendar::new(s.clone(), &common::config().calendar, clock.clone()).expect("calendar");
    let key = SlotKey {
        owner: "alex".into(),
        start: t("2025-10-14T09:00:00Z"), // Tuesday 10:00 London
    };
    let hold = cal.hold(&key, Duration::from_secs(90)).await.expect("hold");
    assert_eq!(hold.expires_at, t("2025-10-13T08:01:30Z"));
    clock.set(t("2025-10-13T08:01:29Z"));
    assert!(cal.hold(&key, Duration::from_secs(90)).await.is_err());
    // One second after expiry: free for queries and for a new hold, while the
    // old claim row is still physically there (nothing swept it).
    clock.set(t("2025-10-13T08:01:30Z"));
    let free = cal
        .available_slots("alex", None, 1, chrono_tz::Europe::London)
        .await
        .expect("slots");
    assert!(free.iter().any(|x| x.start == key.start));
    let claimed = s
        .claimed_starts(
            "alex",
            key.start,
            key.start + chrono::Duration::hours(1),
            t("2025-10-13T08:00:00Z"),
        )
        .await
        .expect("claims");
    assert_eq!(
        claimed,
        vec![key.start],
        "the expired claim row was not deleted"
    );
    let again = cal
        .hold(&key, Duration::from_secs(90))
        .await
        .expect("re-hold");
    assert!(matches!(
        cal.confirm(&hold.id, &common::attendee()).await,
        Err(frontdesk::booking::BookingError::HoldExpired)
    ));
    let booking = cal
        .confirm(&again.id, &common::attendee())
        .await
        .expect("book");
    // Booked: no amount of time frees it, and a sweep leaves it alone.
    clock.set(t("2025-12-01T00:00:00Z"));
    assert_eq!(s.sweep_expired_claims(clock.now()).await.expect("sweep"), 0);
    let r = s
        .claim_slot(
            "alex",
            key.start,
            key.start + chrono::Duration::minutes(30),
            clock.now() + chrono::Duration::minutes(1),
            clock.now(),
        )
        .await
        .expect("claim");
    assert_eq!(r, frontdesk::store::ClaimOutcome::Taken);
    let stored = s.booking(&booking.id).await.expect("get").expect("booking");
    assert_eq!(stored.start, key.start);
    // A sweep removes only lapsed holds.
    let other = SlotKey {
        owner: "alex".into(),
        start: t("2025-12-02T10:00:00Z"),
    };
    cal.hold(&other, Duration::from_secs(60))
        .await
        .expect("hold");
    assert_eq!(s.sweep_expired_claims(clock.now()).await.expect("sweep"), 0);
    assert_eq!(
        s.sweep_expired_claims(clock.now() + chrono::Duration::seconds(61))
            .await
            .expect("sweep"),
        1
    );
}
on_both_databases!(hold_expiry, super::expired_hold_frees_slot_without_timer);

/// The outbox: idempotent enqueue, leases that exclude each other, retries.
async fn outbox_leases_and_retries(db: TestDb) {
    let s = store(&db).await;
    let now = t("2025-10-13T08:00:00Z");
    assert!(s
        .enqueue_outbox("slack.card", "{\"a\":1}", "card:CA1", now)
        .await
        .expect("enqueue"));
    assert!(!s
        .enqueue_outbox("slack.card", "{\"a\":2}", "card:CA1", now)
        .await
        .expect("dup"));
    assert!(s
        .enqueue_outbox("slack.card", "{}", "card:CA2", now)
        .await
        .expect("enqueue"));
    let lease_end = now + chrono::Duration::seconds(30);
    let a = s.lease_outbox(now, lease_end, 1).await.expect("lease");
    let b = s.lease_outbox(now, lease_end, 10).await.expect("lease");
    assert_eq!((a.len(), b.len()), (1, 1));
    assert_ne!(a[0].id, b[0].id);
    assert!(s
        .lease_outbox(now, lease_end, 10)
        .await
        .expect("lease")
        .is_empty());
    s.outbox_delivered(&a[0].id, now).await.expect("delivered");
    s.outbox_failed(
        &b[0].id,
        "slack 500",
        Some(now + chrono::Duration::minutes(1)),
    )
    .await
    .expect("failed");
    // The lease of the failed one ran out; it is due again at its retry time.
    let later = now + chrono::Duration::minutes(2);
    let c = s
        .lease_outbox(later, later + chrono::Duration::seconds(30), 10)
        .await
        .expect("lease");
    assert_eq!(c.len(), 1);
    assert_eq!((c[0].id.clone(), c[0].attempts), (b[0].id.clone(), 2));
    s.outbox_failed(&c[0].id, "gave up", None)
        .await
        .expect("fail");
    let items = s.outbox_items("slack.card").await.expect("items");
    assert_eq!(items.len(), 2);
    let by_id = |id: &str| items.iter().find(|i| i.id == id).expect("item").clone();
    assert_eq!(by_id(&a[0].id).status, OutboxStatus::Delivered);
    assert_eq!(by_id(&b[0].id).status, OutboxStatus::Failed);
    assert_eq!(by_id(&b[0].id).last_error.as_deref(), Some("gave up"));
    let first = items
        .iter()
        .find(|i| i.idempotency_key == "card:CA1")
        .expect("CA1");
    assert_eq!(
        first.payload, "{\"a\":1}",
        "the duplicate enqueue changed nothing"
    );
}
on_both_databases!(outbox, super::outbox_leases_and_retries);

/// A call's activity log keeps every routing attempt with its time.
async fn call_activity_log(db: TestDb) {
    let s = store(&db).await;
    let now = t("2025-10-13T08:00:00Z");
    let call = frontdesk::store::NewCall {
        call_sid: Some("CA9".into()),
        contact_id: None,
        direction: "inbound".into(),
        from: None,
        to: None,
        status: "ringing".into(),
    };
    let id = s.upsert_call(&call, now).await.expect("call");
    assert_eq!(s.upsert_call(&call, now).await.expect("same call"), id);
    for (i, kind) in ["ring_owner", "ring_team", "ai_backup"].iter().enumerate() {
        let at = now + chrono::Duration::seconds(20 * i as i64);
        assert!(s
            .add_call_event(&id, at, kind, "stage")
            .await
            .expect("event"));
    }
    assert!(!s
        .add_call_event("nope", now, "x", "y")
        .await
        .expect("no call"));
    s.set_call_status(&id, "completed", Some(now + chrono::Duration::minutes(3)))
        .await
        .expect("status");
    let calls = s.list_calls(None, 10).await.expect("list");
    assert_eq!(calls.len(), 1);
    let kinds: Vec<&str> = calls[0].events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["ring_owner", "ring_team", "ai_backup"]);
    assert_eq!(calls[0].events[2].at, now + chrono::Duration::seconds(40));
    assert_eq!(calls[0].status, "completed");
}
on_both_databases!(call_log, super::call_activity_log);

/// Counts its runs; each takes 200 ms so two nodes overlap.
struct CountingJob(Arc<std::sync::atomic::AtomicUsize>);

#[async_trait::async_trait]
impl frontdesk::call::ToolExecutor for CountingJob {
    async fn execute(
        &self,
        _sid: &str,
        job: &frontdesk::call::ToolJob,
    ) -> frontdesk::call::ToolOutcome {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        frontdesk::call::ToolOutcome {
            id: job.id.clone(),
            name: job.name.clone(),
            ok: true,
            result: serde_json::json!({ "run": n }),
        }
    }
}

async fn a_tool_job_runs_once_across_nodes(db: TestDb) {
    use frontdesk::call::tools::StoreBackedTools;
    use frontdesk::call::{ToolExecutor, ToolJob};
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clock = Arc::new(ManualClock::new(t("2025-10-13T08:00:00Z")));
    // Two nodes: their own pools on one database.
    let nodes: Vec<StoreBackedTools> = vec![
        StoreBackedTools::new(
            Arc::new(CountingJob(runs.clone())),
            store(&db).await,
            clock.clone(),
        ),
        StoreBackedTools::new(
            Arc::new(CountingJob(runs.clone())),
            store(&db).await,
            clock.clone(),
        ),
    ];
    let job = ToolJob {
        id: "call_1".into(),
        name: "confirm_booking".into(),
        args: serde_json::json!({"hold_id": "h1"}),
    };
    let (a, b) = tokio::join!(
        nodes[0].execute("CAnode", &job),
        nodes[1].execute("CAnode", &job)
    );
    assert_eq!(
        runs.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "ran once: {a:?} {b:?}"
    );
    assert_eq!([a.ok, b.ok].iter().filter(|ok| **ok).count(), 1);
    // A replay after it finished returns the stored outcome, without running.
    let replay = nodes[1].execute("CAnode", &job).await;
    assert!(replay.ok);
    assert_eq!(replay.result, serde_json::json!({ "run": 1 }));
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    // The same job id in another call is another job.
    let other = nodes[0].execute("CAother", &job).await;
    assert_eq!(other.result, serde_json::json!({ "run": 2 }));
}
on_both_databases!(tool_job_once, super::a_tool_job_runs_once_across_nodes);
