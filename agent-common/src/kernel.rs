//! Kernel struct offsets that the probes need and cannot know at build time.
//!
//! Rust BPF programs get no CO-RE relocations, so the agent reads these
//! offsets from the running kernel's BTF (`/sys/kernel/btf/vmlinux`) and
//! hands them to the probes as the global [`KERNEL_OFFSETS_SYMBOL`] before
//! loading them.

/// Name of the global in the probe object that holds [`KernelOffsets`].
pub const KERNEL_OFFSETS_SYMBOL: &str = "KERNEL_OFFSETS";

/// Byte offsets of the kernel struct fields the probes read.
///
/// Written once by the agent at load time; read by the probes.
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
    /// cgroup directory in the v2 mount.
    pub kernfs_node_id: u32,
    /// Explicit padding so the size is a multiple of 8 on every target.
    pub _padding: u32,
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
}

#[cfg(feature = "user")]
// SAFETY: KernelOffsets is repr(C), made only of u32 fields, and its size
// is a multiple of its alignment, so it has no padding bytes.
unsafe impl aya::Pod for KernelOffsets {}
