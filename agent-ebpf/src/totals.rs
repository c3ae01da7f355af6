//! Recording a wait in a per-CPU, per-cgroup [`WaitTotal`].

use agent_common::{probe::ProbeId, wait_total::WaitTotal};
use aya_ebpf::{bindings::BPF_NOEXIST, maps::PerCpuHashMap};

use crate::stats::{Loss, count_loss};

/// Adds one wait of `wait_ns` to `cgroup`'s entry, making the entry when
/// it is missing; a full map counts as a loss of `probe`.
#[inline(always)]
pub fn record_total(map: &PerCpuHashMap<u64, WaitTotal>, probe: ProbeId, cgroup: u64, wait_ns: u64) {
    let total = match map.get_ptr_mut(cgroup) {
        Some(total) => total,
        None => {
            // BPF_NOEXIST: another CPU may have inserted the entry in the
            // meantime; then the lookup below finds that one.
            let _ = map.insert(cgroup, WaitTotal::ZERO, BPF_NOEXIST as u64);
            match map.get_ptr_mut(cgroup) {
                Some(total) => total,
                None => {
                    count_loss(probe, Loss::MapFull);
                    return;
                }
            }
        }
    };
    // SAFETY: this CPU's copy of a per-CPU value; the programs that write
    // these maps (sched_switch) do not nest on one CPU.
    unsafe { (*total).record(wait_ns) };
}
