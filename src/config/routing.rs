//! Inbound call routing config: `[location]`, `[[users]]`, `[[numbers]]`,
//! `[[ivr]]`, `[[oncall]]` and `[twilio]` (key names from DESIGN.md §5).
//!
//! This module owns the shape, defaults and checks of those sections; the
//! decisions made from them live in [`crate::routing`]. Every check names the
//! key it is about (`numbers[0].ring_more`), and after [`validate`] succeeds
//! every reference (user ids, menu ids, on-call ids) resolves and every phone
//! number is E.164, so the routing plan never has to fail on config.

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;

use serde::Deserialize;

use crate::config_error::ConfigError;

/// Most ring-more members a number may list (seed 000: "Maximum of 6").
pub const MAX_RING_MORE: usize = 6;
/// Most `<Client>`/`<Sip>`/`<Number>` nouns Twilio rings at once in one `<Dial>`.
pub const MAX_DIAL_NOUNS: usize = 10;

/// `[location]`: the location-wide routing toggles and caller protection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocationConfig {
    /// The business's main phone (E.164); the last-resort forwarding number
    /// (default: none).
    pub business_phone: String,
    /// Use `business_phone` as the forwarding number when neither the team
    /// member's phone nor the number's external phone fills the slot (default true).
    pub forward_to_business_phone: bool,
    /// Ring the called number's `assigned_user` first, before the number's
    /// ring; never overrides IVR or primary AI (default false).
    pub ring_assigned_user: bool,
    /// Voicemail greeting: text to say, or an `http(s)` audio URL to play;
    /// empty = the default sentence (default empty).
    pub voicemail_greeting: String,
    /// Callers (E.164) that never reach a human or the AI (default none).
    pub block_list: Vec<String>,
    /// What a blocked caller gets: `reject` (refused before answer) or
    /// `voicemail` (default `reject`).
    pub blocked_action: ScreenAction,
    /// What a caller whose Twilio `StirVerstat` says the caller ID failed
    /// STIR/SHAKEN validation gets: `allow`, `voicemail` or `reject`
    /// (default `allow`).
    pub failed_attestation_action: ScreenAction,
    /// Window for counting repeated calls from one caller, in seconds (default 120).
    pub repeat_window_s: u32,
    /// A caller with this many earlier calls inside `repeat_window_s` is not
    /// answered by the AI (humans, then voicemail), so a dialler or a
    /// forwarding loop cannot keep the AI busy (default 3; 0 = off).
    pub repeat_limit: u32,
}

impl Default for LocationConfig {
    fn default() -> Self {
        LocationConfig {
            business_phone: String::new(),
            forward_to_business_phone: true,
            ring_assigned_user: false,
            voicemail_greeting: String::new(),
            block_list: Vec::new(),
            blocked_action: ScreenAction::Reject,
            failed_attestation_action: ScreenAction::Allow,
            repeat_window_s: 120,
            repeat_limit: 3,
        }
    }
}

/// What screening does with a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScreenAction {
    /// Route as usual.
    Allow,
    /// Straight to voicemail.
    Voicemail,
    /// `<Reject/>`: refused before answer.
    Reject,
}

/// How a ring-more member (or an IVR `user:` branch) rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreferredDevice {
    /// The web and mobile apps (`<Client>`).
    Client,
    /// The VoIP deskphone (`<Sip>`).
    Sip,
}

/// `[[users]]`: a team member.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UserConfig {
    /// Id referenced by numbers, IVR and on-call (1–64 of `A-Z a-z 0-9 - _`; required).
    pub id: String,
    /// Display name (default: the id).
    pub name: String,
    /// Phones (E.164); the first is the personal phone (the "Phone Number"
    /// device); all are tried in on-call rotation (default none).
    pub phones: Vec<String>,
    /// Twilio Client identity of the web and mobile apps (default: the id).
    pub client: String,
    /// SIP URI of the VoIP deskphone (`sip:…`; default none).
    pub sip: String,
    /// How this user rings as a ring-more member: `client` | `sip` (default `["client"]`).
    pub preferred_devices: Vec<PreferredDevice>,
    /// Personal voicemail greeting (text or audio URL; default: the location's).
    pub voicemail_greeting: String,
    /// Slack member id for mentions (default none).
    pub slack_id: String,
}

impl Default for UserConfig {
    fn default() -> Self {
        UserConfig {
            id: String::new(),
            name: String::new(),
            phones: Vec::new(),
            client: String::new(),
            sip: String::new(),
            preferred_devices: vec![PreferredDevice::Client],
            voicemail_greeting: String::new(),
            slack_id: String::new(),
        }
    }
}

impl UserConfig {
    /// The Twilio Client identity (the id when `client` is empty).
    pub fn client_identity(&self) -> &str {
        if self.client.is_empty() {
            &self.id
        } else {
            &self.client
        }
    }
}

/// `numbers[].ai_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AiMode {
    /// No Voice AI on this number.
    Off,
    /// The AI answers every call at once (Stage 1).
    Primary,
    /// The AI answers after the Stage 2 ring times out (Stage 3).
    Backup,
}

/// `numbers[].ai_hours`: when the AI answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AiHours {
    /// Any time.
    Always,
    /// Inside `[business.hours]`, not on `business.holidays`.
    Business,
    /// Outside business hours and on holidays.
    AfterHours,
}

/// A device ticked on the number's Team Member row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    /// Web app (`<Client>`).
    Web,
    /// Mobile app (`<Client>`).
    Mobile,
    /// The member's personal phone: fills the forwarding slot.
    Phone,
    /// VoIP deskphone (`<Sip>`).
    Sip,
}

/// `numbers[].backup`: the final fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backup {
    /// Greeting, then a recorded message.
    Voicemail,
    /// The AI answers the unanswered call.
    VoiceAi,
}

/// `numbers[].caller_id`: what the ringing human sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallerId {
    /// The caller's number.
    Caller,
    /// The called (business) number.
    Called,
}

/// `numbers[].transfer_failed`: where a caller goes when nobody accepts the
/// AI's warm transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferFailed {
    /// Back to the AI, which is told the transfer failed.
    Ai,
    /// To voicemail.
    Voicemail,
}

/// `[[numbers]]`: one phone number's call forwarding.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NumberConfig {
    /// The number (E.164; required, unique).
    pub e164: String,
    /// Name (`{{number.name}}` in the whisper; default empty).
    pub name: String,
    /// Voice AI: `off` | `primary` | `backup` (default `off`).
    pub ai_mode: AiMode,
    /// When the AI answers: `always` | `business` | `after_hours` (default `always`).
    pub ai_hours: AiHours,
    /// An `[[ivr]]` id: the menu takes Stage 1 (before a primary AI; default none).
    pub ivr: String,
    /// The user assigned to the number (for `location.ring_assigned_user`; default none).
    pub assigned_user: String,
    /// The Team Member: a user id (default none).
    pub team_member: String,
    /// The Team Member's ticked devices: `web`, `mobile`, `phone`, `sip`
    /// (default `["web", "mobile"]`).
    pub team_member_devices: Vec<Device>,
    /// Up to 6 more user ids rung at the same time on their preferred devices (default none).
    pub ring_more: Vec<String>,
    /// External forwarding phone (E.164; default none).
    pub external_phone: String,
    /// Seconds the Stage 2 ring runs (default 20, 5–600).
    pub timeout_s: u32,
    /// Final fallback: `voicemail` | `voice_ai` (default `voicemail`).
    pub backup: Backup,
    /// Said to the answering human only; `{{contact.name}}`, `{{number.name}}`,
    /// `{{lead.source}}`, `{{lead.summary}}` are filled in (default none).
    pub whisper: String,
    /// The human must press a key before being bridged (default false).
    pub call_connect: bool,
    /// Record both sides of the call (default false).
    pub record: bool,
    /// Said to the caller first when `record` is on (default none).
    pub record_warning: String,
    /// Caller ID shown to the ringing human: `caller` | `called` (default `caller`).
    pub caller_id: CallerId,
    /// Answering-machine detection on forwarded phone legs (default false).
    pub answering_machine_detection: bool,
    /// Whom the AI's warm transfer rings: a route (`ring`, `user:ID`,
    /// `number:E164`, `oncall:ID`; default `ring`: this number's Stage 2 ring).
    pub transfer_to: Route,
    /// Nobody accepted the transfer: `ai` | `voicemail` (default `ai`).
    pub transfer_failed: TransferFailed,
}

impl Default for NumberConfig {
    fn default() -> Self {
        NumberConfig {
            e164: String::new(),
            name: String::new(),
            ai_mode: AiMode::Off,
            ai_hours: AiHours::Always,
            ivr: String::new(),
            assigned_user: String::new(),
            team_member: String::new(),
            team_member_devices: vec![Device::Web, Device::Mobile],
            ring_more: Vec::new(),
            external_phone: String::new(),
            timeout_s: 20,
            backup: Backup::Voicemail,
            whisper: String::new(),
            call_connect: false,
            record: false,
            record_warning: String::new(),
            caller_id: CallerId::Caller,
            answering_machine_detection: false,
            transfer_to: Route::Ring,
            transfer_failed: TransferFailed::Ai,
        }
    }
}

/// Where an IVR key, a menu fallback or a transfer sends the call.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Route {
    /// `ring`: the called number's Stage 2 ring (then its backup).
    Ring,
    /// `ai`: the Voice AI.
    Ai,
    /// `voicemail`.
    Voicemail,
    /// `user:ID`: that user's devices and personal phone.
    User(String),
    /// `number:E164`: that phone.
    Number(String),
    /// `menu:ID`: another `[[ivr]]` menu.
    Menu(String),
    /// `oncall:ID`: an `[[oncall]]` rotation.
    Oncall(String),
}

impl FromStr for Route {
    type Err = String;
    fn from_str(s: &str) -> Result<Route, String> {
        let s = s.trim();
        let bad = || {
            format!(
                "`{s}` is not a route: ring | ai | voicemail | user:ID | number:E164 | menu:ID | oncall:ID"
            )
        };
        match s {
            "ring" => return Ok(Route::Ring),
            "ai" => return Ok(Route::Ai),
            "voicemail" => return Ok(Route::Voicemail),
            _ => {}
        }
        let (kind, arg) = s.split_once(':').ok_or_else(bad)?;
        if arg.is_empty() {
            return Err(bad());
        }
        let arg = arg.to_string();
        match kind {
            "user" => Ok(Route::User(arg)),
            "number" => Ok(Route::Number(arg)),
            "menu" => Ok(Route::Menu(arg)),
            "oncall" => Ok(Route::Oncall(arg)),
            _ => Err(bad()),
        }
    }
}

impl TryFrom<String> for Route {
    type Error = String;
    fn try_from(s: String) -> Result<Route, String> {
        s.parse()
    }
}

/// `[[ivr]]`: a phone menu (prompt, one digit, branch).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IvrConfig {
    /// Id (required, unique), referenced by `numbers[].ivr` and `menu:ID`.
    pub id: String,
    /// Said (or played, for an `http(s)` URL) while waiting for a key (required).
    pub prompt: String,
    /// Seconds to wait for a key (default 5, 1–60).
    pub timeout_s: u32,
    /// Times the menu repeats after an invalid key or no key (default 2, 0–5).
    pub retries: u32,
    /// Where the call goes after the last retry (default `voicemail`).
    pub fallback: Route,
    /// Said after an invalid key, before the menu repeats (default "Sorry, that is not an option.").
    pub invalid_message: String,
    /// Key (`0`–`9`, `*`, `#`) → route.
    pub options: BTreeMap<String, Route>,
}

impl Default for IvrConfig {
    fn default() -> Self {
        IvrConfig {
            id: String::new(),
            prompt: String::new(),
            timeout_s: 5,
            retries: 2,
            fallback: Route::Voicemail,
            invalid_message: "Sorry, that is not an option.".into(),
            options: BTreeMap::new(),
        }
    }
}

/// `oncall[].alert_on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertOn {
    /// Alert when the caller leaves a voicemail.
    Voicemail,
    /// Alert as soon as the call arrives.
    Arrival,
}

/// `[[oncall]]`: live call routing to an on-call rotation (seed 002).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OncallConfig {
    /// Id (required, unique), referenced by `oncall:ID`.
    pub id: String,
    /// User ids in rotation order (primary first; required; each needs a phone).
    pub members: Vec<String>,
    /// Ring every member's phones at once instead of one phone at a time (default false).
    pub simultaneous: bool,
    /// Seconds the answering responder has to press 1 (default 10, 1–60).
    pub accept_wait_s: u32,
    /// Seconds each leg rings (default 20, 5–600).
    pub ring_timeout_s: u32,
    /// Said to the caller while the rotation runs (default "Please hold while we connect you.").
    pub waiting_message: String,
    /// Said to the responder who answers (default "You have a call from the on-call line. Press 1 to accept.").
    pub screening_message: String,
    /// Said to the caller when nobody accepted (default "Nobody is available right now.").
    pub no_response_message: String,
    /// When the alert (a lead for the team) is created: `voicemail` | `arrival` (default `voicemail`).
    pub alert_on: AlertOn,
}

impl Default for OncallConfig {
    fn default() -> Self {
        OncallConfig {
            id: String::new(),
            members: Vec::new(),
            simultaneous: false,
            accept_wait_s: 10,
            ring_timeout_s: 20,
            waiting_message: "Please hold while we connect you.".into(),
            screening_message: "You have a call from the on-call line. Press 1 to accept.".into(),
            no_response_message: "Nobody is available right now.".into(),
            alert_on: AlertOn::Voicemail,
        }
    }
}

/// `[twilio]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwilioConfig {
    /// REST base URL (default `https://api.twilio.com`).
    pub api_base_url: String,
    /// Number SMS are sent from (E.164; default none).
    pub sms_from: String,
}

impl Default for TwilioConfig {
    fn default() -> Self {
        TwilioConfig {
            api_base_url: "https://api.twilio.com".into(),
            sms_from: String::new(),
        }
    }
}

/// The routing sections, borrowed from the whole config for [`validate`].
#[derive(Debug, Clone, Copy)]
pub struct Sections<'a> {
    /// `[location]`
    pub location: &'a LocationConfig,
    /// `[[users]]`
    pub users: &'a [UserConfig],
    /// `[[numbers]]`
    pub numbers: &'a [NumberConfig],
    /// `[[ivr]]`
    pub ivr: &'a [IvrConfig],
    /// `[[oncall]]`
    pub oncall: &'a [OncallConfig],
    /// `[twilio]`
    pub twilio: &'a TwilioConfig,
}

/// Whether `s` is a phone number in E.164 form (`+` and the digits of a
/// number that its country's plan allows).
pub fn is_e164(s: &str) -> bool {
    s.starts_with('+')
        && s[1..].chars().all(|c| c.is_ascii_digit())
        && crate::phone::normalise(s, phonenumber::country::Id::GB)
            .map(|n| n.as_str() == s)
            .unwrap_or(false)
}

fn check_e164(key: &str, s: &str) -> Result<(), ConfigError> {
    if is_e164(s) {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!(
                "`{}` is not an E.164 phone number (like +442079460000)",
                crate::pii::mask(s)
            ),
        ))
    }
}

fn check_id(key: &str, id: &str) -> Result<(), ConfigError> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ConfigError::invalid(
            key,
            "needs 1–64 letters, digits, `-` or `_`",
        ));
    }
    Ok(())
}

fn check_len(key: &str, s: &str, max: usize) -> Result<(), ConfigError> {
    if s.chars().count() > max {
        return Err(ConfigError::invalid(
            key,
            format!("longer than {max} characters"),
        ));
    }
    Ok(())
}

fn check_range(key: &str, v: u32, lo: u32, hi: u32, unit: &str) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError::invalid(
            key,
            format!("{v} is out of range; allowed {lo}–{hi}{unit}"),
        ));
    }
    Ok(())
}

impl Sections<'_> {
    fn user(&self, id: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.id == id)
    }

    fn check_route(&self, key: &str, r: &Route) -> Result<(), ConfigError> {
        match r {
            Route::Ring | Route::Ai | Route::Voicemail => Ok(()),
            // Every user can ring: the Client identity defaults to the id.
            Route::User(id) => match self.user(id) {
                None => Err(ConfigError::invalid(
                    key,
                    format!("`user:{id}` names no [[users]] id"),
                )),
                Some(_) => Ok(()),
            },
            Route::Number(n) => check_e164(key, n),
            Route::Menu(id) if self.ivr.iter().any(|m| &m.id == id) => Ok(()),
            Route::Menu(id) => Err(ConfigError::invalid(
                key,
                format!("`menu:{id}` names no [[ivr]] id"),
            )),
            Route::Oncall(id) if self.oncall.iter().any(|o| &o.id == id) => Ok(()),
            Route::Oncall(id) => Err(ConfigError::invalid(
                key,
                format!("`oncall:{id}` names no [[oncall]] id"),
            )),
        }
    }

    fn check_user_ref(&self, key: &str, id: &str) -> Result<&UserConfig, ConfigError> {
        self.user(id)
            .ok_or_else(|| ConfigError::invalid(key, format!("`{id}` names no [[users]] id")))
    }
}

/// Check the routing sections: formats, ranges and that every reference resolves.
pub fn validate(s: Sections<'_>) -> Result<(), ConfigError> {
    let loc = s.location;
    if !loc.business_phone.is_empty() {
        check_e164("location.business_phone", &loc.business_phone)?;
    }
    check_len("location.voicemail_greeting", &loc.voicemail_greeting, 1000)?;
    for (i, n) in loc.block_list.iter().enumerate() {
        check_e164(&format!("location.block_list[{i}]"), n)?;
    }
    if loc.blocked_action == ScreenAction::Allow {
        return Err(ConfigError::invalid(
            "location.blocked_action",
            "must be `reject` or `voicemail` (`allow` would not block)",
        ));
    }
    check_range(
        "location.repeat_window_s",
        loc.repeat_window_s,
        1,
        86_400,
        " s",
    )?;

    let mut ids = HashSet::new();
    for (i, u) in s.users.iter().enumerate() {
        let key = |k: &str| format!("users[{i}].{k}");
        check_id(&key("id"), &u.id)?;
        if !ids.insert(u.id.as_str()) {
            return Err(ConfigError::invalid(
                key("id"),
                format!("`{}` is used by an earlier user", u.id),
            ));
        }
        for (j, p) in u.phones.iter().enumerate() {
            check_e164(&format!("users[{i}].phones[{j}]"), p)?;
        }
        let client = u.client_identity();
        if client.len() > 256 || client.chars().any(|c| c.is_whitespace() || c == ':') {
            return Err(ConfigError::invalid(
                key("client"),
                "a Twilio Client identity: at most 256 characters, no spaces or `:`",
            ));
        }
        if !(u.sip.is_empty() || u.sip.starts_with("sip:") || u.sip.starts_with("sips:")) {
            return Err(ConfigError::invalid(
                key("sip"),
                "must be a SIP URI (sip:alex@example.sip.twilio.com)",
            ));
        }
        if u.preferred_devices.contains(&PreferredDevice::Sip) && u.sip.is_empty() {
            return Err(ConfigError::invalid(
                key("preferred_devices"),
                "`sip` is listed but the user has no `sip` URI",
            ));
        }
        check_len(&key("voicemail_greeting"), &u.voicemail_greeting, 1000)?;
    }

    let mut menus = HashSet::new();
    for (i, m) in s.ivr.iter().enumerate() {
        let key = |k: &str| format!("ivr[{i}].{k}");
        check_id(&key("id"), &m.id)?;
        if !menus.insert(m.id.as_str()) {
            return Err(ConfigError::invalid(
                key("id"),
                format!("`{}` is used by an earlier menu", m.id),
            ));
        }
        if m.prompt.trim().is_empty() {
            return Err(ConfigError::invalid(key("prompt"), "required"));
        }
        check_len(&key("prompt"), &m.prompt, 2000)?;
        check_len(&key("invalid_message"), &m.invalid_message, 1000)?;
        check_range(&key("timeout_s"), m.timeout_s, 1, 60, " s")?;
        check_range(&key("retries"), m.retries, 0, 5, "")?;
        s.check_route(&key("fallback"), &m.fallback)?;
        if m.options.is_empty() {
            return Err(ConfigError::invalid(
                key("options"),
                "needs at least one key (\"1\" = \"ring\")",
            ));
        }
        for (digit, route) in &m.options {
            let k = format!("ivr[{i}].options.{digit}");
            if digit.len() != 1
                || !digit
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
            {
                return Err(ConfigError::invalid(k, "a key is one of 0-9, * or #"));
            }
            s.check_route(&k, route)?;
        }
    }

    let mut groups = HashSet::new();
    for (i, g) in s.oncall.iter().enumerate() {
        let key = |k: &str| format!("oncall[{i}].{k}");
        check_id(&key("id"), &g.id)?;
        if !groups.insert(g.id.as_str()) {
            return Err(ConfigError::invalid(
                key("id"),
                format!("`{}` is used by an earlier on-call group", g.id),
            ));
        }
        if g.members.is_empty() {
            return Err(ConfigError::invalid(
                key("members"),
                "needs at least one user id",
            ));
        }
        for (j, m) in g.members.iter().enumerate() {
            let k = format!("oncall[{i}].members[{j}]");
            let u = s.check_user_ref(&k, m)?;
            if u.phones.is_empty() {
                return Err(ConfigError::invalid(
                    k,
                    format!("user `{m}` has no phones to ring"),
                ));
            }
        }
        check_range(&key("accept_wait_s"), g.accept_wait_s, 1, 60, " s")?;
        check_range(&key("ring_timeout_s"), g.ring_timeout_s, 5, 600, " s")?;
        for (k, v) in [
            ("waiting_message", &g.waiting_message),
            ("screening_message", &g.screening_message),
            ("no_response_message", &g.no_response_message),
        ] {
            check_len(&key(k), v, 1000)?;
        }
    }
    let mut numbers = HashSet::new();
    for (i, n) in s.numbers.iter().enumerate() {
        let key = |k: &str| format!("numbers[{i}].{k}");
        check_e164(&key("e164"), &n.e164)?;
        if !numbers.insert(n.e164.as_str()) {
            return Err(ConfigError::invalid(
                key("e164"),
                "the same number is configured twice",
            ));
        }
        check_len(&key("name"), &n.name, 200)?;
        if !n.ivr.is_empty() && !s.ivr.iter().any(|m| m.id == n.ivr) {
            return Err(ConfigError::invalid(
                key("ivr"),
                format!("`{}` names no [[ivr]] id", n.ivr),
            ));
        }
        if !n.assigned_user.is_empty() {
            s.check_user_ref(&key("assigned_user"), &n.assigned_user)?;
        }
        if !n.team_member.is_empty() {
            let u = s.check_user_ref(&key("team_member"), &n.team_member)?;
            if n.team_member_devices.contains(&Device::Phone) && u.phones.is_empty() {
                return Err(ConfigError::invalid(
                    key("team_member_devices"),
                    format!("`phone` is ticked but user `{}` has no phones", u.id),
                ));
            }
            if n.team_member_devices.contains(&Device::Sip) && u.sip.is_empty() {
                return Err(ConfigError::invalid(
                    key("team_member_devices"),
                    format!("`sip` is ticked but user `{}` has no `sip` URI", u.id),
                ));
            }
        }
        if n.ring_more.len() > MAX_RING_MORE {
            return Err(ConfigError::invalid(
                key("ring_more"),
                format!(
                    "{} members listed; at most {MAX_RING_MORE} can ring with the team member",
                    n.ring_more.len()
                ),
            ));
        }
        let mut seen = HashSet::new();
        for (j, m) in n.ring_more.iter().enumerate() {
            let k = format!("numbers[{i}].ring_more[{j}]");
            s.check_user_ref(&k, m)?;
            if !seen.insert(m.as_str()) || *m == n.team_member {
                return Err(ConfigError::invalid(
                    k,
                    format!("`{m}` already rings on this number"),
                ));
            }
        }
        if !n.external_phone.is_empty() {
            check_e164(&key("external_phone"), &n.external_phone)?;
        }
        check_range(&key("timeout_s"), n.timeout_s, 5, 600, " s")?;
        check_len(&key("whisper"), &n.whisper, 1000)?;
        check_len(&key("record_warning"), &n.record_warning, 1000)?;
        match &n.transfer_to {
            Route::Ai | Route::Menu(_) => {
                return Err(ConfigError::invalid(
                    key("transfer_to"),
                    "a transfer rings people: ring | user:ID | number:E164 | oncall:ID | voicemail",
                ))
            }
            r => s.check_route(&key("transfer_to"), r)?,
        }
    }

    let tw = s.twilio;
    if !(tw.api_base_url.starts_with("https://") || tw.api_base_url.starts_with("http://")) {
        return Err(ConfigError::invalid(
            "twilio.api_base_url",
            "must be an http(s) URL",
        ));
    }
    if !tw.sms_from.is_empty() {
        check_e164("twilio.sms_from", &tw.sms_from)?;
    }
    Ok(())
}

/// Check `[business.hours]` and `business.holidays`.
pub fn validate_business_hours(
    hours: &crate::booking::WeekHours,
    holidays: &[String],
) -> Result<(), ConfigError> {
    for (day, ranges) in week_days(hours) {
        for (j, r) in ranges.iter().enumerate() {
            if crate::booking::parse_range(r).is_none() {
                return Err(ConfigError::invalid(
                    format!("business.hours.{day}[{j}]"),
                    format!("`{r}` is not a range like \"09:00-17:30\" (start before end)"),
                ));
            }
        }
    }
    for (i, h) in holidays.iter().enumerate() {
        if chrono::NaiveDate::parse_from_str(h, "%Y-%m-%d").is_err() {
            return Err(ConfigError::invalid(
                format!("business.holidays[{i}]"),
                format!("`{h}` is not a date like \"2026-12-25\""),
            ));
        }
    }
    Ok(())
}

/// The seven days of `hours`, Monday first, with their key names.
pub fn week_days(h: &crate::booking::WeekHours) -> [(&'static str, &[String]); 7] {
    [
        ("mon", &h.mon),
        ("tue", &h.tue),
        ("wed", &h.wed),
        ("thu", &h.thu),
        ("fri", &h.fri),
        ("sat", &h.sat),
        ("sun", &h.sun),
    ]
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    /// Every documented key of deploy/frontdesk.example.toml parses,
    /// including the `[[numbers]]` entry kept commented out there.
    #[test]
    fn the_example_routing_keys_parse() {
        let text = include_str!("../../deploy/frontdesk.example.toml");
        let plain = Config::from_toml(text).unwrap();
        assert!(plain.numbers.is_empty());
        assert_eq!(plain.ivr[0].options.len(), 3);
        let opened: String = text
            .lines()
            .map(|l| l.strip_prefix("#: ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let c = Config::from_toml(&opened).unwrap();
        assert_eq!(c.numbers.len(), 1);
        assert_eq!(c.numbers[0].timeout_s, 20);
        assert_eq!(c.business.hours.fri, ["09:00-17:00"]);
        assert!(c.business.hours.sat.is_empty());
    }
}
