//! The probe table: every program, the hook it attaches to, the signal it
//! feeds and the kernel feature it needs. Kernel compatibility is data
//! here, so the start-up log and the README can name what is missing.

use std::fmt;

use agent_common::probe::ProbeId;

/// The signal a probe feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Run-queue latency, and with it throttle delay and block-I/O wait,
    /// which the same `sched_switch` program measures.
    RunQueue,
    BlockLatency,
}

impl fmt::Display for Signal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Signal::RunQueue => "run-queue latency, throttle delay and block-I/O wait",
            Signal::BlockLatency => "block request latency",
        })
    }
}

/// Where a program attaches.
#[derive(Clone, Copy, Debug)]
pub enum Hook {
    RawTracepoint(&'static str),
}

impl fmt::Display for Hook {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hook::RawTracepoint(name) => write!(formatter, "raw_tracepoint/{name}"),
        }
    }
}

#[derive(Debug)]
pub struct ProbeSpec {
    pub id: ProbeId,
    /// Program name in the probe object, also the `probe` metric label.
    pub program: &'static str,
    pub hook: Hook,
    pub signal: Signal,
    /// What the kernel must offer for this probe to attach.
    pub kernel_feature: &'static str,
}

pub static PROBES: &[ProbeSpec] = &[
    ProbeSpec {
        id: ProbeId::SchedSwitch,
        program: "sched_switch",
        hook: Hook::RawTracepoint("sched_switch"),
        signal: Signal::RunQueue,
        kernel_feature: "raw tracepoints (Linux 4.17) and BTF for task_struct offsets",
    },
    ProbeSpec {
        id: ProbeId::SchedWakeup,
        program: "sched_wakeup",
        hook: Hook::RawTracepoint("sched_wakeup"),
        signal: Signal::RunQueue,
        kernel_feature: "raw tracepoints (Linux 4.17) and BTF for task_struct offsets",
    },
    ProbeSpec {
        id: ProbeId::SchedWakeupNew,
        program: "sched_wakeup_new",
        hook: Hook::RawTracepoint("sched_wakeup_new"),
        signal: Signal::RunQueue,
        kernel_feature: "raw tracepoints (Linux 4.17) and BTF for task_struct offsets",
    },
    ProbeSpec {
        id: ProbeId::BlockRqIssue,
        program: "block_rq_issue",
        hook: Hook::RawTracepoint("block_rq_issue"),
        signal: Signal::BlockLatency,
        kernel_feature: "raw tracepoints (Linux 4.17) and BTF for request, bio and blkcg offsets (Linux 5.15 layout)",
    },
    ProbeSpec {
        id: ProbeId::BlockRqComplete,
        program: "block_rq_complete",
        hook: Hook::RawTracepoint("block_rq_complete"),
        signal: Signal::BlockLatency,
        kernel_feature: "raw tracepoints (Linux 4.17)",
    },
];
