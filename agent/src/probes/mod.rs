//! Loading and attaching the probes, and reading what they counted.
//!
//! Each probe program is attached on its own: one that fails to load or
//! attach (an old kernel without the hook, a verifier that rejects it)
//! degrades its signal alone, and is logged once with the reason.

pub mod runqueue;
mod spec;

use std::time::Duration;

use agent_common::{
    kernel::{CGROUP_HIERARCHY_V1_CPU, CGROUP_HIERARCHY_V2, KERNEL_OFFSETS_SYMBOL, KernelOffsets},
    probe::{PROBE_STATS_MAP, ProbeStats},
};
use anyhow::{Context as _, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray},
    programs::RawTracePoint,
};
use tracing::{info, warn};

use crate::{cgroup::Hierarchy, kernel_btf::KernelBtf};
pub use spec::{Hook, PROBES, ProbeSpec, Signal};

/// The probe object built by `build.rs` from the `agent-ebpf` crate.
static PROBE_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/agent-ebpf"));

/// Map sizes, from the agent's configuration.
#[derive(Clone, Copy, Debug)]
pub struct MapSizes {
    /// Cgroups tracked per signal; waits of further cgroups are counted as
    /// lost until the agent removes entries of deleted cgroups.
    pub max_cgroups: u32,
    /// Threads that can be runnable and not yet running at once.
    pub max_threads: u32,
}

/// Outcome of attaching one probe program at start-up.
#[derive(Clone, Debug)]
pub struct ProbeState {
    pub spec: &'static ProbeSpec,
    /// `None` when attached; else why it was skipped.
    pub skipped: Option<String>,
}

/// Cost of one probe program as the kernel accounts it.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProbeCost {
    pub stats: ProbeStats,
    /// Run count and run time from the kernel; zero unless BPF statistics
    /// are on (`kernel.bpf_stats_enabled=1` or `--bpf-stats`).
    pub run_count: u64,
    pub run_time: Duration,
}

/// The loaded probes, their maps, and what attached.
pub struct Probes {
    ebpf: Ebpf,
    pub states: Vec<ProbeState>,
    pub runqueue: Option<runqueue::RunQueueMaps>,
    probe_stats: PerCpuArray<MapData, ProbeStats>,
}

impl Probes {
    /// Loads the probe object and attaches every probe that the kernel
    /// supports.
    pub fn load(sizes: MapSizes, btf_file: Option<&std::path::Path>, hierarchy: Hierarchy) -> anyhow::Result<Self> {
        if PROBE_OBJECT.is_empty() {
            bail!("this agent was built with AYA_BUILD_SKIP set, so it has no probes; rebuild it without that variable");
        }
        let btf = match btf_file {
            Some(path) => KernelBtf::from_file(path)?,
            None => KernelBtf::from_sys_fs()?,
        };
        let offsets = kernel_offsets(&btf, hierarchy)?;

        let mut ebpf = EbpfLoader::new()
            .override_global(KERNEL_OFFSETS_SYMBOL, &offsets, true)
            .map_max_entries(agent_common::runqueue::RUNQ_LATENCY_MAP, sizes.max_cgroups)
            .map_max_entries(agent_common::runqueue::RUNQ_NEIGHBOURS_MAP, sizes.max_cgroups.saturating_mul(4))
            .map_max_entries(agent_common::runqueue::RUNQ_ENQUEUED_MAP, sizes.max_threads)
            .load(PROBE_OBJECT)
            .map_err(|error| load_hint(error.into()))?;

        let states = PROBES
            .iter()
            .map(|spec| {
                let skipped = attach(&mut ebpf, spec).err().map(|error| format!("{error:#}"));
                match &skipped {
                    None => info!(probe = spec.program, hook = %spec.hook, signal = %spec.signal, "probe attached"),
                    Some(reason) => warn!(
                        probe = spec.program,
                        hook = %spec.hook,
                        needs = spec.kernel_feature,
                        %reason,
                        "probe skipped; its signal is not measured"
                    ),
                }
                ProbeState { spec, skipped }
            })
            .collect::<Vec<_>>();

        let runqueue = signal_attached(&states, Signal::RunQueue)
            .then(|| runqueue::RunQueueMaps::take(&mut ebpf))
            .transpose()?;
        let probe_stats = PerCpuArray::try_from(
            ebpf.take_map(PROBE_STATS_MAP)
                .with_context(|| format!("probe object has no map {PROBE_STATS_MAP}"))?,
        )?;

        Ok(Self {
            ebpf,
            states,
            runqueue,
            probe_stats,
        })
    }

    /// Events handled and lost by each probe, and its run time when the
    /// kernel's BPF statistics are on.
    pub fn costs(&self) -> Vec<(&'static ProbeSpec, ProbeCost)> {
        self.states
            .iter()
            .filter(|state| state.skipped.is_none())
            .map(|state| {
                let mut cost = ProbeCost::default();
                if let Ok(per_cpu) = self.probe_stats.get(&(state.spec.id as u32), 0) {
                    for stats in per_cpu.iter() {
                        cost.stats.events += stats.events;
                        cost.stats.lost_map_full += stats.lost_map_full;
                        cost.stats.lost_read_error += stats.lost_read_error;
                    }
                }
                if let Some(program) = self.ebpf.program(state.spec.program)
                    && let Ok(info) = program.info()
                {
                    cost.run_count = info.run_count();
                    cost.run_time = info.run_time();
                }
                (state.spec, cost)
            })
            .collect()
    }
}

fn signal_attached(states: &[ProbeState], signal: Signal) -> bool {
    states
        .iter()
        .filter(|state| state.spec.signal == signal)
        .all(|state| state.skipped.is_none())
}

fn attach(ebpf: &mut Ebpf, spec: &ProbeSpec) -> anyhow::Result<()> {
    let program = ebpf
        .program_mut(spec.program)
        .with_context(|| format!("probe object has no program {}", spec.program))?;
    match spec.hook {
        Hook::RawTracepoint(tracepoint) => {
            let program: &mut RawTracePoint = program.try_into()?;
            program.load().context("loading failed (verifier log above, if any)")?;
            program
                .attach(tracepoint)
                .with_context(|| format!("attaching to raw tracepoint {tracepoint} failed"))?;
        }
    }
    Ok(())
}

/// Reads the struct offsets the probes need from the running kernel.
fn kernel_offsets(btf: &KernelBtf, hierarchy: Hierarchy) -> anyhow::Result<KernelOffsets> {
    // Linux 5.14 renamed task_struct.state (long) to __state (unsigned int).
    let state = btf
        .member_offset("task_struct", "__state")
        .or_else(|_| btf.member_offset("task_struct", "state"))?;
    Ok(KernelOffsets {
        task_pid: btf.member_offset("task_struct", "pid")?.byte_offset,
        task_state: state.byte_offset,
        task_state_size: state.size,
        task_cgroups: btf.member_offset("task_struct", "cgroups")?.byte_offset,
        css_set_dfl_cgrp: btf.member_offset("css_set", "dfl_cgrp")?.byte_offset,
        cgroup_kn: btf.member_offset("cgroup", "kn")?.byte_offset,
        kernfs_node_id: btf.member_offset("kernfs_node", "id")?.byte_offset,
        cgroup_hierarchy: match hierarchy {
            Hierarchy::V2 => CGROUP_HIERARCHY_V2,
            Hierarchy::V1Cpu => CGROUP_HIERARCHY_V1_CPU,
        },
        css_set_subsys_cpu: subsys_offset(btf, "cpu_cgrp_id")?,
        css_cgroup: btf.member_offset("cgroup_subsys_state", "cgroup")?.byte_offset,
    })
}

/// Offset of `css_set.subsys[id]`, an array of pointers indexed by the
/// controller's `enum cgroup_subsys_id` value (which depends on the
/// kernel's configuration, so it comes from BTF too).
fn subsys_offset(btf: &KernelBtf, controller_id: &str) -> anyhow::Result<u32> {
    let index = u32::try_from(btf.enumerator(controller_id)?)?;
    let array = btf.member_offset("css_set", "subsys")?.byte_offset;
    Ok(array + index * 8)
}

/// Adds the usual cause to a load failure that comes from missing
/// privilege.
fn load_hint(error: anyhow::Error) -> anyhow::Error {
    let text = format!("{error:#}");
    if text.contains("Operation not permitted") || text.contains("EPERM") {
        error.context(
            "loading the probes was not permitted; the agent needs CAP_BPF and CAP_PERFMON \
             (or CAP_SYS_ADMIN on kernels before 5.8); run it as root or grant those capabilities",
        )
    } else {
        error.context("loading the probe object failed")
    }
}
