//! Loss and overflow: events dropped by a full ring buffer are counted and repaired by a
//! re-seed from the kernel and a cgroup walk; a full PID map is counted and logged through
//! aya-log, and lookups stay right because the daemon's index does not depend on the map.
use std::time::Duration;

use super::util::{container_id, lookup, metric, root, wait_for};
use crate::support::{
    cgroup::TestCgroup,
    daemon::Daemon,
    process::{ChildGuard, spawn_in_cgroup},
};

/// Stops the daemon (SIGSTOP) so it cannot read the ring buffer; continues it on drop.
pub(super) struct Stopped(u32);

impl Stopped {
    pub(super) fn new(pid: u32) -> Self {
        // SAFETY: signalling the daemon this test started.
        assert_eq!(unsafe { libc::kill(pid.cast_signed(), libc::SIGSTOP) }, 0);
        // The stop is delivered asynchronously: until every thread is stopped, one may still
        // drain the ring buffer. Wait for all of them to show state T.
        wait_for("the daemon to stop", Duration::from_secs(5), || {
            let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
            tasks
                .flatten()
                .all(|task| {
                    std::fs::read_to_string(task.path().join("stat"))
                        .ok()
                        .and_then(|stat| {
                            stat.rsplit_once(") ")
                                .map(|(_, rest)| rest.starts_with('T'))
                        })
                        .unwrap_or(true)
                })
                .then_some(())
        });
        Self(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0.cast_signed(), libc::SIGCONT) };
    }
}

#[test]
fn lost_events_are_counted_and_repaired() {
    if !root() {
        return;
    }
    // One page of ring buffer: a few cgroup events fill it.
    let daemon = Daemon::start(&["--ring-buffer-bytes", "4096"]);
    let id = container_id("lost");
    let cg = TestCgroup::new(&format!("system.slice/docker-{id}.scope"));
    let gone_id = container_id("lost-gone");
    let gone_cg = TestCgroup::new(&format!("system.slice/docker-{gone_id}.scope"));
    let before = spawn_in_cgroup(&gone_cg, &["sleep", "60"]);
    let before_pid = before.pid();
    assert_eq!(
        lookup(&daemon, before.pid())["container_id"],
        gone_id.as_str()
    );

    // Other tests running meanwhile may already have overflowed so small a buffer: count
    // from here.
    let lost_before = metric(&daemon, "collector_kernel_events_lost_total");
    let repairs_before = metric(&daemon, "collector_identity_repairs_total");
    let (live, nested_cg) = {
        let _stopped = Stopped::new(daemon.pid());
        // While the daemon sleeps: cgroups are made (1 KiB events), processes start in the
        // container, and one it knew exits.
        let mut nested_cg = TestCgroup::new(&format!("system.slice/docker-{id}.scope"));
        for i in 0..8 {
            nested_cg.mkdir_nested(&format!("n{i}"));
        }
        let live: Vec<ChildGuard> = (0..10)
            .map(|_| spawn_in_cgroup(&cg, &["sleep", "60"]))
            .collect();
        drop(before);
        (live, nested_cg)
    };
    assert!(metric(&daemon, "collector_kernel_events_lost_total") > lost_before);
    // Processes whose fork events were lost become known to the index (re-seeded from the
    // kernel) within an upkeep period or two; until then procfs answers for them. The one
    // whose exit was lost is marked exited by the same repair. (Some of the burst's events
    // may fit in the buffer and arrive before the repair: wait for both.)
    wait_for(
        "the repair to re-seed the index",
        Duration::from_secs(10),
        || {
            (live
                .iter()
                .all(|child| lookup(&daemon, child.pid())["source"] == "ebpf")
                && lookup(&daemon, before_pid)["exited"] == true)
                .then_some(())
        },
    );
    assert!(metric(&daemon, "collector_identity_repairs_total") > repairs_before);
    for child in &live {
        let answer = lookup(&daemon, child.pid());
        assert_eq!(answer["container_id"], id.as_str(), "{answer}");
        assert_eq!(answer["exited"], false, "{answer}");
    }
    // The process that exited unseen is not reported alive.
    let gone = lookup(&daemon, before_pid);
    assert_eq!(gone["container_id"], gone_id.as_str(), "{gone}");
    assert_eq!(gone["exited"], true, "{gone}");
    // Cgroups whose mkdir events were lost are known (walked again).
    let nested = super::util::lookup_inode(
        &daemon,
        crate::support::cgroup::inode(&nested_cg.v2_dir().join("n7")),
    );
    assert!(nested["container_id"].is_string(), "{nested}");
    assert!(daemon.healthz()["events_lost"].as_u64().unwrap() > 0);
    drop(live);
}

#[test]
fn a_full_pid_map_is_counted_and_logged_and_lookups_stay_right() {
    if !root() {
        return;
    }
    let daemon = Daemon::start(&["--max-processes", "1024"]);
    let id = container_id("full");
    let cg = TestCgroup::new(&format!("docker/{id}"));
    // More processes than the map holds, on top of the host's own.
    // They must all live at once: 1,100 spawns take over a minute in the TCG VM of
    // `cargo xtask vm`, so a `sleep 60` could end before the last one starts (the guards kill
    // them at the end).
    let children: Vec<ChildGuard> = (0..1100)
        .map(|_| spawn_in_cgroup(&cg, &["sleep", "600"]))
        .collect();
    assert!(metric(&daemon, "collector_kernel_process_map_full_total") > 0);
    for child in children.iter().rev().take(50) {
        let answer = lookup(&daemon, child.pid());
        assert_eq!(answer["container_id"], id.as_str(), "{answer}");
        assert_eq!(answer["source"], "ebpf", "{answer}");
    }
    // The kernel's own diagnostic reached the daemon's log through aya-log.
    wait_for(
        "the kernel's map-full warning in the log",
        Duration::from_secs(5),
        || daemon.log().contains("PROCESSES map full").then_some(()),
    );
    drop(children);
}
