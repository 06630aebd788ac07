//! Helpers shared by the unit tests of several modules.
use std::time::{Duration, Instant};

/// How long a test waits for a condition before failing.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Polls `done` until it holds, or panics with `what` after [`TIMEOUT`]: tests wait for a
/// condition, never for a fixed time.
pub(crate) fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until process `pid` is blocked in `nanosleep`/`clock_nanosleep` (the first field of
/// `/proc/<pid>/syscall`): a `sleep` that has exec'd is still opening and closing files (the
/// dynamic loader, locale) until then.
pub(crate) fn wait_until_asleep(pid: u32) {
    wait_until("the child to block in its sleep", || {
        std::fs::read_to_string(format!("/proc/{pid}/syscall"))
            .ok()
            .and_then(|text| text.split_whitespace().next()?.parse::<i64>().ok())
            .is_some_and(|n| n == libc::SYS_nanosleep || n == libc::SYS_clock_nanosleep)
    });
}

/// A host for identity tests without root: a cgroup-v2 tree and a procfs of fixture files in
/// a temporary directory, and the identity service over them and a fake kernel.
pub(crate) struct FakeHost {
    dir: tempfile::TempDir,
}

impl FakeHost {
    /// An empty cgroup tree (its root only) and an empty procfs.
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::create_dir(dir.path().join("cgroup")).expect("cgroup root");
        std::fs::create_dir(dir.path().join("proc")).expect("proc root");
        Self { dir }
    }

    /// Where the cgroup-v2 hierarchy is "mounted".
    pub(crate) fn cgroup_root(&self) -> std::path::PathBuf {
        self.dir.path().join("cgroup")
    }

    /// The procfs root.
    pub(crate) fn proc_root(&self) -> std::path::PathBuf {
        self.dir.path().join("proc")
    }

    /// The layout of a host whose only cgroup mount is the fixture tree, read from a
    /// mountinfo line as discovery reads the host's.
    pub(crate) fn layout(&self) -> crate::cgroupfs::CgroupLayout {
        let mountinfo = format!(
            "30 23 0:26 / {} rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw\n",
            self.cgroup_root().display()
        );
        crate::cgroupfs::CgroupLayout::from_texts(&mountinfo, "0::/\n").expect("fixture layout")
    }

    /// Creates the cgroup directory `path` (from the hierarchy's root, parents included) and
    /// returns its id (inode).
    pub(crate) fn mkdir(&self, path: &str) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        let dir = self.cgroup_root().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).expect("cgroup directory");
        std::fs::metadata(&dir).expect("cgroup directory").ino()
    }

    /// Removes the (empty) cgroup directory `path`.
    pub(crate) fn rmdir(&self, path: &str) {
        std::fs::remove_dir(self.cgroup_root().join(path.trim_start_matches('/')))
            .expect("removing a cgroup directory");
    }

    /// Writes `/proc/<pid>/{stat,cgroup}` of a task that started `start_ticks` clock ticks
    /// after boot, in the v2 cgroup `cgroup`; replaces what was there.
    pub(crate) fn write_task(&self, pid: u32, comm: &str, start_ticks: u64, cgroup: &str) {
        let dir = self.proc_root().join(pid.to_string());
        std::fs::create_dir_all(&dir).expect("proc directory");
        // proc(5) field order; field 22 is the start time.
        let stat = format!(
            "{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194304 101 0 0 0 0 0 0 0 20 0 1 0 \
             {start_ticks} 3133440 384 18446744073709551615 1 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 \
             0 0 0 1 1 1 1 1 1 1 0\n"
        );
        std::fs::write(dir.join("stat"), stat).expect("stat");
        std::fs::write(dir.join("cgroup"), format!("0::{cgroup}\n")).expect("cgroup");
    }

    /// The identity service over this host and `kernel`, with a one-minute grace period.
    pub(crate) fn identity(
        &self,
        kernel: &std::sync::Arc<crate::ebpf::kernel_maps::fake::FakeKernel>,
    ) -> crate::identity::Identity {
        crate::identity::Identity::start_with(
            self.layout(),
            Some(std::sync::Arc::clone(kernel) as std::sync::Arc<dyn crate::ebpf::KernelMaps>),
            crate::identity::IdentityOptions {
                proc_root: self.proc_root(),
                exited_grace: Duration::from_mins(1),
            },
        )
    }
}
