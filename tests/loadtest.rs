//! `frontdesk loadtest` against tiny in-test Twilio-speaking servers on
//! loopback: a server that answers each utterance after a known delay and
//! streams one stretch of its reply slower than real time proves the turn
//! latency and late-frame accounting; a server that never sends `clear`
//! proves barge-ins are counted as missed.
//!
//! These run in real time (a WebSocket needs real IO), each under 5 s, and
//! assert with margins that hold on a loaded 2-core machine.

use std::path::Path;

use frontdesk::loadtest::{run, LoadtestArgs};

#[path = "support/script_server.rs"]
mod script_server;
use script_server::{ms, server, Out, Script};

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
