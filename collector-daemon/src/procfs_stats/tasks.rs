//! A cgroup's processes and threads, nested cgroups included.
//!
//! `cgroup.procs` lists only the processes directly in one cgroup: a container that creates
//! sub-cgroups (systemd inside, podman's `container/` leaf, CRI-O) keeps its processes below
//! the container's root, so the walk goes down the tree.
use std::{collections::BTreeSet, io, path::Path};

/// Every PID in `dir`'s `cgroup.procs` and in those of all its descendants, sorted, without
/// duplicates. Cgroups that vanish during the walk are skipped; `dir` itself missing is
/// `NotFound`.
pub fn cgroup_pids_recursive(dir: &Path) -> io::Result<Vec<u32>> {
    let mut pids = BTreeSet::new();
    read_procs(dir, &mut pids)?;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let child = entry.path();
                // Gone since readdir: nothing left in it to count.
                let _ = read_procs(&child, &mut pids);
                pending.push(child);
            }
        }
    }
    Ok(pids.into_iter().collect())
}

fn read_procs(dir: &Path, pids: &mut BTreeSet<u32>) -> io::Result<()> {
    let text = std::fs::read_to_string(dir.join("cgroup.procs"))?;
    pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    Ok(())
}

/// Threads of `pid`: the `Threads:` line of `/proc/<pid>/status`.
pub fn thread_count(proc_root: &Path, pid: u32) -> io::Result<u64> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Threads: line"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_nested_cgroup_dirs() {
        let root = tempfile::tempdir().unwrap();
        let nested = root.path().join("a/b");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(root.path().join("cgroup.procs"), "10\n11\n").unwrap();
        std::fs::write(root.path().join("a/cgroup.procs"), "").unwrap();
        std::fs::write(nested.join("cgroup.procs"), "12\n10\n").unwrap();
        assert_eq!(
            cgroup_pids_recursive(root.path()).unwrap(),
            vec![10, 11, 12]
        );
    }

    #[test]
    fn missing_cgroup_is_not_found() {
        let err = cgroup_pids_recursive(Path::new("/nonexistent/cgroup")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn own_thread_count() {
        let n = thread_count(Path::new("/proc"), std::process::id()).unwrap();
        assert!(n >= 1);
    }
}
