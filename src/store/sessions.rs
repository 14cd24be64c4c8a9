//! What a live call session writes: its turns as they happen, how it ended,
//! and the exactly-once ledger of its tool jobs.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{from_ms, to_ms, Store, StoreError};
use crate::pii::Pii;

/// Who spoke a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    /// The person who called.
    Caller,
    /// frontdesk.
    Receptionist,
}

impl Speaker {
    fn as_str(self) -> &'static str {
        match self {
            Speaker::Caller => "caller",
            Speaker::Receptionist => "receptionist",
        }
    }
}

/// One stored turn.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TurnRow {
    /// Order within the call.
    pub seq: i64,
    /// Who spoke.
    pub role: Speaker,
    /// What was said (personal data).
    pub text: Pii<String>,
    /// For an interrupted receptionist turn: the part the caller heard.
    pub heard: Option<Pii<String>>,
    /// The caller cut the receptionist off.
    pub interrupted: bool,
    /// When it ended.
    pub at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct TurnDbRow {
    seq: i64,
    role: String,
    text: String,
    heard: Option<String>,
    interrupted: bool,
    at_ms: i64,
}

/// Whether a tool job may run here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolClaim {
    /// This caller owns the job now: run it, then store its outcome.
    Claimed,
    /// Someone claimed it and has not finished.
    Running,
    /// It already ran; here is its stored outcome (JSON).
    Finished(String),
}

impl Store {
    /// Record the carrier's custom parameters (a JSON object) of a call.
    pub async fn set_call_params(&self, call_id: &str, params: &str) -> Result<(), StoreError> {
        on_pool!(self, |p| {
            sqlx::query("UPDATE calls SET params = $2 WHERE id = $1")
                .bind(call_id)
                .bind(params)
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(())
    }

    /// The call is over: its status, why, and when. A call that already has
    /// an end keeps the first one.
    pub async fn end_call(
        &self,
        call_id: &str,
        status: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, |p| {
            sqlx::query(
                "UPDATE calls SET status = $2, end_reason = $3, ended_ms = $4 \
                 WHERE id = $1 AND ended_ms IS NULL",
            )
            .bind(call_id)
            .bind(status)
            .bind(reason)
            .bind(to_ms(at))
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Write turn `seq` of a call (rewriting it if it exists: an amended caller turn).
    #[allow(clippy::too_many_arguments)]
    pub async fn put_turn(
        &self,
        call_id: &str,
        seq: i64,
        role: Speaker,
        text: &str,
        heard: Option<&str>,
        interrupted: bool,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO call_turns (call_id, seq, role, text, heard, interrupted, at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (call_id, seq) DO UPDATE SET \
                   role = excluded.role, text = excluded.text, heard = excluded.heard, \
                   interrupted = excluded.interrupted, at_ms = excluded.at_ms",
            )
            .bind(call_id)
            .bind(seq)
            .bind(role.as_str())
            .bind(text)
            .bind(heard)
            .bind(interrupted)
            .bind(to_ms(at))
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(())
    }

    /// A call's turns in order.
    pub async fn turns(&self, call_id: &str) -> Result<Vec<TurnRow>, StoreError> {
        let rows: Vec<TurnDbRow> = on_pool!(self, |p| {
            sqlx::query_as(
                "SELECT seq, role, text, heard, interrupted, at_ms FROM call_turns \
                 WHERE call_id = $1 ORDER BY seq",
            )
            .bind(call_id)
            .fetch_all(p)
            .await?
        });
        rows.into_iter()
            .map(|r| {
                Ok(TurnRow {
                    seq: r.seq,
                    role: if r.role == "caller" {
                        Speaker::Caller
                    } else {
                        Speaker::Receptionist
                    },
                    text: Pii::new(r.text),
                    heard: r.heard.map(Pii::new),
                    interrupted: r.interrupted,
                    at: from_ms(r.at_ms, "call_turns", "at_ms")?,
                })
            })
            .collect()
    }

    /// Claim tool job `(call_sid, job_id)` before running it.
    pub async fn claim_tool_job(
        &self,
        call_sid: &str,
        job_id: &str,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<ToolClaim, StoreError> {
        let claimed = on_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO tool_jobs (call_sid, job_id, name, status, created_ms) \
                 VALUES ($1, $2, $3, 'running', $4) ON CONFLICT (call_sid, job_id) DO NOTHING",
            )
            .bind(call_sid)
            .bind(job_id)
            .bind(name)
            .bind(to_ms(now))
            .execute(p)
            .await?
            .rows_affected()
        });
        if claimed == 1 {
            return Ok(ToolClaim::Claimed);
        }
        let (status, outcome): (String, Option<String>) = on_pool!(self, |p| {
            sqlx::query_as(
                "SELECT status, outcome FROM tool_jobs WHERE call_sid = $1 AND job_id = $2",
            )
            .bind(call_sid)
            .bind(job_id)
            .fetch_one(p)
            .await?
        });
        Ok(match (status.as_str(), outcome) {
            ("finished", Some(o)) => ToolClaim::Finished(o),
            _ => ToolClaim::Running,
        })
    }

    /// Store the outcome of a claimed job.
    pub async fn finish_tool_job(
        &self,
        call_sid: &str,
        job_id: &str,
        outcome: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_pool!(self, |p| {
            sqlx::query(
                "UPDATE tool_jobs SET status = 'finished', outcome = $3, finished_ms = $4 \
                 WHERE call_sid = $1 AND job_id = $2",
            )
            .bind(call_sid)
            .bind(job_id)
            .bind(outcome)
            .bind(to_ms(now))
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(())
    }
}
