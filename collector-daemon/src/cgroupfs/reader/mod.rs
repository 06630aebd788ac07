//! One container's CPU, memory, IO and PIDs stats from cgroupfs, on v1, v2 and hybrid hosts.
//!
//! Each controller is read where it is attached: the v1 hierarchy that has it, else the v2
//! directory when `cgroup.controllers` lists it. Pressure (PSI) comes from the v2 directory
//! whenever PSI is on, also on hybrid hosts: the `*.pressure` files are cgroup2 core files that
//! exist without any controller (and v1 has no equivalent). v2 `cpu.stat`'s usage keys are core
//! too, so CPU time is read from v2 when no v1 hierarchy has cpuacct.
//! Every file is read once per [`CgroupStatsReader::read`] through held descriptors ([`FileCache`]).
//!
//! [`CgroupStatsReader`] holds what outlives a read (descriptors, device names, the values
//! many containers share); one read is a `Pass` (`pass.rs`: file reads, v2 controllers,
//! pressure), whose sections are assembled in `cpu.rs`, `memory.rs`, `io.rs` and `pids.rs`.

mod cpu;
mod io;
mod memory;
mod pass;
mod pids;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use self::pass::Pass;
use super::{
    dirs::CgroupDirs,
    diskstats::DeviceNames,
    files::{DEFAULT_MAX_OPEN, FileCache},
    kernel_values::KernelCgroupValues,
    mounts::CgroupLayout,
};
use crate::{
    stats::{ContainerStats, IoStats},
    ttl_map::TtlMap,
};

/// Where the online CPUs are listed (sysfs, Documentation/ABI/testing/sysfs-devices-system-cpu).
pub const ONLINE_CPUS: &str = "/sys/devices/system/cpu/online";

/// How long a file learnt to be missing from this kernel is skipped before it is tried again
/// (a module such as bfq can register its files later).
const ABSENT_RETRY: Duration = Duration::from_mins(5);

/// How long values shared by many containers (host CPUs, a parent's CPU limit) are reused.
const SHARED_TTL: Duration = Duration::from_secs(1);

/// A parent cgroup's CPU-limit directories: (quota directory, cpuset directory).
type ParentKey = (PathBuf, Option<PathBuf>);

/// Reads [`ContainerStats`] from cgroupfs; shareable between threads.
#[derive(Debug)]
pub struct CgroupStatsReader {
    files: FileCache,
    devices: Arc<DeviceNames>,
    /// Mount points of every hierarchy: a cgroup's parent is looked at only below them.
    mount_points: Vec<PathBuf>,
    user_hz: u64,
    /// `ONLINE_CPUS`, split for the file cache.
    online_dir: PathBuf,
    online_name: String,
    /// Whether the kernel has PSI on: `<proc>/pressure/` exists exactly when the cgroup2
    /// `*.pressure` files do (`CONFIG_PSI`, not disabled with `psi=0`).
    psi: bool,
    /// Optional files found missing from this kernel (a sibling file of the same cgroup read
    /// fine): skipped for [`ABSENT_RETRY`] from the first time instead of failing an open
    /// every time.
    absent: TtlMap<&'static str, ()>,
    /// Whether `read` includes the IO counters (`false`: only IO pressure; see
    /// `without_io_counters`).
    io_counters: bool,
    /// The host's online CPUs (the one key is `()`), re-read at most every [`SHARED_TTL`]:
    /// every container's CPU limit compares with it, and CPUs come and go rarely.
    host_cpus: TtlMap<(), Option<u32>>,
    /// Parents' CPU limits by (quota directory, cpuset directory), re-read at most every
    /// [`SHARED_TTL`]: a thousand containers without limits of their own share one parent
    /// (`/docker`, a pod), whose limit need not be read a thousand times per collection.
    parent_limits: TtlMap<ParentKey, Option<f64>>,
}

impl CgroupStatsReader {
    /// A reader for the hierarchies of `layout`, with device names from `<proc_root>/diskstats`,
    /// PSI availability from `<proc_root>/pressure`, host CPUs from [`ONLINE_CPUS`] and `USER_HZ`
    /// from [`crate::clock::user_hz`].
    #[must_use]
    pub fn new(layout: &CgroupLayout, proc_root: &Path) -> Self {
        let reader = Self {
            files: FileCache::new(DEFAULT_MAX_OPEN),
            devices: Arc::new(DeviceNames::new(proc_root)),
            mount_points: layout
                .hierarchies
                .iter()
                .map(|h| h.mount_point.clone())
                .collect(),
            user_hz: crate::clock::user_hz(),
            online_dir: PathBuf::new(),
            online_name: String::new(),
            psi: proc_root.join("pressure").is_dir(),
            absent: TtlMap::new(ABSENT_RETRY),
            io_counters: true,
            host_cpus: TtlMap::new(SHARED_TTL),
            parent_limits: TtlMap::new(SHARED_TTL),
        };
        reader.with_online_cpus_file(Path::new(ONLINE_CPUS))
    }

    /// Reads the host's online CPUs from `path` instead of [`ONLINE_CPUS`] (a host sysfs mounted
    /// elsewhere, fixtures).
    #[must_use]
    pub fn with_online_cpus_file(mut self, path: &Path) -> Self {
        self.online_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        self.online_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self
    }

    /// Uses `hz` as `USER_HZ` instead of this host's.
    #[must_use]
    pub fn with_user_hz(mut self, hz: u64) -> Self {
        self.user_hz = hz;
        self
    }

    /// Holds at most `max` descriptors (default [`DEFAULT_MAX_OPEN`], and never more than the
    /// soft `RLIMIT_NOFILE` leaves after a reserve).
    #[must_use]
    pub fn with_max_open_files(mut self, max: usize) -> Self {
        self.files = FileCache::new(max);
        self
    }

    /// Descriptors held now.
    #[must_use]
    pub fn open_files(&self) -> usize {
        self.files.open_count()
    }

    /// The most descriptors held.
    #[must_use]
    pub fn max_open_files(&self) -> usize {
        self.files.max_open()
    }

    /// `read` leaves the IO counters out (`io` has only `partial_stall_time`): for callers that
    /// count IO elsewhere (the kernel programs) and read it with `read_io` when needed.
    #[must_use]
    pub fn without_io_counters(mut self) -> Self {
        self.io_counters = false;
        self
    }

    /// The IO section alone: counters per device and pressure.
    pub fn read_io(&self, dirs: &CgroupDirs) -> Option<IoStats> {
        Pass::new(self, dirs, None).io()
    }

    /// CPU, memory, IO, PIDs of the cgroup (values are hierarchical: nested cgroups included),
    /// with `timestamp` set. A section is None when its controller is absent or every file of
    /// it failed; a field is None when its file or key is missing, malformed, or says
    /// unlimited — never 0 for absent.
    pub fn read(&self, dirs: &CgroupDirs) -> ContainerStats {
        self.read_with(dirs, None)
    }

    /// As [`Self::read`], taking the v1 values that the kernel cgroup walk `kernel` has for
    /// `dirs` (see [`CgroupDirs::with_dir_keys`]) instead of reading their files.
    pub fn read_with(
        &self,
        dirs: &CgroupDirs,
        kernel: Option<&KernelCgroupValues>,
    ) -> ContainerStats {
        let timestamp = SystemTime::now();
        let mut pass = Pass::new(self, dirs, kernel);
        pass.read_pressures();
        ContainerStats {
            timestamp: Some(timestamp),
            cpu: pass.cpu(),
            memory: pass.memory(),
            io: if self.io_counters {
                pass.io()
            } else {
                pass.io_pressure()
            },
            pid: pass.pids(),
        }
    }

    /// Drops held descriptors for files under `dir` (the cgroup was removed).
    pub fn forget(&self, dir: &Path) {
        self.files.forget(dir);
    }

    /// Drops held descriptors for every directory of `dirs`.
    pub fn forget_dirs(&self, dirs: &CgroupDirs) {
        for dir in dirs.all() {
            self.files.forget(dir);
        }
    }

    /// Whether `name` was learnt to be missing from this kernel less than [`ABSENT_RETRY`] ago.
    fn is_absent(&self, name: &'static str) -> bool {
        self.absent.get(name).is_some()
    }

    /// Records that this kernel lacks `name`; the first record is kept, so that it expires.
    fn mark_absent(&self, name: &'static str) {
        if self.absent.insert_if_vacant(name, ()) {
            tracing::debug!(
                file = name,
                "not provided by this kernel; skipped for a while"
            );
        }
    }

    /// The parent of a cgroup directory, when the directory is strictly below a mount point
    /// (the root cgroup's parent is not a cgroup).
    fn parent<'p>(&self, dir: &'p Path) -> Option<&'p Path> {
        self.mount_points
            .iter()
            .any(|m| dir.starts_with(m) && dir != m)
            .then(|| dir.parent())
            .flatten()
    }
}

#[cfg(test)]
pub(in crate::cgroupfs) mod testing {
    //! The fixture trees of `collector-daemon/tests/fixtures/cgroupfs/` and reads of them,
    //! shared by the reader's and the directories' tests.
    use std::path::{Path, PathBuf};

    use super::CgroupStatsReader;
    use crate::{
        cgroupfs::{dirs::CgroupDirs, mounts::CgroupLayout},
        stats::ContainerStats,
    };

    /// Cgroup names of the fixture trees: an ECS task, and containers with their own limit
    /// (`L`), an inherited one (`I`), a cpuset (`S`), the default (`D`) and malformed files
    /// (`BAD`).
    pub(in crate::cgroupfs) const TASK: &str = "0f3c5e7a9b1d4f6a8c2e4b6d8f0a1c3e";
    pub(in crate::cgroupfs) const L: &str =
        "2c1f9e0b7a4d4e6b8f3a5c7d9e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b";
    pub(in crate::cgroupfs) const I: &str =
        "5d4c3b2a19080f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796";
    pub(in crate::cgroupfs) const S: &str =
        "9e8d7c6b5a4938271605f4e3d2c1b0a99e8d7c6b5a4938271605f4e3d2c1b0a9";
    pub(in crate::cgroupfs) const D: &str =
        "71a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80";
    pub(in crate::cgroupfs) const BAD: &str =
        "bad0bad0bad0bad0bad0bad0bad0bad0bad0bad0bad0bad0bad0bad0bad0bad0";

    pub(in crate::cgroupfs) fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cgroupfs")
    }

    /// The layout of fixture tree `name` ("v1", "v2", "hybrid"): discovered from the captured
    /// `<name>-host/proc/self/{mountinfo,cgroup}`, with /sys/fs/cgroup moved to the tree.
    pub(in crate::cgroupfs) fn fixture(name: &str) -> (CgroupLayout, CgroupStatsReader) {
        let host = fixtures().join(format!("{name}-host"));
        let layout = CgroupLayout::discover(&host.join("proc"))
            .expect("fixture layout")
            .with_mount_prefix(Path::new("/sys/fs/cgroup"), &fixtures().join(name));
        let reader = CgroupStatsReader::new(&layout, &host.join("proc"))
            .with_online_cpus_file(&host.join("sys/devices/system/cpu/online"))
            .with_user_hz(100);
        (layout, reader)
    }

    /// What /proc/<pid>/cgroup says for a process in `path` of every listed hierarchy.
    pub(in crate::cgroupfs) fn proc_cgroup(hierarchies: &[&str], path: &str) -> String {
        hierarchies
            .iter()
            .map(|h| [h, ":", path, "\n"].concat())
            .collect()
    }

    /// The hierarchies of the fixture hosts, as `/proc/<pid>/cgroup` numbers them.
    pub(in crate::cgroupfs) const HYBRID: &[&str] = &[
        "8:pids",
        "7:blkio",
        "4:memory",
        "3:cpuset",
        "2:cpuacct",
        "1:cpu",
        "0:",
    ];
    pub(in crate::cgroupfs) const V1: &[&str] =
        &["8:pids", "7:memory", "3:cpuset", "2:cpuacct,cpu"];
    pub(in crate::cgroupfs) const V2: &[&str] = &["0:"];

    /// The stats of cgroup `path` of hierarchies `ids`, without their timestamp.
    pub(in crate::cgroupfs) fn read(
        layout: &CgroupLayout,
        reader: &CgroupStatsReader,
        ids: &[&str],
        path: &str,
    ) -> ContainerStats {
        let dirs = CgroupDirs::from_proc_cgroup(layout, &proc_cgroup(ids, path));
        let stats = reader.read(&dirs);
        assert!(stats.timestamp.is_some());
        ContainerStats {
            timestamp: None,
            ..stats
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, time::Instant};

    use super::{
        testing::{HYBRID, L, TASK, V1, V2, fixture, proc_cgroup, read},
        *,
    };
    use crate::{
        cgroupfs::{
            dirs::{V1_CONTROLLERS, V1DirKeys},
            kernel_values::{DirKey, V1Values},
            mounts::HierarchyKind,
            parse::Limit,
        },
        stats::{CpuStats, DeviceIoStats, MemoryStats, PidStats},
    };

    #[test]
    fn hybrid_container_with_its_own_limits() {
        let (layout, reader) = fixture("hybrid");
        let stats = read(&layout, &reader, HYBRID, &format!("/ecs/{TASK}/{L}"));
        assert_eq!(
            stats.cpu,
            Some(CpuStats {
                total: Some(845_479_087),
                // cpuacct.stat: user 30, system 54 ticks of 10 ms.
                user: Some(300_000_000),
                system: Some(540_000_000),
                // cpu.cfs_quota_us 30000 / cpu.cfs_period_us 100000; cpuset 0-1 is every CPU.
                limit: Some(30.0),
                defaulted_limit: Some(false),
                shares: Some(512),
                weight: None,
                elapsed_periods: Some(40),
                throttled_periods: Some(21),
                throttled_time: Some(1_293_872_904),
                // From unified/ (cgroup2 without controllers still has cpu.pressure).
                partial_stall_time: Some(2_020_211_000),
                full_stall_time: Some(2_020_113_000),
                cfs_quota_us: Some(30_000),
                cfs_period_us: Some(100_000),
            })
        );
        assert_eq!(
            stats.memory,
            Some(MemoryStats {
                usage_total: Some(1_851_392),
                kernel_memory: Some(294_912),
                limit: Some(268_435_456),
                softlimit: Some(67_108_864),
                swap: Some(0),
                swap_limit: Some(536_870_912),
                // 1851392 - total_inactive_file 1048576
                working_set: Some(802_816),
                rss: Some(331_776),
                cache: Some(1_052_672),
                oom_events: Some(65),
                failcnt: Some(65),
                partial_stall_time: Some(22_526_000),
                full_stall_time: Some(22_526_000),
                peak: Some(267_726_848),
                pgfault: Some(6935),
                pgmajfault: Some(1),
                ..MemoryStats::default()
            })
        );
        // Direct IO to loop0, which had a blk-throttle rule: the throttle files count it.
        let loop0 = DeviceIoStats {
            read_bytes: Some(2_097_152),
            write_bytes: Some(4_194_304),
            read_operations: Some(32),
            write_operations: Some(64),
        };
        assert_eq!(
            stats.io,
            Some(IoStats {
                read_bytes: Some(2_097_152),
                write_bytes: Some(4_194_304),
                read_operations: Some(32),
                write_operations: Some(64),
                partial_stall_time: Some(17_238_000),
                full_stall_time: Some(17_238_000),
                devices: Some(BTreeMap::from([("loop0".to_owned(), loop0)])),
            })
        );
        assert_eq!(
            stats.pid,
            Some(PidStats {
                thread_count: Some(3),
                thread_limit: Some(64),
            })
        );
    }

    #[test]
    #[expect(
        clippy::too_many_lines,
        reason = "one walk's values against one fixture, every value checked in one place"
    )]
    fn a_kernel_walk_gives_the_v1_one_number_values_and_the_rest_is_read_from_files() {
        use super::super::kernel_values::{CpuValues, MemoryValues, PidsValues};
        let (layout, reader) = fixture("hybrid");
        let path = format!("/ecs/{TASK}/{L}");
        // Fixture directories are not cgroups: keys made up, distinct per controller.
        let key = |ino: u64| DirKey { dev: 7, ino };
        let mut dirs = CgroupDirs::from_proc_cgroup(&layout, &proc_cgroup(HYBRID, &path));
        dirs.v1_keys = V1DirKeys {
            memory: Some(key(1)),
            cpu: Some(key(2)),
            pids: Some(key(3)),
            cpuset: Some(key(4)),
        };
        // Values unlike the fixture files', so that where each comes from shows.
        let walk = KernelCgroupValues {
            taken: Instant::now(),
            by_dir: [
                (
                    key(1),
                    V1Values {
                        memory: Some(MemoryValues {
                            usage_bytes: 2_000_000,
                            max_usage_bytes: 3_000_000,
                            failcnt: 7,
                            soft_limit_bytes: 9_223_372_036_854_771_712,
                            kmem_usage_bytes: None,
                            oom_kill: Some(4),
                        }),
                        ..V1Values::default()
                    },
                ),
                (
                    key(2),
                    V1Values {
                        cpu: Some(CpuValues {
                            shares: 2048,
                            quota_us: Some(150_000),
                            period_us: 100_000,
                            nr_periods: 5,
                            nr_throttled: 1,
                            throttled_time_ns: 99,
                        }),
                        ..V1Values::default()
                    },
                ),
                (
                    key(3),
                    V1Values {
                        pids: Some(PidsValues {
                            current: 9,
                            max: Limit::Unlimited,
                        }),
                        ..V1Values::default()
                    },
                ),
                (
                    key(4),
                    V1Values {
                        effective_cpus: Some(1),
                        ..V1Values::default()
                    },
                ),
            ]
            .into_iter()
            .collect(),
            v2_by_dir: crate::fast_map::FastMap::default(),
        };
        let stats = reader.read_with(&dirs, Some(&walk));
        let cpu = stats.cpu.expect("cpu");
        // The walk: shares, throttling, quota 150% and cpuset 1 CPU (of the fixture host's
        // 2) → min 100%.
        assert_eq!(cpu.shares, Some(2048));
        assert_eq!(
            (
                cpu.elapsed_periods,
                cpu.throttled_periods,
                cpu.throttled_time
            ),
            (Some(5), Some(1), Some(99))
        );
        assert_eq!((cpu.limit, cpu.defaulted_limit), (Some(100.0), Some(false)));
        // The files: cpuacct usage and times, pressure.
        assert_eq!(cpu.total, Some(845_479_087));
        assert_eq!(cpu.user, Some(300_000_000));
        assert_eq!(cpu.partial_stall_time, Some(2_020_211_000));
        let memory = stats.memory.expect("memory");
        assert_eq!(memory.usage_total, Some(2_000_000));
        assert_eq!(memory.peak, Some(3_000_000));
        assert_eq!(memory.oom_events, Some(7));
        assert_eq!(memory.failcnt, Some(7));
        // The hybrid fixture has no memory.oom_control: only the walk can have given it.
        assert_eq!(memory.oom_kills, Some(4));
        // The v1 "unlimited" soft limit is no limit, as from the file.
        assert_eq!(memory.softlimit, None);
        // No kmem in the walk: the file.
        assert_eq!(memory.kernel_memory, Some(294_912));
        // memory.stat from the file; the working set from the walk's usage.
        assert_eq!(memory.rss, Some(331_776));
        assert_eq!(memory.limit, Some(268_435_456));
        assert_eq!(memory.working_set, Some(2_000_000 - 1_048_576));
        assert_eq!(
            stats.pid,
            Some(PidStats {
                thread_count: Some(9),
                thread_limit: None,
            })
        );

        // Directories the walk does not have are read from their files, as without it.
        dirs.v1_keys = V1DirKeys::default();
        let from_files = reader.read_with(&dirs, Some(&walk));
        let expected = reader.read(&dirs);
        assert_eq!(from_files.cpu, expected.cpu);
        assert_eq!(from_files.memory, expected.memory);
        assert_eq!(from_files.pid, expected.pid);
        assert_eq!(expected.cpu.and_then(|c| c.shares), Some(512));
    }

    #[test]
    fn v1_without_blkio_and_cgroup2() {
        let (layout, reader) = fixture("v1");
        let stats = read(&layout, &reader, V1, &format!("/docker/{L}"));
        // Same files as the hybrid container, reached through the co-mounted cpu,cpuacct.
        let cpu = stats.cpu.expect("cpu");
        assert_eq!(cpu.total, Some(845_479_087));
        assert_eq!((cpu.limit, cpu.defaulted_limit), (Some(30.0), Some(false)));
        assert_eq!(cpu.throttled_periods, Some(21));
        assert_eq!(cpu.partial_stall_time, None, "no cgroup2: no PSI");
        let memory = stats.memory.expect("memory");
        assert_eq!(memory.usage_total, Some(1_851_392));
        assert_eq!(memory.partial_stall_time, None);
        assert_eq!(stats.io, None, "no blkio hierarchy");
        assert_eq!(stats.pid.and_then(|p| p.thread_count), Some(3));
    }

    #[test]
    #[expect(
        clippy::too_many_lines,
        reason = "one walk's values against one fixture, every value checked in one place"
    )]
    fn a_v2_walk_gives_the_v2_one_number_values_and_the_rest_is_read_from_files() {
        use super::super::{
            cpu::CpuMax,
            kernel_values::{PidsValues, V2CpuValues, V2MemoryValues, V2SwapValues, V2Values},
        };
        let (layout, reader) = fixture("v2");
        // As the system collector reads (IO counters come from elsewhere): `io.stat` would
        // need `cgroup.controllers`.
        let reader = reader.without_io_counters();
        let mut dirs =
            CgroupDirs::from_proc_cgroup(&layout, &proc_cgroup(V2, &format!("/docker/{L}")));
        // A fixture directory is no cgroup: a made-up key.
        let key = DirKey { dev: 7, ino: 1 };
        dirs.v2_key = Some(key);
        // Values unlike the fixture files', so that where each comes from shows.
        let walked = V2Values {
            memory: Some(V2MemoryValues {
                current_bytes: 1_000_000,
                peak_bytes: 2_000_000,
                max: Limit::Unlimited,
                high: Limit::Value(500_000_000),
                low: Limit::Value(4096),
                swap: Some(V2SwapValues {
                    current_bytes: 8192,
                    max: Limit::Unlimited,
                }),
            }),
            cpu: Some(V2CpuValues {
                weight: 200,
                max: CpuMax {
                    quota_us: Some(150_000),
                    period_us: 100_000,
                },
            }),
            pids: Some(PidsValues {
                current: 5,
                max: Limit::Unlimited,
            }),
            effective_cpus: Some(1),
        };
        let walk = KernelCgroupValues {
            taken: Instant::now(),
            by_dir: crate::fast_map::FastMap::default(),
            v2_by_dir: [(key, walked)].into_iter().collect(),
        };
        let stats = reader.read_with(&dirs, Some(&walk));
        let cpu = stats.cpu.expect("cpu");
        // The walk: weight, quota 150% and cpuset 1 CPU (of the fixture host's 2) → 100%.
        assert_eq!(cpu.weight, Some(200));
        assert_eq!(
            (cpu.cfs_quota_us, cpu.cfs_period_us),
            (Some(150_000), Some(100_000))
        );
        assert_eq!((cpu.limit, cpu.defaulted_limit), (Some(100.0), Some(false)));
        // The files: cpu.stat's usage and throttling, pressure.
        assert_eq!(cpu.total, Some(4_149_813_000));
        assert_eq!(cpu.throttled_periods, Some(61));
        assert_eq!(cpu.partial_stall_time, Some(15_493_465_000));
        let memory = stats.memory.expect("memory");
        assert_eq!(memory.usage_total, Some(1_000_000));
        assert_eq!(memory.peak, Some(2_000_000));
        assert_eq!(memory.limit, None, "max");
        assert_eq!(memory.softlimit, Some(4096));
        assert_eq!((memory.swap, memory.swap_limit), (Some(8192), None));
        // memory.stat and memory.events stay files.
        assert_eq!(memory.rss, Some(53_248));
        assert_eq!(memory.oom_kills, Some(1));
        assert_eq!(
            stats.pid,
            Some(PidStats {
                thread_count: Some(5),
                thread_limit: None,
            })
        );
        let dir = dirs.v2.as_deref().expect("v2 dir");
        for file in [
            "cgroup.controllers",
            "memory.current",
            "memory.peak",
            "memory.max",
            "memory.low",
            "memory.swap.current",
            "memory.swap.max",
            "cpu.weight",
            "cpu.max",
            "pids.current",
            "pids.max",
            "cpuset.cpus.effective",
        ] {
            assert!(!reader.files.holds(dir, file), "{file} was read");
        }
        assert!(reader.files.holds(dir, "memory.stat"));

        // A cgroup the walk did not record is read from its files.
        dirs.v2_key = Some(DirKey { dev: 7, ino: 2 });
        let stats = reader.read_with(&dirs, Some(&walk));
        assert_eq!(stats.cpu.and_then(|c| c.weight), Some(50));
        assert_eq!(stats.memory.and_then(|m| m.usage_total), Some(290_816));
        assert_eq!(stats.pid.and_then(|p| p.thread_limit), Some(64));
    }

    #[test]
    fn v2_container_with_its_own_limits() {
        let (layout, reader) = fixture("v2");
        let stats = read(&layout, &reader, V2, &format!("/docker/{L}"));
        assert_eq!(
            stats.cpu,
            Some(CpuStats {
                total: Some(4_149_813_000),
                user: Some(1_632_713_000),
                system: Some(2_517_099_000),
                // cpu.max "30000 100000"; cpuset 0-1 is every CPU.
                limit: Some(30.0),
                defaulted_limit: Some(false),
                shares: None,
                weight: Some(50),
                elapsed_periods: Some(242),
                throttled_periods: Some(61),
                throttled_time: Some(4_688_252_000),
                partial_stall_time: Some(15_493_465_000),
                full_stall_time: Some(15_013_363_000),
                cfs_quota_us: Some(30_000),
                cfs_period_us: Some(100_000),
            })
        );
        assert_eq!(
            stats.memory,
            Some(MemoryStats {
                usage_total: Some(290_816),
                kernel_memory: Some(49_152),
                limit: Some(268_435_456),
                softlimit: Some(67_108_864),
                swap: Some(0),
                // memory.swap.max "0": no swap allowed, a real limit.
                swap_limit: Some(0),
                working_set: Some(290_816),
                rss: Some(53_248),
                cache: Some(0),
                // A dd of 300 MB against memory.max 256 MiB was OOM-killed.
                oom_events: Some(1),
                oom_kills: Some(1),
                partial_stall_time: Some(5_575_933_000),
                full_stall_time: Some(5_575_933_000),
                peak: Some(268_435_456),
                pgfault: Some(5654),
                pgmajfault: Some(0),
                ..MemoryStats::default()
            })
        );
        let vda = DeviceIoStats {
            read_bytes: Some(2_228_224),
            write_bytes: Some(4_194_304),
            read_operations: Some(17),
            write_operations: Some(1025),
        };
        assert_eq!(
            stats.io,
            Some(IoStats {
                read_bytes: Some(2_228_224),
                write_bytes: Some(4_194_304),
                read_operations: Some(17),
                write_operations: Some(1025),
                partial_stall_time: Some(987_000),
                full_stall_time: Some(987_000),
                devices: Some(BTreeMap::from([("vda".to_owned(), vda)])),
            })
        );
        assert_eq!(
            stats.pid,
            Some(PidStats {
                thread_count: Some(1),
                thread_limit: Some(64),
            })
        );
    }

    #[test]
    fn missing_cgroup_gives_no_sections() {
        let (layout, reader) = fixture("hybrid");
        let stats = read(&layout, &reader, HYBRID, "/docker/gone");
        assert_eq!(
            stats,
            ContainerStats::default(),
            "every file is missing: every section is None"
        );
        let stats = reader.read(&CgroupDirs::default());
        assert_eq!(
            (stats.cpu, stats.memory, stats.io, stats.pid),
            (None, None, None, None)
        );
    }

    #[test]
    fn files_are_held_and_read_once_per_call() {
        let (layout, reader) = fixture("hybrid");
        let path = format!("/ecs/{TASK}/{L}");
        let first = read(&layout, &reader, HYBRID, &path);
        let held = reader.open_files();
        assert!(held > 15, "{held} descriptors held");
        let second = read(&layout, &reader, HYBRID, &path);
        assert_eq!(first, second);
        assert_eq!(
            reader.open_files(),
            held,
            "the second read opens nothing new"
        );
        let dirs = CgroupDirs::from_proc_cgroup(&layout, &proc_cgroup(HYBRID, &path));
        assert!(reader.files.holds(&dirs.v1["memory"], "memory.stat"));
        reader.forget_dirs(&dirs);
        assert!(!reader.files.holds(&dirs.v1["memory"], "memory.stat"));
        // The parent's files (read for the limit of other containers) are not below `dirs`.
        assert!(reader.open_files() < held);
    }

    /// A cgroup this test made, in every whole-hierarchy mount that has cgroup2 or one of the
    /// stats controllers, with a `sleep` of ours inside. Dropping it moves the process back to
    /// each hierarchy's root, kills it (by its handle) and removes exactly the directories made.
    struct RealCgroup {
        /// (mount point, our directory, whether it is a v1 cpuset)
        dirs: Vec<(PathBuf, PathBuf, bool)>,
        child: std::process::Child,
    }

    impl RealCgroup {
        fn new(layout: &CgroupLayout) -> Self {
            let name = format!("collector-test-{}-stats-reader", std::process::id());
            let mut dirs = Vec::new();
            for h in &layout.hierarchies {
                let wanted = match &h.kind {
                    HierarchyKind::V2 => true,
                    HierarchyKind::V1 { controllers, .. } => controllers
                        .iter()
                        .any(|c| V1_CONTROLLERS.contains(&c.as_str())),
                };
                if wanted && h.root == Path::new("/") {
                    let cpuset = matches!(&h.kind, HierarchyKind::V1 { controllers, .. }
                        if controllers.iter().any(|c| c == "cpuset"));
                    dirs.push((h.mount_point.clone(), h.mount_point.join(&name), cpuset));
                }
            }
            let child = std::process::Command::new("sleep")
                .arg("120")
                .spawn()
                .expect("spawn sleep");
            let cg = Self { dirs, child };
            cg.make_and_enter();
            cg
        }

        fn make_and_enter(&self) {
            for (mount, dir, cpuset) in &self.dirs {
                std::fs::create_dir(dir).expect("mkdir test cgroup");
                if *cpuset {
                    // A new v1 cpuset has no CPUs and no memory nodes: give it the root's.
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        let value = std::fs::read(mount.join(f)).expect("root cpuset");
                        std::fs::write(dir.join(f), value).expect("set cpuset");
                    }
                }
                std::fs::write(dir.join("cgroup.procs"), self.child.id().to_string())
                    .expect("enter test cgroup");
            }
        }

        fn leave_and_remove(&self) {
            for (mount, dir, _) in &self.dirs {
                if dir.exists() {
                    let _ = std::fs::write(mount.join("cgroup.procs"), self.child.id().to_string());
                    if let Err(e) = std::fs::remove_dir(dir) {
                        eprintln!("cannot remove {}: {e}", dir.display());
                    }
                }
            }
        }

        fn proc_cgroup(&self) -> String {
            std::fs::read_to_string(format!("/proc/{}/cgroup", self.child.id()))
                .expect("read /proc/<pid>/cgroup")
        }
    }

    impl Drop for RealCgroup {
        fn drop(&mut self) {
            for (mount, _, _) in &self.dirs {
                let _ = std::fs::write(mount.join("cgroup.procs"), self.child.id().to_string());
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.leave_and_remove();
        }
    }

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    /// Whether a test that creates cgroups is skipped: it needs root, and CI (which runs as
    /// root) allows no skip.
    fn skip_without_root() -> bool {
        use std::io::Write as _;
        if is_root() {
            return false;
        }
        // CI runs as root: there, a skip would hide a failure.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "creating cgroups needs root, and CI=true allows no skip"
        );
        let _ = writeln!(std::io::stderr(), "skipping: creating cgroups needs root");
        true
    }

    /// Reads of a live cgroup with one `sleep` inside: every section, and the descriptors held
    /// once and reused. The inode of the held `pids_dir/pids.current`.
    fn assert_live_reads(reader: &CgroupStatsReader, dirs: &CgroupDirs, pids_dir: &Path) -> u64 {
        let first = reader.read(dirs);
        let cpu = first.cpu.expect("cpu");
        assert!(cpu.total.is_some(), "{cpu:?}");
        assert!(
            cpu.limit.is_some() && cpu.defaulted_limit.is_some(),
            "{cpu:?}"
        );
        let pid = first.pid.clone().expect("pids");
        assert_eq!(pid.thread_count, Some(1), "one sleep inside");
        assert_eq!(pid.thread_limit, None);
        if let Some(memory) = &first.memory {
            assert!(memory.usage_total.is_some(), "{memory:?}");
        }
        let held = reader.open_files();
        let inode = reader
            .files
            .held_inode(pids_dir, "pids.current")
            .expect("held");
        assert_eq!(reader.read(dirs).pid, first.pid);
        assert_eq!(
            reader.open_files(),
            held,
            "nothing reopened while the cgroup lives"
        );
        inode
    }

    /// On the machine's real cgroupfs: held descriptors, a cgroup removed (its held files fail
    /// and are dropped) and recreated under the same path (they are reopened).
    #[test]
    fn real_cgroup_held_descriptors_survive_recreation() {
        if skip_without_root() {
            return;
        }
        let layout = CgroupLayout::discover(Path::new("/proc")).expect("layout");
        let cg = RealCgroup::new(&layout);
        let dirs = CgroupDirs::from_proc_cgroup(&layout, &cg.proc_cgroup());
        let reader = CgroupStatsReader::new(&layout, Path::new("/proc"));
        let pids_dir = dirs
            .v1
            .get("pids")
            .cloned()
            .or_else(|| dirs.v2.clone())
            .expect("a pids directory");
        let inode = assert_live_reads(&reader, &dirs, &pids_dir);

        // Removed: the held descriptors fail (ENODEV), the reopen finds nothing, they are dropped.
        cg.leave_and_remove();
        let gone = reader.read(&dirs);
        assert_eq!(
            (gone.cpu, gone.memory, gone.io, gone.pid),
            (None, None, None, None)
        );
        assert!(!reader.files.holds(&pids_dir, "pids.current"));

        // Recreated under the same path: read afresh.
        cg.make_and_enter();
        let again = reader.read(&dirs);
        assert_eq!(again.pid.and_then(|p| p.thread_count), Some(1));
        let reopened = reader
            .files
            .held_inode(&pids_dir, "pids.current")
            .expect("held");
        {
            use std::os::unix::fs::MetadataExt as _;
            let on_disk = std::fs::metadata(pids_dir.join("pids.current")).expect("stat");
            assert_eq!(reopened, on_disk.ino());
        }
        assert_ne!(reopened, inode, "a new kernfs node");

        // Recreated while still held: the stale descriptors are reopened on ENODEV.
        let before = reader
            .files
            .held_inode(&pids_dir, "pids.current")
            .expect("held");
        cg.leave_and_remove();
        cg.make_and_enter();
        assert_eq!(reader.read(&dirs).pid.and_then(|p| p.thread_count), Some(1));
        let after = reader
            .files
            .held_inode(&pids_dir, "pids.current")
            .expect("held");
        assert_ne!(before, after, "reopened after ENODEV");

        reader.forget_dirs(&dirs);
        for dir in dirs.all() {
            assert!(!reader.files.holds(dir, "cgroup.procs"));
            assert!(!reader.files.holds(dir, "pids.current"));
        }
    }
}
