//! Block request latency: from `block_rq_issue` (the driver takes the
//! request) to `block_rq_complete`, per whole-disk device and per blkcg
//! that owns the request's first bio.
//!
//! The blkcg is used rather than the task that issues the request, because
//! cgroup writeback sets it to the cgroup that dirtied the pages. Buffered
//! writes flushed by a kernel worker then count for the writer, where the
//! kernel tracks that (cgroup v2 with the io and memory controllers).

use agent_common::{
    block::{BlockKey, BlockStart},
    histogram::LatencyHistogram,
    probe::ProbeId,
};
use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::{map, raw_tracepoint},
    maps::HashMap,
    programs::RawTracePointContext,
};

use crate::{
    map_entry, shared,
    stats::{Loss, count_event, count_loss},
    task::{offsets, read_kernel},
};

/// Default sizes; the agent overrides both from its configuration.
const MAX_REQUESTS: u32 = 16_384;
const MAX_KEYS: u32 = 4_096;

#[map]
static BLOCK_STARTED: HashMap<u64, BlockStart> = HashMap::with_max_entries(MAX_REQUESTS, 0);

#[map]
static BLOCK_LATENCY: HashMap<BlockKey, LatencyHistogram> = HashMap::with_max_entries(MAX_KEYS, 0);

/// `block_rq_issue(struct request *rq)`.
#[raw_tracepoint(tracepoint = "block_rq_issue")]
pub fn block_rq_issue(ctx: RawTracePointContext) -> i32 {
    const PROBE: ProbeId = ProbeId::BlockRqIssue;
    count_event(PROBE);
    let request = ctx.arg::<*const u8>(0);
    let Ok(key) = request_key(request) else {
        count_loss(PROBE, Loss::ReadError);
        return 0;
    };
    let start = BlockStart {
        // SAFETY: a helper call without arguments or side effects.
        issued_ns: unsafe { bpf_ktime_get_ns() },
        key,
    };
    if BLOCK_STARTED.insert(request as u64, start, 0).is_err() {
        count_loss(PROBE, Loss::MapFull);
    }
    0
}

/// `block_rq_complete(struct request *rq, blk_status_t error,
/// unsigned int nr_bytes)`. A request completed in parts fires it once per
/// part; the first one ends the request here.
#[raw_tracepoint(tracepoint = "block_rq_complete")]
pub fn block_rq_complete(ctx: RawTracePointContext) -> i32 {
    const PROBE: ProbeId = ProbeId::BlockRqComplete;
    count_event(PROBE);
    let request = ctx.arg::<*const u8>(0) as u64;
    // SAFETY: the value is copied out before the entry is removed.
    let Some(start) = (unsafe { BLOCK_STARTED.get(request) }).copied() else {
        return 0; // issued before the probe was attached
    };
    let _ = BLOCK_STARTED.remove(request);
    // SAFETY: as above.
    let latency = unsafe { bpf_ktime_get_ns() }.saturating_sub(start.issued_ns);
    record_latency(PROBE, &start.key, latency);
    0
}

/// Reads the device and owning blkcg of a request.
#[inline(always)]
fn request_key(request: *const u8) -> Result<BlockKey, i32> {
    let offsets = offsets();
    let queue: *const u8 = read_kernel(request, offsets.request_q)?;
    let disk: *const u8 = read_kernel(queue, offsets.request_queue_disk)?;
    let mut device = 0;
    if !disk.is_null() {
        let major: u32 = read_kernel(disk, offsets.gendisk_major)?;
        let minor: u32 = read_kernel(disk, offsets.gendisk_first_minor)?;
        device = (major << 20) | (minor & 0xf_ffff);
    }
    Ok(BlockKey { blkcg_cgroup_id: blkcg_cgroup_id(request).unwrap_or(0), device, _padding: 0 })
}

/// `rq->bio->bi_blkg->blkcg->css.cgroup->kn->id`; an error where any link
/// is missing (no bio, or a bio without blkcg).
#[inline(always)]
fn blkcg_cgroup_id(request: *const u8) -> Result<u64, i32> {
    let offsets = offsets();
    let bio: *const u8 = read_kernel(request, offsets.request_bio)?;
    let blkg: *const u8 = read_kernel(non_null(bio)?, offsets.bio_bi_blkg)?;
    let blkcg: *const u8 = read_kernel(non_null(blkg)?, offsets.blkcg_gq_blkcg)?;
    let cgroup: *const u8 = read_kernel(non_null(blkcg)?, offsets.blkcg_css_cgroup)?;
    let kernfs_node: *const u8 = read_kernel(non_null(cgroup)?, offsets.cgroup_kn)?;
    read_kernel(non_null(kernfs_node)?, offsets.kernfs_node_id)
}

#[inline(always)]
fn non_null(pointer: *const u8) -> Result<*const u8, i32> {
    if pointer.is_null() { Err(-1) } else { Ok(pointer) }
}

#[inline(always)]
fn record_latency(probe: ProbeId, key: &BlockKey, latency_ns: u64) {
    let Some(histogram) = map_entry::entry(&BLOCK_LATENCY, key, &LatencyHistogram::ZERO, probe) else {
        return;
    };
    // SAFETY: a map value, valid while the program runs, which every CPU
    // writes with atomic adds only.
    unsafe { shared::record(histogram, latency_ns) };
}
