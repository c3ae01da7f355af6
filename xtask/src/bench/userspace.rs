//! The agent as a process: resident memory, CPU time and `/metrics`
//! scrapes, on an idle node and with many live cgroups.

use std::fs;

use anyhow::{Context as _, bail};

use super::processes::AgentProcess;

/// Resident set size of process `pid` in bytes (`VmRSS` of
/// `/proc/PID/status`).
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("reading {path} failed"))?;
    parse_vm_rss_kib(&status).map(|kib| kib * 1024).with_context(|| format!("no valid VmRSS line in {path}"))
}

fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let mut fields = line["VmRSS:".len()..].split_whitespace();
    let value = fields.next()?.parse().ok()?;
    (fields.next() == Some("kB")).then_some(value)
}

/// CPU time of every thread of process `pid`, in nanoseconds: the sum of
/// the first field of `/proc/PID/task/TID/schedstat`.
///
/// schedstat has nanosecond resolution, where `utime`/`stime` in
/// `/proc/PID/stat` count 10 ms clock ticks, too coarse for a process that
/// uses well under 1% of a core. Threads that exit take their time with
/// them, so this fits the agent, whose threads live as long as it does.
pub fn cpu_time_ns(pid: u32) -> anyhow::Result<u64> {
    let directory = format!("/proc/{pid}/task");
    let mut total = 0;
    for entry in fs::read_dir(&directory).with_context(|| format!("listing {directory} failed"))? {
        let path = entry.with_context(|| format!("listing {directory} failed"))?.path().join("schedstat");
        // A thread that exited since the listing has no schedstat.
        let Ok(text) = fs::read_to_string(&path) else { continue };
        let Some(on_cpu) = text.split_whitespace().next().and_then(|field| field.parse::<u64>().ok()) else {
            bail!("unexpected contents of {}: {text:?}", path.display());
        };
        total += on_cpu;
    }
    Ok(total)
}

/// Wall time and size of one scrape.
pub struct Scrape {
    pub milliseconds: f64,
    pub bytes: usize,
    pub body: String,
}

/// Scrapes `/metrics` once.
pub fn scrape(agent: &AgentProcess) -> anyhow::Result<Scrape> {
    let response = agent.get("/metrics")?;
    if response.status != 200 {
        bail!("GET /metrics returned status {}", response.status);
    }
    Ok(Scrape {
        milliseconds: response.elapsed.as_secs_f64() * 1e3,
        bytes: response.body.len(),
        body: String::from_utf8(response.body).context("the /metrics body is not UTF-8")?,
    })
}

/// Number of cgroups whose label starts with `prefix` in the
/// `chokepoint_runqueue_wait_seconds_total` series of a scrape.
pub fn count_cgroups(body: &str, prefix: &str) -> usize {
    let needle = format!("cgroup=\"{prefix}");
    body.lines()
        .filter(|line| line.starts_with("chokepoint_runqueue_wait_seconds_total{") && line.contains(&needle))
        .count()
}

/// Exported cost of each agent probe, from one scrape: (probe, runs
/// counted by the kernel, run time in seconds).
pub fn exported_probe_costs(body: &str) -> Vec<(String, f64, f64)> {
    let events = series_by_probe(body, "chokepoint_probe_runs_total{");
    let run_times = series_by_probe(body, "chokepoint_probe_run_time_seconds_total{");
    events
        .into_iter()
        .filter_map(|(probe, count)| {
            let (_, seconds) = run_times.iter().find(|(name, _)| *name == probe)?;
            Some((probe, count, *seconds))
        })
        .collect()
}

fn series_by_probe(body: &str, prefix: &str) -> Vec<(String, f64)> {
    body.lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| {
            let (labels, value) = line.rsplit_once("} ")?;
            let probe = labels.split("probe=\"").nth(1)?.split('"').next()?;
            Some((probe.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_in_kib() {
        let status = "Name:\tagent\nVmPeak:\t  90000 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";

        assert_eq!(parse_vm_rss_kib(status), Some(12_345));
    }

    #[test]
    fn vm_rss_missing() {
        assert_eq!(parse_vm_rss_kib("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn cgroups_counted_by_prefix() {
        let body = "\
chokepoint_runqueue_wait_seconds_total{node=\"n\",cgroup=\"/chokepoint-bench-1/worker-0000\"} 0.1
chokepoint_runqueue_wait_seconds_total{node=\"n\",cgroup=\"/chokepoint-bench-1/worker-0001\"} 0.2
chokepoint_runqueue_wait_seconds_total{node=\"n\",cgroup=\"/system.slice\"} 0.3
chokepoint_cpu_usage_seconds_total{node=\"n\",cgroup=\"/chokepoint-bench-1/worker-0000\"} 0.1
";

        assert_eq!(count_cgroups(body, "/chokepoint-bench-1/"), 2);
    }

    #[test]
    fn probe_costs_from_scrape() {
        let body = "\
chokepoint_probe_runs_total{node=\"n\",probe=\"sched_switch\"} 1000
chokepoint_probe_run_time_seconds_total{node=\"n\",probe=\"sched_switch\"} 0.0005
chokepoint_probe_runs_total{node=\"n\",probe=\"sched_wakeup\"} 10
";

        let costs = exported_probe_costs(body);

        assert_eq!(costs, vec![("sched_switch".to_owned(), 1000.0, 0.0005)]);
    }
}
