//! Who called a lead back: the first claim of a lead (atomic: the primary key
//! decides), when click-to-call dialled, and where the lead's Slack card went.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{from_ms, to_ms, Store, StoreError};

/// A lead's claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeadClaim {
    /// The lead.
    pub lead_id: String,
    /// Rep id.
    pub rep_id: String,
    /// Rep display name.
    pub rep_name: String,
    /// `link` or `slack`.
    pub via: String,
    /// When the claim was made.
    pub claimed_at: DateTime<Utc>,
    /// When click-to-call started the rep's leg, if it did.
    pub dialed_at: Option<DateTime<Utc>>,
    /// The carrier's id of that call.
    pub dial_sid: Option<String>,
}

/// The result of [`Store::claim_lead`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimResult {
    /// This call made the claim.
    Won(LeadClaim),
    /// Someone claimed it first: their claim.
    Taken(LeadClaim),
}

/// Where a lead's Slack card went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeadCard {
    /// The lead.
    pub lead_id: String,
    /// Channel id (or `webhook`).
    pub channel: String,
    /// Message `ts` (bot mode only).
    pub ts: Option<String>,
    /// Posted after hours.
    pub after_hours: bool,
    /// When Slack accepted it.
    pub posted_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    lead_id: String,
    rep_id: String,
    rep_name: String,
    via: String,
    claimed_ms: i64,
    dialed_ms: Option<i64>,
    dial_sid: Option<String>,
}

impl ClaimRow {
    fn into_claim(self) -> Result<LeadClaim, StoreError> {
        Ok(LeadClaim {
            claimed_at: from_ms(self.claimed_ms, "lead_claims", "claimed_ms")?,
            dialed_at: self
                .dialed_ms
                .map(|ms| from_ms(ms, "lead_claims", "dialed_ms"))
                .transpose()?,
            lead_id: self.lead_id,
            rep_id: self.rep_id,
            rep_name: self.rep_name,
            via: self.via,
            dial_sid: self.dial_sid,
        })
    }
}

#[derive(sqlx::FromRow)]
struct CardRow {
    lead_id: String,
    channel: String,
    ts: Option<String>,
    after_hours: bool,
    posted_ms: i64,
}

const CLAIM_COLUMNS: &str = "lead_id, rep_id, rep_name, via, claimed_ms, dialed_ms, dial_sid";

impl Store {
    /// Claim a lead for a rep. The first claim wins; every later one gets
    /// [`ClaimResult::Taken`] with the first claimer and changes nothing.
    pub async fn claim_lead(
        &self,
        lead_id: &str,
        rep_id: &str,
        rep_name: &str,
        via: &str,
        now: DateTime<Utc>,
    ) -> Result<ClaimResult, StoreError> {
        let inserted = on_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO lead_claims (lead_id, rep_id, rep_name, via, claimed_ms) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (lead_id) DO NOTHING",
            )
            .bind(lead_id)
            .bind(rep_id)
            .bind(rep_name)
            .bind(via)
            .bind(to_ms(now))
            .execute(p)
            .await?
            .rows_affected()
        }) == 1;
        let claim = self.lead_claim(lead_id).await?.ok_or(StoreError::Corrupt {
            table: "lead_claims",
            column: "lead_id",
        })?;
        Ok(if inserted {
            ClaimResult::Won(claim)
        } else {
            ClaimResult::Taken(claim)
        })
    }

    /// The claim of a lead, if any.
    pub async fn lead_claim(&self, lead_id: &str) -> Result<Option<LeadClaim>, StoreError> {
        let sql = format!("SELECT {CLAIM_COLUMNS} FROM lead_claims WHERE lead_id = $1");
        let row: Option<ClaimRow> = on_pool!(self, |p| sqlx::query_as(&sql)
            .bind(lead_id)
            .fetch_optional(p)
            .await?);
        row.map(ClaimRow::into_claim).transpose()
    }

    /// Record that click-to-call dialled for a claimed lead (the first dial
    /// time is kept).
    pub async fn record_dial(
        &self,
        lead_id: &str,
        dial_sid: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_pool!(self, |p| {
            sqlx::query(
                "UPDATE lead_claims SET dialed_ms = COALESCE(dialed_ms, $2), \
                 dial_sid = COALESCE(dial_sid, $3) WHERE lead_id = $1",
            )
            .bind(lead_id)
            .bind(to_ms(now))
            .bind(dial_sid)
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(())
    }

    /// Remember where a lead's card was posted (the first post is kept).
    pub async fn record_card(
        &self,
        lead_id: &str,
        channel: &str,
        ts: Option<&str>,
        after_hours: bool,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO lead_cards (lead_id, channel, ts, after_hours, posted_ms) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (lead_id) DO NOTHING",
            )
            .bind(lead_id)
            .bind(channel)
            .bind(ts)
            .bind(after_hours)
            .bind(to_ms(now))
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(())
    }

    /// Where a lead's card went, if it was posted.
    pub async fn lead_card(&self, lead_id: &str) -> Result<Option<LeadCard>, StoreError> {
        let row: Option<CardRow> = on_pool!(self, |p| {
            sqlx::query_as(
                "SELECT lead_id, channel, ts, after_hours, posted_ms FROM lead_cards WHERE lead_id = $1",
            )
            .bind(lead_id)
            .fetch_optional(p)
            .await?
        });
        row.map(|r| {
            Ok(LeadCard {
                posted_at: from_ms(r.posted_ms, "lead_cards", "posted_ms")?,
                lead_id: r.lead_id,
                channel: r.channel,
                ts: r.ts,
                after_hours: r.after_hours,
            })
        })
        .transpose()
    }
}
