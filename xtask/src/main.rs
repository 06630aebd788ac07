//! Developer tasks for the collector workspace: `cargo xtask <task>` (see `--help`).
//! It orchestrates set-up, root and test runs; the eBPF object itself is built by
//! collector-daemon's build.rs, never here.

mod bench;
mod cmd;
mod docker;
mod fuzz;
mod image;
mod lint;
mod run;
mod setup;
mod test;
mod vm;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::cmd::{Cmd, cargo, workspace_root};

#[derive(Parser)]
#[command(
    bin_name = "cargo xtask",
    about = "Developer tasks for the collector workspace"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Make this machine ready to build and run the agent: nightly `rust-src`, bpf-linker
    /// 0.10.2, tracefs and bpffs mounted. Idempotent, and quick when already done.
    Setup,
    /// Set up, then build the release daemon (`cargo build --release -p collector-daemon`).
    Build,
    /// Set up, build, then run `collector-daemon run ARGS...` as root in the foreground
    /// (through `sudo -E` when not root); exits with the daemon's status.
    Run {
        /// Arguments for `collector-daemon run`, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Set up, build, install and start what the tests need (docker.io, busybox-static,
    /// dockerd, the test image), then run the unit tests, each fuzz target for 5 s and, as
    /// root, the integration tests.
    Test {
        /// Arguments for every test binary (a name filter, `--nocapture`, ...), after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Set up, build, make sure Docker answers, then build the container image `collector:dev`
    /// from `Dockerfile` (the stripped daemon and the shared objects it links, nothing pulled).
    Image,
    /// Format the workspace with nightly rustfmt (the import grouping of `rustfmt.toml`).
    Fmt,
    /// Check formatting (nightly rustfmt) and run clippy with warnings as errors; `test`
    /// runs this too.
    Lint,
    /// Set up, install cargo-fuzz, then run the fuzz targets of `fuzz/` (every one, or
    /// TARGET) for SECONDS each and merge what grew coverage into `fuzz/corpus/`; prints
    /// executions, corpus and findings per target (see docs/fuzzing.md).
    Fuzz {
        /// One target (`fuzz/fuzz_targets/<TARGET>.rs`); all when omitted.
        target: Option<String>,
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// libFuzzer flags (`-max_len=4096`, ...), after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Set up, build, then boot a cgroup-v2-only VM (qemu, Debian's 6.1 kernel, the host's `/`
    /// shared read-only) and run the integration tests that need no container runtime in it
    /// (see docs/testing.md); fails when a test fails or the guest overruns its time box.
    Vm {
        /// Wall-clock limit for the guest, in seconds; qemu is killed after it.
        #[arg(long, default_value_t = vm::TIME_BOX_SECS)]
        timeout: u64,
        /// Arguments for the test binary in the guest (a name filter, `--nocapture`, ...),
        /// after `--`; without a filter, the v2 set (`tests::v2::`, layouts, lifecycle, ...).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Set up, build, prepare Docker as for `test`, then run `cargo bench -p collector-tests`
    /// as root; when the stats bench is selected, run it again in the cgroup-v2-only VM (as
    /// `vm` boots it; figures relative, the guest is emulated).
    Bench {
        /// Only the host: not the stats bench in the VM.
        #[arg(long)]
        no_vm: bool,
        /// Arguments for the bench binaries, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

/// `cargo build --release -p collector-daemon`, after set-up (its build.rs needs it).
fn build() -> Result<()> {
    Cmd::new(cargo())
        .current_dir(workspace_root())
        .args(["build", "--release", "-p", "collector-daemon"])
        .run()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = std::env::set_current_dir(workspace_root())
        .map_err(anyhow::Error::from)
        .and_then(|()| match cli.task {
            Task::Setup => setup::setup().map(|()| ExitCode::SUCCESS),
            Task::Build => setup::setup()
                .and_then(|()| build())
                .map(|()| ExitCode::SUCCESS),
            Task::Run { args } => run::run(&args),
            Task::Image => setup::setup()
                .and_then(|()| build())
                .and_then(|()| docker::prepare())
                .and_then(|_dockerd| image::image())
                .map(|()| ExitCode::SUCCESS),
            Task::Fmt => lint::fmt().map(|()| ExitCode::SUCCESS),
            Task::Lint => setup::setup()
                .and_then(|()| lint::lint())
                .map(|()| ExitCode::SUCCESS),
            Task::Test { args } => test::test(&args).map(|()| ExitCode::SUCCESS),
            Task::Fuzz {
                target,
                seconds,
                args,
            } => fuzz::fuzz(target.as_deref(), seconds, &args, true).map(|()| ExitCode::SUCCESS),
            Task::Vm { timeout, args } => setup::setup()
                .and_then(|()| vm::vm(&args, std::time::Duration::from_secs(timeout)))
                .map(|()| ExitCode::SUCCESS),
            Task::Bench { no_vm, args } => bench::bench(&args, !no_vm).map(|()| ExitCode::SUCCESS),
        });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
