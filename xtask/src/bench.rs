//! `cargo xtask bench`: the benches of `collector-tests`, as root, against the release daemon
//! and (because a bench may use containers) a running Docker with the test image; then, when
//! the stats bench is selected, the stats bench again in the cgroup-v2-only VM
//! (`cargo xtask vm`), where the kernel cgroup walk reads the v2 hierarchy.

use anyhow::Result;

use crate::{
    cmd::{Cmd, cargo},
    docker,
    test::root_env,
};

/// Runs `cargo bench -p collector-tests -- ARGS` and lets its output through. The environment
/// passes through; `COLLECTOR_BASELINE_DAEMON_BIN` (the baseline daemon of an A/B run, see
/// `docs/benchmarks.md`) is made absolute, since the benches run in `tests/`.
pub(crate) fn bench(args: &[String], in_vm: bool) -> Result<()> {
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
    let host = cmd.arg("--").args(args).run();
    if !in_vm || !selects(args, "stats") {
        return host;
    }
    // Run even when a host bench failed: the two are independent figures.
    eprintln!("the stats bench again, in the cgroup v2 VM (figures relative: it is emulated)");
    let time_box = std::time::Duration::from_secs(crate::vm::BENCH_TIME_BOX_SECS);
    let guest = crate::vm::stats_bench(args, time_box);
    match (host, guest) {
        (Ok(()), guest) => guest,
        (Err(host), Ok(())) => Err(host),
        (Err(host), Err(guest)) => Err(host.context(format!("and in the VM: {guest:#}"))),
    }
}

/// Whether the bench binaries select bench `name` with `args`: with no positional argument
/// every bench runs, else those whose name contains one (as `support::bench_selected`).
fn selects(args: &[String], name: &str) -> bool {
    let mut filters = args.iter().filter(|a| !a.starts_with('-')).peekable();
    filters.peek().is_none() || filters.any(|f| name.contains(f.as_str()))
}

#[cfg(test)]
mod tests {
    use super::selects;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn filters_select_benches_by_part_of_their_name() {
        assert!(selects(&args(&[]), "stats"));
        assert!(selects(&args(&["--bench"]), "stats"));
        assert!(selects(&args(&["stats"]), "stats"));
        assert!(selects(&args(&["sta"]), "stats"));
        assert!(selects(&args(&["lookup", "stats"]), "stats"));
        assert!(!selects(&args(&["lookup"]), "stats"));
        assert!(!selects(&args(&["memory", "--bench"]), "stats"));
    }
}
