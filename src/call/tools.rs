//! The tool runner: side-effecting jobs (hold, confirm, upsert, transfer)
//! run outside the cancellable reply task.
//!
//! A barge-in aborts the reply pipeline (LLM and TTS) at once; it must never
//! abort a booking half-way. So the [`Session`](super::Session) hands each
//! job to the call's [`ToolRunner`], which runs it on its own task to the
//! end and sends the [`ToolOutcome`] back to the call loop as an input. A job
//! runs at most once per `(call_sid, job id)`: the runner ignores a repeated
//! id, and [`StoreBackedTools`] claims the pair in the database first, so a
//! replay on another node (or after a restart) returns the stored outcome
//! instead of booking twice. Jobs also outlive the call: a caller who hangs
//! up while `confirm_booking` runs still gets their booking.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::clock::Clock;
use crate::store::{Store, ToolClaim};

/// One side-effecting job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolJob {
    /// Unique within the call (the model's tool-call id, or the conversation's own).
    pub id: String,
    /// Which tool.
    pub name: String,
    /// Its arguments (validated by the conversation before it asks).
    pub args: serde_json::Value,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ToolOutcome {
    /// The job's id.
    pub id: String,
    /// The tool.
    pub name: String,
    /// Whether it did what was asked.
    pub ok: bool,
    /// What it returned (or the error, as `{"error": …}`).
    pub result: serde_json::Value,
}

impl ToolOutcome {
    /// A failed outcome with a short reason.
    pub fn failed(job: &ToolJob, reason: impl Into<String>) -> Self {
        ToolOutcome {
            id: job.id.clone(),
            name: job.name.clone(),
            ok: false,
            result: serde_json::json!({ "error": reason.into() }),
        }
    }
}

/// Carries out jobs: the action layer (calendar, CRM, transfers) implements it.
#[async_trait]
pub trait ToolExecutor: Send + Sync {
    /// Run `job` of call `call_sid` to the end. Never panics; failures are outcomes.
    async fn execute(&self, call_sid: &str, job: &ToolJob) -> ToolOutcome;
}

/// Knows no tools: every job fails with `unknown tool`.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoTools;

#[async_trait]
impl ToolExecutor for NoTools {
    async fn execute(&self, _call_sid: &str, job: &ToolJob) -> ToolOutcome {
        ToolOutcome::failed(job, format!("unknown tool `{}`", job.name))
    }
}

/// Makes `inner` exactly-once per `(call_sid, job id)` across processes: the
/// pair is claimed in the store before the job runs and its outcome stored
/// after; a repeated job returns the stored outcome (or, while the first run
/// is still going, a `running elsewhere` failure) without running again.
pub struct StoreBackedTools {
    inner: Arc<dyn ToolExecutor>,
    store: Store,
    clock: Arc<dyn Clock>,
}

impl StoreBackedTools {
    /// Wrap `inner`.
    pub fn new(inner: Arc<dyn ToolExecutor>, store: Store, clock: Arc<dyn Clock>) -> Self {
        StoreBackedTools {
            inner,
            store,
            clock,
        }
    }
}

#[async_trait]
impl ToolExecutor for StoreBackedTools {
    async fn execute(&self, call_sid: &str, job: &ToolJob) -> ToolOutcome {
        let now = self.clock.now();
        match self
            .store
            .claim_tool_job(call_sid, &job.id, &job.name, now)
            .await
        {
            Ok(ToolClaim::Claimed) => {}
            Ok(ToolClaim::Finished(stored)) => {
                return serde_json::from_str(&stored)
                    .unwrap_or_else(|_| ToolOutcome::failed(job, "stored outcome unreadable"));
            }
            Ok(ToolClaim::Running) => return ToolOutcome::failed(job, "already running"),
            Err(e) => {
                tracing::warn!(error = %e, tool = %job.name, "cannot claim tool job");
                return ToolOutcome::failed(job, "storage unavailable");
            }
        }
        let outcome = self.inner.execute(call_sid, job).await;
        let text = serde_json::to_string(&outcome).unwrap_or_default();
        if let Err(e) = self
            .store
            .finish_tool_job(call_sid, &job.id, &text, self.clock.now())
            .await
        {
            tracing::warn!(error = %e, tool = %job.name, "cannot store tool outcome");
        }
        outcome
    }
}

/// Runs one call's jobs. Owned by the call's driver.
pub struct ToolRunner {
    call_sid: String,
    executor: Arc<dyn ToolExecutor>,
    results: mpsc::Sender<ToolOutcome>,
    seen: HashSet<String>,
    tracker: TaskTracker,
}

impl ToolRunner {
    /// A runner whose outcomes go to `results`; its tasks are tracked by
    /// `tracker` (the server waits for them when it drains).
    pub fn new(
        call_sid: impl Into<String>,
        executor: Arc<dyn ToolExecutor>,
        results: mpsc::Sender<ToolOutcome>,
        tracker: TaskTracker,
    ) -> Self {
        ToolRunner {
            call_sid: call_sid.into(),
            executor,
            results,
            seen: HashSet::new(),
            tracker,
        }
    }

    /// Start `job` unless a job with its id already ran in this call. The
    /// task runs to the end whatever happens to the call; its outcome is
    /// sent to the call loop if the call is still there to hear it.
    pub fn submit(&mut self, job: ToolJob) -> bool {
        if !self.seen.insert(job.id.clone()) {
            tracing::debug!(job = %job.id, "tool job already ran in this call");
            return false;
        }
        let executor = self.executor.clone();
        let results = self.results.clone();
        let call_sid = self.call_sid.clone();
        self.tracker.spawn(
            async move {
                let outcome = executor.execute(&call_sid, &job).await;
                tracing::info!(tool = %outcome.name, ok = outcome.ok, "tool job finished");
                // The call may be over: the job still counted.
                let _ = results.send(outcome).await;
            }
            .in_current_span(),
        );
        true
    }

    /// Jobs started in this call.
    pub fn started(&self) -> usize {
        self.seen.len()
    }
}
