//! Classification scenarios: groups with workloads, and the class each
//! group must get, checked on `/metrics` and with `agent classify`.
//!
//! A scenario is data, so a new one is a few lines in
//! `tests/scenarios.rs`.

use std::{
    process::Command,
    thread,
    time::Duration,
};

use crate::{Agent, TestCgroup, Workload, binary};

/// What a group's classification must be.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    /// The primary class is exactly this.
    Primary(&'static str),
    /// The primary class is anything but this (the group is not mistaken
    /// for the scenario's subject).
    Not(&'static str),
}

/// One group of a scenario.
pub struct Group {
    pub name: &'static str,
    /// Arguments of the `workload` binary.
    pub workload: &'static [&'static str],
    /// CFS quota and period in microseconds, if limited.
    pub cpu_quota: Option<(u64, u64)>,
    pub expect: Expect,
}

impl Group {
    pub const fn new(name: &'static str, workload: &'static [&'static str], expect: Expect) -> Self {
        Self {
            name,
            workload,
            cpu_quota: None,
            expect,
        }
    }

    pub const fn with_quota(mut self, quota_us: u64, period_us: u64) -> Self {
        self.cpu_quota = Some((quota_us, period_us));
        self
    }
}

pub struct Scenario<'a> {
    pub name: &'static str,
    pub groups: &'a [Group],
    /// How long the agent watches before the checks; must cover its window
    /// (`Agent::start` uses 5 s) and the hysteresis (1 s).
    pub settle: Duration,
    /// Extra `agent run` arguments.
    pub agent_args: &'static [&'static str],
    /// A group that waits for CPU, and the neighbour that must be among
    /// the groups `classify` names as having run ahead of it. Other load on
    /// the machine (the root cgroup, say) may legitimately rank higher.
    pub neighbour: Option<(&'static str, &'static str)>,
}

impl Scenario<'_> {
    /// Runs the scenario and panics with every failed check listed.
    pub fn run(&self) {
        crate::require_root();
        let cgroups: Vec<TestCgroup> = self.groups.iter().map(make_cgroup).collect();
        let loads: Vec<Workload> = self
            .groups
            .iter()
            .zip(&cgroups)
            .map(|(group, cgroup)| Workload::start(cgroup, group.workload))
            .collect();
        let agent = Agent::start(self.agent_args);
        thread::sleep(self.settle);

        let scrape = agent.scrape();
        let mut failures = Vec::new();
        for ((group, cgroup), load) in self.groups.iter().zip(&cgroups).zip(&loads) {
            let primary = primary_class(&scrape, &cgroup.relative);
            let classified = classify(load.pid());
            check(group, "metrics", primary.as_deref(), &mut failures);
            check(group, "classify", classified["verdict"]["primary"].as_str(), &mut failures);
            if let Some((waiter, neighbour)) = self.neighbour
                && waiter == group.name
            {
                let named: Vec<&str> = classified["neighbours"]
                    .as_array()
                    .map(|list| list.iter().filter_map(|entry| entry["cgroup"].as_str()).collect())
                    .unwrap_or_default();
                let expected = cgroups[self.index_of(neighbour)].relative.as_str();
                if !named.contains(&expected) {
                    failures.push(format!("{}: classify named neighbours {named:?}, expected {expected} among them", group.name));
                }
            }
        }
        drop(agent);
        assert!(failures.is_empty(), "scenario {}:\n{}", self.name, failures.join("\n"));
    }

    fn index_of(&self, name: &str) -> usize {
        self.groups
            .iter()
            .position(|group| group.name == name)
            .unwrap_or_else(|| panic!("scenario {} has no group {name}", self.name))
    }
}

fn make_cgroup(group: &Group) -> TestCgroup {
    match group.cpu_quota {
        Some((quota, period)) => {
            let cgroup = TestCgroup::with_cpu_controller(group.name);
            cgroup.set_cpu_quota(quota, period);
            cgroup
        }
        None => TestCgroup::new(group.name),
    }
}

fn primary_class(scrape: &crate::Scrape, cgroup: &str) -> Option<String> {
    scrape
        .matching("chokepoint_bottleneck_primary", &[("cgroup", cgroup)])
        .find(|sample| sample.value == 1.0)
        .and_then(|sample| sample.labels.get("class").cloned())
}

fn classify(pid: u32) -> serde_json::Value {
    let output = Command::new(binary("agent"))
        .args(["classify", "--pid", &pid.to_string(), "--duration", "4s", "--output", "json"])
        .output()
        .expect("running agent classify");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "classify --pid {pid} printed no JSON ({error}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn check(group: &Group, source: &str, actual: Option<&str>, failures: &mut Vec<String>) {
    let actual = actual.unwrap_or("(none reported)");
    let ok = match group.expect {
        Expect::Primary(class) => actual == class,
        Expect::Not(class) => actual != class,
    };
    if !ok {
        failures.push(format!("{}: {source} says {actual}, expected {:?}", group.name, group.expect));
    }
}
