//! Inbound routing over loopback HTTP, as Twilio drives it: signed form
//! POSTs to `/twilio/*`, TwiML parsed back, the activity log read through
//! `GET /api/calls`. Signatures are computed here independently of the
//! server (HMAC-SHA1 over `server.public_url` + path + sorted params).

mod common;
#[path = "support/xml.rs"]
mod xml;

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use frontdesk::clock::ManualClock;
use frontdesk::config::{env, Config, Env};
use frontdesk::pii::Pii;
use frontdesk::routing::{verify_stream_token, StreamKey};
use hmac::{Hmac, Mac};
use serde_json::Value;

const AUTH: &str = "twilio-test-auth-token";
const API: &str = "api-token-1";
/// What Twilio is told to call; the server listens elsewhere (loopback).
const PUBLIC: &str = "https://frontdesk.example";
const CALLER: &str = "+447700900123";
/// Humans first, AI backup, call connect.
const BACKUP_AI: &str = "+442079460001";
/// Humans first, voicemail backup.
const VOICEMAIL: &str = "+442079460002";
/// AI answers first; transfers ring Sam.
const PRIMARY_AI: &str = "+442079460003";
/// A phone menu with an on-call rotation behind key 2.
const MENU: &str = "+442079460004";

fn config() -> Config {
    let text = format!(
        r#"
        [server]
        public_url = "{PUBLIC}"
        [location]
        business_phone = "+442079460000"
        voicemail_greeting = "You have reached the Demo Co."
        [[users]]
        id = "alex"
        phones = ["+447700900001"]
        [[users]]
        id = "sam"
        phones = ["+447700900002"]
        [[numbers]]
        e164 = "{BACKUP_AI}"
        name = "Sales"
        ai_mode = "backup"
        team_member = "alex"
        team_member_devices = ["web", "phone"]
        ring_more = ["sam"]
        call_connect = true
        whisper = "Call for {{{{number.name}}}}"
        [[numbers]]
        e164 = "{VOICEMAIL}"
        team_member = "alex"
        backup = "voicemail"
        [[numbers]]
        e164 = "{PRIMARY_AI}"
        ai_mode = "primary"
        team_member = "sam"
        team_member_devices = ["web", "phone"]
        [[ivr]]
        id = "main"
        prompt = "Press 1 for sales, 2 for the on-call engineer."
        retries = 1
        [ivr.options]
        "1" = "ring"
        "2" = "oncall:support"
        [[oncall]]
        id = "support"
        members = ["alex", "sam"]
        accept_wait_s = 8
        [[numbers]]
        e164 = "{MENU}"
        ivr = "main"
        team_member = "alex"
        "#
    );
    let mut c = Config::from_toml(&text).expect("config");
    c.storage.max_connections = 5;
    c.brain.kind = frontdesk::config::brain::BrainKind::Scripted;
    c
}

struct Tw {
    base: String,
    http: reqwest::Client,
    services: frontdesk::app::Services,
}

async fn spawn(db: &common::TestDb) -> Tw {
    let env = Env::from_pairs([
        (env::DATABASE_URL, db.url.as_str()),
        (env::API_TOKEN, API),
        (env::TWILIO_AUTH_TOKEN, AUTH),
    ]);
    let clock = Arc::new(ManualClock::new(common::t("2026-11-30T10:00:00Z")));
    let app = common::serve_env(config(), env, clock, Some(API)).await;
    Tw {
        base: app.base,
        http: app.http,
        services: app.services,
    }
}

/// Twilio's algorithm, written independently of the server's.
fn sign(url: &str, params: &[(&str, &str)]) -> String {
    let mut p: Vec<_> = params.to_vec();
    p.sort();
    let mut s = url.to_string();
    for (k, v) in p {
        s.push_str(k);
        s.push_str(v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(AUTH.as_bytes()).expect("key");
    mac.update(s.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

impl Tw {
    /// POST like Twilio to `url` (a `PUBLIC` URL, as found in TwiML), signed.
    async fn post(&self, url: &str, params: &[(&str, &str)]) -> (u16, String) {
        let sig = sign(url, params);
        self.send(url, params, Some(&sig)).await
    }

    async fn send(&self, url: &str, params: &[(&str, &str)], sig: Option<&str>) -> (u16, String) {
        let path = url.strip_prefix(PUBLIC).expect("a public URL");
        let mut r = self.http.post(format!("{}{path}", self.base)).form(params);
        if let Some(s) = sig {
            r = r.header("X-Twilio-Signature", s);
        }
        let resp = r.send().await.expect("request");
        (resp.status().as_u16(), resp.text().await.expect("body"))
    }

    async fn twiml(&self, url: &str, params: &[(&str, &str)]) -> xml::Node {
        let (code, body) = self.post(url, params).await;
        assert_eq!(code, 200, "{url}: {body}");
        xml::parse(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    async fn calls(&self) -> Vec<Value> {
        let resp = self
            .http
            .get(format!("{}/api/calls", self.base))
            .bearer_auth(API)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), 200);
        let v: Value = resp.json().await.expect("json");
        v["calls"].as_array().cloned().unwrap_or_default()
    }

    async fn call(&self, sid: &str) -> Value {
        self.calls()
            .await
            .into_iter()
            .find(|c| c["call_sid"] == sid)
            .unwrap_or_else(|| panic!("call {sid} not listed"))
    }
}

fn voice_params<'a>(sid: &'a str, to: &'a str) -> Vec<(&'a str, &'a str)> {
    voice_params_from(sid, CALLER, to)
}

fn voice_params_from<'a>(sid: &'a str, from: &'a str, to: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CallSid", sid),
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("From", from),
        ("To", to),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("ApiVersion", "2010-04-01"),
    ]
}

fn kinds(call: &Value) -> Vec<String> {
    call["events"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| e["kind"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn stream_params(stream: &xml::Node) -> BTreeMap<String, Pii<String>> {
    let mut ps = Vec::new();
    stream.find_all("Parameter", &mut ps);
    ps.iter()
        .map(|p| {
            (
                p.attr("name").unwrap_or_default().to_string(),
                Pii::new(p.attr("value").unwrap_or_default().to_string()),
            )
        })
        .collect()
}

async fn ring_then_every_dial_status(db: common::TestDb) {
    let tw = spawn(&db).await;
    let key = StreamKey::from_auth_token(AUTH);
    let now = common::t("2026-11-30T10:00:00Z");
    for (i, status) in ["completed", "busy", "no-answer", "failed", "canceled"]
        .into_iter()
        .enumerate()
    {
        let sid = format!("CA{status:0>32}").replace('-', "0");
        // A different caller each time: one caller calling again and again
        // is the repeat-caller protection, tested below.
        let from = format!("+4477009002{i:02}");
        let doc = tw
            .twiml(
                &format!("{PUBLIC}/twilio/voice"),
                &voice_params_from(&sid, &from, BACKUP_AI),
            )
            .await;
        assert_eq!(doc.name, "Response");
        let dial = doc.find("Dial").expect("stage 2 dial");
        assert_eq!(dial.attr("timeout"), Some("20"));
        assert_eq!(dial.attr("callerId"), Some(from.as_str()));
        // One dial: alex's app, alex's phone (the forwarding slot), sam's app.
        let nouns: Vec<(&str, &str)> = dial
            .children
            .iter()
            .map(|n| (n.name.as_str(), n.text.as_str()))
            .collect();
        assert_eq!(
            nouns,
            [
                ("Client", "alex"),
                ("Number", "+447700900001"),
                ("Client", "sam")
            ]
        );
        // Call connect: every answering leg is screened.
        assert!(dial.children.iter().all(|n| n
            .attr("url")
            .is_some_and(|u| u.starts_with(&format!("{PUBLIC}/twilio/whisper?")))));
        let action = dial.attr("action").expect("action").to_string();
        assert!(action.starts_with(&format!("{PUBLIC}/twilio/dial-complete?")));
        let mut p = voice_params_from(&sid, &from, BACKUP_AI);
        p.push(("DialCallStatus", status));
        p.push(("DialCallSid", "CAchild"));
        let next = tw.twiml(&action, &p).await;
        if status == "completed" {
            assert_eq!(next.child_names(), ["Hangup"], "{status}");
            continue;
        }
        // Stage 3: the AI in backup mode, with a signed, expiring token.
        let connect = next
            .find("Connect")
            .unwrap_or_else(|| panic!("{status}: {next:?}"));
        assert!(connect
            .attr("action")
            .is_some_and(|a| a.starts_with(&format!("{PUBLIC}/twilio/after-stream"))));
        let stream = connect.find("Stream").expect("stream");
        assert_eq!(
            stream.attr("url"),
            Some("wss://frontdesk.example/media/twilio")
        );
        let params = stream_params(stream);
        let ctx = verify_stream_token(&params, &key, now).expect("valid token");
        assert_eq!(ctx.call_sid, sid);
        assert_eq!(ctx.mode, "backup");
        assert_eq!(ctx.from.expose(), &from);
        assert_eq!(ctx.number.expose(), BACKUP_AI);
        assert!(verify_stream_token(&params, &key, now + chrono::Duration::hours(1)).is_err());
    }

    // Four calls inside two minutes from one caller: the fourth is not
    // answered by the AI after the ring (voicemail instead), so a dialler or
    // a forwarding loop cannot keep the AI busy.
    let repeat = "+447700900300";
    for i in 0..4 {
        let sid = format!("CArepeat{i:024}");
        let doc = tw
            .twiml(
                &format!("{PUBLIC}/twilio/voice"),
                &voice_params_from(&sid, repeat, BACKUP_AI),
            )
            .await;
        let action = doc
            .find("Dial")
            .and_then(|d| d.attr("action"))
            .expect("dial")
            .to_string();
        let mut p = voice_params_from(&sid, repeat, BACKUP_AI);
        p.push(("DialCallStatus", "no-answer"));
        let next = tw.twiml(&action, &p).await;
        assert_eq!(next.find("Connect").is_some(), i < 3, "call {i}: {next:?}");
        assert_eq!(next.find("Record").is_some(), i == 3, "call {i}");
    }

    // The voicemail number: stage 3 is the location greeting and a recording.
    let sid = "CA11111111111111111111111111111111";
    let doc = tw
        .twiml(
            &format!("{PUBLIC}/twilio/voice"),
            &voice_params(sid, VOICEMAIL),
        )
        .await;
    let action = doc
        .find("Dial")
        .and_then(|d| d.attr("action"))
        .expect("dial")
        .to_string();
    let mut p = voice_params(sid, VOICEMAIL);
    p.push(("DialCallStatus", "no-answer"));
    let vm = tw.twiml(&action, &p).await;
    assert_eq!(vm.child_names(), ["Say", "Record", "Hangup"]);
    assert_eq!(vm.children[0].text, "You have reached the Demo Co.");
    let rec_action = vm
        .find("Record")
        .and_then(|r| r.attr("action"))
        .expect("record action")
        .to_string();
    let mut p = voice_params(sid, VOICEMAIL);
    let rec_url = "https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/RE1";
    p.extend([
        ("RecordingUrl", rec_url),
        ("RecordingDuration", "14"),
        ("Digits", "hangup"),
    ]);
    let bye = tw.twiml(&rec_action, &p).await;
    assert_eq!(bye.child_names(), ["Say", "Hangup"]);
    // A retried callback stores nothing twice.
    tw.twiml(&rec_action, &p).await;
    let store = &tw.services.store;
    let call = store.call_by_sid(sid).await.expect("db").expect("call");
    let vms = store.voicemails_of_call(&call.id).await.expect("db");
    assert_eq!(vms.len(), 1);
    assert_eq!(vms[0].recording_url, rec_url);
    assert_eq!(vms[0].duration_ms, Some(14_000));
    let contact = store
        .contact_by_phone(CALLER)
        .await
        .expect("db")
        .expect("contact");
    assert_eq!(vms[0].contact_id.as_deref(), Some(contact.id.as_str()));
    let leads = store
        .list_leads(&frontdesk::store::LeadFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("leads");
    let lead = leads
        .iter()
        .find(|l| l.call_sid.as_deref() == Some(sid))
        .expect("a lead for the voicemail");
    assert_eq!(lead.tier.as_deref(), Some("C"));
    assert!(lead
        .notes
        .as_ref()
        .is_some_and(|n| n.expose().contains(rec_url)));
    let listed = tw.call(sid).await;
    let k = kinds(&listed);
    for want in [
        "inbound",
        "ring_attempt",
        "no_answer",
        "voicemail_offered",
        "voicemail",
    ] {
        assert!(k.iter().any(|x| x == want), "{want} in {k:?}");
    }
    // The log never holds a raw phone number.
    assert!(
        !listed["events"].to_string().contains("7700900"),
        "{}",
        listed["events"]
    );
}
on_both_databases!(
    ring_then_every_dial_status_sqlite_and_pg,
    crate::ring_then_every_dial_status
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_unsigned_requests_get_403_and_change_nothing() {
    let db = common::TestDb::sqlite().await;
    let tw = spawn(&db).await;
    let sid = "CA22222222222222222222222222222222";
    let params = voice_params(sid, BACKUP_AI);
    for path in [
        "/twilio/voice",
        "/twilio/dial-complete",
        "/twilio/after-stream",
        "/twilio/whisper?call=CA2",
        "/twilio/recording",
        "/twilio/status",
    ] {
        let url = format!("{PUBLIC}{path}");
        // Unsigned.
        assert_eq!(tw.send(&url, &params, None).await.0, 403, "{path} unsigned");
        // Signed with another token.
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"not-the-token").expect("key");
        mac.update(url.as_bytes());
        let other = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(
            tw.send(&url, &params, Some(&other)).await.0,
            403,
            "{path} other token"
        );
        // Signed for the loopback address instead of server.public_url.
        let wrong = sign(&format!("{}{path}", tw.base), &params);
        assert_eq!(
            tw.send(&url, &params, Some(&wrong)).await.0,
            403,
            "{path} wrong url"
        );
        // A parameter changed after signing.
        let good = sign(&url, &params);
        let mut tampered = params.clone();
        tampered[2] = ("From", "+447700900999");
        assert_eq!(
            tw.send(&url, &tampered, Some(&good)).await.0,
            403,
            "{path} tampered"
        );
    }
    assert!(tw
        .services
        .store
        .call_by_sid(sid)
        .await
        .expect("db")
        .is_none());
    assert!(tw.calls().await.is_empty());
    // The same request correctly signed is served.
    assert_eq!(
        tw.post(&format!("{PUBLIC}/twilio/voice"), &params).await.0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_callbacks_per_leg_land_in_the_activity_log() {
    let db = common::TestDb::sqlite().await;
    let tw = spawn(&db).await;
    let sid = "CA33333333333333333333333333333333";
    let doc = tw
        .twiml(
            &format!("{PUBLIC}/twilio/voice"),
            &voice_params(sid, VOICEMAIL),
        )
        .await;
    let status_url = doc
        .find("Client")
        .and_then(|c| c.attr("statusCallback"))
        .expect("status callback on the leg")
        .to_string();
    assert_eq!(
        doc.find("Client")
            .and_then(|c| c.attr("statusCallbackEvent")),
        Some("initiated ringing answered completed")
    );
    for (leg, st, ts) in [
        (
            "client:alex",
            "initiated",
            "Mon, 30 Nov 2026 10:00:01 +0000",
        ),
        ("client:alex", "ringing", "Mon, 30 Nov 2026 10:00:02 +0000"),
        (
            "+442079460000",
            "ringing",
            "Mon, 30 Nov 2026 10:00:02 +0000",
        ),
        (
            "+442079460000",
            "no-answer",
            "Mon, 30 Nov 2026 10:00:22 +0000",
        ),
        (
            "client:alex",
            "in-progress",
            "Mon, 30 Nov 2026 10:00:09 +0000",
        ),
        (
            "client:alex",
            "completed",
            "Mon, 30 Nov 2026 10:03:00 +0000",
        ),
    ] {
        let p = [
            ("CallSid", "CAchild0000000000000000000000000"),
            ("ParentCallSid", sid),
            ("CallStatus", st),
            ("To", leg),
            ("Timestamp", ts),
            ("CallbackSource", "call-progress-events"),
        ];
        let (code, body) = tw.post(&status_url, &p).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(
            xml::parse(&body).expect("xml").child_names(),
            Vec::<&str>::new()
        );
    }
    let call = tw.call(sid).await;
    let events = call["events"].as_array().cloned().unwrap_or_default();
    let find = |kind: &str, detail: &str| {
        events
            .iter()
            .find(|e| e["kind"] == kind && e["detail"].as_str().is_some_and(|d| d.contains(detail)))
            .unwrap_or_else(|| panic!("{kind} {detail} in {events:?}"))
            .clone()
    };
    assert_eq!(
        find("ring_attempt", "ringing: client:alex")["at"],
        "2026-11-30T10:00:02Z"
    );
    assert_eq!(
        find("no_answer", "no-answer: +…00")["at"],
        "2026-11-30T10:00:22Z"
    );
    assert_eq!(
        find("answered", "in-progress: client:alex")["at"],
        "2026-11-30T10:00:09Z"
    );
    find("leg_completed", "completed");
    assert!(!call["events"].to_string().contains("2079460000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_transfer_whisper_no_accept_back_to_the_ai() {
    let db = common::TestDb::sqlite().await;
    let tw = spawn(&db).await;
    let key = StreamKey::from_auth_token(AUTH);
    let now = common::t("2026-11-30T10:00:00Z");
    let sid = "CA44444444444444444444444444444444";
    // Stage 1: the AI answers.
    let doc = tw
        .twiml(
            &format!("{PUBLIC}/twilio/voice"),
            &voice_params(sid, PRIMARY_AI),
        )
        .await;
    let connect = doc.find("Connect").expect("primary AI");
    let params = stream_params(connect.find("Stream").expect("stream"));
    assert_eq!(
        verify_stream_token(&params, &key, now).expect("token").mode,
        "primary"
    );
    let after = connect.attr("action").expect("after-stream").to_string();

    // The media stream: the caller presses 0 for a person; the session says
    // its hand-off line, records the decision, and closes the stream.
    let closed = media_call(&tw, sid, &params, true).await;
    assert_eq!(
        closed,
        Some(1000),
        "a normal close hands the call back to Twilio"
    );
    let store = &tw.services.store;
    let call = store.call_by_sid(sid).await.expect("db").expect("call");
    assert_eq!(call.status, "handed_off");

    // Twilio fetches the next step: the transfer ring, every leg screened.
    let ring = tw.twiml(&after, &voice_params(sid, PRIMARY_AI)).await;
    let dial = ring.find("Dial").expect("transfer ring");
    let nouns: Vec<&str> = dial.children.iter().map(|n| n.text.as_str()).collect();
    assert_eq!(nouns, ["sam", "+447700900002"]);
    let whisper_url = dial.children[1]
        .attr("url")
        .expect("whisper url")
        .to_string();
    let dial_action = dial.attr("action").expect("action").to_string();

    // Sam's phone answers: the whisper summary and press-a-key.
    let leg = [
        ("CallSid", "CAleg00000000000000000000000000"),
        ("ParentCallSid", sid),
        ("From", CALLER),
        ("To", "+447700900002"),
        ("CallStatus", "in-progress"),
    ];
    let w = tw.twiml(&whisper_url, &leg).await;
    assert_eq!(
        w.child_names(),
        ["Gather", "Hangup"],
        "no key → the leg hangs up"
    );
    let gather = w.find("Gather").expect("gather");
    assert_eq!(gather.attr("numDigits"), Some("1"));
    assert_eq!(
        gather.find("Say").map(|s| s.text.as_str()),
        Some("Transfer from the AI receptionist: Caller pressed 0 to speak to someone")
    );
    // A key accepts (bridge); no key means the Gather's <Hangup/> ran.
    let accept = gather.attr("action").expect("accept").to_string();
    let mut pressed = leg.to_vec();
    pressed.push(("Digits", "5"));
    assert_eq!(
        tw.twiml(&accept, &pressed).await.child_names(),
        Vec::<&str>::new()
    );

    // Nobody accepted: the caller goes back to the AI, which is told so.
    let mut p = voice_params(sid, PRIMARY_AI);
    p.push(("DialCallStatus", "no-answer"));
    let back = tw.twiml(&dial_action, &p).await;
    let stream = back.find("Stream").expect("back to the AI");
    let ctx = verify_stream_token(&stream_params(stream), &key, now).expect("token");
    assert!(ctx.transfer_failed);
    assert_eq!(ctx.call_sid, sid);
    // The AI picks the call up again knowing the transfer failed, and offers
    // a booking or a call-back (its first words, on the call's record); the
    // caller hangs up while it speaks.
    let back_params = stream_params(stream);
    assert_eq!(media_call(&tw, sid, &back_params, false).await, Some(1000));
    let mut said: Vec<String> = Vec::new();
    for _ in 0..100 {
        let turns = store.turns(&call.id).await.expect("turns");
        said = turns.iter().map(|t| t.text.expose().clone()).collect();
        if said
            .iter()
            .any(|t| t.contains("nobody could take your call"))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        said.iter()
            .any(|t| t.contains("nobody could take your call") && t.contains("call you back")),
        "{said:?}"
    );

    // The AI closes again without a new hand-off: the old one is not replayed.
    let again = back
        .find("Connect")
        .and_then(|c| c.attr("action"))
        .expect("action")
        .to_string();
    assert_eq!(
        tw.twiml(&again, &voice_params(sid, PRIMARY_AI))
            .await
            .child_names(),
        ["Hangup"]
    );

    let k = kinds(&tw.call(sid).await);
    for want in [
        "ai",
        "transfer",
        "screening",
        "screen_accepted",
        "no_answer",
        "transfer_failed",
        "stream_closed",
    ] {
        assert!(k.iter().any(|x| x == want), "{want} in {k:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_need_the_twilio_auth_token() {
    let env = Env::from_pairs([(env::DATABASE_URL, "sqlite::memory:")]);
    let e = frontdesk::app::App::validate(&config(), &env).expect_err("token required");
    assert!(e.to_string().contains(env::TWILIO_AUTH_TOKEN), "{e}");
    let env = env.with(env::TWILIO_AUTH_TOKEN, AUTH);
    frontdesk::app::App::validate(&config(), &env).expect("valid with the token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn menu_key_to_oncall_rotation_then_voicemail_alert() {
    let db = common::TestDb::sqlite().await;
    let tw = spawn(&db).await;
    let sid = "CA55555555555555555555555555555555";
    let menu = tw
        .twiml(&format!("{PUBLIC}/twilio/voice"), &voice_params(sid, MENU))
        .await;
    let gather = menu.find("Gather").expect("menu");
    let action = gather.attr("action").expect("action").to_string();
    // A wrong key: the apology, then the menu again.
    let mut p = voice_params(sid, MENU);
    p.push(("Digits", "7"));
    let again = tw.twiml(&action, &p).await;
    assert_eq!(again.child_names(), ["Say", "Gather"]);
    assert_eq!(again.children[0].text, "Sorry, that is not an option.");
    let action = again
        .find("Gather")
        .and_then(|g| g.attr("action"))
        .expect("action")
        .to_string();
    assert!(action.contains("attempt=1"), "{action}");
    // Key 2: the on-call rotation, one phone at a time.
    let mut p = voice_params(sid, MENU);
    p.push(("Digits", "2"));
    let mut step = tw.twiml(&action, &p).await;
    assert_eq!(step.children[0].text, "Please hold while we connect you.");
    for phone in ["+447700900001", "+447700900002"] {
        let dial = step.find("Dial").expect("on-call leg");
        assert_eq!(dial.child_names(), ["Number"]);
        assert_eq!(dial.children[0].text, phone);
        // The responder answers, hears the screening message and presses 5: not 1.
        let whisper = dial.children[0].attr("url").expect("screened").to_string();
        let leg = [
            ("CallSid", "CAleg11111111111111111111111111"),
            ("ParentCallSid", sid),
            ("To", phone),
        ];
        let w = tw.twiml(&whisper, &leg).await;
        let g = w.find("Gather").expect("press 1");
        assert_eq!(g.attr("timeout"), Some("8"));
        assert_eq!(
            g.find("Say").map(|s| s.text.as_str()),
            Some("You have a call from the on-call line. Press 1 to accept.")
        );
        let mut pressed = leg.to_vec();
        pressed.push(("Digits", "5"));
        let declined = tw.twiml(g.attr("action").expect("accept"), &pressed).await;
        assert_eq!(declined.child_names(), ["Hangup"]);
        let mut p = voice_params(sid, MENU);
        p.push(("DialCallStatus", "no-answer"));
        step = tw.twiml(dial.attr("action").expect("action"), &p).await;
    }
    // After the last phone: the no-response message, the greeting, a recording.
    assert_eq!(step.child_names(), ["Say", "Say", "Record", "Hangup"]);
    assert_eq!(step.children[0].text, "Nobody is available right now.");
    let rec = step
        .find("Record")
        .and_then(|r| r.attr("action"))
        .expect("record")
        .to_string();
    let mut p = voice_params(sid, MENU);
    p.extend([
        ("RecordingUrl", "https://api.twilio.com/rec/RE9"),
        ("RecordingDuration", "9"),
    ]);
    tw.twiml(&rec, &p).await;
    let leads = tw
        .services
        .store
        .list_leads(&frontdesk::store::LeadFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("leads");
    let lead = leads
        .iter()
        .find(|l| l.call_sid.as_deref() == Some(sid))
        .expect("the alert lead");
    assert_eq!(lead.routing_owner.as_deref(), Some("support"));
    let k = kinds(&tw.call(sid).await);
    for want in [
        "ivr",
        "ring_attempt",
        "screen_declined",
        "no_answer",
        "alert",
        "voicemail",
    ] {
        assert!(k.iter().any(|x| x == want), "{want} in {k:?}");
    }
}

/// A media stream with these parameters: once the greeting plays, presses 0
/// (`press_zero`) or hangs up (`stop`); returns the close code the server
/// sent (if any).
async fn media_call(
    tw: &Tw,
    call_sid: &str,
    params: &BTreeMap<String, Pii<String>>,
    press_zero: bool,
) -> Option<u16> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let ws_url = format!("{}/media/twilio", tw.base.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .expect("upgrade");
    let custom: serde_json::Map<String, Value> = params
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.expose().clone())))
        .collect();
    let sid = "MZ00000000000000000000000000000001";
    let start = serde_json::json!({
        "event": "start",
        "streamSid": sid,
        "start": {"streamSid": sid, "callSid": call_sid, "accountSid": "AC1", "customParameters": custom}
    });
    ws.send(Message::text(start.to_string()))
        .await
        .expect("send");
    let mut pressed = false;
    let r = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(m) = ws.next().await {
            match m {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                    if v["event"] == "mark" {
                        // Echo marks at once: the greeting plays instantly.
                        let echo = serde_json::json!({"event": "mark", "streamSid": sid, "mark": v["mark"]});
                        let _ = ws.send(Message::text(echo.to_string())).await;
                    }
                    if v["event"] == "media" && !pressed {
                        pressed = true;
                        let next = if press_zero {
                            serde_json::json!({"event": "dtmf", "streamSid": sid, "dtmf": {"track": "inbound_track", "digit": "0"}})
                        } else {
                            serde_json::json!({"event": "stop", "streamSid": sid})
                        };
                        let _ = ws.send(Message::text(next.to_string())).await;
                    }
                }
                Ok(Message::Close(f)) => return f.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    })
    .await;
    r.unwrap_or(None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_stream_without_a_valid_token_is_closed() {
    let db = common::TestDb::sqlite().await;
    let tw = spawn(&db).await;
    let key = StreamKey::from_auth_token(AUTH);
    let sid = "CA55555555555555555555555555555555";
    let doc = tw
        .twiml(
            &format!("{PUBLIC}/twilio/voice"),
            &voice_params(sid, PRIMARY_AI),
        )
        .await;
    let good = stream_params(doc.find("Stream").expect("stream"));
    // No token at all.
    let mut none = good.clone();
    none.remove("token");
    assert_eq!(media_call(&tw, sid, &none, false).await, Some(1008));
    // A forged token.
    let mut forged = good.clone();
    forged.insert("token".into(), Pii::new("4102444800.00ff".into()));
    assert_eq!(media_call(&tw, sid, &forged, false).await, Some(1008));
    // A real token, for another call.
    assert_eq!(
        media_call(&tw, "CA66666666666666666666666666666666", &good, false).await,
        Some(1008)
    );
    // The real one for its call is served (and hangs up normally on 0).
    assert!(verify_stream_token(&good, &key, common::t("2026-11-30T10:00:00Z")).is_ok());
    assert_eq!(media_call(&tw, sid, &good, true).await, Some(1000));
}
