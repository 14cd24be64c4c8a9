//! One call: the sans-IO [`core`] (turn-taking, playout marks, barge-in)
//! joined to a [`conversation`] by the sans-IO [`session`]; the [`reply`]
//! pipeline (LLM → TTS for one generation, cancellable); the [`tools`]
//! runner (side effects that barge-in never aborts); the call [`record`]
//! writer; and the tokio [`driver`] that connects them to a carrier WebSocket.
//!
//! The core, the session and conversations never do I/O or read a clock;
//! the driver never makes conversational decisions.

pub mod conversation;
pub mod core;
#[cfg(test)]
mod core_tests;
pub mod driver;
#[cfg(test)]
mod driver_tests;
pub mod record;
pub mod recording;
pub mod reply;
pub mod session;
#[cfg(test)]
mod sim;
pub mod tools;

pub use self::core::{
    Action, CallCore, CoreConfig, CoreEvent, HangupReason, Observation, ReplyEvent, ReplyInput,
    TurnRecord, TurnState, Waterfall,
};
pub use conversation::{Conversation, ConversationFactory, Directive, Event};
pub use driver::{run_call, CallServices, CallTap, TapEvent};
pub use session::{Output, Record, Session, SessionConfig};
pub use tools::{ToolExecutor, ToolJob, ToolOutcome, ToolRunner};
