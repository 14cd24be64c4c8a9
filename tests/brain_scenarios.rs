//! Text-level calls through the rules brain and the action layer: the real
//! conversation built by the composition root (`[brain] kind = "rules"`),
//! its tool jobs run exactly once through `StoreBackedTools` on the local
//! calendar and CRM, on SQLite (and a few on PostgreSQL). Each test asserts
//! end states a business cares about — the lead (intent, tier, outcome,
//! fields), bookings and holds, CRM contacts and tasks, what is never kept —
//! not the wording of replies.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{t, TestDb};
use frontdesk::app::App;
use frontdesk::call::conversation::{CallInfo, Conversation, Directive, Ending, Event};
use frontdesk::call::ToolExecutor;
use frontdesk::clock::ManualClock;
use frontdesk::config::{env, Config, Env};
use frontdesk::pii::Pii;
use frontdesk::store::{HoldStatus, LeadFilter, LeadRecord, NewContact, Store};
use sqlx::Row;

/// Tuesday 1 December 2026, 10:00 in London: open.
const IN_HOURS: &str = "2026-12-01T10:00:00Z";
/// Tuesday 1 December 2026, 21:00 in London: closed.
const AFTER_HOURS: &str = "2026-12-01T21:00:00Z";

struct Harness {
    app: App,
    tools: Arc<dyn ToolExecutor>,
    clock: Arc<ManualClock>,
    _db: TestDb,
}

impl Harness {
    async fn new(db: TestDb, at: &str) -> Harness {
        Harness::with(db, at, |_| {}).await
    }

    async fn with(db: TestDb, at: &str, tweak: impl FnOnce(&mut Config)) -> Harness {
        let mut cfg = Config::default();
        cfg.storage.max_connections = 5;
        tweak(&mut cfg);
        let clock = Arc::new(ManualClock::new(t(at)));
        let env = Env::from_pairs([(env::DATABASE_URL, db.url.as_str())]);
        let app = App::build(cfg, &env, clock.clone()).await.expect("app");
        let tools = app.call_tools();
        Harness {
            app,
            tools,
            clock,
            _db: db,
        }
    }

    fn store(&self) -> &Store {
        &self.app.services.store
    }

    async fn call(&self, sid: &str, from: Option<&str>) -> Call {
        self.call_with(sid, from, &[]).await
    }

    async fn call_with(&self, sid: &str, from: Option<&str>, params: &[(&str, &str)]) -> Call {
        let mut c = Call {
            brain: self.app.conversations.start(),
            tools: self.tools.clone(),
            clock: self.clock.clone(),
            sid: sid.into(),
            now: Instant::now(),
            said: Vec::new(),
            ending: None,
            windows: Vec::new(),
            jobs: Vec::new(),
            hold_back: None,
            held: Vec::new(),
        };
        let info = CallInfo {
            call_sid: sid.into(),
            stream_sid: format!("MZ{sid}"),
            from: from.map(|f| Pii::new(f.to_string())),
            to: Some(Pii::new("+442079460001".into())),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), Pii::new(v.to_string())))
                .collect(),
        };
        c.event(Event::Started(info)).await;
        c
    }

    async fn leads(&self) -> Vec<LeadRecord> {
        self.store()
            .list_leads(&LeadFilter {
                limit: 50,
                ..LeadFilter::default()
            })
            .await
            .expect("leads")
    }

    async fn lead(&self, sid: &str) -> LeadRecord {
        self.leads()
            .await
            .into_iter()
            .find(|l| l.call_sid.as_deref() == Some(sid))
            .unwrap_or_else(|| panic!("no lead for {sid}"))
    }

    async fn contacts(&self) -> i64 {
        self.store().count_contacts().await.expect("count")
    }

    /// Every text value of every table, for "appears nowhere" checks.
    async fn dump(&self) -> String {
        let store = self.store();
        let mut out = String::new();
        let url = self._db.url.clone();
        if url.starts_with("sqlite") {
            let pool = sqlx::SqlitePool::connect(&url).await.expect("dump connect");
            let tables: Vec<(String,)> =
                sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .fetch_all(&pool)
                    .await
                    .expect("tables");
            for (t,) in tables {
                let rows = sqlx::query(&format!("SELECT * FROM \"{t}\""))
                    .fetch_all(&pool)
                    .await
                    .expect("rows");
                for r in rows {
                    for (i, _) in r.columns().iter().enumerate() {
                        if let Ok(Some(s)) = r.try_get::<Option<String>, _>(i) {
                            out.push_str(&s);
                            out.push('\n');
                        }
                    }
                }
            }
        } else {
            let _ = store;
        }
        out
    }
}

struct Call {
    brain: Box<dyn Conversation>,
    tools: Arc<dyn ToolExecutor>,
    clock: Arc<ManualClock>,
    sid: String,
    now: Instant,
    said: Vec<String>,
    ending: Option<Ending>,
    windows: Vec<Option<u32>>,
    jobs: Vec<String>,
    /// Jobs of this name wait in `held` instead of running (a slow action).
    hold_back: Option<&'static str>,
    held: Vec<frontdesk::call::ToolJob>,
}

impl Call {
    /// Feed one event, then run every job it asks for (in order, each
    /// outcome fed back) until nothing is left.
    async fn event(&mut self, ev: Event) {
        let mut queue = vec![ev];
        while let Some(ev) = queue.pop() {
            let mut out = Vec::new();
            self.brain.on_event(ev, self.now, &mut out);
            let mut finished = Vec::new();
            for d in out {
                match d {
                    Directive::Say(s) => self.said.push(s),
                    Directive::RunTool(job) => {
                        self.jobs.push(job.name.clone());
                        if self.hold_back == Some(job.name.as_str()) {
                            self.held.push(job);
                            continue;
                        }
                        let o = self.tools.execute(&self.sid, &job).await;
                        finished.push(Event::ToolFinished(o));
                    }
                    Directive::End(e) => {
                        self.ending.get_or_insert(e);
                    }
                    Directive::EndOfTurn(w) => self.windows.push(w),
                    Directive::Generate(_) => panic!("the rules brain never asks a model"),
                }
            }
            finished.reverse();
            queue.extend(finished);
        }
    }

    /// The caller says `text` (after a few seconds of conversation).
    async fn say(&mut self, text: &str) -> String {
        self.now += Duration::from_secs(6);
        self.clock.advance(chrono::Duration::seconds(6));
        let before = self.said.len();
        self.event(Event::CallerSaid {
            text: text.into(),
            amends_previous: false,
        })
        .await;
        self.said[before..].join(" ")
    }

    async fn hang_up(&mut self) {
        self.event(Event::Ended).await;
    }

    fn last(&self) -> &str {
        self.said.last().map(String::as_str).unwrap_or("")
    }

    fn handed_off(&self) -> bool {
        matches!(self.ending, Some(Ending::HandOff { .. }))
    }

    fn hung_up(&self) -> bool {
        matches!(self.ending, Some(Ending::Hangup))
    }
}

const UK_MOBILE: &str = "+447700900123";

async fn sqlite_at(at: &str) -> Harness {
    Harness::new(TestDb::sqlite().await, at).await
}

fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono_tz::Europe::London)
        .format("%a %H:%M")
        .to_string()
}

/// The standard booking conversation up to the read-back.
async fn book_up_to_readback(c: &mut Call) {
    c.say("Hi, I'd like to book a demo of your booking tool")
        .await;
    c.say("Jane Doe").await;
    c.say("it's just the five of us in one office").await;
    c.say("Friday morning, any time after ten").await;
    c.say("the first one please").await;
}

// ------------------------------------------------------------ tier A

async fn booking_body(db: TestDb) {
    let h = Harness::new(db, IN_HOURS).await;
    let mut c = h.call("CA_book", Some(UK_MOBILE)).await;
    assert!(
        c.said[0].contains("Frontdesk Demo Co"),
        "the greeting names the business"
    );
    book_up_to_readback(&mut c).await;
    c.say("yes that's great").await;
    assert_eq!(
        c.windows.first(),
        Some(&Some(1200)),
        "a longer window while the e-mail is read"
    );
    c.say("it's j dot doe at example dot co dot uk").await;
    c.say("no that's everything, thanks").await;
    assert!(c.hung_up());
    let lead = h.lead("CA_book").await;
    assert_eq!(lead.outcome.as_deref(), Some("booked"));
    assert_eq!(lead.tier.as_deref(), Some("A"));
    assert_eq!(lead.intent.as_deref(), Some("new_enquiry"));
    assert_eq!(lead.source.as_deref(), Some("inbound_call"));
    assert_eq!(lead.phone.expose(), UK_MOBILE);
    assert_eq!(
        lead.name.as_ref().map(|n| n.expose().as_str()),
        Some("Jane Doe")
    );
    assert_eq!(
        lead.email.as_ref().map(|n| n.expose().as_str()),
        Some("j.doe@example.co.uk")
    );
    assert_eq!(lead.timezone.as_deref(), Some("Europe/London"));
    assert_eq!(lead.routing_owner.as_deref(), Some("team_sales"));
    assert!(lead.transcript_id.is_some());
    let notes = lead
        .notes
        .as_ref()
        .map(|n| n.expose().clone())
        .unwrap_or_default();
    assert!(!notes.is_empty() && notes.chars().count() <= 400, "{notes}");
    // Friday 4 December 10:00 London, the earliest slot after ten.
    let b = h
        .store()
        .bookings_between("alex", t("2026-12-04T00:00:00Z"), t("2026-12-05T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(b.len(), 1, "one booking");
    assert_eq!(local(b[0].start), "Fri 10:00");
    assert_eq!(h.contacts().await, 1, "one contact for the number");
}
on_both_databases!(
    a_demo_request_is_booked_in_the_callers_window,
    super::booking_body
);

#[tokio::test]
async fn half_ten_is_offered_at_ten_thirty() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_half", Some(UK_MOBILE)).await;
    c.say("I'm interested in a consultation").await;
    c.say("my name is Tom Hughes").await;
    c.say("just me really").await;
    c.say("could we do half ten on Thursday").await;
    c.say("the first one").await;
    c.say("yes please").await;
    c.say("I'd rather not give an email").await;
    let b = h
        .store()
        .bookings_between("alex", t("2026-12-03T00:00:00Z"), t("2026-12-04T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(local(b[0].start), "Thu 10:30");
    assert_eq!(h.lead("CA_half").await.outcome.as_deref(), Some("booked"));
}

#[tokio::test]
async fn next_tuesday_afternoon_is_a_week_on_after_midday() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_nexttue", Some(UK_MOBILE)).await;
    c.say("Hello, I'd like to book an appointment. This is Dana Scully.")
        .await;
    c.say("a team of three").await;
    c.say("next Tuesday afternoon").await;
    c.say("the second one").await;
    c.say("yes").await;
    c.say("dana at fbi dot gov").await;
    let lead = h.lead("CA_nexttue").await;
    assert_eq!(lead.outcome.as_deref(), Some("booked"));
    assert_eq!(
        lead.email.as_ref().map(|e| e.expose().as_str()),
        Some("dana@fbi.gov")
    );
    let mut all = Vec::new();
    for o in ["alex", "sam"] {
        all.extend(
            h.store()
                .bookings_between(o, t("2026-12-08T12:00:00Z"), t("2026-12-08T17:00:00Z"))
                .await
                .unwrap(),
        );
    }
    assert_eq!(
        all.len(),
        1,
        "booked on Tuesday 8 December in the afternoon"
    );
}

#[tokio::test]
async fn a_us_caller_hears_slots_in_their_own_zone() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_us", Some("+14155552671")).await;
    c.say("Hi, I'm looking for a demo, my name is Maria Lopez")
        .await;
    let offer = c.say("we're a team of four").await;
    let offer = if offer.contains("Los Angeles") {
        offer
    } else {
        c.say("any time is fine").await
    };
    assert!(offer.contains("Los Angeles time"), "{offer}");
    c.say("the first one").await;
    c.say("yes").await;
    c.say("maria at lopez dot io").await;
    let lead = h.lead("CA_us").await;
    assert_eq!(lead.timezone.as_deref(), Some("America/Los_Angeles"));
    assert_eq!(lead.outcome.as_deref(), Some("booked"));
    assert_eq!(lead.phone.expose(), "+14155552671");
}

#[tokio::test]
async fn a_spelled_email_and_surname_are_kept_as_spelled() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_spell", Some(UK_MOBILE)).await;
    c.say("I'd like a quote please").await;
    c.say("my name's Alex Rivera spelled r i v e r a").await;
    c.say("two of us").await;
    c.say("tomorrow afternoon").await;
    c.say("the first").await;
    c.say("yes").await;
    c.say("a r i v e r a at example dot com").await;
    let lead = h.lead("CA_spell").await;
    assert_eq!(
        lead.name.as_ref().map(|n| n.expose().as_str()),
        Some("Alex Rivera")
    );
    assert_eq!(
        lead.email.as_ref().map(|n| n.expose().as_str()),
        Some("arivera@example.com")
    );
    assert_eq!(lead.outcome.as_deref(), Some("booked"));
}

// ------------------------------------------------------------ holds

#[tokio::test]
async fn accept_then_decline_releases_the_hold() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_decline", Some(UK_MOBILE)).await;
    book_up_to_readback(&mut c).await;
    assert!(c.jobs.contains(&"hold_slot".to_string()));
    c.say("actually no, sorry, I've changed my mind").await;
    assert!(c.jobs.contains(&"release_hold".to_string()));
    c.say("just have someone call me back").await;
    c.say("yes this number is fine").await;
    let b = h
        .store()
        .bookings_between("alex", t("2026-12-01T00:00:00Z"), t("2026-12-31T00:00:00Z"))
        .await
        .unwrap();
    assert!(b.is_empty(), "nothing booked");
    // The slot is free again: another caller can hold it.
    let fri10 = t("2026-12-04T10:00:00Z");
    let hold = h
        .app
        .services
        .calendar
        .hold(
            &frontdesk::booking::SlotKey {
                owner: "alex".into(),
                start: fri10,
            },
            Duration::from_secs(60),
        )
        .await;
    assert!(hold.is_ok(), "the declined slot is free: {hold:?}");
    let lead = h.lead("CA_decline").await;
    assert_eq!(lead.outcome.as_deref(), Some("callback"));
    assert_eq!(lead.tier.as_deref(), Some("C"));
}

#[tokio::test]
async fn hanging_up_on_a_held_slot_releases_it_and_leaves_a_lead() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_drop", Some(UK_MOBILE)).await;
    book_up_to_readback(&mut c).await;
    c.hang_up().await;
    assert_eq!(c.jobs.last().map(String::as_str), Some("release_hold"));
    let fri10 = t("2026-12-04T10:00:00Z");
    let hold = h
        .app
        .services
        .calendar
        .hold(
            &frontdesk::booking::SlotKey {
                owner: "alex".into(),
                start: fri10,
            },
            Duration::from_secs(60),
        )
        .await;
    assert!(hold.is_ok(), "released at hang-up: {hold:?}");
    let lead = h.lead("CA_drop").await;
    assert_eq!(
        lead.outcome.as_deref(),
        Some("callback"),
        "a dropped call still leaves a lead"
    );
    assert_eq!(
        lead.name.as_ref().map(|n| n.expose().as_str()),
        Some("Jane Doe")
    );
}

#[tokio::test]
async fn hanging_up_while_the_booking_is_confirmed_keeps_it_booked() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_yesbye", Some(UK_MOBILE)).await;
    book_up_to_readback(&mut c).await;
    c.hold_back = Some("confirm_booking");
    c.say("yes that's great").await;
    c.say("it's j dot doe at example dot co dot uk").await;
    assert_eq!(c.held.len(), 1, "the confirmation is under way");
    c.hang_up().await;
    assert!(
        !c.jobs.contains(&"release_hold".to_string()),
        "a hold the caller said yes to is not released under its confirmation: {:?}",
        c.jobs
    );
    // The confirmation finishes after the call has gone (as the tool
    // runner's jobs do): nobody is told, and the booking must still show.
    for job in std::mem::take(&mut c.held) {
        let o = c.tools.execute(&c.sid, &job).await;
        assert!(o.ok, "{o:?}");
    }
    let b = h
        .store()
        .bookings_between("alex", t("2026-12-04T00:00:00Z"), t("2026-12-05T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(b.len(), 1, "booked");
    let lead = h.lead("CA_yesbye").await;
    assert_eq!(lead.outcome.as_deref(), Some("booked"));
    assert_eq!(lead.tier.as_deref(), Some("A"));
    let notes = lead.notes.map(|n| n.expose().clone()).unwrap_or_default();
    assert!(notes.contains("Booked"), "{notes}");
}

#[tokio::test]
async fn a_call_dropped_after_the_first_turn_still_leaves_a_lead() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_early", Some(UK_MOBILE)).await;
    c.say("Hi, I'm after a quote for a new website").await;
    c.hang_up().await;
    let lead = h.lead("CA_early").await;
    assert_eq!(lead.intent.as_deref(), Some("new_enquiry"));
    assert_eq!(lead.outcome.as_deref(), Some("callback"));
}

// ------------------------------------------------------------ tier B

#[tokio::test]
async fn a_large_team_in_hours_is_put_through() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_big", Some(UK_MOBILE)).await;
    c.say("Hi, we're evaluating AI appointment booking for a 15-person sales team")
        .await;
    c.say("It's Alex Rivera").await;
    assert!(c.handed_off(), "{:?}", c.said);
    let lead = h.lead("CA_big").await;
    assert_eq!(lead.tier.as_deref(), Some("B"));
    assert_eq!(lead.outcome.as_deref(), Some("transferred"));
    assert_eq!(lead.routing_owner.as_deref(), Some("team_sdr"));
    let notes = lead.notes.unwrap().expose().clone();
    assert!(notes.contains("15"), "{notes}");
    match &c.ending {
        Some(Ending::HandOff { summary, .. }) => assert!(summary.contains("Alex Rivera")),
        e => panic!("{e:?}"),
    }
}

#[tokio::test]
async fn multi_site_after_hours_is_a_priority_callback_for_the_morning() {
    let h = sqlite_at(AFTER_HOURS).await;
    let mut c = h.call("CA_sites", Some(UK_MOBILE)).await;
    c.say("We run three sites across the north west and need a quote")
        .await;
    c.say("Sam Lee").await;
    assert!(!c.handed_off(), "no live transfer after hours");
    c.say("yes that's the best number").await;
    c.say("no that's all, thanks").await;
    assert!(c.hung_up());
    assert!(
        !c.said.iter().any(|s| s.contains("connect you")),
        "{:?}",
        c.said
    );
    let lead = h.lead("CA_sites").await;
    assert_eq!(lead.tier.as_deref(), Some("B"));
    assert_eq!(lead.outcome.as_deref(), Some("callback"));
    assert!(lead.after_hours, "the record says after hours");
    // Due five minutes after Wednesday's opening (09:00 London).
    let contact = h
        .store()
        .contact_by_phone(UK_MOBILE)
        .await
        .unwrap()
        .unwrap();
    let tasks: Vec<_> = h
        .store()
        .activities(&contact.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.kind == "task")
        .collect();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].at, t("2026-12-02T09:05:00Z"));
}

#[tokio::test]
async fn a_rambling_caller_is_briefed_without_the_digressions() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_ramble", Some(UK_MOBILE)).await;
    c.say(
        "Oh hello, sorry, the dog is barking, it's been raining all week here and my \
         sister says hello, anyway, where was I, yes, we're looking for a quote for about \
         twelve staff, I'm Bob Marley by the way",
    )
    .await;
    let lead = h.lead("CA_ramble").await;
    assert_eq!(lead.intent.as_deref(), Some("new_enquiry"));
    assert_eq!(lead.tier.as_deref(), Some("B"));
    let notes = lead.notes.unwrap().expose().to_lowercase();
    for digression in ["dog", "rain", "sister"] {
        assert!(!notes.contains(digression), "{notes}");
    }
    assert!(notes.contains("12"), "{notes}");
}

// ------------------------------------------------------------ tier C

#[tokio::test]
async fn a_standard_enquiry_wanting_a_call_back_is_tier_c_with_a_due_time() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_c", Some(UK_MOBILE)).await;
    c.say("I'm interested in your lead routing").await;
    c.say("it's Priya Patel").await;
    c.say("about six people, no rush").await;
    c.say("can someone just call me back").await;
    c.say("yes").await;
    let lead = h.lead("CA_c").await;
    assert_eq!(lead.tier.as_deref(), Some("C"));
    assert_eq!(lead.outcome.as_deref(), Some("callback"));
    let contact = h
        .store()
        .contact_by_phone(UK_MOBILE)
        .await
        .unwrap()
        .unwrap();
    let task = h
        .store()
        .activities(&contact.id)
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.kind == "task")
        .expect("a CRM task");
    // Two business hours from ~10:00 on an open Tuesday.
    let due = task.at;
    assert!(
        due > t("2026-12-01T11:55:00Z") && due < t("2026-12-01T12:10:00Z"),
        "{due}"
    );
}

/// A small enquiry wanting a call back, on a number other than the one
/// calling: up to the receptionist asking for it.
async fn wants_a_call_back_on_another_number(c: &mut Call) {
    c.say("I'd like someone to call me about a quote. My name is Ken Adams.")
        .await;
    c.say("just two of us").await;
    c.say("please call me back instead").await;
    c.say("no, it's better on my mobile").await;
}

#[tokio::test]
async fn a_number_read_aloud_becomes_the_callback_number() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_num", Some("+442079460123")).await;
    wants_a_call_back_on_another_number(&mut c).await;
    assert!(
        c.windows.contains(&Some(1200)),
        "a longer window while the number is read"
    );
    c.say("oh seven seven double oh, nine oh oh, one two three")
        .await;
    let lead = h.lead("CA_num").await;
    assert_eq!(lead.phone.expose(), UK_MOBILE);
    assert_eq!(lead.outcome.as_deref(), Some("callback"));
}

#[tokio::test]
async fn a_misheard_number_is_asked_for_again_not_taken() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_badnum", Some("+442079460123")).await;
    wants_a_call_back_on_another_number(&mut c).await;
    // Ten digits: not a number anyone can be called back on.
    c.say("077 0090123").await;
    assert!(
        !c.jobs.contains(&"take_callback".to_string()),
        "a callback was promised on a number that is not one: {:?}",
        c.said
    );
    c.say("oh seven seven double oh, nine oh oh, one two three")
        .await;
    let lead = h.lead("CA_badnum").await;
    assert_eq!(lead.phone.expose(), UK_MOBILE);
    assert_eq!(lead.outcome.as_deref(), Some("callback"));
}

/// Whisper loses a digit now and then: asked again, then a little slower,
/// then the call back goes to the calling number, the caller is told so,
/// and the rep's notes say the other number was not caught.
#[tokio::test]
async fn a_number_never_heard_whole_falls_back_to_the_calling_number() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_nonum", Some("+442079460123")).await;
    wants_a_call_back_on_another_number(&mut c).await;
    for heard in ["07 7.0.0.9.0.123", "077 0090123"] {
        c.say(heard).await;
        assert!(
            !c.jobs.contains(&"take_callback".to_string()),
            "gave up on the number too soon: {:?}",
            c.said
        );
    }
    assert!(c.last().contains("a little slower"), "{}", c.last());
    let reply = c.say("seven seven double oh nine").await;
    assert!(
        reply.contains("the number you're calling from"),
        "the caller is told which number: {reply}"
    );
    let lead = h.lead("CA_nonum").await;
    assert_eq!(lead.phone.expose(), "+442079460123");
    assert_eq!(lead.outcome.as_deref(), Some("callback"));
    let notes = lead.notes.map(|n| n.expose().clone()).unwrap_or_default();
    assert!(notes.contains("another number"), "{notes}");
}

/// With the caller ID withheld there is no number to fall back on: the
/// receptionist goes on asking, and never promises a callback it has no
/// number for.
#[tokio::test]
async fn a_withheld_caller_is_asked_until_a_whole_number_is_heard() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_withheld", None).await;
    c.say("I'd like someone to call me about a quote. My name is Ken Adams.")
        .await;
    c.say("just two of us").await;
    c.say("please call me back").await;
    for heard in ["07 7.0.0.9.0.123", "077 0090123", "0770 090", "077 00"] {
        let reply = c.say(heard).await;
        assert!(
            !reply.contains("call you back") && !c.jobs.contains(&"take_callback".to_string()),
            "a callback promised with no number: {reply}"
        );
        assert!(
            reply.contains("again") || reply.contains("slower"),
            "the number is asked for again: {reply}"
        );
    }
    c.say("oh seven seven double oh, nine oh oh, one two three")
        .await;
    let lead = h.lead("CA_withheld").await;
    assert_eq!(lead.phone.expose(), UK_MOBILE);
    assert_eq!(lead.outcome.as_deref(), Some("callback"));
}

#[tokio::test]
async fn a_us_number_read_aloud_in_groups() {
    let h = Harness::with(TestDb::sqlite().await, IN_HOURS, |c| {
        c.business.default_region = "US".into();
        c.business.timezone = "America/New_York".into();
        c.business.hours = frontdesk::booking::WeekHours::weekdays("00:00-23:59");
    })
    .await;
    let mut c = h.call("CA_usnum", None).await;
    c.say("hi this is Carla Jones, I'm interested in your AI receptionist for my dental office")
        .await;
    c.say("there are four of us").await;
    // No caller id: the number is asked for, with a longer window.
    c.say("could someone call me back instead").await;
    assert!(c.windows.contains(&Some(1200)));
    c.say("sure, it's four one five, five five five, two six seven one")
        .await;
    let lead = h.lead("CA_usnum").await;
    assert_eq!(lead.phone.expose(), "+14155552671");
}

// ------------------------------------------------------------ tier D and pricing

#[tokio::test]
async fn pricing_gives_the_published_range_and_notes_the_answer() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_price", Some(UK_MOBILE)).await;
    let reply = c
        .say("Hi, how much does your appointment booking cost?")
        .await;
    let amounts = reply.matches('£').count();
    assert!(amounts >= 2, "a range, never a single number: {reply}");
    c.say("no thanks, that's all I needed").await;
    c.say("no, bye").await;
    assert!(c.hung_up());
    let lead = h.lead("CA_price").await;
    assert_eq!(lead.intent.as_deref(), Some("pricing"));
    assert_eq!(lead.tier.as_deref(), Some("D"));
    assert_eq!(lead.outcome.as_deref(), Some("answered"));
    let contact = h
        .store()
        .contact_by_phone(UK_MOBILE)
        .await
        .unwrap()
        .unwrap();
    let notes: Vec<_> = h
        .store()
        .activities(&contact.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.kind == "note")
        .collect();
    assert_eq!(
        notes.len(),
        1,
        "a CRM note with the question and the answer"
    );
    assert!(notes[0].body.as_ref().unwrap().expose().contains("£49"));
}

#[tokio::test]
async fn bespoke_pricing_books_a_scoping_call() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_bespoke", Some(UK_MOBILE)).await;
    let reply = c
        .say("what would a custom integration with our systems cost")
        .await;
    assert!(!reply.contains('£'), "no price for bespoke work: {reply}");
    c.say("yes please").await;
    c.say("Olu Adeyemi").await;
    c.say("Monday morning").await;
    c.say("the first one").await;
    c.say("yes").await;
    c.say("olu at adeyemi dot co dot uk").await;
    let lead = h.lead("CA_bespoke").await;
    assert_eq!(lead.intent.as_deref(), Some("pricing"));
    assert_eq!(lead.outcome.as_deref(), Some("booked"));
    assert_eq!(lead.tier.as_deref(), Some("A"));
}

#[tokio::test]
async fn pricing_without_a_service_asks_which_then_answers() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_which", Some(UK_MOBILE)).await;
    let first = c.say("what are your prices").await;
    assert!(!first.contains('£'), "{first}");
    let second = c.say("the AI receptionist").await;
    assert!(second.matches('£').count() >= 2, "{second}");
    c.say("no thank you").await;
    let lead = h.lead("CA_which").await;
    assert_eq!(lead.outcome.as_deref(), Some("answered"));
}

#[tokio::test]
async fn a_factual_question_is_answered_from_the_knowledge() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_hours", Some(UK_MOBILE)).await;
    let reply = c.say("what are your opening hours?").await;
    assert!(reply.to_lowercase().contains("monday"), "{reply}");
    c.say("no that's it thanks").await;
    assert!(c.hung_up());
    let lead = h.lead("CA_hours").await;
    assert_eq!(lead.tier.as_deref(), Some("D"));
    assert_eq!(lead.outcome.as_deref(), Some("answered"));
}

// ------------------------------------------------------------ support, referral, unclear

#[tokio::test]
async fn an_existing_customer_stored_in_another_format_is_greeted_by_name() {
    let h = sqlite_at(IN_HOURS).await;
    // Stored from a national form; calls in with E.164.
    let e = frontdesk::phone::normalise("020 7946 0123", phonenumber::country::Id::GB).unwrap();
    h.store()
        .upsert_contact(
            &NewContact {
                phone_e164: e.to_pii(),
                name: Some(Pii::new("Priya Shah".into())),
                email: None,
                timezone: None,
            },
            t(IN_HOURS),
        )
        .await
        .unwrap();
    let mut c = h.call("CA_cust", Some("+44 20 7946 0123")).await;
    assert!(c.said[0].contains("Priya"), "{:?}", c.said);
    c.say("the booking page on our account stopped working this morning")
        .await;
    assert!(c.handed_off(), "{:?}", c.said);
    let lead = h.lead("CA_cust").await;
    assert_eq!(lead.intent.as_deref(), Some("support"));
    assert_eq!(lead.outcome.as_deref(), Some("transferred"));
    assert_eq!(lead.routing_owner.as_deref(), Some("team_support"));
    assert_eq!(h.contacts().await, 1, "never duplicated");
}

#[tokio::test]
async fn support_after_hours_takes_a_callback() {
    let h = sqlite_at(AFTER_HOURS).await;
    let mut c = h.call("CA_supp_ah", Some(UK_MOBILE)).await;
    c.say("I'm an existing customer and I have a problem with my invoice")
        .await;
    assert!(!c.handed_off());
    c.say("yes, this number is fine").await;
    let lead = h.lead("CA_supp_ah").await;
    assert_eq!(lead.intent.as_deref(), Some("support"));
    assert_eq!(lead.outcome.as_deref(), Some("callback"));
    assert!(lead.after_hours);
}

#[tokio::test]
async fn a_returning_lead_is_recognised_and_never_duplicated() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_first", Some(UK_MOBILE)).await;
    c.say("I'm interested in a demo").await;
    c.say("Jane Doe").await;
    c.say("three of us").await;
    c.say("call me back please").await;
    c.say("yes").await;
    c.hang_up().await;
    let mut c2 = h.call("CA_second", Some("07700 900123")).await;
    assert!(c2.said[0].contains("Jane"), "{:?}", c2.said);
    c2.say("I'd like to book that demo now").await;
    assert_eq!(h.contacts().await, 1);
    let leads = h.leads().await;
    assert_eq!(leads.len(), 2, "one lead per call");
    assert_eq!(leads[0].contact_id, leads[1].contact_id, "one contact");
}

#[tokio::test]
async fn a_referral_is_noted_with_who_referred_them() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_ref", Some(UK_MOBILE)).await;
    c.say("Hi, I was referred by Sarah at Acme about a partnership")
        .await;
    c.say("my name is Leo Grant").await;
    c.say("we're a small agency, four people").await;
    c.say("no, just ask someone to call me").await;
    c.say("yes that's fine").await;
    let lead = h.lead("CA_ref").await;
    assert_eq!(lead.intent.as_deref(), Some("referral"));
    assert_eq!(lead.outcome.as_deref(), Some("callback"));
    assert_eq!(lead.routing_owner.as_deref(), Some("team_partnerships"));
    let notes = lead.notes.unwrap().expose().clone();
    assert!(notes.contains("Sarah"), "{notes}");
}

#[tokio::test]
async fn an_unclear_call_is_handed_over_with_the_partial_transcript() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_unclear", Some(UK_MOBILE)).await;
    c.say("I got a letter about something and I'm not sure who I should talk to")
        .await;
    assert!(c.handed_off(), "{:?}", c.said);
    assert!(c.last().contains("One moment while I connect you"));
    match &c.ending {
        Some(Ending::HandOff { summary, .. }) => assert!(summary.contains("letter"), "{summary}"),
        e => panic!("{e:?}"),
    }
    let lead = h.lead("CA_unclear").await;
    assert_eq!(lead.intent.as_deref(), Some("unclear"));
    assert_eq!(lead.outcome.as_deref(), Some("transferred"));
}

#[tokio::test]
async fn a_caller_who_asks_for_a_person_gets_one() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_human", Some(UK_MOBILE)).await;
    c.say("I'd like a quote").await;
    c.say("can I speak to a real person please").await;
    assert!(c.handed_off());
    assert_eq!(
        h.lead("CA_human").await.outcome.as_deref(),
        Some("transferred")
    );
}

#[tokio::test]
async fn after_hours_a_person_is_not_promised_but_a_callback_is_taken() {
    let h = sqlite_at(AFTER_HOURS).await;
    let mut c = h.call("CA_human_ah", Some(UK_MOBILE)).await;
    c.say("can I talk to someone please").await;
    assert!(!c.handed_off());
    let lead = h.lead("CA_human_ah").await;
    assert_eq!(lead.outcome.as_deref(), Some("callback"));
    assert!(lead.after_hours);
}

#[tokio::test]
async fn pressing_zero_hands_over() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_dtmf", Some(UK_MOBILE)).await;
    c.event(Event::Dtmf('0')).await;
    assert!(c.handed_off());
}

// ------------------------------------------------------------ opt-out and minimisation

async fn opt_out_body(db: TestDb) {
    let h = Harness::new(db, IN_HOURS).await;
    let mut c = h.call("CA_optout", Some(UK_MOBILE)).await;
    c.say("I'm interested in a demo").await;
    c.say("actually, please take me off your list and don't call me again")
        .await;
    assert!(c.hung_up());
    assert!(!c.jobs.contains(&"take_callback".to_string()));
    let lead = h.lead("CA_optout").await;
    assert_eq!(lead.outcome.as_deref(), Some("opted_out"));
    assert_eq!(lead.tier, None);
    assert!(h.store().is_do_not_contact(UK_MOBILE).await.unwrap());
    let cards = h.store().outbox_items("lead.created").await.unwrap();
    assert!(
        cards.iter().all(|i| !i.payload.contains(&lead.id)),
        "no card is created for an opted-out caller"
    );
    let contact = h
        .store()
        .contact_by_phone(UK_MOBILE)
        .await
        .unwrap()
        .unwrap();
    let acts = h.store().activities(&contact.id).await.unwrap();
    assert!(acts.iter().all(|a| a.kind != "task"), "no callback task");
}
on_both_databases!(
    an_opt_out_is_marked_and_gets_no_callback,
    super::opt_out_body
);

#[tokio::test]
async fn opting_out_with_a_held_slot_releases_it() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_opt_hold", Some(UK_MOBILE)).await;
    book_up_to_readback(&mut c).await;
    c.say("you know what, I'm not interested, remove me from your list")
        .await;
    assert!(c.jobs.contains(&"release_hold".to_string()));
    assert_eq!(
        h.lead("CA_opt_hold").await.outcome.as_deref(),
        Some("opted_out")
    );
    let b = h
        .store()
        .bookings_between("alex", t("2026-12-01T00:00:00Z"), t("2026-12-31T00:00:00Z"))
        .await
        .unwrap();
    assert!(b.is_empty());
}

#[tokio::test]
async fn a_volunteered_card_number_is_kept_nowhere() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_card", Some(UK_MOBILE)).await;
    c.say("I want to book a demo and pay now, my card number is 4111 1111 1111 1111 expiry 12 28")
        .await;
    assert!(
        c.said.iter().any(|s| s.contains("card")),
        "the caller is told it was not kept"
    );
    c.say("Jane Doe").await;
    c.say("five people").await;
    c.say("call me back please").await;
    c.say("yes").await;
    let dump = h.dump().await;
    assert!(!dump.contains("4111"), "card digits stored somewhere");
    assert!(dump.contains("Jane Doe"), "the dump sees the lead");
    let lead = h.lead("CA_card").await;
    assert_eq!(lead.intent.as_deref(), Some("new_enquiry"));
}

#[tokio::test]
async fn a_volunteered_health_detail_is_kept_nowhere() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_health", Some(UK_MOBILE)).await;
    c.say("Hi, I was diagnosed with diabetes last year. I'd like to book a consultation.")
        .await;
    c.say("Mo Farah").await;
    c.say("just me").await;
    c.say("tomorrow morning").await;
    c.say("the first one").await;
    c.say("yes").await;
    c.say("no email thanks").await;
    let dump = h.dump().await.to_lowercase();
    assert!(
        !dump.contains("diabetes") && !dump.contains("diagnosed"),
        "health detail stored"
    );
    assert_eq!(h.lead("CA_health").await.outcome.as_deref(), Some("booked"));
    // The session applies the same scrub before a turn is recorded.
    let brain = h.app.conversations.start();
    let scrubbed = brain
        .scrub("my card is 4111 1111 1111 1111")
        .expect("redacted");
    assert!(!scrubbed.contains("4111"));
}

#[tokio::test]
async fn replayed_jobs_book_once() {
    let h = sqlite_at(IN_HOURS).await;
    let mut c = h.call("CA_once", Some(UK_MOBILE)).await;
    book_up_to_readback(&mut c).await;
    c.say("yes").await;
    c.say("jane at doe dot com").await;
    // The same confirm job replayed (another node, a restart): one booking.
    let job = frontdesk::call::ToolJob {
        id: "rules-999-confirm_booking".into(),
        name: "confirm_booking".into(),
        args: serde_json::json!({"hold_id": "nope", "name": "X"}),
    };
    let a = h.tools.execute("CA_once", &job).await;
    let b = h.tools.execute("CA_once", &job).await;
    assert_eq!(a, b, "the stored outcome is returned");
    let bookings = h
        .store()
        .bookings_between("alex", t("2026-12-01T00:00:00Z"), t("2026-12-31T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(bookings.len(), 1);
    let holds_confirmed = h
        .store()
        .hold(&bookings[0].hold_id.clone().unwrap())
        .await
        .unwrap()
        .map(|h| h.status);
    assert_eq!(holds_confirmed, Some(HoldStatus::Confirmed));
}

#[tokio::test]
async fn a_malformed_tool_argument_is_a_failed_outcome() {
    let h = sqlite_at(IN_HOURS).await;
    for (name, args) in [
        (
            "hold_slot",
            serde_json::json!({"owner": "alex", "start": "friday"}),
        ),
        ("record_outcome", serde_json::json!({"outcome": 5})),
        (
            "find_slots",
            serde_json::json!({"from": "2026-12-01T10:00:00Z", "to": "2026-12-02T10:00:00Z", "timezone": "Mars/Base"}),
        ),
        ("launch_rocket", serde_json::json!({})),
    ] {
        let job = frontdesk::call::ToolJob {
            id: format!("j-{name}"),
            name: name.into(),
            args,
        };
        let o = h.app.tools.execute("CA_bad", &job).await;
        assert!(!o.ok, "{name}: {o:?}");
    }
}
