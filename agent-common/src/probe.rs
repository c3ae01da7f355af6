//! Self-accounting of the probes: events handled and events lost.

/// Index of each probe program in [`PROBE_STATS_MAP`].
///
/// Values are grouped by signal so families can be added without
/// renumbering: 0-7 scheduler and block I/O, 8-15 network.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeId {
    SchedSwitch = 0,
    SchedWakeup = 1,
    SchedWakeupNew = 2,
    BlockRqIssue = 3,
    BlockRqComplete = 4,
    DnsEgress = 8,
    DnsIngress = 9,
    InetSockSetState = 10,
}

/// Size of [`PROBE_STATS_MAP`]: one more than the largest [`ProbeId`]
/// value the ranges above allow.
pub const PROBE_COUNT: u32 = 16;

/// Name of the per-CPU array of [`ProbeStats`], indexed by [`ProbeId`].
pub const PROBE_STATS_MAP: &str = "PROBE_STATS";

/// Counters one probe program keeps about itself, one per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeStats {
    /// Times the program ran.
    pub events: u64,
    /// Events dropped because a map was full (the map's `max_entries`
    /// should be raised).
    pub lost_map_full: u64,
    /// Events dropped because a kernel read (`bpf_probe_read_kernel`)
    /// failed.
    pub lost_read_error: u64,
    /// Waits dropped because two threads whose ids share a thread slot
    /// waited at once (raise `--max-threads` when they pass 1% of
    /// `sched_switch` events).
    pub lost_slot_shared: u64,
}

#[cfg(feature = "user")]
// SAFETY: ProbeStats is repr(C) and made only of u64 fields.
unsafe impl aya::Pod for ProbeStats {}
