//! Deepgram live speech-to-text over one WebSocket per call.
//!
//! Caller audio goes out as binary frames, μ-law 8 kHz on the phone (the
//! call's PCM is re-encoded with the G.711 table, which gives back the
//! carrier's own bytes), linear16 at any other rate. Results come back as
//! JSON: interim hypotheses become [`SttEvent::Interim`]; the `is_final`
//! pieces of one utterance are joined and handed over as one
//! [`SttEvent::Final`] when Deepgram marks its end (`speech_final`, an
//! `UtteranceEnd`, or the answer to our `Finalize`); empty finals are
//! skipped. `SpeechStarted` is passed on at once (an early barge-in hint).
//!
//! Control: [`SttInput::EndOfUtterance`] sends `Finalize`; a `KeepAlive`
//! goes out whenever no audio has flowed for `keepalive_ms` (Deepgram closes
//! a stream idle for 10 s); dropping the session sends `CloseStream` and
//! waits briefly for Deepgram's closing `Metadata`. A zero-length binary
//! frame is never sent (Deepgram reads it as the old end-of-stream).

use std::time::Duration;

use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tracing::debug;

use super::ws::{self, Ws};
use super::{ProviderError, Stt, SttEvent, SttInput, SttParams, SttSession};
use crate::audio::g711;
use crate::config::DeepgramSttConfig;
use crate::pii::Secret;

const NAME: &str = "deepgram";

/// How long a closing stream waits for Deepgram's final results.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Deepgram live STT.
#[derive(Debug, Clone)]
pub struct DeepgramStt {
    cfg: DeepgramSttConfig,
    key: Secret<String>,
}

impl DeepgramStt {
    /// From `[providers.stt]` and `DEEPGRAM_API_KEY`.
    pub fn new(cfg: DeepgramSttConfig, key: Secret<String>) -> Self {
        DeepgramStt { cfg, key }
    }

    /// The listen URL with its query: model, encoding, endpointing, events.
    pub fn url(&self, params: &SttParams) -> String {
        let c = &self.cfg;
        let encoding = if params.sample_rate == 8000 {
            "mulaw"
        } else {
            "linear16"
        };
        let mut q: Vec<(&str, String)> = vec![
            ("model", c.model.clone()),
            ("encoding", encoding.into()),
            ("sample_rate", params.sample_rate.to_string()),
            ("channels", "1".into()),
            ("interim_results", "true".into()),
            ("endpointing", c.endpointing_ms.to_string()),
            ("utterance_end_ms", c.utterance_end_ms.to_string()),
            ("vad_events", "true".into()),
            ("smart_format", c.smart_format.to_string()),
            ("language", params.language.clone()),
        ];
        let term = if c.model.starts_with("nova-3") {
            "keyterm"
        } else {
            "keywords"
        };
        for k in &c.keyterms {
            q.push((term, k.clone()));
        }
        let query = serde_urlencoded::to_string(&q).unwrap_or_default();
        let sep = if c.base_url.contains('?') { '&' } else { '?' };
        format!("{}{sep}{query}", c.base_url)
    }
}

#[async_trait]
impl Stt for DeepgramStt {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn open(&self, params: SttParams) -> Result<SttSession, ProviderError> {
        let auth = format!("Token {}", self.key.expose());
        let ws = ws::connect(
            NAME,
            &self.url(&params),
            &[("authorization", &auth)],
            Duration::from_millis(self.cfg.connect_timeout_ms),
        )
        .await?;
        let (in_tx, in_rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::channel(64);
        let keepalive = Duration::from_millis(self.cfg.keepalive_ms);
        let mulaw = params.sample_rate == 8000;
        tokio::spawn(run(ws, in_rx, ev_tx, keepalive, mulaw));
        Ok(SttSession {
            input: in_tx,
            events: ev_rx,
        })
    }
}

/// Joins the final pieces of one utterance.
#[derive(Debug, Default)]
pub struct Joiner {
    pending: String,
}

impl Joiner {
    fn push(&mut self, text: &str) {
        if !self.pending.is_empty() {
            self.pending.push(' ');
        }
        self.pending.push_str(text);
    }

    /// Interpret one server message; `Err` for one that does not parse.
    pub fn handle(&mut self, text: &str) -> Result<Vec<SttEvent>, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
        let kind = v.get("type").and_then(|t| t.as_str()).ok_or("no `type`")?;
        let flag = |k: &str| v.get(k).and_then(|b| b.as_bool()).unwrap_or(false);
        let mut out = Vec::new();
        match kind {
            "Results" => {
                let transcript = v
                    .pointer("/channel/alternatives/0/transcript")
                    .and_then(|t| t.as_str())
                    .unwrap_or("")
                    .trim();
                if !flag("is_final") {
                    if !transcript.is_empty() {
                        let mut so_far = self.pending.clone();
                        if !so_far.is_empty() {
                            so_far.push(' ');
                        }
                        so_far.push_str(transcript);
                        out.push(SttEvent::Interim(so_far));
                    }
                    return Ok(out);
                }
                if !transcript.is_empty() {
                    self.push(transcript);
                }
                let answers_finalize = flag("from_finalize");
                if (flag("speech_final") && !self.pending.is_empty()) || answers_finalize {
                    out.push(SttEvent::Final {
                        text: std::mem::take(&mut self.pending),
                        end_of_utterance: true,
                    });
                }
            }
            "UtteranceEnd" if !self.pending.is_empty() => out.push(SttEvent::Final {
                text: std::mem::take(&mut self.pending),
                end_of_utterance: true,
            }),
            "SpeechStarted" => out.push(SttEvent::SpeechStarted),
            "Metadata" => {
                if let Some(id) = v.get("request_id").and_then(|i| i.as_str()) {
                    debug!(request_id = id, "deepgram stream metadata");
                }
            }
            // UtteranceEnd after a speech_final, and kinds newer than this
            // client: nothing to do.
            _ => {}
        }
        Ok(out)
    }
}

fn control(kind: &str) -> Message {
    Message::text(format!("{{\"type\":\"{kind}\"}}"))
}

async fn run(
    ws: Ws,
    mut input: mpsc::Receiver<SttInput>,
    events: mpsc::Sender<SttEvent>,
    keepalive: Duration,
    mulaw: bool,
) {
    let (mut sink, mut stream) = ws.split();
    let mut joiner = Joiner::default();
    let mut last_sent = Instant::now();
    let mut closing: Option<Instant> = None;
    let mut bytes = Vec::with_capacity(320);
    let fail = |e: ProviderError| {
        let events = events.clone();
        async move {
            let _ = events.send(SttEvent::Error(e)).await;
        }
    };
    loop {
        tokio::select! {
            inp = input.recv(), if closing.is_none() => {
                let sent = match inp {
                    Some(SttInput::Audio(pcm)) if !pcm.is_empty() => {
                        bytes.clear();
                        if mulaw {
                            g711::encode_ulaw_into(&pcm, &mut bytes);
                        } else {
                            bytes.extend(pcm.iter().flat_map(|s| s.to_le_bytes()));
                        }
                        sink.send(Message::binary(bytes.clone())).await
                    }
                    // Deepgram sends interims by itself, and what it was
                    // sent is gone.
                    Some(SttInput::Audio(_) | SttInput::Peek | SttInput::Forget) => Ok(()),
                    Some(SttInput::EndOfUtterance) => sink.send(control("Finalize")).await,
                    None => {
                        closing = Some(Instant::now() + CLOSE_GRACE);
                        sink.send(control("CloseStream")).await
                    }
                };
                if let Err(e) = sent {
                    if closing.is_none() {
                        fail(ws::read_error(NAME, e)).await;
                    }
                    return;
                }
                last_sent = Instant::now();
            }
            _ = tokio::time::sleep_until(last_sent + keepalive), if closing.is_none() => {
                if let Err(e) = sink.send(control("KeepAlive")).await {
                    fail(ws::read_error(NAME, e)).await;
                    return;
                }
                last_sent = Instant::now();
            }
            _ = async { tokio::time::sleep_until(closing.unwrap_or_else(Instant::now)).await }, if closing.is_some() => {
                let _ = sink.close().await;
                return;
            }
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(t))) => match joiner.handle(t.as_str()) {
                    Ok(evs) => {
                        for ev in evs {
                            if events.send(ev).await.is_err() && closing.is_none() {
                                // Nobody listens any more: end the stream.
                                closing = Some(Instant::now() + CLOSE_GRACE);
                                let _ = sink.send(control("CloseStream")).await;
                            }
                        }
                    }
                    Err(what) => {
                        fail(ws::malformed(NAME, what)).await;
                        let _ = sink.close().await;
                        return;
                    }
                },
                Some(Ok(Message::Close(frame))) => {
                    if closing.is_none() && !ws::is_normal_close(frame.as_ref()) {
                        fail(ws::close_error(NAME, frame.as_ref())).await;
                    } else if closing.is_none() {
                        fail(ProviderError::Transient {
                            provider: NAME,
                            message: "the server ended the stream".into(),
                            retry_after: None,
                        })
                        .await;
                    }
                    return;
                }
                Some(Ok(_)) => {} // binary, ping, pong: nothing for us
                Some(Err(e)) => {
                    if closing.is_none() {
                        fail(ws::read_error(NAME, e)).await;
                    }
                    return;
                }
                None => {
                    if closing.is_none() {
                        fail(ws::read_error(NAME, tokio_tungstenite::tungstenite::Error::ConnectionClosed)).await;
                    }
                    return;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(text: &str, is_final: bool, speech_final: bool) -> String {
        serde_json::json!({
            "type": "Results", "is_final": is_final, "speech_final": speech_final,
            "channel": {"alternatives": [{"transcript": text, "confidence": 0.9}]},
            "unknown_field": {"tolerated": true}
        })
        .to_string()
    }

    #[test]
    fn finals_are_joined_until_speech_final_and_empty_ones_skipped() {
        let mut j = Joiner::default();
        assert_eq!(
            j.handle(&results("I'd like", false, false)).unwrap(),
            [SttEvent::Interim("I'd like".into())]
        );
        assert!(j
            .handle(&results("I'd like a", true, false))
            .unwrap()
            .is_empty());
        assert_eq!(
            j.handle(&results("clean", false, false)).unwrap(),
            [SttEvent::Interim("I'd like a clean".into())]
        );
        assert!(j.handle(&results("", true, false)).unwrap().is_empty());
        assert_eq!(
            j.handle(&results("cleaning", true, true)).unwrap(),
            [SttEvent::Final {
                text: "I'd like a cleaning".into(),
                end_of_utterance: true
            }]
        );
        // The UtteranceEnd after it has nothing left to close.
        assert!(j
            .handle(r#"{"type":"UtteranceEnd","channel":[0,1],"last_word_end":4.5}"#)
            .unwrap()
            .is_empty());
        assert!(j.handle(&results("", true, true)).unwrap().is_empty());
    }

    #[test]
    fn utterance_end_closes_an_utterance_without_speech_final() {
        let mut j = Joiner::default();
        j.handle(&results("tuesday", true, false)).unwrap();
        assert_eq!(
            j.handle(r#"{"type":"UtteranceEnd","channel":[0,1]}"#)
                .unwrap(),
            [SttEvent::Final {
                text: "tuesday".into(),
                end_of_utterance: true
            }]
        );
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let mut j = Joiner::default();
        for bad in ["not json", "{}", "[1,2]", r#"{"type":7}"#] {
            assert!(j.handle(bad).is_err(), "{bad}");
        }
        // A Results without alternatives is an empty transcript.
        assert!(j
            .handle(r#"{"type":"Results","is_final":true,"channel":{}}"#)
            .unwrap()
            .is_empty());
        assert_eq!(
            j.handle(r#"{"type":"SpeechStarted","channel":[0,1],"timestamp":9.5}"#)
                .unwrap(),
            [SttEvent::SpeechStarted]
        );
    }

    #[test]
    fn the_url_asks_for_phone_audio_and_utterance_events() {
        let dg = DeepgramStt::new(DeepgramSttConfig::default(), Secret::new("k".into()));
        let url = dg.url(&SttParams {
            sample_rate: 8000,
            language: "en-GB".into(),
        });
        for part in [
            "model=nova-3",
            "encoding=mulaw",
            "sample_rate=8000",
            "interim_results=true",
            "endpointing=300",
            "utterance_end_ms=1000",
            "vad_events=true",
            "language=en-GB",
        ] {
            assert!(url.contains(part), "{url} lacks {part}");
        }
        assert!(!url.contains("Token"), "the key travels in a header: {url}");
    }
}
