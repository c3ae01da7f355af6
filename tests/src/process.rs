//! Workload processes started inside a test cgroup, killed on drop.

use std::{
    ffi::CString,
    os::unix::{ffi::OsStrExt as _, process::CommandExt as _},
    process::{Child, Command, Stdio},
};

use crate::{binary, cgroups::TestCgroup};

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

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
