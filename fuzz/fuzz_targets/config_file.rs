//! The configuration file of `run` (`cli::config::parse` with `--config`): TOML whose keys
//! are the flags' names. The text is written to a scratch file under `$TMPDIR` and parsed as
//! `collector-daemon run --config <file>` parses it.
//!
//! Beyond "no panic": an unusable file is an error that names the file.
#![no_main]

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use collector_daemon::cli::config;
use libfuzzer_sys::fuzz_target;

fn scratch() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        std::env::temp_dir().join(format!("collector-fuzz-config-{}.toml", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    std::fs::write(path, data).expect("scratch config file");
    let argv: Vec<OsString> = ["collector-daemon", "run", "--config"]
        .iter()
        .map(OsString::from)
        .chain([path.as_os_str().to_owned()])
        .collect();
    match config::parse(argv) {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            let message = e.to_string();
            assert!(message.contains(&*path.to_string_lossy()), "{message}");
        }
        Err(e) => panic!("the command line itself is valid: {e}"),
    }
});
