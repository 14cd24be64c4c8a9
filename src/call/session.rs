//! The call session: the turn-taking [`CallCore`] joined to a
//! [`Conversation`], sans-IO.
//!
//! # Drive contract
//!
//! [`Session`] does no I/O and reads no clock. Its driver
//!
//! 1. feeds every input with the matching `handle_*` method, passing `now`:
//!    carrier events through the one dispatch [`Session::handle_event`]
//!    (the driver and the simulator both use it), transcripts
//!    ([`Session::handle_stt`]), reply pipeline output
//!    ([`Session::handle_reply`]), tool outcomes
//!    ([`Session::handle_tool_outcome`]), and the ends that come from outside
//!    the carrier protocol ([`Session::handle_disconnect`],
//!    [`Session::handle_drain`]);
//! 2. after **every** input drains [`Session::poll_output`] until `None` and
//!    carries the outputs out in order;
//! 3. sleeps until [`Session::poll_timeout`] and then calls
//!    [`Session::handle_timeout`].
//!
//! Inside, after each input the session drains the core's
//! [`CoreEvent`]s into the conversation, carries out its [`Directive`]s
//! (queueing speech until the core can speak without talking over anyone,
//! handing tool jobs to the driver, ending the call once everything asked
//! for has been said), and then moves the core's actions to its own output.
//!
//! # What is recorded
//!
//! [`Output::Record`] carries everything the call's record needs, as it
//! happens: the start, each caller and receptionist turn (an amended caller
//! turn is re-sent under the same `seq`), each tool job, the hand-off
//! decision with its summary, and the end with its reason.

use std::collections::{HashSet, VecDeque};
use std::time::Instant;

use super::conversation::{BotTurn, CallInfo, Conversation, Directive, Ending, Event};
use super::core::{
    Action, CallCore, CoreConfig, CoreEvent, HangupReason, Observation, ReplyEvent, ReplyInput,
    TurnState,
};
use super::tools::{ToolJob, ToolOutcome};
use crate::carrier::{CallEvent, CarrierCommand, StreamStart};
use crate::phone;
use crate::pii::Pii;
use crate::providers::SttEvent;
pub use crate::store::Speaker;

/// Something for the call's record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// The stream started.
    Started(CallInfo),
    /// A turn, numbered in call order.
    Turn {
        /// Position in the call; a rewritten turn keeps its number.
        seq: u32,
        /// Who spoke.
        speaker: Speaker,
        /// The words (for the receptionist: what it meant to say).
        text: String,
        /// For an interrupted receptionist turn, what the caller heard.
        heard: Option<String>,
        /// The caller cut the receptionist off.
        interrupted: bool,
    },
    /// A tool job was handed to the runner.
    ToolStarted(ToolJob),
    /// A tool job finished.
    ToolFinished(ToolOutcome),
    /// The call is being recorded to this file (named in the activity log).
    Recording(String),
    /// The conversation hands the caller to people.
    HandOff {
        /// Who should take it.
        target: String,
        /// One line for the answering human.
        summary: String,
    },
    /// The call ended.
    Ended(HangupReason),
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send this to the carrier.
    Send(CarrierCommand),
    /// Ask the STT to finalise the utterance.
    EndOfUtterance,
    /// Ask the STT for the words of the sound so far (an interim).
    PeekWords,
    /// Tell the STT to forget the audio it holds (not an interruption).
    ForgetAudio,
    /// Start the reply pipeline for generation `gen`.
    StartReply {
        /// Generation id.
        gen: u64,
        /// What to speak.
        input: ReplyInput,
    },
    /// Stop generation `gen` at once.
    CancelReply {
        /// The generation.
        gen: u64,
    },
    /// Hand this job to the tool runner (never cancelled by barge-in).
    RunTool(ToolJob),
    /// Write this to the call's record.
    Record(Record),
    /// Count this.
    Observe(Observation),
    /// End the call: close the carrier stream.
    Hangup(HangupReason),
}

/// Settings of a session beyond the core's.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Turn-taking and pacing.
    pub core: CoreConfig,
    /// Region for caller numbers written without a country code.
    pub region: Option<phonenumber::country::Id>,
}

/// Tool job ids remembered per call (a repeated id is never run twice);
/// bounded so a model that loops cannot grow it.
const MAX_JOBS: usize = 1024;

/// One call: core + conversation. See the module docs for the drive contract.
pub struct Session {
    core: CallCore,
    conversation: Box<dyn Conversation>,
    region: Option<phonenumber::country::Id>,
    out: VecDeque<Output>,
    directives: Vec<Directive>,
    speech: VecDeque<ReplyInput>,
    ending: Option<Ending>,
    jobs: HashSet<String>,
    next_seq: u32,
    last_caller_seq: Option<u32>,
    started: bool,
    told_ended: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("state", &self.core.state())
            .field("queued_speech", &self.speech.len())
            .field("ending", &self.ending)
            .finish_non_exhaustive()
    }
}

/// The caller's and called numbers from a stream's parameters (`From`/`To`,
/// any case), normalised to E.164 when they parse.
fn call_info(start: &StreamStart, region: Option<phonenumber::country::Id>) -> CallInfo {
    let param = |name: &str| {
        start
            .custom_parameters
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.expose().trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let number = |v: Option<String>| {
        v.map(|raw| match region.map(|r| phone::normalise(&raw, r)) {
            Some(Ok(e)) => e.to_pii(),
            _ => Pii::new(raw),
        })
    };
    CallInfo {
        call_sid: start.call_sid.clone(),
        stream_sid: start.stream_sid.clone(),
        from: number(param("From")),
        to: number(param("To")),
        params: start.custom_parameters.clone(),
    }
}

impl Session {
    /// A session waiting for the stream's `start`.
    pub fn new(cfg: SessionConfig, conversation: Box<dyn Conversation>) -> Self {
        Session {
            core: CallCore::new(cfg.core),
            conversation,
            region: cfg.region,
            out: VecDeque::new(),
            directives: Vec::new(),
            speech: VecDeque::new(),
            ending: None,
            jobs: HashSet::new(),
            next_seq: 0,
            last_caller_seq: None,
            started: false,
            told_ended: false,
        }
    }

    /// Where the turn-taking is.
    pub fn state(&self) -> TurnState {
        self.core.state()
    }

    /// The next output, if any. Drain after every input.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Session::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    // ------------------------------------------------------------ inputs

    /// One carrier event: the single dispatch for every driver.
    pub fn handle_event(&mut self, ev: CallEvent<'_>, now: Instant) {
        match ev {
            CallEvent::Start(start) => {
                if self.core.state() != TurnState::Ended && !self.started {
                    self.started = true;
                    self.core.handle_start(now);
                    let info = call_info(&start, self.region);
                    self.out
                        .push_back(Output::Record(Record::Started(info.clone())));
                    self.tell(Event::Started(info), now);
                }
            }
            CallEvent::Media { pcm, .. } => self.core.handle_media(pcm, now),
            CallEvent::Mark(name) => self.core.handle_mark(&name, now),
            CallEvent::Dtmf(d) => self.core.handle_dtmf(d, now),
            CallEvent::Stop => self.core.handle_stop(now),
            CallEvent::Connected | CallEvent::Ignored => {}
        }
        self.process(now);
    }

    /// A transcript event.
    pub fn handle_stt(&mut self, ev: SttEvent, now: Instant) {
        self.core.handle_stt(ev, now);
        self.process(now);
    }

    /// Output of the reply pipeline for generation `gen`.
    pub fn handle_reply(&mut self, gen: u64, ev: ReplyEvent, now: Instant) {
        self.core.handle_reply(gen, ev, now);
        self.process(now);
    }

    /// A tool job finished (whatever happened to the reply that asked for it).
    pub fn handle_tool_outcome(&mut self, outcome: ToolOutcome, now: Instant) {
        self.out
            .push_back(Output::Record(Record::ToolFinished(outcome.clone())));
        if !self.told_ended {
            self.tell(Event::ToolFinished(outcome), now);
        }
        self.process(now);
    }

    /// The carrier's socket went away without `stop`.
    pub fn handle_disconnect(&mut self, now: Instant) {
        self.core.hang_up(HangupReason::Disconnected);
        self.process(now);
    }

    /// The server is shutting down and the drain grace is over.
    pub fn handle_drain(&mut self, now: Instant) {
        self.core.hang_up(HangupReason::Drained);
        self.process(now);
    }

    /// A deadline from [`Session::poll_timeout`] passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.core.handle_timeout(now);
        self.process(now);
    }

    // ------------------------------------------------------------ internals

    /// Report `event` to the conversation and carry out what it answers.
    fn tell(&mut self, event: Event, now: Instant) {
        let mut directives = std::mem::take(&mut self.directives);
        self.conversation.on_event(event, now, &mut directives);
        for d in directives.drain(..) {
            self.apply(d);
        }
        self.directives = directives;
    }

    fn apply(&mut self, d: Directive) {
        if self.told_ended {
            return;
        }
        match d {
            Directive::Say(text) => {
                if !text.trim().is_empty() {
                    self.speech.push_back(ReplyInput::Say(text));
                }
            }
            Directive::Generate(req) => self.speech.push_back(ReplyInput::Generate(req)),
            Directive::RunTool(job) => {
                if self.jobs.len() < MAX_JOBS && self.jobs.insert(job.id.clone()) {
                    self.out
                        .push_back(Output::Record(Record::ToolStarted(job.clone())));
                    self.out.push_back(Output::RunTool(job));
                } else {
                    tracing::debug!(job = %job.id, "tool job not run again");
                }
            }
            Directive::End(e) => {
                if self.ending.is_none() {
                    self.ending = Some(e);
                }
            }
            Directive::EndOfTurn(ms) => self.core.set_end_of_turn_ms(ms),
        }
    }

    fn seq(&mut self) -> u32 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    fn on_core_event(&mut self, ev: CoreEvent, now: Instant) {
        match ev {
            CoreEvent::Utterance {
                text,
                amends_previous,
            } => {
                let text = self.conversation.scrub(&text).unwrap_or(text);
                let seq = match (amends_previous, self.last_caller_seq) {
                    (true, Some(s)) => s,
                    _ => self.seq(),
                };
                self.last_caller_seq = Some(seq);
                // A model request queued before these words is stale: the
                // conversation answers them with one that has them.
                self.speech
                    .retain(|i| !matches!(i, ReplyInput::Generate(_)));
                self.out.push_back(Output::Record(Record::Turn {
                    seq,
                    speaker: Speaker::Caller,
                    text: text.clone(),
                    heard: None,
                    interrupted: false,
                }));
                self.tell(
                    Event::CallerSaid {
                        text,
                        amends_previous,
                    },
                    now,
                );
            }
            CoreEvent::BotTurnEnded(t) => {
                let seq = self.seq();
                self.out.push_back(Output::Record(Record::Turn {
                    seq,
                    speaker: Speaker::Receptionist,
                    text: t.bot.clone(),
                    heard: t.interrupted.then(|| t.heard.clone()),
                    interrupted: t.interrupted,
                }));
                self.tell(
                    Event::BotTurnEnded(BotTurn {
                        said: t.bot,
                        heard: t.heard,
                        heard_ms: t.heard_ms,
                        total_ms: t.total_ms,
                        interrupted: t.interrupted,
                    }),
                    now,
                );
            }
            CoreEvent::ReplyFailed => self.tell(Event::ReplyFailed, now),
            CoreEvent::ToolCall(call) => self.tell(Event::ModelToolCall(call), now),
            CoreEvent::Dtmf(d) => self.tell(Event::Dtmf(d), now),
            CoreEvent::Ended(reason) => {
                if !self.told_ended {
                    self.tell(Event::Ended, now);
                    self.told_ended = true;
                    self.speech.clear();
                    self.out.push_back(Output::Record(Record::Ended(reason)));
                }
            }
        }
    }

    /// Events into the conversation, queued speech into the core, the end
    /// when everything was said; then the core's actions out.
    fn process(&mut self, now: Instant) {
        loop {
            while let Some(ev) = self.core.poll_event() {
                self.on_core_event(ev, now);
            }
            while self.core.can_speak() {
                let Some(input) = self.speech.pop_front() else {
                    break;
                };
                self.core.start_reply(input, now);
            }
            if self.speech.is_empty() && !self.core.is_replying() {
                if let Some(ending) = self.ending.take() {
                    let reason = match ending {
                        Ending::Hangup => HangupReason::Completed,
                        Ending::HandOff { target, summary } => {
                            self.out
                                .push_back(Output::Record(Record::HandOff { target, summary }));
                            HangupReason::HandOff
                        }
                    };
                    self.core.hang_up(reason);
                }
            }
            if !self.core.has_events() {
                break;
            }
        }
        while let Some(a) = self.core.poll_action() {
            self.out.push_back(match a {
                Action::Send(c) => Output::Send(c),
                Action::EndOfUtterance => Output::EndOfUtterance,
                Action::PeekWords => Output::PeekWords,
                Action::ForgetAudio => Output::ForgetAudio,
                Action::StartReply { gen, input } => Output::StartReply { gen, input },
                Action::CancelReply { gen } => Output::CancelReply { gen },
                Action::Observe(o) => Output::Observe(o),
                Action::Hangup(r) => Output::Hangup(r),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::carrier::twilio::TwilioCodec;
    use crate::carrier::CarrierCodec;
    use crate::config::{CallConfig, VadConfig};

    /// Says a hand-off line, asks for the same job twice, then hands off.
    struct HandsOff;

    impl Conversation for HandsOff {
        fn on_event(&mut self, event: Event, _now: Instant, out: &mut Vec<Directive>) {
            if let Event::Started(_) = event {
                let job = ToolJob {
                    id: "j1".into(),
                    name: "take_callback".into(),
                    args: serde_json::json!({}),
                };
                out.push(Directive::RunTool(job.clone()));
                out.push(Directive::RunTool(job));
                out.push(Directive::Say("One moment while I connect you.".into()));
                out.push(Directive::End(Ending::HandOff {
                    target: "team".into(),
                    summary: "Jane, new demo enquiry".into(),
                }));
            }
        }
    }

    fn session() -> (Session, Instant) {
        let cfg = SessionConfig {
            core: CoreConfig::new(&VadConfig::default(), &CallConfig::default()),
            region: Some(phonenumber::country::Id::GB),
        };
        let mut s = Session::new(cfg, Box::new(HandsOff));
        let mut codec = TwilioCodec::new(65536);
        let t0 = Instant::now();
        let start = r#"{"event":"start","streamSid":"MZ1","start":{"streamSid":"MZ1","callSid":"CA1","accountSid":"AC1","customParameters":{"From":"07700 900123"}}}"#;
        match codec.parse_text(start) {
            Ok(ev) => s.handle_event(ev, t0),
            Err(e) => panic!("{e}"),
        }
        (s, t0)
    }

    fn drain(s: &mut Session) -> Vec<Output> {
        std::iter::from_fn(|| s.poll_output()).collect()
    }

    #[test]
    fn a_hand_off_waits_for_its_line_to_play_and_a_job_id_runs_once() {
        let (mut s, t0) = session();
        let out = drain(&mut s);
        let Some(Output::Record(Record::Started(info))) = out.first() else {
            panic!("{out:?}")
        };
        assert_eq!(
            info.from.as_ref().map(|p| p.expose().as_str()),
            Some("+447700900123"),
            "the caller's number, normalised"
        );
        let jobs = out
            .iter()
            .filter(|o| matches!(o, Output::RunTool(_)))
            .count();
        assert_eq!(jobs, 1, "the same job id is handed to the runner once");
        let gen = out
            .iter()
            .find_map(|o| match o {
                Output::StartReply { gen, input } => {
                    assert_eq!(
                        input,
                        &ReplyInput::Say("One moment while I connect you.".into())
                    );
                    Some(*gen)
                }
                _ => None,
            })
            .expect("the hand-off line is spoken");
        assert!(
            !out.iter().any(|o| matches!(o, Output::Hangup(_))),
            "no hang-up before the line has played"
        );
        // The line plays out: audio, done, its marks echoed.
        let t = t0 + Duration::from_millis(100);
        s.handle_reply(gen, ReplyEvent::Text("One moment.".into()), t);
        s.handle_reply(gen, ReplyEvent::Audio(vec![0; 1600]), t);
        s.handle_reply(gen, ReplyEvent::Done, t);
        let marks: Vec<String> = drain(&mut s)
            .into_iter()
            .filter_map(|o| match o {
                Output::Send(CarrierCommand::Mark(m)) => Some(m),
                _ => None,
            })
            .collect();
        assert!(!marks.is_empty());
        for m in marks {
            s.handle_event(CallEvent::Mark(m), t + Duration::from_millis(300));
        }
        let out = drain(&mut s);
        let hand_off = out.iter().position(
            |o| matches!(o, Output::Record(Record::HandOff { target, .. }) if target == "team"),
        );
        let hangup = out
            .iter()
            .position(|o| *o == Output::Hangup(HangupReason::HandOff));
        assert!(
            hand_off.is_some() && hangup.is_some() && hand_off < hangup,
            "{out:?}"
        );
        assert!(out.contains(&Output::Record(Record::Ended(HangupReason::HandOff))));
        assert_eq!(s.state(), TurnState::Ended);
    }

    /// Asks the model when its job's result is in (`stale`) and when the
    /// caller has spoken (with their words).
    struct FollowsUp;

    fn ask(text: &str) -> Directive {
        Directive::Generate(crate::providers::LlmRequest {
            messages: vec![crate::providers::ChatMessage::text(
                crate::providers::Role::User,
                text,
            )],
            tools: vec![],
            max_tokens: None,
        })
    }

    impl Conversation for FollowsUp {
        fn on_event(&mut self, event: Event, _now: Instant, out: &mut Vec<Directive>) {
            match event {
                Event::Started(_) => out.push(Directive::RunTool(ToolJob {
                    id: "j1".into(),
                    name: "find_slots".into(),
                    args: serde_json::json!({}),
                })),
                Event::ToolFinished(_) => out.push(ask("stale")),
                Event::CallerSaid { text, .. } => out.push(ask(&text)),
                _ => {}
            }
        }
    }

    #[test]
    fn a_model_request_queued_while_the_caller_talks_gives_way_to_their_words() {
        let cfg = SessionConfig {
            core: CoreConfig::new(&VadConfig::default(), &CallConfig::default()),
            region: None,
        };
        let mut s = Session::new(cfg, Box::new(FollowsUp));
        let mut codec = TwilioCodec::new(65536);
        let t0 = Instant::now();
        let start = r#"{"event":"start","streamSid":"MZ1","start":{"streamSid":"MZ1","callSid":"CA1","accountSid":"AC1","customParameters":{}}}"#;
        match codec.parse_text(start) {
            Ok(ev) => s.handle_event(ev, t0),
            Err(e) => panic!("{e}"),
        }
        let mut out = drain(&mut s);
        let job = out
            .iter()
            .find_map(|o| match o {
                Output::RunTool(j) => Some(j.clone()),
                _ => None,
            })
            .expect("the job");
        // The caller speaks, then a second of silence; the job's result
        // lands while they are talking.
        let mut pcm = crate::call::sim::fixture("pricing.wav");
        let spoken = pcm.len();
        pcm.extend(std::iter::repeat_n(0, 8000));
        let mut t = t0;
        let mut told = false;
        for (k, frame) in pcm.chunks(160).enumerate() {
            t += Duration::from_millis(20);
            s.handle_event(
                CallEvent::Media {
                    timestamp_ms: None,
                    pcm: frame,
                },
                t,
            );
            if !told && k * 160 > spoken / 2 {
                told = true;
                s.handle_tool_outcome(
                    ToolOutcome {
                        id: job.id.clone(),
                        name: job.name.clone(),
                        ok: true,
                        result: serde_json::json!({"slots": []}),
                    },
                    t,
                );
            }
            let now = drain(&mut s);
            if now.contains(&Output::EndOfUtterance) {
                s.handle_stt(
                    SttEvent::Final {
                        text: "how much does it cost".into(),
                        end_of_utterance: true,
                    },
                    t,
                );
                out.extend(drain(&mut s));
                break;
            }
            out.extend(now);
        }
        let replies: Vec<&ReplyInput> = out
            .iter()
            .filter_map(|o| match o {
                Output::StartReply { input, .. } => Some(input),
                _ => None,
            })
            .collect();
        let ReplyInput::Generate(req) = replies.first().expect("a reply") else {
            panic!("{replies:?}")
        };
        assert_eq!(
            req.messages[0].content.as_deref(),
            Some("how much does it cost"),
            "the reply answers the caller's words, not the request made before them"
        );
        assert_eq!(replies.len(), 1, "{replies:?}");
    }
}
