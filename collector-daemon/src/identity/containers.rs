//! Every container the indexes know, with its cgroups and processes: the API's container
//! list (`containers`) and what the stats collectors read (`container_snapshot`,
//! `container_entry`).
use std::{collections::BTreeMap, sync::Arc, time::Instant};

use super::{CgroupKey, CgroupNode, CgroupRef, ContainerRef, Identity, procfs};
use crate::fast_map::FastMap;

/// A container with its cgroups and live processes.
#[derive(Clone, Debug)]
pub struct ContainerView {
    /// The container.
    pub container: Arc<ContainerRef>,
    /// Its top cgroup directories, one per hierarchy, v2 first.
    pub cgroups: Vec<CgroupRef>,
    /// Live processes in it or in its nested cgroups, ascending.
    pub pids: Vec<u32>,
}

/// One cgroup of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupMember {
    /// `(hierarchy id, cgroup id)`.
    pub key: CgroupKey,
    /// Removed, and kept for the grace period.
    pub removed: bool,
}

/// A container as the indexes know it.
#[derive(Clone, Debug)]
pub struct ContainerEntry {
    /// The container.
    pub container: Arc<ContainerRef>,
    /// Its live top directories, one per hierarchy it has one in (v2 first).
    pub roots: Vec<CgroupRef>,
    /// Every cgroup of it in every hierarchy: the roots, nested ones, and removed ones still
    /// in their grace period.
    pub members: Vec<CgroupMember>,
    /// Its live processes, nested cgroups included, when the kernel index is on (`None`
    /// without it: procfs would need a read of every process).
    pub pids: Option<Vec<u32>>,
}

impl ContainerEntry {
    fn new(container: &Arc<ContainerRef>) -> Self {
        Self {
            container: Arc::clone(container),
            roots: Vec::new(),
            members: Vec::new(),
            pids: None,
        }
    }

    /// A container only a runtime API tells of (no cgroup seen here, no processes known).
    pub fn without_cgroups(container: ContainerRef) -> Self {
        Self::new(&Arc::new(container))
    }

    /// Records one cgroup of the container: a member, and a root when it is the container's
    /// live top directory.
    fn add_cgroup(&mut self, key: CgroupKey, node: &CgroupNode) {
        let removed = node.removed_at.is_some();
        self.members.push(CgroupMember { key, removed });
        if node.is_container_root && !removed {
            self.roots.push(CgroupRef {
                hierarchy_id: key.0,
                id: key.1,
                path: Arc::clone(&node.path),
            });
        }
    }

    /// v2 root first, members and PIDs in order.
    fn sort(&mut self) {
        self.roots
            .sort_by_key(|c| (c.hierarchy_id != 0, c.hierarchy_id));
        self.members.sort_unstable_by_key(|m| m.key);
        if let Some(pids) = &mut self.pids {
            pids.sort_unstable();
        }
    }

    /// True when every cgroup of the container is gone (kept for the grace period).
    pub fn is_removed(&self) -> bool {
        self.roots.is_empty()
    }
}

/// Every known container, at one instant.
#[derive(Clone, Debug)]
pub struct ContainerSnapshot {
    /// When it was taken.
    pub taken: Instant,
    /// By container id.
    pub containers: FastMap<String, ContainerEntry>,
}

impl Identity {
    /// Every container with a live cgroup, with its live processes.
    pub fn containers(&self) -> Vec<ContainerView> {
        self.sync();
        let mut views: BTreeMap<String, ContainerView> = BTreeMap::new();
        self.cgroups.for_each_live(|key, node| {
            let Some(container) = &node.container else {
                return;
            };
            let view = views
                .entry(container.id.clone())
                .or_insert_with(|| ContainerView {
                    container: Arc::clone(container),
                    cgroups: Vec::new(),
                    pids: Vec::new(),
                });
            if node.is_container_root {
                view.cgroups.push(CgroupRef {
                    hierarchy_id: key.0,
                    id: key.1,
                    path: Arc::clone(&node.path),
                });
            }
        });
        self.for_each_live_process(|pid, container| {
            if let Some(view) = container.and_then(|c| views.get_mut(&c.id)) {
                view.pids.push(pid);
            }
        });
        let mut out: Vec<ContainerView> = views.into_values().collect();
        for view in &mut out {
            view.pids.sort_unstable();
            view.cgroups
                .sort_by_key(|c| (c.hierarchy_id != 0, c.hierarchy_id));
        }
        out
    }

    /// Calls `f` with every live process and its container: from the kernel index with the
    /// kernel programs, else from a read of every process in procfs.
    fn for_each_live_process(&self, mut f: impl FnMut(u32, Option<Arc<ContainerRef>>)) {
        if self.kernel.is_some() {
            self.processes.for_each_live(|pid, entry| {
                if let Some((container, _)) = self.resolve_kernel_cgroups(&entry.info) {
                    f(pid, container);
                }
            });
        } else if let Ok(pids) = procfs::list_pids(&self.options.proc_root) {
            for pid in pids {
                if let Ok(process) = procfs::read_process(&self.options.proc_root, pid) {
                    f(pid, self.resolve_paths(&process.cgroups).0);
                }
            }
        }
    }

    /// Every container the index knows, in one pass over the cgroup index (and, with the
    /// kernel programs, the process index): what the stats collectors need to find a
    /// container's directories, all its cgroups (nested and recently removed ones included,
    /// whose counters add up into the container) and its processes.
    pub fn container_snapshot(&self) -> ContainerSnapshot {
        self.sync();
        let mut containers: FastMap<String, ContainerEntry> = FastMap::default();
        self.cgroups.for_each(|key, node| {
            if let Some(container) = &node.container {
                // Looked up before inserting: the id is copied once per container, not once
                // per cgroup of it.
                if let Some(entry) = containers.get_mut(&container.id) {
                    entry.add_cgroup(key, node);
                } else {
                    let mut entry = ContainerEntry::new(container);
                    entry.add_cgroup(key, node);
                    containers.insert(container.id.clone(), entry);
                }
            }
        });
        if self.kernel.is_some() {
            for entry in containers.values_mut() {
                entry.pids = Some(Vec::new());
            }
            self.processes.for_each_live(|pid, process| {
                if let Some((Some(container), _)) = self.resolve_kernel_cgroups(&process.info)
                    && let Some(Some(pids)) = containers.get_mut(&container.id).map(|e| &mut e.pids)
                {
                    pids.push(pid);
                }
            });
        }
        for entry in containers.values_mut() {
            entry.sort();
        }
        ContainerSnapshot {
            taken: Instant::now(),
            containers,
        }
    }

    /// One container as `container_snapshot` would show it, from its own cgroups (and one
    /// pass over the processes with the kernel programs): no walk of every cgroup.
    pub fn container_entry(&self, container_id: &str) -> Option<ContainerEntry> {
        self.sync();
        let mut entry: Option<ContainerEntry> = None;
        for key in self.cgroups.keys_of(container_id) {
            let Some(node) = self.cgroups.get(key) else {
                continue;
            };
            if let Some(container) = node.container.as_ref().filter(|c| c.id == container_id) {
                entry
                    .get_or_insert_with(|| ContainerEntry::new(container))
                    .add_cgroup(key, &node);
            }
        }
        let mut entry = entry?;
        if self.kernel.is_some() {
            let mut pids = Vec::new();
            self.processes.for_each_live(|pid, process| {
                if let Some((Some(container), _)) = self.resolve_kernel_cgroups(&process.info)
                    && container.id == container_id
                {
                    pids.push(pid);
                }
            });
            entry.pids = Some(pids);
        }
        entry.sort();
        Some(entry)
    }
}
