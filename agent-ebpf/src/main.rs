//! Chokepoint kernel probes.
//!
//! Each probe family lives in its own module and counts into per-CPU,
//! per-cgroup maps; nothing is sent to userspace per event. The agent reads
//! the maps on a tick.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Outside the BPF target this crate builds as an empty program, so that
// workspace-wide commands (`cargo check --workspace`) do not fail on it.
#![cfg_attr(not(target_arch = "bpf"), allow(dead_code, unused_imports))]

#[cfg(target_arch = "bpf")]
mod block;
#[cfg(target_arch = "bpf")]
mod iowait;
#[cfg(target_arch = "bpf")]
mod connect;
#[cfg(target_arch = "bpf")]
mod dns;
#[cfg(target_arch = "bpf")]
mod per_cpu;
#[cfg(target_arch = "bpf")]
mod runqueue;
#[cfg(target_arch = "bpf")]
mod stats;
#[cfg(target_arch = "bpf")]
mod task;
#[cfg(target_arch = "bpf")]
mod threads;
#[cfg(target_arch = "bpf")]
mod throttle;
#[cfg(target_arch = "bpf")]
mod totals;

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach this, so it is
    // never executed; it exists because no_std binaries need one.
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
