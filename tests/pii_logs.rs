//! No phone number or name reaches the logs, whatever the call carries, at
//! any `RUST_LOG` level.
//!
//! This runs the real `frontdesk serve` binary and reads its stderr, so it
//! sees everything the process logs: our own events, and the `log` records of
//! third-party crates (the WebSocket library logs every raw message at trace)
//! that tracing-subscriber forwards. An in-process tracing layer would see
//! neither the binary's subscriber set-up nor its filter.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const NUMBER: &str = "+447700900123";
const NAME: &str = "Jane Doe";

fn start_msg() -> String {
    format!(
        r#"{{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{{"streamSid":"MZ1","callSid":"CA1","accountSid":"AC1","tracks":["inbound"],"customParameters":{{"From":"{NUMBER}","CallerName":"{NAME}"}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
    )
}

#[tokio::test]
async fn phone_numbers_and_names_never_reach_the_logs_even_at_trace() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("frontdesk.toml");
    std::fs::write(
        &config,
        "[server]\ndrain_grace_s = 1\n[storage]\nurl = \"sqlite::memory:\"\n[call]\ngreeting = \"\"\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_frontdesk"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        // Everything, and the WebSocket library's raw-message target by name.
        .env(
            "RUST_LOG",
            "trace,tungstenite::protocol=trace,tokio_tungstenite=trace",
        )
        .env_remove("FRONTDESK_DATABASE_URL")
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain stderr as it comes, so a chatty trace log can never fill the pipe.
    let mut stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stderr.read_to_end(&mut all);
        all
    });
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/media/twilio"))
        .await
        .unwrap();
    for msg in [
        r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#.to_string(),
        start_msg(),
        format!(r#"{{"event":"dtmf","streamSid":"MZ1","dtmf":{{"digit":"{NUMBER}"}}}}"#),
        format!(r#"{{"event":"{NUMBER}","streamSid":"MZ1"}}"#),
        format!(r#"{{"event":"{NAME}","streamSid":"MZ1"}}"#),
        r#"{"event":"stop","streamSid":"MZ1"}"#.to_string(),
    ] {
        ws.send(Message::text(msg)).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Close(_) = m {
                break;
            }
        }
    })
    .await
    .expect("the call ended");
    drop(ws);

    // SIGTERM, as in production: the server drains and exits by itself.
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let exited = (0..200).find_map(|_| {
        let s = child.try_wait().unwrap();
        if s.is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    });
    if exited.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let text = String::from_utf8_lossy(&logs.join().unwrap()).into_owned();
    assert!(
        exited.is_some(),
        "the server did not exit on SIGTERM:\n{text}"
    );

    // The log is real: the call, its rejections and its shutdown are in it.
    for expected in ["stream started", "rejected carrier message", "drained"] {
        assert!(text.contains(expected), "{expected:?} not logged:\n{text}");
    }
    assert!(text.contains("+…23"), "masked number present:\n{text}");
    for secret in [NUMBER, "7700900123", NAME] {
        assert!(!text.contains(secret), "{secret} leaked into logs:\n{text}");
    }
    assert!(
        !text.contains("\x1b["),
        "ANSI colour codes in a log that is not a terminal:\n{text}"
    );
}
