//! The offline stack end to end, with no config, no keys and no network:
//! callers spoken by the Piper voice at phone quality (scripts/make-callers)
//! go through `frontdesk call --json --out reply.wav`; the caller's key
//! words must come back in the transcript, the call must reach the right
//! end state, and what the receptionist said must be intelligible: reply.wav
//! is re-transcribed with the offline recogniser and must contain its words.
//!
//! Needs the models (`scripts/fetch-models`; `scripts/test` runs it).

#[path = "support/mock_ws.rs"]
mod mock_ws;

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
    call_from(cfg, None, turns, out).0
}

/// The call's JSON report and everything it logged.
fn call_from(
    cfg: &Path,
    from: Option<&str>,
    turns: &[PathBuf],
    out: &Path,
) -> (serde_json::Value, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("call").arg("--config").arg(cfg);
    if let Some(f) = from {
        cmd.arg("--from").arg(f);
    }
    let o = cmd
        .arg("--json")
        .arg("--out")
        .arg(out)
        .args(turns)
        .env_remove("FRONTDESK_DATABASE_URL")
        .output()
        .expect("frontdesk call");
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "frontdesk call failed: {stderr}");
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    });
    (v, stderr)
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

/// One spoken scenario (scripts/make-callers) in one voice, on a fresh
/// store: the report, the logs, and the directory everything was written to.
struct Spoken {
    v: serde_json::Value,
    logs: String,
    dir: tempfile::TempDir,
}

fn spoken(scenario: &str, voice: &str, from: Option<&str>) -> Spoken {
    spoken_with(scenario, voice, from, |_| {})
}

fn spoken_with(
    scenario: &str,
    voice: &str,
    from: Option<&str>,
    seed: impl FnOnce(&Path),
) -> Spoken {
    models_present();
    let dir = tempfile::tempdir().expect("tmp");
    make_callers(dir.path(), scenario);
    let cfg = config(dir.path());
    seed(dir.path());
    let out = dir.path().join("reply.wav");
    let turns = turns(&dir.path().join(scenario).join(voice));
    let (v, logs) = call_from(&cfg, from, &turns, &out);
    Spoken { v, logs, dir }
}

fn actions(v: &serde_json::Value) -> Vec<String> {
    v["actions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_spoken_existing_customer_is_greeted_by_name_and_put_through_to_support() {
    let s = spoken_with("existing", "plain", Some("+442079460123"), |dir| {
        // Stored from a national number; the call comes in as E.164.
        let url = format!("sqlite://{}", dir.join("calls.db").display());
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let store = frontdesk::store::Store::connect(&url, &Default::default())
                .await
                .expect("store");
            let e = frontdesk::phone::normalise("020 7946 0123", phonenumber::country::Id::GB)
                .expect("number");
            store
                .upsert_contact(
                    &frontdesk::store::NewContact {
                        phone_e164: e.to_pii(),
                        name: Some(frontdesk::pii::Pii::new("Priya Shah".into())),
                        email: None,
                        timezone: None,
                    },
                    chrono::Utc::now(),
                )
                .await
                .expect("contact");
            store.close().await;
        });
    });
    let v = &s.v;
    let first = said(v, "receptionist");
    assert!(first.contains("priya"), "greeted by name: {first}");
    assert_eq!(v["intent"], "support", "{v:#}");
    assert_eq!(v["outcome"], "transferred", "{v:#}");
    assert!(v["transfer"].is_object(), "{v:#}");
}

#[test]
fn a_spoken_referral_gets_a_partnerships_callback() {
    let s = spoken("referral", "slow-low", None);
    let v = &s.v;
    assert!(said(v, "caller").contains("partner"), "{v:#}");
    assert_eq!(v["intent"], "referral", "{v:#}");
    assert_eq!(v["outcome"], "callback", "{v:#}");
    assert_eq!(v["lead"]["routing_owner"], "team_partnerships", "{v:#}");
}

#[test]
fn a_spoken_unclear_call_is_handed_to_a_person() {
    let s = spoken("unclear", "fast-high", None);
    let v = &s.v;
    assert_eq!(v["intent"], "unclear", "{v:#}");
    assert_eq!(v["outcome"], "transferred", "{v:#}");
    assert!(said(v, "receptionist").contains("connect you"), "{v:#}");
}

#[test]
fn a_spoken_opt_out_is_honoured() {
    let s = spoken("optout", "plain", None);
    let v = &s.v;
    assert_eq!(v["outcome"], "opted_out", "{v:#}");
    assert!(v["tier"].is_null(), "{v:#}");
    assert!(!actions(v).contains(&"take_callback".to_string()), "{v:#}");
}

#[test]
fn a_spoken_phone_number_becomes_the_callback_number() {
    // From a London landline; the call back goes to the mobile read out.
    let s = spoken("number", "plain", Some("+442079460123"));
    let v = &s.v;
    assert_eq!(v["outcome"], "callback", "{v:#}");
    assert_eq!(v["lead"]["phone"], "+447700900123", "{v:#}");
}

#[test]
fn a_spoken_accept_then_decline_releases_the_hold() {
    let s = spoken("decline", "plain", None);
    let v = &s.v;
    let acts = actions(v);
    assert!(acts.contains(&"hold_slot".to_string()), "{v:#}");
    assert!(acts.contains(&"release_hold".to_string()), "{v:#}");
    assert!(v["booking"].is_null(), "{v:#}");
    assert_eq!(v["outcome"], "callback", "{v:#}");
    assert_eq!(v["tier"], "C", "{v:#}");
}

/// Every file under `dir` but the caller's own audio, as text (lossy).
fn written(dir: &Path) -> String {
    let mut all = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_none_or(|x| x != "ul") {
                all.push_str(&String::from_utf8_lossy(
                    &std::fs::read(&p).unwrap_or_default(),
                ));
            }
        }
    }
    all.to_lowercase()
}

#[test]
fn a_spoken_card_number_and_health_detail_are_kept_nowhere() {
    let s = spoken("redact", "fast-high", None);
    let v = &s.v;
    let stdout = v.to_string().to_lowercase();
    let logs = s.logs.to_lowercase();
    let files = written(s.dir.path());
    let heard = transcribe(&s.dir.path().join("reply.wav"));
    for (what, text) in [
        ("stdout", &stdout),
        ("logs", &logs),
        ("files", &files),
        ("reply", &heard),
    ] {
        for bad in ["4111", "four one one one", "diabetes", "diagnosed"] {
            assert!(!text.contains(bad), "`{bad}` in {what}");
        }
    }
    // The call itself went on: a lead a rep can act on.
    assert!(said(v, "caller").contains("quote"), "{v:#}");
    assert_eq!(v["outcome"], "callback", "{v:#}");
}

/// Deepgram first, the offline recogniser behind it: a Deepgram that takes
/// the audio and never answers (a stall) moves the call to Whisper, which
/// decodes the utterance in hand, so the caller is still understood and the
/// call ends as it would have. The switch is logged, the key is not.
#[test]
fn a_stalled_deepgram_fails_over_to_the_offline_recogniser_mid_call() {
    models_present();
    let tmp = tempfile::tempdir().expect("tmp");
    make_callers(tmp.path(), "pricing");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    const KEY: &str = "dg-test-key-0123";
    let mock = rt.block_on(mock_ws::start(
        ("authorization", format!("Token {KEY}")),
        &[],
        |mut ws: mock_ws::Conn| async move {
            use futures_util::StreamExt;
            // Reads everything (audio, KeepAlive, Finalize); answers nothing.
            while let Some(Ok(_)) = ws.next().await {}
        },
    ));
    let cfg = config(tmp.path());
    let mut toml = std::fs::read_to_string(&cfg).expect("config");
    toml.push_str(&format!(
        "[providers.stt]\nchain = [\"deepgram\", \"local\"]\nstall_ms = 800\n\
         [providers.stt.deepgram]\nbase_url = \"{}/v1/listen\"\n",
        mock.base
    ));
    std::fs::write(&cfg, toml).expect("config");
    let out = tmp.path().join("reply.wav");
    let o = Command::new(BIN)
        .arg("call")
        .arg("--config")
        .arg(&cfg)
        .arg("--json")
        .arg("--out")
        .arg(&out)
        .args(turns(&tmp.path().join("pricing/plain")))
        .env_remove("FRONTDESK_DATABASE_URL")
        .env("DEEPGRAM_API_KEY", KEY)
        .output()
        .expect("frontdesk call");
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "frontdesk call failed: {stderr}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    let caller = said(&v, "caller");
    for w in ["how much", "cost"] {
        assert!(
            caller.contains(w),
            "caller words lost in the switch: {caller}"
        );
    }
    assert_eq!(v["intent"], "pricing", "{v:#}");
    assert_eq!(v["outcome"], "answered", "{v:#}");
    assert!(
        stderr.lines().any(|l| l.contains("provider fail-over")
            && l.contains("deepgram")
            && l.contains("local")),
        "the switch from deepgram to local is logged: {stderr}"
    );
    assert!(!stderr.contains(KEY), "the key reached the logs");
    drop(rt);
}
