//! A count and a sum of waits, for signals that need no histogram.

/// Per-cgroup wait aggregate, one per CPU in a per-CPU map.
///
/// Written by the probes when a wait ends; read and summed over CPUs by
/// the agent. Both counters are cumulative since the map entry was made.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaitTotal {
    /// Number of waits recorded.
    pub count: u64,
    /// Sum of all waits, in nanoseconds.
    pub total_ns: u64,
}

impl WaitTotal {
    pub const ZERO: Self = Self { count: 0, total_ns: 0 };

    /// Records one wait of `ns` nanoseconds.
    #[inline(always)]
    pub fn record(&mut self, ns: u64) {
        self.count += 1;
        self.total_ns += ns;
    }

    /// Adds another aggregate (another CPU's share) to this one.
    pub fn add(&mut self, other: &Self) {
        self.count += other.count;
        self.total_ns += other.total_ns;
    }

    /// `self - earlier`, saturating so a recreated map entry yields zero
    /// instead of a wrapped value.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            count: self.count.saturating_sub(earlier.count),
            total_ns: self.total_ns.saturating_sub(earlier.total_ns),
        }
    }
}

#[cfg(feature = "user")]
// SAFETY: WaitTotal is repr(C) and made only of u64 fields.
unsafe impl aya::Pod for WaitTotal {}
