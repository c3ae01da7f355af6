//! The kernel's own accounting, read for comparison with the agent.

use std::fs;

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
