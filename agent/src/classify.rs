//! `agent classify --pid N`: measures one process's cgroup for a while and
//! explains what slows it down, with the same engine as `agent run`.

use std::{fs, process::ExitCode, thread, time::Duration};

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use crate::{
    cgroup::{Hierarchy, process::ProcessCgroups},
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
    #[arg(long)]
    pid: u32,

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
    let cgroups = ProcessCgroups::of_pid(args.pid)?;
    privileges::check_probe_privileges()?;
    // One window, evaluated once: no hysteresis.
    let config = args.engine.engine_config(args.duration + args.engine.tick, Duration::ZERO)?;

    let mut engine = Engine::start(config)?;
    let process = process_info(args.pid, &cgroups, engine.layout().identity)?;
    let id = engine.cgroup_id(&process.cgroup).with_context(|| {
        format!(
            "cgroup {} of pid {} not found under {}",
            process.cgroup,
            args.pid,
            engine.layout().identity_root().display()
        )
    })?;
    engine.watch(id);
    engine.tick();
    thread::sleep(args.duration);
    let snapshot = engine.tick();
    drop(engine);

    let group = snapshot
        .group(id)
        .with_context(|| format!("cgroup {} was removed while it was measured", process.cgroup))?;
    let report = report::ClassifyReport::new(&process, group)
        .with_context(|| format!("no complete measurement of cgroup {}", process.cgroup))?;
    match args.output {
        Output::Text => print!("{}", report.to_text()),
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(if report.verdict.primary == Class::None {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_BOTTLENECK_FOUND)
    })
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
    let command = fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|comm| comm.trim().to_owned())
        .unwrap_or_default();
    Ok(ProcessInfo {
        pid,
        command,
        cgroup,
    })
}
