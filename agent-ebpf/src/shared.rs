//! Atomic adds to map values that every CPU updates, for signals whose
//! events are too rare to need a copy of each value per CPU.

use agent_common::histogram::{LatencyHistogram, SLOTS, slot_of};
use core::intrinsics::{AtomicOrdering, atomic_xadd};

/// Adds `value` to the counter at `target` with one atomic add.
///
/// # Safety
///
/// `target` must point to a `u64` in a map value, aligned to 8 bytes,
/// that is written only with atomic operations.
#[inline(always)]
pub unsafe fn add(target: *mut u64, value: u64) {
    // SAFETY: as the caller promises. The result is unused, so this
    // compiles to the plain atomic add that every BPF kernel accepts.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(target, value) };
}

/// Records one wait of `ns` nanoseconds in `histogram`, as
/// `LatencyHistogram::record` does, with atomic adds.
///
/// # Safety
///
/// `histogram` must point to a histogram in a map value that is written
/// only with atomic operations.
#[inline(always)]
pub unsafe fn record(histogram: *mut LatencyHistogram, ns: u64) {
    let slot = slot_of(ns);
    // SAFETY: the fields are within `*histogram`, as the caller promises,
    // and the slot index is checked against the array.
    unsafe {
        add(&raw mut (*histogram).count, 1);
        add(&raw mut (*histogram).total_ns, ns);
        if slot < SLOTS {
            add((&raw mut (*histogram).slots).cast::<u64>().add(slot), 1);
        }
    }
}
