//! collector-daemon as a library: the daemon and its CLI, split by concern. `main.rs` only
//! calls [`cli::main`].
//!
//! - `ebpf`: loading the kernel programs, their offsets, events and counters;
//! - `cgroupfs`: cgroup mount discovery (v1, v2, hybrid) and per-container stats from cgroupfs;
//! - `identity`: PID, cgroup and container indexes, container ids from cgroup paths;
//! - `api`: the unix-socket HTTP API and the CLI's client;
//! - `metrics`: the daemon's own Prometheus metrics;
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
pub mod identity;
pub mod metrics;
pub mod procfs_stats;
pub mod provider;
#[cfg(test)]
mod test_support;
pub mod ttl_map;
