//! The kernel's own accounting, read for comparison with the agent.

use std::{collections::HashMap, fs, path::Path};

/// Run-queue wait of every thread of `pid`, summed, in nanoseconds: the
/// second field of `/proc/PID/task/TID/schedstat`.
pub fn run_delay_ns(pid: u32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|text| text.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// Relative difference `|measured - reference| / reference`.
pub fn relative_error(measured: f64, reference: f64) -> f64 {
    (measured - reference).abs() / reference
}

/// Block-I/O delay of the process `pid` from delay accounting
/// (`delayacct_blkio_ticks`, field 42 of `/proc/PID/stat`), in seconds.
/// Needs `kernel.task_delayacct=1`; the kernel reports it in clock ticks
/// (`USER_HZ`), so its resolution is 10 ms at the usual 100 Hz.
pub fn blkio_delay_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may contain spaces; fields after it
    // start at field 3.
    let after_command = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after_command
        .split_whitespace()
        .nth(42 - 3)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / hz as f64
}

/// Reads the key-value lines of a cgroup's `cpu.stat`.
pub fn cpu_stat(dir: &Path) -> HashMap<String, u64> {
    let text = fs::read_to_string(dir.join("cpu.stat")).unwrap_or_else(|error| panic!("reading cpu.stat in {}: {error}", dir.display()));
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}
