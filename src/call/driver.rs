//! The tokio driver: one task per call connecting a carrier WebSocket, the
//! providers and the sans-IO [`CallCore`].
//!
//! The loop waits on whichever comes first — a carrier message, a
//! transcript, reply output, the core's next deadline, or the server's
//! cancellation — feeds it to the core, then carries out every action the
//! core queued and flushes the socket once. No lock is held across an await;
//! the task owns all call state.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::SinkExt;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::core::{Action, CallCore, CoreConfig, Observation, TurnState};
use super::reply::run_reply;
use crate::app::App;
use crate::carrier::{CallEvent, CarrierCodec};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::providers::{Providers, SttInput, SttParams, SttSession};

/// What every call needs from the server.
#[derive(Clone, Debug)]
pub struct CallServices {
    /// Validated config.
    pub config: Arc<Config>,
    /// STT, LLM, TTS.
    pub providers: Providers,
    /// Process metrics.
    pub metrics: Arc<Metrics>,
    /// The system prompt, with the business name filled in.
    pub system_prompt: Arc<str>,
}

/// The system prompt shipped in `prompts/system.md`.
pub const SYSTEM_PROMPT: &str = include_str!("../../prompts/system.md");

impl CallServices {
    /// The handles a call needs, from the composition root.
    pub fn new(app: &App) -> Self {
        let system_prompt = SYSTEM_PROMPT
            .replace("{business}", &app.config.business.name)
            .into();
        CallServices {
            config: app.config.clone(),
            providers: app.providers.clone(),
            metrics: app.metrics.clone(),
            system_prompt,
        }
    }
}

/// Per-call counters, added to the process metrics in batches.
#[derive(Default)]
struct LocalCounts {
    frames_in: u64,
    frames_out: u64,
}

impl LocalCounts {
    fn flush(&mut self, m: &Metrics) {
        m.frames_in
            .fetch_add(std::mem::take(&mut self.frames_in), Relaxed);
        m.frames_out
            .fetch_add(std::mem::take(&mut self.frames_out), Relaxed);
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

async fn next_stt(stt: &mut Option<SttSession>) -> Option<crate::providers::SttEvent> {
    match stt {
        Some(s) => s.events.recv().await,
        None => std::future::pending().await,
    }
}

/// Serve one call on an upgraded WebSocket until it ends or `cancel` fires.
pub async fn run_call<C: CarrierCodec>(
    mut socket: WebSocket,
    mut codec: C,
    services: CallServices,
    cancel: CancellationToken,
) {
    let span = tracing::info_span!(
        "call",
        carrier = codec.name(),
        call_sid = tracing::field::Empty,
        stream_sid = tracing::field::Empty
    );
    let metrics = services.metrics.clone();
    metrics.calls_total.fetch_add(1, Relaxed);
    let active = ActiveCall::new(metrics.clone());
    async move {
        let _active = active;
        let cfg = &services.config;
        let mut core = CallCore::new(CoreConfig::new(&cfg.vad, &cfg.call));
        let (reply_tx, mut reply_rx) = mpsc::channel(256);
        let mut replies: Vec<(u64, AbortHandle)> = Vec::new();
        let mut stt: Option<SttSession> = None;
        let stt_wants_audio = services.providers.stt.wants_audio();
        let mut counts = LocalCounts::default();
        let mut malformed = 0u64;
        let sleep = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(sleep);
        let mut armed: Option<std::time::Instant> = None;
        let mut closing = false;
        // Built once: a fresh `cancelled()` future per loop turn registers and
        // unregisters a waiter every frame (a few % of server CPU at 1,000 calls).
        let cancelled = cancel.cancelled();
        tokio::pin!(cancelled);

        loop {
            tokio::select! {
                biased;
                _ = &mut cancelled => {
                    info!("call cancelled by server shutdown");
                    break;
                }
                msg = socket.recv() => {
                    let now = tokio::time::Instant::now().into_std();
                    match msg {
                        Some(Ok(Message::Text(text))) => {
                            match codec.parse_text(text.as_str()) {
                                Ok(CallEvent::Media { pcm, .. }) => {
                                    counts.frames_in += 1;
                                    if stt_wants_audio {
                                        if let Some(s) = &stt {
                                            let _ = s.input.try_send(SttInput::Audio(pcm.into()));
                                        }
                                    }
                                    core.handle_media(pcm, now);
                                }
                                Ok(CallEvent::Start(start)) => {
                                    let span = tracing::Span::current();
                                    span.record("call_sid", start.call_sid.as_str());
                                    span.record("stream_sid", start.stream_sid.as_str());
                                    info!(params = ?start.custom_parameters, "stream started");
                                    let params = SttParams { sample_rate: 8000, language: "en".into() };
                                    match tokio::time::timeout(Duration::from_secs(5), services.providers.stt.open(params)).await {
                                        Ok(Ok(s)) => stt = Some(s),
                                        Ok(Err(e)) => {
                                            warn!(error = %e, "speech-to-text unavailable");
                                            metrics.provider_errors.fetch_add(1, Relaxed);
                                        }
                                        Err(_) => {
                                            warn!("speech-to-text did not open within 5 s");
                                            metrics.provider_errors.fetch_add(1, Relaxed);
                                        }
                                    }
                                    core.handle_start(now);
                                }
                                Ok(CallEvent::Mark(name)) => core.handle_mark(&name, now),
                                Ok(CallEvent::Dtmf(d)) => core.handle_dtmf(d, now),
                                Ok(CallEvent::Stop) => core.handle_stop(now),
                                Ok(CallEvent::Connected | CallEvent::Ignored) => {}
                                Err(e) => reject(&mut malformed, &metrics, &e),
                            }
                        }
                        Some(Ok(Message::Binary(data))) => {
                            if let Err(e) = codec.parse_binary(&data) {
                                reject(&mut malformed, &metrics, &e);
                            }
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_))) | None => {
                            closing = true;
                            core.handle_stop(now);
                        }
                        Some(Err(e)) => {
                            // A frame the WebSocket transport refused (not UTF-8,
                            // over the size limit, bad opcode/framing) is the
                            // carrier's malformed input: count it, say so, and
                            // tell the carrier why with a close code. A dropped
                            // connection is not: nothing to count or tell.
                            // (tungstenite's error text quotes no payload.)
                            match crate::http::ws_errors::protocol_close(&e) {
                                Some((code, reason)) => {
                                    metrics.malformed_messages.fetch_add(1, Relaxed);
                                    warn!(error = %e, close_code = code, "carrier broke the websocket protocol: ending the call");
                                    let close = axum::extract::ws::CloseFrame {
                                        code,
                                        reason: axum::extract::ws::Utf8Bytes::from_static(reason),
                                    };
                                    // Bounded: a peer that stopped reading must not hold the call.
                                    let _ = tokio::time::timeout(
                                        Duration::from_secs(1),
                                        socket.send(Message::Close(Some(close))),
                                    )
                                    .await;
                                }
                                None => debug!(error = %e, "carrier socket error"),
                            }
                            closing = true;
                            core.handle_stop(now);
                        }
                    }
                }
                ev = next_stt(&mut stt) => {
                    let now = tokio::time::Instant::now().into_std();
                    match ev {
                        Some(ev) => core.handle_stt(ev, now),
                        None => stt = None,
                    }
                }
                Some((gen, ev)) = reply_rx.recv() => {
                    core.handle_reply(gen, ev, tokio::time::Instant::now().into_std());
                }
                _ = &mut sleep, if armed.is_some() => {
                    armed = None;
                    core.handle_timeout(tokio::time::Instant::now().into_std());
                }
            }

            // Carry out everything the core decided, then flush once.
            let mut sent_any = false;
            while let Some(action) = core.poll_action() {
                match action {
                    Action::Send(out) => {
                        if closing {
                            continue;
                        }
                        let mut text = String::new();
                        codec.encode(&out, &mut text);
                        counts.frames_out += 1;
                        if socket.feed(Message::Text(text.into())).await.is_err() {
                            closing = true;
                            core.handle_stop(tokio::time::Instant::now().into_std());
                        }
                        sent_any = true;
                    }
                    Action::EndOfUtterance => {
                        if let Some(s) = &stt {
                            let _ = s.input.try_send(SttInput::EndOfUtterance);
                        }
                    }
                    Action::StartReply { gen, input } => {
                        let history = core.chat_history(&services.system_prompt);
                        let task = tokio::spawn(
                            run_reply(gen, input, history, services.providers.clone(), reply_tx.clone())
                                .in_current_span(),
                        );
                        replies.retain(|(_, h)| !h.is_finished());
                        replies.push((gen, task.abort_handle()));
                    }
                    Action::CancelReply { gen } => {
                        replies.retain(|(g, h)| {
                            if *g == gen {
                                h.abort();
                            }
                            *g != gen
                        });
                    }
                    Action::RunTool { gen, call } => {
                        // Tools arrive with the receptionist brain; until then none are offered.
                        warn!(gen, tool = %call.name, "model called a tool that is not offered");
                    }
                    Action::Observe(o) => match o {
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
                        other => debug!(?other, "call observation"),
                    },
                    Action::Hangup(reason) => {
                        debug!(?reason, "call ending");
                    }
                }
            }
            if sent_any && !closing && socket.flush().await.is_err() {
                closing = true;
                core.handle_stop(tokio::time::Instant::now().into_std());
            }
            if counts.frames_in >= 500 {
                counts.flush(&metrics);
            }
            if core.state() == TurnState::Ended {
                break;
            }
            if let Some(t) = core.poll_timeout() {
                if armed.is_none_or(|a| t < a) {
                    sleep.as_mut().reset(t.into());
                    armed = Some(t);
                }
            }
        }

        for (_, h) in replies {
            h.abort();
        }
        if !closing {
            let _ = socket.send(Message::Close(None)).await;
        }
        counts.flush(&metrics);
        let turns = core.history().iter().filter(|t| !t.caller.is_empty()).count();
        let interrupted = core.history().iter().filter(|t| t.interrupted).count();
        info!(turns, interrupted, malformed, "call ended");
    }
    .instrument(span)
    .await;
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
