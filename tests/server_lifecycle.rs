//! The HTTP server in-process on port 0: health, readiness, metrics, the
//! call cap, malformed carrier input, and draining on shutdown.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use support::{quiet_config, start};

const START: &str = r#"{"event":"start","streamSid":"MZ1","start":{"streamSid":"MZ1","callSid":"CA1","accountSid":"AC1"}}"#;

async fn status(url: String) -> u16 {
    reqwest::get(url)
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let (addr, _stop, _task) = start(quiet_config()).await;
    assert_eq!(status(format!("http://{addr}/healthz")).await, 200);
    assert_eq!(status(format!("http://{addr}/readyz")).await, 200);
    let m = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "frontdesk_active_calls 0",
        "frontdesk_frames_in_total",
        "frontdesk_malformed_messages_total",
        "frontdesk_turn_latency_ms_bucket",
        "frontdesk_barge_in_latency_ms_bucket",
        "frontdesk_playout_underruns_total",
    ] {
        assert!(m.contains(name), "missing {name}");
    }
}

#[tokio::test]
async fn malformed_messages_are_counted_and_the_call_goes_on() {
    let (addr, _stop, _task) = start(quiet_config()).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/media/twilio"))
        .await
        .unwrap();
    ws.send(Message::text(START)).await.unwrap();
    for junk in [
        "{oops",
        r#"{"event":"media","streamSid":"MZ1","media":{"payload":"***"}}"#,
        r#"{"event":"nope"}"#,
    ] {
        ws.send(Message::text(junk)).await.unwrap();
    }
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    // Over server.max_message_bytes, but within the transport's margin: the
    // codec rejects it and the call goes on (far larger ones end the call
    // with 1009, see tests/ws_protocol.rs).
    let over = quiet_config().server.max_message_bytes + 1;
    ws.send(Message::text("x".repeat(over))).await.unwrap();
    // Still alive: a ping is answered.
    ws.send(Message::Ping(vec![7].into())).await.unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Pong(p) = m {
                return p.to_vec();
            }
        }
        vec![]
    })
    .await
    .unwrap();
    assert_eq!(pong, vec![7]);
    let m = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("frontdesk_malformed_messages_total 5"), "{m}");
    assert!(m.contains("frontdesk_active_calls 1"), "{m}");
}

#[tokio::test]
async fn calls_over_the_cap_are_refused() {
    let mut c = quiet_config();
    c.server.max_calls = 1;
    let (addr, _stop, _task) = start(c).await;
    let url = format!("ws://{addr}/media/twilio");
    // Only a started stream holds a permit (a silent upgrade does not).
    let (mut first, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    first.send(Message::text(START)).await.unwrap();
    let mut active = false;
    for _ in 0..100 {
        let m = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if m.contains("frontdesk_active_calls 1") {
            active = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(active, "the first call started");
    let second = tokio_tungstenite::connect_async(&url).await;
    let Err(tokio_tungstenite::tungstenite::Error::Http(resp)) = second else {
        panic!("second call was not refused")
    };
    assert_eq!(resp.status().as_u16(), 503);
}

#[tokio::test]
async fn shutdown_drains_live_calls_then_stops() {
    let mut c = quiet_config();
    c.server.drain_grace_s = 30;
    let (addr, stop, task) = start(c).await;
    let url = format!("ws://{addr}/media/twilio");
    let (mut live, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    live.send(Message::text(START)).await.unwrap();
    stop.send(()).unwrap();
    // Readiness goes false and new streams are refused while the call lives.
    let mut ready = 200;
    for _ in 0..100 {
        ready = status(format!("http://{addr}/readyz")).await;
        if ready == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ready, 503);
    assert!(tokio_tungstenite::connect_async(&url).await.is_err());
    assert!(!task.is_finished(), "the server waits for the live call");
    // The live call still works, then ends; the server then stops.
    live.send(Message::text(r#"{"event":"stop","streamSid":"MZ1"}"#))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn calls_still_live_after_the_grace_are_ended() {
    let mut c = quiet_config();
    c.server.drain_grace_s = 0;
    let (addr, stop, task) = start(c).await;
    let (mut live, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/media/twilio"))
        .await
        .unwrap();
    live.send(Message::text(START)).await.unwrap();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match live.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return true,
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(end, Ok(true), "the server closed the call");
}
