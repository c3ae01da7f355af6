//! `agent`: the Chokepoint node agent and its command-line client.

mod cgroup;
mod classifier;
mod classify;
mod config;
mod engine;
mod exporter;
mod http;
#[cfg_attr(
    not(test),
    expect(dead_code, unused_imports, reason = "the exporter does not use pod identities yet, only unit tests do")
)]
mod identity;
mod kernel_btf;
mod mounts;
mod privileges;
mod probes;
mod report;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Finds what holds pods back: CPU run-queue waits and their cause, per
/// cgroup, measured with kernel probes.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the node agent: attach the probes and serve /metrics and /healthz.
    Run(run::RunArgs),
    /// Measure one process's cgroup for a while and explain what holds it back.
    Classify(classify::ClassifyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter(&cli))))
        .with_writer(std::io::stderr)
        .init();

    let result = match cli.command {
        Command::Run(args) => run::run(args).map(|()| ExitCode::SUCCESS),
        Command::Classify(args) => classify::classify(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The daemon logs what it attaches and finds; the one-shot command keeps
/// stderr for warnings so its report stands alone.
fn default_filter(cli: &Cli) -> &'static str {
    match cli.command {
        Command::Run(_) => "info",
        Command::Classify(_) => "warn",
    }
}
