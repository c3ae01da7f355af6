//! Interleaved rounds under the context-switch and network loads: the
//! throughput of each configuration, then, with BPF statistics on, the
//! cost per event of each program.

use std::{collections::BTreeSet, time::Duration};

use super::{
    Binaries, Config, Load, Results, Settings,
    bpf_stats::{bpf_fds_of, nanoseconds_per_event, program_stats},
    guard::{check_interrupted, sleep_interruptible},
    network, pipe,
    processes::{AgentProcess, RunqlatProcess},
    samples::Samples,
    userspace::exported_probe_costs,
};

/// The process running next to the load, if any, stopped on drop.
enum Attached {
    Nothing,
    Agent(AgentProcess),
    Runqlat(RunqlatProcess),
}

impl Attached {
    fn start(config: Config, binaries: &Binaries) -> anyhow::Result<Self> {
        Ok(match config {
            Config::Baseline => Attached::Nothing,
            Config::Agent => {
                Attached::Agent(AgentProcess::start(&binaries.agent, &binaries.log_dir.join("agent.log"))?)
            }
            Config::Runqlat => {
                Attached::Runqlat(RunqlatProcess::start(&binaries.runqlat, &binaries.log_dir.join("runqlat.log"))?)
            }
        })
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Attached::Nothing => None,
            Attached::Agent(agent) => Some(agent.pid()),
            Attached::Runqlat(runqlat) => Some(runqlat.pid()),
        }
    }
}

/// Configurations of round `round`, rotated so that none always runs
/// first or last.
fn round_order(configs: &[Config], round: usize) -> Vec<Config> {
    let mut order = configs.to_vec();
    if !order.is_empty() {
        order.rotate_left(round % configs.len());
    }
    order
}

/// Measures pipe, UDP and TCP throughput under each configuration, and
/// the agent's start-up time each time it starts.
pub fn measure_throughput(settings: &Settings, binaries: &Binaries, results: &mut Results) -> anyhow::Result<()> {
    for round in 0..settings.rounds {
        for config in round_order(&Config::ALL, round) {
            check_interrupted()?;
            eprintln!("bench: throughput round {}/{}: {}", round + 1, settings.rounds, config.label());
            let attached = Attached::start(config, binaries)?;
            if let Attached::Agent(agent) = &attached {
                results.startup_milliseconds.push(agent.startup.as_secs_f64() * 1e3);
            }

            let ops = pipe::run_pipe(settings.load_cpu, settings.pipe_loops)?;
            results.pipe_ops_per_second.push(config, ops);
            check_interrupted()?;
            let udp = network::udp_round_trips(settings.load_cpu, settings.udp_requests, settings.network_time_limit)?;
            results.udp_round_trips_per_second.push(config, udp);
            check_interrupted()?;
            let tcp = network::tcp_connects(settings.load_cpu, settings.tcp_connections, settings.network_time_limit)?;
            results.tcp_connections_per_second.push(config, tcp);

            drop(attached);
        }
    }
    Ok(())
}

/// Measures the cost per event of the agent's and runqlat's programs under
/// the pipe load and under the network loads. For the agent the same
/// figure is also computed from its own metrics over the same load.
/// Expects `kernel.bpf_stats_enabled=1`.
pub fn measure_per_event(settings: &Settings, binaries: &Binaries, results: &mut Results) -> anyhow::Result<()> {
    for round in 0..settings.rounds {
        for config in round_order(&[Config::Agent, Config::Runqlat], round) {
            check_interrupted()?;
            eprintln!("bench: per-event round {}/{}: {}", round + 1, settings.rounds, config.label());
            let attached = Attached::start(config, binaries)?;
            let Some(pid) = attached.pid() else { continue };
            for load in Load::ALL {
                let exported_before = match &attached {
                    Attached::Agent(agent) => Some(exported_costs_after_tick(agent)?),
                    _ => None,
                };
                for (program, nanoseconds) in per_event_under(pid, || run_load(load, settings))? {
                    results.per_event.entry((config, load, program)).or_default().push(nanoseconds);
                }
                if let (Attached::Agent(agent), Some(before)) = (&attached, exported_before) {
                    let after = exported_costs_after_tick(agent)?;
                    for (probe, nanoseconds) in exported_deltas(&before, &after) {
                        results.exported_per_event.entry((load, probe)).or_default().push(nanoseconds);
                    }
                }
            }
            drop(attached);
        }
    }
    Ok(())
}

fn run_load(load: Load, settings: &Settings) -> anyhow::Result<()> {
    match load {
        Load::Pipe => pipe::run_pipe(settings.load_cpu, settings.pipe_loops).map(drop),
        Load::Network => {
            network::udp_round_trips(settings.load_cpu, settings.udp_requests, settings.network_time_limit)?;
            network::tcp_connects(settings.load_cpu, settings.tcp_connections, settings.network_time_limit).map(drop)
        }
    }
}

/// The interval at which the agent refreshes its metrics: the default of
/// `agent run --tick`, which the benchmark runs with default flags. It must
/// follow that default, or the scrapes below miss the load.
const AGENT_TICK: Duration = Duration::from_secs(5);

/// Waits until the agent has refreshed its metrics once more, then returns
/// its exported (probe, runs, run seconds). The figures thus cover at
/// least everything up to the call.
fn exported_costs_after_tick(agent: &AgentProcess) -> anyhow::Result<Vec<(String, f64, f64)>> {
    sleep_interruptible(AGENT_TICK + Duration::from_millis(500))?;
    Ok(exported_probe_costs(&super::userspace::scrape(agent)?.body))
}

/// Returns nanoseconds per run of each probe between two scrapes.
fn exported_deltas(before: &[(String, f64, f64)], after: &[(String, f64, f64)]) -> Vec<(String, f64)> {
    after
        .iter()
        .filter_map(|(probe, runs, seconds)| {
            let (_, runs_before, seconds_before) = before.iter().find(|(name, ..)| name == probe)?;
            let runs = runs - runs_before;
            (runs > 0.0).then(|| (probe.clone(), (seconds - seconds_before) * 1e9 / runs))
        })
        .collect()
}

/// Runs the pipe load once and returns the nanoseconds per event of each
/// program that process `pid` holds, by program name.
pub fn per_event_under_pipe(pid: u32, settings: &Settings) -> anyhow::Result<Vec<(String, f64)>> {
    per_event_under(pid, || run_load(Load::Pipe, settings))
}

/// Runs `load` once and returns the nanoseconds per event of each program
/// of process `pid` that ran during it, by program name.
fn per_event_under(pid: u32, load: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Vec<(String, f64)>> {
    let ids: BTreeSet<u32> = bpf_fds_of(pid)?.prog_ids;
    let before = program_stats(&ids)?;
    load()?;
    let after = program_stats(&ids)?;

    let mut costs = Vec::new();
    for (id, old) in &before {
        let Some(new) = after.get(id) else { continue };
        if let Some(nanoseconds) = nanoseconds_per_event(old, new) {
            costs.push((new.name.clone(), nanoseconds));
        }
    }
    Ok(costs)
}

/// Finds the per-event samples of the first program of `config` whose name
/// contains `part`, under `load`.
pub fn find_program<'a>(
    results: &'a Results,
    config: Config,
    load: Load,
    part: &str,
) -> Option<(&'a str, &'a Samples)> {
    results
        .per_event
        .iter()
        .find(|((owner, under, name), _)| *owner == config && *under == load && name.contains(part))
        .map(|((_, _, name), samples)| (name.as_str(), samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_rotate_configurations() {
        let first = round_order(&Config::ALL, 0);
        let second = round_order(&Config::ALL, 1);

        assert_eq!(first, vec![Config::Baseline, Config::Agent, Config::Runqlat]);
        assert_eq!(second, vec![Config::Agent, Config::Runqlat, Config::Baseline]);
    }

    #[test]
    fn exported_deltas_per_probe() {
        let before = vec![("sched_switch".to_owned(), 100.0, 0.001), ("dns_egress".to_owned(), 5.0, 0.0001)];
        let after = vec![
            ("sched_switch".to_owned(), 1100.0, 0.001_2),
            ("dns_egress".to_owned(), 5.0, 0.0001),
            ("new_probe".to_owned(), 10.0, 0.1),
        ];

        let deltas = exported_deltas(&before, &after);

        assert_eq!(deltas.len(), 1, "{deltas:?}");
        assert_eq!(deltas[0].0, "sched_switch");
        assert!((deltas[0].1 - 200.0).abs() < 1e-6, "{deltas:?}");
    }
}
