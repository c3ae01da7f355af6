//! One rule per cause: whether it holds for a group over the window.
//! What it costs is computed once, in `classify`, on a shared time basis.

use super::{Class, Evidence, Thresholds};

/// CPU saturation or contention: the group's tasks wait for a CPU.
pub fn cpu(evidence: &Evidence, thresholds: &Thresholds) -> Option<Class> {
    if evidence.runqueue_wait_share() < thresholds.runqueue_wait_share
        || evidence.average_waiting_tasks() < thresholds.runqueue_min_waiting_tasks
    {
        return None;
    }
    // A group whose own demand fills what it may use queues behind itself;
    // one that demands little queues behind others.
    let saturated = evidence.cpu_demand_cores() >= thresholds.saturation_share * evidence.cpu_allowed_cores();
    Some(if saturated { Class::CpuSaturated } else { Class::CpuContention })
}

/// CFS throttling: many throttled periods, or much of the runnable time
/// held back by throttling (short bursts against a tight quota).
pub fn throttled(evidence: &Evidence, thresholds: &Thresholds) -> Option<Class> {
    let throttle = &evidence.throttle;
    if throttle.throttled_periods.unwrap_or(0) == 0 {
        return None;
    }
    let by_periods = throttle.throttled_ratio.unwrap_or(0.0) >= thresholds.throttled_ratio;
    let by_delay = evidence.throttle_delay_share() >= thresholds.throttle_delay_share;
    (by_periods || by_delay).then_some(Class::CpuThrottled)
}

/// Disk I/O: a large share of the group's time in block-I/O wait, and more
/// than a trace of it (at least one task in I/O wait 5% of the time).
pub fn disk_io(evidence: &Evidence, thresholds: &Thresholds) -> Option<Class> {
    let waiting_tasks =
        if evidence.window_seconds > 0.0 { evidence.iowait.wait_seconds / evidence.window_seconds } else { 0.0 };
    (evidence.iowait_share() >= thresholds.iowait_share && waiting_tasks >= 0.05).then_some(Class::DiskIo)
}

/// DNS: slow answers, failures (SERVFAIL, REFUSED, timeouts), or lookups
/// multiplied by search-domain expansion (NXDOMAIN rounds).
pub fn dns(evidence: &Evidence, thresholds: &Thresholds) -> Option<Class> {
    let dns = &evidence.dns;
    if dns.queries < thresholds.min_requests {
        return None;
    }
    let slow = dns.p99_seconds.is_some_and(|p99| p99 >= thresholds.dns_latency_seconds);
    let failing = dns.failure_ratio >= thresholds.dns_failure_ratio;
    let expanded = dns.nxdomain_ratio >= thresholds.dns_nxdomain_ratio;
    (slow || failing || expanded).then_some(Class::Dns)
}

/// Dependency connects: slow or failing TCP connects.
pub fn dependency_connect(evidence: &Evidence, thresholds: &Thresholds) -> Option<Class> {
    let connect = &evidence.connect;
    if connect.attempts < thresholds.min_requests {
        return None;
    }
    let slow = connect.p99_seconds.is_some_and(|p99| p99 >= thresholds.connect_latency_seconds);
    let failing = connect.failure_ratio >= thresholds.connect_failure_ratio;
    (slow || failing).then_some(Class::DependencyConnect)
}
