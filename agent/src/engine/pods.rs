//! Pod and container names for cgroups, from the kubelet's log folders,
//! read again every few seconds as pods come and go.

use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::identity::{PodDirectory, PodIdentity, PodLogSources, parse_pod_cgroup};

/// How often the log folders are read again.
const RESCAN_INTERVAL: Duration = Duration::from_secs(10);

pub struct PodNames {
    sources: PodLogSources,
    directory: PodDirectory,
    last_scan: Option<Instant>,
    /// Whether the last scan failed, so a persisting failure is logged once.
    failing: bool,
    /// Whether reading the container links failed last time, likewise.
    links_failing: bool,
}

impl PodNames {
    pub fn new(sources: PodLogSources) -> Self {
        Self { sources, directory: PodDirectory::default(), last_scan: None, failing: false, links_failing: false }
    }

    /// Reads the folders again when the last read is older than the rescan
    /// interval.
    pub fn refresh_if_due(&mut self) {
        if self.last_scan.is_some_and(|last| last.elapsed() < RESCAN_INTERVAL) {
            return;
        }
        let first = self.last_scan.is_none();
        self.last_scan = Some(Instant::now());
        match PodDirectory::scan(&self.sources.pod_log_dir) {
            Ok(mut directory) => {
                self.add_links(&mut directory);
                if first || self.failing {
                    let first_skipped = directory
                        .skipped_examples()
                        .first()
                        .map(|entry| format!("{}: {}", entry.path.display(), entry.reason));
                    info!(
                        pod_log_dir = %self.sources.pod_log_dir.display(),
                        pods = directory.pod_count(),
                        skipped = directory.skipped_count(),
                        first_skipped,
                        "read pod names from the kubelet's log folders"
                    );
                } else {
                    debug!(pods = directory.pod_count(), "pod log folders read again");
                }
                self.directory = directory;
                self.failing = false;
            }
            Err(error) if !self.failing => {
                // Nodes without kubelet have no such folder; pods are then
                // still recognised by their cgroup paths, without names.
                if self.sources.pod_log_dir.exists() {
                    warn!(%error, "pod names unavailable; namespace, pod and container labels stay empty");
                } else {
                    info!(
                        pod_log_dir = %self.sources.pod_log_dir.display(),
                        "no pod log folder (no kubelet on this node, or the folder is not mounted); \
                         namespace, pod and container labels stay empty"
                    );
                }
                self.failing = true;
            }
            Err(error) => debug!(%error, "pod log folders still unreadable"),
        }
    }

    /// Adds container names from the kubelet's container log links. Without
    /// them (Docker-era nodes, or the folder not mounted) pods keep their
    /// names and only container names stay unknown.
    fn add_links(&mut self, directory: &mut PodDirectory) {
        let Some(dir) = &self.sources.container_log_dir else { return };
        match directory.add_container_links(dir) {
            Ok(()) => self.links_failing = false,
            Err(error) if !self.links_failing => {
                if dir.exists() {
                    warn!(%error, "container names unavailable; the container label stays empty");
                } else {
                    info!(container_log_dir = %dir.display(), "no container log links; the container label stays empty");
                }
                self.links_failing = true;
            }
            Err(error) => debug!(%error, "container log links still unreadable"),
        }
    }

    /// Identity of the cgroup at `path`, or `None` outside any pod.
    pub fn identify(&self, path: &str) -> Option<PodIdentity> {
        self.directory.identify(path)
    }

    /// Pod UID of the pod `namespace/name`, if its log folder is known.
    pub fn pod_uid(&self, namespace: &str, name: &str) -> Option<String> {
        self.directory.uid_of(namespace, name).map(str::to_owned)
    }
}

/// Returns whether `path` is the pod-level cgroup of the pod `uid`.
pub fn is_pod_cgroup_of(path: &str, uid: &str) -> bool {
    parse_pod_cgroup(path)
        .is_some_and(|cgroup| cgroup.pod_uid == uid && matches!(cgroup.member, crate::identity::PodMember::Pod))
}
