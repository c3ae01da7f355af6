//! The BPF programs and maps a process has descriptors of (from `/proc/PID/fdinfo`),
//! and what the kernel accounts for them (`bpftool prog show --json`,
//! `bpftool map show --json`).
//!
//! Programs are found by the descriptors of the process that loaded them,
//! not by name or by diffing the program list: other BPF tools may load
//! programs of the same names while the benchmark runs.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    process::Command,
};

use anyhow::{Context as _, bail};
use serde_json::Value;

/// BPF objects one process has descriptors of.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BpfFds {
    /// Ids of programs held directly or through a link.
    pub prog_ids: BTreeSet<u32>,
    pub map_ids: BTreeSet<u32>,
    /// Number of BPF link descriptors (one per attachment).
    pub links: usize,
}

/// Reads `/proc/PID/fdinfo/*` and collects the BPF programs, maps and links
/// of process `pid`.
pub fn bpf_fds_of(pid: u32) -> anyhow::Result<BpfFds> {
    let directory = format!("/proc/{pid}/fdinfo");
    let entries = fs::read_dir(&directory).with_context(|| format!("listing {directory} failed"))?;
    let mut fds = BpfFds::default();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {directory} failed"))?;
        // A descriptor closed since the listing has no fdinfo any more.
        let Ok(text) = fs::read_to_string(entry.path()) else { continue };
        add_fdinfo(&mut fds, &text);
    }
    Ok(fds)
}

/// Adds one descriptor's fdinfo text: links have `link_type` and
/// `prog_id`, programs `prog_id`, maps `map_id`.
fn add_fdinfo(fds: &mut BpfFds, text: &str) {
    let mut is_link = false;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match key.trim() {
            "link_type" => is_link = true,
            "prog_id" => {
                if let Ok(id) = value.parse() {
                    fds.prog_ids.insert(id);
                }
            }
            "map_id" => {
                if let Ok(id) = value.parse() {
                    fds.map_ids.insert(id);
                }
            }
            _ => {}
        }
    }
    if is_link {
        fds.links += 1;
    }
}

/// Kernel accounting of one program: run count and run time, which grow
/// only while `kernel.bpf_stats_enabled` is 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramStats {
    pub name: String,
    pub run_count: u64,
    pub run_time_ns: u64,
}

/// Reads the statistics of the programs with the given ids, keyed by id.
pub fn program_stats(ids: &BTreeSet<u32>) -> anyhow::Result<BTreeMap<u32, ProgramStats>> {
    let listing = bpftool_json(&["prog", "show"])?;
    let all = parse_program_stats(&listing).context("unexpected output from `bpftool prog show --json`")?;
    let found: BTreeMap<u32, ProgramStats> = all.into_iter().filter(|(id, _)| ids.contains(id)).collect();
    if let Some(missing) = ids.iter().find(|id| !found.contains_key(id)) {
        bail!("program id {missing} not found in `bpftool prog show`, though the process has a descriptor of it");
    }
    Ok(found)
}

fn parse_program_stats(listing: &Value) -> anyhow::Result<BTreeMap<u32, ProgramStats>> {
    let Some(programs) = listing.as_array() else {
        bail!("expected a JSON array of programs");
    };
    let mut stats = BTreeMap::new();
    for program in programs {
        let id = json_u64(program, "id")?;
        let name = program.get("name").and_then(Value::as_str).unwrap_or("(unnamed)").to_owned();
        // bpftool leaves the two counters out while they are zero.
        let run_count = program.get("run_cnt").map_or(Ok(0), |_| json_u64(program, "run_cnt"))?;
        let run_time_ns = program.get("run_time_ns").map_or(Ok(0), |_| json_u64(program, "run_time_ns"))?;
        let id = u32::try_from(id).with_context(|| format!("program id {id} does not fit in 32 bits"))?;
        stats.insert(id, ProgramStats { name, run_count, run_time_ns });
    }
    Ok(stats)
}

/// Sum of `bytes_memlock` of the maps with the given ids: the kernel memory
/// charged for them.
pub fn maps_memlock_bytes(ids: &BTreeSet<u32>) -> anyhow::Result<u64> {
    let listing = bpftool_json(&["map", "show"])?;
    let Some(maps) = listing.as_array() else {
        bail!("unexpected output from `bpftool map show --json`: expected a JSON array of maps");
    };
    let mut total = 0;
    for map in maps {
        let id = json_u64(map, "id").context("unexpected output from `bpftool map show --json`")?;
        if u32::try_from(id).is_ok_and(|id| ids.contains(&id)) {
            total += json_u64(map, "bytes_memlock").context("unexpected output from `bpftool map show --json`")?;
        }
    }
    Ok(total)
}

/// Average run time per event, in nanoseconds, between two readings of the
/// same program; `None` when it did not run in between.
pub fn nanoseconds_per_event(before: &ProgramStats, after: &ProgramStats) -> Option<f64> {
    let runs = after.run_count.checked_sub(before.run_count)?;
    let time = after.run_time_ns.checked_sub(before.run_time_ns)?;
    (runs > 0).then(|| time as f64 / runs as f64)
}

fn json_u64(object: &Value, key: &str) -> anyhow::Result<u64> {
    object.get(key).and_then(Value::as_u64).with_context(|| format!("missing or non-integer field {key:?} in {object}"))
}

fn bpftool_json(args: &[&str]) -> anyhow::Result<Value> {
    let output = Command::new("bpftool")
        .args(args)
        .arg("--json")
        .output()
        .context("running bpftool failed; install the bpftool package")?;
    if !output.status.success() {
        bail!(
            "bpftool {} --json failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    serde_json::from_slice(&output.stdout)
        .with_context(|| format!("bpftool {} --json did not print valid JSON", args.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_of_link_program_and_map() {
        let mut fds = BpfFds::default();

        add_fdinfo(
            &mut fds,
            "pos:\t0\nflags:\t02000002\nlink_type:\traw_tracepoint\nlink_id:\t7\nprog_tag:\tabc\nprog_id:\t402\n",
        );
        add_fdinfo(&mut fds, "pos:\t0\nprog_type:\t17\nprog_jited:\t1\nprog_id:\t403\n");
        add_fdinfo(&mut fds, "pos:\t0\nmap_type:\t1\nkey_size:\t4\nmap_id:\t339\n");
        add_fdinfo(&mut fds, "pos:\t0\nflags:\t0100002\nmnt_id:\t25\n");

        assert_eq!(fds.links, 1);
        assert_eq!(fds.prog_ids, BTreeSet::from([402, 403]));
        assert_eq!(fds.map_ids, BTreeSet::from([339]));
    }

    #[test]
    fn program_stats_from_bpftool() {
        let listing: Value = serde_json::from_str(
            r#"[{"id":402,"type":"raw_tracepoint","name":"sched_switch","run_time_ns":2000,"run_cnt":4},
                {"id":403,"type":"raw_tracepoint","name":"sched_wakeup"}]"#,
        )
        .unwrap();

        let stats = parse_program_stats(&listing).unwrap();

        assert_eq!(stats[&402].run_count, 4);
        assert_eq!(stats[&402].run_time_ns, 2000);
        assert_eq!(stats[&403].name, "sched_wakeup");
        assert_eq!(stats[&403].run_count, 0);
    }

    #[test]
    fn program_stats_reject_non_array() {
        let listing: Value = serde_json::from_str(r#"{"error":"no BTF"}"#).unwrap();

        assert!(parse_program_stats(&listing).is_err());
    }

    #[test]
    fn per_event_cost_from_deltas() {
        let stats = |run_count, run_time_ns| ProgramStats { name: "p".into(), run_count, run_time_ns };

        assert_eq!(nanoseconds_per_event(&stats(10, 1000), &stats(30, 5000)), Some(200.0));
        assert_eq!(nanoseconds_per_event(&stats(10, 1000), &stats(10, 1000)), None);
    }
}
