//! One container's CPU, memory, IO and PIDs stats from cgroupfs, on v1, v2 and hybrid hosts.
//!
//! Each controller is read where it is attached: the v1 hierarchy that has it, else the v2
//! directory when `cgroup.controllers` lists it. Pressure (PSI) comes from the v2 directory
//! whenever PSI is on, also on hybrid hosts: the `*.pressure` files are cgroup2 core files that
//! exist without any controller (and v1 has no equivalent). v2 `cpu.stat`'s usage keys are core
//! too, so CPU time is read from v2 when no v1 hierarchy has cpuacct.
//! Every file is read once per [`CgroupStatsReader::read`] through held descriptors ([`FileCache`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use super::cpu::{CpuMax, CpuStat, CpuacctStat, parse_cfs_quota, ticks_to_ns};
use super::cpuset::count_cpus;
use super::diskstats::DeviceNames;
use super::files::{DEFAULT_MAX_OPEN, FileCache};
use super::io::{Dev, any_nonzero, io_stats, merge_v1, parse_blkio_rwstat, parse_io_stat};
use super::kernel_values::{DirKey, KernelCgroupValues, V1Values};
use super::memory::{MemoryEvents, MemoryStatV1, MemoryStatV2, OomControl, v1_limit, working_set};
use super::mounts::{CgroupLayout, HierarchyKind, parse_proc_cgroup};
use super::parse::{Limit, single_limit, single_u64, us_to_ns};
use super::pids;
use super::psi::Pressure;
use crate::provider::stats::{
    ContainerStats, CpuStats, DeviceIoStats, IoStats, MemoryStats, PidStats,
};

/// The v1 controllers whose files are read.
pub const V1_CONTROLLERS: [&str; 6] = ["blkio", "cpu", "cpuacct", "cpuset", "memory", "pids"];

/// Where the online CPUs are listed (sysfs, Documentation/ABI/testing/sysfs-devices-system-cpu).
pub const ONLINE_CPUS: &str = "/sys/devices/system/cpu/online";

/// How long a file learnt to be missing from this kernel is skipped before it is tried again
/// (a module such as bfq can register its files later).
const ABSENT_RETRY: Duration = Duration::from_mins(5);

/// Which directory serves each controller for one cgroup, e.g. built from a container's root
/// cgroup.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupDirs {
    /// The cgroup's directory in the v2 (unified) hierarchy.
    pub v2: Option<PathBuf>,
    /// Per v1 controller (`cpu`, `cpuacct`, `cpuset`, `memory`, `blkio`, `pids`), its directory;
    /// co-mounted controllers (`cpu,cpuacct`) share one.
    pub v1: BTreeMap<String, PathBuf>,
    /// The keys of the v1 directories whose values a kernel cgroup walk may give (see
    /// [`Self::with_dir_keys`]).
    pub v1_keys: V1DirKeys,
}

/// The keys in a kernel cgroup walk ([`KernelCgroupValues`]) of a cgroup's v1 directories of
/// `memory`, `cpu`, `pids` and `cpuset`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V1DirKeys {
    pub memory: Option<DirKey>,
    pub cpu: Option<DirKey>,
    pub pids: Option<DirKey>,
    pub cpuset: Option<DirKey>,
}

impl V1DirKeys {
    /// What `walk` has for these directories, each controller from its own directory's
    /// record.
    fn values_in(&self, walk: &KernelCgroupValues) -> V1Values {
        let of = |key: Option<DirKey>| key.and_then(|k| walk.get(k));
        V1Values {
            memory: of(self.memory).and_then(|v| v.memory),
            cpu: of(self.cpu).and_then(|v| v.cpu),
            pids: of(self.pids).and_then(|v| v.pids),
            effective_cpus: of(self.cpuset).and_then(|v| v.effective_cpus),
        }
    }
}

impl CgroupDirs {
    /// From (hierarchy id, path from that hierarchy's root) pairs, as `/proc/<pid>/cgroup` gives
    /// them (hierarchy 0 = v2). Pairs whose hierarchy is not mounted, or whose path the mount
    /// cannot reach, are skipped.
    #[must_use]
    pub fn from_paths(layout: &CgroupLayout, paths: &[(u32, &str)]) -> Self {
        let mut dirs = Self::default();
        for &(id, path) in paths {
            let (Some(hierarchy), Some(dir)) = (layout.by_id(id), layout.cgroup_dir(id, path))
            else {
                continue;
            };
            match &hierarchy.kind {
                HierarchyKind::V2 => dirs.v2 = Some(dir),
                HierarchyKind::V1 { controllers, .. } => {
                    for c in controllers {
                        if V1_CONTROLLERS.contains(&c.as_str()) {
                            dirs.v1.insert(c.clone(), dir.clone());
                        }
                    }
                }
            }
        }
        dirs
    }

    /// From a `/proc/<pid>/cgroup` text.
    #[must_use]
    pub fn from_proc_cgroup(layout: &CgroupLayout, text: &str) -> Self {
        let lines = parse_proc_cgroup(text);
        let paths: Vec<(u32, &str)> = lines
            .iter()
            .map(|l| (l.hierarchy_id, l.path.as_str()))
            .collect();
        Self::from_paths(layout, &paths)
    }

    /// Adds the keys under which a kernel cgroup walk ([`KernelCgroupValues`]) has the v1
    /// directories of `memory`, `cpu`, `pids` and `cpuset` (one `stat` each; a directory that cannot
    /// be stat'ed has none and is read from its files).
    #[must_use]
    pub fn with_dir_keys(mut self) -> Self {
        let key = |controller: &str| self.v1.get(controller).and_then(|d| DirKey::of(d));
        self.v1_keys = V1DirKeys {
            memory: key("memory"),
            cpu: key("cpu"),
            pids: key("pids"),
            cpuset: key("cpuset"),
        };
        self
    }

    /// Every directory, v2 first (co-mounted v1 controllers appear once per controller).
    pub fn all(&self) -> impl Iterator<Item = &Path> {
        self.v2.iter().chain(self.v1.values()).map(PathBuf::as_path)
    }
}

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
    /// fine), with when: skipped for [`ABSENT_RETRY`] instead of failing an open every time.
    absent: Mutex<HashMap<&'static str, Instant>>,
    /// Whether `read` includes the IO counters (`false`: only IO pressure; see
    /// `without_io_counters`).
    io_counters: bool,
    /// The host's online CPUs, re-read at most every [`SHARED_TTL`]: every container's CPU
    /// limit compares with it, and CPUs come and go rarely.
    host_cpus: Mutex<Option<(Instant, Option<u32>)>>,
    /// Parents' CPU limits by (quota directory, cpuset directory), re-read at most every
    /// [`SHARED_TTL`]: a thousand containers without limits of their own share one parent
    /// (`/docker`, a pod), whose limit need not be read a thousand times per collection.
    parent_limits: Mutex<HashMap<ParentKey, (Instant, Option<f64>)>>,
}

/// A pressure file's totals in ns: `some` and `full` (each None when absent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Stall {
    some: Option<u64>,
    full: Option<u64>,
}

impl Stall {
    /// (`some`, `full`).
    fn totals(self) -> (Option<u64>, Option<u64>) {
        (self.some, self.full)
    }
}

impl From<Pressure> for Stall {
    fn from(p: Pressure) -> Self {
        Self {
            some: p.some_total_ns(),
            full: p.full_total_ns(),
        }
    }
}

/// The five one-number v1 memory files, as read: usage, kmem usage, soft limit, failcnt, peak.
type V1MemoryFiles = (
    Result<u64, Miss>,
    Result<u64, Miss>,
    Result<u64, Miss>,
    Result<u64, Miss>,
    Result<u64, Miss>,
);

/// A parent cgroup's CPU-limit directories: (quota directory, cpuset directory).
type ParentKey = (PathBuf, Option<PathBuf>);

/// How long values shared by many containers (host CPUs, a parent's CPU limit) are reused.
const SHARED_TTL: Duration = Duration::from_secs(1);

impl CgroupStatsReader {
    /// A reader for the hierarchies of `layout`, with device names from `<proc_root>/diskstats`,
    /// PSI availability from `<proc_root>/pressure`, host CPUs from [`ONLINE_CPUS`] and `USER_HZ`
    /// from `sysconf(_SC_CLK_TCK)`.
    #[must_use]
    pub fn new(layout: &CgroupLayout, proc_root: &Path) -> Self {
        // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let reader = Self {
            files: FileCache::new(DEFAULT_MAX_OPEN),
            devices: Arc::new(DeviceNames::new(proc_root)),
            mount_points: layout
                .hierarchies
                .iter()
                .map(|h| h.mount_point.clone())
                .collect(),
            // USER_HZ is 100 on every Linux architecture the agent targets; a failure of
            // sysconf should not make every CPU time None.
            user_hz: u64::try_from(hz).ok().filter(|&hz| hz > 0).unwrap_or(100),
            online_dir: PathBuf::new(),
            online_name: String::new(),
            psi: proc_root.join("pressure").is_dir(),
            absent: Mutex::new(HashMap::new()),
            io_counters: true,
            host_cpus: Mutex::new(None),
            parent_limits: Mutex::new(HashMap::new()),
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

    /// Uses `hz` as `USER_HZ` instead of `sysconf(_SC_CLK_TCK)`.
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

    /// The device-name table, shared with other IO paths.
    #[must_use]
    pub fn device_names(&self) -> Arc<DeviceNames> {
        Arc::clone(&self.devices)
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
        self.pass(dirs).io()
    }

    fn pass<'a>(&'a self, dirs: &'a CgroupDirs) -> Pass<'a> {
        Pass {
            r: self,
            dirs,
            kernel: V1Values::default(),
            pressures: None,
            buf: Vec::new(),
            v2: dirs.v2.as_deref().map(|dir| V2Dir {
                dir,
                controllers: None,
            }),
            host_cpus: None,
            host_cpus_read: false,
        }
    }

    /// CPU, memory, IO, PIDs of the cgroup (values are hierarchical: nested cgroups included),
    /// with `timestamp` set. A section is None when its controller is absent or every file of
    /// it failed; a field is None when its file or key is missing, malformed, or says
    /// unlimited — never 0 for absent.
    pub fn read(&self, dirs: &CgroupDirs) -> ContainerStats {
        self.read_with(dirs, None)
    }

    /// As [`Self::read`], taking the v1 values that `kernel` has for `dirs` (see
    /// [`CgroupDirs::with_dir_keys`]) instead of reading their files.
    pub fn read_with(
        &self,
        dirs: &CgroupDirs,
        kernel: Option<&KernelCgroupValues>,
    ) -> ContainerStats {
        let timestamp = SystemTime::now();
        let mut pass = self.pass(dirs);
        if let Some(walk) = kernel {
            pass.kernel = dirs.v1_keys.values_in(walk);
        }
        pass.read_pressures();
        ContainerStats {
            timestamp: Some(timestamp),
            cpu: pass.cpu(),
            memory: pass.memory(),
            io: if self.io_counters {
                pass.io()
            } else {
                let stall = pass.pressure("io.pressure");
                stall.some.map(|psi| IoStats {
                    partial_stall_time: Some(psi),
                    full_stall_time: stall.full,
                    ..IoStats::default()
                })
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

    fn is_absent(&self, name: &'static str) -> bool {
        let mut absent = self.absent.lock().unwrap_or_else(PoisonError::into_inner);
        match absent.get(name) {
            Some(since) if since.elapsed() < ABSENT_RETRY => true,
            Some(_) => {
                absent.remove(name);
                false
            }
            None => false,
        }
    }

    /// Records that this kernel lacks `name`; the first record is kept, so that it expires.
    fn mark_absent(&self, name: &'static str) {
        let mut absent = self.absent.lock().unwrap_or_else(PoisonError::into_inner);
        absent.entry(name).or_insert_with(|| {
            tracing::debug!(
                file = name,
                "not provided by this kernel; skipped for a while"
            );
            Instant::now()
        });
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

/// The PSI files of a v2 directory (`Documentation/accounting/psi.rst`).
const PRESSURE_FILES: [&str; 3] = ["cpu.pressure", "memory.pressure", "io.pressure"];

/// Parses what reading `dir/name` gave; a missing file is [`Miss::Absent`], any other
/// failure (logged at debug) [`Miss::Failed`].
fn parse_read<T>(
    dir: &Path,
    name: &str,
    read: std::io::Result<&[u8]>,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, Miss> {
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Miss::Absent),
        Err(error) => {
            tracing::debug!(path = %dir.join(name).display(), %error, "cannot read cgroup file");
            return Err(Miss::Failed);
        }
    };
    let Ok(text) = std::str::from_utf8(bytes) else {
        tracing::debug!(path = %dir.join(name).display(), "cgroup file is not UTF-8");
        return Err(Miss::Failed);
    };
    parse(text).ok_or_else(|| {
        tracing::debug!(path = %dir.join(name).display(), "malformed cgroup file");
        Miss::Failed
    })
}

/// Why a file gave no value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Miss {
    /// ENOENT: the file does not exist (controller off, older kernel, cgroup gone).
    Absent,
    /// Any other read error, or malformed contents.
    Failed,
}

/// Controllers listed in a v2 `cgroup.controllers`, as bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Controllers(u8);

impl Controllers {
    const CPU: u8 = 1;
    const CPUSET: u8 = 2;
    const IO: u8 = 4;
    const MEMORY: u8 = 8;
    const PIDS: u8 = 16;
    const ALL: Self = Self(u8::MAX);

    fn parse(text: &str) -> Self {
        Self(
            text.split_ascii_whitespace()
                .map(|c| match c {
                    "cpu" => Self::CPU,
                    "cpuset" => Self::CPUSET,
                    "io" => Self::IO,
                    "memory" => Self::MEMORY,
                    "pids" => Self::PIDS,
                    _ => 0,
                })
                .fold(0, |a, b| a | b),
        )
    }
}

struct V2Dir<'d> {
    dir: &'d Path,
    /// Read on first need; [`Controllers::ALL`] when `cgroup.controllers` could not be read,
    /// so that every controller is tried (missing files then give None).
    controllers: Option<Controllers>,
}

/// One `read()`: the reader, a buffer reused for every file, and what was learnt on the way.
struct Pass<'a> {
    r: &'a CgroupStatsReader,
    dirs: &'a CgroupDirs,
    /// The v1 values a kernel cgroup walk gave for the cgroup, read instead of their files.
    kernel: V1Values,
    buf: Vec<u8>,
    v2: Option<V2Dir<'a>>,
    /// The PSI ("some", "full") totals of [`PRESSURE_FILES`] in ns, read together on first
    /// need.
    pressures: Option<[Stall; 3]>,
    /// Read on first need (`host_cpus_read`).
    host_cpus: Option<u32>,
    host_cpus_read: bool,
}

impl<'a> Pass<'a> {
    /// Reads `dir/name` and parses it.
    fn get<T>(
        &mut self,
        dir: &Path,
        name: &'static str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, Miss> {
        let read = self.r.files.read(dir, name, &mut self.buf);
        parse_read(dir, name, read, parse)
    }

    /// As [`Self::get`] for a file that some kernels lack: when it is missing although
    /// `sibling_ok` (another file of the same controller in the same directory was read), the
    /// kernel does not provide it, and it is skipped for a while.
    fn optional<T>(
        &mut self,
        dir: &Path,
        name: &'static str,
        sibling_ok: bool,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, Miss> {
        if self.r.is_absent(name) {
            return Err(Miss::Absent);
        }
        let got = self.get(dir, name, parse);
        if matches!(got, Err(Miss::Absent)) && sibling_ok {
            self.r.mark_absent(name);
        }
        got
    }

    /// Whether the v2 directory has `controller` enabled (`cgroup.controllers` lists it).
    fn v2_has(&mut self, controller: u8) -> Option<&'a Path> {
        let dir = self.v2.as_ref()?.dir;
        let known = if let Some(known) = self.v2.as_ref()?.controllers {
            known
        } else {
            let known = self
                .get(dir, "cgroup.controllers", |t| Some(Controllers::parse(t)))
                .unwrap_or(Controllers::ALL);
            if let Some(v2) = self.v2.as_mut() {
                v2.controllers = Some(known);
            }
            known
        };
        (known.0 & controller != 0).then_some(dir)
    }

    fn v2_dir(&self) -> Option<&'a Path> {
        self.v2.as_ref().map(|v| v.dir)
    }

    /// PSI totals of `name` (one of [`PRESSURE_FILES`]) in ns, from the v2 directory: as
    /// [`Self::read_pressures`] read them, else read now.
    fn pressure(&mut self, name: &'static str) -> Stall {
        if let (Some(totals), Some(index)) = (
            self.pressures,
            PRESSURE_FILES.iter().position(|n| *n == name),
        ) {
            return totals[index];
        }
        let Some(dir) = self.v2_dir().filter(|_| self.r.psi) else {
            return Stall::default();
        };
        self.get(dir, name, |t| Some(Pressure::parse(t)))
            .map(Stall::from)
            .unwrap_or_default()
    }

    /// Reads the three PSI files together (one descriptor lookup), for [`Self::pressure`].
    fn read_pressures(&mut self) {
        let Some(dir) = self.v2_dir().filter(|_| self.r.psi) else {
            return;
        };
        let mut totals = [Stall::default(); 3];
        self.r
            .files
            .read_each(dir, PRESSURE_FILES, &mut self.buf, |i, read| {
                totals[i] = parse_read(dir, PRESSURE_FILES[i], read, |t| Some(Pressure::parse(t)))
                    .map(Stall::from)
                    .unwrap_or_default();
            });
        self.pressures = Some(totals);
    }

    /// Online CPUs of the host: the sysfs list, else sysconf.
    fn host_cpus(&mut self) -> Option<u32> {
        if self.host_cpus_read {
            return self.host_cpus;
        }
        let r = self.r;
        if let Some((at, cpus)) = *r.host_cpus.lock().unwrap_or_else(PoisonError::into_inner)
            && at.elapsed() < SHARED_TTL
        {
            self.host_cpus = cpus;
            self.host_cpus_read = true;
            return cpus;
        }
        let from_sysfs = if r.online_name.is_empty() {
            None
        } else {
            r.files
                .read(&r.online_dir, &r.online_name, &mut self.buf)
                .ok()
                .and_then(|b| std::str::from_utf8(b).ok())
                .and_then(count_cpus)
                .filter(|&n| n > 0)
        };
        let known = from_sysfs.or_else(|| {
            // SAFETY: sysconf has no preconditions.
            let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
            u32::try_from(n).ok().filter(|&n| n > 0)
        });
        self.host_cpus = known;
        self.host_cpus_read = true;
        *r.host_cpus.lock().unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), known));
        known
    }

    // ----- CPU -----

    /// The v1 directory of `controller`, if the cgroup has one.
    fn v1(&self, controller: &str) -> Option<&'a Path> {
        self.dirs.v1.get(controller).map(PathBuf::as_path)
    }

    fn cpu(&mut self) -> Option<CpuStats> {
        let acct = self.v1("cpuacct");
        let cpu = self.v1("cpu");
        let v2_cpu = if cpu.is_none() {
            self.v2_has(Controllers::CPU)
        } else {
            None
        };
        let mut s = CpuStats::default();
        let mut ok = false;

        // v2 cpu.stat serves usage (a core file) when there is no cpuacct, and throttling when the
        // v2 cpu controller is used; read it once for both.
        let v2_stat_dir = if acct.is_none() {
            self.v2_dir()
        } else {
            v2_cpu
        };
        let v2_stat =
            v2_stat_dir.and_then(|d| self.get(d, "cpu.stat", |t| Some(CpuStat::parse(t))).ok());

        if let Some(d) = acct {
            // Both files at once: one descriptor lookup.
            let (mut usage, mut stat) = (None, None);
            self.r.files.read_each(
                d,
                ["cpuacct.usage", "cpuacct.stat"],
                &mut self.buf,
                |i, read| {
                    if i == 0 {
                        usage = parse_read(d, "cpuacct.usage", read, |t| {
                            single_u64("cpuacct.usage", t)
                        })
                        .ok();
                    } else {
                        stat = parse_read(d, "cpuacct.stat", read, |t| Some(CpuacctStat::parse(t)))
                            .ok();
                    }
                },
            );
            if let Some(ns) = usage {
                s.total = Some(ns);
                ok = true;
            }
            if let Some(st) = stat {
                let hz = self.r.user_hz;
                s.user = st.user_ticks.and_then(|t| ticks_to_ns(t, hz));
                s.system = st.system_ticks.and_then(|t| ticks_to_ns(t, hz));
                ok = true;
            }
        } else if let Some(st) = &v2_stat {
            s.total = st.usage_usec.map(us_to_ns);
            s.user = st.user_usec.map(us_to_ns);
            s.system = st.system_usec.map(us_to_ns);
            ok = true;
        }

        let mut bandwidth = None;
        let kernel_cpu = self.kernel.cpu;
        if let (Some(_), Some(k)) = (cpu, kernel_cpu) {
            s.shares = Some(k.shares);
            s.elapsed_periods = Some(k.nr_periods);
            s.throttled_periods = Some(k.nr_throttled);
            s.throttled_time = Some(k.throttled_time_ns);
            bandwidth = Some(CpuMax {
                quota_us: k.quota_us,
                period_us: k.period_us,
            });
            ok = true;
        } else if let Some(d) = cpu {
            if let Ok(shares) = self.get(d, "cpu.shares", |t| single_u64("cpu.shares", t)) {
                s.shares = Some(shares);
                ok = true;
            }
            if let Ok(st) = self.get(d, "cpu.stat", |t| Some(CpuStat::parse(t))) {
                s.elapsed_periods = st.nr_periods;
                s.throttled_periods = st.nr_throttled;
                s.throttled_time = st.throttled_time;
                ok = true;
            }
            let (read, max) = self.v1_bandwidth(d);
            ok |= read;
            bandwidth = max;
        } else if let Some(d) = v2_cpu {
            if let Ok(weight) = self.get(d, "cpu.weight", |t| single_u64("cpu.weight", t)) {
                s.weight = Some(weight);
                ok = true;
            }
            if let Some(st) = &v2_stat {
                s.elapsed_periods = st.nr_periods;
                s.throttled_periods = st.nr_throttled;
                s.throttled_time = st.throttled_usec.map(us_to_ns);
                ok = true;
            }
            if let Ok(max) = self.get(d, "cpu.max", CpuMax::parse_v2) {
                bandwidth = Some(max);
                ok = true;
            }
        }
        if !ok {
            return None;
        }

        s.cfs_quota_us = bandwidth.and_then(|b| b.quota_us);
        s.cfs_period_us = bandwidth.map(|b| b.period_us);
        (s.limit, s.defaulted_limit) = self.cpu_limit(cpu, bandwidth.and_then(|b| b.percent()));
        (s.partial_stall_time, s.full_stall_time) = self.pressure("cpu.pressure").totals();
        Some(s)
    }

    /// The CPU limit in percent and whether it was defaulted to the host's CPUs: the cgroup's
    /// own quota and cpuset (`cpu` is its v1 cpu directory, else v2 is used), else its parent's.
    fn cpu_limit(
        &mut self,
        cpu: Option<&'a Path>,
        quota_pct: Option<f64>,
    ) -> (Option<f64>, Option<bool>) {
        let cpuset = self.cpuset_dir();
        let kernel_cpus = match cpuset {
            Some((_, true)) => self.kernel.effective_cpus,
            _ => None,
        };
        let cpus = match kernel_cpus {
            // An empty set is unconfigured, as in `cpuset_count`.
            Some(n) => Some(n).filter(|&n| n > 0),
            None => cpuset.and_then(|(d, v1)| self.cpuset_count(d, v1)),
        };
        let mut limit = self.limit_pct(quota_pct, cpus);
        if limit.is_none() {
            // No limit of its own: the parent's, where ECS puts a task's limits above its
            // containers. Only one level, as the seed does.
            let quota_dir = cpu.or(self.v2_dir());
            let parent_cpuset = match self.v1("cpuset") {
                Some(d) => Some((d, true)),
                None => self.v2_dir().map(|d| (d, false)),
            };
            let quota_parent = quota_dir.and_then(|d| self.r.parent(d));
            let cpuset_parent = parent_cpuset.and_then(|(d, v1)| Some((self.r.parent(d)?, v1)));
            let key = quota_parent
                .map(|q| (q.to_path_buf(), cpuset_parent.map(|(p, _)| p.to_path_buf())));
            let cached = key.as_ref().and_then(|key| {
                let limits = self
                    .r
                    .parent_limits
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                limits
                    .get(key)
                    .filter(|(at, _)| at.elapsed() < SHARED_TTL)
                    .map(|(_, limit)| *limit)
            });
            if let Some(parent_limit) = cached {
                limit = parent_limit;
            } else {
                let parent_quota = quota_parent.and_then(|p| {
                    if cpu.is_some() {
                        self.v1_bandwidth(p).1.and_then(|b| b.percent())
                    } else {
                        self.get(p, "cpu.max", CpuMax::parse_v2).ok()?.percent()
                    }
                });
                let parent_cpus = cpuset_parent.and_then(|(p, v1)| self.cpuset_count(p, v1));
                limit = self.limit_pct(parent_quota, parent_cpus);
                if let Some(key) = key {
                    let mut limits = self
                        .r
                        .parent_limits
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    // Parents come and go with pods: keep only recent ones.
                    limits.retain(|_, (at, _)| at.elapsed() < SHARED_TTL);
                    limits.insert(key, (Instant::now(), limit));
                }
            }
        }
        match limit {
            Some(pct) => (Some(pct), Some(false)),
            None => match self.host_cpus() {
                Some(host) => (Some(f64::from(host) * 100.0), Some(true)),
                None => (None, None),
            },
        }
    }

    /// v1 CFS bandwidth: (whether a file was read, quota and period when both were read).
    fn v1_bandwidth(&mut self, dir: &Path) -> (bool, Option<CpuMax>) {
        let Ok(quota_us) = self.get(dir, "cpu.cfs_quota_us", parse_cfs_quota) else {
            return (false, None);
        };
        let period = self
            .get(dir, "cpu.cfs_period_us", |t| {
                single_u64("cpu.cfs_period_us", t)
            })
            .ok();
        (
            true,
            period.map(|period_us| CpuMax {
                quota_us,
                period_us,
            }),
        )
    }

    /// The directory giving the cgroup's CPU set, and whether it is v1.
    fn cpuset_dir(&mut self) -> Option<(&'a Path, bool)> {
        match self.v1("cpuset") {
            Some(d) => Some((d, true)),
            None => self.v2_has(Controllers::CPUSET).map(|d| (d, false)),
        }
    }

    /// CPUs in the cgroup's effective set; None when unreadable or empty (an unconfigured v1
    /// cpuset has an empty list, and a cgroup cannot run tasks on no CPU).
    fn cpuset_count(&mut self, dir: &Path, v1: bool) -> Option<u32> {
        let count = if v1 {
            // effective_cpus (kernel 4.x+) leaves out offline CPUs; cpus is what was written.
            const EFFECTIVE: &str = "cpuset.effective_cpus";
            let effective = if self.r.is_absent(EFFECTIVE) {
                Err(Miss::Absent)
            } else {
                self.get(dir, EFFECTIVE, count_cpus)
            };
            match effective {
                Err(Miss::Absent) => {
                    let cpus = self.get(dir, "cpuset.cpus", count_cpus);
                    if cpus.is_ok() {
                        self.r.mark_absent(EFFECTIVE);
                    }
                    cpus.ok()
                }
                other => other.ok(),
            }
        } else {
            self.get(dir, "cpuset.cpus.effective", count_cpus).ok()
        };
        count.filter(|&n| n > 0)
    }

    /// The seed's `computeCPULimitPct`: min of the cpuset's CPUs ×100 (only when not every host
    /// CPU) and the quota percentage, over whichever exist.
    fn limit_pct(&mut self, quota_pct: Option<f64>, cpus: Option<u32>) -> Option<f64> {
        let cpuset_pct = match cpus {
            Some(n) if Some(n) != self.host_cpus() => Some(f64::from(n) * 100.0),
            _ => None,
        };
        match (cpuset_pct, quota_pct) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ----- memory -----

    fn memory(&mut self) -> Option<MemoryStats> {
        let mut s = if let Some(d) = self.v1("memory") {
            self.memory_v1(d)?
        } else {
            let d = self.v2_has(Controllers::MEMORY)?;
            self.memory_v2(d)?
        };
        (s.partial_stall_time, s.full_stall_time) = self.pressure("memory.pressure").totals();
        Some(s)
    }

    fn memory_v1(&mut self, d: &Path) -> Option<MemoryStats> {
        let kernel = self.kernel.memory;
        let stat = self.get(d, "memory.stat", |t| Some(MemoryStatV1::parse(t)));
        let oom_kills = match kernel.and_then(|k| k.oom_kill) {
            Some(kills) => Some(kills),
            None => self
                .get(d, "memory.oom_control", |t| Some(OomControl::parse(t)))
                .ok()
                .and_then(|c| c.oom_kill),
        };
        let (usage, kmem, soft, failcnt, peak) = match kernel {
            Some(k) => (
                Ok(k.usage_bytes),
                match k.kmem_usage_bytes {
                    Some(bytes) => Ok(bytes),
                    None => self.optional(d, "memory.kmem.usage_in_bytes", true, |t| {
                        single_u64("memory.kmem.usage_in_bytes", t)
                    }),
                },
                Ok(k.soft_limit_bytes),
                Ok(k.failcnt),
                Ok(k.max_usage_bytes),
            ),
            None => self.memory_v1_files(d),
        };
        let ok = usage.is_ok()
            || stat.is_ok()
            || kmem.is_ok()
            || soft.is_ok()
            || failcnt.is_ok()
            || peak.is_ok();
        if !ok {
            return None;
        }
        let usage = usage.ok();
        let stat = stat.unwrap_or_default();
        Some(MemoryStats {
            usage_total: usage,
            kernel_memory: kmem.ok(),
            limit: stat.hierarchical_memory_limit.and_then(v1_limit),
            softlimit: soft.ok().and_then(v1_limit),
            swap: stat.total_swap,
            swap_limit: stat.hierarchical_memsw_limit.and_then(v1_limit),
            working_set: working_set(usage, stat.total_inactive_file),
            rss: stat.total_rss,
            cache: stat.total_cache,
            // memory.failcnt counts charges that hit the limit, not OOM kills (as the seed).
            oom_events: failcnt.as_ref().ok().copied(),
            failcnt: failcnt.ok(),
            oom_kills,
            peak: peak.ok(),
            pgfault: stat.total_pgfault,
            pgmajfault: stat.total_pgmajfault,
            ..MemoryStats::default()
        })
    }

    /// `memory.usage_in_bytes`, `memory.kmem.usage_in_bytes`, `memory.soft_limit_in_bytes`,
    /// `memory.failcnt` and `memory.max_usage_in_bytes`, from the files.
    fn memory_v1_files(&mut self, d: &Path) -> V1MemoryFiles {
        let usage = self.get(d, "memory.usage_in_bytes", |t| {
            single_u64("memory.usage_in_bytes", t)
        });
        let kmem = self.optional(d, "memory.kmem.usage_in_bytes", usage.is_ok(), |t| {
            single_u64("memory.kmem.usage_in_bytes", t)
        });
        let soft = self.get(d, "memory.soft_limit_in_bytes", |t| {
            single_u64("memory.soft_limit_in_bytes", t)
        });
        let failcnt = self.get(d, "memory.failcnt", |t| single_u64("memory.failcnt", t));
        let peak = self.get(d, "memory.max_usage_in_bytes", |t| {
            single_u64("memory.max_usage_in_bytes", t)
        });
        (usage, kmem, soft, failcnt, peak)
    }

    fn memory_v2(&mut self, d: &Path) -> Option<MemoryStats> {
        let current = self.get(d, "memory.current", |t| single_u64("memory.current", t));
        let stat = self.get(d, "memory.stat", |t| Some(MemoryStatV2::parse(t)));
        let max = self.get(d, "memory.max", |t| single_limit("memory.max", t));
        let low = self.get(d, "memory.low", |t| single_limit("memory.low", t));
        let events = self.get(d, "memory.events", |t| Some(MemoryEvents::parse(t)));
        let sibling = current.is_ok();
        // Swap files need swap accounting (CONFIG_MEMCG_SWAP); memory.peak is 5.19+.
        let swap = self.optional(d, "memory.swap.current", sibling, |t| {
            single_u64("memory.swap.current", t)
        });
        let swap_max = self.optional(d, "memory.swap.max", sibling, |t| {
            single_limit("memory.swap.max", t)
        });
        let peak = self.optional(d, "memory.peak", sibling, |t| single_u64("memory.peak", t));
        let ok = current.is_ok()
            || stat.is_ok()
            || max.is_ok()
            || low.is_ok()
            || events.is_ok()
            || swap.is_ok()
            || swap_max.is_ok()
            || peak.is_ok();
        if !ok {
            return None;
        }
        let current = current.ok();
        let stat = stat.unwrap_or_default();
        Some(MemoryStats {
            usage_total: current,
            kernel_memory: stat.kernel_memory(),
            limit: max.ok().and_then(Limit::value),
            // 0 is memory.low's default, "no protection", and "max" protects everything: neither
            // is a soft limit to report.
            softlimit: low.ok().and_then(Limit::value).filter(|&v| v > 0),
            swap: swap.ok(),
            // Swap alone, unlike v1's memory+swap limit.
            swap_limit: swap_max.ok().and_then(Limit::value),
            working_set: working_set(current, stat.inactive_file),
            rss: stat.anon,
            cache: stat.file,
            oom_events: events.as_ref().ok().and_then(|e| e.oom),
            oom_kills: events.ok().and_then(|e| e.oom_kill),
            peak: peak.ok(),
            pgfault: stat.pgfault,
            pgmajfault: stat.pgmajfault,
            ..MemoryStats::default()
        })
    }

    // ----- IO -----

    fn io(&mut self) -> Option<IoStats> {
        let mut s = if let Some(d) = self.v1("blkio") {
            self.io_v1(d)?
        } else {
            let d = self.v2_has(Controllers::IO)?;
            let rows = self.get(d, "io.stat", |t| Some(parse_io_stat(t))).ok()?;
            self.named(&rows)
        };
        (s.partial_stall_time, s.full_stall_time) = self.pressure("io.pressure").totals();
        Some(s)
    }

    fn io_v1(&mut self, d: &Path) -> Option<IoStats> {
        // Hierarchical throttle files; the local ones on kernels without them.
        let mut best = self.blkio_pair(
            d,
            "blkio.throttle.io_service_bytes_recursive",
            "blkio.throttle.io_serviced_recursive",
            false,
        );
        if best.is_none() {
            best = self.blkio_pair(
                d,
                "blkio.throttle.io_service_bytes",
                "blkio.throttle.io_serviced",
                false,
            );
            if best.is_some() {
                self.r
                    .mark_absent("blkio.throttle.io_service_bytes_recursive");
                self.r.mark_absent("blkio.throttle.io_serviced_recursive");
            }
        }
        // All zero or missing: the throttle layer may not count on this kernel (6.9+ without a
        // throttle rule on the device); bfq and CFQ count on their own devices.
        for (bytes, ios) in [
            (
                "blkio.bfq.io_service_bytes_recursive",
                "blkio.bfq.io_serviced_recursive",
            ),
            (
                "blkio.io_service_bytes_recursive",
                "blkio.io_serviced_recursive",
            ),
        ] {
            if best.as_deref().is_some_and(any_nonzero) {
                break;
            }
            let sibling_ok = best.is_some();
            let Some(rows) = self.blkio_pair(d, bytes, ios, sibling_ok) else {
                continue;
            };
            // Counted IO wins; else rows of zeros (real zeros for those devices) beat no rows.
            if any_nonzero(&rows) || best.as_ref().is_none_or(Vec::is_empty) {
                best = Some(rows);
            }
        }
        let rows = best?;
        if rows.is_empty() {
            // No device rows anywhere: on 6.9+ that is "not counted", not "no IO".
            return Some(IoStats::default());
        }
        Some(self.named(&rows))
    }

    /// A v1 bytes file and ops file of one family, merged; None when both are unreadable.
    fn blkio_pair(
        &mut self,
        d: &Path,
        bytes: &'static str,
        ios: &'static str,
        sibling_ok: bool,
    ) -> Option<Vec<(Dev, DeviceIoStats)>> {
        let b = self.optional(d, bytes, sibling_ok, |t| Some(parse_blkio_rwstat(t)));
        let o = self.optional(d, ios, sibling_ok || b.is_ok(), |t| {
            Some(parse_blkio_rwstat(t))
        });
        if b.is_err() && o.is_err() {
            return None;
        }
        Some(merge_v1(
            b.as_deref().unwrap_or_default(),
            o.as_deref().unwrap_or_default(),
        ))
    }

    fn named(&self, rows: &[(Dev, DeviceIoStats)]) -> IoStats {
        let devices = &self.r.devices;
        io_stats(rows, |(major, minor)| devices.name(major, minor))
    }

    // ----- PIDs -----

    fn pids(&mut self) -> Option<PidStats> {
        if self.v1("pids").is_some()
            && let Some(k) = self.kernel.pids
        {
            return Some(PidStats {
                thread_count: Some(k.current),
                thread_limit: k.max.value(),
            });
        }
        let d = match self.v1("pids") {
            Some(d) => d,
            None => self.v2_has(Controllers::PIDS)?,
        };
        let current = self.get(d, "pids.current", pids::parse_current);
        let max = self.get(d, "pids.max", pids::parse_max);
        if current.is_err() && max.is_err() {
            return None;
        }
        Some(PidStats {
            thread_count: current.ok(),
            thread_limit: max.ok().and_then(Limit::value),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TASK: &str = "0f3c5e7a9b1d4f6a8c2e4b6d8f0a1c3e";
    const L: &str = "2c1f9e0b7a4d4e6b8f3a5c7d9e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b";
    const I: &str = "5d4c3b2a19080f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796";
    const S: &str = "9e8d7c6b5a4938271605f4e3d2c1b0a99e8d7c6b5a4938271605f4e3d2c1b0a9";
    const D: &str = "71a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80";
    const BAD: &str = "bad0bad0bad0bad0bad0bad0bad0bad0bad0bad0bad0bad0bad0bad0bad0bad0";

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cgroupfs")
    }

    /// The layout of fixture tree `name` ("v1", "v2", "hybrid"): discovered from the captured
    /// `<name>-host/proc/self/{mountinfo,cgroup}`, with /sys/fs/cgroup moved to the tree.
    fn fixture(name: &str) -> (CgroupLayout, CgroupStatsReader) {
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
    fn proc_cgroup(hierarchies: &[&str], path: &str) -> String {
        hierarchies
            .iter()
            .map(|h| [h, ":", path, "\n"].concat())
            .collect()
    }

    const HYBRID: &[&str] = &[
        "8:pids",
        "7:blkio",
        "4:memory",
        "3:cpuset",
        "2:cpuacct",
        "1:cpu",
        "0:",
    ];
    const V1: &[&str] = &["8:pids", "7:memory", "3:cpuset", "2:cpuacct,cpu"];
    const V2: &[&str] = &["0:"];

    fn read(
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

    #[test]
    fn dirs_from_proc_cgroup() {
        let (layout, _) = fixture("hybrid");
        let dirs = CgroupDirs::from_proc_cgroup(
            &layout,
            "9:name=systemd:/docker/x\n6:freezer:/docker/x\n4:memory:/docker/x\n2:cpuacct:/docker/x\n0::/docker/x\n",
        );
        let root = fixtures().join("hybrid");
        assert_eq!(dirs.v2, Some(root.join("unified/docker/x")));
        assert_eq!(
            dirs.v1.keys().map(String::as_str).collect::<Vec<_>>(),
            ["cpuacct", "memory"]
        );
        assert_eq!(dirs.v1["memory"], root.join("memory/docker/x"));

        // Co-mounted controllers share their directory.
        let (layout, _) = fixture("v1");
        let dirs = CgroupDirs::from_paths(&layout, &[(2, "/docker/y"), (5, "/not/mounted")]);
        assert_eq!(dirs.v2, None);
        assert_eq!(dirs.v1["cpu"], dirs.v1["cpuacct"]);
        assert_eq!(dirs.v1["cpu"], fixtures().join("v1/cpu,cpuacct/docker/y"));
        assert_eq!(dirs.v1.len(), 2);
    }

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
    fn hybrid_limit_from_parent_cpuset_and_default() {
        let (layout, reader) = fixture("hybrid");

        // No quota and every CPU: the ECS task's (parent's) quota of 50000/100000 applies.
        let inherit = read(&layout, &reader, HYBRID, &format!("/ecs/{TASK}/{I}"));
        let cpu = inherit.cpu.expect("cpu");
        assert_eq!((cpu.limit, cpu.defaulted_limit), (Some(50.0), Some(false)));
        assert_eq!(cpu.total, Some(338_695_763));
        assert_eq!(
            (cpu.user, cpu.system),
            (Some(300_000_000), Some(30_000_000))
        );
        assert_eq!(cpu.shares, Some(1024));
        assert_eq!(cpu.partial_stall_time, Some(1_384_872_000));
        let memory = inherit.memory.expect("memory");
        assert_eq!(
            memory.limit, None,
            "hierarchical_memory_limit is the unlimited value"
        );
        assert_eq!(memory.softlimit, None, "soft limit is the unlimited value");
        assert_eq!(memory.swap_limit, None);
        assert_eq!(memory.working_set, Some(13_705_216 - 12_582_912));
        assert_eq!(memory.oom_events, Some(0));
        assert_eq!(memory.partial_stall_time, Some(0));
        // Every blkio file says "Total 0" with no device row: not counted, so unknown.
        assert_eq!(
            inherit.io,
            Some(IoStats {
                partial_stall_time: Some(0),
                full_stall_time: Some(0),
                ..IoStats::default()
            })
        );
        assert_eq!(
            inherit.pid,
            Some(PidStats {
                thread_count: Some(3),
                thread_limit: None,
            })
        );

        // cpuset.effective_cpus "1" of 2 CPUs.
        let cpuset = read(&layout, &reader, HYBRID, &format!("/ecs/{TASK}/{S}"));
        let cpu = cpuset.cpu.expect("cpu");
        assert_eq!((cpu.limit, cpu.defaulted_limit), (Some(100.0), Some(false)));

        // No limit here nor on docker/ (quota -1, cpuset 0-1): the host's 2 CPUs, defaulted.
        let default = read(&layout, &reader, HYBRID, &format!("/docker/{D}"));
        let cpu = default.cpu.expect("cpu");
        assert_eq!((cpu.limit, cpu.defaulted_limit), (Some(200.0), Some(true)));
        // Its IO went to loop1, scheduled by bfq without a throttle rule: only the bfq files count.
        let loop1 = DeviceIoStats {
            read_bytes: Some(1_048_576),
            write_bytes: Some(3_145_728),
            read_operations: Some(16),
            write_operations: Some(48),
        };
        assert_eq!(
            default.io,
            Some(IoStats {
                read_bytes: Some(1_048_576),
                write_bytes: Some(3_145_728),
                read_operations: Some(16),
                write_operations: Some(48),
                partial_stall_time: Some(1_444_000),
                full_stall_time: Some(1_444_000),
                devices: Some(BTreeMap::from([("loop1".to_owned(), loop1)])),
            })
        );
        // The parent's (ECS task's) view: its local throttle files are zero, the recursive ones
        // hold its child's IO.
        let parent = read(&layout, &reader, HYBRID, &format!("/ecs/{TASK}"));
        let io = parent.io.expect("io");
        assert_eq!(
            (io.read_bytes, io.write_operations),
            (Some(2_097_152), Some(64))
        );
        assert_eq!(parent.pid.and_then(|p| p.thread_limit), Some(100));
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
    fn v1_malformed_and_missing_files() {
        let (layout, reader) = fixture("v1");
        let stats = read(&layout, &reader, V1, &format!("/docker/{BAD}"));
        assert_eq!(
            stats.cpu,
            Some(CpuStats {
                // cpuacct.usage "not-a-number"
                total: None,
                user: Some(300_000_000),
                system: Some(30_000_000),
                // cpu.cfs_quota_us missing, cpuset.effective_cpus "0-"; docker/ has no limit.
                limit: Some(200.0),
                defaulted_limit: Some(true),
                shares: Some(1024),
                weight: None,
                // "nr_periods" without a value
                elapsed_periods: None,
                throttled_periods: Some(0),
                throttled_time: Some(0),
                partial_stall_time: None,
                full_stall_time: None,
                cfs_quota_us: None,
                cfs_period_us: None,
            })
        );
        let memory = stats.memory.expect("memory");
        assert_eq!(memory.rss, None, "total_rss 12x");
        assert_eq!(memory.cache, Some(12_582_912));
        assert_eq!(memory.oom_events, None, "memory.failcnt missing");
        assert_eq!(memory.usage_total, Some(13_705_216));
        assert_eq!(memory.kernel_memory, Some(598_016));
        // pids.current empty and pids.max missing: every file of the section failed.
        assert_eq!(stats.pid, None);
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
    fn v2_limit_from_parent_cpuset_default_and_missing_io() {
        let (layout, reader) = fixture("v2");

        let inherit = read(&layout, &reader, V2, &format!("/docker/{I}"));
        let cpu = inherit.cpu.expect("cpu");
        // cpu.max "max 100000" here, "50000 100000" on docker/.
        assert_eq!((cpu.limit, cpu.defaulted_limit), (Some(50.0), Some(false)));
        assert_eq!(cpu.weight, Some(100));
        let memory = inherit.memory.expect("memory");
        assert_eq!(
            (memory.limit, memory.softlimit, memory.swap_limit),
            (None, None, None)
        );
        assert_eq!(memory.peak, Some(20_664_320));
        // An empty io.stat: the kernel lists only devices with non-zero counters, so no IO.
        assert_eq!(
            inherit.io,
            Some(IoStats {
                read_bytes: Some(0),
                write_bytes: Some(0),
                read_operations: Some(0),
                write_operations: Some(0),
                partial_stall_time: Some(0),
                full_stall_time: Some(0),
                devices: Some(BTreeMap::new()),
            })
        );
        assert_eq!(inherit.pid.and_then(|p| p.thread_limit), None);

        let cpuset = read(&layout, &reader, V2, &format!("/docker/{S}"));
        let cpu = cpuset.cpu.expect("cpu");
        assert_eq!((cpu.limit, cpu.defaulted_limit), (Some(100.0), Some(false)));

        // system.slice enables only cpu, memory and pids below it.
        let default = read(
            &layout,
            &reader,
            V2,
            &format!("/system.slice/docker-{D}.scope"),
        );
        let cpu = default.cpu.expect("cpu");
        assert_eq!((cpu.limit, cpu.defaulted_limit), (Some(200.0), Some(true)));
        assert_eq!(cpu.total, Some(2_590_600_000));
        assert_eq!(default.io, None, "io is not in cgroup.controllers");
        assert_eq!(default.memory.and_then(|m| m.usage_total), Some(94_208));
        assert_eq!(default.pid.and_then(|p| p.thread_count), Some(1));
    }

    #[test]
    fn v2_malformed_values_and_controllers_file_is_obeyed() {
        let (layout, reader) = fixture("v2");
        let stats = read(&layout, &reader, V2, &format!("/docker/{BAD}"));
        let cpu = stats.cpu.expect("cpu");
        // cpu.max "abc 100000" is malformed: the parent's 50% applies.
        assert_eq!((cpu.limit, cpu.defaulted_limit), (Some(50.0), Some(false)));
        let memory = stats.memory.expect("memory");
        assert_eq!(memory.limit, Some(0), "memory.max 0 is a limit");
        assert_eq!(memory.softlimit, None, "memory.low max");
        assert_eq!(
            memory.working_set,
            Some(0),
            "inactive_file > usage is clamped"
        );
        assert_eq!(memory.oom_events, None, "oom x");
        assert_eq!(memory.usage_total, Some(98_304));
        // io.stat exists in the directory but io is not enabled for it.
        assert_eq!(stats.io, None);
    }

    /// A scratch v1 blkio hierarchy: `files` are (cgroup-relative path, text).
    fn scratch_blkio(files: &[(&str, &str)]) -> (tempfile::TempDir, CgroupStatsReader, CgroupDirs) {
        let root = tempfile::tempdir().expect("tempdir");
        for (path, text) in files {
            let path = root.path().join("blkio").join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
        let mountinfo = "38 31 0:35 / /sys/fs/cgroup/blkio rw - cgroup cgroup rw,blkio\n";
        let layout = CgroupLayout::from_texts(mountinfo, "7:blkio:/\n")
            .expect("layout")
            .with_mount_prefix(Path::new("/sys/fs/cgroup"), root.path());
        let proc_root = fixtures().join("hybrid-host/proc");
        let reader = CgroupStatsReader::new(&layout, &proc_root);
        let dirs = CgroupDirs::from_paths(&layout, &[(7, "/c")]);
        (root, reader, dirs)
    }

    const ZEROS_7_0: &str = "7:0 Read 0\n7:0 Write 0\n7:0 Total 0\nTotal 0\n";

    #[test]
    fn v1_io_prefers_counted_io_over_zero_rows() {
        // Synthetic files (formats as captured here): throttle rows of zeros for loop0, bfq counts
        // loop1.
        let (_root, reader, dirs) = scratch_blkio(&[
            ("c/blkio.throttle.io_service_bytes_recursive", ZEROS_7_0),
            ("c/blkio.throttle.io_serviced_recursive", ZEROS_7_0),
            (
                "c/blkio.bfq.io_service_bytes_recursive",
                "7:1 Read 4096\n7:1 Write 0\nTotal 4096\n",
            ),
            (
                "c/blkio.bfq.io_serviced_recursive",
                "7:1 Read 1\n7:1 Write 0\nTotal 1\n",
            ),
        ]);
        let io = reader.read(&dirs).io.expect("io");
        assert_eq!((io.read_bytes, io.read_operations), (Some(4096), Some(1)));
        assert_eq!(
            io.devices.expect("devices").keys().collect::<Vec<_>>(),
            ["loop1"]
        );
        // CFQ's files were not needed, so nothing was learnt about them.
        assert!(!reader.is_absent("blkio.io_service_bytes_recursive"));
    }

    #[test]
    fn v1_io_zero_rows_are_zero_and_no_rows_are_unknown() {
        let (_root, reader, dirs) = scratch_blkio(&[
            ("c/blkio.throttle.io_service_bytes_recursive", ZEROS_7_0),
            ("c/blkio.throttle.io_serviced_recursive", ZEROS_7_0),
            ("c/blkio.bfq.io_service_bytes_recursive", "Total 0\n"),
            ("c/blkio.bfq.io_serviced_recursive", "Total 0\n"),
        ]);
        let io = reader.read(&dirs).io.expect("io");
        assert_eq!((io.read_bytes, io.write_operations), (Some(0), Some(0)));
        // CFQ's files are missing beside readable blkio files: this kernel has none.
        assert!(reader.is_absent("blkio.io_service_bytes_recursive"));
        assert!(reader.is_absent("blkio.io_serviced_recursive"));

        let (_root, reader, dirs) = scratch_blkio(&[
            ("c/blkio.throttle.io_service_bytes_recursive", "Total 0\n"),
            ("c/blkio.throttle.io_serviced_recursive", "Total 0\n"),
        ]);
        assert_eq!(reader.read(&dirs).io, Some(IoStats::default()));
    }

    #[test]
    fn v1_io_falls_back_to_local_throttle_files() {
        // Kernels before the _recursive files: the local ones, and the recursive ones are
        // learnt to be absent (not opened again for a while).
        let (_root, reader, dirs) = scratch_blkio(&[
            (
                "c/blkio.throttle.io_service_bytes",
                "7:0 Read 10\n7:0 Write 20\nTotal 30\n",
            ),
            (
                "c/blkio.throttle.io_serviced",
                "7:0 Read 1\n7:0 Write 2\nTotal 3\n",
            ),
        ]);
        let io = reader.read(&dirs).io.expect("io");
        assert_eq!(
            (
                io.read_bytes,
                io.write_bytes,
                io.read_operations,
                io.write_operations
            ),
            (Some(10), Some(20), Some(1), Some(2))
        );
        assert!(reader.is_absent("blkio.throttle.io_service_bytes_recursive"));
        assert!(!reader.is_absent("blkio.bfq.io_service_bytes_recursive"));
        // A whole missing cgroup teaches nothing.
        let (_root, reader, _) = scratch_blkio(&[]);
        let gone = CgroupDirs::from_paths(
            &CgroupLayout::from_texts(
                "38 31 0:35 / /nowhere/blkio rw - cgroup cgroup rw,blkio\n",
                "7:blkio:/\n",
            )
            .expect("layout"),
            &[(7, "/c")],
        );
        assert_eq!(reader.read(&gone).io, None);
        assert!(!reader.is_absent("blkio.throttle.io_service_bytes_recursive"));
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

    /// On the machine's real cgroupfs: held descriptors, a cgroup removed (its held files fail
    /// and are dropped) and recreated under the same path (they are reopened).
    #[test]
    fn real_cgroup_held_descriptors_survive_recreation() {
        if !is_root() {
            use std::io::Write as _;
            // CI runs as root: there, a skip would hide a failure.
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "creating cgroups needs root, and CI=true allows no skip"
            );
            let _ = writeln!(std::io::stderr(), "skipping: creating cgroups needs root");
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

        let first = reader.read(&dirs);
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
            .held_inode(&pids_dir, "pids.current")
            .expect("held");
        assert_eq!(reader.read(&dirs).pid, first.pid);
        assert_eq!(
            reader.open_files(),
            held,
            "nothing reopened while the cgroup lives"
        );

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
