//! Loading and attaching the probes, and reading what they counted.
//!
//! Each probe program is attached on its own: one that fails to load or
//! attach (an old kernel without the hook, a verifier that rejects it)
//! degrades its signal alone, and is logged once with the reason.

pub mod block;
pub mod connect;
pub mod dns;
mod offsets;
pub mod runqueue;
mod spec;
pub mod wait_total;

use std::{fs::File, path::Path, time::Duration};

use agent_common::{
    block::{BLOCK_LATENCY_MAP, BLOCK_STARTED_MAP},
    connect::{CONNECT_COUNTERS_MAP, CONNECT_PENDING_MAP},
    dns::{DNS_CONFIG_SYMBOL, DNS_COUNTERS_MAP, DNS_PENDING_MAP, DnsConfig},
    iowait::IOWAIT_TOTAL_MAP,
    kernel::KERNEL_OFFSETS_SYMBOL,
    probe::{PROBE_STATS_MAP, ProbeStats},
    runqueue::{RUNQ_LATENCY_MAP, RUNQ_NEIGHBOURS_MAP, THREAD_SLOTS_MASK_SYMBOL, THREAD_WAITS_MAP},
    throttle::THROTTLE_DELAY_MAP,
};
use anyhow::{Context as _, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray},
    programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, RawTracePoint},
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
    /// Thread slots requested. The probes get the smaller of this and
    /// `kernel.pid_max`, rounded up to a power of two.
    pub max_threads: u32,
    /// Block requests that can be in flight at once, node-wide.
    pub max_block_requests: u32,
    /// DNS queries in flight (sent, not yet answered or timed out) at once.
    pub max_dns_pending: u32,
    /// TCP connects in flight (SYN sent, not yet ended) at once.
    pub max_connects_pending: u32,
    /// (cgroup, destination) pairs with connect counters, node-wide.
    pub max_connect_entries: u32,
}

/// Probe settings besides map sizes: DNS ports and the attach point.
#[derive(Clone, Copy, Debug)]
pub struct ProbeSettings<'a> {
    pub sizes: MapSizes,
    /// Ports the DNS probes treat as DNS servers.
    pub dns: DnsConfig,
    /// Mount point of the cgroup v2 hierarchy, where cgroup_skb programs
    /// attach; `None` when tasks are identified by their v1 `cpu`
    /// cgroup, since packets carry only v2 cgroup ids.
    pub cgroup_v2_root: Option<&'a Path>,
    /// BTF file to use instead of the running kernel's.
    pub btf_file: Option<&'a Path>,
    /// The hierarchy whose cgroup ids the probes report.
    pub hierarchy: Hierarchy,
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
    /// are on (`kernel.bpf_stats_enabled=1`).
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
    pub dns: Option<dns::DnsMaps>,
    pub connect: Option<connect::ConnectMaps>,
    probe_stats: PerCpuArray<MapData, ProbeStats>,
}

impl Probes {
    /// Loads the probe object and attaches every probe that the kernel
    /// supports.
    pub fn load(settings: &ProbeSettings<'_>) -> anyhow::Result<Self> {
        let sizes = settings.sizes;
        if PROBE_OBJECT.is_empty() {
            bail!(
                "this agent was built with AYA_BUILD_SKIP set, so it has no probes; rebuild it without that variable"
            );
        }
        let btf = match settings.btf_file {
            Some(path) => KernelBtf::from_file(path)?,
            None => KernelBtf::from_sys_fs()?,
        };
        let mut offsets = offsets::kernel_offsets(&btf, settings.hierarchy)?;
        offsets.offsets.current_task_btf = u32::from(settings.btf_file.is_none() && has_current_task_btf());
        info!(
            throttle_source = offsets::throttle_source_name(offsets.offsets.throttle_source),
            "throttle delay source chosen"
        );
        info!(
            state_source = if offsets.offsets.sched_switch_prev_state != 0 {
                "sched_switch prev_state argument"
            } else {
                "task_struct (the kernel's BTF has no sched_switch type with prev_state)"
            },
            "task state source chosen"
        );
        info!(
            iowait_source = if offsets.offsets.current_task_btf != 0 {
                "direct load through bpf_get_current_task_btf"
            } else {
                "bpf_probe_read_kernel (Linux before 5.11, or BTF from --btf)"
            },
            "I/O wait flag read chosen"
        );
        // Without these the connect probe alone is skipped, with the reason.
        let sock_offsets = add_sock_offsets(&btf, &mut offsets.offsets).map_err(|error| format!("{error:#}"));

        let pid_max = read_pid_max();
        let thread_slots = thread_slots(sizes.max_threads, pid_max);
        log_thread_slots(thread_slots, pid_max);
        let thread_slots_mask = thread_slots - 1;
        let mut ebpf = EbpfLoader::new()
            .override_global(KERNEL_OFFSETS_SYMBOL, &offsets.offsets, true)
            .override_global(THREAD_SLOTS_MASK_SYMBOL, &thread_slots_mask, true)
            .map_max_entries(THREAD_WAITS_MAP, thread_slots)
            .map_max_entries(RUNQ_LATENCY_MAP, sizes.max_cgroups)
            .map_max_entries(RUNQ_NEIGHBOURS_MAP, sizes.max_cgroups.saturating_mul(4))
            .map_max_entries(THROTTLE_DELAY_MAP, sizes.max_cgroups)
            .map_max_entries(IOWAIT_TOTAL_MAP, sizes.max_cgroups)
            // One entry per cgroup and disk it uses; a cgroup rarely uses
            // more than a few disks.
            .map_max_entries(BLOCK_LATENCY_MAP, sizes.max_cgroups.saturating_mul(4))
            .map_max_entries(BLOCK_STARTED_MAP, sizes.max_block_requests)
            .override_global(DNS_CONFIG_SYMBOL, &settings.dns, true)
            .map_max_entries(DNS_COUNTERS_MAP, sizes.max_cgroups)
            .map_max_entries(DNS_PENDING_MAP, sizes.max_dns_pending)
            .map_max_entries(CONNECT_PENDING_MAP, sizes.max_connects_pending)
            .map_max_entries(CONNECT_COUNTERS_MAP, sizes.max_connect_entries)
            .load(PROBE_OBJECT)
            .map_err(|error| load_hint(error.into()))?;

        let states = PROBES
            .iter()
            .map(|spec| {
                let skipped = match (spec.signal, &sock_offsets, settings.cgroup_v2_root) {
                    (Signal::BlockLatency, ..) if offsets.block_unavailable.is_some() => {
                        offsets.block_unavailable.clone()
                    }
                    (Signal::TcpConnect, Err(reason), _) => {
                        Some(format!("kernel BTF lacks a struct sock field: {reason}"))
                    }
                    (Signal::Dns, _, None) => Some(
                        "packets carry only cgroup v2 ids, and this host identifies tasks by their v1 cpu cgroup"
                            .to_owned(),
                    ),
                    _ => attach(&mut ebpf, spec, settings.cgroup_v2_root).err().map(|error| format!("{error:#}")),
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
        let runqueue = scheduler.then(|| runqueue::RunQueueMaps::take(&mut ebpf)).transpose()?;
        let throttle_delay = scheduler.then(|| WaitTotalMap::take(&mut ebpf, THROTTLE_DELAY_MAP)).transpose()?;
        let iowait = scheduler.then(|| WaitTotalMap::take(&mut ebpf, IOWAIT_TOTAL_MAP)).transpose()?;
        let block =
            signal_attached(&states, Signal::BlockLatency).then(|| block::BlockMaps::take(&mut ebpf)).transpose()?;
        let dns = signal_attached(&states, Signal::Dns).then(|| dns::DnsMaps::take(&mut ebpf)).transpose()?;
        let connect =
            signal_attached(&states, Signal::TcpConnect).then(|| connect::ConnectMaps::take(&mut ebpf)).transpose()?;
        let probe_stats = PerCpuArray::try_from(
            ebpf.take_map(PROBE_STATS_MAP).with_context(|| format!("probe object has no map {PROBE_STATS_MAP}"))?,
        )?;

        Ok(Self { ebpf, states, runqueue, throttle_delay, iowait, block, dns, connect, probe_stats })
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
                        cost.stats.lost_slot_shared += stats.lost_slot_shared;
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
    states.iter().filter(|state| state.spec.signal == signal).all(|state| state.skipped.is_none())
}

fn attach(ebpf: &mut Ebpf, spec: &ProbeSpec, cgroup_v2_root: Option<&Path>) -> anyhow::Result<()> {
    let program =
        ebpf.program_mut(spec.program).with_context(|| format!("probe object has no program {}", spec.program))?;
    match spec.hook {
        Hook::RawTracepoint(tracepoint) => {
            let program: &mut RawTracePoint = program.try_into()?;
            program.load().context("loading failed (verifier log above, if any)")?;
            program.attach(tracepoint).with_context(|| format!("attaching to raw tracepoint {tracepoint} failed"))?;
        }
        Hook::CgroupSkbIngress | Hook::CgroupSkbEgress => {
            let attach_type = match spec.hook {
                Hook::CgroupSkbIngress => CgroupSkbAttachType::Ingress,
                _ => CgroupSkbAttachType::Egress,
            };
            let cgroup_v2_root = cgroup_v2_root.context("no cgroup v2 hierarchy is mounted")?;
            let program: &mut CgroupSkb = program.try_into()?;
            program.load().context("loading failed (verifier log above, if any)")?;
            let root = File::open(cgroup_v2_root)
                .with_context(|| format!("opening the cgroup v2 root {} failed", cgroup_v2_root.display()))?;
            // On Linux 5.7 and later aya attaches through a bpf link, which
            // always runs next to other programs on the root (a CNI, another
            // agent). The kernel rejects link flags, so the mode must be
            // Single (flags 0). Older kernels get an exclusive attachment.
            program.attach(&root, attach_type, CgroupAttachMode::Single).with_context(|| {
                format!(
                    "attaching to the cgroup v2 root {} failed; cgroup_skb programs need CAP_NET_ADMIN",
                    cgroup_v2_root.display()
                )
            })?;
        }
    }
    Ok(())
}

/// Returns the number of thread slots: one per possible thread id when
/// `max_threads` covers the kernel's `pid_max`, else `max_threads`. It is a
/// power of two because the probes index the slots by masking the thread id.
fn thread_slots(max_threads: u32, pid_max: Option<u32>) -> u32 {
    let needed = match pid_max {
        Some(pid_max) => pid_max.min(max_threads),
        None => max_threads,
    };
    needed.max(2).checked_next_power_of_two().unwrap_or(1 << 31)
}

/// Reads the running kernel's release, such as `6.18.44-fc-v1252`.
pub fn kernel_release() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|release| release.trim().to_owned())
}

/// Tells whether the running kernel offers `bpf_get_current_task_btf()`,
/// added in Linux 5.11. A kernel whose release cannot be read or parsed is
/// taken not to, which only costs the probes a helper call per read.
fn has_current_task_btf() -> bool {
    kernel_release().is_some_and(|release| release_at_least(&release, (5, 11)))
}

/// Tells whether a kernel release such as `6.18.44-fc-v1252` is at least
/// `major.minor`.
fn release_at_least(release: &str, (major, minor): (u32, u32)) -> bool {
    let mut numbers = release.trim().split(['.', '-']).map(|part| part.parse::<u32>().ok());
    match (numbers.next().flatten(), numbers.next().flatten()) {
        (Some(found_major), Some(found_minor)) => (found_major, found_minor) >= (major, minor),
        _ => false,
    }
}

/// Reads `kernel.pid_max`; thread ids are below it.
fn read_pid_max() -> Option<u32> {
    let path = "/proc/sys/kernel/pid_max";
    match std::fs::read_to_string(path).map(|text| text.trim().parse::<u32>()) {
        Ok(Ok(pid_max)) => Some(pid_max),
        Ok(Err(error)) => {
            warn!(%path, %error, "cannot parse pid_max; sizing thread slots by --max-threads alone");
            None
        }
        Err(error) => {
            warn!(%path, %error, "cannot read pid_max; sizing thread slots by --max-threads alone");
            None
        }
    }
}

/// Logs how many thread slots the scheduler probes have, and whether
/// threads can share one.
fn log_thread_slots(slots: u32, pid_max: Option<u32>) {
    match pid_max {
        Some(pid_max) if pid_max <= slots => info!(slots, pid_max, "thread slots: one per thread id"),
        None => info!(
            slots,
            "thread slots: pid_max unknown, so threads may share a slot; a wait lost that way counts as slot_shared"
        ),
        Some(_) => info!(
            slots,
            ?pid_max,
            "thread slots: threads whose ids are equal modulo the slot count share a slot, \
             and a wait lost that way counts as slot_shared; raise --max-threads to avoid it"
        ),
    }
}

/// Adds the `struct sock` offsets the connect probe reads.
fn add_sock_offsets(btf: &KernelBtf, offsets: &mut agent_common::kernel::KernelOffsets) -> anyhow::Result<()> {
    let common = btf.member_offset("sock", "__sk_common")?.byte_offset;
    offsets.sock_family = common + btf.member_offset("sock_common", "skc_family")?.byte_offset;
    offsets.sock_daddr = common + btf.member_offset("sock_common", "skc_daddr")?.byte_offset;
    // Missing on kernels built without IPv6.
    offsets.sock_v6_daddr = common + btf.member_offset("sock_common", "skc_v6_daddr")?.byte_offset;
    offsets.sock_dport = common + btf.member_offset("sock_common", "skc_dport")?.byte_offset;
    offsets.sock_err = btf.member_offset("sock", "sk_err")?.byte_offset;
    // Before Linux 5.6 sk_protocol was an 8-bit bitfield. An offset of 0
    // makes the probe skip the protocol filter.
    let protocol = btf.member_offset("sock", "sk_protocol")?;
    offsets.sock_protocol = if protocol.bitfield_size == 0 && protocol.size == 2 { protocol.byte_offset } else { 0 };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_at_least_compares_major_then_minor() {
        assert!(release_at_least("6.18.44-fc-v1252\n", (5, 11)));
        assert!(release_at_least("5.11.0", (5, 11)));
        assert!(release_at_least("5.15", (5, 11)));
        assert!(!release_at_least("5.10.209-198.858.amzn2.x86_64", (5, 11)));
        assert!(!release_at_least("4.18.0-553.el8_10.x86_64", (5, 11)));
        assert!(!release_at_least("", (5, 11)));
        assert!(!release_at_least("custom", (5, 11)));
    }

    #[test]
    fn thread_slots_cover_pid_max_when_allowed() {
        assert_eq!(thread_slots(65_536, Some(32_768)), 32_768);
        assert_eq!(thread_slots(65_536, Some(40_000)), 65_536);
        assert_eq!(thread_slots(65_536, Some(4_194_304)), 65_536);
        assert_eq!(thread_slots(100_000, None), 131_072);
        assert_eq!(thread_slots(0, Some(0)), 2);
    }

    #[test]
    fn sock_offsets_on_running_kernel() {
        // Skipped where the kernel has no BTF (e.g. a build container).
        let Ok(btf) = KernelBtf::from_sys_fs() else { return };
        let mut offsets = agent_common::kernel::KernelOffsets::default();

        add_sock_offsets(&btf, &mut offsets).unwrap();

        // skc_family, skc_dport and skc_daddr sit in the first bytes of
        // sock_common, itself at the start of struct sock.
        assert!(offsets.sock_daddr < 16, "{offsets:?}");
        assert!(offsets.sock_dport < 16, "{offsets:?}");
        assert!(offsets.sock_family < 24, "{offsets:?}");
        assert!(offsets.sock_v6_daddr > offsets.sock_family, "{offsets:?}");
        assert!(offsets.sock_err > offsets.sock_v6_daddr, "{offsets:?}");
        assert_ne!(offsets.sock_protocol, 0, "sk_protocol is a u16 since Linux 5.6");
    }
}
