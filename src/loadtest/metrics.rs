//! Per-call accounting, sans-IO: events with explicit timestamps in,
//! counters and latency samples out. Definitions are in `docs/loadtest.md`.
//!
//! Drive contract: call the `*_sent`/`*_received`/`utterance_*` methods as
//! things happen, and [`CallMetrics::handle_timeout`] whenever `now` passes
//! [`CallMetrics::poll_timeout`] (calling it early is harmless).

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::carrier::playout::{MediaOutcome, ReplySummary};

/// Frames sent later than this after their schedule count as generator lag.
pub const LAG_THRESHOLD: Duration = Duration::from_millis(5);

/// Protocol violations by the server, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProtocolErrors {
    /// A binary WebSocket frame (Twilio accepts text only).
    pub binary_frame: u32,
    /// Not JSON, or a known event missing a required field.
    pub bad_json: u32,
    /// An event other than `media`, `mark`, `clear`.
    pub unknown_event: u32,
    /// `streamSid` missing or not this stream's.
    pub wrong_stream_sid: u32,
    /// `media.payload` is not valid base64.
    pub bad_base64: u32,
}

impl ProtocolErrors {
    /// Sum of all kinds.
    pub fn total(&self) -> u64 {
        [
            self.binary_frame,
            self.bad_json,
            self.unknown_event,
            self.wrong_stream_sid,
            self.bad_base64,
        ]
        .iter()
        .map(|&n| u64::from(n))
        .sum()
    }

    /// Add another call's counts.
    pub fn add(&mut self, o: &ProtocolErrors) {
        self.binary_frame += o.binary_frame;
        self.bad_json += o.bad_json;
        self.unknown_event += o.unknown_event;
        self.wrong_stream_sid += o.wrong_stream_sid;
        self.bad_base64 += o.bad_base64;
    }
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    since: Instant,
    deadline: Instant,
}

/// The accounting of one call.
#[derive(Debug, Clone)]
pub struct CallMetrics {
    turn_timeout: Duration,
    barge_timeout: Duration,
    /// Turn latencies, µs, in order.
    pub turn_latency_us: Vec<u64>,
    /// The same turn latencies, µs, with the fixture the turn answered.
    pub turn_latency_by_fixture: Vec<(std::sync::Arc<str>, u64)>,
    /// Barge-in latencies, µs, in order.
    pub barge_in_latency_us: Vec<u64>,
    /// Utterances with no reply within the turn timeout.
    pub missed_turns: u32,
    /// Interrupting utterances started.
    pub barge_ins: u32,
    /// Interrupting utterances with no `clear` within the barge-in timeout.
    pub missed_barge_ins: u32,
    /// `interrupt` steps that found no reply playing (spoken as plain turns).
    pub interrupts_skipped: u32,
    /// `clear`s that answered no pending barge-in.
    pub unsolicited_clears: u32,
    /// Bot frames received after a `clear` while the caller's utterance
    /// in progress at the clear had not yet ended.
    pub media_after_clear: u32,
    /// Bot frames received.
    pub bot_frames: u64,
    /// Bot frames that arrived after the playout clock needed them.
    pub late_frames: u64,
    /// Total audible gap inside replies, µs.
    pub gap_us: u64,
    /// Replies played (ended by playing out or by `clear`).
    pub replies: u32,
    /// Marks echoed to the server.
    pub marks_echoed: u64,
    /// Media frames sent.
    pub frames_sent: u64,
    /// Media frames sent more than [`LAG_THRESHOLD`] after their schedule.
    pub lagged_frames: u64,
    /// Worst lag, µs.
    pub max_lag_us: u64,
    /// Server protocol violations.
    pub protocol: ProtocolErrors,
    awaiting_turn: Option<Pending>,
    /// Fixture of the utterance the pending turn answers.
    awaiting_label: Option<std::sync::Arc<str>>,
    awaiting_clear: Option<Pending>,
    in_utterance: bool,
    after_clear: bool,
}

/// What [`CallMetrics::handle_timeout`] concluded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    /// The pending turn got no reply in time.
    pub missed_turn: bool,
    /// The pending barge-in got no `clear` in time.
    pub missed_barge_in: bool,
}

fn us(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

impl CallMetrics {
    /// Empty accounting with the default turn and barge-in timeouts.
    pub fn new(turn_timeout: Duration, barge_timeout: Duration) -> Self {
        Self {
            turn_timeout,
            barge_timeout,
            turn_latency_us: Vec::new(),
            turn_latency_by_fixture: Vec::new(),
            barge_in_latency_us: Vec::new(),
            missed_turns: 0,
            barge_ins: 0,
            missed_barge_ins: 0,
            interrupts_skipped: 0,
            unsolicited_clears: 0,
            media_after_clear: 0,
            bot_frames: 0,
            late_frames: 0,
            gap_us: 0,
            replies: 0,
            marks_echoed: 0,
            frames_sent: 0,
            lagged_frames: 0,
            max_lag_us: 0,
            protocol: ProtocolErrors::default(),
            awaiting_turn: None,
            awaiting_label: None,
            awaiting_clear: None,
            in_utterance: false,
            after_clear: false,
        }
    }

    /// A media frame scheduled for `scheduled` was sent at `now`.
    pub fn frame_sent(&mut self, scheduled: Instant, now: Instant) {
        self.frames_sent += 1;
        let lag = now.saturating_duration_since(scheduled);
        if lag > LAG_THRESHOLD {
            self.lagged_frames += 1;
        }
        self.max_lag_us = self.max_lag_us.max(us(lag));
    }

    /// The first frame of a caller utterance was sent at `now`. A turn still
    /// awaiting its reply is superseded (neither answered nor missed).
    pub fn utterance_started(&mut self, now: Instant, interrupting: bool) {
        self.in_utterance = true;
        self.after_clear = false;
        self.awaiting_turn = None;
        if interrupting {
            self.barge_ins += 1;
            self.awaiting_clear = Some(Pending {
                since: now,
                deadline: now + self.barge_timeout,
            });
        }
    }

    /// The last frame of a caller utterance was sent at `now`.
    pub fn utterance_ended(&mut self, now: Instant) {
        self.in_utterance = false;
        self.after_clear = false;
        self.awaiting_turn = Some(Pending {
            since: now,
            deadline: now + self.turn_timeout,
        });
    }

    /// Name the fixture of the utterance that just ended (for the per-fixture breakdown).
    pub fn label_turn(&mut self, fixture: std::sync::Arc<str>) {
        self.awaiting_label = Some(fixture);
    }

    /// Give the pending turn (if any) until `timeout` after its utterance
    /// ended instead of the default.
    pub fn set_turn_timeout(&mut self, timeout: Duration) {
        if let Some(p) = &mut self.awaiting_turn {
            p.deadline = p.since + timeout;
        }
    }

    /// A turn is waiting for its reply's first frame.
    pub fn awaiting_turn(&self) -> bool {
        self.awaiting_turn.is_some()
    }

    /// An outbound `media` arrived at `now`; `outcome` is what the playout
    /// made of it. Returns true when it answered a pending turn.
    pub fn media_received(&mut self, now: Instant, outcome: MediaOutcome) -> bool {
        self.bot_frames += u64::from(outcome.frames);
        self.late_frames += u64::from(outcome.late_frames);
        self.gap_us += us(outcome.gap);
        if self.after_clear {
            self.media_after_clear += outcome.frames;
        }
        match self.awaiting_turn.take() {
            Some(p) => {
                let t = us(now - p.since);
                self.turn_latency_us.push(t);
                if let Some(label) = self.awaiting_label.take() {
                    self.turn_latency_by_fixture.push((label, t));
                }
                true
            }
            None => false,
        }
    }

    /// An outbound `clear` arrived at `now`.
    pub fn clear_received(&mut self, now: Instant) {
        match self.awaiting_clear.take() {
            Some(p) => self.barge_in_latency_us.push(us(now - p.since)),
            None => self.unsolicited_clears += 1,
        }
        if self.in_utterance {
            self.after_clear = true;
        }
    }

    /// A reply finished playing (or was cleared).
    pub fn reply_ended(&mut self, _summary: &ReplySummary) {
        self.replies += 1;
    }

    /// A mark was echoed.
    pub fn mark_echoed(&mut self) {
        self.marks_echoed += 1;
    }

    /// Earliest deadline of a pending turn or barge-in.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let a = self.awaiting_turn.map(|p| p.deadline);
        let b = self.awaiting_clear.map(|p| p.deadline);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Expire pending turns and barge-ins whose deadline is `<= now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Expired {
        let mut e = Expired::default();
        if self.awaiting_turn.is_some_and(|p| p.deadline <= now) {
            self.awaiting_turn = None;
            self.missed_turns += 1;
            e.missed_turn = true;
        }
        if self.awaiting_clear.is_some_and(|p| p.deadline <= now) {
            self.awaiting_clear = None;
            self.missed_barge_ins += 1;
            e.missed_barge_in = true;
        }
        e
    }
}

/// Latency distribution in milliseconds (nearest-rank percentiles).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencyStats {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Maximum.
    pub max_ms: Option<f64>,
    /// Arithmetic mean.
    pub mean_ms: Option<f64>,
}

/// Nearest-rank percentile of ascending `sorted`: the smallest sample with
/// at least `p` % of samples at or below it. `None` when empty.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

impl LatencyStats {
    /// Statistics of µs samples (sorted in place).
    pub fn from_us(samples: &mut [u64]) -> Self {
        samples.sort_unstable();
        let ms = |v: Option<u64>| v.map(|us| us as f64 / 1000.0);
        let mean = (!samples.is_empty())
            .then(|| samples.iter().sum::<u64>() as f64 / samples.len() as f64 / 1000.0);
        Self {
            count: samples.len(),
            p50_ms: ms(percentile(samples, 50.0)),
            p95_ms: ms(percentile(samples, 95.0)),
            p99_ms: ms(percentile(samples, 99.0)),
            max_ms: ms(samples.last().copied()),
            mean_ms: mean,
        }
    }
}

/// Least-squares slope of `y` against `x`; `None` with fewer than two
/// distinct `x`.
pub fn linear_slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn m() -> CallMetrics {
        CallMetrics::new(ms(5000), ms(2000))
    }

    fn media(frames: u32, late: u32) -> MediaOutcome {
        MediaOutcome {
            frames,
            late_frames: late,
            gap: ms(20) * late,
            reply_started: false,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 95.0), Some(95));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        // 10 samples: p95 is the 10th (ceil 9.5), p50 the 5th.
        let v = [10, 20, 30, 40, 50, 60, 70, 80, 90, 1000];
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 95.0), Some(1000));
        let mut s = vec![3000, 1000, 2000];
        let st = LatencyStats::from_us(&mut s);
        assert_eq!(st.count, 3);
        assert_eq!(st.p50_ms, Some(2.0));
        assert_eq!(st.max_ms, Some(3.0));
        assert_eq!(st.mean_ms, Some(2.0));
        assert_eq!(LatencyStats::from_us(&mut []).p99_ms, None);
    }

    #[test]
    fn turn_latency_is_also_kept_per_fixture() {
        let t = Instant::now();
        let mut a = m();
        for (i, (name, reply_after)) in [("pricing", 630), ("referral", 650), ("pricing", 640)]
            .iter()
            .enumerate()
        {
            let start = t + ms(i as u64 * 5000);
            a.utterance_started(start, false);
            a.utterance_ended(start + ms(1000));
            a.label_turn((*name).into());
            assert!(a.media_received(start + ms(1000 + reply_after), media(1, 0)));
        }
        let by: Vec<(&str, u64)> = a
            .turn_latency_by_fixture
            .iter()
            .map(|(n, us)| (&**n, *us))
            .collect();
        assert_eq!(
            by,
            vec![
                ("pricing", 630_000),
                ("referral", 650_000),
                ("pricing", 640_000)
            ]
        );
    }

    #[test]
    fn turn_latency_and_missed_turns() {
        let t = Instant::now();
        let mut a = m();
        a.utterance_started(t, false);
        a.utterance_ended(t + ms(1000));
        assert!(a.awaiting_turn());
        assert_eq!(a.poll_timeout(), Some(t + ms(6000)));
        assert!(a.media_received(t + ms(1650), media(1, 0)));
        assert!(!a.media_received(t + ms(1670), media(1, 0)));
        assert_eq!(a.turn_latency_us, vec![650_000]);
        // Next turn: no reply within its (overridden) timeout.
        a.utterance_started(t + ms(3000), false);
        a.utterance_ended(t + ms(3500));
        a.set_turn_timeout(ms(1000));
        assert_eq!(a.handle_timeout(t + ms(4499)), Expired::default());
        assert!(a.handle_timeout(t + ms(4500)).missed_turn);
        assert_eq!(a.missed_turns, 1);
        // A reply after the timeout answers nothing.
        assert!(!a.media_received(t + ms(4600), media(1, 0)));
        assert_eq!(a.turn_latency_us.len(), 1);
        assert_eq!(a.bot_frames, 3);
    }

    #[test]
    fn barge_in_latency_missed_and_media_after_clear() {
        let t = Instant::now();
        let mut a = m();
        a.utterance_started(t, true);
        assert_eq!(a.barge_ins, 1);
        a.clear_received(t + ms(230));
        assert_eq!(a.barge_in_latency_us, vec![230_000]);
        // Bot audio after the clear, caller still talking: a violation.
        a.media_received(t + ms(300), media(2, 0));
        assert_eq!(a.media_after_clear, 2);
        a.utterance_ended(t + ms(800));
        // After the utterance: the legitimate next reply.
        a.media_received(t + ms(1400), media(1, 0));
        assert_eq!(a.media_after_clear, 2);
        assert_eq!(a.turn_latency_us, vec![600_000]);
        // A barge-in that never gets its clear.
        a.utterance_started(t + ms(5000), true);
        assert!(!a.handle_timeout(t + ms(6999)).missed_barge_in);
        assert!(a.handle_timeout(t + ms(7000)).missed_barge_in);
        assert_eq!((a.barge_ins, a.missed_barge_ins), (2, 1));
        // A clear that answers nothing.
        a.clear_received(t + ms(7100));
        assert_eq!(a.unsolicited_clears, 1);
        assert_eq!(a.barge_in_latency_us.len(), 1);
    }

    #[test]
    fn late_frames_and_generator_lag_accumulate() {
        let t = Instant::now();
        let mut a = m();
        a.media_received(t, media(10, 0));
        a.media_received(t, media(1, 1));
        a.media_received(t, media(1, 1));
        assert_eq!((a.bot_frames, a.late_frames, a.gap_us), (12, 2, 40_000));
        a.frame_sent(t, t + ms(5));
        a.frame_sent(t, t + ms(6));
        a.frame_sent(t + ms(20), t + ms(20));
        assert_eq!((a.frames_sent, a.lagged_frames, a.max_lag_us), (3, 1, 6000));
    }

    #[test]
    fn slope_of_a_line() {
        let pts: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 + 0.5 * i as f64)).collect();
        let s = linear_slope(&pts).unwrap_or(f64::NAN);
        assert!((s - 0.5).abs() < 1e-9);
        assert_eq!(linear_slope(&[(1.0, 2.0)]), None);
        assert_eq!(linear_slope(&[(1.0, 2.0), (1.0, 3.0)]), None);
    }
}
