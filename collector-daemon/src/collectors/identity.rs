//! The identity collector (priority 0, every runtime): which container a process or a cgroup
//! inode is in, and the list of containers, from the identity service. It is the provider's
//! only source of these answers, and the API asks for them through the meta collector.
//!
//! The kernel index answers first and procfs second inside `Identity`, not as two collectors:
//! the procfs fallback needs the kernel index's knowledge of exits and PID reuse (an exited
//! process's PID taken by a thread of another process is answered from procfs, for that
//! thread).
//!
//! Every answer is current: a lookup applies the kernel events already queued, so a fork or
//! exit completed before it is reflected. Nothing is cached, and `max_age` is not used.
use std::sync::Arc;

use crate::{
    identity::{CgroupAnswer, ContainerView, Identity, LookupError, ProcessAnswer},
    provider::{
        CgroupIdentity, CollectorError, CollectorResult, ContainerListing, MaxAge, ProcessIdentity,
    },
};

/// The collector's id (the source named in answers).
pub const ID: &str = "identity";

/// The identity service as a collector.
pub struct IdentityCollector {
    identity: Arc<Identity>,
}

impl IdentityCollector {
    pub fn new(identity: Arc<Identity>) -> Self {
        Self { identity }
    }
}

/// A lookup's result as a collector's: every answer is known, every `LookupError` (an
/// unknown PID or inode, unreadable procfs) is kept whole for the API's status and message.
fn collected<T>(result: Result<T, LookupError>) -> CollectorResult<T> {
    result.map(Some).map_err(CollectorError::from)
}

impl ProcessIdentity for IdentityCollector {
    /// The queued kernel events are applied once for the whole batch.
    fn processes(&self, pids: &[u32], _max_age: MaxAge) -> Vec<CollectorResult<ProcessAnswer>> {
        self.identity
            .lookup_pids(pids)
            .into_iter()
            .map(collected)
            .collect()
    }

    fn process(&self, pid: u32, _max_age: MaxAge) -> CollectorResult<ProcessAnswer> {
        collected(self.identity.lookup_pid(pid))
    }

    /// Live processes of the kernel index whose cgroups it knows.
    fn processes_in_memory(&self, pids: &[u32]) -> Option<Vec<ProcessAnswer>> {
        self.identity.lookup_pids_in_memory(pids)
    }
}

impl CgroupIdentity for IdentityCollector {
    /// Without the kernel programs, a miss may wait for a walk of the cgroup mounts.
    fn cgroup(&self, inode: u64, _max_age: MaxAge) -> CollectorResult<CgroupAnswer> {
        collected(self.identity.lookup_inode(inode))
    }
}

impl ContainerListing for IdentityCollector {
    /// Without the kernel programs, reads every `/proc/<pid>/cgroup`.
    fn containers(&self, _max_age: MaxAge) -> CollectorResult<Vec<ContainerView>> {
        Ok(Some(self.identity.containers()))
    }
}

#[cfg(test)]
mod tests {
    use std::{path::Path, time::Duration};

    use super::*;
    use crate::{
        cgroupfs::CgroupLayout,
        collectors::{RuntimeApis, StatsCollectors},
        identity::{IdentityOptions, Source},
        provider::{ALL_LINUX_RUNTIMES, Flavor, RuntimeMetadata},
    };

    /// The identity service over this host's procfs, without the kernel programs.
    fn procfs_identity() -> Arc<Identity> {
        let proc_root = Path::new("/proc");
        let layout = CgroupLayout::discover(proc_root).expect("cgroup mounts");
        Arc::new(Identity::start(
            layout,
            None,
            IdentityOptions {
                proc_root: proc_root.to_owned(),
                exited_grace: Duration::from_mins(1),
            },
        ))
    }

    /// A PID no process has.
    fn unused_pid() -> u32 {
        (1..4_194_304u32)
            .rev()
            .find(|pid| !Path::new(&format!("/proc/{pid}")).exists())
            .expect("a free pid")
    }

    fn lookup_error<T>(result: CollectorResult<T>) -> Arc<LookupError> {
        match result {
            Err(CollectorError::Lookup(e)) => e,
            Err(e) => panic!("not a lookup error: {e}"),
            Ok(_) => panic!("answered"),
        }
    }

    #[test]
    fn answers_are_the_identity_services_with_its_errors() {
        let collector = IdentityCollector::new(procfs_identity());
        let me = std::process::id();
        let answer = collector.process(me, MaxAge::ZERO).unwrap().unwrap();
        assert_eq!((answer.pid, answer.source), (me, Source::Procfs));

        let unused = unused_pid();
        let batch = collector.processes(&[me, unused], MaxAge::ZERO);
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0].as_ref().unwrap().as_ref().unwrap().pid, me);
        let error = lookup_error(batch.into_iter().nth(1).unwrap());
        assert!(
            matches!(*error, LookupError::PidNotFound { pid, .. } if pid == unused),
            "{error}"
        );

        if let Some(cgroup) = &answer.cgroup {
            let found = collector.cgroup(cgroup.id, MaxAge::ZERO).unwrap().unwrap();
            assert_eq!(found.cgroup, *cgroup);
        }
        let error = lookup_error(collector.cgroup(u64::MAX, MaxAge::ZERO));
        assert!(matches!(
            *error,
            LookupError::InodeNotFound { inode: u64::MAX }
        ));
        assert!(collector.containers(MaxAge::ZERO).unwrap().is_some());
    }

    #[test]
    fn is_the_one_identity_collector_of_every_runtime() {
        let identity = procfs_identity();
        let collectors = StatsCollectors::start(
            &identity,
            Path::new("/proc"),
            16,
            Vec::new(),
            RuntimeApis::default(),
        );
        let provider = collectors.provider();
        let meta = provider.meta();
        let chains = meta.chains().describe();
        for capability in ["process_identity", "cgroup_identity", "container_listing"] {
            assert_eq!(chains[capability], [ID], "{capability}");
        }
        for runtime in ALL_LINUX_RUNTIMES {
            let chains = provider
                .collector(RuntimeMetadata::new(runtime, Flavor::Default))
                .expect("collectors serve every runtime");
            assert_eq!(chains.chains().describe()["process_identity"], [ID]);
        }
        let me = std::process::id();
        let answer = meta.process(me, MaxAge::ZERO).unwrap().unwrap();
        assert_eq!((answer.source, answer.value.pid), (ID, me));
        let unknown = meta.process(unused_pid(), MaxAge::ZERO).unwrap_err();
        assert_eq!(unknown.collector, ID);
        assert!(
            matches!(unknown.error, CollectorError::Lookup(_)),
            "{unknown}"
        );
    }
}
