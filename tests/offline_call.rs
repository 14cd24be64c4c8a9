//! The offline stack end to end, with no config, no keys and no network:
//! callers spoken by the Piper voice at phone quality (scripts/make-callers)
//! go through `frontdesk call --json --out reply.wav`; the caller's key
//! words must come back in the transcript, the call must reach the right
//! end state, and what the receptionist said must be intelligible: reply.wav
//! is re-transcribed with the offline recogniser and must contain its words.
//!
//! Needs the models (`scripts/fetch-models`; `scripts/test` runs it).

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_frontdesk");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn models_present() {
    let dir = std::env::var("FRONTDESK_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("models"));
    for f in [
        "ggml-tiny.en.bin",
        "en_US-joe-medium.onnx",
        "libonnxruntime.so",
    ] {
        assert!(
            dir.join(f).exists(),
            "{} is missing: run scripts/fetch-models",
            dir.join(f).display()
        );
    }
}

fn make_callers(out: &Path, scenario: &str) {
    let st = Command::new(repo().join("scripts/make-callers"))
        .arg(out)
        .arg(scenario)
        .env("FRONTDESK_BIN", BIN)
        .status()
        .expect("scripts/make-callers");
    assert!(st.success(), "make-callers failed");
}

/// Open every hour of every day, so the result does not depend on when CI runs.
fn config(dir: &Path) -> PathBuf {
    let mut s = String::from("[business.hours]\n");
    for d in ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] {
        s.push_str(&format!("{d} = [\"00:00-23:59\"]\n"));
    }
    s.push_str(&format!(
        "[storage]\nurl = \"sqlite://{}\"\n",
        dir.join("calls.db").display()
    ));
    let p = dir.join("frontdesk.toml");
    std::fs::write(&p, s).expect("config");
    p
}

fn call(cfg: &Path, turns: &[PathBuf], out: &Path) -> serde_json::Value {
    let o = Command::new(BIN)
        .arg("call")
        .arg("--config")
        .arg(cfg)
        .arg("--json")
        .arg("--out")
        .arg(out)
        .args(turns)
        .env_remove("FRONTDESK_DATABASE_URL")
        .output()
        .expect("frontdesk call");
    assert!(
        o.status.success(),
        "frontdesk call failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

fn transcribe(wav: &Path) -> String {
    let o = Command::new(BIN)
        .arg("transcribe")
        .arg(wav)
        .output()
        .expect("frontdesk transcribe");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_lowercase()
}

fn turns(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("turns")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}

fn said(v: &serde_json::Value, role: &str) -> String {
    v["conversation"]
        .as_array()
        .expect("conversation")
        .iter()
        .filter(|l| l["role"] == role)
        .map(|l| l["text"].as_str().unwrap_or("").to_lowercase())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[test]
fn a_spoken_pricing_call_is_heard_answered_and_intelligible() {
    models_present();
    let tmp = tempfile::tempdir().expect("tmp");
    make_callers(tmp.path(), "pricing");
    let cfg = config(tmp.path());
    let out = tmp.path().join("reply.wav");
    let v = call(&cfg, &turns(&tmp.path().join("pricing/plain")), &out);
    let caller = said(&v, "caller");
    for w in ["how much", "cost", "bye"] {
        assert!(caller.contains(w), "caller words lost: {caller}");
    }
    assert_eq!(v["intent"], "pricing", "{v:#}");
    assert_eq!(v["outcome"], "answered", "{v:#}");
    assert!(
        !v["latency_ms"].as_array().expect("latency").is_empty(),
        "a latency waterfall per turn"
    );
    // What the caller heard, heard again by the recogniser.
    let heard = transcribe(&out);
    let receptionist = said(&v, "receptionist");
    assert!(receptionist.contains("how can i help"), "{receptionist}");
    for w in ["thanks for calling", "how can i help", "pricing"] {
        assert!(
            heard.contains(w),
            "`{w}` not intelligible in reply.wav: {heard}"
        );
    }
}

#[test]
fn a_spoken_demo_request_is_booked() {
    models_present();
    let tmp = tempfile::tempdir().expect("tmp");
    make_callers(tmp.path(), "booking");
    let cfg = config(tmp.path());
    let out = tmp.path().join("reply.wav");
    let v = call(&cfg, &turns(&tmp.path().join("booking/fast-high")), &out);
    let caller = said(&v, "caller");
    for w in ["demo", "jane", "friday"] {
        assert!(caller.contains(w), "caller words lost: {caller}");
    }
    assert_eq!(v["intent"], "new_enquiry", "{v:#}");
    assert_eq!(v["tier"], "A", "{v:#}");
    assert_eq!(v["outcome"], "booked", "{v:#}");
    assert!(v["booking"].is_object(), "{v:#}");
    let heard = transcribe(&out);
    assert!(
        heard.contains("friday"),
        "the read-back is intelligible: {heard}"
    );
}
