//! WebSocket-level rejections (not carrier JSON, but frames the transport
//! itself refuses) end the call with the right close code, and are counted.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

use support::{quiet_config, start};

const START: &str = r#"{"event":"start","streamSid":"MZ1","start":{"streamSid":"MZ1","callSid":"CA1","accountSid":"AC1"}}"#;

async fn malformed_total(addr: &str) -> u64 {
    let m = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    m.lines()
        .find_map(|l| l.strip_prefix("frontdesk_malformed_messages_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no malformed counter in {m}"))
}

/// Start a call, send `bad`, and return the close code the server sent.
async fn close_code_after(addr: &str, bad: Message) -> Option<u16> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/media/twilio"))
        .await
        .unwrap();
    ws.send(Message::text(START)).await.unwrap();
    ws.send(bad).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                // The connection dropped without a close frame.
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("the server neither closed nor dropped the call")
}

#[tokio::test]
async fn transport_rejections_send_a_close_code_and_are_counted() {
    let config = quiet_config();
    let max = config.server.max_message_bytes;
    let (addr, _stop, _task) = start(config).await;
    let cases = [
        (
            "a text frame that is not UTF-8",
            Message::Frame(Frame::message(
                vec![b'{', 0xff, 0xfe, b'}'],
                OpCode::Data(Data::Text),
                true,
            )),
            1007,
        ),
        (
            "a message far over server.max_message_bytes",
            Message::text("x".repeat(max * 2)),
            1009,
        ),
        (
            "a reserved data opcode",
            Message::Frame(Frame::message(
                b"hello".to_vec(),
                OpCode::Data(Data::Reserved(3)),
                true,
            )),
            1002,
        ),
    ];
    for (what, bad, want) in cases {
        let before = malformed_total(&addr).await;
        let code = close_code_after(&addr, bad).await;
        assert_eq!(code, Some(want), "{what}: close code");
        assert_eq!(
            malformed_total(&addr).await,
            before + 1,
            "{what}: counted as malformed"
        );
    }
}
