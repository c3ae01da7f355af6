//! The `agent classify` report: the verdict first, then the evidence with
//! numbers, then what usually fixes it. Text for people, JSON with the
//! same content for tools.

mod cpu_io;

use std::fmt::Write as _;

use serde::Serialize;

use crate::{
    classifier::{Class, ConnectEvidence, DnsEvidence, Evidence, Verdict},
    engine::{GroupReport, Neighbour},
};

#[derive(Clone, Debug, Serialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub command: String,
    /// Cgroup v2 path relative to the hierarchy's root.
    pub cgroup: String,
}

#[derive(Debug, Serialize)]
pub struct RunQueueEvidence {
    pub wait_seconds: f64,
    pub waits: u64,
    pub p50_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
    /// `wait / (wait + CPU used)`.
    pub share_of_runnable_time: f64,
    /// Wait seconds per second of window.
    pub average_waiting_tasks: f64,
}

/// The pod and container a cgroup belongs to.
#[derive(Debug, Serialize)]
pub struct PodInfo {
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
    pub pod_uid: String,
    pub qos_class: &'static str,
    pub container_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ClassifyReport {
    /// The process the cgroup was found from; absent for `--pod`.
    pub process: Option<ProcessInfo>,
    /// Cgroup path relative to the identifying hierarchy's root.
    pub cgroup: String,
    /// Absent for cgroups outside Kubernetes pods.
    pub pod: Option<PodInfo>,
    pub cgroup_id: u64,
    pub window_seconds: f64,
    pub cpu_used_cores: Option<f64>,
    pub cpu_limit_cores: Option<f64>,
    pub node_cores: f64,
    pub runqueue: RunQueueEvidence,
    /// Groups whose tasks held the CPU while this group's tasks waited.
    pub neighbours: Vec<Neighbour>,
    pub cpu_throttling: cpu_io::ThrottleReport,
    pub blkio_wait: cpu_io::IoWaitReport,
    /// DNS over the window: queries, response codes, timeouts, latency.
    pub dns: DnsEvidence,
    /// TCP connects that ended in the window, and the worst destination.
    pub connect: ConnectEvidence,
    pub verdict: Verdict,
    /// One sentence naming the primary bottleneck.
    pub summary: String,
    /// Usual fixes for the primary bottleneck.
    pub advice: Vec<String>,
}

impl ClassifyReport {
    /// Builds the report, or `None` if the group has no full window yet.
    pub fn new(process: Option<&ProcessInfo>, group: &GroupReport) -> Option<Self> {
        let evidence = group.evidence?;
        let verdict = group.verdict.clone()?;
        Some(Self {
            process: process.cloned(),
            cgroup: group.path.clone(),
            pod: group.identity.as_ref().map(|identity| PodInfo {
                namespace: identity.namespace.clone(),
                pod: identity.pod.clone(),
                container: identity.container.clone(),
                pod_uid: identity.pod_uid.clone(),
                qos_class: identity.qos.as_str(),
                // The form Kubernetes uses in a pod's status, when the
                // runtime is known: `containerd://<id>`.
                container_id: identity.container_id.as_ref().map(|id| match identity.runtime {
                    Some(runtime) => format!("{}://{id}", runtime.scheme()),
                    None => id.clone(),
                }),
            }),
            cgroup_id: group.id,
            window_seconds: evidence.window_seconds,
            cpu_used_cores: evidence.cpu_used_cores,
            cpu_limit_cores: evidence.cpu_limit_cores,
            node_cores: evidence.node_cores,
            runqueue: RunQueueEvidence {
                wait_seconds: evidence.runqueue_wait_seconds,
                waits: evidence.runqueue_waits,
                p50_seconds: evidence.runqueue_p50_seconds,
                p99_seconds: evidence.runqueue_p99_seconds,
                share_of_runnable_time: evidence.runqueue_wait_share(),
                average_waiting_tasks: evidence.average_waiting_tasks(),
            },
            neighbours: group.neighbours.clone(),
            cpu_throttling: cpu_io::ThrottleReport::new(&evidence),
            blkio_wait: cpu_io::IoWaitReport::new(&evidence),
            dns: evidence.dns,
            connect: evidence.connect,
            summary: summary(verdict.primary, &evidence),
            advice: advice(verdict.primary).iter().map(|line| (*line).to_owned()).collect(),
            verdict,
        })
    }

    pub fn to_text(&self) -> String {
        let mut text = String::new();
        // fmt::Write for String never returns an error.
        let _ = writeln!(text, "verdict:  {}", self.summary_with_neighbour());
        if let Some(process) = &self.process {
            let _ = writeln!(text, "process:  {} ({})", process.pid, process.command);
        }
        if let Some(pod) = &self.pod {
            let unknown = "(name unknown)";
            let _ = writeln!(
                text,
                "pod:      {}/{} (uid {}, {})",
                pod.namespace.as_deref().unwrap_or(unknown),
                pod.pod.as_deref().unwrap_or(unknown),
                pod.pod_uid,
                pod.qos_class
            );
            match (&pod.container, &pod.container_id) {
                (Some(name), _) => {
                    let _ = writeln!(text, "container: {name}");
                }
                (None, Some(id)) => {
                    let _ = writeln!(text, "container: id {id} (name unknown)");
                }
                (None, None) => {}
            }
        }
        let _ = writeln!(text, "cgroup:   {}", self.cgroup);
        let _ = writeln!(text, "window:   {:.1} s", self.window_seconds);
        let _ = writeln!(text);
        let _ = writeln!(text, "evidence:");
        let _ = writeln!(text, "  CPU used        {}", self.cpu_line());
        let runqueue = &self.runqueue;
        let _ = writeln!(
            text,
            "  run-queue wait  p50 {}, p99 {} over {} waits",
            format_seconds(runqueue.p50_seconds),
            format_seconds(runqueue.p99_seconds),
            runqueue.waits
        );
        let _ = writeln!(
            text,
            "                  {:.3} s in total: {:.0}% of the time its tasks were runnable, {:.2} tasks waiting on average",
            runqueue.wait_seconds,
            runqueue.share_of_runnable_time * 100.0,
            runqueue.average_waiting_tasks
        );
        for (index, neighbour) in self.neighbours.iter().enumerate() {
            let heading = if index == 0 { "ran ahead of it" } else { "" };
            let _ = writeln!(
                text,
                "  {heading:<16}{} ({:.0}% of its run-queue wait, {:.3} s)",
                neighbour.cgroup,
                neighbour.share * 100.0,
                neighbour.wait_seconds
            );
        }
        self.cpu_throttling.write_text(&mut text);
        self.blkio_wait.write_text(&mut text);
        let _ = writeln!(text, "  DNS             {}", dns_line(&self.dns));
        let _ = writeln!(text, "  TCP connect     {}", connect_line(&self.connect));
        for finding in self.verdict.findings.iter().skip(1) {
            let _ = writeln!(
                text,
                "  also holds      {} ({:.0}% of runnable time)",
                finding.class,
                finding.cost_share * 100.0
            );
        }
        if !self.advice.is_empty() {
            let _ = writeln!(text);
            let _ = writeln!(text, "what usually fixes it:");
            for line in &self.advice {
                let _ = writeln!(text, "  - {line}");
            }
        }
        text
    }

    /// The summary, naming the main neighbour for contention.
    fn summary_with_neighbour(&self) -> String {
        match (self.verdict.primary, self.neighbours.first()) {
            (Class::CpuContention, Some(neighbour)) => {
                format!("{} Main neighbour: {}.", self.summary, neighbour.cgroup)
            }
            _ => self.summary.clone(),
        }
    }

    fn cpu_line(&self) -> String {
        let used = self.cpu_used_cores.map_or_else(|| "unknown".to_owned(), |cores| format!("{cores:.2} cores"));
        let limit =
            self.cpu_limit_cores.map_or_else(|| "no CPU limit".to_owned(), |cores| format!("limit {cores:.2} cores"));
        format!("{used} ({limit}; {} CPUs on the node)", self.node_cores)
    }
}

fn dns_line(dns: &DnsEvidence) -> String {
    if dns.queries == 0 && dns.timeouts == 0 {
        return "no queries seen".to_owned();
    }
    format!(
        "{} queries, p50 {}, p99 {}; NXDOMAIN {} ({:.0}% of queries, the cost of search-domain expansion); \
         SERVFAIL {}, REFUSED {}, other errors {}, timeouts {} ({:.0}% of queries failed)",
        dns.queries,
        format_seconds(dns.p50_seconds),
        format_seconds(dns.p99_seconds),
        dns.nxdomain,
        dns.nxdomain_ratio * 100.0,
        dns.servfail,
        dns.refused,
        dns.other_error_responses,
        dns.timeouts,
        dns.failure_ratio * 100.0,
    )
}

fn connect_line(connect: &ConnectEvidence) -> String {
    if connect.attempts == 0 {
        return "no connects ended".to_owned();
    }
    let mut line = format!(
        "{} ended: {} established (p50 {}, p99 {}), {} refused, {} timed out, {} abandoned, {} other errors ({:.0}% failed)",
        connect.attempts,
        connect.established,
        format_seconds(connect.p50_seconds),
        format_seconds(connect.p99_seconds),
        connect.refused,
        connect.timed_out,
        connect.abandoned,
        connect.other_errors,
        connect.failure_ratio * 100.0,
    );
    if let Some(worst) = connect.worst_destination {
        let _ = write!(
            line,
            "; worst destination {worst}: {} failed ({:.0}% of its connects)",
            connect.worst_destination_failures,
            connect.worst_destination_failure_ratio * 100.0
        );
    }
    line
}

fn summary(primary: Class, evidence: &Evidence) -> String {
    let share = evidence.runqueue_wait_share() * 100.0;
    let used = evidence.cpu_used_cores.unwrap_or(0.0);
    match primary {
        Class::CpuSaturated => format!(
            "CPU saturated: the group uses {used:.2} of the {:.2} cores it may use, and its tasks spent {share:.0}% of their runnable time waiting for a CPU.",
            evidence.cpu_allowed_cores()
        ),
        Class::CpuContention => format!(
            "CPU contention (run-queue wait): its tasks spent {share:.0}% of their runnable time waiting for a CPU while the group used only {used:.2} cores; other groups hold the CPUs."
        ),
        Class::CpuThrottled => {
            let throttle = &evidence.throttle;
            format!(
                "CPU throttled by its CFS quota: {:.0}% of the periods in which it ran were throttled, and throttling held its tasks back {:.0}% of their runnable time, while it used {used:.2} cores on average.",
                throttle.throttled_ratio.unwrap_or(0.0) * 100.0,
                evidence.throttle_delay_share() * 100.0
            )
        }
        Class::DiskIo => format!(
            "disk I/O: its tasks spent {:.0}% of their busy time blocked on block I/O ({:.2} s in {:.0} s).",
            evidence.iowait_share() * 100.0,
            evidence.iowait.wait_seconds,
            evidence.window_seconds
        ),
        Class::Dns => {
            let dns = &evidence.dns;
            format!(
                "DNS: {} lookups, p99 {}, {:.0}% failed or timed out, {:.0}% NXDOMAIN (search-domain expansion); lookups took {:.0}% of its busy time.",
                dns.queries,
                format_seconds(dns.p99_seconds),
                dns.failure_ratio * 100.0,
                dns.nxdomain_ratio * 100.0,
                evidence.share_of_busy(dns.wait_seconds) * 100.0
            )
        }
        Class::DependencyConnect => {
            let connect = &evidence.connect;
            let worst = connect
                .worst_destination
                .map_or_else(|| "none failed".to_owned(), |destination| destination.to_string());
            format!(
                "dependency connects: {} TCP connects, {:.0}% failed, p99 {}; worst destination {worst}.",
                connect.attempts,
                connect.failure_ratio * 100.0,
                format_seconds(connect.p99_seconds)
            )
        }
        Class::None => "no bottleneck: its tasks rarely wait for a CPU, the disk, DNS or a dependency.".to_owned(),
    }
}

fn advice(primary: Class) -> &'static [&'static str] {
    match primary {
        Class::CpuSaturated => &[
            "The group needs more CPU than it has: raise its CPU limit or request, or add replicas.",
            "If it has no limit, the node itself is full: move load to other nodes.",
        ],
        Class::CpuContention => &[
            "Find the neighbour: the groups using most CPU on this node (chokepoint_cpu_usage_seconds_total, or top).",
            "Give this pod a CPU request that matches its needs so the scheduler and CFS weights favour it, or move the busy neighbour.",
        ],
        Class::CpuThrottled => &[
            "Raise or remove the CPU limit and keep the CPU request: the quota, not the node, holds it back.",
            "A low average CPU does not rule this out: short bursts use up the quota of a period (see the throttled ratio, not the average).",
        ],
        Class::DiskIo => &[
            "Check the volume's latency and IOPS or throughput limits, and any blkio/io.max limit on the pod.",
            "Compare with chokepoint_block_request_latency_seconds: a short device latency with a long wait means a limit holds the I/O back.",
        ],
        Class::Dns => &[
            "Check ndots and search domains in the pod's resolv.conf: with ndots:5 an external name costs several NXDOMAIN rounds; use fully qualified names (trailing dot) or lower ndots.",
            "Check the resolver's latency and errors (CoreDNS or node-local DNS), and whether answers time out.",
        ],
        Class::DependencyConnect => &[
            "Check the destination named above: refused means nothing listens; slow or timed out means a full accept backlog, dropped SYNs or a network policy.",
            "Look at the dependency's own saturation and at connection pooling in the client.",
        ],
        Class::None => &[],
    }
}

fn format_seconds(seconds: Option<f64>) -> String {
    match seconds {
        None => "n/a".to_owned(),
        Some(value) if value < 1e-3 => format!("{:.0} µs", value * 1e6),
        Some(value) if value < 1.0 => format!("{:.1} ms", value * 1e3),
        Some(value) => format!("{value:.2} s"),
    }
}
