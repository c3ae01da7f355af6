//! Many live cgroups for the userspace measurements: a parent made by the
//! benchmark in the cgroup v2 hierarchy, children under it, and one
//! periodically waking worker process in each child. Everything is
//! removed on drop, and nothing outside the parent is touched.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

use anyhow::{Context as _, bail};

use super::guard::check_interrupted;

/// Root of the cgroup v2 hierarchy, from `/proc/self/mountinfo`.
pub fn cgroup2_root() -> anyhow::Result<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo failed")?;
    find_cgroup2_mount(&mountinfo)
        .context("no cgroup v2 hierarchy is mounted (no cgroup2 entry in /proc/self/mountinfo)")
}

fn find_cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let mount_point = before.split(' ').nth(4)?;
        (after.split(' ').next()? == "cgroup2").then(|| PathBuf::from(mount_point))
    })
}

/// A parent cgroup, its children and one worker process per child.
pub struct CgroupTree {
    parent: PathBuf,
    children: Vec<PathBuf>,
    workers: Vec<Child>,
}

impl CgroupTree {
    /// Makes `ROOT/chokepoint-bench-PID` with `count` children, each holding
    /// one process started from the command that `worker` builds.
    pub fn create(root: &Path, count: usize, worker: &mut dyn FnMut() -> Command) -> anyhow::Result<Self> {
        let parent = root.join(format!("chokepoint-bench-{}", std::process::id()));
        fs::create_dir(&parent).with_context(|| format!("creating cgroup {} failed", parent.display()))?;
        let mut tree = Self { parent, children: Vec::with_capacity(count), workers: Vec::with_capacity(count) };
        for index in 0..count {
            check_interrupted()?;
            let child_dir = tree.parent.join(format!("worker-{index:04}"));
            fs::create_dir(&child_dir).with_context(|| format!("creating cgroup {} failed", child_dir.display()))?;
            tree.children.push(child_dir.clone());

            let process = worker()
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .context("starting a bench worker process failed")?;
            let pid = process.id();
            tree.workers.push(process);
            // The worker starts in the benchmark's own cgroup and moves
            // here right away; where it spends its first instant does not
            // matter.
            let procs = child_dir.join("cgroup.procs");
            fs::write(&procs, pid.to_string())
                .with_context(|| format!("moving worker {pid} into {} failed", procs.display()))?;
        }
        Ok(tree)
    }

    /// Absolute path of the parent cgroup's directory.
    pub fn parent_dir(&self) -> &Path {
        &self.parent
    }

    fn remove(&mut self) {
        for worker in &mut self.workers {
            let _ = worker.kill();
        }
        for worker in &mut self.workers {
            let _ = worker.wait();
        }
        self.workers.clear();
        for dir in self.children.drain(..).rev().chain(std::iter::once(self.parent.clone())) {
            if let Err(error) = remove_cgroup(&dir) {
                eprintln!("warning: {error:#}");
            }
        }
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Removes an empty cgroup, retrying while the kernel finishes releasing
/// the processes that just exited.
fn remove_cgroup(dir: &Path) -> anyhow::Result<()> {
    for _ in 0..100 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
    bail!("removing cgroup {} failed; remove it by hand once it is empty", dir.display())
}

/// Body of the `bench-worker` process: wakes every `period` so its cgroup
/// has run-queue events, and dies with its parent.
pub fn run_worker(period: Duration) -> ! {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and has no
    // memory-safety preconditions.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    loop {
        thread::sleep(period);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup2_mount_in_hybrid_layout() {
        let mountinfo = "\
25 30 0:23 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate
27 25 0:25 / /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu,cpuacct
";

        assert_eq!(find_cgroup2_mount(mountinfo), Some(PathBuf::from("/sys/fs/cgroup/unified")));
    }

    #[test]
    fn cgroup2_mount_missing() {
        let mountinfo = "27 25 0:25 / /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n";

        assert_eq!(find_cgroup2_mount(mountinfo), None);
    }
}
