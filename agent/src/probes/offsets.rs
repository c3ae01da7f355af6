//! The kernel struct offsets the probes read, found in the running
//! kernel's BTF.

use agent_common::kernel::{
    CGROUP_HIERARCHY_V1_CPU, CGROUP_HIERARCHY_V2, KernelOffsets, THROTTLE_SOURCE_CFS_RQ, THROTTLE_SOURCE_NONE,
    THROTTLE_SOURCE_TASK_FLAG,
};

use crate::{
    cgroup::Hierarchy,
    kernel_btf::{BtfError, KernelBtf},
};

/// Offsets for the probes, and why the block probes cannot run, if so.
pub struct FoundOffsets {
    pub offsets: KernelOffsets,
    /// Set when a struct member the block probes read is missing.
    pub block_unavailable: Option<String>,
}

/// Reads the struct offsets the probes need from the running kernel.
///
/// Fails only when a member the scheduler probes need is missing. Missing
/// block-layer members leave the block probes out, and a kernel without
/// CFS bandwidth control measures no throttle delay.
pub fn kernel_offsets(btf: &KernelBtf, hierarchy: Hierarchy) -> anyhow::Result<FoundOffsets> {
    // Linux 5.14 renamed task_struct.state (long) to __state (unsigned int).
    let state = btf.member_offset("task_struct", "__state").or_else(|_| btf.member_offset("task_struct", "state"))?;
    let in_iowait = btf.member_offset("task_struct", "in_iowait")?;
    let mut offsets = KernelOffsets {
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
        task_in_iowait_byte: in_iowait.byte_offset,
        task_in_iowait_bit: in_iowait.bit_in_byte,
        sched_switch_prev_state: u32::from(passes_prev_state(btf)),
        ..KernelOffsets::default()
    };
    set_throttle_offsets(btf, &mut offsets);
    let block_unavailable = set_block_offsets(btf, &mut offsets)
        .err()
        .map(|error| format!("{error}; block request latency needs Linux 5.15 or later"));
    Ok(FoundOffsets { offsets, block_unavailable })
}

/// Tells whether `sched_switch` passes `prev_state` (Linux 5.18 and later)
/// after `preempt`, `prev` and `next`. When BTF lacks the tracepoint's
/// type, the probe reads the state from the task instead, which works on
/// every kernel.
fn passes_prev_state(btf: &KernelBtf) -> bool {
    btf.tracepoint_arguments("sched_switch").is_ok_and(|count| count >= 4)
}

/// Offset of `css_set.subsys[id]`, an array of pointers indexed by the
/// controller's `enum cgroup_subsys_id` value (which depends on the
/// kernel's configuration, so it comes from BTF too).
fn subsys_offset(btf: &KernelBtf, controller_id: &str) -> anyhow::Result<u32> {
    let index = u32::try_from(btf.enumerator(controller_id)?)?;
    let array = btf.member_offset("css_set", "subsys")?.byte_offset;
    Ok(array + index * 8)
}

/// Chooses how the probes see throttling: the per-task flag of Linux 6.18
/// and later, else the throttle count of the task's CFS run queue.
fn set_throttle_offsets(btf: &KernelBtf, offsets: &mut KernelOffsets) {
    // sched_entity.cfs_rq exists with CONFIG_FAIR_GROUP_SCHED and
    // cfs_rq.throttle_count with CONFIG_CFS_BANDWIDTH.
    let found = (|| -> Result<(u32, u32), BtfError> {
        let se = btf.member_offset("task_struct", "se")?.byte_offset;
        let cfs_rq = btf.member_offset("sched_entity", "cfs_rq")?.byte_offset;
        let count = btf.member_offset("cfs_rq", "throttle_count")?.byte_offset;
        Ok((se + cfs_rq, count))
    })();
    let Ok((task_se_cfs_rq, throttle_count)) = found else {
        offsets.throttle_source = THROTTLE_SOURCE_NONE;
        return;
    };
    offsets.task_se_cfs_rq = task_se_cfs_rq;
    offsets.cfs_rq_throttle_count = throttle_count;
    offsets.throttle_source = THROTTLE_SOURCE_CFS_RQ;
    if let Ok(self_time) = btf.member_offset("cfs_rq", "throttled_clock_self_time") {
        offsets.cfs_rq_throttled_clock_self_time = self_time.byte_offset;
    }
    if let Ok(flag) = btf.member_offset("task_struct", "throttled") {
        offsets.throttle_source = THROTTLE_SOURCE_TASK_FLAG;
        offsets.task_throttled = flag.byte_offset;
    }
}

fn set_block_offsets(btf: &KernelBtf, offsets: &mut KernelOffsets) -> Result<(), BtfError> {
    let css = btf.member_offset("blkcg", "css")?.byte_offset;
    let css_cgroup = btf.member_offset("cgroup_subsys_state", "cgroup")?.byte_offset;
    offsets.request_q = btf.member_offset("request", "q")?.byte_offset;
    offsets.request_bio = btf.member_offset("request", "bio")?.byte_offset;
    offsets.bio_bi_blkg = btf.member_offset("bio", "bi_blkg")?.byte_offset;
    offsets.blkcg_gq_blkcg = btf.member_offset("blkcg_gq", "blkcg")?.byte_offset;
    offsets.blkcg_css_cgroup = css + css_cgroup;
    offsets.request_queue_disk = btf.member_offset("request_queue", "disk")?.byte_offset;
    offsets.gendisk_major = btf.member_offset("gendisk", "major")?.byte_offset;
    offsets.gendisk_first_minor = btf.member_offset("gendisk", "first_minor")?.byte_offset;
    Ok(())
}

/// Returns a name of the throttle source for the start-up log.
pub fn throttle_source_name(source: u32) -> &'static str {
    match source {
        THROTTLE_SOURCE_TASK_FLAG => "task_struct.throttled",
        THROTTLE_SOURCE_CFS_RQ => "cfs_rq.throttle_count",
        _ => "none (no CFS bandwidth control in BTF)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_kernel_offsets() {
        // Skipped where the kernel has no BTF (e.g. a build container).
        let Ok(btf) = KernelBtf::from_sys_fs() else { return };

        let found = kernel_offsets(&btf, Hierarchy::V2).unwrap();

        assert!(found.offsets.task_in_iowait_bit < 8);
        assert_ne!(found.offsets.task_in_iowait_byte, 0);
        assert_ne!(found.offsets.throttle_source, THROTTLE_SOURCE_NONE);
        assert_ne!(found.offsets.task_se_cfs_rq, 0);
        // Every kernel this test runs on is 5.18 or later.
        assert_eq!(found.offsets.sched_switch_prev_state, 1);
        assert_eq!(found.block_unavailable, None);
    }

    #[test]
    fn state_read_from_task_without_tracepoint_type() {
        // Skipped where the kernel has no BTF (e.g. a build container).
        let Ok(mut data) = std::fs::read(crate::kernel_btf::VMLINUX_BTF) else { return };
        // Renaming the typedef in the string section makes the BTF look
        // like a kernel's whose sched_switch type is unknown.
        let name = b"btf_trace_sched_switch\0";
        let at = data.windows(name.len()).position(|window| window == name).unwrap();
        data[at + name.len() - 2] = b'X';
        let btf = KernelBtf::parse(&data).unwrap();

        let found = kernel_offsets(&btf, Hierarchy::V2).unwrap();

        assert_eq!(found.offsets.sched_switch_prev_state, 0);
    }
}
