//! The kernel's figures: the daemon's programs' run time with BPF statistics on, and the
//! empty programs that calibrate them.

use std::{
    collections::BTreeMap,
    ffi::CString,
    fs, io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use collector_tests::support::cgroup::v2_mount;

use crate::{
    Config, WRITE_SIZE,
    daemon::{
        BPF_STATS_SYSCTL, Programs, StatsOn, fdinfo, prog_names, programs_of, start_daemon,
        stop_daemon,
    },
    workloads::{TCP_TRANSFERS, fork_exit, mib, tcp_measurement},
};

/// Per-program run statistics over one workload.
pub(crate) struct ProgDelta {
    pub id: u32,
    pub runs: u64,
    pub ns: u64,
}

/// The kernel's figures: the daemon's programs' run counts and run time over a TCP and a
/// fork+exit workload, statistics on.
pub(crate) struct KernelStats {
    pub how: String,
    pub programs: Programs,
    pub names: BTreeMap<u32, String>,
    pub tcp: Vec<ProgDelta>,
    pub tcp_mib: f64,
    pub forks: Vec<ProgDelta>,
    pub fork_count: u32,
    /// The empty program on each lifecycle hook: (hook, (runs, ns)) over the fork loop.
    pub empty: [(&'static str, (u64, u64)); 2],
    /// The same on the packet hooks over the TCP transfer (attached before its start, so
    /// their counts include the set-up's few packets, as the daemon's do).
    pub empty_packet: [(&'static str, (u64, u64)); 2],
    /// The sysctl value before and after (must match).
    pub sysctl_before: String,
    pub sysctl_after: String,
}

pub(crate) fn deltas(before: &Programs, after: &Programs) -> Vec<ProgDelta> {
    after
        .progs
        .iter()
        .map(|(&id, a)| {
            let b = before.progs.get(&id).cloned().unwrap_or_default();
            ProgDelta {
                id,
                runs: a.run_cnt.saturating_sub(b.run_cnt),
                ns: a.run_time_ns.saturating_sub(b.run_time_ns),
            }
        })
        .collect()
}

/// The hooks a fork+exit runs the lifecycle programs on.
pub(crate) const EMPTY_PROGRAM_HOOKS: [Hook; 2] = [
    Hook::RawTracepoint("task_newtask"),
    Hook::RawTracepoint("sched_process_exit"),
];
/// The hooks a packet runs the counting programs on (on the cgroup-v2 root, like them).
pub(crate) const EMPTY_PACKET_HOOKS: [Hook; 2] =
    [Hook::CgroupSkb("ingress"), Hook::CgroupSkb("egress")];

/// Where an empty program goes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Hook {
    /// A raw tracepoint, by name.
    RawTracepoint(&'static str),
    /// `cgroup_skb` on the cgroup-v2 root, "ingress" or "egress".
    CgroupSkb(&'static str),
}

impl Hook {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Hook::RawTracepoint(name) | Hook::CgroupSkb(name) => name,
        }
    }
}

/// An empty program (see the module docs) attached through a link; detached on drop (also
/// if the bench dies), so nothing of it outlives the bench.
pub(crate) struct EmptyProgram {
    pub hook: Hook,
    pub prog: OwnedFd,
    pub _link: OwnedFd,
}

impl EmptyProgram {
    pub(crate) fn attach(hook: Hook) -> io::Result<Self> {
        use collector_tests::support::bpf::bpf;
        const BPF_PROG_LOAD: libc::c_long = 5;
        const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
        const BPF_LINK_CREATE: libc::c_long = 28;
        const BPF_PROG_TYPE_CGROUP_SKB: u32 = 8;
        const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;
        const BPF_CGROUP_INET_INGRESS: u32 = 0;
        const BPF_CGROUP_INET_EGRESS: u32 = 1;
        let owned = |fd: libc::c_long| -> io::Result<OwnedFd> {
            let fd = i32::try_from(fd).map_err(io::Error::other)?;
            // SAFETY: the kernel returned a new descriptor we own.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        };
        // `r0 = K; exit`: a tracepoint program's return value is ignored; a cgroup_skb
        // program must return 1, or the packet is dropped.
        let r0: u8 = match hook {
            Hook::RawTracepoint(_) => 0,
            Hook::CgroupSkb(_) => 1,
        };
        let insns: [u8; 16] = [0xb7, 0, 0, 0, r0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
        let (prog_type, attach_type) = match hook {
            Hook::RawTracepoint(_) => (BPF_PROG_TYPE_RAW_TRACEPOINT, 0),
            Hook::CgroupSkb("ingress") => (BPF_PROG_TYPE_CGROUP_SKB, BPF_CGROUP_INET_INGRESS),
            Hook::CgroupSkb(_) => (BPF_PROG_TYPE_CGROUP_SKB, BPF_CGROUP_INET_EGRESS),
        };
        let license = c"GPL";
        let mut attr = [0u8; 128];
        // union bpf_attr, BPF_PROG_LOAD: { u32 prog_type; u32 insn_cnt; u64 insns;
        // u64 license; u32 log_level; u32 log_size; u64 log_buf; u32 kern_version;
        // u32 prog_flags; char prog_name[16]; u32 prog_ifindex; u32 expected_attach_type; }
        attr[0..4].copy_from_slice(&prog_type.to_ne_bytes());
        attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
        attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
        attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
        attr[48..53].copy_from_slice(b"empty");
        attr[68..72].copy_from_slice(&attach_type.to_ne_bytes());
        let prog = owned(bpf(BPF_PROG_LOAD, &mut attr)?)?;
        let link = match hook {
            Hook::RawTracepoint(name) => {
                let name = CString::new(name).map_err(io::Error::other)?;
                let mut attr = [0u8; 128];
                // BPF_RAW_TRACEPOINT_OPEN: { u64 name; u32 prog_fd; }
                attr[0..8].copy_from_slice(&(name.as_ptr() as u64).to_ne_bytes());
                attr[8..12].copy_from_slice(&prog.as_raw_fd().to_ne_bytes());
                owned(bpf(BPF_RAW_TRACEPOINT_OPEN, &mut attr)?)?
            }
            Hook::CgroupSkb(_) => {
                let root = v2_mount().ok_or_else(|| io::Error::other("no cgroup v2 mount"))?;
                let root = fs::File::open(root)?;
                let mut attr = [0u8; 128];
                // BPF_LINK_CREATE: { u32 prog_fd; u32 target_fd; u32 attach_type; u32 flags; }
                attr[0..4].copy_from_slice(&prog.as_raw_fd().to_ne_bytes());
                attr[4..8].copy_from_slice(&root.as_raw_fd().to_ne_bytes());
                attr[8..12].copy_from_slice(&attach_type.to_ne_bytes());
                owned(bpf(BPF_LINK_CREATE, &mut attr)?)?
            }
        };
        Ok(Self {
            hook,
            prog,
            _link: link,
        })
    }

    pub(crate) fn attach_all(hooks: [Hook; 2]) -> [Self; 2] {
        hooks.map(|hook| {
            Self::attach(hook)
                .unwrap_or_else(|e| panic!("attaching an empty program: {hook:?}: {e}"))
        })
    }

    /// The hook's name, runs and run time so far (`run_cnt`, `run_time_ns` of its fdinfo).
    pub(crate) fn runs_and_ns(&self) -> (&'static str, (u64, u64)) {
        let info = fdinfo(std::process::id(), &self.prog.as_raw_fd().to_string());
        let get = |key: &str| info.get(key).and_then(|v| v.parse().ok()).unwrap_or(0);
        (self.hook.name(), (get("run_cnt"), get("run_time_ns")))
    }
}

pub(crate) fn kernel_stats(config: &Config) -> KernelStats {
    let sysctl = || {
        fs::read_to_string(BPF_STATS_SYSCTL)
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let sysctl_before = sysctl();
    let (daemon, programs) = start_daemon();
    let pid = daemon.pid();
    let names = prog_names();
    let (how, tcp, forks, empty_packet, empty) = {
        let stats = StatsOn::enable();
        let empties = EmptyProgram::attach_all(EMPTY_PACKET_HOOKS);
        let at_start = programs_of(pid);
        let _ = tcp_measurement(config.tcp_bytes);
        let after_tcp = programs_of(pid);
        let empty_packet = empties.map(|e| e.runs_and_ns());
        let empties = EmptyProgram::attach_all(EMPTY_PROGRAM_HOOKS);
        let _ = fork_exit(config.forks);
        let after_forks = programs_of(pid);
        (
            stats.how(),
            deltas(&at_start, &after_tcp),
            deltas(&after_tcp, &after_forks),
            empty_packet,
            empties.map(|e| e.runs_and_ns()),
        )
    };
    stop_daemon(daemon, &programs);
    KernelStats {
        how,
        programs,
        names,
        tcp,
        tcp_mib: mib(config.tcp_bytes / TCP_TRANSFERS / WRITE_SIZE as u64
            * WRITE_SIZE as u64
            * TCP_TRANSFERS),
        forks,
        fork_count: config.forks,
        empty,
        empty_packet,
        sysctl_before,
        sysctl_after: sysctl(),
    }
}
