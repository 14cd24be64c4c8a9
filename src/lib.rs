//! # frontdesk — an AI voice receptionist media server
//!
//! Carriers (Twilio Media Streams first) open a WebSocket per call and stream
//! the caller's audio; frontdesk listens, decides when the caller has finished,
//! thinks, answers with synthesised speech, and stops talking the moment the
//! caller cuts in.
//!
//! ## Data flow
//!
//! ```text
//! carrier ══WebSocket══▶ carrier::twilio (parse) ──CallEvent──▶ call::CallCore ◀── vad::VoiceDetector
//!                                                                  │  ▲
//!                                     Action::StartReply / Cancel  │  │ ReplyEvent (text, audio, tools)
//!                                                                  ▼  │
//!                                  providers: Stt ──▶ Llm ──▶ Tts (one pipeline task per reply)
//! call::CallCore ──CarrierCommand (media, mark, clear)──▶ carrier::twilio (encode) ══▶ carrier
//! ```
//!
//! ## Module map
//!
//! | module | owns |
//! | --- | --- |
//! | [`config`] | typed TOML config + env secrets, validated before any port is bound |
//! | [`audio`] | G.711 μ-law/A-law, 20 ms PCM frames, streaming resampling (rubato), Opus (audiopus), WAV loading |
//! | [`vad`] | webrtc-vad with hysteresis → `SpeechStarted`/`SpeechEnded`; the barge-in policy |
//! | [`carrier`] | wire formats per carrier ⇄ carrier-neutral [`carrier::CallEvent`] / [`carrier::CarrierCommand`] |
//! | [`call`] | the sans-IO call core (turns, playout marks, barge-in) and its tokio driver |
//! | [`providers`] | streaming `Stt`/`Llm`/`Tts` traits and implementations (scripted fakes first) |
//! | [`brain`] | intent, lead tier A–D, slot filling (later issues) |
//! | [`routing`] | inbound plan stages 1–3, TwiML (later issues) |
//! | [`booking`] | `Calendar` trait: slots, holds with TTL, bookings; local + Cal.com |
//! | [`crm`] | E.164 normalisation; `Crm` trait: lookup, upsert; local + HubSpot |
//! | [`notify`] | Slack cards, overnight queue, signed call-back links (later issues) |
//! | [`store`] | sqlx on SQLite (default) and PostgreSQL; migrations; durable outbox |
//! | [`http`] | axum router: media WebSockets, health, metrics, API |
//! | [`loadtest`] | carrier-style load generator (`frontdesk loadtest`) |
//! | [`metrics`] | process-wide counters and histograms rendered as Prometheus text |
//! | [`pii`] | `Pii<T>` / `Secret<T>` wrappers whose `Debug`/`Display` mask the value |
//!
//! ## The drive contract of the call core
//!
//! [`call::CallCore`] is a plain struct: feed it inputs with its `handle_*`
//! methods (each takes `now`), then drain [`call::CallCore::poll_action`] until it
//! returns `None`, and sleep until [`call::CallCore::poll_timeout`] (calling
//! `handle_timeout` when it passes). Drain outputs after *every* input. The
//! driver in [`call::driver`] does exactly this for one WebSocket.

pub mod app;
pub mod audio;
pub mod booking;
pub mod brain;
pub mod call;
pub mod carrier;
pub mod clock;
pub mod config;
pub mod config_error;
pub mod crm;
pub mod http;
pub mod loadtest;
pub mod metrics;
pub mod notify;
pub mod phone;
pub mod pii;
pub mod providers;
pub mod retry;
pub mod routing;
pub mod store;
pub mod vad;
