//! Types that the probes write and the agent reads.
//!
//! Every type here is `#[repr(C)]`, `Copy` and free of implicit padding, so
//! the byte layout the BPF target compiles is the one the host reads back
//! from the maps. Integers stand in for `bool` for the same reason.
#![no_std]

pub mod block;
pub mod connect;
pub mod dns;
pub mod histogram;
pub mod iowait;
pub mod kernel;
pub mod probe;
pub mod runqueue;
pub mod throttle;
pub mod wait_total;
