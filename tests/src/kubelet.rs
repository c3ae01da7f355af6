//! A node laid out the way kubelet lays it out: pod and container cgroups
//! in the systemd and cgroupfs drivers' shapes under one test parent
//! cgroup, and a pod log folder tree in a temporary folder. Everything is
//! removed on drop.

use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::Duration,
};

use crate::{Workload, binary, cgroups::hierarchy_roots};

pub struct KubeletNode {
    /// Parent cgroup of every pod cgroup, relative to the v2 root.
    pub parent: String,
    v2_root: PathBuf,
    /// Cgroups made, in creation order (removed in reverse).
    made: Vec<PathBuf>,
    /// Cgroups made in the v1 `cpu` hierarchy, likewise.
    made_v1: Vec<PathBuf>,
    workloads: Vec<Workload>,
    pub pod_log_dir: PathBuf,
    pub container_log_dir: PathBuf,
    temp: PathBuf,
}

/// One container placed by [`KubeletNode::add_container`].
pub struct PlacedContainer {
    /// The container's cgroup (or the child the process runs in), relative
    /// to the v2 root: the agent's `cgroup` label.
    pub cgroup: String,
    pub pid: u32,
}

impl KubeletNode {
    pub fn new() -> Self {
        let (v2_root, _) = hierarchy_roots();
        let parent = format!("/chokepoint-test-{}-node", std::process::id());
        let temp = std::env::temp_dir().join(format!("chokepoint-kubelet-{}", std::process::id()));
        let pod_log_dir = temp.join("pods");
        let container_log_dir = temp.join("containers");
        fs::create_dir_all(&pod_log_dir).expect("creating the pod log folder");
        fs::create_dir_all(&container_log_dir).expect("creating the container log folder");
        let mut node = Self {
            parent,
            v2_root,
            made: Vec::new(),
            made_v1: Vec::new(),
            workloads: Vec::new(),
            pod_log_dir,
            container_log_dir,
            temp,
        };
        let parent = node.parent.clone();
        node.make_cgroup(&parent);
        node
    }

    fn make_cgroup(&mut self, relative: &str) {
        let mut path = self.v2_root.clone();
        for component in relative.trim_start_matches('/').split('/') {
            path.push(component);
            if !path.exists() {
                fs::create_dir(&path).unwrap_or_else(|error| panic!("creating {}: {error}", path.display()));
                self.made.push(path.clone());
            }
        }
    }

    /// Writes the pod's log folder `<namespace>_<pod>_<uid>/<container>/0.log`
    /// and the `/var/log/containers` link naming the container ID.
    pub fn add_logs(&self, namespace: &str, pod: &str, uid: &str, container: &str, container_id: &str) {
        let folder = self.pod_log_dir.join(format!("{namespace}_{pod}_{uid}")).join(container);
        fs::create_dir_all(&folder).expect("creating a pod log folder");
        let log = folder.join("0.log");
        fs::write(&log, b"").expect("writing a log file");
        let link = self.container_log_dir.join(format!("{pod}_{namespace}_{container}-{container_id}.log"));
        symlink(&log, link).expect("creating a container log link");
    }

    /// Makes the cgroup at `parent + relative` and runs a sleep/wake loop
    /// in it.
    pub fn add_container(&mut self, relative: &str) -> PlacedContainer {
        let cgroup = format!("{}{relative}", self.parent);
        self.make_cgroup(&cgroup);
        let procs = self.v2_root.join(cgroup.trim_start_matches('/')).join("cgroup.procs");
        let mut command = Command::new(binary("workload"));
        command.args(["wake-loop", "5000", "200"]);
        let workload = Workload::spawn_into(&[procs], command);
        let pid = workload.pid();
        self.workloads.push(workload);
        PlacedContainer { cgroup, pid }
    }

    /// Like [`KubeletNode::add_container`], running `workload ARGS`, with a
    /// CFS quota on the container: in the v1 `cpu` hierarchy at the same
    /// path on hybrid hosts, as kubelet lays it out, or in `cpu.max` on
    /// pure v2 hosts.
    pub fn add_limited_container(
        &mut self,
        relative: &str,
        args: &[&str],
        quota_us: u64,
        period_us: u64,
    ) -> PlacedContainer {
        let cgroup = format!("{}{relative}", self.parent);
        self.make_cgroup(&cgroup);
        let mut procs = vec![self.v2_root.join(cgroup.trim_start_matches('/')).join("cgroup.procs")];
        match hierarchy_roots().1 {
            Some(v1_cpu_root) => {
                let mut path = v1_cpu_root;
                for component in cgroup.trim_start_matches('/').split('/') {
                    path.push(component);
                    if !path.exists() {
                        fs::create_dir(&path).unwrap_or_else(|error| panic!("creating {}: {error}", path.display()));
                        self.made_v1.push(path.clone());
                    }
                }
                fs::write(path.join("cpu.cfs_period_us"), period_us.to_string()).expect("setting the CFS period");
                fs::write(path.join("cpu.cfs_quota_us"), quota_us.to_string()).expect("setting the CFS quota");
                procs.push(path.join("cgroup.procs"));
            }
            None => {
                let dir = self.v2_root.join(cgroup.trim_start_matches('/'));
                fs::write(dir.join("cpu.max"), format!("{quota_us} {period_us}"))
                    .expect("setting cpu.max (the parent cgroups need the cpu controller)");
            }
        }
        let mut command = Command::new(binary("workload"));
        command.args(args);
        let workload = Workload::spawn_into(&procs, command);
        let pid = workload.pid();
        self.workloads.push(workload);
        PlacedContainer { cgroup, pid }
    }

    /// Removes a pod: its processes, cgroups below `pod_cgroup` (relative
    /// to the parent) and its log folder.
    pub fn remove_pod(&mut self, pod_cgroup: &str, log_folder: &str) {
        let prefix = self.v2_root.join(format!("{}{pod_cgroup}", self.parent).trim_start_matches('/'));
        self.workloads.retain(|workload| {
            let cgroup = fs::read_to_string(format!("/proc/{}/cgroup", workload.pid())).unwrap_or_default();
            !cgroup.contains(pod_cgroup)
        });
        let mut removed: Vec<PathBuf> = self.made.iter().filter(|path| path.starts_with(&prefix)).cloned().collect();
        removed.sort_by_key(|path| std::cmp::Reverse(path.components().count()));
        for path in &removed {
            remove_cgroup(path);
        }
        self.made.retain(|path| !removed.contains(path));
        let _ = fs::remove_dir_all(self.pod_log_dir.join(log_folder));
    }
}

impl Default for KubeletNode {
    fn default() -> Self {
        Self::new()
    }
}

fn remove_cgroup(path: &Path) {
    for _ in 0..50 {
        if fs::remove_dir(path).is_ok() || !path.exists() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    eprintln!("warning: could not remove test cgroup {}", path.display());
}

impl Drop for KubeletNode {
    fn drop(&mut self) {
        self.workloads.clear();
        for path in self.made.iter().rev().chain(self.made_v1.iter().rev()) {
            remove_cgroup(path);
        }
        let _ = fs::remove_dir_all(&self.temp);
    }
}
