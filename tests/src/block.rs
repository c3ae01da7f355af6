//! Block-device fixtures: a loop device backed by a temporary file, and a
//! sysctl set for the length of a test. Each is undone on drop, also when
//! the test fails.

use std::{fs, os::unix::fs::MetadataExt as _, path::PathBuf, process::Command};

/// A loop device over a sparse file in a temporary directory; detached and
/// the file removed on drop.
pub struct LoopDevice {
    /// `/dev/loopN`.
    pub path: PathBuf,
    /// `major:minor`, as cgroup I/O limits and the agent's labels write it.
    pub device: String,
    backing_dir: PathBuf,
}

impl LoopDevice {
    /// Makes a loop device of `size_mib` MiB with `losetup --find --show`.
    pub fn new(size_mib: u64) -> Self {
        let backing_dir = std::env::temp_dir().join(format!("chokepoint-loop-{}-{}", std::process::id(), unique()));
        fs::create_dir_all(&backing_dir).expect("creating the loop device's directory");
        let backing_file = backing_dir.join("disk.img");
        let file = fs::File::create(&backing_file).expect("creating the loop device's backing file");
        file.set_len(size_mib * 1024 * 1024).expect("sizing the backing file");
        drop(file);

        let output = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&backing_file)
            .output()
            .expect("running losetup (package mount)");
        if !output.status.success() {
            let _ = fs::remove_dir_all(&backing_dir);
            panic!("losetup failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        let rdev = fs::metadata(&path).expect("stat of the loop device").rdev();
        let device = format!("{}:{}", libc::major(rdev), libc::minor(rdev));
        Self { path, device, backing_dir }
    }

    /// Returns the kernel's name of the device (`loop3`).
    pub fn name(&self) -> String {
        self.path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let detached = Command::new("losetup").arg("--detach").arg(&self.path).status();
        if !detached.is_ok_and(|status| status.success()) {
            eprintln!("warning: could not detach {}", self.path.display());
        }
        let _ = fs::remove_dir_all(&self.backing_dir);
    }
}

fn unique() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A sysctl set to a value for the life of the guard, then restored.
pub struct Sysctl {
    path: PathBuf,
    previous: String,
}

impl Sysctl {
    /// Sets `name` (dotted, as in `kernel.task_delayacct`) to `value`.
    pub fn set(name: &str, value: &str) -> Self {
        let path = PathBuf::from("/proc/sys").join(name.replace('.', "/"));
        let previous = fs::read_to_string(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
        crate::cgroups::write(&path, value);
        Self { path, previous: previous.trim().to_owned() }
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        if let Err(error) = fs::write(&self.path, &self.previous) {
            eprintln!("warning: could not restore {} to {}: {error}", self.path.display(), self.previous);
        }
    }
}
