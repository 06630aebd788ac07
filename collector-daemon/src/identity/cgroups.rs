//! Index of every cgroup directory of every hierarchy: `(hierarchy id, cgroup id)` → path
//! and container. Seeded by one walk of the cgroup mounts, then kept current by the
//! kernel's `cgroup_mkdir`/`cgroup_rmdir` events (or by re-walks without eBPF).
//!
//! Kernel facts: a cgroup's id is its kernfs node id, which is the inode number of its
//! directory and what `readdir` reports as `d_ino`. Ids are allocated per hierarchy, so the
//! same number can exist in two hierarchies: the key carries the hierarchy id (0 for v2).
use std::{
    collections::HashSet,
    fs,
    os::unix::fs::{DirEntryExt as _, MetadataExt as _},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use dashmap::DashMap;

use super::container_id::{Runtime, container_from_path};
use crate::cgroupfs::{CgroupLayout, Hierarchy};

/// Key of a cgroup: `(hierarchy id, cgroup id)`.
pub type CgroupKey = (u32, u64);

/// A container as its cgroup path tells it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContainerRef {
    /// Container id.
    pub id: String,
    /// Runtime, when the path tells it.
    pub runtime: Option<Runtime>,
    /// Kubernetes pod UID, when the path has one.
    pub pod_uid: Option<String>,
}

/// One cgroup directory.
#[derive(Clone, Debug)]
pub struct CgroupNode {
    /// Path from the hierarchy's root (`/` for the root itself).
    pub path: Arc<str>,
    /// The container this cgroup is, or is nested in.
    pub container: Option<Arc<ContainerRef>>,
    /// True for the container's own top directory (not a sub-cgroup of it).
    pub is_container_root: bool,
    /// When the directory was removed; kept for the exited-process grace period so that
    /// exited processes still resolve.
    pub removed_at: Option<Instant>,
}

/// The index. Cheap to read concurrently.
#[derive(Default)]
pub struct CgroupIndex {
    nodes: DashMap<CgroupKey, CgroupNode>,
    /// Interned containers, so every node of a container shares one `Arc`.
    containers: DashMap<ContainerRef, Arc<ContainerRef>>,
    /// Cgroups seen removed so far: lets periodic work skip passes when nothing went away.
    removals: AtomicU64,
    /// Changes of any node (recorded, removed, forgotten): lets what is derived from the
    /// index be rebuilt only when it changed.
    changes: AtomicU64,
    /// Every node's key by its container's id: one container's cgroups without a walk of
    /// the whole index.
    by_container: DashMap<String, HashSet<CgroupKey>>,
}

/// What a walk found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanSummary {
    /// Directories seen.
    pub cgroups: usize,
    /// Known directories that were gone.
    pub removed: usize,
    /// Directories that could not be read (permissions, removed mid-walk).
    pub errors: usize,
}

impl CgroupIndex {
    /// Records a cgroup (mkdir event or walk). Its container is computed from the path.
    pub fn insert(&self, key: CgroupKey, path: &str) {
        let node = self.node_for(path);
        let added = node.container.clone();
        let old = self.nodes.insert(key, node);
        if let Some(old) = old.and_then(|n| n.container) {
            self.unlink(&old.id, key);
        }
        if let Some(container) = added {
            self.link(&container.id, key);
        }
        self.changes.fetch_add(1, Ordering::Relaxed);
    }

    fn link(&self, container_id: &str, key: CgroupKey) {
        self.by_container
            .entry(container_id.to_owned())
            .or_default()
            .insert(key);
    }

    fn unlink(&self, container_id: &str, key: CgroupKey) {
        if let Some(mut keys) = self.by_container.get_mut(container_id) {
            keys.remove(&key);
        }
        self.by_container
            .remove_if(container_id, |_, keys| keys.is_empty());
    }

    /// The keys of every node of container `id` (nested and removed ones included).
    pub fn keys_of(&self, container_id: &str) -> Vec<CgroupKey> {
        self.by_container
            .get(container_id)
            .map(|keys| keys.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The node of `key`, recorded from `path` first if unknown (a cgroup seen in procfs).
    pub fn get_or_insert(&self, key: CgroupKey, path: &str) -> CgroupNode {
        if let Some(node) = self.nodes.get(&key) {
            return node.value().clone();
        }
        self.nodes
            .entry(key)
            .or_insert_with(|| {
                self.changes.fetch_add(1, Ordering::Relaxed);
                let node = self.node_for(path);
                if let Some(container) = &node.container {
                    self.link(&container.id, key);
                }
                node
            })
            .value()
            .clone()
    }

    fn node_for(&self, path: &str) -> CgroupNode {
        let (container, is_container_root) = match container_from_path(path) {
            Some(found) => {
                let is_root = found.container_path_len == path.trim_end_matches('/').len();
                let container = ContainerRef {
                    id: found.id,
                    runtime: found.runtime,
                    pod_uid: found.pod_uid,
                };
                (Some(self.intern(container)), is_root)
            }
            None => (None, false),
        };
        CgroupNode {
            path: Arc::from(path),
            container,
            is_container_root,
            removed_at: None,
        }
    }

    fn intern(&self, container: ContainerRef) -> Arc<ContainerRef> {
        if let Some(found) = self.containers.get(&container) {
            return Arc::clone(found.value());
        }
        Arc::clone(
            self.containers
                .entry(container.clone())
                .or_insert_with(|| Arc::new(container))
                .value(),
        )
    }

    /// Marks a cgroup removed (rmdir event or walk).
    pub fn mark_removed(&self, key: CgroupKey, now: Instant) {
        if let Some(mut node) = self.nodes.get_mut(&key)
            && node.removed_at.is_none()
        {
            node.removed_at = Some(now);
            self.removals.fetch_add(1, Ordering::Relaxed);
            self.changes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many cgroups were seen removed since the index was made.
    pub fn removals(&self) -> u64 {
        self.removals.load(Ordering::Relaxed)
    }

    /// Grows whenever a node is recorded, removed or forgotten.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// The node of `key`, removed or not.
    pub fn get(&self, key: CgroupKey) -> Option<CgroupNode> {
        self.nodes.get(&key).map(|n| n.value().clone())
    }

    /// Number of live (not removed) cgroups.
    pub fn len(&self) -> usize {
        self.nodes.iter().filter(|n| n.removed_at.is_none()).count()
    }

    /// True when no live cgroup is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with every live node.
    pub fn for_each_live(&self, mut f: impl FnMut(CgroupKey, &CgroupNode)) {
        for entry in &self.nodes {
            if entry.removed_at.is_none() {
                f(*entry.key(), entry.value());
            }
        }
    }

    /// Calls `f` with every node, removed ones (still in their grace period) included.
    pub fn for_each(&self, mut f: impl FnMut(CgroupKey, &CgroupNode)) {
        for entry in &self.nodes {
            f(*entry.key(), entry.value());
        }
    }

    /// Forgets nodes removed more than `grace` ago, and containers no node uses.
    pub fn gc(&self, now: Instant, grace: std::time::Duration) {
        self.nodes.retain(|key, node| {
            let keep = node
                .removed_at
                .is_none_or(|at| now.duration_since(at) <= grace);
            if !keep {
                self.changes.fetch_add(1, Ordering::Relaxed);
                if let Some(container) = &node.container {
                    self.unlink(&container.id, *key);
                }
            }
            keep
        });
        // An interned container is used by the map and by nodes (and by in-flight answers).
        self.containers.retain(|_, c| Arc::strong_count(c) > 1);
    }

    /// Walks every hierarchy of `layout` and brings the index in line with what exists:
    /// every directory found is (re)recorded, known directories not found are marked
    /// removed.
    pub fn scan(&self, layout: &CgroupLayout, now: Instant) -> ScanSummary {
        let mut summary = ScanSummary::default();
        let mut seen: HashSet<CgroupKey> = HashSet::new();
        for hierarchy in &layout.hierarchies {
            self.scan_hierarchy(hierarchy, &mut seen, &mut summary);
        }
        let walked: HashSet<u32> = layout.hierarchies.iter().map(|h| h.id).collect();
        for mut node in self.nodes.iter_mut() {
            if node.removed_at.is_none()
                && walked.contains(&node.key().0)
                && !seen.contains(node.key())
            {
                node.removed_at = Some(now);
                summary.removed += 1;
                self.removals.fetch_add(1, Ordering::Relaxed);
                self.changes.fetch_add(1, Ordering::Relaxed);
            }
        }
        summary
    }

    fn scan_hierarchy(
        &self,
        hierarchy: &Hierarchy,
        seen: &mut HashSet<CgroupKey>,
        summary: &mut ScanSummary,
    ) {
        let Ok(meta) = fs::metadata(&hierarchy.mount_point) else {
            summary.errors += 1;
            return;
        };
        // Paths are recorded from the hierarchy's root, as the kernel's events give them;
        // a mount of a subtree (`root` other than `/`) prefixes its root.
        let root_path = hierarchy.root.to_string_lossy().into_owned();
        let key = (hierarchy.id, meta.ino());
        seen.insert(key);
        self.record_if_changed(key, &root_path);
        summary.cgroups += 1;
        // Iterative walk: cgroup trees can be deep, recursion is not needed.
        let mut stack = vec![(hierarchy.mount_point.clone(), root_path)];
        while let Some((dir, path)) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                summary.errors += 1;
                continue;
            };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let name = entry.file_name();
                let Some(name) = name.to_str() else {
                    // Not UTF-8: no runtime makes such names; the path could not be matched.
                    continue;
                };
                let child = if path.ends_with('/') {
                    format!("{path}{name}")
                } else {
                    format!("{path}/{name}")
                };
                let key = (hierarchy.id, entry.ino());
                seen.insert(key);
                self.record_if_changed(key, &child);
                summary.cgroups += 1;
                stack.push((entry.path(), child));
            }
        }
    }

    fn record_if_changed(&self, key: CgroupKey, path: &str) {
        let unchanged = self
            .nodes
            .get(&key)
            .is_some_and(|n| n.removed_at.is_none() && &*n.path == path);
        if !unchanged {
            self.insert(key, path);
        }
    }
}

/// Inode number of a directory, the cgroup id of a cgroup directory.
pub fn inode_of(path: &Path) -> Option<u64> {
    fs::metadata(path).ok().map(|m| m.ino())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const ID: &str = "3f4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071829";

    #[test]
    fn a_containers_keys_follow_inserts_moves_and_gc() {
        let index = CgroupIndex::default();
        let now = Instant::now();
        index.insert((0, 10), &format!("/system.slice/docker-{ID}.scope"));
        index.insert((0, 11), &format!("/system.slice/docker-{ID}.scope/inner"));
        index.insert((4, 10), &format!("/docker/{ID}"));
        index.get_or_insert((7, 12), &format!("/docker/{ID}"));
        index.insert((0, 13), "/user.slice");
        let mut keys = index.keys_of(ID);
        keys.sort_unstable();
        assert_eq!(keys, [(0, 10), (0, 11), (4, 10), (7, 12)]);
        // The same inode recorded again under another path (a reused id) leaves the
        // container.
        index.insert((0, 11), "/user.slice/other");
        let changes = index.changes();
        index.mark_removed((0, 10), now);
        assert!(index.changes() > changes);
        let mut keys = index.keys_of(ID);
        keys.sort_unstable();
        assert_eq!(
            keys,
            [(0, 10), (4, 10), (7, 12)],
            "removed nodes stay for the grace"
        );
        index.gc(now + Duration::from_mins(2), Duration::from_mins(1));
        let mut keys = index.keys_of(ID);
        keys.sort_unstable();
        assert_eq!(keys, [(4, 10), (7, 12)]);
        assert!(index.keys_of("no-such-container").is_empty());
    }

    #[test]
    fn nested_cgroups_share_their_container() {
        let index = CgroupIndex::default();
        index.insert((0, 10), &format!("/system.slice/docker-{ID}.scope"));
        index.insert(
            (0, 11),
            &format!("/system.slice/docker-{ID}.scope/init/sub"),
        );
        index.insert((0, 12), "/system.slice/sshd.service");
        let root = index.get((0, 10)).unwrap();
        let nested = index.get((0, 11)).unwrap();
        assert!(root.is_container_root);
        assert!(!nested.is_container_root);
        let container = root.container.unwrap();
        assert_eq!(container.id, ID);
        assert_eq!(container.runtime, Some(Runtime::Docker));
        assert!(Arc::ptr_eq(&container, &nested.container.unwrap()));
        assert!(index.get((0, 12)).unwrap().container.is_none());
        // Same id in another hierarchy is another cgroup.
        assert!(index.get((4, 10)).is_none());
    }

    #[test]
    fn removed_cgroups_stay_for_the_grace_period() {
        let index = CgroupIndex::default();
        let t0 = Instant::now();
        index.insert((0, 10), &format!("/docker/{ID}"));
        index.mark_removed((0, 10), t0);
        assert_eq!(index.len(), 0);
        index.gc(t0 + Duration::from_secs(5), Duration::from_secs(10));
        assert!(index.get((0, 10)).is_some_and(|n| n.removed_at == Some(t0)));
        index.gc(t0 + Duration::from_secs(11), Duration::from_secs(10));
        assert!(index.get((0, 10)).is_none());
        assert!(index.containers.is_empty());
    }

    #[test]
    fn scan_walks_a_tree_and_marks_vanished_directories() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        fs::create_dir_all(base.join(format!("docker/{ID}/sub"))).unwrap();
        fs::create_dir_all(base.join("system.slice")).unwrap();
        let layout = CgroupLayout {
            mode: crate::cgroupfs::CgroupMode::V2,
            hierarchies: vec![Hierarchy {
                id: 0,
                kind: crate::cgroupfs::HierarchyKind::V2,
                mount_point: base.to_owned(),
                root: "/".into(),
            }],
        };
        let index = CgroupIndex::default();
        let now = Instant::now();
        let summary = index.scan(&layout, now);
        assert_eq!(summary.cgroups, 5);
        assert_eq!(summary.removed, 0);
        let sub = inode_of(&base.join(format!("docker/{ID}/sub"))).unwrap();
        let node = index.get((0, sub)).unwrap();
        assert_eq!(&*node.path, format!("/docker/{ID}/sub"));
        assert_eq!(node.container.unwrap().id, ID);
        let root = index.get((0, inode_of(base).unwrap())).unwrap();
        assert_eq!(&*root.path, "/");

        fs::remove_dir(base.join(format!("docker/{ID}/sub"))).unwrap();
        let summary = index.scan(&layout, now);
        assert_eq!(summary.removed, 1);
        assert!(index.get((0, sub)).unwrap().removed_at.is_some());
    }
}
