//! Run-queue latency: how long each task waits runnable before it runs.
//!
//! A task becomes runnable at wakeup (`sched_wakeup`, `sched_wakeup_new`)
//! or when it is switched out while still runnable (preempted or yielded,
//! seen in `sched_switch`). Its wait ends when `sched_switch` switches it
//! in, and is counted when the task next leaves the CPU: the task is then
//! the current one, so its thread id and cgroup come from helpers rather
//! than from reads of its `task_struct`. A count therefore lags by the run
//! time of the task that waited.

use agent_common::{
    histogram::LatencyHistogram,
    probe::ProbeId,
    runqueue::{NeighbourKey, ThreadWaits, WAIT_IOWAIT, WAIT_QUEUED, WAIT_THROTTLED},
};
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{map, raw_tracepoint},
    maps::{PerCpuArray, PerCpuHashMap},
    programs::RawTracePointContext,
};

use crate::{
    iowait, map_entry,
    stats::{Loss, count_event, count_loss},
    task::{Task, current_cgroup_id, offsets},
    threads, throttle,
};

/// Default size; the agent overrides it from its configuration.
const MAX_CGROUPS: u32 = 4_096;

#[map]
static RUNQ_LATENCY: PerCpuHashMap<u64, LatencyHistogram> = PerCpuHashMap::with_max_entries(MAX_CGROUPS, 0);

#[map]
static RUNQ_NEIGHBOURS: PerCpuHashMap<NeighbourKey, u64> = PerCpuHashMap::with_max_entries(MAX_CGROUPS * 4, 0);

/// The last switch on a CPU: the task it switched in, when, and the cgroup
/// of the task that held the CPU before it.
#[repr(C)]
#[derive(Clone, Copy)]
struct LastSwitch {
    /// `struct task_struct *` of the task switched in.
    task: u64,
    at_ns: u64,
    /// 0 when the CPU was idle or the cgroup could not be read (cgroup ids
    /// start at 1).
    runner: u64,
}

#[map]
static LAST_SWITCH: PerCpuArray<LastSwitch> = PerCpuArray::with_max_entries(1, 0);

/// `sched_wakeup(struct task_struct *p)`.
#[raw_tracepoint(tracepoint = "sched_wakeup")]
pub fn sched_wakeup(ctx: RawTracePointContext) -> i32 {
    on_wakeup(&ctx, ProbeId::SchedWakeup)
}

/// `sched_wakeup_new(struct task_struct *p)`: a new task's first wakeup.
#[raw_tracepoint(tracepoint = "sched_wakeup_new")]
pub fn sched_wakeup_new(ctx: RawTracePointContext) -> i32 {
    on_wakeup(&ctx, ProbeId::SchedWakeupNew)
}

#[inline(always)]
fn on_wakeup(ctx: &RawTracePointContext, probe: ProbeId) -> i32 {
    count_event(probe);
    let tid = match Task(ctx.arg::<*const u8>(0)).tid() {
        Ok(tid) => tid,
        Err(_) => {
            count_loss(probe, Loss::ReadError);
            return 0;
        }
    };
    let Some(slot) = threads::claim(probe, tid) else { return 0 };
    // A task can be woken while it is still queued, or while it runs after
    // setting its state to sleep. Then its wait started earlier, or starts
    // when it is switched out runnable, so the stamp is left alone.
    if slot.waits & WAIT_QUEUED == 0 || slot.queued_since_ns == 0 {
        slot.waits |= WAIT_QUEUED;
        // SAFETY: a helper call without arguments or side effects.
        slot.queued_since_ns = unsafe { bpf_ktime_get_ns() };
    }
    0
}

/// `sched_switch(bool preempt, struct task_struct *prev,
/// struct task_struct *next, unsigned int prev_state)`.
///
/// Kernels before 5.18 pass no `prev_state`; there the state is read from
/// `prev` (see `KernelOffsets::sched_switch_prev_state`). Besides run-queue
/// waits it measures throttle delay (`throttle`) and I/O wait (`iowait`),
/// so the hook runs one program.
#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn sched_switch(ctx: RawTracePointContext) -> i32 {
    const PROBE: ProbeId = ProbeId::SchedSwitch;
    count_event(PROBE);
    let Some(last) = LAST_SWITCH.get_ptr_mut(0) else { return 0 };
    // SAFETY: this CPU's slot of a per-CPU array; sched_switch does not
    // nest on one CPU.
    let last = unsafe { &mut *last };
    // SAFETY: a helper call without arguments or side effects.
    let now = unsafe { bpf_ktime_get_ns() };
    let prev = Task(ctx.arg::<*const u8>(1));
    // `prev` is still the current task here (the tracepoint fires before
    // the context switch). The low 32 bits are the thread id.
    let prev_tid = bpf_get_current_pid_tgid() as u32;
    // The idle task (thread id 0) is switched in when nothing is runnable,
    // so it has no wait to count, and a task that takes the CPU over from
    // it waited behind no one. Its cgroup is the root, which would
    // otherwise be named as the neighbour, so it stays 0 here.
    let mut cgroup = 0;
    if prev_tid != 0 {
        cgroup = current_cgroup_id().unwrap_or_else(|_| {
            count_loss(PROBE, Loss::ReadError);
            0
        });
        if let Some(slot) = threads::claim(PROBE, prev_tid) {
            if last.task == prev.0 as u64 && cgroup != 0 {
                record_ended_waits(slot, cgroup, last);
            }
            start_waits(&ctx, slot, prev, now);
        }
    }
    *last = LastSwitch { task: ctx.arg::<u64>(2), at_ns: now, runner: cgroup };
    0
}

/// Starts the waits of `prev`, switched out at `now`, and clears those that
/// ended: it is queued again when preempted or still runnable, or in I/O
/// wait when it sleeps in `io_schedule()`.
#[inline(always)]
fn start_waits(ctx: &RawTracePointContext, slot: &mut ThreadWaits, prev: Task, now: u64) {
    slot.waits = 0;
    let preempted = ctx.arg::<u64>(0) & 0xff != 0;
    // NOTE: on some kernels between 5.18 and 6.13, a task that tried to
    // sleep with a signal pending stays queued while the tracepoint still
    // passes its sleeping state, so that one wait is not counted.
    let state = if offsets().sched_switch_prev_state != 0 { Ok(ctx.arg::<u64>(3) as u32) } else { prev.state() };
    // A preempted task stays on the run queue whatever its state. Any
    // sleep can be I/O wait: io_schedule() sleeps uninterruptibly, but
    // io_uring waits for completions interruptibly with in_iowait set.
    match state {
        _ if preempted => queue(slot, prev, now),
        Ok(0) => queue(slot, prev, now),
        Ok(_) => {
            if iowait::is_in_iowait(prev) {
                slot.waits = WAIT_IOWAIT;
                slot.iowait_since_ns = now;
            }
        }
        Err(_) => count_loss(ProbeId::SchedSwitch, Loss::ReadError),
    }
}

#[inline(always)]
fn queue(slot: &mut ThreadWaits, prev: Task, now: u64) {
    slot.waits = WAIT_QUEUED;
    slot.queued_since_ns = now;
    if throttle::remember_if_throttled(slot, prev) {
        slot.waits |= WAIT_THROTTLED;
    }
}

/// Counts the waits of the current task that ended when it was switched
/// in (`last`), for its `cgroup`.
#[inline(always)]
fn record_ended_waits(slot: &ThreadWaits, cgroup: u64, last: &LastSwitch) {
    let ended_at = last.at_ns;
    // A stamp after the switch-in came from a wakeup while the task ran,
    // with no wait of its own before, so there is nothing to count. A
    // stamp of 0 is a slot that two threads wrote at once (see `threads`),
    // whose wait is unknown.
    if slot.waits & WAIT_QUEUED != 0 && slot.queued_since_ns != 0 && slot.queued_since_ns <= ended_at {
        let wait = ended_at - slot.queued_since_ns;
        let throttled_ns = if slot.waits & WAIT_THROTTLED != 0 {
            let throttled_ns = throttle::throttled_part(slot, wait);
            throttle::record(ProbeId::SchedSwitch, cgroup, throttled_ns);
            throttled_ns
        } else {
            0
        };
        let queued = wait - throttled_ns;
        if queued > 0 || throttled_ns == 0 {
            record_queued(cgroup, queued, last.runner);
        }
    }
    if slot.waits & WAIT_IOWAIT != 0 && slot.iowait_since_ns != 0 {
        let woken_at = iowait_end(slot, ended_at);
        if slot.iowait_since_ns <= woken_at {
            iowait::record(ProbeId::SchedSwitch, cgroup, woken_at - slot.iowait_since_ns);
        }
    }
}

/// Returns when the I/O wait in `slot` ended: at the wakeup, whose stamp
/// starts the run-queue wait that follows, so the two waits do not
/// overlap. Without a wakeup stamp (its probe is not attached, or the
/// slot was taken over) the wait ends at the switch-in.
#[inline(always)]
fn iowait_end(slot: &ThreadWaits, switched_in_at: u64) -> u64 {
    let woken_at = slot.queued_since_ns;
    let woken = slot.waits & WAIT_QUEUED != 0 && woken_at >= slot.iowait_since_ns && woken_at <= switched_in_at;
    if woken { woken_at } else { switched_in_at }
}

/// Counts a run-queue wait, and the group that held the CPU until it ended.
#[inline(always)]
fn record_queued(cgroup: u64, wait_ns: u64, runner: u64) {
    if let Some(histogram) = map_entry::entry(&RUNQ_LATENCY, &cgroup, &LatencyHistogram::ZERO, ProbeId::SchedSwitch) {
        // SAFETY: this CPU's copy of a per-CPU value; sched_switch does not
        // nest on one CPU.
        unsafe { (*histogram).record(wait_ns) };
    }
    // Time held back by throttling is the group's own quota, so only the
    // queued part names a neighbour, and waits behind the group's own
    // tasks name none (the agent would drop such pairs).
    if runner != cgroup && runner != 0 {
        record_neighbour(NeighbourKey { waiter: cgroup, runner }, wait_ns);
    }
}

#[inline(always)]
fn record_neighbour(key: NeighbourKey, wait_ns: u64) {
    if let Some(total) = RUNQ_NEIGHBOURS.get_ptr_mut(key) {
        // SAFETY: this CPU's copy of a per-CPU value; sched_switch does not
        // nest on one CPU.
        unsafe { *total += wait_ns };
    } else if RUNQ_NEIGHBOURS.insert(key, wait_ns, BPF_NOEXIST as u64).is_err() {
        count_loss(ProbeId::SchedSwitch, Loss::MapFull);
    }
}
