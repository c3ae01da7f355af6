//! Pod names from the kubelet's pod log folder tree.
//!
//! The kubelet keeps one folder per pod on the node, named after the pod,
//! and one folder per container inside it:
//!
//! ```text
//! /var/log/pods/<namespace>_<pod name>_<pod uid>/<container name>/<restart count>.log
//! ```
//!
//! That maps a pod UID (which the cgroup path carries) to the namespace,
//! the pod name and the container names. It does not map a container ID
//! to its name: with containerd and CRI-O the log files are plain files.
//! Only cri-dockerd made them symlinks to
//! `/var/lib/docker/containers/<id>/<id>-json.log`, and the kubelet's
//! `/var/log/containers` links carry the ID in their names (see
//! [`PodDirectory::add_container_links`]).

use std::{
    collections::HashMap,
    fs, io,
    path::{Path, PathBuf},
};

use thiserror::Error;

use super::cgroup_path::is_pod_uid;

/// The kubelet's default pod log folder.
pub const DEFAULT_POD_LOG_DIR: &str = "/var/log/pods";

/// The kubelet's folder of `<pod>_<namespace>_<container>-<id>.log` links.
pub const DEFAULT_CONTAINER_LOG_DIR: &str = "/var/log/containers";

/// Skipped entries kept with their reason, so one scan of a tree full of
/// odd entries does not fill the log.
const MAX_SKIPPED_EXAMPLES: usize = 8;

#[derive(Debug, Error)]
pub enum ScanError {
    #[error(
        "cannot read the pod log folder {path}: {source}; check --pod-log-dir and that the host's folder is mounted into the agent's container"
    )]
    ReadPodLogDir { path: PathBuf, source: io::Error },
    #[error(
        "cannot read the container log link folder {path}: {source}; mount the host's /var/log/containers into the agent's container, or do not read the links"
    )]
    ReadContainerLogDir { path: PathBuf, source: io::Error },
}

/// The folders a [`PodDirectory`] is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodLogSources {
    /// The kubelet's pod log folder tree (`--pod-log-dir`).
    pub pod_log_dir: PathBuf,
    /// The kubelet's `/var/log/containers` links, the only source of
    /// container names for containerd and CRI-O. `None` skips them.
    pub container_log_dir: Option<PathBuf>,
}

impl Default for PodLogSources {
    fn default() -> Self {
        Self {
            pod_log_dir: PathBuf::from(DEFAULT_POD_LOG_DIR),
            container_log_dir: Some(PathBuf::from(DEFAULT_CONTAINER_LOG_DIR)),
        }
    }
}

/// A pod found in the log folder tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodEntry {
    pub namespace: String,
    pub name: String,
    /// Names of the containers that have a log folder, sorted. Includes
    /// init and ephemeral containers that have run, never the sandbox.
    pub containers: Vec<String>,
}

/// An entry the scan left out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedEntry {
    pub path: PathBuf,
    pub reason: String,
}

/// Container name and pod UID recorded for a container ID.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ContainerName {
    pod_uid: String,
    name: String,
}

/// Pods and containers on this node, by pod UID, from one scan of the
/// pod log folder tree.
#[derive(Clone, Debug, Default)]
pub struct PodDirectory {
    pods: HashMap<String, PodEntry>,
    containers_by_id: HashMap<String, ContainerName>,
    skipped_count: usize,
    skipped_examples: Vec<SkippedEntry>,
}

impl PodDirectory {
    /// Scans `<root>/<namespace>_<pod>_<uid>/<container>/`. Entries that
    /// cannot be read or do not have that shape are skipped and counted.
    /// Only an unreadable `root` is an error.
    pub fn scan(root: &Path) -> Result<Self, ScanError> {
        let entries =
            fs::read_dir(root).map_err(|source| ScanError::ReadPodLogDir { path: root.to_owned(), source })?;
        let mut directory = Self::default();
        for entry in entries {
            match entry {
                Ok(entry) => directory.add_pod_folder(&entry.path()),
                Err(error) => directory.skip(root, format!("reading a folder entry failed: {error}")),
            }
        }
        Ok(directory)
    }

    /// Adds container IDs from the kubelet's `/var/log/containers` links,
    /// named `<pod>_<namespace>_<container>-<id>.log`. Links whose pod is
    /// not in the scanned tree are skipped and counted.
    pub fn add_container_links(&mut self, dir: &Path) -> Result<(), ScanError> {
        let entries =
            fs::read_dir(dir).map_err(|source| ScanError::ReadContainerLogDir { path: dir.to_owned(), source })?;
        for entry in entries {
            let path = match entry {
                Ok(entry) => entry.path(),
                Err(error) => {
                    self.skip(dir, format!("reading a folder entry failed: {error}"));
                    continue;
                }
            };
            if let Err(reason) = self.add_container_link(&path) {
                self.skip(&path, reason);
            }
        }
        Ok(())
    }

    /// Returns the pod with this UID (with dashes, as in `metadata.uid`).
    pub fn pod(&self, uid: &str) -> Option<&PodEntry> {
        self.pods.get(uid)
    }

    /// Returns the UID of the pod `namespace/name`, if its folder exists.
    /// A pod recreated under the same name has a new UID and a new folder;
    /// the old folder lingers until the kubelet removes it, so the
    /// lexically largest UID is not chosen but the one whose folder has a
    /// container folder, and among several the last found.
    pub fn uid_of(&self, namespace: &str, name: &str) -> Option<&str> {
        let mut found = None;
        for (uid, pod) in &self.pods {
            if pod.namespace == namespace && pod.name == name && (found.is_none() || !pod.containers.is_empty()) {
                found = Some(uid.as_str());
            }
        }
        found
    }

    /// Returns the pod UID and the name of the container with this
    /// runtime ID, when a log symlink named it.
    pub fn container_name(&self, container_id: &str) -> Option<(&str, &str)> {
        self.containers_by_id.get(container_id).map(|container| (container.pod_uid.as_str(), container.name.as_str()))
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// Number of entries left out by the scan, of which
    /// [`Self::skipped_examples`] keeps the first few.
    pub fn skipped_count(&self) -> usize {
        self.skipped_count
    }

    pub fn skipped_examples(&self) -> &[SkippedEntry] {
        &self.skipped_examples
    }

    fn skip(&mut self, path: &Path, reason: String) {
        self.skipped_count += 1;
        if self.skipped_examples.len() < MAX_SKIPPED_EXAMPLES {
            self.skipped_examples.push(SkippedEntry { path: path.to_owned(), reason });
        }
    }

    fn add_pod_folder(&mut self, path: &Path) {
        // `is_dir` follows symlinks; the kubelet makes real folders, but a
        // bind-mounted or relocated tree may not.
        if !path.is_dir() {
            self.skip(path, "not a folder".to_owned());
            return;
        }
        let Some(folder_name) = path.file_name().and_then(|name| name.to_str()) else {
            self.skip(path, "folder name is not UTF-8".to_owned());
            return;
        };
        let Some((namespace, name, uid)) = parse_pod_folder_name(folder_name) else {
            self.skip(path, "folder name is not <namespace>_<pod>_<uid>".to_owned());
            return;
        };

        let mut containers = Vec::new();
        match fs::read_dir(path) {
            Ok(entries) => {
                for entry in entries {
                    match entry {
                        Ok(entry) => {
                            if let Some(container) = self.add_container_folder(&entry.path(), uid) {
                                containers.push(container);
                            }
                        }
                        Err(error) => self.skip(path, format!("reading a folder entry failed: {error}")),
                    }
                }
            }
            // The pod still maps to its name; only its containers are lost.
            Err(error) => self.skip(path, format!("reading the pod folder failed: {error}")),
        }
        containers.sort();

        let pod = PodEntry { namespace: namespace.to_owned(), name: name.to_owned(), containers };
        self.pods.insert(uid.to_owned(), pod);
    }

    /// Returns the container name of `<pod folder>/<container>/`, and
    /// records the container ID of any symlinked log file in it.
    fn add_container_folder(&mut self, path: &Path, pod_uid: &str) -> Option<String> {
        if !path.is_dir() {
            self.skip(path, "not a folder".to_owned());
            return None;
        }
        let Some(name) = path.file_name().and_then(|name| name.to_str()).filter(|name| is_container_name(name)) else {
            self.skip(path, "folder name is not a container name (a DNS label)".to_owned());
            return None;
        };

        // Unreadable container folders still count as containers; only
        // the ID lookup needs their content.
        let log_files = fs::read_dir(path).into_iter().flatten().flatten();
        for log_file in log_files {
            let Ok(target) = fs::read_link(log_file.path()) else {
                continue;
            };
            if let Some(id) = docker_id_from_log_target(&target) {
                let container = ContainerName { pod_uid: pod_uid.to_owned(), name: name.to_owned() };
                self.containers_by_id.insert(id.to_owned(), container);
            }
        }
        Some(name.to_owned())
    }

    fn add_container_link(&mut self, path: &Path) -> Result<(), String> {
        let file_name = path.file_name().and_then(|name| name.to_str()).ok_or("file name is not UTF-8")?;
        let (pod_name, namespace, container, id) =
            parse_container_link_name(file_name).ok_or("file name is not <pod>_<namespace>_<container>-<id>.log")?;

        // The link target names the pod folder, which gives the UID. Older
        // kubelets pointed the link at the runtime's own log file instead,
        // so fall back to finding the pod by namespace and name.
        let target = fs::read_link(path).map_err(|error| format!("reading the link failed: {error}"))?;
        let uid_from_target = target
            .parent()
            .and_then(Path::parent)
            .and_then(Path::file_name)
            .and_then(|name| name.to_str())
            .and_then(parse_pod_folder_name)
            .map(|(_, _, uid)| uid.to_owned());
        let pod_uid = uid_from_target
            .or_else(|| self.find_pod_uid(namespace, pod_name))
            .ok_or_else(|| format!("pod {namespace}/{pod_name} is not in the pod log folder tree"))?;

        let container = ContainerName { pod_uid, name: container.to_owned() };
        self.containers_by_id.insert(id.to_owned(), container);
        Ok(())
    }

    /// UID of the pod with this namespace and name, when exactly one such
    /// pod is in the tree (a recreated pod briefly has two folders).
    fn find_pod_uid(&self, namespace: &str, name: &str) -> Option<String> {
        let mut matches = self.pods.iter().filter(|(_, pod)| pod.namespace == namespace && pod.name == name);
        let (uid, _) = matches.next()?;
        matches.next().is_none().then(|| uid.clone())
    }
}

/// Splits `<namespace>_<pod name>_<pod uid>`. Namespaces and pod names
/// cannot contain `_`, but the UID is taken from the last field and the
/// namespace from the first, so an odd name keeps its middle intact.
pub fn parse_pod_folder_name(name: &str) -> Option<(&str, &str, &str)> {
    let (namespace, rest) = name.split_once('_')?;
    let (pod_name, uid) = rest.rsplit_once('_')?;
    let valid = !namespace.is_empty() && !pod_name.is_empty() && is_pod_uid(uid);
    valid.then_some((namespace, pod_name, uid))
}

/// Splits `<pod>_<namespace>_<container>-<id>.log`. The container name
/// may contain dashes, the ID (hex digits) cannot.
fn parse_container_link_name(name: &str) -> Option<(&str, &str, &str, &str)> {
    let stem = name.strip_suffix(".log")?;
    let (pod_name, rest) = stem.split_once('_')?;
    let (namespace, rest) = rest.split_once('_')?;
    let (container, id) = rest.rsplit_once('-')?;
    let valid = !pod_name.is_empty() && !namespace.is_empty() && is_container_name(container) && is_container_id(id);
    valid.then_some((pod_name, namespace, container, id))
}

/// Reads the container ID from a cri-dockerd log link target,
/// `/var/lib/docker/containers/<id>/<id>-json.log`.
fn docker_id_from_log_target(target: &Path) -> Option<&str> {
    let id = target.file_name()?.to_str()?.strip_suffix("-json.log")?;
    is_container_id(id).then_some(id)
}

/// Container IDs of containerd, CRI-O and Docker: 64 lowercase hex digits.
fn is_container_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

/// Container names are RFC 1123 DNS labels: at most 63 lowercase letters,
/// digits and dashes, starting and ending with a letter or digit.
fn is_container_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge_ok = |byte: Option<&u8>| byte.is_some_and(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit());
    name.len() <= 63
        && edge_ok(bytes.first())
        && edge_ok(bytes.last())
        && bytes.iter().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || *byte == b'-')
}

#[cfg(test)]
#[path = "pod_logs_tests.rs"]
mod tests;
