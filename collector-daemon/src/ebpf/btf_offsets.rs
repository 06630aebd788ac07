//! Kernel struct member offsets from the running kernel's BTF (`/sys/kernel/btf/vmlinux`).
//!
//! Rust eBPF has no CO-RE relocations, and these layouts differ between kernel versions and
//! builds (randstruct, config options), so the kernel programs read members at offsets
//! computed here. Member names are stable since 5.5 (`start_boottime`; `real_start_time`
//! before), which is also the oldest kernel with BTF tracepoints.
use std::path::{Path, PathBuf};

use btf_rs::{Btf, BtfType, Type};
use collector_common::offsets::KernelOffsets;

/// Why offsets could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum OffsetError {
    /// The BTF file could not be read or parsed.
    #[error(
        "cannot read kernel BTF from {path}: {source} (the kernel needs CONFIG_DEBUG_INFO_BTF=y; run with --no-ebpf otherwise)"
    )]
    Btf {
        /// The file read.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: btf_rs::Error,
    },
    /// A struct the programs read does not exist in this kernel's BTF.
    #[error("kernel BTF has no struct {name}")]
    MissingStruct {
        /// The struct's name.
        name: &'static str,
    },
    /// A member the programs read does not exist in this kernel's struct.
    #[error("kernel BTF: struct {struct_name} has no member {member}")]
    MissingMember {
        /// The struct's name.
        struct_name: &'static str,
        /// The member's name.
        member: String,
    },
    /// A bitfield member (never expected for the members read here).
    #[error("kernel BTF: {struct_name}.{member} is not byte-aligned")]
    Unaligned {
        /// The struct's name.
        struct_name: &'static str,
        /// The member's name.
        member: String,
    },
    /// An enumerator the programs rely on is missing from the kernel's BTF.
    #[error("kernel BTF has no enumerator {name}")]
    MissingEnumerator {
        /// The enumerator.
        name: &'static str,
    },
    /// A tracepoint is missing from the kernel's BTF, or has an unexpected prototype.
    #[error("kernel BTF has no tracepoint prototype {name} of the expected shape")]
    MissingTracepoint {
        /// The BTF typedef looked for.
        name: &'static str,
    },
    /// Neither source of a bio's owner can be read.
    #[error("cannot tell who owns block IO: page memory cgroup: {memcg}; bio block cgroup: {blkg}")]
    NoIoOwner {
        /// Why the page's memcg is unreadable (e.g. no `CONFIG_MEMCG`).
        memcg: Box<OffsetError>,
        /// Why the bio's blkcg is unreadable (e.g. no `CONFIG_BLK_CGROUP`).
        blkg: Box<OffsetError>,
    },
    /// A controller's state struct does not begin with its `css`, as the cgroup walk
    /// assumes (`cgroup.subsys[i]` is then not the struct's address).
    #[error("kernel BTF: {struct_name}.css is not its first member")]
    CssNotFirst {
        /// The struct's name.
        struct_name: &'static str,
    },
    /// The v1 controller to track has no `<controller>_cgrp_id` in `enum cgroup_subsys_id`.
    #[error("kernel BTF: enum cgroup_subsys_id has no {variant} (controller not built in?)")]
    MissingSubsys {
        /// The enumerator looked for.
        variant: String,
    },
}

/// Path of the running kernel's BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// What is optional in the offsets: why each optional part is off (`None`: it is on).
#[derive(Debug, Default)]
pub struct OptionalParts {
    /// The block-IO program.
    pub io: Option<OffsetError>,
    /// The cgroup walk's memory, CPU and PIDs values, by controller.
    pub cgroup_values: Vec<(&'static str, OffsetError)>,
}

/// Computes every offset the programs need. `v1_controller` is the v1 controller whose
/// hierarchy is tracked per process (e.g. `memory`), or `None` on a pure cgroup-v2 host.
///
/// Members of the process-tracking programs are required (an error). Those of the block-IO
/// program and of the cgroup walk are not: when they are missing, their `*_ready` flag stays
/// 0 and [`OptionalParts`] says why; a missing optional attribution source (page memcg, bio
/// blkcg) only clears its flag.
pub fn kernel_offsets(
    btf_path: &Path,
    v1_controller: Option<&str>,
) -> Result<(KernelOffsets, OptionalParts), OffsetError> {
    let btf = Btf::from_file(btf_path).map_err(|source| OffsetError::Btf {
        path: btf_path.to_owned(),
        source,
    })?;
    let mut offsets = process_offsets(&btf, v1_controller)?;
    let io = block_io_offsets(&btf, &mut offsets).err();
    let cgroup_values = cgroup_values_offsets(&btf, &mut offsets);
    Ok((offsets, OptionalParts { io, cgroup_values }))
}

/// Fills the cgroup walk's members (`collector-ebpf/src/cgroup_values.rs`), controller by
/// controller; returns why the controllers left off (their `values_*_ready` stays 0).
fn cgroup_values_offsets(btf: &Btf, o: &mut KernelOffsets) -> Vec<(&'static str, OffsetError)> {
    let mut off = Vec::new();
    match struct_member(btf, "cgroup", "subsys") {
        Ok(offset) => o.cgroup_subsys = offset,
        Err(e) => {
            off.push(("all", e));
            return off;
        }
    }
    if let Err(e) = memory_values_offsets(btf, o) {
        off.push(("memory", e));
    }
    if let Err(e) = cpu_values_offsets(btf, o) {
        off.push(("cpu", e));
    }
    if let Err(e) = pids_values_offsets(btf, o) {
        off.push(("pids", e));
    }
    if let Err(e) = cpuset_values_offsets(btf, o, nr_cpu_ids()) {
        off.push(("cpuset", e));
    }
    off
}

/// Where the kernel lists the CPUs that can ever be online (`cpu_possible_mask`).
const POSSIBLE_CPUS: &str = "/sys/devices/system/cpu/possible";

/// `nr_cpu_ids`: the highest possible CPU plus one, from [`POSSIBLE_CPUS`] (e.g. "0-63").
fn nr_cpu_ids() -> Option<u32> {
    parse_nr_cpu_ids(&std::fs::read_to_string(POSSIBLE_CPUS).ok()?)
}

#[doc(hidden)] // pub for the fuzz targets (fuzz/)
pub fn parse_nr_cpu_ids(list: &str) -> Option<u32> {
    list.trim()
        .split(',')
        .map(|range| {
            range
                .rsplit('-')
                .next()
                .and_then(|last| last.parse::<u32>().ok())
        })
        // The highest CPU u32 can hold has no successor: not a CPU list the kernel writes.
        .try_fold(0, |max, last| Some(max.max(last?.checked_add(1)?)))
        .filter(|&n| n > 0)
}

/// Most CPUs whose masks the walk counts (64 words of 64 bits, its loop bound).
const MAX_WALKED_CPUS: u32 = 4096;

fn cpuset_values_offsets(
    btf: &Btf,
    o: &mut KernelOffsets,
    nr_cpu_ids: Option<u32>,
) -> Result<(), OffsetError> {
    css_first(btf, "cpuset")?;
    o.cpuset_subsys_id = subsys_index(btf, "cpuset")?;
    o.cpuset_effective_cpus = struct_member(btf, "cpuset", "effective_cpus")?;
    // `cpumask_var_t` is `struct cpumask[1]`, or `struct cpumask *` with
    // CONFIG_CPUMASK_OFFSTACK (then only `nr_cpu_ids` bits are allocated).
    let typedef = btf
        .resolve_types_by_name("cpumask_var_t")
        .unwrap_or_default()
        .into_iter()
        .find_map(|ty| match ty {
            Type::Typedef(t) => Some(t),
            _ => None,
        })
        .ok_or(OffsetError::MissingStruct {
            name: "cpumask_var_t",
        })?;
    o.cpumask_indirect = match btf.resolve_chained_type(&typedef) {
        Ok(Type::Ptr(_)) => 1,
        Ok(Type::Array(_)) => 0,
        _ => {
            return Err(OffsetError::MissingStruct {
                name: "cpumask_var_t (neither array nor pointer)",
            });
        }
    };
    let cpus = nr_cpu_ids
        .filter(|&n| n <= MAX_WALKED_CPUS)
        .ok_or(OffsetError::MissingStruct {
            name: "a possible-CPU count of at most 4096 (/sys/devices/system/cpu/possible)",
        })?;
    o.cpumask_words = cpus.div_ceil(64);
    o.cpumask_last_bits = cpus % 64;
    o.values_cpuset_ready = 1;
    Ok(())
}

/// `struct_name.css` must be at offset 0 (see [`OffsetError::CssNotFirst`]).
fn css_first(btf: &Btf, struct_name: &'static str) -> Result<(), OffsetError> {
    if struct_member(btf, struct_name, "css")? == 0 {
        Ok(())
    } else {
        Err(OffsetError::CssNotFirst { struct_name })
    }
}

fn memory_values_offsets(btf: &Btf, o: &mut KernelOffsets) -> Result<(), OffsetError> {
    css_first(btf, "mem_cgroup")?;
    o.memory_subsys_id = subsys_index(btf, "memory")?;
    let memcg = find_struct(btf, "mem_cgroup")?;
    o.memcg_memory = member_offset(btf, &memcg, "mem_cgroup", "memory")?;
    // `soft_limit` is under CONFIG_MEMCG_V1 since 6.11 (a kernel without it has no v1 memory
    // hierarchy): without it the v1 memory values are left to the files, the v2 ones are
    // walked all the same.
    if let Ok(soft_limit) = member_offset(btf, &memcg, "mem_cgroup", "soft_limit") {
        o.memcg_soft_limit = soft_limit;
        o.values_soft_limit_ready = 1;
    }
    let counter = find_struct(btf, "page_counter")?;
    o.page_counter_usage = member_offset(btf, &counter, "page_counter", "usage")?;
    o.page_counter_watermark = member_offset(btf, &counter, "page_counter", "watermark")?;
    o.page_counter_failcnt = member_offset(btf, &counter, "page_counter", "failcnt")?;
    // `kmem` exists with CONFIG_MEMCG_V1 (6.11+) or always before; without it the file is
    // read (and is absent too).
    if let Ok(kmem) = member_offset(btf, &memcg, "mem_cgroup", "kmem") {
        o.memcg_kmem = kmem;
        o.values_kmem_ready = 1;
    }
    // `memory_events` (`atomic_long_t[MEMCG_NR_MEMORY_EVENTS]`, 4.13+): its `MEMCG_OOM_KILL`
    // slot is what `memory.oom_control` prints as `oom_kill`; without it the file is read.
    if let (Ok(events), Some(index)) = (
        member_offset(btf, &memcg, "mem_cgroup", "memory_events"),
        enum_value(btf, "memcg_memory_event", "MEMCG_OOM_KILL"),
    ) {
        o.memcg_oom_kill = events + index * 8;
        o.values_oom_kill_ready = 1;
    }
    // The v2 files' limits and swap (`memory.max`, `memory.high`, `memory.low`,
    // `memory.swap.current`, `memory.swap.max`): `page_counter.{max,high,low}` (all since
    // 5.x) and `mem_cgroup.swap` (in an anonymous union with v1's `memsw`, 6.1 and 6.18).
    // Without them the v2 walk leaves those to the files.
    if let (Ok(swap), Ok(max), Ok(high), Ok(low)) = (
        member_offset(btf, &memcg, "mem_cgroup", "swap"),
        member_offset(btf, &counter, "page_counter", "max"),
        member_offset(btf, &counter, "page_counter", "high"),
        member_offset(btf, &counter, "page_counter", "low"),
    ) {
        o.memcg_swap = swap;
        o.page_counter_max = max;
        o.page_counter_high = high;
        o.page_counter_low = low;
        o.values_v2_memory_ready = 1;
    }
    o.values_memory_ready = 1;
    Ok(())
}

fn cpu_values_offsets(btf: &Btf, o: &mut KernelOffsets) -> Result<(), OffsetError> {
    css_first(btf, "task_group")?;
    o.cpu_subsys_id = subsys_index(btf, "cpu")?;
    let tg = find_struct(btf, "task_group")?;
    o.tg_shares = member_offset(btf, &tg, "task_group", "shares")?;
    // `cfs_bandwidth` needs CONFIG_CFS_BANDWIDTH, as do the v1 quota files.
    o.tg_cfs_bandwidth = member_offset(btf, &tg, "task_group", "cfs_bandwidth")?;
    let b = find_struct(btf, "cfs_bandwidth")?;
    o.cfs_b_period = member_offset(btf, &b, "cfs_bandwidth", "period")?;
    o.cfs_b_quota = member_offset(btf, &b, "cfs_bandwidth", "quota")?;
    o.cfs_b_nr_periods = member_offset(btf, &b, "cfs_bandwidth", "nr_periods")?;
    o.cfs_b_nr_throttled = member_offset(btf, &b, "cfs_bandwidth", "nr_throttled")?;
    o.cfs_b_throttled_time = member_offset(btf, &b, "cfs_bandwidth", "throttled_time")?;
    o.values_cpu_ready = 1;
    Ok(())
}

fn pids_values_offsets(btf: &Btf, o: &mut KernelOffsets) -> Result<(), OffsetError> {
    css_first(btf, "pids_cgroup")?;
    o.pids_subsys_id = subsys_index(btf, "pids")?;
    let pids = find_struct(btf, "pids_cgroup")?;
    o.pids_counter = member_offset(btf, &pids, "pids_cgroup", "counter")?;
    o.pids_limit = member_offset(btf, &pids, "pids_cgroup", "limit")?;
    o.values_pids_ready = 1;
    Ok(())
}

fn process_offsets(btf: &Btf, v1_controller: Option<&str>) -> Result<KernelOffsets, OffsetError> {
    let task = find_struct(btf, "task_struct")?;
    let start_boottime = member_offset(btf, &task, "task_struct", "start_boottime")
        .or_else(|_| member_offset(btf, &task, "task_struct", "real_start_time"))?;
    let css_set = find_struct(btf, "css_set")?;
    let cgroup = find_struct(btf, "cgroup")?;
    let (v1_subsys_index, track_v1) = match v1_controller {
        Some(controller) => (subsys_index(btf, controller)?, 1),
        None => (0, 0),
    };
    Ok(KernelOffsets {
        task_pid: member_offset(btf, &task, "task_struct", "pid")?,
        task_tgid: member_offset(btf, &task, "task_struct", "tgid")?,
        task_start_boottime: start_boottime,
        task_cgroups: member_offset(btf, &task, "task_struct", "cgroups")?,
        task_signal: member_offset(btf, &task, "task_struct", "signal")?,
        task_real_parent: member_offset(btf, &task, "task_struct", "real_parent")?,
        task_group_leader: member_offset(btf, &task, "task_struct", "group_leader")?,
        task_comm: member_offset(btf, &task, "task_struct", "comm")?,
        signal_live: struct_member(btf, "signal_struct", "live")?,
        css_set_dfl_cgrp: member_offset(btf, &css_set, "css_set", "dfl_cgrp")?,
        css_set_subsys: member_offset(btf, &css_set, "css_set", "subsys")?,
        css_cgroup: struct_member(btf, "cgroup_subsys_state", "cgroup")?,
        cgroup_kn: member_offset(btf, &cgroup, "cgroup", "kn")?,
        cgroup_root: member_offset(btf, &cgroup, "cgroup", "root")?,
        cgroup_level: member_offset(btf, &cgroup, "cgroup", "level")?,
        cgroup_root_hierarchy_id: struct_member(btf, "cgroup_root", "hierarchy_id")?,
        kernfs_node_id: struct_member(btf, "kernfs_node", "id")?,
        v1_subsys_index,
        track_v1,
        ready: 1,
        ..KernelOffsets::default()
    })
}

/// Fills the block-IO members (`collector-ebpf/src/blkio.rs`). On error, `io_ready` stays 0
/// and the block-IO program is not attached.
fn block_io_offsets(btf: &Btf, o: &mut KernelOffsets) -> Result<(), OffsetError> {
    o.bio_queue_bio_arg = bio_queue_bio_arg(btf)?;
    let bio = find_struct(btf, "bio")?;
    // `bi_bdev` since 5.12; `bi_disk` (the gendisk itself) before.
    if let Ok(offset) = member_offset(btf, &bio, "bio", "bi_bdev") {
        o.bio_bdev = offset;
        o.bio_disk_direct = 0;
        o.bdev_disk = struct_member(btf, "block_device", "bd_disk")?;
    } else {
        o.bio_bdev = member_offset(btf, &bio, "bio", "bi_disk")?;
        o.bio_disk_direct = 1;
    }
    o.bio_opf = member_offset(btf, &bio, "bio", "bi_opf")?;
    o.bio_size =
        member_offset(btf, &bio, "bio", "bi_iter")? + struct_member(btf, "bvec_iter", "bi_size")?;
    o.bio_io_vec = member_offset(btf, &bio, "bio", "bi_io_vec")?;
    o.disk_major = struct_member(btf, "gendisk", "major")?;
    o.disk_first_minor = struct_member(btf, "gendisk", "first_minor")?;
    // REQ_OP_BITS is the first flag bit; 8 in every kernel since 4.10, read here anyway.
    let op_bits = enum_value(btf, "req_flag_bits", "__REQ_FAILFAST_DEV").unwrap_or(8);
    o.req_op_mask = (1u32 << op_bits.min(31)) - 1;

    let memcg = memcg_offsets(btf, o);
    let blkg = blkg_offsets(btf, &bio, o);
    o.io_memcg = u32::from(memcg.is_ok());
    o.io_blkg = u32::from(blkg.is_ok());
    match (memcg, blkg) {
        (Err(memcg), Err(blkg)) => Err(OffsetError::NoIoOwner {
            memcg: Box::new(memcg),
            blkg: Box::new(blkg),
        }),
        (memcg, blkg) => {
            if let Err(e) = memcg {
                tracing::info!(error = %e, "block IO: page memory cgroups unreadable, charging IO to the bio's block cgroup only");
            }
            if let Err(e) = blkg {
                tracing::info!(error = %e, "block IO: bio block cgroups unreadable, charging IO to page memory cgroups only");
            }
            o.io_ready = 1;
            Ok(())
        }
    }
}

/// The memcg of a bio's first page (`CONFIG_MEMCG`, 5.11+ `memcg_data` layout).
fn memcg_offsets(btf: &Btf, o: &mut KernelOffsets) -> Result<(), OffsetError> {
    o.bvec_page = struct_member(btf, "bio_vec", "bv_page")?;
    let page = find_struct(btf, "page")?;
    o.page_compound_head = member_offset(btf, &page, "page", "compound_head")?;
    o.page_memcg_data = member_offset(btf, &page, "page", "memcg_data")?;
    let flags_end = enum_value(btf, "page_memcg_data_flags", "__NR_MEMCG_DATA_FLAGS").ok_or(
        OffsetError::MissingEnumerator {
            name: "__NR_MEMCG_DATA_FLAGS",
        },
    )?;
    o.memcg_data_flags_mask = flags_end.saturating_sub(1);
    o.memcg_data_kmem = enum_value(btf, "page_memcg_data_flags", "MEMCG_DATA_KMEM").ok_or(
        OffsetError::MissingEnumerator {
            name: "MEMCG_DATA_KMEM",
        },
    )?;
    o.obj_cgroup_memcg = struct_member(btf, "obj_cgroup", "memcg")?;
    o.memcg_css = struct_member(btf, "mem_cgroup", "css")?;
    Ok(())
}

/// The bio's block cgroup (`CONFIG_BLK_CGROUP`).
fn blkg_offsets(btf: &Btf, bio: &btf_rs::Struct, o: &mut KernelOffsets) -> Result<(), OffsetError> {
    o.bio_blkg = member_offset(btf, bio, "bio", "bi_blkg")?;
    o.blkg_blkcg = struct_member(btf, "blkcg_gq", "blkcg")?;
    o.blkcg_css = struct_member(btf, "blkcg", "css")?;
    Ok(())
}

/// Index of `struct bio *` among `block_bio_queue`'s arguments, from the prototype of its
/// BTF typedef `btf_trace_block_bio_queue` (`void *__data` first, then the arguments): the
/// bio is the last argument, `(struct bio *)` since 5.11 and `(struct request_queue *,
/// struct bio *)` before.
fn bio_queue_bio_arg(btf: &Btf) -> Result<u32, OffsetError> {
    const NAME: &str = "btf_trace_block_bio_queue";
    let missing = || OffsetError::MissingTracepoint { name: NAME };
    let typedef = btf
        .resolve_types_by_name(NAME)
        .unwrap_or_default()
        .into_iter()
        .find_map(|ty| match ty {
            Type::Typedef(t) => Some(t),
            _ => None,
        })
        .ok_or_else(missing)?;
    let Ok(Type::Ptr(ptr)) = btf.resolve_chained_type(&typedef) else {
        return Err(missing());
    };
    let Ok(Type::FuncProto(proto)) = btf.resolve_chained_type(&ptr) else {
        return Err(missing());
    };
    match proto.parameters.len() {
        n @ (2 | 3) => Ok(u32::try_from(n).unwrap_or(2) - 2),
        _ => Err(missing()),
    }
}

/// The value of `variant` in `enum enum_name` (searched in every enum of that name).
fn enum_value(btf: &Btf, enum_name: &str, variant: &str) -> Option<u32> {
    btf.resolve_types_by_name(enum_name)
        .unwrap_or_default()
        .into_iter()
        .find_map(|ty| match ty {
            Type::Enum(e) => e
                .members
                .iter()
                .find(|m| btf.resolve_name(*m).is_ok_and(|name| name == variant))
                .map(btf_rs::EnumMember::val),
            _ => None,
        })
}

/// The index of a v1 controller in `css_set.subsys`: its `enum cgroup_subsys_id` value.
/// The v1 name `blkio` is the kernel's `io` subsystem.
fn subsys_index(btf: &Btf, controller: &str) -> Result<u32, OffsetError> {
    let kernel_name = if controller == "blkio" {
        "io"
    } else {
        controller
    };
    let variant = format!("{kernel_name}_cgrp_id");
    enum_value(btf, "cgroup_subsys_id", &variant).ok_or(OffsetError::MissingSubsys { variant })
}

fn find_struct(btf: &Btf, name: &'static str) -> Result<btf_rs::Struct, OffsetError> {
    btf.resolve_types_by_name(name)
        .unwrap_or_default()
        .into_iter()
        .find_map(|ty| match ty {
            // Skip empty declarations; the definition has the members.
            Type::Struct(s) if !s.members.is_empty() => Some(s),
            _ => None,
        })
        .ok_or(OffsetError::MissingStruct { name })
}

fn struct_member(btf: &Btf, name: &'static str, member: &str) -> Result<u32, OffsetError> {
    let s = find_struct(btf, name)?;
    member_offset(btf, &s, name, member)
}

/// Byte offset of `member` in `s`, looking through anonymous struct and union members
/// (`task_struct` keeps many fields in anonymous structs when built with randstruct).
fn member_offset(
    btf: &Btf,
    s: &btf_rs::Struct,
    struct_name: &'static str,
    member: &str,
) -> Result<u32, OffsetError> {
    let bits = member_bit_offset(btf, s, member, 0).ok_or_else(|| OffsetError::MissingMember {
        struct_name,
        member: member.to_owned(),
    })?;
    if bits % 8 != 0 {
        return Err(OffsetError::Unaligned {
            struct_name,
            member: member.to_owned(),
        });
    }
    Ok(bits / 8)
}

fn member_bit_offset(btf: &Btf, s: &btf_rs::Struct, member: &str, base: u32) -> Option<u32> {
    for m in &s.members {
        let name = btf.resolve_name(m).unwrap_or_default();
        if name == member {
            return Some(base + m.bit_offset());
        }
        if name.is_empty() {
            let nested = m
                .get_type_id()
                .and_then(|id| btf.resolve_type_by_id(id).ok());
            if let Some(Type::Struct(inner) | Type::Union(inner)) = nested
                && let Some(found) = member_bit_offset(btf, &inner, member, base + m.bit_offset())
            {
                return Some(found);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nr_cpu_ids_is_the_highest_possible_cpu_plus_one() {
        assert_eq!(parse_nr_cpu_ids("0-1\n"), Some(2));
        assert_eq!(parse_nr_cpu_ids("0\n"), Some(1));
        assert_eq!(parse_nr_cpu_ids("0-3,8-11\n"), Some(12));
        assert_eq!(parse_nr_cpu_ids(""), None);
        assert_eq!(parse_nr_cpu_ids("zero"), None);
        // Overflowed (a panic with debug assertions) before; seen writing the
        // `kernel_records` fuzz target's invariant, which now covers it.
        assert_eq!(parse_nr_cpu_ids("0-4294967295\n"), None);
        assert_eq!(parse_nr_cpu_ids("4294967294"), Some(u32::MAX));
    }

    /// Runs against the machine's own kernel BTF, when it has one.
    #[test]
    fn offsets_of_the_running_kernel_are_plausible() {
        let path = Path::new(VMLINUX_BTF);
        if !path.exists() {
            eprintln!("skipping: {VMLINUX_BTF} absent (kernel without BTF)");
            return;
        }
        let (o, optional) = kernel_offsets(path, Some("memory")).expect("offsets");
        let io_error = optional.io;
        assert_eq!(o.ready, 1);
        assert_eq!(o.track_v1, 1);
        // tgid directly follows pid (both pid_t) in every kernel since 2.6.
        assert_eq!(o.task_tgid, o.task_pid + 4);
        assert!(o.task_cgroups > o.task_pid);
        // memory_cgrp_id is small (it is the nth compiled-in controller).
        assert!(o.v1_subsys_index < 16);
        // Block IO: every kernel with BTF tracepoints has the bio members; this one (6.x,
        // CONFIG_MEMCG and CONFIG_BLK_CGROUP) has both owner sources.
        assert!(io_error.is_none(), "{io_error:?}");
        assert_eq!(o.io_ready, 1);
        assert_eq!(o.bio_disk_direct, 0);
        assert_eq!(o.req_op_mask, 0xff);
        assert_eq!(o.io_memcg, 1);
        assert_eq!(o.io_blkg, 1);
        // bv_page and css are the first members of their structs; memcg_data follows
        // compound_head in struct page.
        assert_eq!(o.bvec_page, 0);
        assert_eq!(o.memcg_css, 0);
        assert_eq!(o.blkcg_css, 0);
        assert!(o.page_memcg_data > o.page_compound_head);
        assert_eq!(o.memcg_data_kmem, 2);
        assert_eq!(o.memcg_data_flags_mask, 3);
        // The cgroup walk: every controller's members are known on this kernel (6.18 with
        // CONFIG_MEMCG_V1 and CONFIG_CFS_BANDWIDTH); the enum's ids are small and distinct.
        assert!(
            optional.cgroup_values.is_empty(),
            "{:?}",
            optional.cgroup_values
        );
        assert_eq!(
            (
                o.values_memory_ready,
                o.values_kmem_ready,
                o.values_cpu_ready,
                o.values_pids_ready
            ),
            (1, 1, 1, 1)
        );
        assert!(o.memory_subsys_id < 16 && o.cpu_subsys_id < 16 && o.pids_subsys_id < 16);
        assert_ne!(o.memory_subsys_id, o.cpu_subsys_id);
        // `usage` is the first member of `page_counter`; watermark and failcnt follow it.
        assert_eq!(o.page_counter_usage, 0);
        assert!(o.page_counter_watermark > 0 && o.page_counter_failcnt > 0);
        assert!(o.memcg_kmem > o.memcg_memory);
        // The v2 members: `swap` follows `memory` in `mem_cgroup`; the limits follow the
        // usage in `page_counter`, min < low < high < max in declaration order.
        assert_eq!(o.values_v2_memory_ready, 1);
        assert_eq!(o.values_soft_limit_ready, 1);
        assert!(o.memcg_swap > o.memcg_memory);
        assert!(o.page_counter_low > 0);
        assert!(o.page_counter_low < o.page_counter_high);
        assert!(o.page_counter_high < o.page_counter_max);
        assert!(o.cfs_b_quota > o.cfs_b_period);
        assert_eq!(o.values_cpuset_ready, 1);
        assert!(o.cpumask_words >= 1);
        assert!(matches!(
            kernel_offsets(path, Some("no_such_controller")),
            Err(OffsetError::MissingSubsys { .. })
        ));
    }
}
