//! cgroupfs: where the hierarchies are mounted (v1, v2, hybrid), which directory serves each
//! controller for a cgroup (`dirs`), typed parsers for the stats files, one module per file
//! family, and a reader that assembles a container's stats from them through held descriptors
//! (`reader`).
pub mod cpu;
pub mod cpuset;
pub mod dirs;
pub mod diskstats;
pub mod files;
pub mod io;
pub mod kernel_values;
pub mod memory;
pub mod mounts;
pub mod parse;
pub mod pids;
pub mod psi;
pub mod reader;

pub use dirs::CgroupDirs;
pub use diskstats::DeviceNames;
pub use mounts::{CgroupLayout, CgroupMode, Hierarchy, HierarchyKind, MountError};
pub use reader::CgroupStatsReader;
