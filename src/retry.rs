//! The remote-call retry policy shared by every HTTP client (Cal.com,
//! HubSpot, and the providers and notifiers after them): how long a `429`
//! asks us to wait, and exponential back-off with jitter. A leaf: it imports
//! nothing of the crate.

use std::time::Duration;

/// The wait a `429`/`503` response asks for: `Retry-After` in seconds (the
/// HTTP-date form is not used by Cal.com or HubSpot and is ignored).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Exponential back-off for attempt `n` (0-based) with ±25 % jitter, capped.
pub fn backoff(n: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << n.min(16));
    let d = exp.min(cap);
    let jitter = rand::random::<f64>() * 0.5 + 0.75;
    d.mul_f64(jitter).min(cap)
}
