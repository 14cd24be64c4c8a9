//! The receptionist brain: intent, lead tier A–D, slot filling, tool calls and
//! the call summary. Owned by a later issue; the call core already routes LLM
//! tool calls through [`crate::call::Action::RunTool`] so that side effects are
//! never run from a discarded generation.
