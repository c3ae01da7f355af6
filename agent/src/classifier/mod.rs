//! Bottleneck classification: from one cgroup's window of evidence to the
//! causes that hold and the primary one.
//!
//! Pure logic: no kernel access, so every rule is unit-tested on numbers.

pub mod stability;

use std::fmt;

use serde::Serialize;

pub use crate::engine::network::{ConnectEvidence, DnsEvidence};
use crate::engine::{iowait::IoWaitEvidence, throttle::ThrottleEvidence};

/// Bottleneck class: the cause that slows a group down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// The group uses most of the CPU it may use, and its tasks queue.
    CpuSaturated,
    /// Its tasks queue for CPU while its own use is low: others have the
    /// CPUs.
    CpuContention,
    None,
}

impl Class {
    pub const ALL: [Class; 3] = [Class::CpuSaturated, Class::CpuContention, Class::None];

    /// Returns the `class` label value used on `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            Class::CpuSaturated => "cpu_saturated",
            Class::CpuContention => "cpu_contention",
            Class::None => "none",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.label())
    }
}

/// Thresholds of the rules, from the agent's configuration.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Thresholds {
    /// Share of its runnable time a group spends waiting in the run queue
    /// (`wait / (wait + cpu)`) above which CPU is a bottleneck.
    pub runqueue_wait_share: f64,
    /// Average number of the group's tasks waiting (wait seconds per second)
    /// below which run-queue waits are too small to matter, whatever the
    /// share. Keeps an almost idle group with one unlucky wait out.
    pub runqueue_min_waiting_tasks: f64,
    /// Share of its CPU limit (or of the node's CPUs, without a limit) that
    /// a group's CPU demand (CPU used plus tasks waiting for a CPU) must
    /// reach for its waits to count as saturation rather than contention.
    pub saturation_share: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            runqueue_wait_share: 0.10,
            runqueue_min_waiting_tasks: 0.01,
            saturation_share: 0.80,
        }
    }
}

/// One group's measurements over a window.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Evidence {
    pub window_seconds: f64,
    /// CPU used, in cores (CPU seconds per second).
    pub cpu_used_cores: Option<f64>,
    /// CFS quota in cores, when the group has one.
    pub cpu_limit_cores: Option<f64>,
    /// CPUs on the node.
    pub node_cores: f64,
    /// Run-queue wait summed over the group's tasks, in seconds.
    pub runqueue_wait_seconds: f64,
    pub runqueue_waits: u64,
    pub runqueue_p50_seconds: Option<f64>,
    pub runqueue_p99_seconds: Option<f64>,
    /// CFS throttling: kernel counters and the probes' throttle delay.
    pub throttle: ThrottleEvidence,
    /// Block-I/O wait from the probes.
    pub iowait: IoWaitEvidence,
    pub dns: DnsEvidence,
    pub connect: ConnectEvidence,
}

impl Evidence {
    /// Share of the group's runnable time spent waiting for a CPU:
    /// `wait / (wait + cpu used)`.
    pub fn runqueue_wait_share(&self) -> f64 {
        let cpu_seconds = self.cpu_used_cores.unwrap_or(0.0) * self.window_seconds;
        let runnable = self.runqueue_wait_seconds + cpu_seconds;
        if runnable > 0.0 { self.runqueue_wait_seconds / runnable } else { 0.0 }
    }

    /// Average number of the group's tasks waiting for a CPU (wait seconds
    /// per second of window).
    pub fn average_waiting_tasks(&self) -> f64 {
        if self.window_seconds > 0.0 {
            self.runqueue_wait_seconds / self.window_seconds
        } else {
            0.0
        }
    }

    /// CPU the group would use if it never waited, in cores: CPU used plus
    /// the average number of its tasks waiting for a CPU.
    pub fn cpu_demand_cores(&self) -> f64 {
        self.cpu_used_cores.unwrap_or(0.0) + self.average_waiting_tasks()
    }

    /// Share of the group's runnable time held back by CFS throttling:
    /// `throttle delay / (throttle delay + run-queue wait + cpu used)`.
    pub fn throttle_delay_share(&self) -> f64 {
        let delay = self.throttle.delay_seconds;
        let runnable = delay + self.runqueue_wait_seconds + self.cpu_seconds();
        if runnable > 0.0 { delay / runnable } else { 0.0 }
    }

    /// Share of the group's non-idle time spent in block-I/O wait:
    /// `I/O wait / (I/O wait + throttle delay + run-queue wait + cpu used)`.
    pub fn iowait_share(&self) -> f64 {
        let wait = self.iowait.wait_seconds;
        let busy = wait + self.throttle.delay_seconds + self.runqueue_wait_seconds + self.cpu_seconds();
        if busy > 0.0 { wait / busy } else { 0.0 }
    }

    fn cpu_seconds(&self) -> f64 {
        self.cpu_used_cores.unwrap_or(0.0) * self.window_seconds
    }

    /// CPU the group may use, in cores: its limit, else the node.
    pub fn cpu_allowed_cores(&self) -> f64 {
        self.cpu_limit_cores
            .map_or(self.node_cores, |limit| limit.min(self.node_cores))
    }
}

/// A class that holds, with the share of the group's time it costs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Finding {
    pub class: Class,
    pub cost_share: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub primary: Class,
    /// Every class that holds, primary first; empty when `primary` is
    /// `None`.
    pub findings: Vec<Finding>,
}

impl Verdict {
    pub fn holds(&self, class: Class) -> bool {
        if class == Class::None {
            self.findings.is_empty()
        } else {
            self.findings.iter().any(|finding| finding.class == class)
        }
    }
}

/// Applies the rules to one group's evidence.
pub fn classify(evidence: &Evidence, thresholds: &Thresholds) -> Verdict {
    let mut findings = Vec::new();
    if let Some(finding) = cpu_finding(evidence, thresholds) {
        findings.push(finding);
    }
    findings.sort_by(|a, b| b.cost_share.total_cmp(&a.cost_share));
    Verdict {
        primary: findings.first().map_or(Class::None, |finding| finding.class),
        findings,
    }
}

fn cpu_finding(evidence: &Evidence, thresholds: &Thresholds) -> Option<Finding> {
    let share = evidence.runqueue_wait_share();
    if share < thresholds.runqueue_wait_share
        || evidence.average_waiting_tasks() < thresholds.runqueue_min_waiting_tasks
    {
        return None;
    }
    // A group whose own demand fills what it may use queues behind itself;
    // one that demands little queues behind others.
    let class = if evidence.cpu_demand_cores() >= thresholds.saturation_share * evidence.cpu_allowed_cores() {
        Class::CpuSaturated
    } else {
        Class::CpuContention
    };
    Some(Finding {
        class,
        cost_share: share,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence(cpu_used_cores: f64, runqueue_wait_seconds: f64) -> Evidence {
        Evidence {
            window_seconds: 10.0,
            cpu_used_cores: Some(cpu_used_cores),
            node_cores: 2.0,
            runqueue_wait_seconds,
            ..Evidence::default()
        }
    }

    #[test]
    fn idle_group_is_none() {
        let verdict = classify(&evidence(0.0, 0.0), &Thresholds::default());

        assert_eq!(verdict.primary, Class::None);
        assert!(verdict.holds(Class::None));
    }

    #[test]
    fn busy_group_that_queues_is_saturated() {
        // Two cores used on a two-core node, with 20 s of waits in 10 s.
        let verdict = classify(&evidence(1.9, 20.0), &Thresholds::default());

        assert_eq!(verdict.primary, Class::CpuSaturated);
    }

    #[test]
    fn light_group_that_queues_is_contended() {
        // 0.05 cores used, but 0.5 s of waits in 10 s.
        let verdict = classify(&evidence(0.05, 0.5), &Thresholds::default());

        assert_eq!(verdict.primary, Class::CpuContention);
        assert!((verdict.findings[0].cost_share - 0.5).abs() < 1e-9);
    }

    #[test]
    fn busy_group_squeezed_by_others_is_still_saturated() {
        // Four spinning threads get only 1.2 of 2 cores because other load
        // runs too, but their demand (1.2 used + 2.8 waiting) fills the node.
        let verdict = classify(&evidence(1.2, 28.0), &Thresholds::default());

        assert_eq!(verdict.primary, Class::CpuSaturated);
    }

    #[test]
    fn tiny_waits_do_not_count() {
        // A nearly idle group: 1 ms of CPU and 2 ms of waits in 10 s is a
        // high share, but far below one task waiting 1% of the time.
        let verdict = classify(&evidence(0.0001, 0.002), &Thresholds::default());

        assert_eq!(verdict.primary, Class::None);
    }

    #[test]
    fn throttle_and_iowait_shares() {
        // 10 s window, 0.1 cores used (1 s of CPU), 1 s of run-queue wait,
        // 2 s of throttle delay and 4 s of I/O wait.
        let mut throttled = evidence(0.1, 1.0);
        throttled.throttle.delay_seconds = 2.0;
        throttled.iowait.wait_seconds = 4.0;

        assert!((throttled.throttle_delay_share() - 0.5).abs() < 1e-9);
        assert!((throttled.iowait_share() - 0.5).abs() < 1e-9);
        assert_eq!(evidence(0.0, 0.0).iowait_share(), 0.0);
    }

    #[test]
    fn limit_defines_saturation() {
        let mut limited = evidence(0.19, 1.0);
        limited.cpu_limit_cores = Some(0.2);

        let verdict = classify(&limited, &Thresholds::default());

        assert_eq!(verdict.primary, Class::CpuSaturated);
    }
}
