//! End-to-end over loopback: `frontdesk serve` (the real binary, scripted
//! providers) and a carrier emulator speaking Twilio Media Streams JSON over a
//! real WebSocket, in real time.
//!
//! The emulator paces caller audio at 20 ms, plays the bot's audio out through
//! the shared carrier playout emulator (`frontdesk::carrier::playout`): each
//! mark echoed when the audio before it has played, and on `clear` the queue
//! dropped and pending marks echoed — as Twilio does.
//! Three calls run at once against one server: plain turns, a barge-in, and
//! a short burst plus line noise that must not interrupt.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use frontdesk::audio::{g711, wav, FRAME_SAMPLES};
use frontdesk::carrier::playout::{Playout, PlayoutEvent};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[path = "support/binary.rs"]
mod binary;

fn start_server(config: &str) -> binary::Server {
    binary::spawn(config, &[])
}

fn fixture(name: &str) -> Vec<i16> {
    wav::load_8k(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name),
    )
    .unwrap()
}

#[derive(Debug, Clone)]
enum Step {
    /// Line noise for this long.
    Noise(u64),
    /// An utterance.
    Say(&'static str),
    /// Line noise until the bot's reply has played for this long.
    WhenBotHasPlayed(u64),
    /// Line noise until the bot's reply has finished playing (and 300 ms more).
    UntilBotDone,
}

#[derive(Debug, Clone, PartialEq)]
enum Rec {
    /// Bot audio arrived (ms of audio).
    Media(u64),
    Mark(String),
    Clear,
    SpeechStart(&'static str),
    SpeechEnd(&'static str),
}

#[derive(Debug, Default)]
struct Outcome {
    recs: Vec<(Duration, Rec)>,
    marks_sent: usize,
    marks_echoed: usize,
    /// Largest amount of unplayed bot audio at the carrier, ms.
    max_backlog_ms: u64,
    protocol_errors: Vec<String>,
}

impl Outcome {
    fn index(&self, r: &Rec) -> usize {
        self.recs
            .iter()
            .position(|(_, x)| x == r)
            .unwrap_or_else(|| panic!("no {r:?}"))
    }
    fn media_ms_between(&self, from: usize, to: usize) -> u64 {
        self.recs[from..to]
            .iter()
            .map(|(_, r)| if let Rec::Media(ms) = r { *ms } else { 0 })
            .sum()
    }
    fn clears(&self) -> Vec<usize> {
        (0..self.recs.len())
            .filter(|&i| self.recs[i].1 == Rec::Clear)
            .collect()
    }
}

/// One call, in real time. Panics on timeouts so a hung server fails the test.
async fn call(url: &str, steps: Vec<Step>) -> Outcome {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let sid = "MZe2e00000000000000000000000000001";
    ws.send(Message::text(
        r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#,
    ))
    .await
    .unwrap();
    ws.send(Message::text(format!(
        r#"{{"event":"start","sequenceNumber":"1","streamSid":"{sid}","start":{{"accountSid":"AC1","streamSid":"{sid}","callSid":"CA1","tracks":["inbound"],"customParameters":{{"from":"+447700900123"}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
    )))
    .await
    .unwrap();

    let noise = fixture("line_noise.wav");
    let mut noise_pos = 0usize;
    let t0 = Instant::now();
    let mut out = Outcome::default();
    let mut steps: VecDeque<Step> = steps.into();
    let mut speech: VecDeque<i16> = VecDeque::new();
    let mut speaking: Option<&'static str> = None;
    let mut step_started = t0;
    // The shared carrier playout emulator: plays the bot's audio in real
    // time, echoes marks when played, drops its queue on clear. A reply ends
    // 300 ms after its audio ran out.
    let mut playout = Playout::new(Duration::ZERO, Duration::from_millis(300));
    let mut last_media_at: Option<Instant> = None;
    let mut seq = 2u64;
    let mut frame_no = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let deadline = t0 + Duration::from_secs(40);

    loop {
        tokio::select! {
            msg = ws.next() => {
                let now = Instant::now();
                let Some(Ok(msg)) = msg else { panic!("server closed the socket") };
                let Message::Text(text) = msg else {
                    out.protocol_errors.push(format!("non-text frame {msg:?}"));
                    continue;
                };
                let v: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                if v["streamSid"] != sid {
                    out.protocol_errors.push(format!("wrong streamSid in {text}"));
                }
                match v["event"].as_str() {
                    Some("media") => {
                        let bytes = B64.decode(v["media"]["payload"].as_str().unwrap_or("")).unwrap();
                        let ms = bytes.len() as u64 / 8;
                        playout.push_media(now, bytes.len());
                        last_media_at = Some(now);
                        out.max_backlog_ms = out.max_backlog_ms.max(playout.backlog(now).as_millis() as u64);
                        out.recs.push((now - t0, Rec::Media(ms)));
                    }
                    Some("mark") => {
                        let name = v["mark"]["name"].as_str().unwrap_or("").to_string();
                        out.marks_sent += 1;
                        out.recs.push((now - t0, Rec::Mark(name.clone())));
                        playout.push_mark(now, name);
                    }
                    Some("clear") => {
                        out.recs.push((now - t0, Rec::Clear));
                        playout.clear(now);
                        last_media_at = None;
                    }
                    other => out.protocol_errors.push(format!("unknown event {other:?}")),
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                assert!(now < deadline, "call did not finish in time; steps left: {steps:?}");
                // Echo marks whose audio has played.
                while let Some(ev) = playout.poll_event(now) {
                    let PlayoutEvent::MarkPlayed(name) = ev else { continue };
                    out.marks_echoed += 1;
                    ws.send(Message::text(format!(
                        r#"{{"event":"mark","sequenceNumber":"{seq}","streamSid":"{sid}","mark":{{"name":"{name}"}}}}"#
                    )))
                    .await
                    .unwrap();
                    seq += 1;
                }
                let bot_idle = !playout.is_active();
                // Advance the script.
                if speech.is_empty() {
                    if let Some(label) = speaking.take() {
                        out.recs.push((now - t0, Rec::SpeechEnd(label)));
                        step_started = now;
                    }
                    let done = match steps.front() {
                        None => break,
                        Some(Step::Noise(ms)) => now - step_started >= Duration::from_millis(*ms),
                        Some(Step::Say(_)) => true,
                        Some(Step::WhenBotHasPlayed(ms)) => playout
                            .playing_for(now)
                            .is_some_and(|d| d >= Duration::from_millis(*ms)),
                        Some(Step::UntilBotDone) => last_media_at.is_some() && bot_idle,
                    };
                    if done {
                        if let Some(Step::Say(name)) = steps.pop_front() {
                            speech.extend(fixture(name));
                            let pad = (FRAME_SAMPLES - speech.len() % FRAME_SAMPLES) % FRAME_SAMPLES;
                            speech.extend(std::iter::repeat_n(0, pad));
                            speaking = Some(name);
                            out.recs.push((now - t0, Rec::SpeechStart(name)));
                        }
                        step_started = now;
                        if matches!(steps.front(), Some(Step::UntilBotDone)) {
                            last_media_at = None;
                        }
                    }
                }
                let frame: Vec<i16> = if speaking.is_some() {
                    speech.drain(..FRAME_SAMPLES).collect()
                } else {
                    let f = (0..FRAME_SAMPLES).map(|i| noise[(noise_pos + i) % noise.len()]).collect();
                    noise_pos += FRAME_SAMPLES;
                    f
                };
                let mut ulaw = Vec::with_capacity(FRAME_SAMPLES);
                g711::encode_ulaw_into(&frame, &mut ulaw);
                frame_no += 1;
                ws.send(Message::text(format!(
                    r#"{{"event":"media","sequenceNumber":"{seq}","streamSid":"{sid}","media":{{"track":"inbound","chunk":"{frame_no}","timestamp":"{}","payload":"{}"}}}}"#,
                    (frame_no - 1) * 20,
                    B64.encode(&ulaw)
                )))
                .await
                .unwrap();
                seq += 1;
            }
        }
    }
    ws.send(Message::text(format!(
        r#"{{"event":"stop","sequenceNumber":"{seq}","streamSid":"{sid}"}}"#
    )))
    .await
    .unwrap();
    // The server closes the socket after stop.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Close(_) = m {
                return true;
            }
        }
        true
    })
    .await;
    assert_eq!(closed, Ok(true), "server closes the stream after stop");
    out
}

const CONFIG: &str = r#"
[vad]
start_ms = 200
end_ms = 500
barge_in_min_ms = 300

[call]
greeting = "Thanks for calling Brightside. How can I help?"

[brain]
kind = "scripted"

[providers.stt]
kind = "scripted"
final_after_ms = 100

[providers.llm]
kind = "scripted"
first_token_ms = 200
reply = "Sure, I can help with that."

[providers.tts]
kind = "scripted"
first_audio_ms = 150
"#;

/// Common checks: the greeting, marks, send-ahead, wire format.
fn check_common(name: &str, o: &Outcome) {
    assert!(
        o.protocol_errors.is_empty(),
        "{name}: {:?}",
        o.protocol_errors
    );
    // The greeting (2 s of audio) arrived before the caller said anything.
    let first_speech = o
        .recs
        .iter()
        .position(|(_, r)| matches!(r, Rec::SpeechStart(_)))
        .unwrap();
    assert_eq!(
        o.media_ms_between(0, first_speech),
        2000,
        "{name}: whole greeting first"
    );
    // Marks are sent and honoured: every mark came back, and the server never
    // ran more than max_ahead (400 ms) beyond what the marks confirmed.
    assert!(o.marks_sent >= 10, "{name}: {} marks", o.marks_sent);
    assert_eq!(o.marks_sent, o.marks_echoed, "{name}");
    assert!(
        o.max_backlog_ms <= 440,
        "{name}: {} ms queued at the carrier",
        o.max_backlog_ms
    );
}

/// After the utterance `label` ends, a reply arrives, and none arrived during it.
fn check_reply_after(name: &str, o: &Outcome, label: &'static str) -> usize {
    let s = o.index(&Rec::SpeechStart(label));
    let e = o.index(&Rec::SpeechEnd(label));
    assert_eq!(
        o.media_ms_between(s, e),
        0,
        "{name}: bot audio while the caller spoke ({label})"
    );
    let first_reply = (e..o.recs.len())
        .find(|&i| matches!(o.recs[i].1, Rec::Media(_)))
        .unwrap_or_else(|| panic!("{name}: no reply after {label}"));
    let gap = o.recs[first_reply].0 - o.recs[e].0;
    // end window 500 + providers 450 ms, on a loaded 2-core machine.
    assert!(
        gap >= Duration::from_millis(900) && gap <= Duration::from_millis(3000),
        "{name}: reply to {label} after {gap:?}"
    );
    first_reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_a_real_websocket() {
    let server = start_server(CONFIG);
    let url = format!("ws://{}/media/twilio", server.addr);

    let turns = call(
        &url,
        vec![
            Step::UntilBotDone,
            Step::Say("demo_request.wav"),
            Step::UntilBotDone,
            Step::Say("pricing.wav"),
            Step::UntilBotDone,
        ],
    );
    let barge = call(
        &url,
        vec![
            Step::UntilBotDone,
            Step::Say("pricing.wav"),
            Step::WhenBotHasPlayed(600),
            Step::Say("existing_customer.wav"),
            Step::UntilBotDone,
        ],
    );
    let burst = call(
        &url,
        vec![
            Step::UntilBotDone,
            Step::Say("referral.wav"),
            Step::WhenBotHasPlayed(500),
            Step::Say("short_burst.wav"),
            Step::UntilBotDone,
            Step::Noise(200),
        ],
    );
    let (turns, barge, burst) = tokio::join!(turns, barge, burst);

    // Plain turns: a whole reply after each utterance, never during it, no clear.
    check_common("turns", &turns);
    for label in ["demo_request.wav", "pricing.wav"] {
        let r = check_reply_after("turns", &turns, label);
        let next_speech = (r..turns.recs.len())
            .find(|&i| matches!(turns.recs[i].1, Rec::SpeechStart(_)))
            .unwrap_or(turns.recs.len());
        assert_eq!(
            turns.media_ms_between(r, next_speech),
            2000,
            "turns: whole reply to {label}"
        );
    }
    assert!(turns.clears().is_empty());

    // Barge-in: one clear, soon after the caller cut in, and the reply stops.
    check_common("barge", &barge);
    let r = check_reply_after("barge", &barge, "pricing.wav");
    let cut = barge.index(&Rec::SpeechStart("existing_customer.wav"));
    let clears = barge.clears();
    assert_eq!(clears.len(), 1, "barge: {clears:?}");
    let c = clears[0];
    assert!(c > cut);
    let delay = barge.recs[c].0 - barge.recs[cut].0;
    assert!(
        delay >= Duration::from_millis(250) && delay <= Duration::from_millis(800),
        "barge-in took {delay:?}"
    );
    assert!(
        barge.media_ms_between(r, c) < 2000,
        "the reply was cut short"
    );
    let end = barge.index(&Rec::SpeechEnd("existing_customer.wav"));
    assert_eq!(
        barge.media_ms_between(c, end),
        0,
        "no bot audio after the clear"
    );
    check_reply_after("barge", &barge, "existing_customer.wav");

    // A short burst and line noise while the bot talks change nothing.
    check_common("burst", &burst);
    let r = check_reply_after("burst", &burst, "referral.wav");
    assert!(
        burst.clears().is_empty(),
        "burst: a short burst must not clear"
    );
    assert_eq!(
        burst.media_ms_between(r, burst.recs.len()),
        2000,
        "burst: the reply played whole"
    );

    // The server counted what happened.
    let metrics = reqwest::get(format!("http://{}/metrics", server.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("frontdesk_barge_ins_total 1"), "{metrics}");
    assert!(
        metrics.contains("frontdesk_turn_latency_ms_count 5"),
        "{metrics}"
    );
}
