//! CPU pinning, for the same-CPU row.

use std::{fs, io};

/// Pins every thread of the daemon, and the calling thread (so the client threads it spawns),
/// to one CPU; restores the previous CPU sets on drop.
pub(crate) struct SameCpu {
    pub daemon: u32,
    pub daemon_cpus: libc::cpu_set_t,
    pub own_cpus: libc::cpu_set_t,
}

impl SameCpu {
    pub(crate) fn pin(daemon: u32) -> Self {
        let pid = libc::pid_t::try_from(daemon).expect("pid fits pid_t");
        let own_cpus = affinity(0).expect("reading our CPU set");
        let daemon_cpus = affinity(pid).expect("reading the daemon's CPU set");
        let cpu = (0..usize::try_from(libc::CPU_SETSIZE).unwrap_or(0))
            // SAFETY: CPU_ISSET reads a bit of a valid set, the index below CPU_SETSIZE.
            .find(|&cpu| unsafe {
                libc::CPU_ISSET(cpu, &own_cpus) && libc::CPU_ISSET(cpu, &daemon_cpus)
            })
            .expect("the daemon and the bench share a CPU");
        // SAFETY: cpu_set_t is plain old data: all zeroes is the empty set.
        let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: sets a bit below CPU_SETSIZE in a valid set.
        unsafe { libc::CPU_SET(cpu, &mut one) };
        // The guard exists before anything is pinned, so a failure below still restores.
        let guard = Self {
            daemon,
            daemon_cpus,
            own_cpus,
        };
        set_affinity(0, &one).expect("pinning the bench's thread");
        for tid in threads_of(daemon) {
            set_affinity(tid, &one).expect("pinning the daemon's threads");
        }
        guard
    }
}

impl Drop for SameCpu {
    fn drop(&mut self) {
        // Listed again: threads the daemon started while pinned inherited the one CPU.
        let restored = threads_of(self.daemon)
            .into_iter()
            .try_for_each(|tid| set_affinity(tid, &self.daemon_cpus))
            .and_then(|()| set_affinity(0, &self.own_cpus));
        if let Err(e) = restored {
            eprintln!("warning: restoring CPU sets after the same-CPU row: {e}");
        }
    }
}

/// The CPU set of thread `tid` (0: the calling thread).
pub(crate) fn affinity(tid: libc::pid_t) -> io::Result<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain old data; the kernel fills at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(tid, std::mem::size_of_val(&set), &raw mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(set)
    }
}

/// Sets the CPU set of thread `tid` (0: the calling thread); a thread that exited meanwhile
/// is no error.
pub(crate) fn set_affinity(tid: libc::pid_t, set: &libc::cpu_set_t) -> io::Result<()> {
    // SAFETY: passes a valid set of the size given.
    if unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(set), set) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        return Ok(());
    }
    Err(err)
}

/// The thread ids of process `pid`.
pub(crate) fn threads_of(pid: u32) -> Vec<libc::pid_t> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}
