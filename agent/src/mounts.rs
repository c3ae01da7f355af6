//! Pseudo file systems the probes need, mounted when missing.
//!
//! Raw tracepoints need neither; tracefs is needed to attach to regular
//! tracepoints, whose ids it lists. The agent pins nothing, so it does not
//! need bpffs.

use std::{ffi::CString, fs, path::Path};

use tracing::{info, warn};

const TRACEFS: &str = "/sys/kernel/tracing";

/// Mounts tracefs at /sys/kernel/tracing unless some tracefs is already
/// reachable. Failure is logged, not fatal: only probes on regular
/// tracepoints need it, and they are skipped with their own reason.
pub fn ensure_tracefs() {
    if Path::new(TRACEFS).join("events").is_dir() || Path::new("/sys/kernel/debug/tracing/events").is_dir() {
        return;
    }
    match mount("tracefs", TRACEFS, "tracefs") {
        Ok(()) => info!(path = TRACEFS, "mounted tracefs"),
        Err(error) => warn!(
            path = TRACEFS,
            %error,
            "tracefs is not mounted and mounting it failed; probes on tracepoints will be skipped. \
             Mount it with `mount -t tracefs tracefs {TRACEFS}` (needs CAP_SYS_ADMIN)"
        ),
    }
}

fn mount(source: &str, target: &str, fs_type: &str) -> std::io::Result<()> {
    let _ = fs::create_dir_all(target);
    let to_c = |text: &str| CString::new(text).map_err(std::io::Error::other);
    let (source, target, fs_type) = (to_c(source)?, to_c(target)?, to_c(fs_type)?);
    // SAFETY: every pointer is a valid NUL-terminated string that outlives
    // the call, and data may be null.
    let result = unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fs_type.as_ptr(), 0, std::ptr::null()) };
    if result == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}
