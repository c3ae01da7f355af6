//! Cgroup membership of a process, from `/proc/PID/cgroup`.

use std::{fs, io};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ProcessError {
    #[error("no process with pid {0} (it may have exited)")]
    NotFound(u32),
    #[error("cannot read /proc/{pid}/cgroup: {source}")]
    Read { pid: u32, source: io::Error },
    #[error("process {0} has no cgroup entries in /proc/{0}/cgroup")]
    NoEntries(u32),
}

/// A process's cgroup memberships, as paths relative to each hierarchy's
/// root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessCgroups {
    /// Path in the v2 hierarchy (the `0::` line), absent on v1-only hosts.
    pub unified: Option<String>,
    /// Path in the v1 hierarchy that has the `cpu` controller, if any.
    pub v1_cpu: Option<String>,
}

impl ProcessCgroups {
    pub fn of_pid(pid: u32) -> Result<Self, ProcessError> {
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                ProcessError::NotFound(pid)
            } else {
                ProcessError::Read { pid, source }
            }
        })?;
        Self::parse(&text).ok_or(ProcessError::NoEntries(pid))
    }

    /// Parses `/proc/PID/cgroup` lines of the form
    /// `hierarchy-id:controller-list:path` (see cgroups(7)).
    pub fn parse(text: &str) -> Option<Self> {
        let mut unified = None;
        let mut v1_cpu = None;
        for line in text.lines() {
            let mut fields = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
                continue;
            };
            if id == "0" && controllers.is_empty() {
                unified = Some(path.to_owned());
            } else if controllers.split(',').any(|controller| controller == "cpu") {
                v1_cpu = Some(path.to_owned());
            }
        }
        (unified.is_some() || v1_cpu.is_some()).then_some(Self { unified, v1_cpu })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_hybrid() {
        let text = "12:memory:/user.slice\n4:cpu,cpuacct:/kubepods/pod1/abc\n0::/kubepods/pod1/abc\n";

        let cgroups = ProcessCgroups::parse(text).unwrap();

        assert_eq!(cgroups.unified.as_deref(), Some("/kubepods/pod1/abc"));
        assert_eq!(cgroups.v1_cpu.as_deref(), Some("/kubepods/pod1/abc"));
    }

    #[test]
    fn parse_pure_v2_path_with_colon() {
        let cgroups = ProcessCgroups::parse("0::/system.slice/odd:name.service\n").unwrap();

        assert_eq!(cgroups.unified.as_deref(), Some("/system.slice/odd:name.service"));
        assert_eq!(cgroups.v1_cpu, None);
    }

    #[test]
    fn parse_v1_only_and_garbage() {
        let v1_only = ProcessCgroups::parse("4:cpu,cpuacct:/x\n").unwrap();

        assert_eq!(v1_only.unified, None);
        assert_eq!(v1_only.v1_cpu.as_deref(), Some("/x"));
        assert_eq!(ProcessCgroups::parse("garbage"), None);
    }

    #[test]
    fn missing_pid_is_not_found() {
        // Pid numbers are capped well below u32::MAX (pid_max is at most 2^22).
        let error = ProcessCgroups::of_pid(u32::MAX).unwrap_err();

        assert!(matches!(error, ProcessError::NotFound(_)));
    }
}
