//! `cargo xtask test`: everything the tests need, then the lints (`cargo xtask lint`), the
//! unit tests, a few seconds of each fuzz target (`cargo xtask fuzz`), the root-only
//! integration tests (`collector-tests`), and the identity and stats tests again with the
//! daemon run as the systemd unit runs it, each run even when another failed.
//!
//! Only the integration test binaries run as root: cargo builds as the calling user and runs
//! them through a `sudo -E` runner when that user is not root, so `target/` never becomes
//! root-owned.

use std::fmt::Write as _;

use anyhow::{Result, bail};

use crate::{
    cmd::{Cmd, cargo, is_root, root_prefix, target_dir},
    docker::{self, TEST_IMAGE},
};

/// Debian packages only the integration tests need, with the services they bring: the
/// Prometheus tests start their own `prometheus` (and run `promtool`), so the packaged
/// service is stopped and disabled after installing (see [`crate::setup::ensure_apt_tools`]).
/// `systemd` brings `systemd-analyze`, which checks the shipped unit (no service is started:
/// the tests only verify the unit file).
const TEST_TOOLS: &[(&str, &[&str])] = &[("prometheus", &["prometheus"]), ("systemd", &[])];

/// The identity and stats tests, which run a second time with every daemon started as
/// `deploy/systemd/collector.service` starts it: as a non-root user with only the unit's
/// capabilities (`tests/src/support/service.rs`).
const LEAST_PRIVILEGE_FILTERS: &[&str] = &[
    "tests::lifecycle::",
    "tests::docker::",
    "tests::layouts::",
    "tests::stats::",
];

/// Runs the unit tests, then the integration tests; `args` go to every test binary.
pub(crate) fn test(args: &[String]) -> Result<()> {
    crate::setup::setup()?;
    crate::build()?;
    let _dockerd = docker::prepare()?;
    crate::image::image()?;
    crate::setup::ensure_apt_tools(TEST_TOOLS)?;
    // The deployment tests read deploy/kubernetes/daemonset.yaml through python3's yaml; the
    // Podman tests run a private Podman (its own storage and API service, no unit started),
    // and a rootless one as a test user (`useradd` from passwd; newuidmap/newgidmap from
    // uidmap, which podman only recommends; vfs storage and no network, so neither
    // fuse-overlayfs nor slirp4netns); the pod network test gives containerd's CRI a CNI
    // network (ptp + host-local from containernetworking-plugins).
    crate::setup::ensure_apt_packages(&[
        "python3-yaml",
        "podman",
        "uidmap",
        "passwd",
        "containernetworking-plugins",
    ])?;

    let mut failed = Vec::new();
    if let Err(e) = crate::lint::lint() {
        eprintln!("error: {e:#}");
        failed.push("lint");
    }
    // collector-ebpf only builds for the BPF target; collector-tests runs below, as root.
    let mut unit = Cmd::new(cargo());
    unit.args([
        "test",
        "--no-fail-fast",
        "--workspace",
        "--exclude",
        "collector-ebpf",
        "--exclude",
        "collector-tests",
        "--",
    ])
    .args(args);
    if let Err(e) = unit.run() {
        eprintln!("error: {e:#}");
        failed.push("unit tests");
    }
    if let Err(e) = crate::fuzz::fuzz(None, crate::fuzz::TEST_SECONDS, &[], false) {
        eprintln!("error: {e:#}");
        failed.push("fuzzing");
    }

    let mut integration = integration_tests(args)?;
    integration.args(args);
    if let Err(e) = integration.run() {
        eprintln!("error: {e:#}");
        failed.push("integration tests");
    }

    // Given test names, those; else the identity and stats tests.
    let mut least_privilege = integration_tests(args)?;
    least_privilege.env("COLLECTOR_TEST_LEAST_PRIVILEGE", "1");
    if args.is_empty() {
        least_privilege.args(LEAST_PRIVILEGE_FILTERS);
    } else {
        least_privilege.args(args);
    }
    if let Err(e) = least_privilege.run() {
        eprintln!("error: {e:#}");
        failed.push("integration tests as the systemd unit runs the daemon");
    }

    if !failed.is_empty() {
        bail!("failed: {}", failed.join(", "));
    }
    Ok(())
}

/// `cargo test -p collector-tests` as root, up to `--`, with one test thread per CPU unless
/// `args` say otherwise.
fn integration_tests(args: &[String]) -> Result<Cmd> {
    let mut integration = Cmd::new(cargo());
    integration.args(["test", "--no-fail-fast", "-p", "collector-tests"]);
    root_env(&mut integration)?;
    integration.arg("--");
    // `tests::v2::` needs a cgroup2 hierarchy with controllers (a v2-only host): the VM lane
    // runs it; here it would skip, or fail under `CI=true`.
    integration.args(["--skip", "tests::v2::"]);
    if !args
        .iter()
        .any(|a| a == "--test-threads" || a.starts_with("--test-threads="))
    {
        integration.arg(format!("--test-threads={}", test_threads()));
    }
    Ok(integration)
}

/// What the integration tests and benches get: the daemon built by `cargo xtask build`, the
/// test image, the collector's image (`cargo xtask image`), and (when we are not root) a runner
/// that runs their binaries as root.
pub(crate) fn root_env(cmd: &mut Cmd) -> Result<()> {
    let daemon = target_dir().join("release").join("collector-daemon");
    let daemon = std::path::absolute(&daemon)?;
    cmd.env("COLLECTOR_DAEMON_BIN", daemon)
        .env("COLLECTOR_TEST_IMAGE", TEST_IMAGE)
        .env("COLLECTOR_IMAGE", crate::image::IMAGE);
    if !is_root() {
        let runner = root_prefix()
            .iter()
            .map(|word| toml_string(&word.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(", ");
        cmd.arg("--config")
            .arg(format!("target.'cfg(all())'.runner = [{runner}]"));
    }
    Ok(())
}

/// Integration-test threads: `COLLECTOR_TEST_THREADS`, else one per CPU.
fn test_threads() -> usize {
    std::env::var("COLLECTOR_TEST_THREADS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// A TOML basic string holding `s`.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::toml_string;

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r#"PATH=/a b:"c"\d"#), r#""PATH=/a b:\"c\"\\d""#);
        assert_eq!(toml_string("x\ty"), r#""x\u0009y""#);
    }
}
