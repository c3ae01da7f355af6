//! Block request latency per cgroup: from the probes' (blkcg, device)
//! histograms to series of v2 cgroups with device names.
//!
//! The probes key requests by the cgroup of their blkcg. When the io
//! controller is on cgroup v2 that is the v2 id the rest of the agent uses.
//! When `blkio` is bound to v1 (hybrid hosts) it is a v1 `blkio` cgroup
//! id: it is resolved to a path in the v1 hierarchy and taken to be the v2
//! cgroup at the same relative path.
//!
//! NOTE: cgroup writeback, which charges buffered writes flushed by kernel
//! workers to the cgroup that dirtied the pages, exists only for cgroup v2
//! with the io and memory controllers. With v1 `blkio`, writeback requests
//! land on the root cgroup; writes a task flushes itself (`fsync`,
//! `O_DIRECT`, `O_SYNC`) count for its own blkio cgroup.

use std::{collections::HashMap, fs, time::Duration};

use agent_common::{block::BlockKey, histogram::LatencyHistogram};

use crate::{
    cgroup::{CgroupId, CgroupLayout, CgroupResolver},
    probes::block::BlockMaps,
};

/// Block request latency of one cgroup on one disk.
#[derive(Clone, Debug)]
pub struct BlockSeries {
    /// `major:minor` of the whole disk.
    pub device: String,
    /// Kernel name of the disk (`vda`, `loop0`), or the device number when
    /// `/sys/dev/block` has no entry for it.
    pub device_name: String,
    /// Cumulative latency since the agent started watching.
    pub latency: LatencyHistogram,
}

/// Maps the probes' blkcg ids to v2 cgroups, and device numbers to names.
pub struct BlockAttribution {
    /// Resolver over the v1 `blkio` hierarchy, on hybrid hosts.
    v1_blkio: Option<CgroupResolver>,
    device_names: HashMap<u32, String>,
}

impl BlockAttribution {
    pub fn new(layout: &CgroupLayout, min_walk_interval: Duration) -> Self {
        Self {
            v1_blkio: layout.v1_blkio_root.clone().map(|root| CgroupResolver::new(root, min_walk_interval)),
            device_names: HashMap::new(),
        }
    }

    /// Reads the histograms and groups them by v2 cgroup id. Entries whose
    /// blkcg no longer exists are removed from the map.
    pub fn read(&mut self, maps: &mut BlockMaps, v2: &mut CgroupResolver) -> HashMap<CgroupId, Vec<BlockSeries>> {
        let mut by_cgroup: HashMap<CgroupId, Vec<BlockSeries>> = HashMap::new();
        let mut removed = Vec::new();
        for (key, latency) in maps.read() {
            let Some(path) = self.blkcg_path(key.blkcg_cgroup_id, v2) else {
                removed.push(key);
                continue;
            };
            // A v1 blkio cgroup without a v2 cgroup at the same path has no
            // series; the map entry stays until the blkio cgroup goes.
            let Ok(id) = v2.id_of(&path) else { continue };
            let device = format!("{}:{}", key.major(), key.minor());
            let series = by_cgroup.entry(id).or_default();
            // Requests without a blkcg and those of the root blkcg both
            // count for the root cgroup, so keys can meet here.
            match series.iter_mut().find(|series| series.device == device) {
                Some(existing) => existing.latency.add(&latency),
                None => series.push(BlockSeries { device, device_name: self.device_name(&key), latency }),
            }
        }
        for key in removed {
            maps.remove(&key);
        }
        for series in by_cgroup.values_mut() {
            series.sort_by(|a, b| a.device.cmp(&b.device));
        }
        by_cgroup
    }

    /// Relative path of a blkcg's cgroup; the root for requests without one.
    fn blkcg_path(&mut self, id: u64, v2: &mut CgroupResolver) -> Option<String> {
        if id == 0 {
            return Some("/".to_owned());
        }
        let resolver = self.v1_blkio.as_mut().unwrap_or(v2);
        resolver.path_of(id).map(str::to_owned)
    }

    fn device_name(&mut self, key: &BlockKey) -> String {
        self.device_names.entry(key.device).or_insert_with(|| device_name_from_sysfs(key.major(), key.minor())).clone()
    }
}

/// Returns the disk's kernel name: the last component of the `/sys/dev/block/M:m`
/// link target.
fn device_name_from_sysfs(major: u32, minor: u32) -> String {
    fs::read_link(format!("/sys/dev/block/{major}:{minor}"))
        .ok()
        .and_then(|target| target.file_name().map(|name| name.to_string_lossy().into_owned()))
        .unwrap_or_else(|| format!("{major}:{minor}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_name_of_missing_device_is_its_number() {
        assert_eq!(device_name_from_sysfs(4095, 1_048_575), "4095:1048575");
    }
}
