//! Cgroups: where the hierarchies are mounted, which cgroup a process is
//! in, cgroup ids and paths, and the kernel's own per-cgroup counters.

pub mod cpu_stat;
pub mod layout;
pub mod members;
pub mod namespace;
pub mod open_dir;
pub mod process;
pub mod resolver;

pub use layout::{CgroupLayout, Hierarchy, HierarchyChoice};
pub use resolver::CgroupResolver;

/// The id the kernel gives a cgroup in the v2 hierarchy: the inode number
/// of its directory, the value `bpf_get_current_cgroup_id()` returns.
pub type CgroupId = u64;
