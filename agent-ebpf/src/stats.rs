//! Per-probe self-accounting: events handled and events lost.

use agent_common::probe::{PROBE_COUNT, ProbeId, ProbeStats};
use aya_ebpf::{macros::map, maps::PerCpuArray};

#[map]
static PROBE_STATS: PerCpuArray<ProbeStats> = PerCpuArray::with_max_entries(PROBE_COUNT, 0);

/// Why an event was dropped.
#[derive(Clone, Copy)]
pub enum Loss {
    MapFull,
    ReadError,
    SlotShared,
}

#[inline(always)]
fn with_stats(probe: ProbeId, update: impl FnOnce(&mut ProbeStats)) {
    if let Some(stats) = PROBE_STATS.get_ptr_mut(probe as u32) {
        // SAFETY: the pointer comes from this CPU's slot of a per-CPU array.
        // NOTE: dns_egress can run in softirq while another dns_egress run
        // is in progress on the same CPU, so a count can lose an increment.
        update(unsafe { &mut *stats });
    }
}

#[inline(always)]
pub fn count_event(probe: ProbeId) {
    with_stats(probe, |stats| stats.events += 1);
}

#[inline(always)]
pub fn count_loss(probe: ProbeId, loss: Loss) {
    with_stats(probe, |stats| match loss {
        Loss::MapFull => stats.lost_map_full += 1,
        Loss::ReadError => stats.lost_read_error += 1,
        Loss::SlotShared => stats.lost_slot_shared += 1,
    });
}
