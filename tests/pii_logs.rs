//! No phone number or name reaches the logs, whatever the call carries.
//!
//! In its own test binary: tracing caches per-callsite interest process-wide,
//! so a test running concurrently without a subscriber could switch off the
//! callsites this one captures.

mod support;

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use support::{quiet_config, start};

const START: &str = r#"{"event":"start","streamSid":"MZ1","start":{"streamSid":"MZ1","callSid":"CA1","accountSid":"AC1"}}"#;

/// A writer that keeps everything logged, for the PII check.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn phone_numbers_never_reach_the_logs() {
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let (addr, stop, task) = start(quiet_config()).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/media/twilio"))
        .await
        .unwrap();
    let start_msg = START.replace(
        r#""accountSid":"AC1""#,
        r#""accountSid":"AC1","customParameters":{"from":"+447700900123","caller_name":"Jane Doe"}"#,
    );
    ws.send(Message::text(start_msg)).await.unwrap();
    ws.send(Message::text("{broken")).await.unwrap();
    ws.send(Message::text(r#"{"event":"stop","streamSid":"MZ1"}"#))
        .await
        .unwrap();
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Close(_) = m {
            break;
        }
    }
    stop.send(()).unwrap();
    task.await.unwrap();
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("stream started"),
        "the call was logged: {text}"
    );
    assert!(text.contains("+…23"), "masked number present: {text}");
    for secret in ["7700900123", "Jane Doe"] {
        assert!(!text.contains(secret), "{secret} leaked into logs:\n{text}");
    }
}
