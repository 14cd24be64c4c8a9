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
//! carrier ══WebSocket══▶ carrier::twilio (parse) ──CallEvent──▶ call::Session::handle_event
//!                                                                 │
//!        call::Session = call::CallCore (turns, marks, barge-in; vad::VoiceDetector)
//!                        ⇅ CoreEvent / Directive
//!                        call::Conversation (what to say and do: brain::rules, brain::llm, or scripted)
//!                                                                 │ Output
//!   ┌──────────────────────┬──────────────────────┬───────────────┴──────┬────────────────────┐
//!   ▼                      ▼                      ▼                      ▼                    ▼
//! Send: carrier::twilio  StartReply/Cancel:     RunTool: call::tools   Record: call::record   Hangup:
//! (encode) ══▶ carrier   call::reply (Llm → Tts, (never aborted,        (one writer, batched  close the
//!                        cancellable task)      once per call+job id)  store: calls, turns)  stream
//!                              │ ReplyEvent            │ ToolOutcome
//!                              └──────────▶ back into the Session as inputs ◀─┘
//! ```
//!
//! ## Module map
//!
//! | module | owns |
//! | --- | --- |
//! | [`app`] | the composition root: validates `Config` + `Env` once, builds store, calendar, CRM, providers; hands out handles |
//! | [`config`] | typed TOML config ([`config::Config`]; sections `providers`, `routing`, `notify`, `brain`) and the environment ([`config::Env`]), validated before anything connects |
//! | [`audio`] | G.711 μ-law/A-law, 20 ms PCM frames, streaming resampling (rubato), Opus (audiopus), WAV loading |
//! | [`vad`] | webrtc-vad with hysteresis → `SpeechStarted`/`SpeechEnded`; the barge-in policy |
//! | [`carrier`] | wire formats per carrier ⇄ carrier-neutral [`carrier::CallEvent`] / [`carrier::CarrierCommand`]; close codes for transport rejections; the shared carrier playout emulator |
//! | [`call`] | the sans-IO call core and [`call::Session`] (core ⇄ [`call::Conversation`]), the reply pipeline, the tool runner, the process-wide call record writer (one transaction per batch), the per-call tokio driver |
//! | [`providers`] | streaming `Stt`/`Llm`/`Tts` traits; the embedded offline stack (`local`: whisper.cpp, Piper on ONNX Runtime, espeak-ng, on blocking pools), scripted fakes, the Deepgram, OpenAI-compatible, ElevenLabs, Cartesia and Aura clients, and the per-call fail-over chain |
//! | [`brain`] | the rules brain (intent, lead tier A–D, slot filling, preferred times, redaction), the LLM brain (a model with tools, checked before they run; the rules brain takes over on failure) and the action layer both brains call (holds, CRM upsert, callbacks, the outcome on the lead) |
//! | [`routing`] | the inbound plan (stages 1–3, IVR, on-call, protection) as a pure function, TwiML, Twilio signatures and stream tokens |
//! | [`booking`] | `Calendar` trait: slots, holds with TTL, bookings; local + Cal.com |
//! | [`crm`] | `Crm` trait: lookup, upsert; local + HubSpot |
//! | [`notify`] | Slack cards, overnight digest and escalation, signed call-back links with click-to-call, SMS, HubSpot sync, the post-call webhook — all through the leased outbox worker |
//! | [`store`] | sqlx on SQLite (default) and PostgreSQL; migrations; durable outbox; calls, turns, tool-job ledger, lead outcomes, dashboard queries |
//! | [`http`] | axum router: media WebSockets, health, metrics, API, Twilio and Slack webhooks, call-back pages, `/dashboard` (no wiring: handles come from [`app`]) |
//! | [`loadtest`] | carrier emulation: the load generator (`frontdesk loadtest`) and the one simulated call (`frontdesk call`, `simcall`) |
//!
//! Leaves, imported by many and importing no other module of the crate
//! (except `pii`): [`clock`] (`Clock`, `Sleeper`), [`retry`] (back-off,
//! `Retry-After`), [`phone`] (E.164), [`config_error`] (the error every
//! config section reports with, and the shared HTTP-client checks),
//! [`metrics`], [`pii`] (`Pii<T>` / `Secret<T>` masked in logs). Nothing
//! imports upward: `config` composes the sections `booking`, `crm` and
//! `store` own; those report with `config_error` and never import `config`.
//!
//! ## The drive contract of the call session
//!
//! [`call::Session`] (like the [`call::CallCore`] inside it) is a plain
//! struct: feed it inputs with its `handle_*` methods (each takes `now`;
//! carrier messages all go through [`call::Session::handle_event`]), then
//! drain [`call::Session::poll_output`] until it returns `None`, and sleep
//! until [`call::Session::poll_timeout`] (calling `handle_timeout` when it
//! passes). Drain outputs after *every* input. The driver in
//! [`call::driver`] does exactly this for one WebSocket; the simulator in
//! `call/sim.rs` does it in virtual time.

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
