//! Log2 latency histogram shared by every latency signal.

/// Number of log2 slots. Slot `i` counts values in `[2^i, 2^(i+1))`
/// nanoseconds, and the last slot also takes everything above, so the
/// histogram covers up to 2^40 ns (about 18 minutes) without overflow.
pub const SLOTS: usize = 40;

/// Latency aggregate of one cgroup (or cgroup and device, or destination):
/// one per CPU in the per-CPU maps, one for all CPUs in the shared ones.
///
/// Written by the probes on each completed wait; read and summed over CPUs
/// by the agent. All counters are cumulative since the map entry was made.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Number of waits recorded.
    pub count: u64,
    /// Sum of all waits, in nanoseconds.
    pub total_ns: u64,
    /// Wait counts per log2 slot (see [`SLOTS`]).
    pub slots: [u64; SLOTS],
}

impl LatencyHistogram {
    pub const ZERO: Self = Self { count: 0, total_ns: 0, slots: [0; SLOTS] };

    /// Adds `other`'s counts to these, slot by slot: for summing the
    /// per-CPU copies of a map value.
    pub fn add(&mut self, other: &Self) {
        self.count += other.count;
        self.total_ns += other.total_ns;
        for (sum, count) in self.slots.iter_mut().zip(other.slots.iter()) {
            *sum += count;
        }
    }

    /// Records one wait of `ns` nanoseconds.
    #[inline(always)]
    pub fn record(&mut self, ns: u64) {
        self.count += 1;
        self.total_ns += ns;
        let slot = slot_of(ns);
        // The bound check keeps the verifier satisfied; slot_of never
        // returns more than SLOTS - 1.
        if let Some(counter) = self.slots.get_mut(slot) {
            *counter += 1;
        }
    }
}

/// Returns the slot for a value: floor(log2(ns)), capped at `SLOTS - 1`.
///
/// Written as a fixed sequence of compare-and-shift steps rather than
/// `leading_zeros`, because the BPF backend has no count-leading-zeros
/// instruction and this form keeps the probe's instruction count small
/// and bounded.
#[inline(always)]
pub fn slot_of(ns: u64) -> usize {
    let mut value = ns;
    let mut slot = 0usize;
    let mut shift = 32u32;
    while shift > 0 {
        if value >= (1u64 << shift) {
            value >>= shift;
            slot += shift as usize;
        }
        shift /= 2;
    }
    if slot >= SLOTS { SLOTS - 1 } else { slot }
}

/// Upper bound, in nanoseconds, of the values counted in `slot`.
pub const fn slot_upper_bound_ns(slot: usize) -> u64 {
    1u64 << (slot + 1)
}

#[cfg(feature = "user")]
// SAFETY: LatencyHistogram is repr(C), made only of u64 fields, and has no
// padding, so every byte pattern is a valid value.
unsafe impl aya::Pod for LatencyHistogram {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_of_powers_of_two() {
        assert_eq!(slot_of(0), 0);
        assert_eq!(slot_of(1), 0);
        assert_eq!(slot_of(2), 1);
        assert_eq!(slot_of(3), 1);
        assert_eq!(slot_of(1024), 10);
        assert_eq!(slot_of(1_000_000), 19);
        assert_eq!(slot_of((1 << 39) + 5), 39);
    }

    #[test]
    fn slot_of_caps_at_last_slot() {
        assert_eq!(slot_of(1 << 45), SLOTS - 1);
        assert_eq!(slot_of(u64::MAX), SLOTS - 1);
    }

    #[test]
    fn slot_of_matches_leading_zeros() {
        for shift in 0..64 {
            for delta in [0u64, 1, 7] {
                let value = (1u64 << shift).saturating_add(delta);
                let expected = (63 - value.leading_zeros() as usize).min(SLOTS - 1);
                assert_eq!(slot_of(value), expected, "value {value}");
            }
        }
    }

    #[test]
    fn record_counts_and_sums() {
        let mut histogram = LatencyHistogram::ZERO;

        histogram.record(1500);
        histogram.record(3000);

        assert_eq!(histogram.count, 2);
        assert_eq!(histogram.total_ns, 4500);
        assert_eq!(histogram.slots[10], 1);
        assert_eq!(histogram.slots[11], 1);
    }
}
