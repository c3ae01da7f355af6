//! Bottleneck classification scenarios: each makes its own cgroups and
//! checks every group's class on `/metrics` and with `agent classify`.

use std::{process::Command, time::Duration};

use integration_tests::{
    TestCgroup, Workload, binary,
    block::LoopDevice,
    netns::{NetNs, wait_for_file},
    scenario::{Expect, Fixtures, Group, Scenario},
};

const SETTLE: Duration = Duration::from_secs(7);

#[test]
fn busy_group_is_cpu_saturated() {
    Scenario {
        name: "busy group using all the CPU it may use",
        groups: &[
            Group::new("busy", &["busy", "4"], Expect::Primary("cpu_saturated")),
            Group::new("idle", &["idle"], Expect::Primary("none")),
        ],
        settle: SETTLE,
        agent_args: &[],
        setup: None,
        neighbour: None,
    }
    .run();
}

#[test]
fn light_group_beside_busy_neighbour_is_contended() {
    Scenario {
        name: "light group sharing CPUs with a busy neighbour",
        groups: &[
            Group::new("neighbour", &["busy", "4"], Expect::Primary("cpu_saturated")),
            Group::new("light", &["wake-loop", "2000", "200"], Expect::Primary("cpu_contention")),
        ],
        settle: SETTLE,
        agent_args: &[],
        setup: None,
        neighbour: Some(("light", "neighbour")),
    }
    .run();
}

#[test]
fn idle_group_is_none() {
    Scenario {
        name: "idle group",
        groups: &[
            Group::new("idle", &["idle"], Expect::Primary("none")),
            Group::new("light", &["wake-loop", "20000", "100"], Expect::Primary("none")),
        ],
        settle: SETTLE,
        agent_args: &[],
        setup: None,
        neighbour: None,
    }
    .run();
}

#[test]
fn tight_quota_is_cpu_throttled() {
    Scenario {
        name: "group throttled by a tight quota",
        groups: &[
            Group::new("throttled", &["busy", "2"], Expect::Primary("cpu_throttled")).with_quota(20_000, 100_000),
            Group::new("light", &["wake-loop", "20000", "100"], Expect::Not("cpu_throttled")),
        ],
        settle: SETTLE,
        agent_args: &[],
        setup: None,
        neighbour: None,
    }
    .run();
}

#[test]
fn bursty_group_with_low_cpu_is_throttled() {
    Scenario {
        name: "bursty group with low average CPU, throttled",
        groups: &[
            // About 30 ms of work every 500 ms against 10 ms per 100 ms.
            Group::new("bursty", &["bursty", "30", "500", "1"], Expect::Primary("cpu_throttled"))
                .with_quota(10_000, 100_000),
            Group::new("idle", &["idle"], Expect::Primary("none")),
        ],
        settle: SETTLE,
        agent_args: &[],
        setup: None,
        neighbour: None,
    }
    .run();
}

/// Makes a 256 MiB loop device; writers get a blkio limit on it.
fn slow_disk(fixtures: &mut Fixtures) {
    fixtures.disk = Some(LoopDevice::new(256));
}

fn direct_writer(fixtures: &Fixtures) -> Command {
    let disk = fixtures.disk.as_ref().expect("slow_disk setup");
    let mut command = Command::new("dd");
    command
        .args(["if=/dev/zero", &format!("of={}", disk.path.display()), "bs=64k", "count=100000", "oflag=direct"])
        .stderr(std::process::Stdio::null());
    command
}

#[test]
fn slow_disk_writer_is_disk_io() {
    Scenario {
        name: "group writing to a slow disk",
        groups: &[
            Group::command("writer", direct_writer, Expect::Primary("disk_io")).with_write_limit(2 * 1024 * 1024),
            Group::new("cpu-only", &["wake-loop", "1000", "500"], Expect::Not("disk_io")),
        ],
        settle: SETTLE,
        agent_args: &[],
        setup: Some(slow_disk),
        neighbour: None,
    }
    .run();
}

/// Starts `program ARGS READY` inside the scenario's network namespace, in
/// the servers' own cgroup, and waits until it writes its ready file.
fn start_server(fixtures: &mut Fixtures, program: &str, args: &[&str]) {
    let netns = fixtures.netns.get_or_insert_with(NetNs::new);
    let ready = netns.scratch_file(&format!("{program}.ready"));
    let mut command = netns.command(binary(program));
    command.args(args).arg(&ready);
    let cgroup = fixtures.server_cgroup.get_or_insert_with(|| TestCgroup::new("servers"));
    fixtures.servers.push(Workload::spawn_in(cgroup, command));
    wait_for_file(&ready, Duration::from_secs(10));
}

/// Starts a DNS server on the namespace's loopback that answers after
/// 200 ms, and points the namespace's resolv.conf at it.
fn slow_dns_server(fixtures: &mut Fixtures) {
    start_server(fixtures, "dns-server", &["53", "200"]);
    let netns = fixtures.netns.as_ref().expect("created by start_server");
    netns.set_resolv_conf("nameserver 127.0.0.1\noptions attempts:1 timeout:2\n");
}

fn resolver_client(fixtures: &Fixtures) -> Command {
    let netns = fixtures.netns.as_ref().expect("slow_dns_server setup");
    let mut command = netns.command(binary("net-client"));
    // 200 lookups of 200 ms each outlast the scenario; the process is
    // killed when the scenario ends.
    command.args(["resolve", &netns.scratch_file("resolve.out").display().to_string(), "200", "api.example."]);
    command
}

#[test]
fn slow_dns_answers_are_dns() {
    Scenario {
        name: "group whose DNS answers are slow",
        groups: &[
            Group::command("resolver", resolver_client, Expect::Primary("dns")),
            Group::new("idle", &["idle"], Expect::Primary("none")),
        ],
        settle: SETTLE,
        agent_args: &[],
        setup: Some(slow_dns_server),
        neighbour: None,
    }
    .run();
}

const FULL_BACKLOG: &str = "127.0.0.1:8081";

fn full_backlog_listener(fixtures: &mut Fixtures) {
    start_server(fixtures, "tcp-server", &["backlog", FULL_BACKLOG]);
}

fn backlog_client(fixtures: &Fixtures) -> Command {
    let netns = fixtures.netns.as_ref().expect("full_backlog_listener setup");
    // Non-blocking connects given up after 300 ms each, 100 of them: about
    // 30 s, longer than the scenario.
    let script = format!(
        "for attempt in $(seq 100); do {} nonblocking {} 300 {FULL_BACKLOG}; done",
        binary("net-client").display(),
        netns.scratch_file("connect.out").display()
    );
    let mut command = netns.command("sh");
    command.args(["-c", &script]);
    command
}

#[test]
fn full_backlog_connects_are_dependency_connect() {
    Scenario {
        name: "group whose connects go to a full-backlog listener",
        groups: &[
            Group::command("client", backlog_client, Expect::Primary("dependency_connect")),
            Group::new("light", &["wake-loop", "20000", "100"], Expect::Primary("none")),
        ],
        settle: SETTLE,
        agent_args: &[],
        setup: Some(full_backlog_listener),
        neighbour: None,
    }
    .run();
}
