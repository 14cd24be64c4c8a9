//! The outbox worker: leases due notify items, delivers them, and records
//! the outcome; and the once-per-opening scheduler of the digest and the
//! escalations.
//!
//! Each call to [`Worker::run_once`] reads `now` once from the clock, runs
//! [`Worker::tick`], leases at most one batch and delivers it in order.
//! Outcomes: delivered; deferred without counting an attempt (Slack's 429 or
//! `ratelimited`, honouring `Retry-After` for the rest of the batch too);
//! retried with exponential back-off (transient: 5xx, timeouts); or failed
//! with its last error (permanent errors, or `max_attempts` used up) — and
//! visible in the outbox. A lease outlives a delivery's timeouts, so an item
//! is only ever in one node's hands; the lease simply expires if a node dies.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::cards::{self, CardLead, DigestEntry};
use super::slack::SlackError;
use super::sms::SmsError;
use super::webhook::{PostCall, WebhookError};
use super::{kind, Notify};
use crate::store::{LeadFilter, LeadRecord, OutboxItem, Store, StoreError};

/// Retry and lease settings.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts before an item is failed (default 40: with the cap below,
    /// about three hours of outage).
    pub max_attempts: i64,
    /// First back-off (default 2 s).
    pub base: StdDuration,
    /// Largest back-off (default 5 min).
    pub cap: StdDuration,
    /// How long a leased batch is ours (default 2 min, beyond every timeout).
    pub lease: Duration,
    /// Items per lease (default 20).
    pub batch: i64,
    /// Least time between two posts to one Slack channel (default 1 s).
    pub channel_interval: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 40,
            base: StdDuration::from_secs(2),
            cap: StdDuration::from_secs(300),
            lease: Duration::minutes(2),
            batch: 20,
            channel_interval: Duration::seconds(1),
        }
    }
}

/// A failed delivery.
#[derive(Debug)]
enum Failure {
    /// Not a failure: Slack asked us to wait.
    RateLimited(StdDuration),
    /// Try again later.
    Transient(String),
    /// Give up now.
    Permanent(String),
}

impl From<SlackError> for Failure {
    fn from(e: SlackError) -> Self {
        match e {
            SlackError::RateLimited(d) => Failure::RateLimited(d),
            SlackError::Transient(m) => Failure::Transient(m),
            SlackError::Permanent(m) => Failure::Permanent(m),
        }
    }
}

impl From<SmsError> for Failure {
    fn from(e: SmsError) -> Self {
        match e {
            SmsError::Transient(m) => Failure::Transient(m),
            SmsError::Refused { code, message } if code == super::sms::UNSUBSCRIBED => {
                Failure::Permanent(format!("recipient opted out: {message}"))
            }
            SmsError::Refused { message, .. } => Failure::Permanent(message),
        }
    }
}

impl From<crate::crm::CrmError> for Failure {
    fn from(e: crate::crm::CrmError) -> Self {
        use crate::crm::CrmError as E;
        match e {
            E::RateLimited { retry_after, .. } => {
                Failure::RateLimited(retry_after.unwrap_or(StdDuration::from_secs(10)))
            }
            // The category and status only: a provider message can quote
            // what was sent.
            E::Remote {
                status,
                category,
                transient: true,
                ..
            } => Failure::Transient(format!("crm {category} {status:?}")),
            E::Remote {
                status, category, ..
            } => Failure::Permanent(format!("crm {category} {status:?}")),
            E::Store(s) => Failure::Transient(format!("storage: {s}")),
            // Search lags behind writes: the contact may show up shortly.
            E::ContactNotFound => Failure::Transient("crm contact not found".into()),
            E::Invalid { field, .. } => Failure::Permanent(format!("crm invalid {field}")),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Transient(format!("storage: {e}"))
    }
}

/// What [`Worker::run_once`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunReport {
    /// Items delivered.
    pub delivered: usize,
    /// Items put back for a rate limit.
    pub deferred: usize,
    /// Items to be retried.
    pub retrying: usize,
    /// Items given up on.
    pub failed: usize,
}

/// The notify outbox worker. One per node; any number of nodes may run.
#[derive(Debug)]
pub struct Worker {
    notify: Notify,
    policy: RetryPolicy,
    last_post: Mutex<HashMap<String, DateTime<Utc>>>,
    paused_until: Mutex<Option<DateTime<Utc>>>,
    /// The opening whose digest and escalations this node already scheduled.
    scheduled: Mutex<(Option<DateTime<Utc>>, bool, bool)>,
}

/// Queue the post-call webhook of a finished call (idempotent by call sid).
pub async fn enqueue_post_call(
    store: &Store,
    body: &PostCall,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let text = serde_json::to_string(body).map_err(|_| StoreError::Corrupt {
        table: "outbox",
        column: "payload",
    })?;
    store
        .enqueue_outbox(
            kind::POST_CALL,
            &text,
            &format!("webhook.post_call:{}", body.call.call_sid),
            now,
        )
        .await
}

/// The first opening after `t` (within the hours' look-back window).
fn next_opening(h: &super::BusinessHours, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut o = h.last_opening(t + Duration::days(8))?;
    if o <= t {
        return None;
    }
    // Walk back opening by opening to the first one after `t` (at most a
    // week and a day of openings).
    for _ in 0..16 {
        match h.opening_before(o) {
            Some(prev) if prev > t => o = prev,
            _ => return Some(o),
        }
    }
    Some(o)
}

/// Upsert the contact with this phone in the CRM; its CRM id.
async fn crm_contact(
    crm: &dyn crate::crm::Crm,
    phone: &str,
    name: Option<&str>,
    email: Option<crate::pii::Pii<String>>,
    timezone: Option<String>,
) -> Result<String, Failure> {
    // Stored numbers are E.164 already, so the region is never used.
    let e164 = crate::phone::normalise(phone, phonenumber::country::Id::GB)
        .map_err(|_| Failure::Permanent("not an E.164 number".into()))?;
    let c = crm
        .upsert(&crate::crm::ContactInput {
            phone: e164,
            name: name.map(|n| crate::pii::Pii::new(n.to_string())),
            email,
            timezone,
        })
        .await?;
    Ok(c.id)
}

/// The note a lead leaves on its CRM contact.
fn crm_note(lead: &LeadRecord) -> String {
    let mut s = format!(
        "AI receptionist call: {}, tier {}.",
        lead.intent
            .as_deref()
            .unwrap_or("unknown intent")
            .replace('_', " "),
        lead.tier.as_deref().unwrap_or("?")
    );
    if let Some(n) = &lead.notes {
        s.push(' ');
        s.push_str(n.expose());
    }
    if let Some(sid) = &lead.call_sid {
        s.push_str(&format!(" (call {sid})"));
    }
    s
}

fn field<'a>(v: &'a Value, k: &str) -> Result<&'a str, Failure> {
    v.get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| Failure::Permanent(format!("payload has no `{k}`")))
}

impl Worker {
    /// A worker with the default policy.
    pub fn new(notify: Notify) -> Worker {
        Worker::with_policy(notify, RetryPolicy::default())
    }

    /// A worker with `policy`.
    pub fn with_policy(notify: Notify, policy: RetryPolicy) -> Worker {
        Worker {
            notify,
            policy,
            last_post: Mutex::new(HashMap::new()),
            paused_until: Mutex::new(None),
            scheduled: Mutex::new((None, false, false)),
        }
    }

    fn kinds(&self) -> Vec<&'static str> {
        let p = self.notify.parts();
        let mut k = Vec::new();
        if p.slack.is_some() {
            k.extend([
                kind::LEAD_CREATED,
                kind::SLACK_CARD,
                kind::SLACK_UPDATE,
                kind::SLACK_DIGEST,
                kind::SLACK_ESCALATION,
            ]);
        }
        if p.webhook.is_some() {
            k.push(kind::POST_CALL);
        }
        if p.sms.is_some() {
            k.extend([kind::SMS_BOOKING, kind::SMS_MISSED_CALL]);
        }
        if p.crm.is_some() {
            if p.slack.is_none() {
                k.push(kind::LEAD_CREATED);
            }
            k.extend([kind::CRM_NOTE, kind::CRM_TASK, kind::CRM_MEETING]);
        }
        k
    }

    /// After-hours leads of the business day that opened at `opening`:
    /// created at or after the opening before it and before `opening`.
    async fn overnight_leads(&self, opening: DateTime<Utc>) -> Result<Vec<LeadRecord>, StoreError> {
        let p = self.notify.parts();
        let since = p
            .hours
            .opening_before(opening)
            .unwrap_or(opening - Duration::days(7));
        let leads = p
            .store
            .list_leads(&LeadFilter {
                since: Some(since),
                limit: 1000,
                ..LeadFilter::default()
            })
            .await?;
        Ok(leads
            .into_iter()
            .filter(|l| l.created_at < opening && !p.hours.is_open(l.created_at))
            .collect())
    }

    /// Schedule what is due at `now`: the digest at the latest opening and,
    /// `escalate_after_min` later, one escalation per still-unclaimed
    /// overnight tier B lead. Each is an outbox item keyed by the opening or
    /// the lead, so however many nodes tick, each is queued once.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let p = self.notify.parts();
        if p.slack.is_none() {
            return Ok(());
        }
        let Some(opening) = p.hours.last_opening(now) else {
            return Ok(());
        };
        // A node that starts late in the day does not post yesterday's news.
        if now - opening > Duration::hours(12) {
            return Ok(());
        }
        let (digest_done, escalation_done) = {
            let mut s = self.scheduled.lock().unwrap_or_else(|e| e.into_inner());
            if s.0 != Some(opening) {
                *s = (Some(opening), false, false);
            }
            (s.1, s.2)
        };
        let escalate_at = opening + Duration::minutes(i64::from(p.slack_cfg.escalate_after_min));
        let escalation_due = !escalation_done && now >= escalate_at;
        if digest_done && !escalation_due {
            return Ok(());
        }
        let leads = self.overnight_leads(opening).await?;
        let o_ms = opening.timestamp_millis();
        if !digest_done {
            if !leads.is_empty() {
                let payload = json!({"opening_ms": o_ms}).to_string();
                p.store
                    .enqueue_outbox(
                        kind::SLACK_DIGEST,
                        &payload,
                        &format!("slack.digest:{o_ms}"),
                        now,
                    )
                    .await?;
            }
            self.scheduled.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        }
        if escalation_due {
            for l in leads.iter().filter(|l| l.tier.as_deref() == Some("B")) {
                if p.store.lead_claim(&l.id).await?.is_some() {
                    continue;
                }
                let payload = json!({"lead_id": l.id, "opening_ms": o_ms}).to_string();
                p.store
                    .enqueue_outbox(
                        kind::SLACK_ESCALATION,
                        &payload,
                        &format!("slack.escalation:{}", l.id),
                        now,
                    )
                    .await?;
            }
            self.scheduled.lock().unwrap_or_else(|e| e.into_inner()).2 = true;
        }
        Ok(())
    }

    /// One pass at the clock's `now`: tick, lease one batch, deliver it.
    pub async fn run_once(&self) -> Result<RunReport, StoreError> {
        let p = self.notify.parts();
        let now = p.clock.now();
        self.tick(now).await?;
        let kinds = self.kinds();
        let items = p
            .store
            .lease_outbox_kinds(now, now + self.policy.lease, self.policy.batch, &kinds)
            .await?;
        let mut report = RunReport::default();
        for item in items {
            let now = p.clock.now();
            let paused = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
            let is_slack = item.kind.starts_with("slack.");
            let outcome = match paused {
                Some(until) if is_slack && until > now => Err(Failure::RateLimited(
                    (until - now).to_std().unwrap_or_default(),
                )),
                _ => self.deliver(&item).await,
            };
            let now = p.clock.now();
            match outcome {
                Ok(()) => {
                    p.store.outbox_delivered(&item.id, now).await?;
                    report.delivered += 1;
                }
                Err(Failure::RateLimited(d)) => {
                    let until = now + Duration::from_std(d).unwrap_or(Duration::seconds(1));
                    if is_slack {
                        *self.paused_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(until);
                    }
                    p.store.outbox_defer(&item.id, until).await?;
                    report.deferred += 1;
                }
                Err(Failure::Transient(e)) if item.attempts < self.policy.max_attempts => {
                    let n = u32::try_from(item.attempts.saturating_sub(1)).unwrap_or(u32::MAX);
                    let wait = crate::retry::backoff(n, self.policy.base, self.policy.cap);
                    let at = now + Duration::from_std(wait).unwrap_or(Duration::seconds(1));
                    tracing::info!(kind = %item.kind, attempts = item.attempts, error = %e, "notify delivery will be retried");
                    p.store.outbox_failed(&item.id, &e, Some(at)).await?;
                    report.retrying += 1;
                }
                Err(Failure::Transient(e)) | Err(Failure::Permanent(e)) => {
                    tracing::warn!(kind = %item.kind, attempts = item.attempts, error = %e, "notify delivery failed for good");
                    p.store.outbox_failed(&item.id, &e, None).await?;
                    report.failed += 1;
                }
            }
        }
        Ok(report)
    }

    /// Poll every `interval` until `cancel` fires (tokio time; paused-time
    /// tests advance it).
    pub async fn run(self, interval: StdDuration, cancel: CancellationToken) {
        loop {
            match self.run_once().await {
                Ok(r) if r == RunReport::default() => {}
                Ok(r) => tracing::debug!(?r, "notify outbox pass"),
                Err(e) => tracing::warn!(error = %e, "notify outbox pass failed"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }

    async fn pace(&self, channel: &str) {
        let p = self.notify.parts();
        let last = self
            .last_post
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(channel)
            .copied();
        if let Some(last) = last {
            let since = p.clock.now() - last;
            if since < self.policy.channel_interval {
                let wait = (self.policy.channel_interval - since)
                    .to_std()
                    .unwrap_or_default();
                p.sleeper.sleep(wait).await;
            }
        }
    }

    fn posted(&self, channel: &str) {
        let now = self.notify.parts().clock.now();
        self.last_post
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(channel.to_string(), now);
    }

    async fn post(
        &self,
        channel: &str,
        msg: &cards::SlackMessage,
    ) -> Result<super::slack::Posted, Failure> {
        let p = self.notify.parts();
        let slack = p
            .slack
            .as_ref()
            .ok_or_else(|| Failure::Permanent("slack is off".into()))?;
        self.pace(channel).await;
        let r = slack.post(channel, msg).await;
        self.posted(channel);
        Ok(r?)
    }

    /// Queue a lead's CRM writes: its note, and for tiers B and C the
    /// call-back task (each idempotent by lead and purpose).
    async fn queue_crm(&self, lead: &LeadRecord) -> Result<(), StoreError> {
        let p = self.notify.parts();
        let payload = json!({"lead_id": lead.id}).to_string();
        let now = p.clock.now();
        p.store
            .enqueue_outbox(
                kind::CRM_NOTE,
                &payload,
                &format!("crm.note:{}", lead.id),
                now,
            )
            .await?;
        if matches!(lead.tier.as_deref(), Some("B") | Some("C")) {
            p.store
                .enqueue_outbox(
                    kind::CRM_TASK,
                    &payload,
                    &format!("crm.task:{}", lead.id),
                    now,
                )
                .await?;
        }
        Ok(())
    }

    /// When a lead's call-back is due (seed 003): tier B within 5 minutes,
    /// tier C within 2 hours, counted from the call in hours or from the
    /// next opening after hours.
    fn callback_due(&self, lead: &LeadRecord) -> DateTime<Utc> {
        let h = &self.notify.parts().hours;
        let from = if h.is_open(lead.created_at) {
            lead.created_at
        } else {
            next_opening(h, lead.created_at).unwrap_or(lead.created_at)
        };
        let sla = match lead.tier.as_deref() {
            Some("B") => Duration::minutes(5),
            _ => Duration::hours(2),
        };
        from + sla
    }

    /// Where a tier A lead's FYI goes: the channel of the rep it is routed
    /// to, else a direct message to their Slack user.
    fn rep_channel(&self, lead: &LeadRecord) -> Option<&str> {
        let owner = lead.routing_owner.as_deref()?;
        let r = self.notify.reps().iter().find(|r| r.id == owner)?;
        [r.slack_channel.as_str(), r.slack_id.as_str()]
            .into_iter()
            .find(|c| !c.is_empty())
    }

    fn card_for(
        &self,
        lead: &LeadRecord,
        priority: bool,
        after_hours: bool,
    ) -> cards::SlackMessage {
        let p = self.notify.parts();
        // A card's link lives for the link TTL from the moment it is posted.
        let link = self
            .notify
            .link_for(&lead.id, None, p.clock.now())
            .unwrap_or_else(|| format!("{}/", p.public_url.trim_end_matches('/')));
        cards::lead_card(&CardLead {
            lead,
            link: &link,
            tz: self.notify.tz(),
            priority,
            after_hours,
        })
    }

    async fn deliver(&self, item: &OutboxItem) -> Result<(), Failure> {
        let p = self.notify.parts();
        let payload: Value = serde_json::from_str(&item.payload).unwrap_or(Value::Null);
        match item.kind.as_str() {
            kind::LEAD_CREATED => {
                let lead_id = field(&payload, "lead_id")?;
                let Some(lead) = p.store.lead_by_id(lead_id).await? else {
                    return Err(Failure::Permanent("lead not found".into()));
                };
                if p.crm.is_some() {
                    self.queue_crm(&lead).await?;
                }
                if p.slack.is_none() {
                    return Ok(());
                }
                let after_hours = !p.hours.is_open(lead.created_at);
                let tier_b = lead.tier.as_deref() == Some("B");
                let ch = &p.slack_cfg.channels;
                let fyi_to = (!after_hours && lead.tier.as_deref() == Some("A"))
                    .then(|| self.rep_channel(&lead))
                    .flatten();
                let (channel, priority) = if after_hours {
                    (ch.overnight.as_str(), false)
                } else if let Some(c) = fyi_to {
                    (c, false)
                } else if tier_b {
                    (ch.sdr.as_str(), true)
                } else {
                    (ch.leads.as_str(), false)
                };
                let card = json!({"lead_id": lead.id, "channel": channel,
                                  "after_hours": after_hours, "priority": priority,
                                  "fyi": fyi_to.is_some()});
                p.store
                    .enqueue_outbox(
                        kind::SLACK_CARD,
                        &card.to_string(),
                        &format!("slack.card:{}", lead.id),
                        p.clock.now(),
                    )
                    .await?;
                Ok(())
            }
            kind::SLACK_CARD => {
                let lead_id = field(&payload, "lead_id")?;
                let channel = field(&payload, "channel")?;
                let after_hours = payload
                    .get("after_hours")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let priority = payload
                    .get("priority")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let Some(lead) = p.store.lead_by_id(lead_id).await? else {
                    return Err(Failure::Permanent("lead not found".into()));
                };
                let fyi = payload.get("fyi").and_then(Value::as_bool).unwrap_or(false);
                let mut msg = self.card_for(&lead, priority, after_hours);
                if fyi {
                    msg = cards::fyi(msg, &lead);
                }
                let posted = self.post(channel, &msg).await?;
                p.store
                    .record_card(
                        &lead.id,
                        &posted.channel,
                        posted.ts.as_deref(),
                        after_hours,
                        p.clock.now(),
                    )
                    .await?;
                Ok(())
            }
            kind::SLACK_UPDATE => {
                let lead_id = field(&payload, "lead_id")?;
                let slack = p
                    .slack
                    .as_ref()
                    .ok_or_else(|| Failure::Permanent("slack is off".into()))?;
                let (Some(lead), Some(claim)) = (
                    p.store.lead_by_id(lead_id).await?,
                    p.store.lead_claim(lead_id).await?,
                ) else {
                    return Err(Failure::Permanent("lead or claim not found".into()));
                };
                let Some(card) = p.store.lead_card(lead_id).await? else {
                    // The card is not out yet: try again once it is.
                    return Err(Failure::Transient("card not posted yet".into()));
                };
                let Some(ts) = card.ts.as_deref() else {
                    return Ok(()); // webhook messages cannot be edited
                };
                let tier_b = lead.tier.as_deref() == Some("B");
                let base = self.card_for(&lead, tier_b && !card.after_hours, card.after_hours);
                let msg =
                    cards::claimed_card(&base, &claim.rep_name, claim.claimed_at, self.notify.tz());
                slack.update(&card.channel, ts, &msg).await?;
                Ok(())
            }
            kind::SLACK_DIGEST => {
                let o_ms = payload
                    .get("opening_ms")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let opening = chrono::TimeZone::timestamp_millis_opt(&Utc, o_ms)
                    .single()
                    .ok_or_else(|| Failure::Permanent("bad opening".into()))?;
                let leads = self.overnight_leads(opening).await?;
                let mut entries = Vec::with_capacity(leads.len());
                for lead in leads {
                    let claimed_by = p.store.lead_claim(&lead.id).await?.map(|c| c.rep_name);
                    let link = self
                        .notify
                        .link_for(&lead.id, None, p.clock.now())
                        .unwrap_or_default();
                    entries.push(DigestEntry {
                        lead,
                        link,
                        claimed_by,
                    });
                }
                let msg = cards::digest(entries, self.notify.tz());
                self.post(&p.slack_cfg.channels.overnight, &msg).await?;
                Ok(())
            }
            kind::SLACK_ESCALATION => {
                let lead_id = field(&payload, "lead_id")?;
                if p.store.lead_claim(lead_id).await?.is_some() {
                    return Ok(()); // claimed since it was queued
                }
                let Some(lead) = p.store.lead_by_id(lead_id).await? else {
                    return Err(Failure::Permanent("lead not found".into()));
                };
                let link = self
                    .notify
                    .link_for(&lead.id, None, p.clock.now())
                    .unwrap_or_default();
                let msg = cards::escalation(
                    &lead,
                    &link,
                    &p.slack_cfg.oncall_mention,
                    p.slack_cfg.escalate_after_min,
                    self.notify.tz(),
                );
                self.post(&p.slack_cfg.channels.overnight, &msg).await?;
                Ok(())
            }
            kind::POST_CALL => {
                let hook = p
                    .webhook
                    .as_ref()
                    .ok_or_else(|| Failure::Permanent("webhooks.post_call_url is empty".into()))?;
                let body = if payload.get("schema").is_some() {
                    item.payload.clone()
                } else {
                    // Queued as a reference to the finished call: build the
                    // body now and keep it, so retries send the same bytes.
                    let sid = field(&payload, "call_sid")?;
                    let finished = payload
                        .get("finished_ms")
                        .and_then(Value::as_i64)
                        .and_then(|ms| chrono::TimeZone::timestamp_millis_opt(&Utc, ms).single())
                        .unwrap_or_else(|| p.clock.now());
                    let Some(facts) = p.store.call_facts(sid, p.clock.now()).await? else {
                        return Err(Failure::Permanent("call not found".into()));
                    };
                    let body =
                        serde_json::to_string(&super::webhook::post_call_body(&facts, finished))
                            .map_err(|e| {
                                Failure::Permanent(format!("cannot encode the body: {e}"))
                            })?;
                    p.store.outbox_set_payload(&item.id, &body).await?;
                    body
                };
                match hook.post(&body, p.clock.now()).await {
                    Ok(()) => Ok(()),
                    Err(WebhookError::Transient(e)) => Err(Failure::Transient(e)),
                    Err(WebhookError::Refused(e)) => Err(Failure::Permanent(e)),
                }
            }
            kind::SMS_BOOKING | kind::SMS_MISSED_CALL => {
                let sms = p
                    .sms
                    .as_ref()
                    .ok_or_else(|| Failure::Permanent("SMS is not configured".into()))?;
                let to = crate::pii::Pii::new(field(&payload, "to")?.to_string());
                let body = field(&payload, "body")?;
                sms.send(&to, body).await?;
                Ok(())
            }
            kind::CRM_NOTE | kind::CRM_TASK => {
                let crm = p
                    .crm
                    .as_ref()
                    .ok_or_else(|| Failure::Permanent("no remote CRM".into()))?;
                let lead_id = field(&payload, "lead_id")?;
                let Some(lead) = p.store.lead_by_id(lead_id).await? else {
                    return Err(Failure::Permanent("lead not found".into()));
                };
                let contact = crm_contact(
                    crm.as_ref(),
                    lead.phone.expose(),
                    lead.name.as_ref().map(|n| n.expose().as_str()),
                    lead.email.clone(),
                    lead.timezone.clone(),
                )
                .await?;
                if item.kind == kind::CRM_NOTE {
                    let note = crm_note(&lead);
                    crm.add_note(&contact, &crate::pii::Pii::new(note), lead.created_at)
                        .await?;
                } else {
                    let task = crate::crm::Task {
                        subject: format!(
                            "Call back {} (tier {})",
                            lead.name
                                .as_ref()
                                .map(|n| n.expose().as_str())
                                .unwrap_or("the caller"),
                            lead.tier.as_deref().unwrap_or("?")
                        ),
                        body: lead.notes.clone(),
                        due: self.callback_due(&lead),
                    };
                    crm.add_task(&contact, &task).await?;
                }
                Ok(())
            }
            kind::CRM_MEETING => {
                let crm = p
                    .crm
                    .as_ref()
                    .ok_or_else(|| Failure::Permanent("no remote CRM".into()))?;
                let at = |k: &str| {
                    payload
                        .get(k)
                        .and_then(Value::as_i64)
                        .and_then(|ms| chrono::TimeZone::timestamp_millis_opt(&Utc, ms).single())
                        .ok_or_else(|| Failure::Permanent(format!("payload has no `{k}`")))
                };
                let name = payload.get("name").and_then(Value::as_str);
                let contact =
                    crm_contact(crm.as_ref(), field(&payload, "phone")?, name, None, None).await?;
                let meeting = crate::crm::Meeting {
                    title: format!("Meeting with {}", name.unwrap_or("a caller")),
                    body: Some(crate::pii::Pii::new(format!(
                        "Booked by the AI receptionist with {}.",
                        field(&payload, "owner")?
                    ))),
                    start: at("start_ms")?,
                    end: at("end_ms")?,
                };
                crm.add_meeting(&contact, &meeting).await?;
                Ok(())
            }
            other => Err(Failure::Permanent(format!("unknown kind {other}"))),
        }
    }
}
