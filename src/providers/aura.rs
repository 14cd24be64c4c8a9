//! Deepgram Aura text-to-speech over its WebSocket, one socket per reply,
//! `encoding=mulaw&sample_rate=8000` on the phone.
//!
//! Each sentence is a `Speak` followed by a `Flush` (Aura speaks buffered
//! text on a flush; it allows 20 per minute, so after [`MAX_FLUSHES`] the
//! rest of the reply is flushed once at the end). The reply is done when
//! every flush has come back `Flushed` after the end; then `Close`. Audio
//! arrives as binary frames. Cancelling sends `Clear` (drop what is queued)
//! and `Close`.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tracing::debug;

use super::elevenlabs::decode_audio;
use super::ws::{self, Ws};
use super::{ProviderError, Tts, TtsEvent, TtsInput, TtsParams, TtsSession};
use crate::config::AuraTtsConfig;
use crate::pii::Secret;

const NAME: &str = "deepgram_aura";

/// Flushes per reply before the rest waits for the end (Aura's limit is 20 a minute).
pub const MAX_FLUSHES: u32 = 10;

/// Deepgram Aura streaming TTS.
#[derive(Debug, Clone)]
pub struct AuraTts {
    cfg: AuraTtsConfig,
    key: Secret<String>,
}

impl AuraTts {
    /// From `[providers.tts]` and `DEEPGRAM_API_KEY`.
    pub fn new(cfg: AuraTtsConfig, key: Secret<String>) -> Self {
        AuraTts { cfg, key }
    }

    /// The speak URL for a model and sample rate.
    pub fn url(&self, model: &str, sample_rate: u32) -> String {
        let encoding = if sample_rate == 8000 {
            "mulaw"
        } else {
            "linear16"
        };
        let q = serde_urlencoded::to_string([
            ("model", model),
            ("encoding", encoding),
            ("sample_rate", &sample_rate.to_string()),
        ])
        .unwrap_or_default();
        format!("{}?{q}", self.cfg.base_url)
    }
}

#[async_trait]
impl Tts for AuraTts {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn open(&self, params: TtsParams) -> Result<TtsSession, ProviderError> {
        let model = params.voice.as_deref().unwrap_or(&self.cfg.model);
        let auth = format!("Token {}", self.key.expose());
        let socket = ws::connect(
            NAME,
            &self.url(model, params.sample_rate),
            &[("authorization", &auth)],
            Duration::from_millis(self.cfg.connect_timeout_ms),
        )
        .await?;
        let (in_tx, in_rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::channel(64);
        tokio::spawn(run(socket, in_rx, ev_tx, params.sample_rate == 8000));
        Ok(TtsSession {
            input: in_tx,
            events: ev_rx,
        })
    }
}

type Events = mpsc::Sender<Result<TtsEvent, ProviderError>>;

fn control(kind: &str) -> Message {
    Message::text(json!({ "type": kind }).to_string())
}

async fn cancel(sink: &mut (impl SinkExt<Message> + Unpin)) {
    let _ = sink.send(control("Clear")).await;
    let _ = sink.send(control("Close")).await;
    let _ = sink.close().await;
}

async fn run(ws: Ws, mut input: mpsc::Receiver<TtsInput>, events: Events, mulaw: bool) {
    let (mut sink, mut stream) = ws.split();
    let mut ended = false;
    let (mut flushes, mut flushed) = (0u32, 0u32);
    let mut unflushed = false;
    loop {
        tokio::select! {
            inp = input.recv(), if !ended => {
                let mut msgs = Vec::with_capacity(2);
                match inp {
                    Some(TtsInput::Text(t)) if !t.trim().is_empty() => {
                        msgs.push(Message::text(json!({"type": "Speak", "text": t.trim()}).to_string()));
                        if flushes < MAX_FLUSHES {
                            msgs.push(control("Flush"));
                            flushes += 1;
                        } else {
                            unflushed = true;
                        }
                    }
                    Some(TtsInput::Text(_)) => continue,
                    Some(TtsInput::End) => {
                        ended = true;
                        if unflushed {
                            msgs.push(control("Flush"));
                            flushes += 1;
                        }
                        if flushes == flushed {
                            // Nothing was said, or all of it is out already.
                            let _ = events.send(Ok(TtsEvent::Done)).await;
                            let _ = sink.send(control("Close")).await;
                            let _ = sink.close().await;
                            return;
                        }
                    }
                    None => {
                        cancel(&mut sink).await;
                        return;
                    }
                }
                for m in msgs {
                    if let Err(e) = sink.send(m).await {
                        let _ = events.send(Err(ws::read_error(NAME, e))).await;
                        return;
                    }
                }
            }
            _ = events.closed() => {
                cancel(&mut sink).await;
                return;
            }
            msg = stream.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if !b.is_empty() && events.send(Ok(TtsEvent::Audio(decode_audio(&b, mulaw)))).await.is_err() {
                        cancel(&mut sink).await;
                        return;
                    }
                }
                Some(Ok(Message::Text(t))) => {
                    let v: Value = match serde_json::from_str(t.as_str()) {
                        Ok(v @ Value::Object(_)) => v,
                        _ => {
                            let _ = events.send(Err(ws::malformed(NAME, "not a JSON object"))).await;
                            cancel(&mut sink).await;
                            return;
                        }
                    };
                    match v.get("type").and_then(|t| t.as_str()) {
                        Some("Flushed") => {
                            flushed += 1;
                            if ended && flushed >= flushes {
                                let _ = events.send(Ok(TtsEvent::Done)).await;
                                let _ = sink.send(control("Close")).await;
                                let _ = sink.close().await;
                                return;
                            }
                        }
                        Some("Warning") => {
                            let what = v.get("description").and_then(|d| d.as_str()).unwrap_or("");
                            debug!(warning = %ws::short(what), "deepgram aura warning");
                        }
                        Some("Error") => {
                            let what = v
                                .get("description")
                                .or_else(|| v.get("message"))
                                .and_then(|d| d.as_str())
                                .map(ws::short)
                                .unwrap_or_default();
                            let _ = events
                                .send(Err(ProviderError::Transient { provider: NAME, message: what, retry_after: None }))
                                .await;
                            cancel(&mut sink).await;
                            return;
                        }
                        Some(_) => {} // Metadata, Cleared, newer kinds
                        None => {
                            let _ = events.send(Err(ws::malformed(NAME, "no `type`"))).await;
                            cancel(&mut sink).await;
                            return;
                        }
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let _ = events.send(Err(ws::close_error(NAME, frame.as_ref()))).await;
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    let _ = events.send(Err(ws::read_error(NAME, e))).await;
                    return;
                }
                None => {
                    let _ = events.send(Err(ws::read_error(NAME, tokio_tungstenite::tungstenite::Error::ConnectionClosed))).await;
                    return;
                }
            },
        }
    }
}
