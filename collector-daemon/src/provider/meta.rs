//! The meta collector: the identity questions asked of
//! every collector, whatever its runtime. Full answers: a PID's process (one or a batch), a
//! cgroup inode's cgroup, the list of containers. Id-only answers derived from them, as
//! Datadog's meta collector gives: the container of a PID, of an inode, of the daemon
//! itself; and the container of a pod UID and container name, from its own chain.
//!
//! As in Datadog's: the references come from all runtimes, one per collector (a collector
//! registered for several runtimes is asked once), best priority first; the first collector
//! that knows answers.
//!
//! Unlike Datadog's, which returns the first error and never asks lower-priority collectors,
//! an error here, like "does not know", moves on to the next collector; only if none knows is
//! the last error returned. Ties break by collector id, not at random. An
//! empty container id counts as "does not know".
use std::sync::Arc;

use super::{
    Answer, ChainError, ChainResult, CollectorError, CollectorRef, CollectorResult, MaxAge,
    ProcessIdentity, first_known, registry::CollectorChains,
};
use crate::identity::{CgroupAnswer, ContainerRef, ContainerView, ProcessAnswer};

/// Asks the identity chains in order. A snapshot of the catalog: get a new one from
/// `Provider::meta` rather than keeping it, so collectors that appear later are used.
#[derive(Clone, Debug)]
pub struct MetaCollector {
    chains: Arc<CollectorChains>,
}

impl MetaCollector {
    /// Over `chains`, normally the catalog's `any` chains (every runtime).
    pub fn new(chains: Arc<CollectorChains>) -> Self {
        Self { chains }
    }

    /// The chains this collector walks: an empty one means no collector offers that
    /// capability (yet: collectors are registered asynchronously).
    pub fn chains(&self) -> &CollectorChains {
        &self.chains
    }

    /// The process `pid`: its container, cgroup, start time and command.
    pub fn process(&self, pid: u32, max_age: MaxAge) -> ChainResult<ProcessAnswer> {
        first_known(&self.chains.process_identity, |c| c.process(pid, max_age))
    }

    /// The answers for `pids` when the first collector of the chain has them all in memory
    /// (see [`ProcessIdentity::processes_in_memory`]): the answers [`Self::processes`] would
    /// give, found without a file read or a wait. `None` otherwise.
    pub fn processes_in_memory(&self, pids: &[u32]) -> Option<Vec<Answer<ProcessAnswer>>> {
        let first = self.chains.process_identity.first()?;
        let answers = first.collector.processes_in_memory(pids)?;
        (answers.len() == pids.len()).then(|| {
            answers
                .into_iter()
                .map(|value| Answer {
                    value,
                    source: first.id,
                })
                .collect()
        })
    }

    /// The processes `pids`, answers in order. The first collector is asked for all of them
    /// in one batch, each next one only for those no collector before it knew (or that
    /// failed); per PID, the result is as [`Self::process`] would give.
    pub fn processes(&self, pids: &[u32], max_age: MaxAge) -> Vec<ChainResult<ProcessAnswer>> {
        let mut chain = self.chains.process_identity.iter();
        let Some(first) = chain.next() else {
            return pids.iter().map(|_| Ok(None)).collect();
        };
        let mut results: Vec<ChainResult<ProcessAnswer>> = batch(first, pids, max_age)
            .into_iter()
            .map(|answer| in_chain(first, answer))
            .collect();
        for link in chain {
            let pending: Vec<usize> = (0..results.len())
                .filter(|&i| !matches!(results[i], Ok(Some(_))))
                .collect();
            if pending.is_empty() {
                break;
            }
            tracing::debug!(
                collector = link.id,
                pids = pending.len(),
                "asking the next collector for the pids not known yet"
            );
            let asked: Vec<u32> = pending.iter().map(|&i| pids[i]).collect();
            for (i, answer) in pending.into_iter().zip(batch(link, &asked, max_age)) {
                match in_chain(link, answer) {
                    // Keeps an earlier collector's error, as `first_known` does.
                    Ok(None) => {}
                    result => results[i] = result,
                }
            }
        }
        results
    }

    /// The cgroup directory with this inode, in any hierarchy, and its container.
    pub fn cgroup(&self, inode: u64, max_age: MaxAge) -> ChainResult<CgroupAnswer> {
        first_known(&self.chains.cgroup_identity, |c| c.cgroup(inode, max_age))
    }

    /// Every container with a live cgroup, with its cgroups and live processes.
    pub fn containers(&self, max_age: MaxAge) -> ChainResult<Vec<ContainerView>> {
        first_known(&self.chains.container_listing, |c| c.containers(max_age))
    }

    /// The container `pid` runs in (Datadog's `GetContainerIDForPID`); `Ok(None)` when it
    /// runs in none.
    pub fn container_id_for_pid(&self, pid: u32, max_age: MaxAge) -> ChainResult<String> {
        container_id(self.process(pid, max_age), |a| a.container.as_deref())
    }

    /// The container whose cgroup directory has this inode (Datadog's
    /// `GetContainerIDForInode`); `Ok(None)` when the cgroup is in none.
    pub fn container_id_for_inode(&self, inode: u64, max_age: MaxAge) -> ChainResult<String> {
        container_id(self.cgroup(inode, max_age), |a| a.container.as_deref())
    }

    /// The container the daemon runs in (Datadog's `GetSelfContainerID`); `Ok(None)` when it
    /// runs in none.
    pub fn self_container_id(&self) -> ChainResult<String> {
        self.container_id_for_pid(std::process::id(), MaxAge::ZERO)
    }

    /// The container named `container_name` in pod `pod_uid` (Datadog's
    /// `ContainerIDForPodUIDAndContName`).
    pub fn container_id_for_pod_uid_and_name(
        &self,
        pod_uid: &str,
        container_name: &str,
        init_container: bool,
        max_age: MaxAge,
    ) -> ChainResult<String> {
        first_known(&self.chains.container_id_for_pod_uid_and_name, |c| {
            c.container_id_for_pod_uid_and_name(pod_uid, container_name, init_container, max_age)
                .map(|id| id.filter(|id| !id.is_empty()))
        })
    }
}

/// `link`'s answers for `pids`, exactly one per PID: a collector answering fewer fails the
/// missing ones, and extra answers are dropped.
fn batch(
    link: &CollectorRef<dyn ProcessIdentity>,
    pids: &[u32],
    max_age: MaxAge,
) -> Vec<CollectorResult<ProcessAnswer>> {
    let mut answers = link.collector.processes(pids, max_age);
    if answers.len() != pids.len() {
        let (asked, answered) = (pids.len(), answers.len());
        tracing::warn!(
            collector = link.id,
            asked,
            answered,
            "a collector answered a batch of pids with the wrong count"
        );
        answers.resize_with(asked, || {
            Err(CollectorError::other(format!(
                "{answered} answers to a batch of {asked} pids"
            )))
        });
    }
    answers
}

/// One collector's answer as a chain's result.
fn in_chain<C: ?Sized, T>(link: &CollectorRef<C>, answer: CollectorResult<T>) -> ChainResult<T> {
    match answer {
        Ok(value) => Ok(value.map(|value| Answer {
            value,
            source: link.id,
        })),
        Err(error) => Err(ChainError {
            collector: link.id,
            error,
        }),
    }
}

/// The container id of a full answer; `None` when the answer names no container (or an
/// empty id).
fn container_id<T>(
    result: ChainResult<T>,
    container: impl FnOnce(&T) -> Option<&ContainerRef>,
) -> ChainResult<String> {
    Ok(result?.and_then(|Answer { value, source }| {
        let id = container(&value)?.id.clone();
        (!id.is_empty()).then_some(Answer { value: id, source })
    }))
}

#[cfg(test)]
mod tests {
    use std::{sync::Mutex, time::Duration};

    use super::*;
    use crate::{
        identity::{LookupError, Source},
        provider::{
            Collectors, Flavor, Runtime, RuntimeMetadata,
            registry::Catalog,
            testing::{Fake, Mode, catalog, process_answer, reference},
        },
    };

    const SECOND: Duration = Duration::from_secs(1);
    const DOCKER: RuntimeMetadata = RuntimeMetadata {
        runtime: Runtime::Docker,
        flavor: Flavor::Default,
    };
    const CONTAINERD: RuntimeMetadata = RuntimeMetadata {
        runtime: Runtime::Containerd,
        flavor: Flavor::Default,
    };

    /// A meta collector over `fakes`, each at its priority, all serving docker and
    /// containerd.
    fn meta(fakes: &[(&Arc<Fake>, u8)]) -> MetaCollector {
        let catalogs: Vec<_> = fakes
            .iter()
            .map(|(fake, priority)| catalog(&[DOCKER, CONTAINERD], &fake.offer_all(*priority)))
            .collect();
        MetaCollector::new(Arc::clone(&Catalog::build(&catalogs).any))
    }

    #[expect(clippy::unnecessary_wraps, reason = "compared with what chains return")]
    fn answer(source: &'static str) -> ChainResult<String> {
        Ok(Some(Answer {
            value: format!("cid-{source}"),
            source,
        }))
    }

    /// Who answered a process lookup, and the container it names: `Err(collector)` for a
    /// failure, `Ok(None)` when nobody knew.
    fn who(result: &ChainResult<ProcessAnswer>) -> Result<Option<(&'static str, String)>, &str> {
        match result {
            Ok(Some(a)) => Ok(Some((
                a.source,
                a.value.container.as_ref().map(|c| c.id.clone()).unwrap(),
            ))),
            Ok(None) => Ok(None),
            Err(e) => Err(e.collector),
        }
    }

    #[test]
    fn best_priority_answers_first() {
        let system = Fake::new("system", 0, Mode::Know);
        let docker = Fake::new("docker", 0, Mode::Know);
        let meta = meta(&[(&docker, 1), (&system, 0)]);
        assert_eq!(meta.container_id_for_pid(1, SECOND), answer("system"));
        assert_eq!(
            who(&meta.process(1, SECOND)),
            Ok(Some(("system", "cid-system".to_owned())))
        );
        assert_eq!(docker.calls(), 0);
    }

    #[test]
    fn equal_priorities_break_by_collector_id() {
        let b = Fake::new("b-collector", 0, Mode::Know);
        let a = Fake::new("a-collector", 0, Mode::Know);
        assert_eq!(
            meta(&[(&b, 1), (&a, 1)]).container_id_for_inode(7, SECOND),
            answer("a-collector")
        );
        assert_eq!(
            meta(&[(&a, 1), (&b, 1)]).container_id_for_inode(7, SECOND),
            answer("a-collector")
        );
    }

    #[test]
    fn goes_on_past_errors_and_unknowns() {
        let system = Fake::new("system", 0, Mode::Fail);
        let containerd = Fake::new("containerd", 0, Mode::DoNotKnow);
        let docker = Fake::new("docker", 0, Mode::Know);
        let meta = meta(&[(&system, 0), (&containerd, 1), (&docker, 2)]);
        assert_eq!(meta.container_id_for_pid(1, SECOND), answer("docker"));
        assert_eq!(meta.self_container_id(), answer("docker"));
        assert_eq!(meta.container_id_for_inode(1, SECOND), answer("docker"));
        assert_eq!(
            meta.container_id_for_pod_uid_and_name("uid", "app", false, SECOND),
            answer("docker")
        );
        let listed = meta.containers(SECOND).unwrap().unwrap();
        assert_eq!(listed.source, "docker");
        assert_eq!(listed.value[0].container.id, "cid-docker");
        assert_eq!(
            (system.calls(), containerd.calls(), docker.calls()),
            (5, 5, 5)
        );
    }

    #[test]
    fn returns_the_last_error_when_nobody_knows() {
        let system = Fake::new("system", 0, Mode::Fail);
        let docker = Fake::new("docker", 0, Mode::Fail);
        let kubelet = Fake::new("kubelet", 0, Mode::DoNotKnow);
        let meta = meta(&[(&system, 0), (&docker, 1), (&kubelet, 2)]);
        assert_eq!(
            meta.container_id_for_pid(1, SECOND),
            Err(ChainError {
                collector: "docker",
                error: CollectorError::other("docker failed"),
            })
        );
        assert_eq!(who(&meta.processes(&[1], SECOND)[0]), Err("docker"));
    }

    #[test]
    fn returns_none_when_nobody_knows_and_nobody_failed() {
        let system = Fake::new("system", 0, Mode::DoNotKnow);
        let docker = Fake::new("docker", 0, Mode::DoNotKnow);
        let meta = meta(&[(&system, 0), (&docker, 1)]);
        assert_eq!(meta.container_id_for_inode(9, SECOND), Ok(None));
        assert_eq!(meta.self_container_id(), Ok(None));
        assert!(matches!(meta.cgroup(9, SECOND), Ok(None)));
        assert!(matches!(meta.containers(SECOND), Ok(None)));
    }

    #[test]
    fn no_collectors_means_none_and_empty_chains() {
        let meta = MetaCollector::new(Arc::default());
        assert_eq!(meta.container_id_for_pid(1, SECOND), Ok(None));
        let batch = meta.processes(&[1, 2], SECOND);
        assert_eq!(batch.len(), 2);
        assert!(batch.iter().all(|r| matches!(r, Ok(None))));
        assert!(meta.chains().process_identity.is_empty());
        assert!(meta.chains().cgroup_identity.is_empty());
        assert!(meta.chains().container_listing.is_empty());
    }

    #[test]
    fn a_collector_serving_many_runtimes_is_asked_once() {
        let system = Fake::new("system", 0, Mode::DoNotKnow);
        let meta = meta(&[(&system, 0)]);
        assert_eq!(meta.container_id_for_pid(1, SECOND), Ok(None));
        assert_eq!(system.calls(), 1);
    }

    #[test]
    fn a_process_in_no_container_is_an_answer_without_an_id() {
        struct Host;
        impl ProcessIdentity for Host {
            fn processes(&self, pids: &[u32], _: MaxAge) -> Vec<CollectorResult<ProcessAnswer>> {
                pids.iter()
                    .map(|&pid| {
                        let mut answer = process_answer(pid, "");
                        answer.container = None;
                        Ok(Some(answer))
                    })
                    .collect()
            }
        }
        let docker = Fake::new("docker", 0, Mode::Know);
        let host = Collectors {
            process_identity: Some(reference(Arc::new(Host), 0, "host")),
            ..Collectors::default()
        };
        let catalogs = [
            catalog(&[DOCKER], &host),
            catalog(&[DOCKER], &docker.offer_all(1)),
        ];
        let meta = MetaCollector::new(Arc::clone(&Catalog::build(&catalogs).any));
        let answer = meta.process(1, SECOND).unwrap().unwrap();
        assert_eq!((answer.source, answer.value.container), ("host", None));
        assert_eq!(meta.container_id_for_pid(1, SECOND), Ok(None));
        assert_eq!(docker.calls(), 0);
    }

    #[test]
    fn in_memory_answers_come_from_the_first_collector_only_when_it_has_them_all() {
        /// Knows even PIDs in memory; every PID through `processes`.
        struct Index;
        impl ProcessIdentity for Index {
            fn processes(&self, pids: &[u32], _: MaxAge) -> Vec<CollectorResult<ProcessAnswer>> {
                pids.iter()
                    .map(|&pid| Ok(Some(process_answer(pid, "index"))))
                    .collect()
            }
            fn processes_in_memory(&self, pids: &[u32]) -> Option<Vec<ProcessAnswer>> {
                pids.iter()
                    .map(|&pid| (pid % 2 == 0).then(|| process_answer(pid, "index")))
                    .collect()
            }
        }
        let index = Collectors {
            process_identity: Some(reference(Arc::new(Index), 0, "index")),
            ..Collectors::default()
        };
        let docker = Fake::new("docker", 0, Mode::Know);
        let catalogs = [
            catalog(&[DOCKER], &index),
            catalog(&[DOCKER], &docker.offer_all(1)),
        ];
        let meta = MetaCollector::new(Arc::clone(&Catalog::build(&catalogs).any));
        let in_memory = meta.processes_in_memory(&[2, 4]).unwrap();
        let through = meta.processes(&[2, 4], SECOND);
        for (fast, slow) in in_memory.iter().zip(through) {
            let slow = slow.unwrap().unwrap();
            let key = |a: &Answer<ProcessAnswer>| {
                let container = a.value.container.as_ref().map(|c| c.id.clone());
                (a.source, a.value.pid, container, a.value.start_boottime_ns)
            };
            assert_eq!(key(fast), key(&slow));
            assert_eq!(fast.source, "index");
        }
        assert!(meta.processes_in_memory(&[2, 3]).is_none());
        // A collector without an in-memory index never answers this way.
        let only_docker = MetaCollector::new(Arc::clone(
            &Catalog::build(&[catalog(&[DOCKER], &docker.offer_all(0))]).any,
        ));
        assert!(only_docker.processes_in_memory(&[2]).is_none());
        assert_eq!(docker.calls(), 0);
    }

    #[test]
    fn an_empty_pod_container_id_does_not_answer() {
        struct Empty;
        impl crate::provider::ContainerIdForPodUidAndName for Empty {
            fn container_id_for_pod_uid_and_name(
                &self,
                _: &str,
                _: &str,
                _: bool,
                _: MaxAge,
            ) -> CollectorResult<String> {
                Ok(Some(String::new()))
            }
        }
        let docker = Fake::new("docker", 0, Mode::Know);
        let empty = Collectors {
            container_id_for_pod_uid_and_name: Some(reference(Arc::new(Empty), 0, "empty")),
            ..Collectors::default()
        };
        let catalogs = [
            catalog(&[DOCKER], &empty),
            catalog(&[DOCKER], &docker.offer_all(1)),
        ];
        let meta = MetaCollector::new(Arc::clone(&Catalog::build(&catalogs).any));
        assert_eq!(
            meta.container_id_for_pod_uid_and_name("uid", "app", false, SECOND),
            answer("docker")
        );
    }

    /// Knows the PIDs `knows` says it knows, fails those it says it fails on, and records
    /// every batch it is asked.
    struct Partial {
        id: &'static str,
        knows: fn(u32) -> Mode,
        asked: Mutex<Vec<Vec<u32>>>,
    }

    impl Partial {
        fn new(id: &'static str, knows: fn(u32) -> Mode) -> Arc<Self> {
            Arc::new(Self {
                id,
                knows,
                asked: Mutex::new(Vec::new()),
            })
        }

        fn asked(&self) -> Vec<Vec<u32>> {
            self.asked.lock().unwrap().clone()
        }
    }

    impl ProcessIdentity for Partial {
        fn processes(&self, pids: &[u32], _: MaxAge) -> Vec<CollectorResult<ProcessAnswer>> {
            self.asked.lock().unwrap().push(pids.to_vec());
            pids.iter()
                .map(|&pid| match (self.knows)(pid) {
                    Mode::Know => Ok(Some(process_answer(pid, &format!("cid-{}-{pid}", self.id)))),
                    Mode::DoNotKnow => Ok(None),
                    Mode::Fail => Err(CollectorError::from(LookupError::PidNotFound {
                        pid,
                        grace_secs: 60,
                    })),
                })
                .collect()
        }
    }

    fn over(partials: &[(&Arc<Partial>, u8)]) -> MetaCollector {
        let catalogs: Vec<_> = partials
            .iter()
            .map(|(p, priority)| {
                let offer = Collectors {
                    process_identity: Some(reference(Arc::clone(*p) as _, *priority, p.id)),
                    ..Collectors::default()
                };
                catalog(&[DOCKER], &offer)
            })
            .collect();
        MetaCollector::new(Arc::clone(&Catalog::build(&catalogs).any))
    }

    #[test]
    fn a_batch_asks_the_next_collector_only_for_what_the_first_did_not_know() {
        // identity knows odd PIDs and fails on multiples of 4; runtime knows multiples of 4.
        let identity = Partial::new("identity", |pid| match pid {
            p if p % 2 == 1 => Mode::Know,
            p if p % 4 == 0 => Mode::Fail,
            _ => Mode::DoNotKnow,
        });
        let runtime = Partial::new("runtime", |pid| {
            if pid % 4 == 0 {
                Mode::Know
            } else {
                Mode::DoNotKnow
            }
        });
        let meta = over(&[(&runtime, 1), (&identity, 0)]);
        let results = meta.processes(&[1, 2, 3, 4, 6, 8], SECOND);
        let id = |source: &'static str, pid: u32| Ok(Some((source, format!("cid-{source}-{pid}"))));
        assert_eq!(
            results.iter().map(who).collect::<Vec<_>>(),
            [
                id("identity", 1),
                Ok(None),
                id("identity", 3),
                id("runtime", 4),
                Ok(None),
                id("runtime", 8),
            ]
        );
        assert_eq!(identity.asked(), [vec![1, 2, 3, 4, 6, 8]]);
        assert_eq!(runtime.asked(), [vec![2, 4, 6, 8]]);
        // The answers carry the whole process, not only its container.
        let first = results[0].as_ref().unwrap().as_ref().unwrap();
        assert_eq!((first.value.pid, first.value.source), (1, Source::Procfs));
    }

    #[test]
    fn a_batch_keeps_the_last_error_of_a_pid_nobody_knows() {
        let identity = Partial::new("identity", |_| Mode::Fail);
        let runtime = Partial::new("runtime", |_| Mode::DoNotKnow);
        let meta = over(&[(&identity, 0), (&runtime, 1)]);
        let results = meta.processes(&[5, 7], SECOND);
        for (result, pid) in results.iter().zip([5, 7]) {
            let error = result.as_ref().unwrap_err();
            assert_eq!(error.collector, "identity");
            assert!(
                matches!(&error.error, CollectorError::Lookup(e)
                    if matches!(**e, LookupError::PidNotFound { pid: p, .. } if p == pid)),
                "{error}"
            );
        }
        // A later error replaces an earlier one.
        let last = Partial::new("zz-last", |_| Mode::Fail);
        let meta = over(&[(&identity, 0), (&runtime, 1), (&last, 2)]);
        assert_eq!(who(&meta.processes(&[5], SECOND)[0]), Err("zz-last"));
    }

    #[test]
    fn a_batch_all_known_by_the_first_collector_asks_no_other() {
        let identity = Partial::new("identity", |_| Mode::Know);
        let runtime = Partial::new("runtime", |_| Mode::Know);
        let meta = over(&[(&identity, 0), (&runtime, 1)]);
        assert_eq!(meta.processes(&[1, 2, 3], SECOND).len(), 3);
        assert!(runtime.asked().is_empty());
        assert!(meta.processes(&[], SECOND).is_empty());
    }

    #[test]
    fn a_batch_answered_with_the_wrong_count_fails_the_missing_pids() {
        struct Short;
        impl ProcessIdentity for Short {
            fn processes(&self, pids: &[u32], _: MaxAge) -> Vec<CollectorResult<ProcessAnswer>> {
                pids.iter()
                    .take(1)
                    .map(|&pid| Ok(Some(process_answer(pid, &format!("cid-short-{pid}")))))
                    .collect()
            }
        }
        let offer = Collectors {
            process_identity: Some(reference(Arc::new(Short), 0, "short")),
            ..Collectors::default()
        };
        let meta = MetaCollector::new(Arc::clone(
            &Catalog::build(&[catalog(&[DOCKER], &offer)]).any,
        ));
        let results = meta.processes(&[1, 2, 3], SECOND);
        assert_eq!(
            results.iter().map(who).collect::<Vec<_>>(),
            [
                Ok(Some(("short", "cid-short-1".to_owned()))),
                Err("short"),
                Err("short"),
            ]
        );
    }
}
