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
    maps::{HashMap as BpfHashMap, MapData},
};

pub struct BlockMaps {
    latency: BpfHashMap<MapData, BlockKey, LatencyHistogram>,
}

impl BlockMaps {
    pub(super) fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let map =
            ebpf.take_map(BLOCK_LATENCY_MAP).with_context(|| format!("probe object has no map {BLOCK_LATENCY_MAP}"))?;
        Ok(Self { latency: BpfHashMap::try_from(map)? })
    }

    /// Cumulative request latency per blkcg and device.
    pub fn read(&self) -> HashMap<BlockKey, LatencyHistogram> {
        // Entries removed while iterating end the walk early or are
        // skipped; the next tick reads them again.
        self.latency.iter().flatten().collect()
    }

    /// Removes an entry whose blkcg was deleted, so the map does not fill up.
    pub fn remove(&mut self, key: &BlockKey) {
        // The entry may already be gone; nothing to do then.
        let _ = self.latency.remove(key);
    }
}
