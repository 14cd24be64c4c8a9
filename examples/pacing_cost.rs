//! What one timer per call costs against a few pacers, with no IO (the part
//! of the load generator's CPU that its pacing model decides):
//! `cargo run --release --example pacing_cost`.

use std::time::Duration;

use tokio::time::Instant;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn main() {
    const CALLS: usize = 1000;
    const SECS: u64 = 5;
    let cpu = || {
        std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                let rest = s[s.rfind(')')? + 1..].to_string();
                let f: Vec<u64> = rest
                    .split_whitespace()
                    .skip(11)
                    .take(2)
                    .filter_map(|v| v.parse().ok())
                    .collect();
                Some(f.iter().sum::<u64>())
            })
            .unwrap_or(0)
    };
    let measure = |name: &str, pacers: usize| {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("runtime: {e}"),
        };
        let c0 = cpu();
        let lag = rt.block_on(async move {
            let t0 = Instant::now() + ms(10);
            let per = CALLS / pacers;
            let tasks: Vec<_> = (0..pacers)
                .map(|p| {
                    // Spread the pacers' phases over the 20 ms frame.
                    let phase = ms(20) * p as u32 / pacers as u32;
                    tokio::spawn(async move {
                        let mut late = 0u64;
                        let mut counters = vec![0u64; per];
                        let mut k = 0u32;
                        let sleep = tokio::time::sleep_until(t0);
                        tokio::pin!(sleep);
                        while k < (SECS * 50) as u32 {
                            let due = t0 + phase + ms(20) * k;
                            sleep.as_mut().reset(due);
                            (&mut sleep).await;
                            if Instant::now() - due > ms(5) {
                                late += 1;
                            }
                            for c in counters.iter_mut() {
                                *c = std::hint::black_box(*c + 1);
                            }
                            k += 1;
                        }
                        late
                    })
                })
                .collect();
            let mut late = 0;
            for t in tasks {
                late += t.await.unwrap_or(0);
            }
            late
        });
        let pct = (cpu() - c0) as f64 / SECS as f64;
        println!("{name:<28} {pct:5.1} % of a core (late wake-ups: {lag})");
    };
    measure("1000 tasks, one timer each", CALLS);
    measure("20 pacers x 50 calls", 20);
    measure("2 pacers x 500 calls", 2);
}
