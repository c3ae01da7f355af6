//! Cgroup id to path, by walking the v2 hierarchy.
//!
//! The probes key everything by cgroup id, the inode number of the
//! cgroup's directory in the v2 mount. The kernel has no id-to-path lookup
//! that works on every version, so the agent keeps a map built by walking
//! the tree. It walks again on an unknown id (a cgroup made since the last
//! walk) and every few seconds.

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::{DirEntryExt as _, MetadataExt as _},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::CgroupId;

/// The deepest cgroup nesting walked. Kubernetes nests about six levels
/// (kubepods, QoS class, pod, container, and what the container makes).
const MAX_DEPTH: usize = 32;

pub struct CgroupResolver {
    root: PathBuf,
    paths: HashMap<CgroupId, String>,
    last_walk: Option<Instant>,
    min_walk_interval: Duration,
}

impl CgroupResolver {
    /// Creates a resolver over the v2 hierarchy mounted at `root`. Misses
    /// trigger a walk at most once per `min_walk_interval`.
    pub fn new(root: PathBuf, min_walk_interval: Duration) -> Self {
        Self { root, paths: HashMap::new(), last_walk: None, min_walk_interval }
    }

    /// Path of a cgroup relative to the v2 root (`/` for the root itself),
    /// or `None` when no such cgroup exists, also after a fresh walk
    /// (the cgroup was removed).
    ///
    /// A cached path is not checked here: a `stat` per cgroup per tick cost
    /// more than anything else at a thousand cgroups. The engine notices a
    /// removed cgroup when its `cpu.stat` is gone and calls
    /// [`CgroupResolver::forget`], and every walk drops removed cgroups.
    pub fn path_of(&mut self, id: CgroupId) -> Option<&str> {
        if !self.paths.contains_key(&id) && self.walk_allowed() {
            self.walk();
        }
        self.paths.get(&id).map(String::as_str)
    }

    /// Id of the cgroup at `relative` below the v2 root, read directly.
    pub fn id_of(&self, relative: &str) -> std::io::Result<CgroupId> {
        let dir = self.root.join(relative.trim_start_matches('/'));
        Ok(fs::metadata(dir)?.ino())
    }

    /// Rebuilds the id-to-path map from the current tree.
    pub fn walk(&mut self) {
        let mut paths = HashMap::with_capacity(self.paths.len());
        walk_root(&self.root, &mut paths);
        self.paths = paths;
        self.last_walk = Some(Instant::now());
    }

    /// Walks the tree again when the last walk is older than `interval`, so
    /// cgroups made since then are found before any probe counts for them.
    pub fn walk_if_older_than(&mut self, interval: Duration) {
        if self.last_walk.is_none_or(|last| last.elapsed() >= interval) {
            self.walk();
        }
    }

    /// Path of `id` as of the last walk, without checking the tree.
    pub fn cached_path(&self, id: CgroupId) -> Option<&str> {
        self.paths.get(&id).map(String::as_str)
    }

    /// Ids of every cgroup found by the last walk.
    pub fn known_ids(&self) -> impl Iterator<Item = CgroupId> + '_ {
        self.paths.keys().copied()
    }

    /// Forgets cgroups whose directories are gone.
    pub fn forget(&mut self, id: CgroupId) {
        self.paths.remove(&id);
    }

    fn walk_allowed(&self) -> bool {
        self.last_walk.is_none_or(|last| last.elapsed() >= self.min_walk_interval)
    }
}

fn walk_root(root: &Path, paths: &mut HashMap<CgroupId, String>) {
    // The root can be missing only on a misconfigured host, and the
    // engine then finds no cgroups.
    let Ok(metadata) = fs::metadata(root) else { return };
    walk_dir(root, "", metadata.ino(), is_leaf(&metadata), 0, paths);
}

/// Tells whether a directory has no subdirectories, from its link count:
/// two (its own entry and `.`) plus one per subdirectory's `..` on kernfs,
/// tmpfs and ext4. Filesystems that count otherwise (btrfs reports 1) are
/// treated as possibly having some.
fn is_leaf(metadata: &fs::Metadata) -> bool {
    metadata.nlink() == 2
}

/// Records `dir`, whose id is `id`, and walks its subdirectories unless it
/// is a `leaf`.
///
/// A child's id is the inode number its directory entry carries, which on
/// cgroupfs (kernfs) is the same number `stat` returns. A leaf, which most
/// cgroups are, is not listed: listing a cgroup directory returns dozens of
/// control-file entries the walk must skip, and a `stat` relative to the
/// parent's open directory costs much less.
fn walk_dir(dir: &Path, relative: &str, id: CgroupId, leaf: bool, depth: usize, paths: &mut HashMap<CgroupId, String>) {
    let display = if relative.is_empty() { "/".to_owned() } else { relative.to_owned() };
    paths.insert(id, display);
    if leaf || depth >= MAX_DEPTH {
        return;
    }
    // Directories can vanish while pods come and go; such errors just
    // leave the cgroup's children out of this walk.
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            continue;
        }
        let name = entry.file_name();
        let child_relative = format!("{relative}/{}", name.to_string_lossy());
        // DirEntry::metadata stats the name relative to the open directory.
        let leaf = entry.metadata().is_ok_and(|metadata| is_leaf(&metadata));
        walk_dir(&entry.path(), &child_relative, entry.ino(), leaf, depth + 1, paths);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_ids_in_a_directory_tree() {
        let root = std::env::temp_dir().join(format!("chokepoint-resolver-{}", std::process::id()));
        let child = root.join("kubepods.slice/pod-a");
        fs::create_dir_all(&child).unwrap();
        let mut resolver = CgroupResolver::new(root.clone(), Duration::ZERO);

        let child_id = fs::metadata(&child).unwrap().ino();
        let root_id = fs::metadata(&root).unwrap().ino();

        assert_eq!(resolver.path_of(child_id), Some("/kubepods.slice/pod-a"));
        assert_eq!(resolver.path_of(root_id), Some("/"));
        assert_eq!(resolver.id_of("/kubepods.slice/pod-a").unwrap(), child_id);

        fs::remove_dir_all(&root).unwrap();
        resolver.forget(child_id);
        assert_eq!(resolver.path_of(child_id), None);
    }

    #[test]
    fn walk_finds_children_of_nested_dirs() {
        let root = std::env::temp_dir().join(format!("chokepoint-resolver-nested-{}", std::process::id()));
        let leaf = root.join("kubepods/burstable/pod-b/container");
        let sibling = root.join("kubepods/besteffort");
        fs::create_dir_all(&leaf).unwrap();
        fs::create_dir_all(&sibling).unwrap();
        fs::write(root.join("kubepods/cpu.stat"), "usage_usec 1\n").unwrap();
        let mut resolver = CgroupResolver::new(root.clone(), Duration::ZERO);

        let leaf_id = fs::metadata(&leaf).unwrap().ino();
        let sibling_id = fs::metadata(&sibling).unwrap().ino();
        resolver.walk();
        fs::remove_dir_all(&root).unwrap();

        assert_eq!(resolver.cached_path(leaf_id), Some("/kubepods/burstable/pod-b/container"));
        assert_eq!(resolver.cached_path(sibling_id), Some("/kubepods/besteffort"));
        assert_eq!(resolver.known_ids().count(), 6);
    }

    #[test]
    fn leaf_from_link_count() {
        let root = std::env::temp_dir().join(format!("chokepoint-resolver-leaf-{}", std::process::id()));
        fs::create_dir_all(root.join("child")).unwrap();

        let parent = is_leaf(&fs::metadata(&root).unwrap());
        let child = is_leaf(&fs::metadata(root.join("child")).unwrap());
        fs::remove_dir_all(&root).unwrap();

        assert!(!parent);
        assert!(child);
    }
}
