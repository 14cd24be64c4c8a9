//! The receptionist brain: who is calling and why, lead tier A–D, slot
//! filling, the action layer and the call's outcome record.
//!
//! - [`extract`]: deterministic facts from a caller turn, and redaction;
//! - [`when`]: preferred times and the caller's time zone;
//! - [`phrases`]: what is said and known (`prompts/phrases.toml`,
//!   `prompts/knowledge.md`), loaded and checked at start-up;
//! - [`rules`]: the rules brain, a sans-IO [`crate::call::Conversation`];
//! - [`llm`]: the LLM brain, a model with the receptionist prompt and
//!   tools, another sans-IO conversation on the same action layer; the
//!   rules brain takes over a call whose model fails;
//! - [`actions`]: the business logic both brains call, run as tool jobs
//!   (never aborted by barge-in, never run from a discarded generation,
//!   at most once per call and job id);
//!
//! Its settings (`[brain]`, `[tiers]`) are in [`crate::config::brain`]. It
//! imports the call seam, booking, CRM, notify's business hours and the
//! store; nothing below it imports it back.

pub mod actions;
pub mod extract;
pub mod llm;
pub mod phrases;
pub mod rules;
pub mod when;
