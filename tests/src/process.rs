//! Workload processes started inside a test cgroup, killed on drop.

use std::{
    ffi::CString,
    fs,
    os::unix::{ffi::OsStrExt as _, process::CommandExt as _},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::{binary, cgroups::TestCgroup};

/// Number of spinning threads that keeps every run queue full: twice the
/// CPUs.
pub fn saturating_thread_count() -> usize {
    thread::available_parallelism().map_or(2, |count| count.get()) * 2
}

/// How long [`Workload::stopped`] waits for every thread to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Workload {
    child: Child,
}

impl Workload {
    /// Starts `workload ARGS...` inside `cgroup` (both hierarchies).
    pub fn start(cgroup: &TestCgroup, args: &[&str]) -> Self {
        let mut command = Command::new(binary("workload"));
        command.args(args);
        Self::spawn_in(cgroup, command)
    }

    /// Starts any command inside `cgroup`: the child moves itself into the
    /// cgroup before exec, so nothing it does runs outside.
    pub fn spawn_in(cgroup: &TestCgroup, command: Command) -> Self {
        Self::spawn_into(&cgroup.procs_files(), command)
    }

    /// Starts a command that first writes its pid to each `cgroup.procs`
    /// file in `procs_files`.
    pub fn spawn_into(procs_files: &[std::path::PathBuf], mut command: Command) -> Self {
        let procs: Vec<CString> = procs_files
            .iter()
            .map(|path| CString::new(path.as_os_str().as_bytes()).expect("path without NUL"))
            .collect();
        command.stdin(Stdio::null()).stdout(Stdio::null());
        // SAFETY: the closure runs between fork and exec and calls only
        // async-signal-safe functions (open, write, close, getpid) on
        // buffers prepared before the fork.
        unsafe {
            command.pre_exec(move || {
                let mut digits = [0u8; 16];
                let pid = libc::getpid();
                let text = format_pid(pid, &mut digits);
                for path in &procs {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let written = libc::write(fd, text.as_ptr().cast(), text.len());
                    libc::close(fd);
                    if written < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("starting a workload");
        Self { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the process until the returned guard is dropped (see
    /// [`Stopped::process`]).
    pub fn stopped(&self) -> Stopped {
        Stopped::process(self.pid())
    }

    /// Waits for the process to exit, for commands that end by themselves.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("waiting for a workload")
    }
}

/// Formats a pid into `buffer` without allocating (safe after fork).
fn format_pid(pid: i32, buffer: &mut [u8; 16]) -> &[u8] {
    let mut value = pid.unsigned_abs();
    let mut start = buffer.len();
    loop {
        start -= 1;
        buffer[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    &buffer[start..]
}

/// A process stopped with SIGSTOP, continued (SIGCONT) on drop.
pub struct Stopped {
    pid: u32,
}

impl Stopped {
    /// Stops the process `pid` and returns once every thread is stopped.
    ///
    /// A stopped process starts no new wait, and the waits it had in
    /// progress end once it is switched out. Readings of the agent and of
    /// the kernel taken while it is stopped therefore cover the same span,
    /// however long the two reads take apart. A thread that waited for I/O
    /// or for a CPU when the signal came stops only after it ran again,
    /// which can take long at a low priority.
    pub fn process(pid: u32) -> Self {
        let stopped = Self { pid };
        stopped.signal(libc::SIGSTOP);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while !stopped.all_threads_stopped() {
            assert!(Instant::now() < deadline, "process {pid} did not stop within {STOP_TIMEOUT:?}");
            thread::sleep(Duration::from_millis(5));
        }
        stopped
    }

    /// Tells whether every thread is in the stopped state (`T` in
    /// `/proc/PID/task/TID/stat`).
    fn all_threads_stopped(&self) -> bool {
        let Ok(tasks) = fs::read_dir(format!("/proc/{}/task", self.pid)) else { return false };
        tasks.flatten().all(|task| {
            fs::read_to_string(task.path().join("stat"))
                .ok()
                .and_then(|stat| Some(stat.rsplit_once(')')?.1.split_whitespace().next()? == "T"))
                .unwrap_or(false)
        })
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory-safety preconditions. The pid belongs
        // to a process of the test, which outlives this guard.
        unsafe { libc::kill(self.pid as i32, signal) };
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
