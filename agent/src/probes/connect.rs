//! Userspace half of the TCP connect probe: reading the per-destination
//! counters and dropping stale state.

use std::time::Duration;

use agent_common::connect::{CONNECT_COUNTERS_MAP, CONNECT_PENDING_MAP, ConnectCounters, ConnectKey, ConnectPending};
use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapData},
};

use super::dns::monotonic_ns;
use crate::cgroup::CgroupId;

/// Age after which an in-flight connect is dropped without being counted.
/// With the default `net.ipv4.tcp_syn_retries` (6) the kernel gives up
/// after about 127 s; an entry much older than that missed its end event
/// (the probe was skipped as a nested run).
const STALE_PENDING: Duration = Duration::from_secs(600);

pub struct ConnectMaps {
    counters: BpfHashMap<MapData, ConnectKey, ConnectCounters>,
    pending: BpfHashMap<MapData, u64, ConnectPending>,
}

impl ConnectMaps {
    pub(super) fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let counters = ebpf
            .take_map(CONNECT_COUNTERS_MAP)
            .with_context(|| format!("probe object has no map {CONNECT_COUNTERS_MAP}"))?;
        let pending = ebpf
            .take_map(CONNECT_PENDING_MAP)
            .with_context(|| format!("probe object has no map {CONNECT_PENDING_MAP}"))?;
        Ok(Self { counters: BpfHashMap::try_from(counters)?, pending: BpfHashMap::try_from(pending)? })
    }

    /// Cumulative counters per (cgroup, destination).
    pub fn read(&self) -> Vec<(ConnectKey, ConnectCounters)> {
        self.counters.iter().flatten().collect()
    }

    /// Drops in-flight connects older than [`STALE_PENDING`], so entries
    /// that missed their end event do not fill the map.
    pub fn drop_stale(&mut self) {
        let now = monotonic_ns();
        let stale: Vec<u64> = self
            .pending
            .iter()
            .flatten()
            .filter(|(_, pending)| Duration::from_nanos(now.saturating_sub(pending.started_ns)) > STALE_PENDING)
            .map(|(sock, _)| sock)
            .collect();
        for sock in stale {
            let _ = self.pending.remove(&sock);
        }
    }

    /// Removes every destination entry of a deleted cgroup.
    pub fn remove(&mut self, cgroup: CgroupId) {
        let keys: Vec<ConnectKey> = self.counters.keys().flatten().filter(|key| key.cgroup == cgroup).collect();
        for key in keys {
            // The entry may already be gone; nothing to do then.
            let _ = self.counters.remove(&key);
        }
    }
}
