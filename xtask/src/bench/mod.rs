//! `cargo xtask bench`: what the agent costs, measured side by side with
//! nothing attached and with libbpf-tools `runqlat`, and written to
//! `BENCHMARKS.md`.
//!
//! Configurations are interleaved round by round (baseline, agent,
//! runqlat, then the next round in a rotated order) so that drift in the
//! machine's speed hits all of them alike. Every figure is reported as the
//! median and min–max over rounds.

mod bpf_stats;
mod cgroups;
mod guard;
mod machine;
mod network;
mod pipe;
mod processes;
mod report;
mod rounds;
mod samples;
mod userspace;
mod userspace_phase;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use clap::Args;

pub use cgroups::run_worker;
use samples::Samples;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Rounds per figure; each round runs every configuration once
    /// [default: 7, or 2 with --quick].
    #[arg(long)]
    rounds: Option<usize>,

    /// Small iteration counts for developing the benchmark; the figures
    /// are not comparable with a full run.
    #[arg(long)]
    quick: bool,

    /// Live cgroups, each with one process, for the userspace figures.
    #[arg(long, default_value_t = 1000)]
    cgroups: usize,

    /// File the report is written to, relative to the workspace root.
    #[arg(long, default_value = "BENCHMARKS.md")]
    output: PathBuf,

    /// Phases to run, comma-separated [default: all]. The report shows the
    /// figures of skipped phases as not measured.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Phase>,
}

/// A part of the benchmark that can run on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    /// Pipe and network loads with nothing attached, the agent and
    /// runqlat, and the agent's start-up time.
    Throughput,
    /// Cost per event of each program under the pipe load.
    PerEvent,
    /// The agent process idle and with many live cgroups.
    Userspace,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Throughput, Phase::PerEvent, Phase::Userspace];

    pub fn label(self) -> &'static str {
        match self {
            Phase::Throughput => "throughput",
            Phase::PerEvent => "per-event",
            Phase::Userspace => "userspace",
        }
    }
}

/// Iteration counts and durations of one run.
#[derive(Clone, Debug)]
pub struct Settings {
    pub quick: bool,
    pub rounds: usize,
    /// CPU both ends of each load (pipe, UDP, TCP) are pinned to.
    pub load_cpu: u32,
    pub pipe_loops: u64,
    pub udp_requests: u32,
    pub tcp_connections: u32,
    /// Upper bound on each network loop, whatever its count.
    pub network_time_limit: Duration,
    pub cgroups: usize,
    /// Wait after the agent is ready before its CPU and memory are read.
    pub settle: Duration,
    pub cpu_intervals: usize,
    pub cpu_interval: Duration,
    pub scrapes: usize,
    /// Phases this run measures, in the order they run.
    pub phases: Vec<Phase>,
}

impl Settings {
    fn new(args: &BenchArgs, cpus: u32) -> Self {
        let quick = args.quick;
        Self {
            quick,
            rounds: args.rounds.unwrap_or(if quick { 2 } else { 7 }),
            // CPU 1 when there is one, so the load does not share CPU 0
            // with most interrupt handling.
            load_cpu: cpus.saturating_sub(1).min(1),
            pipe_loops: if quick { 50_000 } else { 300_000 },
            udp_requests: if quick { 2_000 } else { 20_000 },
            tcp_connections: if quick { 500 } else { 5_000 },
            network_time_limit: Duration::from_secs(if quick { 5 } else { 20 }),
            cgroups: args.cgroups,
            settle: Duration::from_secs(if quick { 2 } else { 5 }),
            // Each interval spans two ticks of the agent's default 5 s
            // tick, so no interval misses the agent's work and shows 0.
            cpu_intervals: if quick { 2 } else { 6 },
            cpu_interval: Duration::from_secs(10),
            scrapes: if quick { 3 } else { 10 },
            phases: Phase::ALL.into_iter().filter(|phase| args.only.is_empty() || args.only.contains(phase)).collect(),
        }
    }

    pub fn runs(&self, phase: Phase) -> bool {
        self.phases.contains(&phase)
    }
}

/// A configuration: the tracing tool, if any, that runs next to the load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Config {
    Baseline,
    Agent,
    Runqlat,
}

impl Config {
    pub const ALL: [Config; 3] = [Config::Baseline, Config::Agent, Config::Runqlat];

    pub fn label(self) -> &'static str {
        match self {
            Config::Baseline => "nothing attached",
            Config::Agent => "agent",
            Config::Runqlat => "runqlat",
        }
    }
}

/// A load under which the cost per event of each program is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Load {
    /// `perf bench sched pipe`: wakeups and context switches.
    Pipe,
    /// The UDP and TCP loops: packets and TCP state changes.
    Network,
}

impl Load {
    pub const ALL: [Load; 2] = [Load::Pipe, Load::Network];

    pub fn label(self) -> &'static str {
        match self {
            Load::Pipe => "pipe",
            Load::Network => "UDP and TCP",
        }
    }
}

/// Samples of one figure per configuration.
#[derive(Debug, Default)]
pub struct ByConfig(BTreeMap<Config, Samples>);

impl ByConfig {
    pub fn push(&mut self, config: Config, value: f64) {
        self.0.entry(config).or_default().push(value);
    }

    pub fn get(&self, config: Config) -> Samples {
        self.0.get(&config).cloned().unwrap_or_default()
    }
}

/// Figures of the agent process, idle and with many cgroups.
#[derive(Debug, Default)]
pub struct UserspaceResults {
    pub rss_idle_mib: Samples,
    pub rss_loaded_mib: Samples,
    pub cpu_idle_percent: Samples,
    pub cpu_loaded_percent: Samples,
    pub scrape_milliseconds: Samples,
    pub scrape_kib: Samples,
    /// Bench cgroups that appeared in `/metrics` before the loaded figures
    /// were taken.
    pub cgroups_seen: usize,
    /// Kernel memory charged for the agent's maps (`bytes_memlock`).
    pub maps_memlock_mib: Option<f64>,
    /// Cost per event of each agent program before the cgroups are made,
    /// measured with the same agent process as `per_event_loaded`.
    pub per_event_idle: BTreeMap<String, Samples>,
    /// Cost per event of each agent program with the cgroups live.
    pub per_event_loaded: BTreeMap<String, Samples>,
}

/// Everything one run measured.
#[derive(Debug, Default)]
pub struct Results {
    pub pipe_ops_per_second: ByConfig,
    pub udp_round_trips_per_second: ByConfig,
    pub tcp_connections_per_second: ByConfig,
    pub startup_milliseconds: Samples,
    /// Nanoseconds per event, keyed by (tool, load, program name).
    pub per_event: BTreeMap<(Config, Load, String), Samples>,
    /// Nanoseconds per event over the same loads, computed from the agent's
    /// own metrics (`chokepoint_probe_run_time_seconds_total` /
    /// `chokepoint_probe_runs_total`), keyed by (load, probe).
    pub exported_per_event: BTreeMap<(Load, String), Samples>,
    pub userspace: UserspaceResults,
}

/// Paths of the programs under test and of their logs.
pub struct Binaries {
    pub agent: PathBuf,
    pub runqlat: PathBuf,
    pub log_dir: PathBuf,
    /// The xtask binary itself, run as `bench-worker` in each cgroup.
    pub worker: PathBuf,
}

/// Runs the whole benchmark and writes the report.
pub fn run(root: &Path, args: BenchArgs) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmark loads probes, sets sysctls and creates cgroups: run `cargo xtask bench` as root");
    }
    guard::install_signal_handlers()?;
    for tool in ["taskset", "perf", "bpftool", "runqlat"] {
        require_tool(tool)?;
    }
    let machine_before = machine::Machine::read();
    let settings = Settings::new(&args, machine_before.cpus);

    crate::cargo(root, &["build", "--release", "-p", "agent"])?;
    let binaries = Binaries {
        agent: root.join("target/release/agent"),
        runqlat: which("runqlat")?,
        log_dir: root.join("target/bench"),
        worker: std::env::current_exe().context("finding the xtask binary failed")?,
    };
    eprintln!(
        "bench: {} rounds{}; logs in {}",
        settings.rounds,
        if settings.quick { " (--quick)" } else { "" },
        binaries.log_dir.display()
    );

    let mut results = Results::default();
    if settings.runs(Phase::Throughput) {
        rounds::measure_throughput(&settings, &binaries, &mut results)?;
    }
    if settings.runs(Phase::PerEvent) || settings.runs(Phase::Userspace) {
        // Per-event costs need the kernel's BPF statistics; they are off
        // during the throughput rounds above because they slow every
        // program down a little.
        let _stats = guard::Sysctl::set("kernel.bpf_stats_enabled", "1")?;
        if settings.runs(Phase::PerEvent) {
            rounds::measure_per_event(&settings, &binaries, &mut results)?;
        }
        if settings.runs(Phase::Userspace) {
            userspace_phase::measure(&settings, &binaries, &mut results.userspace)?;
        }
    }

    let machine_after = machine::Machine::read();
    let text = report::render(&settings, &machine_before, &machine_after, &results);
    print!("{}", text);
    let output = root.join(&args.output);
    report::write(&output, &text)?;
    eprintln!("bench: wrote {}", output.display());
    Ok(())
}

fn require_tool(name: &str) -> anyhow::Result<()> {
    which(name).map(|_| ()).with_context(|| {
        format!("{name} is required by the benchmark; `cargo xtask setup` installs it (packages linux-perf, bpftool, libbpf-tools)")
    })
}

fn which(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .with_context(|| format!("{name} not found in PATH, /usr/sbin or /sbin"))
}
