//! Bottleneck classification: from one cgroup's window of evidence to the
//! causes that hold and the primary one.
//!
//! Pure logic: no kernel access, so every rule is unit-tested on numbers.

mod rules;
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
    /// Its CFS quota throttles its tasks, also with a low average CPU.
    CpuThrottled,
    /// A large share of its tasks' time goes to block-I/O wait.
    DiskIo,
    /// DNS lookups are slow, failing, timing out, or multiplied by
    /// search-domain expansion.
    Dns,
    /// TCP connects to a destination are slow or failing.
    DependencyConnect,
    None,
}

impl Class {
    pub const ALL: [Class; 7] = [
        Class::CpuSaturated,
        Class::CpuContention,
        Class::CpuThrottled,
        Class::DiskIo,
        Class::Dns,
        Class::DependencyConnect,
        Class::None,
    ];

    /// Returns the `class` label value used on `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            Class::CpuSaturated => "cpu_saturated",
            Class::CpuContention => "cpu_contention",
            Class::CpuThrottled => "cpu_throttled",
            Class::DiskIo => "disk_io",
            Class::Dns => "dns",
            Class::DependencyConnect => "dependency_connect",
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
    /// Throttled periods per period above which the group is throttled
    /// (the usual alert threshold is 25%).
    pub throttled_ratio: f64,
    /// Share of its runnable time held back by throttling above which the
    /// group is throttled whatever its period ratio: this catches short
    /// bursts against a tight quota.
    pub throttle_delay_share: f64,
    /// Share of the group's time in block-I/O wait above which disk I/O is
    /// its bottleneck.
    pub iowait_share: f64,
    /// DNS p99 latency, in seconds, above which lookups are slow.
    pub dns_latency_seconds: f64,
    /// SERVFAIL, REFUSED, other errors and timeouts per query above which
    /// lookups are failing.
    pub dns_failure_ratio: f64,
    /// NXDOMAIN responses per query above which search-domain expansion
    /// multiplies lookups. With `ndots:5`, an external name costs one
    /// NXDOMAIN round per search domain first, three with the Kubernetes
    /// default search list.
    pub dns_nxdomain_ratio: f64,
    /// Connect p99 latency, in seconds, above which connects are slow.
    pub connect_latency_seconds: f64,
    /// Failed connects per attempt above which a dependency is failing.
    pub connect_failure_ratio: f64,
    /// Fewest DNS queries or connects in the window for those rules to
    /// apply, so one unlucky request does not decide.
    pub min_requests: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            runqueue_wait_share: 0.10,
            runqueue_min_waiting_tasks: 0.01,
            saturation_share: 0.80,
            throttled_ratio: 0.25,
            throttle_delay_share: 0.10,
            iowait_share: 0.20,
            dns_latency_seconds: 0.1,
            dns_failure_ratio: 0.05,
            dns_nxdomain_ratio: 0.5,
            connect_latency_seconds: 0.2,
            connect_failure_ratio: 0.05,
            min_requests: 3,
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
        if self.window_seconds > 0.0 { self.runqueue_wait_seconds / self.window_seconds } else { 0.0 }
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

    /// Returns the group's task time that is not idle: CPU used plus the
    /// time its tasks waited on each cause. Costs are shares of this, so
    /// they are comparable across causes.
    pub fn busy_seconds(&self) -> f64 {
        self.cpu_seconds()
            + self.runqueue_wait_seconds
            + self.throttle.delay_seconds
            + self.iowait.wait_seconds
            + self.dns.wait_seconds
            + self.connect.wait_seconds
    }

    /// Share of the group's busy time that `seconds` is.
    pub fn share_of_busy(&self, seconds: f64) -> f64 {
        let busy = self.busy_seconds();
        if busy > 0.0 { (seconds / busy).min(1.0) } else { 0.0 }
    }

    /// Time the cause of `class` cost the group over the window, in task
    /// seconds.
    pub fn cost_seconds(&self, class: Class) -> f64 {
        match class {
            Class::CpuSaturated | Class::CpuContention => self.runqueue_wait_seconds,
            Class::CpuThrottled => self.throttle.delay_seconds,
            Class::DiskIo => self.iowait.wait_seconds,
            Class::Dns => self.dns.wait_seconds,
            Class::DependencyConnect => self.connect.wait_seconds,
            Class::None => 0.0,
        }
    }

    /// CPU the group may use, in cores: its limit, else the node.
    pub fn cpu_allowed_cores(&self) -> f64 {
        self.cpu_limit_cores.map_or(self.node_cores, |limit| limit.min(self.node_cores))
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
    let mut findings: Vec<Finding> = [
        rules::cpu(evidence, thresholds),
        rules::throttled(evidence, thresholds),
        rules::disk_io(evidence, thresholds),
        rules::dns(evidence, thresholds),
        rules::dependency_connect(evidence, thresholds),
    ]
    .into_iter()
    .flatten()
    .map(|class| Finding { class, cost_share: evidence.share_of_busy(evidence.cost_seconds(class)) })
    .collect();
    // The primary class is the one costing the largest share of the
    // group's time; ties keep the order above.
    findings.sort_by(|a, b| b.cost_share.total_cmp(&a.cost_share));
    Verdict { primary: findings.first().map_or(Class::None, |finding| finding.class), findings }
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

    #[test]
    fn throttled_by_period_ratio() {
        let mut throttled = evidence(0.2, 0.0);
        throttled.cpu_limit_cores = Some(0.2);
        throttled.throttle.periods = Some(50);
        throttled.throttle.throttled_periods = Some(48);
        throttled.throttle.throttled_ratio = Some(0.96);
        throttled.throttle.delay_seconds = 14.0;

        let verdict = classify(&throttled, &Thresholds::default());

        assert_eq!(verdict.primary, Class::CpuThrottled);
    }

    #[test]
    fn bursty_group_throttled_by_delay_share() {
        // 0.03 cores on average, a period ratio below 25%, but throttling
        // held its tasks back most of their runnable time.
        let mut bursty = evidence(0.03, 0.0);
        bursty.throttle.periods = Some(40);
        bursty.throttle.throttled_periods = Some(8);
        bursty.throttle.throttled_ratio = Some(0.2);
        bursty.throttle.delay_seconds = 0.6;

        let verdict = classify(&bursty, &Thresholds::default());

        assert_eq!(verdict.primary, Class::CpuThrottled);
    }

    #[test]
    fn quota_never_reached_is_not_throttled() {
        let mut calm = evidence(0.05, 0.0);
        calm.throttle.periods = Some(40);
        calm.throttle.throttled_periods = Some(0);
        calm.throttle.throttled_ratio = Some(0.0);

        assert_eq!(classify(&calm, &Thresholds::default()).primary, Class::None);
    }

    #[test]
    fn disk_wait_is_disk_io() {
        let mut writer = evidence(0.02, 0.0);
        writer.iowait.wait_seconds = 8.0;

        assert_eq!(classify(&writer, &Thresholds::default()).primary, Class::DiskIo);
    }

    #[test]
    fn dns_slow_failing_or_expanded() {
        let thresholds = Thresholds::default();
        let mut slow = evidence(0.01, 0.0);
        slow.dns.queries = 20;
        slow.dns.p99_seconds = Some(0.25);
        slow.dns.wait_seconds = 4.0;
        let mut failing = evidence(0.01, 0.0);
        failing.dns.queries = 20;
        failing.dns.failure_ratio = 0.2;
        let mut expanded = evidence(0.01, 0.0);
        expanded.dns.queries = 30;
        expanded.dns.nxdomain_ratio = 0.66;
        let mut healthy = evidence(0.01, 0.0);
        healthy.dns.queries = 30;
        healthy.dns.p99_seconds = Some(0.002);

        assert_eq!(classify(&slow, &thresholds).primary, Class::Dns);
        assert_eq!(classify(&failing, &thresholds).primary, Class::Dns);
        assert_eq!(classify(&expanded, &thresholds).primary, Class::Dns);
        assert_eq!(classify(&healthy, &thresholds).primary, Class::None);
    }

    #[test]
    fn too_few_requests_decide_nothing() {
        let mut one = evidence(0.01, 0.0);
        one.dns.queries = 1;
        one.dns.failure_ratio = 1.0;
        one.connect.attempts = 1;
        one.connect.failure_ratio = 1.0;

        assert_eq!(classify(&one, &Thresholds::default()).primary, Class::None);
    }

    #[test]
    fn failing_connects_are_dependency_connect() {
        let mut client = evidence(0.01, 0.0);
        client.connect.attempts = 10;
        client.connect.failure_ratio = 0.5;
        client.connect.wait_seconds = 5.0;

        assert_eq!(classify(&client, &Thresholds::default()).primary, Class::DependencyConnect);
    }

    #[test]
    fn primary_is_the_costliest_cause() {
        // Slow DNS costs 6 s, CPU contention 1 s: both hold, DNS leads.
        let mut both = evidence(0.05, 1.0);
        both.dns.queries = 30;
        both.dns.p99_seconds = Some(0.3);
        both.dns.wait_seconds = 6.0;

        let verdict = classify(&both, &Thresholds::default());

        assert_eq!(verdict.primary, Class::Dns);
        assert!(verdict.holds(Class::CpuContention));
        assert!(verdict.findings[0].cost_share > verdict.findings[1].cost_share);
    }
}
