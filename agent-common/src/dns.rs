//! DNS lookups seen at the packet level: queries leaving a socket and the
//! responses coming back to it, matched by socket and transaction id.

use crate::histogram::LatencyHistogram;

/// Name of the per-CPU hash map from cgroup id (u64) to [`DnsCounters`],
/// attributed to the cgroup of the socket that sent the query.
pub const DNS_COUNTERS_MAP: &str = "DNS_COUNTERS";

/// Name of the hash map from [`DnsQueryKey`] to [`DnsPendingQuery`]: queries
/// sent and not yet answered. The agent removes entries older than its DNS
/// timeout and counts them as timeouts.
pub const DNS_PENDING_MAP: &str = "DNS_PENDING";

/// Name of the global [`DnsConfig`] in the probe object.
pub const DNS_CONFIG_SYMBOL: &str = "DNS_CONFIG";

/// Maximum number of server ports the probes match (`--dns-ports`).
pub const MAX_DNS_PORTS: usize = 8;

/// Query types counted apart; any other type is counted as `OTHER`.
/// Values are the IANA RR type codes.
pub const QTYPES: [(u16, &str); 12] = [
    (1, "A"),
    (2, "NS"),
    (5, "CNAME"),
    (6, "SOA"),
    (12, "PTR"),
    (15, "MX"),
    (16, "TXT"),
    (28, "AAAA"),
    (33, "SRV"),
    (64, "SVCB"),
    (65, "HTTPS"),
    (255, "ANY"),
];

/// Slots of [`DnsCounters::queries`]: one per entry of [`QTYPES`], then one
/// for every other query type.
pub const QTYPE_SLOTS: usize = QTYPES.len() + 1;

/// Slots of [`DnsCounters::responses`]: the header's 4-bit RCODE. Extended
/// RCODEs from EDNS (above 15) are not parsed.
pub const RCODE_SLOTS: usize = 16;

/// Returns the [`DnsCounters::queries`] slot of a query type.
#[inline(always)]
pub fn qtype_slot(qtype: u16) -> usize {
    let mut slot = 0;
    while slot < QTYPES.len() {
        if QTYPES[slot].0 == qtype {
            return slot;
        }
        slot += 1;
    }
    QTYPES.len()
}

/// Per-cgroup DNS counters, one per CPU in a per-CPU map. All cumulative
/// since the entry was made; written by the cgroup_skb probes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsCounters {
    /// Queries sent, per query type slot ([`qtype_slot`]). A query sent
    /// again on the same socket with the same transaction id while the
    /// first is unanswered (a retransmission) is not counted again.
    pub queries: [u64; QTYPE_SLOTS],
    /// Responses received, per RCODE.
    pub responses: [u64; RCODE_SLOTS],
    /// Responses that matched no pending query: answers after the agent
    /// counted a timeout, duplicates, or queries sent before the probes
    /// were attached.
    pub unmatched_responses: u64,
    /// Packets to or from a DNS port that could not be parsed as DNS.
    pub malformed: u64,
    /// Time from a query to its matching response.
    pub latency: LatencyHistogram,
}

impl DnsCounters {
    /// Adds `other`'s counters to these, field by field.
    pub fn add(&mut self, other: &Self) {
        for (sum, count) in self.queries.iter_mut().zip(other.queries.iter()) {
            *sum += count;
        }
        for (sum, count) in self.responses.iter_mut().zip(other.responses.iter()) {
            *sum += count;
        }
        self.unmatched_responses += other.unmatched_responses;
        self.malformed += other.malformed;
        self.latency.add(&other.latency);
    }

    pub const ZERO: Self = Self {
        queries: [0; QTYPE_SLOTS],
        responses: [0; RCODE_SLOTS],
        unmatched_responses: 0,
        malformed: 0,
        latency: LatencyHistogram::ZERO,
    };
}

/// Key of an in-flight query: the sending socket and the transaction id.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DnsQueryKey {
    /// `bpf_get_socket_cookie` of the socket, the same on egress and
    /// ingress.
    pub socket_cookie: u64,
    /// DNS transaction id, in host byte order.
    pub transaction_id: u16,
    pub _padding: [u8; 6],
}

/// An in-flight query.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsPendingQuery {
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) when the query was sent.
    pub sent_ns: u64,
    /// Cgroup id of the sending socket.
    pub cgroup: u64,
}

/// Configuration the agent writes into the probe object before load.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsConfig {
    /// Server ports in host byte order; only the first `port_count` are used.
    pub ports: [u16; MAX_DNS_PORTS],
    pub port_count: u32,
    pub _padding: u32,
}

#[cfg(feature = "user")]
mod user {
    use super::*;

    // SAFETY: each type is repr(C), made of integers and integer arrays,
    // with the padding spelled out as fields, so every byte pattern is a
    // valid value.
    unsafe impl aya::Pod for DnsCounters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for DnsQueryKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for DnsPendingQuery {}
    // SAFETY: as above.
    unsafe impl aya::Pod for DnsConfig {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qtype_slots() {
        assert_eq!(qtype_slot(1), 0);
        assert_eq!(qtype_slot(28), 7);
        assert_eq!(qtype_slot(255), 11);
        assert_eq!(qtype_slot(99), QTYPES.len());
    }

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(core::mem::size_of::<DnsQueryKey>(), 16);
        assert_eq!(core::mem::size_of::<DnsConfig>(), 24);
        assert_eq!(
            core::mem::size_of::<DnsCounters>(),
            8 * (QTYPE_SLOTS + RCODE_SLOTS + 2) + core::mem::size_of::<LatencyHistogram>()
        );
    }
}
