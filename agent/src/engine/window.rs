//! A sliding window of cumulative samples per cgroup, and the deltas
//! between its ends.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use agent_common::{
    histogram::{LatencyHistogram, SLOTS},
    wait_total::WaitTotal,
};

use super::{
    compact::StoredSample,
    network::{ConnectTotals, DnsTotals},
    throttle::ThrottleDelta,
};
use crate::cgroup::{CgroupId, cpu_stat::CpuStat};

/// Cumulative counters of one cgroup at one tick.
#[derive(Clone, Debug)]
pub struct Sample {
    pub at: Instant,
    pub runqueue: LatencyHistogram,
    /// Usage and CFS counters (see `CpuStat::read_dirs`).
    pub cpu: CpuStat,
    /// Run-queue wait of this group's tasks, in nanoseconds, per cgroup
    /// whose task ran on the CPU right before the waiting task got it.
    pub neighbours: Vec<(CgroupId, u64)>,
    pub throttle_delay: WaitTotal,
    pub iowait: WaitTotal,
    pub dns: DnsTotals,
    pub connect: ConnectTotals,
}

/// Change of one cgroup's counters between two samples.
#[derive(Clone, Debug)]
pub struct Delta {
    pub elapsed: Duration,
    pub runqueue: LatencyHistogram,
    /// CPU time used, in nanoseconds, when `cpu.stat` could be read at
    /// both ends.
    pub cpu_usage_ns: Option<u64>,
    /// Run-queue wait per cgroup that ran ahead, in nanoseconds, largest
    /// first; pairs without new waits are left out.
    pub neighbours: Vec<(CgroupId, u64)>,
    pub throttle: ThrottleDelta,
    pub iowait: WaitTotal,
    pub dns: DnsTotals,
    pub connect: ConnectTotals,
}

/// Samples covering at most `span`, oldest first, plus the latest one.
///
/// Kept samples are at least `span / KEPT_PER_SPAN` apart, so memory per
/// cgroup is bounded whatever the tick. The window's start then moves in
/// steps of that spacing. Samples are stored compactly (see
/// [`StoredSample`]) and rebuilt when read.
#[derive(Debug)]
pub struct Window {
    span: Duration,
    samples: VecDeque<StoredSample>,
    /// The latest sample when it was not kept, because it came too soon
    /// after the last kept one. Otherwise the latest is the last kept one.
    latest_unkept: Option<StoredSample>,
}

const KEPT_PER_SPAN: u32 = 16;

impl Window {
    pub fn new(span: Duration) -> Self {
        Self { span, samples: VecDeque::new(), latest_unkept: None }
    }

    /// Records a sample, keeps it when it is far enough from the previous
    /// kept one, and drops kept samples older than the span, keeping one
    /// at or beyond the span so the delta covers all of it.
    pub fn push(&mut self, sample: Sample) {
        let now = sample.at;
        let spacing = self.span / KEPT_PER_SPAN;
        let stored = StoredSample::new(sample);
        if self.samples.back().is_none_or(|kept| now.duration_since(kept.at) >= spacing) {
            self.samples.push_back(stored);
            self.latest_unkept = None;
        } else {
            self.latest_unkept = Some(stored);
        }
        // The loop keeps at least two samples, so the last kept one, which
        // may be the latest, stays.
        while self.samples.len() > 2
            && self.samples.get(1).is_some_and(|second| now.duration_since(second.at) >= self.span)
        {
            self.samples.pop_front();
        }
    }

    pub fn latest(&self) -> Option<Sample> {
        self.latest_stored().map(StoredSample::to_sample)
    }

    fn latest_stored(&self) -> Option<&StoredSample> {
        self.latest_unkept.as_ref().or(self.samples.back())
    }

    /// Delta between the oldest kept sample and the latest one, or `None`
    /// before two samples exist.
    pub fn delta(&self) -> Option<Delta> {
        let first = self.samples.front()?;
        let last = self.latest_stored()?;
        if last.at <= first.at {
            return None;
        }
        let (first, last) = (first.to_sample(), last.to_sample());
        Some(Delta {
            elapsed: last.at.duration_since(first.at),
            runqueue: histogram_delta(&last.runqueue, &first.runqueue),
            cpu_usage_ns: match (last.cpu.usage_ns, first.cpu.usage_ns) {
                (Some(last), Some(first)) => Some(last.saturating_sub(first)),
                _ => None,
            },
            neighbours: neighbours_delta(&last.neighbours, &first.neighbours),
            throttle: ThrottleDelta::between(&first.cpu, &last.cpu, last.throttle_delay.since(&first.throttle_delay)),
            iowait: last.iowait.since(&first.iowait),
            dns: last.dns.since(&first.dns),
            connect: last.connect.since(&first.connect),
        })
    }
}

fn neighbours_delta(later: &[(CgroupId, u64)], earlier: &[(CgroupId, u64)]) -> Vec<(CgroupId, u64)> {
    let mut delta: Vec<(CgroupId, u64)> = later
        .iter()
        .map(|&(runner, total)| {
            let before = earlier.iter().find(|(id, _)| *id == runner).map_or(0, |&(_, value)| value);
            (runner, total.saturating_sub(before))
        })
        .filter(|&(_, wait)| wait > 0)
        .collect();
    delta.sort_by_key(|&(_, wait)| std::cmp::Reverse(wait));
    delta
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
            cpu: CpuStat { usage_ns: Some(usage_ns), ..CpuStat::default() },
            neighbours: vec![(7, usage_ns), (9, 5)],
            throttle_delay: WaitTotal::ZERO,
            iowait: WaitTotal { count: usage_ns / 1_000_000, total_ns: usage_ns },
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
        assert_eq!(delta.neighbours, vec![(7, 10_000_000)]);
        assert_eq!(delta.iowait.total_ns, 10_000_000);
        assert_eq!(delta.iowait.count, 10);
    }

    #[test]
    fn memory_is_bounded_whatever_the_tick() {
        let start = Instant::now();
        let mut window = Window::new(Duration::from_secs(30));

        for tick in 0..3_000u64 {
            window.push(sample(start + Duration::from_millis(tick * 100), &[], tick));
        }

        assert!(window.samples.len() <= KEPT_PER_SPAN as usize + 2, "{}", window.samples.len());
        let delta = window.delta().unwrap();
        assert!(delta.elapsed >= Duration::from_secs(30), "{:?}", delta.elapsed);
        assert!(delta.elapsed <= Duration::from_secs(32), "{:?}", delta.elapsed);
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
