//! Where the cgroup hierarchies are mounted, found at run time.
//!
//! Pure cgroup v2 nodes mount the unified hierarchy at `/sys/fs/cgroup`;
//! hybrid nodes mount it at `/sys/fs/cgroup/unified` and the v1 controllers
//! beside it. Nothing is assumed: the agent reads `/proc/self/mountinfo`.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

/// Mount points of the cgroup hierarchies the agent reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupLayout {
    /// The cgroup v2 (unified) mount. Cgroup ids from the probes are inode
    /// numbers of directories below it.
    pub v2_root: PathBuf,
    /// The cgroup v1 `cpu` controller mount, on hybrid and v1 hosts. CFS
    /// quota and throttling live there when the controller is bound to v1.
    pub v1_cpu_root: Option<PathBuf>,
    /// The cgroup v1 `blkio` controller mount, on hybrid and v1 hosts.
    /// There, the blkcg of a block request is a v1 `blkio` cgroup.
    pub v1_blkio_root: Option<PathBuf>,
}

impl CgroupLayout {
    /// Finds the hierarchies from the current process's mount table.
    pub fn discover() -> anyhow::Result<Self> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .context("reading /proc/self/mountinfo to find the cgroup mounts")?;
        Self::from_mountinfo(&mountinfo)
    }

    /// Parses `/proc/self/mountinfo` text (see proc(5) for its fields).
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
        let Some(v2_root) = v2_root else {
            bail!(
                "no cgroup v2 (unified) hierarchy is mounted; the probes identify cgroups by their v2 id, \
                 so mount one, for example `mount -t cgroup2 none /sys/fs/cgroup/unified`"
            );
        };
        Ok(Self {
            v2_root,
            v1_cpu_root,
            v1_blkio_root,
        })
    }

    /// Path of a v2 cgroup directory from its path relative to the root
    /// (as in `/proc/PID/cgroup`, starting with `/`).
    pub fn v2_dir(&self, relative: &str) -> PathBuf {
        join_relative(&self.v2_root, relative)
    }

    /// Path of a v1 `cpu` cgroup directory from its relative path.
    ///
    /// On hybrid hosts the agent assumes that a cgroup has the same
    /// relative path in every hierarchy, as kubelet and systemd lay them
    /// out. A v1 cgroup at another path is not found.
    pub fn v1_cpu_dir(&self, relative: &str) -> Option<PathBuf> {
        self.v1_cpu_root.as_deref().map(|root| join_relative(root, relative))
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
        Some(Self {
            mount_point: unescape_octal(mount_point),
            fs_type,
            super_options,
        })
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

    #[test]
    fn hybrid_layout() {
        let layout = CgroupLayout::from_mountinfo(HYBRID).unwrap();

        assert_eq!(layout.v2_root, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(layout.v1_cpu_root.as_deref(), Some(Path::new("/sys/fs/cgroup/cpu,cpuacct")));
        assert_eq!(layout.v1_blkio_root.as_deref(), Some(Path::new("/sys/fs/cgroup/blkio")));
    }

    #[test]
    fn pure_v2_layout() {
        let layout = CgroupLayout::from_mountinfo(PURE_V2).unwrap();

        assert_eq!(layout.v2_root, Path::new("/sys/fs/cgroup"));
        assert_eq!(layout.v1_cpu_root, None);
        assert_eq!(layout.v1_blkio_root, None);
    }

    #[test]
    fn missing_v2_is_an_error() {
        let error = CgroupLayout::from_mountinfo("").unwrap_err();

        assert!(error.to_string().contains("no cgroup v2"));
    }

    #[test]
    fn relative_paths_join_below_root() {
        let layout = CgroupLayout::from_mountinfo(PURE_V2).unwrap();

        assert_eq!(layout.v2_dir("/"), Path::new("/sys/fs/cgroup"));
        assert_eq!(layout.v2_dir("/a/b.slice"), Path::new("/sys/fs/cgroup/a/b.slice"));
    }

    #[test]
    fn mount_point_escapes() {
        assert_eq!(unescape_octal(r"/mnt/with\040space"), "/mnt/with space");
        assert_eq!(unescape_octal(r"/plain"), "/plain");
        assert_eq!(unescape_octal(r"/trailing\04"), r"/trailing\04");
    }
}
