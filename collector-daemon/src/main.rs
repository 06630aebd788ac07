//! Entry point: parse the command line and hand over to the library.
#![allow(
    unused_crate_dependencies,
    reason = "the package's dependencies are the library's; the binary uses few directly"
)]
use std::process::ExitCode;

use clap::Parser as _;
use collector_daemon::cli::{Cli, Command, init_logging, query};

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => collector_daemon::daemon::run(args.options())
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Query(args) => query(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
