//! Throttle delay: time a task spends runnable but held back because its
//! group used up its CFS bandwidth quota.

/// Name of the per-CPU hash map from cgroup id (u64) to
/// [`crate::wait_total::WaitTotal`] of throttle delays, attributed to the
/// cgroup of the task that was held back.
pub const THROTTLE_DELAY_MAP: &str = "THROTTLE_DELAY";

/// Name of the array of [`ThrottleSlot`], indexed like the I/O wait array
/// by thread id masked with `IOWAIT_SLOTS_MASK`.
pub const THROTTLE_STARTED_MAP: &str = "THROTTLE_STARTED";

/// A throttled task's CFS run queue and its throttled time when the task
/// was switched out, which separate the throttled part of its wait from
/// the run-queue wait after the unthrottle.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThrottleSlot {
    /// Thread id of the throttled task.
    pub tid: u32,
    /// Explicit padding.
    pub _padding: u32,
    /// The task's `struct cfs_rq *`.
    pub cfs_rq: u64,
    /// `cfs_rq.throttled_clock_self_time` when the task was switched out.
    pub throttled_ns: u64,
}

#[cfg(feature = "user")]
// SAFETY: repr(C), two u32 fields followed by two u64, no padding.
unsafe impl aya::Pod for ThrottleSlot {}

/// Bit set in a `RUNQ_ENQUEUED` timestamp when the task was switched out
/// because its group was throttled. Timestamps lose their lowest bit,
/// one nanosecond, to carry it.
pub const ENQUEUED_THROTTLED_BIT: u64 = 1;
