//! Block-I/O wait: time a task spends in uninterruptible sleep with
//! `in_iowait` set (`io_schedule()`), until it runs again.

/// Name of the array of [`IoWaitSlot`], indexed by thread id masked with
/// [`IOWAIT_SLOTS_MASK_SYMBOL`]. An array rather than a hash map keeps the
/// lookup that every `sched_switch` makes for the task switched in cheap.
pub const IOWAIT_STARTED_MAP: &str = "IOWAIT_STARTED";

/// Name of the global `u32` in the probe object that holds the number of
/// entries of [`IOWAIT_STARTED_MAP`] minus one; the agent sizes the array
/// to a power of two.
pub const IOWAIT_SLOTS_MASK_SYMBOL: &str = "IOWAIT_SLOTS_MASK";

/// Name of the per-CPU hash map from cgroup id (u64) to
/// [`crate::wait_total::WaitTotal`] of I/O waits, attributed to the
/// cgroup of the task that waited.
pub const IOWAIT_TOTAL_MAP: &str = "IOWAIT_TOTAL";

/// An I/O wait in progress.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoWaitSlot {
    /// Thread id of the waiting task.
    pub tid: u32,
    /// Explicit padding.
    pub _padding: u32,
    /// `bpf_ktime_get_ns` when the task was switched out; 0 when the slot
    /// is free.
    pub started_ns: u64,
}

#[cfg(feature = "user")]
// SAFETY: repr(C), two u32 fields followed by a u64, no padding.
unsafe impl aya::Pod for IoWaitSlot {}
