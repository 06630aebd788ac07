//! `cargo xtask run`: builds and runs the daemon as root in the foreground.
//!
//! Ctrl-C reaches the daemon directly: the terminal signals the whole foreground process group,
//! so xtask ignores SIGINT/SIGQUIT while the daemon runs (else it would die first and leave the
//! daemon orphaned) and relays SIGTERM/SIGHUP, which are usually sent to xtask alone.

use std::{
    os::unix::process::ExitStatusExt as _,
    process::ExitCode,
    sync::atomic::{AtomicI32, Ordering},
};

use anyhow::{Context as _, Result};

use crate::cmd::{Cmd, target_dir};

/// The PID signals are relayed to; 0 while no daemon runs.
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn relay(signal: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe { libc::kill(pid, signal) };
    }
}

/// Runs `target/release/collector-daemon run ARGS...` as root and returns its exit status
/// (128 + signal number when a signal ended it, as a shell reports it).
pub(crate) fn run(args: &[String]) -> Result<ExitCode> {
    crate::setup::setup()?;
    crate::build()?;
    let daemon = target_dir().join("release").join("collector-daemon");
    let mut child = Cmd::root(&daemon).arg("run").args(args).spawn()?;
    CHILD.store(
        i32::try_from(child.id()).context("daemon pid out of range")?,
        Ordering::SeqCst,
    );
    let relay_handler = relay as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: installing dispositions for this process only; `relay` is async-signal-safe.
    // Ignoring only after the spawn matters: an ignored signal stays ignored across exec.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, relay_handler);
        libc::signal(libc::SIGHUP, relay_handler);
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for {}", daemon.display()))?;
    CHILD.store(0, Ordering::SeqCst);
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    };
    if !status.success() {
        eprintln!("collector-daemon exited: {status}");
    }
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
