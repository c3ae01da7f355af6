//! Run-queue latency: time a task spends runnable before it gets a CPU.

/// Name of the array of [`ThreadWaits`]: the waits in progress of each
/// thread, at index `tid & mask` (see [`THREAD_SLOTS_MASK_SYMBOL`]). An
/// array rather than a hash map, because its lookups are inlined by the
/// verifier and every context switch and wakeup makes one.
pub const THREAD_WAITS_MAP: &str = "THREAD_WAITS";

/// Name of the global `u32` in the probe object that contains the number
/// of entries of [`THREAD_WAITS_MAP`] minus one. The agent sizes the array
/// to a power of two.
pub const THREAD_SLOTS_MASK_SYMBOL: &str = "THREAD_SLOTS_MASK";

/// [`ThreadWaits::waits`] bit: runnable since `queued_since_ns` (woken, or
/// switched out while still runnable).
pub const WAIT_QUEUED: u32 = 1;
/// [`ThreadWaits::waits`] bit: switched out runnable while its group was
/// throttled. `cfs_rq` and `cfs_rq_throttled_ns` are set when the kernel
/// has `cfs_rq.throttled_clock_self_time` (Linux 6.8 and later), else
/// `cfs_rq` is 0.
pub const WAIT_THROTTLED: u32 = 2;
/// [`ThreadWaits::waits`] bit: asleep in I/O wait since `iowait_since_ns`.
pub const WAIT_IOWAIT: u32 = 4;

/// The waits in progress of one thread, written by the scheduler probes.
///
/// A run-queue wait ends when the thread is switched in, an I/O wait at
/// its wakeup (the `queued_since_ns` stamp that follows it). Both are
/// counted when the thread next leaves the CPU. There its cgroup comes from a helper instead of four
/// reads of its `task_struct` (on cgroup v2; the v1 `cpu` cgroup still
/// takes the reads).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadWaits {
    /// Thread id that owns the slot; threads whose ids share an index take
    /// the slot over from each other.
    pub tid: u32,
    /// `WAIT_*` bits of the waits in progress.
    pub waits: u32,
    /// `bpf_ktime_get_ns` when the thread became runnable.
    pub queued_since_ns: u64,
    /// `bpf_ktime_get_ns` when the thread went to sleep in I/O wait.
    pub iowait_since_ns: u64,
    /// The throttled thread's `struct cfs_rq *`.
    pub cfs_rq: u64,
    /// `cfs_rq.throttled_clock_self_time` when the thread was switched
    /// out throttled.
    pub cfs_rq_throttled_ns: u64,
}

impl ThreadWaits {
    pub const EMPTY: Self =
        Self { tid: 0, waits: 0, queued_since_ns: 0, iowait_since_ns: 0, cfs_rq: 0, cfs_rq_throttled_ns: 0 };
}

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
// SAFETY: repr(C), two u32 fields followed by four u64, no padding.
unsafe impl aya::Pod for ThreadWaits {}

#[cfg(feature = "user")]
// SAFETY: NeighbourKey is repr(C) and made only of u64 fields.
unsafe impl aya::Pod for NeighbourKey {}
