//! Chokepoint kernel probes.
//!
//! Each probe family lives in its own module and counts into per-cgroup
//! maps: per-CPU for the scheduler and DNS signals, shared by all CPUs
//! (atomic adds) for the rarer block and connect events. Nothing is sent to
//! userspace per event. The agent reads the maps on a tick.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// For atomic adds (`shared`): Rust's bpf target declares no
// compare-and-swap, so core offers no `AtomicU64::fetch_add` there.
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics), allow(internal_features))]
// Outside the BPF target this crate builds as an empty program, so that
// workspace-wide commands (`cargo check --workspace`) do not fail on it.
#![cfg_attr(not(target_arch = "bpf"), allow(dead_code, unused_imports))]

#[cfg(target_arch = "bpf")]
mod block;
#[cfg(target_arch = "bpf")]
mod connect;
#[cfg(target_arch = "bpf")]
mod dns;
#[cfg(target_arch = "bpf")]
mod iowait;
#[cfg(target_arch = "bpf")]
mod map_entry;
#[cfg(target_arch = "bpf")]
mod runqueue;
#[cfg(target_arch = "bpf")]
mod shared;
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
