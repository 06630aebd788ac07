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
    /// The v1 controller to track has no `<controller>_cgrp_id` in `enum cgroup_subsys_id`.
    #[error("kernel BTF: enum cgroup_subsys_id has no {variant} (controller not built in?)")]
    MissingSubsys {
        /// The enumerator looked for.
        variant: String,
    },
}

/// Path of the running kernel's BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Computes every offset the programs need. `v1_controller` is the v1 controller whose
/// hierarchy is tracked per process (e.g. `memory`), or `None` on a pure cgroup-v2 host.
pub fn kernel_offsets(
    btf_path: &Path,
    v1_controller: Option<&str>,
) -> Result<KernelOffsets, OffsetError> {
    let btf = Btf::from_file(btf_path).map_err(|source| OffsetError::Btf {
        path: btf_path.to_owned(),
        source,
    })?;
    let task = find_struct(&btf, "task_struct")?;
    let start_boottime = member_offset(&btf, &task, "task_struct", "start_boottime")
        .or_else(|_| member_offset(&btf, &task, "task_struct", "real_start_time"))?;
    let css_set = find_struct(&btf, "css_set")?;
    let cgroup = find_struct(&btf, "cgroup")?;
    let (v1_subsys_index, track_v1) = match v1_controller {
        Some(controller) => (subsys_index(&btf, controller)?, 1),
        None => (0, 0),
    };
    Ok(KernelOffsets {
        task_pid: member_offset(&btf, &task, "task_struct", "pid")?,
        task_tgid: member_offset(&btf, &task, "task_struct", "tgid")?,
        task_start_boottime: start_boottime,
        task_cgroups: member_offset(&btf, &task, "task_struct", "cgroups")?,
        task_signal: member_offset(&btf, &task, "task_struct", "signal")?,
        task_real_parent: member_offset(&btf, &task, "task_struct", "real_parent")?,
        task_group_leader: member_offset(&btf, &task, "task_struct", "group_leader")?,
        task_comm: member_offset(&btf, &task, "task_struct", "comm")?,
        signal_live: struct_member(&btf, "signal_struct", "live")?,
        css_set_dfl_cgrp: member_offset(&btf, &css_set, "css_set", "dfl_cgrp")?,
        css_set_subsys: member_offset(&btf, &css_set, "css_set", "subsys")?,
        css_cgroup: struct_member(&btf, "cgroup_subsys_state", "cgroup")?,
        cgroup_kn: member_offset(&btf, &cgroup, "cgroup", "kn")?,
        cgroup_root: member_offset(&btf, &cgroup, "cgroup", "root")?,
        cgroup_level: member_offset(&btf, &cgroup, "cgroup", "level")?,
        cgroup_root_hierarchy_id: struct_member(&btf, "cgroup_root", "hierarchy_id")?,
        kernfs_node_id: struct_member(&btf, "kernfs_node", "id")?,
        v1_subsys_index,
        track_v1,
        ready: 1,
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
    let types = btf
        .resolve_types_by_name("cgroup_subsys_id")
        .unwrap_or_default();
    for ty in types {
        if let Type::Enum(e) = ty {
            for member in &e.members {
                if btf.resolve_name(member).is_ok_and(|name| name == variant) {
                    return Ok(member.val());
                }
            }
        }
    }
    Err(OffsetError::MissingSubsys { variant })
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

    /// Runs against the machine's own kernel BTF, when it has one.
    #[test]
    fn offsets_of_the_running_kernel_are_plausible() {
        let path = Path::new(VMLINUX_BTF);
        if !path.exists() {
            eprintln!("skipping: {VMLINUX_BTF} absent (kernel without BTF)");
            return;
        }
        let o = kernel_offsets(path, Some("memory")).expect("offsets");
        assert_eq!(o.ready, 1);
        assert_eq!(o.track_v1, 1);
        // tgid directly follows pid (both pid_t) in every kernel since 2.6.
        assert_eq!(o.task_tgid, o.task_pid + 4);
        assert!(o.task_cgroups > o.task_pid);
        // memory_cgrp_id is small (it is the nth compiled-in controller).
        assert!(o.v1_subsys_index < 16);
        assert!(matches!(
            kernel_offsets(path, Some("no_such_controller")),
            Err(OffsetError::MissingSubsys { .. })
        ));
    }
}
