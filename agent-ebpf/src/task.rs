//! Reads of `task_struct` fields at offsets the agent found in BTF.

use agent_common::kernel::{CGROUP_HIERARCHY_V1_CPU, KernelOffsets};
use aya_ebpf::helpers::{bpf_get_current_cgroup_id, bpf_get_current_task, bpf_probe_read_kernel};

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
    cgroup_hierarchy: 0,
    css_set_subsys_cpu: 0,
    css_cgroup: 0,
};

#[inline(always)]
fn offsets() -> KernelOffsets {
    // SAFETY: a volatile read keeps the compiler from folding the
    // initializer above into the code; the loader rewrites the value.
    unsafe { core::ptr::read_volatile(&KERNEL_OFFSETS) }
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

    /// Id of the task's cgroup in the hierarchy that identifies tasks:
    /// `task->cgroups->dfl_cgrp->kn->id` for v2 (the value
    /// `bpf_get_current_cgroup_id` returns for the current task), or
    /// `task->cgroups->subsys[cpu_cgrp_id]->cgroup->kn->id` for v1 `cpu`.
    #[inline(always)]
    pub fn cgroup_id(self) -> Result<u64, i32> {
        let offsets = offsets();
        let css_set: *const u8 = self.read(offsets.task_cgroups)?;
        let cgroup: *const u8 = if offsets.cgroup_hierarchy == CGROUP_HIERARCHY_V1_CPU {
            let css: *const u8 = Task(css_set).read(offsets.css_set_subsys_cpu)?;
            Task(css).read(offsets.css_cgroup)?
        } else {
            Task(css_set).read(offsets.css_set_dfl_cgrp)?
        };
        let kernfs_node: *const u8 = Task(cgroup).read(offsets.cgroup_kn)?;
        Task(kernfs_node).read::<u64>(offsets.kernfs_node_id)
    }
}

/// Cgroup id of the current task, in the hierarchy that identifies tasks.
#[inline(always)]
pub fn current_cgroup_id() -> Result<u64, i32> {
    if offsets().cgroup_hierarchy == CGROUP_HIERARCHY_V1_CPU {
        // SAFETY: a helper call without arguments; the result is only read
        // through bpf_probe_read_kernel.
        Task(unsafe { bpf_get_current_task() } as *const u8).cgroup_id()
    } else {
        // SAFETY: a helper call without arguments or side effects.
        Ok(unsafe { bpf_get_current_cgroup_id() })
    }
}
