//! Mount points of the cgroup hierarchies, found at run time.
//!
//! Pure cgroup v2 nodes mount the unified hierarchy at `/sys/fs/cgroup`;
//! hybrid nodes mount it at `/sys/fs/cgroup/unified` and the v1 controllers
//! beside it. Nothing is assumed: the agent reads `/proc/self/mountinfo`.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use clap::ValueEnum;

/// The hierarchy whose cgroups identify tasks: the probes report that
/// hierarchy's cgroup ids and every series is labelled with its paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Hierarchy {
    /// The v2 (unified) hierarchy: pure v2 hosts, and hybrid hosts whose
    /// container runtime places containers in v2 too (systemd driver).
    V2,
    /// The v1 hierarchy of the `cpu` controller: v1-only hosts, and hybrid
    /// hosts with the cgroupfs driver, where every task shares one v2 cgroup.
    #[value(name = "v1-cpu")]
    V1Cpu,
}

/// How to choose the [`Hierarchy`]: `auto` detects it at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HierarchyChoice {
    Auto,
    V2,
    #[value(name = "v1-cpu")]
    V1Cpu,
}

/// Mount points of the cgroup hierarchies the agent reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupLayout {
    /// The cgroup v2 (unified) mount, absent on v1-only hosts.
    pub v2_root: Option<PathBuf>,
    /// The cgroup v1 `cpu` controller mount, on hybrid and v1 hosts. CFS
    /// quota and throttling live there when the controller is bound to v1.
    pub v1_cpu_root: Option<PathBuf>,
    /// The cgroup v1 `blkio` controller mount, on hybrid and v1 hosts.
    /// There, the blkcg of a block request is a v1 `blkio` cgroup.
    pub v1_blkio_root: Option<PathBuf>,
    /// The hierarchy that identifies tasks.
    pub identity: Hierarchy,
}

/// Top-level cgroup names kubelet makes (cgroupfs and systemd drivers).
const KUBELET_ROOTS: [&str; 2] = ["kubepods", "kubepods.slice"];

impl CgroupLayout {
    /// Finds the hierarchies from the current process's mount table and
    /// chooses the one that identifies tasks.
    pub fn discover(choice: HierarchyChoice) -> anyhow::Result<Self> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .context("reading /proc/self/mountinfo to find the cgroup mounts")?;
        let mut layout = Self::from_mountinfo(&mountinfo)?;
        layout.identity = layout.choose_identity(choice, |path| path.is_dir())?;
        Ok(layout)
    }

    /// Chooses the identifying hierarchy. `auto` picks v1 `cpu` when there
    /// is no v2 mount, or when kubelet's top-level cgroup exists in the v1
    /// `cpu` hierarchy but not in v2 (the cgroupfs driver on a hybrid
    /// host); otherwise v2.
    pub fn choose_identity(
        &self,
        choice: HierarchyChoice,
        exists: impl Fn(&Path) -> bool,
    ) -> anyhow::Result<Hierarchy> {
        let has_kubelet_root = |root: &Option<PathBuf>| {
            root.as_deref().is_some_and(|root| KUBELET_ROOTS.iter().any(|name| exists(&root.join(name))))
        };
        let chosen = match choice {
            HierarchyChoice::V2 => Hierarchy::V2,
            HierarchyChoice::V1Cpu => Hierarchy::V1Cpu,
            HierarchyChoice::Auto if self.v2_root.is_none() => Hierarchy::V1Cpu,
            HierarchyChoice::Auto if has_kubelet_root(&self.v1_cpu_root) && !has_kubelet_root(&self.v2_root) => {
                Hierarchy::V1Cpu
            }
            HierarchyChoice::Auto => Hierarchy::V2,
        };
        match chosen {
            Hierarchy::V2 if self.v2_root.is_none() => {
                bail!("--cgroup-hierarchy v2 was requested, but no cgroup v2 hierarchy is mounted")
            }
            Hierarchy::V1Cpu if self.v1_cpu_root.is_none() => {
                bail!(
                    "--cgroup-hierarchy v1-cpu was requested, but no cgroup v1 hierarchy with the cpu controller is mounted"
                )
            }
            _ => Ok(chosen),
        }
    }

    /// Root of the identifying hierarchy.
    pub fn identity_root(&self) -> &Path {
        let root = match self.identity {
            Hierarchy::V2 => self.v2_root.as_deref(),
            Hierarchy::V1Cpu => self.v1_cpu_root.as_deref(),
        };
        // choose_identity only picks a hierarchy that is mounted.
        root.unwrap_or_else(|| Path::new("/sys/fs/cgroup"))
    }

    /// Directories whose `cpu.stat` and limit files describe the cgroup at
    /// `relative` in the identifying hierarchy, most specific first.
    ///
    /// NOTE: the v1 `cpu` cgroup of a v2 cgroup is taken to have the same
    /// relative path, as kubelet and systemd lay out every hierarchy. A
    /// host that places a task at different paths in the two hierarchies
    /// gets no v1 counters for it.
    pub fn cpu_dirs(&self, relative: &str) -> Vec<(Hierarchy, PathBuf)> {
        let v2 = self.v2_root.as_deref().map(|root| (Hierarchy::V2, join_relative(root, relative)));
        let v1 = self.v1_cpu_root.as_deref().map(|root| (Hierarchy::V1Cpu, join_relative(root, relative)));
        match self.identity {
            Hierarchy::V2 => v2.into_iter().chain(v1).collect(),
            Hierarchy::V1Cpu => v1.into_iter().collect(),
        }
    }

    /// Parses `/proc/self/mountinfo` text (see proc(5) for its fields) and
    /// identifies tasks by v2 cgroup when v2 is mounted.
    pub fn from_mountinfo(mountinfo: &str) -> anyhow::Result<Self> {
        let mut v2_root = None;
        let mut v1_cpu_root = None;
        let mut v1_blkio_root = None;
        for line in mountinfo.lines() {
            let Some(mount) = MountLine::parse(line) else { continue };
            match mount.fs_type {
                "cgroup2" if v2_root.is_none() => v2_root = Some(PathBuf::from(mount.mount_point)),
                "cgroup" if mount.super_options.split(',').any(|option| option == "cpu") => {
                    v1_cpu_root.get_or_insert_with(|| PathBuf::from(mount.mount_point));
                }
                "cgroup" if mount.super_options.split(',').any(|option| option == "blkio") => {
                    v1_blkio_root.get_or_insert_with(|| PathBuf::from(mount.mount_point));
                }
                _ => {}
            }
        }
        let identity = match (&v2_root, &v1_cpu_root) {
            (Some(_), _) => Hierarchy::V2,
            (None, Some(_)) => Hierarchy::V1Cpu,
            (None, None) => bail!(
                "no cgroup hierarchy to identify tasks by: neither cgroup v2 nor the v1 cpu controller is mounted; \
                 mount one, for example `mount -t cgroup2 none /sys/fs/cgroup`"
            ),
        };
        Ok(Self { v2_root, v1_cpu_root, v1_blkio_root, identity })
    }
}

fn join_relative(root: &Path, relative: &str) -> PathBuf {
    let trimmed = relative.trim_start_matches('/');
    if trimmed.is_empty() { root.to_path_buf() } else { root.join(trimmed) }
}

struct MountLine<'a> {
    mount_point: String,
    fs_type: &'a str,
    super_options: &'a str,
}

impl<'a> MountLine<'a> {
    /// Parses one mountinfo line: fields up to the optional tags, then
    /// `-`, file system type, source and super options.
    fn parse(line: &'a str) -> Option<Self> {
        let (before, after) = line.split_once(" - ")?;
        let mount_point = before.split(' ').nth(4)?;
        let mut after = after.split(' ');
        let fs_type = after.next()?;
        let _source = after.next()?;
        let super_options = after.next().unwrap_or("");
        Some(Self { mount_point: unescape_octal(mount_point), fs_type, super_options })
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'\\'
            && index + 3 < bytes.len()
            && let Ok(value) = u8::from_str_radix(&field[index + 1..index + 4], 8)
        {
            out.push(value);
            index += 4;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
35 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
36 31 0:31 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
37 31 0:32 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,blkio
";

    const PURE_V2: &str = "\
29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    const V1_ONLY: &str = "\
35 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
";

    #[test]
    fn hybrid_layout() {
        let layout = CgroupLayout::from_mountinfo(HYBRID).unwrap();

        assert_eq!(layout.v2_root.as_deref(), Some(Path::new("/sys/fs/cgroup/unified")));
        assert_eq!(layout.v1_cpu_root.as_deref(), Some(Path::new("/sys/fs/cgroup/cpu,cpuacct")));
        assert_eq!(layout.identity, Hierarchy::V2);
        assert_eq!(layout.v1_blkio_root.as_deref(), Some(Path::new("/sys/fs/cgroup/blkio")));
    }

    #[test]
    fn pure_v2_layout() {
        let layout = CgroupLayout::from_mountinfo(PURE_V2).unwrap();

        assert_eq!(layout.v2_root.as_deref(), Some(Path::new("/sys/fs/cgroup")));
        assert_eq!(layout.v1_cpu_root, None);
        assert_eq!(layout.identity_root(), Path::new("/sys/fs/cgroup"));
        assert_eq!(layout.v1_blkio_root, None);
    }

    #[test]
    fn v1_only_layout_identifies_by_cpu() {
        let layout = CgroupLayout::from_mountinfo(V1_ONLY).unwrap();

        assert_eq!(layout.identity, Hierarchy::V1Cpu);
        assert_eq!(layout.identity_root(), Path::new("/sys/fs/cgroup/cpu,cpuacct"));
    }

    #[test]
    fn no_hierarchy_is_an_error() {
        let error = CgroupLayout::from_mountinfo("").unwrap_err();

        assert!(error.to_string().contains("no cgroup hierarchy"));
    }

    #[test]
    fn auto_detects_cgroupfs_driver_on_hybrid() {
        let layout = CgroupLayout::from_mountinfo(HYBRID).unwrap();
        let in_v1 = |path: &Path| path == Path::new("/sys/fs/cgroup/cpu,cpuacct/kubepods");
        let in_both = |path: &Path| path.ends_with("kubepods.slice");

        assert_eq!(layout.choose_identity(HierarchyChoice::Auto, in_v1).unwrap(), Hierarchy::V1Cpu);
        assert_eq!(layout.choose_identity(HierarchyChoice::Auto, in_both).unwrap(), Hierarchy::V2);
        assert_eq!(layout.choose_identity(HierarchyChoice::Auto, |_| false).unwrap(), Hierarchy::V2);
        assert_eq!(layout.choose_identity(HierarchyChoice::V1Cpu, |_| false).unwrap(), Hierarchy::V1Cpu);
    }

    #[test]
    fn forced_hierarchy_must_be_mounted() {
        let layout = CgroupLayout::from_mountinfo(PURE_V2).unwrap();

        let error = layout.choose_identity(HierarchyChoice::V1Cpu, |_| true).unwrap_err();

        assert!(error.to_string().contains("no cgroup v1 hierarchy with the cpu controller"));
    }

    #[test]
    fn cpu_dirs_follow_identity() {
        let mut layout = CgroupLayout::from_mountinfo(HYBRID).unwrap();

        assert_eq!(
            layout.cpu_dirs("/a"),
            vec![
                (Hierarchy::V2, PathBuf::from("/sys/fs/cgroup/unified/a")),
                (Hierarchy::V1Cpu, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/a"))
            ]
        );
        layout.identity = Hierarchy::V1Cpu;
        assert_eq!(layout.cpu_dirs("/"), vec![(Hierarchy::V1Cpu, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))]);
    }

    #[test]
    fn mount_point_escapes() {
        assert_eq!(unescape_octal(r"/mnt/with\040space"), "/mnt/with space");
        assert_eq!(unescape_octal(r"/plain"), "/plain");
        assert_eq!(unescape_octal(r"/trailing\04"), r"/trailing\04");
    }
}
