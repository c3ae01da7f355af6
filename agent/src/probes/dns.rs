//! Userspace half of the DNS probes: reading the per-cgroup counters and
//! sweeping queries that were never answered.

use std::{collections::HashMap, time::Duration};

use agent_common::dns::{DNS_COUNTERS_MAP, DNS_PENDING_MAP, DnsCounters, DnsPendingQuery, DnsQueryKey};
use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapData, PerCpuHashMap},
};

use crate::cgroup::CgroupId;

pub struct DnsMaps {
    counters: PerCpuHashMap<MapData, CgroupId, DnsCounters>,
    pending: BpfHashMap<MapData, DnsQueryKey, DnsPendingQuery>,
}

impl DnsMaps {
    pub(super) fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let counters =
            ebpf.take_map(DNS_COUNTERS_MAP).with_context(|| format!("probe object has no map {DNS_COUNTERS_MAP}"))?;
        let pending =
            ebpf.take_map(DNS_PENDING_MAP).with_context(|| format!("probe object has no map {DNS_PENDING_MAP}"))?;
        Ok(Self { counters: PerCpuHashMap::try_from(counters)?, pending: BpfHashMap::try_from(pending)? })
    }

    /// Cumulative DNS counters per cgroup, summed over CPUs.
    pub fn read(&self) -> HashMap<CgroupId, DnsCounters> {
        let mut totals = HashMap::new();
        for (cgroup, per_cpu) in self.counters.iter().flatten() {
            totals.insert(cgroup, sum_counters(per_cpu.iter()));
        }
        totals
    }

    /// Removes queries sent more than `timeout` ago and returns how many
    /// each cgroup lost that way.
    ///
    /// A response that arrives while the sweep runs is counted once: the
    /// probe counts it only if it removes the entry itself, and the sweep
    /// counts a timeout only if its own removal succeeds.
    pub fn sweep_timeouts(&mut self, timeout: Duration) -> HashMap<CgroupId, u64> {
        let now = monotonic_ns();
        let timeout_ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        let expired: Vec<(DnsQueryKey, CgroupId)> = self
            .pending
            .iter()
            .flatten()
            .filter(|(_, query)| now.saturating_sub(query.sent_ns) >= timeout_ns)
            .map(|(key, query)| (key, query.cgroup))
            .collect();
        let mut timeouts = HashMap::new();
        for (key, cgroup) in expired {
            if self.pending.remove(&key).is_ok() {
                *timeouts.entry(cgroup).or_insert(0) += 1;
            }
        }
        timeouts
    }

    /// Removes a deleted cgroup's counters so the map does not fill up.
    pub fn remove(&mut self, cgroup: CgroupId) {
        // The entry may already be gone; nothing to do then.
        let _ = self.counters.remove(&cgroup);
    }
}

fn sum_counters<'a>(values: impl Iterator<Item = &'a DnsCounters>) -> DnsCounters {
    let mut total = DnsCounters::ZERO;
    for value in values {
        total.add(value);
    }
    total
}

/// CLOCK_MONOTONIC in nanoseconds, the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}
