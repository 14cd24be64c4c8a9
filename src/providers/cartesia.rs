//! Cartesia text-to-speech over its WebSocket, one context per reply,
//! `pcm_mulaw` at 8 kHz on the phone.
//!
//! Each sentence is a generation request on the reply's context with
//! `continue: true` (prosody carries over) and no buffering delay (the
//! sentence is already whole); the end of the reply is an empty transcript
//! with `continue: false`, after which the server's `done` ends the session.
//! Audio `chunk`s (base64) are decoded as they arrive; chunks of any other
//! context are dropped. Cancelling sends `cancel` for the context and closes
//! the socket. `error` messages carry an HTTP-like `status_code`, which
//! decides permanent or transient.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::elevenlabs::decode_audio;
use super::ws::{self, Ws};
use super::{ProviderError, Tts, TtsEvent, TtsInput, TtsParams, TtsSession};
use crate::config::CartesiaTtsConfig;
use crate::pii::Secret;

const NAME: &str = "cartesia";

/// Cartesia streaming TTS.
#[derive(Debug, Clone)]
pub struct CartesiaTts {
    cfg: CartesiaTtsConfig,
    key: Secret<String>,
}

impl CartesiaTts {
    /// From `[providers.tts]` and `CARTESIA_API_KEY`.
    pub fn new(cfg: CartesiaTtsConfig, key: Secret<String>) -> Self {
        CartesiaTts { cfg, key }
    }
}

/// What a session needs to build its requests.
struct Ctx {
    id: String,
    model: String,
    voice: String,
    language: String,
    format: Value,
}

impl Ctx {
    fn request(&self, transcript: &str, more: bool) -> String {
        json!({
            "context_id": self.id,
            "model_id": self.model,
            "transcript": transcript,
            "voice": {"mode": "id", "id": self.voice},
            "language": self.language,
            "output_format": self.format,
            "continue": more,
            "max_buffer_delay_ms": 0,
        })
        .to_string()
    }
}

#[async_trait]
impl Tts for CartesiaTts {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn open(&self, params: TtsParams) -> Result<TtsSession, ProviderError> {
        let socket = ws::connect(
            NAME,
            &self.cfg.base_url,
            &[
                ("cartesia-version", &self.cfg.version),
                ("x-api-key", self.key.expose()),
            ],
            Duration::from_millis(self.cfg.connect_timeout_ms),
        )
        .await?;
        let mulaw = params.sample_rate == 8000;
        let encoding = if mulaw { "pcm_mulaw" } else { "pcm_s16le" };
        let ctx = Ctx {
            id: format!("fd-{}", uuid::Uuid::new_v4()),
            model: self.cfg.model_id.clone(),
            voice: params.voice.unwrap_or_else(|| self.cfg.voice_id.clone()),
            language: self.cfg.language.clone(),
            format: json!({"container": "raw", "encoding": encoding, "sample_rate": params.sample_rate}),
        };
        let (in_tx, in_rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::channel(64);
        tokio::spawn(run(socket, ctx, in_rx, ev_tx, mulaw));
        Ok(TtsSession {
            input: in_tx,
            events: ev_rx,
        })
    }
}

type Events = mpsc::Sender<Result<TtsEvent, ProviderError>>;

async fn cancel(sink: &mut (impl SinkExt<Message> + Unpin), ctx: &Ctx) {
    let msg = json!({"context_id": ctx.id, "cancel": true}).to_string();
    let _ = sink.send(Message::text(msg)).await;
    let _ = sink.close().await;
}

async fn run(ws: Ws, ctx: Ctx, mut input: mpsc::Receiver<TtsInput>, events: Events, mulaw: bool) {
    let (mut sink, mut stream) = ws.split();
    let mut ended = false;
    let b64 = base64::engine::general_purpose::STANDARD;
    loop {
        tokio::select! {
            inp = input.recv(), if !ended => {
                let msg = match inp {
                    Some(TtsInput::Text(t)) if !t.trim().is_empty() => {
                        ctx.request(&format!("{} ", t.trim()), true)
                    }
                    Some(TtsInput::Text(_)) => continue,
                    Some(TtsInput::End) => {
                        ended = true;
                        ctx.request("", false)
                    }
                    None => {
                        cancel(&mut sink, &ctx).await;
                        return;
                    }
                };
                if let Err(e) = sink.send(Message::text(msg)).await {
                    let _ = events.send(Err(ws::read_error(NAME, e))).await;
                    return;
                }
            }
            _ = events.closed() => {
                cancel(&mut sink, &ctx).await;
                return;
            }
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = match serde_json::from_str(t.as_str()) {
                        Ok(v @ Value::Object(_)) => v,
                        _ => {
                            let _ = events.send(Err(ws::malformed(NAME, "not a JSON object"))).await;
                            cancel(&mut sink, &ctx).await;
                            return;
                        }
                    };
                    if v.get("context_id").and_then(|c| c.as_str()).is_some_and(|c| c != ctx.id) {
                        continue; // another context's (e.g. a cancelled one's) output
                    }
                    match v.get("type").and_then(|t| t.as_str()) {
                        Some("chunk") => {
                            let Some(bytes) = v.get("data").and_then(|d| d.as_str()).and_then(|d| b64.decode(d).ok()) else {
                                let _ = events.send(Err(ws::malformed(NAME, "chunk without base64 data"))).await;
                                cancel(&mut sink, &ctx).await;
                                return;
                            };
                            if !bytes.is_empty()
                                && events.send(Ok(TtsEvent::Audio(decode_audio(&bytes, mulaw)))).await.is_err()
                            {
                                cancel(&mut sink, &ctx).await;
                                return;
                            }
                        }
                        Some("done") => {
                            let _ = events.send(Ok(TtsEvent::Done)).await;
                            let _ = sink.close().await;
                            return;
                        }
                        Some("error") => {
                            let status = v.get("status_code").and_then(|s| s.as_u64()).unwrap_or(500) as u16;
                            let said = v
                                .get("message")
                                .or_else(|| v.get("title"))
                                .and_then(|m| m.as_str())
                                .map(ws::short)
                                .unwrap_or_default();
                            let message = format!("error {status}: {said}");
                            let e = if ws::status_is_permanent(status) {
                                ProviderError::Permanent { provider: NAME, message }
                            } else {
                                ProviderError::Transient { provider: NAME, message, retry_after: None }
                            };
                            let _ = events.send(Err(e)).await;
                            let _ = sink.close().await;
                            return;
                        }
                        // timestamps, flush_done, and newer kinds
                        Some(_) => {}
                        None => {
                            let _ = events.send(Err(ws::malformed(NAME, "no `type`"))).await;
                            cancel(&mut sink, &ctx).await;
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
