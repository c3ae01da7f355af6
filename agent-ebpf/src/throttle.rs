//! Throttle delay: time a task is runnable but kept off the CPU because
//! its group used up its CFS bandwidth quota, measured in `sched_switch`
//! (called from `runqueue::sched_switch`, so the hook runs one program).
//!
//! A task switched out runnable while it is throttled (see
//! `Task::is_throttled`) gets the `WAIT_THROTTLED` bit in its thread slot,
//! with its CFS run queue and that run queue's cumulative throttled time
//! (`cfs_rq.throttled_clock_self_time`). When its wait is counted, the
//! growth of that throttled time, capped at the wait, is throttle delay,
//! and the rest of the wait (queued after the unthrottle) is run-queue
//! wait. The throttled time is read when the task next leaves the CPU, not
//! when it was switched in. The kernel adds to it only when the run queue
//! is unthrottled, which mostly happens while the task waits, not while it
//! runs.
//!
//! NOTE: since Linux 6.18 a task keeps running in the kernel after its run
//! queue is throttled, until it returns to user space. An unthrottle in
//! that time makes the throttled part of its previous wait too large,
//! though never larger than the wait.
//!
//! NOTE: kernels before 6.8 lack `throttled_clock_self_time`, and no hook
//! that these program types can use fires at unthrottle. There the whole
//! wait of a throttled task counts as throttle delay, including the
//! run-queue wait after the unthrottle.

use agent_common::{probe::ProbeId, runqueue::ThreadWaits, wait_total::WaitTotal};
use aya_ebpf::{macros::map, maps::PerCpuHashMap};

use crate::{
    stats::{Loss, count_loss},
    task::{Task, offsets, read_kernel},
    totals::record_total,
};

/// Default size; the agent overrides it from its configuration.
const MAX_CGROUPS: u32 = 4_096;

#[map]
static THROTTLE_DELAY: PerCpuHashMap<u64, WaitTotal> = PerCpuHashMap::with_max_entries(MAX_CGROUPS, 0);

/// Records in `slot` the run queue and throttled time of `prev`, switched
/// out runnable, when throttling keeps it off the CPU, and returns whether
/// it does.
#[inline(always)]
pub fn remember_if_throttled(slot: &mut ThreadWaits, prev: Task) -> bool {
    let throttled = prev.is_throttled().unwrap_or_else(|_| {
        count_loss(ProbeId::SchedSwitch, Loss::ReadError);
        false
    });
    if !throttled {
        return false;
    }
    slot.cfs_rq = 0;
    let self_time = offsets().cfs_rq_throttled_clock_self_time;
    if self_time != 0
        && let Ok(cfs_rq) = prev.cfs_rq()
        && let Ok(throttled_ns) = read_kernel::<u64>(cfs_rq, self_time)
    {
        slot.cfs_rq = cfs_rq as u64;
        slot.cfs_rq_throttled_ns = throttled_ns;
    }
    true
}

/// Returns the part of a throttled task's `wait_ns` during which its run
/// queue was throttled: all of it when the run queue was not recorded.
#[inline(always)]
pub fn throttled_part(slot: &ThreadWaits, wait_ns: u64) -> u64 {
    if slot.cfs_rq == 0 {
        return wait_ns;
    }
    match read_kernel::<u64>(slot.cfs_rq as *const u8, offsets().cfs_rq_throttled_clock_self_time) {
        Ok(now_ns) => now_ns.saturating_sub(slot.cfs_rq_throttled_ns).min(wait_ns),
        Err(_) => wait_ns,
    }
}

#[inline(always)]
pub fn record(probe: ProbeId, cgroup: u64, wait_ns: u64) {
    record_total(&THROTTLE_DELAY, probe, cgroup, wait_ns);
}
