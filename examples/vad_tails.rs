//! For each caller fixture, where the server's VAD ends the utterance
//! relative to its last frame — the baseline of the "added turn latency"
//! figures in README's benchmark.
//!
//! The load generator times a turn from the *last frame it sent*; the server
//! starts its `end_ms` window at the *last voiced frame*. Trailing quiet
//! frames of a recording therefore count towards the window, so the ideal
//! turn latency of a fixture is `end_ms + providers − tail`, not
//! `end_ms + providers`.
//!
//! Run: `cargo run --release --example vad_tails -- [end_ms]` (default 200).

use std::path::Path;

use frontdesk::audio::{wav, FRAME_SAMPLES};
use frontdesk::config::VadConfig;
use frontdesk::vad::{VadEvent, VoiceDetector};

fn main() {
    let end_ms: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let cfg = VadConfig {
        start_ms: 200,
        end_ms,
        barge_in_min_ms: 200,
        ..VadConfig::default()
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let noise = wav::load_8k(&dir.join("line_noise.wav")).expect("line_noise.wav");
    println!("fixture                 frames  tail_ms  ended_after_last_frame_ms");
    for name in ["demo_request", "pricing", "existing_customer", "referral"] {
        let speech = wav::load_8k(&dir.join(format!("{name}.wav"))).expect("fixture");
        let mut det = VoiceDetector::new(&cfg);
        // Half a second of line noise first, as the load generator's scenario sends.
        let lead: Vec<i16> = noise.iter().cycle().take(4000).copied().collect();
        let mut audio = lead.clone();
        audio.extend(&speech);
        let pad = (FRAME_SAMPLES - audio.len() % FRAME_SAMPLES) % FRAME_SAMPLES;
        audio.extend(std::iter::repeat_n(0, pad));
        let last_frame_end = audio.len() as u64 / 8;
        audio.extend(noise.iter().cycle().take(16000));
        let mut ended_at = None;
        let mut last_voiced_end = 0;
        for (k, f) in audio.chunks_exact(FRAME_SAMPLES).enumerate() {
            let d = det.push_frame(f);
            if d.voiced && (k as u64 * 20) < last_frame_end {
                last_voiced_end = (k as u64 + 1) * 20;
            }
            if let Some(VadEvent::SpeechEnded { .. }) = d.event {
                // The event fires when frame k arrives, i.e. once it is complete.
                let t = (k as u64 + 1) * 20;
                if t > last_frame_end && ended_at.is_none() {
                    ended_at = Some(t);
                }
            }
        }
        let tail = last_frame_end - last_voiced_end;
        let after = ended_at.map(|t| t as i64 - last_frame_end as i64);
        println!(
            "{name:<22} {:>7} {tail:>8} {:>26}",
            (speech.len() + pad) / FRAME_SAMPLES,
            after.map(|a| a.to_string()).unwrap_or_else(|| "-".into())
        );
    }
}
