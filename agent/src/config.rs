//! Command-line configuration shared by `agent run` and `agent classify`.

use std::time::Duration;

use clap::Args;

use agent_common::dns::{DnsConfig, MAX_DNS_PORTS};

use crate::{
    cgroup::HierarchyChoice,
    classifier::Thresholds,
    engine::{EngineConfig, network::NetworkConfig},
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

    /// Interval between reads of the probe maps and cgroup files (e.g. 5s,
    /// 500ms). Each tick reads every cgroup's cpu.stat, so the agent's CPU
    /// use grows with cgroups divided by this interval.
    #[arg(long, default_value = "5s", value_parser = parse_duration, env = "CHOKEPOINT_TICK")]
    pub tick: Duration,

    /// Cgroups each per-cgroup map can hold; waits of further cgroups are
    /// counted as lost (chokepoint_probe_lost_events_total{reason="map_full"}).
    /// The scheduler maps are per CPU and preallocated, so their kernel
    /// memory grows with this value times the number of possible CPUs.
    #[arg(long, default_value_t = 2048, env = "CHOKEPOINT_MAX_CGROUPS")]
    pub max_cgroups: u32,

    /// Thread slots of the scheduler probes (rounded up to a power of two).
    /// At most one per possible thread id is made (`kernel.pid_max`).
    /// Below that, as on most systemd hosts (pid_max 4194304), threads whose
    /// ids are equal modulo the slot count share a slot. When two of them
    /// wait at once, one wait is lost and counted as slot_shared.
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

    /// Server ports whose UDP and TCP traffic is parsed as DNS, comma
    /// separated (at most 8).
    #[arg(long, default_value = "53", value_delimiter = ',', env = "CHOKEPOINT_DNS_PORTS")]
    pub dns_ports: Vec<u16>,

    /// Time after which a DNS query without a response counts as a timeout
    /// (chokepoint_dns_timeouts_total), e.g. 5s.
    #[arg(long, default_value = "5s", value_parser = parse_duration, env = "CHOKEPOINT_DNS_TIMEOUT")]
    pub dns_timeout: Duration,

    /// DNS queries that can be in flight at once, node-wide; further ones
    /// are counted but not timed (reason="map_full").
    #[arg(long, default_value_t = 16_384, env = "CHOKEPOINT_MAX_DNS_PENDING")]
    pub max_dns_pending: u32,

    /// TCP connects that can be in flight (SYN sent, not yet ended) at once,
    /// node-wide; further ones are not measured (reason="map_full").
    #[arg(long, default_value_t = 16_384, env = "CHOKEPOINT_MAX_CONNECTS_PENDING")]
    pub max_connects_pending: u32,

    /// TCP connect destinations (address and port) exported per cgroup;
    /// further ones are summed into destination="other".
    #[arg(long, default_value_t = 32, env = "CHOKEPOINT_MAX_DESTINATIONS")]
    pub max_destinations: usize,

    /// (cgroup, destination) pairs the kernel keeps connect counters for,
    /// node-wide; connects to further pairs are counted as lost
    /// (reason="map_full"). The map is preallocated, because older kernels
    /// allow tracing programs only preallocated hash maps, and shared by
    /// all CPUs: 384 bytes per entry, so 1.5 MiB at the default.
    #[arg(long, default_value_t = 4_096, env = "CHOKEPOINT_MAX_CONNECT_ENTRIES")]
    pub max_connect_entries: u32,

    /// Share of a group's runnable time spent waiting for a CPU (0 to 1)
    /// above which CPU is its bottleneck.
    #[arg(long, default_value_t = Thresholds::default().runqueue_wait_share)]
    pub runqueue_wait_share: f64,

    /// Average number of a group's tasks waiting for a CPU below which
    /// waits are ignored, whatever their share.
    #[arg(long, default_value_t = Thresholds::default().runqueue_min_waiting_tasks)]
    pub runqueue_min_waiting_tasks: f64,

    /// Throttled periods per CFS period (0 to 1) above which a group is
    /// CPU-throttled.
    #[arg(long, default_value_t = Thresholds::default().throttled_ratio)]
    pub throttled_ratio: f64,

    /// Share of a group's runnable time held back by throttling (0 to 1)
    /// above which it is CPU-throttled whatever its period ratio.
    #[arg(long, default_value_t = Thresholds::default().throttle_delay_share)]
    pub throttle_delay_share: f64,

    /// Share of a group's busy time in block-I/O wait (0 to 1) above which
    /// disk I/O is its bottleneck.
    #[arg(long, default_value_t = Thresholds::default().iowait_share)]
    pub iowait_share: f64,

    /// DNS p99 latency in seconds above which lookups are slow.
    #[arg(long, default_value_t = Thresholds::default().dns_latency_seconds)]
    pub dns_latency: f64,

    /// Failed or timed-out DNS queries per query (0 to 1) above which DNS
    /// is failing.
    #[arg(long, default_value_t = Thresholds::default().dns_failure_ratio)]
    pub dns_failure_ratio: f64,

    /// NXDOMAIN answers per query (0 to 1) above which search-domain
    /// expansion counts as a DNS bottleneck.
    #[arg(long, default_value_t = Thresholds::default().dns_nxdomain_ratio)]
    pub dns_nxdomain_ratio: f64,

    /// TCP connect p99 latency in seconds above which connects are slow.
    #[arg(long, default_value_t = Thresholds::default().connect_latency_seconds)]
    pub connect_latency: f64,

    /// Failed connects per attempt (0 to 1) above which a dependency is
    /// failing.
    #[arg(long, default_value_t = Thresholds::default().connect_failure_ratio)]
    pub connect_failure_ratio: f64,

    /// Fewest DNS queries or TCP connects in the window for the DNS and
    /// connect rules to apply.
    #[arg(long, default_value_t = Thresholds::default().min_requests)]
    pub min_requests: u64,

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
            ("--throttled-ratio", self.throttled_ratio),
            ("--throttle-delay-share", self.throttle_delay_share),
            ("--iowait-share", self.iowait_share),
            ("--dns-failure-ratio", self.dns_failure_ratio),
            ("--dns-nxdomain-ratio", self.dns_nxdomain_ratio),
            ("--connect-failure-ratio", self.connect_failure_ratio),
        ] {
            if !(0.0..=1.0).contains(&value) {
                anyhow::bail!("invalid {name} {value}: expected a share between 0 and 1");
            }
        }
        if self.dns_ports.is_empty() || self.dns_ports.len() > MAX_DNS_PORTS || self.dns_ports.contains(&0) {
            anyhow::bail!(
                "invalid --dns-ports {:?}: expected 1 to {MAX_DNS_PORTS} ports from 1 to 65535, such as 53,5353",
                self.dns_ports
            );
        }
        for (name, value) in [
            ("--max-dns-pending", self.max_dns_pending),
            ("--max-connects-pending", self.max_connects_pending),
            ("--max-connect-entries", self.max_connect_entries),
        ] {
            if value == 0 {
                anyhow::bail!("invalid {name} 0: a kernel map needs at least one entry");
            }
        }
        if self.dns_timeout.is_zero() {
            anyhow::bail!("invalid --dns-timeout 0: expected a positive duration such as 5s");
        }
        let mut dns_ports = DnsConfig { port_count: self.dns_ports.len() as u32, ..DnsConfig::default() };
        dns_ports.ports[..self.dns_ports.len()].copy_from_slice(&self.dns_ports);
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
                throttled_ratio: self.throttled_ratio,
                throttle_delay_share: self.throttle_delay_share,
                iowait_share: self.iowait_share,
                dns_latency_seconds: self.dns_latency,
                dns_failure_ratio: self.dns_failure_ratio,
                dns_nxdomain_ratio: self.dns_nxdomain_ratio,
                connect_latency_seconds: self.connect_latency,
                connect_failure_ratio: self.connect_failure_ratio,
                min_requests: self.min_requests,
            },
            map_sizes: MapSizes {
                max_cgroups: self.max_cgroups,
                max_threads: self.max_threads,
                max_block_requests: self.max_block_requests,
                max_dns_pending: self.max_dns_pending,
                max_connects_pending: self.max_connects_pending,
                max_connect_entries: self.max_connect_entries,
            },
            btf: self.btf.clone(),
            hierarchy: self.cgroup_hierarchy,
            pod_logs: PodLogSources {
                pod_log_dir: self.pod_log_dir.clone(),
                container_log_dir: Some(self.container_log_dir.clone()).filter(|dir| !dir.as_os_str().is_empty()),
            },
            dns_ports,
            network: NetworkConfig { dns_timeout: self.dns_timeout, max_destinations: self.max_destinations },
        })
    }
}

/// Parses a duration such as `30s`, `500ms`, `2m` or a bare number of
/// seconds (`1.5`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|character: char| !(character.is_ascii_digit() || character == '.')).unwrap_or(text.len());
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

    #[derive(clap::Parser)]
    struct Command {
        #[command(flatten)]
        engine: EngineArgs,
    }

    fn engine_config(args: &[&str]) -> anyhow::Result<EngineConfig> {
        use clap::Parser as _;
        let command = Command::try_parse_from(std::iter::once("agent").chain(args.iter().copied()))?;
        command.engine.engine_config(Duration::from_secs(30), Duration::ZERO)
    }

    #[test]
    fn dns_ports_parse_and_validate() {
        let default = engine_config(&[]).unwrap();
        let two = engine_config(&["--dns-ports", "53,5353"]).unwrap();

        assert_eq!(default.dns_ports.port_count, 1);
        assert_eq!(default.dns_ports.ports[0], 53);
        assert_eq!(two.dns_ports.port_count, 2);
        assert_eq!(&two.dns_ports.ports[..2], &[53, 5353]);
        assert!(engine_config(&["--dns-ports", "0"]).is_err());
        assert!(engine_config(&["--dns-ports", "1,2,3,4,5,6,7,8,9"]).is_err());
        assert!(engine_config(&["--dns-timeout", "0s"]).is_err());
        assert!(engine_config(&["--max-connect-entries", "0"]).is_err());
    }

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
