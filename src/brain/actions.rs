//! The action layer: the business logic both brains call — who is calling
//! (CRM lookup at connection), slots to offer, hold → confirm | release,
//! one contact per E.164 number, callbacks with a due time from the tier's
//! SLA and the business hours, a CRM note for an answered question, and the
//! call's outcome on its lead.
//!
//! Each action is a typed async method; [`Actions`] is also the
//! [`ToolExecutor`] the call's tool runner drives, so every side effect runs
//! outside the cancellable reply (a barge-in never aborts a booking) and,
//! wrapped in [`crate::call::tools::StoreBackedTools`], at most once per
//! `(call_sid, job id)`. Arguments arrive as JSON and are checked here: a
//! malformed one is a failed outcome, never a panic.
//!
//! It must not decide what to say or which tier a caller is (the brain
//! does), and must not log personal data unmasked.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::booking::{Attendee, Calendar, Slot, SlotKey};
use crate::call::tools::{ToolExecutor, ToolJob, ToolOutcome};
use crate::clock::Clock;
use crate::config::brain::TiersConfig;
use crate::crm::{ContactInput, Crm, Meeting, Task};
use crate::notify::BusinessHours;
use crate::phone::{self, E164};
use crate::pii::Pii;
use crate::store::{LeadOutcome, NewContact, NewLead, Store};

/// Longest a lookup at connection may take before the call goes on without it.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// What the action layer needs, handed over by the composition root.
#[derive(Debug, Clone)]
pub struct ActionParts {
    /// The database (leads, do-not-contact, history).
    pub store: Store,
    /// The calendar the brain books on.
    pub calendar: Arc<dyn Calendar>,
    /// The CRM contacts are upserted into.
    pub crm: Arc<dyn Crm>,
    /// Wall-clock `now`.
    pub clock: Arc<dyn Clock>,
    /// Region for national numbers.
    pub region: phonenumber::country::Id,
    /// Opening hours (after hours, callback due times).
    pub hours: BusinessHours,
    /// Tier rules.
    pub tiers: TiersConfig,
    /// How long a hold lasts.
    pub hold_ttl: Duration,
    /// Queues the booking's confirmation text and remote-CRM meeting
    /// through the outbox (`None`: notifications off).
    pub notify: Option<crate::notify::Notify>,
}

/// The action layer. See the module docs.
#[derive(Debug, Clone)]
pub struct Actions {
    p: Arc<ActionParts>,
}

/// Who is calling, as known at connection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallContext {
    /// The CRM has this number.
    pub found: bool,
    /// The contact's name, if stored.
    pub name: Option<String>,
    /// An existing customer (a contact that never came in as a lead).
    pub customer: bool,
    /// A returning lead (earlier leads on record).
    pub returning: bool,
    /// The notes of their last call.
    pub last_summary: Option<String>,
    /// They asked not to be contacted.
    pub do_not_contact: bool,
    /// The call came outside business hours.
    pub after_hours: bool,
    /// Wall-clock time at connection.
    pub now: DateTime<Utc>,
}

/// A slot as offered to the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// Owner id.
    pub owner: String,
    /// Owner's spoken name.
    pub owner_name: String,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
    /// As said to the caller, in their zone.
    pub spoken: String,
}

impl From<Slot> for Offer {
    fn from(s: Slot) -> Self {
        Offer {
            owner: s.owner,
            owner_name: s.owner_name,
            start: s.start,
            end: s.end,
            spoken: s.spoken,
        }
    }
}

/// The outcome of a call as the brain decided it (the lead in the ingest
/// shape of seed 003 plus `outcome`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeRecord {
    /// Decision order within the call.
    pub seq: i64,
    /// Caller's number (E.164).
    pub phone: String,
    /// Name.
    pub name: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// `new_enquiry` | `pricing` | `support` | `referral` | `unclear`.
    pub intent: String,
    /// `A`–`D`.
    pub tier: Option<String>,
    /// `booked` | `transferred` | `callback` | `answered` | `opted_out`.
    pub outcome: String,
    /// The caller's IANA zone.
    pub timezone: Option<String>,
    /// 1–3 sentences for the rep (≤ 400 characters).
    pub notes: String,
    /// Team or person the lead goes to.
    pub routing_owner: Option<String>,
    /// Outside business hours.
    pub after_hours: bool,
    /// Callback due.
    pub callback_due: Option<DateTime<Utc>>,
}

/// Allowed outcomes.
pub const OUTCOMES: [&str; 5] = ["booked", "transferred", "callback", "answered", "opted_out"];

fn bad(job: &ToolJob, e: impl std::fmt::Display) -> ToolOutcome {
    ToolOutcome::failed(job, format!("bad arguments: {e}"))
}

/// `lookup_contact`'s arguments (the llm brain checks the model's with it too).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LookupArgs {
    pub(crate) phone: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FindArgs {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    timezone: String,
    #[serde(default = "two")]
    count: usize,
    /// Earliest local minute of the day a slot may start at.
    #[serde(default)]
    day_from_min: Option<u32>,
    /// Local minute of the day slots must start before.
    #[serde(default)]
    day_to_min: Option<u32>,
}

fn two() -> usize {
    2
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldArgs {
    owner: String,
    start: DateTime<Utc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldId {
    hold_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmArgs {
    hold_id: String,
    name: String,
    email: Option<String>,
    phone: Option<String>,
    timezone: Option<String>,
    notes: Option<String>,
    /// The call's lead as it stands once the booking does (outcome
    /// `booked`): written here, right after the booking, so a caller who
    /// hangs up while it is confirmed still leaves a lead that says booked.
    #[serde(default)]
    record: Option<OutcomeRecord>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallbackArgs {
    phone: String,
    name: Option<String>,
    tier: String,
    notes: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerArgs {
    phone: Option<String>,
    question: String,
    answer: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferArgs {
    #[serde(default)]
    target: String,
    summary: String,
}

impl Actions {
    /// The action layer over `parts`.
    pub fn new(parts: ActionParts) -> Self {
        Actions { p: Arc::new(parts) }
    }

    fn e164(&self, raw: &str) -> Option<E164> {
        phone::normalise(raw, self.p.region).ok()
    }

    /// The tier rules.
    pub fn tiers(&self) -> &TiersConfig {
        &self.p.tiers
    }

    /// Who is calling from `phone` (any format), and whether it is after
    /// hours. A slow or failing CRM gives an unknown caller, never a stall.
    pub async fn lookup_contact(&self, phone: Option<&str>) -> CallContext {
        let now = self.p.clock.now();
        let mut ctx = CallContext {
            after_hours: !self.p.hours.is_open(now),
            now,
            ..CallContext::default()
        };
        let Some(e) = phone.and_then(|p| self.e164(p)) else {
            return ctx;
        };
        match tokio::time::timeout(LOOKUP_TIMEOUT, self.p.crm.lookup_by_phone(&e)).await {
            Ok(Ok(Some(c))) => {
                ctx.found = true;
                ctx.name = c.name.map(|n| n.expose().clone()).filter(|n| !n.is_empty());
            }
            Ok(Ok(None)) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "CRM lookup failed"),
            Err(_) => tracing::warn!("CRM lookup timed out"),
        }
        if let Ok(Some(local)) = self.p.store.contact_by_phone(e.as_str()).await {
            ctx.found = true;
            if ctx.name.is_none() {
                ctx.name = local.name.map(|n| n.expose().clone());
            }
            if let Ok(h) = self.p.store.contact_history(&local.id).await {
                ctx.returning = h.leads > 0;
                ctx.last_summary = h.last_notes;
                ctx.do_not_contact = h.do_not_contact;
            }
        }
        ctx.customer = ctx.found && !ctx.returning;
        ctx
    }

    /// Up to `count` free slots across the calendar's owners starting in
    /// `[from, to)`, soonest first, spoken in `tz`; when none fit, the
    /// soonest after `from` (the second value is false then).
    pub async fn find_slots(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        tz: Tz,
        count: usize,
        day: (Option<u32>, Option<u32>),
    ) -> (Vec<Offer>, bool) {
        use chrono::Timelike;
        let in_day = |s: &Slot| {
            let l = s.start.with_timezone(&tz);
            let m = l.hour() * 60 + l.minute();
            day.0.is_none_or(|a| m >= a) && day.1.is_none_or(|b| m < b)
        };
        let days = self.p.tiers.slot_days;
        let mut all: Vec<Slot> = Vec::new();
        for o in self.p.calendar.owners() {
            match self
                .p
                .calendar
                .available_slots(&o.id, Some(from), days, tz)
                .await
            {
                Ok(s) => all.extend(s),
                Err(e) => tracing::warn!(error = %e, owner = %o.id, "cannot list slots"),
            }
        }
        all.sort_by(|a, b| a.start.cmp(&b.start).then(a.owner.cmp(&b.owner)));
        all.dedup_by(|a, b| a.start == b.start);
        let fit: Vec<Offer> = all
            .iter()
            .filter(|s| s.start >= from && s.start < to && in_day(s))
            .take(count)
            .cloned()
            .map(Offer::from)
            .collect();
        if !fit.is_empty() {
            return (fit, true);
        }
        let waking: Vec<Offer> = all
            .iter()
            .filter(|s| s.start >= from && in_day(s))
            .take(count)
            .cloned()
            .map(Offer::from)
            .collect();
        if !waking.is_empty() {
            return (waking, false);
        }
        (
            all.into_iter().take(count).map(Offer::from).collect(),
            false,
        )
    }

    /// When a callback of `tier` asked for at `now` is due: tier B within
    /// `b_callback_minutes` (after hours: of the next opening), others
    /// within `c_callback_minutes` of business-hours time.
    pub fn callback_due(&self, tier: &str, now: DateTime<Utc>) -> DateTime<Utc> {
        let h = &self.p.hours;
        let step = chrono::Duration::minutes(1);
        let horizon = now + chrono::Duration::days(15);
        // Openings fall on whole minutes: step on the minute grid.
        let secs = now.timestamp().rem_euclid(60);
        let on_grid = if secs == 0 && now.timestamp_subsec_nanos() == 0 {
            now
        } else {
            now + chrono::Duration::seconds(60 - secs)
                - chrono::Duration::nanoseconds(i64::from(now.timestamp_subsec_nanos()))
        };
        if tier == "B" {
            let mut t = if h.is_open(now) { now } else { on_grid };
            while !h.is_open(t) && t < horizon {
                t += step;
            }
            if t >= horizon {
                t = now;
            }
            return t + chrono::Duration::minutes(i64::from(self.p.tiers.b_callback_minutes));
        }
        let mut left = i64::from(self.p.tiers.c_callback_minutes);
        let mut t = now;
        while left > 0 && t < horizon {
            if h.is_open(t) {
                left -= 1;
            }
            t += step;
        }
        t
    }

    /// Hold a slot for the configured time.
    pub async fn hold(&self, owner: &str, start: DateTime<Utc>) -> Result<Value, String> {
        let key = SlotKey {
            owner: owner.to_string(),
            start,
        };
        self.p
            .calendar
            .hold(&key, self.p.hold_ttl)
            .await
            .map(|h| json!({"hold_id": h.id, "owner": h.owner, "start": h.start, "end": h.end, "expires_at": h.expires_at}))
            .map_err(|e| e.to_string())
    }

    /// Release a hold (idempotent).
    pub async fn release(&self, hold_id: &str) -> Result<Value, String> {
        self.p
            .calendar
            .release(hold_id)
            .await
            .map(|_| json!({"released": hold_id}))
            .map_err(|e| e.to_string())
    }

    async fn confirm(&self, a: ConfirmArgs) -> Result<Value, String> {
        let phone = a.phone.as_deref().and_then(|p| self.e164(p));
        let tz: Option<Tz> = a.timezone.as_deref().and_then(|t| t.parse().ok());
        let attendee = Attendee {
            name: Pii::new(a.name.clone()),
            email: a.email.clone().map(Pii::new),
            phone: phone.clone(),
            timezone: tz,
            contact_id: None,
        };
        let (booking, contact_id) = match &phone {
            Some(e) => {
                let nc = NewContact {
                    phone_e164: e.to_pii(),
                    name: Some(Pii::new(a.name.clone())),
                    email: a.email.clone().map(Pii::new),
                    timezone: a.timezone.clone(),
                };
                let (b, wrote) = self
                    .p
                    .calendar
                    .confirm_with_contact(&a.hold_id, &attendee, &nc)
                    .await
                    .map_err(|e| e.to_string())?;
                let c = if wrote {
                    self.p.crm.lookup_by_phone(e).await.ok().flatten()
                } else {
                    self.p
                        .crm
                        .upsert(&ContactInput {
                            phone: e.clone(),
                            name: nc.name.clone(),
                            email: nc.email.clone(),
                            timezone: nc.timezone.clone(),
                        })
                        .await
                        .ok()
                };
                (b, c.map(|c| c.id))
            }
            None => (
                self.p
                    .calendar
                    .confirm(&a.hold_id, &attendee)
                    .await
                    .map_err(|e| e.to_string())?,
                None,
            ),
        };
        // The confirmation text and the remote CRM's meeting go through the
        // outbox (durable, once per booking); the booking stands whatever
        // happens there.
        if let (Some(n), Some(e)) = (&self.p.notify, &phone) {
            n.enqueue_booking_followups(&booking, e.as_str(), &a.name, self.p.clock.now())
                .await;
        }
        if let Some(cid) = contact_id {
            let m = Meeting {
                title: "Voice inbound: booking".into(),
                body: a.notes.map(Pii::new),
                start: booking.start,
                end: booking.end,
            };
            if let Err(e) = self.p.crm.add_meeting(&cid, &m).await {
                tracing::warn!(error = %e, "cannot log the meeting in the CRM");
            }
        }
        Ok(
            json!({"booking_id": booking.id, "owner": booking.owner, "start": booking.start, "end": booking.end}),
        )
    }

    async fn upsert(&self, phone: &E164, name: Option<&str>) -> Option<String> {
        let input = ContactInput {
            phone: phone.clone(),
            name: name.map(|n| Pii::new(n.to_string())),
            email: None,
            timezone: None,
        };
        match self.p.crm.upsert(&input).await {
            Ok(c) => Some(c.id),
            Err(e) => {
                tracing::warn!(error = %e, "CRM upsert failed");
                None
            }
        }
    }

    async fn callback(&self, a: CallbackArgs) -> Result<Value, String> {
        let e = self.e164(&a.phone).ok_or("not a phone number")?;
        if self
            .p
            .store
            .is_do_not_contact(e.as_str())
            .await
            .unwrap_or(false)
        {
            return Err("the caller asked not to be contacted".into());
        }
        let now = self.p.clock.now();
        let due = self.callback_due(&a.tier, now);
        if let Some(cid) = self.upsert(&e, a.name.as_deref()).await {
            let task = Task {
                subject: format!("Call back (tier {})", a.tier),
                body: a.notes.map(Pii::new),
                due,
            };
            if let Err(err) = self.p.crm.add_task(&cid, &task).await {
                tracing::warn!(error = %err, "cannot add the callback task");
            }
        }
        Ok(json!({"due": due}))
    }

    async fn answer(&self, a: AnswerArgs) -> Result<Value, String> {
        let Some(e) = a.phone.as_deref().and_then(|p| self.e164(p)) else {
            return Ok(json!({"noted": false}));
        };
        let cid = self.upsert(&e, None).await.ok_or("CRM unavailable")?;
        let body = Pii::new(format!("Q: {}\nA: {}", a.question, a.answer));
        self.p
            .crm
            .add_note(&cid, &body, self.p.clock.now())
            .await
            .map(|id| json!({"noted": true, "note_id": id}))
            .map_err(|e| e.to_string())
    }

    /// Write the call's outcome onto its lead (see [`Store::record_lead_outcome`]).
    pub async fn record_outcome(&self, call_sid: &str, r: &OutcomeRecord) -> Result<Value, String> {
        if !OUTCOMES.contains(&r.outcome.as_str()) {
            return Err(format!("unknown outcome `{}`", r.outcome));
        }
        let e = self.e164(&r.phone).ok_or("not a phone number")?;
        let notes: String = r.notes.chars().take(400).collect();
        let lead = NewLead {
            contact: NewContact {
                phone_e164: e.to_pii(),
                name: r.name.clone().map(Pii::new),
                email: r.email.clone().map(Pii::new),
                timezone: r.timezone.clone(),
            },
            call_sid: Some(call_sid.to_string()),
            intent: Some(r.intent.clone()),
            tier: r.tier.clone(),
            source: Some("inbound_call".into()),
            transcript_id: Some(format!("tr_{call_sid}")),
            notes: Some(Pii::new(notes)),
            routing_owner: r.routing_owner.clone(),
        };
        let o = LeadOutcome {
            lead,
            outcome: r.outcome.clone(),
            seq: r.seq,
            after_hours: r.after_hours,
            callback_due: r.callback_due,
        };
        self.p
            .store
            .record_lead_outcome(&o, self.p.clock.now())
            .await
            .map(|id| json!({"lead_id": id}))
            .map_err(|e| e.to_string())
    }
}

fn args<T: serde::de::DeserializeOwned>(job: &ToolJob) -> Result<T, ToolOutcome> {
    serde_json::from_value(job.args.clone()).map_err(|e| bad(job, e))
}

fn done(job: &ToolJob, r: Result<Value, String>) -> ToolOutcome {
    match r {
        Ok(result) => ToolOutcome {
            id: job.id.clone(),
            name: job.name.clone(),
            ok: true,
            result,
        },
        Err(e) => ToolOutcome::failed(job, e),
    }
}

#[async_trait]
impl ToolExecutor for Actions {
    async fn execute(&self, call_sid: &str, job: &ToolJob) -> ToolOutcome {
        macro_rules! parse {
            ($t:ty) => {
                match args::<$t>(job) {
                    Ok(a) => a,
                    Err(o) => return o,
                }
            };
        }
        match job.name.as_str() {
            "lookup_contact" => {
                let a = parse!(LookupArgs);
                let ctx = self.lookup_contact(a.phone.as_deref()).await;
                done(job, serde_json::to_value(ctx).map_err(|e| e.to_string()))
            }
            "find_slots" => {
                let a = parse!(FindArgs);
                let Ok(tz) = a.timezone.parse::<Tz>() else {
                    return bad(job, "timezone is not an IANA zone");
                };
                let (slots, exact) = self
                    .find_slots(
                        a.from,
                        a.to,
                        tz,
                        a.count.clamp(1, 5),
                        (a.day_from_min, a.day_to_min),
                    )
                    .await;
                done(job, Ok(json!({"slots": slots, "exact": exact})))
            }
            "hold_slot" => {
                let a = parse!(HoldArgs);
                done(job, self.hold(&a.owner, a.start).await)
            }
            "release_hold" => {
                let a = parse!(HoldId);
                done(job, self.release(&a.hold_id).await)
            }
            "confirm_booking" => {
                let mut a = parse!(ConfirmArgs);
                let record = a.record.take();
                if record.as_ref().is_some_and(|r| r.outcome != "booked") {
                    return bad(job, "`record` is the lead once booked: outcome `booked`");
                }
                let r = self.confirm(a).await;
                if let (Ok(_), Some(rec)) = (&r, record) {
                    if let Err(e) = self.record_outcome(call_sid, &rec).await {
                        tracing::warn!(error = %e, "booked, but cannot write the lead");
                    }
                }
                done(job, r)
            }
            "take_callback" => {
                let a = parse!(CallbackArgs);
                done(job, self.callback(a).await)
            }
            "answer_question" => {
                let a = parse!(AnswerArgs);
                done(job, self.answer(a).await)
            }
            "record_outcome" => {
                let r = parse!(OutcomeRecord);
                done(job, self.record_outcome(call_sid, &r).await)
            }
            "transfer_to_human" => {
                let a = parse!(TransferArgs);
                done(
                    job,
                    Ok(json!({"target": a.target, "summary_chars": a.summary.chars().count()})),
                )
            }
            "end_call" => done(job, Ok(json!({}))),
            other => ToolOutcome::failed(job, format!("unknown tool `{other}`")),
        }
    }
}
