//! The streaming TTS clients — ElevenLabs stream-input, Cartesia contexts,
//! Deepgram Aura Speak/Flush/Clear — against mocks speaking each wire
//! protocol: μ-law 8 kHz asked for and passed through, text in by sentence,
//! audio out as it arrives, cancel seen by the server, and the fail-over
//! chain on a refused key or a stall.

#[path = "support/mock_ws.rs"]
mod mock_ws;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use frontdesk::audio::g711;
use frontdesk::config::{Config, Env};
use frontdesk::metrics::Metrics;
use frontdesk::providers::{ProviderError, Providers, TtsEvent, TtsInput, TtsParams, TtsSession};
use futures_util::{SinkExt, StreamExt};
use mock_ws::{json_of, Conn, Message};
use serde_json::{json, Value};
use tokio::sync::mpsc;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// μ-law audio the mocks "synthesise" for a sentence: its bytes, derived from the text.
fn audio_for(text: &str) -> Vec<u8> {
    text.bytes().cycle().take(400).collect()
}

fn pcm_of(bytes: &[u8]) -> Vec<i16> {
    let mut out = Vec::new();
    g711::decode_ulaw_into(bytes, &mut out);
    out
}

/// What a mock saw: text messages (as JSON), a close.
#[derive(Debug, PartialEq)]
enum Got {
    Json(Value),
    Closed,
}

fn env() -> Env {
    Env::from_pairs([
        ("ELEVENLABS_API_KEY", "xi-secret"),
        ("CARTESIA_API_KEY", "sk_car_secret"),
        ("DEEPGRAM_API_KEY", "dg-secret"),
    ])
}

fn providers(toml: &str, metrics: Arc<Metrics>) -> Providers {
    Providers::from_config(&Config::from_toml(toml).unwrap(), &env(), metrics).unwrap()
}

fn params() -> TtsParams {
    TtsParams {
        sample_rate: 8000,
        voice: None,
    }
}

async fn speak(s: &mut TtsSession, sentences: &[&str]) -> Result<Vec<i16>, ProviderError> {
    for t in sentences {
        s.input.send(TtsInput::Text(t.to_string())).await.unwrap();
    }
    s.input.send(TtsInput::End).await.unwrap();
    let mut pcm = vec![];
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), s.events.recv())
            .await
            .expect("TTS moves within 10 s")
            .expect("a Done or an error before the end");
        match ev? {
            TtsEvent::Audio(a) => pcm.extend(a),
            TtsEvent::Done => return Ok(pcm),
        }
    }
}

// ------------------------------------------------------------ ElevenLabs

async fn elevenlabs(mut ws: Conn, got: mpsc::UnboundedSender<Got>) {
    while let Some(Ok(m)) = ws.next().await {
        let Some(v) = json_of(&m) else {
            if matches!(m, Message::Close(_)) {
                break;
            }
            continue;
        };
        let _ = got.send(Got::Json(v.clone()));
        let text = v["text"].as_str().unwrap_or(" ");
        if text.is_empty() {
            // End of sequence: the last of the audio, isFinal, close.
            let _ = ws
                .send(Message::text(json!({"isFinal": true}).to_string()))
                .await;
            let _ = ws.close(None).await;
            break;
        }
        if !text.trim().is_empty() {
            let out = json!({"audio": B64.encode(audio_for(text.trim())), "isFinal": null,
                             "normalizedAlignment": {"chars": ["H"], "charStartTimesMs": [0], "charDurationsMs": [50]}});
            let _ = ws.send(Message::text(out.to_string())).await;
        }
    }
    let _ = got.send(Got::Closed);
}

#[tokio::test]
async fn elevenlabs_streams_ulaw_sentence_by_sentence_and_ends_with_eos() {
    let (tx, mut got) = mpsc::unbounded_channel();
    let mut mock = mock_ws::start(("xi-api-key", "xi-secret".into()), &[], move |ws| {
        elevenlabs(ws, tx.clone())
    })
    .await;
    let p = providers(
        &format!(
            "[providers.tts]\nkind = \"elevenlabs\"\nbase_url = \"{}/v1\"\nvoice_id = \"voice123\"\n",
            mock.base
        ),
        Arc::new(Metrics::default()),
    );
    let mut s = p.tts.open(params()).await.unwrap();
    let pcm = speak(&mut s, &["Hello there.", "How can I help?"])
        .await
        .unwrap();
    let mut want = pcm_of(&audio_for("Hello there."));
    want.extend(pcm_of(&audio_for("How can I help?")));
    assert_eq!(pcm, want);
    let hs = mock.handshakes.recv().await.unwrap();
    assert!(
        hs.uri
            .starts_with("/v1/text-to-speech/voice123/stream-input?"),
        "{}",
        hs.uri
    );
    assert!(
        hs.uri.contains("output_format=ulaw_8000") && hs.uri.contains("model_id=eleven_flash_v2_5"),
        "{}",
        hs.uri
    );
    let texts: Vec<String> = std::iter::from_fn(|| got.try_recv().ok())
        .filter_map(|g| match g {
            Got::Json(v) => v["text"].as_str().map(str::to_string),
            Got::Closed => None,
        })
        .collect();
    assert_eq!(texts, [" ", "Hello there. ", "How can I help? ", ""]);
}

#[tokio::test]
async fn elevenlabs_cancel_closes_the_socket_and_stalls_fail_over() {
    let (tx, mut got) = mpsc::unbounded_channel();
    let mock = mock_ws::start(("xi-api-key", "xi-secret".into()), &[], move |ws| {
        elevenlabs(ws, tx.clone())
    })
    .await;
    let p = providers(
        &format!(
            "[providers.tts]\nkind = \"elevenlabs\"\nbase_url = \"{}/v1\"\n",
            mock.base
        ),
        Arc::new(Metrics::default()),
    );
    let mut s = p.tts.open(params()).await.unwrap();
    s.input
        .send(TtsInput::Text("Hello there.".into()))
        .await
        .unwrap();
    assert!(matches!(
        s.events.recv().await,
        Some(Ok(TtsEvent::Audio(_)))
    ));
    drop(s); // barge-in
    loop {
        match tokio::time::timeout(Duration::from_secs(10), got.recv())
            .await
            .unwrap()
        {
            Some(Got::Closed) => break,
            Some(Got::Json(v)) => assert_ne!(v["text"], "", "no end of sequence on a cancel"),
            None => panic!("mock gone"),
        }
    }

    // A server that takes the text and never speaks.
    let silent = mock_ws::start(
        ("xi-api-key", "xi-secret".into()),
        &[],
        |mut ws: Conn| async move { while let Some(Ok(_)) = ws.next().await {} },
    )
    .await;
    let metrics = Arc::new(Metrics::default());
    let p = providers(
        &format!(
            "[providers.tts]\nchain = [\"elevenlabs\", \"scripted\"]\nstall_ms = 300\n\
             [providers.tts.elevenlabs]\nbase_url = \"{}/v1\"\n\
             [providers.tts.scripted]\nfirst_audio_ms = 0\n",
            silent.base
        ),
        metrics.clone(),
    )
    .for_call();
    let mut s = p.tts.open(params()).await.unwrap();
    let pcm = speak(&mut s, &["Hello there."]).await.unwrap();
    assert!(pcm.len() > 8000, "the scripted reply played: {}", pcm.len());
    assert_eq!(
        metrics.provider_switches("tts", "elevenlabs", "scripted"),
        1
    );
}

// ------------------------------------------------------------ Cartesia

async fn cartesia(mut ws: Conn, got: mpsc::UnboundedSender<Got>) {
    while let Some(Ok(m)) = ws.next().await {
        let Some(v) = json_of(&m) else {
            if matches!(m, Message::Close(_)) {
                break;
            }
            continue;
        };
        let _ = got.send(Got::Json(v.clone()));
        let ctx = v["context_id"].as_str().unwrap_or("").to_string();
        if v["cancel"] == true {
            continue;
        }
        let t = v["transcript"].as_str().unwrap_or("").trim().to_string();
        if !t.is_empty() {
            // Another context's late chunk first: must be dropped.
            let stray = json!({"type":"chunk","data":B64.encode([0u8; 80]),"context_id":"old","status_code":206,"done":false});
            let _ = ws.send(Message::text(stray.to_string())).await;
            let chunk = json!({"type":"chunk","data":B64.encode(audio_for(&t)),"step_time":12.3,
                               "context_id":ctx,"status_code":206,"done":false,"flush_id":1});
            let _ = ws.send(Message::text(chunk.to_string())).await;
        }
        if v["continue"] == false {
            let done = json!({"type":"done","context_id":ctx,"status_code":206,"done":true});
            let _ = ws.send(Message::text(done.to_string())).await;
        }
    }
    let _ = got.send(Got::Closed);
}

const CARTESIA_VOICE: &str = "a0e99841-438c-4a64-b679-ae501e7d6091";

#[tokio::test]
async fn cartesia_speaks_one_context_in_mulaw_and_cancels_by_context() {
    let (tx, mut got) = mpsc::unbounded_channel();
    let mut mock = mock_ws::start(
        ("x-api-key", "sk_car_secret".into()),
        &["cartesia-version"],
        move |ws| cartesia(ws, tx.clone()),
    )
    .await;
    let toml = format!(
        "[providers.tts]\nkind = \"cartesia\"\nbase_url = \"{}/tts/websocket\"\nvoice_id = \"{CARTESIA_VOICE}\"\n",
        mock.base
    );
    let p = providers(&toml, Arc::new(Metrics::default()));
    let mut s = p.tts.open(params()).await.unwrap();
    let pcm = speak(&mut s, &["Hi, front desk here."]).await.unwrap();
    assert_eq!(
        pcm,
        pcm_of(&audio_for("Hi, front desk here.")),
        "the stray context's chunk is dropped"
    );
    let hs = mock.handshakes.recv().await.unwrap();
    assert_eq!(hs.headers, [Some("2026-03-01".to_string())]);
    let Some(Got::Json(first)) = got.recv().await else {
        panic!()
    };
    assert_eq!(
        first["output_format"],
        json!({"container":"raw","encoding":"pcm_mulaw","sample_rate":8000})
    );
    assert_eq!(first["voice"], json!({"mode":"id","id":CARTESIA_VOICE}));
    assert_eq!(first["continue"], true);
    let ctx = first["context_id"].as_str().unwrap().to_string();
    let Some(Got::Json(last)) = got.recv().await else {
        panic!()
    };
    assert_eq!(
        (last["transcript"].as_str(), last["continue"].as_bool()),
        (Some(""), Some(false))
    );
    assert_eq!(last["context_id"], ctx.as_str());
    assert_eq!(
        got.recv().await,
        Some(Got::Closed),
        "the socket is closed after done"
    );

    // Cancel mid-reply: the server is told which context to drop.
    let mut s = p.tts.open(params()).await.unwrap();
    s.input
        .send(TtsInput::Text("Let me check that.".into()))
        .await
        .unwrap();
    assert!(matches!(
        s.events.recv().await,
        Some(Ok(TtsEvent::Audio(_)))
    ));
    let Some(Got::Json(req)) = got.recv().await else {
        panic!()
    };
    drop(s);
    let Some(Got::Json(cancel)) = tokio::time::timeout(Duration::from_secs(10), got.recv())
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        cancel,
        json!({"context_id": req["context_id"], "cancel": true})
    );
}

#[tokio::test]
async fn cartesia_refused_key_fails_over_and_errors_are_classed() {
    let mock = mock_ws::start(
        ("x-api-key", "another-key".into()),
        &[],
        |_ws: Conn| async {},
    )
    .await;
    let metrics = Arc::new(Metrics::default());
    let p = providers(
        &format!(
            "[providers.tts]\nchain = [\"cartesia\", \"scripted\"]\n\
             [providers.tts.cartesia]\nbase_url = \"{}/tts/websocket\"\nvoice_id = \"{CARTESIA_VOICE}\"\n",
            mock.base
        ),
        metrics.clone(),
    )
    .for_call();
    let mut s = p.tts.open(params()).await.unwrap();
    assert!(!speak(&mut s, &["Hello."]).await.unwrap().is_empty());
    assert_eq!(metrics.provider_switches("tts", "cartesia", "scripted"), 1);

    // An error message from an open socket keeps its class; garbage is malformed.
    let mock = mock_ws::start(("x-api-key", "sk_car_secret".into()), &[], |mut ws: Conn| async move {
        let mut n = 0;
        while let Some(Ok(m)) = ws.next().await {
            let Some(v) = json_of(&m) else { continue };
            n += 1;
            let reply = if n == 1 {
                json!({"type":"error","context_id":v["context_id"],"status_code":400,"done":true,
                       "title":"Invalid voice","message":"voice not found","error_code":"voice_not_found"})
                .to_string()
            } else {
                "\u{1}garbage".to_string()
            };
            let _ = ws.send(Message::text(reply)).await;
        }
    })
    .await;
    let p = providers(
        &format!(
            "[providers.tts]\nkind = \"cartesia\"\nbase_url = \"{}/tts/websocket\"\nvoice_id = \"{CARTESIA_VOICE}\"\n",
            mock.base
        ),
        Arc::new(Metrics::default()),
    );
    let mut s = p.tts.open(params()).await.unwrap();
    let e = speak(&mut s, &["Hello."]).await.unwrap_err();
    assert!(
        !e.is_transient() && e.to_string().contains("voice not found"),
        "{e}"
    );
}

// ------------------------------------------------------------ Deepgram Aura

async fn aura(mut ws: Conn, got: mpsc::UnboundedSender<Got>) {
    let mut text = String::new();
    let mut seq = 0;
    while let Some(Ok(m)) = ws.next().await {
        let Some(v) = json_of(&m) else {
            if matches!(m, Message::Close(_)) {
                break;
            }
            continue;
        };
        let _ = got.send(Got::Json(v.clone()));
        match v["type"].as_str() {
            Some("Speak") => text.push_str(v["text"].as_str().unwrap_or("")),
            Some("Flush") => {
                let _ = ws.send(Message::binary(audio_for(&text))).await;
                text.clear();
                let _ = ws
                    .send(Message::text(
                        json!({"type":"Flushed","sequence_id":seq}).to_string(),
                    ))
                    .await;
                seq += 1;
            }
            Some("Clear") => {
                let _ = ws
                    .send(Message::text(
                        json!({"type":"Cleared","sequence_id":seq}).to_string(),
                    ))
                    .await;
            }
            Some("Close") => {
                let _ = ws.close(None).await;
            }
            _ => {}
        }
    }
    let _ = got.send(Got::Closed);
}

#[tokio::test]
async fn aura_speaks_flushes_and_clears_on_cancel() {
    let (tx, mut got) = mpsc::unbounded_channel();
    let mut mock = mock_ws::start(
        ("authorization", "Token dg-secret".into()),
        &[],
        move |ws| aura(ws, tx.clone()),
    )
    .await;
    let p = providers(
        &format!(
            "[providers.tts]\nkind = \"deepgram_aura\"\nbase_url = \"{}/v1/speak\"\n",
            mock.base
        ),
        Arc::new(Metrics::default()),
    );
    let mut s = p.tts.open(params()).await.unwrap();
    let pcm = speak(&mut s, &["Hello there.", "How can I help?"])
        .await
        .unwrap();
    let mut want = pcm_of(&audio_for("Hello there."));
    want.extend(pcm_of(&audio_for("How can I help?")));
    assert_eq!(pcm, want);
    let hs = mock.handshakes.recv().await.unwrap();
    assert!(
        hs.uri.contains("model=aura-2-thalia-en")
            && hs.uri.contains("encoding=mulaw")
            && hs.uri.contains("sample_rate=8000"),
        "{}",
        hs.uri
    );
    let mut kinds = vec![];
    while let Some(Got::Json(v)) = got.recv().await {
        kinds.push(v["type"].as_str().unwrap_or("").to_string());
    }
    assert_eq!(kinds, ["Speak", "Flush", "Speak", "Flush", "Close"]);

    let mut s = p.tts.open(params()).await.unwrap();
    s.input
        .send(TtsInput::Text("One moment.".into()))
        .await
        .unwrap();
    assert!(matches!(
        s.events.recv().await,
        Some(Ok(TtsEvent::Audio(_)))
    ));
    drop(s);
    let mut seen = vec![];
    while let Some(Got::Json(v)) = tokio::time::timeout(Duration::from_secs(10), got.recv())
        .await
        .unwrap()
    {
        seen.push(v["type"].as_str().unwrap_or("").to_string());
    }
    assert_eq!(seen, ["Speak", "Flush", "Clear", "Close"]);
}

#[tokio::test]
async fn aura_refused_key_is_permanent_and_garbage_is_malformed() {
    let mock = mock_ws::start(
        ("authorization", "Token someone-else".into()),
        &[],
        |_ws: Conn| async {},
    )
    .await;
    let p = providers(
        &format!(
            "[providers.tts]\nkind = \"deepgram_aura\"\nbase_url = \"{}/v1/speak\"\n",
            mock.base
        ),
        Arc::new(Metrics::default()),
    );
    let e = p.tts.open(params()).await.unwrap_err();
    assert!(!e.is_transient() && e.to_string().contains("401"), "{e}");
    assert!(!e.to_string().contains("dg-secret"));

    let mock = mock_ws::start(
        ("authorization", "Token dg-secret".into()),
        &[],
        |mut ws: Conn| async move {
            while let Some(Ok(_)) = ws.next().await {
                let _ = ws.send(Message::text("[1, 2")).await;
            }
        },
    )
    .await;
    let p = providers(
        &format!(
            "[providers.tts]\nkind = \"deepgram_aura\"\nbase_url = \"{}/v1/speak\"\n",
            mock.base
        ),
        Arc::new(Metrics::default()),
    );
    let mut s = p.tts.open(params()).await.unwrap();
    let e = speak(&mut s, &["Hello."]).await.unwrap_err();
    assert!(e.to_string().contains("malformed"), "{e}");
}
