//! Media WebSockets that upgrade and then never send `start` must not hold
//! call permits: with `max_calls = 3`, five silent upgrades neither count as
//! active calls nor lock out a real caller, and each is closed (1008) once
//! `server.start_timeout_ms` has passed.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

async fn metric(addr: &str, name: &str) -> u64 {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_upgrades_hold_no_permit_and_are_closed_after_the_start_timeout() {
    let mut cfg = support::quiet_config();
    cfg.server.max_calls = 3;
    cfg.server.start_timeout_ms = 400;
    cfg.call.greeting = "Hello.".into();
    cfg.providers.tts = frontdesk::config::TtsConfig::Scripted(Default::default());
    let (addr, stop, task) = support::start(cfg).await;
    let url = format!("ws://{addr}/media/twilio");

    let mut silent = Vec::new();
    for _ in 0..5 {
        let (ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("a silent upgrade is accepted");
        silent.push(ws);
    }
    assert_eq!(metric(&addr, "frontdesk_active_calls").await, 0);

    // A real caller still gets in, and is greeted.
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("a real caller is not locked out");
    let sid = "MZsilent000000000000000000000000001";
    ws.send(Message::text(format!(
        r#"{{"event":"start","streamSid":"{sid}","start":{{"accountSid":"AC1","streamSid":"{sid}","callSid":"CAsilent","customParameters":{{}}}}}}"#
    )))
    .await
    .unwrap();
    let greeted = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(m)) = ws.next().await {
            if m.to_text().is_ok_and(|t| t.contains("\"media\"")) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(greeted, "the real caller heard the greeting");
    assert_eq!(metric(&addr, "frontdesk_active_calls").await, 1);

    // Each silent one is closed with a policy close code after the timeout.
    for mut ws in silent {
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(m) = ws.next().await {
                match m {
                    Ok(Message::Close(Some(f))) => return Some(f.code),
                    Ok(_) => {}
                    Err(_) => return None,
                }
            }
            None
        })
        .await
        .expect("closed within the bound");
        assert_eq!(closed, Some(CloseCode::Policy));
    }
    let _ = ws.close(None).await;
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}
