//! Userspace half of the run-queue latency probe: reading and pruning the
//! per-cgroup histograms.

use std::collections::HashMap;

use agent_common::{
    histogram::LatencyHistogram,
    runqueue::{NeighbourKey, RUNQ_LATENCY_MAP, RUNQ_NEIGHBOURS_MAP},
};
use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{MapData, PerCpuHashMap},
};

use crate::cgroup::CgroupId;

pub struct RunQueueMaps {
    latency: PerCpuHashMap<MapData, CgroupId, LatencyHistogram>,
    neighbours: PerCpuHashMap<MapData, NeighbourKey, u64>,
}

impl RunQueueMaps {
    pub(super) fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let mut take = |name: &str| ebpf.take_map(name).with_context(|| format!("probe object has no map {name}"));
        Ok(Self {
            latency: PerCpuHashMap::try_from(take(RUNQ_LATENCY_MAP)?)?,
            neighbours: PerCpuHashMap::try_from(take(RUNQ_NEIGHBOURS_MAP)?)?,
        })
    }

    /// Cumulative run-queue latency per cgroup, summed over CPUs.
    pub fn read(&self) -> HashMap<CgroupId, LatencyHistogram> {
        let mut totals = HashMap::new();
        // Entries removed while iterating end the walk early or are
        // skipped; the next tick reads them again.
        for entry in self.latency.iter().flatten() {
            let (cgroup, per_cpu) = entry;
            totals.insert(cgroup, sum_per_cpu(per_cpu.iter()));
        }
        totals
    }

    /// Cumulative wait, in nanoseconds, per (waiter, runner) cgroup pair.
    pub fn read_neighbours(&self) -> HashMap<NeighbourKey, u64> {
        self.neighbours.iter().flatten().map(|(key, per_cpu)| (key, per_cpu.iter().sum())).collect()
    }

    /// Removes a deleted cgroup's entries so the maps do not fill up.
    pub fn remove(&mut self, cgroup: CgroupId) {
        // An entry may already be gone; nothing to do then.
        let _ = self.latency.remove(&cgroup);
        let pairs: Vec<NeighbourKey> =
            self.neighbours.keys().flatten().filter(|key| key.waiter == cgroup || key.runner == cgroup).collect();
        for key in pairs {
            let _ = self.neighbours.remove(&key);
        }
    }
}

pub fn sum_per_cpu<'a>(values: impl Iterator<Item = &'a LatencyHistogram>) -> LatencyHistogram {
    let mut total = LatencyHistogram::ZERO;
    for value in values {
        total.add(value);
    }
    total
}
