//! Renders the engine's latest snapshot in the Prometheus/OpenMetrics text
//! format.
//!
//! The exporter keeps no metric state of its own: each scrape encodes the
//! snapshot as it is, so series of removed cgroups disappear with them.

mod block_io;
mod network;
mod throttle;

use std::{borrow::Cow, fmt::Error as FmtError};

use agent_common::histogram::{LatencyHistogram, SLOTS, slot_upper_bound_ns};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::{Registry, Unit},
};

use crate::{
    classifier::{Class, Verdict},
    engine::{GroupReport, SharedSnapshot},
};

/// The product prefix of every metric name.
pub const PREFIX: &str = "chokepoint";

/// Histogram bucket bounds exported, as log2 slot indices: every second
/// slot from 1.024 µs (2^10 ns) to about 17 s (2^34 ns). Each bound is
/// exact in the kernel's log2 slots, so no estimate enters the buckets.
/// One bucket in two is skipped to keep the series count down.
const EXPORTED_BUCKET_SLOTS: std::ops::RangeInclusive<usize> = 9..=33;

#[derive(Debug)]
pub struct Exporter {
    snapshot: SharedSnapshot,
    node: String,
}

/// Builds the registry that `/metrics` encodes.
pub fn registry(snapshot: SharedSnapshot, node: String) -> Registry {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(Exporter { snapshot, node }));
    registry
}

type Labels<'a> = Vec<(&'static str, Cow<'a, str>)>;

/// Escapes a label value for the text formats: backslash, double quote and
/// line feed, as the exposition format specifies. prometheus-client 0.24
/// writes label values as they are, and cgroup names may hold all three.
pub fn escape_label_value(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(value);
    }
    let mut escaped = String::with_capacity(value.len() + 8);
    for character in value.chars() {
        match character {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            other => escaped.push(other),
        }
    }
    Cow::Owned(escaped)
}

impl Collector for Exporter {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), FmtError> {
        let snapshot = self.snapshot.read().map(|guard| guard.clone()).map_err(|_| FmtError)?;
        encode_groups(&mut encoder, &snapshot.groups, &self.node)?;
        network::encode_dns(&mut encoder, &snapshot.groups, &self.node)?;
        network::encode_connect(&mut encoder, &snapshot.groups, &self.node)?;
        encode_probes(&mut encoder, &snapshot.probes, &self.node)?;
        Ok(())
    }
}

/// Labels of a cgroup's series: `namespace`, `pod` and `container` as
/// cAdvisor and kube-state-metrics use them (empty, which Prometheus treats
/// as absent, outside pods or while a name is unknown), and the path.
fn group_labels<'a>(group: &'a GroupReport, node: &'a str) -> Labels<'a> {
    let identity = group.identity.as_ref();
    let name =
        |value: Option<&'a Option<String>>| escape_label_value(value.and_then(Option::as_deref).unwrap_or_default());
    vec![
        ("node", escape_label_value(node)),
        ("namespace", name(identity.map(|identity| &identity.namespace))),
        ("pod", name(identity.map(|identity| &identity.pod))),
        ("container", name(identity.map(|identity| &identity.container))),
        ("cgroup", escape_label_value(&group.path)),
    ]
}

fn encode_groups(encoder: &mut DescriptorEncoder, groups: &[GroupReport], node: &str) -> Result<(), FmtError> {
    {
        let mut metric = encoder.encode_descriptor(
            "runqueue_latency",
            "Time tasks of the cgroup waited runnable in a CPU run queue before running, per wait.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for group in groups {
            let labels = group_labels(group, node);
            let (sum, count, buckets) = exported_histogram(&group.runqueue_total);
            metric.encode_family(&labels)?.encode_histogram::<Labels<'_>>(sum, count, &buckets, None)?;
        }
    }
    {
        let mut metric = encoder.encode_descriptor(
            "runqueue_wait",
            "Total time tasks of the cgroup waited runnable in a CPU run queue, summed over tasks.",
            Some(&Unit::Seconds),
            MetricType::Counter,
        )?;
        for group in groups {
            let labels = group_labels(group, node);
            ConstCounter::new(group.runqueue_total.total_ns as f64 / 1e9).encode(metric.encode_family(&labels)?)?;
        }
    }
    {
        let mut metric = encoder.encode_descriptor(
            "cpu_usage",
            "CPU time used by the cgroup's tasks, from the kernel's cpu.stat.",
            Some(&Unit::Seconds),
            MetricType::Counter,
        )?;
        for group in groups {
            let Some(usage_ns) = group.cpu.usage_ns else { continue };
            let labels = group_labels(group, node);
            ConstCounter::new(usage_ns as f64 / 1e9).encode(metric.encode_family(&labels)?)?;
        }
    }
    {
        let mut metric = encoder.encode_descriptor(
            "runqueue_wait_ratio",
            "Share of the cgroup's runnable time spent waiting for a CPU over the classification window: wait / (wait + CPU used).",
            None,
            MetricType::Gauge,
        )?;
        for group in groups {
            let Some(evidence) = &group.evidence else { continue };
            let labels = group_labels(group, node);
            ConstGauge::new(evidence.runqueue_wait_share()).encode(metric.encode_family(&labels)?)?;
        }
    }
    {
        let mut metric = encoder.encode_descriptor(
            "runqueue_neighbour_wait_ratio",
            "Share of the cgroup's run-queue wait over the window that ended when a task of the neighbour cgroup gave up the CPU: which groups held the CPUs while it waited. Top 3 neighbours per cgroup.",
            None,
            MetricType::Gauge,
        )?;
        for group in groups {
            for neighbour in &group.neighbours {
                let mut labels = group_labels(group, node);
                labels.push(("neighbour", escape_label_value(&neighbour.cgroup)));
                ConstGauge::new(neighbour.share).encode(metric.encode_family(&labels)?)?;
            }
        }
    }
    throttle::encode(encoder, groups, node)?;
    block_io::encode(encoder, groups, node)?;
    encode_classes(encoder, groups, node)
}

/// Causes whose cost the classifier compares, with the class that stands
/// for each (both CPU classes share the run-queue wait).
const CAUSES: [(&str, Class); 5] = [
    ("runqueue", Class::CpuContention),
    ("throttle", Class::CpuThrottled),
    ("iowait", Class::DiskIo),
    ("dns", Class::Dns),
    ("connect", Class::DependencyConnect),
];

/// Evidence gauges over the classification window, so alerts need no
/// other series.
/// Accessor for one p99 latency of a group's evidence, when it has one.
type EvidenceP99 = fn(&crate::classifier::Evidence) -> Option<f64>;

fn encode_evidence(encoder: &mut DescriptorEncoder, groups: &[GroupReport], node: &str) -> Result<(), FmtError> {
    {
        let mut metric = encoder.encode_descriptor(
            "time_lost_ratio",
            "Share of the cgroup's busy task time (CPU used plus every wait below) lost to each cause over the classification window: runqueue, throttle, iowait, dns, connect.",
            None,
            MetricType::Gauge,
        )?;
        for group in groups {
            let Some(evidence) = &group.evidence else { continue };
            for (cause, class) in CAUSES {
                let mut labels = group_labels(group, node);
                labels.push(("cause", Cow::Borrowed(cause)));
                ConstGauge::new(evidence.share_of_busy(evidence.cost_seconds(class)))
                    .encode(metric.encode_family(&labels)?)?;
            }
        }
    }
    let p99s: [(&str, &str, EvidenceP99); 3] = [
        (
            "runqueue_latency_p99",
            "p99 run-queue wait over the classification window, from the log2 histogram (up to 2x coarse).",
            |evidence| evidence.runqueue_p99_seconds,
        ),
        (
            "dns_latency_p99",
            "p99 DNS query-to-answer latency over the classification window, from the log2 histogram (up to 2x coarse).",
            |evidence| evidence.dns.p99_seconds,
        ),
        (
            "tcp_connect_latency_p99",
            "p99 TCP connect latency (SYN to established) over the classification window, from the log2 histogram (up to 2x coarse).",
            |evidence| evidence.connect.p99_seconds,
        ),
    ];
    for (name, help, p99) in p99s {
        let mut metric = encoder.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Gauge)?;
        for group in groups {
            let Some(value) = group.evidence.as_ref().and_then(p99) else { continue };
            ConstGauge::new(value).encode(metric.encode_family(&group_labels(group, node))?)?;
        }
    }
    let mut metric = encoder.encode_descriptor(
        "dns_failure_ratio",
        "SERVFAIL, REFUSED, other error answers and timeouts per DNS query over the classification window; NXDOMAIN is apart (chokepoint_dns_nxdomain_ratio).",
        None,
        MetricType::Gauge,
    )?;
    for group in groups {
        let Some(evidence) = &group.evidence else { continue };
        if evidence.dns.queries == 0 {
            continue;
        }
        ConstGauge::new(evidence.dns.failure_ratio).encode(metric.encode_family(&group_labels(group, node))?)?;
    }
    Ok(())
}

fn encode_classes(encoder: &mut DescriptorEncoder, groups: &[GroupReport], node: &str) -> Result<(), FmtError> {
    encode_evidence(encoder, groups, node)?;
    encode_class_gauge(
        encoder,
        ("bottleneck", "1 when the bottleneck class holds for the cgroup over the classification window, else 0."),
        groups,
        node,
        |verdict, class| verdict.holds(class),
    )?;
    encode_class_gauge(
        encoder,
        (
            "bottleneck_primary",
            "1 for the cgroup's primary bottleneck class (the one costing the largest share of its time), else 0.",
        ),
        groups,
        node,
        |verdict, class| verdict.primary == class,
    )
}

/// Encodes one 0-or-1 gauge per cgroup with a verdict and per class,
/// `is_set` telling which classes are 1.
fn encode_class_gauge(
    encoder: &mut DescriptorEncoder,
    (name, help): (&str, &str),
    groups: &[GroupReport],
    node: &str,
    is_set: impl Fn(&Verdict, Class) -> bool,
) -> Result<(), FmtError> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for group in groups {
        let Some(verdict) = &group.verdict else { continue };
        for class in Class::ALL {
            let mut labels = group_labels(group, node);
            labels.push(("class", Cow::Borrowed(class.label())));
            ConstGauge::new(i64::from(is_set(verdict, class))).encode(metric.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

type ProbeRow = (&'static crate::probes::ProbeSpec, Option<String>, crate::probes::ProbeCost);

fn encode_probes(encoder: &mut DescriptorEncoder, probes: &[ProbeRow], node: &str) -> Result<(), FmtError> {
    {
        let mut metric = encoder.encode_descriptor(
            "probe_attached",
            "1 when the probe program is attached, 0 when it was skipped (see the agent's log for why).",
            None,
            MetricType::Gauge,
        )?;
        for (spec, skipped, _) in probes {
            let labels = probe_labels(node, spec.program);
            ConstGauge::new(i64::from(skipped.is_none())).encode(metric.encode_family(&labels)?)?;
        }
    }
    {
        let mut metric = encoder.encode_descriptor(
            "probe_events",
            "Events the probe program handled.",
            None,
            MetricType::Counter,
        )?;
        for (spec, _, cost) in probes {
            let labels = probe_labels(node, spec.program);
            ConstCounter::new(cost.stats.events).encode(metric.encode_family(&labels)?)?;
        }
    }
    {
        let mut metric = encoder.encode_descriptor(
            "probe_lost_events",
            "Events the probe program dropped: map_full means a map reached its max_entries, read_error a failed kernel read, slot_shared a wait lost because two threads shared a thread slot (see --max-threads).",
            None,
            MetricType::Counter,
        )?;
        for (spec, _, cost) in probes {
            let reasons = [
                ("map_full", cost.stats.lost_map_full),
                ("read_error", cost.stats.lost_read_error),
                ("slot_shared", cost.stats.lost_slot_shared),
            ];
            for (reason, value) in reasons {
                let mut labels = probe_labels(node, spec.program);
                labels.push(("reason", Cow::Borrowed(reason)));
                ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
            }
        }
    }
    {
        let mut metric = encoder.encode_descriptor(
            "probe_run_time",
            "Time the kernel spent running the probe program; grows only while kernel.bpf_stats_enabled is 1.",
            Some(&Unit::Seconds),
            MetricType::Counter,
        )?;
        for (spec, _, cost) in probes {
            let labels = probe_labels(node, spec.program);
            ConstCounter::new(cost.run_time.as_secs_f64()).encode(metric.encode_family(&labels)?)?;
        }
    }
    // The kernel counts runs over the same periods as the run time, so
    // their ratio stays the cost per event after the statistics were off
    // for a while. probe_events counts every run.
    let mut metric = encoder.encode_descriptor(
        "probe_runs",
        "Runs of the probe program the kernel counted; grows only while kernel.bpf_stats_enabled is 1. probe_run_time_seconds_total divided by this is the run time per event.",
        None,
        MetricType::Counter,
    )?;
    for (spec, _, cost) in probes {
        let labels = probe_labels(node, spec.program);
        ConstCounter::new(cost.run_count).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn probe_labels<'a>(node: &'a str, program: &'static str) -> Labels<'a> {
    vec![("node", escape_label_value(node)), ("probe", Cow::Borrowed(program))]
}

/// Sum (seconds), count and buckets `(upper bound in seconds, count in
/// this bucket alone)` of a log2 histogram at the exported bounds.
///
/// prometheus-client's encoder makes the counts cumulative itself and
/// writes the bound `f64::MAX` as `+Inf`.
pub fn exported_histogram(histogram: &LatencyHistogram) -> (f64, u64, Vec<(f64, u64)>) {
    let mut buckets = Vec::new();
    let mut in_bucket = 0u64;
    for slot in 0..SLOTS {
        in_bucket += histogram.slots[slot];
        if EXPORTED_BUCKET_SLOTS.contains(&slot) && (slot - EXPORTED_BUCKET_SLOTS.start()).is_multiple_of(2) {
            buckets.push((slot_upper_bound_ns(slot) as f64 / 1e9, in_bucket));
            in_bucket = 0;
        }
    }
    buckets.push((f64::MAX, in_bucket));
    (histogram.total_ns as f64 / 1e9, histogram.count, buckets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exported_buckets_partition_the_slots() {
        let mut histogram = LatencyHistogram::ZERO;
        histogram.record(500); // slot 8, below the first bound (1.024 µs)
        histogram.record(3_000); // slot 11, below 4.096 µs
        histogram.record(2_000_000_000); // slot 30, below 4.29 s
        histogram.record(40_000_000_000); // slot 35, above the last bound

        let (sum, count, buckets) = exported_histogram(&histogram);

        assert_eq!(count, 4);
        assert!((sum - 42.0000035).abs() < 1e-9);
        assert_eq!(buckets.len(), 14);
        assert_eq!(buckets[0], (1.024e-6, 1));
        assert_eq!(buckets[1], (4.096e-6, 1));
        assert_eq!(buckets[11], (4.294967296, 1));
        assert_eq!(buckets[13], (f64::MAX, 1));
        assert_eq!(buckets.iter().map(|(_, count)| count).sum::<u64>(), count);
    }

    #[test]
    fn scrape_text_has_exact_cumulative_buckets() {
        let mut histogram = LatencyHistogram::ZERO;
        histogram.record(3_000);
        histogram.record(3_000);
        let (sum, count, buckets) = exported_histogram(&histogram);
        let mut registry = Registry::default();
        registry.register_collector(Box::new(FixedHistogram { sum, count, buckets }));

        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();

        assert!(text.contains("h_bucket{le=\"0.000004096\"} 2\n"), "{text}");
        assert!(text.contains("h_bucket{le=\"+Inf\"} 2\n"), "{text}");
        assert!(text.contains("h_count 2\n"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value("/plain/path"), "/plain/path");
        assert_eq!(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[derive(Debug)]
    struct FixedHistogram {
        sum: f64,
        count: u64,
        buckets: Vec<(f64, u64)>,
    }

    impl Collector for FixedHistogram {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), FmtError> {
            encoder.encode_descriptor("h", "test", None, MetricType::Histogram)?.encode_histogram::<Labels<'_>>(
                self.sum,
                self.count,
                &self.buckets,
                None,
            )
        }
    }
}
