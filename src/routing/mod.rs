//! Inbound call routing: the plan (stages 1–3 of seed 000, IVR menus, the
//! on-call rotation of seed 002, the AI's warm transfer), its TwiML, and the
//! signatures that guard the webhooks and the media stream.
//!
//! [`plan`] is pure: config, location toggles, `now`, the caller and the
//! caller's recent calls in, a [`plan::Plan`] out — no I/O, no wall clock, no
//! tokio. [`twiml`] renders a plan as TwiML (escaped XML). [`signature`]
//! checks `X-Twilio-Signature` and signs the expiring stream token the media
//! session verifies. The webhooks that drive all this are in
//! `crate::http::twilio`; they read the store and the clock and hand the
//! results in.

pub mod plan;
pub mod signature;
pub mod twiml;

pub use plan::{
    count_ring_nouns, Caller, Guard, Leg, Plan, Routing, Speech, Step, Target, Toggles,
};
pub use signature::{
    sign_stream_token, twilio_signature, verify_stream_token, verify_twilio_signature,
    StreamContext, StreamKey, StreamTokenError,
};
