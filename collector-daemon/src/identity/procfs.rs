//! The procfs view of one process: start time and cgroups from `/proc/<pid>/{stat,cgroup}`.
//! Used where the kernel programs are off (`--no-ebpf`) and for PIDs the kernel index does
//! not hold (thread ids). `/proc/<tid>` exists for every thread, though `readdir` hides it.
use std::{fs, io, path::Path};

use crate::{
    cgroupfs::mounts::{ProcCgroupLine, parse_proc_cgroup},
    clock,
};

/// One process as procfs shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcfsProcess {
    /// Start time in ns since boot, at clock-tick resolution (`stat` field 22 × 10⁹/`USER_HZ`).
    pub start_boottime_ns: u64,
    /// Command name.
    pub comm: String,
    /// Parent PID.
    pub ppid: u32,
    /// One line per hierarchy from `/proc/<pid>/cgroup`.
    pub cgroups: Vec<ProcCgroupLine>,
}

/// Reads one process. `NotFound` when it does not exist (or exited and was reaped).
pub fn read_process(proc_root: &Path, pid: u32) -> io::Result<ProcfsProcess> {
    let dir = proc_root.join(pid.to_string());
    let process = procfs::process::Process::new_with_root(dir.clone()).map_err(to_io)?;
    let stat = process.stat().map_err(to_io)?;
    let cgroups = parse_proc_cgroup(&fs::read_to_string(dir.join("cgroup"))?);
    Ok(ProcfsProcess {
        start_boottime_ns: clock::ticks_to_ns(stat.starttime),
        comm: stat.comm,
        ppid: u32::try_from(stat.ppid).unwrap_or(0),
        cgroups,
    })
}

/// The start time of task `pid` (process or thread) in ns since boot, at clock-tick
/// resolution; `None` when no task has this id.
pub fn start_time_ns(proc_root: &Path, pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    // Fields after the command name, which may hold spaces and parentheses: count from the
    // last ')'. Field 22 (starttime) is the 20th after it.
    let ticks: u64 = stat
        .rsplit_once(')')?
        .1
        .split_ascii_whitespace()
        .nth(19)?
        .parse()
        .ok()?;
    Some(clock::ticks_to_ns(ticks))
}

/// `PF_EXITING` from `include/linux/sched.h`: set by `do_exit()` before anything else of the
/// exit, the `sched_process_exit` tracepoint included.
const PF_EXITING: u32 = 0x4;

/// Whether process `pid` that started at `start_boottime_ns` has begun to exit, or is gone:
/// `stat` unreadable, another start time (a reused PID), a zombie or dead state, or its
/// leader's `PF_EXITING` flag set.
pub fn exiting_or_gone(proc_root: &Path, pid: u32, start_boottime_ns: u64) -> bool {
    let Ok(stat) = procfs::process::Process::new_with_root(proc_root.join(pid.to_string()))
        .and_then(|p| p.stat())
    else {
        return true;
    };
    clock::ticks_to_ns(stat.starttime) != start_boottime_ns
        || matches!(stat.state, 'Z' | 'X' | 'x')
        || stat.flags & PF_EXITING != 0
}

/// PIDs of every process (thread-group leaders) under `proc_root`.
pub fn list_pids(proc_root: &Path) -> io::Result<Vec<u32>> {
    Ok(fs::read_dir(proc_root)?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect())
}

fn to_io(e: procfs::ProcError) -> io::Error {
    match e {
        procfs::ProcError::NotFound(_) => io::Error::new(io::ErrorKind::NotFound, e),
        procfs::ProcError::PermissionDenied(_) => {
            io::Error::new(io::ErrorKind::PermissionDenied, e)
        }
        procfs::ProcError::Io(inner, _) => inner,
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_not_exiting_and_a_reaped_child_is_gone() {
        let me = read_process(Path::new("/proc"), std::process::id()).unwrap();
        assert!(!exiting_or_gone(
            Path::new("/proc"),
            std::process::id(),
            me.start_boottime_ns
        ));
        assert!(exiting_or_gone(
            Path::new("/proc"),
            std::process::id(),
            me.start_boottime_ns + 1
        ));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let start = read_process(Path::new("/proc"), pid).map(|p| p.start_boottime_ns);
        child.wait().unwrap();
        if let Ok(start) = start {
            assert!(exiting_or_gone(Path::new("/proc"), pid, start));
        }
    }

    #[test]
    fn reads_this_process() {
        let me = read_process(Path::new("/proc"), std::process::id()).unwrap();
        assert!(me.start_boottime_ns > 0);
        assert!(
            me.cgroups
                .iter()
                .any(|l| l.hierarchy_id == 0 || !l.controllers.is_empty())
        );
        assert!(
            list_pids(Path::new("/proc"))
                .unwrap()
                .contains(&std::process::id())
        );
    }

    #[test]
    fn start_times_agree_with_the_full_read() {
        let me = std::process::id();
        let full = read_process(Path::new("/proc"), me).unwrap();
        assert_eq!(
            start_time_ns(Path::new("/proc"), me),
            Some(full.start_boottime_ns)
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("7")).unwrap();
        std::fs::write(
            dir.path().join("7/stat"),
            "7 (a) b) c) S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 250 0 0",
        )
        .unwrap();
        assert_eq!(start_time_ns(dir.path(), 7), Some(clock::ticks_to_ns(250)));
        assert_eq!(start_time_ns(dir.path(), 8), None);
    }

    #[test]
    fn a_missing_pid_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_process(dir.path(), 12345).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
