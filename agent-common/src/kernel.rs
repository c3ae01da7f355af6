//! Kernel struct offsets that the probes need and cannot know at build time.
//!
//! Rust BPF programs get no CO-RE relocations, so the agent reads these
//! offsets from the running kernel's BTF (`/sys/kernel/btf/vmlinux`) and
//! hands them to the probes as the global [`KERNEL_OFFSETS_SYMBOL`] before
//! loading them.

/// Name of the global in the probe object that holds [`KernelOffsets`].
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
/// are u32, so the struct has no padding.
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
}

#[cfg(feature = "user")]
// SAFETY: KernelOffsets is repr(C) and made only of u32 fields, so it has
// no padding bytes.
unsafe impl aya::Pod for KernelOffsets {}
