//! The meta collector (`datadog-provider-study.md` §2.3): the four identity capabilities
//! (container id for a PID, for a cgroup inode, of the daemon itself, for a pod UID and
//! container name) asked of every collector, whatever its runtime.
//!
//! Kept from the seed: the references come from all runtimes, one per collector (the seed
//! de-duplicates the same wrapper registered for several runtimes), best priority first; the
//! first collector that knows answers.
//!
//! Fixed (study §2.3, §6): the seed returns the first error and never asks lower-priority
//! collectors, so a PID that `system` fails on (its `/proc/<pid>/cgroup` is gone) is never
//! looked up in docker or containerd. Here an error, like "does not know", moves on to the
//! next collector; only if none knows is the last error returned. Ties break by collector id,
//! where the seed's unstable sort leaves them random. An empty id counts as "does not know"
//! (the seed's `""`).
use std::sync::Arc;

use super::registry::CollectorChains;
use super::{ChainResult, CollectorResult, MaxAge, first_known};

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

    /// The container `pid` runs in (the seed's `GetContainerIDForPID`).
    pub fn container_id_for_pid(&self, pid: u32, max_age: MaxAge) -> ChainResult<String> {
        first_known(&self.chains.container_id_for_pid, |c| {
            non_empty(c.container_id_for_pid(pid, max_age))
        })
    }

    /// The container whose cgroup directory has this inode (the seed's
    /// `GetContainerIDForInode`).
    pub fn container_id_for_inode(&self, inode: u64, max_age: MaxAge) -> ChainResult<String> {
        first_known(&self.chains.container_id_for_inode, |c| {
            non_empty(c.container_id_for_inode(inode, max_age))
        })
    }

    /// The container the daemon runs in (the seed's `GetSelfContainerID`).
    pub fn self_container_id(&self) -> ChainResult<String> {
        first_known(&self.chains.self_container_id, |c| {
            non_empty(c.self_container_id())
        })
    }

    /// The container named `container_name` in pod `pod_uid` (the seed's
    /// `ContainerIDForPodUIDAndContName`).
    pub fn container_id_for_pod_uid_and_name(
        &self,
        pod_uid: &str,
        container_name: &str,
        init_container: bool,
        max_age: MaxAge,
    ) -> ChainResult<String> {
        first_known(&self.chains.container_id_for_pod_uid_and_name, |c| {
            non_empty(c.container_id_for_pod_uid_and_name(
                pod_uid,
                container_name,
                init_container,
                max_age,
            ))
        })
    }
}

fn non_empty(result: CollectorResult<String>) -> CollectorResult<String> {
    result.map(|id| id.filter(|id| !id.is_empty()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::provider::registry::Catalog;
    use crate::provider::testing::{Fake, Mode, catalog, reference};
    use crate::provider::{
        Answer, ChainError, CollectorError, Collectors, ContainerIdForPid, Flavor, Runtime,
        RuntimeMetadata,
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

    #[test]
    fn best_priority_answers_first() {
        let system = Fake::new("system", 0, Mode::Know);
        let docker = Fake::new("docker", 0, Mode::Know);
        let meta = meta(&[(&docker, 1), (&system, 0)]);
        assert_eq!(meta.container_id_for_pid(1, SECOND), answer("system"));
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
        assert_eq!(
            meta.container_id_for_pod_uid_and_name("uid", "app", false, SECOND),
            answer("docker")
        );
        assert_eq!(
            (system.calls(), containerd.calls(), docker.calls()),
            (3, 3, 3)
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
    }

    #[test]
    fn returns_none_when_nobody_knows_and_nobody_failed() {
        let system = Fake::new("system", 0, Mode::DoNotKnow);
        let docker = Fake::new("docker", 0, Mode::DoNotKnow);
        let meta = meta(&[(&system, 0), (&docker, 1)]);
        assert_eq!(meta.container_id_for_inode(9, SECOND), Ok(None));
        assert_eq!(meta.self_container_id(), Ok(None));
    }

    #[test]
    fn no_collectors_means_none() {
        let meta = MetaCollector::new(Arc::default());
        assert_eq!(meta.container_id_for_pid(1, SECOND), Ok(None));
    }

    #[test]
    fn a_collector_serving_many_runtimes_is_asked_once() {
        let system = Fake::new("system", 0, Mode::DoNotKnow);
        let meta = meta(&[(&system, 0)]);
        assert_eq!(meta.container_id_for_pid(1, SECOND), Ok(None));
        assert_eq!(system.calls(), 1);
    }

    #[test]
    fn an_empty_id_does_not_answer() {
        struct Empty;
        impl ContainerIdForPid for Empty {
            fn container_id_for_pid(&self, _: u32, _: MaxAge) -> CollectorResult<String> {
                Ok(Some(String::new()))
            }
        }
        let docker = Fake::new("docker", 0, Mode::Know);
        let empty = Collectors {
            container_id_for_pid: Some(reference(Arc::new(Empty), 0, "empty")),
            ..Collectors::default()
        };
        let catalogs = [
            catalog(&[DOCKER], &empty),
            catalog(&[DOCKER], &docker.offer_all(1)),
        ];
        let meta = MetaCollector::new(Arc::clone(&Catalog::build(&catalogs).any));
        assert_eq!(meta.container_id_for_pid(1, SECOND), answer("docker"));
    }
}
