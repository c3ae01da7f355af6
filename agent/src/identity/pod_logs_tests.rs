//! Tests of the pod log folder scan and of cgroup identification, on
//! folder trees made in temporary directories.

use std::{
    os::unix::fs::{PermissionsExt as _, symlink},
    sync::atomic::{AtomicUsize, Ordering},
};

use super::*;
use crate::identity::{ContainerRuntime, PodIdentity, PodLogSources, QosClass};

const UID: &str = "6b3f2a1c-4d5e-4f60-8a7b-9c0d1e2f3a4b";
const UID_SYSTEMD: &str = "6b3f2a1c_4d5e_4f60_8a7b_9c0d1e2f3a4b";
const OTHER_UID: &str = "0a1b2c3d-0000-4111-8222-333344445555";
const STATIC_UID: &str = "2c9a8f0e6d5b4a3928170f6e5d4c3b2a";
const APP_ID: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const SIDECAR_ID: &str = "aaaabbbbccccddddeeeeffff00001111aaaabbbbccccddddeeeeffff00001111";

/// A directory under the system temporary directory, removed on drop so a
/// failing test cleans up too.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("chokepoint-identity-{label}-{}-{unique}", std::process::id()));
        fs::create_dir_all(&path).unwrap_or_else(|error| panic!("creating {} failed: {error}", path.display()));
        Self(path)
    }

    /// Creates `relative` (and its parents) as a folder.
    fn folder(&self, relative: &str) -> PathBuf {
        let path = self.0.join(relative);
        fs::create_dir_all(&path).unwrap_or_else(|error| panic!("creating {} failed: {error}", path.display()));
        path
    }

    /// Creates `relative` as a file, with its parent folders.
    fn file(&self, relative: &str) -> PathBuf {
        let path = self.0.join(relative);
        fs::create_dir_all(path.parent().expect("relative path has a parent")).expect("creating parent folders");
        fs::write(&path, "log line\n").unwrap_or_else(|error| panic!("writing {} failed: {error}", path.display()));
        path
    }

    fn link(&self, relative: &str, target: &str) {
        let path = self.0.join(relative);
        fs::create_dir_all(path.parent().expect("relative path has a parent")).expect("creating parent folders");
        symlink(target, &path).unwrap_or_else(|error| panic!("linking {} failed: {error}", path.display()));
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Restore permissions changed by a test so the removal succeeds.
        let _ = fs::set_permissions(&self.0, fs::Permissions::from_mode(0o755));
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Builds a containerd node's tree: real log files, no container IDs anywhere.
fn containerd_tree() -> TempDir {
    let tree = TempDir::new("containerd");
    tree.file(&format!("shop_checkout-7d9f8c6b5-x2x4q_{UID}/app/0.log"));
    tree.file(&format!("shop_checkout-7d9f8c6b5-x2x4q_{UID}/app/1.log"));
    tree.file(&format!("shop_checkout-7d9f8c6b5-x2x4q_{UID}/envoy/0.log"));
    tree.file(&format!("shop_checkout-7d9f8c6b5-x2x4q_{UID}/init-schema/0.log"));
    tree.file(&format!("kube-system_etcd-node-1_{STATIC_UID}/etcd/0.log"));
    tree
}

#[test]
fn scan_maps_uid_to_names() {
    let tree = containerd_tree();

    let directory = PodDirectory::scan(&tree.0).expect("scan of a readable tree");

    assert_eq!(directory.pod_count(), 2);
    assert_eq!(directory.skipped_count(), 0, "{:?}", directory.skipped_examples());
    let pod = directory.pod(UID).expect("pod by UID");
    assert_eq!(pod.namespace, "shop");
    assert_eq!(pod.name, "checkout-7d9f8c6b5-x2x4q");
    assert_eq!(pod.containers, ["app", "envoy", "init-schema"]);
}

#[test]
fn scan_finds_static_pod() {
    let tree = containerd_tree();

    let directory = PodDirectory::scan(&tree.0).expect("scan of a readable tree");

    let pod = directory.pod(STATIC_UID).expect("static pod by its 32-digit UID");
    assert_eq!(pod.namespace, "kube-system");
    assert_eq!(pod.name, "etcd-node-1");
    assert_eq!(pod.containers, ["etcd"]);
}

#[test]
fn scan_skips_odd_entries() {
    let tree = containerd_tree();
    tree.file("stray-file.log");
    tree.folder("no-underscores-here");
    tree.folder("shop_web_not-a-uid");
    tree.folder(&format!("_missing-namespace_{OTHER_UID}"));
    tree.folder(&format!("shop_checkout-7d9f8c6b5-x2x4q_{UID}/Not_A_Container"));
    tree.file(&format!("shop_checkout-7d9f8c6b5-x2x4q_{UID}/stray.txt"));

    let directory = PodDirectory::scan(&tree.0).expect("scan of a readable tree");

    assert_eq!(directory.pod_count(), 2);
    assert_eq!(directory.skipped_count(), 6, "{:?}", directory.skipped_examples());
    assert_eq!(directory.pod(UID).expect("pod by UID").containers, ["app", "envoy", "init-schema"]);
    let reasons: Vec<&str> = directory.skipped_examples().iter().map(|entry| entry.reason.as_str()).collect();
    assert!(reasons.contains(&"not a folder"), "{reasons:?}");
    assert!(reasons.contains(&"folder name is not <namespace>_<pod>_<uid>"), "{reasons:?}");
}

#[test]
fn scan_keeps_few_skip_examples() {
    let tree = TempDir::new("many-skips");
    for index in 0..(MAX_SKIPPED_EXAMPLES + 5) {
        tree.file(&format!("junk-{index}"));
    }

    let directory = PodDirectory::scan(&tree.0).expect("scan of a readable tree");

    assert_eq!(directory.skipped_count(), MAX_SKIPPED_EXAMPLES + 5);
    assert_eq!(directory.skipped_examples().len(), MAX_SKIPPED_EXAMPLES);
}

#[test]
fn scan_missing_root_fails() {
    let tree = TempDir::new("missing-root");
    let missing = tree.0.join("no-such-folder");

    let error = PodDirectory::scan(&missing).expect_err("a missing root is an error");

    let message = error.to_string();
    assert!(message.contains("no-such-folder"), "{message}");
    assert!(message.contains("--pod-log-dir"), "{message}");
}

#[test]
fn scan_tolerates_unreadable_pod_folder() {
    // Root bypasses permission bits (CAP_DAC_OVERRIDE), so this case only
    // means something for unprivileged test runs.
    if running_as_root() {
        return;
    }
    let tree = containerd_tree();
    let pod_folder = tree.0.join(format!("shop_checkout-7d9f8c6b5-x2x4q_{UID}"));
    fs::set_permissions(&pod_folder, fs::Permissions::from_mode(0o000)).expect("chmod 000");

    let directory = PodDirectory::scan(&tree.0).expect("scan of a readable root");
    fs::set_permissions(&pod_folder, fs::Permissions::from_mode(0o755)).expect("chmod 755");

    let pod = directory.pod(UID).expect("pod still known by its folder name");
    assert_eq!(pod.name, "checkout-7d9f8c6b5-x2x4q");
    assert!(pod.containers.is_empty());
    assert_eq!(directory.skipped_count(), 1);
}

fn running_as_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .map(|status| {
            status.lines().any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

#[test]
fn pod_folder_name_split_from_ends() {
    assert_eq!(parse_pod_folder_name(&format!("default_web-0_{UID}")), Some(("default", "web-0", UID)));
    // Not a valid pod name, but the UID and namespace still come from
    // the ends and the middle stays whole.
    assert_eq!(parse_pod_folder_name(&format!("default_odd_name_{UID}")), Some(("default", "odd_name", UID)));
    assert_eq!(parse_pod_folder_name(&format!("default_{UID}")), None);
    assert_eq!(parse_pod_folder_name(&format!("default__{UID}")), None);
    assert_eq!(parse_pod_folder_name("default_web-0_123"), None);
}

#[test]
fn container_link_names() {
    assert_eq!(
        parse_container_link_name(&format!("checkout-7d9f8c6b5-x2x4q_shop_init-schema-{APP_ID}.log")),
        Some(("checkout-7d9f8c6b5-x2x4q", "shop", "init-schema", APP_ID))
    );
    assert_eq!(parse_container_link_name(&format!("web_default_app-{APP_ID}.txt")), None);
    assert_eq!(parse_container_link_name("web_default_app-1234.log"), None);
    assert_eq!(parse_container_link_name(&format!("web_app-{APP_ID}.log")), None);
}

#[test]
fn identify_containerd_leaves_name_empty() {
    let tree = containerd_tree();
    let directory = PodDirectory::scan(&tree.0).expect("scan of a readable tree");
    let path = format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_SYSTEMD}.slice/cri-containerd-{APP_ID}.scope"
    );

    let identity = directory.identify(&path).expect("a pod cgroup");

    let expected = PodIdentity {
        pod_uid: UID.to_owned(),
        qos: QosClass::Burstable,
        namespace: Some("shop".to_owned()),
        pod: Some("checkout-7d9f8c6b5-x2x4q".to_owned()),
        container: None,
        container_id: Some(APP_ID.to_owned()),
        runtime: Some(ContainerRuntime::Containerd),
    };
    assert_eq!(identity, expected);
}

#[test]
fn identify_pod_level_and_conmon() {
    let tree = containerd_tree();
    let directory = PodDirectory::scan(&tree.0).expect("scan of a readable tree");

    for path in [format!("/kubepods/burstable/pod{UID}"), format!("/kubepods/burstable/pod{UID}/crio-conmon-{APP_ID}")]
    {
        let identity = directory.identify(&path).unwrap_or_else(|| panic!("{path} is a pod cgroup"));

        assert_eq!(identity.pod.as_deref(), Some("checkout-7d9f8c6b5-x2x4q"), "{path}");
        assert_eq!(identity.container, None, "{path}");
        assert_eq!(identity.container_id, None, "{path}");
    }
}

#[test]
fn identify_static_pod_guaranteed() {
    let tree = containerd_tree();
    let directory = PodDirectory::scan(&tree.0).expect("scan of a readable tree");

    let identity = directory.identify(&format!("/kubepods/pod{STATIC_UID}/{APP_ID}/nested")).expect("a pod cgroup");

    assert_eq!(identity.namespace.as_deref(), Some("kube-system"));
    assert_eq!(identity.pod.as_deref(), Some("etcd-node-1"));
    assert_eq!(identity.qos, QosClass::Guaranteed);
    assert_eq!(identity.container_id.as_deref(), Some(APP_ID));
}

#[test]
fn identify_unknown_pod_keeps_uid() {
    let tree = containerd_tree();
    let directory = PodDirectory::scan(&tree.0).expect("scan of a readable tree");

    let identity = directory.identify(&format!("/kubepods/besteffort/pod{OTHER_UID}/{APP_ID}")).expect("a pod cgroup");

    assert_eq!(identity.pod_uid, OTHER_UID);
    assert_eq!(identity.qos, QosClass::BestEffort);
    assert_eq!(identity.namespace, None);
    assert_eq!(identity.pod, None);
}

#[test]
fn identify_non_pod_cgroups() {
    let tree = containerd_tree();
    let directory = PodDirectory::scan(&tree.0).expect("scan of a readable tree");

    for path in ["/", "/system.slice/containerd.service", "/user.slice", "/kubepods/burstable"] {
        assert_eq!(directory.identify(path), None, "{path}");
    }
}

#[test]
fn cri_dockerd_symlinks_name_containers() {
    let tree = TempDir::new("cri-dockerd");
    let pod_folder = format!("default_web-0_{UID}");
    tree.link(&format!("{pod_folder}/app/0.log"), &format!("/var/lib/docker/containers/{APP_ID}/{APP_ID}-json.log"));
    tree.link(
        &format!("{pod_folder}/sidecar/2.log"),
        &format!("/var/lib/docker/containers/{SIDECAR_ID}/{SIDECAR_ID}-json.log"),
    );
    // A link to something else names no container.
    tree.link(&format!("{pod_folder}/sidecar/1.log"), "/tmp/elsewhere.log");

    let directory = PodDirectory::scan(&tree.0).expect("scan of a readable tree");
    let app = directory.identify(&format!("/kubepods/burstable/pod{UID}/docker-{APP_ID}.scope")).expect("a pod cgroup");
    let sidecar = directory.identify(&format!("/kubepods/burstable/pod{UID}/{SIDECAR_ID}")).expect("a pod cgroup");

    assert_eq!(directory.pod(UID).expect("pod by UID").containers, ["app", "sidecar"]);
    assert_eq!(app.container.as_deref(), Some("app"));
    assert_eq!(app.runtime, Some(ContainerRuntime::Docker));
    assert_eq!(sidecar.container.as_deref(), Some("sidecar"));
    assert_eq!(directory.skipped_count(), 0, "{:?}", directory.skipped_examples());
}

#[test]
fn container_links_name_containers() {
    let pods = containerd_tree();
    let links = TempDir::new("container-links");
    let pod_folder = pods.0.join(format!("shop_checkout-7d9f8c6b5-x2x4q_{UID}"));
    links.link(
        &format!("checkout-7d9f8c6b5-x2x4q_shop_app-{APP_ID}.log"),
        &format!("{}/app/1.log", pod_folder.display()),
    );
    // Older kubelets linked to the runtime's log file: the pod is then
    // found by namespace and name.
    links.link(
        &format!("checkout-7d9f8c6b5-x2x4q_shop_envoy-{SIDECAR_ID}.log"),
        &format!("/var/lib/docker/containers/{SIDECAR_ID}/{SIDECAR_ID}-json.log"),
    );
    links.link(&format!("gone-pod_shop_app-{}.log", "1".repeat(64)), "/var/log/pods/missing/app/0.log");
    links.file("README");

    let mut directory = PodDirectory::scan(&pods.0).expect("scan of a readable tree");
    directory.add_container_links(&links.0).expect("links folder is readable");
    let app = directory
        .identify(&format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_SYSTEMD}.slice/cri-containerd-{APP_ID}.scope"))
        .expect("a pod cgroup");
    let envoy = directory.identify(&format!("/kubepods/burstable/pod{UID}/{SIDECAR_ID}")).expect("a pod cgroup");

    assert_eq!(app.container.as_deref(), Some("app"));
    assert_eq!(envoy.container.as_deref(), Some("envoy"));
    assert_eq!(directory.skipped_count(), 2, "{:?}", directory.skipped_examples());
}

#[test]
fn load_reads_both_folders() {
    let pods = containerd_tree();
    let links = TempDir::new("load-links");
    links.link(
        &format!("checkout-7d9f8c6b5-x2x4q_shop_app-{APP_ID}.log"),
        &format!("{}/shop_checkout-7d9f8c6b5-x2x4q_{UID}/app/0.log", pods.0.display()),
    );
    let mut directory = PodDirectory::scan(&pods.0).expect("the pod folder is readable");
    directory.add_container_links(&links.0).expect("the links folder is readable");

    assert_eq!(directory.pod_count(), 2);
    assert_eq!(directory.container_name(APP_ID), Some((UID, "app")));
}

#[test]
fn load_missing_links_folder_fails() {
    let pods = containerd_tree();
    let mut directory = PodDirectory::scan(&pods.0).expect("the pod folder is readable");

    let error = directory
        .add_container_links(&pods.0.join("no-containers-folder"))
        .expect_err("a missing links folder is an error");

    let message = error.to_string();
    assert!(message.contains("no-containers-folder"), "{message}");
    assert!(message.contains("/var/log/containers"), "{message}");
}

#[test]
fn sources_default_to_kubelet_folders() {
    let sources = PodLogSources::default();

    assert_eq!(sources.pod_log_dir, Path::new("/var/log/pods"));
    assert_eq!(sources.container_log_dir.as_deref(), Some(Path::new("/var/log/containers")));
}

#[test]
fn container_name_requires_same_pod() {
    let pods = containerd_tree();
    let links = TempDir::new("foreign-link");
    links.link(
        &format!("checkout-7d9f8c6b5-x2x4q_shop_app-{APP_ID}.log"),
        &format!("{}/shop_checkout-7d9f8c6b5-x2x4q_{UID}/app/0.log", pods.0.display()),
    );
    let mut directory = PodDirectory::scan(&pods.0).expect("scan of a readable tree");
    directory.add_container_links(&links.0).expect("links folder is readable");

    let identity = directory.identify(&format!("/kubepods/burstable/pod{OTHER_UID}/{APP_ID}")).expect("a pod cgroup");

    assert_eq!(identity.container, None);
    assert_eq!(identity.container_id.as_deref(), Some(APP_ID));
}
