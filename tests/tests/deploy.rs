//! Runs `deploy/check`: schema validation of the Kubernetes manifests,
//! cross-file consistency, `promtool` rule checks and unit tests, and the
//! dashboard's JSON and PromQL. Needs the tools `.ci/install-deploy-tools`
//! installs, but neither root nor a cluster.

use std::{path::Path, process::Command};

#[test]
fn deploy_check_passes() {
    let repository_root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits one folder below the repository root");
    let script = repository_root.join("deploy/check");

    let output = Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|error| panic!("running {} failed: {error}", script.display()));

    assert!(
        output.status.success(),
        "{} failed with {}. If a tool is missing, run .ci/install-deploy-tools.\n--- stdout\n{}\n--- stderr\n{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}
