//! Cgroup namespaces: `/proc/PID/cgroup` gives paths relative to the
//! reader's cgroup namespace root. An agent in a container with a private
//! cgroup namespace (the default for containers on cgroup v2) reads a
//! neighbour pod's cgroup as `/../../kubepods/...`. The mounted hierarchy it
//! walks, a hostPath mount of the node's, shows paths from the real root, so
//! the two must be joined.

use std::{fs, path::Path};

/// The real path, relative to the hierarchy root, of the cgroup namespace
/// root of this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceRoot {
    path: String,
}

impl NamespaceRoot {
    /// Returns the root for a process that shares the hierarchy's own view.
    pub fn hierarchy_root() -> Self {
        Self { path: "/".to_owned() }
    }

    /// Finds this process's namespace root below `root` (the mounted
    /// hierarchy), given `own_path`, this process's cgroup as its own
    /// `/proc/self/cgroup` shows it. The cgroup whose `cgroup.procs` lists
    /// this process is its real cgroup; the namespace root is that path
    /// without `own_path`'s tail. Returns `None` when no such cgroup is
    /// found (the hierarchy is not the node's).
    pub fn find(root: &Path, own_path: &str) -> Option<Self> {
        let pid = std::process::id();
        // The common case costs one read: no private namespace.
        if lists_pid(&root.join(own_path.trim_start_matches('/')), pid) {
            return Some(Self::hierarchy_root());
        }
        let real = find_cgroup_of(root, "", pid, 0)?;
        let own = normalize(own_path);
        let path = if own == "/" { real } else { real.strip_suffix(own.as_str())?.to_owned() };
        Some(Self { path: if path.is_empty() { "/".to_owned() } else { path } })
    }

    /// Translates a path read from `/proc/PID/cgroup` into a path relative
    /// to the hierarchy root.
    pub fn resolve(&self, namespace_path: &str) -> String {
        normalize(&format!("{}/{}", self.path, namespace_path))
    }
}

fn lists_pid(dir: &Path, pid: u32) -> bool {
    fs::read_to_string(dir.join("cgroup.procs"))
        .is_ok_and(|procs| procs.lines().any(|line| line.trim().parse() == Ok(pid)))
}

fn find_cgroup_of(root: &Path, relative: &str, pid: u32, depth: usize) -> Option<String> {
    let dir = root.join(relative.trim_start_matches('/'));
    if lists_pid(&dir, pid) {
        return Some(if relative.is_empty() { "/".to_owned() } else { relative.to_owned() });
    }
    if depth > 32 {
        return None;
    }
    fs::read_dir(&dir).ok()?.flatten().filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir())).find_map(
        |entry| {
            let child = format!("{relative}/{}", entry.file_name().to_string_lossy());
            find_cgroup_of(root, &child, pid, depth + 1)
        },
    )
}

/// Resolves `.` and `..` components; `..` above the root stays at the root.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_paths_above_the_namespace_root() {
        let root = NamespaceRoot { path: "/kubepods/burstable/podA/agent".to_owned() };

        assert_eq!(root.resolve("/../../podB/app"), "/kubepods/burstable/podB/app");
        assert_eq!(root.resolve("/"), "/kubepods/burstable/podA/agent");
        assert_eq!(root.resolve("/child"), "/kubepods/burstable/podA/agent/child");
        assert_eq!(NamespaceRoot::hierarchy_root().resolve("/a/b"), "/a/b");
    }

    #[test]
    fn normalize_stays_below_root() {
        assert_eq!(normalize("/../../x"), "/x");
        assert_eq!(normalize("/a/./b/../c"), "/a/c");
        assert_eq!(normalize(""), "/");
    }

    #[test]
    fn finds_own_cgroup_in_a_tree() {
        let root = std::env::temp_dir().join(format!("chokepoint-cgroupns-{}", std::process::id()));
        let own = root.join("kubepods/podA/agent");
        fs::create_dir_all(&own).unwrap();
        fs::write(own.join("cgroup.procs"), format!("1\n{}\n", std::process::id())).unwrap();

        let found = NamespaceRoot::find(&root, "/");

        fs::remove_dir_all(&root).unwrap();
        assert_eq!(found.unwrap().resolve("/../podB"), "/kubepods/podA/podB");
    }
}
