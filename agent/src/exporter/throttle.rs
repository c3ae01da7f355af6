//! CFS throttling series: the kernel's `cpu.stat` counters, the limit in
//! force, and the probes' throttle delay.
//!
//! The usual throttling alert works unchanged:
//! `rate(chokepoint_cpu_cfs_throttled_periods_total[5m]) /
//! rate(chokepoint_cpu_cfs_periods_total[5m]) > 0.25`. That ratio counts
//! only periods in which the group ran. The share of wall-clock periods
//! throttled is `rate(chokepoint_cpu_cfs_throttled_periods_total[5m]) *
//! chokepoint_cpu_cfs_period_seconds`.

use std::fmt::Error as FmtError;

use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Unit,
};

use super::group_labels;
use crate::engine::GroupReport;

/// A counter family: name, help, unit and how to read it from a group.
type CounterSpec = (&'static str, &'static str, Option<&'static Unit>, fn(&GroupReport) -> Option<f64>);

pub fn encode(encoder: &mut DescriptorEncoder, groups: &[GroupReport], node: &str) -> Result<(), FmtError> {
    let counters: [CounterSpec; 3] = [
        (
            "cpu_cfs_periods",
            "CFS enforcement periods in which the cgroup had runnable tasks (cpu.stat nr_periods); periods in which it did not run are not counted.",
            None,
            |group| group.cpu.periods.map(|value| value as f64),
        ),
        (
            "cpu_cfs_throttled_periods",
            "CFS periods in which the cgroup used up its quota and was throttled (cpu.stat nr_throttled).",
            None,
            |group| group.cpu.throttled_periods.map(|value| value as f64),
        ),
        (
            "cpu_cfs_throttled",
            "Time the cgroup's run queues were throttled (cpu.stat throttled time), summed over CPUs: it can grow faster than wall-clock time, so it is not a share of wall time.",
            Some(&Unit::Seconds),
            |group| group.cpu.throttled_ns.map(|ns| ns as f64 / 1e9),
        ),
    ];
    for (name, help, unit, value_of) in counters {
        let mut metric = encoder.encode_descriptor(name, help, unit, MetricType::Counter)?;
        for group in groups {
            let Some(value) = value_of(group) else { continue };
            ConstCounter::new(value).encode(metric.encode_family(&group_labels(group, node))?)?;
        }
    }
    {
        let mut metric = encoder.encode_descriptor(
            "cpu_throttle_delay",
            "Time the cgroup's tasks were runnable but held back because the group was throttled, summed over tasks; kept apart from run-queue wait.",
            Some(&Unit::Seconds),
            MetricType::Counter,
        )?;
        for group in groups {
            let seconds = group.throttle_delay_total.total_ns as f64 / 1e9;
            ConstCounter::new(seconds).encode(metric.encode_family(&group_labels(group, node))?)?;
        }
    }
    {
        let mut metric = encoder.encode_descriptor(
            "cpu_limit_cores",
            "CFS bandwidth limit of the cgroup in CPUs (quota / period); absent when it has no limit.",
            None,
            MetricType::Gauge,
        )?;
        for group in groups {
            let Some(limit) = group.cpu_limit else { continue };
            ConstGauge::new(limit.cores()).encode(metric.encode_family(&group_labels(group, node))?)?;
        }
    }
    {
        let mut metric = encoder.encode_descriptor(
            "cpu_cfs_period",
            "CFS enforcement period of the cgroup's limit; absent when it has no limit.",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for group in groups {
            let Some(limit) = group.cpu_limit else { continue };
            let seconds = limit.period_us as f64 / 1e6;
            ConstGauge::new(seconds).encode(metric.encode_family(&group_labels(group, node))?)?;
        }
    }
    let mut metric = encoder.encode_descriptor(
        "cpu_throttled_ratio",
        "Throttled periods / periods over the classification window, counting only periods in which the cgroup ran; above 0.25 the cgroup is throttled.",
        None,
        MetricType::Gauge,
    )?;
    for group in groups {
        let Some(ratio) = group.evidence.and_then(|evidence| evidence.throttle.throttled_ratio) else { continue };
        ConstGauge::new(ratio).encode(metric.encode_family(&group_labels(group, node))?)?;
    }
    Ok(())
}
