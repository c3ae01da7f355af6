//! DNS, end to end: a DNS server of the test's own in a network namespace
//! it made, clients in their own cgroups, and the agent's counts and
//! latencies against the clients' own timing of the same queries.

use std::{path::PathBuf, thread, time::Duration};

use integration_tests::{
    Agent, NetNs, Scrape, TestCgroup, Workload, binary,
    netns::{Timed, count_outcome, parse_results, wait_for_file, wait_for_results},
    require_root,
};

/// How long the test server waits before each response. Large next to
/// scheduling noise on a shared machine, small enough to keep tests short.
const SERVER_DELAY_MS: u64 = 50;
const SERVER: &str = "127.0.0.1:53";
const CLIENT_TIMEOUT_MS: &str = "700";

fn start_server(netns: &NetNs, cgroup: &TestCgroup) -> Workload {
    start_server_on(netns, cgroup, 53)
}

fn start_server_on(netns: &NetNs, cgroup: &TestCgroup, port: u16) -> Workload {
    let ready = netns.scratch_file(&format!("dns-server-{port}.ready"));
    let mut command = netns.command(binary("dns-server"));
    command.arg(port.to_string()).arg(SERVER_DELAY_MS.to_string()).arg(&ready);
    let server = Workload::spawn_in(cgroup, command);
    wait_for_file(&ready, Duration::from_secs(10));
    server
}

/// A namespace set up as Kubernetes sets up a pod's resolver, with the test
/// server in it. With ndots:5 a name with fewer dots is tried under every
/// search domain first, and the server returns NXDOMAIN for every name
/// under .search.test.
struct SearchDomains {
    // Fields drop in this order, so the server exits before its cgroup
    // is removed.
    _server: Workload,
    _server_group: TestCgroup,
    client_group: TestCgroup,
    netns: NetNs,
}

impl SearchDomains {
    fn start() -> Self {
        let netns = NetNs::new();
        netns.set_resolv_conf(
            "nameserver 127.0.0.1\nsearch a.search.test b.search.test\noptions ndots:5 attempts:1 timeout:2\n",
        );
        let server_group = TestCgroup::new("dns-server");
        let client_group = TestCgroup::new("resolver");
        let server = start_server(&netns, &server_group);
        Self { _server: server, _server_group: server_group, client_group, netns }
    }
}

fn run_client(netns: &NetNs, cgroup: &TestCgroup, name: &str, args: &[&str]) -> Vec<Timed> {
    let out: PathBuf = netns.scratch_file(name);
    let mut command = netns.command(binary("net-client"));
    let mut args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    // The result file follows the mode and, for dns, its three arguments.
    let position = if args[0] == "dns" { 4 } else { 1 };
    args.insert(position, out.display().to_string());
    command.args(&args);
    let _client = Workload::spawn_in(cgroup, command);
    parse_results(&wait_for_results(&out, Duration::from_secs(60)))
}

fn dns_value(scrape: &Scrape, name: &str, cgroup: &TestCgroup, extra: &[(&str, &str)]) -> f64 {
    let mut labels = vec![("cgroup", cgroup.relative.as_str())];
    labels.extend_from_slice(extra);
    scrape.value(name, &labels).unwrap_or(0.0)
}

fn answered_seconds(results: &[Timed]) -> f64 {
    results.iter().filter(|result| result.outcome != "timeout").map(|result| result.seconds).sum()
}

#[test]
fn dns_udp_and_tcp_match_client_timing() {
    require_root();
    let netns = NetNs::new();
    let server_group = TestCgroup::new("dns-server");
    let udp_group = TestCgroup::new("udp-client");
    let tcp_group = TestCgroup::new("tcp-client");
    let idle_group = TestCgroup::new("idle");
    let _server = start_server(&netns, &server_group);
    let _idle = Workload::start(&idle_group, &["idle"]);
    let agent = Agent::start(&["--dns-timeout", "1s"]);

    let udp_queries = [
        "ok-1.example/A",
        "ok-2.example/AAAA",
        "ok-3.example/A",
        "ok-4.example/AAAA",
        "ok-5.example/A",
        "ok-6.example/A",
        "nx-1.example/A",
        "nx-2.example/AAAA",
        "nx-3.example/A",
        "nx-4.example/A",
        "servfail-1.example/A",
        "servfail-2.example/A",
        "refused-1.example/A",
        "refused-2.example/AAAA",
        "silent-1.example/A",
        "silent-2.example/A",
        "silent-3.example/AAAA",
    ];
    let mut udp_args = vec!["dns", "udp", SERVER, CLIENT_TIMEOUT_MS];
    udp_args.extend_from_slice(&udp_queries);
    let udp = run_client(&netns, &udp_group, "udp.out", &udp_args);
    let tcp_queries =
        ["ok-1.example/A", "ok-2.example/AAAA", "ok-3.example/A", "ok-4.example/A", "nx-1.example/A", "nx-2.example/A"];
    let mut tcp_args = vec!["dns", "tcp", SERVER, "2000"];
    tcp_args.extend_from_slice(&tcp_queries);
    let tcp = run_client(&netns, &tcp_group, "tcp.out", &tcp_args);
    // The agent counts a timeout once the query is older than
    // --dns-timeout, on its next tick.
    thread::sleep(Duration::from_millis(1500));
    let scrape = agent.scrape();

    let udp_agent_sum = dns_value(&scrape, "chokepoint_dns_latency_seconds_sum", &udp_group, &[]);
    let tcp_agent_sum = dns_value(&scrape, "chokepoint_dns_latency_seconds_sum", &tcp_group, &[]);
    let udp_client_sum = answered_seconds(&udp);
    let tcp_client_sum = answered_seconds(&tcp);
    eprintln!(
        "udp: agent {udp_agent_sum:.4} s, client {udp_client_sum:.4} s over {} answers; \
         tcp: agent {tcp_agent_sum:.4} s, client {tcp_client_sum:.4} s over {} answers",
        udp.len() - count_outcome(&udp, "timeout"),
        tcp.len()
    );

    // The clients got the responses the server was set up to send.
    assert_eq!(count_outcome(&udp, "0"), 6, "udp NOERROR seen by the client");
    assert_eq!(count_outcome(&udp, "3"), 4, "udp NXDOMAIN seen by the client");
    assert_eq!(count_outcome(&udp, "timeout"), 3, "udp timeouts seen by the client");
    assert_eq!(count_outcome(&tcp, "0"), 4, "tcp NOERROR seen by the client");

    let udp_value = |name: &str, extra: &[(&str, &str)]| dns_value(&scrape, name, &udp_group, extra);
    assert_eq!(udp_value("chokepoint_dns_queries_total", &[("qtype", "A")]), 12.0);
    assert_eq!(udp_value("chokepoint_dns_queries_total", &[("qtype", "AAAA")]), 5.0);
    assert_eq!(udp_value("chokepoint_dns_responses_total", &[("rcode", "NOERROR")]), 6.0);
    assert_eq!(udp_value("chokepoint_dns_responses_total", &[("rcode", "NXDOMAIN")]), 4.0);
    assert_eq!(udp_value("chokepoint_dns_responses_total", &[("rcode", "SERVFAIL")]), 2.0);
    assert_eq!(udp_value("chokepoint_dns_responses_total", &[("rcode", "REFUSED")]), 2.0);
    assert_eq!(udp_value("chokepoint_dns_timeouts_total", &[]), 3.0);
    assert_eq!(udp_value("chokepoint_dns_latency_seconds_count", &[]), 14.0);
    assert_eq!(udp_value("chokepoint_dns_malformed_packets_total", &[]), 0.0);

    let tcp_value = |name: &str, extra: &[(&str, &str)]| dns_value(&scrape, name, &tcp_group, extra);
    assert_eq!(tcp_value("chokepoint_dns_queries_total", &[("qtype", "A")]), 5.0);
    assert_eq!(tcp_value("chokepoint_dns_queries_total", &[("qtype", "AAAA")]), 1.0);
    assert_eq!(tcp_value("chokepoint_dns_responses_total", &[("rcode", "NOERROR")]), 4.0);
    assert_eq!(tcp_value("chokepoint_dns_responses_total", &[("rcode", "NXDOMAIN")]), 2.0);
    assert_eq!(tcp_value("chokepoint_dns_timeouts_total", &[]), 0.0);
    assert_eq!(tcp_value("chokepoint_dns_latency_seconds_count", &[]), 6.0);

    let udp_error = (udp_agent_sum - udp_client_sum).abs() / udp_client_sum;
    assert!(udp_error < 0.10, "udp latency off by {:.1}%", udp_error * 100.0);
    let tcp_error = (tcp_agent_sum - tcp_client_sum).abs() / tcp_client_sum;
    assert!(tcp_error < 0.10, "tcp latency off by {:.1}%", tcp_error * 100.0);

    // The server's side of the same exchanges is not a client's lookup.
    for other in [&server_group, &idle_group] {
        let queries: f64 = scrape
            .matching("chokepoint_dns_queries_total", &[("cgroup", other.relative.as_str())])
            .map(|sample| sample.value)
            .sum();
        assert_eq!(queries, 0.0, "queries attributed to {}", other.relative);
    }
}

#[test]
fn getaddrinfo_search_domains_show_as_nxdomain() {
    require_root();
    let SearchDomains { netns, client_group, .. } = &SearchDomains::start();
    let agent = Agent::start(&[]);
    const LOOKUPS: usize = 5;

    // A warm-up lookup of an absolute name (no search domains, no NXDOMAIN)
    // comes first. The agent tracks the client's cgroup from its creation,
    // so the window (5 s) covers the warm-up and the lookups alike.
    let warm_up = run_client(netns, client_group, "warm-up.out", &["resolve", "1", "warm-up.example."]);
    thread::sleep(Duration::from_millis(300));
    let lookups = run_client(netns, client_group, "resolve.out", &["resolve", &LOOKUPS.to_string(), "api.example"]);
    thread::sleep(Duration::from_millis(300));
    let scrape = agent.scrape();

    let value = |name: &str, extra: &[(&str, &str)]| dns_value(&scrape, name, client_group, extra);
    let queries = value("chokepoint_dns_queries_total", &[("qtype", "A")])
        + value("chokepoint_dns_queries_total", &[("qtype", "AAAA")]);
    // The warm-up's two queries took one round, as long as each query of
    // the lookups; they barely move the mean.
    let agent_mean =
        value("chokepoint_dns_latency_seconds_sum", &[]) / value("chokepoint_dns_latency_seconds_count", &[]);
    let client_mean = lookups.iter().map(|lookup| lookup.seconds).sum::<f64>() / LOOKUPS as f64;
    // Each lookup is three rounds (two search domains, then the name
    // itself), and in each round glibc sends A and AAAA in parallel.
    let rounds = 3.0;
    eprintln!(
        "getaddrinfo: client {:.4} s per lookup, agent {:.4} s per query x {rounds} rounds = {:.4} s",
        client_mean,
        agent_mean,
        agent_mean * rounds
    );

    assert_eq!(count_outcome(&warm_up, "ok"), 1, "the warm-up lookup resolves");
    assert_eq!(count_outcome(&lookups, "ok"), LOOKUPS, "every lookup resolves in the end");
    // Counters include the warm-up lookup: one A and one AAAA, NOERROR.
    assert_eq!(value("chokepoint_dns_queries_total", &[("qtype", "A")]), 3.0 * LOOKUPS as f64 + 1.0);
    assert_eq!(value("chokepoint_dns_queries_total", &[("qtype", "AAAA")]), 3.0 * LOOKUPS as f64 + 1.0);
    assert_eq!(value("chokepoint_dns_responses_total", &[("rcode", "NXDOMAIN")]), 4.0 * LOOKUPS as f64);
    assert_eq!(value("chokepoint_dns_responses_total", &[("rcode", "NOERROR")]), 2.0 * LOOKUPS as f64 + 2.0);
    assert_eq!(value("chokepoint_dns_responses_total", &[("rcode", "SERVFAIL")]), 0.0);
    assert_eq!(value("chokepoint_dns_timeouts_total", &[]), 0.0);
    let ratio = value("chokepoint_dns_nxdomain_ratio", &[]);
    let expected = 4.0 * LOOKUPS as f64 / queries;
    assert!((ratio - expected).abs() < 0.01, "nxdomain ratio {ratio}, expected {expected}, queries {queries}");
    let error = (agent_mean * rounds - client_mean).abs() / client_mean;
    assert!(error < 0.10, "per-lookup latency off by {:.1}%", error * 100.0);
}

#[test]
fn classify_reports_dns_evidence() {
    require_root();
    let SearchDomains { netns, client_group, .. } = &SearchDomains::start();
    // About 150 ms per lookup, so 40 lookups outlast the measurement.
    let out = netns.scratch_file("classify.out");
    let mut command = netns.command(binary("net-client"));
    command.arg("resolve").arg(&out).args(["40", "api.example"]);
    let client = Workload::spawn_in(client_group, command);
    thread::sleep(Duration::from_millis(300));

    let output = std::process::Command::new(binary("agent"))
        .args(["classify", "--pid", &client.pid().to_string(), "--duration", "2s", "--output", "json"])
        .output()
        .expect("running agent classify");
    let text = std::process::Command::new(binary("agent"))
        .args(["classify", "--pid", &client.pid().to_string(), "--duration", "1s"])
        .output()
        .expect("running agent classify");

    let stdout = String::from_utf8_lossy(&text.stdout);
    eprintln!("{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("classify JSON: {error}: {}", String::from_utf8_lossy(&output.stderr)));
    let queries = report["dns"]["queries"].as_u64().expect("dns.queries");
    let ratio = report["dns"]["nxdomain_ratio"].as_f64().expect("dns.nxdomain_ratio");
    let p99 = report["dns"]["p99_seconds"].as_f64().expect("dns.p99_seconds");
    assert!(queries >= 12, "only {queries} queries in 2 s");
    assert!((ratio - 4.0 / 6.0).abs() < 0.1, "nxdomain ratio {ratio}");
    assert!((0.05..0.14).contains(&p99), "p99 {p99} s, with a server delay of 50 ms");
    assert_eq!(report["dns"]["timeouts"], 0);
    assert_eq!(report["process"]["cgroup"], client_group.relative.as_str());
    let dns_line = stdout.lines().find(|line| line.trim_start().starts_with("DNS")).unwrap_or_default();
    assert!(dns_line.contains("NXDOMAIN"), "{stdout}");
    assert!(stdout.contains("TCP connect"), "{stdout}");
}

#[test]
fn dig_over_ipv6_tcp_and_second_port() {
    require_root();
    let netns = NetNs::new();
    let server_group = TestCgroup::new("dns-server");
    let client_group = TestCgroup::new("dig");
    let _server = start_server_on(&netns, &server_group, 53);
    let _second_server = start_server_on(&netns, &server_group, 5353);
    let agent = Agent::start(&["--dns-ports", "53,5353"]);
    let answers = netns.scratch_file("dig.txt");
    let done = netns.scratch_file("dig.done");
    // dig has a resolver of its own (BIND's), unlike glibc; it sends an
    // EDNS OPT record, which the probes must step over.
    let script = format!(
        "for query in '@127.0.0.1 ok-1.example A' '@::1 ok-2.example AAAA' '@::1 +tcp nx-1.example A' \
         '@127.0.0.1 -p 5353 ok-3.example A' '@::1 -p 5353 +tcp nx-2.example AAAA'; do \
         dig +tries=1 +time=2 $query >> {answers}; done; echo done > {done}",
        answers = answers.display(),
        done = done.display()
    );
    let mut command = netns.command("sh");
    command.args(["-c", &script]);
    let _client = Workload::spawn_in(&client_group, command);
    wait_for_results(&done, Duration::from_secs(30));
    thread::sleep(Duration::from_millis(300));
    let scrape = agent.scrape();

    let text = std::fs::read_to_string(&answers).expect("dig output");
    let dig_seconds: f64 = text
        .lines()
        .filter_map(|line| line.strip_prefix(";; Query time: ")?.strip_suffix(" msec")?.parse::<f64>().ok())
        .sum::<f64>()
        / 1e3;
    let value = |name: &str, extra: &[(&str, &str)]| dns_value(&scrape, name, &client_group, extra);
    let agent_seconds = value("chokepoint_dns_latency_seconds_sum", &[]);
    eprintln!("dig: agent {agent_seconds:.4} s, dig's own query times {dig_seconds:.4} s");

    assert_eq!(text.matches("status: NOERROR").count(), 3, "{text}");
    assert_eq!(text.matches("status: NXDOMAIN").count(), 2, "{text}");
    assert_eq!(value("chokepoint_dns_queries_total", &[("qtype", "A")]), 3.0);
    assert_eq!(value("chokepoint_dns_queries_total", &[("qtype", "AAAA")]), 2.0);
    assert_eq!(value("chokepoint_dns_responses_total", &[("rcode", "NOERROR")]), 3.0);
    assert_eq!(value("chokepoint_dns_responses_total", &[("rcode", "NXDOMAIN")]), 2.0);
    assert_eq!(value("chokepoint_dns_latency_seconds_count", &[]), 5.0);
    assert_eq!(value("chokepoint_dns_malformed_packets_total", &[]), 0.0);
    // dig reports whole milliseconds, five times.
    let error = (agent_seconds - dig_seconds).abs() / dig_seconds;
    assert!(error < 0.10, "dig latency off by {:.1}%", error * 100.0);
}

#[test]
fn malformed_packets_counted_apart() {
    require_root();
    let netns = NetNs::new();
    let server_group = TestCgroup::new("dns-server");
    let client_group = TestCgroup::new("garbage");
    let _server = start_server(&netns, &server_group);
    let agent = Agent::start(&[]);
    let payloads = [
        "1234",                                   // shorter than a DNS header
        "abcd010000010000000000003f616263",       // a label running past the end
        "abcd01000000000000000000",               // a query without a question
        "abcd0100000100000000000080616263000001", // a label length with reserved bits
    ];

    let mut args = vec!["raw-udp", SERVER];
    args.extend_from_slice(&payloads);
    let sent = run_client(&netns, &client_group, "raw.out", &args);
    thread::sleep(Duration::from_millis(300));
    let scrape = agent.scrape();

    let value = |name: &str| dns_value(&scrape, name, &client_group, &[]);
    assert_eq!(sent.len(), payloads.len());
    assert_eq!(value("chokepoint_dns_malformed_packets_total"), payloads.len() as f64);
    let queries: f64 = scrape
        .matching("chokepoint_dns_queries_total", &[("cgroup", client_group.relative.as_str())])
        .map(|sample| sample.value)
        .sum();
    assert_eq!(queries, 0.0);
    assert_eq!(value("chokepoint_dns_timeouts_total"), 0.0);
}
