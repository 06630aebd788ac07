//! Open file descriptors of a process: the entries of `/proc/<pid>/fd`.
//!
//! Counting costs one `getdents` pass per process and no `readlink`, which is why open files
//! are a separate capability in the seed ("incurs a high performance penalty").
use std::io;
use std::path::Path;

/// Number of open descriptors of `pid`. `NotFound` when the process is gone; a zombie has
/// none (its directory lists nothing).
pub fn count_fds(proc_root: &Path, pid: u32) -> io::Result<u64> {
    let mut count = 0u64;
    for entry in std::fs::read_dir(proc_root.join(pid.to_string()).join("fd"))? {
        entry?;
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use super::*;

    #[test]
    fn counts_own_descriptors_exactly() {
        let proc_root = Path::new("/proc");
        let me = std::process::id();
        let before = count_fds(proc_root, me).unwrap();
        let held: Vec<File> = (0..5)
            .map(|_| File::open("/proc/self/stat").unwrap())
            .collect();
        // Other test threads of this process may open files meanwhile, so the bounds are
        // one-sided; the exact count is asserted by the container integration tests.
        let during = count_fds(proc_root, me).unwrap();
        assert!(during >= before + 5, "{before} then {during}");
        drop(held);
        let after = count_fds(proc_root, me).unwrap();
        assert!(after < during, "{during} then {after}");
    }

    #[test]
    fn missing_process_is_not_found() {
        let err = count_fds(Path::new("/proc"), u32::MAX - 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
