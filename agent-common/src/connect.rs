//! TCP connect: from the SYN a `connect()` sends to the connection being
//! established or failing, per cgroup of the caller and per destination.

use crate::histogram::LatencyHistogram;

/// Name of the hash map from the kernel's `struct sock *` (as u64) to
/// [`ConnectPending`]: connects whose SYN was sent and that have not yet
/// ended.
pub const CONNECT_PENDING_MAP: &str = "CONNECT_PENDING";

/// Name of the hash map from [`ConnectKey`] to [`ConnectCounters`]. One
/// value for all CPUs, updated with atomic adds, as connects are too rare
/// to need a copy per CPU.
pub const CONNECT_COUNTERS_MAP: &str = "CONNECT_COUNTERS";

/// `AF_INET` and `AF_INET6` as the kernel stores them in `skc_family`.
pub const FAMILY_IPV4: u16 = 2;
pub const FAMILY_IPV6: u16 = 10;

/// A cgroup and a destination. IPv4 addresses, also those reached through
/// a v4-mapped IPv6 address, are stored with `family` [`FAMILY_IPV4`] in the
/// first four bytes of `address`, the rest zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectKey {
    /// Cgroup id of the task that called `connect()`.
    pub cgroup: u64,
    /// Destination address in network byte order.
    pub address: [u8; 16],
    /// Destination port in host byte order.
    pub port: u16,
    pub family: u16,
    pub _padding: u32,
}

/// A connect in flight, written when the socket enters SYN_SENT.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectPending {
    /// `bpf_ktime_get_ns` when the socket entered SYN_SENT.
    pub started_ns: u64,
    pub key: ConnectKey,
}

/// Outcomes of the connects from one cgroup to one destination, shared by
/// all CPUs and updated with atomic adds. All cumulative since the entry
/// was made.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectCounters {
    /// Reached ESTABLISHED.
    pub established: u64,
    /// Ended by a reset from the peer (`sk_err` ECONNREFUSED).
    pub refused: u64,
    /// Ended by the kernel after the SYN retransmissions ran out
    /// (`sk_err` ETIMEDOUT).
    pub timed_out: u64,
    /// Closed by the caller before the connection was established
    /// (`sk_err` 0), for example a non-blocking connect given up.
    pub abandoned: u64,
    /// Ended with any other error (for example EHOSTUNREACH from ICMP).
    pub other_error: u64,
    /// Time failed connects took, SYN sent to CLOSE, summed, in
    /// nanoseconds: the cost of a dependency that refuses or drops SYNs.
    pub failed_ns: u64,
    /// SYN sent to ESTABLISHED, for established connects only.
    pub latency: LatencyHistogram,
}

impl ConnectCounters {
    /// Adds `other`'s counters to these, field by field.
    pub fn add(&mut self, other: &Self) {
        self.established += other.established;
        self.refused += other.refused;
        self.timed_out += other.timed_out;
        self.abandoned += other.abandoned;
        self.other_error += other.other_error;
        self.failed_ns += other.failed_ns;
        self.latency.add(&other.latency);
    }

    pub const ZERO: Self = Self {
        established: 0,
        refused: 0,
        timed_out: 0,
        abandoned: 0,
        other_error: 0,
        failed_ns: 0,
        latency: LatencyHistogram::ZERO,
    };
}

#[cfg(feature = "user")]
mod user {
    use super::*;

    // SAFETY: each type is repr(C), made of integers and integer arrays,
    // with the padding spelled out as fields, so every byte pattern is a
    // valid value.
    unsafe impl aya::Pod for ConnectKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ConnectPending {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ConnectCounters {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(core::mem::size_of::<ConnectKey>(), 32);
        assert_eq!(core::mem::size_of::<ConnectPending>(), 40);
    }
}
