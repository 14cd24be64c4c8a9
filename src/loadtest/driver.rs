//! The async side: one task per call drives a [`Caller`] over a WebSocket;
//! a sampler reads `/proc`; a progress line ticks once a second.
//!
//! Pacing model: each call task sleeps on a single reusable timer until the
//! caller's next deadline (its next frame at `t0 + k·20 ms`, a mark falling
//! due, a timeout), so timers never accumulate drift and a late wake-up
//! sends every overdue frame at once. One task per call keeps each socket's
//! writes on its own task (no cross-task channel hop per frame); the tokio
//! timer wheel handles 50 k wake-ups per second for 1,000 calls cheaply.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::time::{sleep_until, timeout_at, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::caller::{Caller, CallerConfig, Sent};
use super::metrics::CallMetrics;
use super::report::CallOutcome;
use super::scenario::Scenario;
use super::wire::CallIds;
use super::CallError;

/// Longest a connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest to wait for the server's close after `stop`.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// WebSocket read buffer. tungstenite zero-fills the whole free read buffer
/// before every read (also on reads that would block): with its 128 KiB
/// default that memset was half the generator's CPU. Server messages are
/// small; the buffer still grows for a large frame.
const READ_BUFFER: usize = 4096;
/// Live histogram range (1 ms buckets).
const LIVE_BUCKETS: usize = 30_000;

/// Counters shared with the progress line.
#[derive(Debug)]
pub struct Live {
    /// Calls with an open stream.
    pub calls_up: AtomicU32,
    /// Turns answered.
    pub turns: AtomicU64,
    /// Missed turns.
    pub missed: AtomicU64,
    /// Errors (call errors + protocol violations).
    pub errors: AtomicU64,
    hist: Box<[AtomicU32]>,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            calls_up: AtomicU32::new(0),
            turns: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            hist: (0..LIVE_BUCKETS).map(|_| AtomicU32::new(0)).collect(),
        }
    }
}

impl Live {
    fn record_turn(&self, us: u64) {
        let b = ((us / 1000) as usize).min(LIVE_BUCKETS - 1);
        self.hist[b].fetch_add(1, Ordering::Relaxed);
        self.turns.fetch_add(1, Ordering::Relaxed);
    }

    /// Approximate p95 turn latency so far, ms (1 ms resolution).
    pub fn p95_turn_ms(&self) -> Option<u64> {
        let n = self.turns.load(Ordering::Relaxed);
        if n == 0 {
            return None;
        }
        let rank = (n * 95).div_ceil(100).max(1);
        let mut acc = 0u64;
        for (i, b) in self.hist.iter().enumerate() {
            acc += u64::from(b.load(Ordering::Relaxed));
            if acc >= rank {
                return Some(i as u64);
            }
        }
        Some(LIVE_BUCKETS as u64)
    }

    /// The one-line progress display.
    pub fn line(&self, elapsed: Duration, calls: u32) -> String {
        format!(
            "{:>6.1} s  calls up {}/{}  turns {}  p95 turn {}  missed {}  errors {}",
            elapsed.as_secs_f64(),
            self.calls_up.load(Ordering::Relaxed),
            calls,
            self.turns.load(Ordering::Relaxed),
            self.p95_turn_ms()
                .map_or("-".to_string(), |v| format!("{v} ms")),
            self.missed.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

/// What every call shares.
#[derive(Debug)]
pub struct CallPlan {
    /// Target URL.
    pub url: String,
    /// The scenario.
    pub scenario: Arc<Scenario>,
    /// Timing knobs.
    pub cfg: CallerConfig,
}

/// Mirror a caller's new results into the live counters.
struct LiveSync {
    turns: usize,
    missed: u32,
    protocol: u64,
}

impl LiveSync {
    fn sync(&mut self, m: &CallMetrics, live: &Live) {
        for &us in &m.turn_latency_us[self.turns..] {
            live.record_turn(us);
        }
        self.turns = m.turn_latency_us.len();
        if m.missed_turns != self.missed {
            live.missed
                .fetch_add(u64::from(m.missed_turns - self.missed), Ordering::Relaxed);
            self.missed = m.missed_turns;
        }
        let p = m.protocol.total();
        if p != self.protocol {
            live.errors.fetch_add(p - self.protocol, Ordering::Relaxed);
            self.protocol = p;
        }
    }
}

/// Run call `index`: connect at `start_at`, stream until `end_at`, give up
/// at `hard`.
pub async fn run_call(
    index: usize,
    ids: CallIds,
    plan: Arc<CallPlan>,
    start_at: Instant,
    end_at: Instant,
    hard: Instant,
    live: Arc<Live>,
) -> CallOutcome {
    sleep_until(start_at).await;
    let failed = |ids: CallIds, e: CallError, plan: &CallPlan| {
        live.errors.fetch_add(1, Ordering::Relaxed);
        CallOutcome {
            index,
            ids,
            connected: false,
            error: Some(e),
            metrics: CallMetrics::new(plan.cfg.turn_timeout, plan.cfg.barge_timeout),
        }
    };
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let connect =
        tokio_tungstenite::connect_async_with_config(plan.url.as_str(), Some(config), true);
    let mut ws = match timeout_at((start_at + CONNECT_TIMEOUT).min(hard), connect).await {
        Ok(Ok((ws, _response))) => ws,
        Ok(Err(e)) => return failed(ids, CallError::Connect(e.to_string()), &plan),
        Err(_) => return failed(ids, CallError::ConnectTimeout, &plan),
    };
    live.calls_up.fetch_add(1, Ordering::Relaxed);
    let mut caller = Caller::new(ids, plan.scenario.clone(), plan.cfg, Instant::now(), end_at);
    let mut out = BytesMut::with_capacity(4096);
    let mut sync = LiveSync {
        turns: 0,
        missed: 0,
        protocol: 0,
    };
    let sleep = sleep_until(hard);
    tokio::pin!(sleep);
    let result: Result<(), CallError> = 'call: loop {
        let now = Instant::now();
        if now >= hard {
            break Err(CallError::HardDeadline);
        }
        let mut wrote = false;
        while let Some(_sent) = caller.poll_transmit(now, &mut out) {
            let text = match Utf8Bytes::try_from(out.split().freeze()) {
                Ok(t) => t,
                Err(e) => break 'call Err(CallError::Internal(e.to_string())),
            };
            if let Err(e) = ws.feed(Message::Text(text)).await {
                break 'call Err(CallError::WebSocket(e.to_string()));
            }
            wrote = true;
            debug_assert!(_sent != Sent::Stop || caller.is_stopped());
        }
        if wrote {
            if let Err(e) = ws.flush().await {
                break Err(CallError::WebSocket(e.to_string()));
            }
        }
        sync.sync(caller.metrics(), &live);
        if caller.is_stopped() {
            // Close politely; whatever the server does now is not an error.
            let _ = ws.close(None).await;
            let _ = timeout_at((Instant::now() + CLOSE_TIMEOUT).min(hard), async {
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
            break Ok(());
        }
        let deadline = caller.poll_timeout().unwrap_or(hard).min(hard);
        sleep.as_mut().reset(deadline);
        tokio::select! {
            biased;
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => caller.handle_text(Instant::now(), t.as_str()),
                Some(Ok(Message::Binary(_))) => caller.handle_binary(),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | None => break Err(CallError::UnexpectedClose),
                Some(Err(e)) => break Err(CallError::WebSocket(e.to_string())),
            },
            _ = &mut sleep => {}
        }
    };
    live.calls_up.fetch_sub(1, Ordering::Relaxed);
    if result.is_err() {
        live.errors.fetch_add(1, Ordering::Relaxed);
    }
    let ids = caller.ids().clone();
    CallOutcome {
        index,
        ids,
        connected: true,
        error: result.err(),
        metrics: caller.into_metrics(),
    }
}
