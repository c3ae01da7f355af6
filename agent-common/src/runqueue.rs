//! Run-queue latency: time a task spends runnable before it gets a CPU.

/// Name of the hash map from thread id to the time (`bpf_ktime_get_ns`) it
/// became runnable: at wakeup, or when it was switched out while still
/// runnable (preemption or yield).
pub const RUNQ_ENQUEUED_MAP: &str = "RUNQ_ENQUEUED";

/// Name of the per-CPU hash map from cgroup id (u64) to
/// [`crate::histogram::LatencyHistogram`] of run-queue waits, attributed to
/// the cgroup of the task that waited.
pub const RUNQ_LATENCY_MAP: &str = "RUNQ_LATENCY";
