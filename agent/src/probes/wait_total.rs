//! Userspace half of the per-cgroup wait totals that `sched_switch` keeps:
//! throttle delay and block-I/O wait.

use std::collections::HashMap;

use agent_common::wait_total::WaitTotal;
use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{MapData, PerCpuHashMap},
};

use crate::cgroup::CgroupId;

/// A per-CPU map from cgroup id to [`WaitTotal`].
pub struct WaitTotalMap {
    map: PerCpuHashMap<MapData, CgroupId, WaitTotal>,
}

impl WaitTotalMap {
    pub(super) fn take(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<Self> {
        let map = ebpf.take_map(name).with_context(|| format!("probe object has no map {name}"))?;
        Ok(Self { map: PerCpuHashMap::try_from(map)? })
    }

    /// Cumulative totals per cgroup, summed over CPUs.
    pub fn read(&self) -> HashMap<CgroupId, WaitTotal> {
        let mut totals = HashMap::new();
        // Entries removed while iterating end the walk early or are
        // skipped; the next tick reads them again.
        for (cgroup, per_cpu) in self.map.iter().flatten() {
            let mut total = WaitTotal::ZERO;
            for value in per_cpu.iter() {
                total.add(value);
            }
            totals.insert(cgroup, total);
        }
        totals
    }

    /// Removes a deleted cgroup's entry so the map does not fill up.
    pub fn remove(&mut self, cgroup: CgroupId) {
        // The entry may already be gone; nothing to do then.
        let _ = self.map.remove(&cgroup);
    }
}
