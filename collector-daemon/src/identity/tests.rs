//! The identity service over a fake kernel and fixture cgroup and proc trees: how it
//! answers across PID reuse, races of the task iterator with exits, and lost events.
use std::sync::{Arc, atomic::Ordering};

use collector_common::{
    counters,
    process::{FLAG_PROCFS, FLAG_SEEDED, ProcessInfo},
};

use super::*;
use crate::{
    clock,
    ebpf::{Event, ProcessChange, kernel_maps::fake::FakeKernel},
    test_support::FakeHost,
};

const ID_A: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const ID_B: &str = "b1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const ID_C: &str = "c1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

fn docker(id: &str) -> String {
    format!("/docker/{id}")
}

/// A process as the kernel reports it: exact start time `start_ns`, in v2 cgroup `cgroup`.
fn info(start_ns: u64, cgroup: u64, flags: u32) -> ProcessInfo {
    ProcessInfo {
        start_boottime_ns: start_ns,
        cgroup_v2_id: cgroup,
        cgroup_v1_id: 0,
        ppid: 1,
        flags,
    }
}

/// An exact kernel start time within clock tick `ticks`.
fn in_tick(ticks: u64) -> u64 {
    clock::ticks_to_ns(ticks) + clock::ns_per_tick(clock::user_hz()) / 3
}

fn event(change: ProcessChange, tgid: u32, info: ProcessInfo, comm: &str) -> Event {
    Event::Process {
        change,
        tgid,
        info,
        comm: comm.to_owned(),
    }
}

fn container_id(answer: &ProcessAnswer) -> Option<&str> {
    answer.container.as_deref().map(|c| c.id.as_str())
}

#[test]
fn a_reused_pid_is_never_answered_with_the_exited_process_container() {
    let host = FakeHost::new();
    let a = host.mkdir(&docker(ID_A));
    let b = host.mkdir(&docker(ID_B));
    let kernel = Arc::new(FakeKernel::default());
    let old = info(in_tick(5_000), a, FLAG_SEEDED);
    kernel.state().tasks.push((100, old, "old".to_owned()));
    let identity = host.identity(&kernel);

    let answer = identity.lookup_pid(100).unwrap();
    assert_eq!(
        (container_id(&answer), answer.source, answer.exited),
        (Some(ID_A), Source::Ebpf, false)
    );

    // It exits; procfs still shows it (a zombie: the same start tick).
    kernel
        .state()
        .events
        .push_back(event(ProcessChange::Exit, 100, old, "old"));
    host.write_task(100, "old", 5_000, &docker(ID_A));
    let answer = identity.lookup_pid(100).unwrap();
    assert_eq!(
        (container_id(&answer), answer.source, answer.exited),
        (Some(ID_A), Source::Ebpf, true)
    );
    assert_eq!(answer.start_boottime_ns, in_tick(5_000));

    // The PID now names a task that started later (a thread of another process, not in
    // the process index): procfs answers for it, the kernel index has no answer.
    host.write_task(100, "new", 7_000, &docker(ID_B));
    let answer = identity.lookup_pid(100).unwrap();
    assert_eq!(
        (container_id(&answer), answer.source, answer.exited),
        (Some(ID_B), Source::Procfs, false)
    );
    assert_eq!(answer.start_boottime_ns, clock::ticks_to_ns(7_000));
    assert_eq!(&*answer.comm, "new");
    assert!(identity.lookup_pids_in_memory(&[100]).is_none());
    assert_eq!(identity.stats().procfs_fallbacks.load(Ordering::Relaxed), 1);

    // A new process's fork event under the PID: the kernel index answers for it.
    let new = info(in_tick(7_000), b, 0);
    kernel
        .state()
        .events
        .push_back(event(ProcessChange::Fork, 100, new, "new"));
    for answer in [
        identity.lookup_pid(100).unwrap(),
        identity.lookup_pids_in_memory(&[100]).unwrap().remove(0),
    ] {
        assert_eq!(
            (container_id(&answer), answer.source, answer.exited),
            (Some(ID_B), Source::Ebpf, false)
        );
        assert_eq!(answer.start_boottime_ns, in_tick(7_000));
    }
    assert_eq!(identity.process_counts(), (1, 1));
}

#[test]
fn an_exit_during_the_seed_removes_the_seeded_map_entry() {
    let host = FakeHost::new();
    let a = host.mkdir(&docker(ID_A));
    let kernel = Arc::new(FakeKernel::default());
    let short = info(in_tick(6_000), a, FLAG_SEEDED);
    let long = info(in_tick(6_100), a, FLAG_SEEDED);
    {
        let mut state = kernel.state();
        state.tasks.push((200, short, "short".to_owned()));
        state.tasks.push((201, long, "long".to_owned()));
        // 200's exit tracepoint runs while the iterator writes its entry: the tracepoint
        // found no entry, so its event carries a state without FLAG_SEEDED.
        state.events_during_seed.push(event(
            ProcessChange::Exit,
            200,
            ProcessInfo { flags: 0, ..short },
            "short",
        ));
    }
    let identity = host.identity(&kernel);

    {
        let state = kernel.state();
        assert_eq!(state.forgotten, [(200, in_tick(6_000))]);
        assert!(!state.processes.contains_key(&200));
        assert!(state.processes.contains_key(&201));
    }
    assert_eq!(identity.process_counts(), (1, 1));
    let answer = identity.lookup_pid(200).unwrap();
    assert_eq!(
        (container_id(&answer), answer.source, answer.exited),
        (Some(ID_A), Source::Ebpf, true)
    );
    // An exited process's answer may need procfs (is the PID taken?): not in memory.
    assert!(identity.lookup_pids_in_memory(&[200]).is_none());

    // A seeded process's ordinary exit (the tracepoint read and deleted the seeded entry,
    // so the event has FLAG_SEEDED): nothing left to forget.
    kernel
        .state()
        .events
        .push_back(event(ProcessChange::Exit, 201, long, "long"));
    assert!(identity.lookup_pid(201).unwrap().exited);
    assert_eq!(kernel.state().forgotten.len(), 1);
    assert_eq!(identity.process_counts(), (0, 2));
}

#[test]
fn lost_events_are_repaired_by_a_reseed_and_a_cgroup_walk() {
    let host = FakeHost::new();
    let a = host.mkdir(&docker(ID_A));
    let kernel = Arc::new(FakeKernel::default());
    let first = info(in_tick(8_000), a, FLAG_SEEDED);
    kernel.state().tasks.push((300, first, "first".to_owned()));
    let identity = host.identity(&kernel);
    assert_eq!(identity.stats().cgroup_scans.load(Ordering::Relaxed), 1);

    // Events lost: a container's cgroup was created and a process forked into it, and
    // process 300 exited. Only the task iterator knows.
    let c = host.mkdir(&docker(ID_C));
    {
        let mut state = kernel.state();
        state.tasks = vec![(301, info(in_tick(8_500), c, FLAG_SEEDED), "late".to_owned())];
    }
    let unknown = |identity: &Identity| {
        matches!(identity.lookup_inode(c), Err(LookupError::InodeNotFound { inode }) if inode == c)
            && matches!(
                identity.lookup_pid(301),
                Err(LookupError::PidNotFound { pid: 301, .. })
            )
    };
    assert!(unknown(&identity));
    // No loss counted: upkeep repairs nothing.
    identity.upkeep();
    assert!(unknown(&identity));
    assert_eq!(identity.stats().repairs.load(Ordering::Relaxed), 0);
    assert_eq!(kernel.state().seeds, 1);

    kernel.state().counters[counters::EVENTS_LOST as usize] = 3;
    identity.upkeep();
    assert_eq!(identity.stats().repairs.load(Ordering::Relaxed), 1);
    assert_eq!(identity.stats().cgroup_scans.load(Ordering::Relaxed), 2);
    assert_eq!(kernel.state().seeds, 2);
    let cgroup = identity.lookup_inode(c).unwrap();
    assert_eq!(
        cgroup.container.as_deref().map(|c| c.id.as_str()),
        Some(ID_C)
    );
    assert_eq!(&*cgroup.cgroup.path, docker(ID_C));
    let answer = identity.lookup_pid(301).unwrap();
    assert_eq!(
        (container_id(&answer), answer.source, answer.exited),
        (Some(ID_C), Source::Ebpf, false)
    );
    assert!(identity.lookup_pid(300).unwrap().exited);
    assert_eq!(identity.process_counts(), (1, 1));

    // The same count again: no second repair.
    identity.upkeep();
    assert_eq!(identity.stats().repairs.load(Ordering::Relaxed), 1);
    assert_eq!(kernel.state().seeds, 2);
}

#[test]
fn the_seed_is_completed_from_procfs() {
    let host = FakeHost::new();
    let a = host.mkdir(&docker(ID_A));
    host.write_task(1, "init", 2, "/");
    host.write_task(400, "app", 9_000, &docker(ID_A));
    let kernel = Arc::new(FakeKernel::default());
    kernel
        .state()
        .tasks
        .push((400, info(in_tick(9_000), a, FLAG_SEEDED), "app".to_owned()));
    let identity = host.identity(&kernel);

    // PID 1, missing from the iterator's report, comes from procfs into the index and the
    // kernel map; 400 keeps the kernel's exact start time.
    let root = host.mkdir("/");
    let state = kernel.state();
    assert_eq!(
        state.processes.get(&1),
        Some(&info(
            clock::ticks_to_ns(2),
            root,
            FLAG_SEEDED | FLAG_PROCFS
        ))
    );
    assert_eq!(state.processes[&400].start_boottime_ns, in_tick(9_000));
    drop(state);
    let init = identity.lookup_pids_in_memory(&[1]).unwrap().remove(0);
    assert_eq!((container_id(&init), init.exited), (None, false));
    assert_eq!(&*init.cgroup.unwrap().path, "/");
}
