//! The tokio driver: one task per call connecting a carrier WebSocket, the
//! providers, the tool runner, the call record and the sans-IO [`Session`].
//!
//! Before a call exists the driver waits (at most `server.start_timeout_ms`)
//! for the stream's `start`; only a started stream takes one of the
//! `server.max_calls` permits, so silent upgrades cannot lock callers out.
//! The speech-to-text session is opened *beside* the loop — the greeting
//! goes out while it connects, and caller audio meanwhile is buffered (a
//! bounded amount; what does not fit is counted as dropped).
//!
//! The loop waits on whichever comes first — a carrier message, a
//! transcript, reply output, a tool outcome, the STT opening, the session's
//! next deadline, or the server's cancellation — feeds it to the session
//! (carrier messages through the one [`Session::handle_event`] dispatch the
//! simulator uses too), then carries out every output and flushes the
//! socket once. No lock is held across an await; the task owns all call
//! state.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::{AbortHandle, JoinHandle};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

use super::conversation::ConversationFactory;
use super::core::{CoreConfig, HangupReason, Observation};
use super::record::RecordWriter;
use super::recording::CallRecording;
use super::reply::{run_reply, Voice};
use super::session::{Output, Record, Session, SessionConfig};
use super::tools::{ToolExecutor, ToolRunner};
use crate::audio::PHONE_RATE;
use crate::carrier::{CallEvent, CarrierCodec, CarrierCommand, StreamStart};
use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::providers::{Providers, SttEvent, SttInput, SttParams, SttSession};
use crate::routing::signature::{verify_stream_token, StreamKey};

/// What a call did, for an in-process observer.
#[derive(Debug, Clone, PartialEq)]
pub enum TapEvent {
    /// An entry of the call's record.
    Record(Record),
    /// One turn's latency by stage.
    Waterfall(crate::call::core::Waterfall),
}

/// The observer's end: `(call_sid, event)` pairs.
pub type CallTap = mpsc::UnboundedSender<(String, TapEvent)>;

/// What every call needs from the server. Cheap to clone.
#[derive(Clone)]
pub struct CallServices {
    /// Validated config.
    pub config: Arc<Config>,
    /// STT, LLM, TTS.
    pub providers: Providers,
    /// Process metrics.
    pub metrics: Arc<Metrics>,
    /// Makes each call's conversation.
    pub conversations: Arc<dyn ConversationFactory>,
    /// Carries out tool jobs (exactly once per call and job id).
    pub tools: Arc<dyn ToolExecutor>,
    /// Where calls are recorded (`None`: not recorded).
    pub records: Option<RecordWriter>,
    /// Wall clock for the record's timestamps.
    pub clock: Arc<dyn Clock>,
    /// Region for caller numbers without a country code.
    pub region: Option<phonenumber::country::Id>,
    /// Tool jobs and record writers: the server waits for them when it drains.
    pub tracker: TaskTracker,
    /// Sees every record and turn waterfall of every call, as it happens
    /// (`frontdesk call` reads its simulated call this way); `None` in `serve`.
    pub tap: Option<CallTap>,
    /// Checks the signed stream token the routing plan put in the stream's
    /// parameters; `None` (no `[[numbers]]`, e.g. the demo): not checked.
    pub stream_key: Option<Arc<StreamKey>>,
}

impl std::fmt::Debug for CallServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallServices")
            .field("providers", &self.providers)
            .field("recorded", &self.records.is_some())
            .finish_non_exhaustive()
    }
}

/// Per-call counters, added to the process metrics in batches.
#[derive(Default)]
struct LocalCounts {
    frames_in: u64,
    frames_out: u64,
    dropped: u64,
}

impl LocalCounts {
    fn flush(&mut self, m: &Metrics) {
        m.frames_in
            .fetch_add(std::mem::take(&mut self.frames_in), Relaxed);
        m.frames_out
            .fetch_add(std::mem::take(&mut self.frames_out), Relaxed);
        m.caller_frames_dropped
            .fetch_add(std::mem::take(&mut self.dropped), Relaxed);
    }
}

/// Count a rejected carrier message; log the first few and then every 100th.
fn reject(count: &mut u64, metrics: &Metrics, e: &crate::carrier::CarrierError) {
    *count += 1;
    metrics.malformed_messages.fetch_add(1, Relaxed);
    if *count <= 5 || count.is_multiple_of(100) {
        warn!(error = %e, count = *count, "rejected carrier message");
    }
}

/// Caller frames held back at most (5 s): while the STT connects, or while
/// its input queue is full. Beyond that the oldest are dropped and counted.
const STT_BACKLOG_FRAMES: usize = 250;

/// The call's speech-to-text: connecting, open, or gone.
enum SttState {
    Opening,
    Open(SttSession),
    Gone,
}

/// The STT with the caller audio it has not taken yet.
struct Stt {
    state: SttState,
    backlog: VecDeque<Arc<[i16]>>,
}

impl Stt {
    /// Queue one caller frame for the STT; returns how many frames were dropped.
    fn audio(&mut self, pcm: &[i16]) -> u64 {
        if matches!(self.state, SttState::Gone) {
            return 1;
        }
        let mut dropped = 0;
        if self.backlog.len() >= STT_BACKLOG_FRAMES {
            self.backlog.pop_front();
            dropped += 1;
        }
        self.backlog.push_back(pcm.into());
        dropped + self.flush()
    }

    /// Hand the STT as much of the backlog as it takes now, in order.
    fn flush(&mut self) -> u64 {
        let SttState::Open(s) = &self.state else {
            return 0;
        };
        while let Some(frame) = self.backlog.front() {
            match s.input.try_send(SttInput::Audio(frame.clone())) {
                Ok(()) => {
                    self.backlog.pop_front();
                }
                Err(mpsc::error::TrySendError::Full(_)) => break,
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.state = SttState::Gone;
                    let n = self.backlog.len() as u64;
                    self.backlog.clear();
                    return n;
                }
            }
        }
        0
    }

    /// The STT opened (or failed to); returns frames dropped.
    fn opened(&mut self, s: Option<SttSession>) -> u64 {
        match s {
            Some(s) => {
                self.state = SttState::Open(s);
                self.flush()
            }
            None => {
                self.state = SttState::Gone;
                let n = self.backlog.len() as u64;
                self.backlog.clear();
                n
            }
        }
    }
}

async fn next_stt(stt: &mut SttState) -> Option<SttEvent> {
    match stt {
        SttState::Open(s) => s.events.recv().await,
        _ => std::future::pending().await,
    }
}

async fn stt_opened(task: &mut Option<JoinHandle<Option<SttSession>>>) -> Option<SttSession> {
    match task {
        Some(t) => t.await.ok().flatten(),
        None => std::future::pending().await,
    }
}

/// What happened while waiting for `start`.
enum Before {
    Start(Box<StreamStart>),
    Gone,
}

/// Read messages until the stream's `start` (or the socket ends).
async fn wait_for_start<T, C>(socket: &mut T, codec: &mut C, metrics: &Metrics) -> Before
where
    T: Stream<Item = Result<Message, axum::Error>> + Unpin,
    C: CarrierCodec,
{
    let mut malformed = 0u64;
    while let Some(msg) = socket.next().await {
        match msg {
            Ok(Message::Text(text)) => match codec.parse_text(text.as_str()) {
                Ok(CallEvent::Start(s)) => return Before::Start(s),
                Ok(_) => {}
                Err(e) => reject(&mut malformed, metrics, &e),
            },
            Ok(Message::Binary(data)) => {
                if let Err(e) = codec.parse_binary(&data) {
                    reject(&mut malformed, metrics, &e);
                }
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(Message::Close(_)) | Err(_) => return Before::Gone,
        }
    }
    Before::Gone
}

async fn close<T>(socket: &mut T, code: u16, reason: &'static str)
where
    T: Sink<Message, Error = axum::Error> + Unpin,
{
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

/// Serve one call on an upgraded WebSocket until it ends or `cancel` fires.
/// `slots` caps concurrent calls: a permit is taken once `start` arrives.
pub async fn run_call<T, C>(
    mut socket: T,
    mut codec: C,
    services: CallServices,
    slots: Arc<Semaphore>,
    cancel: CancellationToken,
) where
    T: Stream<Item = Result<Message, axum::Error>>
        + Sink<Message, Error = axum::Error>
        + Unpin
        + Send,
    C: CarrierCodec,
{
    let span = tracing::info_span!(
        "call",
        carrier = codec.name(),
        call_sid = tracing::field::Empty,
        stream_sid = tracing::field::Empty
    );
    async move {
        let metrics = services.metrics.clone();
        let wait = Duration::from_millis(services.config.server.start_timeout_ms);
        let start = tokio::select! {
            r = tokio::time::timeout(wait, wait_for_start(&mut socket, &mut codec, &metrics)) => r,
            _ = cancel.cancelled() => return,
        };
        let start = match start {
            Ok(Before::Start(s)) => s,
            Ok(Before::Gone) => return,
            Err(_) => {
                metrics.calls_refused.fetch_add(1, Relaxed);
                warn!(
                    wait_ms = wait.as_millis() as u64,
                    "no stream start in time: closing"
                );
                close(&mut socket, 1008, "no start").await;
                return;
            }
        };
        if let Some(key) = &services.stream_key {
            let ok = verify_stream_token(&start.custom_parameters, key, services.clock.now())
                .is_ok_and(|ctx| ctx.call_sid == start.call_sid);
            if !ok {
                metrics.calls_refused.fetch_add(1, Relaxed);
                warn!("media stream without a valid stream token: closing");
                close(&mut socket, 1008, "bad stream token").await;
                return;
            }
        }
        let Ok(permit) = slots.try_acquire_owned() else {
            metrics.calls_refused.fetch_add(1, Relaxed);
            warn!(
                max_calls = services.config.server.max_calls,
                "refusing media stream: at capacity"
            );
            close(&mut socket, 1013, "at capacity").await;
            return;
        };
        let span = tracing::Span::current();
        span.record("call_sid", start.call_sid.as_str());
        span.record("stream_sid", start.stream_sid.as_str());
        info!(params = ?start.custom_parameters, "stream started");
        metrics.calls_total.fetch_add(1, Relaxed);
        let _active = ActiveCall::new(metrics.clone());
        drive(socket, codec, services, start, cancel).await;
        drop(permit);
    }
    .instrument(span)
    .await;
}

async fn drive<T, C>(
    mut socket: T,
    mut codec: C,
    services: CallServices,
    start: Box<StreamStart>,
    cancel: CancellationToken,
) where
    T: Stream<Item = Result<Message, axum::Error>>
        + Sink<Message, Error = axum::Error>
        + Unpin
        + Send,
    C: CarrierCodec,
{
    let metrics = services.metrics.clone();
    let cfg = &services.config;
    // This call's own providers: a fail-over chain moves this call only.
    let providers = services.providers.for_call();
    let mut session = Session::new(
        SessionConfig {
            core: CoreConfig {
                stt_interims: providers.stt.interims(),
                ..CoreConfig::new(&cfg.vad, &cfg.call)
            },
            region: services.region,
        },
        services.conversations.start(),
    );
    let (reply_tx, mut reply_rx) = mpsc::channel(256);
    let (tool_tx, mut tool_rx) = mpsc::channel(32);
    let mut runner = ToolRunner::new(
        start.call_sid.clone(),
        services.tools.clone(),
        tool_tx,
        services.tracker.clone(),
    );
    let mut recorder = services
        .records
        .as_ref()
        .map(|w| w.recorder(services.clock.clone()));
    let voice = Voice {
        voice: cfg.providers.tts.voice(),
    };
    let mut replies: Vec<(u64, AbortHandle)> = Vec::new();
    let stt_wants_audio = providers.stt.wants_audio();
    // Open the STT beside the loop: the greeting must not wait for it.
    let mut stt = Stt {
        state: SttState::Opening,
        backlog: VecDeque::new(),
    };
    let mut stt_task = {
        let provider = providers.stt.clone();
        let metrics = metrics.clone();
        let params = SttParams {
            sample_rate: PHONE_RATE,
            language: cfg.call.language.clone(),
        };
        let task = tokio::spawn(
            async move {
                match tokio::time::timeout(Duration::from_secs(5), provider.open(params)).await {
                    Ok(Ok(s)) => Some(s),
                    Ok(Err(e)) => {
                        warn!(error = %e, "speech-to-text unavailable");
                        metrics.provider_errors.fetch_add(1, Relaxed);
                        None
                    }
                    Err(_) => {
                        warn!("speech-to-text did not open within 5 s");
                        metrics.provider_errors.fetch_add(1, Relaxed);
                        None
                    }
                }
            }
            .in_current_span(),
        );
        Some(task)
    };
    let mut counts = LocalCounts::default();
    let mut malformed = 0u64;
    let sleep = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(sleep);
    let mut armed: Option<std::time::Instant> = None;
    let mut closing = false;
    let mut ended = false;
    let mut tools_running = 0usize;
    // Built once: a fresh `cancelled()` future per loop turn registers and
    // unregisters a waiter every frame (a few % of server CPU at 1,000 calls).
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    let now = || tokio::time::Instant::now().into_std();

    // Recorded when the called number has `record = true`, the stream asks
    // (`record` parameter), or `[recording] always`.
    let param = |name: &str| {
        start
            .custom_parameters
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.expose().trim().to_string())
    };
    let number = param("number");
    let wants_recording = cfg.recording.always
        || param("record").as_deref() == Some("true")
        || cfg
            .numbers
            .iter()
            .any(|n| n.record && Some(n.e164.as_str()) == number.as_deref());
    let mut recording = None;
    let mut recording_name = None;
    if wants_recording {
        match CallRecording::start(
            &cfg.recording.dir,
            &start.call_sid,
            metrics.clone(),
            &services.tracker,
        ) {
            Ok(r) => {
                let name = r
                    .path()
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                recording_name = Some(name);
                recording = Some(r);
            }
            Err(e) => warn!(error = %e, "cannot record this call"),
        }
    }
    let call_sid = start.call_sid.clone();
    session.handle_event(CallEvent::Start(start), now());
    loop {
        // Carry out everything the session decided, then flush once.
        let mut sent_any = false;
        while let Some(out) = session.poll_output() {
            match out {
                Output::Send(cmd) => {
                    if closing {
                        continue;
                    }
                    if let Some(r) = recording.as_mut() {
                        match &cmd {
                            CarrierCommand::Media(pcm) => r.bot(pcm),
                            CarrierCommand::Clear => r.clear(),
                            CarrierCommand::Mark(_) => {}
                        }
                    }
                    let mut text = String::new();
                    codec.encode(&cmd, &mut text);
                    counts.frames_out += 1;
                    if socket.feed(Message::Text(text.into())).await.is_err() {
                        closing = true;
                        session.handle_disconnect(now());
                    }
                    sent_any = true;
                }
                Output::EndOfUtterance => {
                    if let SttState::Open(s) = &stt.state {
                        let _ = s.input.try_send(SttInput::EndOfUtterance);
                    }
                }
                Output::PeekWords => {
                    debug!("asking for the words of the caller's sound under the reply");
                    let asked = match &stt.state {
                        SttState::Open(s) => s.input.try_send(SttInput::Peek).is_ok(),
                        _ => false,
                    };
                    if !asked {
                        // Every peek gets its answer: "no words" now (the
                        // caller who goes on talking interrupts at the
                        // word-wait bound).
                        session.handle_stt(SttEvent::Interim(String::new()), now());
                    }
                }
                Output::ForgetAudio => {
                    if let SttState::Open(s) = &stt.state {
                        let _ = s.input.try_send(SttInput::Forget);
                    }
                }
                Output::StartReply { gen, input } => {
                    let task = tokio::spawn(
                        run_reply(
                            gen,
                            input,
                            providers.clone(),
                            voice.clone(),
                            reply_tx.clone(),
                        )
                        .in_current_span(),
                    );
                    replies.retain(|(_, h)| !h.is_finished());
                    replies.push((gen, task.abort_handle()));
                }
                Output::CancelReply { gen } => {
                    replies.retain(|(g, h)| {
                        if *g == gen {
                            h.abort();
                        }
                        *g != gen
                    });
                }
                Output::RunTool(job) => {
                    if runner.submit(job) {
                        tools_running += 1;
                        metrics.tool_jobs.fetch_add(1, Relaxed);
                    }
                }
                Output::Record(r) => {
                    if let Record::Ended(reason) = &r {
                        debug!(?reason, "call ending");
                    }
                    if let Some(tap) = &services.tap {
                        let _ = tap.send((call_sid.clone(), TapEvent::Record(r.clone())));
                    }
                    let started = matches!(r, Record::Started(_));
                    if let Some(rec) = recorder.as_mut() {
                        rec.record(r);
                        // Named in the record once the call row exists.
                        if let (true, Some(name)) = (started, recording_name.take()) {
                            rec.record(Record::Recording(name));
                        }
                    }
                }
                Output::Observe(o) => {
                    if let (Some(tap), Observation::Waterfall(w)) = (&services.tap, &o) {
                        let _ = tap.send((call_sid.clone(), TapEvent::Waterfall(*w)));
                    }
                    observe(&metrics, o)
                }
                Output::Hangup(reason) => {
                    debug!(?reason, "hanging up");
                    if reason == HangupReason::HandOff {
                        if let Some(rec) = &recorder {
                            if !rec.flush(Duration::from_secs(2)).await {
                                warn!("hand-off not confirmed on record before closing");
                            }
                        }
                    }
                    ended = true;
                }
            }
        }
        if sent_any && !closing && socket.flush().await.is_err() {
            closing = true;
            session.handle_disconnect(now());
            continue;
        }
        if counts.frames_in >= 500 {
            counts.flush(&metrics);
        }
        if ended {
            break;
        }
        if let Some(t) = session.poll_timeout() {
            if armed.is_none_or(|a| t < a) {
                sleep.as_mut().reset(t.into());
                armed = Some(t);
            }
        }

        tokio::select! {
            biased;
            _ = &mut cancelled => {
                info!("call cancelled by server shutdown");
                session.handle_drain(now());
            }
            msg = socket.next() => {
                let now = now();
                match msg {
                    Some(Ok(Message::Text(text))) => match codec.parse_text(text.as_str()) {
                        Ok(ev) => {
                            if let CallEvent::Media { pcm, .. } = &ev {
                                counts.frames_in += 1;
                                if let Some(r) = recording.as_mut() {
                                    r.caller(pcm);
                                }
                                if stt_wants_audio {
                                    counts.dropped += stt.audio(pcm);
                                }
                            }
                            session.handle_event(ev, now);
                        }
                        Err(e) => reject(&mut malformed, &metrics, &e),
                    },
                    Some(Ok(Message::Binary(data))) => {
                        if let Err(e) = codec.parse_binary(&data) {
                            reject(&mut malformed, &metrics, &e);
                        }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => {
                        closing = true;
                        session.handle_disconnect(now);
                    }
                    Some(Err(e)) => {
                        // A frame the WebSocket transport refused (not UTF-8,
                        // over the size limit, bad opcode/framing) is the
                        // carrier's malformed input: count it, say so, and
                        // tell the carrier why with a close code. A dropped
                        // connection is not: nothing to count or tell.
                        // (tungstenite's error text quotes no payload.)
                        match crate::carrier::ws::protocol_close(&e) {
                            Some((code, reason)) => {
                                metrics.malformed_messages.fetch_add(1, Relaxed);
                                warn!(error = %e, close_code = code, "carrier broke the websocket protocol: ending the call");
                                // Bounded: a peer that stopped reading must not hold the call.
                                let _ = tokio::time::timeout(
                                    Duration::from_secs(1),
                                    close(&mut socket, code, reason),
                                )
                                .await;
                            }
                            None => debug!(error = %e, "carrier socket error"),
                        }
                        closing = true;
                        session.handle_disconnect(now);
                    }
                }
            }
            opened = stt_opened(&mut stt_task) => {
                stt_task = None;
                counts.dropped += stt.opened(opened);
            }
            ev = next_stt(&mut stt.state) => match ev {
                Some(ev) => {
                    if let SttEvent::Interim(t) = &ev {
                        // (The words are the caller's: only their length is logged.)
                        debug!(chars = t.len(), "interim words");
                    }
                    session.handle_stt(ev, now())
                }
                None => stt.state = SttState::Gone,
            },
            Some((gen, ev)) = reply_rx.recv() => session.handle_reply(gen, ev, now()),
            // Polled only while a job runs: an idle receiver costs a check per frame.
            Some(outcome) = tool_rx.recv(), if tools_running > 0 => {
                tools_running -= 1;
                session.handle_tool_outcome(outcome, now());
            }
            _ = &mut sleep, if armed.is_some() => {
                armed = None;
                session.handle_timeout(now());
            }
        }
    }

    for (_, h) in replies {
        h.abort();
    }
    if let Some(task) = &stt_task {
        task.abort();
    }
    if !closing {
        // A normal close: for a `<Connect>` stream the carrier goes on to
        // the TwiML's action URL (the hand-off ring, voicemail, hang-up).
        close(&mut socket, 1000, "call ended").await;
    }
    counts.flush(&metrics);
    info!(malformed, tools = runner.started(), "call ended");
}

fn observe(metrics: &Metrics, o: Observation) {
    match o {
        Observation::TurnLatency(d) => metrics.turn_latency.observe_ms(d.as_secs_f64() * 1e3),
        Observation::BargeIn(d) => {
            metrics.barge_ins.fetch_add(1, Relaxed);
            metrics.barge_in_latency.observe_ms(d.as_secs_f64() * 1e3);
        }
        Observation::Underrun => {
            metrics.playout_underruns.fetch_add(1, Relaxed);
        }
        Observation::ProviderError(e) => {
            metrics.provider_errors.fetch_add(1, Relaxed);
            warn!(error = %e, "provider error");
        }
        Observation::Waterfall(w) => {
            let stages = [
                w.end_of_turn_ms,
                w.stt_ms,
                w.decide_ms,
                w.first_token_ms,
                w.tts_ms,
                w.send_ms,
            ];
            for (h, v) in metrics.turn_stages.iter().zip(stages) {
                h.observe_ms(f64::from(v));
            }
            debug!(?w, "turn latency");
        }
        other => debug!(?other, "call observation"),
    }
}

/// Counts a call as active for exactly as long as it lives, even if its task
/// is aborted.
struct ActiveCall(Arc<Metrics>);

impl ActiveCall {
    fn new(m: Arc<Metrics>) -> Self {
        m.active_calls.fetch_add(1, Relaxed);
        ActiveCall(m)
    }
}

impl Drop for ActiveCall {
    fn drop(&mut self) {
        self.0.active_calls.fetch_sub(1, Relaxed);
    }
}
