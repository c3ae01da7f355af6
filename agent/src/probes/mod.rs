//! Loading and attaching the probes, and reading what they counted.
//!
//! Each probe program is attached on its own: one that fails to load or
//! attach (an old kernel without the hook, a verifier that rejects it)
//! degrades its signal alone, and is logged once with the reason.

pub mod block;
mod offsets;
pub mod runqueue;
mod spec;
pub mod wait_total;

use std::time::Duration;

use agent_common::{
    block::{BLOCK_LATENCY_MAP, BLOCK_STARTED_MAP},
    iowait::{IOWAIT_SLOTS_MASK_SYMBOL, IOWAIT_STARTED_MAP, IOWAIT_TOTAL_MAP},
    kernel::KERNEL_OFFSETS_SYMBOL,
    probe::{PROBE_STATS_MAP, ProbeStats},
    runqueue::{RUNQ_ENQUEUED_MAP, RUNQ_LATENCY_MAP, RUNQ_NEIGHBOURS_MAP},
    throttle::{THROTTLE_DELAY_MAP, THROTTLE_STARTED_MAP},
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
use wait_total::WaitTotalMap;

/// The probe object built by `build.rs` from the `agent-ebpf` crate.
static PROBE_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/agent-ebpf"));

/// Map sizes, from the agent's configuration.
#[derive(Clone, Copy, Debug)]
pub struct MapSizes {
    /// Cgroups tracked per signal; waits of further cgroups are counted as
    /// lost until the agent removes entries of deleted cgroups.
    pub max_cgroups: u32,
    /// Threads that can be runnable and not yet running (or in I/O wait)
    /// at once.
    pub max_threads: u32,
    /// Block requests that can be in flight at once, node-wide.
    pub max_block_requests: u32,
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
    /// Throttle delay per cgroup, measured by the `sched_switch` program.
    pub throttle_delay: Option<WaitTotalMap>,
    /// Block-I/O wait per cgroup, measured by the `sched_switch` program.
    pub iowait: Option<WaitTotalMap>,
    pub block: Option<block::BlockMaps>,
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
        let offsets = offsets::kernel_offsets(&btf, hierarchy)?;
        info!(
            throttle_source = offsets::throttle_source_name(offsets.offsets.throttle_source),
            "throttle delay source chosen"
        );

        // The I/O wait array is indexed by masked thread id, so its size is
        // a power of two.
        let iowait_slots = sizes.max_threads.max(2).checked_next_power_of_two().unwrap_or(1 << 31);
        let iowait_slots_mask = iowait_slots - 1;
        let mut ebpf = EbpfLoader::new()
            .override_global(KERNEL_OFFSETS_SYMBOL, &offsets.offsets, true)
            .override_global(IOWAIT_SLOTS_MASK_SYMBOL, &iowait_slots_mask, true)
            .map_max_entries(RUNQ_LATENCY_MAP, sizes.max_cgroups)
            .map_max_entries(RUNQ_NEIGHBOURS_MAP, sizes.max_cgroups.saturating_mul(4))
            .map_max_entries(RUNQ_ENQUEUED_MAP, sizes.max_threads)
            .map_max_entries(THROTTLE_DELAY_MAP, sizes.max_cgroups)
            .map_max_entries(IOWAIT_TOTAL_MAP, sizes.max_cgroups)
            .map_max_entries(IOWAIT_STARTED_MAP, iowait_slots)
            .map_max_entries(THROTTLE_STARTED_MAP, iowait_slots)
            // One entry per cgroup and disk it uses; a cgroup rarely uses
            // more than a few disks.
            .map_max_entries(BLOCK_LATENCY_MAP, sizes.max_cgroups.saturating_mul(4))
            .map_max_entries(BLOCK_STARTED_MAP, sizes.max_block_requests)
            .load(PROBE_OBJECT)
            .map_err(|error| load_hint(error.into()))?;

        let states = PROBES
            .iter()
            .map(|spec| {
                let missing = (spec.signal == Signal::BlockLatency)
                    .then_some(offsets.block_unavailable.as_deref())
                    .flatten();
                let skipped = match missing {
                    Some(reason) => Some(reason.to_owned()),
                    None => attach(&mut ebpf, spec).err().map(|error| format!("{error:#}")),
                };
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

        let scheduler = signal_attached(&states, Signal::RunQueue);
        let runqueue = scheduler
            .then(|| runqueue::RunQueueMaps::take(&mut ebpf))
            .transpose()?;
        let throttle_delay = scheduler
            .then(|| WaitTotalMap::take(&mut ebpf, THROTTLE_DELAY_MAP))
            .transpose()?;
        let iowait = scheduler
            .then(|| WaitTotalMap::take(&mut ebpf, IOWAIT_TOTAL_MAP))
            .transpose()?;
        let block = signal_attached(&states, Signal::BlockLatency)
            .then(|| block::BlockMaps::take(&mut ebpf))
            .transpose()?;
        let probe_stats = PerCpuArray::try_from(
            ebpf.take_map(PROBE_STATS_MAP)
                .with_context(|| format!("probe object has no map {PROBE_STATS_MAP}"))?,
        )?;

        Ok(Self {
            ebpf,
            states,
            runqueue,
            throttle_delay,
            iowait,
            block,
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
