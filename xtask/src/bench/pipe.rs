//! The context-switch load: `perf bench sched pipe`, both ends pinned to
//! one CPU with `taskset`, so every message is a wakeup and a switch on
//! that CPU.

use std::process::Command;

use anyhow::{Context as _, bail};

/// Runs `taskset -c CPU perf bench sched pipe -l LOOPS` and returns its
/// throughput in operations per second.
pub fn run_pipe(cpu: u32, loops: u64) -> anyhow::Result<f64> {
    let output = Command::new("taskset")
        .args(["-c", &cpu.to_string(), "perf", "bench", "sched", "pipe", "-l", &loops.to_string()])
        .output()
        .context("running `taskset ... perf bench sched pipe` failed; install util-linux and linux-perf")?;
    if !output.status.success() {
        bail!("perf bench sched pipe failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    parse_ops_per_second(&text).with_context(|| format!("unexpected output from perf bench sched pipe:\n{text}"))
}

/// Finds the `NUMBER ops/sec` line of `perf bench sched pipe`.
fn parse_ops_per_second(text: &str) -> anyhow::Result<f64> {
    let Some(line) = text.lines().find(|line| line.trim_end().ends_with("ops/sec")) else {
        bail!("no line ending in \"ops/sec\"");
    };
    let number = line.split_whitespace().next().unwrap_or_default();
    let value: f64 = number.parse().with_context(|| format!("invalid number {number:?} in line {line:?}"))?;
    if !(value.is_finite() && value > 0.0) {
        bail!("invalid throughput {value} in line {line:?}");
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_per_second_from_perf_output() {
        let text = "# Running 'sched/pipe' benchmark:\n# Executed 100000 pipe operations between two processes\n\n     Total time: 0.970 [sec]\n\n       9.701230 usecs/op\n         103079 ops/sec\n";

        assert_eq!(parse_ops_per_second(text).unwrap(), 103_079.0);
    }

    #[test]
    fn ops_per_second_missing() {
        assert!(parse_ops_per_second("# Running 'sched/pipe' benchmark:\n").is_err());
    }

    #[test]
    fn ops_per_second_not_a_number() {
        assert!(parse_ops_per_second("  many ops/sec\n").is_err());
    }
}
