//! Project tasks. `cargo xtask setup` installs the probe toolchain,
//! `cargo xtask run` builds and starts the agent on this node, and
//! `cargo xtask test` runs every test, the privileged ones as root,
//! `cargo xtask lint` checks formatting and clippy's lints, and
//! `cargo xtask bench` measures what the agent costs and writes
//! `BENCHMARKS.md`.

mod bench;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Chokepoint project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building the probes needs: the nightly rust-src
    /// component and bpf-linker (and, as root on Debian, the packages the
    /// tests use).
    Setup,
    /// Build the probes and the agent, then run `agent run` with the given
    /// arguments (as root).
    Run {
        /// Arguments passed to `agent run`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the unit tests, then the privileged integration tests (as root).
    Test {
        /// Only integration tests whose name contains this filter.
        filter: Option<String>,
    },
    /// Check formatting and run clippy, warnings as errors, on the
    /// workspace and on the probes (with the nightly toolchain).
    Lint,
    /// Build the agent in release mode, measure its overhead next to
    /// runqlat, and write BENCHMARKS.md (as root; takes minutes).
    Bench(bench::BenchArgs),
    /// A process that only sleeps and wakes up; `bench` runs one in each of
    /// its cgroups.
    #[command(hide = true)]
    BenchWorker {
        /// Time between wake-ups, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        period_ms: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let root = workspace_root();
    match Cli::parse().task {
        Task::Setup => setup(&root),
        Task::Run { args } => {
            setup(&root)?;
            cargo(&root, &["build", "--release", "-p", "agent"])?;
            let agent = root.join("target/release/agent");
            let status = Command::new(&agent)
                .arg("run")
                .args(&args)
                .status()
                .with_context(|| format!("starting {}", agent.display()))?;
            check(status, "agent run")
        }
        Task::Test { filter } => test(&root, filter.as_deref()),
        Task::Lint => lint(&root),
        Task::Bench(args) => bench::run(&root, args),
        Task::BenchWorker { period_ms } => bench::run_worker(std::time::Duration::from_millis(period_ms)),
    }
}

fn setup(root: &Path) -> anyhow::Result<()> {
    let script = root.join(".ci/install");
    let status = Command::new("bash").arg(&script).status().with_context(|| format!("running {}", script.display()))?;
    check(status, "setup (.ci/install)")
}

fn test(root: &Path, filter: Option<&str>) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the integration tests load probes and create cgroups: run `cargo xtask test` as root");
    }
    cargo(root, &["test", "--workspace", "--exclude", "integration-tests", "--exclude", "agent-ebpf"])?;
    cargo(root, &["build", "-p", "agent", "-p", "integration-tests", "--bins"])?;
    // One test at a time: they measure scheduling and share the CPUs.
    let mut args = vec!["test", "-p", "integration-tests", "--", "--test-threads=1"];
    if let Some(filter) = filter {
        args.push(filter);
    }
    cargo(root, &args)
}

fn lint(root: &Path) -> anyhow::Result<()> {
    cargo(root, &["fmt", "--all", "--check"])?;
    cargo(root, &["clippy", "--workspace", "--exclude", "agent-ebpf", "--all-targets", "--", "-D", "warnings"])?;
    // The probes build only for the BPF target, which needs nightly.
    let status = Command::new("cargo")
        .args(["+nightly", "clippy", "--target", "bpfel-unknown-none", "-Z", "build-std=core", "--", "-D", "warnings"])
        .current_dir(root.join("agent-ebpf"))
        .status()
        .context("running cargo +nightly clippy in agent-ebpf")?;
    check(status, "cargo +nightly clippy (agent-ebpf)")
}

fn cargo(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .current_dir(root)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    check(status, &format!("cargo {}", args.join(" ")))
}

fn check(status: std::process::ExitStatus, what: &str) -> anyhow::Result<()> {
    if status.success() { Ok(()) } else { bail!("{what} failed ({status})") }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the workspace root").to_path_buf()
}
