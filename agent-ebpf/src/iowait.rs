//! Block-I/O wait, measured in `sched_switch` (called from
//! `runqueue::sched_switch`, so the hook runs one program).
//!
//! A wait starts when a task is switched out asleep with `in_iowait` set,
//! which `io_schedule()` and its variants set around `schedule()`. It ends
//! when the task is switched in again, so it includes the run-queue wait
//! after the wakeup. That is what delay accounting reports as blkio delay
//! (`delayacct_blkio_ticks`): `io_schedule_prepare()` starts it before
//! `schedule()` and `io_schedule_finish()` ends it after `schedule()`
//! returns.

use agent_common::{iowait::IoWaitSlot, probe::ProbeId, wait_total::WaitTotal};
use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuHashMap},
};

use crate::{
    stats::{Loss, count_loss},
    task::Task,
    totals::record_total,
};

/// Default sizes; the agent overrides both from its configuration.
const SLOTS: u32 = 32_768;
const MAX_CGROUPS: u32 = 4_096;

/// TASK_UNINTERRUPTIBLE in `task_struct.__state`. `io_schedule()` sleeps
/// with it set (also in TASK_KILLABLE and TASK_IDLE).
const TASK_UNINTERRUPTIBLE: u32 = 0x2;

/// Number of slots of `IOWAIT_STARTED` minus one, written by the agent.
#[unsafe(no_mangle)]
static IOWAIT_SLOTS_MASK: u32 = SLOTS - 1;

/// I/O waits in progress, at index `tid & IOWAIT_SLOTS_MASK`.
///
/// NOTE: two threads whose ids share an index and wait at once share a
/// slot: the later wait replaces the earlier one, which is counted as a
/// `map_full` loss, and the earlier thread's wait is not measured.
#[map]
static IOWAIT_STARTED: Array<IoWaitSlot> = Array::with_max_entries(SLOTS, 0);

#[map]
static IOWAIT_TOTAL: PerCpuHashMap<u64, WaitTotal> = PerCpuHashMap::with_max_entries(MAX_CGROUPS, 0);

/// Returns the index of `tid` in the per-thread arrays (`IOWAIT_STARTED`
/// and `THROTTLE_STARTED`, which have the same size).
#[inline(always)]
pub fn slot_index(tid: u32) -> u32 {
    // SAFETY: a volatile read keeps the compiler from folding the
    // initializer into the code; the loader rewrites the value.
    tid & unsafe { core::ptr::read_volatile(&IOWAIT_SLOTS_MASK) }
}

#[inline(always)]
fn slot(tid: u32) -> Option<*mut IoWaitSlot> {
    IOWAIT_STARTED.get_ptr_mut(slot_index(tid))
}

/// Starts an I/O wait if `prev`, switched out asleep in `state`, is in I/O
/// wait. Only uninterruptible sleeps are read, which keeps the common
/// interruptible sleep (poll, futex, pipe) at one kernel read.
#[inline(always)]
pub fn on_sleep(probe: ProbeId, prev: Task, tid: u32, state: u32, now: u64) {
    if state & TASK_UNINTERRUPTIBLE == 0 {
        return;
    }
    match prev.in_iowait() {
        Ok(true) => {
            let Some(slot) = slot(tid) else { return };
            // SAFETY: an element of an array map; a thread is switched out
            // and in on one CPU at a time, so its slot has one writer.
            unsafe {
                if (*slot).started_ns != 0 && (*slot).tid != tid {
                    count_loss(probe, Loss::MapFull);
                }
                (*slot).tid = tid;
                (*slot).started_ns = now;
            }
        }
        Ok(false) => {}
        Err(_) => count_loss(probe, Loss::ReadError),
    }
}

/// Ends and returns the start of `tid`'s I/O wait, if it has one.
#[inline(always)]
pub fn take_started(tid: u32) -> Option<u64> {
    let slot = slot(tid)?;
    // SAFETY: as in `on_sleep`.
    unsafe {
        let started = (*slot).started_ns;
        if started == 0 || (*slot).tid != tid {
            return None;
        }
        (*slot).started_ns = 0;
        Some(started)
    }
}

#[inline(always)]
pub fn record(probe: ProbeId, cgroup: u64, wait_ns: u64) {
    record_total(&IOWAIT_TOTAL, probe, cgroup, wait_ns);
}
