//! A deterministic call simulator in virtual time (tests only).
//!
//! It steps a fake Twilio carrier (real Twilio JSON through the real
//! [`TwilioCodec`], the shared carrier [`Playout`] emulator that echoes marks
//! when the audio before them has played and drops audio on `clear`) and
//! fake providers with fixed latencies against one [`Session`] (the real
//! call core and the scripted conversation, fed through the same
//! [`Session::handle_event`] dispatch the driver uses), and records
//! everything that crossed the wire. No sockets, no tasks, no sleeping.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::time::{Duration, Instant};

use base64::Engine as _;

use std::sync::{Arc, Mutex};

use super::conversation::{BotTurn, Conversation, Directive, Event, ScriptedConversation};
use super::core::{CoreConfig, Observation, ReplyEvent, ReplyInput, TurnState};
use super::session::{Output, Record, Session, SessionConfig};
use crate::audio::{g711, wav, FRAME_SAMPLES};
use crate::carrier::playout::{Playout, PlayoutEvent};
use crate::carrier::twilio::TwilioCodec;
use crate::carrier::{CallEvent, CarrierCodec, CarrierCommand};
use crate::config::{CallConfig, VadConfig};
use crate::providers::SttEvent;

/// Load a fixture as 8 kHz PCM.
pub fn fixture(name: &str) -> Vec<i16> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    wav::load_8k(&path).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// What the caller's side of the line carries, built up in order.
#[derive(Default)]
pub struct CallerAudio {
    pub pcm: Vec<i16>,
}

impl CallerAudio {
    /// Line noise for `ms`.
    pub fn noise(mut self, ms: u64) -> Self {
        let noise = fixture("line_noise.wav");
        let n = ms as usize * 8;
        self.pcm.extend(noise.iter().cycle().take(n));
        self
    }
    /// A fixture utterance; returns the media time (ms) it starts at.
    pub fn say(mut self, name: &str) -> Self {
        self.pcm.extend(fixture(name));
        let pad = (FRAME_SAMPLES - self.pcm.len() % FRAME_SAMPLES) % FRAME_SAMPLES;
        self.pcm.extend(std::iter::repeat_n(0, pad));
        self
    }
    /// Media time now (where the next sound would start).
    pub fn at_ms(&self) -> u64 {
        self.pcm.len() as u64 / 8
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    /// Caller frame k arrives at the server (as Twilio JSON text).
    Frame(usize),
    /// Raw text from the carrier (for malformed-input tests).
    Text(String),
    Stt(SttEvent),
    Reply(u64, ReplyEvent),
    /// A server message reaches the carrier.
    Deliver(CarrierCommand),
    /// A mark echo reaches the server.
    MarkBack(String),
    Stop,
}

/// Fixed latencies of the fake world.
#[derive(Debug, Clone)]
pub struct World {
    pub stt_ms: u64,
    pub llm_ms: u64,
    pub tts_ms: u64,
    /// One-way network delay, ms.
    pub link_ms: u64,
    /// Extra delay added to every `jitter_every`-th server→carrier message.
    pub jitter_ms: u64,
    pub jitter_every: usize,
    /// Reply audio (default: the 2 s bot reply fixture).
    pub reply_audio: Vec<i16>,
    pub transcript: String,
    /// `Some`: the STT sends no interim words (like the offline Whisper)
    /// and answers each peek with these words, `peek_ms` later.
    pub peek_words: Option<String>,
    pub peek_ms: u64,
}

impl Default for World {
    fn default() -> Self {
        World {
            stt_ms: 100,
            llm_ms: 200,
            tts_ms: 150,
            link_ms: 10,
            jitter_ms: 0,
            jitter_every: 0,
            reply_audio: fixture("bot_reply.wav"),
            transcript: "I'd like to book a demo".into(),
            peek_words: None,
            peek_ms: 100,
        }
    }
}

/// A timestamped record of the call.
#[derive(Debug, Default)]
pub struct Log {
    /// Messages the server sent, at send time (ms).
    pub sent: Vec<(u64, CarrierCommand)>,
    /// Observations.
    pub obs: Vec<(u64, Observation)>,
    /// State after each step, when it changed.
    pub states: Vec<(u64, TurnState)>,
    /// Every output but sends, observations and records.
    pub actions: Vec<(u64, Output)>,
    /// What the session recorded.
    pub records: Vec<(u64, Record)>,
    /// Carrier side: ms of unplayed audio queued at the carrier after each media arrival.
    pub carrier_backlog_ms: Vec<u64>,
    /// Marks the carrier echoed, with echo time.
    pub echoed: Vec<(u64, String)>,
}

/// The system prompt of the simulated conversation.
pub const SYSTEM: &str = "You are the receptionist.";

/// The scripted conversation, remembering every event it was told.
struct Probe {
    inner: ScriptedConversation,
    seen: Arc<Mutex<Vec<Event>>>,
}

impl Conversation for Probe {
    fn on_event(&mut self, event: Event, now: Instant, out: &mut Vec<Directive>) {
        if let Ok(mut s) = self.seen.lock() {
            s.push(event.clone());
        }
        self.inner.on_event(event, now, out);
    }
}

pub struct Sim {
    pub session: Session,
    pub world: World,
    pub log: Log,
    codec: TwilioCodec,
    carrier_codec_out: TwilioCodec,
    caller: Vec<i16>,
    heap: BinaryHeap<Reverse<(u64, u64, usize)>>,
    events: Vec<Option<Ev>>,
    seq: u64,
    now: u64,
    t0: Instant,
    cancelled: HashSet<u64>,
    playout: Playout,
    sends: usize,
    seen: Arc<Mutex<Vec<Event>>>,
}

pub const STREAM: &str = "MZsim0001";

impl Sim {
    pub fn new(vad: VadConfig, call: CallConfig, world: World, caller: CallerAudio) -> Sim {
        let codec = TwilioCodec::new(65536);
        let mut carrier_codec_out = TwilioCodec::new(65536);
        let start = format!(
            r#"{{"event":"start","streamSid":"{STREAM}","start":{{"streamSid":"{STREAM}","callSid":"CAsim","accountSid":"AC1","customParameters":{{}}}}}}"#
        );
        // The carrier side's codec learns the stream id; the server side's
        // sees the `start` through the session's dispatch below.
        assert!(matches!(
            carrier_codec_out.parse_text(&start),
            Ok(CallEvent::Start(_))
        ));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let session = Session::new(
            SessionConfig {
                core: CoreConfig {
                    stt_interims: world.peek_words.is_none(),
                    ..CoreConfig::new(&vad, &call)
                },
                region: None,
            },
            Box::new(Probe {
                inner: ScriptedConversation::new(call.greeting.clone(), SYSTEM),
                seen: seen.clone(),
            }),
        );
        let mut sim = Sim {
            session,
            world,
            log: Log::default(),
            codec,
            carrier_codec_out,
            caller: caller.pcm,
            heap: BinaryHeap::new(),
            events: Vec::new(),
            seq: 0,
            now: 0,
            t0: Instant::now(),
            cancelled: HashSet::new(),
            playout: Playout::new(Duration::ZERO, Duration::from_millis(500)),
            sends: 0,
            seen,
        };
        let frames = sim.caller.len() / FRAME_SAMPLES;
        for k in 0..frames {
            let at = (k as u64 + 1) * 20 + sim.world.link_ms;
            sim.schedule(at, Ev::Frame(k));
        }
        let t0 = sim.t0;
        sim.feed_text(&start, t0);
        sim.drain();
        sim
    }

    fn instant(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn carrier_instant(&self, ms: u64) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.instant(ms))
    }

    fn ms_of(&self, t: tokio::time::Instant) -> u64 {
        t.into_std().saturating_duration_since(self.t0).as_millis() as u64
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.events.push(Some(ev));
        self.heap
            .push(Reverse((at, self.seq, self.events.len() - 1)));
    }

    /// Inject raw carrier text at `at` ms.
    pub fn inject_text(&mut self, at: u64, text: &str) {
        self.schedule(at, Ev::Text(text.to_string()));
    }

    /// The carrier sends `stop` at `at` ms.
    pub fn stop_at(&mut self, at: u64) {
        self.schedule(at, Ev::Stop);
    }

    /// Run until `until` ms of virtual time.
    pub fn run_until(&mut self, until: u64) {
        loop {
            let next_ev = self.heap.peek().map(|Reverse((t, _, _))| *t);
            let next_mark = self.playout.poll_timeout().map(|t| self.ms_of(t));
            let next_timeout = self
                .session
                .poll_timeout()
                .map(|i| i.saturating_duration_since(self.t0).as_millis() as u64);
            let Some(t) = [next_ev, next_mark, next_timeout]
                .into_iter()
                .flatten()
                .min()
            else {
                break;
            };
            if t > until {
                break;
            }
            self.now = self.now.max(t);
            if next_mark == Some(t) {
                // The carrier played up to a mark: echo it.
                self.carrier_events(t);
                continue;
            }
            if next_ev == Some(t) {
                let Some(Reverse((_, _, idx))) = self.heap.pop() else {
                    break;
                };
                let ev = self.events[idx].take();
                if let Some(ev) = ev {
                    self.dispatch(ev);
                }
            } else {
                let now = self.instant(t);
                self.session.handle_timeout(now);
            }
            self.drain();
        }
        self.now = until;
    }

    fn dispatch(&mut self, ev: Ev) {
        let now = self.instant(self.now);
        match ev {
            Ev::Frame(k) => {
                let pcm = &self.caller[k * FRAME_SAMPLES..(k + 1) * FRAME_SAMPLES];
                let mut ulaw = Vec::with_capacity(FRAME_SAMPLES);
                g711::encode_ulaw_into(pcm, &mut ulaw);
                let b64 = base64::engine::general_purpose::STANDARD.encode(&ulaw);
                let text = format!(
                    r#"{{"event":"media","sequenceNumber":"{}","streamSid":"{STREAM}","media":{{"track":"inbound","chunk":"{}","timestamp":"{}","payload":"{b64}"}}}}"#,
                    k + 3,
                    k + 1,
                    k * 20
                );
                self.feed_text(&text, now);
            }
            Ev::Text(text) => self.feed_text(&text, now),
            Ev::Stt(e) => self.session.handle_stt(e, now),
            Ev::Reply(gen, e) => {
                if !self.cancelled.contains(&gen) {
                    self.session.handle_reply(gen, e, now);
                }
            }
            Ev::MarkBack(name) => {
                let text = format!(
                    r#"{{"event":"mark","streamSid":"{STREAM}","mark":{{"name":"{name}"}}}}"#
                );
                self.feed_text(&text, now);
            }
            Ev::Stop => self.feed_text(r#"{"event":"stop","streamSid":"MZsim0001"}"#, now),
            Ev::Deliver(o) => self.carrier_receive(o),
        }
    }

    /// Through the real codec and the session's one dispatch, as the driver does.
    fn feed_text(&mut self, text: &str, now: Instant) {
        // A rejection is counted by the driver in production; the call goes on.
        if let Ok(ev) = self.codec.parse_text(text) {
            self.session.handle_event(ev, now);
        }
    }

    /// The fake carrier receives a server message (already through the wire format).
    fn carrier_receive(&mut self, o: CarrierCommand) {
        let t = self.carrier_instant(self.now);
        match o {
            CarrierCommand::Media(pcm) => {
                self.playout.push_media(t, pcm.len());
                self.log
                    .carrier_backlog_ms
                    .push(self.playout.backlog(t).as_millis() as u64);
            }
            CarrierCommand::Mark(name) => self.playout.push_mark(t, name),
            CarrierCommand::Clear => {
                self.playout.clear(t);
            }
        }
        self.carrier_events(self.now);
    }

    /// Echo every mark the carrier has played by `at`.
    fn carrier_events(&mut self, at: u64) {
        let t = self.carrier_instant(at);
        while let Some(ev) = self.playout.poll_event(t) {
            if let PlayoutEvent::MarkPlayed(name) = ev {
                self.log.echoed.push((at, name.clone()));
                self.schedule(at + self.world.link_ms, Ev::MarkBack(name));
            }
        }
    }

    fn drain(&mut self) {
        let state = self.session.state();
        if self.log.states.last().map(|(_, s)| *s) != Some(state) {
            self.log.states.push((self.now, state));
        }
        while let Some(a) = self.session.poll_output() {
            let now = self.now;
            match a {
                Output::Send(o) => {
                    // Through the real encoder and back, as the carrier would read it.
                    let mut text = String::new();
                    self.carrier_codec_out.encode(&o, &mut text);
                    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                    assert_eq!(
                        v["streamSid"], STREAM,
                        "every outbound message names the stream"
                    );
                    self.log.sent.push((now, o.clone()));
                    self.sends += 1;
                    let jitter = if self.world.jitter_every > 0
                        && self.sends.is_multiple_of(self.world.jitter_every)
                    {
                        self.world.jitter_ms
                    } else {
                        0
                    };
                    self.schedule(now + self.world.link_ms + jitter, Ev::Deliver(o));
                }
                Output::EndOfUtterance => {
                    let text = self.world.transcript.clone();
                    self.schedule(
                        now + self.world.stt_ms,
                        Ev::Stt(SttEvent::Final {
                            text,
                            end_of_utterance: true,
                        }),
                    );
                    self.log.actions.push((now, Output::EndOfUtterance));
                }
                Output::PeekWords => {
                    let text = self.world.peek_words.clone().unwrap_or_default();
                    self.schedule(now + self.world.peek_ms, Ev::Stt(SttEvent::Interim(text)));
                    self.log.actions.push((now, Output::PeekWords));
                }
                Output::StartReply { gen, input } => {
                    let (text, llm) = match &input {
                        ReplyInput::Say(t) => (t.clone(), 0),
                        ReplyInput::Generate(_) => {
                            ("Sure, I can help.".to_string(), self.world.llm_ms)
                        }
                    };
                    let at = now.saturating_add(llm).saturating_add(self.world.tts_ms);
                    self.schedule(
                        now.saturating_add(llm),
                        Ev::Reply(gen, ReplyEvent::Text(text)),
                    );
                    for piece in self.world.reply_audio.clone().chunks(800) {
                        self.schedule(at, Ev::Reply(gen, ReplyEvent::Audio(piece.to_vec())));
                    }
                    self.schedule(at, Ev::Reply(gen, ReplyEvent::Done));
                    self.log
                        .actions
                        .push((now, Output::StartReply { gen, input }));
                }
                Output::CancelReply { gen } => {
                    self.cancelled.insert(gen);
                    self.log.actions.push((now, Output::CancelReply { gen }));
                }
                Output::Observe(o) => self.log.obs.push((now, o)),
                Output::Record(r) => self.log.records.push((now, r)),
                other => self.log.actions.push((now, other)),
            }
        }
        let state = self.session.state();
        if self.log.states.last().map(|(_, s)| *s) != Some(state) {
            self.log.states.push((self.now, state));
        }
    }

    // ------------------------------------------------------------ queries

    /// Times (ms) at which `clear` was sent.
    pub fn clears(&self) -> Vec<u64> {
        self.log
            .sent
            .iter()
            .filter(|(_, o)| *o == CarrierCommand::Clear)
            .map(|(t, _)| *t)
            .collect()
    }

    /// Media messages sent in [from, to).
    pub fn media_between(&self, from: u64, to: u64) -> usize {
        self.log
            .sent
            .iter()
            .filter(|(t, o)| *t >= from && *t < to && matches!(o, CarrierCommand::Media(_)))
            .count()
    }

    /// Total ms of media sent.
    pub fn media_ms(&self) -> u64 {
        self.log
            .sent
            .iter()
            .map(|(_, o)| match o {
                CarrierCommand::Media(p) => p.len() as u64 / 8,
                _ => 0,
            })
            .sum()
    }

    pub fn observed(&self, f: impl Fn(&Observation) -> bool) -> Vec<u64> {
        self.log
            .obs
            .iter()
            .filter(|(_, o)| f(o))
            .map(|(t, _)| *t)
            .collect()
    }

    /// Every event the conversation was told, in order.
    pub fn events(&self) -> Vec<Event> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Bot turns that reached the caller, as the conversation heard of them.
    pub fn bot_turns(&self) -> Vec<BotTurn> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::BotTurnEnded(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    /// Caller turns as recorded (an amended turn replaces the one it amends).
    pub fn caller_turns(&self) -> Vec<String> {
        let mut turns: Vec<(u32, String)> = Vec::new();
        for (_, r) in &self.log.records {
            if let Record::Turn {
                seq,
                speaker: super::session::Speaker::Caller,
                text,
                ..
            } = r
            {
                match turns.iter_mut().find(|(s, _)| s == seq) {
                    Some(t) => t.1 = text.clone(),
                    None => turns.push((*seq, text.clone())),
                }
            }
        }
        turns.into_iter().map(|(_, t)| t).collect()
    }

    /// The LLM requests of the replies, in order.
    pub fn requests(&self) -> Vec<crate::providers::LlmRequest> {
        self.log
            .actions
            .iter()
            .filter_map(|(_, a)| match a {
                Output::StartReply {
                    input: ReplyInput::Generate(r),
                    ..
                } => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn replies_started(&self) -> Vec<(u64, u64)> {
        self.log
            .actions
            .iter()
            .filter_map(|(t, a)| match a {
                Output::StartReply { gen, .. } => Some((*t, *gen)),
                _ => None,
            })
            .collect()
    }
}
