//! Builds the probes in `agent-ebpf` for the BPF target with the nightly
//! toolchain and bpf-linker, and places the object in `OUT_DIR`, where
//! `src/probes/mod.rs` embeds it.
//!
//! With `AYA_BUILD_SKIP=1` (for `cargo check` or clippy on a machine
//! without bpf-linker) no probes are built and an empty object is written;
//! an agent built that way reports the missing probes when it starts.

use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

const PROBE_PACKAGE: &str = "agent-ebpf";

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR not set"))?);
    let object = out_dir.join(PROBE_PACKAGE);
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let probe_dir = manifest_dir.parent().context("agent crate has no parent directory")?.join(PROBE_PACKAGE);
    let probe_dir = probe_dir.to_str().context("probe crate path is not UTF-8")?;
    // aya-build reruns this script when the probe crate changes, but not
    // when the shared types it compiles against do.
    println!("cargo:rerun-if-changed={}", manifest_dir.join("../agent-common/src").display());

    // aya-build declares this too, but only when it runs; without it here
    // a build with AYA_BUILD_SKIP=1 would be reused after the variable is
    // unset, leaving an agent without probes.
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    if skip_requested() {
        fs::write(&object, b"").with_context(|| format!("writing {}", object.display()))?;
        return Ok(());
    }

    aya_build::build_ebpf(
        [Package { name: PROBE_PACKAGE, root_dir: probe_dir, ..Default::default() }],
        Toolchain::Nightly,
    )
    .context(
        "building the probes failed; run `cargo xtask setup` to install bpf-linker and the nightly rust-src component",
    )
}

fn skip_requested() -> bool {
    env::var("AYA_BUILD_SKIP").is_ok_and(|value| value == "1" || value.eq_ignore_ascii_case("true"))
}
