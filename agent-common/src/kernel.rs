//! Kernel struct offsets that the probes need and cannot know at build time.
//!
//! Rust BPF programs get no CO-RE relocations, so the agent reads these
//! offsets from the running kernel's BTF (`/sys/kernel/btf/vmlinux`) and
//! hands them to the probes as the global [`KERNEL_OFFSETS_SYMBOL`] before
//! loading them.

/// Name of the global in the probe object that contains [`KernelOffsets`].
pub const KERNEL_OFFSETS_SYMBOL: &str = "KERNEL_OFFSETS";

/// [`KernelOffsets::cgroup_hierarchy`]: identify tasks by their cgroup in
/// the v2 hierarchy.
pub const CGROUP_HIERARCHY_V2: u32 = 0;
/// [`KernelOffsets::cgroup_hierarchy`]: identify tasks by their cgroup in
/// the v1 hierarchy of the `cpu` controller, for hosts whose containers
/// are not placed in the v2 hierarchy.
pub const CGROUP_HIERARCHY_V1_CPU: u32 = 1;

/// Byte offsets of the kernel struct fields the probes read, and which
/// cgroup hierarchy identifies a task.
///
/// Written once by the agent at load time; read by the probes. All fields
/// are u32, so the struct has no padding; new fields go at the end.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `task_struct.pid` (a `pid_t`, the thread id).
    pub task_pid: u32,
    /// `task_struct.__state` (Linux 5.14 and later) or `task_struct.state`.
    pub task_state: u32,
    /// Size in bytes of the state field: 4 for `__state`, 8 for the older
    /// `long state`.
    pub task_state_size: u32,
    /// `task_struct.cgroups` (a `struct css_set *`).
    pub task_cgroups: u32,
    /// `css_set.dfl_cgrp` (the task's cgroup in the v2 hierarchy).
    pub css_set_dfl_cgrp: u32,
    /// `cgroup.kn` (a `struct kernfs_node *`).
    pub cgroup_kn: u32,
    /// `kernfs_node.id`: the cgroup id, equal to the inode number of the
    /// cgroup directory in its hierarchy's mount.
    pub kernfs_node_id: u32,
    /// [`CGROUP_HIERARCHY_V2`] or [`CGROUP_HIERARCHY_V1_CPU`].
    pub cgroup_hierarchy: u32,
    /// `css_set.subsys[cpu_cgrp_id]`: the task's `cpu` controller state.
    pub css_set_subsys_cpu: u32,
    /// `cgroup_subsys_state.cgroup`.
    pub css_cgroup: u32,
    /// Byte of `task_struct` that contains the `in_iowait` bitfield.
    pub task_in_iowait_byte: u32,
    /// Bit of `in_iowait` within that byte (0 is the least significant).
    pub task_in_iowait_bit: u32,
    /// Source the probes read to detect that CFS bandwidth throttling holds
    /// a task back: one of the `THROTTLE_SOURCE_*` values.
    pub throttle_source: u32,
    /// `task_struct.throttled` (a `bool`, Linux 6.18 and later), read when
    /// `throttle_source` is [`THROTTLE_SOURCE_TASK_FLAG`].
    pub task_throttled: u32,
    /// `task_struct.se` plus `sched_entity.cfs_rq`: the task's own CFS run
    /// queue (a `struct cfs_rq *`), read when `throttle_source` is
    /// [`THROTTLE_SOURCE_CFS_RQ`].
    pub task_se_cfs_rq: u32,
    /// `cfs_rq.throttle_count` (an `int`): non-zero while the run queue or
    /// one of its ancestors is throttled.
    pub cfs_rq_throttle_count: u32,
    /// `request.q` (a `struct request_queue *`).
    pub request_q: u32,
    /// `request.bio` (a `struct bio *`, the first bio of the request).
    pub request_bio: u32,
    /// `bio.bi_blkg` (a `struct blkcg_gq *`, the blkcg that owns the I/O).
    pub bio_bi_blkg: u32,
    /// `blkcg_gq.blkcg` (a `struct blkcg *`).
    pub blkcg_gq_blkcg: u32,
    /// `blkcg.css` plus `cgroup_subsys_state.cgroup`: the blkcg's cgroup
    /// (a `struct cgroup *`).
    pub blkcg_css_cgroup: u32,
    /// `request_queue.disk` (a `struct gendisk *`, Linux 5.15 and later).
    /// Zero when the kernel lacks it; then the block probes are not loaded.
    pub request_queue_disk: u32,
    /// `gendisk.major` (an `int`).
    pub gendisk_major: u32,
    /// `gendisk.first_minor` (an `int`).
    pub gendisk_first_minor: u32,
    /// `cfs_rq.throttled_clock_self_time` (a `u64`, Linux 6.8 and later):
    /// nanoseconds the run queue spent throttled, added at each unthrottle.
    /// Zero when the kernel lacks it; then a throttled task's whole wait
    /// counts as throttle delay.
    pub cfs_rq_throttled_clock_self_time: u32,
    /// `sock.__sk_common.skc_family` (a u16: AF_INET or AF_INET6).
    pub sock_family: u32,
    /// `sock.__sk_common.skc_daddr` (IPv4 destination, network order).
    pub sock_daddr: u32,
    /// `sock.__sk_common.skc_v6_daddr` (IPv6 destination).
    pub sock_v6_daddr: u32,
    /// `sock.__sk_common.skc_dport` (destination port, network order).
    pub sock_dport: u32,
    /// `sock.sk_err` (an int: the pending socket error).
    pub sock_err: u32,
    /// `sock.sk_protocol` (a u16 since Linux 5.6), or 0 when it is a
    /// bitfield (older kernels) and the probe cannot filter on it.
    pub sock_protocol: u32,
    /// 1 when the `sched_switch` tracepoint passes `prev_state` as its
    /// fourth argument (Linux 5.18 and later), else 0 and the probe reads
    /// the state from `task_struct`. The probe object's read-only data is
    /// frozen, so the verifier treats this as a constant and checks only
    /// the branch the kernel takes. A kernel without the argument rejects
    /// a program that reads it at attach time.
    pub sched_switch_prev_state: u32,
    /// 1 when the probes may load fields of the current task directly
    /// through `bpf_get_current_task_btf()`, which saves a helper call per
    /// read. That needs Linux 5.11 and the kernel's own BTF. At 0 they use
    /// `bpf_probe_read_kernel`. It is frozen like `sched_switch_prev_state`,
    /// so an older kernel never checks the helper it lacks.
    pub current_task_btf: u32,
}

/// The kernel offers no way to see throttling; no wait counts as throttled.
pub const THROTTLE_SOURCE_NONE: u32 = 0;
/// Linux 6.18 and later throttle task by task: a throttled task is taken
/// off the run queue when it returns to user space and `task_struct.throttled`
/// is set until its group is unthrottled.
pub const THROTTLE_SOURCE_TASK_FLAG: u32 = 1;
/// Older kernels throttle the whole group run queue: a task switched out
/// while its `cfs_rq.throttle_count` is non-zero waits for the unthrottle.
pub const THROTTLE_SOURCE_CFS_RQ: u32 = 2;

#[cfg(feature = "user")]
// SAFETY: KernelOffsets is repr(C) and made only of u32 fields, so it has
// no padding bytes.
unsafe impl aya::Pod for KernelOffsets {}
