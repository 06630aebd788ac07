//! cgroupfs: where the hierarchies are mounted (v1, v2, hybrid). Typed parsers for the
//! stats files join this module as the stats collectors arrive.
pub mod mounts;

pub use mounts::{CgroupLayout, CgroupMode, Hierarchy, HierarchyKind, MountError};
