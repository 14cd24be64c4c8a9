//! The run's report: per call and overall, as JSON or a human table.

use std::fmt::Write as _;

use serde::Serialize;

use super::metrics::{linear_slope, CallMetrics, LatencyStats, ProtocolErrors};
use super::procfs::{ProcSample, CLK_TCK};
use super::wire::CallIds;
use super::CallError;

/// How one call went, as the driver hands it over.
#[derive(Debug)]
pub struct CallOutcome {
    /// 0-based call index.
    pub index: usize,
    /// Its identifiers.
    pub ids: CallIds,
    /// The WebSocket opened.
    pub connected: bool,
    /// Why it ended abnormally.
    pub error: Option<CallError>,
    /// Its accounting.
    pub metrics: CallMetrics,
}

/// One call in the report.
#[derive(Debug, Serialize)]
pub struct CallReport {
    /// 0-based call index.
    pub index: usize,
    /// `MZ…`.
    pub stream_sid: String,
    /// `CA…`.
    pub call_sid: String,
    /// The WebSocket opened.
    pub connected: bool,
    /// Why the call ended abnormally.
    pub error: Option<String>,
    /// Turn latency.
    pub turn_latency_ms: LatencyStats,
    /// Turns without a reply in time.
    pub missed_turns: u32,
    /// Interruptions spoken.
    pub barge_ins: u32,
    /// Interruptions without a `clear` in time.
    pub missed_barge_ins: u32,
    /// Barge-in latency.
    pub barge_in_latency_ms: LatencyStats,
    /// Bot frames received after a `clear`, before the caller's utterance ended.
    pub media_after_clear: u32,
    /// `clear`s with no interruption pending.
    pub unsolicited_clears: u32,
    /// `interrupt` steps that found no reply playing.
    pub interrupts_skipped: u32,
    /// Replies played.
    pub replies: u32,
    /// Bot frames received.
    pub bot_frames: u64,
    /// Bot frames that arrived after the playout needed them.
    pub late_frames: u64,
    /// Audible gap inside replies.
    pub gap_ms: f64,
    /// Marks echoed.
    pub marks_echoed: u64,
    /// Media frames sent.
    pub frames_sent: u64,
    /// Frames sent more than 5 ms late.
    pub lagged_frames: u64,
    /// Worst send lag.
    pub max_lag_ms: f64,
    /// Server protocol violations.
    pub protocol_errors: ProtocolErrors,
}

/// Errors over all calls, by kind.
#[derive(Debug, Default, Serialize)]
pub struct ErrorCounts {
    /// Connect failures (including timeouts).
    pub connect: u64,
    /// The server closed the stream before `stop`.
    pub unexpected_close: u64,
    /// WebSocket errors mid-call.
    pub websocket: u64,
    /// Calls still open at the hard deadline.
    pub deadline: u64,
    /// Protocol violations by the server.
    pub protocol: u64,
    /// Sum of the above.
    pub total: u64,
}

/// Server process figures from `/proc`.
#[derive(Debug, Serialize)]
pub struct ServerReport {
    /// The sampled pid.
    pub pid: u32,
    /// CPU before the calls, % of one core.
    pub idle_cpu_pct: f64,
    /// RSS before the calls, MB.
    pub idle_rss_mb: f64,
    /// CPU over the steady state (all calls up), % of one core.
    pub steady_cpu_pct: Option<f64>,
    /// Mean RSS over the steady state, MB.
    pub steady_rss_mb: Option<f64>,
    /// (steady − idle CPU) / connected calls, % of one core.
    pub cpu_pct_per_call: Option<f64>,
    /// (steady − idle RSS) / connected calls, MB.
    pub mb_per_call: Option<f64>,
    /// Least-squares slope of RSS over the steady state, MB/min.
    pub rss_slope_mb_per_min: Option<f64>,
    /// One sample per second from the start of the calls.
    pub samples: Vec<ServerSample>,
}

/// One server sample.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ServerSample {
    /// Seconds since the first call was due.
    pub t_s: f64,
    /// CPU since the previous sample, % of one core.
    pub cpu_pct: f64,
    /// RSS, MB.
    pub rss_mb: f64,
}

/// The load generator's own CPU.
#[derive(Debug, Serialize)]
pub struct GeneratorReport {
    /// CPU seconds (user + system) over the run.
    pub cpu_s: f64,
    /// Mean over the run, % of one core.
    pub cpu_pct: f64,
}

/// What was run.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// Target.
    pub url: String,
    /// Calls requested.
    pub calls: u32,
    /// Steady-state seconds after the ramp.
    pub duration_s: f64,
    /// Ramp seconds.
    pub ramp_s: f64,
    /// Scenario source.
    pub scenario: String,
    /// Jitter-buffer delay.
    pub jitter_ms: u64,
    /// Silence that ends a reply.
    pub reply_gap_ms: u64,
    /// Default turn timeout.
    pub turn_timeout_ms: u64,
    /// Barge-in timeout.
    pub bargein_timeout_ms: u64,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// What was run.
    pub run: RunInfo,
    /// Wall time of the calls.
    pub wall_s: f64,
    /// Calls whose WebSocket opened.
    pub calls_connected: usize,
    /// Turn latency over all calls.
    pub turn_latency_ms: LatencyStats,
    /// Turn latency per fixture of the utterance answered: the server's VAD
    /// ends each recording at its own offset from the last frame, so compare
    /// like with like (see `examples/vad_tails.rs`).
    pub turn_latency_by_fixture_ms: std::collections::BTreeMap<String, LatencyStats>,
    /// Missed turns.
    pub missed_turns: u64,
    /// Interruptions spoken.
    pub barge_ins: u64,
    /// Interruptions without `clear` in time.
    pub missed_barge_ins: u64,
    /// Barge-in latency over all calls.
    pub barge_in_latency_ms: LatencyStats,
    /// Bot frames after a `clear` while the caller was still talking.
    pub media_after_clear: u64,
    /// `clear`s with no interruption pending.
    pub unsolicited_clears: u64,
    /// `interrupt` steps that found no reply playing.
    pub interrupts_skipped: u64,
    /// Replies played.
    pub replies: u64,
    /// Bot frames received.
    pub bot_frames: u64,
    /// Late bot frames.
    pub late_frames: u64,
    /// Late bot frames, % of bot frames.
    pub late_frames_pct: f64,
    /// Total audible gap.
    pub gap_ms: f64,
    /// Media frames sent.
    pub frames_sent: u64,
    /// Frames sent more than 5 ms late.
    pub generator_lag_frames: u64,
    /// Worst send lag.
    pub generator_max_lag_ms: f64,
    /// Errors by kind.
    pub errors: ErrorCounts,
    /// Protocol violations by kind.
    pub protocol_errors: ProtocolErrors,
    /// Server figures (with `--server-pid`).
    pub server: Option<ServerReport>,
    /// The generator's own CPU.
    pub generator: Option<GeneratorReport>,
    /// No errors and no missed turns.
    pub passed: bool,
    /// Per call.
    pub calls: Vec<CallReport>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Report {
    /// Aggregate the calls.
    pub fn build(
        run: RunInfo,
        wall_s: f64,
        outcomes: Vec<CallOutcome>,
        server: Option<ServerReport>,
        generator: Option<GeneratorReport>,
    ) -> Self {
        let mut all_turns = Vec::new();
        let mut by_fixture: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
        let mut all_barge = Vec::new();
        let mut errors = ErrorCounts::default();
        let mut protocol = ProtocolErrors::default();
        let mut r = Report {
            run,
            wall_s,
            calls_connected: 0,
            turn_latency_ms: LatencyStats::default(),
            turn_latency_by_fixture_ms: Default::default(),
            missed_turns: 0,
            barge_ins: 0,
            missed_barge_ins: 0,
            barge_in_latency_ms: LatencyStats::default(),
            media_after_clear: 0,
            unsolicited_clears: 0,
            interrupts_skipped: 0,
            replies: 0,
            bot_frames: 0,
            late_frames: 0,
            late_frames_pct: 0.0,
            gap_ms: 0.0,
            frames_sent: 0,
            generator_lag_frames: 0,
            generator_max_lag_ms: 0.0,
            errors: ErrorCounts::default(),
            protocol_errors: ProtocolErrors::default(),
            server,
            generator,
            passed: false,
            calls: Vec::with_capacity(outcomes.len()),
        };
        for o in outcomes {
            let mut m = o.metrics;
            r.calls_connected += usize::from(o.connected);
            all_turns.extend_from_slice(&m.turn_latency_us);
            for (label, t) in &m.turn_latency_by_fixture {
                by_fixture.entry(label.to_string()).or_default().push(*t);
            }
            all_barge.extend_from_slice(&m.barge_in_latency_us);
            r.missed_turns += u64::from(m.missed_turns);
            r.barge_ins += u64::from(m.barge_ins);
            r.missed_barge_ins += u64::from(m.missed_barge_ins);
            r.media_after_clear += u64::from(m.media_after_clear);
            r.unsolicited_clears += u64::from(m.unsolicited_clears);
            r.interrupts_skipped += u64::from(m.interrupts_skipped);
            r.replies += u64::from(m.replies);
            r.bot_frames += m.bot_frames;
            r.late_frames += m.late_frames;
            r.gap_ms += ms(m.gap_us);
            r.frames_sent += m.frames_sent;
            r.generator_lag_frames += m.lagged_frames;
            r.generator_max_lag_ms = r.generator_max_lag_ms.max(ms(m.max_lag_us));
            protocol.add(&m.protocol);
            match &o.error {
                None => {}
                Some(CallError::Connect(_) | CallError::ConnectTimeout) => errors.connect += 1,
                Some(CallError::UnexpectedClose) => errors.unexpected_close += 1,
                Some(CallError::WebSocket(_) | CallError::Internal(_)) => errors.websocket += 1,
                Some(CallError::HardDeadline) => errors.deadline += 1,
            }
            r.calls.push(CallReport {
                index: o.index,
                stream_sid: o.ids.stream_sid,
                call_sid: o.ids.call_sid,
                connected: o.connected,
                error: o.error.map(|e| e.to_string()),
                turn_latency_ms: LatencyStats::from_us(&mut m.turn_latency_us),
                missed_turns: m.missed_turns,
                barge_ins: m.barge_ins,
                missed_barge_ins: m.missed_barge_ins,
                barge_in_latency_ms: LatencyStats::from_us(&mut m.barge_in_latency_us),
                media_after_clear: m.media_after_clear,
                unsolicited_clears: m.unsolicited_clears,
                interrupts_skipped: m.interrupts_skipped,
                replies: m.replies,
                bot_frames: m.bot_frames,
                late_frames: m.late_frames,
                gap_ms: ms(m.gap_us),
                marks_echoed: m.marks_echoed,
                frames_sent: m.frames_sent,
                lagged_frames: m.lagged_frames,
                max_lag_ms: ms(m.max_lag_us),
                protocol_errors: m.protocol,
            });
        }
        errors.protocol = protocol.total();
        errors.total = errors.connect
            + errors.unexpected_close
            + errors.websocket
            + errors.deadline
            + errors.protocol;
        r.turn_latency_ms = LatencyStats::from_us(&mut all_turns);
        r.turn_latency_by_fixture_ms = by_fixture
            .into_iter()
            .map(|(k, mut v)| (k, LatencyStats::from_us(&mut v)))
            .collect();
        r.barge_in_latency_ms = LatencyStats::from_us(&mut all_barge);
        r.late_frames_pct = if r.bot_frames == 0 {
            0.0
        } else {
            100.0 * r.late_frames as f64 / r.bot_frames as f64
        };
        r.passed = errors.total == 0 && r.missed_turns == 0;
        r.errors = errors;
        r.protocol_errors = protocol;
        r
    }

    /// The human summary table.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let run = &self.run;
        let _ = writeln!(
            s,
            "frontdesk loadtest: {} calls ({} connected), ramp {} s + {} s, scenario {}, {}",
            run.calls, self.calls_connected, run.ramp_s, run.duration_s, run.scenario, run.url
        );
        let _ = writeln!(
            s,
            "{:<24}{:>8}{:>10}{:>10}{:>10}{:>10}",
            "", "count", "p50", "p95", "p99", "max"
        );
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        for (name, l) in [
            ("turn latency (ms)", &self.turn_latency_ms),
            ("barge-in latency (ms)", &self.barge_in_latency_ms),
        ] {
            let _ = writeln!(
                s,
                "{:<24}{:>8}{:>10}{:>10}{:>10}{:>10}",
                name,
                l.count,
                f(l.p50_ms),
                f(l.p95_ms),
                f(l.p99_ms),
                f(l.max_ms)
            );
        }
        let row = |s: &mut String, k: &str, v: String| {
            let _ = writeln!(s, "{k:<24}{v}");
        };
        row(&mut s, "missed turns", self.missed_turns.to_string());
        row(
            &mut s,
            "missed barge-ins",
            format!(
                "{} of {} ({} interrupts found no reply playing)",
                self.missed_barge_ins, self.barge_ins, self.interrupts_skipped
            ),
        );
        row(
            &mut s,
            "media after clear",
            format!(
                "{} frames ({} unsolicited clears)",
                self.media_after_clear, self.unsolicited_clears
            ),
        );
        row(
            &mut s,
            "late bot frames",
            format!(
                "{} of {} ({:.2} %), gaps {:.0} ms, {} replies",
                self.late_frames, self.bot_frames, self.late_frames_pct, self.gap_ms, self.replies
            ),
        );
        row(
            &mut s,
            "generator lag",
            format!(
                "{} of {} frames > 5 ms late (max {:.1} ms)",
                self.generator_lag_frames, self.frames_sent, self.generator_max_lag_ms
            ),
        );
        let e = &self.errors;
        row(
            &mut s,
            "errors",
            format!(
                "{} (connect {}, unexpected close {}, websocket {}, deadline {}, protocol {})",
                e.total, e.connect, e.unexpected_close, e.websocket, e.deadline, e.protocol
            ),
        );
        if let Some(sv) = &self.server {
            let o = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |v| format!("{v:.p$}"));
            row(
                &mut s,
                &format!("server pid {}", sv.pid),
                format!(
                    "idle {:.1} % CPU, {:.1} MB; steady {} % CPU, {} MB",
                    sv.idle_cpu_pct,
                    sv.idle_rss_mb,
                    o(sv.steady_cpu_pct, 1),
                    o(sv.steady_rss_mb, 1)
                ),
            );
            row(
                &mut s,
                "server per call",
                format!(
                    "{} % of a core, {} MB; RSS slope {} MB/min",
                    o(sv.cpu_pct_per_call, 3),
                    o(sv.mb_per_call, 3),
                    o(sv.rss_slope_mb_per_min, 2)
                ),
            );
        }
        if let Some(g) = &self.generator {
            row(
                &mut s,
                "generator CPU",
                format!("{:.1} s = {:.1} % of a core", g.cpu_s, g.cpu_pct),
            );
        }
        row(
            &mut s,
            "result",
            if self.passed {
                "PASS".to_string()
            } else {
                format!(
                    "FAIL ({} errors, {} missed turns)",
                    self.errors.total, self.missed_turns
                )
            },
        );
        s
    }
}

/// Server figures from an idle baseline (mean CPU %, sample) and the
/// per-second samples `(seconds since the calls started, reading)`; the
/// steady state is `[steady_from, steady_to]` seconds.
pub fn server_report(
    pid: u32,
    idle: (f64, ProcSample),
    samples: &[(f64, ProcSample)],
    steady_from: f64,
    steady_to: f64,
    calls: usize,
) -> ServerReport {
    let mb = |kb: u64| kb as f64 / 1024.0;
    let mut series = Vec::with_capacity(samples.len());
    let mut prev: Option<(f64, ProcSample)> = None;
    for &(t, s) in samples {
        let cpu_pct = match prev {
            Some((pt, ps)) if t > pt => {
                100.0 * s.cpu_ticks.saturating_sub(ps.cpu_ticks) as f64 / CLK_TCK / (t - pt)
            }
            _ => 0.0,
        };
        series.push(ServerSample {
            t_s: t,
            cpu_pct,
            rss_mb: mb(s.rss_kb),
        });
        prev = Some((t, s));
    }
    let steady: Vec<&(f64, ProcSample)> = samples
        .iter()
        .filter(|(t, _)| *t >= steady_from - 1e-6 && *t <= steady_to + 1e-6)
        .collect();
    let steady_cpu_pct = match (steady.first(), steady.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => {
            Some(100.0 * b.1.cpu_ticks.saturating_sub(a.1.cpu_ticks) as f64 / CLK_TCK / (b.0 - a.0))
        }
        _ => None,
    };
    let steady_rss_mb = (!steady.is_empty())
        .then(|| steady.iter().map(|(_, s)| mb(s.rss_kb)).sum::<f64>() / steady.len() as f64);
    let per_call = |v: f64| (calls > 0).then(|| v / calls as f64);
    let points: Vec<(f64, f64)> = steady
        .iter()
        .map(|(t, s)| (t / 60.0, mb(s.rss_kb)))
        .collect();
    ServerReport {
        pid,
        idle_cpu_pct: idle.0,
        idle_rss_mb: mb(idle.1.rss_kb),
        steady_cpu_pct,
        steady_rss_mb,
        cpu_pct_per_call: steady_cpu_pct.and_then(|c| per_call(c - idle.0)),
        mb_per_call: steady_rss_mb.and_then(|r| per_call(r - mb(idle.1.rss_kb))),
        rss_slope_mb_per_min: linear_slope(&points),
        samples: series,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_figures_from_samples() {
        let s = |ticks, rss_kb| ProcSample {
            cpu_ticks: ticks,
            rss_kb,
        };
        // Idle 1 % CPU, 10 MB. Ramp 0–2 s; steady 2–5 s at 50 % CPU with RSS
        // growing 1 MB per second (60 MB/min).
        let samples = [
            (1.0, s(10, 10 * 1024)),
            (2.0, s(40, 20 * 1024)),
            (3.0, s(90, 21 * 1024)),
            (4.0, s(140, 22 * 1024)),
            (5.0, s(190, 23 * 1024)),
        ];
        let r = server_report(7, (1.0, s(0, 10 * 1024)), &samples, 2.0, 5.0, 10);
        assert_eq!(r.steady_cpu_pct, Some(50.0));
        assert_eq!(r.cpu_pct_per_call, Some(4.9));
        assert_eq!(r.steady_rss_mb, Some(21.5));
        assert_eq!(r.mb_per_call, Some(1.15));
        let slope = r.rss_slope_mb_per_min.unwrap_or(0.0);
        assert!((slope - 60.0).abs() < 1e-9, "{slope}");
        assert_eq!(r.samples[1].cpu_pct, 30.0);
    }
}
