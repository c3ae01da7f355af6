//! This CPU's value of a per-CPU hash map entry, made on first use.

use agent_common::probe::ProbeId;
use aya_ebpf::{bindings::BPF_NOEXIST, maps::PerCpuHashMap};

use crate::stats::{Loss, count_loss};

/// Returns a pointer to this CPU's value for `key`, inserting `zero` first
/// when the key is new. A full map counts as a loss of `probe` and gives
/// `None`.
#[inline(always)]
pub fn entry<K, V>(map: &PerCpuHashMap<K, V>, key: &K, zero: &V, probe: ProbeId) -> Option<*mut V> {
    if let Some(value) = map.get_ptr_mut(key) {
        return Some(value);
    }
    // BPF_NOEXIST: another CPU may have inserted the entry in the meantime;
    // then the lookup below finds that one.
    let _ = map.insert(key, zero, BPF_NOEXIST as u64);
    let value = map.get_ptr_mut(key);
    if value.is_none() {
        count_loss(probe, Loss::MapFull);
    }
    value
}
