//! Reads of kernel struct fields (`task_struct`, `sock`) at offsets the
//! agent found in BTF.

use agent_common::kernel::{CGROUP_HIERARCHY_V1_CPU, KernelOffsets, THROTTLE_SOURCE_CFS_RQ, THROTTLE_SOURCE_TASK_FLAG};
use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_task, bpf_get_current_task_btf, bpf_probe_read_kernel,
};

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
    task_in_iowait_byte: 0,
    task_in_iowait_bit: 0,
    throttle_source: 0,
    task_throttled: 0,
    task_se_cfs_rq: 0,
    cfs_rq_throttle_count: 0,
    request_q: 0,
    request_bio: 0,
    bio_bi_blkg: 0,
    blkcg_gq_blkcg: 0,
    blkcg_css_cgroup: 0,
    request_queue_disk: 0,
    gendisk_major: 0,
    gendisk_first_minor: 0,
    cfs_rq_throttled_clock_self_time: 0,
    sock_family: 0,
    sock_daddr: 0,
    sock_v6_daddr: 0,
    sock_dport: 0,
    sock_err: 0,
    sock_protocol: 0,
    sched_switch_prev_state: 0,
    current_task_btf: 0,
};

/// Returns the offsets the loader wrote.
///
/// The compiler must not fold the zero initializer above into the code.
/// Reading the whole struct with one volatile read would do, but costs one
/// load per field on every call, so only the pointer is read volatile:
/// the compiler cannot see where it points, and each field read is one
/// load.
#[inline(always)]
pub fn offsets() -> &'static KernelOffsets {
    let pointer: *const KernelOffsets = &raw const KERNEL_OFFSETS;
    // SAFETY: the volatile read is of a local variable, and the pointer
    // it returns is the address of a static, valid for the whole program.
    unsafe { &*core::ptr::read_volatile(&pointer) }
}

/// Tells whether the current task sleeps in I/O wait (`in_iowait`), with a
/// direct load through the BTF pointer the kernel trusts, which needs no
/// helper call. Only for kernels where `KernelOffsets::current_task_btf`
/// is 1.
#[inline(always)]
pub fn current_in_iowait() -> bool {
    let offsets = offsets();
    // SAFETY: the kernel returns a trusted pointer to the running task,
    // and the verifier checks the load against the task_struct's BTF.
    let byte = unsafe {
        let task = bpf_get_current_task_btf() as *const u8;
        core::ptr::read_volatile(task.add(offsets.task_in_iowait_byte as usize))
    };
    in_iowait_bit(byte)
}

/// Tells whether `in_iowait` is set in `byte`, the byte of `task_struct`
/// that contains that one-bit bitfield.
#[inline(always)]
fn in_iowait_bit(byte: u8) -> bool {
    (byte >> (offsets().task_in_iowait_bit & 7)) & 1 == 1
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

/// Reads a `T` at `offset` bytes from the kernel address `base`.
#[inline(always)]
pub fn read_kernel<T>(base: *const u8, offset: u32) -> Result<T, i32> {
    // SAFETY: bpf_probe_read_kernel checks the address and returns an
    // error instead of faulting.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize).cast::<T>()) }
}

impl Task {
    #[inline(always)]
    fn read<T>(self, offset: u32) -> Result<T, i32> {
        read_kernel(self.0, offset)
    }

    /// Thread id (`task_struct.pid`).
    #[inline(always)]
    pub fn tid(self) -> Result<u32, i32> {
        self.read::<u32>(offsets().task_pid)
    }

    /// Reads the task's state bits. `TASK_RUNNING` is 0: a task switched
    /// out in that state goes back to the run queue instead of sleeping.
    #[inline(always)]
    pub fn state(self) -> Result<u32, i32> {
        let offsets = offsets();
        // Only the low 32 bits carry the state on both layouts: the u32
        // `__state` and, on little-endian, the older `long state`.
        self.read::<u32>(offsets.task_state)
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

    /// Whether the task sleeps in I/O wait (`in_iowait`, set by
    /// `io_schedule_prepare()` and cleared by `io_schedule_finish()`).
    #[inline(always)]
    pub fn in_iowait(self) -> Result<bool, i32> {
        let offsets = offsets();
        let byte = self.read::<u8>(offsets.task_in_iowait_byte)?;
        Ok(in_iowait_bit(byte))
    }

    /// Whether the task is held back by CFS bandwidth throttling of its
    /// group, read the way the running kernel allows (see
    /// `KernelOffsets::throttle_source`).
    #[inline(always)]
    pub fn is_throttled(self) -> Result<bool, i32> {
        let offsets = offsets();
        match offsets.throttle_source {
            THROTTLE_SOURCE_TASK_FLAG => Ok(self.read::<u8>(offsets.task_throttled)? != 0),
            THROTTLE_SOURCE_CFS_RQ => {
                let cfs_rq = self.cfs_rq()?;
                Ok(read_kernel::<i32>(cfs_rq, offsets.cfs_rq_throttle_count)? > 0)
            }
            _ => Ok(false),
        }
    }

    /// The task's own CFS run queue (`task->se.cfs_rq`).
    #[inline(always)]
    pub fn cfs_rq(self) -> Result<*const u8, i32> {
        self.read(offsets().task_se_cfs_rq)
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
