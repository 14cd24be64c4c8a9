//! The LLM brain: a model with the receptionist prompt and tools, sans-IO.
//!
//! [`LlmBrain`] is a [`Conversation`] like the rules brain, and it calls the
//! same action layer ([`super::actions`]) through the same tool jobs, so a
//! call it answers leaves the same records: the contact upserted by E.164,
//! the booking, the lead with its intent, tier and outcome.
//!
//! # How a call goes
//!
//! 1. **Connection**: the number is looked up (`lookup_contact`, as the
//!    rules brain does) and the greeting is said from `prompts/phrases.toml`
//!    — no model latency before the first word. The lookup also gives the
//!    wall time and whether it is after hours; both go into the call's
//!    system prompt (`prompts/receptionist.md` plus a short call context).
//! 2. **Each caller turn** (already redacted by [`Conversation::scrub`]) is
//!    answered with a [`Directive::Generate`]: the chat so far and the nine
//!    tools ([`TOOL_NAMES`]), each with a JSON schema.
//! 3. **A tool call** ([`Event::ModelToolCall`], only ever from the current
//!    generation) is checked here — valid JSON, the schema's fields and
//!    types, and meaning: a slot or hold id this call was given, a date not
//!    in the past, a real time zone. A malformed call is never run: the model
//!    gets a failed tool result saying why, and may retry. A valid one
//!    becomes a [`Directive::RunTool`] job with an id of this brain's own
//!    (a model that reuses call ids cannot lose a job), and its
//!    [`Event::ToolFinished`] is answered to the model as the tool result.
//!    The next generation starts once every job of the turn has finished
//!    and the reply that asked for them has ended — or, when the caller
//!    spoke meanwhile, with their words too. The model's own ids stay in the
//!    chat; the action layer's ids (holds) are replaced by short ones
//!    (`s1`, `h1`).
//! 4. **Outcomes** the tools imply are written onto the lead through the
//!    action layer's `record_outcome` job, as the rules brain writes them:
//!    `confirm_booking` → booked (A), `take_callback` → callback (B/C),
//!    `transfer_to_human` → transferred, `answer_question` → answered (D),
//!    `end_call` with reason `opted_out` → opted out. A call that ends with
//!    none of these, after the caller said something, leaves a callback.
//! 5. **Ending**: `end_call` and `transfer_to_human` take effect only when
//!    the reply that asked for them has been heard to the end: then
//!    [`Directive::End`] (hang up, or hand off with the model's summary),
//!    after a goodbye or hand-off line if the reply said nothing. A caller
//!    who cuts in cancels them (the model is told), so an `end_call` of a
//!    reply the caller interrupted never hangs up.
//! 6. **A hold** is released when the caller changes their mind (the model
//!    releases it, holds another time, or takes a callback or transfer
//!    instead), and when the call ends unconfirmed.
//!
//! # When the model fails
//!
//! A reply that fails ([`Event::ReplyFailed`] for a generation), two
//! malformed tool calls (or empty replies) in a row, or a turn the model
//! loops on (more than [`MAX_ROUNDS`] generations) hand the rest of the call
//! to a [`RulesBrain`] ([`RulesBrain::take_over`]): a short line is said at
//! once ("Sorry, bear with me a moment."), jobs still running finish first,
//! and the rules brain gets the call's start, the lookup, the caller's turns
//! and what was decided — it does not greet again, and answers the last
//! turn.
//!
//! It must not log personal data unmasked: tool arguments and results stay
//! out of the logs (only tool names are logged).

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, NaiveDate, NaiveTime, Timelike, Utc};
use chrono_tz::Tz;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::actions::{CallContext, LookupArgs, Offer, OutcomeRecord};
use super::extract::{self, Intent};
use super::phrases::{fill, Fact, Knowledge};
use super::rules::{greeting_line, trim_to, Handover, RulesBrain, RulesSettings};
use super::when::{self, TimePref};
use crate::call::conversation::{
    BotTurn, CallInfo, ChatLog, Conversation, ConversationFactory, Directive, Ending, Event,
};
use crate::call::tools::{ToolJob, ToolOutcome};
use crate::config::brain::INTENT_NAMES;
use crate::config_error::ConfigError;
use crate::phone::{self, E164};
use crate::providers::{LlmRequest, ToolCall, ToolSpec};

/// The receptionist's system prompt shipped in `prompts/receptionist.md`.
pub const RECEPTIONIST_PROMPT: &str = include_str!("../../prompts/receptionist.md");

/// Placeholders `prompts/receptionist.md` may use.
const PROMPT_PLACEHOLDERS: [&str; 7] = [
    "business",
    "knowledge",
    "b_team_size",
    "b_callback_minutes",
    "c_callback_minutes",
    "book_intents",
    "tier_b",
];

/// The tools the model is offered.
pub const TOOL_NAMES: [&str; 9] = [
    "lookup_contact",
    "find_slots",
    "hold_slot",
    "confirm_booking",
    "release_hold",
    "transfer_to_human",
    "take_callback",
    "answer_question",
    "end_call",
];

/// Said when the model fails and the rules brain takes over.
pub const TROUBLE_LINE: &str = "Sorry, bear with me a moment.";

/// Malformed tool calls (or empty replies) in a row before the rules brain
/// takes over.
pub const MAX_MALFORMED: u32 = 2;

/// Generations for one caller turn at most (a model calling tools in a
/// loop): beyond it, the rules brain takes over.
pub const MAX_ROUNDS: u32 = 6;

/// Chat messages kept for the model (the store keeps the whole transcript).
const HISTORY: usize = 48;

/// Caller turns kept for the hand-over and the lead.
const MAX_TURNS: usize = 40;

/// Longest notes or summary kept, in characters (the lead's limit).
const MAX_NOTES: usize = 400;

/// How this brain's tool job ids begin.
const JOB_PREFIX: &str = "llm-";

/// Read and check a receptionist prompt: the file `[brain] prompt` names,
/// or the embedded `prompts/receptionist.md`.
pub fn load_prompt(path: Option<&Path>) -> Result<String, ConfigError> {
    match path {
        None => Ok(RECEPTIONIST_PROMPT.to_string()),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| {
                ConfigError::invalid("brain.prompt", format!("cannot read {}: {e}", p.display()))
            })?;
            check_prompt(&text, "brain.prompt")?;
            Ok(text)
        }
    }
}

/// A prompt is not empty and uses only known `{placeholders}`.
pub fn check_prompt(text: &str, origin: &str) -> Result<(), ConfigError> {
    if text.trim().is_empty() {
        return Err(ConfigError::invalid(origin, "is empty"));
    }
    let mut rest = text;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        let Some(j) = after.find('}') else {
            return Err(ConfigError::invalid(origin, "has an unclosed `{`"));
        };
        let name = &after[..j];
        if !PROMPT_PLACEHOLDERS.contains(&name) {
            return Err(ConfigError::invalid(
                origin,
                format!(
                    "unknown placeholder `{{{name}}}` (known: {})",
                    PROMPT_PLACEHOLDERS.join(", ")
                ),
            ));
        }
        rest = &after[j + 1..];
    }
    Ok(())
}

/// The knowledge as the model reads it.
fn knowledge_text(k: &Knowledge) -> String {
    fn line(f: &Fact) -> String {
        if f.subject.is_empty() {
            format!("- {}", f.text)
        } else {
            format!("- {}: {}", f.subject, f.text)
        }
    }
    let mut out = Vec::new();
    if !k.services.is_empty() {
        out.push("Services:".to_string());
        out.extend(k.services.iter().map(line));
    }
    if !k.prices.is_empty() {
        out.push("Prices (published ranges; never quote a single number):".to_string());
        out.extend(k.prices.iter().map(|f| {
            if f.bespoke() {
                format!(
                    "- {}: no published price (bespoke work): offer a scoping call",
                    f.subject
                )
            } else {
                line(f)
            }
        }));
    }
    if !k.hours.is_empty() {
        out.push("Opening hours:".to_string());
        out.extend(k.hours.iter().map(line));
    }
    if !k.location.is_empty() {
        out.push("Where we are:".to_string());
        out.extend(k.location.iter().map(line));
    }
    out.join("\n")
}

/// The system prompt: `template` filled from the business's settings.
pub fn system_prompt(template: &str, s: &RulesSettings) -> String {
    let t = &s.tiers;
    let tier_b = if t.b_transfer {
        format!(
            "in office hours, put them through with transfer_to_human (tier B); after hours, \
             take_callback with tier B: the team calls back first thing, within {} minutes of opening.",
            t.b_callback_minutes
        )
    } else {
        format!(
            "take_callback with tier B: the team calls back within {} minutes (after hours: of opening).",
            t.b_callback_minutes
        )
    };
    fill(
        template,
        &[
            ("business", &s.business),
            ("b_team_size", &t.b_team_size.to_string()),
            ("b_callback_minutes", &t.b_callback_minutes.to_string()),
            ("c_callback_minutes", &t.c_callback_minutes.to_string()),
            ("book_intents", &t.book_intents.join(", ")),
            ("tier_b", &tier_b),
            ("knowledge", &knowledge_text(&s.knowledge)),
        ],
    )
}

fn spec(name: &str, description: &str, properties: Value, required: &[&str]) -> ToolSpec {
    ToolSpec {
        name: name.to_string(),
        description: description.to_string(),
        parameters: json!({
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        }),
    }
}

/// The nine tools, with the JSON schema of each one's arguments (checked
/// again here when the model calls them).
pub fn tool_specs() -> Vec<ToolSpec> {
    let intent = json!({
        "type": "string", "enum": INTENT_NAMES,
        "description": "Why they are calling, once it is clear; unclear is a fine answer"
    });
    let tier = |allowed: &[&str], what: &str| json!({"type": "string", "enum": allowed, "description": what});
    vec![
        spec(
            "lookup_contact",
            "Look a phone number up in the CRM: a known name, an existing customer, a returning \
             lead and their last call's notes. The number the caller rings from was looked up \
             when the call connected (see the call context); use this for another number they give.",
            json!({"phone": {"type": "string", "description": "The number, as the caller said it"}}),
            &[],
        ),
        spec(
            "find_slots",
            "Free meeting times with the team, soonest first, at most two, each with a slot_id. \
             Offer only times this returns, as it words them.",
            json!({
                "date": {"type": "string", "description": "A day the caller asked for, YYYY-MM-DD (default: the coming days)"},
                "earliest": {"type": "string", "description": "Earliest local start time, HH:MM, 24-hour"},
                "latest": {"type": "string", "description": "Slots start before this local time, HH:MM, 24-hour"},
                "timezone": {"type": "string", "description": "The caller's IANA time zone if they said where they are (default: from their number)"}
            }),
            &[],
        ),
        spec(
            "hold_slot",
            "Hold the offered time the caller chose while you read it back. It is let go if they \
             change their mind or hang up.",
            json!({"slot_id": {"type": "string", "description": "A slot_id from find_slots"}}),
            &["slot_id"],
        ),
        spec(
            "confirm_booking",
            "Book the held time, only after the caller said yes to the read-back.",
            json!({
                "hold_id": {"type": "string", "description": "The hold_id from hold_slot"},
                "name": {"type": "string", "description": "The caller's name"},
                "email": {"type": "string", "description": "Their e-mail, only if they gave one"},
                "intent": intent,
                "notes": {"type": "string", "description": "1-3 sentences for the rep: who, why, signals"}
            }),
            &["hold_id", "name"],
        ),
        spec(
            "release_hold",
            "Let a held time go: the caller does not want it after all.",
            json!({"hold_id": {"type": "string", "description": "The hold_id from hold_slot"}}),
            &["hold_id"],
        ),
        spec(
            "transfer_to_human",
            "Put the caller through to a person now (office hours only): tier B leads, support, \
             unclear calls, anyone who asks for a person. Say a short line in the same reply; \
             the call is handed over once it has been said.",
            json!({
                "summary": {"type": "string", "description": "1-2 sentences for the person answering: who, why, what was agreed"},
                "tier": tier(&["B"], "B for a priority lead (larger deal signals)"),
                "intent": intent
            }),
            &["summary"],
        ),
        spec(
            "take_callback",
            "Ask the team to call the caller back: tier B (priority: larger deal signals) or C \
             (standard). Uses the number they ring from unless they gave another.",
            json!({
                "notes": {"type": "string", "description": "1-3 sentences for the rep: who, why, signals, when suits them"},
                "tier": tier(&["B", "C"], "B priority, C standard (default)"),
                "name": {"type": "string", "description": "The caller's name, if known"},
                "phone": {"type": "string", "description": "A different number to call back on, as the caller said it"},
                "intent": intent
            }),
            &["notes"],
        ),
        spec(
            "answer_question",
            "Note a factual question you answered from the business knowledge (tier D: no \
             callback needed).",
            json!({
                "question": {"type": "string", "description": "What they asked, in a few words"},
                "answer": {"type": "string", "description": "What you told them"},
                "intent": intent
            }),
            &["question", "answer"],
        ),
        spec(
            "end_call",
            "Hang up once this reply has been said: the caller has nothing else, or asked not to \
             be contacted again (reason opted_out). Say goodbye in the same reply.",
            json!({
                "reason": {"type": "string", "enum": ["done", "opted_out"], "description": "opted_out: they asked not to be contacted"},
                "intent": intent,
                "notes": {"type": "string", "description": "1-3 sentences for the rep, if there is anything to add"}
            }),
            &[],
        ),
    ]
}

/// What every LLM conversation shares: the rules brain's settings (its
/// phrases, tiers and the knowledge; also the fallback's), the filled
/// system prompt and the tools.
#[derive(Debug, Clone)]
pub struct LlmSettings {
    rules: Arc<RulesSettings>,
    prompt: String,
    max_tokens: u32,
    tools: Vec<ToolSpec>,
}

impl LlmSettings {
    /// Settings over `rules`, with the prompt `template` (see
    /// [`load_prompt`]) and at most `max_tokens` per reply.
    pub fn new(rules: RulesSettings, template: &str, max_tokens: u32) -> Self {
        let prompt = system_prompt(template, &rules);
        LlmSettings {
            rules: Arc::new(rules),
            prompt,
            max_tokens,
            tools: tool_specs(),
        }
    }

    /// The filled system prompt (before the per-call context).
    pub fn prompt(&self) -> &str {
        &self.prompt
    }
}

/// Makes an [`LlmBrain`] per call.
#[derive(Debug, Clone)]
pub struct LlmBrains {
    s: Arc<LlmSettings>,
}

impl LlmBrains {
    /// A factory over `settings`.
    pub fn new(settings: LlmSettings) -> Self {
        LlmBrains {
            s: Arc::new(settings),
        }
    }
}

impl ConversationFactory for LlmBrains {
    fn start(&self) -> Box<dyn Conversation> {
        Box::new(LlmBrain::new(self.s.clone()))
    }
}

// ---------------------------------------------------------------- arguments

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FindArgs {
    date: Option<String>,
    earliest: Option<String>,
    latest: Option<String>,
    timezone: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotArgs {
    slot_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmArgs {
    hold_id: String,
    name: String,
    email: Option<String>,
    intent: Option<String>,
    notes: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldArgs {
    hold_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferArgs {
    summary: String,
    tier: Option<String>,
    intent: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallbackArgs {
    notes: String,
    tier: Option<String>,
    name: Option<String>,
    phone: Option<String>,
    intent: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerArgs {
    question: String,
    answer: String,
    intent: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndArgs {
    reason: Option<String>,
    intent: Option<String>,
    notes: Option<String>,
}

/// A tool call that passed every check.
#[derive(Debug, Clone, PartialEq)]
enum Act {
    Lookup(Option<E164>),
    Find {
        pref: TimePref,
        tz: Tz,
        named_tz: bool,
    },
    Hold(String),
    Confirm {
        hold: String,
        name: String,
        email: Option<String>,
        notes: Option<String>,
    },
    Release(String),
    Transfer {
        summary: String,
        tier: Option<&'static str>,
    },
    Callback {
        tier: &'static str,
        name: Option<String>,
        phone: Option<E164>,
        notes: String,
    },
    Answer {
        question: String,
        answer: String,
    },
    End {
        opted_out: bool,
        notes: Option<String>,
    },
}

fn parse<T: DeserializeOwned>(v: Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| format!("invalid arguments: {e}"))
}

/// A required text field: trimmed, not empty, at most `max` characters.
fn text(field: &str, v: &str, max: usize) -> Result<String, String> {
    let v = v.trim();
    if v.is_empty() {
        return Err(format!("`{field}` is empty"));
    }
    if v.chars().count() > max {
        return Err(format!("`{field}` is longer than {max} characters"));
    }
    Ok(v.to_string())
}

/// An optional text field: blank is none.
fn opt_text(field: &str, v: Option<String>, max: usize) -> Result<Option<String>, String> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => text(field, s, max).map(Some),
    }
}

/// Notes are cut to the lead's limit rather than refused.
fn notes(v: Option<String>) -> Option<String> {
    v.map(|n| trim_to(n.trim(), MAX_NOTES))
        .filter(|n| !n.is_empty())
}

fn intent_arg(v: Option<String>) -> Result<Option<&'static str>, String> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(i) => INTENT_NAMES
            .iter()
            .find(|n| **n == i)
            .copied()
            .map(Some)
            .ok_or_else(|| format!("`intent` must be one of {}", INTENT_NAMES.join(", "))),
    }
}

fn minute(field: &str, v: &str) -> Result<u32, String> {
    NaiveTime::parse_from_str(v.trim(), "%H:%M")
        .map(|t| t.hour() * 60 + t.minute())
        .map_err(|_| format!("`{field}` must be a 24-hour time, HH:MM"))
}

/// A tool's name for the logs: the model names tools, and only the ones
/// offered are written out.
fn tool_label(name: &str) -> &str {
    match TOOL_NAMES.iter().find(|t| **t == name) {
        Some(t) => t,
        None => "(unknown)",
    }
}

fn intent_name(i: Intent) -> &'static str {
    match i {
        Intent::NewEnquiry => "new_enquiry",
        Intent::Pricing => "pricing",
        Intent::Support => "support",
        Intent::Referral => "referral",
        Intent::Unclear => "unclear",
    }
}

/// Outcomes by strength: a later, weaker one never replaces a stronger one
/// (a question answered after a booking leaves it booked).
fn rank(outcome: &str) -> u8 {
    match outcome {
        "opted_out" => 5,
        "booked" => 4,
        "transferred" => 3,
        "callback" => 2,
        _ => 1,
    }
}

// ---------------------------------------------------------------- state

/// What a tool job of the model's is for.
#[derive(Debug, Clone)]
enum Kind {
    Lookup,
    Find,
    Hold(String),
    Confirm(String),
    Release,
    Callback(&'static str),
    Answer,
}

/// A job the model asked for, until its outcome is in.
#[derive(Debug, Clone)]
struct Flight {
    /// Its place in [`Round::calls`].
    slot: usize,
    kind: Kind,
}

/// One generation's reply as the chat will show it: what was heard of it
/// and its tool calls, each with its outcome once in. Written to the chat
/// (with the caller turns and said lines that came meanwhile, in order)
/// when the reply has ended and every outcome is in, so the chat never
/// holds a call without its result and shows the model what it did.
#[derive(Debug, Clone, Default)]
struct Round {
    said: Option<String>,
    calls: Vec<(ToolCall, Option<ToolOutcome>)>,
}

/// Something for the chat that came while a round was open.
#[derive(Debug, Clone)]
enum Entry {
    Caller(String),
    Said(String),
}

#[derive(Debug, Clone)]
enum EndKind {
    Hangup {
        opted_out: bool,
    },
    HandOff {
        summary: String,
        tier: Option<&'static str>,
    },
}

/// An `end_call` or `transfer_to_human` waiting for its reply to be heard.
#[derive(Debug, Clone)]
struct PendingEnd {
    /// Its place in [`Round::calls`].
    slot: usize,
    kind: EndKind,
    /// The reply ended, heard to the end; `said`: it had words.
    ready: Option<bool>,
}

/// What was asked to be spoken and has not ended yet.
#[derive(Debug, Clone, PartialEq)]
enum Speech {
    Say(String),
    Generate,
}

#[derive(Debug, Clone)]
struct Hold {
    alias: String,
    id: String,
    offer: Offer,
}

#[derive(Debug, Clone)]
struct Booked {
    hold: String,
    offer: Offer,
}

/// The lead as the model's tool calls described it.
#[derive(Debug, Clone, Default)]
struct Lead {
    intent: Option<&'static str>,
    tier: Option<&'static str>,
    outcome: Option<&'static str>,
    name: Option<String>,
    email: Option<String>,
    notes: Option<String>,
    callback: Option<E164>,
    callback_due: Option<DateTime<Utc>>,
    tz: Option<Tz>,
    seq: i64,
    last_written: String,
}

/// One call's LLM conversation. See the module docs.
#[derive(Debug)]
pub struct LlmBrain {
    s: Arc<LlmSettings>,
    /// Set once the model failed: the rest of the call is the rules brain's.
    rules: Option<Box<RulesBrain>>,
    info: Option<CallInfo>,
    from: Option<E164>,
    recorded: bool,
    transfer_failed: bool,
    lookup_job: Option<String>,
    ctx: Option<CallContext>,
    since: Option<Instant>,
    /// The chat; `None` until the lookup at connection is back.
    log: Option<ChatLog>,
    early_heard: Vec<String>,
    early_caller: Vec<(String, bool)>,
    round: Round,
    queued: Vec<Entry>,
    turns: Vec<String>,
    speech: VecDeque<Speech>,
    in_flight: BTreeMap<String, Flight>,
    /// Tool results came in since the last generation.
    followup: bool,
    /// A caller turn is waiting for its answer.
    caller_waiting: bool,
    /// The caller cut the last reply off and their words are not in yet.
    barged: bool,
    /// Tool calls of the generation now speaking.
    gen_calls: u32,
    rounds: u32,
    malformed: u32,
    ending: Option<PendingEnd>,
    /// The model failed; the rules brain takes over once the jobs are in.
    falling_back: bool,
    /// The caller turn whose reply failed: the core puts its words back in
    /// front of the next turn (as if it had gone unheard), but the rules
    /// brain answered it, so they are taken off again.
    failed_turn: Option<String>,
    offers: Vec<(String, Offer)>,
    holds: Vec<Hold>,
    current_hold: Option<String>,
    booked: Option<Booked>,
    lead: Lead,
    jobs: u32,
    /// The call is over for this brain (ended, hung up or handed off).
    done: bool,
}

impl LlmBrain {
    /// A conversation waiting for the stream's start.
    pub fn new(s: Arc<LlmSettings>) -> Self {
        LlmBrain {
            s,
            rules: None,
            info: None,
            from: None,
            recorded: false,
            transfer_failed: false,
            lookup_job: None,
            ctx: None,
            since: None,
            log: None,
            early_heard: Vec::new(),
            early_caller: Vec::new(),
            round: Round::default(),
            queued: Vec::new(),
            turns: Vec::new(),
            speech: VecDeque::new(),
            in_flight: BTreeMap::new(),
            followup: false,
            caller_waiting: false,
            barged: false,
            gen_calls: 0,
            rounds: 0,
            malformed: 0,
            ending: None,
            falling_back: false,
            failed_turn: None,
            offers: Vec::new(),
            holds: Vec::new(),
            current_hold: None,
            booked: None,
            lead: Lead::default(),
            jobs: 0,
            done: false,
        }
    }

    /// Whether the rules brain has taken this call over.
    pub fn handed_over(&self) -> bool {
        self.rules.is_some()
    }

    fn rs(&self) -> &RulesSettings {
        &self.s.rules
    }

    // ------------------------------------------------------------ helpers

    fn job(&mut self, name: &str, args: Value, out: &mut Vec<Directive>) -> String {
        self.jobs += 1;
        let id = format!("{JOB_PREFIX}{}-{name}", self.jobs);
        out.push(Directive::RunTool(ToolJob {
            id: id.clone(),
            name: name.to_string(),
            args,
        }));
        id
    }

    fn model_job(&mut self, call: ToolCall, kind: Kind, args: Value, out: &mut Vec<Directive>) {
        let id = self.job(&call.name.clone(), args, out);
        let slot = self.open_call(call);
        self.in_flight.insert(id, Flight { slot, kind });
    }

    /// A call of this round whose outcome comes later.
    fn open_call(&mut self, call: ToolCall) -> usize {
        self.round.calls.push((call, None));
        self.round.calls.len() - 1
    }

    fn say(&mut self, text: String, out: &mut Vec<Directive>) {
        self.speech.push_back(Speech::Say(text.clone()));
        out.push(Directive::Say(text));
    }

    /// Answer the model's `call` now (it is not run).
    fn answer(&mut self, call: ToolCall, ok: bool, result: Value) {
        let slot = self.open_call(call);
        self.resolve(slot, ok, result);
    }

    /// The outcome of this round's call at `slot`.
    fn resolve(&mut self, slot: usize, ok: bool, result: Value) {
        if let Some((call, outcome)) = self.round.calls.get_mut(slot) {
            *outcome = Some(ToolOutcome {
                id: call.id.clone(),
                name: call.name.clone(),
                ok,
                result,
            });
        }
    }

    /// Write the finished round, then what came meanwhile, to the chat.
    fn flush(&mut self) {
        let Some(log) = self.log.as_mut() else {
            return;
        };
        let round = std::mem::take(&mut self.round);
        let said = round.said.unwrap_or_default();
        let exchanges: Vec<(ToolCall, ToolOutcome)> = round
            .calls
            .into_iter()
            .map(|(call, outcome)| {
                let outcome = outcome.unwrap_or_else(|| ToolOutcome {
                    id: call.id.clone(),
                    name: call.name.clone(),
                    ok: false,
                    result: json!({"error": "not carried out"}),
                });
                (call, outcome)
            })
            .collect();
        log.tool_round(&said, &exchanges);
        for e in std::mem::take(&mut self.queued) {
            match e {
                Entry::Caller(t) => log.caller(&t, false),
                Entry::Said(t) => log.receptionist(&t),
            }
        }
    }

    fn wall_now(&self, now: Instant) -> DateTime<Utc> {
        let base = self.ctx.as_ref().map(|c| c.now).unwrap_or_default();
        let since = self
            .since
            .map(|s| now.saturating_duration_since(s))
            .unwrap_or_default();
        base + chrono::Duration::from_std(since).unwrap_or_default()
    }

    fn after_hours(&self) -> bool {
        self.ctx.as_ref().is_some_and(|c| c.after_hours)
    }

    fn caller_tz(&self) -> Tz {
        if let Some(tz) = self.lead.tz {
            return tz;
        }
        if let Some(tz) = self.turns.iter().rev().find_map(|t| when::zone_in(t)) {
            return tz;
        }
        match &self.from {
            Some(e) => when::zone_of_number(e.as_str(), self.rs().business_tz),
            None => self.rs().business_tz,
        }
    }

    fn phone(&self) -> Option<E164> {
        self.lead.callback.clone().or_else(|| self.from.clone())
    }

    fn intent(&self) -> &'static str {
        self.lead
            .intent
            .or_else(|| {
                self.turns
                    .iter()
                    .find_map(|t| extract::intent(t))
                    .map(intent_name)
            })
            .unwrap_or("unclear")
    }

    fn name(&self) -> Option<String> {
        self.lead
            .name
            .clone()
            .or_else(|| self.ctx.as_ref().and_then(|c| c.name.clone()))
            .or_else(|| self.turns.iter().find_map(|t| extract::name(t)))
    }

    fn routing_owner(&self) -> &'static str {
        match (self.intent(), self.lead.tier) {
            (_, Some("B")) => "team_sdr",
            ("support", _) => "team_support",
            ("referral", _) => "team_partnerships",
            ("unclear", _) => "team_general",
            _ => "team_sales",
        }
    }

    /// The rep's briefing: the model's notes (or a plain line), the booking,
    /// after hours.
    fn notes(&self) -> String {
        let base = self.lead.notes.clone().unwrap_or_else(|| {
            let who = self.name().unwrap_or_else(|| "The caller".into());
            let why = match self.intent() {
                "new_enquiry" => " with a new enquiry",
                "pricing" => " about pricing",
                "support" => " as an existing customer needing support",
                "referral" => " about a referral or partnership",
                _ => "; the reason was not clear",
            };
            let done = match self.lead.outcome {
                Some("booked") => "",
                Some("transferred") => " Put through to the team.",
                Some("answered") => " Question answered; no callback needed.",
                Some("opted_out") => " Asked not to be contacted.",
                _ if self.lead.tier == Some("B") => " Wants a priority call back.",
                _ => " Wants a call back.",
            };
            format!("{who} called{why}.{done}")
        });
        let booked = match &self.booked {
            Some(b) => format!(" Booked {} with {}.", b.offer.spoken, b.offer.owner_name),
            None => String::new(),
        };
        let ah = if self.after_hours() {
            " Called after hours."
        } else {
            ""
        };
        trim_to(&format!("{base}{booked}{ah}"), MAX_NOTES)
    }

    /// Decide `outcome` (unless a stronger one stands) and write the lead.
    fn record(
        &mut self,
        outcome: &'static str,
        tier: Option<&'static str>,
        out: &mut Vec<Directive>,
    ) {
        if self
            .lead
            .outcome
            .is_some_and(|cur| rank(cur) > rank(outcome))
        {
            return;
        }
        self.lead.outcome = Some(outcome);
        self.lead.tier = tier;
        self.write(out);
    }

    /// A `confirm_booking` job is out.
    fn confirming(&self) -> bool {
        self.in_flight
            .values()
            .any(|f| matches!(f.kind, Kind::Confirm(_)))
    }

    /// The lead as it stands, in the action layer's shape (`seq` unset).
    fn lead_record(&self) -> Option<OutcomeRecord> {
        let phone = self.phone()?;
        let outcome = self.lead.outcome.unwrap_or("callback");
        let tier = match outcome {
            "opted_out" => None,
            "callback" => Some(self.lead.tier.unwrap_or("C")),
            _ => self.lead.tier,
        };
        Some(OutcomeRecord {
            seq: 0,
            phone: phone.as_str().to_string(),
            name: self.name(),
            email: self.lead.email.clone(),
            intent: self.intent().to_string(),
            tier: tier.map(str::to_string),
            outcome: outcome.to_string(),
            timezone: Some(self.caller_tz().name().to_string()),
            notes: self.notes(),
            routing_owner: Some(self.routing_owner().to_string()),
            after_hours: self.after_hours(),
            callback_due: self.lead.callback_due,
        })
    }

    /// Number `rec` as the call's next decision, unless it says what was
    /// last written already.
    fn next_record(&mut self, mut rec: OutcomeRecord) -> Option<OutcomeRecord> {
        let sig = serde_json::to_string(&rec).unwrap_or_default();
        if sig == self.lead.last_written {
            return None;
        }
        self.lead.last_written = sig;
        self.lead.seq += 1;
        rec.seq = self.lead.seq;
        Some(rec)
    }

    /// Write the lead as it stands, when something changed. Not while a
    /// booking is being confirmed: the confirmation carries the lead's next
    /// record, and its result writes what was decided meanwhile.
    fn write(&mut self, out: &mut Vec<Directive>) {
        if self.confirming() {
            return;
        }
        let Some(rec) = self.lead_record().and_then(|r| self.next_record(r)) else {
            return;
        };
        let args = serde_json::to_value(&rec).unwrap_or_default();
        self.job("record_outcome", args, out);
    }

    /// The lead once `hold` is booked: the action layer writes it with the
    /// booking, so it stands even if the caller has gone by then.
    fn booked_record(&mut self, hold: &str) -> Option<OutcomeRecord> {
        if self
            .lead
            .outcome
            .is_some_and(|cur| rank(cur) > rank("booked"))
        {
            return None;
        }
        let offer = self
            .holds
            .iter()
            .find(|h| h.alias == hold)
            .map(|h| h.offer.clone())?;
        let now = (self.booked.take(), self.lead.outcome, self.lead.tier);
        self.booked = Some(Booked {
            hold: hold.to_string(),
            offer,
        });
        self.lead.outcome = Some("booked");
        self.lead.tier = Some("A");
        let rec = self.lead_record();
        (self.booked, self.lead.outcome, self.lead.tier) = now;
        rec.and_then(|r| self.next_record(r))
    }

    /// Let the current hold go (the caller changed their mind), unless it
    /// is being confirmed right now.
    fn release_current(&mut self, out: &mut Vec<Directive>) {
        let Some(alias) = self.current_hold.clone() else {
            return;
        };
        let confirming = self
            .in_flight
            .values()
            .any(|f| matches!(&f.kind, Kind::Confirm(h) if *h == alias));
        if confirming {
            return;
        }
        self.current_hold = None;
        if let Some(id) = self
            .holds
            .iter()
            .find(|h| h.alias == alias)
            .map(|h| h.id.clone())
        {
            self.job("release_hold", json!({"hold_id": id}), out);
        }
    }

    /// The call context the model reads after the prompt.
    fn context(&self, now: Instant) -> String {
        let ctx = self.ctx.clone().unwrap_or_default();
        let btz = self.rs().business_tz;
        let wall = self.wall_now(now).with_timezone(&btz);
        let mut c = vec![format!(
            "Call context (for you, not to be read out): it is {} ({}).",
            wall.format("%A %-d %B %Y, %H:%M"),
            btz.name()
        )];
        c.push(if ctx.after_hours {
            "The office is closed now: nobody can take a transfer, so offer a callback instead."
                .to_string()
        } else {
            "The office is open now.".to_string()
        });
        if self.transfer_failed {
            c.push(
                "A transfer to the team was just tried and nobody answered: do not transfer \
                 again; offer a booking or a callback. The caller has been told."
                    .to_string(),
            );
        }
        match (&ctx.name, ctx.customer, ctx.returning) {
            (Some(n), true, _) => c.push(format!("The caller is an existing customer, {n}.")),
            (Some(n), _, true) => c.push(format!("The caller has called before: {n}.")),
            (Some(n), _, _) => c.push(format!("The CRM knows this number as {n}.")),
            (None, true, _) => c.push("The caller is an existing customer.".to_string()),
            (None, _, true) => c.push("The caller has called before.".to_string()),
            _ => c.push("The CRM does not know this number.".to_string()),
        }
        if let Some(s) = &ctx.last_summary {
            c.push(format!("Notes from their last call: {}", trim_to(s, 300)));
        }
        if ctx.do_not_contact {
            c.push(
                "They asked not to be contacted before: offer no callback unless they ask for one."
                    .to_string(),
            );
        }
        if self.from.is_none() {
            c.push("Their number is withheld: ask for one before take_callback.".to_string());
        }
        c.push(format!(
            "Their time zone is probably {}.",
            self.caller_tz().name()
        ));
        if self.recorded {
            c.push("This call is recorded; the caller has been told.".to_string());
        }
        c.push("The greeting has been said.".to_string());
        c.join(" ")
    }

    // ------------------------------------------------------------ flow

    /// Ask the model, with the chat so far.
    fn generate(&mut self, now: Instant, out: &mut Vec<Directive>) {
        self.rounds += 1;
        if self.rounds > MAX_ROUNDS {
            tracing::warn!(rounds = self.rounds, "the model keeps calling tools");
            return self.fall_back(now, out);
        }
        self.flush();
        let Some(log) = self.log.as_ref() else {
            return;
        };
        let req = LlmRequest {
            messages: log.messages(),
            tools: self.s.tools.clone(),
            max_tokens: Some(self.s.max_tokens),
        };
        self.followup = false;
        self.caller_waiting = false;
        self.gen_calls = 0;
        self.speech.push_back(Speech::Generate);
        out.push(Directive::Generate(req));
    }

    /// Move on once what was running has finished: hand over, end, or ask
    /// the model again.
    fn settle(&mut self, now: Instant, out: &mut Vec<Directive>) {
        if self.done || self.rules.is_some() {
            return;
        }
        if self.falling_back {
            return self.hand_over(now, out);
        }
        if !self.in_flight.is_empty() {
            return;
        }
        if let Some(said) = self.ending.as_ref().and_then(|e| e.ready) {
            return self.commit_end(said, out);
        }
        if self.ending.is_some() || self.barged || self.speech.contains(&Speech::Generate) {
            return;
        }
        if self.followup || self.caller_waiting {
            self.generate(now, out);
        }
    }

    fn malformed_step(&mut self, now: Instant, out: &mut Vec<Directive>) {
        self.malformed += 1;
        if self.malformed >= MAX_MALFORMED {
            tracing::warn!(
                malformed = self.malformed,
                "the model keeps making malformed tool calls"
            );
            return self.fall_back(now, out);
        }
        self.followup = true;
    }

    /// The model failed: say so in a few words, and hand the call to the
    /// rules brain once the jobs still running are in.
    fn fall_back(&mut self, now: Instant, out: &mut Vec<Directive>) {
        if self.falling_back || self.rules.is_some() || self.done {
            return;
        }
        tracing::warn!("the model failed: the rules brain takes this call over");
        self.falling_back = true;
        self.ending = None;
        self.say(TROUBLE_LINE.to_string(), out);
        self.hand_over(now, out);
    }

    fn hand_over(&mut self, now: Instant, out: &mut Vec<Directive>) {
        if !self.falling_back || !self.in_flight.is_empty() {
            return;
        }
        self.falling_back = false;
        self.release_current(out);
        let booked = self.booked.as_ref().map(|b| b.offer.clone());
        let outcome = self.lead.outcome.filter(|o| *o != "booked");
        let h = Handover {
            info: self.info.clone().unwrap_or_default(),
            ctx: self.ctx.clone().unwrap_or_default(),
            since: self.since.unwrap_or(now),
            turns: self.turns.clone(),
            seq: self.lead.seq,
            name: self.name(),
            email: self.lead.email.clone(),
            booked,
            outcome,
            tier: outcome.and(self.lead.tier),
        };
        let brain = RulesBrain::take_over(self.s.rules.clone(), h, now, out);
        self.rules = Some(Box::new(brain));
    }

    /// An `end_call` or transfer whose reply was heard: carry it out.
    fn commit_end(&mut self, said: bool, out: &mut Vec<Directive>) {
        let Some(end) = self.ending.take() else {
            return;
        };
        self.done = true;
        let p = self.rs().phrases.clone();
        match end.kind {
            EndKind::Hangup { opted_out } => {
                if opted_out {
                    self.lead.callback_due = None;
                    self.record("opted_out", None, out);
                }
                if !said {
                    let line = if opted_out {
                        p.opt_out
                    } else {
                        fill(&p.goodbye, &[("business", &self.rs().business)])
                    };
                    self.say(line, out);
                }
                out.push(Directive::End(Ending::Hangup));
            }
            EndKind::HandOff { summary, tier } => {
                self.record("transferred", tier, out);
                if !said {
                    self.say(p.handoff, out);
                }
                out.push(Directive::End(Ending::HandOff {
                    target: String::new(),
                    summary: self.handoff_summary(summary),
                }));
            }
        }
    }

    fn handoff_summary(&self, summary: String) -> String {
        let mut s = summary;
        if self.intent() == "unclear" && !self.turns.is_empty() {
            let n = self.turns.len();
            let said = self.turns[n.saturating_sub(3)..].join(" ");
            s = format!("{s} Caller said: \"{}\"", trim_to(&said, 200));
        }
        trim_to(&s, MAX_NOTES)
    }

    /// The caller cut in before an ending was carried out: it is off, and
    /// the model hears why.
    fn cancel_end(&mut self, reason: &str) {
        if let Some(end) = self.ending.take() {
            tracing::info!("ending called off: the caller spoke");
            self.resolve(end.slot, false, json!({ "error": reason }));
        }
    }

    // ------------------------------------------------------------ events

    fn on_started(&mut self, info: CallInfo, out: &mut Vec<Directive>) {
        let region = self.rs().region;
        self.from = info
            .from
            .as_ref()
            .and_then(|p| phone::normalise(p.expose(), region).ok());
        let param = |k: &str| {
            info.params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.expose().trim().to_string())
        };
        self.recorded = self.rs().always_recorded || param("record").as_deref() == Some("true");
        self.transfer_failed = param("transfer_failed").as_deref() == Some("true");
        let phone = self.from.as_ref().map(|e| e.as_str().to_string());
        self.lookup_job = Some(self.job("lookup_contact", json!({ "phone": phone }), out));
        if self.transfer_failed {
            let l = self.rs().phrases.transfer_failed.clone();
            self.say(l, out);
        }
        self.info = Some(info);
    }

    fn on_lookup(&mut self, o: ToolOutcome, now: Instant, out: &mut Vec<Directive>) {
        let ctx: CallContext = serde_json::from_value(o.result).unwrap_or_default();
        self.since = Some(now);
        self.ctx = Some(ctx.clone());
        let system = format!("{}\n\n{}", self.s.prompt, self.context(now));
        let mut log = ChatLog::new(system, HISTORY);
        for h in std::mem::take(&mut self.early_heard) {
            log.receptionist(&h);
        }
        self.log = Some(log);
        if self.done {
            return;
        }
        if !self.transfer_failed {
            let line = greeting_line(self.rs(), &ctx, self.recorded);
            self.say(line, out);
        }
        for (text, amends) in std::mem::take(&mut self.early_caller) {
            self.on_caller(text, amends, now, out);
        }
    }

    fn on_caller(&mut self, text: String, amends: bool, now: Instant, out: &mut Vec<Directive>) {
        if self.done {
            return;
        }
        let Some(log) = self.log.as_mut() else {
            self.early_caller.push((text, amends));
            return;
        };
        if amends && !self.turns.is_empty() {
            // Their last turn goes on: replace it where it is, queued or written.
            match self.queued.iter_mut().rev().find_map(|e| match e {
                Entry::Caller(t) => Some(t),
                Entry::Said(_) => None,
            }) {
                Some(t) => *t = text.clone(),
                None => log.amend_caller(&text),
            }
            if let Some(last) = self.turns.last_mut() {
                *last = text;
            }
        } else {
            self.queued.push(Entry::Caller(text.clone()));
            self.turns.push(text);
            if self.turns.len() > MAX_TURNS {
                self.turns.remove(0);
            }
        }
        // Whatever was generating is over: played, cut off or dropped.
        self.speech.retain(|s| *s != Speech::Generate);
        self.barged = false;
        self.cancel_end("the caller spoke before this was carried out: listen to them");
        self.rounds = 0;
        self.caller_waiting = true;
        self.settle(now, out);
    }

    fn on_bot_turn(&mut self, t: BotTurn, now: Instant, out: &mut Vec<Directive>) {
        let generated = match self
            .speech
            .iter()
            .position(|s| matches!(s, Speech::Say(x) if *x == t.said))
        {
            Some(i) => {
                self.speech.remove(i);
                false
            }
            None => match self.speech.iter().position(|s| *s == Speech::Generate) {
                Some(i) => {
                    self.speech.remove(i);
                    true
                }
                None => false,
            },
        };
        if t.interrupted {
            self.barged = true;
            self.cancel_end("the caller cut in before this was carried out: listen to them");
        } else if generated {
            let said = !t.said.trim().is_empty();
            match self.ending.as_mut() {
                Some(end) => end.ready = Some(said),
                None if !said && self.gen_calls == 0 && !self.falling_back => {
                    tracing::info!("the model's reply was empty");
                    self.malformed_step(now, out);
                }
                None => {}
            }
        }
        if generated {
            self.gen_calls = 0;
            self.round.said = Some(t.heard);
        } else if self.log.is_some() {
            self.queued.push(Entry::Said(t.heard));
        } else {
            self.early_heard.push(t.heard);
        }
        self.settle(now, out);
    }

    fn on_reply_failed(&mut self, now: Instant, out: &mut Vec<Directive>) {
        match self.speech.iter().position(|s| *s == Speech::Generate) {
            Some(i) => {
                self.speech.remove(i);
                tracing::warn!("the model's reply failed");
                self.failed_turn = self.turns.last().cloned();
                self.fall_back(now, out);
            }
            // A said line failed (speech synthesis): nothing better to do.
            None => {
                self.speech.pop_front();
            }
        }
    }

    fn on_tool_call(&mut self, call: ToolCall, now: Instant, out: &mut Vec<Directive>) {
        if self.done || self.falling_back || self.log.is_none() {
            tracing::debug!(tool = tool_label(&call.name), "tool call ignored");
            return;
        }
        self.gen_calls += 1;
        match self.check(&call, now) {
            Err(reason) => {
                tracing::info!(
                    tool = tool_label(&call.name),
                    "malformed tool call: answered, not run"
                );
                self.answer(call, false, json!({ "error": reason }));
                self.malformed_step(now, out);
            }
            Ok(act) => {
                self.malformed = 0;
                self.act(call, act, now, out);
            }
        }
        self.settle(now, out);
    }

    /// Check a tool call's arguments: JSON, schema, and what they refer to.
    fn check(&mut self, call: &ToolCall, now: Instant) -> Result<Act, String> {
        let v: Value = serde_json::from_str(&call.arguments)
            .map_err(|e| format!("the arguments are not valid JSON ({e}): send one JSON object"))?;
        if !v.is_object() {
            return Err("the arguments must be one JSON object".into());
        }
        let region = self.rs().region;
        let number = |p: &str| {
            phone::normalise(p, region).map_err(|_| "`phone`: not a phone number".to_string())
        };
        let act = match call.name.as_str() {
            "lookup_contact" => {
                let a: LookupArgs = parse(v)?;
                Act::Lookup(
                    opt_text("phone", a.phone, 40)?
                        .map(|p| number(&p))
                        .transpose()?,
                )
            }
            "find_slots" => {
                let a: FindArgs = parse(v)?;
                let named_tz = a.timezone.is_some();
                let tz = match a.timezone.as_deref().map(str::trim) {
                    Some(t) => t.parse::<Tz>().map_err(|_| {
                        "`timezone` is not an IANA time zone (e.g. Europe/London)".to_string()
                    })?,
                    None => self.caller_tz(),
                };
                let today = self.wall_now(now).with_timezone(&tz).date_naive();
                let days = i64::from(self.rs().tiers.slot_days);
                let day = match a.date.as_deref().map(str::trim) {
                    None | Some("") => None,
                    Some(d) => {
                        let d = NaiveDate::parse_from_str(d, "%Y-%m-%d")
                            .map_err(|_| "`date` must be YYYY-MM-DD".to_string())?;
                        if d < today {
                            return Err(format!("`date` is in the past (today is {today})"));
                        }
                        if d > today + chrono::Duration::days(days) {
                            return Err(format!("`date` is more than {days} days ahead"));
                        }
                        Some(d)
                    }
                };
                let from_min = a
                    .earliest
                    .as_deref()
                    .map(|e| minute("earliest", e))
                    .transpose()?;
                let to_min = a
                    .latest
                    .as_deref()
                    .map(|l| minute("latest", l))
                    .transpose()?;
                if let (Some(f), Some(t)) = (from_min, to_min) {
                    if f >= t {
                        return Err("`earliest` must be before `latest`".into());
                    }
                }
                Act::Find {
                    pref: TimePref {
                        day,
                        from_min,
                        to_min,
                        next_week: false,
                    },
                    tz,
                    named_tz,
                }
            }
            "hold_slot" => {
                let a: SlotArgs = parse(v)?;
                let id = a.slot_id.trim();
                if !self.offers.iter().any(|(s, _)| s == id) {
                    return Err(format!(
                        "unknown slot_id `{}`: use one find_slots returned",
                        trim_to(id, 20)
                    ));
                }
                Act::Hold(id.to_string())
            }
            "confirm_booking" => {
                let a: ConfirmArgs = parse(v)?;
                let hold = self.known_hold(&a.hold_id)?;
                let name = text("name", &a.name, 100)?;
                let email = opt_text("email", a.email, 200)?;
                if email
                    .as_deref()
                    .is_some_and(|e| !e.contains('@') || e.contains(char::is_whitespace))
                {
                    return Err("`email` is not an e-mail address".into());
                }
                if let Some(i) = intent_arg(a.intent)? {
                    self.lead.intent = Some(i);
                }
                Act::Confirm {
                    hold,
                    name,
                    email,
                    notes: notes(a.notes),
                }
            }
            "release_hold" => {
                let a: HoldArgs = parse(v)?;
                Act::Release(self.known_hold(&a.hold_id)?)
            }
            "transfer_to_human" => {
                let a: TransferArgs = parse(v)?;
                let summary = text("summary", &a.summary, 1000).map(|s| trim_to(&s, MAX_NOTES))?;
                let tier = match a.tier.as_deref().map(str::trim) {
                    None | Some("") => None,
                    Some("B") => Some("B"),
                    Some(_) => return Err("`tier` must be B (or left out)".into()),
                };
                if let Some(i) = intent_arg(a.intent)? {
                    self.lead.intent = Some(i);
                }
                Act::Transfer { summary, tier }
            }
            "take_callback" => {
                let a: CallbackArgs = parse(v)?;
                let notes = text("notes", &a.notes, 1000).map(|s| trim_to(&s, MAX_NOTES))?;
                let tier = match a.tier.as_deref().map(str::trim) {
                    None | Some("") | Some("C") => "C",
                    Some("B") => "B",
                    Some(_) => return Err("`tier` must be B or C".into()),
                };
                let name = opt_text("name", a.name, 100)?;
                let phone = opt_text("phone", a.phone, 40)?
                    .map(|p| number(&p))
                    .transpose()?;
                if phone.is_none() && self.from.is_none() && self.lead.callback.is_none() {
                    return Err(
                        "no number to call back on: ask the caller for one and pass `phone`".into(),
                    );
                }
                if let Some(i) = intent_arg(a.intent)? {
                    self.lead.intent = Some(i);
                }
                Act::Callback {
                    tier,
                    name,
                    phone,
                    notes,
                }
            }
            "answer_question" => {
                let a: AnswerArgs = parse(v)?;
                let question = text("question", &a.question, 300)?;
                let answer = text("answer", &a.answer, 600)?;
                if let Some(i) = intent_arg(a.intent)? {
                    self.lead.intent = Some(i);
                }
                Act::Answer { question, answer }
            }
            "end_call" => {
                let a: EndArgs = parse(v)?;
                let opted_out = match a.reason.as_deref().map(str::trim) {
                    None | Some("") | Some("done") => false,
                    Some("opted_out") => true,
                    Some(_) => return Err("`reason` must be done or opted_out".into()),
                };
                if let Some(i) = intent_arg(a.intent)? {
                    self.lead.intent = Some(i);
                }
                Act::End {
                    opted_out,
                    notes: notes(a.notes),
                }
            }
            other => {
                return Err(format!(
                    "unknown tool `{}`: use one of {}",
                    trim_to(other, 64),
                    TOOL_NAMES.join(", ")
                ))
            }
        };
        Ok(act)
    }

    fn known_hold(&self, alias: &str) -> Result<String, String> {
        let alias = alias.trim();
        if self.holds.iter().any(|h| h.alias == alias) {
            Ok(alias.to_string())
        } else {
            Err(format!(
                "unknown hold_id `{}`: use the one hold_slot returned",
                trim_to(alias, 20)
            ))
        }
    }

    /// Carry out a checked tool call.
    fn act(&mut self, call: ToolCall, act: Act, now: Instant, out: &mut Vec<Directive>) {
        match act {
            Act::Lookup(phone) => {
                let phone = phone.or_else(|| self.from.clone());
                let args = json!({ "phone": phone.map(|p| p.as_str().to_string()) });
                self.model_job(call, Kind::Lookup, args, out);
            }
            Act::Find { pref, tz, named_tz } => {
                if named_tz {
                    self.lead.tz = Some(tz);
                }
                let wall = self.wall_now(now);
                let (from, to) = pref.window(tz, wall, self.rs().tiers.slot_days);
                // Nothing said about the time of day: the caller's waking hours.
                let (day_from, day_to) = match (pref.from_min, pref.to_min) {
                    (None, None) => (Some(8 * 60), Some(19 * 60)),
                    (a, b) => (a, b),
                };
                let args = json!({"from": from, "to": to, "timezone": tz.name(), "count": 2,
                                  "day_from_min": day_from, "day_to_min": day_to});
                self.model_job(call, Kind::Find, args, out);
            }
            Act::Hold(slot) => {
                let Some(offer) = self
                    .offers
                    .iter()
                    .find(|(s, _)| *s == slot)
                    .map(|(_, o)| o.clone())
                else {
                    return;
                };
                // Another time chosen: the one held before goes back.
                self.release_current(out);
                let args = json!({"owner": offer.owner, "start": offer.start});
                self.model_job(call, Kind::Hold(slot), args, out);
            }
            Act::Confirm {
                hold,
                name,
                email,
                notes,
            } => {
                if self.booked.as_ref().is_some_and(|b| b.hold == hold) {
                    // Booked already (the model asked again): the same answer, no second booking.
                    let result = self.booked_result();
                    self.answer(call, true, result);
                    self.followup = true;
                    return;
                }
                let confirming = self
                    .in_flight
                    .values()
                    .any(|f| matches!(&f.kind, Kind::Confirm(h) if *h == hold));
                if confirming {
                    self.answer(
                        call,
                        false,
                        json!({"error": "this hold is being confirmed already"}),
                    );
                    self.followup = true;
                    return;
                }
                let Some(id) = self
                    .holds
                    .iter()
                    .find(|h| h.alias == hold)
                    .map(|h| h.id.clone())
                else {
                    return;
                };
                self.lead.name = Some(name.clone());
                if email.is_some() {
                    self.lead.email = email.clone();
                }
                if notes.is_some() {
                    self.lead.notes = notes;
                }
                // The lead as it stands first (it stays if the booking
                // fails after the caller has gone), then as it will be.
                self.write(out);
                let record = self.booked_record(&hold);
                let args = json!({
                    "hold_id": id,
                    "name": name,
                    "email": email,
                    "phone": self.phone().map(|p| p.as_str().to_string()),
                    "timezone": self.caller_tz().name(),
                    "notes": self.notes(),
                    "record": record,
                });
                self.model_job(call, Kind::Confirm(hold), args, out);
            }
            Act::Release(hold) => {
                if self.current_hold.as_deref() == Some(hold.as_str()) {
                    self.current_hold = None;
                }
                let Some(id) = self
                    .holds
                    .iter()
                    .find(|h| h.alias == hold)
                    .map(|h| h.id.clone())
                else {
                    return;
                };
                self.model_job(call, Kind::Release, json!({ "hold_id": id }), out);
            }
            Act::Transfer { summary, tier } => {
                if self.after_hours() || self.transfer_failed {
                    let why = if self.transfer_failed {
                        "a transfer just failed: nobody can take the call now; offer a callback or a booking"
                    } else {
                        "the office is closed: nobody can take a transfer; offer a callback instead"
                    };
                    self.answer(call, false, json!({ "error": why }));
                    self.followup = true;
                    return;
                }
                self.release_current(out);
                if self.lead.notes.is_none() {
                    self.lead.notes = Some(summary.clone());
                }
                let slot = self.open_call(call);
                self.ending = Some(PendingEnd {
                    slot,
                    kind: EndKind::HandOff { summary, tier },
                    ready: None,
                });
            }
            Act::Callback {
                tier,
                name,
                phone,
                notes,
            } => {
                // A callback instead of the time held: it goes back.
                self.release_current(out);
                if phone.is_some() {
                    self.lead.callback = phone;
                }
                if name.is_some() {
                    self.lead.name = name.clone();
                }
                self.lead.notes = Some(notes.clone());
                let Some(p) = self.phone() else {
                    return;
                };
                let args = json!({"phone": p.as_str(), "name": name, "tier": tier, "notes": notes});
                self.model_job(call, Kind::Callback(tier), args, out);
            }
            Act::Answer { question, answer } => {
                let phone = self.phone().map(|p| p.as_str().to_string());
                let args = json!({"phone": phone, "question": question, "answer": answer});
                self.model_job(call, Kind::Answer, args, out);
            }
            Act::End { opted_out, notes } => {
                if notes.is_some() {
                    self.lead.notes = notes;
                }
                if opted_out {
                    self.release_current(out);
                }
                let slot = self.open_call(call);
                self.ending = Some(PendingEnd {
                    slot,
                    kind: EndKind::Hangup { opted_out },
                    ready: None,
                });
            }
        }
    }

    fn booked_result(&self) -> Value {
        match &self.booked {
            Some(b) => json!({"booked": true, "time": b.offer.spoken, "with": b.offer.owner_name}),
            None => json!({}),
        }
    }

    fn on_tool_finished(&mut self, o: ToolOutcome, now: Instant, out: &mut Vec<Directive>) {
        if self.lookup_job.as_deref() == Some(o.id.as_str()) {
            self.lookup_job = None;
            return self.on_lookup(o, now, out);
        }
        let Some(f) = self.in_flight.remove(&o.id) else {
            if !o.ok {
                tracing::info!(tool = %o.name, "tool job failed");
            }
            return;
        };
        let result = if o.ok {
            self.outcome_of(&f.kind, &o, out)
        } else {
            tracing::info!(tool = %o.name, "tool job failed");
            if matches!(f.kind, Kind::Answer) {
                // The answer was given; only the CRM note failed.
                self.record("answered", Some("D"), out);
            }
            o.result.clone()
        };
        if matches!(f.kind, Kind::Confirm(_)) {
            // What the call decided while the booking was being made (the
            // writes waited for it).
            self.write(out);
        }
        self.resolve(f.slot, o.ok, result);
        self.followup = true;
        self.settle(now, out);
    }

    /// A model job succeeded: update the call and say what the model hears.
    fn outcome_of(&mut self, kind: &Kind, o: &ToolOutcome, out: &mut Vec<Directive>) -> Value {
        match kind {
            Kind::Lookup => o.result.clone(),
            Kind::Find => {
                let slots: Vec<Offer> = o
                    .result
                    .get("slots")
                    .cloned()
                    .and_then(|v| serde_json::from_value(v).ok())
                    .unwrap_or_default();
                let exact = o
                    .result
                    .get("exact")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let mut listed = Vec::new();
                for s in slots {
                    let id = format!("s{}", self.offers.len() + 1);
                    listed.push(json!({"slot_id": id, "time": s.spoken, "with": s.owner_name}));
                    self.offers.push((id, s));
                }
                if listed.is_empty() {
                    json!({"slots": [], "note": "no free time found: offer a callback"})
                } else {
                    json!({"slots": listed, "as_asked": exact})
                }
            }
            Kind::Hold(slot) => {
                let id = o.result.get("hold_id").and_then(Value::as_str);
                let offer = self
                    .offers
                    .iter()
                    .find(|(s, _)| s == slot)
                    .map(|(_, o)| o.clone());
                let (Some(id), Some(offer)) = (id, offer) else {
                    return json!({"error": "the hold came back without an id"});
                };
                let alias = format!("h{}", self.holds.len() + 1);
                self.holds.push(Hold {
                    alias: alias.clone(),
                    id: id.to_string(),
                    offer: offer.clone(),
                });
                self.current_hold = Some(alias.clone());
                if self.done {
                    // The call ended or moved on meanwhile: let it go.
                    self.release_current(out);
                }
                json!({"hold_id": alias, "time": offer.spoken, "with": offer.owner_name})
            }
            Kind::Confirm(hold) => {
                let offer = self
                    .holds
                    .iter()
                    .find(|h| h.alias == *hold)
                    .map(|h| h.offer.clone());
                if let Some(offer) = offer {
                    self.booked = Some(Booked {
                        hold: hold.clone(),
                        offer,
                    });
                }
                if self.current_hold.as_deref() == Some(hold.as_str()) {
                    self.current_hold = None;
                }
                self.record("booked", Some("A"), out);
                self.booked_result()
            }
            Kind::Release => json!({"released": true}),
            Kind::Callback(tier) => {
                self.lead.callback_due = o
                    .result
                    .get("due")
                    .cloned()
                    .and_then(|v| serde_json::from_value(v).ok());
                self.record("callback", Some(tier), out);
                let tz = self.caller_tz();
                match self.lead.callback_due {
                    Some(d) => {
                        json!({"callback_by": d.with_timezone(&tz).format("%A %H:%M").to_string(), "tier": tier})
                    }
                    None => json!({"tier": tier}),
                }
            }
            Kind::Answer => {
                self.record("answered", Some("D"), out);
                json!({"noted": true})
            }
        }
    }

    fn on_dtmf_zero(&mut self, out: &mut Vec<Directive>) {
        // 0 is "a person, please" on every phone menu.
        self.release_current(out);
        self.ending = None;
        self.done = true;
        self.record("transferred", None, out);
        let line = self.rs().phrases.handoff.clone();
        self.say(line, out);
        let summary = self.handoff_summary(self.notes());
        out.push(Directive::End(Ending::HandOff {
            target: String::new(),
            summary,
        }));
    }

    fn on_ended(&mut self, out: &mut Vec<Directive>) {
        // A hold nobody confirmed goes back; a caller who said something
        // leaves a lead.
        self.release_current(out);
        // (A booking being confirmed writes its own lead when it stands.)
        if self.lead.outcome.is_none() && !self.turns.is_empty() && !self.confirming() {
            let tier = self.lead.tier.unwrap_or("C");
            self.record("callback", Some(tier), out);
        }
        self.ending = None;
        self.done = true;
    }
}

/// `text` without the words of `answered` in front, when an amended turn
/// repeats a turn that was answered after all.
fn unamend(text: String, amends: bool, answered: Option<String>) -> (String, bool) {
    let Some(prev) = answered.filter(|_| amends) else {
        return (text, amends);
    };
    match text.strip_prefix(prev.as_str()).map(str::trim_start) {
        Some(rest) if !rest.is_empty() => (rest.to_string(), false),
        _ => (text, amends),
    }
}

impl Conversation for LlmBrain {
    fn on_event(&mut self, event: Event, now: Instant, out: &mut Vec<Directive>) {
        let event = match event {
            Event::CallerSaid {
                text,
                amends_previous,
            } => {
                let (text, amends_previous) =
                    unamend(text, amends_previous, self.failed_turn.take());
                Event::CallerSaid {
                    text,
                    amends_previous,
                }
            }
            ev => ev,
        };
        if let Some(rules) = self.rules.as_mut() {
            match event {
                // Outcomes of this brain's own jobs (the lead, a release)
                // are not the rules brain's business.
                Event::ToolFinished(o) if !RulesBrain::owns_job(&o.id) => {
                    if !o.ok {
                        tracing::info!(tool = %o.name, "tool job failed");
                    }
                }
                ev => rules.on_event(ev, now, out),
            }
            return;
        }
        match event {
            Event::Started(info) => self.on_started(info, out),
            Event::CallerSaid {
                text,
                amends_previous,
            } => self.on_caller(text, amends_previous, now, out),
            Event::BotTurnEnded(t) => self.on_bot_turn(t, now, out),
            Event::ReplyFailed => self.on_reply_failed(now, out),
            Event::ModelToolCall(call) => self.on_tool_call(call, now, out),
            Event::ToolFinished(o) => self.on_tool_finished(o, now, out),
            Event::Dtmf('0') if !self.done && !self.falling_back => self.on_dtmf_zero(out),
            Event::Dtmf(_) => {}
            Event::Ended => self.on_ended(out),
        }
    }

    fn scrub(&self, text: &str) -> Option<String> {
        let (t, changed) = extract::redact(text);
        changed.then_some(t)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::brain::phrases::Phrases;
    use crate::config::brain::TiersConfig;
    use crate::pii::Pii;
    use crate::providers::Role;

    fn settings() -> Arc<LlmSettings> {
        let rules = RulesSettings {
            business: "Acme Dental".into(),
            phrases: Phrases::embedded(),
            knowledge: Knowledge::embedded(),
            tiers: TiersConfig::default(),
            business_tz: chrono_tz::Europe::London,
            region: phonenumber::country::Id::GB,
            slot_end_ms: 1200,
            always_recorded: false,
        };
        Arc::new(LlmSettings::new(rules, RECEPTIONIST_PROMPT, 300))
    }

    fn feed(b: &mut LlmBrain, ev: Event, now: Instant) -> Vec<Directive> {
        let mut out = Vec::new();
        b.on_event(ev, now, &mut out);
        out
    }

    fn jobs(out: &[Directive]) -> Vec<ToolJob> {
        out.iter()
            .filter_map(|d| match d {
                Directive::RunTool(j) => Some(j.clone()),
                _ => None,
            })
            .collect()
    }

    fn said(out: &[Directive]) -> Vec<String> {
        out.iter()
            .filter_map(|d| match d {
                Directive::Say(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    fn request(out: &[Directive]) -> Option<LlmRequest> {
        out.iter().find_map(|d| match d {
            Directive::Generate(r) => Some(r.clone()),
            _ => None,
        })
    }

    fn done(job: &ToolJob, result: Value) -> Event {
        Event::ToolFinished(ToolOutcome {
            id: job.id.clone(),
            name: job.name.clone(),
            ok: true,
            result,
        })
    }

    fn heard(text: &str, interrupted: bool) -> Event {
        Event::BotTurnEnded(BotTurn {
            said: text.into(),
            heard: text.into(),
            heard_ms: 1000,
            total_ms: 1000,
            interrupted,
        })
    }

    fn call(id: &str, name: &str, args: &str) -> Event {
        Event::ModelToolCall(ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: args.into(),
        })
    }

    fn caller(text: &str) -> Event {
        Event::CallerSaid {
            text: text.into(),
            amends_previous: false,
        }
    }

    /// A call from a UK mobile, looked up (in hours) and greeted.
    fn greeted() -> (LlmBrain, Instant) {
        let mut b = LlmBrain::new(settings());
        let t0 = Instant::now();
        let info = CallInfo {
            call_sid: "CA1".into(),
            from: Some(Pii::new("+447700900123".into())),
            ..CallInfo::default()
        };
        let out = feed(&mut b, Event::Started(info), t0);
        let lookup = jobs(&out);
        assert_eq!(lookup.len(), 1);
        assert_eq!(lookup[0].name, "lookup_contact");
        assert_eq!(lookup[0].args["phone"], "+447700900123");
        let ctx = json!({"found": false, "name": null, "customer": false, "returning": false,
                         "last_summary": null, "do_not_contact": false, "after_hours": false,
                         "now": "2026-12-01T10:00:00Z"});
        let out = feed(&mut b, done(&lookup[0], ctx), t0);
        assert_eq!(
            said(&out),
            ["Thanks for calling Acme Dental, how can I help?"]
        );
        feed(
            &mut b,
            heard("Thanks for calling Acme Dental, how can I help?", false),
            t0,
        );
        (b, t0 + Duration::from_secs(3))
    }

    fn offer(hour: u32) -> Value {
        json!({"owner": "sam", "owner_name": "Sam", "start": format!("2026-12-04T{hour:02}:00:00Z"),
               "end": format!("2026-12-04T{hour:02}:30:00Z"), "spoken": format!("Friday at {hour}am")})
    }

    #[test]
    fn a_tool_call_runs_as_a_job_and_its_result_goes_to_the_next_generation() {
        let (mut b, t) = greeted();
        let out = feed(
            &mut b,
            caller("I'd like to book a demo on Friday morning"),
            t,
        );
        let req = request(&out).expect("the caller's turn is answered by the model");
        let names: Vec<&str> = req.tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, TOOL_NAMES);
        assert_eq!(req.messages[0].role, Role::System);
        let system = req.messages[0].content.clone().unwrap_or_default();
        assert!(system.contains("Acme Dental") && system.contains("from £49 to £149"));
        assert!(
            system.contains("Tuesday 1 December 2026, 10:00"),
            "{system}"
        );
        assert!(!system.contains("{"), "every placeholder filled: {system}");
        assert_eq!(
            req.messages.last().and_then(|m| m.content.as_deref()),
            Some("I'd like to book a demo on Friday morning")
        );

        let out = feed(
            &mut b,
            call(
                "call_1",
                "find_slots",
                r#"{"date": "2026-12-04", "earliest": "09:00", "latest": "12:00"}"#,
            ),
            t,
        );
        let find = jobs(&out);
        assert_eq!(find.len(), 1, "{out:?}");
        assert_eq!(find[0].name, "find_slots");
        assert!(find[0].id.starts_with("llm-"), "the brain's own job id");
        assert_eq!(find[0].args["timezone"], "Europe/London");
        assert_eq!(find[0].args["from"], "2026-12-04T09:00:00Z");
        assert_eq!(find[0].args["to"], "2026-12-04T12:00:00Z");

        // The result is in before the reply that asked has been heard: the
        // next generation waits for it.
        let out = feed(
            &mut b,
            done(
                &find[0],
                json!({"slots": [offer(9), offer(10)], "exact": true}),
            ),
            t,
        );
        assert!(request(&out).is_none(), "{out:?}");
        let out = feed(&mut b, heard("Let me have a look.", false), t);
        let req = request(&out).expect("then the model hears the result");
        let n = req.messages.len();
        let asked = &req.messages[n - 2];
        assert_eq!(asked.role, Role::Assistant);
        assert_eq!(asked.tool_calls[0].id, "call_1");
        assert_eq!(
            asked.content.as_deref(),
            Some("Let me have a look."),
            "what was said goes with the call it made"
        );
        let answer = &req.messages[n - 1];
        assert_eq!(answer.role, Role::Tool);
        assert_eq!(answer.tool_call_id.as_deref(), Some("call_1"));
        let content = answer.content.clone().unwrap_or_default();
        assert!(
            content.contains("\"slot_id\":\"s1\"") && content.contains("Friday at 9am"),
            "{content}"
        );
        assert!(
            !content.contains("sam\""),
            "the action layer's owner id stays out"
        );

        // hold → confirm with the short ids; a second confirm books nothing.
        let out = feed(
            &mut b,
            call("call_2", "hold_slot", r#"{"slot_id": "s1"}"#),
            t,
        );
        let hold = jobs(&out);
        assert_eq!(hold[0].args["owner"], "sam");
        feed(&mut b, done(&hold[0], json!({"hold_id": "H-real-1"})), t);
        feed(&mut b, heard("", false), t);
        let out = feed(
            &mut b,
            call(
                "call_3",
                "confirm_booking",
                r#"{"hold_id": "h1", "name": "Jane Doe"}"#,
            ),
            t,
        );
        let confirm: Vec<ToolJob> = jobs(&out)
            .into_iter()
            .filter(|j| j.name == "confirm_booking")
            .collect();
        assert_eq!(confirm.len(), 1);
        assert_eq!(confirm[0].args["hold_id"], "H-real-1");
        assert_eq!(confirm[0].args["phone"], "+447700900123");
        // The lead once booked goes with the confirmation (written by the
        // action layer with the booking, even if the caller has gone).
        let record = &confirm[0].args["record"];
        assert_eq!(record["outcome"], "booked");
        assert_eq!(record["tier"], "A");
        assert_eq!(record["intent"], "new_enquiry");
        let out = feed(&mut b, done(&confirm[0], json!({"booking_id": "B1"})), t);
        assert!(
            jobs(&out).iter().all(|j| j.name != "record_outcome"),
            "the booked lead is written once"
        );
        feed(&mut b, heard("", false), t);
        let out = feed(
            &mut b,
            call(
                "call_4",
                "confirm_booking",
                r#"{"hold_id": "h1", "name": "Jane Doe"}"#,
            ),
            t,
        );
        assert!(jobs(&out).is_empty(), "booked once: {out:?}");
    }

    #[test]
    fn a_malformed_call_is_answered_not_run_and_a_second_hands_over() {
        let (mut b, t) = greeted();
        feed(&mut b, caller("Could someone call me back? It's Tom."), t);
        let out = feed(
            &mut b,
            call("call_1", "take_callback", r#"{"notes": "Tom wants"#),
            t,
        );
        assert!(jobs(&out).is_empty(), "never run: {out:?}");
        let out = feed(&mut b, heard("Sure.", false), t);
        let req = request(&out).expect("the model is told, and may retry");
        let last = req
            .messages
            .last()
            .cloned()
            .unwrap_or_else(|| panic!("{req:?}"));
        assert_eq!(last.tool_call_id.as_deref(), Some("call_1"));
        let content = last.content.unwrap_or_default();
        assert!(
            content.contains("\"ok\":false") && content.contains("not valid JSON"),
            "{content}"
        );
        // Valid JSON, failing the schema: still not run, and the second in a row.
        let out = feed(
            &mut b,
            call(
                "call_2",
                "take_callback",
                r#"{"notes": "Tom", "tier": "Z"}"#,
            ),
            t,
        );
        assert!(
            jobs(&out).iter().all(|j| j.name != "take_callback"),
            "never run: {out:?}"
        );
        assert_eq!(said(&out).first().map(String::as_str), Some(TROUBLE_LINE));
        assert!(b.handed_over());
        assert!(
            !said(&out).iter().any(|s| s.contains("Thanks for calling")),
            "no second greeting: {out:?}"
        );
    }

    #[test]
    fn an_end_call_waits_for_its_reply_and_a_cut_in_calls_it_off() {
        let (mut b, t) = greeted();
        feed(&mut b, caller("That's everything, thanks."), t);
        let out = feed(&mut b, call("call_1", "end_call", "{}"), t);
        assert!(
            !out.iter().any(|d| matches!(d, Directive::End(_))),
            "{out:?}"
        );
        // The caller cuts the goodbye off: no hang-up.
        let out = feed(&mut b, heard("Thanks for calling, goodb…", true), t);
        assert!(
            !out.iter().any(|d| matches!(d, Directive::End(_))),
            "{out:?}"
        );
        let out = feed(&mut b, caller("Oh wait, one more thing."), t);
        assert!(!out.iter().any(|d| matches!(d, Directive::End(_))));
        let req = request(&out).expect("the model hears the caller");
        let cancelled = req
            .messages
            .iter()
            .find(|m| m.tool_call_id.as_deref() == Some("call_1"))
            .and_then(|m| m.content.clone())
            .unwrap_or_default();
        assert!(cancelled.contains("\"ok\":false"), "{cancelled}");
        // Heard to the end this time: hang up, with no extra line.
        feed(
            &mut b,
            call("call_2", "end_call", r#"{"reason": "done"}"#),
            t,
        );
        let out = feed(&mut b, heard("Of course. Goodbye!", false), t);
        assert_eq!(out.last(), Some(&Directive::End(Ending::Hangup)), "{out:?}");
        assert!(said(&out).is_empty());
        let out = feed(&mut b, Event::Ended, t);
        let record = jobs(&out);
        assert_eq!(record.len(), 1, "the caller leaves a lead: {out:?}");
        assert_eq!(record[0].args["outcome"], "callback");
    }

    #[test]
    fn a_failed_reply_hands_the_call_to_the_rules_brain_without_a_new_greeting() {
        let (mut b, t) = greeted();
        feed(
            &mut b,
            caller("Hi, I'm Jane Doe and I'd like to book a demo of your booking tool"),
            t,
        );
        let out = feed(&mut b, Event::ReplyFailed, t);
        let lines = said(&out);
        assert_eq!(
            lines.first().map(String::as_str),
            Some(TROUBLE_LINE),
            "{out:?}"
        );
        assert!(b.handed_over());
        assert!(
            !lines.iter().any(|s| s.contains("Thanks for calling")),
            "{lines:?}"
        );
        let ask_size = Phrases::embedded().ask_size;
        assert!(
            lines.contains(&ask_size),
            "the rules brain goes on: {lines:?}"
        );
        assert!(
            jobs(&out).iter().all(|j| j.name != "lookup_contact"),
            "no second lookup"
        );
        // From now on the rules brain answers.
        let out = feed(
            &mut b,
            caller("just five of us, Friday morning after ten"),
            t,
        );
        assert!(request(&out).is_none());
        assert!(jobs(&out).iter().any(|j| j.name == "find_slots"), "{out:?}");
    }

    #[test]
    fn a_transfer_after_hours_is_refused_to_the_model() {
        let mut b = LlmBrain::new(settings());
        let t = Instant::now();
        let info = CallInfo {
            call_sid: "CA2".into(),
            from: Some(Pii::new("+447700900123".into())),
            ..CallInfo::default()
        };
        let out = feed(&mut b, Event::Started(info), t);
        let lookup = jobs(&out);
        let ctx = json!({"found": false, "name": null, "customer": false, "returning": false,
                         "last_summary": null, "do_not_contact": false, "after_hours": true,
                         "now": "2026-12-01T21:00:00Z"});
        feed(&mut b, done(&lookup[0], ctx), t);
        feed(&mut b, caller("Can I speak to someone?"), t);
        let out = feed(
            &mut b,
            call(
                "c1",
                "transfer_to_human",
                r#"{"summary": "wants a person"}"#,
            ),
            t,
        );
        assert!(out.is_empty(), "{out:?}");
        let out = feed(&mut b, heard("One moment.", false), t);
        assert!(!out.iter().any(|d| matches!(d, Directive::End(_))));
        let req = request(&out).expect("told why");
        let content = req
            .messages
            .last()
            .and_then(|m| m.content.clone())
            .unwrap_or_default();
        assert!(content.contains("closed"), "{content}");
    }

    #[test]
    fn a_failed_reply_is_not_repeated_into_the_next_turn() {
        let answered = Some("I'd like a demo".to_string());
        // The core hands the failed turn's words back in front of the next.
        assert_eq!(
            unamend(
                "I'd like a demo just five of us".into(),
                true,
                answered.clone()
            ),
            ("just five of us".to_string(), false)
        );
        assert_eq!(
            unamend("something else".into(), true, answered.clone()),
            ("something else".to_string(), true),
            "an amend of other words stays one"
        );
        assert_eq!(
            unamend("I'd like a demo".into(), false, answered),
            ("I'd like a demo".to_string(), false)
        );
    }

    #[test]
    fn the_embedded_prompt_uses_known_placeholders() {
        check_prompt(RECEPTIONIST_PROMPT, "prompts/receptionist.md").unwrap();
        assert!(check_prompt("Hi {shop}", "p").is_err());
        assert!(check_prompt("  ", "p").is_err());
        for t in tool_specs() {
            assert_eq!(t.parameters["type"], "object", "{}", t.name);
            assert_eq!(t.parameters["additionalProperties"], false, "{}", t.name);
        }
    }
}
