//! Cgroup directories held open, so that reading a file in one is an
//! `openat` of a single path component, not a walk of the whole path.
//!
//! Walking `/sys/fs/cgroup/unified/kubepods.slice/.../cpu.stat` component
//! by component was about a sixth of the agent's CPU at a thousand cgroups
//! (`perf record` of the benchmark's userspace phase). An `O_PATH`
//! descriptor costs the kernel a `struct file` and no read buffer. A
//! `cpu.stat` descriptor kept open instead would keep a page-sized
//! `seq_file` buffer (fs/seq_file.c) for as long as it is open.

use std::{
    ffi::CStr,
    fs::File,
    io::{self, Read as _},
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use tracing::{info, warn};

/// How long a missing directory is taken as missing before it is looked
/// up again. On hybrid hosts many v2 cgroups have no v1 `cpu` directory,
/// and a failed lookup of the whole path every tick for each of them was a
/// large part of the agent's CPU. A directory made after the cgroup was
/// first seen is found within this time.
const MISSING_RETRY: Duration = Duration::from_secs(30);

/// A cgroup directory, open when it could be opened.
#[derive(Debug)]
pub struct CgroupDir {
    path: PathBuf,
    fd: Option<OwnedFd>,
    /// When the directory was last found missing.
    missing_since: Option<Instant>,
    missing_retry: Duration,
}

impl CgroupDir {
    /// Opens `path`. A directory that cannot be opened now is opened again
    /// on a later read: at the next one when no descriptor was left, after
    /// [`MISSING_RETRY`] when the directory does not exist.
    pub fn open(path: PathBuf) -> Self {
        Self::open_with_retry(path, MISSING_RETRY)
    }

    fn open_with_retry(path: PathBuf, missing_retry: Duration) -> Self {
        let mut dir = Self { path, fd: None, missing_since: None, missing_retry };
        dir.reopen();
        dir
    }

    fn reopen(&mut self) -> Option<io::Error> {
        match open_path(&self.path) {
            Ok(fd) => {
                self.fd = Some(fd);
                self.missing_since = None;
                None
            }
            Err(error) => {
                if error.kind() == io::ErrorKind::NotFound {
                    self.missing_since = Some(Instant::now());
                }
                Some(error)
            }
        }
    }

    /// Reads the file `name` in the directory. Fails with
    /// [`io::ErrorKind::NotFound`] when the directory or the file does not
    /// exist.
    pub fn read_to_string(&mut self, name: &CStr) -> io::Result<String> {
        if self.fd.is_none() {
            if self.missing_since.is_some_and(|since| since.elapsed() < self.missing_retry) {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("cgroup directory {} not found", self.path.display()),
                ));
            }
            if let Some(error) = self.reopen() {
                if !is_out_of_descriptors(&error) {
                    return Err(error);
                }
                warn_out_of_descriptors_once(&error);
                let file = Path::new(std::ffi::OsStr::from_bytes(name.to_bytes()));
                return std::fs::read_to_string(self.path.join(file));
            }
        }
        let Some(dir) = self.fd.as_ref() else { unreachable!("opened above") };
        // SAFETY: `dir` is an open descriptor and `name` a NUL-terminated
        // string, and openat keeps neither pointer.
        let raw = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: openat returned a new descriptor that nothing else owns.
        let mut file = File::from(unsafe { OwnedFd::from_raw_fd(raw) });
        let mut text = String::with_capacity(512);
        file.read_to_string(&mut text)?;
        Ok(text)
    }
}

fn open_path(path: &Path) -> io::Result<OwnedFd> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("path {} contains a NUL byte", path.display()))
    })?;
    // SAFETY: `c_path` is NUL-terminated and outlives the call.
    let raw = unsafe { libc::open(c_path.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

fn warn_out_of_descriptors_once(error: &io::Error) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        warn!(
            %error,
            "no file descriptor left to keep a cgroup directory open, so cgroup files are read by full path, \
             which costs more CPU. Raise the agent's open files limit (RLIMIT_NOFILE)"
        );
    }
}

/// Raises the soft limit on open files to the hard limit, because the
/// agent keeps one descriptor open per cgroup and hierarchy. Logs the
/// outcome. A failure only makes reads slower (see
/// [`CgroupDir::read_to_string`]).
pub fn raise_open_files_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into `limit`, which outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        warn!(error = %io::Error::last_os_error(), "reading the open files limit (RLIMIT_NOFILE) failed");
        return;
    }
    if limit.rlim_cur >= limit.rlim_max {
        info!(open_files_limit = limit.rlim_cur, "open files limit already at its hard limit");
        return;
    }
    let previous = limit.rlim_cur;
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit reads `limit`, which outlives the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        warn!(
            error = %io::Error::last_os_error(),
            soft_limit = previous,
            hard_limit = limit.rlim_max,
            "raising the open files limit (RLIMIT_NOFILE) failed, so cgroup directories past the limit will be read by full path"
        );
        return;
    }
    info!(from = previous, to = limit.rlim_max, "raised the open files limit (RLIMIT_NOFILE)");
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn reads_files_in_open_dir() {
        let root = std::env::temp_dir().join(format!("chokepoint-open-dir-{}", std::process::id()));
        fs::create_dir_all(&root).unwrap();
        fs::write(root.join("cpu.stat"), "usage_usec 1\n").unwrap();
        let mut dir = CgroupDir::open(root.clone());

        let first = dir.read_to_string(c"cpu.stat").unwrap();
        fs::write(root.join("cpu.stat"), "usage_usec 2\n").unwrap();
        let second = dir.read_to_string(c"cpu.stat").unwrap();
        let missing = dir.read_to_string(c"cpu.max").unwrap_err();
        fs::remove_dir_all(&root).unwrap();
        let removed = dir.read_to_string(c"cpu.stat").unwrap_err();

        assert!(dir.fd.is_some());
        assert_eq!(first, "usage_usec 1\n");
        assert_eq!(second, "usage_usec 2\n");
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert_eq!(removed.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn opens_dir_made_later() {
        let root = std::env::temp_dir().join(format!("chokepoint-open-dir-later-{}", std::process::id()));
        let mut dir = CgroupDir::open_with_retry(root.clone(), Duration::ZERO);

        let before = dir.read_to_string(c"cpu.stat").unwrap_err();
        fs::create_dir_all(&root).unwrap();
        fs::write(root.join("cpu.stat"), "usage_usec 3\n").unwrap();
        let after = dir.read_to_string(c"cpu.stat");
        fs::remove_dir_all(&root).unwrap();

        assert_eq!(before.kind(), io::ErrorKind::NotFound);
        assert_eq!(after.unwrap(), "usage_usec 3\n");
    }

    #[test]
    fn missing_dir_not_looked_up_again_soon() {
        let root = std::env::temp_dir().join(format!("chokepoint-open-dir-missing-{}", std::process::id()));
        let mut dir = CgroupDir::open(root.clone());

        fs::create_dir_all(&root).unwrap();
        fs::write(root.join("cpu.stat"), "usage_usec 4\n").unwrap();
        let soon = dir.read_to_string(c"cpu.stat");
        fs::remove_dir_all(&root).unwrap();

        assert_eq!(soon.unwrap_err().kind(), io::ErrorKind::NotFound);
        assert!(dir.fd.is_none());
    }
}
