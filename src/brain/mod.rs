//! The receptionist brain: intent, lead tier A–D, slot filling, tool calls and
//! the call summary. Owned by a later issue: it implements
//! [`crate::call::Conversation`], and asks for side effects with
//! [`crate::call::Directive::RunTool`], which the session hands to the tool
//! runner (never aborted by barge-in, never run from a discarded generation).

pub mod extract;
