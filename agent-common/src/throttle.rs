//! Throttle delay: time a task spends runnable but held back because its
//! group used up its CFS bandwidth quota.

/// Name of the per-CPU hash map from cgroup id (u64) to
/// [`crate::wait_total::WaitTotal`] of throttle delays, attributed to the
/// cgroup of the task that was held back.
pub const THROTTLE_DELAY_MAP: &str = "THROTTLE_DELAY";
