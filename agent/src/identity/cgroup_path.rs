//! Pod UID, QoS class and container ID from a cgroup path, for every
//! layout the kubelet makes.
//!
//! The kubelet names pod cgroups after the pod UID and the container
//! runtime names container cgroups after the container ID. With the
//! systemd cgroup driver every level is a unit whose name repeats its
//! parents' names, and dashes in the UID become underscores because a dash
//! separates levels in slice names:
//!
//! ```text
//! /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope
//! /kubepods.slice/kubepods-pod<uid>.slice/crio-<id>.scope          (Guaranteed)
//! ```
//!
//! With the cgroupfs driver the levels are plain directories:
//!
//! ```text
//! /kubepods/besteffort/pod<uid>/<id>
//! /kubepods/pod<uid>/<id>                                          (Guaranteed)
//! ```
//!
//! Paths are relative to the hierarchy root, so the same parser serves
//! cgroup v1 controllers and cgroup v2. The kubelet's `--cgroup-root` may
//! put all of this below another cgroup, for example
//! `/kubelet.slice/kubelet-kubepods.slice/...` in kind nodes, which the
//! parser accepts as well.

use std::fmt;

/// Kubernetes pod QoS class, which decides where the kubelet puts the pod
/// cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QosClass {
    /// Every container has equal CPU and memory requests and limits. The
    /// pod cgroup sits directly below `kubepods`.
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    /// Returns the class name as the Kubernetes API writes it in `status.qosClass`.
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }

    /// Parses the QoS level's name in a cgroup path (`burstable` or
    /// `besteffort`), or `kubepods` itself for Guaranteed pods.
    fn from_level_name(name: &str) -> Option<Self> {
        match name {
            "kubepods" => Some(QosClass::Guaranteed),
            "burstable" => Some(QosClass::Burstable),
            "besteffort" => Some(QosClass::BestEffort),
            _ => None,
        }
    }
}

impl fmt::Display for QosClass {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Container runtime, known from the prefix of the container's cgroup
/// name. The cgroupfs driver with containerd or Docker gives no prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContainerRuntime {
    Containerd,
    CriO,
    /// Docker Engine behind cri-dockerd.
    Docker,
}

impl ContainerRuntime {
    /// Returns the scheme Kubernetes puts before the ID in a pod's
    /// `status.containerStatuses[].containerID`, as in `containerd://<id>`.
    pub fn scheme(self) -> &'static str {
        match self {
            ContainerRuntime::Containerd => "containerd",
            ContainerRuntime::CriO => "cri-o",
            ContainerRuntime::Docker => "docker",
        }
    }
}

/// Level of a cgroup within a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodMember {
    /// The pod cgroup itself, above its containers.
    Pod,
    /// A container, including the pod's sandbox (pause) container, which
    /// has a cgroup but no log folder.
    Container { id: String, runtime: Option<ContainerRuntime> },
    /// CRI-O's `conmon` monitor process of the container with this ID. It
    /// is charged to the pod but is not one of the pod's containers.
    ContainerMonitor { id: String },
}

/// The Kubernetes identity a cgroup path carries by itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodCgroup {
    /// Pod UID with dashes, as in the pod's `metadata.uid`. Static pods
    /// have a 32-hex-digit UID without dashes (a hash of their manifest).
    pub pod_uid: String,
    pub qos: QosClass,
    /// The level of the cgroup within the pod. Cgroups that a container
    /// makes below its own cgroup belong to that container.
    pub member: PodMember,
}

/// Parses a cgroup path relative to a hierarchy root (such as
/// `/kubepods/burstable/pod<uid>/<id>`) into the pod and container it
/// belongs to. Returns `None` for cgroups outside any pod: the root,
/// `system.slice`, `user.slice`, and the `kubepods` and QoS levels
/// themselves. Callers keep such a cgroup's path as its only identity.
pub fn parse_pod_cgroup(path: &str) -> Option<PodCgroup> {
    let components: Vec<&str> = path.split('/').filter(|component| !component.is_empty()).collect();

    // The pod level is the first component that names a pod below a
    // kubepods or QoS level, so a container's own children named
    // `pod...` cannot be mistaken for it.
    let (pod_index, pod_uid, qos) = components.iter().enumerate().find_map(|(index, component)| {
        let (uid, qos) = parse_pod_level(&components[..index], component)?;
        Some((index, uid, qos))
    })?;

    let member = match components.get(pod_index + 1) {
        None => PodMember::Pod,
        Some(name) => parse_container_level(name),
    };
    Some(PodCgroup { pod_uid, qos, member })
}

/// Parses one path component as a pod cgroup, given the components above
/// it. Returns the UID (with dashes) and the QoS class.
fn parse_pod_level(parents: &[&str], component: &str) -> Option<(String, QosClass)> {
    if let Some(unit) = component.strip_suffix(".slice") {
        // systemd: `kubepods-burstable-pod<uid>.slice`. The unit name
        // repeats the names of the parent slices, dash-separated.
        let (prefix, pod) = unit.rsplit_once('-')?;
        let uid = pod.strip_prefix("pod")?.replace('_', "-");
        let levels: Vec<&str> = prefix.split('-').collect();
        if !is_pod_uid(&uid) || !levels.contains(&"kubepods") {
            return None;
        }
        let qos = QosClass::from_level_name(levels.last()?)?;
        return Some((uid, qos));
    }

    // cgroupfs: `kubepods/burstable/pod<uid>` or `kubepods/pod<uid>`.
    let uid = component.strip_prefix("pod")?;
    let parent = *parents.last()?;
    let qos = QosClass::from_level_name(parent)?;
    let below_kubepods = match qos {
        QosClass::Guaranteed => true,
        QosClass::Burstable | QosClass::BestEffort => parents.len() >= 2 && parents[parents.len() - 2] == "kubepods",
    };
    (below_kubepods && is_pod_uid(uid)).then(|| (uid.to_owned(), qos))
}

/// Parses the component directly below a pod cgroup: `<runtime>-<id>.scope`
/// with the systemd driver, `<id>` or `crio-<id>` with cgroupfs.
fn parse_container_level(name: &str) -> PodMember {
    let unit = name.strip_suffix(".scope").unwrap_or(name);
    let Some((prefix, id)) = unit.rsplit_once('-') else {
        return PodMember::Container { id: unit.to_owned(), runtime: None };
    };
    let runtime = match prefix {
        "crio-conmon" => return PodMember::ContainerMonitor { id: id.to_owned() },
        "cri-containerd" => Some(ContainerRuntime::Containerd),
        "crio" => Some(ContainerRuntime::CriO),
        "docker" => Some(ContainerRuntime::Docker),
        // NOTE: an unknown runtime prefix keeps the part after the last
        // dash as the ID, which is right for `<name>-<hex id>` schemes.
        _ => None,
    };
    PodMember::Container { id: id.to_owned(), runtime }
}

/// Checks whether `uid` is a pod UID: an RFC 4122 UUID in its 8-4-4-4-12 text
/// form, or the 32 hex digits the kubelet gives static pods.
pub fn is_pod_uid(uid: &str) -> bool {
    let hex = |part: &str| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_hexdigit());
    if uid.len() == 32 {
        return hex(uid);
    }
    let parts: Vec<&str> = uid.split('-').collect();
    parts.len() == 5 && parts.iter().map(|part| part.len()).eq([8, 4, 4, 4, 12]) && parts.iter().all(|part| hex(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "6b3f2a1c-4d5e-4f60-8a7b-9c0d1e2f3a4b";
    const UID_SYSTEMD: &str = "6b3f2a1c_4d5e_4f60_8a7b_9c0d1e2f3a4b";
    const STATIC_UID: &str = "2c9a8f0e6d5b4a3928170f6e5d4c3b2a";
    const ID: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

    fn container(path: &str) -> (String, QosClass, String, Option<ContainerRuntime>) {
        let parsed = parse_pod_cgroup(path).unwrap_or_else(|| panic!("{path} should parse as a pod cgroup"));
        match parsed.member {
            PodMember::Container { id, runtime } => (parsed.pod_uid, parsed.qos, id, runtime),
            other => panic!("{path} should be a container, got {other:?}"),
        }
    }

    #[test]
    fn systemd_driver_runtimes() {
        let cases = [
            (format!("cri-containerd-{ID}.scope"), Some(ContainerRuntime::Containerd)),
            (format!("crio-{ID}.scope"), Some(ContainerRuntime::CriO)),
            (format!("docker-{ID}.scope"), Some(ContainerRuntime::Docker)),
        ];
        for (scope, expected_runtime) in cases {
            let path =
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_SYSTEMD}.slice/{scope}");

            let (uid, qos, id, runtime) = container(&path);

            assert_eq!(uid, UID, "{path}");
            assert_eq!(qos, QosClass::Burstable, "{path}");
            assert_eq!(id, ID, "{path}");
            assert_eq!(runtime, expected_runtime, "{path}");
        }
    }

    #[test]
    fn systemd_driver_qos_classes() {
        let cases = [
            (format!("/kubepods.slice/kubepods-pod{UID_SYSTEMD}.slice"), QosClass::Guaranteed),
            (
                format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_SYSTEMD}.slice"),
                QosClass::BestEffort,
            ),
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_SYSTEMD}.slice"),
                QosClass::Burstable,
            ),
        ];
        for (pod_path, expected_qos) in cases {
            let path = format!("{pod_path}/cri-containerd-{ID}.scope");

            let (uid, qos, id, _) = container(&path);

            assert_eq!(uid, UID, "{path}");
            assert_eq!(qos, expected_qos, "{path}");
            assert_eq!(id, ID, "{path}");
        }
    }

    #[test]
    fn cgroupfs_driver_qos_classes() {
        let cases = [
            (format!("/kubepods/pod{UID}/{ID}"), QosClass::Guaranteed),
            (format!("/kubepods/burstable/pod{UID}/{ID}"), QosClass::Burstable),
            (format!("/kubepods/besteffort/pod{UID}/{ID}"), QosClass::BestEffort),
        ];
        for (path, expected_qos) in cases {
            let (uid, qos, id, runtime) = container(&path);

            assert_eq!(uid, UID, "{path}");
            assert_eq!(qos, expected_qos, "{path}");
            assert_eq!(id, ID, "{path}");
            assert_eq!(runtime, None, "{path}");
        }
    }

    #[test]
    fn cgroupfs_driver_crio_prefix() {
        let (_, _, id, runtime) = container(&format!("/kubepods/burstable/pod{UID}/crio-{ID}"));

        assert_eq!(id, ID);
        assert_eq!(runtime, Some(ContainerRuntime::CriO));
    }

    #[test]
    fn cgroup_root_below_kubelet_slice() {
        let path = format!(
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/\
             kubelet-kubepods-besteffort-pod{UID_SYSTEMD}.slice/cri-containerd-{ID}.scope"
        );

        let (uid, qos, id, _) = container(&path);

        assert_eq!(uid, UID);
        assert_eq!(qos, QosClass::BestEffort);
        assert_eq!(id, ID);
    }

    #[test]
    fn static_pod_uid_without_dashes() {
        let systemd = format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{STATIC_UID}.slice");
        let cgroupfs = format!("/kubepods/burstable/pod{STATIC_UID}/{ID}");

        assert_eq!(parse_pod_cgroup(&systemd).map(|pod| pod.pod_uid), Some(STATIC_UID.to_owned()));
        assert_eq!(container(&cgroupfs).0, STATIC_UID);
    }

    #[test]
    fn pod_level_has_no_container() {
        for path in [
            format!("/kubepods/burstable/pod{UID}"),
            format!("/kubepods/pod{UID}/"),
            format!("/kubepods.slice/kubepods-pod{UID_SYSTEMD}.slice"),
        ] {
            let parsed = parse_pod_cgroup(&path).unwrap_or_else(|| panic!("{path} should parse"));

            assert_eq!(parsed.pod_uid, UID, "{path}");
            assert_eq!(parsed.member, PodMember::Pod, "{path}");
        }
    }

    #[test]
    fn crio_conmon_is_not_a_container() {
        for path in [
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_SYSTEMD}.slice/crio-conmon-{ID}.scope"
            ),
            format!("/kubepods/burstable/pod{UID}/crio-conmon-{ID}"),
        ] {
            let parsed = parse_pod_cgroup(&path).unwrap_or_else(|| panic!("{path} should parse"));

            assert_eq!(parsed.pod_uid, UID, "{path}");
            assert_eq!(parsed.member, PodMember::ContainerMonitor { id: ID.to_owned() }, "{path}");
        }
    }

    #[test]
    fn container_children_belong_to_container() {
        let paths = [
            format!("/kubepods/burstable/pod{UID}/{ID}/child/grandchild"),
            format!("/kubepods.slice/kubepods-pod{UID_SYSTEMD}.slice/crio-{ID}.scope/container"),
            // A nested kubelet's cgroups inside a container are still that
            // container's, not a second pod.
            format!("/kubepods/pod{UID}/{ID}/kubepods/pod{STATIC_UID}/abc"),
        ];
        for path in paths {
            let (uid, _, id, _) = container(&path);

            assert_eq!(uid, UID, "{path}");
            assert_eq!(id, ID, "{path}");
        }
    }

    #[test]
    fn v1_and_v2_paths_agree() {
        // A hybrid host's /proc/PID/cgroup: the v1 controllers and the v2
        // hierarchy name the same path relative to their own roots.
        let text = format!(
            "12:memory:/kubepods/burstable/pod{UID}/{ID}\n\
             4:cpu,cpuacct:/kubepods/burstable/pod{UID}/{ID}\n\
             0::/kubepods/burstable/pod{UID}/{ID}\n"
        );
        let cgroups = crate::cgroup::process::ProcessCgroups::parse(&text).expect("valid /proc/PID/cgroup text");
        let v1_cpu = cgroups.v1_cpu.as_deref().expect("a cpu controller line");
        let unified = cgroups.unified.as_deref().expect("a v2 line");

        let from_v2 = parse_pod_cgroup(unified);
        let from_v1 = parse_pod_cgroup(v1_cpu);

        assert!(from_v2.is_some(), "{unified}");
        assert_eq!(from_v1, from_v2);
    }

    #[test]
    fn non_kubernetes_cgroups() {
        for path in [
            "/",
            "",
            "/system.slice/containerd.service",
            "/system.slice/kubelet.service",
            "/user.slice/user-1000.slice/session-3.scope",
            "/kubepods.slice",
            "/kubepods.slice/kubepods-burstable.slice",
            "/kubepods",
            "/kubepods/besteffort",
            // A `pod...` directory outside kubepods, and malformed UIDs.
            "/machine.slice/pod6b3f2a1c-4d5e-4f60-8a7b-9c0d1e2f3a4b",
            "/kubepods/burstable/podnot-a-uid/abc",
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice",
            "/kubepods/other/pod6b3f2a1c-4d5e-4f60-8a7b-9c0d1e2f3a4b/abc",
            "/system.slice/podman-pod6b3f2a1c_4d5e_4f60_8a7b_9c0d1e2f3a4b.slice",
        ] {
            assert_eq!(parse_pod_cgroup(path), None, "{path:?} should not parse as a pod cgroup");
        }
    }

    #[test]
    fn pod_uid_forms() {
        assert!(is_pod_uid(UID));
        assert!(is_pod_uid(STATIC_UID));
        assert!(is_pod_uid(&UID.to_uppercase()));
        assert!(!is_pod_uid(UID_SYSTEMD));
        assert!(!is_pod_uid(""));
        assert!(!is_pod_uid("6b3f2a1c-4d5e-4f60-8a7b9c0d-1e2f3a4b"));
        assert!(!is_pod_uid("zb3f2a1c-4d5e-4f60-8a7b-9c0d1e2f3a4b"));
        assert!(!is_pod_uid(&STATIC_UID[1..]));
    }

    #[test]
    fn qos_and_runtime_names() {
        assert_eq!(QosClass::BestEffort.to_string(), "BestEffort");
        assert_eq!(QosClass::Guaranteed.as_str(), "Guaranteed");
        assert_eq!(ContainerRuntime::CriO.scheme(), "cri-o");
    }
}
