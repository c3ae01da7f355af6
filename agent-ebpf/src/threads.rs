//! The waits in progress of each thread, one array slot per thread id.
//!
//! The slot of a thread is at `tid & THREAD_SLOTS_MASK`. When
//! `--max-threads` is at least the kernel's `pid_max`, the agent sizes the
//! array to `pid_max` and every thread has its own slot. Otherwise, as on
//! most systemd hosts (`pid_max` 4194304), threads whose ids are equal
//! modulo the array size share a slot. The thread that writes it last
//! takes it over, and the waits the other one had in progress are lost and
//! counted as `slot_shared`. A few such losses are normal there.
//!
//! A slot has one writer at a time. `sched_wakeup` fires under the lock of
//! the run queue the thread is put on, after `try_to_wake_up()` has waited
//! for the thread to leave its previous CPU, and the thread's switches run
//! under the lock of its run queue (kernel/sched/core.c). So the programs
//! that touch one thread's slot do not overlap.
//!
//! NOTE: two threads that share a slot can write it at once from two CPUs.
//! Then one thread's wait can be counted for the other, or lost without a
//! count. A slot left with a zero stamp by such a race is never counted:
//! a wait from time 0 would be as long as the node's uptime.

use agent_common::{probe::ProbeId, runqueue::ThreadWaits};
use aya_ebpf::{macros::map, maps::Array};

use crate::stats::{Loss, count_loss};

/// Default size; the agent overrides it from its configuration.
const SLOTS: u32 = 32_768;

/// Number of slots of `THREAD_WAITS` minus one, written by the agent.
#[unsafe(no_mangle)]
static THREAD_SLOTS_MASK: u32 = SLOTS - 1;

#[map]
static THREAD_WAITS: Array<ThreadWaits> = Array::with_max_entries(SLOTS, 0);

#[inline(always)]
fn slot_of(tid: u32) -> Option<*mut ThreadWaits> {
    // SAFETY: a volatile read keeps the compiler from folding the
    // initializer into the code; the loader rewrites the value.
    let mask = unsafe { core::ptr::read_volatile(&THREAD_SLOTS_MASK) };
    THREAD_WAITS.get_ptr_mut(tid & mask)
}

/// Claims the slot of `tid` and returns it, taking it over from another
/// thread that held it. Waits that thread had in progress are lost, counted for `probe` as
/// `slot_shared`.
#[inline(always)]
pub fn claim(probe: ProbeId, tid: u32) -> Option<&'static mut ThreadWaits> {
    // SAFETY: an element of an array map, valid while the program runs;
    // see the module documentation for why it has one writer.
    let slot = unsafe { &mut *slot_of(tid)? };
    if slot.tid != tid {
        if slot.waits != 0 {
            count_loss(probe, Loss::SlotShared);
        }
        *slot = ThreadWaits { tid, ..ThreadWaits::EMPTY };
    }
    Some(slot)
}
