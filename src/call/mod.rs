//! One call: the sans-IO [`core`] (turn-taking, playout marks, barge-in), the
//! [`reply`] pipeline (LLM → TTS for one generation) and the tokio [`driver`]
//! that connects them to a carrier WebSocket.
//!
//! The core must never do I/O or read a clock; the driver must never make
//! conversational decisions.

pub mod conversation;
pub mod core;
#[cfg(test)]
mod core_tests;
pub mod driver;
pub mod reply;
#[cfg(test)]
mod sim;
pub mod tools;

pub use self::core::{
    Action, CallCore, CoreConfig, HangupReason, Observation, ReplyEvent, ReplyInput, TurnRecord,
    TurnState,
};
pub use driver::{run_call, CallServices};
