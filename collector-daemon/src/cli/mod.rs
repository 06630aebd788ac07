//! The command line: `run` starts the daemon, `query` asks a running one over its socket.
//!
//! - `args`: the clap types (flags, defaults, help texts) and their value parsers;
//! - `config`: `run`'s configuration file, merged under flags and environment variables;
//! - `query`: `query`'s request to the socket API and the printing of its answer;
//! - `table`: answers as text tables.
mod args;
pub mod config;
mod query;
mod table;

use std::process::ExitCode;

pub use args::{
    Cli, Command, DEFAULT_CONTAINERD_SOCKET, DEFAULT_DOCKER_SOCKET, DEFAULT_METRICS_ADDR,
    DEFAULT_PIN_DIR, DEFAULT_SOCKET, Query, QueryArgs, RingBufferBytesError, RunArgs,
    UninstallArgs,
};
pub use query::query;

/// The program: parses the command line (exiting with clap's message when it is wrong), sets
/// up logging and the async runtime, and runs the subcommand. Errors are printed to stderr.
pub fn main() -> ExitCode {
    crate::heap::configure();
    let cli = match config::parse(std::env::args_os().collect()) {
        Ok(Ok(cli)) => cli,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    if let Command::Run(args) = &cli.command
        && let Err(e) = args.validate()
    {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if let Command::Run(args) = &cli.command
        && args.check_config
    {
        println!("{:#?}", args.options());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = init_logging() {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one subcommand to its end.
pub async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => crate::daemon::run(args.options())
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Query(args) => query(args).await,
        Command::Uninstall(args) => Ok(uninstall(&args)),
    }
}

/// `uninstall`'s exit status when a daemon holds the pin directory.
pub const EXIT_IN_USE: u8 = 3;

/// Removes the pins under `--pin-dir`: every pinned link (the programs detach), the maps,
/// and the directory. Exit status 0 when done or nothing was there, [`EXIT_IN_USE`] when a
/// daemon runs with the directory, 1 when something could not be removed.
pub fn uninstall(args: &UninstallArgs) -> ExitCode {
    use crate::ebpf::pin;
    let dir = &args.pin_dir;
    if !dir.exists() {
        println!("nothing pinned at {}", dir.display());
        return ExitCode::SUCCESS;
    }
    // Held until the end: a daemon starting meanwhile waits for nothing and fails to lock.
    let _lock = match pin::lock_dir(dir) {
        Ok(lock) => lock,
        Err(pin::PinError::InUse) => {
            eprintln!(
                "error: a collector-daemon is running with pin directory {}; stop it first",
                dir.display()
            );
            return ExitCode::from(EXIT_IN_USE);
        }
        Err(e) => {
            eprintln!("error: {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    match pin::remove_pins(dir, false) {
        Ok(removed) if removed.dir => {
            println!(
                "removed {} pinned programs and {} pinned maps from {}, and the directory",
                removed.links,
                removed.maps,
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Ok(removed) => {
            eprintln!(
                "error: removed {} pinned programs and {} pinned maps, but {} holds files the daemon did not make; left in place",
                removed.links,
                removed.maps,
                dir.display()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`). Records of the `log` crate
/// (aya-log's kernel-side messages among them) are forwarded to `tracing`: this must happen
/// before aya-log's reader is created, as it captures the `log` logger then.
pub fn init_logging() -> anyhow::Result<()> {
    use anyhow::Context as _;
    tracing_log::LogTracer::init().context("installing the log→tracing bridge")?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init()
        .map_err(|e| anyhow::anyhow!("installing the tracing subscriber: {e}"))
}
