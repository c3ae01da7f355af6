//! Block-I/O wait of one cgroup over the window.

use serde::Serialize;

/// Time the group's tasks slept in I/O wait (`io_schedule()`) until they
/// were woken, summed over tasks, from the probes. It also covers I/O held
/// back before it reaches the device, for example by a blkio or `io.max`
/// limit, which the device latency does not show.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct IoWaitEvidence {
    pub wait_seconds: f64,
    /// Number of I/O waits.
    pub waits: u64,
}
