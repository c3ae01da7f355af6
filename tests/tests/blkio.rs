//! Block-I/O wait and block request latency, end to end. A writer in its
//! own cgroup writes to a loop device slowed by a cgroup I/O limit. The
//! tests compare the agent's I/O wait with the kernel's delay accounting
//! and check which cgroup the block requests are attributed to.

use std::{
    process::Command,
    thread,
    time::Duration,
};

use integration_tests::{
    Agent, Scrape, TestCgroup, Workload,
    block::{LoopDevice, Sysctl},
    cgroups::v1_blkio_root,
    kernel, require_root,
};

const IOWAIT: &str = "chokepoint_blkio_wait_seconds_total";
const REQUEST_COUNT: &str = "chokepoint_block_request_latency_seconds_count";
const REQUEST_SUM: &str = "chokepoint_block_request_latency_seconds_sum";
const MEASURE: Duration = Duration::from_secs(8);
/// Write limit on the loop device: 2 MiB/s, so each 64 KiB direct write
/// waits about 31 ms in the cgroup's throttle queue.
const WRITE_BPS: u64 = 2 * 1024 * 1024;

fn value(scrape: &Scrape, name: &str, cgroup: &str) -> f64 {
    scrape.value(name, &[("cgroup", cgroup)]).unwrap_or(0.0)
}

fn device_value(scrape: &Scrape, name: &str, cgroup: &str, device: &LoopDevice) -> f64 {
    scrape
        .value(name, &[("cgroup", cgroup), ("device", &device.device)])
        .unwrap_or(0.0)
}

fn dd(cgroup: &TestCgroup, device: &LoopDevice, args: &[&str]) -> Workload {
    let mut command = Command::new("dd");
    command
        .arg("if=/dev/zero")
        .arg(format!("of={}", device.path.display()))
        .args(args)
        .stderr(std::process::Stdio::null());
    Workload::spawn_in(cgroup, command)
}

#[test]
fn iowait_matches_delay_accounting() {
    require_root();
    let _delayacct = Sysctl::set("kernel.task_delayacct", "1");
    let device = LoopDevice::new(256);
    let writer = TestCgroup::with_blkio_controller("writer");
    writer.set_write_bps(&device.device, WRITE_BPS);
    let cpu_only = TestCgroup::new("cpu-only");
    let writer_load = dd(&writer, &device, &["bs=64k", "count=100000", "oflag=direct"]);
    let cpu_load = Workload::start(&cpu_only, &["wake-loop", "1000", "500"]);
    let agent = Agent::start(&[]);
    thread::sleep(Duration::from_secs(1));

    let start = agent.scrape();
    let kernel_start = kernel::blkio_delay_seconds(writer_load.pid());
    thread::sleep(MEASURE);
    let end = agent.scrape();
    let kernel_end = kernel::blkio_delay_seconds(writer_load.pid());

    let agent_wait = value(&end, IOWAIT, &writer.relative) - value(&start, IOWAIT, &writer.relative);
    let kernel_wait = kernel_end - kernel_start;
    let cpu_only_wait = value(&end, IOWAIT, &cpu_only.relative) - value(&start, IOWAIT, &cpu_only.relative);
    let requests = device_value(&end, REQUEST_COUNT, &writer.relative, &device)
        - device_value(&start, REQUEST_COUNT, &writer.relative, &device);
    let request_seconds = device_value(&end, REQUEST_SUM, &writer.relative, &device)
        - device_value(&start, REQUEST_SUM, &writer.relative, &device);
    let mean_request = request_seconds / requests;
    let mean_wait = agent_wait / requests;
    eprintln!(
        "writer: agent I/O wait {agent_wait:.3} s, delay accounting {kernel_wait:.3} s; \
         {requests} requests on {} with mean latency {:.3} ms against {:.3} ms of wait each; \
         cpu-only: {cpu_only_wait:.6} s",
        device.name(),
        mean_request * 1e3,
        mean_wait * 1e3
    );

    assert!(kernel_wait > 2.0, "the writer waited too little for the test to mean anything: {kernel_wait} s");
    let error = kernel::relative_error(agent_wait, kernel_wait);
    assert!(error < 0.15, "I/O wait off by {:.1}% from delay accounting", error * 100.0);
    assert!(cpu_only_wait < 0.01, "cpu-only group shows {cpu_only_wait} s of I/O wait");
    assert!(requests > 0.0, "no block requests attributed to the writer on {}", device.name());
    // The limit delays writes before they become requests, so the device
    // is fast while the task waits long.
    assert!(mean_request < mean_wait / 10.0, "request latency {mean_request} s is not far below the wait {mean_wait} s");
    drop(cpu_load);
}

#[test]
fn classify_shows_iowait() {
    require_root();
    let device = LoopDevice::new(64);
    let writer = TestCgroup::with_blkio_controller("writer");
    writer.set_write_bps(&device.device, WRITE_BPS);
    let writer_load = dd(&writer, &device, &["bs=64k", "count=100000", "oflag=direct"]);
    thread::sleep(Duration::from_millis(500));

    let output = Command::new(integration_tests::binary("agent"))
        .args(["classify", "--pid", &writer_load.pid().to_string(), "--duration", "3s", "--output", "json"])
        .output()
        .expect("running agent classify");

    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("classify JSON");
    let iowait = &report["blkio_wait"];
    eprintln!("{iowait}");
    assert!(iowait["wait_seconds"].as_f64().unwrap_or(0.0) > 2.0, "{iowait}");
    assert!(iowait["share_of_busy_time"].as_f64().unwrap_or(0.0) > 0.9, "{iowait}");
}

#[test]
fn flushed_writes_count_for_their_cgroup() {
    require_root();
    let device = LoopDevice::new(256);
    let writer = TestCgroup::with_blkio_controller("writer");
    writer.set_write_bps(&device.device, 8 * WRITE_BPS);
    let agent = Agent::start(&[]);
    thread::sleep(Duration::from_millis(500));

    let start = agent.scrape();
    let mut fsync_writer = dd(&writer, &device, &["bs=1M", "count=16", "conv=fsync"]);
    assert!(fsync_writer.wait().success(), "dd with conv=fsync failed");
    thread::sleep(Duration::from_millis(500));
    let after_fsync = agent.scrape();
    // Closing the last open file of a block device flushes it in the
    // closer's context; holding the device open leaves the flush to
    // writeback.
    let _held_open = std::fs::File::open(&device.path).expect("opening the loop device");
    let mut buffered_writer = dd(&writer, &device, &["bs=1M", "count=16", "seek=32"]);
    assert!(buffered_writer.wait().success(), "buffered dd failed");
    let synced = Command::new("sync").status().expect("running sync");
    assert!(synced.success());
    thread::sleep(Duration::from_millis(500));
    let after_sync = agent.scrape();

    let writer_requests = |scrape: &Scrape| device_value(scrape, REQUEST_COUNT, &writer.relative, &device);
    let root_requests = |scrape: &Scrape| device_value(scrape, REQUEST_COUNT, "/", &device);
    let fsync_requests = writer_requests(&after_fsync) - writer_requests(&start);
    let fsync_wait = value(&after_fsync, IOWAIT, &writer.relative) - value(&start, IOWAIT, &writer.relative);
    let writeback_to_writer = writer_requests(&after_sync) - writer_requests(&after_fsync);
    let writeback_to_root = root_requests(&after_sync) - root_requests(&after_fsync);
    eprintln!(
        "fsync: {fsync_requests} requests and {fsync_wait:.3} s of I/O wait for the writer; \
         writeback by sync: {writeback_to_writer} requests for the writer, {writeback_to_root} for the root"
    );

    // Pages the writer flushes itself (fsync) are submitted in its context
    // and carry its blkcg; it waits for them.
    assert!(fsync_requests > 0.0, "no fsync requests attributed to the writer");
    assert!(root_requests(&after_fsync) - root_requests(&start) < fsync_requests);
    assert!(fsync_wait > 0.5, "writer waited only {fsync_wait} s for 16 MiB at 16 MiB/s");
    if v1_blkio_root().is_some() {
        // Without cgroup writeback (v1 blkio), the flusher's requests
        // carry the root blkcg.
        assert!(writeback_to_root > 0.0, "writeback requests were not attributed to the root");
    } else {
        // cgroup v2 with io and memory: writeback charges the dirtier.
        assert!(writeback_to_writer > 0.0, "writeback requests were not attributed to the writer");
    }
}
