//! A tiny Twilio-speaking server that answers each utterance with a
//! script of `media`/`mark` messages: the load generator's test peer
//! (tests/loadtest.rs) and a stand-alone reply server for manual runs
//! (examples/reply_server.rs).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use frontdesk::audio::g711::ulaw_to_linear;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpListener;
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::Message;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// What the test server sends once it has detected the end of an utterance.
#[derive(Debug, Clone)]
pub enum Out {
    /// A `media` message of this many 20 ms frames.
    Media(usize),
    /// A `mark`.
    Mark(&'static str),
}

/// A reply: each item is sent `gap` after the previous one was actually sent
/// (the first `gap` counts from the detected end of speech), so a scheduling
/// hiccup can only stretch the gaps, never merge two sends.
pub type Script = Vec<(Duration, Out)>;

/// Energy of a frame below this (RMS) is quiet.
const QUIET_RMS: f64 = 1000.0;
/// Quiet frames that end an utterance: 200 ms.
const END_FRAMES: u32 = 10;

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Start the server; returns its URL and the list of wire problems it saw.
pub async fn server(script: Script) -> (String, Arc<Mutex<Vec<String>>>) {
    server_on("127.0.0.1:0", script, false).await
}

/// Start a server on `addr`; with `clear_on_barge_in`, 200 ms of caller
/// speech while a reply is pending or playing gets a `clear`.
pub async fn server_on(
    addr: &str,
    script: Script,
    clear_on_barge_in: bool,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => panic!("bind: {e}"),
    };
    let url = match listener.local_addr() {
        Ok(a) => format!("ws://{a}/media/twilio"),
        Err(e) => panic!("local_addr: {e}"),
    };
    let problems = Arc::new(Mutex::new(Vec::new()));
    let p = problems.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(connection(
                sock,
                script.clone(),
                clear_on_barge_in,
                p.clone(),
            ));
        }
    });
    (url, problems)
}

async fn connection(
    sock: tokio::net::TcpStream,
    script: Script,
    clear_on_barge_in: bool,
    problems: Arc<Mutex<Vec<String>>>,
) {
    let problem = |s: String| {
        if let Ok(mut p) = problems.lock() {
            p.push(s);
        }
    };
    let mut ws = match tokio_tungstenite::accept_async(sock).await {
        Ok(ws) => ws,
        Err(e) => return problem(format!("handshake: {e}")),
    };
    let mut sid: Option<String> = None;
    let mut seen = 0u64;
    let mut last_chunk = 0u64;
    let mut speaking = false;
    let mut quiet = 0u32;
    let mut loud = 0u32;
    let mut playing_until = Instant::now();
    let mut pending: VecDeque<(Duration, Out)> = VecDeque::new();
    let mut next_at: Option<Instant> = None;
    let mut stopped = false;
    loop {
        let wake = next_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            m = ws.next() => {
                let text = match m {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => { problem(format!("read: {e}")); break }
                };
                let v: serde_json::Value = match serde_json::from_str(text.as_str()) {
                    Ok(v) => v,
                    Err(e) => { problem(format!("bad json {e}")); continue }
                };
                seen += 1;
                match (seen, v["event"].as_str()) {
                    (1, Some("connected")) => {}
                    (1, e) => problem(format!("first event {e:?}")),
                    (2, Some("start")) => {
                        sid = v["start"]["streamSid"].as_str().map(str::to_string);
                        if v["start"]["mediaFormat"]["encoding"] != "audio/x-mulaw"
                            || v["start"]["customParameters"]["from"].as_str().is_none()
                        {
                            problem(format!("bad start {v}"));
                        }
                    }
                    (2, e) => problem(format!("second event {e:?}")),
                    (_, Some("media")) => {
                        if v["streamSid"].as_str() != sid.as_deref() {
                            problem("media with wrong streamSid".into());
                        }
                        let chunk: u64 = v["media"]["chunk"].as_str().and_then(|c| c.parse().ok()).unwrap_or(0);
                        let ts: u64 = v["media"]["timestamp"].as_str().and_then(|c| c.parse().ok()).unwrap_or(1);
                        if chunk != last_chunk + 1 || ts != (chunk - 1) * 20 {
                            problem(format!("chunk {chunk} ts {ts} after {last_chunk}"));
                        }
                        last_chunk = chunk;
                        let bytes = B64.decode(v["media"]["payload"].as_str().unwrap_or("")).unwrap_or_default();
                        if bytes.len() != 160 {
                            problem(format!("frame of {} bytes", bytes.len()));
                        }
                        let energy: f64 = bytes.iter().map(|&b| f64::from(ulaw_to_linear(b)).powi(2)).sum::<f64>();
                        let rms = (energy / bytes.len().max(1) as f64).sqrt();
                        if rms >= QUIET_RMS {
                            speaking = true;
                            quiet = 0;
                            loud += 1;
                            let replying = !pending.is_empty() || playing_until > Instant::now();
                            if clear_on_barge_in && loud == END_FRAMES && replying {
                                pending.clear();
                                next_at = None;
                                playing_until = Instant::now();
                                let clear = serde_json::json!({"event": "clear", "streamSid": sid});
                                if ws.send(Message::text(clear.to_string())).await.is_err() {
                                    break;
                                }
                            }
                        } else if speaking {
                            loud = 0;
                            quiet += 1;
                            if quiet == END_FRAMES {
                                speaking = false;
                                pending = script.iter().cloned().collect();
                                next_at = pending.front().map(|(gap, _)| Instant::now() + *gap);
                            }
                        }
                    }
                    (_, Some("mark")) => {}
                    (_, Some("stop")) => stopped = true,
                    (_, e) => problem(format!("unexpected event {e:?}")),
                }
            }
            _ = sleep_until(wake), if next_at.is_some() => {
                let Some((_, out)) = pending.pop_front() else { next_at = None; continue };
                let s = sid.clone().unwrap_or_default();
                let msg = match out {
                    Out::Media(frames) => {
                        playing_until = playing_until.max(Instant::now()) + ms(20) * frames as u32;
                        serde_json::json!({
                        "event": "media", "streamSid": s,
                        "media": { "payload": B64.encode(vec![0xFFu8; frames * 160]) },
                        })
                    }
                    Out::Mark(name) => serde_json::json!({
                        "event": "mark", "streamSid": s, "mark": { "name": name },
                    }),
                };
                if ws.send(Message::text(msg.to_string())).await.is_err() {
                    break;
                }
                next_at = pending.front().map(|(gap, _)| Instant::now() + *gap);
            }
        }
    }
    if !stopped {
        problem("connection ended without stop".into());
    }
}
