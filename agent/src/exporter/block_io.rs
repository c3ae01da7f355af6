//! Block-I/O series: the probes' I/O wait per cgroup and block request
//! latency per cgroup and disk.

use std::fmt::Error as FmtError;

use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Unit,
};

use super::{Labels, escape_label_value, exported_histogram, group_labels};
use crate::engine::GroupReport;

pub fn encode(encoder: &mut DescriptorEncoder, groups: &[GroupReport], node: &str) -> Result<(), FmtError> {
    {
        let mut metric = encoder.encode_descriptor(
            "blkio_wait",
            "Time the cgroup's tasks slept in block-I/O wait until they were woken, summed over tasks; includes I/O held back by the cgroup's own I/O limit. The wait for a CPU after the wakeup counts as run-queue wait.",
            Some(&Unit::Seconds),
            MetricType::Counter,
        )?;
        for group in groups {
            let seconds = group.iowait_total.total_ns as f64 / 1e9;
            ConstCounter::new(seconds).encode(metric.encode_family(&group_labels(group, node))?)?;
        }
    }
    {
        let mut metric = encoder.encode_descriptor(
            "blkio_wait_ratio",
            "Share of the cgroup's non-idle task time spent in block-I/O wait over the classification window: I/O wait / (I/O wait + throttle delay + run-queue wait + CPU used).",
            None,
            MetricType::Gauge,
        )?;
        for group in groups {
            let Some(evidence) = &group.evidence else { continue };
            ConstGauge::new(evidence.iowait_share()).encode(metric.encode_family(&group_labels(group, node))?)?;
        }
    }
    let mut metric = encoder.encode_descriptor(
        "block_request_latency",
        "Time from issue to the driver to completion of block requests the cgroup owns (its blkcg), per disk.",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for group in groups {
        for series in &group.block_latency {
            let mut labels = group_labels(group, node);
            labels.push(("device", escape_label_value(&series.device)));
            labels.push(("device_name", escape_label_value(&series.device_name)));
            let (sum, count, buckets) = exported_histogram(&series.latency);
            metric.encode_family(&labels)?.encode_histogram::<Labels<'_>>(sum, count, &buckets, None)?;
        }
    }
    Ok(())
}
