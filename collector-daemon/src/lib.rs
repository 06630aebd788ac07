//! collector-daemon as a library: the daemon and its CLI, split by concern. `main.rs` only
//! calls [`cli::main`].
//!
//! Layers, each using only those listed before it:
//! - `heap`, `clock`, `ttl_map`, `fast_map`, `error_chain`: glibc malloc's settings, `USER_HZ`,
//!   the small expiring map, the hot path's hash map, error printing;
//! - `stats`: the container stats every source fills (all values optional);
//! - `cgroupfs`, `procfs_stats`: cgroup mounts and per-container stats from cgroupfs, and what
//!   procfs adds (network, open files, tasks); `cgroupfs::kernel_values` is the interface
//!   through which the kernel cgroup walk supplies values instead of files;
//! - `ebpf`: loading the kernel programs, their offsets, events, counters and pins (and the
//!   cgroup walk behind `cgroupfs::kernel_values`);
//! - `identity`: PID, cgroup and container indexes, container ids from cgroup paths;
//! - `provider`: runtimes, per-capability collectors with priorities, the meta collector and
//!   the staleness cache;
//! - `collectors`: the collectors (identity, eBPF, system) and the runtimes' metadata;
//! - `metrics`: the Prometheus exposition (container families and the daemon's own);
//! - `api`: the unix-socket HTTP API and the CLI's client;
//! - `daemon`, `cli`: `run` and the command line.
pub mod api;
pub mod cgroupfs;
pub mod cli;
pub mod clock;
pub mod collectors;
pub mod daemon;
pub mod ebpf;
mod error_chain;
pub mod fast_map;
pub mod heap;
pub mod identity;
pub mod metrics;
pub mod procfs_stats;
pub mod provider;
pub mod stats;
#[cfg(test)]
mod test_support;
pub mod ttl_map;
