//! What the integration tests and benches share: a daemon under test, an HTTP client for its
//! socket, test cgroups, processes started inside them, Docker containers, a private
//! containerd with a CRI client, and a Prometheus scraping the daemon. Everything that
//! creates something is a guard that removes it on drop, also when the test fails.

pub mod bpf;
pub mod cgroup;
pub mod clone3;
pub mod containerd;
pub mod cri;
pub mod daemon;
pub mod docker;
pub mod dockerd;
pub mod fake_api;
mod host;
pub mod http;
pub mod manifest;
pub mod memory;
pub mod netns;
pub mod podman;
pub mod podman_rootless;
pub mod process;
pub mod prometheus;
pub mod service;

use std::{
    io::Write as _,
    path::PathBuf,
    sync::atomic::{AtomicUsize, Ordering},
};

/// Whether we run in CI (`CI=true`), where no test may skip.
#[must_use]
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Gate for what a test needs: returns `available`; when it is false, panics in CI
/// ("required in CI: {what}") and otherwise prints `skipping: {what}` so the test can return.
///
/// ```no_run
/// # use collector_tests::support::{is_root, require};
/// if !require("root", is_root()) {
///     return;
/// }
/// ```
#[must_use]
pub fn require(what: &str, available: bool) -> bool {
    if available {
        return true;
    }
    assert!(!in_ci(), "required in CI: {what}");
    // Written to the real stderr, not through eprintln!, which the test harness captures and
    // only shows for failed tests.
    let _ = writeln!(std::io::stderr(), "skipping: {what}");
    false
}

/// Whether this process runs with effective uid 0.
#[must_use]
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A name no other test object has, in this or any other running test process:
/// `collector-test-<pid>-<n>`. Everything the tests create outside their temp dirs (cgroups,
/// pin dirs) is named this way, so leftovers are easy to find and nothing else is touched.
#[must_use]
pub fn unique_name() -> String {
    format!("collector-test-{}-{}", std::process::id(), next_serial())
}

/// A process-wide counter for unique names.
pub(crate) fn next_serial() -> usize {
    static SERIAL: AtomicUsize = AtomicUsize::new(0);
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

/// The workspace root (where `target/` is by default).
#[must_use]
pub fn workspace_root() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives one level below the workspace root")
        .to_path_buf()
}

/// Whether the bench `name` runs: `cargo xtask bench -- FILTER` passes its filters to every
/// bench binary, and a bench runs when there is none or one is part of its name.
#[must_use]
pub fn bench_selected(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let run = filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    if !run {
        println!("{name} bench: skipped (filter {filters:?})");
    }
    run
}

/// Whether this is a measuring run: `cargo bench` passes `--bench` to bench binaries, while
/// `cargo test --benches` (a quick smoke run with small counts) does not.
#[must_use]
pub fn is_full_bench() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// How a bench binary starts: `None` when bench `name` is not selected (see
/// [`bench_selected`]) or this machine cannot run it (root, to create cgroups and load eBPF,
/// and a cgroup v2 hierarchy: skipped outside CI, a failure in CI); else whether this is a
/// measuring run ([`is_full_bench`]) rather than a smoke run.
#[must_use]
pub fn bench_start(name: &str) -> Option<bool> {
    if !bench_selected(name) {
        return None;
    }
    let runnable = require("root, to create cgroups and load eBPF", is_root())
        && require("a cgroup v2 hierarchy", cgroup::v2_mount().is_some());
    runnable.then(is_full_bench)
}

#[cfg(test)]
mod tests {
    use super::{require, unique_name};

    #[test]
    fn unique_names_differ_and_carry_the_pid() {
        let (a, b) = (unique_name(), unique_name());
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("collector-test-{}-", std::process::id())));
    }

    #[test]
    fn require_passes_what_is_available() {
        assert!(require("something that is there", true));
    }
}
