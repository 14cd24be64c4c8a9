//! CPU and memory of a process from `/proc` (Linux).

use std::io;

/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`, 100 on every
/// mainstream Linux ABI).
pub const CLK_TCK: f64 = 100.0;

/// One reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSample {
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size, KiB.
    pub rss_kb: u64,
}

/// `pid` is a number or `self`.
pub fn sample(pid: &str) -> io::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse(&stat, &status)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparseable /proc entry"))
}

/// Parse `stat` and `status` contents.
pub fn parse(stat: &str, status: &str) -> Option<ProcSample> {
    // Fields after "(comm)": state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some(ProcSample {
        cpu_ticks: utime + stime,
        rss_kb,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_and_status() {
        let stat = "1234 (fr ont) desk) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 100 1000 300";
        let status = "Name:\tfrontdesk\nVmPeak:\t  9999 kB\nVmRSS:\t   20480 kB\nThreads: 4\n";
        assert_eq!(
            parse(stat, status),
            Some(ProcSample {
                cpu_ticks: 300,
                rss_kb: 20480
            })
        );
        assert_eq!(parse("garbage", status), None);
        assert!(sample("self").is_ok_and(|s| s.rss_kb > 0));
    }
}
