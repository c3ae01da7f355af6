//! Checks, before anything is loaded, that the agent may load probes, so
//! the user gets one line naming the missing capability instead of a
//! verifier or syscall error.

use std::fs;

use anyhow::bail;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Fails unless the effective capability set allows loading tracing
/// programs: CAP_BPF with CAP_PERFMON (Linux 5.8 and later), or
/// CAP_SYS_ADMIN.
pub fn check_probe_privileges() -> anyhow::Result<()> {
    let status = fs::read_to_string("/proc/self/status")?;
    let effective = effective_capabilities(&status).unwrap_or(0);
    if !may_load_probes(effective) {
        bail!(
            "missing privilege: loading probes needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); \
             run as root, or grant them, e.g. `setcap cap_bpf,cap_perfmon,cap_sys_resource,cap_dac_read_search+ep agent`"
        );
    }
    Ok(())
}

fn has(capabilities: u64, capability: u32) -> bool {
    capabilities & (1u64 << capability) != 0
}

fn may_load_probes(effective: u64) -> bool {
    has(effective, CAP_SYS_ADMIN) || (has(effective, CAP_BPF) && has(effective, CAP_PERFMON))
}

/// Parses the `CapEff:` line of `/proc/self/status` (a hex bit mask).
fn effective_capabilities(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_sets() {
        assert!(may_load_probes(1 << CAP_SYS_ADMIN));
        assert!(may_load_probes((1 << CAP_BPF) | (1 << CAP_PERFMON)));
        assert!(!may_load_probes(1 << CAP_BPF));
        assert!(!may_load_probes(0));
    }

    #[test]
    fn parse_cap_eff() {
        let status = "Name:\tagent\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";

        assert_eq!(effective_capabilities(status), Some(0x1ff_ffff_ffff));
        assert_eq!(effective_capabilities("Name: x\n"), None);
    }
}
