//! Slack messages as data: the lead card (Block Kit plus the plain-text
//! fallback Slack shows in notifications), the claimed card, the opening
//! digest and the escalation. Pure functions; nothing here sends.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{json, Value};

use crate::store::LeadRecord;

/// A Slack message body: `text` (always sent) and `blocks`.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackMessage {
    /// The plain-text fallback.
    pub text: String,
    /// Block Kit blocks.
    pub blocks: Value,
}

/// Slack's limits (providers.md §6).
const SECTION_TEXT_MAX: usize = 3000;
const FIELD_MAX: usize = 2000;

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Escape the three characters Slack's `mrkdwn` treats as control text.
pub fn mrkdwn_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// What a card shows of a lead.
#[derive(Debug, Clone)]
pub struct CardLead<'a> {
    /// The lead.
    pub lead: &'a LeadRecord,
    /// The signed call-back link.
    pub link: &'a str,
    /// The business's zone (for the call time).
    pub tz: Tz,
    /// Tier B in hours: flagged as priority.
    pub priority: bool,
    /// Posted after hours (to the overnight channel).
    pub after_hours: bool,
}

fn name(l: &LeadRecord) -> String {
    l.name
        .as_ref()
        .map(|n| n.expose().clone())
        .unwrap_or_else(|| "Unknown caller".into())
}

fn tier(l: &LeadRecord) -> &str {
    l.tier.as_deref().unwrap_or("?")
}

fn local(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%a %d %b %H:%M %Z").to_string()
}

/// A lead card turned into the FYI an assigned rep gets for a tier A lead
/// (a booking: nothing to chase, just to know).
pub fn fyi(mut msg: SlackMessage, lead: &LeadRecord) -> SlackMessage {
    msg.text = format!("FYI, booked for you: {}", msg.text);
    if let Some(h) = msg.blocks.get_mut(0) {
        *h = json!({"type": "header", "text": {"type": "plain_text",
            "text": format!("FYI: tier {} lead for you", tier(lead))}});
    }
    msg
}

/// The lead card.
pub fn lead_card(c: &CardLead<'_>) -> SlackMessage {
    let l = c.lead;
    let intent = l.intent.as_deref().unwrap_or("unknown");
    let summary = l
        .notes
        .as_ref()
        .map(|n| n.expose().clone())
        .unwrap_or_default();
    let header = if c.priority {
        format!(":rotating_light: PRIORITY lead (tier {})", tier(l))
    } else if c.after_hours {
        format!("Overnight lead (tier {})", tier(l))
    } else {
        format!("New lead (tier {})", tier(l))
    };
    let text = format!(
        "{}{}: {} — {} — tier {} — called {}",
        if c.priority { "PRIORITY " } else { "" },
        if c.after_hours {
            "Overnight lead"
        } else {
            "New lead"
        },
        name(l),
        intent,
        tier(l),
        local(l.created_at, c.tz)
    );
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": clip(&header, 150)}}),
        json!({"type": "section", "fields": [
            {"type": "mrkdwn", "text": clip(&format!("*Caller*\n{}", mrkdwn_escape(&name(l))), FIELD_MAX)},
            {"type": "mrkdwn", "text": clip(&format!("*Intent*\n{}", mrkdwn_escape(intent)), FIELD_MAX)},
            {"type": "mrkdwn", "text": format!("*Tier*\n{}", mrkdwn_escape(tier(l)))},
            {"type": "mrkdwn", "text": format!("*Called*\n{}", local(l.created_at, c.tz))},
        ]}),
    ];
    if !summary.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": clip(&mrkdwn_escape(&summary), SECTION_TEXT_MAX)}}));
    }
    blocks.push(
        json!({"type": "actions", "block_id": format!("lead:{}", l.id), "elements": [
            {"type": "button", "action_id": "call_back", "style": "primary",
             "text": {"type": "plain_text", "text": "Call back now"}, "url": c.link},
            {"type": "button", "action_id": "claim_lead",
             "text": {"type": "plain_text", "text": "Claim"}, "value": l.id},
        ]}),
    );
    SlackMessage {
        text,
        blocks: Value::Array(blocks),
    }
}

/// The card after a claim: the buttons replaced by who claimed it and when.
pub fn claimed_card(
    card: &SlackMessage,
    rep_name: &str,
    at: DateTime<Utc>,
    tz: Tz,
) -> SlackMessage {
    let when = at.with_timezone(&tz).format("%H:%M").to_string();
    let line = format!("Claimed by {} at {when}", rep_name);
    let mut blocks: Vec<Value> = card
        .blocks
        .as_array()
        .map(|b| {
            b.iter()
                .filter(|b| b.get("type").and_then(Value::as_str) != Some("actions"))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    blocks.push(json!({"type": "context", "elements": [
        {"type": "mrkdwn", "text": format!(":white_check_mark: {}", mrkdwn_escape(&line))}]}));
    SlackMessage {
        text: format!("{line} — {}", card.text),
        blocks: Value::Array(blocks),
    }
}

/// Sort rank of a tier in the digest: B first, then A, C, D, unknown.
pub fn tier_rank(tier: Option<&str>) -> u8 {
    match tier {
        Some("B") => 0,
        Some("A") => 1,
        Some("C") => 2,
        Some("D") => 3,
        _ => 4,
    }
}

/// One digest line.
#[derive(Debug, Clone)]
pub struct DigestEntry {
    /// The lead.
    pub lead: LeadRecord,
    /// Its signed link.
    pub link: String,
    /// Who claimed it already, if anyone.
    pub claimed_by: Option<String>,
}

/// The opening digest: every after-hours lead since the last opening, tier
/// B first, oldest first within a tier.
pub fn digest(mut entries: Vec<DigestEntry>, tz: Tz) -> SlackMessage {
    entries.sort_by(|a, b| {
        tier_rank(a.lead.tier.as_deref())
            .cmp(&tier_rank(b.lead.tier.as_deref()))
            .then(a.lead.created_at.cmp(&b.lead.created_at))
            .then(a.lead.id.cmp(&b.lead.id))
    });
    let mut lines = Vec::new();
    for e in &entries {
        let status = match &e.claimed_by {
            Some(r) => format!("claimed by {}", mrkdwn_escape(r)),
            None => format!("<{}|Call back now>", e.link),
        };
        lines.push(format!(
            "• *{}* — {} — {} — {} — {}",
            mrkdwn_escape(tier(&e.lead)),
            mrkdwn_escape(&name(&e.lead)),
            mrkdwn_escape(e.lead.intent.as_deref().unwrap_or("unknown")),
            local(e.lead.created_at, tz),
            status
        ));
    }
    let title = format!(
        "Overnight digest: {} lead(s) since the last opening",
        entries.len()
    );
    let mut blocks = vec![json!({"type": "header", "text": {"type": "plain_text", "text": title}})];
    // 50 blocks at most: chunk lines into sections of up to 3000 chars.
    let mut chunk = String::new();
    for line in &lines {
        if chunk.len() + line.len() + 1 > SECTION_TEXT_MAX && !chunk.is_empty() {
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": chunk}}));
            chunk = String::new();
        }
        if !chunk.is_empty() {
            chunk.push('\n');
        }
        chunk.push_str(&clip(line, SECTION_TEXT_MAX));
    }
    if !chunk.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": chunk}}));
    }
    blocks.truncate(50);
    let text = std::iter::once(title.clone())
        .chain(entries.iter().map(|e| {
            format!(
                "{} {} {}",
                tier(&e.lead),
                name(&e.lead),
                e.lead.intent.as_deref().unwrap_or("")
            )
        }))
        .collect::<Vec<_>>()
        .join("\n");
    SlackMessage {
        text: clip(&text, 3000),
        blocks: Value::Array(blocks),
    }
}

/// The escalation of one unclaimed overnight tier B lead.
pub fn escalation(
    lead: &LeadRecord,
    link: &str,
    mention: &str,
    minutes: u32,
    tz: Tz,
) -> SlackMessage {
    let who = if mention.is_empty() {
        String::new()
    } else {
        format!("{mention} ")
    };
    let text = format!(
        "{who}Tier B lead {} ({}) from {} is still unclaimed {minutes} min after opening",
        name(lead),
        lead.intent.as_deref().unwrap_or("unknown"),
        local(lead.created_at, tz)
    );
    SlackMessage {
        blocks: json!([
            {"type": "section", "text": {"type": "mrkdwn", "text": format!(
                ":warning: {who}*Tier B lead still unclaimed* {minutes} min after opening: {} — {} — called {}",
                mrkdwn_escape(&name(lead)),
                mrkdwn_escape(lead.intent.as_deref().unwrap_or("unknown")),
                local(lead.created_at, tz))}},
            {"type": "actions", "block_id": format!("lead:{}", lead.id), "elements": [
                {"type": "button", "action_id": "call_back", "style": "danger",
                 "text": {"type": "plain_text", "text": "Call back now"}, "url": link},
                {"type": "button", "action_id": "claim_lead",
                 "text": {"type": "plain_text", "text": "Claim"}, "value": lead.id}]}
        ]),
        text,
    }
}
