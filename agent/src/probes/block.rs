//! Userspace half of the block request latency probe: reading and pruning
//! the per-device, per-blkcg histograms.

use std::collections::HashMap;

use agent_common::{
    block::{BLOCK_LATENCY_MAP, BlockKey},
    histogram::LatencyHistogram,
};
use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{MapData, PerCpuHashMap},
};

use super::runqueue::sum_per_cpu;

pub struct BlockMaps {
    latency: PerCpuHashMap<MapData, BlockKey, LatencyHistogram>,
}

impl BlockMaps {
    pub(super) fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let map = ebpf
            .take_map(BLOCK_LATENCY_MAP)
            .with_context(|| format!("probe object has no map {BLOCK_LATENCY_MAP}"))?;
        Ok(Self {
            latency: PerCpuHashMap::try_from(map)?,
        })
    }

    /// Cumulative request latency per blkcg and device, summed over CPUs.
    pub fn read(&self) -> HashMap<BlockKey, LatencyHistogram> {
        let mut totals = HashMap::new();
        // Entries removed while iterating end the walk early or are
        // skipped; the next tick reads them again.
        for (key, per_cpu) in self.latency.iter().flatten() {
            totals.insert(key, sum_per_cpu(per_cpu.iter()));
        }
        totals
    }

    /// Removes an entry whose blkcg was deleted, so the map does not fill up.
    pub fn remove(&mut self, key: &BlockKey) {
        // The entry may already be gone; nothing to do then.
        let _ = self.latency.remove(key);
    }
}
