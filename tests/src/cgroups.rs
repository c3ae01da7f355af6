//! Cgroups made by a test: one in the v2 hierarchy and, on request, one of
//! the same name in the v1 `cpu` hierarchy (hybrid hosts) for CFS quota.
//! Both are removed on drop, after killing what is left in them.
//!
//! The v1 `cpu` cgroup is opt-in because it changes scheduling: CFS gives
//! every cpu cgroup an equal share by default, so a light group in its own
//! cpu cgroup barely waits behind a busy one. Without it, tasks of all test
//! groups compete one by one, like processes on a node without per-pod cpu
//! cgroups or like a pod whose CPU request (weight) is small.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::Duration,
};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Root of the cgroup v2 hierarchy and of the v1 cpu hierarchy, if any.
pub fn hierarchy_roots() -> (PathBuf, Option<PathBuf>) {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("reading mountinfo");
    let mut v2 = None;
    let mut v1_cpu = None;
    for line in mountinfo.lines() {
        let Some((before, after)) = line.split_once(" - ") else { continue };
        let mount_point = before.split(' ').nth(4).unwrap_or_default();
        let mut after = after.split(' ');
        let fs_type = after.next().unwrap_or_default();
        let options = after.nth(1).unwrap_or_default();
        if fs_type == "cgroup2" && v2.is_none() {
            v2 = Some(PathBuf::from(mount_point));
        }
        if fs_type == "cgroup" && options.split(',').any(|option| option == "cpu") {
            v1_cpu = Some(PathBuf::from(mount_point));
        }
    }
    (v2.expect("no cgroup v2 hierarchy mounted"), v1_cpu)
}

/// Root of the v1 `blkio` hierarchy, on hybrid hosts.
pub fn v1_blkio_root() -> Option<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("reading mountinfo");
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let mount_point = before.split(' ').nth(4)?;
        let mut after = after.split(' ');
        let fs_type = after.next()?;
        let options = after.nth(1)?;
        (fs_type == "cgroup" && options.split(',').any(|option| option == "blkio")).then(|| PathBuf::from(mount_point))
    })
}

pub struct TestCgroup {
    /// Path relative to the v2 root, as the agent labels it.
    pub relative: String,
    pub v2_dir: PathBuf,
    pub v1_cpu_dir: Option<PathBuf>,
    /// The v1 `blkio` cgroup of the same name, on hybrid hosts, when made
    /// with [`TestCgroup::with_blkio_controller`].
    pub v1_blkio_dir: Option<PathBuf>,
}

impl TestCgroup {
    /// Makes `chokepoint-test-<pid>-<n>-<name>` at the top of the v2
    /// hierarchy.
    pub fn new(name: &str) -> Self {
        Self::create(name, false, false)
    }

    /// Like [`TestCgroup::new`], plus a v1 `cpu` cgroup of the same name on
    /// hybrid hosts, so a CFS quota can be set.
    pub fn with_cpu_controller(name: &str) -> Self {
        Self::create(name, true, false)
    }

    /// Like [`TestCgroup::new`], plus a v1 `blkio` cgroup of the same name
    /// on hybrid hosts, so block I/O limits can be set.
    pub fn with_blkio_controller(name: &str) -> Self {
        Self::create(name, false, true)
    }

    /// Like [`TestCgroup::new`], plus v1 `cpu` and `blkio` cgroups of the
    /// same name on hybrid hosts.
    pub fn with_cpu_and_blkio_controllers(name: &str) -> Self {
        Self::create(name, true, true)
    }

    fn create(name: &str, cpu_controller: bool, blkio_controller: bool) -> Self {
        let (v2_root, v1_cpu_root) = hierarchy_roots();
        let unique = format!("chokepoint-test-{}-{}-{name}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let v2_dir = v2_root.join(&unique);
        fs::create_dir(&v2_dir).unwrap_or_else(|error| panic!("creating {}: {error}", v2_dir.display()));
        let v1_cpu_dir = v1_cpu_root.filter(|_| cpu_controller).map(|root| root.join(&unique));
        if let Some(dir) = &v1_cpu_dir {
            fs::create_dir(dir).unwrap_or_else(|error| panic!("creating {}: {error}", dir.display()));
        }
        let v1_blkio_dir = v1_blkio_root().filter(|_| blkio_controller).map(|root| root.join(&unique));
        if let Some(dir) = &v1_blkio_dir {
            fs::create_dir(dir).unwrap_or_else(|error| panic!("creating {}: {error}", dir.display()));
        }
        Self { relative: format!("/{unique}"), v2_dir, v1_cpu_dir, v1_blkio_dir }
    }

    /// Sets a CFS quota of `quota_us` per `period_us`, in the v1 `cpu`
    /// hierarchy on hybrid hosts or with `cpu.max` on pure v2 hosts (where
    /// the parent must have the cpu controller enabled).
    pub fn set_cpu_quota(&self, quota_us: u64, period_us: u64) {
        if let Some(dir) = &self.v1_cpu_dir {
            write(&dir.join("cpu.cfs_period_us"), &period_us.to_string());
            write(&dir.join("cpu.cfs_quota_us"), &quota_us.to_string());
        } else {
            write(&self.v2_dir.join("cpu.max"), &format!("{quota_us} {period_us}"));
        }
    }

    /// Limits writes to the block device `major:minor` to `bytes_per_second`,
    /// with v1 `blkio.throttle.write_bps_device` on hybrid hosts or
    /// `io.max` on pure v2 hosts (where the parent must have the io
    /// controller enabled).
    pub fn set_write_bps(&self, device: &str, bytes_per_second: u64) {
        if let Some(dir) = &self.v1_blkio_dir {
            write(&dir.join("blkio.throttle.write_bps_device"), &format!("{device} {bytes_per_second}"));
        } else {
            write(&self.v2_dir.join("io.max"), &format!("{device} wbps={bytes_per_second}"));
        }
    }

    /// Marks the group idle (`cpu.idle`): it gets the least CPU weight, and
    /// its tasks, once woken, wait for the running task of another group
    /// instead of preempting it. On pure v2 hosts the parent must have the
    /// cpu controller enabled.
    pub fn set_cpu_idle(&self) {
        write(&self.cpu_controller_dir().join("cpu.idle"), "1");
    }

    /// Directory holding `cpu.stat` with CFS counters for this cgroup.
    pub fn cpu_controller_dir(&self) -> &Path {
        self.v1_cpu_dir.as_deref().unwrap_or(&self.v2_dir)
    }

    /// The `cgroup.procs` files a new process must be written to.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.v2_dir.join("cgroup.procs")];
        if let Some(dir) = &self.v1_cpu_dir {
            files.push(dir.join("cgroup.procs"));
        }
        if let Some(dir) = &self.v1_blkio_dir {
            files.push(dir.join("cgroup.procs"));
        }
        files
    }

    fn kill_members(dir: &Path) {
        for _ in 0..50 {
            let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            let pids: Vec<i32> = procs.lines().filter_map(|line| line.trim().parse().ok()).collect();
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn remove(dir: &Path) {
        Self::kill_members(dir);
        for _ in 0..50 {
            if fs::remove_dir(dir).is_ok() || !dir.exists() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!("warning: could not remove test cgroup {}", dir.display());
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        Self::remove(&self.v2_dir);
        if let Some(dir) = &self.v1_cpu_dir {
            Self::remove(dir);
        }
        if let Some(dir) = &self.v1_blkio_dir {
            Self::remove(dir);
        }
    }
}

pub fn write(path: &Path, value: &str) {
    fs::write(path, value).unwrap_or_else(|error| panic!("writing {value:?} to {}: {error}", path.display()));
}
