//! DNS and TCP connect in the engine: per-cgroup totals read on each tick,
//! the DNS timeouts swept from the in-flight queries, the cap on
//! destinations per cgroup, and the evidence taken from a window's delta.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use agent_common::{
    connect::{ConnectCounters, ConnectKey, FAMILY_IPV6},
    dns::{DnsCounters, QTYPE_SLOTS, RCODE_SLOTS},
};
use serde::{Serialize, Serializer};

use super::window::{histogram_delta, quantile_ns};
use crate::{cgroup::CgroupId, probes::Probes};

/// RCODE values (RFC 1035 and RFC 6895).
pub const RCODE_NOERROR: usize = 0;
pub const RCODE_SERVFAIL: usize = 2;
pub const RCODE_NXDOMAIN: usize = 3;
pub const RCODE_REFUSED: usize = 5;

#[derive(Clone, Copy, Debug)]
pub struct NetworkConfig {
    /// Age after which an unanswered DNS query counts as a timeout.
    pub dns_timeout: Duration,
    /// Destinations kept apart per cgroup; later ones are folded into
    /// [`Destination::Other`].
    pub max_destinations: usize,
}

/// DNS counters of one cgroup: cumulative at a tick, or a difference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsTotals {
    pub counters: DnsCounters,
    /// Queries the agent found unanswered after the DNS timeout.
    pub timeouts: u64,
}

impl Default for DnsTotals {
    fn default() -> Self {
        Self { counters: DnsCounters::ZERO, timeouts: 0 }
    }
}

impl DnsTotals {
    pub fn queries(&self) -> u64 {
        self.counters.queries.iter().sum()
    }

    pub fn responses(&self) -> u64 {
        self.counters.responses.iter().sum()
    }

    /// Returns whether the cgroup has shown any DNS traffic.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `self - earlier`, counter by counter.
    pub fn since(&self, earlier: &Self) -> Self {
        let mut delta = Self::default();
        for slot in 0..QTYPE_SLOTS {
            delta.counters.queries[slot] = self.counters.queries[slot].saturating_sub(earlier.counters.queries[slot]);
        }
        for slot in 0..RCODE_SLOTS {
            delta.counters.responses[slot] =
                self.counters.responses[slot].saturating_sub(earlier.counters.responses[slot]);
        }
        delta.counters.unmatched_responses =
            self.counters.unmatched_responses.saturating_sub(earlier.counters.unmatched_responses);
        delta.counters.malformed = self.counters.malformed.saturating_sub(earlier.counters.malformed);
        delta.counters.latency = histogram_delta(&self.counters.latency, &earlier.counters.latency);
        delta.timeouts = self.timeouts.saturating_sub(earlier.timeouts);
        delta
    }
}

/// The `destination` label of connect series: an address and port, or
/// the series that collects destinations beyond the per-cgroup cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    Address(SocketAddr),
    Other,
}

impl fmt::Display for Destination {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Address(address) => write!(formatter, "{address}"),
            Destination::Other => formatter.write_str("other"),
        }
    }
}

impl Serialize for Destination {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The destination of a probe key: IPv4 (also when reached through a
/// v4-mapped IPv6 address, which the probe already rewrote) or IPv6.
pub fn socket_address(key: &ConnectKey) -> SocketAddr {
    let address = if key.family == FAMILY_IPV6 {
        IpAddr::V6(Ipv6Addr::from(key.address))
    } else {
        IpAddr::V4(Ipv4Addr::new(key.address[0], key.address[1], key.address[2], key.address[3]))
    };
    SocketAddr::new(address, key.port)
}

/// Connect counters of one cgroup per destination: cumulative at a tick,
/// or a difference.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConnectTotals {
    pub destinations: BTreeMap<Destination, ConnectCounters>,
    /// Distinct destinations counted under [`Destination::Other`].
    pub folded_destinations: u64,
}

impl ConnectTotals {
    /// `self - earlier`, destination by destination.
    pub fn since(&self, earlier: &Self) -> Self {
        let destinations = self
            .destinations
            .iter()
            .map(|(destination, later)| {
                let delta = match earlier.destinations.get(destination) {
                    Some(before) => counters_delta(later, before),
                    None => *later,
                };
                (*destination, delta)
            })
            .collect();
        Self { destinations, folded_destinations: self.folded_destinations.saturating_sub(earlier.folded_destinations) }
    }
}

/// Connects that ended without being established.
pub fn failures(counters: &ConnectCounters) -> u64 {
    counters.refused + counters.timed_out + counters.abandoned + counters.other_error
}

/// Connects that ended, established or not.
pub fn attempts(counters: &ConnectCounters) -> u64 {
    counters.established + failures(counters)
}

fn counters_delta(later: &ConnectCounters, earlier: &ConnectCounters) -> ConnectCounters {
    ConnectCounters {
        established: later.established.saturating_sub(earlier.established),
        refused: later.refused.saturating_sub(earlier.refused),
        timed_out: later.timed_out.saturating_sub(earlier.timed_out),
        abandoned: later.abandoned.saturating_sub(earlier.abandoned),
        other_error: later.other_error.saturating_sub(earlier.other_error),
        failed_ns: later.failed_ns.saturating_sub(earlier.failed_ns),
        latency: histogram_delta(&later.latency, &earlier.latency),
    }
}

/// Network counters one tick read, for every cgroup with network activity.
#[derive(Debug, Default)]
pub struct NetworkReading {
    pub dns: HashMap<CgroupId, DnsTotals>,
    pub connect: HashMap<CgroupId, ConnectTotals>,
}

/// State kept per cgroup across ticks.
#[derive(Debug, Default)]
struct GroupState {
    dns_timeouts: u64,
    /// Destinations with a series of their own, in the order first seen.
    kept: HashSet<SocketAddr>,
    folded: HashSet<SocketAddr>,
}

pub struct NetworkState {
    config: NetworkConfig,
    groups: HashMap<CgroupId, GroupState>,
}

impl NetworkState {
    pub fn new(config: NetworkConfig) -> Self {
        Self { config, groups: HashMap::new() }
    }

    /// Reads the DNS and connect maps, sweeps DNS timeouts and folds
    /// destinations beyond the cap.
    pub fn collect(&mut self, probes: &mut Probes) -> NetworkReading {
        let mut reading = NetworkReading::default();
        if let Some(maps) = probes.dns.as_mut() {
            for (cgroup, count) in maps.sweep_timeouts(self.config.dns_timeout) {
                self.groups.entry(cgroup).or_default().dns_timeouts += count;
            }
            for (cgroup, counters) in maps.read() {
                reading.dns.insert(cgroup, DnsTotals { counters, timeouts: 0 });
            }
            for (cgroup, state) in &self.groups {
                if state.dns_timeouts > 0 {
                    reading.dns.entry(*cgroup).or_default().timeouts = state.dns_timeouts;
                }
            }
        }
        if let Some(maps) = probes.connect.as_mut() {
            maps.drop_stale();
            let mut entries = maps.read();
            // Sorted so that destinations first seen in the same tick are
            // kept or folded in the same order every time.
            entries.sort_by_key(|(key, _)| *key);
            for (key, counters) in entries {
                let state = self.groups.entry(key.cgroup).or_default();
                let destination = assign_destination(state, socket_address(&key), self.config.max_destinations);
                let totals = reading.connect.entry(key.cgroup).or_default();
                let sum = totals.destinations.entry(destination).or_insert(ConnectCounters::ZERO);
                sum.add(&counters);
                totals.folded_destinations = state.folded.len() as u64;
            }
        }
        reading
    }

    /// Forgets a removed cgroup.
    pub fn forget(&mut self, cgroup: CgroupId) {
        self.groups.remove(&cgroup);
    }
}

fn assign_destination(state: &mut GroupState, address: SocketAddr, max_destinations: usize) -> Destination {
    if state.kept.contains(&address) {
        return Destination::Address(address);
    }
    if state.kept.len() < max_destinations && !state.folded.contains(&address) {
        state.kept.insert(address);
        return Destination::Address(address);
    }
    state.folded.insert(address);
    Destination::Other
}

/// DNS measurements of one cgroup over a window.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct DnsEvidence {
    pub queries: u64,
    pub responses: u64,
    pub nxdomain: u64,
    pub servfail: u64,
    pub refused: u64,
    /// Responses with an RCODE other than NOERROR, NXDOMAIN, SERVFAIL and
    /// REFUSED.
    pub other_error_responses: u64,
    pub timeouts: u64,
    pub p50_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
    /// NXDOMAIN responses per query. Search-domain expansion (`ndots`)
    /// shows here: it costs time but is not a resolver failure.
    pub nxdomain_ratio: f64,
    /// SERVFAIL, REFUSED, other error RCODEs and timeouts per query.
    pub failure_ratio: f64,
    /// Time lookups took, in seconds: the latency of answered queries plus
    /// the DNS timeout for each unanswered one.
    ///
    /// NOTE: an unanswered query is charged the agent's `--dns-timeout`;
    /// the client may give up sooner or retry later, so this part is an
    /// estimate.
    pub wait_seconds: f64,
}

impl DnsEvidence {
    pub fn from_delta(delta: &DnsTotals, timeout: std::time::Duration) -> Self {
        let responses = &delta.counters.responses;
        let queries = delta.queries();
        let known = [RCODE_NOERROR, RCODE_NXDOMAIN, RCODE_SERVFAIL, RCODE_REFUSED];
        let other_error_responses =
            (0..RCODE_SLOTS).filter(|rcode| !known.contains(rcode)).map(|rcode| responses[rcode]).sum();
        let failures = responses[RCODE_SERVFAIL] + responses[RCODE_REFUSED] + other_error_responses + delta.timeouts;
        Self {
            queries,
            responses: delta.responses(),
            nxdomain: responses[RCODE_NXDOMAIN],
            servfail: responses[RCODE_SERVFAIL],
            refused: responses[RCODE_REFUSED],
            other_error_responses,
            timeouts: delta.timeouts,
            p50_seconds: quantile_ns(&delta.counters.latency, 0.50).map(|ns| ns / 1e9),
            p99_seconds: quantile_ns(&delta.counters.latency, 0.99).map(|ns| ns / 1e9),
            nxdomain_ratio: ratio(responses[RCODE_NXDOMAIN], queries),
            failure_ratio: ratio(failures, queries),
            wait_seconds: delta.counters.latency.total_ns as f64 / 1e9 + delta.timeouts as f64 * timeout.as_secs_f64(),
        }
    }
}

/// TCP connect measurements of one cgroup over a window.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ConnectEvidence {
    /// Connects that ended in the window, established or not.
    pub attempts: u64,
    pub established: u64,
    pub refused: u64,
    pub timed_out: u64,
    pub abandoned: u64,
    pub other_errors: u64,
    /// Failed connects (refused, timed out, abandoned, other errors) per
    /// attempt.
    pub failure_ratio: f64,
    pub p50_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
    /// The destination with the most failed connects, if any failed.
    pub worst_destination: Option<Destination>,
    pub worst_destination_failures: u64,
    pub worst_destination_failure_ratio: f64,
    /// Time the group's connects took, established or failed, in seconds.
    pub wait_seconds: f64,
}

impl ConnectEvidence {
    pub fn from_delta(delta: &ConnectTotals) -> Self {
        let mut total = ConnectCounters::ZERO;
        let mut evidence = Self::default();
        for (destination, counters) in &delta.destinations {
            total.add(counters);
            let failed = failures(counters);
            if failed > evidence.worst_destination_failures {
                evidence.worst_destination = Some(*destination);
                evidence.worst_destination_failures = failed;
                evidence.worst_destination_failure_ratio = ratio(failed, attempts(counters));
            }
        }
        evidence.attempts = attempts(&total);
        evidence.established = total.established;
        evidence.refused = total.refused;
        evidence.timed_out = total.timed_out;
        evidence.abandoned = total.abandoned;
        evidence.other_errors = total.other_error;
        evidence.failure_ratio = ratio(failures(&total), evidence.attempts);
        evidence.p50_seconds = quantile_ns(&total.latency, 0.50).map(|ns| ns / 1e9);
        evidence.p99_seconds = quantile_ns(&total.latency, 0.99).map(|ns| ns / 1e9);
        evidence.wait_seconds = (total.latency.total_ns + total.failed_ns) as f64 / 1e9;
        evidence
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(cgroup: u64, last_octet: u8, port: u16) -> ConnectKey {
        ConnectKey {
            cgroup,
            address: [10, 0, 0, last_octet, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            port,
            family: agent_common::connect::FAMILY_IPV4,
            _padding: 0,
        }
    }

    #[test]
    fn destinations_beyond_cap_fold_into_other() {
        let mut state = GroupState::default();
        let addresses: Vec<SocketAddr> = (1..=4).map(|octet| socket_address(&key(1, octet, 80))).collect();

        let labels: Vec<Destination> =
            addresses.iter().map(|address| assign_destination(&mut state, *address, 2)).collect();
        let again = assign_destination(&mut state, addresses[0], 2);
        let folded_again = assign_destination(&mut state, addresses[3], 2);

        assert_eq!(labels[0], Destination::Address(addresses[0]));
        assert_eq!(labels[1], Destination::Address(addresses[1]));
        assert_eq!(labels[2], Destination::Other);
        assert_eq!(labels[3], Destination::Other);
        assert_eq!(again, Destination::Address(addresses[0]));
        assert_eq!(folded_again, Destination::Other);
        assert_eq!(state.folded.len(), 2);
    }

    #[test]
    fn ipv6_destination_label() {
        let mut ipv6 = key(1, 0, 443);
        ipv6.family = FAMILY_IPV6;
        ipv6.address = Ipv6Addr::LOCALHOST.octets();

        assert_eq!(Destination::Address(socket_address(&ipv6)).to_string(), "[::1]:443");
        assert_eq!(Destination::Address(socket_address(&key(1, 7, 80))).to_string(), "10.0.0.7:80");
    }

    #[test]
    fn dns_evidence_keeps_nxdomain_apart_from_failures() {
        let mut totals = DnsTotals::default();
        totals.counters.queries[0] = 10;
        totals.counters.responses[RCODE_NOERROR] = 2;
        totals.counters.responses[RCODE_NXDOMAIN] = 6;
        totals.counters.responses[RCODE_SERVFAIL] = 1;
        totals.timeouts = 1;

        let evidence = DnsEvidence::from_delta(&totals.since(&DnsTotals::default()), std::time::Duration::from_secs(5));

        assert_eq!(evidence.queries, 10);
        assert!((evidence.nxdomain_ratio - 0.6).abs() < 1e-9);
        assert!((evidence.failure_ratio - 0.2).abs() < 1e-9);
    }

    #[test]
    fn connect_evidence_names_worst_destination() {
        let good = Destination::Address(socket_address(&key(1, 1, 80)));
        let bad = Destination::Address(socket_address(&key(1, 2, 80)));
        let mut totals = ConnectTotals::default();
        let mut good_counters = ConnectCounters::ZERO;
        good_counters.established = 9;
        let mut bad_counters = ConnectCounters::ZERO;
        bad_counters.refused = 3;
        bad_counters.established = 1;
        totals.destinations.insert(good, good_counters);
        totals.destinations.insert(bad, bad_counters);

        let evidence = ConnectEvidence::from_delta(&totals.since(&ConnectTotals::default()));

        assert_eq!(evidence.attempts, 13);
        assert_eq!(evidence.worst_destination, Some(bad));
        assert!((evidence.worst_destination_failure_ratio - 0.75).abs() < 1e-9);
        assert!((evidence.failure_ratio - 3.0 / 13.0).abs() < 1e-9);
    }
}
