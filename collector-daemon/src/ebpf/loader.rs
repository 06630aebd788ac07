//! Loading and attaching the kernel programs, pinning their maps, and wiring aya-log.
//!
//! Needs: `CAP_BPF` + `CAP_PERFMON` (or root), kernel BTF, BTF tracepoints (5.5+) and ring
//! buffers (5.8+). Any of these missing is a `LoadError` and the daemon falls back to procfs.
//! The usage counters (network per cgroup, block IO per owner and disk) are optional on top:
//! when they cannot attach (no cgroup-v2 hierarchy, a kernel without the members they read,
//! a verifier refusal) the reason is logged and kept, and process tracking runs on.
use std::{
    fs,
    os::fd::AsFd as _,
    path::{Path, PathBuf},
};

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{
        BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, Iter, ProgramError,
        ProgramFd, links::FdLink,
    },
};
use collector_common::{
    cgroup_values::CgroupWalk,
    event::{KIND_SEED, ProcessEvent},
    names::{
        BTF_TRACEPOINTS, CGROUP_VALUES_MAP, CGROUP_WALK_MAP, COUNTERS_MAP, EVENTS_MAP,
        IO_COUNTERS_MAP, NET_COUNTERS_MAP, OFFSETS_GLOBAL, PIN_STATE_MAP, PROCESSES_MAP,
        PROGRAM_BLOCK_BIO_QUEUE, PROGRAM_CGROUP_VALUES, PROGRAM_NET_EGRESS, PROGRAM_NET_INGRESS,
        PROGRAM_SEED_TASKS, TRACEPOINT_BLOCK_BIO_QUEUE,
    },
    offsets::KernelOffsets,
    persist::{MAP_LAYOUT_VERSION, PinState},
    process::ProcessInfo,
};

pub use super::pin::{
    IO_COUNTERS_PIN_NAME, NET_COUNTERS_PIN_NAME, PROCESSES_PIN_NAME, PinError, Pins,
};
use super::{
    btf_offsets::{self, OffsetError, VMLINUX_BTF},
    cgroup_values::{CgroupWalker, CgroupWalkerError},
    persist::{self, Decision, PERSISTENT_MAPS},
    usage::{CounterMaps, CountersUnavailable},
};
use crate::error_chain::{ErrorChain, IfDenied};

/// The object built by `build.rs` from `collector-ebpf`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/collector"));

/// The embedded object's bytes.
pub fn object() -> &'static [u8] {
    OBJECT
}

/// The programs attached for the daemon's whole run (their links are pinned): the
/// process-tracking tracepoints and the usage counters.
const ATTACHED_PROGRAMS: [&str; 9] = [
    BTF_TRACEPOINTS[0].0,
    BTF_TRACEPOINTS[1].0,
    BTF_TRACEPOINTS[2].0,
    BTF_TRACEPOINTS[3].0,
    BTF_TRACEPOINTS[4].0,
    BTF_TRACEPOINTS[5].0,
    PROGRAM_NET_INGRESS,
    PROGRAM_NET_EGRESS,
    PROGRAM_BLOCK_BIO_QUEUE,
];

/// Why the kernel programs could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Kernel BTF unreadable.
    #[error(
        "kernel BTF unavailable at {VMLINUX_BTF}: {} (needs CONFIG_DEBUG_INFO_BTF=y)",
        ErrorChain(.source)
    )]
    Btf {
        /// aya's error.
        #[source]
        source: aya::BtfError,
    },
    /// Offsets could not be computed.
    #[error(transparent)]
    Offsets(#[from] OffsetError),
    /// The object failed to load (permissions, verifier, map creation).
    #[error(
        "loading the eBPF object failed: {} (needs CAP_BPF and CAP_PERFMON, or root)",
        ErrorChain(.source)
    )]
    Load {
        /// aya's error.
        #[source]
        source: aya::EbpfError,
    },
    /// A program is missing from the object, or failed to load or attach. Tracing programs
    /// (BTF tracepoints, iterators) read kernel memory: loading them needs `CAP_PERFMON` too.
    #[error(
        "program {program} (tracepoint {tracepoint}): {}{}",
        ErrorChain(.source),
        IfDenied(.source, "loading tracing programs needs CAP_BPF and CAP_PERFMON")
    )]
    Program {
        /// Program name.
        program: &'static str,
        /// Kernel tracepoint.
        tracepoint: &'static str,
        /// aya's error.
        #[source]
        source: ProgramError,
    },
    /// A map has the wrong type.
    #[error("map {map}: {}", ErrorChain(.source))]
    Map {
        /// Map name.
        map: &'static str,
        /// aya's error.
        #[source]
        source: MapError,
    },
    /// A map is missing from the object.
    #[error("map {map} is missing from the eBPF object")]
    MissingMap {
        /// Map name.
        map: &'static str,
    },
    /// The pin directory could not be prepared, or its stale pins removed.
    #[error("pin directory {}: {source}", .dir.display())]
    Pin {
        /// The pin directory.
        dir: PathBuf,
        /// What failed.
        #[source]
        source: PinError,
    },
    /// The embedded object does not parse (a build defect).
    #[error("parsing the embedded eBPF object: {source}")]
    Object {
        /// aya-obj's error.
        #[source]
        source: aya_obj::ParseError,
    },
}

/// How to load.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Size of the `PROCESSES` map (live processes tracked in the kernel).
    pub max_processes: u32,
    /// Size of the `EVENTS` ring buffer in bytes (a power of two, at least a page).
    pub ring_buffer_bytes: u32,
    /// Directory under bpffs to pin the persistent maps and the programs' links in (reused
    /// when compatible, and left in place at exit); `None` to pin nothing (the programs
    /// detach when the daemon exits).
    pub pin_dir: Option<PathBuf>,
    /// The v1 controller whose hierarchy is tracked per process, if any.
    pub tracked_v1_controller: Option<String>,
    /// Where the cgroup-v2 hierarchy is mounted: the network counters attach to that cgroup
    /// (the root, or the subtree a cgroup namespace shows). `None`: no network counters.
    pub cgroup_v2_root: Option<PathBuf>,
    /// Capacity of `NET_COUNTERS` (cgroups with traffic).
    pub net_counter_entries: u32,
    /// Capacity of `IO_COUNTERS` (owner × disk pairs with IO).
    pub io_counter_entries: u32,
    /// Mount points of the v1 hierarchies the cgroup walk reads (those with `memory`, `cpu`,
    /// `pids` or `cpuset`).
    pub cgroup_walk_mounts: Vec<PathBuf>,
    /// Mount point of the v2 hierarchy when the cgroup walk reads it too (it has `memory`,
    /// `cpu`, `pids` or `cpuset`; never on hybrid hosts, whose v2 has no controllers). With
    /// no v1 mount either: no walk, the files are read.
    pub cgroup_walk_v2: Option<PathBuf>,
    /// Capacity of `CGROUP_VALUES`: cgroups one hierarchy's walk records.
    pub cgroup_values_entries: u32,
}

/// The loaded object's handles. Dropping it detaches the programs that are not pinned.
pub struct Loaded {
    /// The object (owns the programs and their links).
    pub ebpf: Ebpf,
    /// Lifecycle events.
    pub events: RingBuf<MapData>,
    /// Per-CPU counters.
    pub counters: PerCpuArray<MapData, u64>,
    /// Live processes.
    pub processes: HashMap<MapData, u32, ProcessInfo>,
    /// aya-log's reader, when the object has log statements.
    pub logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// The pin directory, locked.
    pub pin: Option<Pins>,
    /// The usage counters, or why they are unavailable.
    pub usage: CounterMaps,
    /// The cgroup walk of the v1 hierarchies, or why there is none.
    pub cgroup_walker: Result<CgroupWalker, CgroupWalkerError>,
}

/// Loads the object (its persistent maps opened from their pins when compatible, else
/// created and pinned) and attaches every program (or keeps the pinned links of this
/// build's programs); then, best effort, the usage counters and the cgroup walk.
pub fn load(options: &LoadOptions) -> Result<Loaded, LoadError> {
    raise_memlock_limit();
    // The offsets' parse of the kernel's BTF (~24 MB of tables for a 6 MB vmlinux BTF) is
    // dropped before aya parses it again for loading (~10 MB): never both at once, which
    // lowers the daemon's peak memory.
    let (offsets, optional) = btf_offsets::kernel_offsets(
        Path::new(VMLINUX_BTF),
        options.tracked_v1_controller.as_deref(),
    )?;
    let btf = Btf::from_sys_fs().map_err(|source| LoadError::Btf { source })?;
    tracing::debug!(?offsets, "kernel struct offsets from BTF");
    let stamp = program_stamp(&offsets, options);
    let mut pins = options
        .pin_dir
        .as_deref()
        .map(|dir| open_pins(dir, options, stamp))
        .transpose()?;
    match load_attached(&btf, &offsets, optional, options, pins.as_mut()) {
        Ok(mut loaded) => {
            if let Some(pins) = &pins {
                write_pin_state(&mut loaded.ebpf, stamp, pins);
            }
            loaded.pin = pins;
            Ok(loaded)
        }
        Err(e) => {
            // Programs pinned by this attempt would run on with nobody reading their maps.
            if let Some(mut pins) = pins
                && let Err(remove) = pins.remove_all(false)
            {
                tracing::warn!(error = %remove, "removing the pins after the failed load");
            }
            Err(e)
        }
    }
}

/// Opens and locks the pin directory and decides what of its pins to reuse: compatible maps
/// are reused (and the links too when they run this build's programs); anything else is
/// removed, with one log line saying which map differed and how.
fn open_pins(dir: &Path, options: &LoadOptions, stamp: u64) -> Result<Pins, LoadError> {
    let pin_err = |source| LoadError::Pin {
        dir: dir.to_owned(),
        source,
    };
    let mut pins = Pins::open(dir).map_err(pin_err)?;
    let expected = persist::object_specs(OBJECT, &max_entries(options))
        .map_err(|source| LoadError::Object { source })?;
    match persist::decide(&persist::inspect(dir), &expected, stamp) {
        Decision::Fresh => {
            tracing::info!(dir = %dir.display(), "nothing pinned yet: creating and pinning the maps");
        }
        Decision::Reuse { same_programs } => {
            tracing::info!(
                dir = %dir.display(),
                same_programs,
                "reusing the pinned maps: counters and events queued while no daemon ran carry over"
            );
            pins.set_reuse_links(same_programs);
        }
        Decision::Recreate(reason) => {
            tracing::warn!(
                dir = %dir.display(),
                %reason,
                "pinned maps do not match this build: removing them and their programs, starting afresh"
            );
            pins.remove_all(true).map_err(pin_err)?;
        }
    }
    Ok(pins)
}

/// The stamp of the programs as this daemon attaches them: the object, the offsets written
/// into it, and the cgroup the network counters attach to.
fn program_stamp(offsets: &KernelOffsets, options: &LoadOptions) -> u64 {
    // SAFETY: KernelOffsets is Pod (repr(C) integers, no padding): its bytes are defined.
    let globals = unsafe {
        std::slice::from_raw_parts(
            std::ptr::from_ref(offsets).cast::<u8>(),
            size_of::<KernelOffsets>(),
        )
    };
    let root = options
        .cgroup_v2_root
        .as_deref()
        .map(|p| p.as_os_str().as_encoded_bytes())
        .unwrap_or_default();
    persist::program_stamp(OBJECT, globals, &[root])
}

/// Records the layout version and the programs' stamp in `PIN_STATE`, and removes links of
/// programs this build does not attach. Failing is logged: the next start then recreates
/// the pins.
fn write_pin_state(ebpf: &mut Ebpf, stamp: u64, pins: &Pins) {
    pins.prune_links(&ATTACHED_PROGRAMS);
    let state = PinState {
        layout_version: MAP_LAYOUT_VERSION,
        reserved: 0,
        program_stamp: stamp,
    };
    let written = ebpf
        .map_mut(PIN_STATE_MAP)
        .ok_or(MapError::InvalidName {
            name: PIN_STATE_MAP.to_owned(),
        })
        .and_then(|map| {
            let mut array: Array<&mut MapData, PinState> = Array::try_from(map)?;
            array.set(0, state, 0)
        });
    if let Err(e) = written {
        tracing::warn!(error = %ErrorChain(&e), "could not record the pins' state; the next start recreates them");
    }
}

/// Loads the object and attaches its programs (keeping pinned links where `pins` allows).
fn load_attached(
    btf: &Btf,
    offsets: &KernelOffsets,
    optional: btf_offsets::OptionalParts,
    options: &LoadOptions,
    mut pins: Option<&mut Pins>,
) -> Result<Loaded, LoadError> {
    let mut ebpf = load_object(btf, offsets, options, pins.as_deref())?;
    let logger = kernel_logger(&mut ebpf);
    let events = take_map(&mut ebpf, EVENTS_MAP)?;
    let counters = take_map(&mut ebpf, COUNTERS_MAP)?;
    let processes = take_map(&mut ebpf, PROCESSES_MAP)?;
    attach_tracking(&mut ebpf, btf, pins.as_deref_mut())?;

    let usage = attach_usage(&mut ebpf, btf, options, optional.io, pins);
    let cgroup_walker = cgroup_walker(&mut ebpf, btf, options, offsets, &optional.cgroup_values);
    match &cgroup_walker {
        Ok(walker) => tracing::info!(
            hierarchies = ?walker.mounts().collect::<Vec<_>>(),
            "cgroup walk ready: full collections read memory, cpu, pids and cpuset values in the kernel"
        ),
        Err(reason) => tracing::info!(%reason, "no cgroup walk; cgroup files are read"),
    }
    Ok(Loaded {
        ebpf,
        events,
        counters,
        processes,
        logger,
        pin: None,
        usage,
        cgroup_walker,
    })
}

/// The capacities the loader gives the maps, by map name.
fn max_entries(options: &LoadOptions) -> [(&'static str, u32); 5] {
    [
        (PROCESSES_MAP, options.max_processes),
        (EVENTS_MAP, options.ring_buffer_bytes),
        (NET_COUNTERS_MAP, options.net_counter_entries),
        (IO_COUNTERS_MAP, options.io_counter_entries),
        (CGROUP_VALUES_MAP, options.cgroup_values_entries),
    ]
}

/// Loads the object into the kernel: this kernel's struct offsets written into its
/// `OFFSETS` global, its maps sized by `options`; with `pins`, each persistent map opened
/// from its pin, or created and pinned there (aya does either by path).
fn load_object(
    btf: &Btf,
    offsets: &KernelOffsets,
    options: &LoadOptions,
    pins: Option<&Pins>,
) -> Result<Ebpf, LoadError> {
    let mut loader = EbpfLoader::new();
    loader
        .btf(Some(btf))
        .override_global(OFFSETS_GLOBAL, offsets, true);
    for (map, entries) in max_entries(options) {
        loader.map_max_entries(map, entries);
    }
    if let Some(pins) = pins {
        for (map, pin) in PERSISTENT_MAPS {
            loader.map_pin_path(map, pins.dir().join(pin));
        }
    }
    loader
        .load(OBJECT)
        .map_err(|source| LoadError::Load { source })
}

/// aya-log's reader of the programs' log records; `None` (logged) when the object has no
/// log statements or the reader cannot start.
fn kernel_logger(ebpf: &mut Ebpf) -> Option<aya_log::EbpfLogger<&'static dyn log::Log>> {
    aya_log::EbpfLogger::init(ebpf)
        .inspect_err(|e| tracing::warn!(error = %e, "kernel-side logging unavailable"))
        .ok()
}

/// Attaches the process-tracking tracepoints (or keeps their pinned links), then loads the
/// task iterator that seeds `PROCESSES`.
fn attach_tracking(
    ebpf: &mut Ebpf,
    btf: &Btf,
    mut pins: Option<&mut Pins>,
) -> Result<(), LoadError> {
    for (program, tracepoint) in BTF_TRACEPOINTS {
        attach(ebpf, btf, program, tracepoint, pins.as_deref_mut()).map_err(|source| {
            LoadError::Program {
                program,
                tracepoint,
                source,
            }
        })?;
    }
    // Loaded after the tracepoints are attached: a process created from now on is seen by
    // `task_newtask`, so the iterator and the events together miss nothing.
    let iter_err = |source| LoadError::Program {
        program: PROGRAM_SEED_TASKS,
        tracepoint: "iter/task",
        source,
    };
    let seeder: &mut Iter = ebpf
        .program_mut(PROGRAM_SEED_TASKS)
        .ok_or_else(|| iter_err(ProgramError::UnexpectedProgramType))?
        .try_into()
        .map_err(iter_err)?;
    seeder.load("task", btf).map_err(iter_err)
}

/// Loads the cgroup iterator and links it to each v1 hierarchy of `cgroup_walk_mounts` and
/// to `cgroup_walk_v2`, or says why not. A controller whose members this kernel lacks
/// (`offsets_missing` says why) is left out of the walk, its files are read; no controller
/// left, or no hierarchy, means no walk.
fn cgroup_walker(
    ebpf: &mut Ebpf,
    btf: &Btf,
    options: &LoadOptions,
    offsets: &KernelOffsets,
    offsets_missing: &[(&'static str, OffsetError)],
) -> Result<CgroupWalker, CgroupWalkerError> {
    if options.cgroup_walk_mounts.is_empty() && options.cgroup_walk_v2.is_none() {
        return Err(CgroupWalkerError::NoHierarchy);
    }
    for (controller, e) in offsets_missing {
        tracing::info!(controller, error = %e, "cgroup walk: this controller's files are read");
    }
    let any_ready = [
        offsets.values_memory_ready,
        offsets.values_cpu_ready,
        offsets.values_pids_ready,
        offsets.values_cpuset_ready,
    ]
    .contains(&1);
    if !any_ready {
        return Err(CgroupWalkerError::NoControllerOffsets);
    }
    let program = load_cgroup_iterator(ebpf, btf)?;
    let (values, walk_state) = take_cgroup_walk_maps(ebpf)?;
    CgroupWalker::new(
        program.as_fd(),
        &options.cgroup_walk_mounts,
        options.cgroup_walk_v2.as_deref(),
        values,
        walk_state,
    )
}

/// Loads the `iter/cgroup` program (kernel 6.1+) and returns a descriptor of it to link.
fn load_cgroup_iterator(ebpf: &mut Ebpf, btf: &Btf) -> Result<ProgramFd, CgroupWalkerError> {
    let program: &mut Iter = ebpf
        .program_mut(PROGRAM_CGROUP_VALUES)
        .ok_or(CgroupWalkerError::MissingProgram)?
        .try_into()
        .map_err(|source| CgroupWalkerError::Program { source })?;
    program
        .load("cgroup", btf)
        .map_err(|source| CgroupWalkerError::LoadProgram { source })?;
    program
        .fd()
        .map_err(|source| CgroupWalkerError::Program { source })?
        .try_clone()
        .map_err(|source| CgroupWalkerError::DuplicateProgramFd { source })
}

/// Takes the walk's maps out of the object: `CGROUP_VALUES` (the records, mapped by the
/// walker) and `CGROUP_WALK` (the walk's progress).
fn take_cgroup_walk_maps(
    ebpf: &mut Ebpf,
) -> Result<(MapData, Array<MapData, CgroupWalk>), CgroupWalkerError> {
    let Some(aya::maps::Map::Array(values)) = ebpf.take_map(CGROUP_VALUES_MAP) else {
        return Err(CgroupWalkerError::ValuesMap);
    };
    let walk_state = ebpf
        .take_map(CGROUP_WALK_MAP)
        .ok_or(CgroupWalkerError::MissingWalkMap)
        .and_then(|m| Array::try_from(m).map_err(|source| CgroupWalkerError::WalkMap { source }))?;
    Ok((values, walk_state))
}

/// Attaches the usage counters and takes their maps, or records why they are unavailable.
fn attach_usage(
    ebpf: &mut Ebpf,
    btf: &Btf,
    options: &LoadOptions,
    io_offsets_error: Option<OffsetError>,
    mut pins: Option<&mut Pins>,
) -> CounterMaps {
    let net = attach_net_counters(ebpf, options.cgroup_v2_root.as_deref(), pins.as_deref_mut())
        .and_then(|()| take_counters(ebpf, NET_COUNTERS_MAP));
    let io = match io_offsets_error {
        Some(source) => Err(CountersUnavailable::IoOffsets { source }),
        None => attach(
            ebpf,
            btf,
            PROGRAM_BLOCK_BIO_QUEUE,
            TRACEPOINT_BLOCK_BIO_QUEUE,
            pins,
        )
        .map_err(|source| CountersUnavailable::Tracepoint {
            program: PROGRAM_BLOCK_BIO_QUEUE,
            tracepoint: TRACEPOINT_BLOCK_BIO_QUEUE,
            source,
        }),
    }
    .and_then(|()| take_counters(ebpf, IO_COUNTERS_MAP));
    let usage = CounterMaps::new(net, io);
    match usage.counters_unavailable() {
        None => tracing::info!(
            cgroup = ?options.cgroup_v2_root,
            "usage counters attached: network per cgroup (cgroup_skb), block IO per owner and disk (block_bio_queue)"
        ),
        Some(reason) => {
            tracing::warn!(%reason, "usage counters (partly) unavailable; process tracking is not affected");
        }
    }
    usage
}

/// Loads the `cgroup_skb` programs and attaches them to the cgroup-v2 root, as links (kernel
/// 5.7+; `BPF_PROG_ATTACH` with `BPF_F_ALLOW_MULTI` before): other programs attached there
/// (systemd's IP accounting, Docker's, Cilium's) stay, and ours detach when the daemon's
/// descriptors close. Programs attached to the root run for every cgroup below it, whatever
/// those cgroups attach themselves (`compute_effective_progs()` keeps `ALLOW_MULTI`
/// ancestors' programs, `kernel/bpf/cgroup.c`). With `pins`, the links are pinned (or this
/// build's pinned links kept), so the programs stay attached when the daemon exits.
fn attach_net_counters(
    ebpf: &mut Ebpf,
    cgroup_v2_root: Option<&Path>,
    mut pins: Option<&mut Pins>,
) -> Result<(), CountersUnavailable> {
    let root = cgroup_v2_root.ok_or(CountersUnavailable::NoCgroupV2)?;
    let cgroup = fs::File::open(root).map_err(|source| CountersUnavailable::OpenCgroup {
        path: root.to_owned(),
        source,
    })?;
    // From 5.7 aya attaches through `BPF_LINK_CREATE`: cgroup links always join in
    // `BPF_F_ALLOW_MULTI` mode and the kernel refuses that flag in `link_create.flags`
    // (`cgroup_bpf_link_attach()`: EINVAL for anything but BPF_F_ID/BEFORE/AFTER/PREORDER),
    // so the mode must be `Single` (flags 0) there. Before 5.7 aya uses `BPF_PROG_ATTACH`,
    // where flags 0 would replace another exclusive program: `AllowMultiple` it is.
    let links = aya::util::KernelVersion::current()
        .is_ok_and(|v| v >= aya::util::KernelVersion::new(5, 7, 0));
    let mode = if links {
        CgroupAttachMode::Single
    } else {
        CgroupAttachMode::AllowMultiple
    };
    for (program, attach_type) in [
        (PROGRAM_NET_INGRESS, CgroupSkbAttachType::Ingress),
        (PROGRAM_NET_EGRESS, CgroupSkbAttachType::Egress),
    ] {
        let err = |source| CountersUnavailable::CgroupProgram {
            program,
            cgroup: root.to_owned(),
            source,
        };
        if let Some(pins) = pins.as_deref_mut()
            && pins.keep_link(program)
        {
            continue;
        }
        let prog: &mut CgroupSkb = ebpf
            .program_mut(program)
            .ok_or_else(|| err(ProgramError::UnexpectedProgramType))?
            .try_into()
            .map_err(err)?;
        prog.load().map_err(err)?;
        let link_id = prog.attach(&cgroup, attach_type, mode).map_err(err)?;
        // Only a `BPF_LINK_CREATE` link can be pinned; a `BPF_PROG_ATTACH` attachment
        // (before 5.7) stays the object's and ends with the daemon.
        if links && let Some(pins) = pins.as_deref_mut() {
            let link = prog.take_link(link_id).map_err(err)?;
            let fd_link = FdLink::try_from(link)
                .map_err(|e| err(ProgramError::IOError(std::io::Error::other(e))))?;
            pins.pin_link(program, fd_link);
        }
    }
    Ok(())
}

/// Takes a counter map out of the object (pinned at load when pins are made).
fn take_counters<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    map: &'static str,
) -> Result<PerCpuHashMap<MapData, K, V>, CountersUnavailable> {
    let taken = ebpf
        .take_map(map)
        .ok_or(CountersUnavailable::MissingMap { map })?;
    PerCpuHashMap::try_from(taken).map_err(|source| CountersUnavailable::Map { map, source })
}

/// Runs the task iterator once: every live process is inserted into `PROCESSES` (where
/// absent) and returned, with exact kernel start times and cgroup ids.
pub fn seed_processes(ebpf: &mut Ebpf) -> Result<Vec<(u32, ProcessInfo, String)>, SeedError> {
    use std::io::Read as _;
    let seeder: &mut Iter = ebpf
        .program_mut(PROGRAM_SEED_TASKS)
        .ok_or(SeedError::Missing)?
        .try_into()
        .map_err(|source| SeedError::Program { source })?;
    let link_id = seeder
        .attach()
        .map_err(|source| SeedError::Program { source })?;
    let link = seeder
        .take_link(link_id)
        .map_err(|source| SeedError::Program { source })?;
    let mut file = link
        .into_file()
        .map_err(|source| SeedError::Link { source })?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|source| SeedError::Read { source })?;
    let mut out = Vec::with_capacity(bytes.len() / size_of::<ProcessEvent>());
    for record in bytes.chunks_exact(size_of::<ProcessEvent>()) {
        // SAFETY: ProcessEvent is Pod; the chunk has exactly its size.
        let event: ProcessEvent =
            unsafe { record.as_ptr().cast::<ProcessEvent>().read_unaligned() };
        if event.kind == KIND_SEED {
            out.push((event.tgid, event.info, super::events::c_string(&event.comm)));
        }
    }
    Ok(out)
}

/// Why the start-up task iterator failed.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The iterator program is missing from the object.
    #[error("program {PROGRAM_SEED_TASKS} missing from the eBPF object")]
    Missing,
    /// Attaching the iterator failed.
    #[error("task iterator: {}", ErrorChain(.source))]
    Program {
        /// aya's error.
        #[source]
        source: ProgramError,
    },
    /// Creating the iterator's file failed.
    #[error("task iterator file: {}", ErrorChain(.source))]
    Link {
        /// aya's error.
        #[source]
        source: aya::programs::links::LinkError,
    },
    /// Reading the iterator's file failed.
    #[error("reading the task iterator: {source}")]
    Read {
        /// The read error.
        #[source]
        source: std::io::Error,
    },
}

/// Takes `map` out of the object as the map type `T`.
fn take_map<T: TryFrom<aya::maps::Map, Error = MapError>>(
    ebpf: &mut Ebpf,
    map: &'static str,
) -> Result<T, LoadError> {
    let taken = ebpf.take_map(map).ok_or(LoadError::MissingMap { map })?;
    T::try_from(taken).map_err(|source| LoadError::Map { map, source })
}

/// Loads the BTF tracepoint program `program` and attaches it to `tracepoint`, pinning its
/// link when `pins` are made; or keeps the link of this build's program pinned there (then
/// the program ran on while no daemon did, and attaching it again would count twice).
fn attach(
    ebpf: &mut Ebpf,
    btf: &Btf,
    program: &'static str,
    tracepoint: &'static str,
    mut pins: Option<&mut Pins>,
) -> Result<(), ProgramError> {
    if let Some(pins) = pins.as_deref_mut()
        && pins.keep_link(program)
    {
        return Ok(());
    }
    let prog: &mut BtfTracePoint = ebpf
        .program_mut(program)
        .ok_or(ProgramError::UnexpectedProgramType)?
        .try_into()?;
    prog.load(tracepoint, btf)?;
    let link_id = prog.attach()?;
    if let Some(pins) = pins {
        pins.pin_link(program, FdLink::from(prog.take_link(link_id)?));
    }
    Ok(())
}

/// Kernels before 5.11 charge BPF maps to `RLIMIT_MEMLOCK`; later ones use memcg accounting
/// and ignore it. Raising it is harmless either way.
fn raise_memlock_limit() {
    let limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const limit) } != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "could not raise RLIMIT_MEMLOCK"
        );
    }
}
