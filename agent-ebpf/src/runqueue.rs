//! Run-queue latency: how long each task waits runnable before it runs.
//!
//! A task becomes runnable at wakeup (`sched_wakeup`, `sched_wakeup_new`)
//! or when it is switched out while still runnable (preempted or yielded,
//! seen in `sched_switch`). Its wait ends when `sched_switch` switches it
//! in. The wait is counted for the cgroup of the task that waited, read
//! from that task's own `task_struct`, never from whichever task is current
//! when the event fires.

use agent_common::{histogram::LatencyHistogram, probe::ProbeId, runqueue::NeighbourKey};
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{map, raw_tracepoint},
    maps::{HashMap, PerCpuArray, PerCpuHashMap},
    programs::RawTracePointContext,
};

use crate::{
    per_cpu,
    iowait,
    stats::{Loss, count_event, count_loss},
    task::{Task, current_cgroup_id},
    throttle,
};

/// Default sizes; the agent overrides both from its configuration.
const MAX_THREADS: u32 = 32_768;
const MAX_CGROUPS: u32 = 4_096;

#[map]
static RUNQ_ENQUEUED: HashMap<u32, u64> = HashMap::with_max_entries(MAX_THREADS, 0);

#[map]
static RUNQ_LATENCY: PerCpuHashMap<u64, LatencyHistogram> =
    PerCpuHashMap::with_max_entries(MAX_CGROUPS, 0);

/// [`PendingWait::parts`] bits.
const PART_QUEUED: u32 = 1;
const PART_THROTTLED: u32 = 2;
const PART_IOWAIT: u32 = 4;

/// The waits that ended when the task now on this CPU was switched in,
/// recorded when it leaves the CPU (see `record_pending`).
#[repr(C)]
#[derive(Clone, Copy)]
struct PendingWait {
    tid: u32,
    /// Bit set of the waits below that are present (`PART_*` bits).
    parts: u32,
    queued_ns: u64,
    throttled_ns: u64,
    iowait_ns: u64,
    /// Cgroup of the task that ran on this CPU before it.
    runner: u64,
}

#[map]
static PENDING_WAIT: PerCpuArray<PendingWait> = PerCpuArray::with_max_entries(1, 0);

#[map]
static RUNQ_NEIGHBOURS: PerCpuHashMap<NeighbourKey, u64> =
    PerCpuHashMap::with_max_entries(MAX_CGROUPS * 4, 0);

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
    let task = Task(ctx.arg::<*const u8>(0));
    match task.tid() {
        // SAFETY: a helper call without arguments or side effects.
        Ok(tid) => mark_enqueued(probe, tid, throttle::enqueued_stamp(unsafe { bpf_ktime_get_ns() }, false)),
        Err(_) => count_loss(probe, Loss::ReadError),
    }
    0
}

/// `sched_switch(bool preempt, struct task_struct *prev,
/// struct task_struct *next, unsigned int prev_state)`.
///
/// Only the first three arguments are used, so this also works on kernels
/// before 5.18, which did not pass `prev_state`. Besides run-queue waits it
/// measures throttle delay (`throttle`) and I/O wait (`iowait`), so the
/// hook runs one program and reads each task once.
#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn sched_switch(ctx: RawTracePointContext) -> i32 {
    const PROBE: ProbeId = ProbeId::SchedSwitch;
    count_event(PROBE);
    // SAFETY: a helper call without arguments or side effects.
    let now = unsafe { bpf_ktime_get_ns() };
    let prev = Task(ctx.arg::<*const u8>(1));
    let next = Task(ctx.arg::<*const u8>(2));

    // `prev` is still the current task here (the tracepoint fires before
    // the context switch), so its thread id comes from a helper rather
    // than a kernel read. The low 32 bits are the thread id.
    let prev_tid = bpf_get_current_pid_tgid() as u32;
    match prev.state() {
        Ok(0) if prev_tid != 0 => mark_enqueued(PROBE, prev_tid, throttle::preempted_stamp(PROBE, prev, prev_tid, now)),
        Ok(state) if prev_tid != 0 => iowait::on_sleep(PROBE, prev, prev_tid, state, now),
        Ok(_) => {}
        Err(_) => count_loss(PROBE, Loss::ReadError),
    }

    // The cgroup of `prev`, the current task: of the task whose pending
    // waits are recorded now, and of the runner ahead of `next`.
    let prev_cgroup = current_cgroup_id();
    match prev_cgroup {
        Ok(cgroup) => record_pending(prev_tid, cgroup),
        Err(_) => count_loss(PROBE, Loss::ReadError),
    }

    if finish_wait(next, now, prev_cgroup).is_err() {
        count_loss(PROBE, Loss::ReadError);
    }
    0
}

#[inline(always)]
fn mark_enqueued(probe: ProbeId, tid: u32, stamp: u64) {
    if RUNQ_ENQUEUED.insert(tid, stamp, 0).is_err() {
        count_loss(probe, Loss::MapFull);
    }
}

/// Ends the waits of `next` that were recorded (run queue or throttle,
/// and I/O) and counts them.
#[inline(always)]
fn finish_wait(next: Task, now: u64, runner: Result<u64, i32>) -> Result<(), i32> {
    let Some(pending) = PENDING_WAIT.get_ptr_mut(0) else { return Ok(()) };
    // SAFETY: this CPU's slot of a per-CPU array; sched_switch does not
    // nest on one CPU.
    let pending = unsafe { &mut *pending };
    // Whatever happens below, the slot now describes `next` alone.
    pending.parts = 0;
    let tid = next.tid()?;
    pending.tid = tid;
    if tid == 0 {
        return Ok(()); // the idle task never waits
    }
    // SAFETY: the value is copied out before the entry is removed.
    let enqueued = unsafe { RUNQ_ENQUEUED.get(tid) }.copied();
    if enqueued.is_some() {
        let _ = RUNQ_ENQUEUED.remove(tid);
    }
    if let Some(stamp) = enqueued {
        let (enqueued_at, throttled) = throttle::decode_stamp(stamp);
        let wait = now.saturating_sub(enqueued_at);
        let throttled_ns = if throttled { throttle::throttled_part(tid, wait) } else { 0 };
        if throttled {
            pending.parts |= PART_THROTTLED;
            pending.throttled_ns = throttled_ns;
        }
        let queued = wait.saturating_sub(throttled_ns);
        if queued > 0 || !throttled {
            pending.parts |= PART_QUEUED;
            pending.queued_ns = queued;
        }
    }
    if let Some(started) = iowait::take_started(tid) {
        pending.parts |= PART_IOWAIT;
        pending.iowait_ns = now.saturating_sub(started);
    }
    // sched_switch runs before the context switch, so the current task is
    // `prev`: the task that held this CPU until `next` got it.
    pending.runner = runner?;
    Ok(())
}

/// Records the waits that ended when the task now leaving the CPU was
/// switched in. That task is the current one, so `cgroup` came from a
/// helper, not from four reads of its `task_struct`. In exchange, a wait
/// is counted when its task next leaves the CPU, not when it ends.
#[inline(always)]
fn record_pending(prev_tid: u32, cgroup: u64) {
    let Some(pending) = PENDING_WAIT.get_ptr_mut(0) else { return };
    // SAFETY: as in `finish_wait`.
    let pending = unsafe { &mut *pending };
    if pending.parts == 0 || pending.tid != prev_tid {
        return;
    }
    if pending.parts & PART_THROTTLED != 0 {
        throttle::record(ProbeId::SchedSwitch, cgroup, pending.throttled_ns);
    }
    if pending.parts & PART_QUEUED != 0 {
        record_wait(cgroup, pending.queued_ns);
        // Time held back by throttling is the group's own quota, so only
        // the queued part names a neighbour, and waits behind the group's
        // own tasks name none (the agent would drop such pairs).
        if pending.runner != cgroup {
            record_neighbour(
                NeighbourKey {
                    waiter: cgroup,
                    runner: pending.runner,
                },
                pending.queued_ns,
            );
        }
    }
    if pending.parts & PART_IOWAIT != 0 {
        iowait::record(ProbeId::SchedSwitch, cgroup, pending.iowait_ns);
    }
    pending.parts = 0;
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

#[inline(always)]
fn record_wait(cgroup: u64, wait_ns: u64) {
    let Some(histogram) = per_cpu::entry(&RUNQ_LATENCY, &cgroup, &LatencyHistogram::ZERO, ProbeId::SchedSwitch) else {
        return;
    };
    // SAFETY: this CPU's copy of a per-CPU value; sched_switch does not nest
    // on one CPU.
    unsafe { (*histogram).record(wait_ns) };
}
