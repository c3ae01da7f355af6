//! CFS throttling of one cgroup: the kernel's counters from `cpu.stat`,
//! and the throttle delay the `sched_switch` probe measures.
//!
//! Two traps this keeps apart:
//! - `throttled_time` is summed over the group's run queues, one per CPU,
//!   so with N throttled CPUs it grows N seconds per second. It is never
//!   divided by wall-clock time here.
//! - `nr_periods` counts only periods in which the group had runnable
//!   tasks, so for a bursty group `nr_throttled / nr_periods` is much
//!   higher than the share of wall-clock periods that were throttled. The
//!   latter is `nr_throttled * period / elapsed`, which the exported
//!   counters and `chokepoint_cpu_cfs_period_seconds` let a query compute.

use agent_common::wait_total::WaitTotal;
use serde::Serialize;

use crate::cgroup::cpu_stat::{CpuLimit, CpuStat};

/// CFS throttling between two samples.
#[derive(Clone, Copy, Debug, Default)]
pub struct ThrottleDelta {
    /// Periods in which the group had runnable tasks (`nr_periods`).
    pub periods: Option<u64>,
    /// Periods in which it ran out of quota (`nr_throttled`).
    pub throttled_periods: Option<u64>,
    /// Throttled time summed over CPUs, in nanoseconds.
    pub throttled_ns: Option<u64>,
    /// Time tasks were held back runnable by throttling, summed over tasks.
    pub delay: WaitTotal,
}

impl ThrottleDelta {
    pub fn between(earlier: &CpuStat, later: &CpuStat, delay: WaitTotal) -> Self {
        let difference = |later: Option<u64>, earlier: Option<u64>| Some(later?.saturating_sub(earlier?));
        Self {
            periods: difference(later.periods, earlier.periods),
            throttled_periods: difference(later.throttled_periods, earlier.throttled_periods),
            throttled_ns: difference(later.throttled_ns, earlier.throttled_ns),
            delay,
        }
    }
}

/// CFS throttling of one group over the window.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ThrottleEvidence {
    /// CFS period in force, in seconds; `None` without a limit.
    pub cfs_period_seconds: Option<f64>,
    /// Periods in which the group had runnable tasks.
    pub periods: Option<u64>,
    pub throttled_periods: Option<u64>,
    /// `throttled_periods / periods`: the ratio the usual alert reads
    /// (above 0.25 the group is throttled). `None` when no period ran.
    pub throttled_ratio: Option<f64>,
    /// Share of wall-clock periods in the window that were throttled:
    /// `throttled_periods * period / window`. Lower than
    /// `throttled_ratio` when the group is idle in some periods.
    pub throttled_wall_clock_ratio: Option<f64>,
    /// Throttled time from `cpu.stat`, summed over CPUs (not wall time).
    pub throttled_seconds: Option<f64>,
    /// Time the group's tasks were runnable but held back by throttling,
    /// summed over tasks, from the probes.
    pub delay_seconds: f64,
    /// Number of such delays.
    pub delays: u64,
}

impl ThrottleEvidence {
    pub fn new(delta: &ThrottleDelta, limit: Option<CpuLimit>, window_seconds: f64) -> Self {
        let cfs_period_seconds = limit.map(|limit| limit.period_us as f64 / 1e6);
        let throttled_ratio = match (delta.throttled_periods, delta.periods) {
            (Some(throttled), Some(periods)) if periods > 0 => Some(throttled as f64 / periods as f64),
            _ => None,
        };
        let throttled_wall_clock_ratio = match (delta.throttled_periods, cfs_period_seconds) {
            (Some(throttled), Some(period)) if window_seconds > 0.0 => {
                Some((throttled as f64 * period / window_seconds).min(1.0))
            }
            _ => None,
        };
        Self {
            cfs_period_seconds,
            periods: delta.periods,
            throttled_periods: delta.throttled_periods,
            throttled_ratio,
            throttled_wall_clock_ratio,
            throttled_seconds: delta.throttled_ns.map(|ns| ns as f64 / 1e9),
            delay_seconds: delta.delay.total_ns as f64 / 1e9,
            delays: delta.delay.count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(periods: u64, throttled_periods: u64, throttled_ns: u64) -> CpuStat {
        CpuStat {
            usage_ns: None,
            periods: Some(periods),
            throttled_periods: Some(throttled_periods),
            throttled_ns: Some(throttled_ns),
        }
    }

    #[test]
    fn busy_group_ratio_and_summed_time() {
        // Two busy threads at 20 ms per 100 ms for 10 s: 100 periods, all
        // throttled, about 1.8 s of throttled time per second of wall time.
        let delta = ThrottleDelta::between(&stat(50, 40, 1_000), &stat(150, 140, 18_000_001_000), WaitTotal::ZERO);
        let limit = CpuLimit { quota_us: 20_000, period_us: 100_000 };

        let evidence = ThrottleEvidence::new(&delta, Some(limit), 10.0);

        assert_eq!(evidence.periods, Some(100));
        assert_eq!(evidence.throttled_ratio, Some(1.0));
        assert_eq!(evidence.throttled_seconds, Some(18.0));
        assert_eq!(evidence.throttled_wall_clock_ratio, Some(1.0));
    }

    #[test]
    fn bursty_group_ratios_differ() {
        // A burst every 500 ms throttled twice in the three periods it ran:
        // over 10 s, 60 periods counted, 40 throttled, of 100 wall periods.
        let delta = ThrottleDelta::between(&stat(0, 0, 0), &stat(60, 40, 3_600_000_000), WaitTotal::ZERO);
        let limit = CpuLimit { quota_us: 10_000, period_us: 100_000 };

        let evidence = ThrottleEvidence::new(&delta, Some(limit), 10.0);

        let ratio = evidence.throttled_ratio.unwrap();
        let wall_clock = evidence.throttled_wall_clock_ratio.unwrap();
        assert!((ratio - 2.0 / 3.0).abs() < 1e-9, "ratio {ratio}");
        assert!((wall_clock - 0.4).abs() < 1e-9, "wall clock {wall_clock}");
    }

    #[test]
    fn no_limit_no_ratio() {
        let delta = ThrottleDelta::between(&CpuStat::default(), &CpuStat::default(), WaitTotal::ZERO);

        let evidence = ThrottleEvidence::new(&delta, None, 10.0);

        assert_eq!(evidence.throttled_ratio, None);
        assert_eq!(evidence.throttled_wall_clock_ratio, None);
        assert_eq!(evidence.cfs_period_seconds, None);
    }
}
