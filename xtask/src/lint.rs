//! `cargo xtask fmt` and `cargo xtask lint`: formatting with the import grouping of
//! `rustfmt.toml` (`group_imports`, `imports_granularity`: options only nightly rustfmt
//! applies, hence `rustup run nightly`), and clippy with every warning an error.

use anyhow::{Result, bail};

use crate::cmd::{Cmd, cargo};

/// Formats the workspace.
pub(crate) fn fmt() -> Result<()> {
    crate::setup::ensure_nightly_component("rustfmt")?;
    nightly_fmt(false)
}

/// Checks formatting and runs clippy on every crate but the eBPF one (built for the BPF
/// target by collector-daemon's build.rs, and linted there with its own settings); both run
/// even when the other failed.
pub(crate) fn lint() -> Result<()> {
    crate::setup::ensure_nightly_component("rustfmt")?;
    let mut failed = Vec::new();
    if let Err(e) = nightly_fmt(true) {
        eprintln!("error: {e:#}");
        failed.push("format (run `cargo xtask fmt`)");
    }
    let clippy = Cmd::new(cargo())
        .args([
            "clippy",
            "--workspace",
            "--exclude",
            "collector-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])
        .run();
    if let Err(e) = clippy {
        eprintln!("error: {e:#}");
        failed.push("clippy");
    }
    if !failed.is_empty() {
        bail!("lint failed: {}", failed.join(", "));
    }
    Ok(())
}

/// The workspace, then the fuzz crate (its own workspace, see `fuzz/Cargo.toml`).
fn nightly_fmt(check: bool) -> Result<()> {
    for manifest in ["Cargo.toml", "fuzz/Cargo.toml"] {
        let mut fmt = Cmd::new("rustup");
        fmt.args([
            "run",
            "nightly",
            "cargo",
            "fmt",
            "--all",
            "--manifest-path",
            manifest,
        ]);
        if check {
            fmt.args(["--", "--check"]);
        }
        fmt.run()?;
    }
    Ok(())
}
