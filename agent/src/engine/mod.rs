//! The engine both `agent run` and `agent classify` drive: on each tick it
//! reads the probes' maps and the cgroup files, keeps a window per cgroup,
//! and classifies every cgroup from its window.

pub mod network;
pub mod window;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use agent_common::histogram::LatencyHistogram;
use tracing::{debug, info};

use crate::{
    cgroup::{CgroupId, CgroupLayout, CgroupResolver, cpu_stat::{CpuLimit, CpuStat}},
    classifier::{self, Class, Evidence, Thresholds, Verdict},
    probes::{MapSizes, ProbeCost, ProbeSettings, ProbeSpec, ProbeState, Probes},
};
use agent_common::dns::DnsConfig;
use network::{ConnectEvidence, ConnectTotals, DnsEvidence, DnsTotals, NetworkConfig, NetworkReading, NetworkState};
use window::{Sample, Window, quantile_ns};

#[derive(Clone, Copy, Debug)]
pub struct EngineConfig {
    /// How often maps and cgroup files are read.
    pub tick: Duration,
    /// Span of the sliding window the classifier reads.
    pub window: Duration,
    pub thresholds: Thresholds,
    pub map_sizes: MapSizes,
    /// Ports the DNS probes treat as DNS servers.
    pub dns_ports: DnsConfig,
    pub network: NetworkConfig,
}

/// One cgroup as of the latest tick.
#[derive(Clone, Debug)]
pub struct GroupReport {
    pub id: CgroupId,
    /// Path relative to the v2 root, starting with `/`.
    pub path: String,
    /// Cumulative run-queue latency since the agent started watching.
    pub runqueue_total: LatencyHistogram,
    /// Cumulative CPU counters from `cpu.stat`.
    pub cpu: CpuStat,
    pub cpu_limit: Option<CpuLimit>,
    /// Cumulative DNS counters, including timeouts the agent swept.
    pub dns: DnsTotals,
    /// Cumulative connect counters per destination, and over the window
    /// (`None` until two ticks have passed).
    pub connect: ConnectTotals,
    pub connect_window: Option<ConnectTotals>,
    /// Measurements over the window; `None` until two ticks have passed.
    pub evidence: Option<Evidence>,
    pub verdict: Option<Verdict>,
}

/// Everything the exporter and `classify` render, taken at one tick.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub groups: Vec<GroupReport>,
    pub probes: Vec<(&'static ProbeSpec, Option<String>, ProbeCost)>,
    pub taken_at: Option<Instant>,
}

impl Snapshot {
    pub fn group(&self, id: CgroupId) -> Option<&GroupReport> {
        self.groups.iter().find(|group| group.id == id)
    }
}

struct Group {
    path: String,
    window: Window,
    primary: Option<Class>,
}

pub struct Engine {
    probes: Probes,
    layout: CgroupLayout,
    resolver: CgroupResolver,
    groups: HashMap<CgroupId, Group>,
    watched: HashSet<CgroupId>,
    config: EngineConfig,
    node_cores: f64,
    network: NetworkState,
}

impl Engine {
    /// Loads and attaches the probes and finds the cgroup hierarchies.
    pub fn start(config: EngineConfig) -> anyhow::Result<Self> {
        let layout = CgroupLayout::discover()?;
        info!(
            v2_root = %layout.v2_root.display(),
            v1_cpu_root = ?layout.v1_cpu_root,
            "cgroup hierarchies found"
        );
        let probes = Probes::load(&ProbeSettings {
            sizes: config.map_sizes,
            dns: config.dns_ports,
            cgroup_v2_root: &layout.v2_root,
        })?;
        let resolver = CgroupResolver::new(layout.v2_root.clone(), config.tick);
        Ok(Self {
            probes,
            layout,
            resolver,
            groups: HashMap::new(),
            watched: HashSet::new(),
            config,
            node_cores: online_cpus(),
            network: NetworkState::new(config.network),
        })
    }

    pub fn layout(&self) -> &CgroupLayout {
        &self.layout
    }

    pub fn probe_states(&self) -> &[ProbeState] {
        &self.probes.states
    }

    /// Samples `id` on every tick, also while its tasks record nothing.
    pub fn watch(&mut self, id: CgroupId) {
        self.watched.insert(id);
    }

    pub fn cgroup_id(&self, relative: &str) -> std::io::Result<CgroupId> {
        self.resolver.id_of(relative)
    }

    /// Reads every source once and returns the new state.
    pub fn tick(&mut self) -> Snapshot {
        let now = Instant::now();
        let runqueue = self
            .probes
            .runqueue
            .as_ref()
            .map(|maps| maps.read())
            .unwrap_or_default();
        let network = self.network.collect(&mut self.probes);

        let ids: HashSet<CgroupId> = runqueue
            .keys()
            .chain(network.dns.keys())
            .chain(network.connect.keys())
            .chain(self.watched.iter())
            .copied()
            .collect();
        for id in ids {
            let Some(path) = self.resolver.path_of(id).map(str::to_owned) else {
                self.forget(id);
                continue;
            };
            let cpu = CpuStat::read(&self.layout.v2_dir(&path)).unwrap_or_default();
            let sample = Sample {
                at: now,
                runqueue: runqueue.get(&id).copied().unwrap_or(LatencyHistogram::ZERO),
                cpu,
                dns: network.dns.get(&id).copied().unwrap_or_default(),
                connect: network.connect.get(&id).cloned().unwrap_or_default(),
            };
            let span = self.config.window;
            let group = self.groups.entry(id).or_insert_with(|| {
                debug!(cgroup = %path, id, "cgroup seen");
                Group {
                    path: path.clone(),
                    window: Window::new(span),
                    primary: None,
                }
            });
            group.path = path;
            group.window.push(sample);
        }
        // Groups with no map entry and no watcher have left the map.
        let stale: Vec<CgroupId> = self
            .groups
            .keys()
            .filter(|id| !runqueue.contains_key(id) && !has_network_data(&network, **id) && !self.watched.contains(id))
            .copied()
            .collect();
        for id in stale {
            self.groups.remove(&id);
        }

        self.snapshot(now)
    }

    fn forget(&mut self, id: CgroupId) {
        if let Some(group) = self.groups.remove(&id) {
            debug!(cgroup = %group.path, id, "cgroup removed; dropping its series");
        }
        self.resolver.forget(id);
        self.watched.remove(&id);
        if let Some(maps) = self.probes.runqueue.as_mut() {
            maps.remove(id);
        }
        if let Some(maps) = self.probes.dns.as_mut() {
            maps.remove(id);
        }
        if let Some(maps) = self.probes.connect.as_mut() {
            maps.remove(id);
        }
        self.network.forget(id);
    }

    fn snapshot(&mut self, now: Instant) -> Snapshot {
        let thresholds = self.config.thresholds;
        let node_cores = self.node_cores;
        let layout = &self.layout;
        let mut groups = Vec::with_capacity(self.groups.len());
        for (&id, group) in &mut self.groups {
            let Some(latest) = group.window.latest().cloned() else { continue };
            let cpu_limit = cpu_limit_of(layout, &group.path);
            let delta = group.window.delta();
            let evidence = delta
                .as_ref()
                .map(|delta| evidence_from(delta, cpu_limit, node_cores));
            let verdict = evidence.as_ref().map(|evidence| classifier::classify(evidence, &thresholds));
            if let Some(verdict) = &verdict {
                log_primary_change(group, verdict.primary);
            }
            groups.push(GroupReport {
                id,
                path: group.path.clone(),
                runqueue_total: latest.runqueue,
                cpu: latest.cpu,
                cpu_limit,
                dns: latest.dns,
                connect: latest.connect,
                connect_window: delta.map(|delta| delta.connect),
                evidence,
                verdict,
            });
        }
        groups.sort_by(|a, b| a.path.cmp(&b.path));
        let costs = self.probes.costs();
        let probes = self
            .probes
            .states
            .iter()
            .map(|state| {
                let cost = costs
                    .iter()
                    .find(|(spec, _)| spec.program == state.spec.program)
                    .map(|(_, cost)| *cost)
                    .unwrap_or_default();
                (state.spec, state.skipped.clone(), cost)
            })
            .collect();
        Snapshot {
            groups,
            probes,
            taken_at: Some(now),
        }
    }
}

fn log_primary_change(group: &mut Group, primary: Class) {
    if group.primary != Some(primary) {
        if group.primary.is_some() || primary != Class::None {
            info!(
                cgroup = %group.path,
                from = group.primary.map_or("unknown", Class::label),
                to = primary.label(),
                "bottleneck class changed"
            );
        }
        group.primary = Some(primary);
    }
}

fn cpu_limit_of(layout: &CgroupLayout, path: &str) -> Option<CpuLimit> {
    // On hybrid hosts the limit lives in the v1 cpu hierarchy; a v2 group
    // with the cpu controller has cpu.max instead.
    CpuLimit::read(&layout.v2_dir(path))
        .or_else(|| layout.v1_cpu_dir(path).and_then(|dir| CpuLimit::read(&dir)))
}

fn evidence_from(delta: &window::Delta, cpu_limit: Option<CpuLimit>, node_cores: f64) -> Evidence {
    let seconds = delta.elapsed.as_secs_f64();
    Evidence {
        window_seconds: seconds,
        cpu_used_cores: delta
            .cpu_usage_ns
            .filter(|_| seconds > 0.0)
            .map(|ns| ns as f64 / 1e9 / seconds),
        cpu_limit_cores: cpu_limit.map(|limit| limit.cores()),
        node_cores,
        runqueue_wait_seconds: delta.runqueue.total_ns as f64 / 1e9,
        runqueue_waits: delta.runqueue.count,
        runqueue_p50_seconds: quantile_ns(&delta.runqueue, 0.50).map(|ns| ns / 1e9),
        runqueue_p99_seconds: quantile_ns(&delta.runqueue, 0.99).map(|ns| ns / 1e9),
        dns: DnsEvidence::from_delta(&delta.dns),
        connect: ConnectEvidence::from_delta(&delta.connect),
    }
}

/// Whether this tick read DNS or connect counters for the cgroup.
fn has_network_data(reading: &NetworkReading, id: CgroupId) -> bool {
    reading.dns.contains_key(&id) || reading.connect.contains_key(&id)
}

/// CPUs online on the node; the agent's own affinity mask does not matter.
fn online_cpus() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if online > 0 { online as f64 } else { 1.0 }
}

/// The latest snapshot, shared between the engine thread and readers.
pub type SharedSnapshot = Arc<std::sync::RwLock<Arc<Snapshot>>>;
