//! The kernel's own accounting, read for comparison with the agent.

use std::{collections::HashMap, fs, path::Path, time::Duration};

/// Run-queue wait of every thread of `pid`, summed, in nanoseconds: the
/// second field of `/proc/PID/task/TID/schedstat`.
pub fn run_delay_ns(pid: u32) -> u64 {
    schedstat_field(pid, 1)
}

/// CPU time of every thread of `pid`, summed, in nanoseconds: the first
/// field of `/proc/PID/task/TID/schedstat`.
pub fn cpu_time_ns(pid: u32) -> u64 {
    schedstat_field(pid, 0)
}

fn schedstat_field(pid: u32, field: usize) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|text| text.split_whitespace().nth(field)?.parse::<u64>().ok())
        .sum()
}

/// Windows a test measures at most before it gives up on the kernel's
/// accounting (see [`measure_plausible`]).
const WINDOW_ATTEMPTS: usize = 3;

/// Runs `measure` until it returns a window whose kernel reference is
/// possible, and returns that window.
///
/// `measure` returns the window with the kernel's wait total for
/// `threads` tasks and the wall time between its two readings. No task
/// waits longer than the wall time. Yet on Linux 6.18 schedstat and delay
/// accounting each reported several seconds more, once, in windows where
/// the agent agreed with every other counter. Schedstat gave 22.7 s of run
/// delay for two throttled busy threads over about 9 s. Delay accounting
/// gave 14.5 s of blkio delay for one writer over about 8 s (the cause is
/// at `iowait_matches_delay_accounting`). Such a window is no evidence
/// about the agent, so it is measured again.
pub fn measure_plausible<T>(what: &str, threads: usize, mut measure: impl FnMut() -> (T, f64, Duration)) -> T {
    for attempt in 1..=WINDOW_ATTEMPTS {
        let (window, reference_seconds, elapsed) = measure();
        let possible = threads as f64 * elapsed.as_secs_f64();
        if reference_seconds <= possible {
            return window;
        }
        eprintln!(
            "window {attempt}: the kernel reports {reference_seconds:.3} s of {what} for {threads} tasks \
             over {:.3} s, more than they could wait; measuring again",
            elapsed.as_secs_f64()
        );
    }
    panic!(
        "the kernel reported impossible {what} in {WINDOW_ATTEMPTS} windows; its accounting cannot be a reference here"
    )
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
    let ticks: u64 = after_command.split_whitespace().nth(42 - 3).and_then(|field| field.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / hz as f64
}

/// Reads the key-value lines of a cgroup's `cpu.stat`.
pub fn cpu_stat(dir: &Path) -> HashMap<String, u64> {
    let text = fs::read_to_string(dir.join("cpu.stat"))
        .unwrap_or_else(|error| panic!("reading cpu.stat in {}: {error}", dir.display()));
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}
