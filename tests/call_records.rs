//! Every call on record, against the real binary over loopback: a caller
//! whose connection dies mid-call (TCP reset, no `stop`) still leaves a call
//! with `ended_at`, a status, and each turn of its transcript.

use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use frontdesk::audio::{g711, wav, FRAME_SAMPLES};
use frontdesk::carrier::playout::{Playout, PlayoutEvent};

const TOKEN: &str = "records-token";
const SID: &str = "MZrec00000000000000000000000000001";

#[path = "support/binary.rs"]
mod binary;

fn start_server() -> binary::Server {
    binary::spawn(
        "[vad]\nend_ms = 300\n[call]\ngreeting = \"Thanks for calling.\"\n[brain]\nkind = \"scripted\"\n[providers.stt]\nkind = \"scripted\"\n[providers.tts]\nkind = \"scripted\"\n",
        &[("FRONTDESK_API_TOKEN", TOKEN)],
    )
}

fn fixture(name: &str) -> Vec<i16> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    wav::load_8k(&p).unwrap()
}

async fn calls(addr: &str) -> Vec<Value> {
    let v: Value = reqwest::Client::new()
        .get(format!("http://{addr}/api/calls?turns=true"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["calls"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_call_whose_socket_dies_mid_call_is_on_record_with_its_turns() {
    let server = start_server();
    let tcp = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    // Linger 0: dropping the socket resets the connection (no close, no FIN).
    tcp.set_zero_linger().unwrap();
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("ws://{}/media/twilio", server.addr), tcp)
            .await
            .expect("upgrade");
    ws.send(Message::text(format!(
        r#"{{"event":"start","streamSid":"{SID}","start":{{"accountSid":"AC1","streamSid":"{SID}","callSid":"CArec1","customParameters":{{"From":"+447700900123","To":"+442079460000","campaign":"spring"}}}}}}"#
    )))
    .await
    .unwrap();

    // The caller speaks once, then waits for the reply to play; marks are
    // echoed by the shared carrier playout emulator as the audio plays.
    let mut caller: Vec<i16> = vec![0; 8 * 1500];
    caller.extend(fixture("demo_request.wav"));
    caller.extend(vec![0; 8 * 4000]);
    let mut playout = Playout::new(Duration::from_millis(40), Duration::from_millis(400));
    let mut media_msgs = 0usize;
    let mut frames = caller.chunks_exact(FRAME_SAMPLES).enumerate();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut replies_seen = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                assert!(now < deadline, "the call did not reach the second reply in time");
                while let Some(ev) = playout.poll_event(now) {
                    match ev {
                        PlayoutEvent::MarkPlayed(name) => {
                            ws.send(Message::text(format!(
                                r#"{{"event":"mark","streamSid":"{SID}","mark":{{"name":"{name}"}}}}"#
                            ))).await.unwrap();
                        }
                        PlayoutEvent::ReplyEnded(_) => replies_seen += 1,
                    }
                }
                // Greeting and the answer to the caller both played: cut the line.
                if replies_seen >= 2 {
                    break;
                }
                let Some((k, f)) = frames.next() else { break };
                let mut ulaw = Vec::with_capacity(FRAME_SAMPLES);
                g711::encode_ulaw_into(f, &mut ulaw);
                let b64 = base64::engine::general_purpose::STANDARD.encode(&ulaw);
                ws.send(Message::text(format!(
                    r#"{{"event":"media","streamSid":"{SID}","media":{{"track":"inbound","chunk":"{k}","timestamp":"{}","payload":"{b64}"}}}}"#,
                    k * 20
                ))).await.unwrap();
            }
            msg = ws.next() => {
                let now = Instant::now();
                let Some(Ok(Message::Text(t))) = msg else { panic!("server ended the call: {msg:?}") };
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                match v["event"].as_str() {
                    Some("media") => {
                        media_msgs += 1;
                        let n = base64::engine::general_purpose::STANDARD
                            .decode(v["media"]["payload"].as_str().unwrap_or_default())
                            .map(|b| b.len())
                            .unwrap_or(0);
                        playout.push_media(now, n);
                    }
                    Some("mark") => playout.push_mark(now, v["mark"]["name"].as_str().unwrap_or_default().into()),
                    Some("clear") => { playout.clear(now); }
                    _ => {}
                }
            }
        }
    }
    assert!(media_msgs > 0);
    // While the call is live it is on record, not ended.
    let live = calls(&server.addr).await;
    assert_eq!(live.len(), 1);
    assert_eq!(live[0]["call_sid"], "CArec1");
    assert!(live[0]["ended_at"].is_null(), "{:?}", live[0]);
    drop(ws); // TCP reset: no `stop`, no close frame

    let mut call = Value::Null;
    for _ in 0..100 {
        let c = calls(&server.addr).await;
        if c.first().is_some_and(|c| !c["ended_at"].is_null()) {
            call = c[0].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!call.is_null(), "the call never got ended_at");
    assert_eq!(call["status"], "dropped", "{call}");
    assert_eq!(call["from"], "+447700900123");
    assert_eq!(call["to"], "+442079460000");
    let turns = call["turns"].as_array().cloned().unwrap_or_default();
    let roles: Vec<&str> = turns.iter().filter_map(|t| t["role"].as_str()).collect();
    assert_eq!(
        roles,
        vec!["receptionist", "caller", "receptionist"],
        "{turns:?}"
    );
    assert_eq!(turns[0]["text"], "Thanks for calling.");
    assert_eq!(turns[1]["text"], "hello", "the scripted STT's transcript");
    assert!(turns
        .iter()
        .all(|t| t["at"].as_str().is_some_and(|s| !s.is_empty())));
}

#[path = "support/mod.rs"]
mod support;

/// A call still live when the server drains is ended `drained` on record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cut_by_the_drain_is_ended_on_record() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("d.db").display());
    let mut cfg = support::quiet_config();
    cfg.storage.url = Some(url.clone());
    cfg.server.drain_grace_s = 0;
    let (addr, stop, task) = support::start(cfg.clone()).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/media/twilio"))
        .await
        .unwrap();
    ws.send(Message::text(format!(
        r#"{{"event":"start","streamSid":"{SID}","start":{{"accountSid":"AC1","streamSid":"{SID}","callSid":"CAdrain","customParameters":{{}}}}}}"#
    )))
    .await
    .unwrap();
    let store = frontdesk::store::Store::connect(&url, &cfg.storage)
        .await
        .unwrap();
    // On record as soon as it started.
    let mut live = false;
    for _ in 0..100 {
        if store.list_calls(None, 10).await.unwrap().len() == 1 {
            live = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(live, "the started call is on record");
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("server stopped")
        .unwrap();
    let calls = store.list_calls(None, 10).await.unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].status, "drained");
    assert!(calls[0].ended_at.is_some());
}

/// A call task that panics still closes its record, as `error`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_task_that_fails_is_ended_on_record_as_an_error() {
    use frontdesk::call::record::RecordWriter;
    use frontdesk::call::{conversation::CallInfo, Record};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("e.db").display());
    let store = frontdesk::store::Store::connect(&url, &Default::default())
        .await
        .unwrap();
    let metrics = std::sync::Arc::new(frontdesk::metrics::Metrics::default());
    let writer = RecordWriter::start(store.clone(), metrics, false);
    let mut rec = writer.recorder(std::sync::Arc::new(frontdesk::clock::SystemClock));
    let failed = tokio::spawn(async move {
        rec.record(Record::Started(CallInfo {
            call_sid: "CAboom".into(),
            ..CallInfo::default()
        }));
        panic!("a bug in the call task");
    })
    .await;
    assert!(failed.is_err());
    assert!(writer.flush(Duration::from_secs(10)).await);
    let calls = store.list_calls(None, 10).await.unwrap();
    assert_eq!(calls[0].status, "error");
    assert!(calls[0].ended_at.is_some());
}

/// A recorded call leaves a playable Ogg Opus file, named in its activity log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_call_leaves_an_ogg_opus_file_linked_from_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("r.db").display());
    let mut cfg = support::quiet_config();
    cfg.storage.url = Some(url.clone());
    cfg.call.greeting = "Thanks for calling.".into();
    cfg.recording.dir = dir.path().join("recordings");
    let (addr, stop, task) = support::start(cfg.clone()).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/media/twilio"))
        .await
        .unwrap();
    ws.send(Message::text(format!(
        r#"{{"event":"start","streamSid":"{SID}","start":{{"accountSid":"AC1","streamSid":"{SID}","callSid":"CArecorded","customParameters":{{"record":"true"}}}}}}"#
    )))
    .await
    .unwrap();
    // Two seconds of caller audio while the greeting plays.
    let voice = fixture("demo_request.wav");
    for (k, f) in voice.chunks_exact(FRAME_SAMPLES).take(100).enumerate() {
        let mut ulaw = Vec::new();
        g711::encode_ulaw_into(f, &mut ulaw);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&ulaw);
        ws.send(Message::text(format!(
            r#"{{"event":"media","streamSid":"{SID}","media":{{"track":"inbound","chunk":"{k}","timestamp":"{}","payload":"{b64}"}}}}"#,
            k * 20
        )))
        .await
        .unwrap();
    }
    ws.send(Message::text(format!(
        r#"{{"event":"stop","streamSid":"{SID}"}}"#
    )))
    .await
    .unwrap();
    while let Some(Ok(m)) = ws.next().await {
        if matches!(m, Message::Close(_)) {
            break;
        }
    }
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("server stopped")
        .unwrap();
    let file = dir.path().join("recordings").join("CArecorded.ogg");
    let bytes = std::fs::read(&file).expect("the recording exists");
    let ogg = frontdesk::audio::ogg::read_ogg_opus(&bytes).expect("a valid Ogg Opus file");
    assert_eq!(ogg.input_rate, 8000);
    assert_eq!(ogg.packets.len(), 100, "one 20 ms packet per caller frame");
    let store = frontdesk::store::Store::connect(&url, &cfg.storage)
        .await
        .unwrap();
    let calls = store.list_calls(None, 10).await.unwrap();
    assert!(calls[0]
        .events
        .iter()
        .any(|e| e.kind == "recording" && e.detail == "CArecorded.ogg"));
    if std::process::Command::new("opusinfo")
        .arg("-h")
        .output()
        .is_ok()
    {
        let out = std::process::Command::new("opusinfo")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
