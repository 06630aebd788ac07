//! The containers the identity indexes know, shared by the collectors: one snapshot of
//! every container's directories, cgroups and processes, rebuilt when a caller needs one
//! fresher than the last (the caller's staleness tolerance, as everywhere in the provider).
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::identity::{ContainerEntry, ContainerSnapshot, Identity};

/// Snapshots of the identity indexes' containers.
pub struct ContainerDirectory {
    identity: Arc<Identity>,
    /// The last snapshot. The lock is held while one is built, so concurrent callers that
    /// need a fresh one wait for it instead of building their own.
    latest: Mutex<Option<Arc<ContainerSnapshot>>>,
}

impl ContainerDirectory {
    pub fn new(identity: Arc<Identity>) -> Self {
        Self {
            identity,
            latest: Mutex::new(None),
        }
    }

    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// A snapshot no older than `max_age` (`Duration::ZERO`: a new one).
    pub fn snapshot(&self, max_age: Duration) -> Arc<ContainerSnapshot> {
        self.snapshot_and_freshness(max_age).0
    }

    /// The snapshot, and true when it was built for this call.
    fn snapshot_and_freshness(&self, max_age: Duration) -> (Arc<ContainerSnapshot>, bool) {
        let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(snapshot) = latest.as_ref()
            && !max_age.is_zero()
            && snapshot.taken.elapsed() <= max_age
        {
            return (Arc::clone(snapshot), false);
        }
        let fresh = Arc::new(self.identity.container_snapshot());
        *latest = Some(Arc::clone(&fresh));
        (fresh, true)
    }

    /// The container `id`, from a snapshot no older than `max_age`; a container missing
    /// from a reused snapshot (created since) is looked for again in a new one. Without the
    /// kernel programs, a miss walks the cgroup mounts first (at most every 50 ms), so a
    /// request for an unknown id costs a walk: callers asking in a loop are rate-limited.
    pub fn entry(&self, id: &str, max_age: Duration) -> Option<ContainerEntry> {
        let (snapshot, fresh) = self.snapshot_and_freshness(max_age);
        if let Some(entry) = snapshot.containers.get(id) {
            return Some(entry.clone());
        }
        // Without kernel events a container created since the last walk of the cgroup
        // mounts is not in the index yet: walk again before saying it is unknown.
        if !self.identity.refresh_after_miss() && fresh {
            return None;
        }
        self.snapshot(Duration::ZERO).containers.get(id).cloned()
    }
}
