//! The kernel's own CPU accounting for a cgroup: `cpu.stat` and the CFS
//! bandwidth limit, in either hierarchy.
//!
//! Units are normalised on read: every duration here is in nanoseconds,
//! whatever unit the file uses (v2 `*_usec`, v1 `throttled_time` in ns).

use std::{fs, io, path::Path};

/// Cumulative CPU counters of one cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuStat {
    /// CPU time used by the cgroup's tasks, in nanoseconds.
    pub usage_ns: Option<u64>,
    /// CFS periods in which the group had runnable tasks (`nr_periods`).
    /// Periods in which the group did not run are not counted.
    pub periods: Option<u64>,
    /// Periods in which the group used up its quota (`nr_throttled`).
    pub throttled_periods: Option<u64>,
    /// Throttled time summed over every CPU's run queue of the group, in
    /// nanoseconds. With N throttled CPUs it grows N times faster than
    /// wall-clock time, so it is not a share of wall time.
    pub throttled_ns: Option<u64>,
}

impl CpuStat {
    /// Parses `cpu.stat` text of either hierarchy.
    pub fn parse(text: &str) -> Self {
        let mut stat = Self::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(' ') else { continue };
            let Ok(value) = value.trim().parse::<u64>() else { continue };
            match key {
                "usage_usec" => stat.usage_ns = Some(value.saturating_mul(1_000)),
                "nr_periods" => stat.periods = Some(value),
                "nr_throttled" => stat.throttled_periods = Some(value),
                "throttled_usec" => stat.throttled_ns = Some(value.saturating_mul(1_000)),
                "throttled_time" => stat.throttled_ns = Some(value),
                _ => {}
            }
        }
        stat
    }

    /// Reads `cpu.stat` in a cgroup directory, and on v1 the CPU usage
    /// from `cpuacct.usage` (nanoseconds) when the `cpuacct` controller is
    /// mounted with `cpu`.
    pub fn read(dir: &Path) -> io::Result<Self> {
        let mut stat = fs::read_to_string(dir.join("cpu.stat")).map(|text| Self::parse(&text))?;
        if stat.usage_ns.is_none()
            && let Ok(usage) = fs::read_to_string(dir.join("cpuacct.usage"))
        {
            stat.usage_ns = usage.trim().parse().ok();
        }
        Ok(stat)
    }

    /// Reads every directory and takes each counter from the first one
    /// that has it: on hybrid hosts the v2 cgroup has the usage and the v1
    /// `cpu` cgroup the CFS counters. Returns `None` when the first
    /// directory (the cgroup itself) no longer exists.
    pub fn read_dirs(dirs: &[std::path::PathBuf]) -> Option<Self> {
        let (own, others) = dirs.split_first()?;
        let mut merged = match Self::read(own) {
            Ok(stat) => stat,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return None,
            Err(_) => Self::default(),
        };
        for stat in others.iter().filter_map(|dir| Self::read(dir).ok()) {
            merged.usage_ns = merged.usage_ns.or(stat.usage_ns);
            merged.periods = merged.periods.or(stat.periods);
            merged.throttled_periods = merged.throttled_periods.or(stat.throttled_periods);
            merged.throttled_ns = merged.throttled_ns.or(stat.throttled_ns);
        }
        Some(merged)
    }
}

/// A CFS bandwidth limit: `quota` of CPU time per `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuLimit {
    pub quota_us: u64,
    pub period_us: u64,
}

impl CpuLimit {
    /// Returns the limit in CPUs (cores): quota divided by period.
    pub fn cores(&self) -> f64 {
        self.quota_us as f64 / self.period_us as f64
    }

    /// Parses v2 `cpu.max` (`max 100000` or `20000 100000`); `None` means
    /// no limit.
    pub fn parse_v2(text: &str) -> Option<Self> {
        let mut fields = text.split_whitespace();
        let quota = fields.next()?.parse().ok()?;
        let period = fields.next()?.parse().ok()?;
        Self::new(quota, period)
    }

    /// Parses v1 `cpu.cfs_quota_us` (-1 for no limit) and
    /// `cpu.cfs_period_us`.
    pub fn parse_v1(quota: &str, period: &str) -> Option<Self> {
        let quota: i64 = quota.trim().parse().ok()?;
        let period = period.trim().parse().ok()?;
        Self::new(u64::try_from(quota).ok()?, period)
    }

    fn new(quota_us: u64, period_us: u64) -> Option<Self> {
        (period_us > 0).then_some(Self { quota_us, period_us })
    }

    /// Reads the limit in force in a v2 or v1 `cpu` cgroup directory.
    pub fn read(dir: &Path) -> Option<Self> {
        if let Ok(text) = fs::read_to_string(dir.join("cpu.max")) {
            return Self::parse_v2(&text);
        }
        let quota = fs::read_to_string(dir.join("cpu.cfs_quota_us")).ok()?;
        let period = fs::read_to_string(dir.join("cpu.cfs_period_us")).ok()?;
        Self::parse_v1(&quota, &period)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_v2_cpu_stat() {
        let text = "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 10\nnr_throttled 4\nthrottled_usec 2500\n";

        let stat = CpuStat::parse(text);

        assert_eq!(stat.usage_ns, Some(1_500_000));
        assert_eq!(stat.periods, Some(10));
        assert_eq!(stat.throttled_periods, Some(4));
        assert_eq!(stat.throttled_ns, Some(2_500_000));
    }

    #[test]
    fn parse_v1_cpu_stat() {
        let stat = CpuStat::parse("nr_periods 7\nnr_throttled 3\nthrottled_time 123456789\n");

        assert_eq!(stat.usage_ns, None);
        assert_eq!(stat.throttled_ns, Some(123_456_789));
    }

    #[test]
    fn parse_v2_without_controller() {
        // A v2 cgroup without the cpu controller enabled still has usage.
        let stat = CpuStat::parse("usage_usec 42\nuser_usec 40\nsystem_usec 2\n");

        assert_eq!(stat.usage_ns, Some(42_000));
        assert_eq!(stat.periods, None);
    }

    #[test]
    fn limits() {
        assert_eq!(CpuLimit::parse_v2("max 100000\n"), None);
        assert_eq!(CpuLimit::parse_v2("20000 100000\n").unwrap().cores(), 0.2);
        assert_eq!(CpuLimit::parse_v1("-1\n", "100000\n"), None);
        assert_eq!(CpuLimit::parse_v1("10000\n", "100000\n").unwrap().cores(), 0.1);
        assert_eq!(CpuLimit::parse_v1("10000", "0"), None);
        assert_eq!(CpuLimit::parse_v2("garbage"), None);
    }
}
