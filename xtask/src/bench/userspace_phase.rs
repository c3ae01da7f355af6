//! The agent process on an idle node and with many live cgroups: memory,
//! CPU, scrape time and size, kernel map memory, and the cost per event
//! with the cgroups in its maps.

use std::{
    collections::BTreeMap,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{
    Binaries, Settings, UserspaceResults,
    bpf_stats::{bpf_fds_of, maps_memlock_bytes},
    cgroups::{CgroupTree, cgroup2_root},
    guard::sleep_interruptible,
    processes::AgentProcess,
    rounds::per_event_under_pipe,
    samples::Samples,
    userspace::{count_cgroups, cpu_time_ns, rss_bytes, scrape},
};

/// Maximum wait for the bench cgroups to appear in `/metrics`.
const APPEAR_TIMEOUT: Duration = Duration::from_secs(60);
/// How often each bench worker wakes up.
const WORKER_PERIOD: Duration = Duration::from_secs(1);

/// Measures the agent idle, then with `settings.cgroups` live cgroups.
/// Expects `kernel.bpf_stats_enabled=1` for the per-event figures.
pub fn measure(settings: &Settings, binaries: &Binaries, results: &mut UserspaceResults) -> anyhow::Result<()> {
    eprintln!("bench: userspace, idle");
    let agent = AgentProcess::start(&binaries.agent, &binaries.log_dir.join("agent.log"))?;
    sleep_interruptible(settings.settle)?;
    let (cpu, rss) = observe(&agent, settings)?;
    results.cpu_idle_percent = cpu;
    results.rss_idle_mib = rss;
    let map_ids = bpf_fds_of(agent.pid())?.map_ids;
    results.maps_memlock_mib = Some(maps_memlock_bytes(&map_ids)? as f64 / (1024.0 * 1024.0));
    measure_per_event(&agent, settings, &mut results.per_event_idle)?;

    eprintln!("bench: userspace, creating {} cgroups with one process each", settings.cgroups);
    let root = cgroup2_root()?;
    let tree = CgroupTree::create(&root, settings.cgroups, &mut || {
        let mut command = Command::new(&binaries.worker);
        command.args(["bench-worker", "--period-ms", &WORKER_PERIOD.as_millis().to_string()]);
        command
    })?;
    let relative = tree.parent_dir().strip_prefix(&root).context("the bench cgroup is outside the v2 root")?;
    let prefix = format!("/{}/", relative.display());
    results.cgroups_seen = wait_for_cgroups(&agent, &prefix, settings.cgroups)?;
    sleep_interruptible(settings.settle)?;

    eprintln!("bench: userspace, {} cgroups live", results.cgroups_seen);
    let (cpu, rss) = observe(&agent, settings)?;
    results.cpu_loaded_percent = cpu;
    results.rss_loaded_mib = rss;
    for _ in 0..settings.scrapes {
        let scrape = scrape(&agent)?;
        results.scrape_milliseconds.push(scrape.milliseconds);
        results.scrape_kib.push(scrape.bytes as f64 / 1024.0);
    }
    measure_per_event(&agent, settings, &mut results.per_event_loaded)?;

    drop(tree);
    drop(agent);
    Ok(())
}

/// Runs the pipe load `settings.rounds` times and adds the agent's cost
/// per event, by program, to `costs`.
fn measure_per_event(
    agent: &AgentProcess,
    settings: &Settings,
    costs: &mut BTreeMap<String, Samples>,
) -> anyhow::Result<()> {
    for _ in 0..settings.rounds {
        for (program, nanoseconds) in per_event_under_pipe(agent.pid(), settings)? {
            costs.entry(program).or_default().push(nanoseconds);
        }
    }
    Ok(())
}

/// CPU use (% of one core) and RSS (MiB) of the agent over
/// `settings.cpu_intervals` consecutive intervals.
fn observe(agent: &AgentProcess, settings: &Settings) -> anyhow::Result<(Samples, Samples)> {
    let mut cpu = Samples::default();
    let mut rss = Samples::default();
    let mut before = cpu_time_ns(agent.pid())?;
    for _ in 0..settings.cpu_intervals {
        let started_at = Instant::now();
        sleep_interruptible(settings.cpu_interval)?;
        let after = cpu_time_ns(agent.pid())?;
        let elapsed_ns = started_at.elapsed().as_nanos() as f64;
        cpu.push(after.saturating_sub(before) as f64 / elapsed_ns * 100.0);
        rss.push(rss_bytes(agent.pid())? as f64 / (1024.0 * 1024.0));
        before = after;
    }
    Ok((cpu, rss))
}

/// Scrapes until `expected` cgroups under `prefix` appear, and returns how
/// many did.
fn wait_for_cgroups(agent: &AgentProcess, prefix: &str, expected: usize) -> anyhow::Result<usize> {
    let started_at = Instant::now();
    loop {
        let seen = count_cgroups(&scrape(agent)?.body, prefix);
        if seen >= expected {
            return Ok(seen);
        }
        if started_at.elapsed() > APPEAR_TIMEOUT {
            bail!(
                "only {seen} of {expected} bench cgroups appeared in /metrics within {APPEAR_TIMEOUT:?}; \
                 check chokepoint_probe_lost_events_total for map_full"
            );
        }
        sleep_interruptible(Duration::from_millis(500))?;
    }
}
