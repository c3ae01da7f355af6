//! `agent classify --pid N`: measures one process's cgroup for a while and
//! explains what slows it down, with the same engine as `agent run`.

use std::{fs, process::ExitCode, thread, time::Duration};

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use crate::{
    cgroup::process::ProcessCgroups,
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
    let process = process_info(args.pid)?;
    privileges::check_probe_privileges()?;
    // One window, evaluated once: no hysteresis.
    let config = args.engine.engine_config(args.duration + args.engine.tick, Duration::ZERO)?;

    let mut engine = Engine::start(config)?;
    let id = engine.cgroup_id(&process.cgroup).with_context(|| {
        format!("cgroup {} of pid {} not found under {}", process.cgroup, args.pid, engine.layout().v2_root.display())
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

fn process_info(pid: u32) -> anyhow::Result<ProcessInfo> {
    let cgroups = ProcessCgroups::of_pid(pid)?;
    let command = fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|comm| comm.trim().to_owned())
        .unwrap_or_default();
    Ok(ProcessInfo {
        pid,
        command,
        cgroup: cgroups.unified,
    })
}
