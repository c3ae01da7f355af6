//! The engine both `agent run` and `agent classify` drive: on each tick it
//! reads the probes' maps and the cgroup files, keeps a window per cgroup,
//! and classifies every cgroup from its window.

pub mod block;
mod compact;
pub mod iowait;
pub mod network;
pub mod pods;
pub mod throttle;
pub mod window;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use agent_common::{histogram::LatencyHistogram, runqueue::NeighbourKey, wait_total::WaitTotal};
use anyhow::Context as _;
use serde::Serialize;
use tracing::{debug, info};

use crate::{
    cgroup::{
        CgroupId, CgroupLayout, CgroupResolver, Hierarchy, HierarchyChoice,
        cpu_stat::{CpuLimit, CpuStat},
        open_dir::CgroupDir,
    },
    classifier::{self, Class, Evidence, Thresholds, Verdict, stability::Stability},
    engine::{
        block::{BlockAttribution, BlockSeries},
        iowait::IoWaitEvidence,
        throttle::ThrottleEvidence,
    },
    identity::{PodIdentity, PodLogSources},
    probes::{MapSizes, ProbeCost, ProbeSettings, ProbeSpec, ProbeState, Probes},
};
use agent_common::dns::DnsConfig;
use network::{ConnectEvidence, ConnectTotals, DnsEvidence, DnsTotals, NetworkConfig, NetworkState};
use window::{Sample, Window, quantile_ns};

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// How often maps and cgroup files are read.
    pub tick: Duration,
    /// Span of the sliding window the classifier reads.
    pub window: Duration,
    /// How long a class must hold before it is raised, and not hold before
    /// it is cleared.
    pub min_duration: Duration,
    pub thresholds: Thresholds,
    pub map_sizes: MapSizes,
    /// BTF file to use instead of the running kernel's.
    pub btf: Option<std::path::PathBuf>,
    /// Cgroup hierarchy that identifies tasks.
    pub hierarchy: HierarchyChoice,
    /// The kubelet's log folders that name pods and containers.
    pub pod_logs: PodLogSources,
    /// Ports the DNS probes treat as DNS servers.
    pub dns_ports: DnsConfig,
    pub network: NetworkConfig,
}

/// One cgroup as of the latest tick.
#[derive(Clone, Debug)]
pub struct GroupReport {
    pub id: CgroupId,
    /// Path relative to the identifying hierarchy's root, starting with `/`.
    pub path: String,
    /// Pod and container, for cgroups of Kubernetes pods.
    pub identity: Option<PodIdentity>,
    /// Cumulative run-queue latency since the agent started watching.
    pub runqueue_total: LatencyHistogram,
    /// Cumulative CPU usage and CFS counters from `cpu.stat`.
    pub cpu: CpuStat,
    pub cpu_limit: Option<CpuLimit>,
    /// Cumulative throttle delay since the agent started watching.
    pub throttle_delay_total: WaitTotal,
    /// Cumulative block-I/O wait since the agent started watching.
    pub iowait_total: WaitTotal,
    /// Block request latency per disk, for requests the group owns.
    pub block_latency: Vec<BlockSeries>,
    /// Cumulative DNS counters, including timeouts the agent swept.
    pub dns: DnsTotals,
    /// Cumulative connect counters per destination, and over the window
    /// (`None` until two ticks have passed).
    pub connect: ConnectTotals,
    pub connect_window: Option<ConnectTotals>,
    /// Measurements over the window; `None` until two ticks have passed.
    pub evidence: Option<Evidence>,
    pub verdict: Option<Verdict>,
    /// Other groups whose tasks held the CPU while this group's tasks
    /// waited, over the window, largest share first (at most
    /// [`MAX_NEIGHBOURS`]).
    pub neighbours: Vec<Neighbour>,
}

/// Most neighbours named per group, which bounds the label cardinality of
/// the neighbour series.
pub const MAX_NEIGHBOURS: usize = 3;

/// A group that ran ahead of another group's waiting tasks.
#[derive(Clone, Debug, Serialize)]
pub struct Neighbour {
    pub cgroup: String,
    /// Run-queue wait of the waiting group that ended when a task of this
    /// group gave up the CPU, in seconds over the window.
    pub wait_seconds: f64,
    /// That wait as a share of the waiting group's whole run-queue wait.
    pub share: f64,
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
    /// The cgroup's directories in each hierarchy with CPU counters, held
    /// open (see [`CgroupLayout::cpu_dirs`]).
    cpu_dirs: Vec<(Hierarchy, CgroupDir)>,
    window: Window,
    stability: Stability,
    primary: Option<Class>,
    block_latency: Vec<BlockSeries>,
}

pub struct Engine {
    probes: Probes,
    pods: pods::PodNames,
    layout: CgroupLayout,
    resolver: CgroupResolver,
    block: BlockAttribution,
    groups: HashMap<CgroupId, Group>,
    watched: HashSet<CgroupId>,
    config: EngineConfig,
    node_cores: f64,
    network: NetworkState,
}

impl Engine {
    /// Loads and attaches the probes and finds the cgroup hierarchies.
    pub fn start(config: EngineConfig) -> anyhow::Result<Self> {
        crate::cgroup::open_dir::raise_open_files_limit();
        let layout = CgroupLayout::discover(config.hierarchy)?;
        info!(
            v2_root = ?layout.v2_root,
            v1_cpu_root = ?layout.v1_cpu_root,
            identifying = ?layout.identity,
            "cgroup hierarchies found; tasks are identified by their cgroup in the identifying hierarchy"
        );
        let probes = Probes::load(&ProbeSettings {
            sizes: config.map_sizes,
            dns: config.dns_ports,
            cgroup_v2_root: layout.v2_root.as_deref().filter(|_| layout.identity == Hierarchy::V2),
            btf_file: config.btf.as_deref(),
            hierarchy: layout.identity,
        })?;
        let resolver = CgroupResolver::new(layout.identity_root().to_path_buf(), config.tick);
        let mut pods = pods::PodNames::new(config.pod_logs.clone());
        pods.refresh_if_due();
        let block = BlockAttribution::new(&layout, config.tick);
        let network = NetworkState::new(config.network);
        Ok(Self {
            probes,
            pods,
            layout,
            resolver,
            block,
            groups: HashMap::new(),
            watched: HashSet::new(),
            network,
            config,
            node_cores: online_cpus(),
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

    /// Finds the pod-level cgroup of the pod `namespace/name`: its UID from
    /// the kubelet's log folders, then the cgroup whose path carries it.
    pub fn pod_cgroup(&mut self, namespace: &str, name: &str) -> anyhow::Result<(CgroupId, String)> {
        let uid = self.pods.pod_uid(namespace, name).with_context(|| {
            format!(
                "pod {namespace}/{name} not found in the kubelet's pod log folder; check the name and --pod-log-dir"
            )
        })?;
        self.resolver.walk();
        let found = self
            .resolver
            .known_ids()
            .filter_map(|id| Some((id, self.resolver.cached_path(id)?.to_owned())))
            .find(|(_, path)| pods::is_pod_cgroup_of(path, &uid));
        found.with_context(|| {
            format!(
                "no cgroup of pod {namespace}/{name} (uid {uid}) under {}; the pod may have stopped",
                self.layout.identity_root().display()
            )
        })
    }

    /// Reads every source once and returns the new state.
    pub fn tick(&mut self) -> Snapshot {
        let now = Instant::now();
        let runqueue = self.probes.runqueue.as_ref().map(|maps| maps.read()).unwrap_or_default();
        let mut neighbours =
            neighbours_by_waiter(self.probes.runqueue.as_ref().map(|maps| maps.read_neighbours()).unwrap_or_default());
        let throttle_delay = self.probes.throttle_delay.as_ref().map(|map| map.read()).unwrap_or_default();
        let iowait = self.probes.iowait.as_ref().map(|map| map.read()).unwrap_or_default();
        let mut block = match self.probes.block.as_mut() {
            Some(maps) => self.block.read(maps, &mut self.resolver),
            None => HashMap::new(),
        };

        let network = self.network.collect(&mut self.probes);

        self.resolver.walk_if_older_than(self.config.tick.max(CGROUP_WALK_INTERVAL));
        self.pods.refresh_if_due();
        let ids: HashSet<CgroupId> = runqueue
            .keys()
            .chain(throttle_delay.keys())
            .chain(iowait.keys())
            .chain(block.keys())
            .chain(network.dns.keys())
            .chain(network.connect.keys())
            .chain(self.watched.iter())
            .copied()
            .chain(self.resolver.known_ids())
            .collect();
        for id in &ids {
            let id = *id;
            let Some(path) = self.resolver.path_of(id).map(str::to_owned) else {
                self.forget(id);
                continue;
            };
            let (span, min_duration) = (self.config.window, self.config.min_duration);
            let layout = &self.layout;
            let group = self.groups.entry(id).or_insert_with(|| {
                debug!(cgroup = %path, id, "cgroup seen");
                Group {
                    cpu_dirs: open_cpu_dirs(layout, &path),
                    path: path.clone(),
                    window: Window::new(span),
                    stability: Stability::new(min_duration),
                    primary: None,
                    block_latency: Vec::new(),
                }
            });
            if group.path != path {
                // A renamed cgroup: on hybrid hosts its v1 directory is
                // found by the new path.
                group.cpu_dirs = open_cpu_dirs(layout, &path);
                group.path = path;
            }
            // The cgroup's own cpu.stat is gone when the cgroup is.
            let Some(cpu) = CpuStat::read_dirs(group.cpu_dirs.iter_mut().map(|(_, dir)| dir)) else {
                self.forget(id);
                continue;
            };
            let sample = Sample {
                at: now,
                runqueue: runqueue.get(&id).copied().unwrap_or(LatencyHistogram::ZERO),
                cpu,
                neighbours: neighbours.remove(&id).unwrap_or_default(),
                throttle_delay: throttle_delay.get(&id).copied().unwrap_or_default(),
                iowait: iowait.get(&id).copied().unwrap_or_default(),
                dns: network.dns.get(&id).copied().unwrap_or_default(),
                connect: network.connect.get(&id).cloned().unwrap_or_default(),
            };
            group.window.push(sample);
            group.block_latency = block.remove(&id).unwrap_or_default();
        }
        // Groups neither in the maps nor in the tree nor watched are gone.
        let stale: Vec<CgroupId> = self.groups.keys().filter(|id| !ids.contains(id)).copied().collect();
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
        if let Some(map) = self.probes.throttle_delay.as_mut() {
            map.remove(id);
        }
        if let Some(map) = self.probes.iowait.as_mut() {
            map.remove(id);
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
        let dns_timeout = self.config.network.dns_timeout;
        let mut groups = Vec::with_capacity(self.groups.len());
        for (&id, group) in &mut self.groups {
            let Some(latest) = group.window.latest() else { continue };
            let (runqueue_total, cpu) = (latest.runqueue, latest.cpu);
            let (throttle_delay_total, iowait_total) = (latest.throttle_delay, latest.iowait);
            let cpu_limit = cpu_limit_of(&mut group.cpu_dirs);
            let delta = group.window.delta();
            let evidence = delta.as_ref().map(|delta| evidence_from(delta, cpu_limit, node_cores, dns_timeout));
            let neighbours =
                delta.as_ref().map(|delta| name_neighbours(&mut self.resolver, id, delta)).unwrap_or_default();
            let verdict = evidence
                .as_ref()
                .map(|evidence| group.stability.update(&classifier::classify(evidence, &thresholds), now));
            if let Some(verdict) = &verdict {
                log_primary_change(group, verdict.primary);
            }
            groups.push(GroupReport {
                id,
                identity: self.pods.identify(&group.path),
                path: group.path.clone(),
                runqueue_total,
                cpu,
                cpu_limit,
                throttle_delay_total,
                iowait_total,
                block_latency: group.block_latency.clone(),
                dns: latest.dns,
                connect: latest.connect,
                connect_window: delta.map(|delta| delta.connect),
                evidence,
                verdict,
                neighbours,
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
        Snapshot { groups, probes, taken_at: Some(now) }
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

/// Groups the cumulative (waiter, runner) totals by waiter.
fn neighbours_by_waiter(pairs: HashMap<NeighbourKey, u64>) -> HashMap<CgroupId, Vec<(CgroupId, u64)>> {
    let mut by_waiter: HashMap<CgroupId, Vec<(CgroupId, u64)>> = HashMap::new();
    for (key, wait_ns) in pairs {
        by_waiter.entry(key.waiter).or_default().push((key.runner, wait_ns));
    }
    by_waiter
}

/// Names the other groups behind a group's waits, largest share first.
fn name_neighbours(resolver: &mut CgroupResolver, id: CgroupId, delta: &window::Delta) -> Vec<Neighbour> {
    let total_ns = delta.runqueue.total_ns;
    if total_ns == 0 {
        return Vec::new();
    }
    delta
        .neighbours
        .iter()
        .filter(|(runner, _)| *runner != id)
        .filter_map(|&(runner, wait_ns)| {
            Some(Neighbour {
                cgroup: resolver.path_of(runner)?.to_owned(),
                wait_seconds: wait_ns as f64 / 1e9,
                share: (wait_ns as f64 / total_ns as f64).min(1.0),
            })
        })
        .take(MAX_NEIGHBOURS)
        .collect()
}

fn cpu_limit_of(cpu_dirs: &mut [(Hierarchy, CgroupDir)]) -> Option<CpuLimit> {
    // On hybrid hosts the limit lives in the v1 cpu hierarchy; a v2 group
    // with the cpu controller has cpu.max instead.
    cpu_dirs.iter_mut().find_map(|(hierarchy, dir)| CpuLimit::read(dir, *hierarchy))
}

fn open_cpu_dirs(layout: &CgroupLayout, path: &str) -> Vec<(Hierarchy, CgroupDir)> {
    layout.cpu_dirs(path).into_iter().map(|(hierarchy, dir)| (hierarchy, CgroupDir::open(dir))).collect()
}

fn evidence_from(
    delta: &window::Delta,
    cpu_limit: Option<CpuLimit>,
    node_cores: f64,
    dns_timeout: Duration,
) -> Evidence {
    let seconds = delta.elapsed.as_secs_f64();
    Evidence {
        window_seconds: seconds,
        cpu_used_cores: delta.cpu_usage_ns.filter(|_| seconds > 0.0).map(|ns| ns as f64 / 1e9 / seconds),
        cpu_limit_cores: cpu_limit.map(|limit| limit.cores()),
        node_cores,
        runqueue_wait_seconds: delta.runqueue.total_ns as f64 / 1e9,
        runqueue_waits: delta.runqueue.count,
        runqueue_p50_seconds: quantile_ns(&delta.runqueue, 0.50).map(|ns| ns / 1e9),
        runqueue_p99_seconds: quantile_ns(&delta.runqueue, 0.99).map(|ns| ns / 1e9),
        throttle: ThrottleEvidence::new(&delta.throttle, cpu_limit, seconds),
        iowait: IoWaitEvidence { wait_seconds: delta.iowait.total_ns as f64 / 1e9, waits: delta.iowait.count },
        dns: DnsEvidence::from_delta(&delta.dns, dns_timeout),
        connect: ConnectEvidence::from_delta(&delta.connect),
    }
}

/// CPUs online on the node; the agent's own affinity mask does not matter.
fn online_cpus() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if online > 0 { online as f64 } else { 1.0 }
}

/// How often the cgroup tree is walked for cgroups made since the last walk.
const CGROUP_WALK_INTERVAL: Duration = Duration::from_secs(5);

/// The latest snapshot, shared between the engine thread and readers.
pub type SharedSnapshot = Arc<std::sync::RwLock<Arc<Snapshot>>>;
