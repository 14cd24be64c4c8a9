//! `frontdesk loadtest` against tiny in-test Twilio-speaking servers on
//! loopback: a server that answers each utterance after a known delay and
//! streams one stretch of its reply slower than real time proves the turn
//! latency and late-frame accounting; a server that never sends `clear`
//! proves barge-ins are counted as missed.
//!
//! These run in real time (a WebSocket needs real IO), each under 5 s, and
//! assert with margins that hold on a loaded 2-core machine.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use frontdesk::audio::g711::ulaw_to_linear;
use frontdesk::loadtest::{run, LoadtestArgs};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpListener;
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::Message;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// What the test server sends once it has detected the end of an utterance.
#[derive(Debug, Clone)]
enum Out {
    /// A `media` message of this many 20 ms frames.
    Media(usize),
    /// A `mark`.
    Mark(&'static str),
}

/// A reply: each item is sent `gap` after the previous one was actually sent
/// (the first `gap` counts from the detected end of speech), so a scheduling
/// hiccup can only stretch the gaps, never merge two sends.
type Script = Vec<(Duration, Out)>;

/// Energy of a frame below this (RMS) is quiet.
const QUIET_RMS: f64 = 1000.0;
/// Quiet frames that end an utterance: 200 ms.
const END_FRAMES: u32 = 10;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Start the server; returns its URL and the list of wire problems it saw.
async fn server(script: Script) -> (String, Arc<Mutex<Vec<String>>>) {
    server_on("127.0.0.1:0", script, false).await
}

/// Start a server on `addr`; with `clear_on_barge_in`, 200 ms of caller
/// speech while a reply is pending or playing gets a `clear`.
async fn server_on(
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

/// Write the fixtures: `utt` = 400 ms of a voiced-like signal (harmonics of
/// 140 Hz, peak about 8000), `line_noise` = near silence.
fn fixtures(dir: &Path) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let write = |name: &str, samples: Vec<i16>| {
        let r = hound::WavWriter::create(dir.join(name), spec).and_then(|mut w| {
            for s in samples {
                w.write_sample(s)?;
            }
            w.finalize()
        });
        if let Err(e) = r {
            panic!("write {name}: {e}");
        }
    };
    let voiced: Vec<i16> = (0..3200)
        .map(|i| {
            let t = f64::from(i) / 8000.0;
            let s: f64 = (1..=5)
                .map(|h| {
                    (2.0 * std::f64::consts::PI * 140.0 * f64::from(h) * t).sin() / f64::from(h)
                })
                .sum();
            (s * 3500.0) as i16
        })
        .collect();
    write("utt.wav", voiced);
    let noise: Vec<i16> = (0..8000).map(|i| ((i * 7919) % 61) as i16 - 30).collect();
    write("line_noise.wav", noise);
}

fn args(url: String, dir: &Path, scenario: &str, calls: u32, duration: f64) -> LoadtestArgs {
    let path = dir.join("scenario.toml");
    if let Err(e) = std::fs::write(&path, scenario) {
        panic!("write scenario: {e}");
    }
    let mut a = LoadtestArgs::new(url);
    a.calls = calls;
    a.duration = duration;
    a.ramp = 0.1;
    a.scenario = Some(path);
    a.fixtures = dir.to_path_buf();
    a.json = true;
    a
}

/// Reply 150 ms after the end of speech: 10 frames at once, then five
/// single frames 100 ms apart (each arrives after the playout ran dry: late),
/// then 10 frames 100 ms later (its first frame late): 25 frames, 6 late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_latency_and_late_frames_match_a_slow_server() {
    let reply_delay = 150;
    let mut script: Script = vec![(ms(reply_delay), Out::Media(10)), (ms(300), Out::Media(1))];
    script.extend((0..4).map(|_| (ms(100), Out::Media(1))));
    script.push((ms(100), Out::Media(10)));
    script.push((ms(0), Out::Mark("end")));
    let (url, problems) = server(script).await;
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    fixtures(dir.path());
    let mut a = args(
        url,
        dir.path(),
        r#"steps = [{ silence = 200 }, { say = "utt" }, { wait_reply = 3000 }]"#,
        3,
        2.4,
    );
    a.reply_gap_ms = 250;
    let r = match run(a).await {
        Ok(r) => r,
        Err(e) => panic!("run: {e}"),
    };
    assert_eq!(
        problems.lock().map(|p| p.clone()).unwrap_or_default(),
        Vec::<String>::new()
    );
    assert_eq!(r.calls_connected, 3);
    assert_eq!(r.errors.total, 0, "{:?}", r.errors);
    assert_eq!(r.missed_turns, 0);
    assert!(r.passed);
    // Turn latency = 200 ms end-of-speech window + 150 ms reply delay, plus
    // scheduling noise; the lower bound allows the last speech frame itself
    // to have gone out a few ms late.
    let expected = 200.0 + reply_delay as f64;
    assert_eq!(r.turn_latency_ms.count, 3);
    for c in &r.calls {
        let l = c.turn_latency_ms;
        let (lo, hi) = (l.p50_ms.unwrap_or(0.0), l.max_ms.unwrap_or(f64::MAX));
        assert!(
            lo >= expected - 10.0 && hi <= expected + 150.0,
            "call {}: {l:?}",
            c.index
        );
        // 6 late frames expected; one may be absorbed if the client stalls
        // 80 ms between two sends that the server spaced 100 ms apart.
        assert!(
            (5..=6).contains(&c.late_frames),
            "call {}: {} late",
            c.index,
            c.late_frames
        );
        assert_eq!(c.bot_frames, 25, "call {}", c.index);
        // Gaps: 60 ms before the first single frame, 80 ms before each of the
        // other four and before the final burst: 460 ms.
        assert!(
            c.gap_ms >= 440.0 && c.gap_ms <= 600.0,
            "call {}: gap {}",
            c.index,
            c.gap_ms
        );
        assert_eq!(c.marks_echoed, 1, "call {}", c.index);
    }
    assert!(
        r.late_frames_pct > 19.0 && r.late_frames_pct <= 24.0,
        "{}",
        r.late_frames_pct
    );
    assert_eq!(r.barge_ins, 0);
}

/// A server that never sends `clear`: every barge-in is missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_ins_without_clear_are_missed() {
    let script: Script = vec![(ms(100), Out::Media(100)), (ms(0), Out::Mark("end"))];
    let (url, problems) = server(script).await;
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    fixtures(dir.path());
    let mut a = args(
        url,
        dir.path(),
        r#"steps = [
            { silence = 200 },
            { say = "utt" },
            { interrupt = { fixture = "utt", after_ms = 300 } },
            { wait_reply = 2000 },
        ]"#,
        2,
        2.6,
    );
    a.bargein_timeout_ms = 500;
    let r = match run(a).await {
        Ok(r) => r,
        Err(e) => panic!("run: {e}"),
    };
    assert_eq!(
        problems.lock().map(|p| p.clone()).unwrap_or_default(),
        Vec::<String>::new()
    );
    assert_eq!(r.errors.total, 0, "{:?}", r.errors);
    assert_eq!(r.barge_ins, 2, "one interruption per call");
    assert_eq!(r.missed_barge_ins, 2);
    assert_eq!(r.barge_in_latency_ms.count, 0);
    assert_eq!(r.interrupts_skipped, 0);
    assert_eq!(r.media_after_clear, 0);
    for c in &r.calls {
        assert_eq!(
            (c.barge_ins, c.missed_barge_ins),
            (1, 1),
            "call {}",
            c.index
        );
    }
}

/// Not a test: a scripted reply server for manual runs of the CLI (to
/// measure the generator itself). Replies 450 ms after each utterance with a
/// 2 s reply (10 frames at once, then one frame per 20 ms, then a mark) and
/// clears on 200 ms of barge-in speech. Runs until killed:
///
/// ```text
/// LOADTEST_SERVER_ADDR=127.0.0.1:9099 cargo test --release --test loadtest \
///     -- --ignored --nocapture reply_server_for_manual_runs
/// ```
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn reply_server_for_manual_runs() {
    let addr = std::env::var("LOADTEST_SERVER_ADDR").unwrap_or_else(|_| "127.0.0.1:9099".into());
    let mut script: Script = vec![(ms(450), Out::Media(1))];
    script.extend((0..9).map(|_| (ms(0), Out::Media(1))));
    script.extend((0..90).map(|_| (ms(20), Out::Media(1))));
    script.push((ms(0), Out::Mark("end")));
    let (url, _problems) = server_on(&addr, script, true).await;
    println!("serving {url} as pid {}", std::process::id());
    std::future::pending::<()>().await;
}

/// Not a test: what one timer per call costs against a few pacers, with no
/// IO (the part of the generator's CPU that the pacing model decides).
/// `cargo test --release --test loadtest -- --ignored --nocapture pacing_cost`
#[test]
#[ignore]
fn pacing_cost() {
    const CALLS: usize = 1000;
    const SECS: u64 = 5;
    let cpu = || {
        std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                let rest = s[s.rfind(')')? + 1..].to_string();
                let f: Vec<u64> = rest
                    .split_whitespace()
                    .skip(11)
                    .take(2)
                    .filter_map(|v| v.parse().ok())
                    .collect();
                Some(f.iter().sum::<u64>())
            })
            .unwrap_or(0)
    };
    let measure = |name: &str, pacers: usize| {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("runtime: {e}"),
        };
        let c0 = cpu();
        let lag = rt.block_on(async move {
            let t0 = Instant::now() + ms(10);
            let per = CALLS / pacers;
            let tasks: Vec<_> = (0..pacers)
                .map(|p| {
                    // Spread the pacers' phases over the 20 ms frame.
                    let phase = ms(20) * p as u32 / pacers as u32;
                    tokio::spawn(async move {
                        let mut late = 0u64;
                        let mut counters = vec![0u64; per];
                        let mut k = 0u32;
                        let sleep = tokio::time::sleep_until(t0);
                        tokio::pin!(sleep);
                        while k < (SECS * 50) as u32 {
                            let due = t0 + phase + ms(20) * k;
                            sleep.as_mut().reset(due);
                            (&mut sleep).await;
                            if Instant::now() - due > ms(5) {
                                late += 1;
                            }
                            for c in counters.iter_mut() {
                                *c = std::hint::black_box(*c + 1);
                            }
                            k += 1;
                        }
                        late
                    })
                })
                .collect();
            let mut late = 0;
            for t in tasks {
                late += t.await.unwrap_or(0);
            }
            late
        });
        let pct = (cpu() - c0) as f64 / SECS as f64;
        println!("{name:<28} {pct:5.1} % of a core (late wake-ups: {lag})");
    };
    measure("1000 tasks, one timer each", CALLS);
    measure("20 pacers x 50 calls", 20);
    measure("2 pacers x 500 calls", 2);
}
