//! `agent`: the Chokepoint node agent and its command-line client.

mod cgroup;
mod classifier;
mod classify;
mod config;
mod config_file;
mod engine;
mod exporter;
mod exposition;
mod http;
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

/// Finds why pods are slow: CPU run-queue waits and their cause, per
/// cgroup, measured with kernel probes.
///
/// Settings may also come from `--config FILE` (one `name = value` per
/// line, names as the long flags); the command line overrides the file.
#[derive(Parser, Debug)]
#[command(version, about, args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the node agent: attach the probes and serve /metrics and /healthz.
    Run(run::RunArgs),
    /// Measure one process's cgroup for a while and explain what slows it down.
    Classify(classify::ClassifyArgs),
}

fn main() -> ExitCode {
    let args = match config_file::expand_args(std::env::args_os().collect(), is_long_flag) {
        Ok(args) => args,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse_from(args);
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

/// Returns whether `name` is a long flag of `agent <subcommand>`.
fn is_long_flag(subcommand: &str, name: &str) -> bool {
    use clap::CommandFactory as _;
    Cli::command()
        .find_subcommand(subcommand)
        .is_some_and(|command| command.get_arguments().any(|arg| arg.get_long() == Some(name) && name != "config"))
}

/// Returns the default log filter. The daemon logs what it attaches and
/// finds. The one-shot command logs only warnings, so its report is the
/// only thing on the terminal.
fn default_filter(cli: &Cli) -> &'static str {
    match cli.command {
        Command::Run(_) => "info",
        Command::Classify(_) => "warn",
    }
}
