//! Every call on record: the session's [`Record`]s go through a bounded
//! per-call queue to a writer task, so a slow database never stalls the
//! media loop.
//!
//! The call row is written at `start` (call_sid, from/to, started_at, the
//! carrier's custom parameters), each turn as it happens, tool jobs and the
//! hand-off decision in the call's activity log, and `ended_at` with a status
//! at the end — whether the carrier said `stop`, the socket vanished, the
//! server drained, or the call task itself failed ([`Recorder`]'s drop writes
//! that end if nothing else did). A write that does not fit the queue is
//! dropped and counted (`frontdesk_record_writes_dropped_total`); one the
//! database refuses is counted and logged.
//!
//! With the post-call webhook configured, the end of a call that was not
//! handed to humans also queues its webhook (the routing webhooks queue the
//! others at their final carrier status).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::core::HangupReason;
use super::session::Record;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store::{NewCall, Store};

/// Records queued per call at most.
pub const QUEUE: usize = 256;

/// `(status, reason)` stored for each way a call ends.
pub fn end_status(reason: HangupReason) -> (&'static str, &'static str) {
    match reason {
        HangupReason::CarrierStop => ("completed", "carrier_stop"),
        HangupReason::Completed => ("completed", "conversation_ended"),
        HangupReason::HandOff => ("handed_off", "handoff"),
        HangupReason::MediaTimeout => ("failed", "media_timeout"),
        HangupReason::Disconnected => ("dropped", "socket_closed"),
        HangupReason::Drained => ("drained", "server_shutdown"),
        HangupReason::Failed => ("error", "call_task_failed"),
    }
}

/// What the writer task is sent.
enum Op {
    Write(DateTime<Utc>, Record),
    /// Answer once everything queued before has been written.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The sending side, owned by the call's driver.
pub struct Recorder {
    tx: mpsc::Sender<Op>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    ended: bool,
}

impl Recorder {
    /// Start the writer task for one call on `store` (tracked by `tracker`,
    /// so a draining server waits for the last writes).
    pub fn start(
        store: Store,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        tracker: &tokio_util::task::TaskTracker,
    ) -> Recorder {
        Recorder::start_with(store, clock, metrics, tracker, false)
    }

    /// [`Recorder::start`]; with `post_call`, the end of a call that was
    /// not handed off also queues its post-call webhook.
    pub fn start_with(
        store: Store,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        tracker: &tokio_util::task::TaskTracker,
        post_call: bool,
    ) -> Recorder {
        let (tx, rx) = mpsc::channel(QUEUE);
        tracker.spawn(write_all(store, rx, metrics.clone(), post_call).in_current_span());
        Recorder {
            tx,
            clock,
            metrics,
            ended: false,
        }
    }

    /// Queue `record` with the current time; never waits.
    pub fn record(&mut self, record: Record) {
        if matches!(record, Record::Ended(_)) {
            self.ended = true;
        }
        if self
            .tx
            .try_send(Op::Write(self.clock.now(), record))
            .is_err()
        {
            self.metrics.record_writes_dropped.fetch_add(1, Relaxed);
        }
    }

    /// Wait until everything recorded so far is in the store (at most
    /// `within`): a hand-off must be on record before the stream closes,
    /// because the carrier asks for the next step as soon as it does.
    pub async fn flush(&self, within: std::time::Duration) -> bool {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = tokio::time::timeout(within, self.tx.send(Op::Flush(tx))).await;
        matches!(sent, Ok(Ok(()))) && matches!(tokio::time::timeout(within, rx).await, Ok(Ok(())))
    }
}

impl Drop for Recorder {
    /// A call task that ends without recording an end still closes its
    /// record: `error` when it is unwinding from a panic, else `dropped`
    /// (the task was aborted).
    fn drop(&mut self) {
        if !self.ended {
            let reason = if std::thread::panicking() {
                HangupReason::Failed
            } else {
                HangupReason::Disconnected
            };
            let _ = self
                .tx
                .try_send(Op::Write(self.clock.now(), Record::Ended(reason)));
        }
    }
}

/// The call a writer task is recording.
#[derive(Default)]
struct Written {
    /// Its row id, once `start` is written.
    id: Option<String>,
    /// Its carrier id.
    sid: Option<String>,
    /// Queue the post-call webhook at its end.
    post_call: bool,
}

async fn write_all(
    store: Store,
    mut rx: mpsc::Receiver<Op>,
    metrics: Arc<Metrics>,
    post_call: bool,
) {
    let mut call = Written {
        post_call,
        ..Written::default()
    };
    while let Some(op) = rx.recv().await {
        match op {
            Op::Write(at, record) => {
                // Boxed: the task rests between writes holding only its
                // receiver, not the (large) state of every query future.
                if let Err(e) = Box::pin(write_one(&store, &mut call, at, record)).await {
                    metrics.record_write_errors.fetch_add(1, Relaxed);
                    tracing::warn!(error = %e, "call record write failed");
                }
            }
            Op::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

async fn write_one(
    store: &Store,
    call: &mut Written,
    at: DateTime<Utc>,
    record: Record,
) -> Result<(), crate::store::StoreError> {
    if let Record::Started(info) = &record {
        let id = store
            .upsert_call(
                &NewCall {
                    call_sid: Some(info.call_sid.clone()),
                    contact_id: None,
                    direction: "inbound".into(),
                    from: info.from.clone(),
                    to: info.to.clone(),
                    status: "in-progress".into(),
                },
                at,
            )
            .await?;
        let params: serde_json::Map<String, serde_json::Value> = info
            .params
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.expose().clone())))
            .collect();
        store
            .set_call_params(&id, &serde_json::Value::Object(params).to_string())
            .await?;
        call.id = Some(id);
        call.sid = Some(info.call_sid.clone());
        return Ok(());
    }
    // Nothing can be written for a call whose start was never recorded.
    let Some(id) = call.id.as_deref() else {
        return Ok(());
    };
    match record {
        Record::Started(_) => {}
        Record::Turn {
            seq,
            speaker,
            text,
            heard,
            interrupted,
        } => {
            store
                .put_turn(
                    id,
                    i64::from(seq),
                    speaker,
                    &text,
                    heard.as_deref(),
                    interrupted,
                    at,
                )
                .await?;
        }
        Record::ToolStarted(job) => {
            store
                .add_call_event(id, at, "tool_started", &job.name)
                .await?;
        }
        Record::ToolFinished(o) => {
            let detail = format!("{} {}", o.name, if o.ok { "ok" } else { "failed" });
            store
                .add_call_event(id, at, "tool_finished", &detail)
                .await?;
        }
        Record::Recording(file) => {
            store.add_call_event(id, at, "recording", &file).await?;
        }
        Record::HandOff { target, summary } => {
            let detail = serde_json::json!({ "target": target, "summary": summary }).to_string();
            store.add_call_event(id, at, "handoff", &detail).await?;
        }
        Record::Ended(reason) => {
            let (status, why) = end_status(reason);
            store.end_call(id, status, why, at).await?;
            // A handed-off call goes on with humans: routing queues its
            // webhook at the final carrier status, not at stream close.
            if let (true, Some(sid)) = (call.post_call && status != "handed_off", &call.sid) {
                crate::notify::enqueue_call_finished(store, sid, at).await?;
            }
        }
    }
    Ok(())
}
