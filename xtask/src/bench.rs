//! `cargo xtask bench`: the benches of `collector-tests`, as root, against the release daemon
//! and (because a bench may use containers) a running Docker with the test image.

use anyhow::Result;

use crate::{
    cmd::{Cmd, cargo},
    docker,
    test::root_env,
};

/// Runs `cargo bench -p collector-tests -- ARGS` and lets its output through. The environment
/// passes through; `COLLECTOR_BASELINE_DAEMON_BIN` (the baseline daemon of an A/B run, see
/// `docs/benchmarks.md`) is made absolute, since the benches run in `tests/`.
pub(crate) fn bench(args: &[String]) -> Result<()> {
    crate::setup::setup()?;
    crate::build()?;
    let _dockerd = docker::prepare()?;
    let mut cmd = Cmd::new(cargo());
    cmd.args(["bench", "-p", "collector-tests"]);
    root_env(&mut cmd)?;
    if let Some(baseline) = std::env::var_os("COLLECTOR_BASELINE_DAEMON_BIN")
        && !baseline.is_empty()
    {
        cmd.env(
            "COLLECTOR_BASELINE_DAEMON_BIN",
            std::path::absolute(&baseline)?,
        );
    }
    cmd.arg("--").args(args).run()
}
