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
    Dns,
    TcpConnect,
}

impl fmt::Display for Signal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Signal::RunQueue => "run-queue latency, throttle delay and block-I/O wait",
            Signal::BlockLatency => "block request latency",
            Signal::Dns => "DNS lookups",
            Signal::TcpConnect => "TCP connect",
        })
    }
}

/// Where a program attaches.
#[derive(Clone, Copy, Debug)]
pub enum Hook {
    RawTracepoint(&'static str),
    /// A cgroup_skb program on the cgroup v2 root, seeing the packets of
    /// every socket in every cgroup and network namespace.
    CgroupSkbIngress,
    CgroupSkbEgress,
}

impl fmt::Display for Hook {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hook::RawTracepoint(name) => write!(formatter, "raw_tracepoint/{name}"),
            Hook::CgroupSkbIngress => formatter.write_str("cgroup_skb/ingress"),
            Hook::CgroupSkbEgress => formatter.write_str("cgroup_skb/egress"),
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
    ProbeSpec {
        id: ProbeId::DnsEgress,
        program: "dns_egress",
        hook: Hook::CgroupSkbEgress,
        signal: Signal::Dns,
        kernel_feature: "cgroup_skb programs on the cgroup v2 root (Linux 4.10) and CAP_NET_ADMIN",
    },
    ProbeSpec {
        id: ProbeId::DnsIngress,
        program: "dns_ingress",
        hook: Hook::CgroupSkbIngress,
        signal: Signal::Dns,
        kernel_feature: "cgroup_skb programs on the cgroup v2 root (Linux 4.10) and CAP_NET_ADMIN",
    },
    ProbeSpec {
        id: ProbeId::InetSockSetState,
        program: "inet_sock_set_state",
        hook: Hook::RawTracepoint("inet_sock_set_state"),
        signal: Signal::TcpConnect,
        kernel_feature: "raw tracepoint inet_sock_set_state (Linux 4.16) and BTF for struct sock offsets",
    },
];
