//! Micro-benchmarks of the per-frame media path.
//!
//! - `inbound/parse+decode`: one Twilio `media` message → 160 PCM samples.
//! - `inbound/vad`: one frame through webrtc-vad + hysteresis.
//! - `inbound/parse+decode+vad+session`: a frame through the whole inbound
//!   path as the driver runs it (parser, μ-law, then the session's one
//!   dispatch: VAD, call core, scripted conversation).
//! - `outbound/encode_100ms`: 100 ms of bot audio → one Twilio `media` JSON text.
//!
//! Run: `cargo bench --bench media_path`.

use std::time::Instant;

use base64::Engine as _;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

use frontdesk::audio::{g711, wav, FRAME_SAMPLES};
use frontdesk::call::conversation::ScriptedConversation;
use frontdesk::call::{CoreConfig, Session, SessionConfig};
use frontdesk::carrier::twilio::TwilioCodec;
use frontdesk::carrier::{CallEvent, CarrierCodec, CarrierCommand};
use frontdesk::config::{CallConfig, VadConfig};
use frontdesk::vad::VoiceDetector;

const START: &str = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","start":{"accountSid":"AC1","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","callSid":"CA1","tracks":["inbound"],"customParameters":{},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;

fn speech() -> Vec<i16> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/demo_request.wav");
    wav::load_8k(std::path::Path::new(path)).expect("fixture")
}

/// Twilio media messages for every frame of the fixture.
fn messages(pcm: &[i16]) -> Vec<String> {
    pcm.chunks_exact(FRAME_SAMPLES)
        .enumerate()
        .map(|(i, f)| {
            let mut u = Vec::new();
            g711::encode_ulaw_into(f, &mut u);
            format!(
                r#"{{"event":"media","sequenceNumber":"{}","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","media":{{"track":"inbound","chunk":"{}","timestamp":"{}","payload":"{}"}}}}"#,
                i + 2,
                i + 1,
                i * 20,
                base64::engine::general_purpose::STANDARD.encode(&u)
            )
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let pcm = speech();
    let msgs = messages(&pcm);
    let mut g = c.benchmark_group("inbound");
    g.throughput(Throughput::Elements(1));

    let mut codec = TwilioCodec::new(65536);
    let _ = codec.parse_text(START);
    let mut i = 0;
    g.bench_function("parse+decode", |b| {
        b.iter(|| {
            i = (i + 1) % msgs.len();
            match codec.parse_text(black_box(&msgs[i])) {
                Ok(CallEvent::Media { pcm, .. }) => pcm.len(),
                _ => 0,
            }
        })
    });

    let vad_cfg = VadConfig::default();
    let mut det = VoiceDetector::new(&vad_cfg);
    let frames: Vec<&[i16]> = pcm.chunks_exact(FRAME_SAMPLES).collect();
    let mut j = 0;
    g.bench_function("vad", |b| {
        b.iter(|| {
            j = (j + 1) % frames.len();
            det.push_frame(black_box(frames[j])).voiced
        })
    });

    let mut codec = TwilioCodec::new(65536);
    let _ = codec.parse_text(START);
    let call = CallConfig {
        greeting: String::new(),
        ..CallConfig::default()
    };
    let mut session = Session::new(
        SessionConfig {
            core: CoreConfig::new(&vad_cfg, &call),
            region: None,
        },
        Box::new(ScriptedConversation::new("", "You are the receptionist.")),
    );
    let t0 = Instant::now();
    let mut start_codec = TwilioCodec::new(65536);
    if let Ok(ev) = start_codec.parse_text(START) {
        session.handle_event(ev, t0);
    }
    let mut k = 0;
    g.bench_function("parse+decode+vad+session", |b| {
        b.iter(|| {
            k = (k + 1) % msgs.len();
            if let Ok(ev @ CallEvent::Media { .. }) = codec.parse_text(&msgs[k]) {
                session.handle_event(ev, t0);
            }
            while let Some(a) = session.poll_output() {
                black_box(a);
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("outbound");
    g.throughput(Throughput::Elements(1));
    let mut codec = TwilioCodec::new(65536);
    let _ = codec.parse_text(START);
    let piece = CarrierCommand::Media(pcm[..800].to_vec());
    let mut out = String::with_capacity(2048);
    g.bench_function("encode_100ms", |b| {
        b.iter(|| {
            out.clear();
            codec.encode(black_box(&piece), &mut out);
            out.len()
        })
    });
    let piece20 = CarrierCommand::Media(pcm[..160].to_vec());
    g.bench_function("encode_20ms", |b| {
        b.iter(|| {
            out.clear();
            codec.encode(black_box(&piece20), &mut out);
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
