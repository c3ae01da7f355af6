//! Processes of a cgroup subtree, and the pid a process has inside its own
//! pid namespace (`NSpid` in `/proc/PID/status`).

use std::{fs, path::Path};

/// Host pids of every process in the cgroup at `dir` and below it.
pub fn pids_below(dir: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    collect(dir, 0, &mut pids);
    pids
}

fn collect(dir: &Path, depth: usize, pids: &mut Vec<u32>) {
    // Containers nest a few levels at most; the bound guards odd trees.
    if depth > 16 {
        return;
    }
    if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(procs.lines().filter_map(|line| line.trim().parse::<u32>().ok()));
    }
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            collect(&entry.path(), depth + 1, pids);
        }
    }
}

/// Returns the pid of host process `pid` in its innermost pid namespace:
/// the last field of the `NSpid:` line of `/proc/PID/status` (Linux 4.1
/// and later).
pub fn innermost_pid(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_innermost_nspid(&status)
}

fn parse_innermost_nspid(status: &str) -> Option<u32> {
    let line = status.lines().find(|line| line.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nspid_innermost_field() {
        assert_eq!(parse_innermost_nspid("Name:\tx\nNSpid:\t4242\t7\n"), Some(7));
        assert_eq!(parse_innermost_nspid("NSpid:\t4242\n"), Some(4242));
        assert_eq!(parse_innermost_nspid("Name:\tx\n"), None);
    }

    #[test]
    fn own_process_is_found_in_own_pid_namespace() {
        assert!(innermost_pid(std::process::id()).is_some());
    }
}
