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
