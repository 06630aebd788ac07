//! Collectors for the provider's unit tests: one configurable fake offering every capability,
//! counting its calls.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::{
    CollectorCatalog, CollectorError, CollectorFactory, CollectorRef, CollectorResult, Collectors,
    ContainerIdForInode, ContainerIdForPid, ContainerIdForPodUidAndName, ContainerStats, CpuStats,
    IoCollector, IoStats, MaxAge, NetworkCollector, NetworkStats, OpenFilesCollector,
    PidsCollector, RuntimeMetadata, SelfContainerId, StatsCollector,
};

/// How a fake answers every question.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Know,
    DoNotKnow,
    Fail,
}

/// A collector whose answers all derive from its `id` and `value`:
/// - container ids: `cid-<id>`;
/// - stats: `cpu.total = value`, `io.read_bytes = value`, `io.partial_stall_time = value + 1`;
/// - io: `read_bytes = value * 10`, `partial_stall_time = io_psi`;
/// - network: `bytes_sent = value`; open files: `value`; pids: `[value]`.
pub struct Fake {
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
    pub fn new(id: &'static str, value: u64, mode: Mode) -> Arc<Self> {
        Arc::new(Self::plain(id, value, mode))
    }

    pub fn plain(id: &'static str, value: u64, mode: Mode) -> Self {
        Self {
            id,
            value,
            io_psi: None,
            gate: None,
            mode: Mutex::new(mode),
            calls: AtomicUsize::new(0),
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn calls(&self) -> usize {
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

    fn container_id(&self) -> CollectorResult<String> {
        self.answer(|_| format!("cid-{}", self.id))
    }

    /// Every capability, at `priority`.
    pub fn offer_all(self: &Arc<Self>, priority: u8) -> Collectors {
        Collectors {
            stats: Some(reference(self.clone(), priority, self.id)),
            io: Some(reference(self.clone(), priority, self.id)),
            network: Some(reference(self.clone(), priority, self.id)),
            open_files: Some(reference(self.clone(), priority, self.id)),
            pids: Some(reference(self.clone(), priority, self.id)),
            container_id_for_pid: Some(reference(self.clone(), priority, self.id)),
            container_id_for_inode: Some(reference(self.clone(), priority, self.id)),
            self_container_id: Some(reference(self.clone(), priority, self.id)),
            container_id_for_pod_uid_and_name: Some(reference(self.clone(), priority, self.id)),
        }
    }
}

pub fn reference<T: ?Sized>(collector: Arc<T>, priority: u8, id: &'static str) -> CollectorRef<T> {
    CollectorRef {
        collector,
        priority,
        id,
    }
}

/// The same collectors for each of `runtimes`.
pub fn catalog(runtimes: &[RuntimeMetadata], collectors: &Collectors) -> CollectorCatalog {
    runtimes
        .iter()
        .map(|rt| (*rt, collectors.clone()))
        .collect()
}

/// A factory that succeeds at once with `catalog`.
pub fn ready(id: &'static str, catalog: CollectorCatalog) -> CollectorFactory {
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

impl ContainerIdForPid for Fake {
    fn container_id_for_pid(&self, _: u32, _: MaxAge) -> CollectorResult<String> {
        self.container_id()
    }
}

impl ContainerIdForInode for Fake {
    fn container_id_for_inode(&self, _: u64, _: MaxAge) -> CollectorResult<String> {
        self.container_id()
    }
}

impl SelfContainerId for Fake {
    fn self_container_id(&self) -> CollectorResult<String> {
        self.container_id()
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
        self.container_id()
    }
}

/// Where calls wait until the test opens it.
#[derive(Default)]
pub struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    /// Lets every waiting and later call through.
    pub fn open(&self) {
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
