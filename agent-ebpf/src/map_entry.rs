//! An entry of a hash map, made on first use.

use agent_common::probe::ProbeId;
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    maps::{HashMap, PerCpuHashMap},
};

use crate::stats::{Loss, count_loss};

/// A hash map whose value for a key can be looked up and inserted: shared
/// by all CPUs, or one copy per CPU.
pub trait EntryMap<K, V> {
    fn lookup(&self, key: &K) -> Option<*mut V>;
    fn insert_new(&self, key: &K, value: &V);
}

/// Implements [`EntryMap`] for an aya map type: both kinds of hash map have
/// the same lookup and insert methods, but no trait in aya-ebpf names them.
macro_rules! impl_entry_map {
    ($map:ident) => {
        impl<K, V> EntryMap<K, V> for $map<K, V> {
            #[inline(always)]
            fn lookup(&self, key: &K) -> Option<*mut V> {
                self.get_ptr_mut(key)
            }

            #[inline(always)]
            fn insert_new(&self, key: &K, value: &V) {
                let _ = self.insert(key, value, BPF_NOEXIST as u64);
            }
        }
    };
}

impl_entry_map!(PerCpuHashMap);
impl_entry_map!(HashMap);

/// Returns a pointer to the value for `key` (this CPU's copy in a per-CPU
/// map), inserting `zero` first when the key is new. A full map counts as
/// a loss of `probe` and gives `None`.
#[inline(always)]
pub fn entry<K, V>(map: &impl EntryMap<K, V>, key: &K, zero: &V, probe: ProbeId) -> Option<*mut V> {
    if let Some(value) = map.lookup(key) {
        return Some(value);
    }
    // BPF_NOEXIST: another CPU may have inserted the entry in the meantime;
    // then the lookup below finds that one.
    map.insert_new(key, zero);
    let value = map.lookup(key);
    if value.is_none() {
        count_loss(probe, Loss::MapFull);
    }
    value
}
