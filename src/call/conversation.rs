//! The conversation seam: what the receptionist decides, given what happened.
//!
//! The turn-taking [`CallCore`](super::CallCore) knows *when* the caller has
//! finished, what they heard and when to stop talking; a [`Conversation`]
//! knows *what* to say and do about it. [`Session`](super::Session) joins
//! the two: it reports each [`Event`] to the conversation and carries out the
//! [`Directive`]s it answers with. A conversation is sans-IO like the core —
//! it takes `now` and returns decisions; it never awaits, sleeps or touches
//! the network — so it is tested in virtual time.
//!
//! [`ScriptedConversation`] is the simplest one: it greets, and answers every
//! caller turn by asking the configured LLM with the conversation so far. The
//! receptionist brain is another implementation of the same trait.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::pii::Pii;
use crate::providers::{ChatMessage, LlmRequest, Role, ToolCall};

use super::tools::{ToolJob, ToolOutcome};

/// The system prompt shipped in `prompts/system.md`.
pub const SYSTEM_PROMPT: &str = include_str!("../../prompts/system.md");

/// Who is calling whom, from the stream's `start`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallInfo {
    /// The carrier's call id.
    pub call_sid: String,
    /// The carrier's stream id.
    pub stream_sid: String,
    /// The caller's number (E.164 when it could be normalised).
    pub from: Option<Pii<String>>,
    /// The number they called.
    pub to: Option<Pii<String>>,
    /// Every `<Parameter>` of the stream (personal data: masked in logs).
    pub params: BTreeMap<String, Pii<String>>,
}

/// How the caller was cut off, or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotTurn {
    /// The whole text the receptionist meant to say.
    pub said: String,
    /// The share of it the caller heard (by confirmed marks); equal to
    /// `said` unless interrupted, and then ending in "…".
    pub heard: String,
    /// Milliseconds of the reply the carrier confirmed as played.
    pub heard_ms: u64,
    /// Milliseconds of reply audio there were.
    pub total_ms: u64,
    /// The caller cut in.
    pub interrupted: bool,
}

/// What happened in the call, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The stream started (exactly once, first).
    Started(CallInfo),
    /// The caller finished a turn and this is what they said.
    /// `amends_previous`: the reply to the previous turn was dropped before
    /// the caller heard any of it (they went on talking), and `text` repeats
    /// that turn's words followed by the new ones — replace that turn.
    CallerSaid {
        /// The caller's words.
        text: String,
        /// Replaces the previous caller turn.
        amends_previous: bool,
    },
    /// A reply ended: played to the end, or cut off by the caller.
    BotTurnEnded(BotTurn),
    /// A reply produced no audio at all (provider failure or timeout).
    ReplyFailed,
    /// The current generation asked for a tool. (Tool calls of a generation
    /// the core discarded never get here.)
    ModelToolCall(ToolCall),
    /// A tool job finished (also after a barge-in: jobs are never aborted).
    ToolFinished(ToolOutcome),
    /// A keypad digit.
    Dtmf(char),
    /// The call is over; no directive will be carried out any more.
    Ended,
}

/// Why the conversation ends the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The conversation is complete: hang up.
    Hangup,
    /// Hand the caller to people: the carrier fetches the next step (a ring
    /// with this summary as whisper) once the stream closes.
    HandOff {
        /// Who should take it (`team`, a user id, a queue).
        target: String,
        /// One line for the answering human.
        summary: String,
    },
}

/// What the conversation wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum Directive {
    /// Speak this text as it is.
    Say(String),
    /// Ask the LLM (with these messages and tools) and speak its answer.
    /// One still queued (not started) when the caller's next utterance is
    /// reported is withdrawn: the conversation answers that utterance with
    /// a request that has it.
    Generate(LlmRequest),
    /// Run a side-effecting job; its [`Event::ToolFinished`] comes back.
    RunTool(ToolJob),
    /// End the call once everything already asked for has been said.
    End(Ending),
    /// From the caller's next turn on, their turn ends after this many ms
    /// of silence (`None`: `[vad] end_ms` again) — longer while they read
    /// out a number, an e-mail address or a spelling.
    EndOfTurn(Option<u32>),
}

/// One call's conversation. See the module docs.
pub trait Conversation: Send {
    /// React to `event`, appending what to do to `out`.
    fn on_event(&mut self, event: Event, now: Instant, out: &mut Vec<Directive>);

    /// The caller's words with what must never be kept (card numbers, bank
    /// details, health information) removed, or `None` when nothing is to
    /// be removed. The session applies it before a turn is recorded or told
    /// to the conversation. Default: nothing removed.
    fn scrub(&self, text: &str) -> Option<String> {
        let _ = text;
        None
    }
}

/// Makes a [`Conversation`] per call.
pub trait ConversationFactory: Send + Sync {
    /// A fresh conversation for one call.
    fn start(&self) -> Box<dyn Conversation>;
}

/// The conversation as chat messages, bounded: the model's context needs
/// only the recent exchanges, and a call that runs for hours must not grow
/// without limit (the store keeps the whole transcript).
#[derive(Debug, Clone)]
pub struct ChatLog {
    system: String,
    messages: Vec<ChatMessage>,
    max: usize,
}

impl ChatLog {
    /// An empty log that keeps at most `max` messages after the system prompt.
    pub fn new(system: impl Into<String>, max: usize) -> Self {
        ChatLog {
            system: system.into(),
            messages: Vec::with_capacity(max),
            max: max.max(2),
        }
    }

    fn push(&mut self, m: ChatMessage) {
        if self.messages.len() >= self.max {
            // Drop the oldest half at once: amortised, and the window starts
            // on a caller turn as often as not.
            self.messages.drain(..self.max / 2);
            // A tool result whose call was dropped would be refused by the
            // chat API: the window never starts on one.
            let orphans = self
                .messages
                .iter()
                .take_while(|m| m.role == Role::Tool)
                .count();
            self.messages.drain(..orphans);
        }
        self.messages.push(m);
    }

    /// The caller said `text` (replacing their last turn when `amends`).
    pub fn caller(&mut self, text: &str, amends: bool) {
        if amends {
            if let Some(i) = self.messages.iter().rposition(|m| m.role == Role::User) {
                self.messages.truncate(i);
            }
        }
        self.push(ChatMessage::text(Role::User, text));
    }

    /// The caller's last turn now reads `text` (they went on before the
    /// reply to it was heard), keeping what came after it — tool exchanges
    /// made meanwhile stay in the log, unlike [`ChatLog::caller`] with
    /// `amends`. With no caller turn yet, `text` is added as one.
    pub fn amend_caller(&mut self, text: &str) {
        match self
            .messages
            .iter_mut()
            .rev()
            .find(|m| m.role == Role::User)
        {
            Some(m) => m.content = Some(text.to_string()),
            None => self.push(ChatMessage::text(Role::User, text)),
        }
    }

    /// The receptionist said this (what the caller heard of it).
    pub fn receptionist(&mut self, text: &str) {
        if !text.trim().is_empty() {
            self.push(ChatMessage::text(Role::Assistant, text));
        }
    }

    /// The model called a tool and this came of it: the assistant message
    /// carrying the call, then the tool's result, as chat APIs expect them.
    pub fn tool_exchange(&mut self, call: &ToolCall, outcome: &ToolOutcome) {
        self.push(ChatMessage {
            role: Role::Assistant,
            content: None,
            tool_calls: vec![call.clone()],
            tool_call_id: None,
        });
        self.push(tool_result(call, outcome));
    }

    /// A reply that called tools, once every call has its outcome: one
    /// assistant message with what was said (`said`, may be empty) and all
    /// the calls, then each call's result in order — the shape chat APIs
    /// expect when a model speaks and calls tools in one reply.
    pub fn tool_round(&mut self, said: &str, exchanges: &[(ToolCall, ToolOutcome)]) {
        if exchanges.is_empty() {
            return self.receptionist(said);
        }
        self.push(ChatMessage {
            role: Role::Assistant,
            content: (!said.trim().is_empty()).then(|| said.to_string()),
            tool_calls: exchanges.iter().map(|(c, _)| c.clone()).collect(),
            tool_call_id: None,
        });
        for (call, outcome) in exchanges {
            self.push(tool_result(call, outcome));
        }
    }

    /// System prompt first, then the kept messages.
    pub fn messages(&self) -> Vec<ChatMessage> {
        let mut out = Vec::with_capacity(self.messages.len() + 1);
        out.push(ChatMessage::text(Role::System, self.system.clone()));
        out.extend(self.messages.iter().cloned());
        out
    }

    /// Messages kept (without the system prompt).
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Nothing said yet.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

/// The chat message answering `call` with `outcome`.
fn tool_result(call: &ToolCall, outcome: &ToolOutcome) -> ChatMessage {
    let mut result = ChatMessage::text(
        Role::Tool,
        serde_json::json!({ "ok": outcome.ok, "result": outcome.result }).to_string(),
    );
    result.tool_call_id = Some(call.id.clone());
    result
}

/// What the receptionist says before handing the caller to people.
pub const HANDOFF_LINE: &str = "One moment while I connect you.";

/// What the receptionist says when a transfer found nobody.
pub const TRANSFER_FAILED_LINE: &str = "Sorry, nobody could take your call just now. I can book a time for you, or have someone call you back. Which would you prefer?";

/// Messages kept by [`ScriptedConversation`]: 16 exchanges.
const SCRIPTED_HISTORY: usize = 32;

/// Greets, then answers each caller turn with the LLM (no tools).
#[derive(Debug)]
pub struct ScriptedConversation {
    greeting: String,
    log: ChatLog,
    max_tokens: u32,
}

impl ScriptedConversation {
    /// `greeting` empty: say nothing until the caller speaks.
    pub fn new(greeting: impl Into<String>, system_prompt: impl Into<String>) -> Self {
        ScriptedConversation {
            greeting: greeting.into(),
            log: ChatLog::new(system_prompt, SCRIPTED_HISTORY),
            max_tokens: 300,
        }
    }

    /// The conversation so far, as the model would see it.
    pub fn log(&self) -> &ChatLog {
        &self.log
    }
}

impl Conversation for ScriptedConversation {
    fn on_event(&mut self, event: Event, _now: Instant, out: &mut Vec<Directive>) {
        match event {
            Event::Started(info) => {
                // Back from a transfer nobody accepted: say so, and offer
                // what can be done instead.
                let failed = info
                    .params
                    .get("transfer_failed")
                    .is_some_and(|v| v.expose() == "true");
                if failed {
                    self.log.receptionist(TRANSFER_FAILED_LINE);
                    out.push(Directive::Say(TRANSFER_FAILED_LINE.into()));
                } else if !self.greeting.trim().is_empty() {
                    out.push(Directive::Say(self.greeting.clone()));
                }
            }
            Event::CallerSaid {
                text,
                amends_previous,
            } => {
                self.log.caller(&text, amends_previous);
                out.push(Directive::Generate(LlmRequest {
                    messages: self.log.messages(),
                    tools: vec![],
                    max_tokens: Some(self.max_tokens),
                }));
            }
            Event::BotTurnEnded(t) => self.log.receptionist(&t.heard),
            Event::ModelToolCall(call) => {
                // No tools are offered, so a call is the model making one up.
                tracing::warn!(tool = %call.name, "model called a tool that was not offered");
            }
            // 0 is "a person, please" on every phone menu.
            Event::Dtmf('0') => {
                out.push(Directive::Say(HANDOFF_LINE.into()));
                out.push(Directive::End(Ending::HandOff {
                    target: String::new(),
                    summary: "Caller pressed 0 to speak to someone".into(),
                }));
            }
            Event::ReplyFailed | Event::ToolFinished(_) | Event::Dtmf(_) | Event::Ended => {}
        }
    }
}

/// Makes [`ScriptedConversation`]s.
#[derive(Debug, Clone)]
pub struct ScriptedConversations {
    /// What each call hears first (empty: nothing).
    pub greeting: String,
    /// The system prompt.
    pub system_prompt: String,
}

impl ConversationFactory for ScriptedConversations {
    fn start(&self) -> Box<dyn Conversation> {
        Box::new(ScriptedConversation::new(
            self.greeting.clone(),
            self.system_prompt.clone(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_amended_turn_replaces_the_unanswered_one() {
        let mut log = ChatLog::new("sys", 8);
        log.caller("I'd like", false);
        log.caller("I'd like to book a demo", true);
        let m = log.messages();
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].content.as_deref(), Some("I'd like to book a demo"));
    }

    #[test]
    fn a_tool_exchange_answers_the_call_by_its_id() {
        let mut log = ChatLog::new("sys", 8);
        let call = ToolCall {
            id: "call_7".into(),
            name: "find_slots".into(),
            arguments: "{}".into(),
        };
        let outcome = ToolOutcome {
            id: "call_7".into(),
            name: "find_slots".into(),
            ok: true,
            result: serde_json::json!({"slots": 2}),
        };
        log.tool_exchange(&call, &outcome);
        let m = log.messages();
        assert_eq!(m[1].tool_calls, vec![call]);
        assert_eq!(m[2].role, Role::Tool);
        assert_eq!(m[2].tool_call_id.as_deref(), Some("call_7"));
        assert!(m[2]
            .content
            .as_deref()
            .is_some_and(|c| c.contains("\"slots\":2")));
    }

    /// A `find_slots` call and its (empty) result.
    fn find_slots_exchange() -> (ToolCall, ToolOutcome) {
        let call = ToolCall {
            id: "c1".into(),
            name: "find_slots".into(),
            arguments: "{}".into(),
        };
        let outcome = ToolOutcome {
            id: "c1".into(),
            name: "find_slots".into(),
            ok: true,
            result: serde_json::json!({}),
        };
        (call, outcome)
    }

    #[test]
    fn an_amended_turn_keeps_the_tool_exchanges_after_it() {
        let mut log = ChatLog::new("sys", 8);
        log.caller("I'd like", false);
        let (call, outcome) = find_slots_exchange();
        log.tool_exchange(&call, &outcome);
        log.amend_caller("I'd like a demo on Friday");
        let m = log.messages();
        assert_eq!(m.len(), 4);
        assert_eq!(m[1].content.as_deref(), Some("I'd like a demo on Friday"));
        assert_eq!(m[3].role, Role::Tool);
    }

    #[test]
    fn the_window_never_starts_on_an_orphan_tool_result() {
        let mut log = ChatLog::new("sys", 4);
        let (call, outcome) = find_slots_exchange();
        for _ in 0..20 {
            log.caller("hello", false);
            log.tool_exchange(&call, &outcome);
            log.receptionist("ok");
            let m = log.messages();
            assert_ne!(m[1].role, Role::Tool, "{m:?}");
        }
    }

    #[test]
    fn the_log_stays_bounded() {
        let mut log = ChatLog::new("sys", 8);
        for i in 0..1000 {
            log.caller(&format!("turn {i}"), false);
            log.receptionist("ok");
        }
        assert!(log.len() <= 8);
        let m = log.messages();
        assert_eq!(m[0].role, Role::System);
        assert_eq!(m.last().and_then(|m| m.content.as_deref()), Some("ok"));
    }
}
