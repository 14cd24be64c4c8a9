//! Process-wide metrics, rendered as Prometheus text at `GET /metrics`.
//!
//! Plain atomics and fixed-bucket histograms: no allocation or locking on the
//! per-frame path. Counters that move per frame are accumulated per call and
//! added here in batches by the call driver.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// A fixed-bucket histogram of milliseconds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in microseconds, to keep it integral.
    sum_us: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    /// Record one observation in milliseconds.
    pub fn observe_ms(&self, ms: f64) {
        let ms = if ms.is_finite() { ms.max(0.0) } else { 0.0 };
        if let Some(i) = self.bounds.iter().position(|&b| ms <= b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add((ms * 1000.0) as u64, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, n) in self.bounds.iter().zip(&self.buckets) {
            cumulative += n.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_us.load(Relaxed) as f64 / 1000.0
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

const LATENCY_BOUNDS: &[f64] = &[
    5.0, 10.0, 25.0, 50.0, 100.0, 200.0, 300.0, 500.0, 750.0, 1000.0, 1500.0, 2500.0, 5000.0,
];

/// The stages of a turn's latency waterfall, as `stage` label values:
/// end-of-turn window, STT final, the brain's decision, first LLM token,
/// first TTS audio, first frame sent.
pub const TURN_STAGES: [&str; 6] = ["end_of_turn", "stt", "decide", "first_token", "tts", "send"];

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    /// Calls currently connected.
    pub active_calls: AtomicU64,
    /// Calls accepted since start.
    pub calls_total: AtomicU64,
    /// Media streams refused (draining or at `max_calls`).
    pub calls_refused: AtomicU64,
    /// Inbound media frames.
    pub frames_in: AtomicU64,
    /// Outbound messages to the carrier (media, marks, clears).
    pub frames_out: AtomicU64,
    /// Carrier messages rejected (bad JSON, bad base64, odd payload, unknown event, oversize).
    pub malformed_messages: AtomicU64,
    /// Barge-ins that cleared bot audio.
    pub barge_ins: AtomicU64,
    /// Times bot audio ran dry while a reply was still being generated.
    pub playout_underruns: AtomicU64,
    /// Provider errors (any provider, any kind).
    pub provider_errors: AtomicU64,
    /// Caller frames that never reached the speech-to-text (its queue was
    /// full, it was still connecting past the buffer, or it failed).
    pub caller_frames_dropped: AtomicU64,
    /// Call-record writes dropped because the call's allowance or the
    /// shared writer queue was full.
    pub record_writes_dropped: AtomicU64,
    /// Call-record writes the database refused.
    pub record_write_errors: AtomicU64,
    /// Call-record batches written (one transaction each).
    pub record_batches: AtomicU64,
    /// Tool jobs started.
    pub tool_jobs: AtomicU64,
    /// End of caller speech → first bot audio sent, in ms.
    pub turn_latency: Histogram,
    /// First voiced frame of an interruption → `clear` sent, in ms.
    pub barge_in_latency: Histogram,
    /// Each turn's latency by stage ([`TURN_STAGES`] order), in ms.
    pub turn_stages: [Histogram; 6],
    /// Provider fail-overs by (role, from, to): rare, so a map behind a
    /// lock that is never held across an await.
    provider_switches: Mutex<BTreeMap<(&'static str, &'static str, &'static str), u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            active_calls: AtomicU64::new(0),
            calls_total: AtomicU64::new(0),
            calls_refused: AtomicU64::new(0),
            frames_in: AtomicU64::new(0),
            frames_out: AtomicU64::new(0),
            malformed_messages: AtomicU64::new(0),
            barge_ins: AtomicU64::new(0),
            playout_underruns: AtomicU64::new(0),
            provider_errors: AtomicU64::new(0),
            caller_frames_dropped: AtomicU64::new(0),
            record_writes_dropped: AtomicU64::new(0),
            record_write_errors: AtomicU64::new(0),
            record_batches: AtomicU64::new(0),
            tool_jobs: AtomicU64::new(0),
            turn_latency: Histogram::new(LATENCY_BOUNDS),
            barge_in_latency: Histogram::new(LATENCY_BOUNDS),
            turn_stages: std::array::from_fn(|_| Histogram::new(LATENCY_BOUNDS)),
            provider_switches: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Metrics {
    /// A call moved its `role` (`stt`, `llm`, `tts`) from provider `from` to `to`.
    pub fn provider_switch(&self, role: &'static str, from: &'static str, to: &'static str) {
        // A poisoned lock only means another thread panicked mid-increment;
        // the counts are still usable.
        let mut m = self
            .provider_switches
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *m.entry((role, from, to)).or_insert(0) += 1;
    }

    /// How many times calls moved `role` from `from` to `to`.
    pub fn provider_switches(&self, role: &str, from: &str, to: &str) -> u64 {
        let m = self
            .provider_switches
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        m.iter()
            .filter(|((r, f, t), _)| *r == role && *f == from && *t == to)
            .map(|(_, n)| *n)
            .sum()
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let gauges: [(&str, &str, &AtomicU64, &str); 14] = [
            (
                "frontdesk_active_calls",
                "Calls currently connected.",
                &self.active_calls,
                "gauge",
            ),
            (
                "frontdesk_calls_total",
                "Calls accepted.",
                &self.calls_total,
                "counter",
            ),
            (
                "frontdesk_calls_refused_total",
                "Media streams refused.",
                &self.calls_refused,
                "counter",
            ),
            (
                "frontdesk_frames_in_total",
                "Inbound media frames.",
                &self.frames_in,
                "counter",
            ),
            (
                "frontdesk_frames_out_total",
                "Outbound carrier messages (media, mark, clear).",
                &self.frames_out,
                "counter",
            ),
            (
                "frontdesk_malformed_messages_total",
                "Carrier messages rejected.",
                &self.malformed_messages,
                "counter",
            ),
            (
                "frontdesk_barge_ins_total",
                "Barge-ins that cleared bot audio.",
                &self.barge_ins,
                "counter",
            ),
            (
                "frontdesk_playout_underruns_total",
                "Bot audio ran dry mid-reply.",
                &self.playout_underruns,
                "counter",
            ),
            (
                "frontdesk_provider_errors_total",
                "Provider errors.",
                &self.provider_errors,
                "counter",
            ),
            (
                "frontdesk_caller_frames_dropped_total",
                "Caller frames that never reached speech-to-text.",
                &self.caller_frames_dropped,
                "counter",
            ),
            (
                "frontdesk_record_writes_dropped_total",
                "Call-record writes dropped (the call's allowance or the writer queue was full).",
                &self.record_writes_dropped,
                "counter",
            ),
            (
                "frontdesk_record_write_errors_total",
                "Call-record writes the database refused.",
                &self.record_write_errors,
                "counter",
            ),
            (
                "frontdesk_record_batches_total",
                "Call-record batches written, one transaction each.",
                &self.record_batches,
                "counter",
            ),
            (
                "frontdesk_tool_jobs_total",
                "Tool jobs started.",
                &self.tool_jobs,
                "counter",
            ),
        ];
        for (name, help, v, kind) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                v.load(Relaxed)
            );
        }
        self.turn_latency.render(
            &mut out,
            "frontdesk_turn_latency_ms",
            "End of caller speech to first bot audio, ms.",
        );
        self.barge_in_latency.render(
            &mut out,
            "frontdesk_barge_in_latency_ms",
            "First voiced frame of an interruption to clear, ms.",
        );
        let name = "frontdesk_turn_stage_ms";
        let _ = writeln!(
            out,
            "# HELP {name} One stage of a turn's latency (VAD end, STT final, decision, first token, first TTS audio, first frame sent), ms.\n# TYPE {name} histogram"
        );
        for (stage, h) in TURN_STAGES.iter().zip(&self.turn_stages) {
            let mut cumulative = 0;
            for (b, n) in h.bounds.iter().zip(&h.buckets) {
                cumulative += n.load(Relaxed);
                let _ = writeln!(
                    out,
                    "{name}_bucket{{stage=\"{stage}\",le=\"{b}\"}} {cumulative}"
                );
            }
            let count = h.count.load(Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{stage=\"{stage}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "{name}_sum{{stage=\"{stage}\"}} {}",
                h.sum_us.load(Relaxed) as f64 / 1000.0
            );
            let _ = writeln!(out, "{name}_count{{stage=\"{stage}\"}} {count}");
        }
        let name = "frontdesk_provider_switches_total";
        let _ = writeln!(
            out,
            "# HELP {name} Calls moved to the next provider of a fail-over chain.\n# TYPE {name} counter"
        );
        let switches = self
            .provider_switches
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for ((role, from, to), n) in switches.iter() {
            let _ = writeln!(
                out,
                "{name}{{role=\"{role}\",from=\"{from}\",to=\"{to}\"}} {n}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.frames_in.fetch_add(3, Relaxed);
        m.turn_latency.observe_ms(7.0);
        m.turn_latency.observe_ms(700.0);
        let text = m.render();
        assert!(text.contains("frontdesk_frames_in_total 3"));
        assert!(text.contains("frontdesk_turn_latency_ms_bucket{le=\"10\"} 1"));
        assert!(text.contains("frontdesk_turn_latency_ms_bucket{le=\"750\"} 2"));
        assert!(text.contains("frontdesk_turn_latency_ms_count 2"));
    }

    #[test]
    fn provider_switches_are_labelled_by_role_and_providers() {
        let m = Metrics::default();
        m.provider_switch("stt", "deepgram", "scripted");
        m.provider_switch("stt", "deepgram", "scripted");
        m.provider_switch("tts", "cartesia", "elevenlabs");
        let text = m.render();
        assert!(
            text.contains(
                "frontdesk_provider_switches_total{role=\"stt\",from=\"deepgram\",to=\"scripted\"} 2"
            ),
            "{text}"
        );
        assert_eq!(m.provider_switches("tts", "cartesia", "elevenlabs"), 1);
    }
}
