//! DNS and TCP connect series. Only cgroups that showed DNS or connect
//! traffic get them, so idle groups add no series.

use std::{borrow::Cow, fmt::Error as FmtError};

use agent_common::dns::{QTYPES, RCODE_SLOTS};
use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Unit,
};

use super::{Labels, escape_label_value, exported_histogram, group_labels};
use crate::engine::{
    GroupReport,
    network::{attempts, failures},
};

/// RCODE names from the IANA DNS parameters registry; codes 12 to 15 are
/// unassigned and exported as `RCODE12` and so on.
const RCODE_NAMES: [&str; 12] = [
    "NOERROR",
    "FORMERR",
    "SERVFAIL",
    "NXDOMAIN",
    "NOTIMP",
    "REFUSED",
    "YXDOMAIN",
    "YXRRSET",
    "NXRRSET",
    "NOTAUTH",
    "NOTZONE",
    "DSOTYPENI",
];

fn rcode_name(rcode: usize) -> String {
    RCODE_NAMES.get(rcode).map_or_else(|| format!("RCODE{rcode}"), |name| (*name).to_owned())
}

fn qtype_name(slot: usize) -> &'static str {
    QTYPES.get(slot).map_or("OTHER", |(_, name)| name)
}

pub(super) fn encode_dns(encoder: &mut DescriptorEncoder, groups: &[GroupReport], node: &str) -> Result<(), FmtError> {
    let active: Vec<&GroupReport> = groups.iter().filter(|group| !group.dns.is_empty()).collect();
    {
        let mut metric = encoder.encode_descriptor(
            "dns_queries",
            "DNS queries sent by the cgroup's sockets, by query type; a retransmission of an unanswered query is not counted again.",
            None,
            MetricType::Counter,
        )?;
        for group in &active {
            for (slot, &count) in group.dns.counters.queries.iter().enumerate() {
                if count == 0 {
                    continue;
                }
                let mut labels = group_labels(group, node);
                labels.push(("qtype", Cow::from(qtype_name(slot))));
                ConstCounter::new(count).encode(metric.encode_family(&labels)?)?;
            }
        }
    }
    {
        let mut metric = encoder.encode_descriptor(
            "dns_responses",
            "DNS responses the cgroup's sockets received to their queries, by response code.",
            None,
            MetricType::Counter,
        )?;
        for group in &active {
            for rcode in 0..RCODE_SLOTS {
                let count = group.dns.counters.responses[rcode];
                if count == 0 {
                    continue;
                }
                let name = rcode_name(rcode);
                let mut labels = group_labels(group, node);
                labels.push(("rcode", Cow::from(name.as_str())));
                ConstCounter::new(count).encode(metric.encode_family(&labels)?)?;
            }
        }
    }
    for (name, help, value) in [
        (
            "dns_timeouts",
            "DNS queries of the cgroup that got no response within the agent's --dns-timeout.",
            (|group: &GroupReport| group.dns.timeouts) as fn(&GroupReport) -> u64,
        ),
        (
            "dns_malformed_packets",
            "Packets to or from a DNS port in the cgroup that could not be parsed as DNS.",
            |group| group.dns.counters.malformed,
        ),
        (
            "dns_unmatched_responses",
            "DNS responses over UDP that matched no query in flight: late answers after a timeout, duplicates, or spoofing attempts.",
            |group| group.dns.counters.unmatched_responses,
        ),
    ] {
        let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for group in &active {
            let labels = group_labels(group, node);
            ConstCounter::new(value(group)).encode(metric.encode_family(&labels)?)?;
        }
    }
    {
        let mut metric = encoder.encode_descriptor(
            "dns_latency",
            "Time from a DNS query leaving the cgroup's socket to the matching response arriving, per answered query.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for group in &active {
            let labels = group_labels(group, node);
            let (sum, count, buckets) = exported_histogram(&group.dns.counters.latency);
            metric.encode_family(&labels)?.encode_histogram::<Labels<'_>>(sum, count, &buckets, None)?;
        }
    }
    let mut metric = encoder.encode_descriptor(
        "dns_nxdomain_ratio",
        "NXDOMAIN responses per DNS query over the classification window; search-domain expansion (ndots) raises it.",
        None,
        MetricType::Gauge,
    )?;
    for group in &active {
        let Some(evidence) = &group.evidence else { continue };
        let labels = group_labels(group, node);
        ConstGauge::new(evidence.dns.nxdomain_ratio).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

pub(super) fn encode_connect(
    encoder: &mut DescriptorEncoder,
    groups: &[GroupReport],
    node: &str,
) -> Result<(), FmtError> {
    let active: Vec<&GroupReport> = groups.iter().filter(|group| !group.connect.destinations.is_empty()).collect();
    {
        let mut metric = encoder.encode_descriptor(
            "tcp_connects",
            "TCP connects of the cgroup by destination and outcome: established, refused (reset), timeout (SYN retransmissions ran out), abandoned (closed by the caller before established) or error.",
            None,
            MetricType::Counter,
        )?;
        for group in &active {
            for (destination, counters) in &group.connect.destinations {
                let destination = destination.to_string();
                for (outcome, count) in [
                    ("established", counters.established),
                    ("refused", counters.refused),
                    ("timeout", counters.timed_out),
                    ("abandoned", counters.abandoned),
                    ("error", counters.other_error),
                ] {
                    let mut labels = group_labels(group, node);
                    labels.push(("destination", escape_label_value(destination.as_str())));
                    labels.push(("outcome", Cow::from(outcome)));
                    ConstCounter::new(count).encode(metric.encode_family(&labels)?)?;
                }
            }
        }
    }
    {
        let mut metric = encoder.encode_descriptor(
            "tcp_connect_latency",
            "Time from the SYN a connect() sent to the connection being established, per established connect.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for group in &active {
            for (destination, counters) in &group.connect.destinations {
                let destination = destination.to_string();
                let mut labels = group_labels(group, node);
                labels.push(("destination", escape_label_value(destination.as_str())));
                let (sum, count, buckets) = exported_histogram(&counters.latency);
                metric.encode_family(&labels)?.encode_histogram::<Labels<'_>>(sum, count, &buckets, None)?;
            }
        }
    }
    {
        let mut metric = encoder.encode_descriptor(
            "tcp_connect_destinations_folded",
            "Distinct connect destinations of the cgroup counted under destination=\"other\" because of --max-destinations.",
            None,
            MetricType::Counter,
        )?;
        for group in &active {
            let labels = group_labels(group, node);
            ConstCounter::new(group.connect.folded_destinations).encode(metric.encode_family(&labels)?)?;
        }
    }
    let mut metric = encoder.encode_descriptor(
        "tcp_connect_failure_ratio",
        "Failed TCP connects (refused, timeout, abandoned, error) per connect that ended, over the classification window.",
        None,
        MetricType::Gauge,
    )?;
    for group in &active {
        let Some(window) = &group.connect_window else { continue };
        for (destination, counters) in &window.destinations {
            let ended = attempts(counters);
            if ended == 0 {
                continue;
            }
            let destination = destination.to_string();
            let mut labels = group_labels(group, node);
            labels.push(("destination", escape_label_value(destination.as_str())));
            ConstGauge::new(failures(counters) as f64 / ended as f64).encode(metric.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{
        net::SocketAddr,
        sync::{Arc, RwLock},
    };

    use agent_common::{connect::ConnectCounters, histogram::LatencyHistogram};

    use super::*;
    use crate::engine::{
        Snapshot,
        network::{ConnectTotals, Destination, DnsTotals},
    };

    fn group(path: &str) -> GroupReport {
        GroupReport {
            id: 1,
            path: path.to_owned(),
            runqueue_total: LatencyHistogram::ZERO,
            cpu: Default::default(),
            cpu_limit: None,
            identity: None,
            throttle_delay_total: Default::default(),
            iowait_total: Default::default(),
            block_latency: Vec::new(),
            neighbours: Vec::new(),
            dns: DnsTotals::default(),
            connect: ConnectTotals::default(),
            connect_window: None,
            evidence: None,
            verdict: None,
        }
    }

    fn scrape(groups: Vec<GroupReport>) -> String {
        let snapshot = Snapshot { groups, ..Snapshot::default() };
        let registry = crate::exporter::registry(Arc::new(RwLock::new(Arc::new(snapshot))), "node-a".to_owned());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn dns_series_by_qtype_and_rcode() {
        let mut busy = group("/pod-a");
        busy.dns.counters.queries[7] = 4; // AAAA
        busy.dns.counters.queries[QTYPES.len()] = 1; // OTHER
        busy.dns.counters.responses[3] = 2; // NXDOMAIN
        busy.dns.counters.responses[13] = 1; // unassigned
        busy.dns.timeouts = 1;

        let text = scrape(vec![busy, group("/idle")]);

        assert!(text.contains("chokepoint_dns_queries_total{node=\"node-a\",namespace=\"\",pod=\"\",container=\"\",cgroup=\"/pod-a\",qtype=\"AAAA\"} 4\n"), "{text}");
        assert!(text.contains("qtype=\"OTHER\"} 1\n"), "{text}");
        assert!(text.contains("rcode=\"NXDOMAIN\"} 2\n"), "{text}");
        assert!(text.contains("rcode=\"RCODE13\"} 1\n"), "{text}");
        assert!(text.contains("chokepoint_dns_timeouts_total{node=\"node-a\",namespace=\"\",pod=\"\",container=\"\",cgroup=\"/pod-a\"} 1\n"), "{text}");
        let idle_dns =
            text.lines().filter(|line| line.starts_with("chokepoint_dns") && line.contains("cgroup=\"/idle\"")).count();
        assert_eq!(idle_dns, 0, "idle group has DNS series:\n{text}");
    }

    #[test]
    fn connect_series_by_destination_and_outcome() {
        let mut client = group("/pod-b");
        let mut counters = ConnectCounters::ZERO;
        counters.established = 3;
        counters.abandoned = 1;
        let address: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        client.connect.destinations.insert(Destination::Address(address), counters);
        client.connect.destinations.insert(Destination::Other, ConnectCounters::ZERO);
        client.connect.folded_destinations = 5;
        client.connect_window = Some(client.connect.clone());

        let text = scrape(vec![client]);

        assert!(text.contains("destination=\"[2001:db8::1]:443\",outcome=\"established\"} 3\n"), "{text}");
        assert!(text.contains("destination=\"[2001:db8::1]:443\",outcome=\"abandoned\"} 1\n"), "{text}");
        assert!(text.contains("destination=\"other\",outcome=\"refused\"} 0\n"), "{text}");
        assert!(text.contains("chokepoint_tcp_connect_destinations_folded_total{node=\"node-a\",namespace=\"\",pod=\"\",container=\"\",cgroup=\"/pod-b\"} 5\n"), "{text}");
        assert!(text.contains("chokepoint_tcp_connect_failure_ratio{node=\"node-a\",namespace=\"\",pod=\"\",container=\"\",cgroup=\"/pod-b\",destination=\"[2001:db8::1]:443\"} 0.25\n"), "{text}");
    }
}
