//! Collectors for the provider's unit tests: one configurable fake offering every capability,
//! counting its calls.
use std::sync::{
    Arc, Condvar, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use super::{
    CgroupIdentity, CollectorCatalog, CollectorError, CollectorFactory, CollectorRef,
    CollectorResult, Collectors, ContainerIdForPodUidAndName, ContainerListing, ContainerStats,
    CpuStats, IoCollector, IoStats, MaxAge, NetworkCollector, NetworkStats, OpenFilesCollector,
    PidsCollector, ProcessIdentity, RuntimeMetadata, StatsCollector,
};
use crate::identity::{
    CgroupAnswer, CgroupRef, ContainerRef, ContainerView, ProcessAnswer, Source,
};

/// How a fake answers every question.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    Know,
    DoNotKnow,
    Fail,
}

/// A collector whose answers all derive from its `id` and `value`:
/// - container ids: `cid-<id>` (processes, cgroups, the listed container, pods);
/// - stats: `cpu.total = value`, `io.read_bytes = value`, `io.partial_stall_time = value + 1`;
/// - io: `read_bytes = value * 10`, `partial_stall_time = io_psi`;
/// - network: `bytes_sent = value`; open files: `value`; pids: `[value]`.
pub(super) struct Fake {
    pub id: &'static str,
    pub value: u64,
    pub io_psi: Option<u64>,
    /// Every call waits here until it is opened (single-flight tests: the fetch stays in
    /// flight until every caller has joined it).
    pub gate: Option<Arc<Gate>>,
    pub mode: Mutex<Mode>,
    pub calls: AtomicUsize,
}

impl Fake {
    pub(super) fn new(id: &'static str, value: u64, mode: Mode) -> Arc<Self> {
        Arc::new(Self::plain(id, value, mode))
    }

    pub(super) fn plain(id: &'static str, value: u64, mode: Mode) -> Self {
        Self {
            id,
            value,
            io_psi: None,
            gate: None,
            mode: Mutex::new(mode),
            calls: AtomicUsize::new(0),
        }
    }

    pub(super) fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub(super) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn answer<T>(&self, make: impl FnOnce(u64) -> T) -> CollectorResult<T> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            gate.pass();
        }
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Know => Ok(Some(make(self.value))),
            Mode::DoNotKnow => Ok(None),
            Mode::Fail => Err(CollectorError::other(format!("{} failed", self.id))),
        }
    }

    fn container_id(&self) -> String {
        format!("cid-{}", self.id)
    }

    /// Every capability, at `priority`.
    pub(super) fn offer_all(self: &Arc<Self>, priority: u8) -> Collectors {
        Collectors {
            stats: Some(reference(self.clone(), priority, self.id)),
            io: Some(reference(self.clone(), priority, self.id)),
            network: Some(reference(self.clone(), priority, self.id)),
            open_files: Some(reference(self.clone(), priority, self.id)),
            pids: Some(reference(self.clone(), priority, self.id)),
            process_identity: Some(reference(self.clone(), priority, self.id)),
            cgroup_identity: Some(reference(self.clone(), priority, self.id)),
            container_listing: Some(reference(self.clone(), priority, self.id)),
            container_id_for_pod_uid_and_name: Some(reference(self.clone(), priority, self.id)),
        }
    }
}

pub(super) fn reference<T: ?Sized>(
    collector: Arc<T>,
    priority: u8,
    id: &'static str,
) -> CollectorRef<T> {
    CollectorRef {
        collector,
        priority,
        id,
    }
}

/// The answer for `pid` in container `container_id` (in none when empty), from procfs,
/// started at `pid` ns.
pub(super) fn process_answer(pid: u32, container_id: &str) -> ProcessAnswer {
    ProcessAnswer {
        pid,
        container: container(container_id),
        cgroup: None,
        exited: false,
        source: Source::Procfs,
        start_boottime_ns: u64::from(pid),
        comm: Arc::from("fake"),
    }
}

fn container(id: &str) -> Option<Arc<ContainerRef>> {
    (!id.is_empty()).then(|| {
        Arc::new(ContainerRef {
            id: id.to_owned(),
            runtime: None,
            pod_uid: None,
        })
    })
}

/// The same collectors for each of `runtimes`.
pub(super) fn catalog(runtimes: &[RuntimeMetadata], collectors: &Collectors) -> CollectorCatalog {
    runtimes
        .iter()
        .map(|rt| (*rt, collectors.clone()))
        .collect()
}

/// A factory that succeeds at once with `catalog`.
pub(super) fn ready(id: &'static str, catalog: CollectorCatalog) -> CollectorFactory {
    CollectorFactory {
        id,
        constructor: Box::new(move || Ok(catalog.clone())),
    }
}

impl StatsCollector for Fake {
    fn container_stats(&self, _: &str, _: &str, _: MaxAge) -> CollectorResult<ContainerStats> {
        self.answer(|v| ContainerStats {
            cpu: Some(CpuStats {
                total: Some(v),
                ..CpuStats::default()
            }),
            io: Some(IoStats {
                read_bytes: Some(v),
                partial_stall_time: Some(v + 1),
                ..IoStats::default()
            }),
            ..ContainerStats::default()
        })
    }
}

impl IoCollector for Fake {
    fn container_io(&self, _: &str, _: &str, _: MaxAge) -> CollectorResult<IoStats> {
        self.answer(|v| IoStats {
            read_bytes: Some(v * 10),
            partial_stall_time: self.io_psi,
            ..IoStats::default()
        })
    }
}

impl NetworkCollector for Fake {
    fn container_network(&self, _: &str, _: &str, _: MaxAge) -> CollectorResult<NetworkStats> {
        self.answer(|v| NetworkStats {
            bytes_sent: Some(v),
            ..NetworkStats::default()
        })
    }
}

impl OpenFilesCollector for Fake {
    fn container_open_files(&self, _: &str, _: &str, _: MaxAge) -> CollectorResult<u64> {
        self.answer(|v| v)
    }
}

impl PidsCollector for Fake {
    fn container_pids(&self, _: &str, _: &str, _: MaxAge) -> CollectorResult<Vec<u32>> {
        self.answer(|v| vec![u32::try_from(v).unwrap()])
    }
}

/// One call per batch.
impl ProcessIdentity for Fake {
    fn processes(&self, pids: &[u32], _: MaxAge) -> Vec<CollectorResult<ProcessAnswer>> {
        match self.answer(|_| ()) {
            Ok(Some(())) => pids
                .iter()
                .map(|&pid| Ok(Some(process_answer(pid, &self.container_id()))))
                .collect(),
            Ok(None) => pids.iter().map(|_| Ok(None)).collect(),
            Err(e) => pids.iter().map(|_| Err(e.clone())).collect(),
        }
    }
}

impl CgroupIdentity for Fake {
    fn cgroup(&self, inode: u64, _: MaxAge) -> CollectorResult<CgroupAnswer> {
        self.answer(|_| CgroupAnswer {
            cgroup: CgroupRef {
                hierarchy_id: 0,
                id: inode,
                path: Arc::from(format!("/{}", self.container_id())),
            },
            container: container(&self.container_id()),
            removed: false,
        })
    }
}

impl ContainerListing for Fake {
    fn containers(&self, _: MaxAge) -> CollectorResult<Vec<ContainerView>> {
        self.answer(|v| {
            vec![ContainerView {
                container: container(&self.container_id()).unwrap(),
                cgroups: Vec::new(),
                pids: vec![u32::try_from(v).unwrap()],
            }]
        })
    }
}

impl ContainerIdForPodUidAndName for Fake {
    fn container_id_for_pod_uid_and_name(
        &self,
        _: &str,
        _: &str,
        _: bool,
        _: MaxAge,
    ) -> CollectorResult<String> {
        self.answer(|_| self.container_id())
    }
}

/// Where calls wait until the test opens it.
#[derive(Default)]
pub(super) struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    /// Lets every waiting and later call through.
    pub(super) fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    fn pass(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
    }
}
