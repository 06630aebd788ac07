//! Types shared by the kernel programs (`collector-ebpf`) and the daemon (`collector-daemon`).
//!
//! Everything here is `#[repr(C)]`, `Copy`, free of `bool` and of implicit padding, so the
//! same bytes mean the same thing on both sides of a map or the ring buffer. `aya::Pod` is
//! implemented behind the `user` feature, which only the daemon enables.
#![no_std]

pub mod cgroup_values;
pub mod counters;
pub mod event;
pub mod names;
pub mod offsets;
pub mod persist;
pub mod process;
pub mod usage;
