//! DNS at the packet level: cgroup_skb programs on the cgroup v2 root see
//! every query a socket sends and every response it receives, whatever
//! resolver library or runtime made them.
//!
//! A query is a packet leaving a socket towards a configured DNS port with
//! the QR bit clear. A response is a packet arriving from such a port with
//! QR set. They are matched by socket cookie and transaction id. Server
//! sockets are left out by that direction rule: a server receives queries
//! on ingress and sends responses on egress, which neither program counts.
//!
//! Both programs return 1 (pass) on every path: the agent never drops
//! traffic.

use agent_common::{
    dns::{DnsConfig, DnsCounters, DnsPendingQuery, DnsQueryKey, MAX_DNS_PORTS, qtype_slot},
    probe::ProbeId,
};
use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::{bpf_get_socket_cookie, bpf_ktime_get_ns, bpf_skb_cgroup_id},
    macros::{cgroup_skb, map},
    maps::{HashMap, PerCpuHashMap},
    programs::SkBuffContext,
};

use crate::{
    map_entry,
    stats::{Loss, count_event, count_loss},
};

/// Default sizes; the agent overrides both from its configuration.
const MAX_PENDING_QUERIES: u32 = 16_384;
const MAX_CGROUPS: u32 = 4_096;

/// Longest QNAME in bytes (RFC 1035 section 3.1), so at most 127 labels
/// of one byte each plus the root label.
const MAX_NAME_BYTES: usize = 255;
const MAX_LABELS: usize = 128;

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const UDP_HEADER_BYTES: usize = 8;
const DNS_HEADER_BYTES: usize = 12;
const EEXIST: i64 = 17;

/// Written by the agent before load (`--dns-ports`); the initializer is
/// the default, port 53.
#[unsafe(no_mangle)]
static DNS_CONFIG: DnsConfig = DnsConfig { ports: [53, 0, 0, 0, 0, 0, 0, 0], port_count: 1, _padding: 0 };

/// Initial value of a cgroup's counters. Inserted from this global rather
/// than from the stack, because the struct is larger than the 512-byte BPF
/// stack.
static ZERO_COUNTERS: DnsCounters = DnsCounters::ZERO;

#[map]
static DNS_PENDING: HashMap<DnsQueryKey, DnsPendingQuery> = HashMap::with_max_entries(MAX_PENDING_QUERIES, 0);

/// Not preallocated: a preallocated per-CPU map reserves max_entries times
/// 584 bytes on every CPU, while most cgroups never make a DNS query.
/// cgroup_skb programs may use such maps on every kernel that has them.
#[map]
static DNS_COUNTERS: PerCpuHashMap<u64, DnsCounters> = PerCpuHashMap::with_max_entries(MAX_CGROUPS, BPF_F_NO_PREALLOC);

#[cgroup_skb(egress)]
pub fn dns_egress(ctx: SkBuffContext) -> i32 {
    count_event(ProbeId::DnsEgress);
    on_packet(&ctx, Direction::Egress);
    1
}

#[cgroup_skb(ingress)]
pub fn dns_ingress(ctx: SkBuffContext) -> i32 {
    count_event(ProbeId::DnsIngress);
    on_packet(&ctx, Direction::Ingress);
    1
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Egress,
    Ingress,
}

impl Direction {
    fn probe(self) -> ProbeId {
        match self {
            Direction::Egress => ProbeId::DnsEgress,
            Direction::Ingress => ProbeId::DnsIngress,
        }
    }
}

/// Offset of a DNS message in the packet, and its transport.
struct Message {
    offset: usize,
    tcp: bool,
}

/// Reason a packet was not counted as a query or response.
enum Skip {
    /// Not DNS traffic of interest: another port, no payload, a server's
    /// side of the exchange.
    Ignored,
    /// On a DNS port but not parseable as DNS.
    Malformed,
}

#[inline(always)]
fn on_packet(ctx: &SkBuffContext, direction: Direction) {
    let result = match locate_message(ctx, direction) {
        Ok(message) => handle_message(ctx, direction, &message),
        Err(skip) => Err(skip),
    };
    if let Err(Skip::Malformed) = result {
        // SAFETY: the helper only reads the skb's socket.
        let cgroup = unsafe { bpf_skb_cgroup_id(ctx.skb.skb) };
        with_counters(direction.probe(), cgroup, |counters| counters.malformed += 1);
    }
}

/// Reads a `T` at `offset` bytes into the packet: straight from the packet
/// when those bytes are in its linear part, which contains the headers of
/// almost every packet, else with a helper call. The direct read keeps
/// the cost of the many packets that are not DNS low.
///
/// A `T` of one byte always takes the helper: LLVM turns that bound check
/// into `at < end`, from which the verifier does not derive that a byte
/// can be read.
#[inline(always)]
fn read_packet<T: Copy>(ctx: &SkBuffContext, offset: usize) -> Result<T, i64> {
    let size = core::mem::size_of::<T>();
    // SAFETY: data and data_end are fields of the program's context.
    let (start, end) = unsafe { ((*ctx.skb.skb).data as usize, (*ctx.skb.skb).data_end as usize) };
    let at = start + offset;
    if size > 1 && at + size <= end {
        // SAFETY: the bytes are within the packet, as checked above (the
        // verifier checks it too); packet data has no alignment.
        return Ok(unsafe { core::ptr::read_unaligned(at as *const T) });
    }
    ctx.skb.load(offset)
}

/// Parses the IP and transport headers. The packet starts at the network
/// header in cgroup_skb programs.
#[inline(always)]
fn locate_message(ctx: &SkBuffContext, direction: Direction) -> Result<Message, Skip> {
    // One read covers what is needed of both IP headers, which are at
    // least 20 (IPv4) and 40 (IPv6) bytes long.
    let ip: [u8; 10] = read_packet(ctx, 0).map_err(|_| Skip::Ignored)?;

    let (protocol, transport) = match ip[0] >> 4 {
        4 => {
            // A fragment other than the first carries no transport header.
            if u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff != 0 {
                return Err(Skip::Ignored);
            }
            (ip[9], usize::from(ip[0] & 0x0f) * 4)
        }
        // IPv6 extension headers are not walked: such packets are not seen.
        6 => (ip[6], 40),
        _ => return Err(Skip::Ignored),
    };
    if protocol != IPPROTO_UDP && protocol != IPPROTO_TCP {
        return Err(Skip::Ignored);
    }

    let ports: [u8; 4] = read_packet(ctx, transport).map_err(|_| Skip::Ignored)?;
    let server_port = match direction {
        Direction::Egress => u16::from_be_bytes([ports[2], ports[3]]),
        Direction::Ingress => u16::from_be_bytes([ports[0], ports[1]]),
    };
    if !is_dns_port(server_port) {
        return Err(Skip::Ignored);
    }
    if protocol == IPPROTO_UDP {
        return Ok(Message { offset: transport + UDP_HEADER_BYTES, tcp: false });
    }

    // The data offset with the flags byte after it, two bytes for a direct
    // read (see `read_packet`).
    let data_offset: [u8; 2] = read_packet(ctx, transport + 12).map_err(|_| Skip::Malformed)?;
    let payload = transport + usize::from(data_offset[0] >> 4) * 4;
    if ctx.skb.len() as usize <= payload {
        return Err(Skip::Ignored); // handshake, ACK or FIN without data
    }
    // Over TCP each message follows a 2-byte length (RFC 1035 section
    // 4.2.2).
    Ok(Message { offset: payload + 2, tcp: true })
}

#[inline(always)]
fn is_dns_port(port: u16) -> bool {
    // SAFETY: a volatile read keeps the compiler from folding the
    // initializer into the code; the loader rewrites the value.
    let config = unsafe { core::ptr::read_volatile(&DNS_CONFIG) };
    let mut index = 0;
    while index < MAX_DNS_PORTS {
        if index as u32 >= config.port_count {
            return false;
        }
        if config.ports[index] == port {
            return true;
        }
        index += 1;
    }
    false
}

#[inline(always)]
fn handle_message(ctx: &SkBuffContext, direction: Direction, message: &Message) -> Result<(), Skip> {
    let header: [u8; DNS_HEADER_BYTES] = match ctx.skb.load(message.offset) {
        Ok(header) => header,
        // A TCP segment this short may continue an earlier one.
        Err(_) if message.tcp => return Err(Skip::Ignored),
        Err(_) => return Err(Skip::Malformed),
    };
    let transaction_id = u16::from_be_bytes([header[0], header[1]]);
    let is_response = header[2] & 0x80 != 0;
    let rcode = usize::from(header[3] & 0x0f);
    let question_count = u16::from_be_bytes([header[4], header[5]]);
    // SAFETY: the helpers only read the skb and its socket.
    let socket_cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let key = DnsQueryKey { socket_cookie, transaction_id, _padding: [0; 6] };
    match (direction, is_response) {
        (Direction::Egress, false) => {
            if question_count == 0 {
                return Err(Skip::Malformed);
            }
            let qtype = question_type(ctx, message.offset + DNS_HEADER_BYTES)?;
            // SAFETY: as above.
            let cgroup = unsafe { bpf_skb_cgroup_id(ctx.skb.skb) };
            record_query(cgroup, key, qtype);
            Ok(())
        }
        (Direction::Ingress, true) => {
            record_response(ctx, &key, rcode, message.tcp);
            Ok(())
        }
        // A server's own traffic, seen from its side.
        _ => Err(Skip::Ignored),
    }
}

/// Reads QTYPE of the first question, after skipping its QNAME.
#[inline(always)]
fn question_type(ctx: &SkBuffContext, start: usize) -> Result<u16, Skip> {
    let mut offset = start;
    let mut labels = 0;
    loop {
        if labels >= MAX_LABELS || offset - start > MAX_NAME_BYTES {
            return Err(Skip::Malformed);
        }
        let length: u8 = ctx.skb.load(offset).map_err(|_| Skip::Malformed)?;
        if length == 0 {
            offset += 1;
            break;
        }
        if length & 0xc0 == 0xc0 {
            // A compression pointer ends the name (unusual in a question).
            offset += 2;
            break;
        }
        if length & 0xc0 != 0 {
            return Err(Skip::Malformed);
        }
        offset += usize::from(length) + 1;
        labels += 1;
    }
    let qtype: [u8; 2] = ctx.skb.load(offset).map_err(|_| Skip::Malformed)?;
    Ok(u16::from_be_bytes(qtype))
}

#[inline(always)]
fn record_query(cgroup: u64, key: DnsQueryKey, qtype: u16) {
    let pending = DnsPendingQuery {
        // SAFETY: a helper call without arguments or side effects.
        sent_ns: unsafe { bpf_ktime_get_ns() },
        cgroup,
    };
    match DNS_PENDING.insert(key, pending, BPF_NOEXIST as u64) {
        Ok(()) => {}
        // A retransmission of a query still in flight: the first send
        // stays the start of the lookup, and it is one query.
        Err(error) if i64::from(error) == -EEXIST => return,
        Err(_) => count_loss(ProbeId::DnsEgress, Loss::MapFull),
    }
    let slot = qtype_slot(qtype);
    with_counters(ProbeId::DnsEgress, cgroup, |counters| {
        if let Some(count) = counters.queries.get_mut(slot) {
            *count += 1;
        }
    });
}

#[inline(always)]
fn record_response(ctx: &SkBuffContext, key: &DnsQueryKey, rcode: usize, tcp: bool) {
    // SAFETY: the value is copied out before the entry is removed.
    let Some(pending) = (unsafe { DNS_PENDING.get(key) }).copied() else {
        // Over TCP an unmatched segment may be the middle of a long
        // response rather than a DNS header, so it is not counted.
        if !tcp {
            // SAFETY: the helper only reads the skb's socket.
            let cgroup = unsafe { bpf_skb_cgroup_id(ctx.skb.skb) };
            with_counters(ProbeId::DnsIngress, cgroup, |counters| counters.unmatched_responses += 1);
        }
        return;
    };
    // Another CPU may have taken the same response (a duplicate); only the
    // one that removes the entry counts it.
    if DNS_PENDING.remove(key).is_err() {
        return;
    }
    // SAFETY: a helper call without arguments or side effects.
    let latency = unsafe { bpf_ktime_get_ns() }.saturating_sub(pending.sent_ns);
    with_counters(ProbeId::DnsIngress, pending.cgroup, |counters| {
        if let Some(count) = counters.responses.get_mut(rcode) {
            *count += 1;
        }
        counters.latency.record(latency);
    });
}

/// Applies `update` to this CPU's counters of `cgroup`, creating them on
/// first use.
#[inline(always)]
fn with_counters(probe: ProbeId, cgroup: u64, update: impl FnOnce(&mut DnsCounters)) {
    let Some(counters) = map_entry::entry(&DNS_COUNTERS, &cgroup, &ZERO_COUNTERS, probe) else {
        return;
    };
    // SAFETY: this CPU's copy of a per-CPU value, valid while the program
    // runs. NOTE: an ingress run in softirq can interrupt an egress run on
    // the same CPU and update the same copy. The counts are not atomic, so
    // in rare cases one increment is lost.
    update(unsafe { &mut *counters });
}
