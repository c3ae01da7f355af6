//! CFS throttling, end to end: workloads in cgroups with a CFS quota, the
//! agent's counters against the kernel's `cpu.stat` over the same window,
//! and the probes' throttle delay against the kernel's throttled time.
//!
//! The window is made identical on both sides by stopping the workload
//! (SIGSTOP) at its ends: a stopped group starts no new CFS period, so
//! `cpu.stat` stays unchanged while the agent and the test read it.

use std::{
    thread,
    time::{Duration, Instant},
};

use integration_tests::{Agent, Scrape, TestCgroup, Workload, kernel, require_root};

const PERIODS: &str = "chokepoint_cpu_cfs_periods_total";
const THROTTLED_PERIODS: &str = "chokepoint_cpu_cfs_throttled_periods_total";
const THROTTLED_SECONDS: &str = "chokepoint_cpu_cfs_throttled_seconds_total";
const THROTTLE_DELAY: &str = "chokepoint_cpu_throttle_delay_seconds_total";
const THROTTLED_RATIO: &str = "chokepoint_cpu_throttled_ratio";
const RUNQUEUE_WAIT: &str = "chokepoint_runqueue_wait_seconds_total";
const CPU_USAGE: &str = "chokepoint_cpu_usage_seconds_total";
const LIMIT: &str = "chokepoint_cpu_limit_cores";
const PERIOD: &str = "chokepoint_cpu_cfs_period_seconds";
const MEASURE: Duration = Duration::from_secs(8);
/// Spinning threads of the group with a quota.
const LIMITED_THREADS: usize = 2;
/// Longer than a CFS period and a few agent ticks (100 ms).
const SETTLE: Duration = Duration::from_millis(600);

/// One side's cumulative counters at a moment.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    periods: f64,
    throttled_periods: f64,
    throttled_seconds: f64,
}

impl Counters {
    fn from_agent(scrape: &Scrape, cgroup: &TestCgroup) -> Self {
        let value = |name| scrape.value(name, &[("cgroup", &cgroup.relative)]).unwrap_or(0.0);
        Self {
            periods: value(PERIODS),
            throttled_periods: value(THROTTLED_PERIODS),
            throttled_seconds: value(THROTTLED_SECONDS),
        }
    }

    fn from_kernel(cgroup: &TestCgroup) -> Self {
        let stat = kernel::cpu_stat(cgroup.cpu_controller_dir());
        let throttled_seconds = match (stat.get("throttled_time"), stat.get("throttled_usec")) {
            (Some(ns), _) => *ns as f64 / 1e9,
            (None, Some(us)) => *us as f64 / 1e6,
            (None, None) => 0.0,
        };
        Self {
            periods: stat.get("nr_periods").copied().unwrap_or(0) as f64,
            throttled_periods: stat.get("nr_throttled").copied().unwrap_or(0) as f64,
            throttled_seconds,
        }
    }

    fn since(&self, earlier: &Self) -> Self {
        Self {
            periods: self.periods - earlier.periods,
            throttled_periods: self.throttled_periods - earlier.throttled_periods,
            throttled_seconds: self.throttled_seconds - earlier.throttled_seconds,
        }
    }
}

fn agent_value(scrape: &Scrape, name: &str, cgroup: &TestCgroup) -> f64 {
    scrape.value(name, &[("cgroup", &cgroup.relative)]).unwrap_or(0.0)
}

/// One reading of both sides, taken while the workload is stopped.
#[derive(Debug, Clone, Copy)]
struct Reading {
    agent: Counters,
    kernel: Counters,
    throttle_delay: f64,
    cpu_usage: f64,
    runqueue_wait: f64,
    /// Run-queue wait of the workload's threads from schedstat.
    run_delay: f64,
    /// When the kernel's side was read.
    at: Instant,
}

/// Reads counters, throttle delay, CPU usage and run-queue waits of
/// `cgroup` on both sides while its workload is stopped.
fn frozen_reading(agent: &Agent, cgroup: &TestCgroup, workload: &Workload) -> Reading {
    let _stopped = workload.stopped();
    thread::sleep(SETTLE);
    let scrape = agent.scrape();
    Reading {
        agent: Counters::from_agent(&scrape, cgroup),
        kernel: Counters::from_kernel(cgroup),
        throttle_delay: agent_value(&scrape, THROTTLE_DELAY, cgroup),
        cpu_usage: agent_value(&scrape, CPU_USAGE, cgroup),
        runqueue_wait: agent_value(&scrape, RUNQUEUE_WAIT, cgroup),
        run_delay: kernel::run_delay_ns(workload.pid()) as f64 / 1e9,
        at: Instant::now(),
    }
}

#[test]
fn throttling_matches_cpu_stat() {
    require_root();
    let limited = TestCgroup::with_cpu_controller("limited");
    limited.set_cpu_quota(20_000, 100_000);
    let unlimited = TestCgroup::with_cpu_controller("unlimited");
    let limited_load = Workload::start(&limited, &["busy", &LIMITED_THREADS.to_string()]);
    let unlimited_load = Workload::start(&unlimited, &["wake-loop", "2000", "200"]);
    let agent = Agent::start(&[]);
    thread::sleep(Duration::from_secs(1));

    let (start, end, unlimited_start, ratio_scrape, unlimited_scrape) =
        kernel::measure_plausible("run delay", LIMITED_THREADS, || {
            let start = frozen_reading(&agent, &limited, &limited_load);
            let unlimited_start = Counters::from_agent(&agent.scrape(), &unlimited);
            thread::sleep(MEASURE);
            let ratio_scrape = agent.scrape();
            let end = frozen_reading(&agent, &limited, &limited_load);
            let unlimited_scrape = agent.scrape();
            let (reference, elapsed) = (end.run_delay - start.run_delay, end.at - start.at);
            ((start, end, unlimited_start, ratio_scrape, unlimited_scrape), reference, elapsed)
        });

    let agent_delta = end.agent.since(&start.agent);
    let kernel_delta = end.kernel.since(&start.kernel);
    let delay = end.throttle_delay - start.throttle_delay;
    let runqueue = end.runqueue_wait - start.runqueue_wait;
    let run_delay = end.run_delay - start.run_delay;
    let ratio = agent_value(&ratio_scrape, THROTTLED_RATIO, &limited);
    let unlimited_delta = Counters::from_agent(&unlimited_scrape, &unlimited).since(&unlimited_start);
    eprintln!(
        "limited: agent {agent_delta:?}, cpu.stat {kernel_delta:?}, throttle delay {delay:.3} s, ratio {ratio:.3}, \
         run-queue wait {runqueue:.3} s, schedstat run delay {run_delay:.3} s; unlimited: {unlimited_delta:?}"
    );

    assert!(kernel_delta.throttled_periods > 40.0, "too little throttling: {kernel_delta:?}");
    assert_eq!(agent_delta.periods, kernel_delta.periods, "periods");
    assert_eq!(agent_delta.throttled_periods, kernel_delta.throttled_periods, "throttled periods");
    let time_error = kernel::relative_error(agent_delta.throttled_seconds, kernel_delta.throttled_seconds);
    assert!(time_error < 0.05, "throttled time off by {:.1}%", time_error * 100.0);
    assert!(ratio > 0.8, "throttled ratio {ratio}");
    let limit = agent_value(&ratio_scrape, LIMIT, &limited);
    assert!((limit - 0.2).abs() < 1e-9, "limit {limit} cores");
    let period = agent_value(&ratio_scrape, PERIOD, &limited);
    assert!((period - 0.1).abs() < 1e-9, "period {period} s");
    // Each busy thread waits out every throttled stretch of its own CPU's
    // run queue, so the delay summed over tasks tracks the throttled time
    // summed over CPUs. The kernel starts a run queue's throttled time
    // when it throttles it, the probe when the task leaves the CPU, which
    // can be later when the task was in the kernel, hence the tolerance.
    let delay_error = kernel::relative_error(delay, kernel_delta.throttled_seconds);
    assert!(delay_error < 0.15, "throttle delay off by {:.1}% from cpu.stat throttled time", delay_error * 100.0);
    // schedstat's run delay on Linux 6.18 covers both the throttled wait
    // and the run-queue wait, which the agent keeps apart.
    let split_error = kernel::relative_error(delay + runqueue, run_delay);
    assert!(split_error < 0.10, "throttle delay plus run-queue wait off by {:.1}% from schedstat", split_error * 100.0);
    assert_eq!(unlimited_delta.throttled_periods, 0.0);
    assert_eq!(agent_value(&unlimited_scrape, THROTTLE_DELAY, &unlimited), 0.0);
    assert_eq!(unlimited_scrape.value(LIMIT, &[("cgroup", &unlimited.relative)]), None);
    drop(unlimited_load);
}

#[test]
fn bursty_group_shows_throttling() {
    require_root();
    let bursty = TestCgroup::with_cpu_controller("bursty");
    bursty.set_cpu_quota(10_000, 100_000);
    let load = Workload::start(&bursty, &["bursty", "30", "500", "1"]);
    let agent = Agent::start(&[]);
    thread::sleep(Duration::from_secs(1));

    let start = frozen_reading(&agent, &bursty, &load);
    thread::sleep(MEASURE);
    let ratio_scrape = agent.scrape();
    let end = frozen_reading(&agent, &bursty, &load);

    let agent_delta = end.agent.since(&start.agent);
    let kernel_delta = end.kernel.since(&start.kernel);
    let delay = end.throttle_delay - start.throttle_delay;
    // The measured span includes one settle pause in which it was stopped.
    let cores = (end.cpu_usage - start.cpu_usage) / (MEASURE + SETTLE).as_secs_f64();
    let ratio = agent_value(&ratio_scrape, THROTTLED_RATIO, &bursty);
    let wall_clock_periods = (MEASURE + SETTLE).as_secs_f64() / 0.1;
    eprintln!(
        "bursty: {cores:.3} cores, agent {agent_delta:?}, cpu.stat {kernel_delta:?}, throttle delay {delay:.3} s, \
         ratio {ratio:.3}, throttled share of wall-clock periods {:.3}",
        agent_delta.throttled_periods / wall_clock_periods
    );

    assert!(cores < 0.1, "average CPU {cores} cores is not low");
    assert!(ratio > 0.0, "throttled ratio {ratio}");
    assert!(delay > 0.0, "throttle delay {delay} s");
    assert_eq!(agent_delta.throttled_periods, kernel_delta.throttled_periods);
    assert!(
        agent_delta.throttled_periods / wall_clock_periods < ratio,
        "nr_periods should count only periods in which the group ran"
    );
    let delay_error = kernel::relative_error(delay, kernel_delta.throttled_seconds);
    assert!(delay_error < 0.15, "throttle delay off by {:.1}% from cpu.stat throttled time", delay_error * 100.0);
}

#[test]
fn classify_shows_throttling() {
    require_root();
    let limited = TestCgroup::with_cpu_controller("limited");
    limited.set_cpu_quota(20_000, 100_000);
    let load = Workload::start(&limited, &["busy", "2"]);
    thread::sleep(Duration::from_millis(500));

    let run = |extra: &[&str]| {
        std::process::Command::new(integration_tests::binary("agent"))
            .args(["classify", "--pid", &load.pid().to_string(), "--duration", "3s"])
            .args(extra)
            .output()
            .expect("running agent classify")
    };
    let text = run(&[]);
    let json = run(&["--output", "json"]);

    let stdout = String::from_utf8_lossy(&text.stdout);
    eprintln!("{stdout}");
    assert!(stdout.contains("CFS throttling"), "{stdout}");
    assert!(stdout.contains("periods in which it ran were throttled"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("classify JSON");
    let throttling = &report["cpu_throttling"];
    assert!(throttling["throttled_ratio"].as_f64().unwrap_or(0.0) > 0.8, "{throttling}");
    assert!(throttling["delay_seconds"].as_f64().unwrap_or(0.0) > 1.0, "{throttling}");
    assert!((throttling["cfs_period_seconds"].as_f64().unwrap_or(0.0) - 0.1).abs() < 1e-9, "{throttling}");
    assert!((report["cpu_limit_cores"].as_f64().unwrap_or(0.0) - 0.2).abs() < 1e-9, "{report}");
}
