//! Command-line configuration shared by `agent run` and `agent classify`.

use std::time::Duration;

use clap::Args;

use crate::{
    cgroup::HierarchyChoice,
    classifier::Thresholds,
    engine::EngineConfig,
    identity::{DEFAULT_CONTAINER_LOG_DIR, DEFAULT_POD_LOG_DIR, PodLogSources},
    probes::MapSizes,
};

/// Options of the measuring engine, common to both commands.
#[derive(Args, Clone, Debug)]
pub struct EngineArgs {
    /// Read settings from FILE: one `name = value` per line, names as the
    /// long flags (e.g. `window = 30s`); flags on the command line win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,

    /// Interval between reads of the probe maps and cgroup files (e.g. 1s, 500ms).
    #[arg(long, default_value = "1s", value_parser = parse_duration, env = "CHOKEPOINT_TICK")]
    pub tick: Duration,

    /// Cgroups each per-cgroup map can hold; waits of further cgroups are
    /// counted as lost (chokepoint_probe_lost_events_total{reason="map_full"}).
    /// The maps are per CPU and preallocated, so kernel memory grows with
    /// this value times the number of possible CPUs.
    #[arg(long, default_value_t = 2048, env = "CHOKEPOINT_MAX_CGROUPS")]
    pub max_cgroups: u32,

    /// Threads that can be runnable but not yet running (or in I/O wait)
    /// at once, node-wide.
    #[arg(long, default_value_t = 65_536, env = "CHOKEPOINT_MAX_THREADS")]
    pub max_threads: u32,

    /// Cgroup hierarchy that identifies tasks: v2, v1-cpu (hosts whose
    /// containers live only in v1 hierarchies, such as hybrid hosts with
    /// kubelet's cgroupfs driver), or auto to detect it at start-up.
    #[arg(long, value_enum, default_value_t = HierarchyChoice::Auto, env = "CHOKEPOINT_CGROUP_HIERARCHY")]
    pub cgroup_hierarchy: HierarchyChoice,

    /// The kubelet's pod log folder tree (`<namespace>_<pod>_<uid>/<container>/`),
    /// which gives pod names without asking the API server.
    #[arg(long, default_value = DEFAULT_POD_LOG_DIR, env = "CHOKEPOINT_POD_LOG_DIR")]
    pub pod_log_dir: std::path::PathBuf,

    /// The kubelet's container log links (`<pod>_<namespace>_<container>-<id>.log`),
    /// the only source of container names on containerd and CRI-O; "" skips them.
    #[arg(long, default_value = DEFAULT_CONTAINER_LOG_DIR, env = "CHOKEPOINT_CONTAINER_LOG_DIR")]
    pub container_log_dir: std::path::PathBuf,

    /// Kernel BTF file to read struct offsets from, for kernels without
    /// /sys/kernel/btf/vmlinux (e.g. a file from BTFHub for that kernel).
    #[arg(long, value_name = "FILE", env = "CHOKEPOINT_BTF")]
    pub btf: Option<std::path::PathBuf>,

    /// Block requests that can be in flight at once, node-wide; requests
    /// beyond it are counted as lost.
    #[arg(long, default_value_t = 16_384, env = "CHOKEPOINT_MAX_BLOCK_REQUESTS")]
    pub max_block_requests: u32,

    /// Share of a group's runnable time spent waiting for a CPU (0 to 1)
    /// above which CPU is its bottleneck.
    #[arg(long, default_value_t = Thresholds::default().runqueue_wait_share)]
    pub runqueue_wait_share: f64,

    /// Average number of a group's tasks waiting for a CPU below which
    /// waits are ignored, whatever their share.
    #[arg(long, default_value_t = Thresholds::default().runqueue_min_waiting_tasks)]
    pub runqueue_min_waiting_tasks: f64,

    /// Share of its CPU limit (or of the node, without a limit) that a
    /// group's CPU demand (cores used plus tasks waiting) must reach for CPU
    /// waits to count as saturation rather than contention.
    #[arg(long, default_value_t = Thresholds::default().saturation_share)]
    pub saturation_share: f64,
}

impl EngineArgs {
    /// Builds the engine's configuration with the given window and
    /// hysteresis, rejecting out-of-range values.
    pub fn engine_config(&self, window: Duration, min_duration: Duration) -> anyhow::Result<EngineConfig> {
        for (name, value) in [
            ("--runqueue-wait-share", self.runqueue_wait_share),
            ("--saturation-share", self.saturation_share),
        ] {
            if !(0.0..=1.0).contains(&value) {
                anyhow::bail!("invalid {name} {value}: expected a share between 0 and 1");
            }
        }
        if self.tick.is_zero() {
            anyhow::bail!("invalid --tick 0: expected a positive duration such as 1s");
        }
        Ok(EngineConfig {
            tick: self.tick,
            window,
            min_duration,
            thresholds: Thresholds {
                runqueue_wait_share: self.runqueue_wait_share,
                runqueue_min_waiting_tasks: self.runqueue_min_waiting_tasks,
                saturation_share: self.saturation_share,
            },
            map_sizes: MapSizes {
                max_cgroups: self.max_cgroups,
                max_threads: self.max_threads,
                max_block_requests: self.max_block_requests,
            },
            btf: self.btf.clone(),
            hierarchy: self.cgroup_hierarchy,
            pod_logs: PodLogSources {
                pod_log_dir: self.pod_log_dir.clone(),
                container_log_dir: Some(self.container_log_dir.clone()).filter(|dir| !dir.as_os_str().is_empty()),
            },
        })
    }
}

/// Parses a duration such as `30s`, `500ms`, `2m` or a bare number of
/// seconds (`1.5`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|character: char| !(character.is_ascii_digit() || character == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected a number with a unit, such as 30s or 500ms"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1e3,
        "m" => value * 60.0,
        _ => return Err(format!("invalid duration unit {unit:?} in {text:?}: use ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|error| format!("invalid duration {text:?}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("").is_err());
    }
}
