//! Carrier-style load generator (`frontdesk loadtest`): N concurrent Twilio
//! Media Streams in real time against a running server, with carrier
//! playout emulation (jitter buffer, mark echoes, `clear`), and a report of
//! turn latency, barge-in latency, late bot frames, missed turns, errors and
//! — given the server's pid — its CPU and memory. See `docs/loadtest.md`.
//!
//! It is an independent carrier emulator: it must not use the server's
//! `carrier` module, so a bug there cannot hide itself here.
//!
//! | module | owns |
//! | --- | --- |
//! | `scenario` | the TOML scenario format, the built-in scenario |
//! | `clip` | fixture WAVs as precomputed base64 μ-law frames |
//! | `wire` | outbound message writers, inbound borrowed parsing |
//! | `playout` | the carrier playout emulator (sans-IO) |
//! | `metrics` | per-call accounting and percentile math (sans-IO) |
//! | `caller` | one call: scenario cursor + media clock + playout + accounting (sans-IO) |
//! | `driver` | one tokio task per call over a WebSocket; live counters |
//! | `procfs` | `/proc` CPU and RSS sampling |
//! | `report` | aggregation, JSON and the human table |

pub mod caller;
pub mod clip;
pub mod driver;
pub mod metrics;
pub mod procfs;
pub mod report;
pub mod scenario;
pub mod simcall;
pub mod wire;

use std::io::{IsTerminal as _, Write as _};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{sleep, timeout_at, Instant, MissedTickBehavior};

use self::caller::CallerConfig;
use self::driver::{CallPlan, Live};
use self::procfs::{ProcSample, CLK_TCK};
use self::report::{CallOutcome, GeneratorReport, Report, RunInfo};
use self::scenario::Scenario;
use self::wire::CallIds;

/// Extra time after ramp + duration before every call is force-closed.
pub const HARD_DEADLINE_SLACK: Duration = Duration::from_secs(15);

/// `frontdesk loadtest` arguments.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Exit status: 0 when every call ran without errors and no turn was missed; \
1 when errors > 0 or missed turns > 0 (the report is still printed); \
2 when the run could not start (bad arguments, scenario or fixtures, \
non-loopback target).

See docs/loadtest.md for the scenario format and the metric definitions.")]
pub struct LoadtestArgs {
    /// Media WebSocket URL, e.g. `ws://127.0.0.1:8080/media/twilio`.
    #[arg(long)]
    pub url: String,
    /// Concurrent calls.
    #[arg(long, default_value_t = 10)]
    pub calls: u32,
    /// Seconds every call streams after the ramp (all calls stop together
    /// at ramp + duration).
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Seconds over which call starts are spread evenly.
    #[arg(long, default_value_t = 0.0)]
    pub ramp: f64,
    /// Scenario file (TOML); default: the built-in scenario.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Print one JSON document instead of the table (no progress line).
    #[arg(long)]
    pub json: bool,
    /// Sample this server process's CPU and memory from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Allow a target that is not loopback.
    #[arg(long)]
    pub allow_remote: bool,
    /// Directory of fixture WAVs (8 kHz mono 16-bit).
    #[arg(long, default_value = "fixtures")]
    pub fixtures: PathBuf,
    /// Carrier jitter-buffer delay before a reply starts playing, ms.
    #[arg(long, default_value_t = 40)]
    pub jitter_ms: u64,
    /// Silence after the playout drains that ends a bot reply, ms.
    #[arg(long, default_value_t = 500)]
    pub reply_gap_ms: u64,
    /// Turn timeout (no reply → missed turn) where the scenario gives none, ms.
    #[arg(long, default_value_t = 5000)]
    pub turn_timeout_ms: u64,
    /// No `clear` this long after an interruption starts → missed barge-in, ms.
    #[arg(long, default_value_t = 2000)]
    pub bargein_timeout_ms: u64,
}

impl LoadtestArgs {
    /// Defaults for everything but the URL (for tests and scripts).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            calls: 10,
            duration: 30.0,
            ramp: 0.0,
            scenario: None,
            json: false,
            server_pid: None,
            allow_remote: false,
            fixtures: PathBuf::from("fixtures"),
            jitter_ms: 40,
            reply_gap_ms: 500,
            turn_timeout_ms: 5000,
            bargein_timeout_ms: 2000,
        }
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    /// An argument is out of range.
    #[error("invalid argument: {0}")]
    Args(String),
    /// The URL is not a `ws://`/`wss://` URL with a host.
    #[error("bad url {url:?}: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The target resolves to a non-loopback address.
    #[error("refusing non-loopback target {host} ({addr}); pass --allow-remote to load-test another machine")]
    NotLoopback {
        /// Host of the URL.
        host: String,
        /// The offending address.
        addr: String,
    },
    /// The scenario file is unreadable or invalid.
    #[error("scenario {origin}: {reason}")]
    Scenario {
        /// File path or `built-in`.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// A fixture WAV is missing or not 8 kHz mono 16-bit.
    #[error("fixture {}: {reason}", path.display())]
    Fixture {
        /// The WAV path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `/proc/<pid>` of `--server-pid` is unreadable.
    #[error("cannot sample server pid {pid}: {reason}")]
    ServerPid {
        /// The pid.
        pid: u32,
        /// The IO error.
        reason: String,
    },
}

/// Why one call ended abnormally (counted as an error in the report).
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The WebSocket handshake failed.
    #[error("connect failed: {0}")]
    Connect(String),
    /// The handshake did not finish within 10 s.
    #[error("connect timed out")]
    ConnectTimeout,
    /// The server closed the stream before `stop`.
    #[error("server closed the stream before stop")]
    UnexpectedClose,
    /// A WebSocket read or write failed.
    #[error("websocket: {0}")]
    WebSocket(String),
    /// Still open at the hard deadline; force-closed.
    #[error("still open at the hard deadline")]
    HardDeadline,
    /// A message could not be built (a bug).
    #[error("internal: {0}")]
    Internal(String),
}

/// Check that `url` targets loopback (unless allowed).
pub async fn check_target(url: &str, allow_remote: bool) -> Result<(), LoadtestError> {
    let bad = |reason: &str| LoadtestError::Url {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let uri: tokio_tungstenite::tungstenite::http::Uri = url
        .parse()
        .map_err(|e: tokio_tungstenite::tungstenite::http::uri::InvalidUri| bad(&e.to_string()))?;
    let default_port = match uri.scheme_str() {
        Some("ws") => 80,
        Some("wss") => 443,
        _ => return Err(bad("scheme must be ws or wss")),
    };
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if allow_remote {
        return Ok(());
    }
    let port = uri.port_u16().unwrap_or(default_port);
    let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| bad(&format!("cannot resolve host: {e}")))?
            .map(|a| a.ip())
            .collect(),
    };
    if addrs.is_empty() {
        return Err(bad("host resolves to no address"));
    }
    match addrs.iter().find(|a| !a.to_canonical().is_loopback()) {
        Some(a) => Err(LoadtestError::NotLoopback {
            host: host.to_string(),
            addr: a.to_string(),
        }),
        None => Ok(()),
    }
}

fn secs(s: f64, name: &str) -> Result<Duration, LoadtestError> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| *d <= Duration::from_secs(7 * 24 * 3600))
        .ok_or_else(|| LoadtestError::Args(format!("--{name} {s} is not a duration in seconds")))
}

fn sample_pid(pid: u32) -> Result<ProcSample, LoadtestError> {
    procfs::sample(&pid.to_string()).map_err(|e| LoadtestError::ServerPid {
        pid,
        reason: e.to_string(),
    })
}

/// Run the load test and build the report. Call-level failures are in the
/// report; `Err` means the run could not start.
pub async fn run(args: LoadtestArgs) -> Result<Report, LoadtestError> {
    if args.calls == 0 {
        return Err(LoadtestError::Args("--calls must be at least 1".into()));
    }
    let duration = secs(args.duration, "duration")?;
    let ramp = secs(args.ramp, "ramp")?;
    if duration.is_zero() {
        return Err(LoadtestError::Args("--duration must be positive".into()));
    }
    check_target(&args.url, args.allow_remote).await?;
    let scenario = Arc::new(Scenario::from_args(
        args.scenario.as_deref(),
        &args.fixtures,
    )?);
    let cfg = CallerConfig {
        jitter: Duration::from_millis(args.jitter_ms),
        reply_gap: Duration::from_millis(args.reply_gap_ms),
        turn_timeout: Duration::from_millis(args.turn_timeout_ms),
        barge_timeout: Duration::from_millis(args.bargein_timeout_ms),
    };
    let info = RunInfo {
        url: args.url.clone(),
        calls: args.calls,
        duration_s: args.duration,
        ramp_s: args.ramp,
        scenario: scenario.source.clone(),
        jitter_ms: args.jitter_ms,
        reply_gap_ms: args.reply_gap_ms,
        turn_timeout_ms: args.turn_timeout_ms,
        bargein_timeout_ms: args.bargein_timeout_ms,
    };
    let plan = Arc::new(CallPlan {
        url: args.url.clone(),
        scenario,
        cfg,
    });

    // Idle baseline of the server: one second before any call.
    let idle = match args.server_pid {
        Some(pid) => {
            let a = sample_pid(pid)?;
            let t = Instant::now();
            sleep(Duration::from_secs(1)).await;
            let b = sample_pid(pid)?;
            let dt = t.elapsed().as_secs_f64();
            let cpu = 100.0 * b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / CLK_TCK / dt;
            Some((pid, cpu, b))
        }
        None => None,
    };

    let gen0 = procfs::sample("self").ok();
    let live = Arc::new(Live::default());
    let t_start = Instant::now() + Duration::from_millis(20);
    let end_at = t_start + ramp + duration;
    let hard = end_at + HARD_DEADLINE_SLACK;
    let n = args.calls as usize;
    let mut rng = rand::thread_rng();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let start_at = t_start + ramp.mul_f64(i as f64 / n as f64);
        let ids = CallIds::random(i, &mut rng);
        handles.push((
            i,
            ids.clone(),
            tokio::spawn(driver::run_call(
                i,
                ids,
                plan.clone(),
                start_at,
                end_at,
                hard,
                live.clone(),
            )),
        ));
    }

    let sampler = idle.map(|(pid, _, _)| {
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval_at(t_start, Duration::from_secs(1));
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                let now = tick.tick().await;
                if let Ok(s) = procfs::sample(&pid.to_string()) {
                    samples.push(((now - t_start).as_secs_f64(), s));
                }
                if now >= end_at {
                    break samples;
                }
            }
        })
    });

    let progress = (!args.json && std::io::stdout().is_terminal()).then(|| {
        let live = live.clone();
        let calls = args.calls;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let line = live.line(t_start.elapsed(), calls);
                let mut out = std::io::stdout().lock();
                let _ = write!(out, "\r\x1b[2K{line}");
                let _ = out.flush();
            }
        })
    });

    let mut outcomes: Vec<CallOutcome> = Vec::with_capacity(n);
    for (index, ids, h) in handles {
        let abort = h.abort_handle();
        match timeout_at(hard + Duration::from_secs(2), h).await {
            Ok(Ok(o)) => outcomes.push(o),
            Ok(Err(e)) => outcomes.push(lost_call(
                index,
                ids,
                &plan,
                CallError::Internal(e.to_string()),
            )),
            Err(_) => {
                // Stuck in a write the server never drained.
                abort.abort();
                outcomes.push(lost_call(index, ids, &plan, CallError::HardDeadline));
            }
        }
    }
    let wall_s = t_start.elapsed().as_secs_f64();
    if let Some(p) = progress {
        p.abort();
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\r\x1b[2K");
        let _ = out.flush();
    }
    let server = match (idle, sampler) {
        (Some((pid, idle_cpu, idle_sample)), Some(s)) => {
            let samples = s.await.unwrap_or_default();
            Some(report::server_report(
                pid,
                (idle_cpu, idle_sample),
                &samples,
                ramp.as_secs_f64(),
                (ramp + duration).as_secs_f64(),
                outcomes.iter().filter(|o| o.connected).count(),
            ))
        }
        _ => None,
    };
    let generator = match (gen0, procfs::sample("self").ok()) {
        (Some(a), Some(b)) => {
            let cpu_s = b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / CLK_TCK;
            Some(GeneratorReport {
                cpu_s,
                cpu_pct: 100.0 * cpu_s / wall_s.max(1e-9),
            })
        }
        _ => None,
    };
    Ok(Report::build(info, wall_s, outcomes, server, generator))
}

fn lost_call(index: usize, ids: CallIds, plan: &CallPlan, error: CallError) -> CallOutcome {
    CallOutcome {
        index,
        ids,
        // Connects time out long before the hard deadline.
        connected: matches!(error, CallError::HardDeadline),
        error: Some(error),
        metrics: metrics::CallMetrics::new(plan.cfg.turn_timeout, plan.cfg.barge_timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_loopback_targets_unless_allowed() {
        for ok in [
            "ws://127.0.0.1:8080/media",
            "ws://127.1.2.3/x",
            "ws://[::1]:9/x",
            "ws://localhost:8080/x",
        ] {
            assert!(check_target(ok, false).await.is_ok(), "{ok}");
        }
        for bad in [
            "ws://10.0.0.1/x",
            "ws://[2001:db8::1]/x",
            "ws://8.8.8.8:80/",
        ] {
            assert!(
                matches!(
                    check_target(bad, false).await,
                    Err(LoadtestError::NotLoopback { .. })
                ),
                "{bad}"
            );
            assert!(check_target(bad, true).await.is_ok());
        }
        assert!(matches!(
            check_target("http://127.0.0.1/", false).await,
            Err(LoadtestError::Url { .. })
        ));
    }
}
