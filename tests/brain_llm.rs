//! The llm brain in whole calls, against a mock OpenAI-compatible server.
//!
//! Each call runs the real [`Session`] (call core + the llm brain the
//! composition root builds for `[brain] kind = "llm"`) in virtual time: the
//! test is the carrier (20 ms caller frames, the shared playout emulator
//! echoing marks as the audio plays), the speech-to-text (the final
//! transcript when the core asks for it) and the speech synthesis (50 ms of
//! audio per character). The model is the real OpenAI-compatible client
//! streaming from `tests/support/mock_llm.rs`, every SSE body cut into
//! small pieces at arbitrary bytes and every tool call's arguments into
//! fragments. Tool jobs run on the real action layer — the local calendar
//! and CRM on SQLite, exactly once per job through `StoreBackedTools` — at
//! the moment the test chooses, so a barge-in can land while a booking is
//! being confirmed.
//!
//! The tests assert what a business sees: bookings and holds in the store,
//! the lead's intent, tier and outcome, whether the call hung up, and what
//! the caller heard — never the brain's internals.

mod common;
#[path = "support/mock_llm.rs"]
mod mock_llm;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{t, TestDb};
use frontdesk::app::App;
use frontdesk::audio::{wav, FRAME_SAMPLES};
use frontdesk::brain::llm::TROUBLE_LINE;
use frontdesk::call::core::{CoreConfig, HangupReason, ReplyEvent, ReplyInput, TurnState};
use frontdesk::call::session::{Output, Record, Session, SessionConfig};
use frontdesk::call::tools::{ToolExecutor, ToolJob, ToolOutcome};
use frontdesk::carrier::playout::{Playout, PlayoutEvent};
use frontdesk::carrier::{CallEvent, CarrierCommand, StreamStart};
use frontdesk::clock::ManualClock;
use frontdesk::config::{env, Config, Env};
use frontdesk::pii::Pii;
use frontdesk::providers::{Llm, LlmEvent, LlmRequest, SttEvent};
use frontdesk::store::{HoldStatus, LeadFilter, LeadRecord};
use mock_llm::{event, Answer, MockLlm};
use serde_json::{json, Value};

/// Tuesday 1 December 2026, 10:00 in London: open.
const IN_HOURS: &str = "2026-12-01T10:00:00Z";
const UK_MOBILE: &str = "+447700900123";
/// Bot audio per character of text.
const SAMPLES_PER_CHAR: usize = 400;

// ------------------------------------------------------------ the model's script

/// One answer of the mock model.
#[derive(Debug, Clone)]
enum Turn {
    /// Plain text.
    Say(&'static str),
    /// Optional text, then tool calls `(id, name, arguments)`.
    Tools(
        Option<&'static str>,
        Vec<(&'static str, &'static str, &'static str)>,
    ),
    /// An HTTP error.
    Fail(u16),
}

fn chunk(delta: Value, finish: Option<&str>) -> String {
    event(json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1_730_000_000,
        "model": "mock", "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        "usage": null
    }))
}

/// The SSE body for `turn`: text in word-sized deltas; each tool call's
/// arguments in four-character fragments after a first fragment with the id
/// and name (and already a piece of the arguments); the usage chunk; then
/// the whole body cut every 23 bytes, whatever that splits.
fn answer(turn: &Turn) -> Answer {
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    let (text, calls) = match turn {
        Turn::Say(t) => (Some(*t), vec![]),
        Turn::Tools(t, calls) => (*t, calls.clone()),
        Turn::Fail(code) => {
            return Answer::Status(*code, r#"{"error":{"message":"overloaded"}}"#.into(), None)
        }
    };
    if let Some(text) = text {
        for w in text.split_inclusive(' ') {
            events.push(chunk(json!({"content": w}), None));
        }
    }
    for (i, (id, name, args)) in calls.iter().enumerate() {
        let chars: Vec<char> = args.chars().collect();
        let (first, rest) = chars.split_at(chars.len().min(3));
        events.push(chunk(
            json!({"tool_calls": [{"index": i, "id": id, "type": "function",
                "function": {"name": name, "arguments": first.iter().collect::<String>()}}]}),
            None,
        ));
        for piece in rest.chunks(4) {
            events.push(chunk(
                json!({"tool_calls": [{"index": i, "function": {"arguments": piece.iter().collect::<String>()}}]}),
                None,
            ));
        }
    }
    let finish = if calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    events.push(chunk(json!({}), Some(finish)));
    events.push(event(json!({"id": "chatcmpl-1", "choices": [],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}})));
    events.push("data: [DONE]\n\n".into());
    let body = events.concat().into_bytes();
    let pieces = body
        .chunks(23)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>();
    // A cut inside a multi-byte character would be lossy: the script is ASCII.
    assert!(body.is_ascii(), "keep the script ASCII");
    Answer::Sse {
        pieces,
        hold: false,
    }
}

// ------------------------------------------------------------ the harness

struct Harness {
    app: App,
    tools: Arc<dyn ToolExecutor>,
    clock: Arc<ManualClock>,
    mock: MockLlm,
    _db: TestDb,
}

async fn harness(script: Vec<Turn>) -> Harness {
    let n = script.len();
    let mock = mock_llm::start(move |i| match script.get(i) {
        Some(turn) => answer(turn),
        None => Answer::Status(
            500,
            format!(r#"{{"error":{{"message":"the script has only {n} answers"}}}}"#),
            None,
        ),
    })
    .await;
    let db = TestDb::sqlite().await;
    let toml = format!(
        r#"
        [brain]
        kind = "llm"
        [providers.llm]
        kind = "openai"
        base_url = "{}"
        model = "mock"
        [providers.stt]
        kind = "scripted"
        [providers.tts]
        kind = "scripted"
        "#,
        mock.base_url
    );
    let mut cfg = Config::from_toml(&toml).expect("config");
    cfg.storage.max_connections = 5;
    let clock = Arc::new(ManualClock::new(t(IN_HOURS)));
    let env = Env::from_pairs([(env::DATABASE_URL, db.url.as_str())]);
    let app = App::build(cfg, &env, clock.clone()).await.expect("app");
    let tools = app.call_tools();
    Harness {
        app,
        tools,
        clock,
        mock,
        _db: db,
    }
}

impl Harness {
    async fn call(&self, sid: &str, from: &str) -> Line {
        let cfg = &self.app.config;
        let session = Session::new(
            SessionConfig {
                core: CoreConfig::new(&cfg.vad, &cfg.call),
                region: Some(self.app.services.region),
            },
            self.app.conversations.start(),
        );
        let speech = wav::load_8k(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures")
                .join("demo_request.wav"),
        )
        .expect("fixture");
        let mut line = Line {
            session,
            llm: self.app.providers.llm.clone(),
            tools: self.tools.clone(),
            clock: self.clock.clone(),
            sid: sid.into(),
            now: Instant::now(),
            playout: Playout::new(Duration::ZERO, Duration::from_millis(200)),
            speech: speech[..8000].to_vec(),
            caller: VecDeque::new(),
            transcripts: VecDeque::new(),
            finals_due: 0,
            replies: VecDeque::new(),
            hold_tail: false,
            held_tail: VecDeque::new(),
            hold_jobs: HashSet::new(),
            held_jobs: Vec::new(),
            outcomes: VecDeque::new(),
            said: Vec::new(),
            jobs: Vec::new(),
            finished: Vec::new(),
            hangup: None,
            handoff: None,
        };
        let mut params = BTreeMap::new();
        params.insert("From".to_string(), Pii::new(from.to_string()));
        let start = StreamStart {
            stream_sid: format!("MZ{sid}"),
            call_sid: sid.into(),
            account_sid: "AC1".into(),
            custom_parameters: params,
        };
        line.session
            .handle_event(CallEvent::Start(Box::new(start)), line.now);
        line.pump().await;
        line.settle().await;
        line
    }

    async fn lead(&self, sid: &str) -> LeadRecord {
        self.app
            .services
            .store
            .list_leads(&LeadFilter {
                limit: 50,
                ..LeadFilter::default()
            })
            .await
            .expect("leads")
            .into_iter()
            .find(|l| l.call_sid.as_deref() == Some(sid))
            .unwrap_or_else(|| panic!("no lead for {sid}"))
    }

    /// Confirmed bookings in December, across the calendar's owners.
    async fn bookings(&self) -> usize {
        let mut n = 0;
        for o in self.app.services.calendar.owners() {
            n += self
                .app
                .services
                .store
                .bookings_between(&o.id, t("2026-12-01T00:00:00Z"), t("2027-01-01T00:00:00Z"))
                .await
                .expect("bookings")
                .len();
        }
        n
    }

    async fn hold_status(&self, id: &str) -> HoldStatus {
        self.app
            .services
            .store
            .hold(id)
            .await
            .expect("store")
            .expect("the hold exists")
            .status
    }

    /// Every request the mock got, in order.
    fn requests(&mut self) -> Vec<Value> {
        std::iter::from_fn(|| self.mock.requests.try_recv().ok())
            .map(|s| s.body)
            .collect()
    }
}

/// One call on the line, in virtual time.
struct Line {
    session: Session,
    llm: Arc<dyn Llm>,
    tools: Arc<dyn ToolExecutor>,
    clock: Arc<ManualClock>,
    sid: String,
    now: Instant,
    playout: Playout,
    /// A second of caller speech (what it says is in `transcripts`).
    speech: Vec<i16>,
    /// Caller audio still to send.
    caller: VecDeque<i16>,
    /// What the caller's next utterances say.
    transcripts: VecDeque<String>,
    /// The core asked for final transcripts.
    finals_due: usize,
    /// Reply events not yet delivered, by generation.
    replies: VecDeque<(u64, ReplyEvent)>,
    /// Keep each reply's tool calls and end back (its text and audio go).
    hold_tail: bool,
    held_tail: VecDeque<(u64, ReplyEvent)>,
    /// Jobs of these tools wait until `release_jobs`.
    hold_jobs: HashSet<&'static str>,
    held_jobs: Vec<ToolJob>,
    outcomes: VecDeque<ToolOutcome>,
    /// Each reply's text, in order.
    said: Vec<String>,
    /// Each job handed to the tool runner, in order.
    jobs: Vec<ToolJob>,
    /// Each job outcome, in order.
    finished: Vec<ToolOutcome>,
    hangup: Option<HangupReason>,
    handoff: Option<(String, String)>,
}

impl Line {
    fn tokio_now(&self) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.now)
    }

    /// Carry out every output, deliver what is due, until nothing moves.
    async fn pump(&mut self) {
        loop {
            while let Some(o) = self.session.poll_output() {
                self.output(o).await;
            }
            if let Some(o) = self.outcomes.pop_front() {
                self.finished.push(o.clone());
                self.session.handle_tool_outcome(o, self.now);
                continue;
            }
            if let Some((gen, ev)) = self.replies.pop_front() {
                self.session.handle_reply(gen, ev, self.now);
                continue;
            }
            if self.finals_due > 0 {
                self.finals_due -= 1;
                let text = self.transcripts.pop_front().unwrap_or_default();
                self.session.handle_stt(
                    SttEvent::Final {
                        text,
                        end_of_utterance: true,
                    },
                    self.now,
                );
                continue;
            }
            let now = self.tokio_now();
            if let Some(PlayoutEvent::MarkPlayed(m)) = self.playout.poll_event(now) {
                self.session.handle_event(CallEvent::Mark(m), self.now);
                continue;
            }
            if self.session.poll_timeout().is_some_and(|t| t <= self.now) {
                self.session.handle_timeout(self.now);
                continue;
            }
            break;
        }
    }

    async fn output(&mut self, o: Output) {
        let now = self.tokio_now();
        match o {
            Output::Send(CarrierCommand::Media(pcm)) => {
                self.playout.push_media(now, pcm.len());
            }
            Output::Send(CarrierCommand::Mark(m)) => self.playout.push_mark(now, m),
            Output::Send(CarrierCommand::Clear) => {
                self.playout.clear(now);
            }
            Output::EndOfUtterance => self.finals_due += 1,
            Output::StartReply { gen, input } => self.reply(gen, input).await,
            Output::RunTool(job) => {
                self.jobs.push(job.clone());
                if self.hold_jobs.contains(job.name.as_str()) {
                    self.held_jobs.push(job);
                } else {
                    let o = self.tools.execute(&self.sid, &job).await;
                    self.outcomes.push_back(o);
                }
            }
            Output::Record(Record::HandOff { target, summary }) => {
                self.handoff = Some((target, summary));
            }
            Output::Hangup(r) => self.hangup = Some(r),
            _ => {}
        }
    }

    /// The reply pipeline: the model's stream (or the text to say), then
    /// audio for its text, then its tool calls and its end.
    async fn reply(&mut self, gen: u64, input: ReplyInput) {
        let mut text = String::new();
        let mut tail = Vec::new();
        match input {
            ReplyInput::Say(t) => text = t,
            ReplyInput::Generate(req) => self.generate(req, &mut text, &mut tail).await,
        }
        self.said.push(text.clone());
        if !text.is_empty() {
            self.replies
                .push_back((gen, ReplyEvent::Text(text.clone())));
            let samples = text.chars().count() * SAMPLES_PER_CHAR;
            self.replies
                .push_back((gen, ReplyEvent::Audio(vec![0; samples])));
        }
        if tail.is_empty() {
            tail.push(ReplyEvent::Done);
        }
        let tail = tail.into_iter().map(|ev| (gen, ev));
        if self.hold_tail {
            self.held_tail.extend(tail);
        } else {
            self.replies.extend(tail);
        }
    }

    async fn generate(&mut self, req: LlmRequest, text: &mut String, tail: &mut Vec<ReplyEvent>) {
        let mut rx = match self.llm.stream(req).await {
            Ok(rx) => rx,
            Err(e) => return tail.push(ReplyEvent::Failed(e)),
        };
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("the mock answers within 10 s");
            match ev {
                Some(Ok(LlmEvent::Text(t))) => text.push_str(&t),
                Some(Ok(LlmEvent::ToolCall(c))) => tail.push(ReplyEvent::ToolCall(c)),
                Some(Ok(LlmEvent::Done(_))) | None => {
                    tail.push(ReplyEvent::Done);
                    return;
                }
                Some(Err(e)) => {
                    tail.push(ReplyEvent::Failed(e));
                    return;
                }
            }
        }
    }

    /// 20 ms pass: one caller frame (speech or silence), marks that fell due.
    async fn step(&mut self) {
        self.now += Duration::from_millis(20);
        self.clock.advance(chrono::Duration::milliseconds(20));
        let frame: Vec<i16> = (0..FRAME_SAMPLES)
            .map(|_| self.caller.pop_front().unwrap_or(0))
            .collect();
        self.session.handle_event(
            CallEvent::Media {
                timestamp_ms: None,
                pcm: &frame,
            },
            self.now,
        );
        self.pump().await;
    }

    fn quiet(&self) -> bool {
        self.hangup.is_some()
            || (self.session.state() == TurnState::Listening
                && self.caller.is_empty()
                && self.replies.is_empty()
                && self.outcomes.is_empty()
                && !self.playout.is_active())
    }

    /// Let the call run until nobody is talking and nothing is due (at
    /// most a minute of virtual time).
    async fn settle(&mut self) {
        for _ in 0..3000 {
            if self.quiet() {
                return;
            }
            self.step().await;
        }
        panic!(
            "the call never settled: {:?}, said {:?}",
            self.session.state(),
            self.said
        );
    }

    /// The caller speaks (a second of speech that the STT hears as `text`).
    fn start_speaking(&mut self, text: &str) {
        self.transcripts.push_back(text.to_string());
        self.caller.extend(self.speech.iter().copied());
    }

    /// The caller says `text` when the line is quiet; what the receptionist
    /// said in answer.
    async fn say(&mut self, text: &str) -> String {
        let before = self.said.len();
        self.start_speaking(text);
        self.settle().await;
        let said: Vec<&str> = self.said[before..]
            .iter()
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .collect();
        said.join(" ")
    }

    /// Step until the bot is speaking (its reply's audio is out).
    async fn until_bot_speaks(&mut self) {
        for _ in 0..1000 {
            if self.session.state() == TurnState::BotSpeaking && self.playout.is_active() {
                return;
            }
            self.step().await;
        }
        panic!("the bot never spoke: {:?}", self.session.state());
    }

    /// Run the held jobs now, in order.
    async fn release_jobs(&mut self) {
        self.hold_jobs.clear();
        for job in std::mem::take(&mut self.held_jobs) {
            let o = self.tools.execute(&self.sid, &job).await;
            self.outcomes.push_back(o);
        }
        self.pump().await;
    }

    /// Deliver the held reply tails now.
    async fn release_tail(&mut self) {
        self.hold_tail = false;
        self.replies.extend(self.held_tail.drain(..));
        self.pump().await;
    }

    fn jobs_named(&self, name: &str) -> usize {
        self.jobs.iter().filter(|j| j.name == name).count()
    }

    fn outcome_of(&self, name: &str) -> Option<&ToolOutcome> {
        self.finished.iter().find(|o| o.name == name)
    }

    async fn hang_up(&mut self) {
        self.session.handle_event(CallEvent::Stop, self.now);
        self.pump().await;
    }
}

/// The chat messages of a request.
fn messages(req: &Value) -> Vec<Value> {
    req["messages"].as_array().cloned().unwrap_or_default()
}

/// The tool result message answering `call_id`.
fn tool_result(req: &Value, call_id: &str) -> Option<Value> {
    messages(req)
        .into_iter()
        .find(|m| m["role"] == "tool" && m["tool_call_id"] == call_id)
        .and_then(|m| {
            m["content"]
                .as_str()
                .and_then(|c| serde_json::from_str(c).ok())
        })
}

fn offered(req: &Value) -> Vec<String> {
    req["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["function"]["name"].as_str().map(str::to_string))
        .collect()
}

// ------------------------------------------------------------ the calls

/// The booking conversation, every tool call in fragments across a body cut
/// at random bytes: find → hold → confirm → end_call, each result back to
/// the model under its call id.
#[tokio::test]
async fn a_booking_made_with_tool_calls_in_split_fragments() {
    let mut h = harness(vec![
        Turn::Tools(
            Some("Let me check Friday morning for you."),
            vec![(
                "call_f1",
                "find_slots",
                r#"{"date": "2026-12-04", "earliest": "09:00", "latest": "12:00"}"#,
            )],
        ),
        Turn::Say("I have two times on Friday morning. Would the first one suit you?"),
        Turn::Tools(None, vec![("call_f2", "hold_slot", r#"{"slot_id": "s1"}"#)]),
        Turn::Say("Lovely, I've pencilled that in. Shall I confirm it for you?"),
        Turn::Tools(
            Some("Wonderful."),
            vec![(
                "call_f3",
                "confirm_booking",
                r#"{"hold_id": "h1", "name": "Jane Doe", "email": "jane@example.com", "intent": "new_enquiry", "notes": "Jane Doe wants a demo of the booking tool for a team of five."}"#,
            )],
        ),
        Turn::Say("You're booked, and you'll get a text to confirm. Anything else?"),
        Turn::Tools(
            Some("Thanks for calling, goodbye."),
            vec![("call_f4", "end_call", r#"{"reason": "done"}"#)],
        ),
    ])
    .await;
    let mut c = h.call("CA_llm_book", UK_MOBILE).await;
    assert_eq!(
        c.said,
        ["Thanks for calling Frontdesk Demo Co, how can I help?"],
        "the greeting is said at once, from the phrases"
    );
    let heard = c
        .say("Hi, I'm Jane Doe. I'd like a demo of your booking tool, Friday morning if you can.")
        .await;
    assert!(
        heard.contains("Let me check") && heard.contains("two times"),
        "{heard}"
    );
    c.say("The first one, please.").await;
    c.say("Yes please, it's jane at example dot com.").await;
    c.say("No, that's everything, thanks.").await;
    assert_eq!(c.hangup, Some(HangupReason::Completed), "{:?}", c.said);

    let reqs = h.requests();
    assert_eq!(reqs.len(), 7, "one request per model turn");
    assert_eq!(
        offered(&reqs[0]),
        [
            "lookup_contact",
            "find_slots",
            "hold_slot",
            "confirm_booking",
            "release_hold",
            "transfer_to_human",
            "take_callback",
            "answer_question",
            "end_call"
        ]
    );
    let system = messages(&reqs[0])[0]["content"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        system.contains("Frontdesk Demo Co") && system.contains("from £49 to £149 per month"),
        "the prompt names the business and carries the published ranges: {system}"
    );
    // The slots found, under the model's call id, with short slot ids.
    let found = tool_result(&reqs[1], "call_f1").expect("find_slots answered");
    assert_eq!(found["ok"], true, "{found}");
    assert_eq!(found["result"]["slots"][0]["slot_id"], "s1");
    let asked = messages(&reqs[1])
        .into_iter()
        .find(|m| m["tool_calls"][0]["id"] == "call_f1")
        .expect("the call is in the chat");
    assert_eq!(asked["content"], "Let me check Friday morning for you.");
    assert_eq!(
        asked["tool_calls"][0]["function"]["arguments"],
        r#"{"date": "2026-12-04", "earliest": "09:00", "latest": "12:00"}"#,
        "the fragments joined"
    );
    let held = tool_result(&reqs[3], "call_f2").expect("hold answered");
    assert_eq!(held["result"]["hold_id"], "h1");
    let booked = tool_result(&reqs[5], "call_f3").expect("confirm answered");
    assert_eq!(booked["ok"], true, "{booked}");

    // What the business sees.
    assert_eq!(h.bookings().await, 1, "one booking");
    let hold_id = c
        .outcome_of("hold_slot")
        .and_then(|o| o.result["hold_id"].as_str())
        .expect("the real hold id")
        .to_string();
    assert_eq!(h.hold_status(&hold_id).await, HoldStatus::Confirmed);
    let lead = h.lead("CA_llm_book").await;
    assert_eq!(lead.outcome.as_deref(), Some("booked"));
    assert_eq!(lead.tier.as_deref(), Some("A"));
    assert_eq!(lead.intent.as_deref(), Some("new_enquiry"));
    assert_eq!(lead.phone.expose(), UK_MOBILE);
    assert_eq!(
        lead.name.as_ref().map(|n| n.expose().as_str()),
        Some("Jane Doe")
    );
    assert_eq!(
        lead.email.as_ref().map(|n| n.expose().as_str()),
        Some("jane@example.com")
    );
    let notes = lead.notes.map(|n| n.expose().clone()).unwrap_or_default();
    assert!(notes.starts_with("Jane Doe wants a demo"), "{notes}");
    assert!(notes.contains("Booked Friday"), "{notes}");
    assert_eq!(
        h.app
            .services
            .store
            .count_contacts()
            .await
            .expect("contacts"),
        1,
        "one contact for the number"
    );
}

/// A malformed argument is never run: the model gets a failed result saying
/// why and retries; two in a row hand the call to the rules brain.
#[tokio::test]
async fn a_malformed_argument_is_answered_and_not_run() {
    let mut h = harness(vec![
        Turn::Tools(
            Some("Of course."),
            vec![(
                "call_m1",
                "take_callback",
                r#"{"notes": "Tom Baker wants a call back", "tier": "#,
            )],
        ),
        Turn::Tools(
            None,
            vec![(
                "call_m2",
                "take_callback",
                r#"{"notes": "Tom Baker would like a call back about pricing.", "tier": "C", "name": "Tom Baker", "intent": "pricing"}"#,
            )],
        ),
        Turn::Say("Done, someone from the team will call you back. Anything else?"),
        Turn::Tools(Some("Bye for now."), vec![("call_m3", "end_call", "{}")]),
    ])
    .await;
    let mut c = h.call("CA_llm_bad", UK_MOBILE).await;
    let heard = c
        .say("Could someone call me back about your prices? It's Tom Baker.")
        .await;
    assert!(heard.contains("call you back"), "{heard}");
    assert_eq!(c.jobs_named("take_callback"), 1, "only the good call ran");
    c.say("No, that's all.").await;
    assert_eq!(c.hangup, Some(HangupReason::Completed));

    let reqs = h.requests();
    assert_eq!(reqs.len(), 4);
    let refused = tool_result(&reqs[1], "call_m1").expect("the bad call is answered");
    assert_eq!(refused["ok"], false);
    assert!(
        refused["result"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("not valid JSON")),
        "{refused}"
    );
    let lead = h.lead("CA_llm_bad").await;
    assert_eq!(lead.outcome.as_deref(), Some("callback"));
    assert_eq!(lead.tier.as_deref(), Some("C"));
    assert_eq!(lead.intent.as_deref(), Some("pricing"));
    assert!(
        c.outcome_of("take_callback")
            .is_some_and(|o| o.ok && o.result["due"].is_string()),
        "a callback due by the tier's SLA"
    );
}

#[tokio::test]
async fn two_malformed_calls_in_a_row_hand_over_to_the_rules_brain() {
    let mut h = harness(vec![
        Turn::Tools(None, vec![("call_x1", "find_slots", r#"{"date": "friday"#)]),
        Turn::Tools(None, vec![("call_x2", "hold_slot", r#"{"slot_id": "s9"}"#)]),
    ])
    .await;
    let mut c = h.call("CA_llm_bad2", UK_MOBILE).await;
    let heard = c
        .say("Hi, I'm Jane Doe and I'd like to book a demo of your booking tool.")
        .await;
    assert!(heard.starts_with(TROUBLE_LINE), "{heard}");
    assert!(
        heard.contains("how many people"),
        "the rules brain goes on with the call: {heard}"
    );
    assert_eq!(c.jobs_named("find_slots") + c.jobs_named("hold_slot"), 0);
    assert_eq!(h.requests().len(), 2, "the model is not asked again");
    assert_eq!(
        c.said
            .iter()
            .filter(|s| s.contains("Thanks for calling"))
            .count(),
        1,
        "greeted once"
    );
}

/// The caller cuts in while `confirm_booking` runs: the job is not aborted,
/// the model (asking again) is answered from the booking, and there is
/// exactly one booking.
#[tokio::test]
async fn a_barge_in_during_confirm_booking_books_exactly_once() {
    let mut h = harness(vec![
        Turn::Tools(
            Some("Let me look."),
            vec![(
                "call_b1",
                "find_slots",
                r#"{"date": "2026-12-04", "earliest": "09:00"}"#,
            )],
        ),
        Turn::Say("I have two times on Friday. Would the first suit you?"),
        Turn::Tools(None, vec![("call_b2", "hold_slot", r#"{"slot_id": "s1"}"#)]),
        Turn::Say("I've pencilled that in. Shall I confirm it?"),
        Turn::Tools(
            Some("Wonderful, I'm booking that for you right now, it will only take a moment."),
            vec![(
                "call_b3",
                "confirm_booking",
                r#"{"hold_id": "h1", "name": "Jane Doe"}"#,
            )],
        ),
        // The caller asked something meanwhile; the model confirms again.
        Turn::Tools(
            Some("It's on Friday."),
            vec![(
                "call_b4",
                "confirm_booking",
                r#"{"hold_id": "h1", "name": "Jane Doe"}"#,
            )],
        ),
        Turn::Say("You're all set for Friday. Anything else?"),
    ])
    .await;
    let mut c = h.call("CA_llm_barge", UK_MOBILE).await;
    c.say("Hi, it's Jane Doe, I'd like to book a demo on Friday please.")
        .await;
    c.say("The first one.").await;
    c.hold_jobs.insert("confirm_booking");
    c.start_speaking("Yes please.");
    c.until_bot_speaks().await;
    assert_eq!(
        c.jobs_named("confirm_booking"),
        1,
        "the confirm job started"
    );
    // Mid-sentence the caller cuts in, while the booking is being made.
    c.start_speaking("Sorry, which day was that again?");
    for _ in 0..150 {
        c.step().await;
    }
    assert!(c.said.last().is_some_and(|s| s.starts_with("Wonderful")));
    c.release_jobs().await;
    c.settle().await;
    let last = c.said.last().cloned().unwrap_or_default();
    assert_eq!(
        last, "You're all set for Friday. Anything else?",
        "{:?}",
        c.said
    );

    assert_eq!(h.bookings().await, 1, "exactly one booking");
    assert_eq!(c.jobs_named("confirm_booking"), 1, "confirmed once");
    let lead = h.lead("CA_llm_barge").await;
    assert_eq!(lead.outcome.as_deref(), Some("booked"));
    assert_eq!(lead.tier.as_deref(), Some("A"));
    let reqs = h.requests();
    assert_eq!(reqs.len(), 7);
    // The request after the barge-in: the booking's result, then the caller.
    let after = &reqs[5];
    let confirmed = tool_result(after, "call_b3").expect("the confirm's result");
    assert_eq!(confirmed["ok"], true, "{confirmed}");
    let m = messages(after);
    let pos = |f: &dyn Fn(&Value) -> bool| m.iter().position(f);
    let result_at = pos(&|v| v["tool_call_id"] == "call_b3");
    let caller_at =
        pos(&|v| v["role"] == "user" && v["content"] == "Sorry, which day was that again?");
    assert!(
        result_at.is_some() && caller_at.is_some() && result_at < caller_at,
        "{m:?}"
    );
    let cut = m
        .iter()
        .find(|v| v["tool_calls"][0]["id"] == "call_b3")
        .and_then(|v| v["content"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(cut.ends_with('…'), "what the caller heard of it: {cut}");
    let again = tool_result(&reqs[6], "call_b4").expect("the second confirm is answered");
    assert_eq!(again["ok"], true);
    c.hang_up().await;
}

/// An `end_call` whose reply the caller cut off never hangs up — whether its
/// tool call came before the barge-in or after it (then the session drops
/// it with the discarded generation). One heard to the end does.
#[tokio::test]
async fn an_end_call_in_a_discarded_reply_never_hangs_up() {
    let mut h = harness(vec![
        Turn::Tools(
            Some("You're welcome. Thanks for calling, and have a lovely day."),
            vec![("call_e1", "end_call", "{}")],
        ),
        Turn::Say("Of course, what is it?"),
        Turn::Tools(
            Some("Great, goodbye then, and thanks again for calling."),
            vec![("call_e2", "end_call", r#"{"reason": "done"}"#)],
        ),
        Turn::Say("Sorry, go ahead."),
        Turn::Tools(Some("Bye!"), vec![("call_e3", "end_call", "{}")]),
    ])
    .await;
    let mut c = h.call("CA_llm_end", UK_MOBILE).await;

    // 1. The end_call arrives with the reply; the caller cuts in before the
    //    goodbye has played.
    c.start_speaking("That's all I needed, thank you.");
    c.until_bot_speaks().await;
    c.start_speaking("Oh wait, one more thing.");
    c.settle().await;
    assert_eq!(c.hangup, None, "{:?}", c.said);
    assert_eq!(
        c.said.last().map(String::as_str),
        Some("Of course, what is it?")
    );

    // 2. The caller cuts in before the end_call arrives: it comes with a
    //    generation already discarded.
    c.hold_tail = true;
    c.start_speaking("Actually no, it's fine.");
    c.until_bot_speaks().await;
    c.start_speaking("Hang on, one more.");
    for _ in 0..30 {
        c.step().await;
    }
    c.release_tail().await;
    c.settle().await;
    assert_eq!(c.hangup, None, "{:?}", c.said);
    assert_ne!(c.session.state(), TurnState::Ended);
    assert_eq!(c.said.last().map(String::as_str), Some("Sorry, go ahead."));

    // 3. Heard to the end: the call ends.
    c.say("Never mind, bye.").await;
    assert_eq!(c.hangup, Some(HangupReason::Completed));
    let reqs = h.requests();
    assert_eq!(reqs.len(), 5);
    let off = tool_result(&reqs[1], "call_e1").expect("the model hears it was called off");
    assert_eq!(off["ok"], false);
    assert!(
        !messages(&reqs[3])
            .iter()
            .any(|m| m["tool_calls"][0]["id"] == "call_e2" || m["tool_call_id"] == "call_e2"),
        "the discarded generation's end_call never reached the brain"
    );
    let lead = h.lead("CA_llm_end").await;
    assert_eq!(
        lead.outcome.as_deref(),
        Some("callback"),
        "a caller leaves a lead"
    );
}

/// The model fails mid-call: a short line at once, then the rules brain
/// goes on from what the caller already said — no second greeting — and
/// books the meeting.
#[tokio::test]
async fn the_model_failing_mid_call_hands_over_to_the_rules_brain() {
    let mut h = harness(vec![
        Turn::Say("Thanks, Jane. Roughly how many people are in your team?"),
        Turn::Fail(503),
    ])
    .await;
    let mut c = h.call("CA_llm_fail", UK_MOBILE).await;
    c.say("Hi, I'm Jane Doe and I'd like to book a demo of your booking tool.")
        .await;
    let heard = c
        .say("Just the five of us in one office. Friday morning after ten would suit.")
        .await;
    assert!(heard.starts_with(TROUBLE_LINE), "{heard}");
    assert!(
        heard.contains("Which works better"),
        "slots offered: {heard}"
    );
    c.say("The first one please.").await;
    c.say("Yes please.").await;
    c.say("I'd rather not give an email.").await;
    c.say("No, that's everything.").await;
    assert_eq!(c.hangup, Some(HangupReason::Completed), "{:?}", c.said);
    assert_eq!(h.requests().len(), 2, "the model is not asked again");
    assert_eq!(
        c.said
            .iter()
            .filter(|s| s.contains("Thanks for calling Frontdesk Demo Co, how"))
            .count(),
        1,
        "greeted once: {:?}",
        c.said
    );
    assert_eq!(h.bookings().await, 1);
    let lead = h.lead("CA_llm_fail").await;
    assert_eq!(lead.outcome.as_deref(), Some("booked"));
    assert_eq!(lead.tier.as_deref(), Some("A"));
    assert_eq!(lead.intent.as_deref(), Some("new_enquiry"));
    assert_eq!(
        lead.name.as_ref().map(|n| n.expose().as_str()),
        Some("Jane Doe")
    );
}

/// The model's turns up to a held Friday slot, then `more`.
fn up_to_a_hold(more: Vec<Turn>) -> Vec<Turn> {
    let mut script = vec![
        Turn::Tools(
            Some("Let me look."),
            vec![("call_h1", "find_slots", r#"{"date": "2026-12-04"}"#)],
        ),
        Turn::Say("I have two times on Friday. Would the first suit you?"),
        Turn::Tools(None, vec![("call_h2", "hold_slot", r#"{"slot_id": "s1"}"#)]),
        Turn::Say("I've pencilled that in. Shall I confirm it?"),
    ];
    script.extend(more);
    script
}

/// The caller's turns up to the hold; the hold's id.
async fn ask_for_friday(c: &mut Line) -> String {
    c.say("Hi, I'm Jane Doe, can I book a demo on Friday?")
        .await;
    c.say("The first one.").await;
    c.outcome_of("hold_slot")
        .and_then(|o| o.result["hold_id"].as_str())
        .expect("held")
        .to_string()
}

/// A caller who hangs up on a held time gets it released, and leaves a lead.
#[tokio::test]
async fn hanging_up_releases_the_hold() {
    let mut h = harness(up_to_a_hold(vec![])).await;
    let mut c = h.call("CA_llm_drop", UK_MOBILE).await;
    let hold_id = ask_for_friday(&mut c).await;
    c.hang_up().await;
    assert_eq!(h.hold_status(&hold_id).await, HoldStatus::Released);
    assert_eq!(h.bookings().await, 0);
    let lead = h.lead("CA_llm_drop").await;
    assert_eq!(lead.outcome.as_deref(), Some("callback"));
    assert_eq!(
        lead.name.as_ref().map(|n| n.expose().as_str()),
        Some("Jane Doe")
    );
    assert_eq!(h.requests().len(), 4);
}

/// The caller says yes and hangs up while the booking is being made: the
/// hold is not released under it, and the lead says booked once it stands
/// (the brain is no longer told; the action layer writes it).
#[tokio::test]
async fn hanging_up_while_the_booking_is_confirmed_keeps_it_booked() {
    let h = harness(up_to_a_hold(vec![Turn::Tools(
        Some("Lovely, booking that now."),
        vec![(
            "call_h3",
            "confirm_booking",
            r#"{"hold_id": "h1", "name": "Jane Doe"}"#,
        )],
    )]))
    .await;
    let mut c = h.call("CA_llm_yesbye", UK_MOBILE).await;
    let hold_id = ask_for_friday(&mut c).await;
    c.hold_jobs.insert("confirm_booking");
    c.say("Yes please.").await;
    assert_eq!(
        c.jobs_named("confirm_booking"),
        1,
        "the confirm job started"
    );
    c.hang_up().await;
    assert_eq!(c.jobs_named("release_hold"), 0, "{:?}", c.jobs);
    c.release_jobs().await;
    assert_eq!(h.hold_status(&hold_id).await, HoldStatus::Confirmed);
    assert_eq!(h.bookings().await, 1);
    let lead = h.lead("CA_llm_yesbye").await;
    assert_eq!(lead.outcome.as_deref(), Some("booked"));
    assert_eq!(lead.tier.as_deref(), Some("A"));
}

/// `[brain] kind = "llm"` needs a real model: the scripted fake is refused
/// with one line naming the keys, an OpenAI-compatible one is accepted.
#[test]
fn check_config_wants_a_real_model_for_the_llm_brain() {
    let run = |config: &str| {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, config).expect("config");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_frontdesk"))
            .arg("check-config")
            .arg(&path)
            .env("FRONTDESK_DATABASE_URL", "sqlite::memory:")
            .output()
            .expect("run");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let speech = "[providers.stt]\nkind = \"scripted\"\n[providers.tts]\nkind = \"scripted\"\n";
    let (code, err) = run(&format!("[brain]\nkind = \"llm\"\n{speech}"));
    assert_eq!(code, 64, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err:?}");
    assert!(
        err.contains("brain.kind") && err.contains("scripted") && err.contains("openai"),
        "{err}"
    );
    let (code, err) = run(&format!(
        "[brain]\nkind = \"llm\"\n{speech}[providers.llm]\nchain = [\"openai\", \"scripted\"]\n\
         [providers.llm.openai]\nbase_url = \"http://127.0.0.1:11434/v1\"\n"
    ));
    assert_eq!(code, 64, "a scripted chain member too: {err}");
    assert!(err.contains("providers.llm.scripted"), "{err}");
    let (code, err) = run(&format!(
        "[brain]\nkind = \"llm\"\n{speech}[providers.llm]\nkind = \"openai\"\n\
         base_url = \"http://127.0.0.1:11434/v1\"\nmodel = \"llama3.1\"\n"
    ));
    assert_eq!(code, 0, "{err}");
}
