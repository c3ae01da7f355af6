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

use agent_common::{probe::ProbeId, wait_total::WaitTotal};
use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuHashMap},
};

use crate::{
    stats::{Loss, count_loss},
    task::Task,
    totals::record_total,
};

/// Default sizes; the agent overrides both from its configuration.
const MAX_THREADS: u32 = 32_768;
const MAX_CGROUPS: u32 = 4_096;

#[map]
static IOWAIT_STARTED: HashMap<u32, u64> = HashMap::with_max_entries(MAX_THREADS, 0);

#[map]
static IOWAIT_TOTAL: PerCpuHashMap<u64, WaitTotal> = PerCpuHashMap::with_max_entries(MAX_CGROUPS, 0);

/// Starts an I/O wait if `prev`, switched out asleep, is in I/O wait.
#[inline(always)]
pub fn on_sleep(probe: ProbeId, prev: Task, tid: u32, now: u64) {
    match prev.in_iowait() {
        Ok(true) => {
            if IOWAIT_STARTED.insert(tid, now, 0).is_err() {
                count_loss(probe, Loss::MapFull);
            }
        }
        Ok(false) => {}
        Err(_) => count_loss(probe, Loss::ReadError),
    }
}

/// Removes and returns the start of `tid`'s I/O wait, if it has one.
#[inline(always)]
pub fn take_started(tid: u32) -> Option<u64> {
    // SAFETY: the value is copied out before the entry is removed.
    let started = unsafe { IOWAIT_STARTED.get(tid) }.copied()?;
    let _ = IOWAIT_STARTED.remove(tid);
    Some(started)
}

#[inline(always)]
pub fn record(probe: ProbeId, cgroup: u64, wait_ns: u64) {
    record_total(&IOWAIT_TOTAL, probe, cgroup, wait_ns);
}
