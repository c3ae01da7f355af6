//! A sliding window of cumulative samples per cgroup, and the deltas
//! between its ends.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use agent_common::histogram::{LatencyHistogram, SLOTS};

use super::network::{ConnectTotals, DnsTotals};
use crate::cgroup::cpu_stat::CpuStat;

/// Cumulative counters of one cgroup at one tick.
#[derive(Clone, Debug)]
pub struct Sample {
    pub at: Instant,
    pub runqueue: LatencyHistogram,
    pub cpu: CpuStat,
    pub dns: DnsTotals,
    pub connect: ConnectTotals,
}

/// What happened in a cgroup between two samples.
#[derive(Clone, Debug)]
pub struct Delta {
    pub elapsed: Duration,
    pub runqueue: LatencyHistogram,
    /// CPU time used, in nanoseconds, when `cpu.stat` could be read at
    /// both ends.
    pub cpu_usage_ns: Option<u64>,
    pub dns: DnsTotals,
    pub connect: ConnectTotals,
}

/// Samples covering at most `span`, oldest first.
#[derive(Debug)]
pub struct Window {
    span: Duration,
    samples: VecDeque<Sample>,
}

impl Window {
    pub fn new(span: Duration) -> Self {
        Self {
            span,
            samples: VecDeque::new(),
        }
    }

    /// Appends a sample and drops those older than the span, keeping one
    /// sample at or beyond the span so the delta covers all of it.
    pub fn push(&mut self, sample: Sample) {
        let at = sample.at;
        self.samples.push_back(sample);
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|second| at.duration_since(second.at) >= self.span)
        {
            self.samples.pop_front();
        }
    }

    pub fn latest(&self) -> Option<&Sample> {
        self.samples.back()
    }

    /// Delta between the oldest and the newest sample, or `None` with
    /// fewer than two samples.
    pub fn delta(&self) -> Option<Delta> {
        let first = self.samples.front()?;
        let last = self.samples.back()?;
        if self.samples.len() < 2 {
            return None;
        }
        Some(Delta {
            elapsed: last.at.duration_since(first.at),
            runqueue: histogram_delta(&last.runqueue, &first.runqueue),
            cpu_usage_ns: match (last.cpu.usage_ns, first.cpu.usage_ns) {
                (Some(last), Some(first)) => Some(last.saturating_sub(first)),
                _ => None,
            },
            dns: last.dns.since(&first.dns),
            connect: last.connect.since(&first.connect),
        })
    }
}

/// `later - earlier`, slot by slot. Counters only grow while a map entry
/// lives; saturating keeps a recreated entry from producing garbage.
pub fn histogram_delta(later: &LatencyHistogram, earlier: &LatencyHistogram) -> LatencyHistogram {
    let mut delta = LatencyHistogram::ZERO;
    delta.count = later.count.saturating_sub(earlier.count);
    delta.total_ns = later.total_ns.saturating_sub(earlier.total_ns);
    for slot in 0..SLOTS {
        delta.slots[slot] = later.slots[slot].saturating_sub(earlier.slots[slot]);
    }
    delta
}

/// Estimates the `quantile` (0..=1) of a log2 histogram, in nanoseconds,
/// interpolating linearly inside the slot. `None` when it is empty.
pub fn quantile_ns(histogram: &LatencyHistogram, quantile: f64) -> Option<f64> {
    let total: u64 = histogram.slots.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = quantile.clamp(0.0, 1.0) * total as f64;
    let mut seen = 0u64;
    for (slot, &count) in histogram.slots.iter().enumerate() {
        if count == 0 {
            continue;
        }
        if (seen + count) as f64 >= rank {
            let lower = if slot == 0 { 0.0 } else { (1u64 << slot) as f64 };
            let upper = (1u64 << (slot + 1)) as f64;
            let within = ((rank - seen as f64) / count as f64).clamp(0.0, 1.0);
            return Some(lower + (upper - lower) * within);
        }
        seen += count;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Instant, waits: &[u64], usage_ns: u64) -> Sample {
        let mut runqueue = LatencyHistogram::ZERO;
        for &wait in waits {
            runqueue.record(wait);
        }
        Sample {
            at,
            runqueue,
            cpu: CpuStat {
                usage_ns: Some(usage_ns),
                ..CpuStat::default()
            },
            dns: DnsTotals::default(),
            connect: ConnectTotals::default(),
        }
    }

    #[test]
    fn delta_covers_the_span() {
        let start = Instant::now();
        let mut window = Window::new(Duration::from_secs(10));

        for second in 0..30u64 {
            let waits: Vec<u64> = (0..second).map(|_| 1_000).collect();
            window.push(sample(start + Duration::from_secs(second), &waits, second * 1_000_000));
        }
        let delta = window.delta().unwrap();

        assert_eq!(delta.elapsed, Duration::from_secs(10));
        assert_eq!(delta.runqueue.count, 29 - 19);
        assert_eq!(delta.runqueue.total_ns, 10 * 1_000);
        assert_eq!(delta.cpu_usage_ns, Some(10_000_000));
    }

    #[test]
    fn delta_needs_two_samples() {
        let mut window = Window::new(Duration::from_secs(10));
        assert!(window.delta().is_none());

        window.push(sample(Instant::now(), &[], 0));

        assert!(window.delta().is_none());
    }

    #[test]
    fn quantiles_of_log2_histogram() {
        let mut histogram = LatencyHistogram::ZERO;
        for _ in 0..99 {
            histogram.record(1_500); // slot 10: [1024, 2048)
        }
        histogram.record(3_000_000); // slot 21

        let p50 = quantile_ns(&histogram, 0.5).unwrap();
        let p100 = quantile_ns(&histogram, 1.0).unwrap();

        assert!((1024.0..2048.0).contains(&p50), "p50 {p50}");
        assert!((2_097_152.0..=4_194_304.0).contains(&p100), "p100 {p100}");
        assert_eq!(quantile_ns(&LatencyHistogram::ZERO, 0.5), None);
    }
}
