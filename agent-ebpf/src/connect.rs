//! TCP connect latency and outcome, from the `inet_sock_set_state` raw
//! tracepoint (`const struct sock *sk, int oldstate, int newstate`).
//!
//! CLOSE to SYN_SENT happens inside `connect()`, in the caller's process
//! context, so the current cgroup there is the caller's. It is stored with
//! the start time, keyed by the socket. The handshake ends later, usually
//! in softirq where the current task is unrelated: SYN_SENT to ESTABLISHED
//! is a success, SYN_SENT to CLOSE a failure whose cause is `sk_err`.

use agent_common::{
    connect::{ConnectCounters, ConnectKey, ConnectPending, FAMILY_IPV4, FAMILY_IPV6},
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
    task::{Kernel, current_cgroup_id, offsets},
};

const PROBE: ProbeId = ProbeId::InetSockSetState;

/// Default sizes; the agent overrides both from its configuration.
const MAX_PENDING_CONNECTS: u32 = 16_384;
const MAX_DESTINATIONS: u32 = 4_096;

// TCP states from include/net/tcp_states.h.
const TCP_ESTABLISHED: u64 = 1;
const TCP_SYN_SENT: u64 = 2;
const TCP_CLOSE: u64 = 7;

const IPPROTO_TCP: u16 = 6;
const ETIMEDOUT: i32 = 110;
const ECONNREFUSED: i32 = 111;

/// Initial value of a destination's counters, inserted from this global
/// to keep the 384-byte struct off the 512-byte BPF stack.
static ZERO_COUNTERS: ConnectCounters = ConnectCounters::ZERO;

#[map]
static CONNECT_PENDING: HashMap<u64, ConnectPending> = HashMap::with_max_entries(MAX_PENDING_CONNECTS, 0);

#[map]
static CONNECT_COUNTERS: HashMap<ConnectKey, ConnectCounters> = HashMap::with_max_entries(MAX_DESTINATIONS, 0);

#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: RawTracePointContext) -> i32 {
    count_event(PROBE);
    let sock = Kernel(ctx.arg::<*const u8>(0));
    let old_state = ctx.arg::<u64>(1) & 0xffff_ffff;
    let new_state = ctx.arg::<u64>(2) & 0xffff_ffff;
    let result = if old_state == TCP_CLOSE && new_state == TCP_SYN_SENT {
        start_connect(sock)
    } else if old_state == TCP_SYN_SENT {
        end_connect(sock, new_state)
    } else {
        Ok(())
    };
    if result.is_err() {
        count_loss(PROBE, Loss::ReadError);
    }
    0
}

#[inline(always)]
fn start_connect(sock: Kernel) -> Result<(), i32> {
    let offsets = offsets();
    // MPTCP and others reuse this tracepoint for their own sockets.
    if offsets.sock_protocol != 0 && sock.read::<u16>(offsets.sock_protocol)? != IPPROTO_TCP {
        return Ok(());
    }
    let mut key = ConnectKey {
        // In connect() the current task is the caller.
        cgroup: current_cgroup_id()?,
        address: [0; 16],
        port: u16::from_be(sock.read::<u16>(offsets.sock_dport)?),
        family: FAMILY_IPV4,
        _padding: 0,
    };
    match sock.read::<u16>(offsets.sock_family)? {
        FAMILY_IPV4 => {
            let address: [u8; 4] = sock.read(offsets.sock_daddr)?;
            key.address[..4].copy_from_slice(&address);
        }
        FAMILY_IPV6 => {
            let address: [u8; 16] = sock.read(offsets.sock_v6_daddr)?;
            if is_v4_mapped(&address) {
                key.address[..4].copy_from_slice(&address[12..]);
            } else {
                key.address = address;
                key.family = FAMILY_IPV6;
            }
        }
        _ => return Ok(()),
    }
    let pending = ConnectPending {
        // SAFETY: a helper call without arguments or side effects.
        started_ns: unsafe { bpf_ktime_get_ns() },
        key,
    };
    // The socket pointer is the key: a socket can connect again after a
    // failed attempt, and then replaces its own entry.
    if CONNECT_PENDING.insert(sock.0 as u64, pending, 0).is_err() {
        count_loss(PROBE, Loss::MapFull);
    }
    Ok(())
}

/// `::ffff:a.b.c.d`.
#[inline(always)]
fn is_v4_mapped(address: &[u8; 16]) -> bool {
    address[..10].iter().all(|&byte| byte == 0) && address[10] == 0xff && address[11] == 0xff
}

#[inline(always)]
fn end_connect(sock: Kernel, new_state: u64) -> Result<(), i32> {
    let id = sock.0 as u64;
    // SAFETY: the value is copied out before the entry is removed.
    let Some(pending) = (unsafe { CONNECT_PENDING.get(id) }).copied() else {
        return Ok(()); // started before the probe was attached, or not TCP
    };
    if new_state != TCP_ESTABLISHED && new_state != TCP_CLOSE {
        // Simultaneous open (SYN_SENT to SYN_RECV) ends later; the entry
        // stays and the agent's sweep removes it if it never does.
        return Ok(());
    }
    let _ = CONNECT_PENDING.remove(id);
    // SAFETY: a helper call without arguments or side effects.
    let elapsed = unsafe { bpf_ktime_get_ns() }.saturating_sub(pending.started_ns);
    let error = if new_state == TCP_CLOSE { sock.read::<i32>(offsets().sock_err)? } else { 0 };
    let Some(counters) = map_entry::entry(&CONNECT_COUNTERS, &pending.key, &ZERO_COUNTERS, PROBE) else {
        return Ok(());
    };
    // SAFETY: a map value, valid while the program runs, which every CPU
    // writes with atomic adds only.
    unsafe {
        if new_state == TCP_ESTABLISHED {
            shared::add(&raw mut (*counters).established, 1);
            shared::record(&raw mut (*counters).latency, elapsed);
            return Ok(());
        }
        shared::add(&raw mut (*counters).failed_ns, elapsed);
        // The kernel sets sk_err before it moves a failed connect to CLOSE
        // (tcp_reset and tcp_write_err); a caller's close leaves it 0.
        let outcome = match error {
            0 => &raw mut (*counters).abandoned,
            ECONNREFUSED => &raw mut (*counters).refused,
            ETIMEDOUT => &raw mut (*counters).timed_out,
            _ => &raw mut (*counters).other_error,
        };
        shared::add(outcome, 1);
    }
    Ok(())
}
