//! `frontdesk call`: one whole simulated call through the real server code.
//!
//! The server runs in this process on an ephemeral loopback port, built by
//! the same composition root as `serve` (same config, same store). A
//! carrier emulator connects to its Twilio media route, plays each caller
//! turn in real time after the receptionist's previous reply has finished
//! playing (line-level noise in between), emulates the carrier's playout
//! (marks echoed as audio plays, `clear` drops what was not yet heard), and
//! keeps what the caller heard. The conversation, actions and latency come
//! from the call's own record through a tap on the server's call services;
//! the lead, booking and transfer from the store, as `GET /api/leads` shows
//! them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::wire::ServerMessage;
use crate::app::App;
use crate::audio::{g711, wav};
use crate::call::session::Record;
use crate::call::{TapEvent, Waterfall};
use crate::carrier::playout::{Playout, PlayoutEvent, FRAME, FRAME_BYTES};
use crate::clock::SystemClock;
use crate::config::{Config, Env};
use crate::store::{LeadFilter, Speaker};

/// Arguments of `frontdesk call`.
#[derive(Debug, Clone, clap::Args)]
pub struct CallArgs {
    /// Config file (also `FRONTDESK_CONFIG`); none: the built-in demo business.
    #[arg(long, env = "FRONTDESK_CONFIG")]
    pub config: Option<PathBuf>,
    /// The caller's number (E.164).
    #[arg(long, default_value = "+447700900123")]
    pub from: String,
    /// The number called (E.164).
    #[arg(long, default_value = "+442079460000")]
    pub to: String,
    /// `primary`: the AI answers first; `backup`: after the humans did not.
    #[arg(long, default_value = "primary", value_parser = ["primary", "backup"])]
    pub mode: String,
    /// Write everything the receptionist said (as the caller heard it) to this WAV.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print one JSON object at the end instead of the conversation.
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait for each reply before the caller goes on.
    #[arg(long, default_value_t = 20)]
    pub turn_timeout_s: u64,
    /// Caller turns, in order: WAV at any rate, or raw 8 kHz μ-law.
    #[arg(required = true)]
    pub audio: Vec<PathBuf>,
}

/// One line of the conversation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Line {
    /// `receptionist` or `caller`.
    pub role: &'static str,
    /// The words (redacted like the record).
    pub text: String,
    /// A receptionist turn the caller cut off.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

/// One action the receptionist took.
#[derive(Debug, Clone, Serialize)]
pub struct ActionLine {
    /// Tool name.
    pub name: String,
    /// Its arguments.
    pub args: serde_json::Value,
    /// Whether it did what was asked (null: still running at the end).
    pub ok: Option<bool>,
    /// What it returned.
    pub result: serde_json::Value,
}

/// One turn's latency: the server's waterfall plus what the caller measured.
#[derive(Debug, Clone, Serialize)]
pub struct TurnLatency {
    /// The server's stages.
    #[serde(flatten)]
    pub stages: Waterfall,
    /// The caller's end of speech → the first reply audio received.
    pub heard_ms: Option<u32>,
}

/// What `frontdesk call --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct CallReport {
    /// The call's id.
    pub call_sid: String,
    /// Caller number.
    pub from: String,
    /// Number called.
    pub to: String,
    /// `primary` or `backup`.
    pub mode: String,
    /// Start (RFC 3339).
    pub started_at: String,
    /// End (RFC 3339).
    pub ended_at: String,
    /// Who said what, in order.
    pub conversation: Vec<Line>,
    /// Per answered turn.
    pub latency_ms: Vec<TurnLatency>,
    /// Intent of the lead (null: no lead).
    pub intent: Option<String>,
    /// Tier A–D.
    pub tier: Option<String>,
    /// `booked`, `transferred`, `callback`, `answered`, `opted_out`.
    pub outcome: Option<String>,
    /// The lead as stored.
    pub lead: Option<serde_json::Value>,
    /// `{id, owner, start, end}` of a confirmed booking.
    pub booking: Option<serde_json::Value>,
    /// `{to, summary}` of a hand-off to people.
    pub transfer: Option<serde_json::Value>,
    /// Tool calls, in order.
    pub actions: Vec<ActionLine>,
    /// How the call ended.
    pub ended: String,
}

impl CallReport {
    /// The conversation as lines of text.
    pub fn human(&self) -> String {
        let mut s = String::new();
        for l in &self.conversation {
            let who = if l.role == "caller" {
                "caller"
            } else {
                "receptionist"
            };
            let cut = if l.interrupted { " [interrupted]" } else { "" };
            s.push_str(&format!("{who:>12}: {}{cut}\n", l.text));
        }
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        s.push_str(&format!(
            "intent {} · tier {} · outcome {}\n",
            show(&self.intent),
            show(&self.tier),
            show(&self.outcome)
        ));
        for a in &self.actions {
            let ok = match a.ok {
                Some(true) => "ok",
                Some(false) => "failed",
                None => "running",
            };
            s.push_str(&format!("action {} {} → {ok}\n", a.name, a.args));
        }
        for (i, t) in self.latency_ms.iter().enumerate() {
            s.push_str(&format!(
                "turn {}: end-of-turn {} · stt {} · decide {} · first token {} · tts {} · send {} · total {} ms\n",
                i + 1,
                t.stages.end_of_turn_ms,
                t.stages.stt_ms,
                t.stages.decide_ms,
                t.stages.first_token_ms,
                t.stages.tts_ms,
                t.stages.send_ms,
                t.stages.total_ms
            ));
        }
        s
    }
}

/// Read a caller turn: WAV (any rate, resampled) or raw μ-law.
pub fn load_turn(path: &Path) -> anyhow::Result<Vec<i16>> {
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    if bytes.starts_with(b"RIFF") {
        wav::decode_to_8k(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    } else {
        Ok(wav::decode_raw_ulaw(&bytes))
    }
}

/// What the emulated carrier is doing.
enum Phase {
    /// Waiting for the receptionist to answer (and finish).
    Await { deadline: Instant, heard: bool },
    /// A breath before the caller's next turn.
    Pause { until: Instant },
    /// Playing caller turn `turn` from sample `pos`.
    Speak { turn: usize, pos: usize },
}

/// Run the call. `config` and `env` as `serve` would get them.
pub async fn run(args: CallArgs, config: Config, env: Env) -> anyhow::Result<CallReport> {
    let turns: Vec<Vec<i16>> = args
        .audio
        .iter()
        .map(|p| load_turn(p))
        .collect::<Result<_, _>>()?;
    let app = App::build(config, &env, Arc::new(SystemClock))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = app.services.store.clone();
    let (tap_tx, mut tap_rx) = mpsc::unbounded_channel();
    let mut state = crate::http::AppState::new(&app);
    state.calls.tap = Some(tap_tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::http::serve(listener, state, async {
        let _ = stop_rx.await;
    }));

    let call_sid = format!("CA{}", uuid::Uuid::new_v4().simple());
    let stream_sid = format!("MZ{}", uuid::Uuid::new_v4().simple());
    let started_at = chrono::Utc::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/media/twilio"))
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the in-process server: {e}"))?;
    ws.send(Message::Text(
        r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#.into(),
    ))
    .await?;
    let start = serde_json::json!({
        "event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
        "start": {
            "accountSid": "AC00000000000000000000000000000000",
            "streamSid": stream_sid, "callSid": call_sid, "tracks": ["inbound"],
            "customParameters": { "from": args.from, "to": args.to, "mode": args.mode },
            "mediaFormat": { "encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1 },
        },
    });
    ws.send(Message::Text(start.to_string().into())).await?;

    let timeout = Duration::from_secs(args.turn_timeout_s.max(1));
    let mut seq: u64 = 2;
    let mut playout = Playout::new(Duration::from_millis(60), Duration::from_millis(900));
    let mut heard: Vec<u8> = Vec::new();
    let mut heard_ms: Vec<Option<u32>> = Vec::new();
    let mut speech_end: Option<Instant> = None;
    let t0 = Instant::now();
    let mut k: u64 = 0;
    let mut noise = Noise(0x2545_f491);
    let mut phase = Phase::Await {
        deadline: t0 + timeout,
        heard: false,
    };
    let mut next_turn = 0usize;
    let mut frame = Vec::with_capacity(FRAME_BYTES);
    let mut server_hung_up = false;
    'call: loop {
        let due = t0 + FRAME * k as u32;
        let wake = playout.poll_timeout().map_or(due, |t| t.min(due));
        tokio::select! {
            msg = ws.next() => {
                let now = Instant::now();
                match msg {
                    Some(Ok(Message::Text(t))) => {
                        let Ok(m) = serde_json::from_str::<ServerMessage>(t.as_str()) else { continue };
                        match m.event.as_ref() {
                            "media" => {
                                let Some(media) = m.media else { continue };
                                let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(media.payload.as_bytes()) else { continue };
                                playout.push_media(now, bytes.len());
                                heard.extend_from_slice(&bytes);
                                if let Phase::Await { heard: h, .. } = &mut phase {
                                    if !*h {
                                        *h = true;
                                        if let Some(end) = speech_end.take() {
                                            heard_ms.push(Some(now.saturating_duration_since(end).as_millis() as u32));
                                        }
                                    }
                                }
                            }
                            "mark" => {
                                if let Some(mark) = m.mark {
                                    playout.push_mark(now, mark.name.into_owned());
                                }
                            }
                            "clear" => {
                                let unplayed = (playout.backlog(now).as_micros() / 125) as usize;
                                heard.truncate(heard.len().saturating_sub(unplayed));
                                playout.clear(now);
                            }
                            _ => {}
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        server_hung_up = true;
                        break 'call;
                    }
                    Some(Ok(_)) => {}
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
        let now = Instant::now();
        while let Some(ev) = playout.poll_event(now) {
            match ev {
                PlayoutEvent::MarkPlayed(name) => {
                    let echo = serde_json::json!({
                        "event": "mark", "sequenceNumber": seq.to_string(),
                        "streamSid": stream_sid, "mark": { "name": name },
                    });
                    seq += 1;
                    ws.send(Message::Text(echo.to_string().into())).await?;
                }
                PlayoutEvent::ReplyEnded(_) => {
                    if matches!(phase, Phase::Await { heard: true, .. }) {
                        phase = Phase::Pause {
                            until: now + Duration::from_millis(400),
                        };
                    }
                }
            }
        }
        match phase {
            Phase::Await { deadline, .. } if now >= deadline && !playout.is_active() => {
                if speech_end.take().is_some() {
                    heard_ms.push(None); // no answer to that turn
                }
                phase = Phase::Pause { until: now };
            }
            Phase::Pause { until } if now >= until => {
                if next_turn >= turns.len() {
                    break 'call;
                }
                phase = Phase::Speak {
                    turn: next_turn,
                    pos: 0,
                };
                next_turn += 1;
            }
            _ => {}
        }
        // Every caller frame now due (the clock never drifts).
        while t0 + FRAME * k as u32 <= now {
            frame.clear();
            if let Phase::Speak { turn, pos } = &mut phase {
                let clip = &turns[*turn];
                let end = (*pos + FRAME_BYTES).min(clip.len());
                g711::encode_ulaw_into(&clip[*pos..end], &mut frame);
                *pos = end;
                if end >= clip.len() {
                    speech_end = Some(now);
                    phase = Phase::Await {
                        deadline: now + timeout,
                        heard: false,
                    };
                }
            }
            while frame.len() < FRAME_BYTES {
                frame.push(g711::linear_to_ulaw(noise.sample()));
            }
            let media = format!(
                r#"{{"event":"media","sequenceNumber":"{seq}","streamSid":"{stream_sid}","media":{{"track":"inbound","chunk":"{k}","timestamp":"{}","payload":"{}"}}}}"#,
                k * 20,
                base64::engine::general_purpose::STANDARD.encode(&frame)
            );
            seq += 1;
            k += 1;
            if ws.send(Message::Text(media.into())).await.is_err() {
                server_hung_up = true;
                break 'call;
            }
        }
    }
    if !server_hung_up {
        let stop = serde_json::json!({
            "event": "stop", "sequenceNumber": seq.to_string(), "streamSid": stream_sid,
            "stop": { "accountSid": "AC00000000000000000000000000000000", "callSid": call_sid },
        });
        let _ = ws.send(Message::Text(stop.to_string().into())).await;
        let _ = ws.close(None).await;
    }
    let ended_at = chrono::Utc::now();

    // The record, up to the call's end (bounded: a stuck writer must not hang us).
    let mut turns_by_seq: BTreeMap<u32, Line> = BTreeMap::new();
    let mut started: BTreeMap<String, ActionLine> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut waterfalls: Vec<Waterfall> = Vec::new();
    let mut transfer = None;
    let mut ended = String::from("unknown");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ev = tokio::select! {
            ev = tap_rx.recv() => ev,
            _ = tokio::time::sleep_until(deadline) => None,
        };
        let Some((sid, ev)) = ev else { break };
        if sid != call_sid {
            continue;
        }
        match ev {
            TapEvent::Waterfall(w) => waterfalls.push(w),
            TapEvent::Record(Record::Turn {
                seq,
                speaker,
                text,
                interrupted,
                heard,
            }) => {
                let role = match speaker {
                    Speaker::Caller => "caller",
                    _ => "receptionist",
                };
                let text = if interrupted {
                    heard.unwrap_or(text)
                } else {
                    text
                };
                turns_by_seq.insert(
                    seq,
                    Line {
                        role,
                        text,
                        interrupted,
                    },
                );
            }
            TapEvent::Record(Record::ToolStarted(job)) => {
                order.push(job.id.clone());
                started.insert(
                    job.id.clone(),
                    ActionLine {
                        name: job.name,
                        args: job.args,
                        ok: None,
                        result: serde_json::Value::Null,
                    },
                );
            }
            TapEvent::Record(Record::ToolFinished(o)) => {
                if let Some(a) = started.get_mut(&o.id) {
                    a.ok = Some(o.ok);
                    a.result = o.result;
                }
            }
            TapEvent::Record(Record::HandOff { target, summary }) => {
                transfer = Some(serde_json::json!({ "to": target, "summary": summary }));
            }
            TapEvent::Record(Record::Ended(reason)) => {
                ended = format!("{reason:?}");
                break;
            }
            TapEvent::Record(_) => {}
        }
    }
    // Let the tool jobs and the record writer finish, then stop the server.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;

    let actions: Vec<ActionLine> = order.iter().filter_map(|id| started.remove(id)).collect();
    let booking = actions
        .iter()
        .rev()
        .find(|a| a.name == "confirm_booking" && a.ok == Some(true))
        .map(|a| booking_of(&a.result));
    let lead = store
        .list_leads(&LeadFilter {
            since: Some(started_at - chrono::Duration::seconds(5)),
            limit: 200,
            ..LeadFilter::default()
        })
        .await
        .ok()
        .and_then(|ls| {
            ls.into_iter()
                .find(|l| l.call_sid.as_deref() == Some(&call_sid))
        });
    let mut latency = Vec::new();
    for (i, w) in waterfalls.into_iter().enumerate() {
        latency.push(TurnLatency {
            stages: w,
            heard_ms: heard_ms.get(i).copied().flatten(),
        });
    }
    if let Some(out) = &args.out {
        let mut pcm = Vec::with_capacity(heard.len());
        g711::decode_ulaw_into(&heard, &mut pcm);
        std::fs::write(out, wav::encode_wav_8k(&pcm))
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
    }
    Ok(CallReport {
        call_sid,
        from: args.from.clone(),
        to: args.to.clone(),
        mode: args.mode.clone(),
        started_at: started_at.to_rfc3339(),
        ended_at: ended_at.to_rfc3339(),
        conversation: turns_by_seq.into_values().collect(),
        latency_ms: latency,
        intent: lead.as_ref().and_then(|l| l.intent.clone()),
        tier: lead.as_ref().and_then(|l| l.tier.clone()),
        outcome: lead.as_ref().and_then(|l| l.outcome.clone()),
        lead: lead.as_ref().and_then(|l| serde_json::to_value(l).ok()),
        booking,
        transfer,
        actions,
        ended,
    })
}

/// `{id, owner, start, end}` from a `confirm_booking` result, whatever
/// else it carries.
fn booking_of(result: &serde_json::Value) -> serde_json::Value {
    let b = result.get("booking").unwrap_or(result);
    let pick = |k: &str| b.get(k).cloned().unwrap_or(serde_json::Value::Null);
    let id = b.get("booking_id").or_else(|| b.get("id")).cloned();
    serde_json::json!({
        "id": id.unwrap_or(serde_json::Value::Null),
        "owner": pick("owner"),
        "start": pick("start"),
        "end": pick("end"),
    })
}

/// Quiet line noise, about −60 dBFS (a xorshift: no allocation, no RNG state to share).
struct Noise(u32);

impl Noise {
    fn sample(&mut self) -> i16 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        ((x >> 16) as i16) / 1024
    }
}
