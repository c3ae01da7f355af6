//! Fixtures for the privileged integration tests: cgroups, workloads and a
//! running agent, each removed or stopped when dropped, also when a test
//! fails.
//!
//! The tests must run as root; they fail (never skip) otherwise, because a
//! skipped privileged test would let CI pass without checking anything.

pub mod agent;
pub mod block;
pub mod cgroups;
pub mod dns_wire;
pub mod kernel;
pub mod kubelet;
pub mod metrics;
pub mod netns;
pub mod process;
pub mod prometheus;
pub mod runqlat;
pub mod scenario;

pub use agent::Agent;
pub use cgroups::TestCgroup;
pub use metrics::Scrape;
pub use netns::NetNs;
pub use process::Workload;

/// Fails the test unless it runs as root.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the integration tests load probes and create cgroups; run them as root (cargo xtask test does)"
    );
}

/// Path of a binary built by this workspace: `agent`, `workload` or a
/// test helper such as `dns-server`.
///
/// `CHOKEPOINT_AGENT` overrides the agent's path; otherwise both come from
/// the workspace's debug target directory, which `cargo xtask test` fills.
pub fn binary(name: &str) -> std::path::PathBuf {
    if name == "agent"
        && let Ok(path) = std::env::var("CHOKEPOINT_AGENT")
    {
        return path.into();
    }
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace.join("target"), Into::into);
    let path = target.join("debug").join(name);
    assert!(
        path.exists(),
        "{} not found; build it first (`cargo build -p agent -p integration-tests`) or run `cargo xtask test`",
        path.display()
    );
    path
}
