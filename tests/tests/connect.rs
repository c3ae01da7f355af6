//! TCP connect, end to end: listeners of the test's own in a network
//! namespace it made (fast, closed port, full accept queue), clients in
//! their own cgroups, and the agent's outcomes and latencies against the
//! clients' own timing of the same connects.

use std::{path::PathBuf, thread, time::Duration};

use integration_tests::{
    Agent, NetNs, Scrape, TestCgroup, Workload, binary,
    netns::{Timed, count_outcome, parse_results, wait_for_file, wait_for_results},
    require_root,
};

const FAST_V4: &str = "127.0.0.1:8080";
const FAST_V6: &str = "[::1]:8080";
const FAST_V4_MAPPED: &str = "[::ffff:127.0.0.1]:8080";
const CLOSED_V4: &str = "127.0.0.1:8082";
const CLOSED_V6: &str = "[::1]:8082";
const FULL_BACKLOG: &str = "127.0.0.1:8081";

/// Starts a listener in the namespace and returns it with its pid (for
/// SIGUSR1).
fn start_listener(netns: &NetNs, cgroup: &TestCgroup, mode: &str, address: &str) -> (Workload, i32) {
    let ready = netns.scratch_file(&format!("{mode}-{}.ready", address.replace([':', '[', ']'], "_")));
    let mut command = netns.command(binary("tcp-server"));
    command.arg(mode).arg(address).arg(&ready);
    let server = Workload::spawn_in(cgroup, command);
    let pid = wait_for_file(&ready, Duration::from_secs(10)).trim().parse().expect("pid in ready file");
    (server, pid)
}

/// Starts `net-client MODE OUT ARGS...` in `cgroup` and returns it with
/// the path its results will be written to.
fn start_client(netns: &NetNs, cgroup: &TestCgroup, name: &str, mode: &str, args: &[&str]) -> (Workload, PathBuf) {
    let out = netns.scratch_file(name);
    let mut command = netns.command(binary("net-client"));
    command.arg(mode).arg(&out).args(args);
    (Workload::spawn_in(cgroup, command), out)
}

fn finish(client: (Workload, PathBuf)) -> Vec<Timed> {
    let results = parse_results(&wait_for_results(&client.1, Duration::from_secs(60)));
    drop(client.0);
    results
}

fn connects(scrape: &Scrape, cgroup: &TestCgroup, destination: &str, outcome: &str) -> f64 {
    scrape
        .value(
            "chokepoint_tcp_connects_total",
            &[("cgroup", &cgroup.relative), ("destination", destination), ("outcome", outcome)],
        )
        .unwrap_or(0.0)
}

fn latency(scrape: &Scrape, cgroup: &TestCgroup, destination: &str, part: &str) -> f64 {
    scrape
        .value(
            &format!("chokepoint_tcp_connect_latency_seconds_{part}"),
            &[("cgroup", &cgroup.relative), ("destination", destination)],
        )
        .unwrap_or(0.0)
}

#[test]
fn connect_outcomes_and_latency_per_destination() {
    require_root();
    let netns = NetNs::new();
    let servers = TestCgroup::new("servers");
    let fast_group = TestCgroup::new("fast-client");
    let slow_group = TestCgroup::new("slow-client");
    let abandon_group = TestCgroup::new("nonblocking-client");
    let _fast_v4 = start_listener(&netns, &servers, "listen", FAST_V4);
    let _fast_v6 = start_listener(&netns, &servers, "listen", FAST_V6);
    let (_backlog, backlog_pid) = start_listener(&netns, &servers, "backlog", FULL_BACKLOG);
    let agent = Agent::start(&[]);

    let fast = finish(start_client(
        &netns,
        &fast_group,
        "fast.out",
        "connect",
        &[
            "0",
            FAST_V4,
            FAST_V4,
            FAST_V4,
            FAST_V4,
            FAST_V4,
            FAST_V6,
            FAST_V6,
            FAST_V6,
            FAST_V4_MAPPED,
            FAST_V4_MAPPED,
            CLOSED_V4,
            CLOSED_V4,
            CLOSED_V4,
            CLOSED_V6,
            CLOSED_V6,
        ],
    ));
    // The accept queue is full, so the first SYN is dropped. Making room
    // 300 ms later lets the retransmitted SYN (about 1 s after the first)
    // through; that connection then fills the queue again.
    let slow_client = start_client(&netns, &slow_group, "slow.out", "connect", &["0", FULL_BACKLOG]);
    thread::sleep(Duration::from_millis(300));
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(backlog_pid, libc::SIGUSR1) };
    let slow = finish(slow_client);
    // With TCP_SYNCNT 1 the kernel gives up after one retransmission, at
    // about 3 s, instead of the default 127 s.
    let timed_out = finish(start_client(&netns, &slow_group, "timeout.out", "connect", &["1", FULL_BACKLOG]));
    let abandoned = finish(start_client(&netns, &abandon_group, "abandon.out", "nonblocking", &["200", FULL_BACKLOG]));
    let nonblocking =
        finish(start_client(&netns, &abandon_group, "nonblocking.out", "nonblocking", &["1000", FAST_V4]));
    thread::sleep(Duration::from_millis(300));
    let scrape = agent.scrape();

    let slow_agent = latency(&scrape, &slow_group, FULL_BACKLOG, "sum");
    let slow_client_seconds = slow[0].seconds;
    let fast_agent = latency(&scrape, &fast_group, FAST_V4, "sum") + latency(&scrape, &fast_group, FAST_V6, "sum");
    let fast_client: f64 =
        fast.iter().filter(|result| result.outcome == "established").map(|result| result.seconds).sum();
    eprintln!(
        "slow connect: agent {slow_agent:.4} s, client {slow_client_seconds:.4} s; \
         timed out after {:.3} s; fast connects: agent {fast_agent:.6} s, client {fast_client:.6} s over {} connects",
        timed_out[0].seconds,
        count_outcome(&fast, "established")
    );

    // The clients got the outcomes the listeners were set up to cause.
    assert_eq!(count_outcome(&fast, "established"), 10, "fast connects seen by the client");
    assert_eq!(count_outcome(&fast, "refused"), 5, "refused connects seen by the client");
    assert_eq!(slow[0].outcome, "established", "slow connect seen by the client");
    assert!(slow_client_seconds > 0.9, "slow connect took only {slow_client_seconds} s");
    assert_eq!(timed_out[0].outcome, "timeout", "timed-out connect seen by the client");
    assert_eq!(abandoned[0].outcome, "abandoned", "abandoned connect seen by the client");
    assert_eq!(nonblocking[0].outcome, "established", "non-blocking connect seen by the client");

    // IPv4, IPv6 and v4-mapped IPv6 (labelled as IPv4).
    assert_eq!(connects(&scrape, &fast_group, FAST_V4, "established"), 7.0);
    assert_eq!(connects(&scrape, &fast_group, FAST_V6, "established"), 3.0);
    assert_eq!(connects(&scrape, &fast_group, CLOSED_V4, "refused"), 3.0);
    assert_eq!(connects(&scrape, &fast_group, CLOSED_V6, "refused"), 2.0);
    assert_eq!(latency(&scrape, &fast_group, FAST_V4, "count"), 7.0);
    // Connections closed right after they were established are not
    // failures.
    for outcome in ["refused", "timeout", "abandoned", "error"] {
        assert_eq!(connects(&scrape, &fast_group, FAST_V4, outcome), 0.0, "{FAST_V4} {outcome}");
        assert_eq!(connects(&scrape, &fast_group, FAST_V6, outcome), 0.0, "{FAST_V6} {outcome}");
    }
    assert_eq!(connects(&scrape, &slow_group, FULL_BACKLOG, "established"), 1.0);
    assert_eq!(connects(&scrape, &slow_group, FULL_BACKLOG, "timeout"), 1.0);
    assert_eq!(connects(&scrape, &abandon_group, FULL_BACKLOG, "abandoned"), 1.0);
    assert_eq!(connects(&scrape, &abandon_group, FULL_BACKLOG, "established"), 0.0);
    assert_eq!(connects(&scrape, &abandon_group, FAST_V4, "established"), 1.0);
    assert_eq!(connects(&scrape, &abandon_group, FAST_V4, "abandoned"), 0.0);

    let slow_error = (slow_agent - slow_client_seconds).abs() / slow_client_seconds;
    assert!(slow_error < 0.10, "slow connect latency off by {:.1}%", slow_error * 100.0);
    // Loopback connects take tens of microseconds, as long as the
    // syscall itself, so only an upper bound is meaningful for them.
    assert!(fast_agent > 0.0, "fast connects: agent {fast_agent} s");
    assert!(fast_agent <= fast_client, "fast connects: agent {fast_agent} s, client {fast_client} s");

    // The listeners' own sockets are not connects.
    let server_connects: f64 = scrape
        .matching("chokepoint_tcp_connects_total", &[("cgroup", servers.relative.as_str())])
        .filter(|sample| sample.labels.get("destination").map(String::as_str) != Some(FULL_BACKLOG))
        .map(|sample| sample.value)
        .sum();
    assert_eq!(server_connects, 0.0, "connects attributed to the servers' cgroup");
}

#[test]
fn connect_destinations_fold_into_other() {
    require_root();
    let netns = NetNs::new();
    let servers = TestCgroup::new("servers");
    let client_group = TestCgroup::new("many-destinations");
    let _fast_v4 = start_listener(&netns, &servers, "listen", FAST_V4);
    let _fast_v6 = start_listener(&netns, &servers, "listen", FAST_V6);
    let agent = Agent::start(&["--max-destinations", "2"]);

    let results = finish(start_client(
        &netns,
        &client_group,
        "many.out",
        "connect",
        &["0", FAST_V4, FAST_V6, CLOSED_V4, CLOSED_V6, FAST_V4],
    ));
    thread::sleep(Duration::from_millis(300));
    let scrape = agent.scrape();

    let labels = [("cgroup", client_group.relative.as_str())];
    let series: Vec<_> = scrape.matching("chokepoint_tcp_connects_total", &labels).collect();
    let destinations: std::collections::BTreeSet<&str> =
        series.iter().filter_map(|sample| sample.labels.get("destination").map(String::as_str)).collect();
    let total: f64 = series.iter().map(|sample| sample.value).sum();
    let folded = scrape
        .value("chokepoint_tcp_connect_destinations_folded_total", &[("cgroup", &client_group.relative)])
        .unwrap_or(0.0);
    eprintln!("destinations kept: {destinations:?}, folded {folded}");

    assert_eq!(results.len(), 5, "connects made by the client");
    assert_eq!(destinations.len(), 3, "two destinations and other: {destinations:?}");
    assert!(destinations.contains("other"), "{destinations:?}");
    assert_eq!(folded, 2.0);
    assert_eq!(total, 5.0, "every connect counted once");
}

#[test]
fn classify_reports_connect_failures() {
    require_root();
    let netns = NetNs::new();
    let servers = TestCgroup::new("servers");
    let client_group = TestCgroup::new("failing-client");
    let _backlog = start_listener(&netns, &servers, "backlog", FULL_BACKLOG);
    // After 1.5 s, so that classify has attached its probes (a connect
    // that started earlier is not timed): a refused connect, then one that
    // times out after about 3 s (TCP_SYNCNT 1).
    let out = netns.scratch_file("failing.out");
    let script = format!(
        "sleep 1.5; exec {} connect {} 1 {CLOSED_V4} {FULL_BACKLOG}",
        binary("net-client").display(),
        out.display()
    );
    let mut command = netns.command("sh");
    command.args(["-c", &script]);
    let client = (Workload::spawn_in(&client_group, command), out);

    let output = std::process::Command::new(binary("agent"))
        .args(["classify", "--pid", &client.0.pid().to_string(), "--duration", "6s", "--output", "json"])
        .output()
        .expect("running agent classify");
    let results = finish(client);

    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("classify JSON: {error}: {}", String::from_utf8_lossy(&output.stderr)));
    eprintln!("{}", report["connect"]);
    assert_eq!(results.len(), 2);
    assert_eq!(results[1].outcome, "timeout", "the client's second connect");
    assert_eq!(report["connect"]["refused"], 1);
    assert_eq!(report["connect"]["timed_out"], 1);
    assert_eq!(report["connect"]["established"], 0);
    // Both destinations failed once; a tie goes to the lower address and
    // port.
    assert_eq!(report["connect"]["worst_destination"], FULL_BACKLOG);
    assert_eq!(report["connect"]["worst_destination_failures"], 1);
    assert_eq!(report["connect"]["failure_ratio"], 1.0);
}
