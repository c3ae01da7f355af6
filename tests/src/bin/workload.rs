//! Workloads the integration tests place in their cgroups.
//!
//! `workload busy THREADS`: THREADS threads spinning on the CPU.
//! `workload wake-loop SLEEP_US WORK_US [THREADS]`: THREADS threads (one by
//! default) that each sleep SLEEP_US microseconds, then spin WORK_US
//! microseconds, forever.
//! `workload bursty BURST_MS PERIOD_MS THREADS`: THREADS threads that each
//! spin BURST_MS milliseconds every PERIOD_MS milliseconds.
//! `workload idle`: sleeps.
//!
//! Every mode runs until killed; the tests own and kill the process.

use std::{
    env, hint,
    process::ExitCode,
    thread,
    time::{Duration, Instant},
};

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let number = |index: usize| -> Option<u64> { args.get(index)?.parse().ok() };
    match args.first().map(String::as_str) {
        Some("busy") => {
            let threads = number(1).unwrap_or(1);
            spawn_threads(threads, || {
                loop {
                    hint::spin_loop();
                }
            })
        }
        Some("wake-loop") => {
            let (Some(sleep_us), Some(work_us)) = (number(1), number(2)) else { return usage() };
            let threads = number(3).unwrap_or(1);
            spawn_threads(threads, move || {
                loop {
                    thread::sleep(Duration::from_micros(sleep_us));
                    spin_for(Duration::from_micros(work_us));
                }
            })
        }
        Some("bursty") => {
            let (Some(burst_ms), Some(period_ms)) = (number(1), number(2)) else { return usage() };
            let threads = number(3).unwrap_or(1);
            spawn_threads(threads, move || {
                loop {
                    let start = Instant::now();
                    spin_for(Duration::from_millis(burst_ms));
                    let period = Duration::from_millis(period_ms);
                    thread::sleep(period.saturating_sub(start.elapsed()));
                }
            })
        }
        Some("idle") => loop {
            thread::sleep(Duration::from_secs(3600));
        },
        _ => usage(),
    }
}

fn spawn_threads(count: u64, body: impl Fn() + Send + Sync + Clone + 'static) -> ExitCode {
    let handles: Vec<_> = (0..count)
        .map(|_| {
            let body = body.clone();
            thread::spawn(body)
        })
        .collect();
    for handle in handles {
        let _ = handle.join();
    }
    ExitCode::SUCCESS
}

fn spin_for(duration: Duration) {
    let start = Instant::now();
    while start.elapsed() < duration {
        hint::spin_loop();
    }
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: workload busy THREADS | wake-loop SLEEP_US WORK_US [THREADS] | bursty BURST_MS PERIOD_MS [THREADS] | idle"
    );
    ExitCode::from(2)
}
