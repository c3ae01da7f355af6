//! Recording a wait in a per-CPU, per-cgroup [`WaitTotal`].

use agent_common::{probe::ProbeId, wait_total::WaitTotal};
use aya_ebpf::maps::PerCpuHashMap;

use crate::map_entry;

/// Adds one wait of `wait_ns` to `cgroup`'s entry, making the entry when
/// it is missing; a full map counts as a loss of `probe`.
#[inline(always)]
pub fn record_total(map: &PerCpuHashMap<u64, WaitTotal>, probe: ProbeId, cgroup: u64, wait_ns: u64) {
    let Some(total) = map_entry::entry(map, &cgroup, &WaitTotal::ZERO, probe) else {
        return;
    };
    // SAFETY: this CPU's copy of a per-CPU value; the programs that write
    // these maps (sched_switch) do not nest on one CPU.
    unsafe { (*total).record(wait_ns) };
}
