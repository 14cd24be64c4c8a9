//! The dashboard over loopback, on SQLite and PostgreSQL: a store seeded with
//! calls, leads, claims and dials whose four numbers were worked out by hand
//! below; the JSON and the page must say exactly those. Then the sign-in
//! paths (form, cookie, expiry, bearer, logout, no token configured), and a
//! real headless Chromium that signs in through the form and reads the
//! numbers off the rendered page (and, with `FRONTDESK_DASHBOARD_PNG=path`,
//! saves the screenshot the README shows).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use base64::Engine as _;
use chrono::Duration;
use common::{t, TestDb};
use frontdesk::clock::ManualClock;
use frontdesk::pii::Pii;
use frontdesk::store::{NewCall, NewContact, NewLead, Speaker, Store};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Wednesday 9 December 2026, 09:00 in London (GMT: London time is UTC).
/// The 7-day window is [Wed 2 Dec 09:00, Wed 9 Dec 09:00).
const NOW: &str = "2026-12-09T09:00:00Z";

/// How a seeded call went.
#[derive(Clone, Copy, PartialEq)]
enum Took {
    /// The AI receptionist spoke.
    Ai,
    /// A human picked up a ring leg.
    Human,
    /// Nobody: voicemail.
    Voicemail,
}

/// One seeded call and its lead.
struct Seed {
    sid: &'static str,
    start: &'static str,
    minutes: i64,
    took: Took,
    booked: bool,
    lead: Option<(&'static str, &'static str)>,
    /// (claim at, dial at)
    claim: Option<(&'static str, Option<&'static str>)>,
    /// A human answered a transfer leg at this time.
    transfer_answered: Option<&'static str>,
}

const fn call(sid: &'static str, start: &'static str, minutes: i64, took: Took) -> Seed {
    Seed {
        sid,
        start,
        minutes,
        took,
        booked: false,
        lead: None,
        claim: None,
        transfer_answered: None,
    }
}

/// The hand-worked store. Business hours are the demo's Mon–Fri 09:00–17:30.
///
/// In the window: 11 inbound calls (C10 is a day too old), 10 answered (C4
/// went to voicemail) → answer rate 10/11 = 90.9%. Booked: C1 (calendar
/// confirmed) and C9 (tier A lead) → 2/10 = 20%.
/// In-hours tier B/C leads: C2 (call ended 10:26, dialled 10:41 → 0.25 h),
/// C3 (ended 14:16, claimed 16:10 with no dial → 1.9 h), C4 (nobody yet),
/// C12 (a human took the transfer during the call → 0 h): median of
/// [0, 0.25, 1.9] = 0.25 h, 3 of 4 contacted.
/// After-hours tier B: C6 (Mon 23:30, claimed Tue 09:40 ≤ Tue 10:00), C7
/// (Tue 02:00, claimed Tue 10:30: late), C8 (Wed 07:00, unclaimed, its 10:00
/// is still to come: pending) → 1/2 = 50%, 1 pending.
fn seeds() -> Vec<Seed> {
    vec![
        Seed {
            booked: true,
            lead: Some(("A", "Alex Rivera")),
            ..call("C1", "2026-12-08T10:05:00Z", 6, Took::Ai)
        },
        Seed {
            lead: Some(("B", "Ann <script>alert(1)</script> O'Neil")),
            claim: Some(("2026-12-08T10:40:00Z", Some("2026-12-08T10:41:00Z"))),
            ..call("C2", "2026-12-08T10:20:00Z", 6, Took::Ai)
        },
        Seed {
            lead: Some(("C", "Carl Jones")),
            claim: Some(("2026-12-08T16:10:00Z", None)),
            ..call("C3", "2026-12-08T14:10:00Z", 6, Took::Ai)
        },
        Seed {
            lead: Some(("C", "Dana Voicemail")),
            ..call("C4", "2026-12-08T14:30:00Z", 2, Took::Voicemail)
        },
        call("C5", "2026-12-08T15:00:00Z", 4, Took::Human),
        Seed {
            lead: Some(("B", "Eve Night")),
            claim: Some(("2026-12-08T09:40:00Z", Some("2026-12-08T09:41:00Z"))),
            ..call("C6", "2026-12-07T23:30:00Z", 5, Took::Ai)
        },
        Seed {
            lead: Some(("B", "Finn Late")),
            claim: Some(("2026-12-08T10:30:00Z", None)),
            ..call("C7", "2026-12-08T02:00:00Z", 5, Took::Ai)
        },
        Seed {
            lead: Some(("B", "Gus Early")),
            ..call("C8", "2026-12-09T07:00:00Z", 5, Took::Ai)
        },
        Seed {
            lead: Some(("A", "Hana Booked")),
            ..call("C9", "2026-12-03T11:00:00Z", 7, Took::Ai)
        },
        Seed {
            lead: Some(("A", "Ida Old")),
            booked: true,
            ..call("C10", "2026-12-01T10:00:00Z", 5, Took::Ai)
        },
        Seed {
            lead: Some(("D", "Jo Question")),
            ..call("C11", "2026-12-03T11:30:00Z", 3, Took::Ai)
        },
        Seed {
            lead: Some(("C", "Kim Transfer")),
            transfer_answered: Some("2026-12-03T15:04:00Z"),
            ..call("C12", "2026-12-03T15:00:00Z", 10, Took::Ai)
        },
    ]
}

async fn seed(store: &Store) {
    for (i, s) in seeds().iter().enumerate() {
        let start = t(s.start);
        let end = start + Duration::minutes(s.minutes);
        let phone = format!("+4477009001{i:02}");
        let id = store
            .upsert_call(
                &NewCall {
                    call_sid: Some(s.sid.into()),
                    contact_id: None,
                    direction: "inbound".into(),
                    from: Some(Pii::new(phone.clone())),
                    to: Some(Pii::new("+442079460001".into())),
                    status: "in-progress".into(),
                },
                start,
            )
            .await
            .unwrap();
        match s.took {
            Took::Ai => store
                .put_turn(
                    &id,
                    0,
                    Speaker::Receptionist,
                    "Hello, how can I help?",
                    None,
                    false,
                    start + Duration::seconds(3),
                )
                .await
                .unwrap(),
            Took::Human => {
                store
                    .add_call_event(
                        &id,
                        start + Duration::seconds(8),
                        "answered",
                        "number leg: dial completed",
                    )
                    .await
                    .unwrap();
            }
            Took::Voicemail => {
                store
                    .add_voicemail(
                        Some(id.as_str()),
                        None,
                        "https://example.com/r.mp3",
                        Some(30_000),
                        None,
                        end,
                    )
                    .await
                    .unwrap();
            }
        }
        if s.booked {
            store
                .add_call_event(
                    &id,
                    start + Duration::minutes(3),
                    "tool_finished",
                    "confirm_booking ok",
                )
                .await
                .unwrap();
        }
        if let Some(at) = s.transfer_answered {
            store
                .add_call_event(&id, t(at), "answered", "transfer leg: dial completed")
                .await
                .unwrap();
        }
        store
            .end_call(&id, "completed", "carrier_stop", end)
            .await
            .unwrap();
        let Some((tier, name)) = s.lead else { continue };
        let lead = store
            .ingest_lead(
                &NewLead {
                    contact: NewContact {
                        phone_e164: Pii::new(phone),
                        name: Some(Pii::new(name.into())),
                        email: None,
                        timezone: None,
                    },
                    call_sid: Some(s.sid.into()),
                    intent: Some(
                        if s.took == Took::Voicemail {
                            "voicemail"
                        } else {
                            "new_enquiry"
                        }
                        .into(),
                    ),
                    tier: Some(tier.into()),
                    source: Some("inbound_call".into()),
                    transcript_id: None,
                    notes: None,
                    routing_owner: None,
                },
                end,
            )
            .await
            .unwrap()
            .lead;
        if let Some((claimed, dialed)) = s.claim {
            store
                .claim_lead(&lead.id, "alex", "Alex Smith", "link", t(claimed))
                .await
                .unwrap();
            if let Some(d) = dialed {
                store.record_dial(&lead.id, "CAdial", t(d)).await.unwrap();
            }
        }
    }
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(t(NOW)))
}

/// An HTTP client that shows redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 1e-9)
}

/// Acceptance 4 (numbers): the JSON and the page say what was worked out by
/// hand from the seeded store.
async fn numbers_match_the_hand_count(db: TestDb) {
    let app = common::spawn_app(common::config(), &db.url, clock()).await;
    seed(&app.services.store).await;
    let http = client();
    let get = |path: &str| {
        http.get(format!("{}{path}", app.base))
            .bearer_auth(common::TOKEN)
            .send()
    };
    let v: Value = get("/dashboard/data.json")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["days"], 7);
    assert_eq!(v["timezone"], "Europe/London");
    let o = &v["overall"];
    assert_eq!(
        (
            o["answer_rate"]["num"].as_u64(),
            o["answer_rate"]["den"].as_u64()
        ),
        (Some(10), Some(11)),
        "{o}"
    );
    assert_eq!(
        (
            o["booking_rate"]["num"].as_u64(),
            o["booking_rate"]["den"].as_u64()
        ),
        (Some(2), Some(10))
    );
    assert!(close(&o["booking_rate"]["value"], 0.2));
    assert!(close(&o["median_first_contact_h"]["value"], 0.25), "{o}");
    assert_eq!(o["median_first_contact_h"]["contacted"], 3);
    assert_eq!(o["median_first_contact_h"]["of"], 4);
    let night = &o["overnight_claim_rate"];
    assert_eq!(
        (
            night["num"].as_u64(),
            night["den"].as_u64(),
            night["pending"].as_u64()
        ),
        (Some(1), Some(2), Some(1)),
        "{night}"
    );
    // By hour of day (London).
    let h = |n: usize| &v["by_hour"][n];
    assert_eq!(v["by_hour"].as_array().map(Vec::len), Some(24));
    assert!(close(&h(10)["answer_rate"]["value"], 1.0));
    assert!(close(&h(10)["booking_rate"]["value"], 0.5));
    assert!(close(&h(10)["median_first_contact_h"]["value"], 0.25));
    assert!(close(&h(14)["answer_rate"]["value"], 0.5));
    assert!(close(&h(14)["median_first_contact_h"]["value"], 1.9));
    assert!(close(&h(23)["overnight_claim_rate"]["value"], 1.0));
    assert!(close(&h(2)["overnight_claim_rate"]["value"], 0.0));
    assert_eq!(h(7)["overnight_claim_rate"]["pending"], 1);
    assert!(h(7)["overnight_claim_rate"]["value"].is_null());
    assert!(h(4)["answer_rate"]["value"].is_null(), "no calls at 04:00");
    // Recent leads: newest first, masked numbers, claim status.
    let recent = v["recent_leads"].as_array().unwrap();
    assert_eq!(recent.len(), 10, "C10 is outside the window");
    assert_eq!(recent[0]["name"], "Gus Early");
    let c2 = recent
        .iter()
        .find(|l| {
            l["tier"] == "B"
                && l["claimed_by"] == "Alex Smith"
                && !l["dialed_at"].is_null()
                && l["after_hours"] == false
        })
        .unwrap();
    assert_eq!(c2["dialed_at"], "2026-12-08T10:41:00Z");
    assert!(recent
        .iter()
        .all(|l| l["phone"].as_str().unwrap().starts_with("+…")));
    let outcomes: Vec<&str> = recent
        .iter()
        .map(|l| l["outcome"].as_str().unwrap())
        .collect();
    assert!(
        outcomes.contains(&"voicemail")
            && outcomes.contains(&"transferred")
            && outcomes.contains(&"booked")
    );

    // The page says the same.
    let page = get("/dashboard").await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = page.text().await.unwrap();
    for (metric, shown) in [
        ("answer_rate", "90.9%"),
        ("booking_rate", "20%"),
        ("median_first_contact_h", "0.25 h"),
        ("overnight_claim_rate", "50%"),
    ] {
        assert!(
            html.contains(&format!("data-metric=\"{metric}\">{shown}<")),
            "{metric} {shown}"
        );
    }
    assert!(html.contains("3 of 4 leads contacted"));
    assert!(html.contains("1 of 2 leads · 1 pending"));
    assert!(!html.contains("<script>alert"), "names are escaped");
    assert!(html.contains("Ann &lt;script&gt;alert(1)&lt;/script&gt; O&#39;Neil"));
    assert!(!html.contains("77009001"), "numbers are masked");

    // A window with nothing in it reads "—", never NaN or 0%.
    clock_free_window(&app.base, &http).await;
}

async fn clock_free_window(base: &str, http: &reqwest::Client) {
    // `?days=` bounds: a huge window is cut to 90 days (C10 comes in).
    let v: Value = http
        .get(format!("{base}/dashboard/data.json?days=100000"))
        .bearer_auth(common::TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["days"], 90);
    assert_eq!(v["overall"]["answer_rate"]["den"], 12);
}

on_both_databases!(numbers_match, super::numbers_match_the_hand_count);

/// An empty store: every number is "—".
#[tokio::test]
async fn empty_store_reads_as_dashes() {
    let db = TestDb::sqlite().await;
    let app = common::spawn_app(common::config(), &db.url, clock()).await;
    let html = client()
        .get(format!("{}/dashboard?days=1", app.base))
        .bearer_auth(common::TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("NaN"));
    for m in [
        "answer_rate",
        "booking_rate",
        "median_first_contact_h",
        "overnight_claim_rate",
    ] {
        assert!(html.contains(&format!("data-metric=\"{m}\">—<")), "{m}");
    }
    assert!(html.contains("No leads in this window"));
}

fn set_cookie(r: &reqwest::Response) -> String {
    r.headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Sign-in: the form sets a signed, HttpOnly, SameSite=Strict cookie that is
/// not the token and expires; bearer works; a wrong token is refused.
#[tokio::test]
async fn sign_in_with_the_form_cookie_and_bearer() {
    let db = TestDb::sqlite().await;
    let clock = clock();
    let app = common::spawn_app(common::config(), &db.url, clock.clone()).await;
    let http = client();
    let url = |p: &str| format!("{}{p}", app.base);

    let r = http.get(url("/dashboard")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/dashboard/login");
    let form = http
        .get(url("/dashboard/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(form.contains("name=\"token\"") && form.contains("type=\"password\""));
    assert_eq!(
        http.get(url("/dashboard/data.json"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    let wrong = http
        .post(url("/dashboard/login"))
        .form(&[("token", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(set_cookie(&wrong).is_empty());
    let empty = http
        .post(url("/dashboard/login"))
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 401);

    let ok = http
        .post(url("/dashboard/login"))
        .form(&[("token", common::TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 303);
    assert_eq!(ok.headers()["location"], "/dashboard");
    let cookie = set_cookie(&ok);
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Path=/dashboard"), "{cookie}");
    assert!(cookie.contains("Max-Age=43200"), "{cookie}");
    assert!(
        !cookie.contains(common::TOKEN),
        "the cookie is not the token"
    );
    let pair = cookie.split(';').next().unwrap().to_string();

    let page = http
        .get(url("/dashboard"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let json = http
        .get(url("/dashboard/data.json"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 200);
    // A tampered cookie is no session.
    let tampered = format!(
        "{}0",
        pair.trim_end_matches(|c: char| c.is_ascii_hexdigit())
    );
    let r = http
        .get(url("/dashboard"))
        .header("cookie", tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);

    // Bearer works; a wrong bearer is 401, not a redirect.
    let r = http
        .get(url("/dashboard"))
        .bearer_auth(common::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(url("/dashboard"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Twelve hours later the session is over.
    clock.advance(Duration::hours(12));
    let r = http
        .get(url("/dashboard"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);

    // Logout deletes the cookie.
    let out = http
        .post(url("/dashboard/logout"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert!(set_cookie(&out).contains("Max-Age=0"));
}

/// No `FRONTDESK_API_TOKEN`: locked like `/api/*`, and the form says why.
#[tokio::test]
async fn no_token_locks_the_dashboard() {
    let db = TestDb::sqlite().await;
    let app = common::serve(common::config(), &db.url, clock(), None).await;
    let http = client();
    let url = |p: &str| format!("{}{p}", app.base);
    assert_eq!(
        http.get(url("/dashboard")).send().await.unwrap().status(),
        303
    );
    let form = http
        .get(url("/dashboard/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        form.contains("FRONTDESK_API_TOKEN") && !form.contains("<form"),
        "{form}"
    );
    let r = http
        .post(url("/dashboard/login"))
        .form(&[("token", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(set_cookie(&r).is_empty());
    let r = http
        .get(url("/dashboard"))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(url("/dashboard/data.json"))
        .bearer_auth("")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

// ---------------------------------------------------------------------------
// Headless Chromium over the DevTools protocol
// ---------------------------------------------------------------------------

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A headless Chromium driven over its DevTools WebSocket.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    ws: Ws,
    next: u64,
    events: Vec<Value>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Chromium binary: `$CHROMIUM`, else `chromium` (Debian) or
/// `chromium-browser` on the PATH.
fn chromium() -> String {
    if let Ok(c) = std::env::var("CHROMIUM") {
        return c;
    }
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if found {
            return c.to_string();
        }
    }
    panic!("no Chromium: install the Debian package `chromium` (scripts/setup does)");
}

const WAIT: StdDuration = StdDuration::from_secs(30);

impl Browser {
    async fn launch() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                "--window-size=1280,1600",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        // Chromium says where its DevTools endpoint is on stderr.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.trim().to_string());
                    }
                }
            }
        });
        let browser_ws = tokio::time::timeout(WAIT, rx)
            .await
            .expect("chromium printed its DevTools address")
            .expect("chromium stayed up");
        let port = browser_ws
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let targets: Value = reqwest::get(format!("http://{port}/json/list"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let page_ws = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_string();
        let (ws, _) = tokio_tungstenite::connect_async(page_ws).await.unwrap();
        let mut b = Browser {
            child,
            _profile: profile,
            ws,
            next: 0,
            events: Vec::new(),
        };
        b.call("Page.enable", json!({})).await;
        b
    }

    /// Send one command and wait for its answer (events seen meanwhile are kept).
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(Message::text(msg)).await.unwrap();
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method}"))
                .expect("devtools socket open")
                .unwrap();
            let Message::Text(text) = m else { continue };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["id"].as_u64() == Some(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
            self.events.push(v);
        }
    }

    /// Wait for the page's next `load` event (after `self.events` was cleared).
    async fn loaded(&mut self) {
        loop {
            if self
                .events
                .iter()
                .any(|e| e["method"] == "Page.loadEventFired")
            {
                self.events.clear();
                return;
            }
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("page loaded")
                .expect("devtools socket open")
                .unwrap();
            if let Message::Text(text) = m {
                self.events
                    .push(serde_json::from_str(text.as_str()).unwrap());
            }
        }
    }

    async fn eval(&mut self, js: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": js, "returnByValue": true}),
            )
            .await;
        r["result"]["value"].clone()
    }

    async fn goto(&mut self, url: &str) {
        self.events.clear();
        self.call("Page.navigate", json!({ "url": url })).await;
        self.loaded().await;
    }
}

/// Acceptance 4 (browser): Chromium is sent to the form, signs in with the
/// token, cannot read the session cookie from script, and the rendered page
/// shows the store's numbers — overall and in the by-hour charts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_signs_in_and_sees_the_store_numbers() {
    let db = TestDb::sqlite().await;
    let app = common::spawn_app(common::config(), &db.url, clock()).await;
    seed(&app.services.store).await;
    let mut b = Browser::launch().await;

    b.goto(&format!("{}/dashboard", app.base)).await;
    assert_eq!(b.eval("location.pathname").await, "/dashboard/login");
    b.events.clear();
    b.eval(&format!(
        "document.querySelector('#token').value = {}; document.querySelector('form.login').submit(); true",
        json!(common::TOKEN)
    ))
    .await;
    b.loaded().await;
    assert_eq!(b.eval("location.pathname").await, "/dashboard");
    assert_eq!(
        b.eval("document.cookie").await,
        "",
        "the session cookie is HttpOnly"
    );
    assert_eq!(
        b.eval("document.scripts.length").await,
        0,
        "no script, names escaped"
    );

    let shown = b
        .eval("JSON.stringify(Object.fromEntries([...document.querySelectorAll('[data-metric]')].map(e => [e.dataset.metric, e.textContent])))")
        .await;
    let shown: Value = serde_json::from_str(shown.as_str().unwrap()).unwrap();
    assert_eq!(
        shown,
        json!({"answer_rate": "90.9%", "booking_rate": "20%", "median_first_contact_h": "0.25 h", "overnight_claim_rate": "50%"})
    );
    // The by-hour bars carry the store's values.
    let bars = b
        .eval("JSON.stringify([...document.querySelectorAll('svg[data-chart=answer_rate] rect.bar')].map(r => [Number(r.dataset.hour), Number(r.dataset.value)]))")
        .await;
    let bars: Vec<(u32, f64)> = serde_json::from_str(bars.as_str().unwrap()).unwrap();
    assert_eq!(
        bars,
        vec![
            (2, 1.0),
            (7, 1.0),
            (10, 1.0),
            (11, 1.0),
            (14, 0.5),
            (15, 1.0),
            (23, 1.0)
        ]
    );
    let charts = b
        .eval("document.querySelectorAll('svg[data-chart] rect').length")
        .await;
    assert_eq!(charts, 4 * 24, "every chart has a mark for each hour");
    // It is laid out: four cards side by side on a 1280 px window.
    let tops = b
        .eval("JSON.stringify([...document.querySelectorAll('.stat')].map(e => Math.round(e.getBoundingClientRect().top)))")
        .await;
    let tops: Vec<i64> = serde_json::from_str(tops.as_str().unwrap()).unwrap();
    assert_eq!(tops.len(), 4);
    assert!(
        tops.iter().all(|t| *t == tops[0]),
        "cards on one row: {tops:?}"
    );
    let rows = b
        .eval("document.querySelectorAll('[data-table=recent_leads] tr[data-lead]').length")
        .await;
    assert_eq!(rows, 10);
    let text = b.eval("document.body.innerText").await;
    assert!(text
        .as_str()
        .unwrap()
        .contains("Ann <script>alert(1)</script> O'Neil"));

    let shot = b
        .call("Page.captureScreenshot", json!({"format": "png"}))
        .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    if let Ok(path) = std::env::var("FRONTDESK_DASHBOARD_PNG") {
        std::fs::write(&path, &png).unwrap();
    }
}
