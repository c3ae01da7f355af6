//! The CFS throttling and block-I/O parts of the `agent classify` report.

use std::fmt::Write as _;

use serde::Serialize;

use super::format_seconds;
use crate::{
    classifier::Evidence,
    engine::{iowait::IoWaitEvidence, throttle::ThrottleEvidence},
};

#[derive(Debug, Serialize)]
pub struct ThrottleReport {
    #[serde(flatten)]
    pub evidence: ThrottleEvidence,
    /// Share of the group's runnable time held back by throttling:
    /// `delay / (delay + run-queue wait + CPU used)`.
    pub delay_share_of_runnable_time: f64,
}

#[derive(Debug, Serialize)]
pub struct IoWaitReport {
    #[serde(flatten)]
    pub evidence: IoWaitEvidence,
    /// `I/O wait / (I/O wait + throttle delay + run-queue wait + CPU used)`.
    pub share_of_busy_time: f64,
}

impl ThrottleReport {
    pub fn new(evidence: &Evidence) -> Self {
        Self { evidence: evidence.throttle, delay_share_of_runnable_time: evidence.throttle_delay_share() }
    }

    /// Appends the evidence lines; writing to a String cannot fail.
    pub fn write_text(&self, text: &mut String) {
        let throttle = &self.evidence;
        let Some(period) = throttle.cfs_period_seconds else {
            let _ = writeln!(text, "  CFS throttling  none: no CPU limit");
            return;
        };
        let ratio = throttle.throttled_ratio.map_or_else(|| "n/a".to_owned(), |ratio| format!("{:.0}%", ratio * 100.0));
        let wall_clock = throttle
            .throttled_wall_clock_ratio
            .map_or_else(|| "n/a".to_owned(), |ratio| format!("{:.0}%", ratio * 100.0));
        let _ = writeln!(
            text,
            "  CFS throttling  {} of {} periods in which it ran were throttled ({ratio}); {wall_clock} of all {} periods",
            throttle.throttled_periods.unwrap_or(0),
            throttle.periods.unwrap_or(0),
            format_seconds(Some(period)),
        );
        let _ = writeln!(
            text,
            "                  throttled time {} summed over CPUs; tasks held back {} in total ({:.0}% of their runnable time)",
            format_seconds(throttle.throttled_seconds),
            format_seconds(Some(throttle.delay_seconds)),
            self.delay_share_of_runnable_time * 100.0,
        );
    }
}

impl IoWaitReport {
    pub fn new(evidence: &Evidence) -> Self {
        Self { evidence: evidence.iowait, share_of_busy_time: evidence.iowait_share() }
    }

    /// Appends the evidence line; writing to a String cannot fail.
    pub fn write_text(&self, text: &mut String) {
        let _ = writeln!(
            text,
            "  block-I/O wait  {} in total over {} waits: {:.0}% of the time its tasks were not idle",
            format_seconds(Some(self.evidence.wait_seconds)),
            self.evidence.waits,
            self.share_of_busy_time * 100.0,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_lines_name_both_ratios() {
        let mut evidence = Evidence { window_seconds: 10.0, cpu_used_cores: Some(0.06), ..Evidence::default() };
        evidence.throttle = ThrottleEvidence {
            cfs_period_seconds: Some(0.1),
            periods: Some(60),
            throttled_periods: Some(40),
            throttled_ratio: Some(40.0 / 60.0),
            throttled_wall_clock_ratio: Some(0.4),
            throttled_seconds: Some(3.6),
            delay_seconds: 3.6,
            delays: 40,
        };
        let mut text = String::new();

        ThrottleReport::new(&evidence).write_text(&mut text);

        assert!(
            text.contains("40 of 60 periods in which it ran were throttled (67%); 40% of all 100.0 ms periods"),
            "{text}"
        );
        assert!(text.contains("throttled time 3.60 s summed over CPUs"), "{text}");
    }

    #[test]
    fn no_limit_line() {
        let mut text = String::new();

        ThrottleReport::new(&Evidence::default()).write_text(&mut text);

        assert_eq!(text, "  CFS throttling  none: no CPU limit\n");
    }
}
