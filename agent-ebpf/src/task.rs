//! Reads of kernel struct fields (`task_struct`, `sock`) at offsets the
//! agent found in BTF.

use agent_common::kernel::KernelOffsets;
use aya_ebpf::helpers::bpf_probe_read_kernel;

/// Offsets written by the agent before load (`EbpfLoader::override_global`).
#[unsafe(no_mangle)]
static KERNEL_OFFSETS: KernelOffsets = KernelOffsets {
    task_pid: 0,
    task_state: 0,
    task_state_size: 0,
    task_cgroups: 0,
    css_set_dfl_cgrp: 0,
    cgroup_kn: 0,
    kernfs_node_id: 0,
    _padding: 0,
    sock_family: 0,
    sock_daddr: 0,
    sock_v6_daddr: 0,
    sock_dport: 0,
    sock_err: 0,
    sock_protocol: 0,
};

#[inline(always)]
pub fn offsets() -> KernelOffsets {
    // SAFETY: a volatile read keeps the compiler from folding the
    // initializer above into the code; the loader rewrites the value.
    unsafe { core::ptr::read_volatile(&KERNEL_OFFSETS) }
}

/// Any kernel struct pointer taken from a tracepoint argument.
#[derive(Clone, Copy)]
pub struct Kernel(pub *const u8);

impl Kernel {
    /// Reads a `T` at `offset` bytes from the pointer.
    #[inline(always)]
    pub fn read<T>(self, offset: u32) -> Result<T, i32> {
        // SAFETY: bpf_probe_read_kernel checks the address and returns an
        // error instead of faulting.
        unsafe { bpf_probe_read_kernel(self.0.wrapping_add(offset as usize).cast::<T>()) }
    }
}

/// A kernel `struct task_struct *` taken from a tracepoint argument.
#[derive(Clone, Copy)]
pub struct Task(pub *const u8);

impl Task {
    #[inline(always)]
    fn read<T>(self, offset: u32) -> Result<T, i32> {
        // SAFETY: bpf_probe_read_kernel checks the address and returns an
        // error instead of faulting.
        unsafe { bpf_probe_read_kernel(self.0.wrapping_add(offset as usize).cast::<T>()) }
    }

    /// Thread id (`task_struct.pid`).
    #[inline(always)]
    pub fn tid(self) -> Result<u32, i32> {
        self.read::<u32>(offsets().task_pid)
    }

    /// Whether the task is `TASK_RUNNING` (state 0), meaning that when it is
    /// switched out it goes back to the run queue instead of sleeping.
    #[inline(always)]
    pub fn is_running(self) -> Result<bool, i32> {
        let offsets = offsets();
        // Only the low 32 bits carry the state on both layouts: the u32
        // `__state` and, on little-endian, the older `long state`.
        let _ = offsets.task_state_size;
        Ok(self.read::<u32>(offsets.task_state)? == 0)
    }

    /// Id of the task's cgroup in the v2 hierarchy:
    /// `task->cgroups->dfl_cgrp->kn->id`, the same value
    /// `bpf_get_current_cgroup_id` returns for the current task.
    #[inline(always)]
    pub fn cgroup_id(self) -> Result<u64, i32> {
        let offsets = offsets();
        let css_set: *const u8 = self.read(offsets.task_cgroups)?;
        let cgroup: *const u8 = Task(css_set).read(offsets.css_set_dfl_cgrp)?;
        let kernfs_node: *const u8 = Task(cgroup).read(offsets.cgroup_kn)?;
        Task(kernfs_node).read::<u64>(offsets.kernfs_node_id)
    }
}
