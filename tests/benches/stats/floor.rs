//! The floor: what the kernel's part of a collection costs with nothing else around it.

use std::{
    fs,
    path::PathBuf,
    time::{Duration, Instant},
};

use crate::{collect::Sample, fleet::Fleet};

/// The cgroup files the eBPF daemon reads per container in a full collection on a hybrid host,
/// by v1 controller (`cgroupfs/reader/`): IO counters are left out (the kernel programs
/// count IO) and so are the parents' files (the daemon keeps parents' limits for a second).
/// The one-number files of `memory`, `cpu`, `pids` and `cpuset` (usage, peak, failcnt, kmem,
/// soft limit, shares, quota, `cpu.stat`, `pids.*`, `cpuset.effective_cpus`) are not read
/// either: the daemon's kernel cgroup walk gives them, and its cost (one walk per hierarchy)
/// is in the daemon's figure, not in the floor.
pub(crate) const V1_FILES: [(&str, &str); 3] = [
    ("cpuacct", "cpuacct.usage"),
    ("cpuacct", "cpuacct.stat"),
    ("memory", "memory.stat"),
];
/// The same in the container's v2 directory: pressure on a hybrid host (the v1 controllers
/// give the rest); on a v2-only host also the files the kernel walk of the v2 hierarchy does
/// not replace (`cpu.stat`, `memory.stat`, `memory.events`: per-CPU data). Files this host
/// lacks are skipped.
pub(crate) const V2_PRESSURE_FILES: [&str; 3] = ["cpu.pressure", "memory.pressure", "io.pressure"];
pub(crate) const V2_FILES: [&str; 3] = ["cpu.stat", "memory.stat", "memory.events"];

/// The bench itself reading, for the first `size` containers and in the daemon's order, the
/// cgroup files the daemon reads (through descriptors held open, `pread` at offset 0, no
/// parsing) and `stat()`ing each sleeper's `/proc/<pid>/fd` (its open-files count): the
/// kernel's share of a collection, which no daemon can go below by reading cgroupfs.
pub(crate) struct Floor {
    pub files: Vec<fs::File>,
    pub fd_dirs: Vec<PathBuf>,
}

impl Floor {
    pub(crate) fn open(fleet: &Fleet, size: usize) -> Self {
        raise_nofile_to_hard();
        let v2 = fleet.cgroup.v2_dir();
        let v2_files: Vec<&str> = if fleet.controllers.is_empty() {
            [&V2_FILES[..], &V2_PRESSURE_FILES[..]].concat()
        } else {
            V2_PRESSURE_FILES.to_vec()
        };
        let mut files = Vec::new();
        for id in &fleet.ids[..size] {
            let mut paths: Vec<PathBuf> = V1_FILES
                .iter()
                .filter(|(controller, _)| fleet.controllers.contains(controller))
                .map(|(controller, file)| fleet.cgroup.v1_dir(controller).join(id).join(file))
                .collect();
            paths.extend(v2_files.iter().map(|file| v2.join(id).join(file)));
            for path in paths {
                match fs::File::open(&path) {
                    Ok(file) => files.push(file),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => panic!("floor: opening {}: {e}", path.display()),
                }
            }
        }
        let fd_dirs = fleet.children[..size]
            .iter()
            .map(|c| PathBuf::from(format!("/proc/{}/fd", c.pid())))
            .collect();
        Self { files, fd_dirs }
    }

    /// One pass: its wall time and this thread's CPU time.
    pub(crate) fn sample(&self) -> Sample {
        use std::os::unix::fs::FileExt as _;
        let mut buf = vec![0u8; 64 * 1024];
        let cpu_before = thread_cpu_self();
        let started = Instant::now();
        for file in &self.files {
            file.read_at(&mut buf, 0)
                .unwrap_or_else(|e| panic!("floor: pread: {e}"));
        }
        for dir in &self.fd_dirs {
            fs::metadata(dir).unwrap_or_else(|e| panic!("floor: stat {}: {e}", dir.display()));
        }
        Sample {
            wall: started.elapsed(),
            cpu: thread_cpu_self().saturating_sub(cpu_before),
            thread_exited: false,
        }
    }
}

/// The floor's samples for one size.
pub(crate) struct FloorRow {
    pub size: usize,
    /// Cgroup files read per pass (all containers).
    pub files: usize,
    pub samples: Vec<Sample>,
}

/// CPU time of the calling thread.
pub(crate) fn thread_cpu_self() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the struct we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// The floor holds ~6 descriptors per container (on hybrid and v2-only hosts): lift the soft limit
/// to the hard one.
pub(crate) fn raise_nofile_to_hard() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls with valid pointers.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit);
        }
    }
}
