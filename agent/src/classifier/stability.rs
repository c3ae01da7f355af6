//! Hysteresis for `agent run`: a class is raised only after it has held
//! for a minimum duration, and cleared only after it has not held for as
//! long, so one noisy window neither raises nor clears it.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use super::{Class, Finding, Verdict};

#[derive(Clone, Copy, Debug)]
struct ClassState {
    active: bool,
    /// Since when the raw verdict has disagreed with `active`.
    disagreeing_since: Option<Instant>,
    /// The latest cost share while the class held.
    cost_share: f64,
}

/// Per-group memory of which classes are raised.
#[derive(Debug)]
pub struct Stability {
    min_duration: Duration,
    classes: HashMap<Class, ClassState>,
}

impl Stability {
    pub fn new(min_duration: Duration) -> Self {
        Self { min_duration, classes: HashMap::new() }
    }

    /// Feeds the raw verdict of one evaluation and returns the stable one.
    pub fn update(&mut self, raw: &Verdict, now: Instant) -> Verdict {
        for class in Class::ALL.into_iter().filter(|class| *class != Class::None) {
            let finding = raw.findings.iter().find(|finding| finding.class == class);
            let state = self.classes.entry(class).or_insert(ClassState {
                active: false,
                disagreeing_since: None,
                cost_share: 0.0,
            });
            if let Some(finding) = finding {
                state.cost_share = finding.cost_share;
            }
            let holds = finding.is_some();
            if holds == state.active {
                state.disagreeing_since = None;
                continue;
            }
            let since = *state.disagreeing_since.get_or_insert(now);
            if now.duration_since(since) >= self.min_duration {
                state.active = holds;
                state.disagreeing_since = None;
            }
        }
        self.stable_verdict()
    }

    fn stable_verdict(&self) -> Verdict {
        let mut findings: Vec<Finding> = self
            .classes
            .iter()
            .filter(|(_, state)| state.active)
            .map(|(&class, state)| Finding { class, cost_share: state.cost_share })
            .collect();
        findings.sort_by(|a, b| b.cost_share.total_cmp(&a.cost_share).then(a.class.cmp(&b.class)));
        Verdict { primary: findings.first().map_or(Class::None, |finding| finding.class), findings }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(classes: &[(Class, f64)]) -> Verdict {
        let findings: Vec<Finding> = classes.iter().map(|&(class, cost_share)| Finding { class, cost_share }).collect();
        Verdict { primary: findings.first().map_or(Class::None, |finding| finding.class), findings }
    }

    #[test]
    fn single_noisy_window_does_not_raise() {
        let start = Instant::now();
        let mut stability = Stability::new(Duration::from_secs(10));

        let first = stability.update(&verdict(&[(Class::CpuContention, 0.5)]), start);
        let second = stability.update(&verdict(&[]), start + Duration::from_secs(1));

        assert_eq!(first.primary, Class::None);
        assert_eq!(second.primary, Class::None);
    }

    #[test]
    fn sustained_class_survives_a_gap() {
        let start = Instant::now();
        let mut stability = Stability::new(Duration::from_secs(10));
        let contention = verdict(&[(Class::CpuContention, 0.5)]);

        for second in 0..=10 {
            stability.update(&contention, start + Duration::from_secs(second));
        }
        let raised = stability.update(&contention, start + Duration::from_secs(11));
        let during_gap = stability.update(&verdict(&[]), start + Duration::from_secs(12));
        let after_gap = stability.update(&verdict(&[]), start + Duration::from_secs(23));

        assert_eq!(raised.primary, Class::CpuContention);
        assert_eq!(during_gap.primary, Class::CpuContention);
        assert_eq!(after_gap.primary, Class::None);
    }

    #[test]
    fn zero_duration_follows_raw_verdict() {
        let now = Instant::now();
        let mut stability = Stability::new(Duration::ZERO);

        let stable = stability.update(&verdict(&[(Class::CpuSaturated, 0.6), (Class::CpuContention, 0.2)]), now);

        assert_eq!(stable.primary, Class::CpuSaturated);
        assert_eq!(stable.findings.len(), 2);
    }
}
