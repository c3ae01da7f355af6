//! Kubernetes identity of a cgroup: pod UID, QoS class and container ID
//! from its path, and namespace, pod and container names from the
//! kubelet's pod log folder tree.
//!
//! Pure parsing and file reading, without kernel access, so that every
//! layout can be tested with fixtures.

mod cgroup_path;
mod pod_logs;

pub use cgroup_path::{ContainerRuntime, PodMember, QosClass, parse_pod_cgroup};
pub use pod_logs::{DEFAULT_CONTAINER_LOG_DIR, DEFAULT_POD_LOG_DIR, PodDirectory, PodLogSources};

/// Labels for one cgroup of a pod, with the same meaning as the
/// `namespace`, `pod` and `container` labels of cAdvisor and
/// kube-state-metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodIdentity {
    pub pod_uid: String,
    pub qos: QosClass,
    /// `None` while the pod has no log folder yet (it is starting) or when
    /// the pod log folder tree is not readable.
    pub namespace: Option<String>,
    pub pod: Option<String>,
    /// Container name, when the container ID could be matched to one.
    pub container: Option<String>,
    /// Runtime ID of the container whose cgroup this is. `None` for the
    /// pod cgroup and for CRI-O's conmon cgroups, which belong to the pod.
    pub container_id: Option<String>,
    pub runtime: Option<ContainerRuntime>,
}

impl PodDirectory {
    /// Identifies the pod and container of a cgroup from its path relative
    /// to the hierarchy root. Returns `None` for cgroups outside any pod.
    ///
    /// NOTE: with containerd and CRI-O the pod log tree names containers
    /// but never their IDs, so `container` stays `None` unless
    /// [`PodDirectory::add_container_links`] or cri-dockerd's log symlinks
    /// supplied the ID. A pod with a single container folder is not
    /// guessed either: the sandbox (pause) container has its own cgroup
    /// and no log folder, so the guess would give it the wrong name.
    pub fn identify(&self, cgroup_path: &str) -> Option<PodIdentity> {
        let cgroup = parse_pod_cgroup(cgroup_path)?;
        let pod = self.pod(&cgroup.pod_uid);

        let (container_id, runtime) = match cgroup.member {
            PodMember::Container { id, runtime } => (Some(id), runtime),
            PodMember::Pod | PodMember::ContainerMonitor { .. } => (None, None),
        };
        // A name recorded for the same ID under another pod would be a
        // stale or foreign entry, so the pod UID must match too.
        let container = container_id
            .as_deref()
            .and_then(|id| self.container_name(id))
            .filter(|(pod_uid, _)| *pod_uid == cgroup.pod_uid)
            .map(|(_, name)| name.to_owned());

        Some(PodIdentity {
            namespace: pod.map(|pod| pod.namespace.clone()),
            pod: pod.map(|pod| pod.name.clone()),
            pod_uid: cgroup.pod_uid,
            qos: cgroup.qos,
            container,
            container_id,
            runtime,
        })
    }
}
