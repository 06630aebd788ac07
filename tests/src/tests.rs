//! The integration tests, one module per feature in `src/tests/` (declare each one here).
//! Each test gets a daemon from `support::daemon` (its own, or the shared one), creates its
//! cgroups, processes and containers through guards from `support`, and uses
//! `support::require` for anything it cannot do here, so that CI (`CI=true`) never skips.

mod api_errors;
mod cgroup_walk;
mod containerd_metadata;
mod cri_pods;
mod dashboard;
mod docker;
mod docker_metadata;
mod fake_garden;
mod fake_runtimes;
mod fallback;
mod faults;
mod image;
mod kata;
mod kernel_counters;
mod kernel_map;
mod kubernetes_metrics;
mod layouts;
mod lifecycle;
mod pod_network;
mod podman;
mod podman_rootless;
mod privilege;
mod prometheus;
mod provider;
mod repair;
mod restart;
mod stats;
mod util;
mod v2;
