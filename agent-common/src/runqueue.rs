//! Run-queue latency: time a task spends runnable before it gets a CPU.

/// Name of the hash map from thread id to the time (`bpf_ktime_get_ns`) it
/// became runnable: at wakeup, or when it was switched out while still
/// runnable (preemption or yield).
pub const RUNQ_ENQUEUED_MAP: &str = "RUNQ_ENQUEUED";

/// Name of the per-CPU hash map from cgroup id (u64) to
/// [`crate::histogram::LatencyHistogram`] of run-queue waits, attributed to
/// the cgroup of the task that waited.
pub const RUNQ_LATENCY_MAP: &str = "RUNQ_LATENCY";

/// Name of the per-CPU hash map from [`NeighbourKey`] to nanoseconds: run-queue
/// wait of tasks of `waiter` that ended when they took the CPU over from a
/// task of `runner`. Summed over many waits, it tells which groups held the
/// CPUs while a group waited.
pub const RUNQ_NEIGHBOURS_MAP: &str = "RUNQ_NEIGHBOURS";

/// Key of [`RUNQ_NEIGHBOURS_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NeighbourKey {
    /// Cgroup id of the task that waited.
    pub waiter: u64,
    /// Cgroup id of the task that ran on the CPU right before it.
    pub runner: u64,
}

#[cfg(feature = "user")]
// SAFETY: NeighbourKey is repr(C) and made only of u64 fields.
unsafe impl aya::Pod for NeighbourKey {}
