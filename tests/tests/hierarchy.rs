//! Attribution by the v1 `cpu` hierarchy, for hosts whose containers are
//! not placed in the v2 hierarchy (hybrid hosts with kubelet's cgroupfs
//! driver): every task there shares one v2 cgroup.

use std::{fs, path::PathBuf, process::Command, thread, time::Duration};

use integration_tests::{
    Workload, binary, cgroups::hierarchy_roots, kernel, process::saturating_thread_count, require_root,
};

/// A cgroup in the v1 `cpu` hierarchy only, removed on drop.
struct V1CpuCgroup {
    dir: PathBuf,
    relative: String,
    workloads: Vec<Workload>,
}

impl V1CpuCgroup {
    fn new(name: &str, shares: u32) -> Self {
        let (_, v1_cpu) = hierarchy_roots();
        let root = v1_cpu.expect("this test needs the v1 cpu controller (a hybrid host)");
        let relative = format!("/chokepoint-v1-test-{}-{name}", std::process::id());
        let dir = root.join(relative.trim_start_matches('/'));
        fs::create_dir(&dir).expect("creating a v1 cpu cgroup");
        fs::write(dir.join("cpu.shares"), shares.to_string()).expect("setting cpu.shares");
        Self { dir, relative, workloads: Vec::new() }
    }

    fn start(&mut self, args: &[&str]) -> u32 {
        let mut command = Command::new(binary("workload"));
        command.args(args);
        let workload = Workload::spawn_into(&[self.dir.join("cgroup.procs")], command);
        let pid = workload.pid();
        self.workloads.push(workload);
        pid
    }
}

impl Drop for V1CpuCgroup {
    fn drop(&mut self) {
        self.workloads.clear();
        for _ in 0..50 {
            if fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn v1_cpu_attribution_matches_schedstat() {
    require_root();
    // cpu.shares 2 is what kubelet gives a BestEffort pod: the victim gets
    // the CPU last, so its waits are large enough to compare.
    let mut noisy = V1CpuCgroup::new("noisy", 1024);
    let mut victim = V1CpuCgroup::new("victim", 2);
    let noisy_pid = noisy.start(&["busy", &saturating_thread_count().to_string()]);
    let victim_pid = victim.start(&["wake-loop", "2000", "200"]);
    let agent = integration_tests::Agent::start(&["--cgroup-hierarchy", "v1-cpu"]);
    thread::sleep(Duration::from_secs(1));

    let wait = |cgroup: &V1CpuCgroup| {
        agent.scrape().value("chokepoint_runqueue_wait_seconds_total", &[("cgroup", &cgroup.relative)]).unwrap_or(0.0)
    };
    let (victim_start, noisy_start) = (wait(&victim), wait(&noisy));
    let (victim_kernel_start, noisy_kernel_start) = (kernel::run_delay_ns(victim_pid), kernel::run_delay_ns(noisy_pid));
    thread::sleep(Duration::from_secs(6));
    let victim_agent = wait(&victim) - victim_start;
    let noisy_agent = wait(&noisy) - noisy_start;
    let victim_kernel = (kernel::run_delay_ns(victim_pid) - victim_kernel_start) as f64 / 1e9;
    let noisy_kernel = (kernel::run_delay_ns(noisy_pid) - noisy_kernel_start) as f64 / 1e9;
    eprintln!(
        "v1 victim: agent {victim_agent:.4} s, schedstat {victim_kernel:.4} s; noisy: agent {noisy_agent:.4} s, schedstat {noisy_kernel:.4} s"
    );

    assert!(victim_kernel > 0.05, "too little contention: victim waited {victim_kernel} s");
    let victim_error = kernel::relative_error(victim_agent, victim_kernel);
    assert!(victim_error < 0.10, "victim wait off by {:.1}%", victim_error * 100.0);
    let noisy_error = kernel::relative_error(noisy_agent, noisy_kernel);
    assert!(noisy_error < 0.10, "noisy wait off by {:.1}%", noisy_error * 100.0);
}

#[test]
fn v1_cpu_classify_reports_v1_path() {
    require_root();
    let mut group = V1CpuCgroup::new("solo", 1024);
    let pid = group.start(&["wake-loop", "5000", "100"]);

    let output = Command::new(binary("agent"))
        .args(["classify", "--pid", &pid.to_string(), "--duration", "1s", "--output", "json"])
        .args(["--cgroup-hierarchy", "v1-cpu"])
        .output()
        .expect("running agent classify");

    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("no JSON ({error}): {}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(report["process"]["cgroup"], group.relative.as_str());
    assert!(report["runqueue"]["waits"].as_u64().unwrap_or(0) > 10, "{report:#}");
}
