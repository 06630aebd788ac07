//! Processes for tests: started inside a test cgroup from their first instruction (they join
//! it between fork and exec), killed and reaped by a guard, and read back from /proc.
//!
//! Writing "0" to a `cgroup.procs` file moves the writing process (v1 and v2 alike), which is
//! what the child does in `pre_exec`, with a raw open/write on paths prepared before the fork.

use std::{
    ffi::CString,
    io,
    ops::{Deref, DerefMut},
    os::unix::{ffi::OsStrExt as _, process::CommandExt as _},
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use super::cgroup::TestCgroup;

/// A child process that is killed (SIGKILL) and reaped when the guard drops. Derefs to
/// [`Child`].
#[derive(Debug)]
pub struct ChildGuard(Child);

impl ChildGuard {
    #[must_use]
    pub fn new(child: Child) -> Self {
        Self(child)
    }

    /// The child's PID.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Deref for ChildGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // std's kill is SIGKILL by PID, and a no-op once the child has been reaped (so it never
        // hits a reused PID).
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Makes the child of `cmd` get `signal` when the thread that spawns it exits
/// (`PR_SET_PDEATHSIG`), and fail to start if its parent is already gone (nothing would ever
/// signal it then). Spawn from a thread that lives as long as the process to tie the child to
/// the process.
pub fn die_with_parent(cmd: &mut Command, signal: libc::c_int) {
    let parent = libc::pid_t::try_from(std::process::id()).expect("pid fits pid_t");
    let tie = move || -> io::Result<()> {
        // SAFETY: prctl and getppid are async-signal-safe syscalls.
        unsafe {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
        }
        Ok(())
    };
    // SAFETY: the closure only makes async-signal-safe calls and allocates nothing.
    unsafe { cmd.pre_exec(tie) };
}

/// Starts `argv` (program looked up in PATH, stdin closed, output inherited) inside `cg`, in
/// every hierarchy the guard has, from before its first instruction.
#[must_use]
pub fn spawn_in_cgroup(cg: &TestCgroup, argv: &[&str]) -> ChildGuard {
    let (program, rest) = argv.split_first().expect("argv needs a program");
    let mut cmd = Command::new(program);
    cmd.args(rest).stdin(Stdio::null());
    spawn_command_in_cgroup(cg, cmd)
}

/// As [`spawn_in_cgroup`] for a prepared [`Command`].
#[must_use]
pub fn spawn_command_in_cgroup(cg: &TestCgroup, mut cmd: Command) -> ChildGuard {
    enter_before_exec(&mut cmd, &cg.procs_files());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?} in {cg:?}: {e}"));
    ChildGuard::new(child)
}

/// Makes the child of `cmd` write "0" to each of `procs_files` (the `cgroup.procs` of the
/// cgroups to join, e.g. of nested directories) before it execs; spawning fails if it cannot.
pub fn enter_before_exec(cmd: &mut Command, procs_files: &[PathBuf]) {
    let paths: Vec<CString> = procs_files
        .iter()
        .map(|p| CString::new(p.as_os_str().as_bytes()).expect("no NUL in cgroup paths"))
        .collect();
    let join = move || -> io::Result<()> {
        for path in &paths {
            // SAFETY: open/write/close are async-signal-safe; `path` is NUL-terminated.
            unsafe {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                let err = io::Error::last_os_error();
                libc::close(fd);
                if written != 1 {
                    return Err(err);
                }
            }
        }
        Ok(())
    };
    // SAFETY: the closure only makes async-signal-safe calls and allocates nothing
    // (io::Error::last_os_error does not allocate).
    unsafe { cmd.pre_exec(join) };
}

/// The start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat), which
/// together with the PID identifies a process across PID reuse.
pub fn start_time_ticks(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start_time(&stat).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no start time in /proc/{pid}/stat: {stat:?}"),
        )
    })
}

/// Field 22 of a /proc/<pid>/stat line. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from the last `)`.
#[must_use]
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // after_comm starts with field 3 (state), so field 22 is the 20th.
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// The v2 cgroup of `pid` as /proc/<pid>/cgroup shows it (the `0::` line), e.g. `/` or
/// `/docker/<id>`.
pub fn cgroup_v2_path(pid: u32) -> io::Result<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no cgroup v2 line in /proc/{pid}/cgroup: {text:?}"),
            )
        })
}

/// `sleep 3600`, quiet, and killed by the kernel if this process dies before its guards run
/// (for benches that start many; spawn it from the main thread, which lives as long as the
/// process, since the parent-death signal follows the spawning thread).
#[must_use]
pub fn bench_sleeper() -> Command {
    let mut cmd = Command::new("sleep");
    cmd.arg("3600")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    die_with_parent(&mut cmd, libc::SIGKILL);
    cmd
}

/// The `n`th random-looking 64-hex container id of `state` (std's randomly keyed hasher saves
/// a dependency on a random number crate).
#[must_use]
pub fn random_container_id(state: &std::hash::RandomState, n: usize) -> String {
    use std::{fmt::Write as _, hash::BuildHasher as _};
    (0..4u8).fold(String::with_capacity(64), |mut id, part| {
        let _ = write!(id, "{:016x}", state.hash_one((n, part)));
        id
    })
}

#[cfg(test)]
mod tests {
    use std::{path::Path, process::Command};

    use super::{ChildGuard, cgroup_v2_path, parse_start_time, start_time_ticks};

    #[test]
    fn start_time_survives_odd_command_names() {
        let stat = "4242 (a b) c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000 100 18446744073709551615";
        assert_eq!(parse_start_time(stat), Some(987_654));
        assert_eq!(parse_start_time("4242 (x) S 1"), None);
    }

    #[test]
    fn start_time_of_a_child_is_not_before_ours() {
        let child = ChildGuard::new(Command::new("sleep").arg("100").spawn().unwrap());
        let ours = start_time_ticks(std::process::id()).unwrap();
        let theirs = start_time_ticks(child.pid()).unwrap();
        assert!(ours > 0 && theirs >= ours, "ours {ours}, theirs {theirs}");
    }

    #[test]
    fn guard_kills_and_reaps() {
        let child = ChildGuard::new(Command::new("sleep").arg("100").spawn().unwrap());
        let proc_dir = format!("/proc/{}", child.pid());
        assert!(Path::new(&proc_dir).exists());
        drop(child);
        assert!(!Path::new(&proc_dir).exists(), "{proc_dir} still exists");
    }

    #[test]
    fn reads_our_own_v2_cgroup() {
        if std::fs::read_to_string("/proc/self/cgroup").is_ok_and(|t| t.contains("0::")) {
            assert!(cgroup_v2_path(std::process::id()).unwrap().starts_with('/'));
        }
    }
}
