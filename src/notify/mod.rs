//! Leads that get called back: Slack lead cards (in hours by tier, after
//! hours to the overnight channel with a digest at opening), the escalation
//! of unclaimed overnight tier B leads, signed call-back links with an atomic
//! claim and click-to-call, the signed post-call webhook, and texts through
//! Twilio Messages (the booking confirmation, the missed-call text-back).
//!
//! Everything outside-facing is delivered through the store's durable outbox
//! by [`worker::Worker`]: items are leased (two nodes never send one item at
//! once), retried with back-off, idempotent by their key (`slack.card:{lead}`,
//! `webhook.post_call:{call_sid}`, …) and left `failed` with their last error
//! when retrying cannot help. Once-per-business-day work (the digest, the
//! escalations) is keyed by the opening instant or the lead, so the outbox's
//! unique key makes it happen once however many nodes notice it is due.
//!
//! This module must not read the wall clock (every decision takes `now`),
//! and never logs phone numbers, names or tokens unmasked.

pub mod cards;
pub mod dial;
pub mod hours;
pub mod links;
pub mod media;
pub mod signature;
pub mod slack;
pub mod sms;
pub mod webhook;
pub mod worker;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use crate::clock::{Clock, Sleeper};
use crate::config::notify::{RepConfig, SlackConfig, SlackMode, SmsConfig};
use crate::pii::Secret;
use crate::store::{ClaimResult, LeadRecord, Store, StoreError};

pub use hours::{in_hours, BusinessHours};
pub use links::{LinkClaims, LinkError, LinkSigner};

/// Outbox kinds this module delivers.
pub mod kind {
    /// A lead was stored (queued by the store with the lead): route its card.
    pub const LEAD_CREATED: &str = "lead.created";
    /// Post one lead card.
    pub const SLACK_CARD: &str = "slack.card";
    /// Edit a lead card after its claim.
    pub const SLACK_UPDATE: &str = "slack.update";
    /// The opening digest.
    pub const SLACK_DIGEST: &str = "slack.digest";
    /// One escalation.
    pub const SLACK_ESCALATION: &str = "slack.escalation";
    /// The post-call webhook.
    pub const POST_CALL: &str = "webhook.post_call";
    /// A booking confirmation text.
    pub const SMS_BOOKING: &str = "sms.booking";
    /// A missed-call text-back.
    pub const SMS_MISSED_CALL: &str = "sms.missed_call";
    /// The lead's note on its CRM contact (the contact upserted first).
    pub const CRM_NOTE: &str = "crm.note";
    /// The call-back task of a tier B or C lead, due by its tier's SLA.
    pub const CRM_TASK: &str = "crm.task";
    /// A booking as a meeting on the attendee's CRM contact.
    pub const CRM_MEETING: &str = "crm.meeting";
    /// All of them.
    pub const ALL: &[&str] = &[
        LEAD_CREATED,
        SLACK_CARD,
        SLACK_UPDATE,
        SLACK_DIGEST,
        SLACK_ESCALATION,
        POST_CALL,
        SMS_BOOKING,
        SMS_MISSED_CALL,
        CRM_NOTE,
        CRM_TASK,
        CRM_MEETING,
    ];
}

/// Everything the notifier is built from (see [`crate::app`]).
#[derive(Debug, Clone)]
pub struct NotifyParts {
    /// Database.
    pub store: Store,
    /// `now`.
    pub clock: Arc<dyn Clock>,
    /// Pacing waits between posts to one channel.
    pub sleeper: Arc<dyn Sleeper>,
    /// Opening hours (in hours or after hours).
    pub hours: BusinessHours,
    /// `server.public_url`, where `/c/{token}` lives.
    pub public_url: String,
    /// Link signer (`FRONTDESK_LINK_SECRET`).
    pub links: Option<LinkSigner>,
    /// Link lifetime.
    pub link_ttl: Duration,
    /// Reps.
    pub reps: Vec<RepConfig>,
    /// Click-to-call (Twilio credentials and a caller ID configured).
    pub dialer: Option<dial::TwilioDialer>,
    /// `[slack]`.
    pub slack_cfg: SlackConfig,
    /// The Slack client (`slack.mode` not `off`).
    pub slack: Option<slack::SlackClient>,
    /// `SLACK_SIGNING_SECRET`.
    pub slack_signing: Option<Secret<String>>,
    /// The post-call webhook.
    pub webhook: Option<webhook::WebhookClient>,
    /// Texts (`[twilio] sms_from` and Twilio credentials configured).
    pub sms: Option<sms::TwilioSms>,
    /// `[sms]`.
    pub sms_cfg: SmsConfig,
    /// `business.name`, for `{business}` in texts.
    pub business_name: String,
    /// The business's own numbers (its Twilio numbers, forwarding and team
    /// phones, the SMS sender): never texted.
    pub own_numbers: Vec<String>,
    /// `[recording] dir`: the calls' own recordings, for the claim page's player.
    pub recording_dir: std::path::PathBuf,
    /// Fetches Twilio voicemail recordings (Twilio credentials configured).
    pub media: Option<media::TwilioMedia>,
    /// The remote CRM leads, tasks and meetings are synced to
    /// (`crm.provider = "hubspot"`; `None`: the local CRM is the store).
    pub crm: Option<Arc<dyn crate::crm::Crm>>,
}

/// The notifier: shared by the HTTP routes and the outbox worker. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct Notify {
    inner: Arc<NotifyParts>,
}

/// Why a claim did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Bad or expired link (403).
    #[error(transparent)]
    Link(#[from] LinkError),
    /// No such lead (404).
    #[error("no such lead")]
    NoLead,
    /// The form named no rep and the link carries none (400).
    #[error("say who is claiming")]
    NoRep,
    /// Links are not configured (404).
    #[error("call-back links are not configured")]
    Disabled,
    /// Storage failed (500).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a claim ended in.
#[derive(Debug, Clone)]
pub struct ClaimOutcome {
    /// The lead.
    pub lead: LeadRecord,
    /// Won or lost, with the winning claim.
    pub result: ClaimResult,
    /// How the call is being placed (only for the winner).
    pub dial: DialOutcome,
}

/// How the rep gets connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialOutcome {
    /// Twilio is ringing the rep's phone (the call's sid).
    Calling(String),
    /// No click-to-call: dial this `tel:` link yourself (with why).
    Tel(String, &'static str),
    /// Lost the claim: nothing to dial.
    None,
}

/// A resolved rep.
#[derive(Debug, Clone)]
pub struct Rep {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Phone, if known.
    pub phone: Option<String>,
}

impl Notify {
    /// The notifier over `parts`.
    pub fn new(parts: NotifyParts) -> Notify {
        Notify {
            inner: Arc::new(parts),
        }
    }

    /// Its parts.
    pub fn parts(&self) -> &NotifyParts {
        &self.inner
    }

    /// The business time zone.
    pub fn tz(&self) -> Tz {
        self.inner.hours.tz()
    }

    /// The signed call-back URL of a lead, valid for the link TTL from `now`.
    pub fn link_for(&self, lead_id: &str, rep: Option<&str>, now: DateTime<Utc>) -> Option<String> {
        let s = self.inner.links.as_ref()?;
        let token = s.sign(lead_id, rep, now + self.inner.link_ttl);
        Some(format!(
            "{}/c/{token}",
            self.inner.public_url.trim_end_matches('/')
        ))
    }

    /// Check a link token at `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<LinkClaims, ClaimError> {
        let s = self.inner.links.as_ref().ok_or(ClaimError::Disabled)?;
        Ok(s.verify(token, now)?)
    }

    /// A rep by id, or a rep known only by the name typed in.
    pub fn rep(&self, id_or_name: &str) -> Option<Rep> {
        let v = id_or_name.trim();
        if v.is_empty() {
            return None;
        }
        if let Some(r) = self.inner.reps.iter().find(|r| r.id == v) {
            return Some(rep_of(r));
        }
        Some(Rep {
            id: v.chars().take(64).collect(),
            name: v.chars().take(64).collect(),
            phone: None,
        })
    }

    /// The rep with this Slack user id, else one named after the Slack user.
    pub fn rep_for_slack(&self, user_id: &str, user_name: &str) -> Rep {
        match self
            .inner
            .reps
            .iter()
            .find(|r| !r.slack_id.is_empty() && r.slack_id == user_id)
        {
            Some(r) => rep_of(r),
            None => Rep {
                id: user_id.chars().take(64).collect(),
                name: if user_name.is_empty() {
                    user_id
                } else {
                    user_name
                }
                .chars()
                .take(64)
                .collect(),
                phone: None,
            },
        }
    }

    /// The configured reps.
    pub fn reps(&self) -> &[RepConfig] {
        &self.inner.reps
    }

    /// Claim `lead_id` for `rep` (first claim wins), then on a win queue the
    /// card's update and start click-to-call.
    pub async fn claim(
        &self,
        lead_id: &str,
        rep: &Rep,
        via: &str,
        now: DateTime<Utc>,
    ) -> Result<ClaimOutcome, ClaimError> {
        let store = &self.inner.store;
        let lead = store.lead_by_id(lead_id).await?.ok_or(ClaimError::NoLead)?;
        let result = store
            .claim_lead(lead_id, &rep.id, &rep.name, via, now)
            .await?;
        let ClaimResult::Won(_) = &result else {
            return Ok(ClaimOutcome {
                lead,
                result,
                dial: DialOutcome::None,
            });
        };
        tracing::info!(lead = %lead_id, rep = %rep.id, via, "lead claimed");
        if self.inner.slack_cfg.mode == SlackMode::Bot {
            let payload = serde_json::json!({"lead_id": lead_id}).to_string();
            store
                .enqueue_outbox(
                    kind::SLACK_UPDATE,
                    &payload,
                    &format!("slack.update:{lead_id}"),
                    now,
                )
                .await?;
        }
        let dial = self.dial(&lead, rep).await;
        if let DialOutcome::Calling(sid) = &dial {
            store
                .record_dial(lead_id, sid, self.inner.clock.now())
                .await?;
        }
        Ok(ClaimOutcome { lead, result, dial })
    }

    async fn dial(&self, lead: &LeadRecord, rep: &Rep) -> DialOutcome {
        let tel = format!("tel:{}", lead.phone.expose());
        let Some(dialer) = &self.inner.dialer else {
            return DialOutcome::Tel(tel, "click-to-call is not configured");
        };
        let Some(phone) = &rep.phone else {
            return DialOutcome::Tel(tel, "no phone number on file for this rep");
        };
        let summary = whisper_text(lead);
        match dialer
            .call(&crate::pii::Pii::new(phone.clone()), &lead.phone, &summary)
            .await
        {
            Ok(sid) => DialOutcome::Calling(sid),
            Err(e) => {
                tracing::warn!(lead = %lead.id, error = %e, "click-to-call failed");
                DialOutcome::Tel(tel, "the call could not be started")
            }
        }
    }
}

impl Notify {
    /// A call is over (its final carrier status, its voicemail, the end of
    /// its media stream when it was not handed to humans): queue its
    /// post-call webhook once, and, when it ended in voicemail or
    /// unanswered, the missed-call text-back (once per caller per
    /// `sms.cooldown_h`). Safe to call more than once per call.
    pub async fn call_finished(
        &self,
        call_sid: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let p = &self.inner;
        if p.webhook.is_some() {
            enqueue_call_finished(&p.store, call_sid, now).await?;
        }
        if p.sms.is_none() || p.sms_cfg.missed_call_text.trim().is_empty() {
            return Ok(());
        }
        let Some(facts) = p.store.call_facts(call_sid, now).await? else {
            return Ok(());
        };
        if !missed(&facts) {
            return Ok(());
        }
        let Some(from) = facts
            .from
            .as_ref()
            .filter(|f| sms::may_text(f.expose(), &p.own_numbers))
        else {
            return Ok(());
        };
        let body = sms::render(
            &p.sms_cfg.missed_call_text,
            &[("business", p.business_name.as_str())],
        );
        let payload = serde_json::json!({"to": from.expose(), "body": body, "call_sid": call_sid});
        let cutoff = now - Duration::hours(i64::from(p.sms_cfg.cooldown_h));
        let queued = p
            .store
            .enqueue_sms_with_cooldown(
                from,
                cutoff,
                kind::SMS_MISSED_CALL,
                &payload.to_string(),
                &format!("sms.missed_call:{call_sid}"),
                now,
            )
            .await?;
        tracing::info!(call_sid, queued, "missed-call text-back");
        Ok(())
    }

    /// Queue the booking confirmation text to the attendee's `phone` (once
    /// per booking id). False when texts are off, the text is empty, or the
    /// number may not be texted.
    pub async fn enqueue_booking_sms(
        &self,
        booking_id: &str,
        owner: &str,
        start: DateTime<Utc>,
        phone: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let p = &self.inner;
        let template = p.sms_cfg.booking_confirmation.trim();
        if p.sms.is_none() || template.is_empty() || !sms::may_text(phone, &p.own_numbers) {
            return Ok(false);
        }
        let when = start
            .with_timezone(&self.tz())
            .format("%a %-d %b at %H:%M")
            .to_string();
        let body = sms::render(
            template,
            &[
                ("business", p.business_name.as_str()),
                ("when", when.as_str()),
                ("owner", owner),
            ],
        );
        let payload = serde_json::json!({"to": phone, "body": body, "booking_id": booking_id});
        p.store
            .enqueue_outbox(
                kind::SMS_BOOKING,
                &payload.to_string(),
                &format!("sms.booking:{booking_id}"),
                now,
            )
            .await
    }
}

impl Notify {
    /// Everything that follows a confirmed booking, through the outbox: the
    /// confirmation text to `phone` and the meeting in the remote CRM. The
    /// booking stands whatever happens here, so failures are logged, not
    /// returned.
    pub async fn enqueue_booking_followups(
        &self,
        booking: &crate::booking::Booking,
        phone: &str,
        name: &str,
        now: DateTime<Utc>,
    ) {
        if let Err(e) = self
            .enqueue_booking_sms(&booking.id, &booking.owner, booking.start, phone, now)
            .await
        {
            tracing::error!(error = %e, booking = %booking.id, "booked, but the confirmation text was not queued");
        }
        if let Err(e) = self
            .enqueue_booking_meeting(
                &booking.id,
                &booking.owner,
                booking.start,
                booking.end,
                phone,
                name,
                now,
            )
            .await
        {
            tracing::error!(error = %e, booking = %booking.id, "booked, but the CRM meeting was not queued");
        }
    }

    /// Queue the booking as a meeting on the attendee's contact in the
    /// remote CRM (once per booking id). False when no remote CRM is on.
    #[allow(clippy::too_many_arguments)]
    pub async fn enqueue_booking_meeting(
        &self,
        booking_id: &str,
        owner: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        phone: &str,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        if self.inner.crm.is_none() {
            return Ok(false);
        }
        let payload = serde_json::json!({
            "booking_id": booking_id, "owner": owner, "phone": phone, "name": name,
            "start_ms": start.timestamp_millis(), "end_ms": end.timestamp_millis(),
        });
        self.inner
            .store
            .enqueue_outbox(
                kind::CRM_MEETING,
                &payload.to_string(),
                &format!("crm.meeting:{booking_id}"),
                now,
            )
            .await
    }
}

/// Queue the post-call webhook of the call `call_sid` (idempotent by call
/// sid). The body is built from the store on the first delivery attempt and
/// kept, so a lead or booking written just after the end is in it and every
/// retry sends the same bytes.
pub async fn enqueue_call_finished(
    store: &Store,
    call_sid: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let payload = serde_json::json!({"call_sid": call_sid, "finished_ms": now.timestamp_millis()});
    store
        .enqueue_outbox(
            kind::POST_CALL,
            &payload.to_string(),
            &format!("webhook.post_call:{call_sid}"),
            now,
        )
        .await
}

/// Whether a finished call went unanswered: a voicemail was left, or
/// neither a human nor the AI took it (and it was not rejected).
pub fn missed(facts: &crate::store::CallFacts) -> bool {
    if facts.has("rejected") {
        return false;
    }
    facts.voicemails > 0
        || !(facts.has("answered")
            || facts.has("screen_accepted")
            || facts.has("ai")
            || facts.caller_turns > 0
            || facts.booking.is_some())
}

fn rep_of(r: &RepConfig) -> Rep {
    Rep {
        id: r.id.clone(),
        name: if r.name.is_empty() {
            r.id.clone()
        } else {
            r.name.clone()
        },
        phone: (!r.phone.is_empty()).then(|| r.phone.clone()),
    }
}

/// What the rep hears before the prospect is dialled.
pub fn whisper_text(lead: &LeadRecord) -> String {
    let name = lead
        .name
        .as_ref()
        .map(|n| n.expose().as_str())
        .unwrap_or("an unnamed caller");
    let mut s = format!(
        "Calling back {name}, tier {}, about {}.",
        lead.tier.as_deref().unwrap_or("unknown"),
        lead.intent
            .as_deref()
            .unwrap_or("an enquiry")
            .replace('_', " ")
    );
    if let Some(n) = &lead.notes {
        s.push(' ');
        s.extend(n.expose().chars().take(400));
    }
    s
}
