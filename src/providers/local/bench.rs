//! `frontdesk speech-bench`: how fast the offline stack hears and speaks on
//! this machine. Utterances are synthesised by the installed voice, taken
//! through a μ-law round trip, then decoded by Whisper one at a time (the
//! per-utterance latency a lone call sees); time to first audio is one
//! uncached Piper sentence. Reports medians and 95th percentiles and the
//! share of words Whisper got right.

use std::time::Instant;

use serde::Serialize;

use super::{sentences, LocalStt, LocalTts};
use crate::audio::g711;
use crate::config::{Env, LocalSttConfig, LocalTtsConfig};

const SHORT: &[&str] = &[
    "Hi, I'd like to book a demo.",
    "Jane Doe.",
    "Friday morning, after ten.",
    "How much does it cost?",
    "Yes, the first one, please.",
    "No, that's everything, thanks.",
];

const LONG: &[&str] = &[
    "Hello, my name is Sam Taylor and I'm calling about a demo of your booking software for our team of forty.",
    "We run three clinics across the city and we're looking for something that can handle all of the bookings.",
    "Could somebody call me back on my mobile tomorrow morning, ideally before eleven, because I'm out after that?",
    "I'm an existing customer and my account stopped sending the reminder texts to my clients last week.",
];

const REPLIES: &[&str] = &[
    "Thanks for calling, how can I help?",
    "I have Friday at ten or Friday at half past eleven. Which suits you?",
    "Our plans start at forty nine pounds a month.",
    "One moment while I connect you.",
    "Could I take your name, please?",
    "Lovely, you're booked in. You'll get a text to confirm.",
];

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Stat {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
}

fn stat(mut v: Vec<f64>) -> Stat {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if v.is_empty() {
            0.0
        } else {
            v[((v.len() - 1) as f64 * q).round() as usize]
        }
    };
    Stat {
        n: v.len(),
        p50_ms: at(0.5),
        p95_ms: at(0.95),
    }
}

/// What the bench measured.
#[derive(Debug, Clone, Serialize)]
pub struct SpeechBench {
    /// Which voice spoke (`piper` or `espeak-ng`).
    pub voice: String,
    /// Threads per Whisper decode.
    pub stt_threads: u32,
    /// Median utterance length of the short set, seconds.
    pub short_secs: f64,
    /// Median utterance length of the long set, seconds.
    pub long_secs: f64,
    /// Whisper decode time, short utterances (1–3 s).
    pub stt_short: Stat,
    /// Whisper decode time, long utterances (5–8 s).
    pub stt_long: Stat,
    /// Share of the words recognised (1 − word error rate, by bag of words).
    pub stt_word_accuracy: f64,
    /// Piper: text in → first audio of the sentence.
    pub tts_first_audio: Stat,
}

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect()
}

/// Run it: each utterance decoded `runs` times.
pub async fn run(
    env: &Env,
    runs: usize,
    stt_threads: u32,
    flash_attn: bool,
) -> Result<SpeechBench, String> {
    let tts = LocalTts::load(
        &LocalTtsConfig {
            cache_sentences: 0,
            ..LocalTtsConfig::default()
        },
        env,
        "speech-bench",
    )
    .map_err(|e| e.message)?;
    let stt = LocalStt::load(
        &LocalSttConfig {
            threads: stt_threads,
            decoders: Some(1),
            flash_attn,
            ..LocalSttConfig::default()
        },
        env,
        "speech-bench",
    )
    .map_err(|e| e.message)?;
    let mut right = 0usize;
    let mut total = 0usize;
    let mut lens = [Vec::new(), Vec::new()];
    let mut times = [Vec::new(), Vec::new()];
    for (set, texts) in [SHORT, LONG].into_iter().enumerate() {
        for text in texts {
            let mut pcm = Vec::new();
            for s in sentences(text) {
                pcm.extend_from_slice(&tts.say(&s).await?);
            }
            // The carrier's μ-law round trip.
            let mut ul = Vec::new();
            g711::encode_ulaw_into(&pcm, &mut ul);
            pcm.clear();
            g711::decode_ulaw_into(&ul, &mut pcm);
            lens[set].push(pcm.len() as f64 / 8000.0);
            for i in 0..runs.max(1) {
                let t = Instant::now();
                let heard = stt.engine().transcribe(pcm.clone()).await?;
                times[set].push(t.elapsed().as_secs_f64() * 1e3);
                if i == 0 {
                    let want = words(text);
                    let mut got = words(&heard);
                    total += want.len();
                    for w in want {
                        if let Some(p) = got.iter().position(|g| *g == w) {
                            got.remove(p);
                            right += 1;
                        }
                    }
                }
            }
        }
    }
    let mut first = Vec::new();
    for _ in 0..runs.max(1) {
        for r in REPLIES {
            let s = sentences(r).into_iter().next().unwrap_or_default();
            // A fresh key each time: uncached.
            let t = Instant::now();
            let voice = tts.voice.clone();
            tokio::task::spawn_blocking(move || voice.synth(&s))
                .await
                .map_err(|e| e.to_string())??;
            first.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let median = |v: &Vec<f64>| stat(v.iter().map(|x| x * 1000.0).collect()).p50_ms / 1000.0;
    Ok(SpeechBench {
        voice: tts.voice_name().into(),
        stt_threads,
        short_secs: median(&lens[0]),
        long_secs: median(&lens[1]),
        stt_short: stat(times[0].clone()),
        stt_long: stat(times[1].clone()),
        stt_word_accuracy: if total == 0 {
            0.0
        } else {
            right as f64 / total as f64
        },
        tts_first_audio: stat(first),
    })
}
