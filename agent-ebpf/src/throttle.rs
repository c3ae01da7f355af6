//! Throttle delay: time a task is runnable but kept off the CPU because
//! its group used up its CFS bandwidth quota, measured in `sched_switch`.
//!
//! A task switched out runnable while it is throttled (see
//! `Task::is_throttled`) has its `RUNQ_ENQUEUED` timestamp tagged with
//! [`ENQUEUED_THROTTLED_BIT`], and its CFS run queue and that run queue's
//! cumulative throttled time (`cfs_rq.throttled_clock_self_time`) are kept
//! in `THROTTLE_STARTED`. When it is switched in, the growth of that
//! throttled time, capped at the wait, is throttle delay, and the rest of
//! the wait (queued after the unthrottle) is run-queue wait.
//!
//! NOTE: kernels before 6.8 lack `throttled_clock_self_time`, and no hook
//! that these program types can use fires at unthrottle. There the whole
//! wait of a throttled task counts as throttle delay, including the
//! run-queue wait after the unthrottle.

use agent_common::{
    probe::ProbeId,
    throttle::{ENQUEUED_THROTTLED_BIT, ThrottleSlot},
    wait_total::WaitTotal,
};
use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuHashMap},
};

use crate::{
    iowait::slot_index,
    stats::{Loss, count_loss},
    task::{Task, offsets, read_kernel},
    totals::record_total,
};

/// Default sizes; the agent overrides both from its configuration.
const MAX_CGROUPS: u32 = 4_096;
const SLOTS: u32 = 32_768;

/// Throttled tasks waiting for the unthrottle, at `slot_index(tid)`. Two
/// throttled threads that share an index share a slot; the earlier one's
/// wait then counts whole as throttle delay.
#[map]
static THROTTLE_STARTED: Array<ThrottleSlot> = Array::with_max_entries(SLOTS, 0);

#[map]
static THROTTLE_DELAY: PerCpuHashMap<u64, WaitTotal> = PerCpuHashMap::with_max_entries(MAX_CGROUPS, 0);

/// Returns the `RUNQ_ENQUEUED` value for a task that becomes runnable at `now`.
#[inline(always)]
pub fn enqueued_stamp(now: u64, throttled: bool) -> u64 {
    let stamp = now & !ENQUEUED_THROTTLED_BIT;
    if throttled { stamp | ENQUEUED_THROTTLED_BIT } else { stamp }
}

/// Returns the stamp for `prev` (thread `tid`), switched out runnable at
/// `now`, and remembers a throttled task's run queue.
#[inline(always)]
pub fn preempted_stamp(probe: ProbeId, prev: Task, tid: u32, now: u64) -> u64 {
    let throttled = prev.is_throttled().unwrap_or_else(|_| {
        count_loss(probe, Loss::ReadError);
        false
    });
    if throttled {
        remember_run_queue(prev, tid);
    }
    enqueued_stamp(now, throttled)
}

#[inline(always)]
fn remember_run_queue(prev: Task, tid: u32) {
    let self_time = offsets().cfs_rq_throttled_clock_self_time;
    if self_time == 0 {
        return;
    }
    let Ok(cfs_rq) = prev.cfs_rq() else { return };
    let Ok(throttled_ns) = read_kernel::<u64>(cfs_rq, self_time) else { return };
    let Some(slot) = THROTTLE_STARTED.get_ptr_mut(slot_index(tid)) else { return };
    // SAFETY: an element of an array map; a thread is switched out and in
    // on one CPU at a time, so its slot has one writer.
    unsafe {
        *slot = ThrottleSlot {
            tid,
            _padding: 0,
            cfs_rq: cfs_rq as u64,
            throttled_ns,
        };
    }
}

/// Returns the part of a throttled task's `wait_ns` during which its run
/// queue was throttled: all of it when the run queue was not recorded.
#[inline(always)]
pub fn throttled_part(tid: u32, wait_ns: u64) -> u64 {
    let Some(slot) = THROTTLE_STARTED.get_ptr_mut(slot_index(tid)) else { return wait_ns };
    // SAFETY: as in `remember_run_queue`.
    let saved = unsafe { *slot };
    if saved.tid != tid || saved.cfs_rq == 0 {
        return wait_ns;
    }
    // SAFETY: as above.
    unsafe { (*slot).cfs_rq = 0 };
    let cfs_rq = saved.cfs_rq as *const u8;
    match read_kernel::<u64>(cfs_rq, offsets().cfs_rq_throttled_clock_self_time) {
        Ok(now_ns) => now_ns.saturating_sub(saved.throttled_ns).min(wait_ns),
        Err(_) => wait_ns,
    }
}

/// Splits a stamp into the time it was taken and whether it was throttled.
#[inline(always)]
pub fn decode_stamp(stamp: u64) -> (u64, bool) {
    (stamp & !ENQUEUED_THROTTLED_BIT, stamp & ENQUEUED_THROTTLED_BIT != 0)
}

#[inline(always)]
pub fn record(probe: ProbeId, cgroup: u64, wait_ns: u64) {
    record_total(&THROTTLE_DELAY, probe, cgroup, wait_ns);
}
