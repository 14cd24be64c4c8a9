//! Leads that get called back, against local mocks speaking Slack's Web API
//! and incoming-webhook wire formats and Twilio's Calls REST API: card
//! routing by tier in and after hours, the digest order, chat.update after a
//! claim, 429/`ok:false` handling, an hour-long Slack outage in virtual time
//! (each card exactly once), the escalation once across two nodes on one
//! PostgreSQL, signed links and click-to-call, Slack request signatures, and
//! the signed post-call webhook.

mod common;

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use common::{t, TestDb};
use frontdesk::booking::WeekHours;
use frontdesk::clock::{Clock, ManualClock, RecordingSleeper};
use frontdesk::config::notify::{RepConfig, SlackConfig, SlackMode};
use frontdesk::config::{env, Env};
use frontdesk::notify::slack::SlackClient;
use frontdesk::notify::webhook::{self, PostCall, PostCallCall, WebhookClient};
use frontdesk::notify::worker::{enqueue_post_call, Worker};
use frontdesk::notify::{BusinessHours, LinkSigner, Notify, NotifyParts};
use frontdesk::pii::{Pii, Secret};
use frontdesk::store::{ClaimResult, NewContact, NewLead, OutboxStatus, StorageConfig, Store};
use serde_json::{json, Value};

const BOT: &str = "xoxb-test";
const LINK_KEY: &str = "link-secret-1";

// ---------------------------------------------------------------- mock Slack

#[derive(Default)]
struct SlackState {
    /// (channel, body) of every accepted chat.postMessage / webhook post.
    posts: Vec<(String, Value)>,
    /// Bodies of accepted chat.update calls.
    updates: Vec<Value>,
    /// Every request seen, accepted or not.
    requests: usize,
    /// Answer 503 while set.
    down: bool,
    /// Answer this many requests with 429 Retry-After: 7.
    throttle: u32,
    /// Answer HTTP 200 `ok:false` with this error.
    fail_with: Option<String>,
    next_ts: u64,
}

type SlackMock = Arc<Mutex<SlackState>>;

async fn slack_handler(
    State(m): State<SlackMock>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = m.lock().unwrap();
    s.requests += 1;
    if s.down {
        return (StatusCode::SERVICE_UNAVAILABLE, "upstream down").into_response();
    }
    if s.throttle > 0 {
        s.throttle -= 1;
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "7")], "").into_response();
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = uri.path();
    if path == "/hook" {
        s.posts.push(("webhook".into(), v));
        return "ok".into_response();
    }
    if headers.get("authorization").and_then(|h| h.to_str().ok()) != Some(&format!("Bearer {BOT}"))
    {
        return axum::Json(json!({"ok": false, "error": "invalid_auth"})).into_response();
    }
    if let Some(e) = s.fail_with.clone() {
        return axum::Json(json!({"ok": false, "error": e})).into_response();
    }
    if v.get("text")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        return axum::Json(json!({"ok": false, "error": "no_text"})).into_response();
    }
    let channel = v["channel"].as_str().unwrap_or("").to_string();
    match path {
        "/api/chat.postMessage" => {
            s.next_ts += 1;
            let ts = format!("1700000000.{:06}", s.next_ts);
            s.posts.push((channel.clone(), v.clone()));
            axum::Json(
                json!({"ok": true, "channel": channel, "ts": ts, "message": {"text": v["text"]}}),
            )
            .into_response()
        }
        "/api/chat.update" => {
            s.updates.push(v.clone());
            axum::Json(json!({"ok": true, "channel": channel, "ts": v["ts"], "text": v["text"]}))
                .into_response()
        }
        _ => axum::Json(json!({"ok": false, "error": "unknown_method"})).into_response(),
    }
}

async fn serve_mock<S: Clone + Send + Sync + 'static>(router: Router<S>, state: S) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router.with_state(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

async fn mock_slack() -> (SlackMock, String) {
    let m = SlackMock::default();
    let base = serve_mock(Router::new().fallback(slack_handler), m.clone()).await;
    (m, base)
}

// ------------------------------------------------------------------ helpers

/// Monday–Friday 09:00–17:30 London, closed on 25 and 28 December 2026.
fn hours() -> BusinessHours {
    let hol = [
        NaiveDate::from_ymd_opt(2026, 12, 25).unwrap(),
        NaiveDate::from_ymd_opt(2026, 12, 28).unwrap(),
    ];
    BusinessHours::new(
        "business.hours",
        chrono_tz::Europe::London,
        &WeekHours::weekdays("09:00-17:30"),
        &hol,
    )
    .unwrap()
}

fn slack_cfg(mode: SlackMode, base: &str) -> SlackConfig {
    let mut c = SlackConfig {
        mode,
        api_base_url: format!("{base}/api"),
        webhook_url: format!("{base}/hook"),
        oncall_mention: "<!subteam^S0ONCALL>".into(),
        ..SlackConfig::default()
    };
    c.channels.overnight = "C0NIGHT".into();
    c.channels.sdr = "C0SDR".into();
    c.channels.leads = "C0LEADS".into();
    c
}

struct Node {
    notify: Notify,
    worker: Worker,
    sleeper: Arc<RecordingSleeper>,
}

fn node(store: Store, clock: Arc<ManualClock>, cfg: SlackConfig) -> Node {
    let sleeper = Arc::new(RecordingSleeper::default());
    let slack = SlackClient::new(&cfg, Some(Secret::new(BOT.into()))).unwrap();
    let notify = Notify::new(NotifyParts {
        store,
        clock,
        sleeper: sleeper.clone(),
        hours: hours(),
        public_url: "https://fd.example.com".into(),
        links: Some(LinkSigner::new(&Secret::new(LINK_KEY.into()))),
        link_ttl: Duration::hours(72),
        reps: vec![rep("alex", "Alex Smith", "+447700900001", "U0ALEX")],
        dialer: None,
        slack_cfg: cfg,
        slack: Some(slack),
        slack_signing: None,
        webhook: None,
        sms: None,
        sms_cfg: Default::default(),
        business_name: "Acme Dental".into(),
        own_numbers: vec![],
        recording_dir: std::env::temp_dir().join("frontdesk-no-recordings"),
        media: None,
        crm: None,
    });
    Node {
        worker: Worker::new(notify.clone()),
        notify,
        sleeper,
    }
}

fn rep(id: &str, name: &str, phone: &str, slack_id: &str) -> RepConfig {
    RepConfig {
        id: id.into(),
        name: name.into(),
        phone: phone.into(),
        slack_id: slack_id.into(),
        slack_channel: String::new(),
    }
}

fn new_lead(sid: &str, name: &str, phone: &str, tier: &str) -> NewLead {
    NewLead {
        contact: NewContact {
            phone_e164: Pii::new(phone.into()),
            name: Some(Pii::new(name.into())),
            email: None,
            timezone: None,
        },
        call_sid: Some(sid.into()),
        intent: Some("new_enquiry_demo".into()),
        tier: Some(tier.into()),
        source: Some("inbound_call".into()),
        transcript_id: None,
        notes: Some(Pii::new(format!(
            "{name} wants a demo for 40 seats <soon>."
        ))),
        routing_owner: None,
    }
}

async fn lead_at(
    store: &Store,
    clock: &ManualClock,
    at: DateTime<Utc>,
    sid: &str,
    name: &str,
    phone: &str,
    tier: &str,
) -> String {
    clock.set(at);
    store
        .ingest_lead(&new_lead(sid, name, phone, tier), at)
        .await
        .unwrap()
        .lead
        .id
}

/// Run the worker until nothing is due at the current instant.
async fn drain(w: &Worker) {
    for _ in 0..10 {
        let r = w.run_once().await.unwrap();
        if r.delivered + r.retrying + r.deferred + r.failed == 0 {
            return;
        }
    }
}

async fn store_on(db: &TestDb) -> Store {
    Store::connect(
        &db.url,
        &StorageConfig {
            max_connections: 4,
            ..StorageConfig::default()
        },
    )
    .await
    .unwrap()
}

fn card_names(posts: &[(String, Value)]) -> Vec<String> {
    posts
        .iter()
        .map(|(_, v)| v["text"].as_str().unwrap_or("").to_string())
        .collect()
}

// -------------------------------------------------------------------- tests

/// In hours: tier B to the SDR channel flagged priority, others to the leads
/// channel; after hours everything to the overnight channel; each card has
/// the fallback text, the fields and a "Call back now" button whose URL is a
/// valid signed link; a claim then edits the card with chat.update.
async fn routing_by_tier_and_update_after_claim(db: TestDb) {
    let (mock, base) = mock_slack().await;
    let clock = Arc::new(ManualClock::new(t("2026-12-01T10:00:00Z")));
    let store = store_on(&db).await;
    let n = node(
        store.clone(),
        clock.clone(),
        slack_cfg(SlackMode::Bot, &base),
    );
    // Tuesday 1 Dec 2026, 10:00 London: in hours.
    let b = lead_at(
        &store,
        &clock,
        t("2026-12-01T10:00:00Z"),
        "CA1",
        "Jane Doe",
        "+447700900111",
        "B",
    )
    .await;
    let c = lead_at(
        &store,
        &clock,
        t("2026-12-01T10:01:00Z"),
        "CA2",
        "Ravi Shah",
        "+447700900222",
        "C",
    )
    .await;
    // 23:00: after hours.
    let night = lead_at(
        &store,
        &clock,
        t("2026-12-01T23:00:00Z"),
        "CA3",
        "Olu Ade",
        "+447700900333",
        "B",
    )
    .await;
    drain(&n.worker).await;
    let posts = mock.lock().unwrap().posts.clone();
    let channels: Vec<&str> = posts.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(channels, ["C0SDR", "C0LEADS", "C0NIGHT"], "{posts:#?}");
    let sdr = &posts[0].1;
    assert!(
        sdr["text"].as_str().unwrap().starts_with("PRIORITY"),
        "{sdr}"
    );
    assert!(sdr["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap()
        .contains("PRIORITY"));
    let blocks = sdr["blocks"].to_string();
    for want in [
        "Jane Doe",
        "new_enquiry_demo",
        "*Tier*\\nB",
        "40 seats &lt;soon&gt;",
        "Call back now",
    ] {
        assert!(blocks.contains(want), "{want} missing in {blocks}");
    }
    assert!(!posts[1].1["text"].as_str().unwrap().contains("PRIORITY"));
    assert!(posts[2].1["text"]
        .as_str()
        .unwrap()
        .starts_with("Overnight lead"));
    // The button's URL is a signed link to this lead.
    let actions = sdr["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "actions")
        .unwrap();
    let url = actions["elements"][0]["url"].as_str().unwrap();
    let token = url.strip_prefix("https://fd.example.com/c/").unwrap();
    let claims = LinkSigner::new(&Secret::new(LINK_KEY.into()))
        .verify(token, clock.now())
        .unwrap();
    assert_eq!(claims.lead_id, b);
    assert_eq!(actions["elements"][1]["value"], b.as_str());
    // Card posted times are recorded.
    let card = store.lead_card(&b).await.unwrap().unwrap();
    assert_eq!((card.channel.as_str(), card.after_hours), ("C0SDR", false));
    assert!(store.lead_card(&night).await.unwrap().unwrap().after_hours);
    // Claim at 10:03 London; the worker edits the card.
    clock.set(t("2026-12-01T10:03:00Z"));
    let alex = n.notify.rep("alex").unwrap();
    let out = n
        .notify
        .claim(&b, &alex, "link", clock.now())
        .await
        .unwrap();
    assert!(matches!(out.result, ClaimResult::Won(_)));
    drain(&n.worker).await;
    let updates = mock.lock().unwrap().updates.clone();
    assert_eq!(updates.len(), 1, "{updates:#?}");
    assert_eq!(updates[0]["channel"], "C0SDR");
    assert_eq!(updates[0]["ts"], card.ts.clone().unwrap().as_str());
    assert!(
        updates[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Claimed by Alex Smith at 10:03"),
        "{}",
        updates[0]
    );
    assert!(!updates[0]["blocks"].to_string().contains("\"actions\""));
    // Nothing else was sent twice, and lead C stays unclaimed.
    assert_eq!(mock.lock().unwrap().posts.len(), 3);
    assert!(store.lead_claim(&c).await.unwrap().is_none());
}
on_both_databases!(
    routing_by_tier_and_update_after_claim,
    crate::routing_by_tier_and_update_after_claim
);

/// A tier A lead (a booking) routed to a rep is an FYI to that rep in
/// hours: a direct message to their Slack user, or their own channel when
/// configured; unassigned or after hours it follows the usual routing.
#[tokio::test]
async fn tier_a_fyi_goes_to_the_assigned_rep_in_hours() {
    let (mock, base) = mock_slack().await;
    let db = TestDb::sqlite().await;
    let clock = Arc::new(ManualClock::new(t("2026-12-01T10:00:00Z")));
    let store = store_on(&db).await;
    let mut n = node(
        store.clone(),
        clock.clone(),
        slack_cfg(SlackMode::Bot, &base),
    );
    let mut parts = n.notify.parts().clone();
    let mut sam = rep("sam", "Sam Patel", "+447700900002", "U0SAM");
    sam.slack_channel = "C0SAMDESK".into();
    parts.reps.push(sam);
    n.notify = Notify::new(parts);
    n.worker = Worker::new(n.notify.clone());
    let ingest = |sid: &str, owner: Option<&str>, at: &str| {
        let mut l = new_lead(sid, "Jane Doe", "+447700900111", "A");
        l.routing_owner = owner.map(str::to_string);
        (l, t(at))
    };
    let mut ids = Vec::new();
    for (l, at) in [
        ingest("CAfyi1", Some("alex"), "2026-12-01T10:00:00Z"),
        ingest("CAfyi2", Some("sam"), "2026-12-01T10:01:00Z"),
        ingest("CAfyi3", None, "2026-12-01T10:02:00Z"),
        ingest("CAfyi4", Some("alex"), "2026-12-01T22:00:00Z"),
    ] {
        clock.set(at);
        ids.push(store.ingest_lead(&l, at).await.unwrap().lead.id);
    }
    drain(&n.worker).await;
    let mut channels = Vec::new();
    for id in &ids {
        channels.push(store.lead_card(id).await.unwrap().expect("card").channel);
    }
    assert_eq!(channels, ["U0ALEX", "C0SAMDESK", "C0LEADS", "C0NIGHT"]);
    let posts = mock.lock().unwrap().posts.clone();
    assert_eq!(posts.len(), 4);
    for (channel, v) in &posts {
        let fyi = channel == "U0ALEX" || channel == "C0SAMDESK";
        assert_eq!(v["text"].as_str().unwrap().starts_with("FYI"), fyi, "{v}");
        assert_eq!(
            v["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .starts_with("FYI: tier A"),
            fyi
        );
    }
}

/// Slack is down (503) for an hour while leads arrive overnight; the worker
/// keeps retrying with back-off in virtual time and, once Slack is back,
/// every card arrives exactly once and nothing is left pending or failed.
async fn outage_then_recovery_delivers_each_card_once(db: TestDb) {
    let (mock, base) = mock_slack().await;
    let clock = Arc::new(ManualClock::new(t("2026-12-01T22:00:00Z")));
    let store = store_on(&db).await;
    let n = node(
        store.clone(),
        clock.clone(),
        slack_cfg(SlackMode::Bot, &base),
    );
    mock.lock().unwrap().down = true;
    let start = t("2026-12-01T22:00:00Z");
    let mut ids = Vec::new();
    for i in 0..5 {
        let at = start + Duration::minutes(i * 7);
        ids.push(
            lead_at(
                &store,
                &clock,
                at,
                &format!("CA-out-{i}"),
                &format!("Caller {i}"),
                &format!("+4477009004{i:02}"),
                "C",
            )
            .await,
        );
        n.worker.run_once().await.unwrap();
    }
    // Two hours of virtual time in 20-second steps; Slack recovers after one.
    let mut t_now = start + Duration::minutes(35);
    while t_now < start + Duration::hours(2) {
        if t_now >= start + Duration::minutes(60) {
            mock.lock().unwrap().down = false;
        }
        clock.set(t_now);
        n.worker.run_once().await.unwrap();
        t_now += Duration::seconds(20);
    }
    let (requests, posts) = {
        let s = mock.lock().unwrap();
        (s.requests, s.posts.clone())
    };
    assert!(requests > posts.len(), "the outage was seen");
    let mut texts = card_names(&posts);
    texts.sort();
    assert_eq!(texts.len(), 5, "{texts:#?}");
    for i in 0..5 {
        assert_eq!(
            texts
                .iter()
                .filter(|t| t.contains(&format!("Caller {i} ")))
                .count(),
            1,
            "{texts:#?}"
        );
    }
    for kind in ["lead.created", "slack.card"] {
        for item in store.outbox_items(kind).await.unwrap() {
            assert_eq!(item.status, OutboxStatus::Delivered, "{item:?}");
        }
    }
    assert_eq!(store.outbox_items("slack.card").await.unwrap().len(), 5);
    for id in ids {
        assert!(store.lead_card(&id).await.unwrap().is_some());
    }
}
on_both_databases!(
    outage_then_recovery_delivers_each_card_once,
    crate::outage_then_recovery_delivers_each_card_once
);

/// 429 with Retry-After defers the card (no attempt counted) until then;
/// posts to one channel are paced one second apart; HTTP 200 `ok:false`
/// with a permanent error fails the item with its last error, visibly.
#[tokio::test]
async fn rate_limits_and_ok_false() {
    let db = TestDb::sqlite().await;
    let (mock, base) = mock_slack().await;
    let clock = Arc::new(ManualClock::new(t("2026-12-01T10:00:00Z")));
    let store = store_on(&db).await;
    let n = node(
        store.clone(),
        clock.clone(),
        slack_cfg(SlackMode::Bot, &base),
    );
    mock.lock().unwrap().throttle = 1;
    lead_at(
        &store,
        &clock,
        t("2026-12-01T10:00:00Z"),
        "CA-r1",
        "Amy",
        "+447700900501",
        "C",
    )
    .await;
    lead_at(
        &store,
        &clock,
        t("2026-12-01T10:00:00Z"),
        "CA-r2",
        "Ben",
        "+447700900502",
        "C",
    )
    .await;
    let r = n.worker.run_once().await.unwrap();
    assert_eq!(r.delivered, 2, "two lead.created fan-outs");
    let r = n.worker.run_once().await.unwrap();
    assert_eq!(
        (r.delivered, r.deferred),
        (0, 2),
        "{r:?}: the 429 pauses the channel"
    );
    let cards = store.outbox_items("slack.card").await.unwrap();
    assert!(
        cards
            .iter()
            .all(|c| c.attempts == 0 && c.next_attempt_at == t("2026-12-01T10:00:07Z")),
        "{cards:?}"
    );
    clock.set(t("2026-12-01T10:00:06Z"));
    assert_eq!(n.worker.run_once().await.unwrap().delivered, 0);
    clock.set(t("2026-12-01T10:00:07Z"));
    assert_eq!(n.worker.run_once().await.unwrap().delivered, 2);
    assert_eq!(mock.lock().unwrap().posts.len(), 2);
    // The second post to the same channel waited for the per-channel interval.
    assert_eq!(n.sleeper.waits(), vec![std::time::Duration::from_secs(1)]);
    // ok:false channel_not_found: failed at once, with the error kept.
    mock.lock().unwrap().fail_with = Some("channel_not_found".into());
    lead_at(
        &store,
        &clock,
        t("2026-12-01T10:05:00Z"),
        "CA-r3",
        "Cat",
        "+447700900503",
        "C",
    )
    .await;
    drain(&n.worker).await;
    let failed: Vec<_> = store
        .outbox_items("slack.card")
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.status == OutboxStatus::Failed)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].attempts, 1);
    assert_eq!(
        failed[0].last_error.as_deref(),
        Some("chat.postMessage: channel_not_found")
    );
    // ok:false ratelimited is a rate limit, not a failure.
    mock.lock().unwrap().fail_with = Some("ratelimited".into());
    lead_at(
        &store,
        &clock,
        t("2026-12-01T10:06:00Z"),
        "CA-r4",
        "Dan",
        "+447700900504",
        "C",
    )
    .await;
    let _ = n.worker.run_once().await.unwrap();
    let r = n.worker.run_once().await.unwrap();
    assert_eq!(r.deferred, 1, "{r:?}");
}

/// Incoming-webhook mode: the card goes to the webhook (body `ok`), and a
/// claim does not try chat.update (webhook messages cannot be edited).
#[tokio::test]
async fn webhook_mode_posts_cards_and_never_updates() {
    let db = TestDb::sqlite().await;
    let (mock, base) = mock_slack().await;
    let clock = Arc::new(ManualClock::new(t("2026-12-01T10:00:00Z")));
    let store = store_on(&db).await;
    let n = node(
        store.clone(),
        clock.clone(),
        slack_cfg(SlackMode::Webhook, &base),
    );
    let id = lead_at(
        &store,
        &clock,
        t("2026-12-01T10:00:00Z"),
        "CA-w1",
        "Eve",
        "+447700900601",
        "B",
    )
    .await;
    drain(&n.worker).await;
    let posts = mock.lock().unwrap().posts.clone();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].0, "webhook");
    assert!(
        posts[0].1["blocks"].is_array() && posts[0].1["text"].as_str().unwrap().contains("Eve")
    );
    let card = store.lead_card(&id).await.unwrap().unwrap();
    assert_eq!(card.ts, None);
    n.notify
        .claim(&id, &n.notify.rep("alex").unwrap(), "link", clock.now())
        .await
        .unwrap();
    drain(&n.worker).await;
    assert!(mock.lock().unwrap().updates.is_empty());
    assert!(store.outbox_items("slack.update").await.unwrap().is_empty());
}

/// A bank-holiday weekend (Fri 25 closed, Sat/Sun, Mon 28 closed): every
/// after-hours lead since Thursday's opening is one digest at Tuesday's
/// opening, tier B first; at opening + 15 min each unclaimed overnight tier
/// B lead gets one escalation mentioning on-call — with two nodes on one
/// PostgreSQL ticking in virtual time, each message goes out exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_and_escalation_once_across_two_nodes() {
    let db = TestDb::postgres().await;
    let (mock, base) = mock_slack().await;
    let clock = Arc::new(ManualClock::new(t("2026-12-24T18:00:00Z")));
    let a = node(
        store_on(&db).await,
        clock.clone(),
        slack_cfg(SlackMode::Bot, &base),
    );
    let b = node(
        store_on(&db).await,
        clock.clone(),
        slack_cfg(SlackMode::Bot, &base),
    );
    let store = a.notify.parts().store.clone();
    let l1 = lead_at(
        &store,
        &clock,
        t("2026-12-24T18:00:00Z"),
        "CA-h1",
        "Cara C",
        "+447700900701",
        "C",
    )
    .await;
    let l2 = lead_at(
        &store,
        &clock,
        t("2026-12-25T11:00:00Z"),
        "CA-h2",
        "Bob B",
        "+447700900702",
        "B",
    )
    .await;
    let l3 = lead_at(
        &store,
        &clock,
        t("2026-12-26T20:00:00Z"),
        "CA-h3",
        "Dee D",
        "+447700900703",
        "D",
    )
    .await;
    let l4 = lead_at(
        &store,
        &clock,
        t("2026-12-28T07:00:00Z"),
        "CA-h4",
        "Bea B",
        "+447700900704",
        "B",
    )
    .await;
    let _ = (l1, l3);
    // Both nodes drain the overnight cards as they come.
    drain(&a.worker).await;
    drain(&b.worker).await;
    assert_eq!(mock.lock().unwrap().posts.len(), 4);
    // Tuesday 29 Dec 08:50: nothing yet. A rep claims Bea early.
    clock.set(t("2026-12-29T08:50:00Z"));
    a.notify
        .claim(&l4, &a.notify.rep("alex").unwrap(), "link", clock.now())
        .await
        .unwrap();
    drain(&a.worker).await;
    drain(&b.worker).await;
    let before = mock.lock().unwrap().posts.len();
    // Every 30 s from 09:00 to 09:30 both nodes run.
    let mut now = t("2026-12-29T09:00:00Z");
    while now <= t("2026-12-29T09:30:00Z") {
        clock.set(now);
        let (ra, rb) = tokio::join!(a.worker.run_once(), b.worker.run_once());
        ra.unwrap();
        rb.unwrap();
        now += Duration::seconds(30);
    }
    let posts: Vec<(String, Value)> = mock.lock().unwrap().posts[before..].to_vec();
    let texts = card_names(&posts);
    assert_eq!(posts.len(), 2, "one digest, one escalation: {texts:#?}");
    assert!(posts.iter().all(|(c, _)| c == "C0NIGHT"));
    let digest = &texts[0];
    assert!(
        digest.starts_with("Overnight digest: 4 lead(s)"),
        "{digest}"
    );
    let order: Vec<usize> = ["Bob B", "Bea B", "Cara C", "Dee D"]
        .iter()
        .map(|n| digest.find(n).unwrap())
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "tier B first, then by time: {digest}"
    );
    assert!(posts[0].1["blocks"]
        .to_string()
        .contains("claimed by Alex Smith"));
    let esc = &texts[1];
    assert!(
        esc.starts_with("<!subteam^S0ONCALL> Tier B lead Bob B"),
        "{esc}"
    );
    assert_eq!(
        store.outbox_items("slack.escalation").await.unwrap().len(),
        1
    );
    assert_eq!(store.outbox_items("slack.digest").await.unwrap().len(), 1);
    let _ = l2;
}

// ------------------------------------------------------ links over HTTP

/// (authorization header, path, form fields) of one request.
type TwilioRequest = (Option<String>, String, Vec<(String, String)>);

#[derive(Default)]
struct TwilioState {
    calls: Vec<TwilioRequest>,
}

type TwilioMock = Arc<Mutex<TwilioState>>;

async fn twilio_handler(
    State(m): State<TwilioMock>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let auth = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    m.lock()
        .unwrap()
        .calls
        .push((auth, uri.path().to_string(), form));
    (
        StatusCode::CREATED,
        axum::Json(json!({"sid": "CAdial0001", "status": "queued"})),
    )
        .into_response()
}

struct Served {
    base: String,
    http: reqwest::Client,
    store: Store,
    notify: Notify,
}

async fn serve_app(db: &TestDb, clock: Arc<ManualClock>, twilio_base: &str) -> Served {
    let mut config = common::config();
    config.links.caller_id = "+442079460000".into();
    config.links.reps = vec![
        rep("alex", "Alex Smith", "+447700900001", "U0ALEX"),
        rep("sam", "Sam Patel", "+447700900002", "U0SAM"),
    ];
    config.twilio.api_base_url = twilio_base.into();
    let env = Env::from_pairs([(env::DATABASE_URL, db.url.as_str())])
        .with(env::LINK_SECRET, LINK_KEY)
        .with(env::SLACK_SIGNING_SECRET, "slack-signing")
        .with(env::TWILIO_ACCOUNT_SID, "AC123")
        .with(env::TWILIO_AUTH_TOKEN, "tw-token");
    let app = frontdesk::app::App::build(config, &env, clock)
        .await
        .expect("app");
    let notify = app.services.notify.clone().expect("notify is configured");
    let store = app.services.store.clone();
    let state = frontdesk::http::AppState::new(&app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, frontdesk::http::router(state)).await;
    });
    Served {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        store,
        notify,
    }
}

fn token_of(link: &str) -> String {
    link.rsplit('/').next().unwrap().to_string()
}

/// Valid claim (with click-to-call to the mock Twilio), a second claim that
/// sees the first claimer, a tampered token and an expired one (403, nothing
/// claimed); the claim and dial times are recorded against the card.
async fn links_claim_and_click_to_call(db: TestDb) {
    let tw = TwilioMock::default();
    let tw_base = serve_mock(Router::new().fallback(twilio_handler), tw.clone()).await;
    let clock = Arc::new(ManualClock::new(t("2026-12-01T23:00:00Z")));
    let app = serve_app(&db, clock.clone(), &tw_base).await;
    let lead = lead_at(
        &app.store,
        &clock,
        t("2026-12-01T23:00:00Z"),
        "CA-l1",
        "Jane <b>Doe</b>",
        "+447700900111",
        "B",
    )
    .await;
    app.store
        .record_card(
            &lead,
            "C0NIGHT",
            Some("1.1"),
            true,
            t("2026-12-01T23:00:05Z"),
        )
        .await
        .unwrap();
    let link = app.notify.link_for(&lead, None, clock.now()).unwrap();
    let token = token_of(&link);
    // Next morning 08:52 London.
    clock.set(t("2026-12-02T08:52:00Z"));
    let page = app
        .http
        .get(format!("{}/c/{token}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Jane &lt;b&gt;Doe&lt;/b&gt;") && !html.contains("<b>Doe"),
        "escaped: {html}"
    );
    assert!(html.contains("new_enquiry_demo") && html.contains("40 seats &lt;soon&gt;"));
    assert!(html.contains("Claim and call back") && html.contains("Alex Smith"));
    // Tampered: another lead id under this signature.
    let (p, s) = token.split_once('.').unwrap();
    let mut chars: Vec<char> = p.chars().collect();
    chars[3] = if chars[3] == 'A' { 'B' } else { 'A' };
    let forged: String = chars.into_iter().collect();
    let r = app
        .http
        .post(format!("{}/c/{forged}.{s}/claim", app.base))
        .form(&[("rep", "sam")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = app
        .http
        .get(format!("{}/c/{forged}.{s}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(app.store.lead_claim(&lead).await.unwrap().is_none());
    // Valid claim by Alex.
    let r = app
        .http
        .post(format!("{}/c/{token}/claim", app.base))
        .form(&[("rep", "alex")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Claimed by Alex Smith at 08:52") && html.contains("Calling your phone now"),
        "{html}"
    );
    // Click-to-call: rep's phone, business caller ID, whisper then dial.
    let calls = tw.lock().unwrap().calls.clone();
    assert_eq!(calls.len(), 1);
    let (auth, path, form) = &calls[0];
    assert_eq!(path, "/2010-04-01/Accounts/AC123/Calls.json");
    use base64::Engine;
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("AC123:tw-token")
    );
    assert_eq!(auth.as_deref(), Some(want.as_str()));
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(get("To"), "+447700900001");
    assert_eq!(get("From"), "+442079460000");
    let twiml = get("Twiml");
    assert!(
        twiml.contains("<Say>Calling back Jane &lt;b&gt;Doe&lt;/b&gt;, tier B"),
        "{twiml}"
    );
    assert!(
        twiml.contains("<Dial callerId=\"+442079460000\"><Number>+447700900111</Number></Dial>"),
        "{twiml}"
    );
    let claim = app.store.lead_claim(&lead).await.unwrap().unwrap();
    assert_eq!(
        (claim.rep_id.as_str(), claim.via.as_str()),
        ("alex", "link")
    );
    assert_eq!(claim.dial_sid.as_deref(), Some("CAdial0001"));
    let card = app.store.lead_card(&lead).await.unwrap().unwrap();
    assert_eq!(claim.claimed_at - card.posted_at, Duration::seconds(35_515));
    assert_eq!(claim.dialed_at, Some(t("2026-12-02T08:52:00Z")));
    // Sam clicks a minute later: sees Alex's claim, no second call.
    clock.set(t("2026-12-02T08:53:00Z"));
    let r = app
        .http
        .post(format!("{}/c/{token}/claim", app.base))
        .form(&[("rep", "sam")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("Claimed by Alex Smith at 08:52"));
    let page = app
        .http
        .get(format!("{}/c/{token}", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Claimed by Alex Smith") && !page.contains("<form"));
    assert_eq!(tw.lock().unwrap().calls.len(), 1);
    // Expired: 72 h after the link was made.
    let other = lead_at(
        &app.store,
        &clock,
        t("2026-12-02T09:00:00Z"),
        "CA-l2",
        "Old Lead",
        "+447700900112",
        "C",
    )
    .await;
    let old = token_of(&app.notify.link_for(&other, None, clock.now()).unwrap());
    clock.set(t("2026-12-05T09:00:00Z"));
    let r = app
        .http
        .post(format!("{}/c/{old}/claim", app.base))
        .form(&[("rep", "sam")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(app.store.lead_claim(&other).await.unwrap().is_none());
}
on_both_databases!(
    links_claim_and_click_to_call,
    crate::links_claim_and_click_to_call
);

/// Without Twilio credentials the claim falls back to a `tel:` link.
#[tokio::test]
async fn claim_without_twilio_offers_tel_link() {
    let db = TestDb::sqlite().await;
    let clock = Arc::new(ManualClock::new(t("2026-12-01T10:00:00Z")));
    let env =
        Env::from_pairs([(env::DATABASE_URL, db.url.as_str())]).with(env::LINK_SECRET, LINK_KEY);
    let app = frontdesk::app::App::build(common::config(), &env, clock.clone())
        .await
        .unwrap();
    let notify = app.services.notify.clone().unwrap();
    let store = app.services.store.clone();
    let state = frontdesk::http::AppState::new(&app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, frontdesk::http::router(state)).await;
    });
    let lead = lead_at(
        &store,
        &clock,
        t("2026-12-01T10:00:00Z"),
        "CA-t1",
        "Tom",
        "+447700900901",
        "C",
    )
    .await;
    let token = token_of(&notify.link_for(&lead, None, clock.now()).unwrap());
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/c/{token}/claim"))
        .form(&[("rep", "Priya")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("href=\"tel:+447700900901\"") && html.contains("Claimed by Priya"),
        "{html}"
    );
    let c = store.lead_claim(&lead).await.unwrap().unwrap();
    assert_eq!(c.dialed_at, None);
}

// ------------------------------------------------ Slack interactions

fn interaction_body(lead_id: &str, user: &str) -> String {
    let payload = json!({"type": "block_actions", "user": {"id": user, "username": "alex.s", "team_id": "T1"},
        "container": {"type": "message", "message_ts": "1.1", "channel_id": "C0NIGHT"},
        "response_url": "https://hooks.slack.com/actions/T1/1/x",
        "actions": [{"type": "button", "action_id": "claim_lead", "block_id": format!("lead:{lead_id}"), "value": lead_id, "action_ts": "1.2"}]});
    serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap()
}

/// Valid signature claims the lead (mapped to the rep by Slack id, with
/// click-to-call); wrong secret, a stale timestamp and an altered body are
/// refused and claim nothing.
#[tokio::test]
async fn slack_interactions_are_signature_checked() {
    use frontdesk::notify::signature::slack_signature;
    let db = TestDb::sqlite().await;
    let tw = TwilioMock::default();
    let tw_base = serve_mock(Router::new().fallback(twilio_handler), tw.clone()).await;
    let clock = Arc::new(ManualClock::new(t("2026-12-02T08:52:00Z")));
    let app = serve_app(&db, clock.clone(), &tw_base).await;
    let lead = lead_at(
        &app.store,
        &clock,
        t("2026-12-02T08:52:00Z"),
        "CA-s1",
        "Jo",
        "+447700900801",
        "B",
    )
    .await;
    let url = format!("{}/slack/interactions", app.base);
    let send = |ts: String, sig: String, body: String| {
        app.http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", ts)
            .header("x-slack-signature", sig)
            .body(body)
            .send()
    };
    let right = Secret::new("slack-signing".to_string());
    let wrong = Secret::new("not-it".to_string());
    let body = interaction_body(&lead, "U0ALEX");
    let now = clock.now().timestamp().to_string();
    // Wrong secret.
    let r = send(
        now.clone(),
        slack_signature(&wrong, &now, body.as_bytes()),
        body.clone(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    // Stale: signed correctly but six minutes old.
    let old = (clock.now().timestamp() - 360).to_string();
    let r = send(
        old.clone(),
        slack_signature(&right, &old, body.as_bytes()),
        body.clone(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    // Altered body: signed for another user.
    let sig = slack_signature(&right, &now, body.as_bytes());
    let altered = interaction_body(&lead, "U0SAM");
    let r = send(now.clone(), sig.clone(), altered).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(app.store.lead_claim(&lead).await.unwrap().is_none());
    // Valid.
    let r = send(now.clone(), sig, body).await.unwrap();
    assert_eq!(r.status(), 200);
    let c = app.store.lead_claim(&lead).await.unwrap().unwrap();
    assert_eq!(
        (c.rep_id.as_str(), c.rep_name.as_str(), c.via.as_str()),
        ("alex", "Alex Smith", "slack")
    );
    assert_eq!(tw.lock().unwrap().calls.len(), 1);
}

// ------------------------------------------------------ post-call webhook

#[derive(Default)]
struct HookState {
    received: Vec<(String, String, Bytes)>,
    fail_first: u32,
}

type HookMock = Arc<Mutex<HookState>>;

async fn hook_handler(State(m): State<HookMock>, headers: HeaderMap, body: Bytes) -> Response {
    let mut s = m.lock().unwrap();
    if s.fail_first > 0 {
        s.fail_first -= 1;
        return StatusCode::BAD_GATEWAY.into_response();
    }
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    s.received
        .push((h("x-frontdesk-timestamp"), h("x-frontdesk-signature"), body));
    StatusCode::NO_CONTENT.into_response()
}

/// One signed POST per finished call, retried through a 502, verifiable
/// with the documented recipe (and not with another secret or a changed
/// body); the same call queued twice is sent once.
#[tokio::test]
async fn post_call_webhook_is_signed_and_sent_once() {
    let db = TestDb::sqlite().await;
    let hook = HookMock::default();
    hook.lock().unwrap().fail_first = 1;
    let hook_base = serve_mock(Router::new().fallback(hook_handler), hook.clone()).await;
    let clock = Arc::new(ManualClock::new(t("2026-12-01T10:00:00Z")));
    let store = store_on(&db).await;
    let secret = Secret::new("whsec-1".to_string());
    let notify = Notify::new(NotifyParts {
        store: store.clone(),
        clock: clock.clone(),
        sleeper: Arc::new(RecordingSleeper::default()),
        hours: hours(),
        public_url: "https://fd.example.com".into(),
        links: None,
        link_ttl: Duration::hours(72),
        reps: vec![],
        dialer: None,
        slack_cfg: SlackConfig::default(),
        slack: None,
        slack_signing: None,
        webhook: Some(
            WebhookClient::new(
                &format!("{hook_base}/hook"),
                secret.clone(),
                std::time::Duration::from_secs(5),
            )
            .unwrap(),
        ),
        sms: None,
        sms_cfg: Default::default(),
        business_name: "Acme Dental".into(),
        own_numbers: vec![],
        recording_dir: std::env::temp_dir().join("frontdesk-no-recordings"),
        media: None,
        crm: None,
    });
    let w = Worker::new(notify);
    let body = PostCall {
        schema: webhook::SCHEMA.into(),
        call: PostCallCall {
            call_sid: "CA-pc1".into(),
            from: Some("+447700900123".into()),
            to: Some("+442079460000".into()),
            started_at: t("2026-12-01T09:55:00Z"),
            ended_at: Some(t("2026-12-01T09:59:00Z")),
            duration_s: Some(240),
        },
        lead: None,
        outcome: "voicemail".into(),
        booking: None,
        transfer: None,
        summary: Some("Left a voicemail about a quote.".into()),
    };
    assert!(enqueue_post_call(&store, &body, clock.now()).await.unwrap());
    assert!(!enqueue_post_call(&store, &body, clock.now()).await.unwrap());
    let r = w.run_once().await.unwrap();
    assert_eq!(r.retrying, 1);
    clock.set(t("2026-12-01T10:10:00Z"));
    drain(&w).await;
    let got = hook.lock().unwrap().received.clone();
    assert_eq!(got.len(), 1);
    let (ts, sig, raw) = &got[0];
    assert_eq!(ts, &t("2026-12-01T10:10:00Z").timestamp().to_string());
    // The documented recipe, spelled out: hex HMAC-SHA256 over "ts.body".
    use hmac::{Hmac, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(b"whsec-1").unwrap();
    m.update(format!("{ts}.").as_bytes());
    m.update(raw);
    assert_eq!(
        sig,
        &format!("v1={}", hex::encode(m.finalize().into_bytes()))
    );
    assert!(webhook::verify(&secret, ts, sig, raw, clock.now()));
    assert!(!webhook::verify(
        &Secret::new("x".into()),
        ts,
        sig,
        raw,
        clock.now()
    ));
    assert!(!webhook::verify(&secret, ts, sig, b"{}", clock.now()));
    assert!(!webhook::verify(
        &secret,
        ts,
        sig,
        raw,
        clock.now() + Duration::minutes(6)
    ));
    let parsed: PostCall = serde_json::from_slice(raw).unwrap();
    assert_eq!(parsed, body);
    let v: Value = serde_json::from_slice(raw).unwrap();
    for k in [
        "schema", "call", "lead", "outcome", "booking", "transfer", "summary",
    ] {
        assert!(v.get(k).is_some(), "{k} missing: {v}");
    }
}

/// `check-config`'s one pass names the missing secrets of configured features.
#[test]
fn validate_names_missing_notify_secrets() {
    use frontdesk::app::App;
    let base = Env::from_pairs([(env::DATABASE_URL, "sqlite://x.db")]);
    let mut c = common::config();
    c.slack = slack_cfg(SlackMode::Bot, "http://127.0.0.1:9");
    let e = App::validate(&c, &base).unwrap_err().to_string();
    assert!(e.contains("SLACK_BOT_TOKEN"), "{e}");
    let e = App::validate(&c, &base.clone().with(env::SLACK_BOT_TOKEN, "x"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("FRONTDESK_LINK_SECRET") && e.contains("slack.mode"),
        "{e}"
    );
    assert!(App::validate(
        &c,
        &base
            .clone()
            .with(env::SLACK_BOT_TOKEN, "x")
            .with(env::LINK_SECRET, "k")
    )
    .is_ok());
    let mut c = common::config();
    c.webhooks.post_call_url = "https://hooks.example.com/fd".into();
    let e = App::validate(&c, &base).unwrap_err().to_string();
    assert!(
        e.contains("FRONTDESK_WEBHOOK_SECRET") && e.contains("webhooks.post_call_url"),
        "{e}"
    );
}
