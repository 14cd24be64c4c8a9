//! The durable outbox: side effects written with the fact that causes them and
//! delivered later, with retries, by whichever node leases them first.
//!
//! Draining is lease-based: [`Store::lease_outbox`] moves each due item's
//! `next_attempt_ms` to the end of a lease and counts the attempt in one
//! statement whose `WHERE` is re-checked on the locked row, so two nodes never
//! lease the same item at once. A node that dies mid-delivery simply lets the
//! lease run out and the item becomes due again.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{from_ms, new_id, to_ms, Store, StoreError};

/// Delivery state of an outbox item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxStatus {
    /// Waiting for (another) attempt.
    Pending,
    /// Done.
    Delivered,
    /// Given up on after too many attempts.
    Failed,
}

/// One outbox item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    /// Id (UUID text).
    pub id: String,
    /// What to do (`lead.created`, `slack.card`, …).
    pub kind: String,
    /// JSON payload.
    pub payload: String,
    /// Unique: enqueuing the same key twice stores one item.
    pub idempotency_key: String,
    /// Attempts started so far.
    pub attempts: i64,
    /// Not before this instant.
    pub next_attempt_at: DateTime<Utc>,
    /// State.
    pub status: OutboxStatus,
    /// The last delivery error.
    pub last_error: Option<String>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct OutboxRow {
    id: String,
    kind: String,
    payload: String,
    idempotency_key: String,
    attempts: i64,
    next_attempt_ms: i64,
    status: String,
    last_error: Option<String>,
    created_ms: i64,
}

impl OutboxRow {
    fn into_item(self) -> Result<OutboxItem, StoreError> {
        let status = match self.status.as_str() {
            "pending" => OutboxStatus::Pending,
            "delivered" => OutboxStatus::Delivered,
            "failed" => OutboxStatus::Failed,
            _ => {
                return Err(StoreError::Corrupt {
                    table: "outbox",
                    column: "status",
                })
            }
        };
        Ok(OutboxItem {
            next_attempt_at: from_ms(self.next_attempt_ms, "outbox", "next_attempt_ms")?,
            created_at: from_ms(self.created_ms, "outbox", "created_ms")?,
            id: self.id,
            kind: self.kind,
            payload: self.payload,
            idempotency_key: self.idempotency_key,
            attempts: self.attempts,
            status,
            last_error: self.last_error,
        })
    }
}

const COLUMNS: &str =
    "id, kind, payload, idempotency_key, attempts, next_attempt_ms, status, last_error, created_ms";

impl Store {
    /// Queue an item. Returns false when an item with this idempotency key
    /// already exists (nothing is changed then).
    pub async fn enqueue_outbox(
        &self,
        kind: &str,
        payload: &str,
        idempotency_key: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO outbox (id, kind, payload, idempotency_key, attempts, next_attempt_ms, status, created_ms) \
                 VALUES ($1, $2, $3, $4, 0, $5, 'pending', $5) \
                 ON CONFLICT (idempotency_key) DO NOTHING",
            )
            .bind(new_id())
            .bind(kind)
            .bind(payload)
            .bind(idempotency_key)
            .bind(to_ms(now))
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Lease up to `limit` due items until `lease_until`, counting an attempt
    /// on each. Only the caller that leased an item may deliver it.
    pub async fn lease_outbox(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let sql = format!(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = $2 \
             WHERE status = 'pending' AND next_attempt_ms <= $1 AND id IN ( \
               SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_ms <= $1 \
               ORDER BY next_attempt_ms, id LIMIT $3) \
             RETURNING {COLUMNS}"
        );
        let rows: Vec<OutboxRow> = on_pool!(self, |p| {
            sqlx::query_as(&sql)
                .bind(to_ms(now))
                .bind(to_ms(lease_until))
                .bind(limit.max(0))
                .fetch_all(p)
                .await?
        });
        rows.into_iter().map(OutboxRow::into_item).collect()
    }

    /// [`Store::lease_outbox`] restricted to these kinds, so each consumer
    /// (the notifier, a CRM sync) leases only what it can deliver.
    pub async fn lease_outbox_kinds(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
        kinds: &[&str],
    ) -> Result<Vec<OutboxItem>, StoreError> {
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = (0..kinds.len()).map(|i| format!("${}", i + 4)).collect();
        let list = list.join(", ");
        let sql = format!(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = $2 \
             WHERE status = 'pending' AND next_attempt_ms <= $1 AND id IN ( \
               SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_ms <= $1 \
               AND kind IN ({list}) ORDER BY next_attempt_ms, id LIMIT $3) \
             RETURNING {COLUMNS}"
        );
        let rows: Vec<OutboxRow> = on_pool!(self, |p| {
            let mut q = sqlx::query_as(&sql)
                .bind(to_ms(now))
                .bind(to_ms(lease_until))
                .bind(limit.max(0));
            for k in kinds {
                q = q.bind(*k);
            }
            q.fetch_all(p).await?
        });
        rows.into_iter().map(OutboxRow::into_item).collect()
    }

    /// Put a leased item back without counting the attempt against it (a
    /// rate limit or a pacing wait, not a failure): due again at `at`.
    pub async fn outbox_defer(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        on_pool!(self, |p| {
            sqlx::query(
                "UPDATE outbox SET next_attempt_ms = $2, attempts = attempts - 1 \
                 WHERE id = $1 AND status = 'pending' AND attempts > 0",
            )
            .bind(id)
            .bind(to_ms(at))
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(())
    }

    /// Mark a leased item delivered.
    pub async fn outbox_delivered(&self, id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        on_pool!(self, |p| {
            sqlx::query(
                "UPDATE outbox SET status = 'delivered', delivered_ms = $2, last_error = NULL WHERE id = $1",
            )
            .bind(id)
            .bind(to_ms(now))
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(())
    }

    /// Record a failed attempt: retry at `retry_at`, or give up (`None`).
    pub async fn outbox_failed(
        &self,
        id: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        on_pool!(self, |p| {
            sqlx::query(
                "UPDATE outbox SET last_error = $2, \
                   status = CASE WHEN CAST($3 AS BIGINT) IS NULL THEN 'failed' ELSE 'pending' END, \
                   next_attempt_ms = COALESCE(CAST($3 AS BIGINT), next_attempt_ms) \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(error)
            .bind(retry_at.map(to_ms))
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(())
    }

    /// Items by kind, oldest first (for operators and tests).
    pub async fn outbox_items(&self, kind: &str) -> Result<Vec<OutboxItem>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM outbox WHERE kind = $1 ORDER BY created_ms, id");
        let rows: Vec<OutboxRow> = on_pool!(self, |p| sqlx::query_as(&sql)
            .bind(kind)
            .fetch_all(p)
            .await?);
        rows.into_iter().map(OutboxRow::into_item).collect()
    }

    /// Replace a leased item's payload (an item queued as a reference, such
    /// as a finished call's sid, is frozen into the body it sends on its
    /// first attempt, so every retry sends the same bytes).
    pub async fn outbox_set_payload(&self, id: &str, payload: &str) -> Result<(), StoreError> {
        on_pool!(self, |p| {
            sqlx::query("UPDATE outbox SET payload = $2 WHERE id = $1")
                .bind(id)
                .bind(payload)
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(())
    }

    /// Items in `status` (every status when `None`), newest first, at most
    /// `limit`: what operators look at when a delivery finally failed.
    pub async fn outbox_by_status(
        &self,
        status: Option<OutboxStatus>,
        limit: i64,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM outbox \
             WHERE (CAST($1 AS TEXT) IS NULL OR status = CAST($1 AS TEXT)) \
             ORDER BY created_ms DESC, id LIMIT $2"
        );
        let status = status.map(|s| match s {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Delivered => "delivered",
            OutboxStatus::Failed => "failed",
        });
        let rows: Vec<OutboxRow> = on_pool!(self, |p| sqlx::query_as(&sql)
            .bind(status)
            .bind(limit.max(0))
            .fetch_all(p)
            .await?);
        rows.into_iter().map(OutboxRow::into_item).collect()
    }
}
