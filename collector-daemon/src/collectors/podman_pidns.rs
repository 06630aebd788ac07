//! Which Podman container a process is in when no cgroup tells it: rootless Podman on cgroup
//! v1 (or without a systemd user session) creates no cgroup, so the container's processes
//! stay in the cgroups of whatever started them. Podman gives every container its own PID
//! namespace unless told otherwise (`--pid`), and lists its main process (`Pid`); a process
//! in that namespace is in that container.
//!
//! The answer is given only when it is certain: the main process is the one listed (same
//! PID and start time, read after its namespace), so its namespace lived all along and no
//! other namespace can have had its inode (nsfs inodes are reused only after a namespace is
//! freed); exactly one container has that namespace (a pod sharing one, `--pid=container:`,
//! is ambiguous); it is not the host's (`--pid=host`); and for a rootless user's container,
//! the main process's user namespace is owned by that user (`NS_GET_OWNER_UID`, Linux 4.11),
//! so no user can claim another's processes.
use std::{
    fs,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::Path,
};

use super::podman_sockets::RunningContainer;
use crate::identity::procfs;

/// `NS_GET_OWNER_UID`: `_IO(0xb7, 0x4)` from `<linux/nsfs.h>`.
const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;

/// A namespace's identity: the nsfs device and inode of `/proc/<pid>/ns/<kind>`.
type NsId = (u64, u64);

fn namespace(proc_root: &Path, pid: u32, kind: &str) -> Option<NsId> {
    let meta = fs::metadata(proc_root.join(pid.to_string()).join("ns").join(kind)).ok()?;
    Some((meta.dev(), meta.ino()))
}

/// The uid that owns the user namespace of `pid`.
pub fn user_namespace_owner(proc_root: &Path, pid: u32) -> Option<u32> {
    let file = fs::File::open(proc_root.join(pid.to_string()).join("ns/user")).ok()?;
    let mut uid: libc::uid_t = 0;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t through the pointer, which is valid for it.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_OWNER_UID, &raw mut uid) };
    (rc == 0).then_some(uid)
}

/// The one container of `running` whose main process's PID namespace `pid` is in, under
/// the conditions the module states; `None` otherwise.
pub fn container_of(proc_root: &Path, pid: u32, running: &[RunningContainer]) -> Option<String> {
    let target = namespace(proc_root, pid, "pid")?;
    if namespace(proc_root, 1, "pid") == Some(target) {
        return None;
    }
    let mut found = running.iter().filter(|c| is_in(proc_root, target, c));
    let first = found.next()?;
    found.next().is_none().then(|| first.id.clone())
}

/// Whether container `c`'s main process is (still) the one listed and its PID namespace is
/// `target`.
fn is_in(proc_root: &Path, target: NsId, c: &RunningContainer) -> bool {
    let (Some(main), Some(start)) = (c.pid, c.start_time_ns) else {
        return false;
    };
    if namespace(proc_root, main, "pid") != Some(target) {
        return false;
    }
    if let Some(uid) = c.rootless_uid
        && user_namespace_owner(proc_root, main) != Some(uid)
    {
        return false;
    }
    // Read last: the process whose namespace was read is the one listed.
    procfs::start_time_ns(proc_root, main) == Some(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> u32 {
        std::process::id()
    }

    fn running(pid: u32, rootless_uid: Option<u32>) -> RunningContainer {
        RunningContainer {
            id: format!("c{pid}"),
            pid: Some(pid),
            start_time_ns: procfs::start_time_ns(Path::new("/proc"), pid),
            rootless_uid,
        }
    }

    #[test]
    fn the_hosts_pid_namespace_is_no_container() {
        // The test runs in the host's PID namespace (pid 1's): whatever is listed, no answer.
        let proc_root = Path::new("/proc");
        if namespace(proc_root, 1, "pid") != namespace(proc_root, me(), "pid") {
            return;
        }
        assert_eq!(container_of(proc_root, me(), &[running(me(), None)]), None);
    }

    #[test]
    fn a_namespace_is_checked_against_the_listed_process() {
        let proc_root = Path::new("/proc");
        let target = namespace(proc_root, me(), "pid").unwrap();
        let listed = running(me(), None);
        assert!(is_in(proc_root, target, &listed));
        // Another start time: the PID was reused, the namespace is not the container's.
        let reused = RunningContainer {
            start_time_ns: listed.start_time_ns.map(|t| t + 1),
            ..listed.clone()
        };
        assert!(!is_in(proc_root, target, &reused));
        // A rootless user's container whose process is in a user namespace another owns.
        // SAFETY: getuid cannot fail.
        let other = unsafe { libc::getuid() } + 1;
        assert!(!is_in(proc_root, target, &running(me(), Some(other))));
        let owner = user_namespace_owner(proc_root, me()).unwrap();
        assert!(is_in(proc_root, target, &running(me(), Some(owner))));
        // No main process: nothing to check against.
        let none = RunningContainer {
            pid: None,
            ..listed
        };
        assert!(!is_in(proc_root, target, &none));
    }
}
