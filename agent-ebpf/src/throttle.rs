//! Throttle delay: time a task is runnable but kept off the CPU because
//! its group used up its CFS bandwidth quota, measured in `sched_switch`.
//!
//! A task switched out runnable while it is throttled (see
//! `Task::is_throttled`) has its `RUNQ_ENQUEUED` timestamp tagged with
//! [`ENQUEUED_THROTTLED_BIT`]. When it is switched in, the whole wait goes
//! to the throttle delay instead of the run-queue latency.
//!
//! NOTE: the kernel has no hook at unthrottle that these program types can
//! use, so the short run-queue wait between the unthrottle and the switch
//! in counts as throttle delay too.

use agent_common::{probe::ProbeId, throttle::ENQUEUED_THROTTLED_BIT, wait_total::WaitTotal};
use aya_ebpf::{macros::map, maps::PerCpuHashMap};

use crate::{
    stats::{Loss, count_loss},
    task::Task,
    totals::record_total,
};

/// Default size; the agent overrides it from its configuration.
const MAX_CGROUPS: u32 = 4_096;

#[map]
static THROTTLE_DELAY: PerCpuHashMap<u64, WaitTotal> = PerCpuHashMap::with_max_entries(MAX_CGROUPS, 0);

/// Returns the `RUNQ_ENQUEUED` value for a task that becomes runnable at `now`.
#[inline(always)]
pub fn enqueued_stamp(now: u64, throttled: bool) -> u64 {
    let stamp = now & !ENQUEUED_THROTTLED_BIT;
    if throttled { stamp | ENQUEUED_THROTTLED_BIT } else { stamp }
}

/// Returns the stamp for `prev`, switched out runnable at `now`.
#[inline(always)]
pub fn preempted_stamp(probe: ProbeId, prev: Task, now: u64) -> u64 {
    let throttled = prev.is_throttled().unwrap_or_else(|_| {
        count_loss(probe, Loss::ReadError);
        false
    });
    enqueued_stamp(now, throttled)
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
