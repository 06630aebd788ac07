//! Walking the v1 hierarchies — or the v2 hierarchy when it has controllers — with the
//! kernel's cgroup iterator (`read_cgroup_values`, `collector-ebpf/src/cgroup_values.rs`):
//! per walk one iterator file per hierarchy, read once, and the records the program left in
//! the mmapped `CGROUP_VALUES` array turned into the values the cgroups' files would print
//! ([`KernelCgroupValues`]).
//!
//! aya 0.14 attaches iterators without target information, which a cgroup iterator needs
//! (the cgroup to start from and the walk order): the links are made here with
//! `BPF_LINK_CREATE` directly, one per hierarchy, kept for the daemon's life.
//!
//! A walk holds `cgroup_mutex` while it runs (`cgroup_iter_seq_start()`), so cgroup creation,
//! removal and migrations wait for it: 0.5–0.8 µs per cgroup on the machine measured.
use std::{
    fs::File,
    io::Read as _,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use aya::{
    maps::{Array, MapData, MapError},
    programs::ProgramError,
};
use collector_common::{
    cgroup_values::{
        CgroupValues, CgroupWalk, HAS_CPU, HAS_CPUSET, HAS_KMEM, HAS_MEMORY, HAS_OOM_KILL,
        HAS_PIDS, HAS_SOFT_LIMIT, HAS_V2_MEMORY, IS_ROOT,
    },
    names::{CGROUP_VALUES_MAP, CGROUP_WALK_MAP, PROGRAM_CGROUP_VALUES},
};

use crate::{
    cgroupfs::{
        cpu::CpuMax,
        kernel_values::{
            CgroupValuesSource, CpuValues, DirKey, KernelCgroupValues, MemoryValues, PidsValues,
            V1Values, V2CpuValues, V2MemoryValues, V2SwapValues, V2Values,
        },
        parse::Limit,
    },
    error_chain::ErrorChain,
    fast_map::FastMap,
};

/// `enum bpf_cmd` values (`include/uapi/linux/bpf.h`).
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_ITER_CREATE: libc::c_long = 33;
/// `enum bpf_attach_type`: `BPF_TRACE_ITER`.
const BPF_TRACE_ITER: u32 = 28;
/// `enum bpf_cgroup_iter_order`: a cgroup, then its descendants, parents before children.
const BPF_CGROUP_ITER_DESCENDANTS_PRE: u32 = 2;
/// `SCHED_FIXEDPOINT_SHIFT`: on 64-bit kernels `task_group.shares` is `cpu.shares` shifted
/// left by it (`scale_load()`), and the file prints `scale_load_down()` of it.
const SCHED_FIXEDPOINT_SHIFT: u32 = 10;
/// `cfs_bandwidth.quota` when there is no quota (`RUNTIME_INF`, `cpu.cfs_quota_us` -1).
const RUNTIME_INF: u64 = u64::MAX;
/// `PIDS_MAX` (`PID_MAX_LIMIT + 1` on 64-bit), the limit `pids.max` prints as "max", when
/// the walk did not see the hierarchy's root (whose limit is always `PIDS_MAX`).
const PIDS_MAX_DEFAULT: i64 = 4 * 1024 * 1024 + 1;
/// `CGROUP_WEIGHT_DFL`, `_MIN` and `_MAX` (`include/linux/cgroup.h`): `cpu.weight`'s scale.
const CGROUP_WEIGHT_DFL: u64 = 100;
const CGROUP_WEIGHT_MIN: u64 = 1;
const CGROUP_WEIGHT_MAX: u64 = 10_000;
/// Swap files of the v2 hierarchy: not yet known, absent, present (see `swap_files`).
const SWAP_UNKNOWN: u8 = 0;
const SWAP_ABSENT: u8 = 1;
const SWAP_PRESENT: u8 = 2;

/// Why there is no cgroup walk (then the cgroup files are read).
#[derive(Debug, thiserror::Error)]
pub enum CgroupWalkerError {
    /// Nothing to walk: no v1 hierarchy has these controllers, and the v2 hierarchy (if
    /// any) has none of them either.
    #[error(
        "no v1 hierarchy with memory, cpu, pids or cpuset is mounted, nor a v2 hierarchy with any of them"
    )]
    NoHierarchy,
    /// The kernel's BTF lacks the members of every controller the walk reads.
    #[error("kernel BTF lacks what the cgroup walk reads")]
    NoControllerOffsets,
    /// The iterator program is missing from the object.
    #[error("program {PROGRAM_CGROUP_VALUES} missing from the object")]
    MissingProgram,
    /// The program is not an iterator, or its descriptor is gone.
    #[error("program {PROGRAM_CGROUP_VALUES}: {}", ErrorChain(.source))]
    Program {
        /// aya's error.
        #[source]
        source: ProgramError,
    },
    /// The kernel refused the program (`iter/cgroup` needs kernel 6.1+).
    #[error("loading {PROGRAM_CGROUP_VALUES}: {}", ErrorChain(.source))]
    LoadProgram {
        /// aya's error, with the verifier's log.
        #[source]
        source: ProgramError,
    },
    /// The program's descriptor could not be duplicated for the links.
    #[error("duplicating the program descriptor: {source}")]
    DuplicateProgramFd {
        /// The error of `fcntl(2)`.
        #[source]
        source: std::io::Error,
    },
    /// `CGROUP_VALUES` is missing from the object, or not an array.
    #[error("map {CGROUP_VALUES_MAP} missing or not an array")]
    ValuesMap,
    /// `CGROUP_WALK` is missing from the object.
    #[error("map {CGROUP_WALK_MAP} missing")]
    MissingWalkMap,
    /// `CGROUP_WALK` is not the array expected.
    #[error("map {CGROUP_WALK_MAP}: {}", ErrorChain(.source))]
    WalkMap {
        /// aya's error.
        #[source]
        source: MapError,
    },
    /// `CGROUP_VALUES`' information could not be read.
    #[error("{CGROUP_VALUES_MAP} map info: {}", ErrorChain(.source))]
    ValuesInfo {
        /// aya's error.
        #[source]
        source: MapError,
    },
    /// `CGROUP_VALUES`' values are not `CgroupValues` (an object built from other sources).
    #[error("{CGROUP_VALUES_MAP} has an unexpected value size: {size} bytes, expected {expected}")]
    ValueSize {
        /// The map's value size.
        size: u32,
        /// `size_of::<CgroupValues>()`.
        expected: usize,
    },
    /// `CGROUP_VALUES` could not be mapped.
    #[error("mapping {CGROUP_VALUES_MAP}: {source}")]
    MapValues {
        /// The error of `mmap(2)`.
        #[source]
        source: std::io::Error,
    },
    /// A hierarchy's mount point did not open.
    #[error("opening {}: {source}", .mount.display())]
    OpenMount {
        /// The mount point.
        mount: PathBuf,
        /// The error of `open(2)`.
        #[source]
        source: std::io::Error,
    },
    /// A hierarchy's mount point could not be stat'ed.
    #[error("stat {}: {source}", .mount.display())]
    StatMount {
        /// The mount point.
        mount: PathBuf,
        /// The error of `fstat(2)`.
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused the iterator link on a hierarchy.
    #[error("cgroup iterator link on {}: {source}", .mount.display())]
    Link {
        /// The hierarchy's mount point.
        mount: PathBuf,
        /// The error of `BPF_LINK_CREATE`.
        #[source]
        source: std::io::Error,
    },
}

/// Why a walk failed (that collection reads the cgroup files instead).
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// The walk's state in `CGROUP_WALK` could not be read.
    #[error("cgroup walk of {}: reading its state: {}", .mount.display(), ErrorChain(.source))]
    State {
        /// The hierarchy's mount point.
        mount: PathBuf,
        /// aya's error.
        #[source]
        source: MapError,
    },
    /// The iterator file could not be made.
    #[error("cgroup walk of {}: BPF_ITER_CREATE: {source}", .mount.display())]
    IterCreate {
        /// The hierarchy's mount point.
        mount: PathBuf,
        /// The error of `BPF_ITER_CREATE`.
        #[source]
        source: std::io::Error,
    },
    /// Reading the iterator file (which runs the walk) failed.
    #[error("cgroup walk of {}: reading the iterator: {source}", .mount.display())]
    Read {
        /// The hierarchy's mount point.
        mount: PathBuf,
        /// The error of `read(2)`.
        #[source]
        source: std::io::Error,
    },
    /// The walk ended early: no new session, or one that did not reach the last cgroup.
    #[error("cgroup walk of {}: incomplete: the walk did not reach its end", .mount.display())]
    Incomplete {
        /// The hierarchy's mount point.
        mount: PathBuf,
    },
}

/// `union bpf_iter_link_info`, its `cgroup` member.
#[repr(C)]
struct IterLinkInfoCgroup {
    order: u32,
    cgroup_fd: u32,
    cgroup_id: u64,
}

/// `union bpf_attr`, its `link_create` member with `iter_info`.
#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    iter_info: u64,
    iter_info_len: u32,
    pad: u32,
}

/// `union bpf_attr`, its `iter_create` member.
#[repr(C)]
struct IterCreateAttr {
    link_fd: u32,
    flags: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<OwnedFd> {
    // SAFETY: `attr` is a valid `union bpf_attr` prefix of the size passed; the kernel
    // reads no more than that and zero-fills the rest.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr).cast::<libc::c_void>(),
            size_of::<T>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(rc).map_err(|_| std::io::Error::other("fd out of range"))?;
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One walked hierarchy.
struct Hierarchy {
    /// Its mount point (for messages).
    mount: PathBuf,
    /// Whether it is the v2 hierarchy (its records become [`V2Values`]).
    v2: bool,
    /// The filesystem device of its directories: with the kernfs id, the key of a cgroup.
    dev: u64,
    link: OwnedFd,
}

/// The `CGROUP_VALUES` array, mapped read-only.
struct ValuesMapping {
    base: *const CgroupValues,
    len: usize,
    slots: usize,
}

// SAFETY: a read-only mapping of kernel memory; reads are serialised by the walker's lock.
unsafe impl Send for ValuesMapping {}
// SAFETY: as above.
unsafe impl Sync for ValuesMapping {}

impl Drop for ValuesMapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map_values`, unmapped once.
        unsafe { libc::munmap(self.base.cast_mut().cast(), self.len) };
    }
}

/// The cgroup walks of the v1 hierarchies with `memory`, `cpu`, `pids` or `cpuset`, or of the
/// v2 hierarchy when it has any of them.
pub struct CgroupWalker {
    hierarchies: Vec<Hierarchy>,
    values: ValuesMapping,
    /// Kept for its descriptor, which the mapping does not need but the map's life does.
    _values_map: MapData,
    walk_state: Array<MapData, CgroupWalk>,
    page_size: u64,
    /// One walk at a time (they share the array); also the last walk, for `latest`.
    last: Mutex<Option<Arc<KernelCgroupValues>>>,
    /// Whether a full array was already logged.
    warned_full: std::sync::atomic::AtomicBool,
    /// Whether the v2 hierarchy's cgroups have `memory.swap.*` files (`SWAP_*`): the kernel
    /// adds them only with swap accounting (6.1 `mem_cgroup_swap_init()`: not with
    /// `cgroup.memory=noswap`), which BTF does not tell. Learnt from the first cgroup below
    /// the v2 root that has `memory.current`; until then swap is read from the files.
    swap_files: std::sync::atomic::AtomicU8,
}

impl CgroupWalker {
    /// Links `program` (a loaded `iter/cgroup` program) to each v1 hierarchy mounted at
    /// `mounts` and to the v2 hierarchy mounted at `v2_mount`, and maps `values_map`.
    pub fn new(
        program: BorrowedFd<'_>,
        mounts: &[PathBuf],
        v2_mount: Option<&Path>,
        values_map: MapData,
        walk_state: Array<MapData, CgroupWalk>,
    ) -> Result<Self, CgroupWalkerError> {
        let values = map_values(&values_map)?;
        let mut hierarchies = Vec::new();
        for mount in mounts {
            hierarchies.push(link(program, mount, false)?);
        }
        if let Some(mount) = v2_mount {
            hierarchies.push(link(program, mount, true)?);
        }
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Ok(Self {
            hierarchies,
            values,
            _values_map: values_map,
            walk_state,
            page_size: u64::try_from(page).unwrap_or(4096),
            last: Mutex::new(None),
            warned_full: std::sync::atomic::AtomicBool::new(false),
            swap_files: std::sync::atomic::AtomicU8::new(SWAP_UNKNOWN),
        })
    }

    /// The hierarchies walked (their mount points).
    pub fn mounts(&self) -> impl Iterator<Item = &Path> {
        self.hierarchies.iter().map(|h| h.mount.as_path())
    }

    /// Walks every hierarchy now.
    pub fn walk_now(&self) -> Result<Arc<KernelCgroupValues>, WalkError> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let taken = Instant::now();
        let (mut by_dir, mut v2_by_dir) = match last.take().map(Arc::try_unwrap) {
            // Nobody holds the last walk any more: refill its tables. (A walk of 1,000
            // containers has ~4,000 entries; allocating them at every walk shows in profiles.)
            Some(Ok(old)) => {
                let (mut v1, mut v2) = (old.by_dir, old.v2_by_dir);
                v1.clear();
                v2.clear();
                (v1, v2)
            }
            Some(Err(shared)) => (
                FastMap::with_capacity_and_hasher(
                    shared.by_dir.len(),
                    foldhash::fast::RandomState::default(),
                ),
                FastMap::with_capacity_and_hasher(
                    shared.v2_by_dir.len(),
                    foldhash::fast::RandomState::default(),
                ),
            ),
            None => (FastMap::default(), FastMap::default()),
        };
        for hierarchy in &self.hierarchies {
            let recorded = self.walk_one(hierarchy)?;
            if hierarchy.v2 {
                let swap = self.swap_files(&hierarchy.mount);
                v2_by_dir.extend(self.records(hierarchy.dev, recorded, |r, pids_max| {
                    convert_v2(r, self.page_size, pids_max, swap)
                }));
            } else {
                by_dir.extend(self.records(hierarchy.dev, recorded, |r, pids_max| {
                    convert(r, self.page_size, pids_max)
                }));
            }
        }
        let values = Arc::new(KernelCgroupValues {
            taken,
            by_dir,
            v2_by_dir,
        });
        *last = Some(Arc::clone(&values));
        Ok(values)
    }

    /// Walks one hierarchy; returns how many records it left in the array.
    fn walk_one(&self, hierarchy: &Hierarchy) -> Result<usize, WalkError> {
        let mount = || hierarchy.mount.clone();
        let state = || {
            self.state().map_err(|source| WalkError::State {
                mount: mount(),
                source,
            })
        };
        let before = state()?;
        let mut attr = IterCreateAttr {
            link_fd: u32::try_from(hierarchy.link.as_raw_fd()).unwrap_or(u32::MAX),
            flags: 0,
        };
        let iter = bpf(BPF_ITER_CREATE, &mut attr).map_err(|source| WalkError::IterCreate {
            mount: mount(),
            source,
        })?;
        // The program writes nothing to the file: one read runs the whole walk.
        let mut sink = [0u8; 64];
        let mut file = File::from(iter);
        while file.read(&mut sink).map_err(|source| WalkError::Read {
            mount: mount(),
            source,
        })? > 0
        {}
        let after = state()?;
        // A new session that visited cgroups (the walk's start is one) and reached its end.
        if after.finished == before.finished || after.session != after.finished {
            return Err(WalkError::Incomplete { mount: mount() });
        }
        let visited = usize::try_from(after.visited).unwrap_or(usize::MAX);
        if visited > self.values.slots
            && !self
                .warned_full
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                cgroups = visited,
                slots = self.values.slots,
                mount = %hierarchy.mount.display(),
                "more cgroups than --cgroup-values-entries: the rest are read from their files"
            );
        }
        Ok(visited.min(self.values.slots))
    }

    /// The first `recorded` records of the array, the cgroups of the hierarchy on filesystem
    /// device `dev`, each turned into what its files print by `convert` (given the record
    /// and the hierarchy's `PIDS_MAX`); a hierarchy's root is left out.
    fn records<'s, T>(
        &'s self,
        dev: u64,
        recorded: usize,
        convert: impl Fn(&CgroupValues, i64) -> T + 's,
    ) -> impl Iterator<Item = (DirKey, T)> + 's {
        let record = |i: usize| {
            // SAFETY: `i` < `slots`, within the mapping; the walk that wrote the records has
            // ended and no other runs (the lock is held).
            unsafe { std::ptr::read_volatile(self.values.base.add(i)) }
        };
        // A walk begins with the cgroup it starts from: the hierarchy's root (unless mounted
        // from a subtree), whose pids limit is `PIDS_MAX`.
        let pids_max = Some(recorded)
            .filter(|&n| n > 0)
            .map(|_| record(0))
            .filter(|r| r.present & IS_ROOT != 0 && r.present & HAS_PIDS != 0)
            .map_or(PIDS_MAX_DEFAULT, |root| root.pids_limit);
        (0..recorded).map(record).filter_map(move |record| {
            // A root's files print other things than its counters (and it is no container).
            if record.present & IS_ROOT != 0 || record.cgroup_id == 0 {
                return None;
            }
            let key = DirKey {
                dev,
                ino: record.cgroup_id,
            };
            Some((key, convert(&record, pids_max)))
        })
    }

    /// Whether the v2 hierarchy at `mount` has swap files (see the field), learnt once.
    fn swap_files(&self, mount: &Path) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        match self.swap_files.load(Relaxed) {
            SWAP_PRESENT => return true,
            SWAP_ABSENT => return false,
            _ => {}
        }
        // The root has no `memory.*` files (`CFTYPE_NOT_ON_ROOT`): a child with the memory
        // controller tells.
        let child = std::fs::read_dir(mount).ok().and_then(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.join("memory.current").exists())
        });
        let Some(child) = child else {
            return false;
        };
        let present = child.join("memory.swap.current").exists();
        self.swap_files
            .store(if present { SWAP_PRESENT } else { SWAP_ABSENT }, Relaxed);
        present
    }

    fn state(&self) -> Result<CgroupWalk, MapError> {
        self.walk_state.get(&0, 0)
    }
}

impl CgroupValuesSource for CgroupWalker {
    fn walk(&self) -> Option<Arc<KernelCgroupValues>> {
        match self.walk_now() {
            Ok(values) => Some(values),
            Err(e) => {
                tracing::warn!(error = %e, "cgroup walk failed; reading cgroup files instead");
                None
            }
        }
    }

    fn latest(&self, max_age: Duration) -> Option<Arc<KernelCgroupValues>> {
        if max_age.is_zero() {
            return None;
        }
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        last.as_ref()
            .filter(|l| l.taken.elapsed() <= max_age)
            .map(Arc::clone)
    }

    fn walks_v2(&self) -> bool {
        self.hierarchies.iter().any(|h| h.v2)
    }
}

/// What the files of the cgroup would print, from its raw record (see the file docs in
/// `Documentation/admin-guide/cgroup-v1/` and the kernel functions named).
fn convert(r: &CgroupValues, page_size: u64, pids_max: i64) -> V1Values {
    let pages = |n: u64| n.saturating_mul(page_size);
    V1Values {
        // `mem_cgroup_read_u64()`: page counters times PAGE_SIZE.
        // (Without the soft limit, the v1 memory values are all read from the files.)
        memory: (r.present & HAS_MEMORY != 0 && r.present & HAS_SOFT_LIMIT != 0).then(|| {
            MemoryValues {
                usage_bytes: pages(r.memory_usage_pages),
                max_usage_bytes: pages(r.memory_watermark_pages),
                failcnt: r.memory_failcnt,
                soft_limit_bytes: pages(r.soft_limit_pages),
                kmem_usage_bytes: (r.present & HAS_KMEM != 0).then(|| pages(r.kmem_usage_pages)),
                oom_kill: (r.present & HAS_OOM_KILL != 0).then_some(r.oom_kill),
            }
        }),
        // `cpu_shares_read_u64()`, `tg_get_cfs_quota()`, `tg_get_cfs_period()`,
        // `cpu_cfs_stat_show()`.
        cpu: (r.present & HAS_CPU != 0).then(|| CpuValues {
            shares: scale_load_down(r.cpu_shares_raw),
            quota_us: (r.cfs_quota_ns != RUNTIME_INF).then_some(r.cfs_quota_ns / 1_000),
            period_us: r.cfs_period_ns / 1_000,
            nr_periods: u64::from(r.nr_periods),
            nr_throttled: u64::from(r.nr_throttled),
            throttled_time_ns: r.throttled_time_ns,
        }),
        // `pids_current()`, `pids_max_show()`.
        pids: (r.present & HAS_PIDS != 0).then(|| PidsValues {
            current: u64::try_from(r.pids_current).unwrap_or(0),
            max: if r.pids_limit >= pids_max {
                Limit::Unlimited
            } else {
                Limit::Value(u64::try_from(r.pids_limit).unwrap_or(0))
            },
        }),
        // `cpuset_common_seq_show()` prints the mask; its size is what is used of it.
        effective_cpus: (r.present & HAS_CPUSET != 0).then_some(r.effective_cpus),
    }
}

/// What the v2 files of the cgroup would print, from its raw record (`mm/memcontrol.c`,
/// `kernel/sched/core.c`, `kernel/cgroup/pids.c`, `kernel/cgroup/cpuset.c` of 6.1–6.18).
/// `swap` says whether the hierarchy has swap files (else swap is left to them).
fn convert_v2(r: &CgroupValues, page_size: u64, pids_max: i64, swap: bool) -> V2Values {
    let pages = |n: u64| n.saturating_mul(page_size);
    // `PAGE_COUNTER_MAX` (`LONG_MAX / PAGE_SIZE` on 64-bit) is what `seq_puts_memcg_tunable()`
    // prints as "max"; anything else is printed times PAGE_SIZE.
    let page_counter_max = i64::MAX.unsigned_abs() / page_size.max(1);
    let tunable = |n: u64| {
        if n == page_counter_max {
            Limit::Unlimited
        } else {
            Limit::Value(pages(n))
        }
    };
    let v1 = convert(r, page_size, pids_max);
    V2Values {
        // `memory_current_read()`: the usage page counter; `memory_peak_read()` (6.1) and
        // `peak_show()` (6.12+, for a file descriptor that never wrote a reset): its
        // watermark.
        memory: (r.present & HAS_MEMORY != 0 && r.present & HAS_V2_MEMORY != 0).then(|| {
            V2MemoryValues {
                current_bytes: pages(r.memory_usage_pages),
                peak_bytes: pages(r.memory_watermark_pages),
                max: tunable(r.memory_max_pages),
                high: tunable(r.memory_high_pages),
                low: tunable(r.memory_low_pages),
                // `swap_current_read()`, `swap_max_show()`.
                swap: swap.then(|| V2SwapValues {
                    current_bytes: pages(r.swap_usage_pages),
                    max: tunable(r.swap_max_pages),
                }),
            }
        }),
        // `cpu_weight_read_u64()`, `cpu_max_show()` (`tg_get_cfs_quota()`,
        // `tg_get_cfs_period()`: the same as v1's files).
        cpu: v1.cpu.map(|c| V2CpuValues {
            weight: shares_to_weight(c.shares),
            max: CpuMax {
                quota_us: c.quota_us,
                period_us: c.period_us,
            },
        }),
        // `pids_current()`, `pids_max_show()`: as v1.
        pids: v1.pids,
        // `cpuset_common_seq_show()` (`FILE_EFFECTIVE_CPULIST`): the effective mask.
        effective_cpus: v1.effective_cpus,
    }
}

/// `cpu.weight` from `cpu.shares` (`scale_load_down(tg->shares)`): 6.18's
/// `sched_weight_to_cgroup()`, `DIV_ROUND_CLOSEST_ULL(weight * CGROUP_WEIGHT_DFL, 1024)`
/// clamped to the weight range; 6.1's `cpu_weight_read_u64()` is the same without the clamp
/// (which any weight written through `cpu.weight` is within).
fn shares_to_weight(shares: u64) -> u64 {
    let scaled = shares.saturating_mul(CGROUP_WEIGHT_DFL);
    (scaled.saturating_add(512) / 1024).clamp(CGROUP_WEIGHT_MIN, CGROUP_WEIGHT_MAX)
}

/// `scale_load_down()` of 64-bit kernels: the fixed-point weight back to `cpu.shares`, at
/// least 2 when not 0.
fn scale_load_down(weight: u64) -> u64 {
    if weight == 0 {
        0
    } else {
        (weight >> SCHED_FIXEDPOINT_SHIFT).max(2)
    }
}

/// A link of `program` walking the hierarchy mounted at `mount` (the v2 one when `v2`) from
/// its top.
fn link(program: BorrowedFd<'_>, mount: &Path, v2: bool) -> Result<Hierarchy, CgroupWalkerError> {
    use std::os::unix::fs::MetadataExt as _;
    let dir = File::open(mount).map_err(|source| CgroupWalkerError::OpenMount {
        mount: mount.to_owned(),
        source,
    })?;
    let dev = dir
        .metadata()
        .map_err(|source| CgroupWalkerError::StatMount {
            mount: mount.to_owned(),
            source,
        })?
        .dev();
    let mut info = IterLinkInfoCgroup {
        order: BPF_CGROUP_ITER_DESCENDANTS_PRE,
        cgroup_fd: u32::try_from(dir.as_raw_fd()).unwrap_or(u32::MAX),
        cgroup_id: 0,
    };
    let mut attr = LinkCreateAttr {
        prog_fd: u32::try_from(program.as_raw_fd()).unwrap_or(u32::MAX),
        target_fd: 0,
        attach_type: BPF_TRACE_ITER,
        flags: 0,
        iter_info: std::ptr::from_mut(&mut info) as u64,
        iter_info_len: u32::try_from(size_of::<IterLinkInfoCgroup>()).unwrap_or(16),
        pad: 0,
    };
    let link = bpf(BPF_LINK_CREATE, &mut attr).map_err(|source| CgroupWalkerError::Link {
        mount: mount.to_owned(),
        source,
    })?;
    Ok(Hierarchy {
        mount: mount.to_owned(),
        v2,
        dev,
        link,
    })
}

/// Maps the `CGROUP_VALUES` array (`BPF_F_MMAPABLE`) read-only.
fn map_values(map: &MapData) -> Result<ValuesMapping, CgroupWalkerError> {
    let info = map
        .info()
        .map_err(|source| CgroupWalkerError::ValuesInfo { source })?;
    let slots = usize::try_from(info.max_entries()).unwrap_or(0);
    if usize::try_from(info.value_size()).ok() != Some(size_of::<CgroupValues>()) {
        return Err(CgroupWalkerError::ValueSize {
            size: info.value_size(),
            expected: size_of::<CgroupValues>(),
        });
    }
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let len = (slots * size_of::<CgroupValues>()).div_ceil(page) * page;
    let fd = map.fd().as_fd();
    // SAFETY: a read-only shared mapping of an mmapable array map of at least `len` bytes
    // (`array_map_mmap()` allows up to the page-aligned size of its values).
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(CgroupWalkerError::MapValues {
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(ValuesMapping {
        base: base.cast::<CgroupValues>().cast_const(),
        len,
        slots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_errors_name_the_hierarchy_and_the_step() {
        let mount = PathBuf::from("/sys/fs/cgroup/memory");
        let incomplete = WalkError::Incomplete {
            mount: mount.clone(),
        };
        assert_eq!(
            incomplete.to_string(),
            "cgroup walk of /sys/fs/cgroup/memory: incomplete: the walk did not reach its end"
        );
        let read = WalkError::Read {
            mount,
            source: std::io::Error::from_raw_os_error(libc::EINTR),
        };
        assert_eq!(
            read.to_string(),
            "cgroup walk of /sys/fs/cgroup/memory: reading the iterator: Interrupted system call (os error 4)"
        );
        assert!(std::error::Error::source(&read).is_some());
    }

    #[test]
    fn records_become_the_values_files_print() {
        let raw = CgroupValues {
            cgroup_id: 42,
            present: HAS_MEMORY | HAS_SOFT_LIMIT | HAS_CPU | HAS_PIDS,
            nr_periods: 7,
            nr_throttled: 3,
            memory_usage_pages: 10,
            memory_watermark_pages: 12,
            memory_failcnt: 1,
            kmem_usage_pages: 5,
            soft_limit_pages: 2_251_799_813_685_247,
            cpu_shares_raw: 512 << 10,
            cfs_period_ns: 100_000_000,
            cfs_quota_ns: 50_000_000,
            throttled_time_ns: 99,
            pids_current: 4,
            pids_limit: 64,
            ..CgroupValues::default()
        };
        let v = convert(&raw, 4096, PIDS_MAX_DEFAULT);
        assert_eq!(v.effective_cpus, None, "no HAS_CPUSET bit");
        let memory = v.memory.expect("memory");
        assert_eq!(memory.usage_bytes, 40_960);
        assert_eq!(memory.max_usage_bytes, 49_152);
        assert_eq!(memory.failcnt, 1);
        // PAGE_COUNTER_MAX pages print as 9223372036854771712, the v1 "unlimited".
        assert_eq!(memory.soft_limit_bytes, 9_223_372_036_854_771_712);
        assert_eq!(memory.kmem_usage_bytes, None, "no HAS_KMEM bit");
        let cpu = v.cpu.expect("cpu");
        assert_eq!(
            (cpu.shares, cpu.quota_us, cpu.period_us),
            (512, Some(50_000), 100_000)
        );
        assert_eq!(
            (cpu.nr_periods, cpu.nr_throttled, cpu.throttled_time_ns),
            (7, 3, 99)
        );
        let pids = v.pids.expect("pids");
        assert_eq!((pids.current, pids.max), (4, Limit::Value(64)));

        let unlimited = CgroupValues {
            present: HAS_CPU | HAS_PIDS,
            cpu_shares_raw: 1,
            cfs_quota_ns: RUNTIME_INF,
            pids_limit: PIDS_MAX_DEFAULT,
            ..raw
        };
        let v = convert(&unlimited, 4096, PIDS_MAX_DEFAULT);
        assert_eq!(v.memory, None);
        assert_eq!(v.cpu.map(|c| (c.shares, c.quota_us)), Some((2, None)));
        assert_eq!(v.pids.map(|p| p.max), Some(Limit::Unlimited));
    }

    #[test]
    fn v2_records_become_the_values_v2_files_print() {
        // PAGE_COUNTER_MAX with 4 KiB pages: LONG_MAX / 4096.
        let unlimited_pages = 2_251_799_813_685_247;
        let raw = CgroupValues {
            cgroup_id: 42,
            present: HAS_MEMORY | HAS_V2_MEMORY | HAS_CPU | HAS_PIDS | HAS_CPUSET,
            effective_cpus: 1,
            memory_usage_pages: 10,
            memory_watermark_pages: 12,
            memory_max_pages: 65_536,
            memory_high_pages: unlimited_pages,
            memory_low_pages: 0,
            swap_usage_pages: 3,
            swap_max_pages: unlimited_pages,
            // cpu.weight 50 is written as shares DIV_ROUND_CLOSEST(50 * 1024, 100) = 512.
            cpu_shares_raw: 512 << 10,
            cfs_period_ns: 100_000_000,
            cfs_quota_ns: 25_000_000,
            pids_current: 4,
            pids_limit: 64,
            ..CgroupValues::default()
        };
        let v = convert_v2(&raw, 4096, PIDS_MAX_DEFAULT, true);
        let memory = v.memory.expect("memory");
        assert_eq!((memory.current_bytes, memory.peak_bytes), (40_960, 49_152));
        assert_eq!(memory.max, Limit::Value(256 << 20));
        assert_eq!(memory.high, Limit::Unlimited, "PAGE_COUNTER_MAX prints max");
        assert_eq!(memory.low, Limit::Value(0));
        assert_eq!(
            memory.swap,
            Some(V2SwapValues {
                current_bytes: 12_288,
                max: Limit::Unlimited
            })
        );
        let cpu = v.cpu.expect("cpu");
        assert_eq!(cpu.weight, 50);
        assert_eq!(
            cpu.max,
            CpuMax {
                quota_us: Some(25_000),
                period_us: 100_000
            }
        );
        assert_eq!(
            v.pids.map(|p| (p.current, p.max)),
            Some((4, Limit::Value(64)))
        );
        assert_eq!(v.effective_cpus, Some(1));

        // Without swap files the walk leaves swap to them; a record without the v2 members
        // leaves memory to the files.
        assert_eq!(
            convert_v2(&raw, 4096, PIDS_MAX_DEFAULT, false)
                .memory
                .and_then(|m| m.swap),
            None
        );
        let v1_only = CgroupValues {
            present: HAS_MEMORY,
            ..raw
        };
        assert_eq!(
            convert_v2(&v1_only, 4096, PIDS_MAX_DEFAULT, true).memory,
            None
        );
    }

    #[test]
    fn cpu_weight_is_the_kernels_rounding_of_the_shares() {
        // cpu.weight w is stored as shares DIV_ROUND_CLOSEST(w * 1024, 100)
        // (`sched_weight_from_cgroup()`), and read back rounded: every weight round-trips.
        for weight in [1, 2, 3, 7, 50, 99, 100, 101, 333, 1000, 9999, 10_000] {
            let shares = (weight * 1024 + 50) / 100;
            assert_eq!(shares_to_weight(shares), weight, "weight {weight}");
        }
        assert_eq!(shares_to_weight(1024), 100, "the default");
        assert_eq!(shares_to_weight(2), 1, "clamped to CGROUP_WEIGHT_MIN");
        assert_eq!(
            shares_to_weight(1 << 30),
            10_000,
            "clamped to CGROUP_WEIGHT_MAX"
        );
    }
}
