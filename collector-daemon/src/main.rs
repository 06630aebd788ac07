//! Entry point: the library's command line (`collector_daemon::cli`) does the work.
#![expect(
    unused_crate_dependencies,
    reason = "the package's dependencies are the library's; the binary uses none directly"
)]
use std::process::ExitCode;

fn main() -> ExitCode {
    collector_daemon::cli::main()
}
