//! Classification scenarios: groups with workloads, and the class each
//! group must get, checked on `/metrics` and with `agent classify`.
//!
//! A scenario is data, so a new one is a few lines in
//! `tests/scenarios.rs`.

use std::{process::Command, thread, time::Duration};

use crate::{Agent, TestCgroup, Workload, binary, block::LoopDevice, netns::NetNs};

/// What a group's classification must be.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    /// The primary class is exactly this.
    Primary(&'static str),
    /// The primary class is anything but this (the group is not mistaken
    /// for the scenario's subject).
    Not(&'static str),
}

/// What runs in a group.
#[derive(Clone, Copy)]
pub enum Load {
    /// The `workload` binary with these arguments.
    Workload(&'static [&'static str]),
    /// A command built from the scenario's fixtures (a client of a test
    /// server, a writer to the test disk).
    Command(fn(&Fixtures) -> Command),
}

/// Things a scenario's groups share, made before the groups by the
/// scenario's `setup` and removed after them.
#[derive(Default)]
pub struct Fixtures {
    /// A network namespace with its own loopback, resolv.conf and servers.
    pub netns: Option<NetNs>,
    /// A loop device on a file, for slow-disk scenarios.
    pub disk: Option<LoopDevice>,
    /// Server processes, kept running until the scenario ends.
    pub servers: Vec<Workload>,
    /// The cgroup the servers run in, apart from every checked group.
    pub server_cgroup: Option<TestCgroup>,
}

/// One group of a scenario.
pub struct Group {
    pub name: &'static str,
    pub load: Load,
    /// CFS quota and period in microseconds, if limited.
    pub cpu_quota: Option<(u64, u64)>,
    /// Write limit on the scenario's disk, in bytes per second.
    pub write_bps: Option<u64>,
    pub expect: Expect,
}

impl Group {
    pub const fn new(name: &'static str, workload: &'static [&'static str], expect: Expect) -> Self {
        Self { name, load: Load::Workload(workload), cpu_quota: None, write_bps: None, expect }
    }

    pub const fn command(name: &'static str, command: fn(&Fixtures) -> Command, expect: Expect) -> Self {
        Self { name, load: Load::Command(command), cpu_quota: None, write_bps: None, expect }
    }

    pub const fn with_quota(mut self, quota_us: u64, period_us: u64) -> Self {
        self.cpu_quota = Some((quota_us, period_us));
        self
    }

    /// Limits the group's writes to the scenario's disk (blkio throttling).
    pub const fn with_write_limit(mut self, bytes_per_second: u64) -> Self {
        self.write_bps = Some(bytes_per_second);
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
    /// Makes the shared fixtures before the groups start.
    pub setup: Option<fn(&mut Fixtures)>,
    /// A group that waits for CPU, and the neighbour that must be among
    /// the groups `classify` names as having run ahead of it. Other load on
    /// the machine (the root cgroup, say) may legitimately rank higher.
    pub neighbour: Option<(&'static str, &'static str)>,
}

impl Scenario<'_> {
    /// Runs the scenario and panics with every failed check listed.
    pub fn run(&self) {
        crate::require_root();
        let mut fixtures = Fixtures::default();
        if let Some(setup) = self.setup {
            setup(&mut fixtures);
        }
        let cgroups: Vec<TestCgroup> = self.groups.iter().map(|group| make_cgroup(group, &fixtures)).collect();
        let loads: Vec<Workload> = self
            .groups
            .iter()
            .zip(&cgroups)
            .map(|(group, cgroup)| match group.load {
                Load::Workload(args) => Workload::start(cgroup, args),
                Load::Command(build) => Workload::spawn_in(cgroup, build(&fixtures)),
            })
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
                    failures.push(format!(
                        "{}: classify named neighbours {named:?}, expected {expected} among them",
                        group.name
                    ));
                }
            }
        }
        drop(agent);
        drop(loads);
        drop(cgroups);
        drop(fixtures);
        assert!(failures.is_empty(), "scenario {}:\n{}", self.name, failures.join("\n"));
    }

    fn index_of(&self, name: &str) -> usize {
        self.groups
            .iter()
            .position(|group| group.name == name)
            .unwrap_or_else(|| panic!("scenario {} has no group {name}", self.name))
    }
}

fn make_cgroup(group: &Group, fixtures: &Fixtures) -> TestCgroup {
    if let Some(bytes_per_second) = group.write_bps {
        let disk = fixtures.disk.as_ref().expect("a write limit needs a scenario disk (setup)");
        let cgroup = TestCgroup::with_blkio_controller(group.name);
        cgroup.set_write_bps(&disk.device, bytes_per_second);
        return cgroup;
    }
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
        panic!("classify --pid {pid} printed no JSON ({error}): {}", String::from_utf8_lossy(&output.stderr))
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
