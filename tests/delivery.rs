//! Deliveries beyond Slack, through the real HTTP server: the post-call
//! webhook queued once per finished call (at the end of a media stream, or
//! at routing's final step for a call that went to humans or voicemail) and
//! checked by a mock receiver with the documented recipe; texts through a
//! mock Twilio Messages API (booking confirmation, missed-call text-back with
//! its cooldown, never to the business's own or withheld numbers, an opted-out
//! recipient failed without retry, a 503 retried); failed items listed by
//! `GET /api/outbox`; and the claim page's voicemail player.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use chrono::{Duration, Utc};
use common::{t, TestDb};
use frontdesk::clock::{Clock, ManualClock};
use frontdesk::config::{env, Config, Env};
use frontdesk::notify::worker::Worker;
use frontdesk::notify::{kind, Notify};
use frontdesk::store::{OutboxStatus, Store};
use futures_util::SinkExt;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const AUTH: &str = "tw-auth-token";
const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const API: &str = "api-token-1";
const HOOK_SECRET: &str = "whsec-delivery";
const LINK_KEY: &str = "link-key-1";
const PUBLIC: &str = "https://frontdesk.example";
const CALLER: &str = "+447700900123";
const SMS_FROM: &str = "+442079460099";
/// Humans first (Alex), then voicemail.
const VOICEMAIL: &str = "+442079460002";

// ------------------------------------------------------------------ mocks

/// (timestamp, signature, raw body) of each webhook received.
type Received = Vec<(String, String, Bytes)>;

#[derive(Default)]
struct Hook {
    received: Received,
}

type HookMock = Arc<Mutex<Hook>>;

async fn hook_handler(State(m): State<HookMock>, headers: HeaderMap, body: Bytes) -> Response {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    m.lock()
        .unwrap()
        .received
        .push((h("x-frontdesk-timestamp"), h("x-frontdesk-signature"), body));
    StatusCode::OK.into_response()
}

/// (authorization, path, form) of each Messages.json request.
type Sent = Vec<(Option<String>, String, Vec<(String, String)>)>;

#[derive(Default)]
struct Twilio {
    messages: Sent,
    /// Answer 503 this many times first.
    unavailable: u32,
    recording_fetches: Vec<Option<String>>,
}

type TwilioMock = Arc<Mutex<Twilio>>;

/// Opted out of texts: Twilio answers 400 with code 21610.
const OPTED_OUT: &str = "+447700900555";

async fn twilio_handler(
    State(m): State<TwilioMock>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let mut s = m.lock().unwrap();
    if method == Method::GET && uri.path().contains("/Recordings/") {
        s.recording_fetches.push(auth);
        return ([("content-type", "audio/mpeg")], b"ID3-fake-mp3".to_vec()).into_response();
    }
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    if s.unavailable > 0 {
        s.unavailable -= 1;
        return (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response();
    }
    let to = form
        .iter()
        .find(|(k, _)| k == "To")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    if to == OPTED_OUT {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"code": 21610, "message": format!("Attempt to send to unsubscribed recipient {to}"), "status": 400})),
        )
            .into_response();
    }
    s.messages.push((auth, uri.path().to_string(), form));
    (
        StatusCode::CREATED,
        axum::Json(json!({"sid": format!("SM{:032}", s.messages.len()), "status": "queued"})),
    )
        .into_response()
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

// ------------------------------------------------------------------ server

struct Served {
    base: String,
    http: reqwest::Client,
    store: Store,
    notify: Notify,
    worker: Worker,
    clock: Arc<ManualClock>,
    hook: HookMock,
    twilio: TwilioMock,
    twilio_base: String,
}

fn config(hook_base: &str, twilio_base: &str, numbers: bool) -> Config {
    let routing = if numbers {
        format!(
            r#"
            [location]
            business_phone = "+442079460000"
            [[users]]
            id = "alex"
            phones = ["+447700900001"]
            [[numbers]]
            e164 = "{VOICEMAIL}"
            team_member = "alex"
            team_member_devices = ["phone"]
            backup = "voicemail"
            "#
        )
    } else {
        String::new()
    };
    let text = format!(
        r#"
        [server]
        public_url = "{PUBLIC}"
        [business]
        name = "Acme Dental"
        [webhooks]
        post_call_url = "{hook_base}/hook"
        [twilio]
        api_base_url = "{twilio_base}"
        sms_from = "{SMS_FROM}"
        [sms]
        cooldown_h = 24
        {routing}
        "#
    );
    let mut c = Config::from_toml(&text).expect("config");
    c.storage.max_connections = 5;
    c
}

async fn serve(db: &TestDb, numbers: bool) -> Served {
    let hook = HookMock::default();
    let hook_base = serve_mock(Router::new().fallback(hook_handler), hook.clone()).await;
    let twilio = TwilioMock::default();
    let twilio_base = serve_mock(Router::new().fallback(twilio_handler), twilio.clone()).await;
    let env = Env::from_pairs([(env::DATABASE_URL, db.url.as_str())])
        .with(env::API_TOKEN, API)
        .with(env::TWILIO_AUTH_TOKEN, AUTH)
        .with(env::TWILIO_ACCOUNT_SID, ACCOUNT)
        .with(env::WEBHOOK_SECRET, HOOK_SECRET)
        .with(env::LINK_SECRET, LINK_KEY);
    let clock = Arc::new(ManualClock::new(t("2026-12-01T10:00:00Z")));
    let mut cfg = config(&hook_base, &twilio_base, numbers);
    let rec_dir = std::env::temp_dir().join(format!("fd-rec-{}", uuid::Uuid::new_v4().simple()));
    cfg.recording.dir = rec_dir;
    let app = frontdesk::app::App::build(cfg, &env, clock.clone())
        .await
        .expect("app");
    let notify = app.services.notify.clone().expect("notify is configured");
    let store = app.services.store.clone();
    let state = frontdesk::http::AppState::new(&app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = frontdesk::http::serve(listener, state, std::future::pending::<()>()).await;
    });
    Served {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        store,
        worker: Worker::new(notify.clone()),
        notify,
        clock,
        hook,
        twilio,
        twilio_base,
    }
}

/// Twilio's request signature, written independently of the server's.
fn twilio_sign(url: &str, params: &[(&str, &str)]) -> String {
    let mut p: Vec<_> = params.to_vec();
    p.sort();
    let mut s = url.to_string();
    for (k, v) in p {
        s.push_str(k);
        s.push_str(v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(AUTH.as_bytes()).unwrap();
    mac.update(s.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

impl Served {
    /// POST like Twilio to `url` (a `PUBLIC` URL as found in TwiML), signed.
    async fn twilio(&self, url: &str, params: &[(&str, &str)]) -> String {
        let path = url.strip_prefix(PUBLIC).expect("a public URL");
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("X-Twilio-Signature", twilio_sign(url, params))
            .form(params)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{url}");
        resp.text().await.unwrap()
    }

    async fn api(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(API)
            .send()
            .await
            .unwrap();
        let code = resp.status().as_u16();
        (code, resp.json().await.unwrap_or(Value::Null))
    }

    /// Deliver everything due now.
    async fn drain(&self) {
        for _ in 0..20 {
            let r = self.worker.run_once().await.unwrap();
            if r.delivered + r.retrying + r.failed + r.deferred == 0 {
                return;
            }
        }
        panic!("the outbox did not drain");
    }

    async fn items(&self, kind: &str) -> Vec<frontdesk::store::OutboxItem> {
        self.store.outbox_items(kind).await.unwrap()
    }

    fn webhooks(&self) -> Vec<(String, String, Bytes)> {
        self.hook.lock().unwrap().received.clone()
    }

    fn texts(&self) -> Sent {
        self.twilio.lock().unwrap().messages.clone()
    }
}

fn call_params<'a>(sid: &'a str, from: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CallSid", sid),
        ("AccountSid", ACCOUNT),
        ("From", from),
        ("To", VOICEMAIL),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
    ]
}

/// The `action` attribute of the first `<tag …>` in `twiml`, unescaped.
fn action_of(twiml: &str, tag: &str) -> String {
    let at = twiml
        .find(&format!("<{tag} "))
        .unwrap_or_else(|| panic!("no <{tag}> in {twiml}"));
    let rest = &twiml[at..];
    let a = rest.find("action=\"").expect("action") + 8;
    let end = rest[a..].find('"').expect("end of action") + a;
    rest[a..end].replace("&amp;", "&")
}

/// A caller rings the voicemail number; nobody answers; the caller leaves
/// a voicemail (`leave = true`) or hangs up; Twilio reports the end.
async fn missed_call(s: &Served, sid: &str, from: &str, leave: bool) {
    let p = call_params(sid, from);
    let twiml = s.twilio(&format!("{PUBLIC}/twilio/voice"), &p).await;
    if !twiml.contains("<Dial") {
        // An own number or a withheld one may be routed without a ring.
        let mut p = p.clone();
        p[4] = ("CallStatus", "completed");
        s.twilio(&format!("{PUBLIC}/twilio/status"), &p).await;
        return;
    }
    let mut p2 = p.clone();
    p2.push(("DialCallStatus", "no-answer"));
    let vm = s.twilio(&action_of(&twiml, "Dial"), &p2).await;
    if vm.contains("<Record") {
        // Stage 3 is not the end of the call: nothing is queued yet.
        assert!(
            s.items(kind::POST_CALL)
                .await
                .iter()
                .all(|i| i.idempotency_key != format!("webhook.post_call:{sid}")),
            "queued before the call ended"
        );
        if leave {
            let rec = format!(
                "{}/2010-04-01/Accounts/{ACCOUNT}/Recordings/RE{sid}",
                s.twilio_base
            );
            let mut p3 = p.clone();
            p3.extend([("RecordingUrl", rec.as_str()), ("RecordingDuration", "9")]);
            s.twilio(&action_of(&vm, "Record"), &p3).await;
        }
    }
    let mut p4 = p.clone();
    p4[4] = ("CallStatus", "completed");
    s.twilio(&format!("{PUBLIC}/twilio/status"), &p4).await;
}

/// The documented recipe: hex HMAC-SHA256 over "{timestamp}.{raw body}",
/// compared after `v1=`, timestamp within 300 s.
fn verify_recipe(ts: &str, sig: &str, body: &[u8], now: chrono::DateTime<Utc>) -> bool {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
    m.update(format!("{ts}.").as_bytes());
    m.update(body);
    let want = format!("v1={}", hex::encode(m.finalize().into_bytes()));
    let fresh = ts
        .parse::<i64>()
        .map(|t| (now.timestamp() - t).abs() <= 300)
        .unwrap_or(false);
    fresh && want == sig
}

fn body_of(raw: &Bytes) -> Value {
    serde_json::from_slice(raw).expect("JSON body")
}

// ------------------------------------------------------------------ tests

/// A call that ends on the media stream posts one signed webhook at its
/// end; a repeated end posts nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_call_posts_one_signed_webhook_at_its_end() {
    let db = TestDb::sqlite().await;
    let s = serve(&db, false).await;
    let ws_url = format!("{}/media/twilio", s.base.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let sid = "CAmedia00000000000000000000000001";
    ws.send(Message::text(format!(
        r#"{{"event":"start","streamSid":"MZ1","start":{{"accountSid":"{ACCOUNT}","streamSid":"MZ1","callSid":"{sid}","customParameters":{{}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
    )))
    .await
    .unwrap();
    ws.send(Message::text(
        r#"{"event":"stop","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"x"}}"#,
    ))
    .await
    .unwrap();
    // The record writer queues the webhook right after it writes the end.
    let mut queued = Vec::new();
    for _ in 0..200 {
        queued = s.items(kind::POST_CALL).await;
        if !queued.is_empty() {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    assert_eq!(queued.len(), 1, "queued once at the end of the stream");
    s.drain().await;
    // Queued again (e.g. a late status callback): nothing new is sent.
    s.notify.call_finished(sid, s.clock.now()).await.unwrap();
    s.drain().await;
    let got = s.webhooks();
    assert_eq!(got.len(), 1);
    let (ts, sig, raw) = &got[0];
    assert!(verify_recipe(ts, sig, raw, s.clock.now()), "signature");
    let v = body_of(raw);
    assert_eq!(v["schema"], "frontdesk.post_call.v1");
    assert_eq!(v["call"]["call_sid"], sid);
    assert!(v["call"]["ended_at"].is_string() && v["call"]["duration_s"].is_i64());
    assert_eq!(v["outcome"], "abandoned", "no caller turn: {v}");
    for k in ["lead", "booking", "transfer", "summary"] {
        assert!(v.get(k).is_some(), "{k} always present: {v}");
    }
}

/// The end of a media stream queues the webhook unless the call was handed
/// off (routing sends that one at the final carrier status).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_off_stream_queues_nothing_at_its_close() {
    use frontdesk::call::record::RecordWriter;
    use frontdesk::call::{conversation::CallInfo, HangupReason, Record};
    let db = TestDb::sqlite().await;
    let store = Store::connect(&db.url, &common::config().storage)
        .await
        .unwrap();
    let writer = RecordWriter::start(
        store.clone(),
        Arc::new(frontdesk::metrics::Metrics::default()),
        true,
    );
    for (sid, reason) in [
        ("CAhand", HangupReason::HandOff),
        ("CAdone", HangupReason::CarrierStop),
    ] {
        let mut rec = writer.recorder(Arc::new(ManualClock::new(t("2026-12-01T10:00:00Z"))));
        rec.record(Record::Started(CallInfo {
            call_sid: sid.into(),
            ..CallInfo::default()
        }));
        rec.record(Record::Ended(reason));
        assert!(rec.flush(StdDuration::from_secs(5)).await);
    }
    let keys: Vec<String> = store
        .outbox_items(kind::POST_CALL)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.idempotency_key)
        .collect();
    assert_eq!(keys, ["webhook.post_call:CAdone"]);
}

/// A call that went to humans and then to voicemail: nothing at stage 3,
/// one webhook (outcome voicemail, the tier C lead) once the voicemail is
/// in, none more at the final status; one missed-call text to the caller,
/// and none for the next missed call inside the cooldown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_voicemail_posts_once_and_texts_the_caller_once_per_cooldown() {
    let db = TestDb::sqlite().await;
    let s = serve(&db, true).await;
    let sid = "CAvm000000000000000000000000000001";
    missed_call(&s, sid, CALLER, true).await;
    assert_eq!(s.items(kind::POST_CALL).await.len(), 1);
    assert_eq!(s.items(kind::SMS_MISSED_CALL).await.len(), 1);
    s.drain().await;

    let got = s.webhooks();
    assert_eq!(got.len(), 1, "one webhook per call");
    let (ts, sig, raw) = &got[0];
    assert!(verify_recipe(ts, sig, raw, s.clock.now()));
    let v = body_of(raw);
    assert_eq!(v["call"]["call_sid"], sid);
    assert_eq!(v["call"]["from"], CALLER);
    assert_eq!(v["outcome"], "voicemail", "{v}");
    assert_eq!(v["lead"]["tier"], "C");
    assert!(v["summary"]
        .as_str()
        .unwrap_or_default()
        .starts_with("Voicemail"));

    let texts = s.texts();
    assert_eq!(texts.len(), 1);
    let (auth, path, form) = &texts[0];
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:{AUTH}"));
    assert_eq!(auth.as_deref(), Some(format!("Basic {basic}").as_str()));
    assert_eq!(
        path,
        &format!("/2010-04-01/Accounts/{ACCOUNT}/Messages.json")
    );
    let f = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    assert_eq!(f("To"), CALLER);
    assert_eq!(f("From"), SMS_FROM);
    assert!(f("Body").contains("Sorry we missed your call at Acme Dental"));

    // Ten minutes later the caller tries again and hangs up unanswered: a
    // webhook for that call, but no second text inside the cooldown.
    s.clock.advance(Duration::minutes(10));
    missed_call(&s, "CAvm000000000000000000000000000002", CALLER, false).await;
    s.drain().await;
    assert_eq!(s.webhooks().len(), 2);
    let v = body_of(&s.webhooks()[1].2);
    assert_eq!(v["outcome"], "abandoned", "{v}");
    assert_eq!(s.texts().len(), 1, "cooldown");

    // A day later the cooldown is over.
    s.clock.advance(Duration::hours(25));
    missed_call(&s, "CAvm000000000000000000000000000003", CALLER, false).await;
    s.drain().await;
    assert_eq!(s.texts().len(), 2);
}

/// Never to the business's own numbers or withheld caller IDs; an
/// opted-out recipient (21610) fails at once without a retry and is listed
/// with its error by `GET /api/outbox?status=failed`; a 503 is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texts_skip_own_and_withheld_numbers_and_map_twilio_errors() {
    let db = TestDb::sqlite().await;
    let s = serve(&db, true).await;
    missed_call(
        &s,
        "CAown00000000000000000000000000001",
        "+447700900001",
        true,
    )
    .await;
    missed_call(
        &s,
        "CAanon0000000000000000000000000001",
        "+266696687",
        false,
    )
    .await;
    missed_call(
        &s,
        "CAbiz00000000000000000000000000001",
        "+442079460000",
        false,
    )
    .await;
    s.drain().await;
    assert_eq!(s.items(kind::SMS_MISSED_CALL).await.len(), 0);
    assert!(s.texts().is_empty());

    missed_call(&s, "CAstop0000000000000000000000000001", OPTED_OUT, true).await;
    s.drain().await;
    let items = s.items(kind::SMS_MISSED_CALL).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].status, OutboxStatus::Failed);
    assert_eq!(items[0].attempts, 1, "no retry for an opted-out recipient");
    let (code, v) = s.api("/api/outbox?status=failed").await;
    assert_eq!(code, 200, "{v}");
    let failed = v["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(failed.len(), 1, "{v}");
    assert_eq!(failed[0]["kind"], kind::SMS_MISSED_CALL);
    let err = failed[0]["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("21610"), "{err}");
    assert!(
        !err.contains("900555"),
        "no phone number in the error: {err}"
    );
    assert!(failed[0].get("payload").is_none());
    assert_eq!(s.api("/api/outbox?status=nope").await.0, 400);
    let unauth = s
        .http
        .get(format!("{}/api/outbox", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unauth.status().as_u16(), 401);

    s.twilio.lock().unwrap().unavailable = 1;
    missed_call(
        &s,
        "CAretry000000000000000000000000001",
        "+447700900777",
        true,
    )
    .await;
    let r = s.worker.run_once().await.unwrap();
    assert_eq!(r.retrying, 1, "{r:?}");
    s.clock.advance(Duration::minutes(1));
    s.drain().await;
    assert_eq!(s.texts().len(), 1);
    assert_eq!(
        s.texts()[0].2[0],
        ("To".to_string(), "+447700900777".to_string())
    );
}

/// A booking confirmed through the API texts the attendee once, with the
/// start in the business's time zone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_booking_texts_the_attendee() {
    let db = TestDb::sqlite().await;
    let s = serve(&db, false).await;
    let hold: Value = s
        .http
        .post(format!("{}/api/holds", s.base))
        .bearer_auth(API)
        .json(&json!({"owner": "alex", "start": "2026-12-02T10:00:00Z"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = hold["id"].as_str().expect("hold id");
    let resp = s
        .http
        .post(format!("{}/api/holds/{id}/confirm", s.base))
        .bearer_auth(API)
        .json(&json!({"name": "Jane Doe", "phone": "07700 900123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    s.drain().await;
    let texts = s.texts();
    assert_eq!(texts.len(), 1);
    let body = &texts[0]
        .2
        .iter()
        .find(|(k, _)| k == "Body")
        .expect("body")
        .1;
    assert_eq!(
        body,
        "Acme Dental: you are booked for Wed 2 Dec at 10:00. Reply STOP to opt out."
    );
    assert_eq!(texts[0].2[0].1, CALLER);
}

/// The claim page of a voicemail lead has a player; its source streams the
/// recording from Twilio with the account's credentials, only for a valid
/// token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claim_page_plays_the_voicemail() {
    let db = TestDb::sqlite().await;
    let s = serve(&db, true).await;
    let sid = "CAplay000000000000000000000000001";
    missed_call(&s, sid, CALLER, true).await;
    let lead = s
        .store
        .list_leads(&frontdesk::store::LeadFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.call_sid.as_deref() == Some(sid))
        .expect("voicemail lead");
    let link = s.notify.link_for(&lead.id, None, s.clock.now()).unwrap();
    let path = link.strip_prefix(PUBLIC).unwrap().to_string();
    let page = s
        .http
        .get(format!("{}{path}", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<audio controls"), "{page}");
    assert!(
        page.contains(&format!("src=\"{path}/recording\"")),
        "{page}"
    );
    let audio = s
        .http
        .get(format!("{}{path}/recording", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(audio.status().as_u16(), 200);
    assert_eq!(audio.headers()["content-type"], "audio/mpeg");
    assert_eq!(audio.bytes().await.unwrap().as_ref(), b"ID3-fake-mp3");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:{AUTH}"));
    assert_eq!(
        s.twilio.lock().unwrap().recording_fetches,
        vec![Some(format!("Basic {basic}"))]
    );
    let mut bad = path.clone();
    bad.push('x');
    let refused = s
        .http
        .get(format!("{}{bad}/recording", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    assert_eq!(s.twilio.lock().unwrap().recording_fetches.len(), 1);
}

/// Two nodes handling two calls of one caller at the same moment queue one
/// missed-call text (the cooldown is a database row, not process memory).
async fn cooldown_is_shared(db: TestDb) {
    let store = Store::connect(&db.url, &common::config().storage)
        .await
        .unwrap();
    let other = Store::connect(&db.url, &common::config().storage)
        .await
        .unwrap();
    let now = t("2026-12-01T10:00:00Z");
    let phone = frontdesk::pii::Pii::new(CALLER.to_string());
    let cutoff = now - Duration::hours(24);
    let (a, b) = tokio::join!(
        store.enqueue_sms_with_cooldown(&phone, cutoff, kind::SMS_MISSED_CALL, "{}", "k:1", now),
        other.enqueue_sms_with_cooldown(&phone, cutoff, kind::SMS_MISSED_CALL, "{}", "k:2", now),
    );
    assert_eq!(
        [a.unwrap(), b.unwrap()].iter().filter(|q| **q).count(),
        1,
        "exactly one node queues the text"
    );
    let later = now + Duration::hours(25);
    assert!(store
        .enqueue_sms_with_cooldown(
            &phone,
            later - Duration::hours(24),
            kind::SMS_MISSED_CALL,
            "{}",
            "k:3",
            later
        )
        .await
        .unwrap());
    assert_eq!(
        store
            .outbox_items(kind::SMS_MISSED_CALL)
            .await
            .unwrap()
            .len(),
        2
    );
}
on_both_databases!(sms_cooldown_across_nodes, super::cooldown_is_shared);
