//! The real driver in paused tokio time, over an in-memory WebSocket: the
//! tool runner under barge-in, discarded generations, and an STT that is
//! slow to connect.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::ws::Message;
use base64::Engine as _;
use futures_util::{Sink, Stream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::conversation::{
    ChatLog, Conversation, ConversationFactory, Directive, Event, ScriptedConversations,
};
use super::driver::{run_call, CallServices};
use super::tools::{ToolExecutor, ToolJob, ToolOutcome};
use crate::audio::{g711, wav, FRAME_SAMPLES};
use crate::carrier::playout::{Playout, PlayoutEvent};
use crate::carrier::twilio::TwilioCodec;
use crate::clock::SystemClock;
use crate::config::{Config, ScriptedSttConfig};
use crate::metrics::Metrics;
use crate::providers::scripted::{ScriptedLlm, ScriptedStt, ScriptedTts};
use crate::providers::{
    FinishReason, Llm, LlmEvent, LlmRequest, ProviderError, Providers, Stt, SttParams, SttSession,
    ToolCall, ToolSpec,
};

/// One end of an in-memory WebSocket.
struct Pipe {
    rx: mpsc::UnboundedReceiver<Message>,
    tx: mpsc::UnboundedSender<Message>,
}

impl Stream for Pipe {
    type Item = Result<Message, axum::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|m| m.map(Ok))
    }
}

impl Sink<Message> for Pipe {
    type Error = axum::Error;
    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
    fn start_send(self: Pin<&mut Self>, m: Message) -> Result<(), Self::Error> {
        self.tx.send(m).map_err(|_| axum::Error::new("peer gone"))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
}

const SID: &str = "MZdrv0001";

/// The carrier's side of the call: send Twilio JSON, play what comes back
/// through the shared carrier playout emulator, echo marks when played.
struct Carrier {
    tx: mpsc::UnboundedSender<Message>,
    rx: mpsc::UnboundedReceiver<Message>,
    playout: Playout,
    /// (arrival, message) of everything the server sent.
    got: Vec<(tokio::time::Instant, serde_json::Value)>,
}

impl Carrier {
    fn send(&self, text: String) {
        let _ = self.tx.send(Message::Text(text.into()));
    }
    fn start(&self) {
        self.send(format!(
            r#"{{"event":"start","streamSid":"{SID}","start":{{"streamSid":"{SID}","callSid":"CAdrv","accountSid":"AC1","customParameters":{{"From":"+447700900123"}}}}}}"#
        ));
    }
    fn frame(&self, k: usize, pcm: &[i16]) {
        let mut ulaw = Vec::with_capacity(FRAME_SAMPLES);
        g711::encode_ulaw_into(pcm, &mut ulaw);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&ulaw);
        self.send(format!(
            r#"{{"event":"media","streamSid":"{SID}","media":{{"track":"inbound","chunk":"{k}","timestamp":"{}","payload":"{b64}"}}}}"#,
            k * 20
        ));
    }
    /// Read what arrived so far into the playout; echo the marks it played.
    fn pump(&mut self) {
        let now = tokio::time::Instant::now();
        while let Ok(m) = self.rx.try_recv() {
            if let Message::Text(t) = m {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                match v["event"].as_str() {
                    Some("media") => {
                        let b64 = v["media"]["payload"].as_str().unwrap_or_default();
                        let n = base64::engine::general_purpose::STANDARD
                            .decode(b64)
                            .map(|b| b.len())
                            .unwrap_or(0);
                        self.playout.push_media(now, n);
                    }
                    Some("mark") => {
                        let name = v["mark"]["name"].as_str().unwrap_or_default();
                        self.playout.push_mark(now, name.to_string());
                    }
                    Some("clear") => {
                        self.playout.clear(now);
                    }
                    _ => {}
                }
                self.got.push((now, v));
            }
        }
        while let Some(ev) = self.playout.poll_event(now) {
            if let PlayoutEvent::MarkPlayed(name) = ev {
                self.send(format!(
                    r#"{{"event":"mark","streamSid":"{SID}","mark":{{"name":"{name}"}}}}"#
                ));
            }
        }
    }
    /// Stream `pcm` in real (paused) time, 20 ms a frame.
    async fn speak(&mut self, pcm: &[i16]) {
        for (k, f) in pcm.chunks_exact(FRAME_SAMPLES).enumerate() {
            self.frame(k, f);
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.pump();
        }
    }
    async fn silence(&mut self, ms: u64) {
        let zeros = vec![0i16; ms as usize * 8];
        self.speak(&zeros).await;
    }
    fn events(&self, name: &str) -> Vec<tokio::time::Instant> {
        self.got
            .iter()
            .filter(|(_, v)| v["event"] == name)
            .map(|(t, _)| *t)
            .collect()
    }
}

fn fixture(name: &str) -> Vec<i16> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    wav::load_8k(&path).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// An LLM that asks for `confirm_booking` and then talks (or, with
/// `tool_after`, talks first and asks later).
struct BookingLlm {
    tool_after: Option<Duration>,
}

#[async_trait]
impl Llm for BookingLlm {
    fn name(&self) -> &'static str {
        "booking-llm"
    }
    async fn stream(
        &self,
        req: LlmRequest,
    ) -> Result<mpsc::Receiver<Result<LlmEvent, ProviderError>>, ProviderError> {
        let (tx, rx) = mpsc::channel(8);
        let late = self.tool_after;
        // Only a request to book asks for the tool.
        let booking = req
            .messages
            .last()
            .and_then(|m| m.content.as_deref())
            .is_some_and(|c| c.contains("Friday"));
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let call = LlmEvent::ToolCall(ToolCall {
                id: "call_1".into(),
                name: "confirm_booking".into(),
                arguments: r#"{"hold_id":"h1"}"#.into(),
            });
            if late.is_none() && booking {
                let _ = tx.send(Ok(call.clone())).await;
            }
            let _ = tx
                .send(Ok(LlmEvent::Text("Let me book that for you. ".into())))
                .await;
            if let (Some(d), true) = (late, booking) {
                tokio::time::sleep(d).await;
                let _ = tx.send(Ok(call)).await;
            }
            let _ = tx.send(Ok(LlmEvent::Done(FinishReason::Stop))).await;
        });
        Ok(rx)
    }
}

/// A booking that takes 6 s and counts how often it really ran.
struct SlowBooking {
    runs: Arc<AtomicUsize>,
}

#[async_trait]
impl ToolExecutor for SlowBooking {
    async fn execute(&self, _call_sid: &str, job: &ToolJob) -> ToolOutcome {
        tokio::time::sleep(Duration::from_secs(6)).await;
        self.runs.fetch_add(1, SeqCst);
        ToolOutcome {
            id: job.id.clone(),
            name: job.name.clone(),
            ok: true,
            result: serde_json::json!({"booking": "b1"}),
        }
    }
}

/// Offers `confirm_booking`; runs what the model asks; says the result.
struct Booker {
    seen: Arc<Mutex<Vec<Event>>>,
    log: ChatLog,
    calls: Vec<ToolCall>,
}

impl Conversation for Booker {
    fn on_event(&mut self, event: Event, _now: Instant, out: &mut Vec<Directive>) {
        if let Ok(mut s) = self.seen.lock() {
            s.push(event.clone());
        }
        match event {
            Event::CallerSaid {
                text,
                amends_previous,
            } => {
                self.log.caller(&text, amends_previous);
                out.push(Directive::Generate(LlmRequest {
                    messages: self.log.messages(),
                    tools: vec![ToolSpec {
                        name: "confirm_booking".into(),
                        description: "Book the held slot".into(),
                        parameters: serde_json::json!({"type": "object"}),
                    }],
                    max_tokens: None,
                }))
            }
            Event::ModelToolCall(c) => {
                out.push(Directive::RunTool(ToolJob {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    args: serde_json::from_str(&c.arguments).unwrap_or_default(),
                }));
                self.calls.push(c);
            }
            Event::ToolFinished(o) => {
                if let Some(c) = self.calls.iter().find(|c| c.id == o.id) {
                    self.log.tool_exchange(c, &o);
                }
                if o.ok {
                    out.push(Directive::Say("You're booked for Friday.".into()));
                }
            }
            _ => {}
        }
    }
}

struct BookerFactory(Arc<Mutex<Vec<Event>>>);

impl ConversationFactory for BookerFactory {
    fn start(&self) -> Box<dyn Conversation> {
        Box::new(Booker {
            seen: self.0.clone(),
            log: ChatLog::new("sys", 32),
            calls: Vec::new(),
        })
    }
}

/// An STT that takes `delay` to connect.
struct SlowStt {
    delay: Duration,
    inner: ScriptedStt,
}

#[async_trait]
impl Stt for SlowStt {
    fn name(&self) -> &'static str {
        "slow"
    }
    fn wants_audio(&self) -> bool {
        true
    }
    async fn open(&self, p: SttParams) -> Result<SttSession, ProviderError> {
        tokio::time::sleep(self.delay).await;
        self.inner.open(p).await
    }
}

fn config() -> Config {
    let mut c = Config::default();
    c.vad.end_ms = 400;
    c.vad.barge_in_min_ms = 200;
    c
}

fn services(
    providers: Providers,
    conversations: Arc<dyn ConversationFactory>,
    tools: Arc<dyn ToolExecutor>,
) -> CallServices {
    CallServices {
        config: Arc::new(config()),
        providers,
        metrics: Arc::new(Metrics::default()),
        conversations,
        tools,
        records: None,
        clock: Arc::new(SystemClock),
        region: None,
        tracker: TaskTracker::new(),
        stream_key: None,
        tap: None,
    }
}

/// The first turn asks to book; later turns do not.
fn stt(transcript: &str) -> ScriptedStt {
    ScriptedStt::new(ScriptedSttConfig {
        final_after_ms: 100,
        transcripts: vec![transcript.into(), "oh and one more thing".into()],
    })
}

fn tts(first_audio_ms: u64) -> Arc<ScriptedTts> {
    Arc::new(ScriptedTts::new(
        Duration::from_millis(first_audio_ms),
        fixture("bot_reply.wav").into(),
    ))
}

/// Start the driver on a pipe; returns the carrier side and the call task.
fn connect(services: CallServices) -> (Carrier, tokio::task::JoinHandle<()>) {
    let (to_server, from_carrier) = mpsc::unbounded_channel();
    let (to_carrier, from_server) = mpsc::unbounded_channel();
    let pipe = Pipe {
        rx: from_carrier,
        tx: to_carrier,
    };
    let task = tokio::spawn(run_call(
        pipe,
        TwilioCodec::new(65536),
        services,
        Arc::new(Semaphore::new(10)),
        CancellationToken::new(),
    ));
    (
        Carrier {
            tx: to_server,
            rx: from_server,
            playout: Playout::new(Duration::from_millis(40), Duration::from_millis(500)),
            got: Vec::new(),
        },
        task,
    )
}

#[tokio::test(start_paused = true)]
async fn barge_in_during_a_booking_does_not_abort_it_and_its_result_reaches_the_conversation() {
    let runs = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let providers = Providers {
        stt: Arc::new(stt("book me in for Friday")),
        llm: Arc::new(BookingLlm { tool_after: None }),
        tts: tts(150),
    };
    let svc = services(
        providers,
        Arc::new(BookerFactory(seen.clone())),
        Arc::new(SlowBooking { runs: runs.clone() }),
    );
    let (mut carrier, task) = connect(svc);
    carrier.start();
    carrier.silence(300).await;
    carrier.speak(&fixture("demo_request.wav")).await;
    // End of turn (400 ms) + STT (100) + LLM (100) + TTS (150): the reply
    // is playing by now, and the booking has been running for a while.
    carrier.silence(1000).await;
    assert!(!carrier.events("media").is_empty(), "the reply is playing");
    let before_cut = tokio::time::Instant::now();
    carrier.speak(&fixture("existing_customer.wav")).await;
    let clears = carrier.events("clear");
    assert_eq!(clears.len(), 1, "the caller cut the reply off");
    assert_eq!(runs.load(SeqCst), 0, "the booking is still running");
    assert!(clears[0] >= before_cut);
    carrier.silence(8000).await;
    assert_eq!(runs.load(SeqCst), 1, "the booking ran exactly once");
    let finished: Vec<ToolOutcome> = seen
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| match e {
            Event::ToolFinished(o) => Some(o),
            _ => None,
        })
        .collect();
    assert_eq!(
        finished.len(),
        1,
        "its result reached the conversation once"
    );
    assert!(finished[0].ok);
    carrier.send(format!(r#"{{"event":"stop","streamSid":"{SID}"}}"#));
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}

#[tokio::test(start_paused = true)]
async fn a_tool_call_from_a_cancelled_generation_never_runs() {
    let runs = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let providers = Providers {
        stt: Arc::new(stt("book me in for Friday")),
        // The model talks first and asks for the tool 1.5 s later: by then
        // the caller has cut it off and the generation is gone.
        llm: Arc::new(BookingLlm {
            tool_after: Some(Duration::from_millis(1500)),
        }),
        tts: tts(150),
    };
    let svc = services(
        providers,
        Arc::new(BookerFactory(seen.clone())),
        Arc::new(SlowBooking { runs: runs.clone() }),
    );
    let (mut carrier, task) = connect(svc);
    carrier.start();
    carrier.silence(300).await;
    carrier.speak(&fixture("demo_request.wav")).await;
    carrier.silence(900).await;
    carrier.speak(&fixture("existing_customer.wav")).await;
    assert_eq!(carrier.events("clear").len(), 1);
    carrier.silence(8000).await;
    assert_eq!(runs.load(SeqCst), 0, "no job from a discarded generation");
    let tool_calls = seen
        .lock()
        .map(|s| {
            s.iter()
                .filter(|e| matches!(e, Event::ModelToolCall(_)))
                .count()
        })
        .unwrap_or(0);
    // The second turn's generation also asks late, and it was not cut off.
    assert_eq!(
        tool_calls, 0,
        "the late tool call never reached the conversation"
    );
    carrier.send(format!(r#"{{"event":"stop","streamSid":"{SID}"}}"#));
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_speech_to_text_does_not_delay_the_greeting() {
    let providers = Providers {
        stt: Arc::new(SlowStt {
            delay: Duration::from_secs(3),
            inner: stt("hello"),
        }),
        llm: Arc::new(ScriptedLlm::new(Default::default())),
        tts: tts(0),
    };
    let svc = services(
        providers,
        Arc::new(ScriptedConversations {
            greeting: "Thanks for calling.".into(),
            system_prompt: "sys".into(),
        }),
        Arc::new(super::tools::NoTools),
    );
    let metrics = svc.metrics.clone();
    let (mut carrier, task) = connect(svc);
    let started = tokio::time::Instant::now();
    carrier.start();
    carrier.silence(100).await;
    let first = carrier.events("media").first().copied();
    let first = first.expect("greeting audio");
    assert!(
        first - started <= Duration::from_millis(20),
        "first greeting frame {:?} after start",
        first - started
    );
    // Audio spoken while the STT connects is held back, not lost.
    carrier.silence(4000).await;
    carrier.send(format!(r#"{{"event":"stop","streamSid":"{SID}"}}"#));
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    let frames_in = metrics.frames_in.load(std::sync::atomic::Ordering::Relaxed);
    assert!(frames_in >= 200, "{frames_in} frames in");
    assert_eq!(
        metrics
            .caller_frames_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}
