//! Every call on record: the session's [`Record`]s go through a bounded
//! per-call allowance to one writer task for the whole process, so a slow
//! database never stalls the media loop and the store sees one transaction
//! per batch, not one statement per turn.
//!
//! The call row is written at `start` (call_sid, from/to, started_at, the
//! carrier's custom parameters, in one statement), each turn as it happens,
//! tool jobs and the hand-off decision in the call's activity log, and
//! `ended_at` with a status at the end — whether the carrier said `stop`, the
//! socket vanished, the server drained, or the call task itself failed
//! ([`Recorder`]'s drop writes that end if nothing else did).
//!
//! The writer gathers what every call queued for at most [`BATCH_WINDOW`]
//! (or [`BATCH_MAX`] writes, or until someone waits for a flush) and writes it
//! in one transaction; if the database refuses the batch, each write is
//! retried on its own so one bad row cannot lose the others. A write that
//! does not fit its call's allowance or the shared queue is dropped and
//! counted (`frontdesk_record_writes_dropped_total`); one the database
//! refuses is counted and logged (`frontdesk_record_write_errors_total`).
//!
//! With the post-call webhook configured, the written end of a call that was
//! not handed to humans also queues its webhook (the routing webhooks queue
//! the others at their final carrier status).

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::core::HangupReason;
use super::session::Record;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store::{CallWrite, NewCall, Store};

/// Records one call may have queued at most.
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

/// Longest time a record waits for its batch.
pub const BATCH_WINDOW: Duration = Duration::from_millis(100);

/// Most writes in one transaction.
pub const BATCH_MAX: usize = 512;

/// Writes queued for the whole process at most.
pub const SHARED_QUEUE: usize = 16 * 1024;

/// What the writer task is sent.
enum Msg {
    Write {
        at: DateTime<Utc>,
        write: CallWrite,
        /// The call's count of queued writes, given back once written.
        pending: Arc<AtomicUsize>,
    },
    /// Answer once everything queued before has been written.
    Flush(oneshot::Sender<()>),
}

/// The process's call-record writer: cheap to clone; each call gets a
/// [`Recorder`] from it.
#[derive(Clone)]
pub struct RecordWriter {
    tx: mpsc::Sender<Msg>,
    next_key: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for RecordWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordWriter").finish_non_exhaustive()
    }
}

impl RecordWriter {
    /// Start the writer task on `store` (within a Tokio runtime). It runs
    /// until the last handle and recorder are gone; a draining server calls
    /// [`RecordWriter::flush`] once its calls have ended. With `post_call`,
    /// the end of a call not handed off queues its post-call webhook.
    pub fn start(store: Store, metrics: Arc<Metrics>, post_call: bool) -> RecordWriter {
        let (tx, rx) = mpsc::channel(SHARED_QUEUE);
        tokio::spawn(write_all(store, rx, metrics.clone(), post_call).in_current_span());
        RecordWriter {
            tx,
            next_key: Arc::new(AtomicU64::new(1)),
            metrics,
        }
    }

    /// A recorder for one new call.
    pub fn recorder(&self, clock: Arc<dyn Clock>) -> Recorder {
        Recorder {
            tx: self.tx.clone(),
            key: self.next_key.fetch_add(1, Relaxed),
            pending: Arc::new(AtomicUsize::new(0)),
            clock,
            metrics: self.metrics.clone(),
            started: false,
            ended: false,
        }
    }

    /// Wait until everything queued so far is in the store (at most `within`).
    pub async fn flush(&self, within: Duration) -> bool {
        flush_on(&self.tx, within).await
    }
}

async fn flush_on(tx: &mpsc::Sender<Msg>, within: Duration) -> bool {
    let (done, rx) = oneshot::channel();
    let sent = tokio::time::timeout(within, tx.send(Msg::Flush(done))).await;
    matches!(sent, Ok(Ok(()))) && matches!(tokio::time::timeout(within, rx).await, Ok(Ok(())))
}

/// One call's sending side, owned by its driver.
pub struct Recorder {
    tx: mpsc::Sender<Msg>,
    key: u64,
    pending: Arc<AtomicUsize>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    started: bool,
    ended: bool,
}

impl Recorder {
    /// Queue `record` with the current time; never waits.
    pub fn record(&mut self, record: Record) {
        match &record {
            Record::Started(_) => self.started = true,
            Record::Ended(_) => self.ended = true,
            _ => {}
        }
        let write = to_write(self.key, record);
        self.send(write);
    }

    fn send(&self, write: CallWrite) {
        if self.pending.fetch_add(1, Relaxed) >= QUEUE {
            self.pending.fetch_sub(1, Relaxed);
            self.metrics.record_writes_dropped.fetch_add(1, Relaxed);
            return;
        }
        let msg = Msg::Write {
            at: self.clock.now(),
            write,
            pending: self.pending.clone(),
        };
        if self.tx.try_send(msg).is_err() {
            self.pending.fetch_sub(1, Relaxed);
            self.metrics.record_writes_dropped.fetch_add(1, Relaxed);
        }
    }

    /// Wait until everything recorded so far is in the store (at most
    /// `within`): a hand-off must be on record before the stream closes,
    /// because the carrier asks for the next step as soon as it does.
    pub async fn flush(&self, within: Duration) -> bool {
        flush_on(&self.tx, within).await
    }
}

impl Drop for Recorder {
    /// A call task that ends without recording an end still closes its
    /// record: `error` when it is unwinding from a panic, else `dropped`
    /// (the task was aborted).
    fn drop(&mut self) {
        if self.started && !self.ended {
            let reason = if std::thread::panicking() {
                HangupReason::Failed
            } else {
                HangupReason::Disconnected
            };
            self.send(to_write(self.key, Record::Ended(reason)));
        }
    }
}

/// The store write for one record.
fn to_write(key: u64, record: Record) -> CallWrite {
    match record {
        Record::Started(info) => {
            let params: serde_json::Map<String, serde_json::Value> = info
                .params
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.expose().clone())))
                .collect();
            CallWrite::Start {
                key,
                call: NewCall {
                    call_sid: Some(info.call_sid),
                    contact_id: None,
                    direction: "inbound".into(),
                    from: info.from,
                    to: info.to,
                    status: "in-progress".into(),
                },
                params: serde_json::Value::Object(params).to_string(),
            }
        }
        Record::Turn {
            seq,
            speaker,
            text,
            heard,
            interrupted,
        } => CallWrite::Turn {
            key,
            seq: i64::from(seq),
            role: speaker,
            text,
            heard,
            interrupted,
        },
        Record::ToolStarted(job) => CallWrite::Event {
            key,
            kind: "tool_started",
            detail: job.name,
        },
        Record::ToolFinished(o) => CallWrite::Event {
            key,
            kind: "tool_finished",
            detail: format!("{} {}", o.name, if o.ok { "ok" } else { "failed" }),
        },
        Record::Recording(file) => CallWrite::Event {
            key,
            kind: "recording",
            detail: file,
        },
        Record::HandOff { target, summary } => CallWrite::Event {
            key,
            kind: "handoff",
            detail: serde_json::json!({ "target": target, "summary": summary }).to_string(),
        },
        Record::Ended(reason) => {
            let (status, reason) = end_status(reason);
            CallWrite::End {
                key,
                status,
                reason,
            }
        }
    }
}

async fn write_all(
    store: Store,
    mut rx: mpsc::Receiver<Msg>,
    metrics: Arc<Metrics>,
    post_call: bool,
) {
    let mut ids: HashMap<u64, String> = HashMap::new();
    // Carrier ids of the live calls, for their post-call webhook.
    let mut sids: HashMap<u64, String> = HashMap::new();
    let mut batch: Vec<(DateTime<Utc>, CallWrite)> = Vec::new();
    let mut given_back: Vec<Arc<AtomicUsize>> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let mut open = true;
    while open {
        // Rest holding only the receiver until something arrives.
        let Some(first) = rx.recv().await else { break };
        let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
        let mut next = Some(first);
        loop {
            match next.take() {
                Some(Msg::Write { at, write, pending }) => {
                    batch.push((at, write));
                    given_back.push(pending);
                }
                Some(Msg::Flush(done)) => waiting.push(done),
                None => {}
            }
            if !waiting.is_empty() || batch.len() >= BATCH_MAX {
                // Someone is waiting, or the batch is full: write now, but
                // take what is already queued with it.
                match rx.try_recv() {
                    Ok(m) if batch.len() < BATCH_MAX => {
                        next = Some(m);
                        continue;
                    }
                    Ok(m) => {
                        next = Some(m);
                        break;
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(m)) => next = Some(m),
                Ok(None) => {
                    open = false;
                    break;
                }
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            // Boxed: the task rests between batches holding only its
            // receiver, not the (large) state of the query futures.
            Box::pin(write_batch(&store, &batch, &mut ids, &metrics)).await;
            if post_call {
                queue_post_call(&store, &batch, &mut sids).await;
            }
            batch.clear();
        }
        for pending in given_back.drain(..) {
            pending.fetch_sub(1, Relaxed);
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
        // A message taken past a full batch starts the next one.
        if let Some(m) = next {
            match m {
                Msg::Write { at, write, pending } => {
                    batch.push((at, write));
                    given_back.push(pending);
                }
                Msg::Flush(done) => waiting.push(done),
            }
        }
    }
    if !batch.is_empty() {
        Box::pin(write_batch(&store, &batch, &mut ids, &metrics)).await;
        if post_call {
            queue_post_call(&store, &batch, &mut sids).await;
        }
    }
    for done in waiting {
        let _ = done.send(());
    }
}

/// After `batch` is written: note the carrier id of each call it starts, and
/// queue the post-call webhook of each call it ends that was not handed to
/// humans (the webhook is built from the stored call, so it goes after).
async fn queue_post_call(
    store: &Store,
    batch: &[(DateTime<Utc>, CallWrite)],
    sids: &mut HashMap<u64, String>,
) {
    for (at, write) in batch {
        match write {
            CallWrite::Start { key, call, .. } => {
                if let Some(sid) = &call.call_sid {
                    sids.insert(*key, sid.clone());
                }
            }
            CallWrite::End { key, status, .. } => {
                let Some(sid) = sids.remove(key) else {
                    continue;
                };
                // A handed-off call goes on with humans: routing queues its
                // webhook at the final carrier status, not at stream close.
                if *status == "handed_off" {
                    continue;
                }
                if let Err(e) = crate::notify::enqueue_call_finished(store, &sid, *at).await {
                    tracing::warn!(error = %e, "post-call webhook not queued");
                }
            }
            _ => {}
        }
    }
}

/// Write `batch` in one transaction, or each write on its own if the
/// database refuses the whole.
async fn write_batch(
    store: &Store,
    batch: &[(DateTime<Utc>, CallWrite)],
    ids: &mut HashMap<u64, String>,
    metrics: &Metrics,
) {
    match store.write_call_batch(batch, ids).await {
        Ok(()) => {
            metrics.record_batches.fetch_add(1, Relaxed);
        }
        Err(e) => {
            tracing::debug!(error = %e, writes = batch.len(), "record batch refused: writing one by one");
            for one in batch.iter() {
                match store.write_call_batch(std::slice::from_ref(one), ids).await {
                    Ok(()) => {
                        metrics.record_batches.fetch_add(1, Relaxed);
                    }
                    Err(e) => {
                        metrics.record_write_errors.fetch_add(1, Relaxed);
                        tracing::warn!(error = %e, "call record write failed");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::conversation::CallInfo;
    use crate::clock::SystemClock;
    use crate::store::Speaker;

    async fn store(dir: &tempfile::TempDir) -> Store {
        let url = format!("sqlite://{}", dir.path().join("r.db").display());
        Store::connect(&url, &Default::default()).await.unwrap()
    }

    fn started(sid: &str) -> Record {
        Record::Started(CallInfo {
            call_sid: sid.into(),
            ..CallInfo::default()
        })
    }

    fn turn(seq: u32, text: &str) -> Record {
        Record::Turn {
            seq,
            speaker: Speaker::Caller,
            text: text.into(),
            heard: None,
            interrupted: false,
        }
    }

    /// Many calls' records, queued together, reach the store in a handful
    /// of transactions, each call complete and in order.
    #[tokio::test]
    async fn the_records_of_many_calls_share_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let metrics = Arc::new(Metrics::default());
        let writer = RecordWriter::start(store.clone(), metrics.clone(), false);
        let mut recs: Vec<Recorder> = (0..50)
            .map(|_| writer.recorder(Arc::new(SystemClock)))
            .collect();
        for (i, rec) in recs.iter_mut().enumerate() {
            rec.record(started(&format!("CA{i}")));
            rec.record(turn(0, "hello"));
            rec.record(turn(1, &format!("caller {i}")));
            rec.record(Record::Ended(HangupReason::CarrierStop));
        }
        assert!(writer.flush(Duration::from_secs(5)).await);
        let calls = store.list_calls(None, 100).await.unwrap();
        assert_eq!(calls.len(), 50);
        assert!(calls
            .iter()
            .all(|c| c.status == "completed" && c.ended_at.is_some()));
        for c in &calls {
            let turns = store.turns(&c.id).await.unwrap();
            assert_eq!(turns.len(), 2, "{}", c.id);
        }
        let batches = metrics.record_batches.load(Relaxed);
        assert!(batches <= 2, "200 writes in {batches} transactions");
        assert_eq!(metrics.record_write_errors.load(Relaxed), 0);
    }

    /// A record is written after the batch window without anyone flushing.
    #[tokio::test]
    async fn a_lone_record_is_written_within_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let writer = RecordWriter::start(store.clone(), Arc::new(Metrics::default()), false);
        let mut rec = writer.recorder(Arc::new(SystemClock));
        rec.record(started("CAlone"));
        let mut seen = false;
        for _ in 0..500 {
            if store.list_calls(None, 10).await.unwrap().len() == 1 {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(seen, "the call is on record without a flush");
    }

    /// A write the database refuses costs only itself: the batch is retried
    /// write by write, the refusal counted.
    #[tokio::test]
    async fn a_refused_write_does_not_lose_the_rest_of_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let crate::store::Pool::Sqlite(pool) = &store.pool else {
            unreachable!("a sqlite store")
        };
        sqlx::query(
            "CREATE TRIGGER refuse_recordings BEFORE INSERT ON call_events \
             WHEN NEW.kind = 'recording' BEGIN SELECT RAISE(ABORT, 'refused'); END",
        )
        .execute(pool)
        .await
        .unwrap();
        let metrics = Arc::new(Metrics::default());
        let writer = RecordWriter::start(store.clone(), metrics.clone(), false);
        let mut rec = writer.recorder(Arc::new(SystemClock));
        rec.record(started("CAbad"));
        rec.record(turn(0, "before"));
        rec.record(Record::Recording("x.ogg".into()));
        rec.record(turn(1, "after"));
        rec.record(Record::Ended(HangupReason::CarrierStop));
        assert!(writer.flush(Duration::from_secs(5)).await);
        let calls = store.list_calls(None, 10).await.unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].status, "completed");
        let texts: Vec<String> = store
            .turns(&calls[0].id)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.text.expose().clone())
            .collect();
        assert_eq!(texts, vec!["before", "after"]);
        assert_eq!(metrics.record_write_errors.load(Relaxed), 1);
    }

    /// A call's allowance bounds what it can queue; the excess is counted.
    #[tokio::test]
    async fn a_call_that_floods_its_allowance_has_the_excess_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let metrics = Arc::new(Metrics::default());
        let writer = RecordWriter::start(store.clone(), metrics.clone(), false);
        let mut rec = writer.recorder(Arc::new(SystemClock));
        for seq in 0..(QUEUE as u32 + 10) {
            rec.record(turn(seq, "x"));
        }
        assert_eq!(metrics.record_writes_dropped.load(Relaxed), 10);
    }
}
