//! The engine both `agent run` and `agent classify` drive: on each tick it
//! reads the probes' maps and the cgroup files, keeps a window per cgroup,
//! and classifies every cgroup from its window.

pub mod block;
pub mod iowait;
pub mod throttle;
pub mod window;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use agent_common::{histogram::LatencyHistogram, wait_total::WaitTotal};
use tracing::{debug, info};

use crate::{
    cgroup::{CgroupId, CgroupLayout, CgroupResolver, cpu_stat::{CpuLimit, CpuStat}},
    engine::{block::{BlockAttribution, BlockSeries}, iowait::IoWaitEvidence, throttle::ThrottleEvidence},
    classifier::{self, Class, Evidence, Thresholds, Verdict},
    probes::{MapSizes, ProbeCost, ProbeSpec, ProbeState, Probes},
};
use window::{Sample, Window, quantile_ns};

#[derive(Clone, Copy, Debug)]
pub struct EngineConfig {
    /// How often maps and cgroup files are read.
    pub tick: Duration,
    /// Span of the sliding window the classifier reads.
    pub window: Duration,
    pub thresholds: Thresholds,
    pub map_sizes: MapSizes,
}

/// One cgroup as of the latest tick.
#[derive(Clone, Debug)]
pub struct GroupReport {
    pub id: CgroupId,
    /// Path relative to the v2 root, starting with `/`.
    pub path: String,
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
    block_latency: Vec<BlockSeries>,
}

pub struct Engine {
    probes: Probes,
    layout: CgroupLayout,
    resolver: CgroupResolver,
    block: BlockAttribution,
    groups: HashMap<CgroupId, Group>,
    watched: HashSet<CgroupId>,
    config: EngineConfig,
    node_cores: f64,
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
        let probes = Probes::load(config.map_sizes)?;
        let resolver = CgroupResolver::new(layout.v2_root.clone(), config.tick);
        let block = BlockAttribution::new(&layout, config.tick);
        Ok(Self {
            probes,
            layout,
            resolver,
            block,
            groups: HashMap::new(),
            watched: HashSet::new(),
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

    /// Reads every source once and returns the new state.
    pub fn tick(&mut self) -> Snapshot {
        let now = Instant::now();
        let runqueue = self
            .probes
            .runqueue
            .as_ref()
            .map(|maps| maps.read())
            .unwrap_or_default();
        let throttle_delay = self.probes.throttle_delay.as_ref().map(|map| map.read()).unwrap_or_default();
        let iowait = self.probes.iowait.as_ref().map(|map| map.read()).unwrap_or_default();
        let mut block = match self.probes.block.as_mut() {
            Some(maps) => self.block.read(maps, &mut self.resolver),
            None => HashMap::new(),
        };

        let ids: HashSet<CgroupId> = runqueue
            .keys()
            .chain(throttle_delay.keys())
            .chain(iowait.keys())
            .chain(block.keys())
            .chain(self.watched.iter())
            .copied()
            .collect();
        for id in &ids {
            let id = *id;
            let Some(path) = self.resolver.path_of(id).map(str::to_owned) else {
                self.forget(id);
                continue;
            };
            let sample = Sample {
                at: now,
                runqueue: runqueue.get(&id).copied().unwrap_or(LatencyHistogram::ZERO),
                cpu: throttle::read_cpu_stat(&self.layout, &path),
                throttle_delay: throttle_delay.get(&id).copied().unwrap_or_default(),
                iowait: iowait.get(&id).copied().unwrap_or_default(),
            };
            let span = self.config.window;
            let group = self.groups.entry(id).or_insert_with(|| {
                debug!(cgroup = %path, id, "cgroup seen");
                Group {
                    path: path.clone(),
                    window: Window::new(span),
                    primary: None,
                    block_latency: Vec::new(),
                }
            });
            group.path = path;
            group.window.push(sample);
            group.block_latency = block.remove(&id).unwrap_or_default();
        }
        // Groups with no map entry and no watcher have left the maps.
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
    }

    fn snapshot(&mut self, now: Instant) -> Snapshot {
        let thresholds = self.config.thresholds;
        let node_cores = self.node_cores;
        let layout = &self.layout;
        let mut groups = Vec::with_capacity(self.groups.len());
        for (&id, group) in &mut self.groups {
            let Some(latest) = group.window.latest().copied() else { continue };
            let cpu_limit = cpu_limit_of(layout, &group.path);
            let evidence = group
                .window
                .delta()
                .map(|delta| evidence_from(&delta, cpu_limit, node_cores));
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
                throttle_delay_total: latest.throttle_delay,
                iowait_total: latest.iowait,
                block_latency: group.block_latency.clone(),
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
        throttle: ThrottleEvidence::new(&delta.throttle, cpu_limit, seconds),
        iowait: IoWaitEvidence {
            wait_seconds: delta.iowait.total_ns as f64 / 1e9,
            waits: delta.iowait.count,
        },
    }
}

/// CPUs online on the node; the agent's own affinity mask does not matter.
fn online_cpus() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if online > 0 { online as f64 } else { 1.0 }
}

/// The latest snapshot, shared between the engine thread and readers.
pub type SharedSnapshot = Arc<std::sync::RwLock<Arc<Snapshot>>>;
