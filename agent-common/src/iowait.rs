//! Block-I/O wait: time a task spends in uninterruptible sleep with
//! `in_iowait` set (`io_schedule()`), until it runs again.

/// Name of the per-CPU hash map from cgroup id (u64) to
/// [`crate::wait_total::WaitTotal`] of I/O waits, attributed to the
/// cgroup of the task that waited.
pub const IOWAIT_TOTAL_MAP: &str = "IOWAIT_TOTAL";
