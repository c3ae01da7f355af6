//! `agent classify --pid N`: measures one process's cgroup for a while and
//! explains what slows it down, with the same engine as `agent run`.

use std::{fs, process::ExitCode, thread, time::Duration};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};

use crate::{
    cgroup::{CgroupId, Hierarchy, members, namespace::NamespaceRoot, process::ProcessCgroups},
    classifier::Class,
    config::{EngineArgs, parse_duration},
    engine::Engine,
    privileges,
    report::{self, ProcessInfo},
};

/// Exit status when a bottleneck was found; 0 means none, 1 an error.
pub const EXIT_BOTTLENECK_FOUND: u8 = 2;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct ClassifyArgs {
    /// Host pid of the process to look at (its whole cgroup is measured).
    #[arg(long, required_unless_present = "pod", conflicts_with = "pod")]
    pid: Option<u32>,

    /// Pod to look at, as NAMESPACE/NAME; its whole pod cgroup is measured
    /// unless --container-pid picks one process.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pod: Option<String>,

    /// Pid of a process as seen inside the pod's containers (e.g. from
    /// `kubectl exec ... ps`); it is translated to the host pid through
    /// NSpid in /proc, and that process's cgroup is measured.
    #[arg(long, requires = "pod")]
    container_pid: Option<u32>,

    /// How long to measure (e.g. 5s, 30s).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,

    /// Report format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,

    #[command(flatten)]
    engine: EngineArgs,
}

pub fn classify(args: ClassifyArgs) -> anyhow::Result<ExitCode> {
    if args.duration < Duration::from_millis(100) {
        anyhow::bail!("invalid --duration {:?}: measure for at least 100ms", args.duration);
    }
    // Fail on an unknown pid before loading anything.
    if let Some(pid) = args.pid {
        ProcessCgroups::of_pid(pid)?;
    }
    let pod = args.pod.as_deref().map(parse_pod_name).transpose()?;
    privileges::check_probe_privileges()?;
    // One window, evaluated once: no hysteresis.
    let config = args.engine.engine_config(args.duration + args.engine.tick, Duration::ZERO)?;

    let mut engine = Engine::start(config)?;
    let target = resolve_target(&mut engine, args.pid, pod, args.container_pid)?;
    engine.watch(target.id);
    engine.tick();
    thread::sleep(args.duration);
    let snapshot = engine.tick();
    drop(engine);

    let group = snapshot
        .group(target.id)
        .with_context(|| format!("cgroup {} was removed while it was measured", target.cgroup))?;
    let report = report::ClassifyReport::new(target.process.as_ref(), group)
        .with_context(|| format!("no complete measurement of cgroup {}", target.cgroup))?;
    match args.output {
        Output::Text => print!("{}", report.to_text()),
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(if report.verdict.primary == Class::None { ExitCode::SUCCESS } else { ExitCode::from(EXIT_BOTTLENECK_FOUND) })
}

/// The cgroup to measure, and the process it was found from, if any.
struct Target {
    id: CgroupId,
    cgroup: String,
    process: Option<ProcessInfo>,
}

fn resolve_target(
    engine: &mut Engine,
    pid: Option<u32>,
    pod: Option<(&str, &str)>,
    container_pid: Option<u32>,
) -> anyhow::Result<Target> {
    let host_pid = match (pid, pod, container_pid) {
        (Some(pid), _, _) => Some(pid),
        (None, Some((namespace, name)), Some(inner)) => Some(host_pid_in_pod(engine, namespace, name, inner)?),
        _ => None,
    };
    if let Some(pid) = host_pid {
        let cgroups = ProcessCgroups::of_pid(pid)?;
        let mut process = process_info(pid, &cgroups, engine.layout().identity)?;
        process.cgroup = namespace_root(engine)?.resolve(&process.cgroup);
        let id = engine.cgroup_id(&process.cgroup).with_context(|| {
            format!(
                "cgroup {} of pid {pid} not found under {}",
                process.cgroup,
                engine.layout().identity_root().display()
            )
        })?;
        return Ok(Target { id, cgroup: process.cgroup.clone(), process: Some(process) });
    }
    let (namespace, name) = pod.context("give --pid or --pod")?;
    let (id, cgroup) = engine.pod_cgroup(namespace, name)?;
    Ok(Target { id, cgroup, process: None })
}

/// Finds where this process's cgroup namespace is rooted in the identifying
/// hierarchy, so that paths from `/proc/PID/cgroup` can be resolved even
/// when the agent runs in a container with a private cgroup namespace.
fn namespace_root(engine: &Engine) -> anyhow::Result<NamespaceRoot> {
    let own = ProcessCgroups::of_pid(std::process::id())?;
    let own_path = match engine.layout().identity {
        Hierarchy::V2 => own.unified,
        Hierarchy::V1Cpu => own.v1_cpu,
    }
    .unwrap_or_else(|| "/".to_owned());
    let root = engine.layout().identity_root();
    NamespaceRoot::find(root, &own_path).with_context(|| {
        format!(
            "this process's own cgroup was not found under {}; mount the node's cgroup hierarchy into the agent's container",
            root.display()
        )
    })
}

/// Finds the host pid of the process that has pid `inner` in its own pid
/// namespace, among the processes of the pod's cgroups.
fn host_pid_in_pod(engine: &mut Engine, namespace: &str, name: &str, inner: u32) -> anyhow::Result<u32> {
    let (_, pod_cgroup) = engine.pod_cgroup(namespace, name)?;
    let dir = engine.layout().identity_root().join(pod_cgroup.trim_start_matches('/'));
    let matches: Vec<u32> =
        members::pids_below(&dir).into_iter().filter(|&pid| members::innermost_pid(pid) == Some(inner)).collect();
    match matches.as_slice() {
        [pid] => Ok(*pid),
        [] => bail!("no process of pod {namespace}/{name} has pid {inner} in its container's pid namespace"),
        several => bail!(
            "pid {inner} exists in several containers of pod {namespace}/{name} (host pids {several:?}); \
             pass one of them with --pid"
        ),
    }
}

/// Splits `NAMESPACE/NAME`.
fn parse_pod_name(text: &str) -> anyhow::Result<(&str, &str)> {
    match text.split_once('/') {
        Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((namespace, name))
        }
        _ => bail!("invalid --pod {text:?}: expected NAMESPACE/NAME, such as shop/cart-7d9f"),
    }
}

fn process_info(pid: u32, cgroups: &ProcessCgroups, hierarchy: Hierarchy) -> anyhow::Result<ProcessInfo> {
    let cgroup = match hierarchy {
        Hierarchy::V2 => cgroups
            .unified
            .clone()
            .with_context(|| format!("pid {pid} has no cgroup v2 entry in /proc/{pid}/cgroup"))?,
        Hierarchy::V1Cpu => cgroups
            .v1_cpu
            .clone()
            .with_context(|| format!("pid {pid} has no cgroup of the v1 cpu controller in /proc/{pid}/cgroup"))?,
    };
    let command =
        fs::read_to_string(format!("/proc/{pid}/comm")).map(|comm| comm.trim().to_owned()).unwrap_or_default();
    Ok(ProcessInfo { pid, command, cgroup })
}
