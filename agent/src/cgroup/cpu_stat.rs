//! The kernel's own CPU accounting for a cgroup: `cpu.stat` and the CFS
//! bandwidth limit, in either hierarchy.
//!
//! Units are normalised on read: every duration here is in nanoseconds,
//! whatever unit the file uses (v2 `*_usec`, v1 `throttled_time` in ns).

use std::io;

use super::{Hierarchy, open_dir::CgroupDir};

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
    /// mounted with `cpu` and `want_usage` is set. Skipping it when the
    /// usage is known saves an open per tick.
    fn read(dir: &mut CgroupDir, want_usage: bool) -> io::Result<Self> {
        let mut stat = dir.read_to_string(c"cpu.stat").map(|text| Self::parse(&text))?;
        if want_usage
            && stat.usage_ns.is_none()
            && let Ok(usage) = dir.read_to_string(c"cpuacct.usage")
        {
            stat.usage_ns = usage.trim().parse().ok();
        }
        Ok(stat)
    }

    /// Reads every directory and takes each counter from the first one
    /// that has it: on hybrid hosts the v2 cgroup has the usage and the v1
    /// `cpu` cgroup the CFS counters. Returns `None` when the first
    /// directory (the cgroup itself) no longer exists.
    ///
    /// Directories and files that could only supply counters already found
    /// are not read.
    pub fn read_dirs<'a>(dirs: impl IntoIterator<Item = &'a mut CgroupDir>) -> Option<Self> {
        let mut dirs = dirs.into_iter();
        let mut merged = match Self::read(dirs.next()?, true) {
            Ok(stat) => stat,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return None,
            Err(_) => Self::default(),
        };
        for dir in dirs {
            if merged.is_complete() {
                break;
            }
            let Ok(stat) = Self::read(dir, merged.usage_ns.is_none()) else { continue };
            merged.usage_ns = merged.usage_ns.or(stat.usage_ns);
            merged.periods = merged.periods.or(stat.periods);
            merged.throttled_periods = merged.throttled_periods.or(stat.throttled_periods);
            merged.throttled_ns = merged.throttled_ns.or(stat.throttled_ns);
        }
        Some(merged)
    }

    fn is_complete(&self) -> bool {
        self.usage_ns.is_some()
            && self.periods.is_some()
            && self.throttled_periods.is_some()
            && self.throttled_ns.is_some()
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

    /// Reads the limit in force in a v2 cgroup directory (`cpu.max`, which
    /// v1 lacks) or a v1 `cpu` cgroup directory (the CFS files, which v2
    /// lacks). Files the hierarchy lacks are not tried, which saves a
    /// failed open per file.
    pub fn read(dir: &mut CgroupDir, hierarchy: Hierarchy) -> Option<Self> {
        match hierarchy {
            Hierarchy::V2 => Self::parse_v2(&dir.read_to_string(c"cpu.max").ok()?),
            Hierarchy::V1Cpu => {
                let quota = dir.read_to_string(c"cpu.cfs_quota_us").ok()?;
                let period = dir.read_to_string(c"cpu.cfs_period_us").ok()?;
                Self::parse_v1(&quota, &period)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn parse_v2_cpu_stat() {
        let text =
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 10\nnr_throttled 4\nthrottled_usec 2500\n";

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
    fn read_dirs_merges_hierarchies() {
        let root = std::env::temp_dir().join(format!("chokepoint-cpu-stat-{}", std::process::id()));
        let (v2, v1) = (root.join("v2"), root.join("v1"));
        fs::create_dir_all(&v2).unwrap();
        fs::create_dir_all(&v1).unwrap();
        fs::write(v2.join("cpu.stat"), "usage_usec 3\nuser_usec 2\nsystem_usec 1\n").unwrap();
        fs::write(v1.join("cpu.stat"), "nr_periods 7\nnr_throttled 3\nthrottled_time 9\n").unwrap();
        fs::write(v1.join("cpuacct.usage"), "5000\n").unwrap();

        let merged = CpuStat::read_dirs(&mut [CgroupDir::open(v2.clone()), CgroupDir::open(v1.clone())]).unwrap();
        let v1_only = CpuStat::read_dirs(&mut [CgroupDir::open(v1.clone())]).unwrap();
        let removed = CpuStat::read_dirs(&mut [CgroupDir::open(root.join("gone")), CgroupDir::open(v1.clone())]);
        fs::remove_dir_all(&root).unwrap();

        assert_eq!(merged.usage_ns, Some(3_000));
        assert_eq!(merged.periods, Some(7));
        assert_eq!(merged.throttled_periods, Some(3));
        assert_eq!(merged.throttled_ns, Some(9));
        assert_eq!(v1_only.usage_ns, Some(5_000));
        assert_eq!(removed, None);
    }

    #[test]
    fn limit_files_by_hierarchy() {
        let dir = std::env::temp_dir().join(format!("chokepoint-cpu-limit-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("cpu.max"), "50000 100000\n").unwrap();
        fs::write(dir.join("cpu.cfs_quota_us"), "20000\n").unwrap();
        fs::write(dir.join("cpu.cfs_period_us"), "100000\n").unwrap();

        let v2 = CpuLimit::read(&mut CgroupDir::open(dir.clone()), Hierarchy::V2);
        let v1 = CpuLimit::read(&mut CgroupDir::open(dir.clone()), Hierarchy::V1Cpu);
        fs::remove_dir_all(&dir).unwrap();

        assert_eq!(v2.map(|limit| limit.cores()), Some(0.5));
        assert_eq!(v1.map(|limit| limit.cores()), Some(0.2));
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
