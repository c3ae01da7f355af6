//! Userspace half of the run-queue latency probe: reading and pruning the
//! per-cgroup histograms.

use std::collections::HashMap;

use agent_common::{histogram::LatencyHistogram, runqueue::RUNQ_LATENCY_MAP};
use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{MapData, PerCpuHashMap},
};

use crate::cgroup::CgroupId;

pub struct RunQueueMaps {
    latency: PerCpuHashMap<MapData, CgroupId, LatencyHistogram>,
}

impl RunQueueMaps {
    pub(super) fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let map = ebpf
            .take_map(RUNQ_LATENCY_MAP)
            .with_context(|| format!("probe object has no map {RUNQ_LATENCY_MAP}"))?;
        Ok(Self {
            latency: PerCpuHashMap::try_from(map)?,
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

    /// Removes a deleted cgroup's entry so the map does not fill up.
    pub fn remove(&mut self, cgroup: CgroupId) {
        // The entry may already be gone; nothing to do then.
        let _ = self.latency.remove(&cgroup);
    }
}

pub fn sum_per_cpu<'a>(values: impl Iterator<Item = &'a LatencyHistogram>) -> LatencyHistogram {
    let mut total = LatencyHistogram::ZERO;
    for value in values {
        total.count += value.count;
        total.total_ns += value.total_ns;
        for (sum, slot) in total.slots.iter_mut().zip(value.slots.iter()) {
            *sum += slot;
        }
    }
    total
}
