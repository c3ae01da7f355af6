//! Guards that undo what the benchmark changes or starts, on every exit
//! path: normal return, error, panic, and Ctrl-C (SIGINT) or SIGTERM, which
//! set a flag that the benchmark checks between steps so it returns an
//! error and the guards drop.

use std::{
    fs,
    path::PathBuf,
    process::Child,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs SIGINT and SIGTERM handlers that only set a flag, so the
/// process unwinds through its guards instead of dying with changed
/// sysctls and leftover cgroups.
pub fn install_signal_handlers() -> anyhow::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; `sigaction` is zeroed and then filled in.
        let result = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if result != 0 {
            return Err(std::io::Error::last_os_error()).context("installing a signal handler failed");
        }
    }
    Ok(())
}

/// Returns an error once SIGINT or SIGTERM arrived, so callers stop with
/// `?` and their guards clean up.
pub fn check_interrupted() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted; restoring sysctls and removing what the benchmark started");
    }
    Ok(())
}

/// Sleeps in short steps, stopping early with an error on interruption.
pub fn sleep_interruptible(duration: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + duration;
    loop {
        check_interrupted()?;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// A sysctl set for the benchmark, restored to its previous value on drop.
pub struct Sysctl {
    path: PathBuf,
    name: String,
    previous: String,
}

impl Sysctl {
    /// Sets sysctl `name` (dotted, such as `kernel.bpf_stats_enabled`) to
    /// `value`, remembering the value it had.
    pub fn set(name: &str, value: &str) -> anyhow::Result<Self> {
        Self::set_at(PathBuf::from("/proc/sys").join(name.replace('.', "/")), name, value)
    }

    fn set_at(path: PathBuf, name: &str, value: &str) -> anyhow::Result<Self> {
        let previous = fs::read_to_string(&path)
            .with_context(|| format!("reading sysctl {name} from {} failed", path.display()))?
            .trim()
            .to_owned();
        fs::write(&path, value).with_context(|| format!("setting sysctl {name}={value} failed"))?;
        Ok(Self { path, name: name.to_owned(), previous })
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        match fs::write(&self.path, &self.previous) {
            Ok(()) => eprintln!("bench: restored sysctl {}={}", self.name, self.previous),
            Err(error) => eprintln!(
                "error: restoring sysctl {}={} failed: {error}; set it back by hand",
                self.name, self.previous
            ),
        }
    }
}

/// A child process stopped on drop: SIGTERM (or the given signal), then
/// SIGKILL if it has not exited after a grace period.
pub struct ChildGuard {
    child: Option<Child>,
    name: String,
    stop_signal: libc::c_int,
}

impl ChildGuard {
    pub fn new(child: Child, name: &str, stop_signal: libc::c_int) -> Self {
        Self { child: Some(child), name: name.to_owned(), stop_signal }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Fails when the process has already exited, naming its status.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        let Some(child) = self.child.as_mut() else {
            bail!("{} was already stopped", self.name);
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!("{} exited early ({status}); run it by hand to see why", self.name),
            Err(error) => Err(error).with_context(|| format!("checking whether {} still runs failed", self.name)),
        }
    }

    /// Stops the process and waits for it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        // SAFETY: kill has no memory-safety preconditions; the pid is our
        // own child, not yet reaped, so it cannot have been reused.
        unsafe { libc::kill(child.id() as libc::pid_t, self.stop_signal) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!("warning: {} did not stop within 5 s; killing it", self.name);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_restored_on_drop() {
        let path = std::env::temp_dir().join(format!("chokepoint-bench-sysctl-{}", std::process::id()));
        fs::write(&path, "0\n").unwrap();

        let guard = Sysctl::set_at(path.clone(), "test.value", "1").unwrap();
        let while_set = fs::read_to_string(&path).unwrap();
        drop(guard);
        let after = fs::read_to_string(&path).unwrap();
        fs::remove_file(&path).unwrap();

        assert_eq!(while_set, "1");
        assert_eq!(after, "0");
    }
}
