//! The agent's command line and HTTP surface: classify, errors, shutdown.

use std::{process::Command, thread, time::Duration};

use integration_tests::{Agent, TestCgroup, Workload, binary, process::saturating_thread_count, require_root};

fn classify(pid: u32, extra: &[&str]) -> std::process::Output {
    Command::new(binary("agent"))
        .args(["classify", "--pid", &pid.to_string(), "--duration", "3s"])
        .args(extra)
        .output()
        .expect("running agent classify")
}

#[test]
fn classify_names_runqueue_wait() {
    require_root();
    let noisy = TestCgroup::new("noisy");
    let victim = TestCgroup::new("victim");
    let _noisy_load = Workload::start(&noisy, &["busy", &saturating_thread_count().to_string()]);
    let victim_load = Workload::start(&victim, &["wake-loop", "2000", "200"]);
    thread::sleep(Duration::from_millis(500));

    let text = classify(victim_load.pid(), &[]);
    let json = classify(victim_load.pid(), &["--output", "json"]);

    let stdout = String::from_utf8_lossy(&text.stdout);
    let verdict = stdout.lines().next().unwrap_or_default();
    assert_eq!(text.status.code(), Some(2), "exit status; output:\n{stdout}");
    assert!(verdict.starts_with("verdict:"), "{stdout}");
    assert!(verdict.contains("run-queue wait"), "{stdout}");
    assert!(stdout.contains(&victim.relative), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("classify JSON");
    assert_eq!(report["verdict"]["primary"], "cpu_contention");
    assert_eq!(report["process"]["cgroup"], victim.relative.as_str());
    assert!(report["runqueue"]["p99_seconds"].as_f64().unwrap_or(0.0) > 0.0);
    // Other load on the machine may rank first; the test's neighbour must
    // be named.
    let named: Vec<&str> = report["neighbours"]
        .as_array()
        .map(|list| list.iter().filter_map(|entry| entry["cgroup"].as_str()).collect())
        .unwrap_or_default();
    assert!(named.contains(&noisy.relative.as_str()), "{report:#}");
    assert!(verdict.contains("Main neighbour: "), "{stdout}");
}

#[test]
fn classify_idle_process_finds_nothing() {
    require_root();
    let idle = TestCgroup::new("idle");
    let load = Workload::start(&idle, &["idle"]);

    let output = classify(load.pid(), &["--output", "json"]);

    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("classify JSON");
    assert_eq!(report["verdict"]["primary"], "none");
}

#[test]
fn classify_bogus_pid_fails_clearly() {
    require_root();

    // pid_max is at most 2^22, so this pid never exists.
    let output = classify(99_999_999, &[]);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("no process with pid 99999999"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn classify_rejects_bad_duration() {
    let output = Command::new(binary("agent"))
        .args(["classify", "--pid", "1", "--duration", "soon"])
        .output()
        .expect("running agent classify");

    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid duration"));
}

#[test]
fn http_rejects_garbage_and_keeps_serving() {
    require_root();
    let agent = Agent::start(&[]);

    let garbage = agent.request(b"\x16\x03\x01\x02\x00garbage\r\n\r\n").expect("garbage request");
    let missing = agent.get("/nope").expect("unknown path");
    let post = agent
        .request(b"POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .expect("POST");

    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    assert!(agent.get("/healthz").expect("healthz").starts_with("HTTP/1.1 200"));
    assert!(agent.scrape().text.contains("chokepoint_probe_attached"));
}

/// Ids of the loaded BPF programs named `name`.
fn program_ids(name: &str) -> Vec<u64> {
    let output = Command::new("bpftool").args(["prog", "show", "--json"]).output().expect("running bpftool");
    let programs: serde_json::Value = serde_json::from_slice(&output.stdout).expect("bpftool JSON");
    programs
        .as_array()
        .map(|list| {
            list.iter().filter(|program| program["name"] == name).filter_map(|program| program["id"].as_u64()).collect()
        })
        .unwrap_or_default()
}

#[test]
fn sigterm_detaches_and_exits_zero() {
    require_root();
    // Other agents (a node's own, another test run) may hold programs of
    // the same name, so the check is on ids this agent added.
    let before = program_ids("sched_switch");
    let agent = Agent::start(&[]);
    let attached = agent.scrape().value("chokepoint_probe_attached", &[("probe", "sched_switch")]);
    assert_eq!(attached, Some(1.0));
    let added: Vec<u64> = program_ids("sched_switch").into_iter().filter(|id| !before.contains(id)).collect();
    assert!(!added.is_empty(), "the agent's sched_switch program is not listed by bpftool");

    let status = agent.stop();

    assert!(status.success(), "agent exited with {status}");
    let remaining = program_ids("sched_switch");
    assert!(added.iter().all(|id| !remaining.contains(id)), "programs {added:?} are still loaded");
}

#[test]
fn classify_without_btf_fails_clearly() {
    require_root();
    let idle = TestCgroup::new("idle");
    let load = Workload::start(&idle, &["idle"]);

    let output = classify(load.pid(), &["--btf", "/nonexistent/vmlinux"]);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot read kernel BTF at /nonexistent/vmlinux"), "{stderr}");
    assert!(stderr.contains("CONFIG_DEBUG_INFO_BTF"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn classify_without_privilege_names_capabilities() {
    require_root();
    let idle = TestCgroup::new("idle");
    let load = Workload::start(&idle, &["idle"]);

    // setpriv drops to nobody with no capabilities at all.
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"])
        .arg(binary("agent"))
        .args(["classify", "--pid", &load.pid().to_string(), "--duration", "1s"])
        .output()
        .expect("running setpriv");

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("CAP_BPF"), "{stderr}");
    assert!(stderr.contains("CAP_PERFMON"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn classify_in_private_cgroup_namespace() {
    require_root();
    let victim = TestCgroup::new("victim");
    let agent_group = TestCgroup::new("agent-container");
    let load = Workload::start(&victim, &["wake-loop", "2000", "100"]);

    // Like an agent in a container with its own cgroup namespace: it joins
    // its cgroup, then unshares, so /proc/PID/cgroup of the victim reads
    // `/../chokepoint-test-...-victim` from inside.
    let procs = agent_group.v2_dir.join("cgroup.procs");
    let script = format!(
        "echo $$ > '{}' && exec unshare --cgroup '{}' classify --pid {} --duration 1s --output json",
        procs.display(),
        binary("agent").display(),
        load.pid()
    );
    let output = Command::new("sh").args(["-c", &script]).output().expect("running unshare");

    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("no JSON ({error}): {}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(report["process"]["cgroup"], victim.relative.as_str());
    assert_eq!(report["cgroup"], victim.relative.as_str());
}
