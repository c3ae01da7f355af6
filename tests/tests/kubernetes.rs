//! Pod identity on a node laid out like kubelet's: every series carries the
//! right namespace, pod and container, in both cgroup drivers' layouts.

use std::{process::Command, thread, time::Duration};

use integration_tests::{
    Agent, binary,
    kubelet::KubeletNode,
    prometheus::{JOB, Prometheus},
    require_root,
};

const CART_UID: &str = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
const REPORT_UID: &str = "6f9619ff-8b86-d011-b42d-00c04fc964ff";
const ETCD_UID: &str = "4a1e5cf0a4e4b7b6b1d6e1f0c3a2b5d4";
const NESTED_UID: &str = "9c858901-8a57-4791-81fe-4c455b099bc9";

fn container_id(seed: char) -> String {
    std::iter::repeat_n(seed, 64).collect()
}

const USAGE: &str = "chokepoint_cpu_usage_seconds_total";

#[test]
fn series_carry_pod_identity() {
    require_root();
    let mut node = KubeletNode::new();
    let (cart_id, report_id, etcd_id, nested_id) =
        (container_id('a'), container_id('b'), container_id('c'), container_id('d'));
    node.add_logs("shop", "cart-7d9f", CART_UID, "cart", &cart_id);
    node.add_logs("batch", "report-28k1", REPORT_UID, "report", &report_id);
    node.add_logs("kube-system", "etcd-node1", ETCD_UID, "etcd", &etcd_id);
    node.add_logs("ci", "builder", NESTED_UID, "build", &nested_id);
    let systemd_uid = CART_UID.replace('-', "_");
    let cart = node.add_container(&format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{systemd_uid}.slice/cri-containerd-{cart_id}.scope"
    ));
    let report = node.add_container(&format!("/kubepods/besteffort/pod{REPORT_UID}/{report_id}"));
    let etcd = node.add_container(&format!("/kubepods/pod{ETCD_UID}/{etcd_id}"));
    let nested = node.add_container(&format!("/kubepods/burstable/pod{NESTED_UID}/{nested_id}/child/grandchild"));
    let agent = Agent::start(&[
        "--pod-log-dir",
        node.pod_log_dir.to_str().expect("UTF-8 path"),
        "--container-log-dir",
        node.container_log_dir.to_str().expect("UTF-8 path"),
    ]);
    thread::sleep(Duration::from_secs(1));

    let scrape = agent.scrape();

    for (placed, namespace, pod, container) in [
        (&cart, "shop", "cart-7d9f", "cart"),
        (&report, "batch", "report-28k1", "report"),
        (&etcd, "kube-system", "etcd-node1", "etcd"),
        (&nested, "ci", "builder", "build"),
    ] {
        let labels =
            [("cgroup", placed.cgroup.as_str()), ("namespace", namespace), ("pod", pod), ("container", container)];
        assert!(
            scrape.value(USAGE, &labels).is_some(),
            "no {USAGE} series with {labels:?}; series for this cgroup: {:?}",
            scrape.matching(USAGE, &[("cgroup", placed.cgroup.as_str())]).collect::<Vec<_>>()
        );
    }
    let pod_level = format!("{}/kubepods/besteffort/pod{REPORT_UID}", node.parent);
    let pod_labels =
        [("cgroup", pod_level.as_str()), ("namespace", "batch"), ("pod", "report-28k1"), ("container", "")];
    assert!(scrape.value(USAGE, &pod_labels).is_some(), "pod-level cgroup lacks pod labels");
    let outside = [("cgroup", node.parent.as_str()), ("namespace", ""), ("pod", "")];
    assert!(scrape.value(USAGE, &outside).is_some(), "a cgroup outside pods must keep only its path");
}

#[test]
fn deleted_pod_series_disappear() {
    require_root();
    let mut node = KubeletNode::new();
    let report_id = container_id('e');
    node.add_logs("batch", "report-28k1", REPORT_UID, "report", &report_id);
    let report = node.add_container(&format!("/kubepods/besteffort/pod{REPORT_UID}/{report_id}"));
    let agent = Agent::start(&["--pod-log-dir", node.pod_log_dir.to_str().expect("UTF-8 path")]);
    thread::sleep(Duration::from_secs(1));
    assert!(agent.scrape().matching(USAGE, &[("pod", "report-28k1")]).count() > 0);

    node.remove_pod(&format!("/kubepods/besteffort/pod{REPORT_UID}"), &format!("batch_report-28k1_{REPORT_UID}"));
    thread::sleep(Duration::from_secs(1));

    let scrape = agent.scrape();
    assert_eq!(scrape.matching(USAGE, &[("pod", "report-28k1")]).count(), 0);
    assert_eq!(scrape.matching(USAGE, &[("cgroup", report.cgroup.as_str())]).count(), 0);
}

fn classify(args: &[&str], node: &KubeletNode) -> serde_json::Value {
    let output = Command::new(binary("agent"))
        .args(["classify", "--duration", "1s", "--output", "json"])
        .args(["--pod-log-dir", node.pod_log_dir.to_str().expect("UTF-8 path")])
        .args(["--container-log-dir", node.container_log_dir.to_str().expect("UTF-8 path")])
        .args(args)
        .output()
        .expect("running agent classify");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("no JSON ({error}): {}", String::from_utf8_lossy(&output.stderr)))
}

#[test]
fn classify_by_pod_and_container_pid() {
    require_root();
    let mut node = KubeletNode::new();
    let cart_id = container_id('f');
    node.add_logs("shop", "cart-7d9f", CART_UID, "cart", &cart_id);
    let cart = node.add_container(&format!("/kubepods/burstable/pod{CART_UID}/{cart_id}"));

    let by_pod = classify(&["--pod", "shop/cart-7d9f"], &node);
    let by_pid = classify(&["--pid", &cart.pid.to_string()], &node);
    // The test's processes share the host's pid namespace, where the
    // innermost NSpid equals the host pid.
    let by_container_pid = classify(&["--pod", "shop/cart-7d9f", "--container-pid", &cart.pid.to_string()], &node);

    assert_eq!(by_pod["cgroup"], format!("{}/kubepods/burstable/pod{CART_UID}", node.parent));
    assert_eq!(by_pod["pod"]["namespace"], "shop");
    assert_eq!(by_pod["pod"]["pod"], "cart-7d9f");
    assert_eq!(by_pod["pod"]["qos_class"], "Burstable");
    assert!(by_pod["process"].is_null());
    assert_eq!(by_pid["pod"]["container"], "cart");
    assert_eq!(by_pid["cgroup"], cart.cgroup.as_str());
    assert_eq!(by_container_pid["process"]["pid"], cart.pid);
    assert_eq!(by_container_pid["pod"]["container"], "cart");
}

#[test]
fn classify_unknown_pod_fails_clearly() {
    require_root();
    let node = KubeletNode::new();

    let output = Command::new(binary("agent"))
        .args(["classify", "--pod", "shop/absent", "--duration", "1s"])
        .args(["--pod-log-dir", node.pod_log_dir.to_str().expect("UTF-8 path")])
        .output()
        .expect("running agent classify");
    let malformed = Command::new(binary("agent"))
        .args(["classify", "--pod", "no-slash", "--duration", "1s"])
        .output()
        .expect("running agent classify");

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("pod shop/absent not found"), "{stderr}");
    let malformed_stderr = String::from_utf8_lossy(&malformed.stderr);
    assert!(malformed_stderr.contains("expected NAMESPACE/NAME"), "{malformed_stderr}");
}

#[test]
fn prometheus_reads_throttled_pod() {
    require_root();
    let mut node = KubeletNode::new();
    let cart_id = container_id('9');
    node.add_logs("shop", "cart-7d9f", CART_UID, "cart", &cart_id);
    let cart = node.add_limited_container(
        &format!("/kubepods/burstable/pod{CART_UID}/{cart_id}"),
        &["busy", "2"],
        20_000,
        100_000,
    );
    let agent = Agent::start(&[
        "--pod-log-dir",
        node.pod_log_dir.to_str().expect("UTF-8 path"),
        "--container-log-dir",
        node.container_log_dir.to_str().expect("UTF-8 path"),
    ]);
    let prometheus = Prometheus::start(&agent.address);

    prometheus.wait_for(&format!("up{{job=\"{JOB}\"}}"), Duration::from_secs(30), |up| up == 1.0);
    // The same expressions as deploy/prometheus/alerts.yaml uses.
    let ratio = prometheus.wait_for(
        "sum by (namespace, pod, container) (rate(chokepoint_cpu_cfs_throttled_periods_total{pod=\"cart-7d9f\",container=\"cart\"}[10s])) \
         / sum by (namespace, pod, container) (rate(chokepoint_cpu_cfs_periods_total{pod=\"cart-7d9f\",container=\"cart\"}[10s]))",
        Duration::from_secs(30),
        |ratio| ratio > 0.8,
    );
    let primary = prometheus.wait_for(
        "chokepoint_bottleneck_primary{namespace=\"shop\",pod=\"cart-7d9f\",container=\"cart\",class=\"cpu_throttled\"}",
        Duration::from_secs(30),
        |value| value == 1.0,
    );

    eprintln!(
        "Prometheus: throttled ratio {ratio:.3} for shop/cart-7d9f ({}), primary class cpu_throttled = {primary}",
        cart.cgroup
    );
    assert!(ratio > 0.8);
    assert_eq!(primary, 1.0);
}
