//! What the private runtimes of the tests (`containerd.rs`, `dockerd.rs`) need of the host:
//! finding programs, and cleaning up what a killed runtime leaves behind (mounts below its
//! directory, containerd shims still serving its socket).
use std::{
    ffi::CString,
    fs, io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    process::Child,
    time::{Duration, Instant},
};

/// Whether `program` is an executable file in a directory of `PATH`.
pub(crate) fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Mount points at or below `dir` (from /proc/self/mountinfo), deepest first.
fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(point.replace("\\040", " ")))
        .filter(|point| point.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points
}

/// Detaches every mount at or below `dir`, so that it can be removed: dockerd's bind mount of
/// its data root (left stacked several times by a SIGKILL), a sandbox's shm, a container's
/// rootfs or netns after a failure.
pub(crate) fn unmount_below(dir: &Path) {
    for _ in 0..16 {
        let points = mounts_below(dir);
        if points.is_empty() {
            return;
        }
        for point in points {
            let Ok(path) = CString::new(point.as_os_str().as_bytes()) else {
                continue;
            };
            // SAFETY: umount2 with a NUL-terminated path; MNT_DETACH leaves nothing dangling.
            if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
                eprintln!(
                    "warning: umount {}: {}",
                    point.display(),
                    io::Error::last_os_error()
                );
            }
        }
    }
}

/// PIDs of the containerd shims still serving the containerd at `socket` (a container it
/// could not remove), from their command lines, which name that socket.
pub(crate) fn containerd_shims(socket: &Path) -> Vec<libc::pid_t> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let address = socket.as_os_str().as_bytes();
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| {
            let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.first()
                .is_some_and(|a| a.ends_with(b"containerd-shim-runc-v2"))
                && args
                    .windows(2)
                    .any(|w| w[0] == b"-address" && w[1] == address)
        })
        .collect()
}

/// SIGTERM to our child `child` (named `what` in the warning), then up to `timeout` for it to
/// exit, then SIGKILL; reaped either way.
pub(crate) fn terminate(mut child: Child, what: &str, timeout: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: kill(2) on our own child, not yet reaped, so the PID cannot have been reused.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("warning: {what} ignored SIGTERM for {timeout:?}: SIGKILL");
    let _ = child.kill();
    let _ = child.wait();
}
