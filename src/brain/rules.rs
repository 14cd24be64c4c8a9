//! The rules brain: a deterministic receptionist, sans-IO.
//!
//! [`RulesBrain`] is a [`Conversation`]: each caller turn is redacted
//! ([`extract::redact`]), mined for facts (intent, name, e-mail, call-back
//! number, team size, sites, timeline, preferred time, time zone, referrer,
//! the service asked about), and answered at once with a line from
//! `prompts/phrases.toml`. Everything with a side effect — the CRM lookup at
//! connection, slots, hold, confirm, release, callback, CRM note, the
//! outcome on the lead — is a [`Directive::RunTool`] job for the action
//! layer ([`super::actions`]), whose [`Event::ToolFinished`] moves the
//! conversation on. No clock is read: the wall time comes back with the
//! lookup at connection, and later times are that plus the monotonic `now`
//! the session passes in.
//!
//! # How a call is decided
//!
//! 1. **Connection**: look the number up; greet by name an existing
//!    customer (→ support path) or a returning lead, name the business, say
//!    the recording notice when the call is recorded.
//! 2. **Every turn**: opt-out ends the call (`opted_out`, do-not-contact, no
//!    callback); "a person, please" gets one (after hours: a callback);
//!    volunteered card, bank or health details are dropped before anything
//!    else sees the turn.
//! 3. **Intent** decides the path: `new_enquiry`/`referral` qualify (name,
//!    team size / sites / timeline) and then book (tier A: two slots in the
//!    caller's zone, hold, read back, confirm) or, with larger-deal signals
//!    (tier B), transfer in hours or a priority callback after hours;
//!    `pricing` gives the published range (never one number) or offers a
//!    scoping call; `support` takes the issue and transfers (after hours: a
//!    callback); a factual question is answered from `prompts/knowledge.md`
//!    (tier D); `unclear` is never forced: "one moment while I connect you".
//! 4. **The outcome** is written onto the lead as soon as the call has an
//!    intent (what would happen if it dropped now: a callback), and again at
//!    every decision; a hold not confirmed when the call ends is released.
//!
//! It also takes over calls the LLM brain started when the model fails
//! ([`RulesBrain::take_over`]): no second lookup or greeting, the earlier
//! turns learnt silently, the last one answered.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;
use serde_json::json;

use super::actions::{CallContext, Offer, OutcomeRecord};
use super::extract::{self, Intent};
use super::phrases::{fill, Fact, Knowledge, Phrases};
use super::when::{self, TimePref};
use crate::call::conversation::{
    CallInfo, Conversation, ConversationFactory, Directive, Ending, Event,
};
use crate::call::tools::{ToolJob, ToolOutcome};
use crate::config::brain::TiersConfig;
use crate::phone::{self, E164};

/// How the rules brain's tool job ids begin.
const JOB_PREFIX: &str = "rules-";

/// What every rules conversation shares: the business, its phrases and
/// knowledge, the tier rules.
#[derive(Debug, Clone)]
pub struct RulesSettings {
    /// The business name said in greetings.
    pub business: String,
    /// What is said.
    pub phrases: Phrases,
    /// What is known.
    pub knowledge: Knowledge,
    /// Tier rules.
    pub tiers: TiersConfig,
    /// The business's zone (the caller's when nothing better is known).
    pub business_tz: Tz,
    /// Region of national numbers.
    pub region: phonenumber::country::Id,
    /// End-of-turn silence while the caller reads a number, an e-mail or a
    /// spelling (`[vad] slot_end_ms`).
    pub slot_end_ms: u32,
    /// Every call is recorded (`[recording] always`).
    pub always_recorded: bool,
}

/// Makes a [`RulesBrain`] per call.
#[derive(Debug, Clone)]
pub struct RulesBrains {
    settings: Arc<RulesSettings>,
}

impl RulesBrains {
    /// A factory over `settings`.
    pub fn new(settings: RulesSettings) -> Self {
        RulesBrains {
            settings: Arc::new(settings),
        }
    }
}

impl ConversationFactory for RulesBrains {
    fn start(&self) -> Box<dyn Conversation> {
        Box::new(RulesBrain::new(self.settings.clone()))
    }
}

/// Where the conversation is waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The lookup at connection is running.
    Lookup,
    /// Listening for why they called.
    Open,
    AskName,
    AskSize,
    AskTime,
    AskReferral,
    SupportIssue,
    PricingWhich,
    /// "Would you like to book a call?" after a price or for a scoping call.
    PricingOffer,
    ReferralOffer,
    /// A tool job runs; the reply comes with its outcome.
    Busy,
    Offered,
    ReadBack,
    AskEmail,
    /// Released a hold: another time, or a callback?
    AfterRelease,
    AskNumber,
    AskNewNumber,
    /// "Anything else?"
    Closing,
    /// Taken over mid-call ([`RulesBrain::take_over`]): the next turn goes
    /// on with what the earlier turns said.
    Resume,
    Done,
}

/// What was learnt from the caller.
#[derive(Debug, Clone, Default)]
struct Facts {
    name: Option<String>,
    email: Option<String>,
    callback: Option<E164>,
    team_size: Option<u32>,
    multi_site: bool,
    urgent: bool,
    pref: TimePref,
    tz: Option<Tz>,
    referrer: Option<String>,
    service: Option<usize>,
    issue: Option<String>,
    question: Option<(String, String)>,
    redacted: bool,
    /// Asked to be called on another number, which was never heard whole.
    number_missed: bool,
}

/// One call's rules conversation. See the module docs.
#[derive(Debug)]
pub struct RulesBrain {
    s: Arc<RulesSettings>,
    call_sid: String,
    from: Option<E164>,
    recorded: bool,
    transfer_failed: bool,
    ctx: Option<CallContext>,
    started: Option<Instant>,
    stage: Stage,
    intent: Option<Intent>,
    f: Facts,
    asked: HashSet<&'static str>,
    reasks: u32,
    pending: Vec<String>,
    heard: Vec<String>,
    offers: Vec<Offer>,
    chosen: Option<Offer>,
    hold: Option<String>,
    /// A `confirm_booking` job is out: the caller said yes to the hold.
    confirming: bool,
    booked: Option<Offer>,
    outcome: Option<&'static str>,
    tier: Option<&'static str>,
    callback_due: Option<DateTime<Utc>>,
    told_sensitive: bool,
    seq: i64,
    jobs: u32,
    last_written: String,
    long_window: bool,
    booking: bool,
    quiet_callback: bool,
}

fn norm(text: &str) -> String {
    let w: Vec<String> = text
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' {
                c
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    format!(" {} ", w.join(" "))
}

fn has(text: &str, phrases: &[&str]) -> bool {
    let n = norm(text);
    phrases.iter().any(|p| n.contains(&format!(" {p} ")))
}

/// Yes or no, when the turn says one.
pub fn affirm(text: &str) -> Option<bool> {
    if has(
        text,
        &[
            "no problem",
            "not a problem",
            "no worries",
            "why not",
            "no that's fine",
            "no that's great",
        ],
    ) {
        return Some(true);
    }
    let no = has(
        text,
        &[
            "no",
            "nope",
            "nah",
            "not really",
            "actually",
            "changed my mind",
            "change my mind",
            "can't",
            "cannot",
            "can not",
            "won't",
            "don't",
            "rather not",
            "wait",
            "hang on",
            "cancel",
            "different",
            "another",
            "not that",
            "neither",
            "none",
        ],
    );
    let yes = has(
        text,
        &[
            "yes",
            "yeah",
            "yep",
            "yup",
            "sure",
            "please do",
            "confirm",
            "go ahead",
            "perfect",
            "great",
            "fine",
            "sounds good",
            "lovely",
            "correct",
            "absolutely",
            "ok",
            "okay",
            "that works",
            "works for me",
            "definitely",
            "brilliant",
            "please",
            "right",
            "that's it",
            "it is",
            "that's right",
            "yes please",
        ],
    );
    match (yes, no) {
        (_, true) => Some(false),
        (true, false) => Some(true),
        _ => None,
    }
}

/// The caller asks not to be contacted (a plain "not interested" is not
/// that: it declines an offer).
fn opts_out(text: &str) -> bool {
    has(
        text,
        &[
            "don't call me",
            "do not call me",
            "don't contact me",
            "do not contact me",
            "don't contact",
            "do not contact",
            "stop calling",
            "remove me",
            "take me off",
            "unsubscribe",
            "no more calls",
            "never call",
            "stop contacting",
            "delete my details",
            "don't ring me",
            "do not ring me",
            "leave me alone",
            "don't want to be contacted",
            "do not want to be contacted",
            "opt out",
        ],
    )
}

/// The turn is a greeting or filler without content.
fn contentless(text: &str) -> bool {
    const FILL: &[&str] = &[
        "hi",
        "hello",
        "hey",
        "hiya",
        "yes",
        "yeah",
        "oh",
        "um",
        "uh",
        "erm",
        "er",
        "morning",
        "afternoon",
        "evening",
        "good",
        "there",
        "sorry",
        "what",
        "pardon",
        "ok",
        "okay",
        "so",
        "is",
        "this",
        "that",
        "the",
        "a",
        "it",
        "can",
        "you",
        "hear",
        "me",
    ];
    norm(text)
        .split_whitespace()
        .filter(|w| !FILL.contains(w))
        .count()
        < 2
}

/// A tight timeline (not merely a preferred meeting day).
fn tight_timeline(text: &str) -> bool {
    has(
        text,
        &[
            "urgent",
            "urgently",
            "asap",
            "as soon as possible",
            "right away",
            "immediately",
            "emergency",
            "deadline",
            "time sensitive",
            "go live",
            "up and running by",
            "by the end of",
            "within a week",
            "within two weeks",
            "this month",
            "end of the month",
            "straight away",
            "need it now",
            "need it by",
            "next week",
            "tight timeline",
        ],
    ) && !has(text, &["no rush", "not urgent", "no hurry"])
}

/// A name said on its own after "could I take your name?" ("Jane Doe",
/// "it's Jane", "Tom, Tom Hughes", "Doe, d o e"): one to three words that
/// are not common words, after the usual lead-ins.
fn bare_name(text: &str) -> Option<String> {
    if let Some(n) = extract::name(text) {
        // "it's Tom, Tom Hughes": a first name said twice is said once.
        let mut words: Vec<&str> = Vec::new();
        for w in n.split_whitespace() {
            if !words.last().is_some_and(|l| l.eq_ignore_ascii_case(w)) {
                words.push(w);
            }
        }
        return Some(words.join(" "));
    }
    const LEAD: &[&str] = &[
        "yes", "yeah", "yep", "sure", "hi", "hello", "it's", "its", "um", "uh", "erm", "ok",
        "okay", "so", "well", "of", "course", "it", "is", "that's", "thats", "here", "speaking",
        "please", "thanks", "thank", "you", "spelled", "spelt", "as", "in", "and", "oh",
    ];
    let cleaned: String = text
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphabetic() || c == '\'' || c == '-' {
                c
            } else {
                ' '
            }
        })
        .collect();
    let mut parts: Vec<String> = Vec::new();
    let mut letters: Vec<String> = Vec::new();
    for t in cleaned.split_whitespace() {
        if t.chars().count() == 1 {
            letters.push(t.to_string());
            continue;
        }
        if LEAD.contains(&t) {
            continue;
        }
        if extract::is_common_word(t) || !letters.is_empty() {
            return None;
        }
        if parts.last().map(String::as_str) != Some(t) {
            parts.push(t.to_string());
        }
    }
    if letters.len() >= 2 {
        let spelled = letters.concat();
        if parts.len() >= 2 {
            parts.pop();
        }
        parts.push(spelled);
    }
    // "Tom, Tom Hughes": the first name said twice collapses.
    if parts.len() == 3 && parts[0] == parts[1] {
        parts.remove(0);
    }
    if parts.len() == 3 {
        let first = parts[0].clone();
        if parts[1..].contains(&first) {
            parts.remove(0);
        }
    }
    if parts.is_empty() || parts.len() > 3 {
        return None;
    }
    let cap = |w: &str| {
        let mut c = w.chars();
        c.next()
            .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
            .unwrap_or_default()
    };
    Some(parts.iter().map(|p| cap(p)).collect::<Vec<_>>().join(" "))
}

/// Who referred the caller ("referred by Sarah at Acme", "Tom recommended you").
fn referrer(text: &str) -> Option<String> {
    let n = norm(text);
    let w: Vec<&str> = n.split_whitespace().collect();
    const STOP: &[&str] = &[
        "and",
        "to",
        "who",
        "because",
        "about",
        "for",
        "said",
        "i",
        "we",
        "they",
        "so",
        "the",
        "that",
        "you",
        "me",
        "us",
        "my",
        "our",
        "a",
        "an",
        "was",
        "were",
        "has",
        "have",
        "had",
        "friend",
        "colleague",
        "been",
    ];
    let cap = |s: &&str| {
        if *s == "at" {
            return "at".to_string();
        }
        let mut c = s.chars();
        c.next()
            .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
            .unwrap_or_default()
    };
    for i in 0..w.len() {
        if matches!(w[i], "by") && i > 0 && matches!(w[i - 1], "referred" | "recommended" | "sent")
        {
            let name: Vec<&str> = w[i + 1..]
                .iter()
                .take_while(|t| !STOP.contains(t) || **t == "at")
                .take(4)
                .copied()
                .collect();
            if !name.is_empty() {
                return Some(name.iter().map(cap).collect::<Vec<_>>().join(" "));
            }
        }
        if matches!(w[i], "recommended" | "referred" | "suggested")
            && matches!(w.get(i + 1), Some(&"you" | &"me" | &"us"))
        {
            let mut j = i;
            while j > 0 && !STOP.contains(&w[j - 1]) && i - j < 4 {
                j -= 1;
            }
            if j < i {
                return Some(w[j..i].iter().map(cap).collect::<Vec<_>>().join(" "));
            }
        }
    }
    None
}

/// A factual question (hours, where, what we do), not a booking request.
fn is_question(text: &str) -> bool {
    has(
        text,
        &[
            "what",
            "when",
            "where",
            "which",
            "do you",
            "are you",
            "is there",
            "how late",
            "how early",
            "can you tell me",
            "could you tell me",
            "i was wondering",
            "opening hours",
            "open on",
            "what time",
        ],
    )
}

/// The fact in `facts` the turn points to (by subject or keyword).
fn find_fact(facts: &[Fact], text: &str) -> Option<usize> {
    let n = norm(text);
    let score = |f: &Fact| {
        let subject = norm(&f.subject);
        let mut s = 0;
        if !f.subject.is_empty() && n.contains(subject.trim()) {
            s += 10;
        }
        s += f
            .keywords
            .iter()
            .filter(|k| n.contains(&format!(" {k} ")))
            .count();
        s
    };
    facts
        .iter()
        .enumerate()
        .map(|(i, f)| (score(f), i))
        .filter(|(s, _)| *s > 0)
        .max_by_key(|(s, i)| (*s, usize::MAX - i))
        .map(|(_, i)| i)
}

enum Pick {
    Slot(usize),
    Neither,
    Unknown,
}

fn pick(text: &str, offers: &[Offer], tz: Tz) -> Pick {
    if offers.is_empty() {
        return Pick::Unknown;
    }
    if has(
        text,
        &[
            "neither",
            "none of",
            "none",
            "no",
            "nope",
            "can't do",
            "cannot do",
            "doesn't work",
            "don't work",
            "anything else",
            "something else",
            "other times",
        ],
    ) && !has(text, &["no problem", "either is fine"])
    {
        return Pick::Neither;
    }
    if has(
        text,
        &[
            "second",
            "later one",
            "latter",
            "the other",
            "2nd",
            "last one",
            "second one",
        ],
    ) && offers.len() > 1
    {
        return Pick::Slot(1);
    }
    if has(
        text,
        &["first", "earlier", "former", "1st", "first one", "sooner"],
    ) {
        return Pick::Slot(0);
    }
    // A weekday or a time that matches one offer.
    let n = norm(text);
    let today = offers[0].start.with_timezone(&tz).date_naive();
    let pref = when::preference(text, today);
    let mut hits: Vec<usize> = Vec::new();
    for (i, o) in offers.iter().enumerate() {
        let local = o.start.with_timezone(&tz);
        let wd = match local.weekday() {
            chrono::Weekday::Mon => "monday",
            chrono::Weekday::Tue => "tuesday",
            chrono::Weekday::Wed => "wednesday",
            chrono::Weekday::Thu => "thursday",
            chrono::Weekday::Fri => "friday",
            chrono::Weekday::Sat => "saturday",
            chrono::Weekday::Sun => "sunday",
        };
        let minute = local.hour() * 60 + local.minute();
        let day_hit = n.contains(&format!(" {wd} "));
        let time_hit = pref
            .from_min
            .is_some_and(|m| m == minute || m + 12 * 60 == minute);
        if day_hit || time_hit {
            hits.push(i);
        }
    }
    if hits.len() == 1 {
        return Pick::Slot(hits[0]);
    }
    if offers.len() == 1 && affirm(text) == Some(true) {
        return Pick::Slot(0);
    }
    if has(
        text,
        &[
            "either",
            "any",
            "whichever",
            "doesn't matter",
            "don't mind",
            "both fine",
            "either is fine",
        ],
    ) {
        return Pick::Slot(0);
    }
    Pick::Unknown
}

/// The first thing a call hears: by name for a known customer or a
/// returning lead, the business named, the recording notice when recorded.
pub(crate) fn greeting_line(s: &RulesSettings, ctx: &CallContext, recorded: bool) -> String {
    let b = &s.business;
    let p = &s.phrases;
    let line = match (&ctx.name, ctx.customer, ctx.returning) {
        (Some(n), true, _) => fill(&p.greeting_customer, &[("business", b), ("name", n)]),
        (Some(n), _, true) => fill(&p.greeting_returning, &[("business", b), ("name", n)]),
        _ => fill(&p.greeting, &[("business", b)]),
    };
    if recorded {
        format!("{line} {}", p.recording_notice)
    } else {
        line
    }
}

/// `s` cut to at most `max` characters at a word, ending in "…" when cut.
pub(crate) fn trim_to(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    if let Some(i) = out.rfind(' ') {
        out.truncate(i);
    }
    out.push('…');
    out
}

impl RulesBrain {
    /// A conversation waiting for the stream's start.
    pub fn new(s: Arc<RulesSettings>) -> Self {
        RulesBrain {
            s,
            call_sid: String::new(),
            from: None,
            recorded: false,
            transfer_failed: false,
            ctx: None,
            started: None,
            stage: Stage::Lookup,
            intent: None,
            f: Facts::default(),
            asked: HashSet::new(),
            reasks: 0,
            pending: Vec::new(),
            heard: Vec::new(),
            offers: Vec::new(),
            chosen: None,
            hold: None,
            confirming: false,
            booked: None,
            outcome: None,
            tier: None,
            callback_due: None,
            told_sensitive: false,
            seq: 0,
            jobs: 0,
            last_written: String::new(),
            long_window: false,
            booking: false,
            quiet_callback: false,
        }
    }

    fn p(&self) -> &Phrases {
        &self.s.phrases
    }

    fn after_hours(&self) -> bool {
        self.ctx.as_ref().is_some_and(|c| c.after_hours)
    }

    /// No live transfer can be promised: after hours, or one just failed.
    fn no_transfer(&self) -> bool {
        self.after_hours() || self.transfer_failed
    }

    fn wall_now(&self, now: Instant) -> DateTime<Utc> {
        let base = self.ctx.as_ref().map(|c| c.now).unwrap_or_default();
        let since = self
            .started
            .map(|s| now.saturating_duration_since(s))
            .unwrap_or_default();
        base + chrono::Duration::from_std(since).unwrap_or_default()
    }

    fn caller_tz(&self) -> Tz {
        if let Some(tz) = self.f.tz {
            return tz;
        }
        match &self.from {
            Some(e) => when::zone_of_number(e.as_str(), self.s.business_tz),
            None => self.s.business_tz,
        }
    }

    fn job(&mut self, name: &str, args: serde_json::Value, out: &mut Vec<Directive>) {
        self.jobs += 1;
        out.push(Directive::RunTool(ToolJob {
            id: format!("{JOB_PREFIX}{}-{name}", self.jobs),
            name: name.to_string(),
            args,
        }));
    }

    fn say(&mut self, text: String, out: &mut Vec<Directive>) {
        let text = if self.f.redacted && !self.told_sensitive {
            self.told_sensitive = true;
            format!("{} {text}", self.s.phrases.no_sensitive)
        } else {
            text
        };
        out.push(Directive::Say(text));
    }

    /// Ask for the next turn with a longer (or the normal) end-of-turn window.
    fn window(&mut self, long: bool, out: &mut Vec<Directive>) {
        if long != self.long_window {
            self.long_window = long;
            out.push(Directive::EndOfTurn(long.then_some(self.s.slot_end_ms)));
        }
    }

    fn intent_name(&self) -> &'static str {
        match self.intent {
            Some(Intent::NewEnquiry) => "new_enquiry",
            Some(Intent::Pricing) => "pricing",
            Some(Intent::Support) => "support",
            Some(Intent::Referral) => "referral",
            Some(Intent::Unclear) | None => "unclear",
        }
    }

    fn big_deal(&self) -> bool {
        let t = &self.s.tiers;
        self.f.team_size.is_some_and(|n| n >= t.b_team_size)
            || (t.b_multi_site && self.f.multi_site)
            || (t.b_urgent && self.f.urgent)
    }

    fn routing_owner(&self) -> &'static str {
        match (self.intent, self.tier) {
            (_, Some("B")) => "team_sdr",
            (Some(Intent::Support), _) => "team_support",
            (Some(Intent::Referral), _) => "team_partnerships",
            (Some(Intent::Unclear) | None, _) => "team_general",
            _ => "team_sales",
        }
    }

    /// The rep's briefing: who, why, signals, what happened (≤ 400 chars).
    fn notes(&self) -> String {
        let who = self.f.name.clone().unwrap_or_else(|| "The caller".into());
        let tz = self.caller_tz();
        let what = match self.intent {
            Some(Intent::NewEnquiry) => {
                let svc = self
                    .f
                    .service
                    .and_then(|i| self.s.knowledge.services.get(i))
                    .map(|f| format!(" about {}", f.subject))
                    .unwrap_or_default();
                format!("{who} called with a new enquiry{svc}.")
            }
            Some(Intent::Pricing) => {
                let svc = self
                    .f
                    .service
                    .and_then(|i| self.s.knowledge.prices.get(i))
                    .map(|f| format!(" for {}", f.subject))
                    .unwrap_or_default();
                format!("{who} asked about pricing{svc}.")
            }
            Some(Intent::Support) => format!("{who} is an existing customer needing support."),
            Some(Intent::Referral) => match &self.f.referrer {
                Some(r) => {
                    format!("{who} called about a referral or partnership, referred by {r}.")
                }
                None => format!("{who} called about a referral or partnership."),
            },
            Some(Intent::Unclear) | None => match &self.f.question {
                Some((q, _)) => format!("{who} asked about {q}."),
                None => format!("{who} called; the reason was not clear."),
            },
        };
        let mut signals: Vec<String> = Vec::new();
        if let Some(n) = self.f.team_size {
            signals.push(format!("team of {n}"));
        }
        if self.f.multi_site {
            signals.push("multiple sites".into());
        }
        if self.f.urgent {
            signals.push("tight timeline".into());
        }
        if tz != self.s.business_tz {
            signals.push(format!("{} time", crate::booking::schedule::zone_label(tz)));
        }
        let signals = if signals.is_empty() {
            String::new()
        } else {
            let mut s = signals.join(", ");
            if let Some(c) = s.get_mut(0..1) {
                c.make_ascii_uppercase();
            }
            format!(" {s}.")
        };
        let done = match (self.outcome, &self.booked) {
            (Some("booked"), Some(b)) => format!(" Booked {} with {}.", b.spoken, b.owner_name),
            (Some("transferred"), _) => " Put through to the team.".to_string(),
            (Some("answered"), _) => " Question answered; no callback needed.".to_string(),
            (Some("opted_out"), _) => " Asked not to be contacted.".to_string(),
            _ if self.tier == Some("B") => " Wants a priority call back.".to_string(),
            _ => " Wants a call back.".to_string(),
        };
        let missed = if self.f.number_missed {
            " Asked to be called on another number, which was not caught."
        } else {
            ""
        };
        let ah = if self.after_hours() {
            " Called after hours."
        } else {
            ""
        };
        trim_to(&format!("{what}{signals}{done}{missed}{ah}"), 400)
    }

    /// The lead as it stands, in the action layer's shape (`seq` unset).
    fn lead_record(&self) -> Option<OutcomeRecord> {
        let phone = self.f.callback.clone().or_else(|| self.from.clone())?;
        let outcome = self.outcome.unwrap_or("callback");
        let tier = match (outcome, self.tier) {
            ("opted_out", _) => None,
            (_, Some(t)) => Some(t),
            ("callback", None) => Some(if self.big_deal() { "B" } else { "C" }),
            _ => None,
        };
        Some(OutcomeRecord {
            seq: 0,
            phone: phone.as_str().to_string(),
            name: self.f.name.clone(),
            email: self.f.email.clone(),
            intent: self.intent_name().to_string(),
            tier: tier.map(str::to_string),
            outcome: outcome.to_string(),
            timezone: Some(self.caller_tz().name().to_string()),
            notes: self.notes(),
            routing_owner: Some(self.routing_owner().to_string()),
            after_hours: self.after_hours(),
            callback_due: self.callback_due,
        })
    }

    /// Number `rec` as the call's next decision, unless it says what was
    /// last written already.
    fn next_record(&mut self, mut rec: OutcomeRecord) -> Option<OutcomeRecord> {
        let sig = serde_json::to_string(&rec).unwrap_or_default();
        if sig == self.last_written {
            return None;
        }
        self.last_written = sig;
        self.seq += 1;
        rec.seq = self.seq;
        Some(rec)
    }

    /// Write the lead as it stands (when something changed). Not while a
    /// booking is being confirmed: the confirmation carries the lead's next
    /// record, and the result of the confirmation writes what follows.
    fn write(&mut self, out: &mut Vec<Directive>) {
        if self.confirming {
            return;
        }
        let Some(rec) = self.lead_record().and_then(|r| self.next_record(r)) else {
            return;
        };
        let args = serde_json::to_value(&rec).unwrap_or_default();
        self.job("record_outcome", args, out);
    }

    /// The lead once the chosen slot is booked: the action layer writes it
    /// with the booking, so it stands even if the caller has gone by then.
    fn booked_record(&mut self) -> Option<OutcomeRecord> {
        let now = (self.outcome, self.tier, self.booked.clone());
        self.outcome = Some("booked");
        self.tier = Some("A");
        self.booked = self.chosen.clone();
        let rec = self.lead_record();
        (self.outcome, self.tier, self.booked) = now;
        rec.and_then(|r| self.next_record(r))
    }

    fn decide(
        &mut self,
        outcome: &'static str,
        tier: Option<&'static str>,
        out: &mut Vec<Directive>,
    ) {
        self.outcome = Some(outcome);
        self.tier = tier;
        self.write(out);
    }

    fn handoff(&mut self, line: String, out: &mut Vec<Directive>) {
        let tier = if self.big_deal()
            && matches!(
                self.intent,
                Some(Intent::NewEnquiry | Intent::Referral | Intent::Pricing)
            ) {
            Some("B")
        } else {
            None
        };
        self.decide("transferred", tier, out);
        let mut summary = self.notes();
        if matches!(self.intent, Some(Intent::Unclear) | None) && !self.heard.is_empty() {
            summary = format!("{summary} Caller said: \"{}\"", self.heard.join(" "));
        }
        self.say(line, out);
        self.stage = Stage::Done;
        out.push(Directive::End(Ending::HandOff {
            target: String::new(),
            summary: trim_to(&summary, 400),
        }));
    }

    fn goodbye(&mut self, out: &mut Vec<Directive>) {
        let line = fill(&self.p().goodbye, &[("business", &self.s.business)]);
        self.say(line, out);
        self.stage = Stage::Done;
        out.push(Directive::End(Ending::Hangup));
    }

    fn closing(&mut self, line: String, out: &mut Vec<Directive>) {
        self.say(line, out);
        self.stage = Stage::Closing;
    }

    // ------------------------------------------------------------ callbacks

    fn start_callback(&mut self, out: &mut Vec<Directive>) {
        if self.f.callback.is_some() {
            return self.take_callback(out);
        }
        if self.from.is_some() {
            self.asked.insert("number");
            self.stage = Stage::AskNumber;
            let l = self.p().ask_number.clone();
            self.say(l, out);
        } else {
            self.asked.insert("new_number");
            self.stage = Stage::AskNewNumber;
            let l = self.p().ask_new_number.clone();
            self.say(l, out);
            self.window(true, out);
        }
    }

    fn take_callback(&mut self, out: &mut Vec<Directive>) {
        self.window(false, out);
        let Some(phone) = self.f.callback.clone().or_else(|| self.from.clone()) else {
            let l = self.p().callback_standard.clone();
            return self.closing(l, out);
        };
        let tier = if self.big_deal() && self.intent != Some(Intent::Support) {
            "B"
        } else {
            "C"
        };
        self.tier = Some(tier);
        self.outcome = Some("callback");
        let notes = self.notes();
        self.job(
            "take_callback",
            json!({"phone": phone.as_str(), "name": self.f.name, "tier": tier, "notes": notes}),
            out,
        );
        self.stage = Stage::Busy;
    }

    fn callback_said(&mut self, out: &mut Vec<Directive>) {
        if std::mem::take(&mut self.quiet_callback) {
            let l = self.p().anything_else.clone();
            return self.closing(l, out);
        }
        let p = self.p();
        let line = match (self.tier, self.no_transfer()) {
            (Some("B"), true) => p.callback_morning.clone(),
            (Some("B"), false) => fill(
                &p.callback_priority,
                &[("minutes", &self.s.tiers.b_callback_minutes.to_string())],
            ),
            (_, true) if self.after_hours() => p.callback_after_hours.clone(),
            _ => p.callback_standard.clone(),
        };
        let line = format!("{line} {}", p.anything_else);
        self.closing(line, out);
    }

    // ------------------------------------------------------------ booking

    fn find_slots(&mut self, now: Instant, out: &mut Vec<Directive>) {
        let tz = self.caller_tz();
        let wall = self.wall_now(now);
        let (from, to) = self.f.pref.window(tz, wall, self.s.tiers.slot_days);
        // Nothing said about the time of day: the caller's waking hours.
        let (day_from, day_to) = match (self.f.pref.from_min, self.f.pref.to_min) {
            (None, None) => (Some(8 * 60), Some(19 * 60)),
            (a, b) => (a, b),
        };
        self.job(
            "find_slots",
            json!({"from": from, "to": to, "timezone": tz.name(), "count": 2,
                   "day_from_min": day_from, "day_to_min": day_to}),
            out,
        );
        self.stage = Stage::Busy;
    }

    fn booking_path(&mut self, now: Instant, out: &mut Vec<Directive>) {
        self.booking = true;
        if self.f.name.is_none() && self.asked.insert("name") {
            self.stage = Stage::AskName;
            let l = self.p().ask_name.clone();
            return self.say(l, out);
        }
        if self.f.pref.is_empty() && self.asked.insert("time") {
            self.stage = Stage::AskTime;
            let l = self.p().ask_time.clone();
            return self.say(l, out);
        }
        self.find_slots(now, out);
    }

    fn confirm(&mut self, out: &mut Vec<Directive>) {
        let Some(hold) = self.hold.clone() else {
            return self.start_callback(out);
        };
        self.window(false, out);
        let phone = self.f.callback.clone().or_else(|| self.from.clone());
        let notes = self.notes();
        let record = self.booked_record();
        self.job(
            "confirm_booking",
            json!({
                "hold_id": hold,
                "name": self.f.name.clone().unwrap_or_else(|| "Caller".into()),
                "email": self.f.email,
                "phone": phone.map(|p| p.as_str().to_string()),
                "timezone": self.caller_tz().name(),
                "notes": notes,
                "record": record,
            }),
            out,
        );
        self.confirming = true;
        self.stage = Stage::Busy;
    }

    fn release(&mut self, out: &mut Vec<Directive>) {
        if let Some(h) = self.hold.take() {
            self.job("release_hold", json!({"hold_id": h}), out);
        }
        self.chosen = None;
    }

    // ------------------------------------------------------------ paths

    /// Go on with the call's path from what is known now.
    fn advance(&mut self, now: Instant, out: &mut Vec<Directive>) {
        if self.booking && self.intent != Some(Intent::Unclear) {
            return self.booking_path(now, out);
        }
        match self.intent {
            None => {}
            Some(Intent::Unclear) => {
                if self.no_transfer() {
                    self.start_callback(out);
                } else {
                    let l = self.p().handoff.clone();
                    self.handoff(l, out);
                }
            }
            Some(Intent::Support) => {
                if self.f.issue.is_none() && self.asked.insert("issue") {
                    self.stage = Stage::SupportIssue;
                    let l = self.p().support_ask.clone();
                    return self.say(l, out);
                }
                if self.no_transfer() {
                    self.start_callback(out);
                } else {
                    let l = self.p().support_transfer.clone();
                    self.handoff(l, out);
                }
            }
            Some(Intent::Pricing) => {
                let k = &self.s.knowledge;
                if self.f.service.is_none() && k.prices.len() == 1 {
                    self.f.service = Some(0);
                }
                match self.f.service.and_then(|i| k.prices.get(i)).cloned() {
                    None if self.asked.insert("which") => {
                        self.stage = Stage::PricingWhich;
                        let l = self.p().pricing_which.clone();
                        self.say(l, out);
                    }
                    Some(fact) if !fact.bespoke() => {
                        let line = fill(
                            &self.p().pricing_range,
                            &[("service", &fact.subject), ("range", &fact.text)],
                        );
                        self.f.question =
                            Some((format!("pricing for {}", fact.subject), fact.text.clone()));
                        self.stage = Stage::PricingOffer;
                        self.say(line, out);
                        self.decide("answered", Some("D"), out);
                    }
                    _ => {
                        self.stage = Stage::PricingOffer;
                        let l = self.p().pricing_bespoke.clone();
                        self.say(l, out);
                    }
                }
            }
            Some(i @ (Intent::NewEnquiry | Intent::Referral)) => {
                if i == Intent::Referral
                    && self.f.referrer.is_none()
                    && self.asked.insert("referral")
                {
                    self.stage = Stage::AskReferral;
                    let l = self.p().referral_ask.clone();
                    return self.say(l, out);
                }
                if self.f.name.is_none() && self.asked.insert("name") {
                    self.stage = Stage::AskName;
                    let l = self.p().ask_name.clone();
                    return self.say(l, out);
                }
                if self.f.team_size.is_none()
                    && !self.f.multi_site
                    && !self.big_deal()
                    && self.asked.insert("size")
                {
                    self.stage = Stage::AskSize;
                    let l = self.p().ask_size.clone();
                    return self.say(l, out);
                }
                if self.big_deal() {
                    self.tier = Some("B");
                    if self.no_transfer() || !self.s.tiers.b_transfer {
                        return self.start_callback(out);
                    }
                    let l = self.p().transfer.clone();
                    return self.handoff(l, out);
                }
                if i == Intent::Referral && self.asked.insert("referral_offer") {
                    self.stage = Stage::ReferralOffer;
                    let l = self.p().referral_offer.clone();
                    return self.say(l, out);
                }
                if self.s.tiers.books(self.intent_name()) {
                    self.booking_path(now, out);
                } else {
                    self.start_callback(out);
                }
            }
        }
    }

    /// Facts from one (redacted) caller turn.
    fn learn(&mut self, text: &str) {
        let r = self.s.region;
        if self.f.name.is_none() || self.stage == Stage::AskName {
            let n = if self.stage == Stage::AskName {
                bare_name(text)
            } else {
                extract::name(text)
            };
            if n.is_some() {
                self.f.name = n;
            }
        } else if let Some(n) = extract::name(text) {
            self.f.name = Some(n);
        }
        if let Some(e) = extract::email(text) {
            self.f.email = Some(e);
        }
        if let Some(p) = extract::phone_number(text, r) {
            if Some(&p) != self.from.as_ref() || self.f.callback.is_some() {
                self.f.callback = Some(p);
            }
        }
        if let Some(n) = extract::team_size(text) {
            self.f.team_size = Some(n);
        }
        self.f.multi_site |= extract::multi_site(text);
        self.f.urgent |= tight_timeline(text);
        if let Some(tz) = when::zone_in(text) {
            self.f.tz = Some(tz);
        }
        if self.f.referrer.is_none() {
            self.f.referrer = referrer(text);
        }
        let k = &self.s.knowledge;
        if let Some(i) = find_fact(&k.prices, text) {
            self.f.service = Some(i);
        }
    }

    fn on_caller(&mut self, raw: &str, now: Instant, out: &mut Vec<Directive>) {
        let (text, changed) = extract::redact(raw);
        self.f.redacted |= changed;
        if self.stage == Stage::Lookup {
            self.pending.push(text);
            return;
        }
        if self.stage == Stage::Done {
            return;
        }
        if !contentless(&text) {
            self.heard.push(trim_to(&text, 200));
            if self.heard.len() > 3 {
                self.heard.remove(0);
            }
        }
        // Opt-out wins over everything.
        if opts_out(&text) {
            self.release(out);
            self.intent.get_or_insert(Intent::Unclear);
            self.learn(&text);
            self.decide("opted_out", None, out);
            self.callback_due = None;
            let l = self.p().opt_out.clone();
            self.say(l, out);
            self.stage = Stage::Done;
            out.push(Directive::End(Ending::Hangup));
            return;
        }
        let stage = self.stage;
        let before_pref = self.f.pref;
        self.learn(&text);
        let tz = self.caller_tz();
        let today = self.wall_now(now).with_timezone(&tz).date_naive();
        let pref = when::preference(&text, today);
        if !pref.is_empty() {
            self.f.pref = pref;
        }
        if extract::wants_human(&text)
            || has(
                &text,
                &[
                    "speak to a person",
                    "speak with someone",
                    "speak to somebody",
                    "talk to somebody",
                    "a human",
                    "someone real",
                ],
            )
        {
            self.release(out);
            if self.intent.is_none() {
                self.intent = Some(extract::intent(&text).unwrap_or(Intent::Unclear));
            }
            if self.no_transfer() {
                let l = self.p().human_after_hours.clone();
                self.say(l, out);
                return self.start_callback_quiet(out);
            }
            let l = self.p().handoff.clone();
            return self.handoff(l, out);
        }
        let said_intent = extract::intent(&text);
        let wants_callback = has(
            &text,
            &[
                "call me back",
                "call back",
                "callback",
                "ring me",
                "call me instead",
                "ask someone to call",
                "someone call me",
                "someone to call me",
                "get back to me",
                "ring me back",
                "phone me back",
            ],
        );
        if wants_callback
            && matches!(
                stage,
                Stage::AskTime
                    | Stage::AskSize
                    | Stage::Offered
                    | Stage::ReadBack
                    | Stage::AfterRelease
                    | Stage::PricingOffer
                    | Stage::ReferralOffer
            )
        {
            self.release(out);
            self.booking = false;
            self.start_callback(out);
            self.write(out);
            return;
        }
        match stage {
            Stage::AskName => {
                if self.f.name.is_some() {
                    let l = fill(
                        &self.p().ack_name,
                        &[("name", self.f.name.as_deref().unwrap_or(""))],
                    );
                    self.say(l, out);
                }
                self.advance(now, out);
                // `ack_name` was said on its own when the path asks nothing.
            }
            Stage::AskSize | Stage::AskReferral | Stage::AskTime => {
                if stage == Stage::AskReferral && self.f.referrer.is_none() {
                    let s = text.trim();
                    if !s.is_empty() {
                        self.f.referrer = Some(trim_to(s, 60));
                    }
                }
                self.advance(now, out);
            }
            Stage::SupportIssue => {
                self.f.issue = Some(trim_to(&text, 200));
                self.advance(now, out);
            }
            Stage::PricingWhich => {
                if self.f.service.is_none() && self.asked.contains("which") {
                    // Nothing matched twice: offer a scoping call.
                    self.f.service = self.s.knowledge.prices.iter().position(Fact::bespoke);
                }
                self.advance(now, out);
            }
            Stage::PricingOffer | Stage::ReferralOffer => match affirm(&text) {
                Some(true) => self.booking_path(now, out),
                _ if !self.f.pref.is_empty() && self.f.pref != before_pref => {
                    self.booking_path(now, out)
                }
                Some(false) if stage == Stage::ReferralOffer => self.start_callback(out),
                Some(false) => {
                    self.record_answer(out);
                    let l = self.p().anything_else.clone();
                    self.closing(l, out);
                }
                None => {
                    let l = self.p().didnt_catch.clone();
                    self.say(l, out);
                }
            },
            Stage::Offered => {
                let tz = self.caller_tz();
                if !self.f.pref.is_empty()
                    && self.f.pref != before_pref
                    && !matches!(pick(&text, &self.offers, tz), Pick::Slot(_))
                {
                    return self.find_slots(now, out);
                }
                match pick(&text, &self.offers, tz) {
                    Pick::Slot(i) => {
                        let o = self.offers[i].clone();
                        self.job(
                            "hold_slot",
                            json!({"owner": o.owner, "start": o.start}),
                            out,
                        );
                        self.chosen = Some(o);
                        self.stage = Stage::Busy;
                    }
                    Pick::Neither => {
                        if has(&text, &["call me back", "call back", "callback", "ring me"]) {
                            return self.start_callback(out);
                        }
                        self.stage = Stage::AfterRelease;
                        let l = self.p().released.clone();
                        self.say(l, out);
                    }
                    Pick::Unknown => {
                        let (a, b) = (
                            self.offers
                                .first()
                                .map(|o| o.spoken.clone())
                                .unwrap_or_default(),
                            self.offers
                                .get(1)
                                .map(|o| o.spoken.clone())
                                .unwrap_or_default(),
                        );
                        let l = if self.offers.len() > 1 {
                            fill(&self.p().pick_slot, &[("slot1", &a), ("slot2", &b)])
                        } else {
                            fill(&self.p().offer_one_slot, &[("slot1", &a)])
                        };
                        self.say(l, out);
                    }
                }
            }
            Stage::ReadBack => match affirm(&text) {
                Some(true) => {
                    if self.f.email.is_none() && self.asked.insert("email") {
                        self.stage = Stage::AskEmail;
                        let l = self.p().ask_email.clone();
                        self.say(l, out);
                        self.window(true, out);
                    } else {
                        self.confirm(out);
                    }
                }
                Some(false) => {
                    self.release(out);
                    if !self.f.pref.is_empty() && self.f.pref != before_pref {
                        return self.find_slots(now, out);
                    }
                    if has(&text, &["call me back", "call back", "callback", "ring me"]) {
                        return self.start_callback(out);
                    }
                    self.stage = Stage::AfterRelease;
                    let l = self.p().released.clone();
                    self.say(l, out);
                }
                None => {
                    let l = self.p().didnt_catch.clone();
                    self.say(l, out);
                }
            },
            Stage::AskEmail => self.confirm(out),
            Stage::AfterRelease => {
                if !self.f.pref.is_empty() && self.f.pref != before_pref
                    || has(
                        &text,
                        &[
                            "different time",
                            "another time",
                            "other time",
                            "different day",
                            "another day",
                        ],
                    )
                {
                    return self.find_slots(now, out);
                }
                self.start_callback(out);
            }
            Stage::AskNumber => {
                if self.f.callback.is_some() || affirm(&text) == Some(true) {
                    if self.f.callback.is_none() {
                        self.f.callback = self.from.clone();
                    }
                    self.take_callback(out);
                } else {
                    self.stage = Stage::AskNewNumber;
                    let l = self.p().ask_new_number.clone();
                    self.say(l, out);
                    self.window(true, out);
                }
            }
            Stage::AskNewNumber => {
                if self.f.callback.is_some() {
                    return self.take_callback(out);
                }
                // A number is easy to mishear a digit of: asked again, then
                // a little slower, then the calling number, saying so (with
                // no caller ID there is nothing to call back but what they say).
                let l = if self.asked.insert("new_number_again") {
                    self.p().didnt_catch.clone()
                } else if self.asked.insert("new_number_slowly") {
                    self.p().number_slowly.clone()
                } else if self.from.is_none() {
                    self.p().didnt_catch.clone()
                } else {
                    self.f.number_missed = true;
                    self.f.callback = self.from.clone();
                    let l = self.p().number_fallback.clone();
                    self.say(l, out);
                    return self.take_callback(out);
                };
                self.say(l, out);
            }
            Stage::Closing => {
                if let Some(i) = said_intent.filter(|i| Some(*i) != self.intent) {
                    if self.outcome != Some("booked") {
                        self.intent = Some(i);
                        return self.advance(now, out);
                    }
                }
                if is_question(&text) && self.answer_fact(&text, out) {
                    return;
                }
                if affirm(&text) == Some(true) && !contentless(&text) && said_intent.is_some() {
                    return self.advance(now, out);
                }
                self.goodbye(out);
            }
            Stage::Open => self.open_turn(&text, said_intent, now, out),
            Stage::Resume => {
                self.stage = Stage::Open;
                match (said_intent, self.intent) {
                    // The path is known from the earlier turns: go on with it.
                    (None, Some(_)) => self.advance(now, out),
                    _ => self.open_turn(&text, said_intent, now, out),
                }
            }
            Stage::Busy => {
                // A turn while a job runs: its outcome answers; a change of
                // mind is heard then.
            }
            Stage::Lookup | Stage::Done => {}
        }
        if self.intent.is_some() && self.stage != Stage::Done {
            self.write(out);
        }
    }

    /// A callback whose "we'll call you" line was already said.
    fn start_callback_quiet(&mut self, out: &mut Vec<Directive>) {
        self.quiet_callback = true;
        if self.f.callback.is_none() {
            self.f.callback = self.from.clone();
        }
        if self.f.callback.is_some() {
            self.take_callback(out);
        } else {
            self.start_callback(out);
        }
    }

    fn record_answer(&mut self, out: &mut Vec<Directive>) {
        if let Some((q, a)) = self.f.question.clone() {
            let phone = self.f.callback.clone().or_else(|| self.from.clone());
            self.job(
                "answer_question",
                json!({"phone": phone.map(|p| p.as_str().to_string()), "question": q, "answer": a}),
                out,
            );
        }
        self.decide("answered", Some("D"), out);
    }

    /// Answer a factual question from the knowledge; false when none fits.
    fn answer_fact(&mut self, text: &str, out: &mut Vec<Directive>) -> bool {
        let s = self.s.clone();
        let k = &s.knowledge;
        let n = norm(text);
        let sections: [(&str, &Vec<Fact>, bool); 3] = [
            (
                "opening hours",
                &k.hours,
                has(
                    text,
                    &[
                        "open",
                        "opening",
                        "close",
                        "closing",
                        "hours",
                        "what time",
                        "how late",
                        "how early",
                        "weekend",
                        "saturday",
                        "sunday",
                    ],
                ),
            ),
            (
                "where the business is",
                &k.location,
                has(
                    text,
                    &[
                        "where",
                        "address",
                        "located",
                        "location",
                        "based",
                        "office",
                        "directions",
                        "parking",
                    ],
                ),
            ),
            (
                "the services offered",
                &k.services,
                has(
                    text,
                    &[
                        "do you do",
                        "do you offer",
                        "services",
                        "what do you",
                        "can you help with",
                        "do you provide",
                    ],
                ),
            ),
        ];
        for (topic, facts, asked) in sections {
            let hit = find_fact(facts, &n).or(if asked && !facts.is_empty() {
                Some(0)
            } else {
                None
            });
            if let (true, Some(i)) = (asked, hit) {
                let fact = facts[i].clone();
                let answer = if fact.subject.is_empty() {
                    fact.text.clone()
                } else {
                    format!("{}: {}.", fact.subject, fact.text.trim_end_matches('.'))
                };
                if self.intent.is_none() {
                    self.intent = Some(Intent::Unclear);
                }
                self.f.question = Some((topic.to_string(), answer.clone()));
                let line = fill(&self.p().answer, &[("answer", &answer)]);
                self.say(line, out);
                self.record_answer(out);
                self.stage = Stage::Closing;
                return true;
            }
        }
        false
    }

    fn open_turn(
        &mut self,
        text: &str,
        said: Option<Intent>,
        now: Instant,
        out: &mut Vec<Directive>,
    ) {
        let customer = self.ctx.as_ref().is_some_and(|c| c.customer);
        let intent = match said {
            // "how much" from a customer is still pricing; a problem is support.
            Some(i) => Some(i),
            None if is_question(text) && self.answer_fact(text, out) => return,
            None if customer && !contentless(text) && self.f.name.is_none() => {
                Some(Intent::Support)
            }
            None => None,
        };
        match intent {
            Some(i) => {
                if let Some(q) = find_fact(&self.s.knowledge.services, text) {
                    self.f.service = self.f.service.or(Some(q));
                }
                self.intent = Some(i);
                if i == Intent::Support && text.split_whitespace().count() >= 8 {
                    self.f.issue = Some(trim_to(text, 200));
                }
                self.advance(now, out);
            }
            None => {
                let thin = contentless(text)
                    || (self.f.name.is_some() && text.split_whitespace().count() <= 8);
                if thin && self.reasks < 2 {
                    self.reasks += 1;
                    let l = match &self.f.name {
                        Some(n) => fill(&self.p().how_can_i_help, &[("name", n)]),
                        None => self.p().reask.clone(),
                    };
                    self.say(l, out);
                } else {
                    self.intent = Some(Intent::Unclear);
                    self.advance(now, out);
                }
            }
        }
    }

    fn greet(&mut self, now: Instant, out: &mut Vec<Directive>) {
        self.stage = Stage::Open;
        if !self.transfer_failed {
            let ctx = self.ctx.clone().unwrap_or_default();
            let line = greeting_line(&self.s, &ctx, self.recorded);
            if ctx.name.is_some() {
                self.f.name = ctx.name.clone();
            }
            self.say(line, out);
        }
        for t in std::mem::take(&mut self.pending) {
            self.on_caller(&t, now, out);
        }
    }

    fn on_tool(&mut self, o: ToolOutcome, now: Instant, out: &mut Vec<Directive>) {
        if !o.ok && o.name != "record_outcome" {
            tracing::info!(tool = %o.name, "tool job failed");
        }
        match o.name.as_str() {
            "lookup_contact" => {
                let ctx: CallContext = serde_json::from_value(o.result.clone()).unwrap_or_default();
                self.started = Some(now);
                self.ctx = Some(ctx);
                if self.stage == Stage::Lookup {
                    self.greet(now, out);
                }
            }
            "find_slots" => {
                if self.stage == Stage::Done {
                    return;
                }
                let slots: Vec<Offer> = o
                    .result
                    .get("slots")
                    .cloned()
                    .and_then(|v| serde_json::from_value(v).ok())
                    .unwrap_or_default();
                self.offers = slots;
                match self.offers.len() {
                    0 => {
                        let l = self.p().no_slots.clone();
                        self.say(l, out);
                        self.start_callback_quiet(out);
                    }
                    1 => {
                        let l = fill(
                            &self.p().offer_one_slot,
                            &[("slot1", &self.offers[0].spoken)],
                        );
                        self.say(l, out);
                        self.stage = Stage::Offered;
                    }
                    _ => {
                        let l = fill(
                            &self.p().offer_slots,
                            &[
                                ("slot1", &self.offers[0].spoken),
                                ("slot2", &self.offers[1].spoken),
                            ],
                        );
                        self.say(l, out);
                        self.stage = Stage::Offered;
                    }
                }
            }
            "hold_slot" => {
                let id = o
                    .result
                    .get("hold_id")
                    .and_then(|v| v.as_str())
                    .map(str::to_string);
                if self.stage == Stage::Done {
                    // The caller opted out or asked for a person meanwhile.
                    if let Some(h) = id {
                        self.job("release_hold", json!({"hold_id": h}), out);
                    }
                    return;
                }
                match (o.ok, id, self.chosen.clone()) {
                    (true, Some(h), Some(c)) => {
                        self.hold = Some(h);
                        let l = fill(
                            &self.p().readback,
                            &[("slot", &c.spoken), ("owner", &c.owner_name)],
                        );
                        self.say(l, out);
                        self.stage = Stage::ReadBack;
                    }
                    _ if self.asked.insert("retry_slots") => {
                        let l = self.p().slot_taken.clone();
                        self.say(l, out);
                        self.find_slots(now, out);
                    }
                    _ => {
                        let l = self.p().no_slots.clone();
                        self.say(l, out);
                        self.start_callback_quiet(out);
                    }
                }
            }
            "confirm_booking" => {
                self.confirming = false;
                if o.ok {
                    self.hold = None;
                    self.booked = self.chosen.clone();
                    self.decide("booked", Some("A"), out);
                    if self.stage != Stage::Done {
                        let l = match &self.booked {
                            Some(c) => fill(
                                &self.p().booked,
                                &[("slot", &c.spoken), ("owner", &c.owner_name)],
                            ),
                            None => self.p().anything_else.clone(),
                        };
                        self.closing(l, out);
                    }
                } else if self.stage != Stage::Done {
                    self.hold = None;
                    if self.asked.insert("retry_slots") {
                        let l = self.p().slot_taken.clone();
                        self.say(l, out);
                        self.find_slots(now, out);
                    } else {
                        let l = self.p().no_slots.clone();
                        self.say(l, out);
                        self.start_callback_quiet(out);
                    }
                }
            }
            "take_callback" => {
                self.callback_due = o
                    .result
                    .get("due")
                    .cloned()
                    .and_then(|v| serde_json::from_value(v).ok());
                if o.ok {
                    self.write(out);
                }
                if self.stage == Stage::Busy {
                    self.callback_said(out);
                }
            }
            _ => {}
        }
    }
}

impl Conversation for RulesBrain {
    fn on_event(&mut self, event: Event, now: Instant, out: &mut Vec<Directive>) {
        match event {
            Event::Started(info) => self.on_started(info, now, out),
            Event::CallerSaid { text, .. } => self.on_caller(&text, now, out),
            Event::ToolFinished(o) => self.on_tool(o, now, out),
            Event::Dtmf('0') if self.stage != Stage::Done => {
                let l = self.p().handoff.clone();
                self.intent.get_or_insert(Intent::Unclear);
                self.handoff(l, out);
            }
            Event::Ended => {
                // A hold nobody confirmed goes back (one being confirmed
                // stays: the caller said yes, and the confirmation writes
                // the booked lead); a call with an intent already has its
                // lead, and a caller who said something still leaves one.
                if !self.confirming {
                    self.release(out);
                }
                if self.outcome.is_none() && self.intent.is_none() && !self.heard.is_empty() {
                    self.intent = Some(Intent::Unclear);
                    self.write(out);
                }
                self.stage = Stage::Done;
            }
            Event::BotTurnEnded(_)
            | Event::ReplyFailed
            | Event::ModelToolCall(_)
            | Event::Dtmf(_) => {}
        }
    }

    fn scrub(&self, text: &str) -> Option<String> {
        let (t, changed) = extract::redact(text);
        changed.then_some(t)
    }
}

impl RulesBrain {
    /// Who is calling, from the stream's `start`.
    fn read_info(&mut self, info: &CallInfo) {
        self.call_sid = info.call_sid.clone();
        self.from = info
            .from
            .as_ref()
            .and_then(|p| phone::normalise(p.expose(), self.s.region).ok());
        let param = |k: &str| {
            info.params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.expose().trim().to_string())
        };
        self.recorded = self.s.always_recorded || param("record").as_deref() == Some("true");
        self.transfer_failed = param("transfer_failed").as_deref() == Some("true");
    }

    fn on_started(&mut self, info: CallInfo, now: Instant, out: &mut Vec<Directive>) {
        self.read_info(&info);
        self.started = Some(now);
        if self.transfer_failed {
            let l = self.p().transfer_failed.clone();
            self.say(l, out);
            self.intent = Some(Intent::NewEnquiry);
        }
        self.job(
            "lookup_contact",
            json!({"phone": self.from.as_ref().map(|e| e.as_str().to_string())}),
            out,
        );
    }
}

/// What a conversation that gives up mid-call hands the rules brain
/// ([`RulesBrain::take_over`]): enough to go on without greeting again.
#[derive(Debug, Clone)]
pub struct Handover {
    /// The stream's start.
    pub info: CallInfo,
    /// The lookup at connection.
    pub ctx: CallContext,
    /// When `ctx.now` was read (later wall times are that plus the
    /// monotonic time since).
    pub since: Instant,
    /// The caller's turns so far, oldest first, already redacted. The last
    /// one is answered at once.
    pub turns: Vec<String>,
    /// The last `seq` written onto the lead: the rules brain writes above it.
    pub seq: i64,
    /// The caller's name, when it was learnt.
    pub name: Option<String>,
    /// Their e-mail, when it was learnt.
    pub email: Option<String>,
    /// A booking already made in this call.
    pub booked: Option<Offer>,
    /// The outcome already decided (one of [`super::actions::OUTCOMES`]).
    pub outcome: Option<&'static str>,
    /// Its tier (`A`–`D`).
    pub tier: Option<&'static str>,
}

impl RulesBrain {
    /// Whether tool job `id` is one of a rules brain's own.
    pub fn owns_job(id: &str) -> bool {
        id.starts_with(JOB_PREFIX)
    }

    /// Take over a call another conversation started: no lookup and no
    /// greeting (both happened), the facts of the earlier turns learnt
    /// silently, and the last turn answered as if the rules brain had been
    /// listening all along. Its directives go to `out`.
    pub fn take_over(
        s: Arc<RulesSettings>,
        h: Handover,
        now: Instant,
        out: &mut Vec<Directive>,
    ) -> Self {
        let mut b = RulesBrain::new(s);
        b.read_info(&h.info);
        b.started = Some(h.since);
        b.f.name = h.name.or_else(|| h.ctx.name.clone());
        b.f.email = h.email;
        b.ctx = Some(h.ctx);
        b.seq = h.seq;
        b.outcome = h.outcome;
        b.tier = h.tier;
        b.stage = Stage::Resume;
        if let Some(o) = h.booked {
            b.chosen = Some(o.clone());
            b.booked = Some(o);
            b.outcome = Some("booked");
            b.tier = Some("A");
            b.stage = Stage::Closing;
        }
        let Some((last, earlier)) = h.turns.split_last() else {
            b.stage = if b.stage == Stage::Resume {
                Stage::Open
            } else {
                b.stage
            };
            return b;
        };
        for t in earlier {
            b.absorb(t, now);
        }
        b.on_caller(last, now, out);
        b
    }

    /// Learn what an earlier turn said, deciding nothing.
    fn absorb(&mut self, raw: &str, now: Instant) {
        let (text, _) = extract::redact(raw);
        if !contentless(&text) {
            self.heard.push(trim_to(&text, 200));
            if self.heard.len() > 3 {
                self.heard.remove(0);
            }
        }
        self.learn(&text);
        if self.intent.is_none() {
            self.intent = extract::intent(&text);
        }
        let today = self
            .wall_now(now)
            .with_timezone(&self.caller_tz())
            .date_naive();
        let pref = when::preference(&text, today);
        if !pref.is_empty() {
            self.f.pref = pref;
        }
    }
}

/// Day-of-week helper for tests and offers.
pub fn weekday_of(t: DateTime<Utc>, tz: Tz) -> chrono::Weekday {
    t.with_timezone(&tz).weekday()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yes_and_no() {
        assert_eq!(affirm("yes please"), Some(true));
        assert_eq!(affirm("that's perfect"), Some(true));
        assert_eq!(affirm("actually no, I've changed my mind"), Some(false));
        assert_eq!(affirm("no problem"), Some(true));
        assert_eq!(affirm("hmm"), None);
    }

    #[test]
    fn names_said_alone() {
        assert_eq!(bare_name("Jane Doe").as_deref(), Some("Jane Doe"));
        assert_eq!(
            bare_name("yeah it's Tom, Tom Hughes").as_deref(),
            Some("Tom Hughes")
        );
        assert_eq!(
            bare_name("Priya Natarajan, n a t a r a j a n").as_deref(),
            Some("Priya Natarajan")
        );
    }

    #[test]
    fn referrers() {
        assert_eq!(
            referrer("I was referred by Sarah at Acme").as_deref(),
            Some("Sarah at Acme")
        );
        assert_eq!(
            referrer("my colleague Tom recommended you").as_deref(),
            Some("Tom")
        );
    }
}
