//! How late a tokio `sleep` of the scripted providers' latencies (100, 200,
//! 150 ms) fires on this machine: the floor under README's added turn latency
//! that comes from timers, not from the media path. tokio's timer wheel ticks
//! in whole milliseconds and rounds deadlines up, and the runtime parks in
//! `epoll_wait` with a millisecond timeout.
//!
//! Run: `cargo run --release --example timer_overshoot` (prints medians and p99 of 200 samples each,
//! and of the three in sequence, as a turn runs them).

use std::time::{Duration, Instant};

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = 200;
    let mut handles = Vec::new();
    // Run the samples concurrently, staggered, so the whole run takes seconds.
    for i in 0..n {
        handles.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_micros(i * 2_713)).await;
            let mut one = Vec::new();
            let t0 = Instant::now();
            for ms in [100u64, 200, 150] {
                let t = Instant::now();
                tokio::time::sleep(Duration::from_millis(ms)).await;
                one.push((t.elapsed().as_secs_f64() * 1e3) - ms as f64);
            }
            let chain = t0.elapsed().as_secs_f64() * 1e3 - 450.0;
            (one, chain)
        }));
    }
    let mut per: [Vec<f64>; 3] = [vec![], vec![], vec![]];
    let mut chain = vec![];
    for h in handles {
        if let Ok((one, c)) = h.await {
            for (k, v) in one.into_iter().enumerate() {
                per[k].push(v);
            }
            chain.push(c);
        }
    }
    for (k, ms) in [100, 200, 150].iter().enumerate() {
        println!(
            "sleep({ms} ms) overshoot: p50 {:.2} ms, p99 {:.2} ms",
            pct(&mut per[k], 0.5),
            pct(&mut per[k], 0.99)
        );
    }
    println!(
        "100 + 200 + 150 ms in sequence overshoot: p50 {:.2} ms, p99 {:.2} ms",
        pct(&mut chain, 0.5),
        pct(&mut chain, 0.99)
    );
}
