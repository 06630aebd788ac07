//! Helpers shared by the unit tests of several modules.
use std::time::{Duration, Instant};

/// How long a test waits for a condition before failing.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Polls `done` until it holds, or panics with `what` after [`TIMEOUT`]: tests wait for a
/// condition, never for a fixed time.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until process `pid` is blocked in `nanosleep`/`clock_nanosleep` (the first field of
/// `/proc/<pid>/syscall`): a `sleep` that has exec'd is still opening and closing files (the
/// dynamic loader, locale) until then.
pub fn wait_until_asleep(pid: u32) {
    wait_until("the child to block in its sleep", || {
        std::fs::read_to_string(format!("/proc/{pid}/syscall"))
            .ok()
            .and_then(|text| text.split_whitespace().next()?.parse::<i64>().ok())
            .is_some_and(|n| n == libc::SYS_nanosleep || n == libc::SYS_clock_nanosleep)
    });
}
