//! The routing plan: what happens to a call next, as a pure function of the
//! config, the location toggles, `now`, the caller and the caller's recent
//! calls.
//!
//! The stages follow seed 000 ("How Inbound Calls Work"):
//!
//! 1. **Stage 1** — the number's IVR menu, else Voice AI in `primary` mode
//!    inside its `ai_hours`, takes the call; Stage 2 never runs.
//! 2. **Stage 2** — one simultaneous ring: the team member's ticked devices,
//!    **one** forwarding phone (team member's phone → the number's external
//!    phone → the location's business phone) and up to six ring-more members
//!    on their preferred devices. With `location.ring_assigned_user`, the
//!    number's assigned user is rung first, on their own.
//! 3. **Stage 3** — Voice AI in `backup` mode (inside `ai_hours`), else the
//!    number's backup: voicemail or Voice AI. Backup always runs.
//!
//! Protection ([`Guard`]) runs first: blocked callers and callers whose caller
//! ID failed STIR/SHAKEN go where `[location]` says; a call from one of the
//! business's own numbers or users never reaches the AI or voicemail (so two
//! receptionists, or a forward to our own number, cannot loop); a caller
//! ringing again and again inside `repeat_window_s` is not answered by the AI.
//!
//! Nothing here reads the clock, the store or the network: the webhooks in
//! `crate::http::twilio` look those up and pass them in.

use chrono::{DateTime, Datelike, Timelike, Utc, Weekday};
use chrono_tz::Tz;

use crate::config::routing::{
    AiHours, AiMode, AlertOn, Backup, CallerId, Device, NumberConfig, OncallConfig,
    PreferredDevice, Route, ScreenAction, Sections, TransferFailed, UserConfig,
};
use crate::config::Config;

/// The system default voicemail greeting (seed 000).
pub const DEFAULT_GREETING: &str =
    "We are unable to take your call right now. Please leave a message after the beep.";
/// Said when a call can go nowhere (an internal call nobody answered).
pub const NOBODY_AVAILABLE: &str = "Sorry, nobody is available to take your call. Goodbye.";
/// Said to the answering human when `call_connect` is on.
pub const PRESS_ANY_KEY: &str = "Press any key to connect.";
/// Seconds the answering human has to press a key (`call_connect`, transfers).
pub const PRESS_KEY_WAIT_S: u32 = 6;
/// The opening of the whisper of a warm transfer from the AI.
pub const TRANSFER_WHISPER: &str = "Transfer from the AI receptionist:";

/// The location-wide toggles (Other Settings → Inbound Calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Toggles {
    /// The business phone may fill the forwarding slot.
    pub forward_to_business_phone: bool,
    /// Ring the called number's assigned user first.
    pub ring_assigned_user: bool,
}

impl Toggles {
    /// The toggles as `[location]` sets them.
    pub fn of(config: &Config) -> Toggles {
        Toggles {
            forward_to_business_phone: config.location.forward_to_business_phone,
            ring_assigned_user: config.location.ring_assigned_user,
        }
    }
}

/// Who is calling whom, as the carrier's webhook says.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// `From` (E.164 for phone calls; anything else for clients and SIP).
    pub from: &'a str,
    /// `To`: the called number.
    pub to: &'a str,
    /// Twilio's `StirVerstat`, when the carrier sent one.
    pub stir_verstat: Option<&'a str>,
}

/// Why protection changed the routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Nothing special.
    Clear,
    /// On `location.block_list`.
    Blocked(ScreenAction),
    /// `StirVerstat` says the caller ID failed validation.
    FailedAttestation(ScreenAction),
    /// One of the business's own numbers or users: no AI, no voicemail.
    Internal,
    /// Too many calls from this caller inside `location.repeat_window_s`: no AI.
    Repeat,
}

impl Guard {
    /// Whether the AI may answer.
    pub fn allows_ai(self) -> bool {
        matches!(
            self,
            Guard::Clear | Guard::FailedAttestation(ScreenAction::Allow)
        )
    }

    /// Whether the caller may be sent to voicemail.
    pub fn allows_voicemail(self) -> bool {
        self != Guard::Internal
    }

    /// A short label for the activity log.
    pub fn label(self) -> &'static str {
        match self {
            Guard::Clear => "clear",
            Guard::Blocked(_) => "blocked",
            Guard::FailedAttestation(_) => "failed_attestation",
            Guard::Internal => "internal_caller",
            Guard::Repeat => "repeat_caller",
        }
    }
}

/// Something said or played.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Speech {
    /// Text for `<Say>`.
    Say(String),
    /// An audio URL for `<Play>`.
    Play(String),
}

impl Speech {
    /// A greeting or prompt as configured: an `http(s)` URL is played, anything else said.
    pub fn of(s: &str) -> Speech {
        let s = s.trim();
        if s.starts_with("https://") || s.starts_with("http://") {
            Speech::Play(s.to_string())
        } else {
            Speech::Say(s.to_string())
        }
    }
}

/// One device in a ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A Twilio Client identity (web and mobile apps).
    Client(String),
    /// A SIP URI (deskphone).
    Sip(String),
    /// A phone number (E.164).
    Phone {
        /// The number.
        e164: String,
        /// True for a forwarded phone (answering-machine detection applies).
        forwarded: bool,
    },
}

/// Which ring a `<Dial>` is, so its outcome leads to the right next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leg {
    /// The number's assigned user, before the standard ring.
    Assigned,
    /// The number's Stage 2 ring (or an IVR branch to people): then Stage 3.
    Number,
    /// The AI's warm transfer: then `transfer_failed`.
    Transfer,
    /// Step `step` of on-call group `group`: then the next step.
    Oncall {
        /// `[[oncall]]` id.
        group: String,
        /// Index of the step (a phone, or all phones when simultaneous).
        step: u32,
    },
}

impl Leg {
    /// Query parameters that identify the leg in callback URLs.
    pub fn query(&self) -> Vec<(&'static str, String)> {
        match self {
            Leg::Assigned => vec![("leg", "assigned".into())],
            Leg::Number => vec![("leg", "number".into())],
            Leg::Transfer => vec![("leg", "transfer".into())],
            Leg::Oncall { group, step } => vec![
                ("leg", "oncall".into()),
                ("group", group.clone()),
                ("step", step.to_string()),
            ],
        }
    }

    /// The leg named by callback query parameters (`None`: absent or unknown).
    pub fn from_query(get: impl Fn(&str) -> Option<String>) -> Option<Leg> {
        match get("leg")?.as_str() {
            "assigned" => Some(Leg::Assigned),
            "number" => Some(Leg::Number),
            "transfer" => Some(Leg::Transfer),
            "oncall" => Some(Leg::Oncall {
                group: get("group")?,
                step: get("step")?.parse().ok()?,
            }),
            _ => None,
        }
    }
}

/// A `<Dial>`: every target rings at once; first to answer wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    /// Which ring this is.
    pub leg: Leg,
    /// What rings.
    pub targets: Vec<Target>,
    /// Seconds before giving up.
    pub timeout_s: u32,
    /// Caller ID shown to the ringing human (`None`: the carrier's default).
    pub caller_id: Option<String>,
    /// Record the bridged call.
    pub record: bool,
    /// The answering leg is screened (whisper and/or press a key).
    pub screened: bool,
    /// Answering-machine detection on forwarded phone legs.
    pub machine_detection: bool,
}

/// Voice AI mode of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answering first.
    Primary,
    /// Answering after nobody did.
    Backup,
}

impl Mode {
    /// `primary` | `backup`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Primary => "primary",
            Mode::Backup => "backup",
        }
    }
}

/// What the call does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The AI answers over a media stream (`<Connect><Stream>`).
    Ai {
        /// Primary or backup.
        mode: Mode,
        /// True when a warm transfer just failed (the AI offers a booking or a callback).
        transfer_failed: bool,
    },
    /// A simultaneous ring.
    Ring(Ring),
    /// An IVR menu: prompt, gather one digit.
    Menu {
        /// `[[ivr]]` id.
        id: String,
        /// The prompt.
        prompt: Speech,
        /// Seconds to wait for a key.
        timeout_s: u32,
        /// 0 for the first hearing, then 1, 2, … per repeat.
        attempt: u32,
    },
    /// Greeting, then a recorded message.
    Voicemail {
        /// The greeting.
        greeting: Speech,
        /// On-call group whose alert the message raises.
        alert_group: Option<String>,
    },
    /// Refuse the call before answering.
    Reject,
    /// End the call.
    Hangup,
}

/// A routing decision: what to say first, then the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Said (or played) to the caller before the step (recording warning,
    /// on-call waiting message, "not an option").
    pub say_first: Vec<Speech>,
    /// The step.
    pub step: Step,
    /// The called number when it is configured (`numbers[].e164`).
    pub number: Option<String>,
    /// On-call group whose alert must be raised now (`alert_on = "arrival"`).
    pub alert_now: Option<String>,
    /// Why, for the activity log (no personal data).
    pub why: String,
}

/// What the answering human hears before being bridged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screening {
    /// Said first.
    pub say: Vec<String>,
    /// Keys that accept (`None`: no key needed, the whisper ends and bridges).
    pub press: Option<Press>,
}

/// Which key accepts a screened leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Press {
    /// Any key (call connect, transfers).
    AnyKey {
        /// Seconds to wait.
        wait_s: u32,
    },
    /// Only `1` (on-call, seed 002).
    One {
        /// Seconds to wait.
        wait_s: u32,
    },
}

impl Press {
    /// Whether `digits` accepts.
    pub fn accepts(self, digits: &str) -> bool {
        match self {
            Press::AnyKey { .. } => !digits.is_empty(),
            Press::One { .. } => digits == "1",
        }
    }

    /// Seconds to wait for the key.
    pub fn wait_s(self) -> u32 {
        match self {
            Press::AnyKey { wait_s } | Press::One { wait_s } => wait_s,
        }
    }
}

/// Values for the whisper template.
#[derive(Debug, Clone, Default)]
pub struct WhisperVars {
    /// `{{contact.name}}`
    pub contact_name: Option<String>,
    /// `{{lead.source}}`
    pub lead_source: Option<String>,
    /// `{{lead.summary}}`
    pub lead_summary: Option<String>,
}

/// Fill `{{contact.name}}`, `{{number.name}}`, `{{lead.source}}`,
/// `{{lead.summary}}`; an unknown or empty variable becomes nothing (or
/// "a caller" for the name).
pub fn fill_whisper(template: &str, number_name: &str, v: &WhisperVars) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else {
            out.push_str(&rest[i..]);
            rest = "";
            break;
        };
        let value = match after[..j].trim() {
            "contact.name" => v
                .contact_name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "a caller".into()),
            "number.name" => number_name.to_string(),
            "lead.source" => v.lead_source.clone().unwrap_or_default(),
            "lead.summary" => v.lead_summary.clone().unwrap_or_default(),
            _ => String::new(),
        };
        out.push_str(&value);
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn user<'c>(s: Sections<'c>, id: &str) -> Option<&'c UserConfig> {
    s.users.iter().find(|u| u.id == id)
}

fn is_own_number(s: Sections<'_>, e164: &str) -> bool {
    s.numbers.iter().any(|n| n.e164 == e164)
}

fn push(targets: &mut Vec<Target>, t: Target) {
    if !targets.contains(&t) {
        targets.push(t);
    }
}

fn preferred(targets: &mut Vec<Target>, u: &UserConfig) {
    for d in &u.preferred_devices {
        match d {
            PreferredDevice::Client => push(targets, Target::Client(u.client_identity().into())),
            PreferredDevice::Sip if !u.sip.is_empty() => push(targets, Target::Sip(u.sip.clone())),
            PreferredDevice::Sip => {}
        }
    }
}

/// The Stage 2 ring of number `n`: the team member's ticked devices, one
/// forwarding phone by priority, and the ring-more members' preferred
/// devices. A forwarding phone that is one of our own `[[numbers]]` is
/// skipped (it would route back here).
pub fn stage2_targets(s: Sections<'_>, t: Toggles, n: &NumberConfig) -> Vec<Target> {
    let mut out = Vec::new();
    let tm = user(s, &n.team_member);
    let ticked = |d: Device| n.team_member_devices.contains(&d);
    if let Some(u) = tm {
        if ticked(Device::Web) || ticked(Device::Mobile) {
            push(&mut out, Target::Client(u.client_identity().into()));
        }
        if ticked(Device::Sip) && !u.sip.is_empty() {
            push(&mut out, Target::Sip(u.sip.clone()));
        }
    }
    let own_phone = tm
        .filter(|_| ticked(Device::Phone))
        .and_then(|u| u.phones.first());
    let slot = own_phone
        .or((!n.external_phone.is_empty()).then_some(&n.external_phone))
        .or(
            (t.forward_to_business_phone && !s.location.business_phone.is_empty())
                .then_some(&s.location.business_phone),
        );
    if let Some(p) = slot.filter(|p| !is_own_number(s, p)) {
        push(
            &mut out,
            Target::Phone {
                e164: p.clone(),
                forwarded: true,
            },
        );
    }
    for id in &n.ring_more {
        if let Some(u) = user(s, id) {
            preferred(&mut out, u);
        }
    }
    out
}

/// The checks of the routing sections that need the plan itself (run by
/// `App::validate` after `Config::validate`): no Stage 2 ring may dial more
/// devices at once than the carrier rings.
pub fn validate(config: &Config) -> Result<(), crate::config_error::ConfigError> {
    let s = config.routing_sections();
    for (i, n) in config.numbers.iter().enumerate() {
        let nouns = count_ring_nouns(s, n);
        if nouns > crate::config::routing::MAX_DIAL_NOUNS {
            return Err(crate::config_error::ConfigError::invalid(
                format!("numbers[{i}].ring_more"),
                format!(
                    "the ring would dial {nouns} devices at once; Twilio rings at most {}",
                    crate::config::routing::MAX_DIAL_NOUNS
                ),
            ));
        }
    }
    Ok(())
}

/// How many devices number `n`'s Stage 2 ring dials at once (config check).
pub fn count_ring_nouns(s: Sections<'_>, n: &NumberConfig) -> usize {
    let t = Toggles {
        forward_to_business_phone: s.location.forward_to_business_phone,
        ring_assigned_user: s.location.ring_assigned_user,
    };
    stage2_targets(s, t, n).len()
}

/// A user rung on their own (assigned user, IVR `user:` branch, transfer to a
/// user): preferred devices and the personal phone.
fn user_targets(s: Sections<'_>, u: &UserConfig) -> Vec<Target> {
    let mut out = Vec::new();
    preferred(&mut out, u);
    if let Some(p) = u.phones.first().filter(|p| !is_own_number(s, p)) {
        push(
            &mut out,
            Target::Phone {
                e164: p.clone(),
                forwarded: true,
            },
        );
    }
    out
}

/// Whether the business is open at `now` (`[business.hours]`, holidays).
pub fn business_open(config: &Config, tz: Tz, now: DateTime<Utc>) -> bool {
    let local = now.with_timezone(&tz);
    let date = local.date_naive().format("%Y-%m-%d").to_string();
    if config.business.holidays.iter().any(|h| h == &date) {
        return false;
    }
    let h = &config.business.hours;
    let day = match local.weekday() {
        Weekday::Mon => &h.mon,
        Weekday::Tue => &h.tue,
        Weekday::Wed => &h.wed,
        Weekday::Thu => &h.thu,
        Weekday::Fri => &h.fri,
        Weekday::Sat => &h.sat,
        Weekday::Sun => &h.sun,
    };
    let minute = local.hour() * 60 + local.minute();
    day.iter()
        .filter_map(|r| crate::booking::parse_range(r))
        .any(|(a, b)| a <= minute && minute < b)
}

/// Whether a `<Dial>` outcome means a human took the call: `completed` (or
/// `answered`), unless Twilio says the leg was never bridged (a screened leg
/// that hung up without a key).
pub fn dial_answered(status: &str, bridged: Option<bool>) -> bool {
    matches!(status, "completed" | "answered") && bridged != Some(false)
}

/// The inputs of every routing decision for one call.
#[derive(Debug, Clone)]
pub struct Routing<'a> {
    config: &'a Config,
    toggles: Toggles,
    now: DateTime<Utc>,
    tz: Tz,
    caller: Caller<'a>,
    guard: Guard,
    number: Option<&'a NumberConfig>,
}

impl<'a> Routing<'a> {
    /// Decisions for a call from `caller`, whose earlier calls started at
    /// `earlier_calls` (any order; this call excluded).
    pub fn new(
        config: &'a Config,
        toggles: Toggles,
        now: DateTime<Utc>,
        tz: Tz,
        caller: Caller<'a>,
        earlier_calls: &[DateTime<Utc>],
    ) -> Routing<'a> {
        let number = config.numbers.iter().find(|n| n.e164 == caller.to);
        let guard = guard(config, now, &caller, earlier_calls);
        Routing {
            config,
            toggles,
            now,
            tz,
            caller,
            guard,
            number,
        }
    }

    /// The protection verdict.
    pub fn guard(&self) -> Guard {
        self.guard
    }

    /// The called number's config, when it is one of `[[numbers]]`.
    pub fn number(&self) -> Option<&'a NumberConfig> {
        self.number
    }

    fn s(&self) -> Sections<'a> {
        self.config.routing_sections()
    }

    fn plan(&self, step: Step, why: impl Into<String>) -> Plan {
        Plan {
            say_first: Vec::new(),
            step,
            number: self.number.map(|n| n.e164.clone()),
            alert_now: None,
            why: why.into(),
        }
    }

    /// Whether the number's AI may answer now (mode, `ai_hours`, protection).
    fn ai_on_duty(&self, n: &NumberConfig) -> bool {
        let in_hours = match n.ai_hours {
            AiHours::Always => true,
            AiHours::Business => business_open(self.config, self.tz, self.now),
            AiHours::AfterHours => !business_open(self.config, self.tz, self.now),
        };
        in_hours && self.guard.allows_ai()
    }

    /// The incoming-call webhook: protection, then Stage 1, 2 or 3.
    pub fn inbound(&self) -> Plan {
        match self.guard {
            Guard::Blocked(a) | Guard::FailedAttestation(a) if a != ScreenAction::Allow => {
                let why = format!("screened: {}", self.guard.label());
                return match a {
                    ScreenAction::Reject => self.plan(Step::Reject, why),
                    _ => self.voicemail(why, None),
                };
            }
            _ => {}
        }
        let Some(n) = self.number else {
            // A number Twilio sends us but the config does not list: the demo
            // receptionist answers.
            return if self.guard.allows_ai() {
                self.plan(
                    Step::Ai {
                        mode: Mode::Primary,
                        transfer_failed: false,
                    },
                    "unconfigured number: AI answers",
                )
            } else {
                self.voicemail(format!("unconfigured number, {}", self.guard.label()), None)
            };
        };
        let mut plan = self.stage1_or_ring(n);
        if n.record && !n.record_warning.trim().is_empty() {
            plan.say_first.insert(0, Speech::of(&n.record_warning));
        }
        plan
    }

    fn stage1_or_ring(&self, n: &NumberConfig) -> Plan {
        if !n.ivr.is_empty() {
            return self.menu(&n.ivr, 0, "stage 1: IVR");
        }
        // Outside ai_hours (or protected) a primary AI behaves as off.
        if n.ai_mode == AiMode::Primary && self.ai_on_duty(n) {
            return self.plan(
                Step::Ai {
                    mode: Mode::Primary,
                    transfer_failed: false,
                },
                "stage 1: AI primary",
            );
        }
        if self.toggles.ring_assigned_user
            && !n.assigned_user.is_empty()
            && n.assigned_user != n.team_member
        {
            if let Some(u) = user(self.s(), &n.assigned_user) {
                let targets = user_targets(self.s(), u);
                if !targets.is_empty() {
                    return self.ring(
                        Leg::Assigned,
                        targets,
                        n,
                        false,
                        "stage 2: assigned user first",
                    );
                }
            }
        }
        self.stage2(n)
    }

    fn stage2(&self, n: &NumberConfig) -> Plan {
        let targets = stage2_targets(self.s(), self.toggles, n);
        if targets.is_empty() {
            let mut p = self.stage3(n);
            p.why = format!("stage 2: nothing to ring; {}", p.why);
            return p;
        }
        self.ring(Leg::Number, targets, n, false, "stage 2: simultaneous ring")
    }

    fn ring(
        &self,
        leg: Leg,
        targets: Vec<Target>,
        n: &NumberConfig,
        force_screen: bool,
        why: &str,
    ) -> Plan {
        let screened = force_screen || n.call_connect || !n.whisper.trim().is_empty();
        self.plan(
            Step::Ring(Ring {
                leg,
                targets,
                timeout_s: n.timeout_s,
                caller_id: self.caller_id(Some(n)),
                record: n.record,
                screened,
                machine_detection: n.answering_machine_detection,
            }),
            why,
        )
    }

    fn caller_id(&self, n: Option<&NumberConfig>) -> Option<String> {
        let called = n.map(|n| n.caller_id == CallerId::Called).unwrap_or(false);
        let id = if called {
            self.caller.to
        } else {
            self.caller.from
        };
        crate::config::routing::is_e164(id).then(|| id.to_string())
    }

    /// Stage 3: AI backup inside its hours, else the number's backup.
    fn stage3(&self, n: &NumberConfig) -> Plan {
        if n.ai_mode == AiMode::Backup && self.ai_on_duty(n) {
            return self.plan(
                Step::Ai {
                    mode: Mode::Backup,
                    transfer_failed: false,
                },
                "stage 3: AI backup",
            );
        }
        match n.backup {
            Backup::VoiceAi if self.guard.allows_ai() => self.plan(
                Step::Ai {
                    mode: Mode::Backup,
                    transfer_failed: false,
                },
                "stage 3: backup voice AI",
            ),
            Backup::VoiceAi => self.voicemail(
                format!("stage 3: backup voice AI refused ({})", self.guard.label()),
                None,
            ),
            Backup::Voicemail => self.voicemail("stage 3: backup voicemail".into(), None),
        }
    }

    /// Voicemail with the greeting chain (team member → location → default),
    /// or a polite hang-up for an internal caller.
    fn voicemail(&self, why: String, alert_group: Option<String>) -> Plan {
        if !self.guard.allows_voicemail() {
            let mut p = self.plan(
                Step::Hangup,
                format!("{why}; no voicemail ({})", self.guard.label()),
            );
            p.say_first.push(Speech::Say(NOBODY_AVAILABLE.into()));
            return p;
        }
        let s = self.s();
        let own = self
            .number
            .and_then(|n| user(s, &n.team_member).or_else(|| user(s, &n.assigned_user)))
            .map(|u| u.voicemail_greeting.trim())
            .filter(|g| !g.is_empty());
        let loc = Some(s.location.voicemail_greeting.trim()).filter(|g| !g.is_empty());
        let greeting = Speech::of(own.or(loc).unwrap_or(DEFAULT_GREETING));
        self.plan(
            Step::Voicemail {
                greeting,
                alert_group,
            },
            why,
        )
    }

    fn menu(&self, id: &str, attempt: u32, why: &str) -> Plan {
        match self.config.ivr.iter().find(|m| m.id == id) {
            Some(m) => self.plan(
                Step::Menu {
                    id: m.id.clone(),
                    prompt: Speech::of(&m.prompt),
                    timeout_s: m.timeout_s,
                    attempt,
                },
                why,
            ),
            // Validation makes every menu reference resolve; a stale URL after
            // a config change lands here.
            None => self.voicemail(format!("menu `{id}` is not configured"), None),
        }
    }

    /// A key (or none: `digits` empty) pressed at attempt `attempt` of menu `id`.
    pub fn menu_input(&self, id: &str, attempt: u32, digits: &str) -> Plan {
        let Some(m) = self.config.ivr.iter().find(|m| m.id == id) else {
            return self.voicemail(format!("menu `{id}` is not configured"), None);
        };
        let digits = digits.trim();
        if let Some((key, route)) = digits
            .get(..1)
            .and_then(|d| m.options.get(d).map(|r| (d, r)))
        {
            return self.route(route, &format!("menu `{id}`: key {key}"));
        }
        let invalid = !digits.is_empty();
        if attempt < m.retries {
            let mut p = self.menu(
                id,
                attempt + 1,
                &format!(
                    "menu `{id}`: {} (repeat {})",
                    if invalid { "invalid key" } else { "no key" },
                    attempt + 1
                ),
            );
            if invalid && !m.invalid_message.trim().is_empty() {
                p.say_first.push(Speech::of(&m.invalid_message));
            }
            return p;
        }
        self.route(
            &m.fallback,
            &format!("menu `{id}`: fallback after {} tries", attempt + 1),
        )
    }

    /// Follow an IVR route.
    fn route(&self, route: &Route, why: &str) -> Plan {
        let s = self.s();
        let n = self.number;
        let mut p = match (route, n) {
            (Route::Ring, Some(n)) => self.stage2(n),
            (Route::Ring, None) => self.voicemail("no number to ring".into(), None),
            (Route::Ai, _) if self.guard.allows_ai() => self.plan(
                Step::Ai {
                    mode: Mode::Primary,
                    transfer_failed: false,
                },
                "AI",
            ),
            (Route::Ai, Some(n)) => self.stage3(n),
            (Route::Ai, None) => {
                self.voicemail(format!("AI refused ({})", self.guard.label()), None)
            }
            (Route::Voicemail, _) => self.voicemail("voicemail".into(), None),
            (Route::User(id), _) => match (user(s, id).map(|u| user_targets(s, u)), n) {
                (Some(t), Some(n)) if !t.is_empty() => self.ring(Leg::Number, t, n, false, "user"),
                (Some(t), None) if !t.is_empty() => self.default_ring(Leg::Number, t, "user"),
                (_, Some(n)) => self.stage3(n),
                (_, None) => self.voicemail(format!("user `{id}` has nothing to ring"), None),
            },
            (Route::Number(e), _) => {
                let t = vec![Target::Phone {
                    e164: e.clone(),
                    forwarded: true,
                }];
                match n {
                    Some(n) => self.ring(Leg::Number, t, n, false, "number"),
                    None => self.default_ring(Leg::Number, t, "number"),
                }
            }
            (Route::Menu(id), _) => self.menu(id, 0, "menu"),
            (Route::Oncall(g), _) => self.oncall(g, 0),
        };
        p.why = format!("{why} → {}", p.why);
        p
    }

    /// A ring with default settings, for a number that is not configured.
    fn default_ring(&self, leg: Leg, targets: Vec<Target>, why: &str) -> Plan {
        self.plan(
            Step::Ring(Ring {
                leg,
                targets,
                timeout_s: 20,
                caller_id: self.caller_id(None),
                record: false,
                screened: false,
                machine_detection: false,
            }),
            why,
        )
    }

    fn group(&self, id: &str) -> Option<&'a OncallConfig> {
        self.config.oncall.iter().find(|g| g.id == id)
    }

    /// The phones of step `step` of an on-call rotation: one phone at a time,
    /// members in order, each member's phones in turn; or all at once.
    pub fn oncall_steps(&self, g: &OncallConfig) -> Vec<Vec<String>> {
        let s = self.s();
        let phones = g
            .members
            .iter()
            .filter_map(|m| user(s, m))
            .flat_map(|u| u.phones.iter().cloned())
            .filter(|p| !is_own_number(s, p));
        if g.simultaneous {
            let all: Vec<String> = phones.collect();
            if all.is_empty() {
                Vec::new()
            } else {
                vec![all]
            }
        } else {
            phones.map(|p| vec![p]).collect()
        }
    }

    /// Step `step` of on-call group `id`; past the last phone, voicemail
    /// (whose message raises the alert).
    pub fn oncall(&self, id: &str, step: u32) -> Plan {
        let Some(g) = self.group(id) else {
            return self.voicemail(format!("on-call `{id}` is not configured"), None);
        };
        let steps = self.oncall_steps(g);
        let Some(phones) = steps.get(step as usize) else {
            let mut p = self.voicemail(
                format!(
                    "on-call `{id}`: nobody accepted after {} tries",
                    steps.len()
                ),
                (g.alert_on == AlertOn::Voicemail).then(|| g.id.clone()),
            );
            if !g.no_response_message.trim().is_empty() {
                p.say_first.insert(0, Speech::of(&g.no_response_message));
            }
            return p;
        };
        let mut p = self.plan(
            Step::Ring(Ring {
                leg: Leg::Oncall {
                    group: g.id.clone(),
                    step,
                },
                targets: phones
                    .iter()
                    .map(|p| Target::Phone {
                        e164: p.clone(),
                        forwarded: false,
                    })
                    .collect(),
                timeout_s: g.ring_timeout_s,
                caller_id: self.caller_id(self.number),
                record: self.number.map(|n| n.record).unwrap_or(false),
                screened: true,
                machine_detection: false,
            }),
            format!("on-call `{id}`: step {} of {}", step + 1, steps.len()),
        );
        if step == 0 {
            if !g.waiting_message.trim().is_empty() {
                p.say_first.push(Speech::of(&g.waiting_message));
            }
            if g.alert_on == AlertOn::Arrival {
                p.alert_now = Some(g.id.clone());
            }
        }
        p
    }

    /// The `<Dial>` of `leg` ended with `DialCallStatus` `status` (`bridged`:
    /// Twilio's `DialBridged`, when sent). Answered → hang up; otherwise the
    /// next step of that leg.
    pub fn after_dial(&self, leg: &Leg, status: &str, bridged: Option<bool>) -> Plan {
        if dial_answered(status, bridged) {
            return self.plan(Step::Hangup, format!("answered ({status})"));
        }
        let mut p = match (leg, self.number) {
            (Leg::Assigned, Some(n)) => self.stage2(n),
            (Leg::Number, Some(n)) => self.stage3(n),
            (Leg::Assigned | Leg::Number, None) => self.voicemail("backup voicemail".into(), None),
            (Leg::Transfer, _) => self.transfer_failed(),
            (Leg::Oncall { group, step }, _) => self.oncall(group, step.saturating_add(1)),
        };
        p.why = format!("dial {status} → {}", p.why);
        p
    }

    /// The AI closed its stream asking for a hand-off to `target` (a route
    /// such as `ring`, `user:ID`, `number:E164`, `oncall:ID`, `voicemail`,
    /// `hangup`; empty: the number's `transfer_to`).
    pub fn transfer(&self, target: &str) -> Plan {
        let target = target.trim();
        if target == "hangup" {
            return self.plan(Step::Hangup, "AI ended the call");
        }
        let fallback = self
            .number
            .map(|n| n.transfer_to.clone())
            .unwrap_or(Route::Ring);
        let route = match target.parse::<Route>() {
            Ok(Route::Ai | Route::Menu(_)) | Err(_) => fallback,
            Ok(r) => r,
        };
        let s = self.s();
        let targets = match &route {
            Route::Voicemail => return self.voicemail("AI hand-off to voicemail".into(), None),
            Route::Oncall(g) => return self.oncall(g, 0),
            Route::Ring => self
                .number
                .map(|n| stage2_targets(s, self.toggles, n))
                .unwrap_or_default(),
            Route::User(id) => user(s, id).map(|u| user_targets(s, u)).unwrap_or_default(),
            Route::Number(e) if crate::config::routing::is_e164(e) && !is_own_number(s, e) => {
                vec![Target::Phone {
                    e164: e.clone(),
                    forwarded: true,
                }]
            }
            _ => Vec::new(),
        };
        if targets.is_empty() {
            let mut p = self.transfer_failed();
            p.why = format!("transfer: nobody to ring → {}", p.why);
            return p;
        }
        let timeout_s = self.number.map(|n| n.timeout_s).unwrap_or(20);
        self.plan(
            Step::Ring(Ring {
                leg: Leg::Transfer,
                targets,
                timeout_s,
                caller_id: self.caller_id(self.number),
                record: self.number.map(|n| n.record).unwrap_or(false),
                screened: true,
                machine_detection: self
                    .number
                    .map(|n| n.answering_machine_detection)
                    .unwrap_or(false),
            }),
            "warm transfer ring",
        )
    }

    /// Nobody accepted the warm transfer: back to the AI (which is told), or voicemail.
    pub fn transfer_failed(&self) -> Plan {
        let policy = self
            .number
            .map(|n| n.transfer_failed)
            .unwrap_or(TransferFailed::Ai);
        let mode = match self.number.map(|n| n.ai_mode) {
            Some(AiMode::Primary) | None => Mode::Primary,
            Some(_) => Mode::Backup,
        };
        match policy {
            TransferFailed::Ai if self.guard.allows_ai() => self.plan(
                Step::Ai {
                    mode,
                    transfer_failed: true,
                },
                "transfer failed: back to the AI",
            ),
            _ => self.voicemail("transfer failed: voicemail".into(), None),
        }
    }

    /// What the answering human of `leg` hears (`summary`: the AI's hand-off summary).
    pub fn screening(&self, leg: &Leg, vars: &WhisperVars) -> Screening {
        match leg {
            Leg::Transfer => Screening {
                say: vec![
                    format!(
                        "{TRANSFER_WHISPER} {}",
                        vars.lead_summary.as_deref().unwrap_or("a caller").trim()
                    ),
                    PRESS_ANY_KEY.into(),
                ],
                press: Some(Press::AnyKey {
                    wait_s: PRESS_KEY_WAIT_S,
                }),
            },
            Leg::Oncall { group, .. } => {
                let g = self.group(group);
                Screening {
                    say: g
                        .map(|g| g.screening_message.trim().to_string())
                        .filter(|m| !m.is_empty())
                        .into_iter()
                        .collect(),
                    press: Some(Press::One {
                        wait_s: g.map(|g| g.accept_wait_s).unwrap_or(10),
                    }),
                }
            }
            Leg::Assigned | Leg::Number => {
                let Some(n) = self.number else {
                    return Screening {
                        say: Vec::new(),
                        press: None,
                    };
                };
                let mut say = Vec::new();
                if !n.whisper.trim().is_empty() {
                    say.push(fill_whisper(&n.whisper, &n.name, vars));
                }
                let press = n.call_connect.then_some(Press::AnyKey {
                    wait_s: PRESS_KEY_WAIT_S,
                });
                if press.is_some() {
                    say.push(PRESS_ANY_KEY.into());
                }
                Screening { say, press }
            }
        }
    }
}

fn guard(config: &Config, now: DateTime<Utc>, c: &Caller<'_>, earlier: &[DateTime<Utc>]) -> Guard {
    let loc = &config.location;
    if loc.block_list.iter().any(|b| b == c.from) {
        return Guard::Blocked(loc.blocked_action);
    }
    if let Some(v) = c.stir_verstat {
        if v.contains("Failed") && loc.failed_attestation_action != ScreenAction::Allow {
            return Guard::FailedAttestation(loc.failed_attestation_action);
        }
    }
    let own = config.numbers.iter().any(|n| n.e164 == c.from)
        || (!loc.business_phone.is_empty() && loc.business_phone == c.from)
        || config
            .users
            .iter()
            .any(|u| u.phones.iter().any(|p| p == c.from));
    if own {
        return Guard::Internal;
    }
    if loc.repeat_limit > 0 {
        let since = now - chrono::Duration::seconds(i64::from(loc.repeat_window_s));
        let recent = earlier
            .iter()
            .filter(|t| **t >= since && **t <= now)
            .count();
        if recent >= loc.repeat_limit as usize {
            return Guard::Repeat;
        }
    }
    Guard::Clear
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
