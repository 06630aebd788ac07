//! cgroupfs: where the hierarchies are mounted (v1, v2, hybrid), and typed parsers for the
//! stats files, one module per file family.
pub mod cpu;
pub mod cpuset;
pub mod diskstats;
pub mod files;
pub mod io;
pub mod memory;
pub mod mounts;
pub mod parse;
pub mod pids;
pub mod psi;

pub use diskstats::DeviceNames;
pub use mounts::{CgroupLayout, CgroupMode, Hierarchy, HierarchyKind, MountError};
