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

/// Reads one process. `NotFound` when it does not exist (or exited and was reaped),
/// `InvalidData` when its `stat` is not in proc(5)'s format.
pub fn read_process(proc_root: &Path, pid: u32) -> io::Result<ProcfsProcess> {
    let dir = proc_root.join(pid.to_string());
    let stat = fs::read(dir.join("stat"))?;
    let stat = parse_stat(&String::from_utf8_lossy(&stat)).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("malformed {}", dir.join("stat").display()),
        )
    })?;
    let cgroups = parse_proc_cgroup(&String::from_utf8_lossy(&fs::read(dir.join("cgroup"))?));
    Ok(ProcfsProcess {
        start_boottime_ns: clock::ticks_to_ns(stat.start_ticks),
        comm: stat.comm,
        ppid: stat.ppid,
        cgroups,
    })
}

/// The start time of task `pid` (process or thread) in ns since boot, at clock-tick
/// resolution; `None` when no task has this id.
pub fn start_time_ns(proc_root: &Path, pid: u32) -> Option<u64> {
    let stat = fs::read(proc_root.join(pid.to_string()).join("stat")).ok()?;
    parse_stat(&String::from_utf8_lossy(&stat)).map(|s| clock::ticks_to_ns(s.start_ticks))
}

/// What the identity service uses of a `/proc/<pid>/stat` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatFields {
    /// Field 2, without its parentheses.
    pub comm: String,
    /// Field 4.
    pub ppid: u32,
    /// Field 22, `starttime`, in clock ticks since boot.
    pub start_ticks: u64,
}

/// Parses a `/proc/<pid>/stat` line; `None` when it is not in proc(5)'s format. The command
/// name (field 2) is any 16 bytes a process chose (`PR_SET_NAME`), spaces and parentheses
/// included, so it runs from the first `(` to the last `)`, and the fields after the last
/// `)` are counted from there. (Read lossily: a name need not be UTF-8.)
pub fn parse_stat(text: &str) -> Option<StatFields> {
    let (head, rest) = text.rsplit_once(')')?;
    let (_pid, comm) = head.split_once('(')?;
    let mut fields = rest.split_ascii_whitespace();
    let _state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    // Fields 5 to 21 come between the parent PID and the start time.
    let start_ticks = fields.nth(17)?.parse().ok()?;
    Some(StatFields {
        comm: comm.to_owned(),
        ppid,
        start_ticks,
    })
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

    /// Found by the `procfs_files` fuzz target: a `stat` cut short after the command name
    /// made the procfs crate's parser slice out of bounds and panic.
    #[test]
    fn a_truncated_stat_is_invalid_data_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("7")).unwrap();
        std::fs::write(dir.path().join("7/cgroup"), "0::/\n").unwrap();
        for stat in [
            "1%(process@api)",
            "(",
            ")(",
            "7 (sh)",
            "7 (sh) S",
            "7 (sh) S x",
        ] {
            std::fs::write(dir.path().join("7/stat"), stat).unwrap();
            let err = read_process(dir.path(), 7).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{stat:?}");
            assert_eq!(start_time_ns(dir.path(), 7), None, "{stat:?}");
        }
    }

    /// A command name is bytes, not UTF-8: such a process is still found, with its start time.
    #[test]
    fn a_command_name_that_is_not_utf8_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("7")).unwrap();
        std::fs::write(dir.path().join("7/cgroup"), "0::/a\n").unwrap();
        let mut stat = b"7 (x\xff) y) S 3 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 250 0 0\n".to_vec();
        std::fs::write(dir.path().join("7/stat"), &stat).unwrap();
        let process = read_process(dir.path(), 7).unwrap();
        assert_eq!(process.comm, "x\u{fffd}) y");
        assert_eq!(process.ppid, 3);
        assert_eq!(process.start_boottime_ns, clock::ticks_to_ns(250));
        assert_eq!(process.cgroups[0].path, "/a");
        assert_eq!(start_time_ns(dir.path(), 7), Some(clock::ticks_to_ns(250)));
        stat.truncate(20);
        std::fs::write(dir.path().join("7/stat"), &stat).unwrap();
        assert!(read_process(dir.path(), 7).is_err());
    }

    #[test]
    fn a_missing_pid_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_process(dir.path(), 12345).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
