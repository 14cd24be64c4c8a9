//! The Deepgram live STT client against a mock that speaks Deepgram's
//! listen protocol: query, `Token` auth, μ-law bytes as sent by the
//! carrier, interim → final → `speech_final` → `UtteranceEnd`, Finalize,
//! KeepAlive, CloseStream → Metadata → close 1000; and the fail-over chain
//! when the key is refused or the stream stalls.

#[path = "support/mock_ws.rs"]
mod mock_ws;

use std::sync::Arc;
use std::time::Duration;

use frontdesk::audio::g711;
use frontdesk::config::{Config, Env};
use frontdesk::metrics::Metrics;
use frontdesk::providers::{ProviderError, Providers, SttEvent, SttInput, SttParams, SttSession};
use futures_util::{SinkExt, StreamExt};
use mock_ws::{json_of, Conn, Message};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

const KEY: &str = "dg-secret-key";

fn params() -> SttParams {
    SttParams {
        sample_rate: 8000,
        language: "en-GB".into(),
    }
}

fn results(text: &str, is_final: bool, speech_final: bool, from_finalize: bool) -> Message {
    Message::text(
        json!({"type": "Results", "channel_index": [0, 1], "start": 0.0, "duration": 1.0,
               "is_final": is_final, "speech_final": speech_final, "from_finalize": from_finalize,
               "channel": {"alternatives": [{"transcript": text, "confidence": 0.98, "words": []}]},
               "metadata": {"request_id": "r1", "model_info": {"name": "general-nova-3"}}})
        .to_string(),
    )
}

/// What the mock received, for the test to check.
#[derive(Debug, PartialEq)]
enum Got {
    Audio(Vec<u8>),
    Control(String),
    Closed,
}

/// A Deepgram that transcribes "I'd like a cleaning" once 200 ms of audio
/// has arrived, answers Finalize, and ends on CloseStream.
async fn deepgram(mut ws: Conn, got: mpsc::UnboundedSender<Got>) {
    let mut bytes = 0usize;
    let mut spoke = false;
    while let Some(Ok(m)) = ws.next().await {
        match &m {
            Message::Binary(b) => {
                bytes += b.len();
                let _ = got.send(Got::Audio(b.to_vec()));
                if bytes >= 1600 && !spoke {
                    spoke = true;
                    for r in [
                        Message::text(
                            json!({"type":"SpeechStarted","channel":[0,1],"timestamp":0.1})
                                .to_string(),
                        ),
                        results("I'd", false, false, false),
                        results("I'd like a", true, false, false),
                        results("clean", false, false, false),
                        results("", true, false, false),
                        results("cleaning", true, true, false),
                        Message::text(
                            json!({"type":"UtteranceEnd","channel":[0,1],"last_word_end":1.2})
                                .to_string(),
                        ),
                    ] {
                        ws.send(r).await.unwrap();
                    }
                }
            }
            Message::Text(_) => {
                let kind = json_of(&m).unwrap()["type"].as_str().unwrap().to_string();
                let _ = got.send(Got::Control(kind.clone()));
                match kind.as_str() {
                    "Finalize" => ws.send(results("", true, false, true)).await.unwrap(),
                    "CloseStream" => {
                        let meta = json!({"type":"Metadata","transaction_key":"deprecated",
                                          "request_id":"r1","duration":1.0,"channels":1});
                        ws.send(Message::text(meta.to_string())).await.unwrap();
                        let _ = ws.close(None).await;
                    }
                    _ => {}
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    let _ = got.send(Got::Closed);
}

fn config(base: &str, extra: &str) -> Config {
    Config::from_toml(&format!(
        "[providers.stt]\nkind = \"deepgram\"\nbase_url = \"{base}/v1/listen\"\n{extra}"
    ))
    .unwrap()
}

fn open_providers(cfg: &Config, key: &str, metrics: Arc<Metrics>) -> Providers {
    let env = Env::from_pairs([("DEEPGRAM_API_KEY", key)]);
    Providers::from_config(cfg, &env, metrics).unwrap()
}

async fn next(s: &mut SttSession) -> SttEvent {
    tokio::time::timeout(Duration::from_secs(10), s.events.recv())
        .await
        .expect("an event within 10 s")
        .expect("the session is open")
}

#[tokio::test]
async fn streams_carrier_bytes_and_joins_finals_into_one_utterance() {
    let (got_tx, mut got) = mpsc::unbounded_channel();
    let mut mock = mock_ws::start(("authorization", format!("Token {KEY}")), &[], move |ws| {
        deepgram(ws, got_tx.clone())
    })
    .await;
    // No KeepAlive in this test's span, however slow the machine.
    let p = open_providers(
        &config(&mock.base, "keepalive_ms = 9000\n"),
        KEY,
        Arc::new(Metrics::default()),
    );
    assert!(p.stt.wants_audio());
    let mut s = p.stt.open(params()).await.unwrap();
    let hs = mock.handshakes.recv().await.unwrap();
    assert!(!hs.refused);
    for q in [
        "/v1/listen?",
        "model=nova-3",
        "encoding=mulaw",
        "sample_rate=8000",
        "interim_results=true",
        "endpointing=300",
        "utterance_end_ms=1000",
        "vad_events=true",
    ] {
        assert!(hs.uri.contains(q), "{} lacks {q}", hs.uri);
    }
    // Ten 20 ms carrier frames, decoded the way the call decodes them.
    let carrier: Vec<u8> = (0..1600u32).map(|i| (i * 7 % 251) as u8).collect();
    for frame in carrier.chunks(160) {
        let mut pcm = Vec::new();
        g711::decode_ulaw_into(frame, &mut pcm);
        s.input.send(SttInput::Audio(pcm.into())).await.unwrap();
    }
    let mut events = vec![];
    loop {
        let ev = next(&mut s).await;
        let end = matches!(ev, SttEvent::Final { .. });
        events.push(ev);
        if end {
            break;
        }
    }
    assert_eq!(
        events,
        [
            SttEvent::SpeechStarted,
            SttEvent::Interim("I'd".into()),
            SttEvent::Interim("I'd like a clean".into()),
            SttEvent::Final {
                text: "I'd like a cleaning".into(),
                end_of_utterance: true
            },
        ]
    );
    // The bytes Deepgram got are the carrier's own, nothing transcoded —
    // except μ-law's "negative zero" 0x7F, which decodes to the same
    // sample as 0xFF and so comes back as 0xFF (the same sound).
    let carrier: Vec<u8> = carrier
        .iter()
        .map(|&b| if b == 0x7F { 0xFF } else { b })
        .collect();
    let mut sent = Vec::new();
    while sent.len() < carrier.len() {
        match got.recv().await.unwrap() {
            Got::Audio(b) => sent.extend(b),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(sent, carrier);
    // Our end of utterance → Finalize → its answer closes an (empty) utterance.
    s.input.send(SttInput::EndOfUtterance).await.unwrap();
    assert_eq!(got.recv().await.unwrap(), Got::Control("Finalize".into()));
    assert_eq!(
        next(&mut s).await,
        SttEvent::Final {
            text: String::new(),
            end_of_utterance: true
        }
    );
    // Dropping the session ends the stream the way Deepgram asks.
    drop(s);
    assert_eq!(
        got.recv().await.unwrap(),
        Got::Control("CloseStream".into())
    );
    assert_eq!(got.recv().await.unwrap(), Got::Closed);
}

#[tokio::test]
async fn keepalive_goes_out_while_no_audio_flows() {
    let (got_tx, mut got) = mpsc::unbounded_channel();
    let mock = mock_ws::start(("authorization", format!("Token {KEY}")), &[], move |ws| {
        deepgram(ws, got_tx.clone())
    })
    .await;
    let p = open_providers(
        &config(&mock.base, "keepalive_ms = 500\n"),
        KEY,
        Arc::new(Metrics::default()),
    );
    let s = p.stt.open(params()).await.unwrap();
    // Nothing sent: the first thing Deepgram hears is a KeepAlive, then another.
    assert_eq!(got.recv().await.unwrap(), Got::Control("KeepAlive".into()));
    assert_eq!(got.recv().await.unwrap(), Got::Control("KeepAlive".into()));
    drop(s);
}

#[tokio::test]
async fn a_refused_key_is_permanent_and_the_chain_moves_on() {
    let (got_tx, _got) = mpsc::unbounded_channel();
    let mut mock = mock_ws::start(("authorization", format!("Token {KEY}")), &[], move |ws| {
        deepgram(ws, got_tx.clone())
    })
    .await;
    let p = open_providers(
        &config(&mock.base, ""),
        "wrong",
        Arc::new(Metrics::default()),
    );
    let e = p.stt.open(params()).await.unwrap_err();
    assert!(!e.is_transient(), "{e}");
    assert!(e.to_string().contains("401"), "{e}");
    assert!(!e.to_string().contains("wrong"), "no key in errors: {e}");
    assert!(mock.handshakes.recv().await.unwrap().refused);

    let metrics = Arc::new(Metrics::default());
    let cfg = Config::from_toml(&format!(
        "[providers.stt]\nchain = [\"deepgram\", \"scripted\"]\n\
         [providers.stt.deepgram]\nbase_url = \"{}/v1/listen\"\n\
         [providers.stt.scripted]\nfinal_after_ms = 0\ntranscripts = [\"from the fallback\"]\n",
        mock.base
    ))
    .unwrap();
    let p = open_providers(&cfg, "wrong", metrics.clone()).for_call();
    let mut s = p.stt.open(params()).await.unwrap();
    s.input.send(SttInput::EndOfUtterance).await.unwrap();
    assert_eq!(
        next(&mut s).await,
        SttEvent::Final {
            text: "from the fallback".into(),
            end_of_utterance: true
        }
    );
    assert_eq!(metrics.provider_switches("stt", "deepgram", "scripted"), 1);
    assert!(metrics.render().contains(
        "frontdesk_provider_switches_total{role=\"stt\",from=\"deepgram\",to=\"scripted\"} 1"
    ));
}

#[tokio::test]
async fn a_stalled_stream_moves_to_the_next_member_after_the_bound() {
    // Accepts the audio and the Finalize, never answers.
    let (fin_tx, mut fin) = mpsc::unbounded_channel::<()>();
    let mock = mock_ws::start(
        ("authorization", format!("Token {KEY}")),
        &[],
        move |mut ws: Conn| {
            let fin_tx = fin_tx.clone();
            async move {
                while let Some(Ok(m)) = ws.next().await {
                    if json_of(&m).is_some_and(|v| v["type"] == "Finalize") {
                        let _ = fin_tx.send(());
                    }
                }
            }
        },
    )
    .await;
    let metrics = Arc::new(Metrics::default());
    let cfg = Config::from_toml(&format!(
        "[providers.stt]\nchain = [\"deepgram\", \"scripted\"]\nstall_ms = 300\n\
         [providers.stt.deepgram]\nbase_url = \"{}/v1/listen\"\n\
         [providers.stt.scripted]\nfinal_after_ms = 0\ntranscripts = [\"late but here\"]\n",
        mock.base
    ))
    .unwrap();
    let p = open_providers(&cfg, KEY, metrics.clone()).for_call();
    let mut s = p.stt.open(params()).await.unwrap();
    s.input
        .send(SttInput::Audio(vec![0i16; 160].into()))
        .await
        .unwrap();
    s.input.send(SttInput::EndOfUtterance).await.unwrap();
    fin.recv().await.unwrap();
    let t0 = std::time::Instant::now();
    assert_eq!(
        next(&mut s).await,
        SttEvent::Final {
            text: "late but here".into(),
            end_of_utterance: true
        }
    );
    // No more than the bound (plus scheduling) of pause.
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(metrics.provider_switches("stt", "deepgram", "scripted"), 1);
}

#[tokio::test]
async fn malformed_messages_and_abnormal_closes_are_clear_errors() {
    let mock = mock_ws::start(
        ("authorization", format!("Token {KEY}")),
        &[],
        |mut ws: Conn| async move {
            let _ = ws.send(Message::text("{\"type\": \"Results\", oops")).await;
            while let Some(Ok(_)) = ws.next().await {}
        },
    )
    .await;
    let p = open_providers(&config(&mock.base, ""), KEY, Arc::new(Metrics::default()));
    let mut s = p.stt.open(params()).await.unwrap();
    match next(&mut s).await {
        SttEvent::Error(e @ ProviderError::Permanent { .. }) => {
            assert!(e.to_string().contains("malformed"), "{e}")
        }
        other => panic!("{other:?}"),
    }

    let mock = mock_ws::start(
        ("authorization", format!("Token {KEY}")),
        &[],
        |mut ws: Conn| async move {
            let _ = ws
                .close(Some(CloseFrame {
                    code: CloseCode::Error,
                    reason: "NET-0001".into(),
                }))
                .await;
        },
    )
    .await;
    let p = open_providers(&config(&mock.base, ""), KEY, Arc::new(Metrics::default()));
    let mut s = p.stt.open(params()).await.unwrap();
    match next(&mut s).await {
        SttEvent::Error(e) => {
            assert!(e.is_transient(), "{e}");
            assert!(e.to_string().contains("1011 NET-0001"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}
