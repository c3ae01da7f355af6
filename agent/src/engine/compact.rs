//! Compact storage of the samples a window keeps.
//!
//! A window keeps up to eight samples per cgroup at the default tick and
//! span, and the full [`Sample`] is over 1 KiB, most of it a 40-slot
//! histogram and the DNS counters. Most cgroups fill a few histogram slots
//! and send no DNS queries, so a kept sample stores only the nonzero slots
//! and leaves out DNS counters that are all zero.

use std::time::Instant;

use agent_common::{
    histogram::{LatencyHistogram, SLOTS},
    wait_total::WaitTotal,
};

use super::{
    network::{ConnectTotals, DnsTotals},
    window::Sample,
};
use crate::cgroup::{CgroupId, cpu_stat::CpuStat};

// The occupied slots are a bit set in one u64.
const _: () = assert!(SLOTS <= u64::BITS as usize);

/// A [`LatencyHistogram`] that stores only its nonzero slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SparseHistogram {
    count: u64,
    total_ns: u64,
    /// Bit `i` is set when slot `i` is nonzero.
    occupied: u64,
    /// Counts of the occupied slots, lowest slot first.
    counts: Box<[u64]>,
}

impl SparseHistogram {
    pub fn new(histogram: &LatencyHistogram) -> Self {
        let mut occupied = 0u64;
        for (slot, &count) in histogram.slots.iter().enumerate() {
            if count != 0 {
                occupied |= 1 << slot;
            }
        }
        let counts = histogram.slots.iter().copied().filter(|&count| count != 0).collect();
        Self { count: histogram.count, total_ns: histogram.total_ns, occupied, counts }
    }

    pub fn to_histogram(&self) -> LatencyHistogram {
        let mut histogram = LatencyHistogram::ZERO;
        histogram.count = self.count;
        histogram.total_ns = self.total_ns;
        let occupied_slots = (0..SLOTS).filter(|slot| self.occupied & (1 << slot) != 0);
        for (slot, &count) in occupied_slots.zip(self.counts.iter()) {
            histogram.slots[slot] = count;
        }
        histogram
    }
}

/// A [`Sample`] as a window keeps it.
#[derive(Clone, Debug)]
pub struct StoredSample {
    pub at: Instant,
    runqueue: SparseHistogram,
    cpu: CpuStat,
    neighbours: Box<[(CgroupId, u64)]>,
    throttle_delay: WaitTotal,
    iowait: WaitTotal,
    /// `None` when every DNS counter is zero.
    dns: Option<Box<DnsTotals>>,
    connect: ConnectTotals,
}

impl StoredSample {
    pub fn new(sample: Sample) -> Self {
        Self {
            at: sample.at,
            runqueue: SparseHistogram::new(&sample.runqueue),
            cpu: sample.cpu,
            neighbours: sample.neighbours.into_boxed_slice(),
            throttle_delay: sample.throttle_delay,
            iowait: sample.iowait,
            dns: (!sample.dns.is_empty()).then(|| Box::new(sample.dns)),
            connect: sample.connect,
        }
    }

    /// Rebuilds the sample as it was pushed.
    pub fn to_sample(&self) -> Sample {
        Sample {
            at: self.at,
            runqueue: self.runqueue.to_histogram(),
            cpu: self.cpu,
            neighbours: self.neighbours.to_vec(),
            throttle_delay: self.throttle_delay,
            iowait: self.iowait,
            dns: self.dns.as_deref().copied().unwrap_or_default(),
            connect: self.connect.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use super::*;
    use crate::engine::network::Destination;

    #[test]
    fn sparse_histogram_round_trip() {
        let mut histogram = LatencyHistogram::ZERO;
        for wait in [0, 1, 1_500, 1_600, 3_000_000, 1 << 50] {
            histogram.record(wait);
        }

        let sparse = SparseHistogram::new(&histogram);

        assert_eq!(sparse.counts.len(), 4);
        assert_eq!(sparse.to_histogram(), histogram);
    }

    #[test]
    fn sparse_histogram_of_empty() {
        let sparse = SparseHistogram::new(&LatencyHistogram::ZERO);

        assert!(sparse.counts.is_empty());
        assert_eq!(sparse.to_histogram(), LatencyHistogram::ZERO);
    }

    #[test]
    fn sparse_histogram_every_slot() {
        let mut histogram = LatencyHistogram::ZERO;
        for slot in 0..SLOTS {
            histogram.slots[slot] = slot as u64 + 1;
        }
        histogram.count = 820;
        histogram.total_ns = 12_345;

        assert_eq!(SparseHistogram::new(&histogram).to_histogram(), histogram);
    }

    fn sample_with(dns: DnsTotals, connect: ConnectTotals) -> Sample {
        let mut runqueue = LatencyHistogram::ZERO;
        runqueue.record(2_000);
        Sample {
            at: Instant::now(),
            runqueue,
            cpu: CpuStat { usage_ns: Some(5), periods: None, throttled_periods: Some(2), throttled_ns: Some(7) },
            neighbours: vec![(3, 40), (4, 1)],
            throttle_delay: WaitTotal { count: 1, total_ns: 9 },
            iowait: WaitTotal { count: 2, total_ns: 11 },
            dns,
            connect,
        }
    }

    fn assert_same(stored: &Sample, original: &Sample) {
        assert_eq!(stored.at, original.at);
        assert_eq!(stored.runqueue, original.runqueue);
        assert_eq!(stored.cpu, original.cpu);
        assert_eq!(stored.neighbours, original.neighbours);
        assert_eq!(stored.throttle_delay, original.throttle_delay);
        assert_eq!(stored.iowait, original.iowait);
        assert_eq!(stored.dns, original.dns);
        assert_eq!(stored.connect, original.connect);
    }

    #[test]
    fn stored_sample_without_dns() {
        let original = sample_with(DnsTotals::default(), ConnectTotals::default());

        let stored = StoredSample::new(original.clone());

        assert!(stored.dns.is_none());
        assert_same(&stored.to_sample(), &original);
    }

    #[test]
    fn stored_sample_keeps_network_counters() {
        let mut dns = DnsTotals::default();
        dns.counters.malformed = 1;
        dns.timeouts = 3;
        let mut connect = ConnectTotals::default();
        let destination = Destination::Address(SocketAddr::from((Ipv4Addr::LOCALHOST, 53)));
        connect.destinations.insert(destination, agent_common::connect::ConnectCounters::ZERO);
        connect.folded_destinations = 2;
        let original = sample_with(dns, connect);

        let stored = StoredSample::new(original.clone());

        assert!(stored.dns.is_some());
        assert_same(&stored.to_sample(), &original);
    }
}
