//! Block request latency: issue to completion of each request, per device
//! and per owning blkcg.

/// Name of the hash map from `struct request *` (u64) to [`BlockStart`].
pub const BLOCK_STARTED_MAP: &str = "BLOCK_STARTED";

/// Name of the hash map from [`BlockKey`] to
/// [`crate::histogram::LatencyHistogram`] of request latencies. It has one
/// value for all CPUs, updated with atomic adds, because completions are
/// too rare to need a copy per CPU, and on large nodes those copies took
/// megabytes per CPU.
pub const BLOCK_LATENCY_MAP: &str = "BLOCK_LATENCY";

/// A request in flight, recorded at `block_rq_issue`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockStart {
    /// `bpf_ktime_get_ns` at issue.
    pub issued_ns: u64,
    pub key: BlockKey,
}

/// Which histogram a request counts in.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BlockKey {
    /// Id of the cgroup of the request's blkcg (`bio->bi_blkg->blkcg`):
    /// a v2 cgroup id when the io controller is on cgroup v2, a v1 `blkio`
    /// cgroup id when it is bound to v1. Zero when the request carries no
    /// blkcg (for example a flush request without a bio).
    pub blkcg_cgroup_id: u64,
    /// Device number `major << 20 | minor` (the kernel's `dev_t` layout)
    /// of the whole disk.
    pub device: u32,
    /// Explicit padding.
    pub _padding: u32,
}

impl BlockKey {
    /// Major device number.
    pub fn major(&self) -> u32 {
        self.device >> 20
    }

    /// Minor device number.
    pub fn minor(&self) -> u32 {
        self.device & 0xf_ffff
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), u64 and u32 fields with explicit padding to 16 bytes.
unsafe impl aya::Pod for BlockKey {}

#[cfg(feature = "user")]
// SAFETY: repr(C), a u64 followed by a 16-byte BlockKey, no padding.
unsafe impl aya::Pod for BlockStart {}
