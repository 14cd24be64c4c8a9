//! ElevenLabs text-to-speech over the WebSocket stream-input endpoint, one
//! socket per reply, `output_format=ulaw_8000` on the phone.
//!
//! The socket opens with the required single-space text; each sentence is
//! sent as it comes (ending in a space) with `auto_mode=true`, so audio
//! starts at the first sentence without a character schedule to fill. The
//! end of the reply is the empty text (end of sequence): the server speaks
//! what is left, sends `isFinal` and closes. Audio (base64 μ-law) is decoded
//! to the call's PCM as each message arrives. A keep-alive space goes out
//! after 10 s without text (the server gives up at 20 s). Cancelling (the
//! session dropped before the end) closes the socket.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::ws::{self, Ws};
use super::{ProviderError, Tts, TtsEvent, TtsInput, TtsParams, TtsSession};
use crate::audio::g711;
use crate::config::ElevenlabsTtsConfig;
use crate::pii::Secret;

const NAME: &str = "elevenlabs";

/// Keep-alive after this long without text.
const KEEPALIVE: Duration = Duration::from_secs(10);

/// ElevenLabs streaming TTS.
#[derive(Debug, Clone)]
pub struct ElevenlabsTts {
    cfg: ElevenlabsTtsConfig,
    key: Secret<String>,
}

impl ElevenlabsTts {
    /// From `[providers.tts]` and `ELEVENLABS_API_KEY`.
    pub fn new(cfg: ElevenlabsTtsConfig, key: Secret<String>) -> Self {
        ElevenlabsTts { cfg, key }
    }

    /// The stream-input URL for a voice and sample rate.
    pub fn url(&self, voice: &str, sample_rate: u32) -> String {
        let format = if sample_rate == 8000 {
            "ulaw_8000".to_string()
        } else {
            format!("pcm_{sample_rate}")
        };
        let q = serde_urlencoded::to_string([
            ("model_id", self.cfg.model_id.as_str()),
            ("output_format", format.as_str()),
            ("auto_mode", "true"),
        ])
        .unwrap_or_default();
        format!(
            "{}/text-to-speech/{}/stream-input?{q}",
            self.cfg.base_url.trim_end_matches('/'),
            voice
        )
    }
}

#[async_trait]
impl Tts for ElevenlabsTts {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn open(&self, params: TtsParams) -> Result<TtsSession, ProviderError> {
        let voice = params.voice.as_deref().unwrap_or(&self.cfg.voice_id);
        if !voice
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ProviderError::Permanent {
                provider: NAME,
                message: "the voice id holds characters a URL path cannot".into(),
            });
        }
        let mut socket = ws::connect(
            NAME,
            &self.url(voice, params.sample_rate),
            &[("xi-api-key", self.key.expose())],
            Duration::from_millis(self.cfg.connect_timeout_ms),
        )
        .await?;
        socket
            .send(Message::text(json!({"text": " "}).to_string()))
            .await
            .map_err(|e| ws::read_error(NAME, e))?;
        let (in_tx, in_rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::channel(64);
        tokio::spawn(run(socket, in_rx, ev_tx, params.sample_rate == 8000));
        Ok(TtsSession {
            input: in_tx,
            events: ev_rx,
        })
    }
}

/// Decode provider audio (μ-law, or s16le at other rates) to PCM.
pub(crate) fn decode_audio(bytes: &[u8], mulaw: bool) -> Vec<i16> {
    let mut pcm = Vec::with_capacity(bytes.len());
    if mulaw {
        g711::decode_ulaw_into(bytes, &mut pcm);
    } else {
        pcm.extend(
            bytes
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]])),
        );
    }
    pcm
}

type Events = mpsc::Sender<Result<TtsEvent, ProviderError>>;

async fn run(ws: Ws, mut input: mpsc::Receiver<TtsInput>, events: Events, mulaw: bool) {
    let (mut sink, mut stream) = ws.split();
    let mut last_text = Instant::now();
    let mut ended = false;
    let b64 = base64::engine::general_purpose::STANDARD;
    loop {
        tokio::select! {
            inp = input.recv(), if !ended => {
                let msg = match inp {
                    Some(TtsInput::Text(t)) if !t.trim().is_empty() => {
                        json!({"text": format!("{} ", t.trim())})
                    }
                    Some(TtsInput::Text(_)) => continue,
                    Some(TtsInput::End) => {
                        ended = true;
                        json!({"text": ""})
                    }
                    None => {
                        // Cancelled: close the socket, nothing more is wanted.
                        let _ = sink.close().await;
                        return;
                    }
                };
                if let Err(e) = sink.send(Message::text(msg.to_string())).await {
                    let _ = events.send(Err(ws::read_error(NAME, e))).await;
                    return;
                }
                last_text = Instant::now();
            }
            _ = tokio::time::sleep_until(last_text + KEEPALIVE), if !ended => {
                if sink.send(Message::text(json!({"text": " "}).to_string())).await.is_err() {
                    return;
                }
                last_text = Instant::now();
            }
            _ = events.closed() => {
                let _ = sink.close().await;
                return;
            }
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = match serde_json::from_str(t.as_str()) {
                        Ok(v @ Value::Object(_)) => v,
                        Ok(_) | Err(_) => {
                            let _ = events.send(Err(ws::malformed(NAME, "not a JSON object"))).await;
                            let _ = sink.close().await;
                            return;
                        }
                    };
                    if let Some(audio) = v.get("audio").and_then(|a| a.as_str()) {
                        match b64.decode(audio) {
                            Ok(bytes) if !bytes.is_empty() => {
                                if events.send(Ok(TtsEvent::Audio(decode_audio(&bytes, mulaw)))).await.is_err() {
                                    let _ = sink.close().await;
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(_) => {
                                let _ = events.send(Err(ws::malformed(NAME, "audio is not base64"))).await;
                                let _ = sink.close().await;
                                return;
                            }
                        }
                    } else if let Some(err) = v.get("error").or_else(|| v.get("message")).filter(|e| !e.is_null()) {
                        let what = err.as_str().map(ws::short).unwrap_or_else(|| "error".into());
                        let e = if what.to_ascii_lowercase().contains("auth") || what.contains("api key") {
                            ProviderError::Permanent { provider: NAME, message: what }
                        } else {
                            ProviderError::Transient { provider: NAME, message: what, retry_after: None }
                        };
                        let _ = events.send(Err(e)).await;
                        let _ = sink.close().await;
                        return;
                    }
                    if v.get("isFinal").and_then(|f| f.as_bool()) == Some(true) {
                        let _ = events.send(Ok(TtsEvent::Done)).await;
                        let _ = sink.close().await;
                        return;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    if ended && ws::is_normal_close(frame.as_ref()) {
                        let _ = events.send(Ok(TtsEvent::Done)).await;
                    } else {
                        let _ = events.send(Err(ws::close_error(NAME, frame.as_ref()))).await;
                    }
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
