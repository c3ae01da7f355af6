//! Block-I/O wait, measured in `sched_switch` (called from
//! `runqueue::sched_switch`, so the hook runs one program).
//!
//! A wait starts when a task is switched out asleep with `in_iowait` set,
//! which `io_schedule()` and its variants set around `schedule()`, and
//! io_uring while it waits for completions. It ends at the task's wakeup,
//! and the run-queue wait that follows counts as run-queue wait, so a
//! task's I/O wait and run-queue wait never overlap and the classifier can
//! add them. Delay accounting measures blkio delay
//! over the same span: `__schedule()` starts it when the task blocks with
//! `in_iowait` set, and `try_to_wake_up()` ends it (kernel/sched/core.c).

use agent_common::{probe::ProbeId, wait_total::WaitTotal};
use aya_ebpf::{macros::map, maps::PerCpuHashMap};

use crate::{
    stats::{Loss, count_loss},
    task::{Task, current_in_iowait, offsets},
    totals::record_total,
};

/// Default size; the agent overrides it from its configuration.
const MAX_CGROUPS: u32 = 4_096;

#[map]
static IOWAIT_TOTAL: PerCpuHashMap<u64, WaitTotal> = PerCpuHashMap::with_max_entries(MAX_CGROUPS, 0);

/// Tells whether `prev`, switched out asleep, sleeps in I/O wait. Every
/// sleep is read, interruptible ones too, because io_uring waits for
/// completions interruptibly.
#[inline(always)]
pub fn is_in_iowait(prev: Task) -> bool {
    // `prev` is the current task in sched_switch.
    if offsets().current_task_btf != 0 {
        return current_in_iowait();
    }
    prev.in_iowait().unwrap_or_else(|_| {
        count_loss(ProbeId::SchedSwitch, Loss::ReadError);
        false
    })
}

#[inline(always)]
pub fn record(probe: ProbeId, cgroup: u64, wait_ns: u64) {
    record_total(&IOWAIT_TOTAL, probe, cgroup, wait_ns);
}
