//! libbpf-tools `runqlat`, the C reference for run-queue latency: run it
//! for one process over an interval and read its histogram.

use std::process::Command;

/// Waits `runqlat` counted, per log2 bucket of microseconds.
#[derive(Debug, Default, PartialEq)]
pub struct RunqlatHistogram {
    /// (low, high, count): waits of `low` to `high` microseconds.
    pub buckets: Vec<(u64, u64, u64)>,
}

impl RunqlatHistogram {
    /// Runs `runqlat -p PID SECONDS 1` and parses what it prints.
    pub fn trace(pid: u32, seconds: u32) -> Self {
        let output = Command::new("runqlat")
            .args(["-p", &pid.to_string(), &seconds.to_string(), "1"])
            .output()
            .expect("running runqlat (Debian package libbpf-tools)");
        assert!(output.status.success(), "runqlat failed: {}", String::from_utf8_lossy(&output.stderr));
        Self::parse(&String::from_utf8_lossy(&output.stdout))
    }

    /// Parses the `LOW -> HIGH : COUNT |...|` lines of runqlat's output.
    pub fn parse(text: &str) -> Self {
        let buckets = text
            .lines()
            .filter_map(|line| {
                let (range, rest) = line.split_once(':')?;
                let (low, high) = range.split_once("->")?;
                let count = rest.split_whitespace().next()?;
                Some((low.trim().parse().ok()?, high.trim().parse().ok()?, count.parse().ok()?))
            })
            .collect();
        Self { buckets }
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|&(_, _, count)| count).sum()
    }

    /// Mean wait in seconds, taking each wait at the middle of its bucket;
    /// an estimate within the bucket width.
    pub fn mean_seconds(&self) -> Option<f64> {
        let count = self.count();
        let total_us: f64 =
            self.buckets.iter().map(|&(low, high, count)| (low + high) as f64 / 2.0 * count as f64).sum();
        (count > 0).then(|| total_us / count as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_runqlat_histogram() {
        let text = "Tracing run queue latency... Hit Ctrl-C to end.\n\n     usecs               : count    distribution\n         0 -> 1          : 0        |                    |\n         4 -> 7          : 10       |********************|\n         8 -> 15         : 30       |****                |\n";

        let histogram = RunqlatHistogram::parse(text);

        assert_eq!(histogram.buckets, vec![(0, 1, 0), (4, 7, 10), (8, 15, 30)]);
        assert_eq!(histogram.count(), 40);
        let mean = histogram.mean_seconds().unwrap();
        assert!((mean - (5.5 * 10.0 + 11.5 * 30.0) / 40.0 / 1e6).abs() < 1e-12, "{mean}");
    }
}
