//! `cargo xtask bench`: the benches of `collector-tests`, as root, against the release daemon
//! and (because a bench may use containers) a running Docker with the test image.

use anyhow::Result;

use crate::cmd::{Cmd, cargo};
use crate::docker;
use crate::test::root_env;

/// Runs `cargo bench -p collector-tests -- ARGS` and lets its output through.
pub(crate) fn bench(args: &[String]) -> Result<()> {
    crate::setup::setup()?;
    crate::build()?;
    let _dockerd = docker::prepare()?;
    let mut cmd = Cmd::new(cargo());
    cmd.args(["bench", "-p", "collector-tests"]);
    root_env(&mut cmd)?;
    cmd.arg("--").args(args).run()
}
