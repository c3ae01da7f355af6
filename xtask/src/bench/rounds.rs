//! Interleaved rounds under the context-switch and network loads: the
//! throughput of each configuration, then, with BPF statistics on, the
//! cost per event of each program.

use std::{collections::BTreeSet, time::Duration};

use super::{
    Binaries, Config, Results, Settings,
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
            Config::Agent => Attached::Agent(AgentProcess::start(&binaries.agent, &binaries.log_dir.join("agent.log"))?),
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

            let ops = pipe::run_pipe(settings.pipe_cpu, settings.pipe_loops)?;
            results.pipe_ops_per_second.push(config, ops);
            check_interrupted()?;
            let udp = network::udp_round_trips(settings.udp_requests, settings.network_time_limit)?;
            results.udp_round_trips_per_second.push(config, udp);
            check_interrupted()?;
            let tcp = network::tcp_connects(settings.tcp_connections, settings.network_time_limit)?;
            results.tcp_connections_per_second.push(config, tcp);

            drop(attached);
        }
    }
    Ok(())
}

/// Measures the cost per event of the agent's and runqlat's programs under
/// the pipe load. Expects `kernel.bpf_stats_enabled=1`.
pub fn measure_per_event(settings: &Settings, binaries: &Binaries, results: &mut Results) -> anyhow::Result<()> {
    for round in 0..settings.rounds {
        for config in round_order(&[Config::Agent, Config::Runqlat], round) {
            check_interrupted()?;
            eprintln!("bench: per-event round {}/{}: {}", round + 1, settings.rounds, config.label());
            let attached = Attached::start(config, binaries)?;
            let Some(pid) = attached.pid() else { continue };

            for (program, nanoseconds) in per_event_under_pipe(pid, settings)? {
                results.per_event.entry((config, program)).or_default().push(nanoseconds);
            }

            if let Attached::Agent(agent) = &attached {
                // The agent refreshes its metrics once per tick (1 s by
                // default); wait for a refresh that includes the load.
                sleep_interruptible(Duration::from_millis(1500))?;
                let scrape = super::userspace::scrape(agent)?;
                for (probe, runs, seconds) in exported_probe_costs(&scrape.body) {
                    if runs > 0.0 {
                        results
                            .exported_per_event
                            .entry(probe)
                            .or_default()
                            .push(seconds * 1e9 / runs);
                    }
                }
            }
            drop(attached);
        }
    }
    Ok(())
}

/// Runs the pipe load once and returns the nanoseconds per event of each
/// program that process `pid` holds, by program name.
pub fn per_event_under_pipe(pid: u32, settings: &Settings) -> anyhow::Result<Vec<(String, f64)>> {
    let ids: BTreeSet<u32> = bpf_fds_of(pid)?.prog_ids;
    let before = program_stats(&ids)?;
    pipe::run_pipe(settings.pipe_cpu, settings.pipe_loops)?;
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
/// contains `part`.
pub fn find_program<'a>(results: &'a Results, config: Config, part: &str) -> Option<(&'a str, &'a Samples)> {
    results
        .per_event
        .iter()
        .find(|((owner, name), _)| *owner == config && name.contains(part))
        .map(|((_, name), samples)| (name.as_str(), samples))
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
}
