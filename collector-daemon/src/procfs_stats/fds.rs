//! Open file descriptors of a process: how many entries `/proc/<pid>/fd` has.
//!
//! Since Linux 6.2 (commit f1f1f2569901, "fs/proc: report open files as size in `stat()` for
//! `/proc/pid/fd`") `stat()` of that directory gives the number of open descriptors as its size:
//! one `statx`, where listing the directory costs an open, two `getdents` and a dentry lookup per
//! descriptor (`proc_fill_cache`). Older kernels report size 0 there, so the directory is listed
//! instead. Which one applies is found once, on this process's own `fd` directory (which always
//! holds at least the descriptor being used to look), and only on a real procfs.
use std::{
    io,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

/// `PROC_SUPER_MAGIC` from `include/uapi/linux/magic.h`.
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// Counts open descriptors of processes under one procfs mount.
#[derive(Debug)]
pub struct FdCounter {
    proc_root: PathBuf,
    /// The kernel reports the count as the size of `/proc/<pid>/fd` (Linux ≥ 6.2): then the
    /// procfs root, held open, so that each count is one `statx` of `<pid>/fd` relative to it
    /// (no walk from `/` and across the mount point, no path built on the heap).
    size_from: Option<std::fs::File>,
}

impl FdCounter {
    /// A counter for the procfs mounted at `proc_root`.
    #[must_use]
    pub fn new(proc_root: &Path) -> Self {
        let size_from = if size_is_count(proc_root) {
            std::fs::File::open(proc_root).ok()
        } else {
            None
        };
        Self {
            proc_root: proc_root.to_owned(),
            size_from,
        }
    }

    /// A counter that always lists the directory (tests: the pre-6.2 path).
    #[cfg(test)]
    fn listing(proc_root: &Path) -> Self {
        Self {
            proc_root: proc_root.to_owned(),
            size_from: None,
        }
    }

    /// Number of open descriptors of `pid`. `NotFound` when the process is gone; a zombie has
    /// none.
    pub fn count(&self, pid: u32) -> io::Result<u64> {
        if let Some(root) = &self.size_from {
            return fd_dir_size(root, pid);
        }
        let dir = self.proc_root.join(pid.to_string()).join("fd");
        let mut count = 0u64;
        for entry in std::fs::read_dir(dir)? {
            entry?;
            count += 1;
        }
        Ok(count)
    }
}

/// The size of `<pid>/fd` under the procfs root `root`: `statx` relative to it, the path
/// written into a stack buffer.
fn fd_dir_size(root: &std::fs::File, pid: u32) -> io::Result<u64> {
    use std::io::Write as _;
    // "4294967295/fd" and its NUL fit in 16 bytes.
    let mut path = [0u8; 16];
    let mut cursor = io::Cursor::new(&mut path[..]);
    write!(cursor, "{pid}/fd").expect("a u32 and \"/fd\" fit in 15 bytes");
    // SAFETY: statx reads the NUL-terminated path (the buffer is zeroed past what was
    // written) and fills the zeroed struct we own.
    let (rc, size) = unsafe {
        let mut stx: libc::statx = std::mem::zeroed();
        let rc = libc::statx(
            root.as_raw_fd(),
            path.as_ptr().cast(),
            0,
            libc::STATX_SIZE,
            &raw mut stx,
        );
        (rc, stx.stx_size)
    };
    if rc == 0 {
        Ok(size)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether `stat()` of a `fd` directory under `proc_root` gives the descriptor count: the mount
/// must be a procfs (a directory elsewhere has a block size as its size), and our own `fd`
/// directory must report more than 0 (we hold at least the descriptor we look with; on
/// kernels before 6.2 it reports 0).
fn size_is_count(proc_root: &Path) -> bool {
    let Ok(root) = std::fs::File::open(proc_root) else {
        return false;
    };
    // SAFETY: fstatfs fills the zeroed struct we pass for a descriptor we own.
    let is_procfs = unsafe {
        let mut fs: libc::statfs = std::mem::zeroed();
        #[expect(
            clippy::useless_conversion,
            reason = "f_type is __fsword_t: i64 on x86-64, narrower on some architectures"
        )]
        let is_procfs = libc::fstatfs(root.as_raw_fd(), &raw mut fs) == 0
            && i64::from(fs.f_type) == PROC_SUPER_MAGIC;
        is_procfs
    };
    is_procfs && std::fs::metadata(proc_root.join("self").join("fd")).is_ok_and(|m| m.len() > 0)
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use super::*;

    fn counters() -> [FdCounter; 2] {
        let proc_root = Path::new("/proc");
        [FdCounter::new(proc_root), FdCounter::listing(proc_root)]
    }

    #[test]
    fn counts_own_descriptors_exactly() {
        let me = std::process::id();
        for counter in counters() {
            let before = counter.count(me).unwrap();
            let held: Vec<File> = (0..64)
                .map(|_| File::open("/proc/self/stat").unwrap())
                .collect();
            // Other test threads of this process open and close files meanwhile (a few at a
            // time), so the bounds leave them room; the exact count is asserted by the
            // container integration tests.
            let during = counter.count(me).unwrap();
            assert!(during >= before + 48, "{counter:?}: {before} then {during}");
            drop(held);
            let after = counter.count(me).unwrap();
            assert!(after + 48 <= during, "{counter:?}: {during} then {after}");
        }
    }

    #[test]
    fn both_ways_agree_on_a_quiet_process() {
        // A child that holds a known set of descriptors and does nothing else.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Until it sleeps, the child holds the descriptors it inherited, then those its
        // loader opens and closes.
        crate::test_support::wait_until_asleep(child.id());
        let [by_size, listing] = counters();
        let a = by_size.count(child.id());
        let b = listing.count(child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        // stdin, stdout, stderr, and whatever the test harness let it inherit (cargo's
        // jobserver pipe): the same either way.
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(a >= 3, "{a}");
        assert_eq!(a, b);
    }

    #[test]
    fn the_size_is_used_only_on_procfs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("self/fd")).unwrap();
        assert!(!size_is_count(dir.path()));
        assert_eq!(size_is_count(Path::new("/proc")), kernel_at_least(6, 2));
    }

    fn kernel_at_least(major: u32, minor: u32) -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut parts = release
            .trim()
            .split(['.', '-'])
            .map(|p| p.parse::<u32>().unwrap_or(0));
        (parts.next().unwrap(), parts.next().unwrap()) >= (major, minor)
    }

    #[test]
    fn missing_process_is_not_found() {
        for counter in counters() {
            let err = counter.count(u32::MAX - 1).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound);
        }
    }
}
