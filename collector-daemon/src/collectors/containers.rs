//! The containers the identity indexes know, shared by the collectors: one snapshot of
//! every container's directories, cgroups and processes. It is rebuilt only when the indexes
//! changed since it was made (their version moved) and the caller wants it fresher than it
//! is: one stats request asks for it several times (once per capability), and a rebuild
//! walks every cgroup and process of the host.
use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use crate::identity::{ContainerEntry, ContainerSnapshot, Identity};

/// Snapshots of the identity indexes' containers.
pub struct ContainerDirectory {
    identity: Arc<Identity>,
    /// The last snapshot and the index version it was built from. The lock is held while
    /// one is built, so concurrent callers that need a fresh one wait for it instead of
    /// building their own.
    latest: Mutex<Option<(u64, Arc<ContainerSnapshot>)>>,
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
        let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        // Read before the build: a change during it makes the next call rebuild.
        let version = self.identity.index_version();
        if let Some((built_from, snapshot)) = latest.as_ref()
            && (*built_from == version
                || (!max_age.is_zero() && snapshot.taken.elapsed() <= max_age))
        {
            return Arc::clone(snapshot);
        }
        let fresh = Arc::new(self.identity.container_snapshot());
        *latest = Some((version, Arc::clone(&fresh)));
        fresh
    }

    /// The container `id`, no older than `max_age`: from the shared snapshot when it is
    /// current or young enough, else read from the index for this container alone. Without
    /// the kernel programs, a miss walks the cgroup mounts first (at most every 50 ms), so a
    /// request for an unknown id costs a walk: callers asking in a loop are rate-limited.
    pub fn entry(&self, id: &str, max_age: Duration) -> Option<ContainerEntry> {
        {
            let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((built_from, snapshot)) = latest.as_ref()
                && (*built_from == self.identity.index_version()
                    || (!max_age.is_zero() && snapshot.taken.elapsed() <= max_age))
                && let Some(entry) = snapshot.containers.get(id)
            {
                return Some(entry.clone());
            }
        }
        if let Some(entry) = self.identity.container_entry(id) {
            return Some(entry);
        }
        // Without kernel events a container created since the last walk of the cgroup
        // mounts is not in the index yet: walk again before saying it is unknown.
        if self.identity.refresh_after_miss() {
            return self.identity.container_entry(id);
        }
        None
    }
}
