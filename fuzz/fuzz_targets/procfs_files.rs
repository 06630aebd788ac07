//! The procfs file parsers, one chosen by the input's first byte: `/proc/<pid>/net/dev`
//! (`procfs_stats::net::parse_net_dev`), `/proc/<pid>/stat` with `/proc/<pid>/cgroup`
//! (`identity::procfs::{read_process, start_time_ns}`), `/proc/<pid>/status`
//! (`procfs_stats::tasks::thread_count`) and `cgroup.procs`
//! (`procfs_stats::tasks::cgroup_pids_recursive`). The last three read files, so the text is
//! written to a scratch procfs under `$TMPDIR` first.
//!
//! Beyond "no panic": network totals are the sums of the interfaces, the two start-time
//! readers agree, and a cgroup's PIDs come out sorted, once each, from its file.
#![no_main]

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

use collector_daemon::{
    identity::procfs::{read_process, start_time_ns},
    procfs_stats::{net::parse_net_dev, tasks},
};
use libfuzzer_sys::fuzz_target;

/// The PID whose files the scratch procfs holds.
const PID: u32 = 4242;

/// `$TMPDIR/collector-fuzz-procfs-<our pid>`, made once.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("collector-fuzz-procfs-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(PID.to_string())).expect("scratch procfs");
        std::fs::create_dir_all(dir.join("cgroup")).expect("scratch cgroup");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => net_dev(rest),
        1 => stat_and_cgroup(rest),
        2 => {
            std::fs::write(scratch().join(format!("{PID}/status")), rest).expect("status");
            let _ = tasks::thread_count(scratch(), PID);
        }
        _ => cgroup_procs(rest),
    }
});

fn net_dev(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(Some(stats)) = parse_net_dev(text) else {
        return;
    };
    let interfaces = stats.interfaces.expect("totals come with their interfaces");
    assert!(!interfaces.contains_key("lo"));
    let sum = |f: fn(&collector_daemon::stats::InterfaceNetStats) -> Option<u64>| {
        interfaces
            .values()
            .try_fold(0u64, |t, i| f(i).map(|v| t.saturating_add(v)))
    };
    assert_eq!(stats.bytes_rcvd, sum(|i| i.bytes_rcvd));
    assert_eq!(stats.bytes_sent, sum(|i| i.bytes_sent));
    assert_eq!(stats.packets_rcvd, sum(|i| i.packets_rcvd));
    assert_eq!(stats.packets_sent, sum(|i| i.packets_sent));
}

/// `stat` and `cgroup` separated by a NUL byte.
fn stat_and_cgroup(data: &[u8]) {
    let (stat, cgroup) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b"0::/\n"[..]),
    };
    let dir = scratch().join(PID.to_string());
    std::fs::write(dir.join("stat"), stat).expect("stat");
    std::fs::write(dir.join("cgroup"), cgroup).expect("cgroup");
    let quick = start_time_ns(scratch(), PID);
    if let Ok(process) = read_process(scratch(), PID) {
        assert_eq!(
            quick,
            Some(process.start_boottime_ns),
            "the two readers disagree"
        );
    }
}

fn cgroup_procs(data: &[u8]) {
    let dir = scratch().join("cgroup");
    std::fs::write(dir.join("cgroup.procs"), data).expect("cgroup.procs");
    let Ok(pids) = tasks::cgroup_pids_recursive(&dir) else {
        return;
    };
    assert!(pids.windows(2).all(|w| w[0] < w[1]), "sorted, once each");
    let text = String::from_utf8_lossy(data);
    for pid in pids {
        assert!(text.lines().any(|l| l.trim().parse::<u32>() == Ok(pid)));
    }
}
