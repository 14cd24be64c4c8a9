//! What a live call session writes: its turns as they happen, how it ended,
//! and the exactly-once ledger of its tool jobs.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::records::opt_expose;
use super::{from_ms, new_id, to_ms, NewCall, Store, StoreError};
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

/// One write of a live call's record, for [`Store::write_call_batch`]. `key`
/// names the call within the writer (its row id is known only once its
/// `Start` is written).
#[derive(Debug, Clone)]
pub enum CallWrite {
    /// The call row (or the existing row with its `call_sid`) with the
    /// carrier's custom parameters (a JSON object).
    Start {
        /// The writer's name for the call.
        key: u64,
        /// The row.
        call: NewCall,
        /// Custom parameters, JSON.
        params: String,
    },
    /// Turn `seq` (rewritten if it exists: an amended caller turn).
    Turn {
        /// The writer's name for the call.
        key: u64,
        /// Order within the call.
        seq: i64,
        /// Who spoke.
        role: Speaker,
        /// The words.
        text: String,
        /// For an interrupted receptionist turn, what the caller heard.
        heard: Option<String>,
        /// The caller cut the receptionist off.
        interrupted: bool,
    },
    /// One entry of the call's activity log.
    Event {
        /// The writer's name for the call.
        key: u64,
        /// What happened.
        kind: &'static str,
        /// Its detail.
        detail: String,
    },
    /// The end (a call that already has one keeps the first).
    End {
        /// The writer's name for the call.
        key: u64,
        /// Final status.
        status: &'static str,
        /// Why it ended.
        reason: &'static str,
    },
}

impl CallWrite {
    /// The writer's name for the call this write belongs to.
    pub fn key(&self) -> u64 {
        match self {
            CallWrite::Start { key, .. }
            | CallWrite::Turn { key, .. }
            | CallWrite::Event { key, .. }
            | CallWrite::End { key, .. } => *key,
        }
    }
}

impl Store {
    /// Write many calls' records in one transaction (one commit, one trip
    /// through the pool, instead of one per turn). `ids` maps the writer's
    /// call keys to row ids: a `Start` adds its call, an `End` removes it,
    /// and writes for a key with no id (its start was never written) are
    /// skipped. On error nothing is committed and `ids` is unchanged, so
    /// the caller can retry the writes one by one.
    pub async fn write_call_batch(
        &self,
        batch: &[(DateTime<Utc>, CallWrite)],
        ids: &mut HashMap<u64, String>,
    ) -> Result<(), StoreError> {
        let mut started: Vec<(u64, String)> = Vec::new();
        let mut ended: Vec<u64> = Vec::new();
        let lookup = |started: &[(u64, String)], key: u64| -> Option<String> {
            started
                .iter()
                .rev()
                .find(|(k, _)| *k == key)
                .map(|(_, id)| id.clone())
                .or_else(|| ids.get(&key).cloned())
        };
        in_tx!(self, |tx| {
            for (at, write) in batch {
                if let CallWrite::Start { key, call, params } = write {
                    let (id,): (String,) = sqlx::query_as(
                        "INSERT INTO calls (id, call_sid, contact_id, direction, from_e164, to_e164, \
                           status, started_ms, params) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                         ON CONFLICT (call_sid) DO UPDATE SET \
                           contact_id = COALESCE(calls.contact_id, excluded.contact_id), \
                           params = excluded.params \
                         RETURNING id",
                    )
                    .bind(new_id())
                    .bind(call.call_sid.clone())
                    .bind(call.contact_id.clone())
                    .bind(&call.direction)
                    .bind(opt_expose(&call.from))
                    .bind(opt_expose(&call.to))
                    .bind(&call.status)
                    .bind(to_ms(*at))
                    .bind(params)
                    .fetch_one(&mut *tx)
                    .await?;
                    started.push((*key, id));
                    continue;
                }
                let Some(id) = lookup(&started, write.key()) else {
                    continue;
                };
                match write {
                    CallWrite::Start { .. } => {}
                    CallWrite::Turn {
                        seq,
                        role,
                        text,
                        heard,
                        interrupted,
                        ..
                    } => {
                        sqlx::query(
                            "INSERT INTO call_turns (call_id, seq, role, text, heard, interrupted, at_ms) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7) \
                             ON CONFLICT (call_id, seq) DO UPDATE SET \
                               role = excluded.role, text = excluded.text, heard = excluded.heard, \
                               interrupted = excluded.interrupted, at_ms = excluded.at_ms",
                        )
                        .bind(&id)
                        .bind(*seq)
                        .bind(role.as_str())
                        .bind(text)
                        .bind(heard.as_deref())
                        .bind(*interrupted)
                        .bind(to_ms(*at))
                        .execute(&mut *tx)
                        .await?;
                    }
                    CallWrite::Event { kind, detail, .. } => {
                        sqlx::query(
                            "INSERT INTO call_events (id, call_id, at_ms, kind, detail) \
                             VALUES ($1, $2, $3, $4, $5)",
                        )
                        .bind(new_id())
                        .bind(&id)
                        .bind(to_ms(*at))
                        .bind(*kind)
                        .bind(detail)
                        .execute(&mut *tx)
                        .await?;
                    }
                    CallWrite::End {
                        key,
                        status,
                        reason,
                    } => {
                        sqlx::query(
                            "UPDATE calls SET status = $2, end_reason = $3, ended_ms = $4 \
                             WHERE id = $1 AND ended_ms IS NULL",
                        )
                        .bind(&id)
                        .bind(*status)
                        .bind(*reason)
                        .bind(to_ms(*at))
                        .execute(&mut *tx)
                        .await?;
                        ended.push(*key);
                    }
                }
            }
        });
        ids.extend(started);
        for key in ended {
            ids.remove(&key);
        }
        Ok(())
    }

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
