//! Connections that never finish a request head are closed after
//! `server.header_timeout_ms`; ones that do are served, and WebSocket calls
//! outlive the bound.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use support::{quiet_config, start};

/// Small, so the test is quick; the assertions are relative to it.
const HEADER_TIMEOUT: Duration = Duration::from_millis(300);

/// However slow this machine is, the server must give up well before this.
const CLOSED_BY: Duration = Duration::from_secs(10);

fn config() -> frontdesk::config::Config {
    let mut c = quiet_config();
    c.server.header_timeout_ms = HEADER_TIMEOUT.as_millis() as u32;
    c
}

/// Read until the server closes the connection (EOF or reset); how long it took.
async fn time_until_closed(tcp: &mut TcpStream, started: Instant) -> Duration {
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(CLOSED_BY, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server still held the connection after {CLOSED_BY:?} \
         (header timeout {HEADER_TIMEOUT:?})"
    );
    started.elapsed()
}

#[tokio::test]
async fn a_half_sent_request_line_is_disconnected_after_the_header_timeout() {
    let (addr, _stop, _task) = start(config()).await;
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    let started = Instant::now();
    tcp.write_all(b"GET /media/tw").await.unwrap();
    let took = time_until_closed(&mut tcp, started).await;
    assert!(
        took >= HEADER_TIMEOUT / 2,
        "closed after {took:?}: before the client had its {HEADER_TIMEOUT:?}"
    );
}

#[tokio::test]
async fn a_silent_connection_is_disconnected_after_the_header_timeout() {
    let (addr, _stop, _task) = start(config()).await;
    let started = Instant::now();
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    let took = time_until_closed(&mut tcp, started).await;
    assert!(took >= HEADER_TIMEOUT / 2, "closed after {took:?}");
}

#[tokio::test]
async fn complete_requests_and_long_calls_are_unaffected() {
    let (addr, _stop, _task) = start(config()).await;
    let body = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "ok\n");

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/media/twilio"))
        .await
        .unwrap();
    // Let several header timeouts pass: an upgraded call is not a request head.
    tokio::time::sleep(HEADER_TIMEOUT * 4).await;
    ws.send(Message::Ping(vec![9].into())).await.unwrap();
    let pong = tokio::time::timeout(CLOSED_BY, async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Pong(p) = m {
                return p.to_vec();
            }
        }
        vec![]
    })
    .await
    .unwrap();
    assert_eq!(pong, vec![9], "the call is still up");
}
