//! Which directory serves each controller for one cgroup ([`CgroupDirs`]): its v2 directory
//! and, per v1 controller the stats reader uses, the directory in the hierarchy that has the
//! controller, from `/proc/<pid>/cgroup` style (hierarchy id, path) pairs and the mounts.
//! The directories also carry their keys in a kernel cgroup walk ([`KernelCgroupValues`]),
//! so a read can take their values from the walk.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use super::{
    kernel_values::{DirKey, KernelCgroupValues, V1Values, V2Values},
    mounts::{CgroupLayout, HierarchyKind, parse_proc_cgroup},
};

/// The v1 controllers whose files are read.
pub const V1_CONTROLLERS: [&str; 6] = ["blkio", "cpu", "cpuacct", "cpuset", "memory", "pids"];

/// Which directory serves each controller for one cgroup, e.g. built from a container's root
/// cgroup.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupDirs {
    /// The cgroup's directory in the v2 (unified) hierarchy.
    pub v2: Option<PathBuf>,
    /// Per v1 controller (`cpu`, `cpuacct`, `cpuset`, `memory`, `blkio`, `pids`), its directory;
    /// co-mounted controllers (`cpu,cpuacct`) share one.
    pub v1: BTreeMap<String, PathBuf>,
    /// The keys of the v1 directories whose values a kernel cgroup walk may give (see
    /// [`Self::with_dir_keys`]).
    pub v1_keys: V1DirKeys,
    /// The key of the v2 directory in a kernel walk of the v2 hierarchy (see
    /// [`Self::with_dir_keys`]).
    pub v2_key: Option<DirKey>,
}

/// The keys in a kernel cgroup walk ([`KernelCgroupValues`]) of a cgroup's v1 directories of
/// `memory`, `cpu`, `pids` and `cpuset`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V1DirKeys {
    pub memory: Option<DirKey>,
    pub cpu: Option<DirKey>,
    pub pids: Option<DirKey>,
    pub cpuset: Option<DirKey>,
}

impl V1DirKeys {
    /// What `walk` has for these directories, each controller from its own directory's
    /// record.
    pub(super) fn values_in(&self, walk: &KernelCgroupValues) -> V1Values {
        let of = |key: Option<DirKey>| key.and_then(|k| walk.get(k));
        V1Values {
            memory: of(self.memory).and_then(|v| v.memory),
            cpu: of(self.cpu).and_then(|v| v.cpu),
            pids: of(self.pids).and_then(|v| v.pids),
            effective_cpus: of(self.cpuset).and_then(|v| v.effective_cpus),
        }
    }
}

/// What `walk` has for the v2 directory whose key is `key`.
pub(super) fn v2_values_in(key: Option<DirKey>, walk: &KernelCgroupValues) -> V2Values {
    key.and_then(|k| walk.get_v2(k).copied())
        .unwrap_or_default()
}

impl CgroupDirs {
    /// From (hierarchy id, path from that hierarchy's root) pairs, as `/proc/<pid>/cgroup` gives
    /// them (hierarchy 0 = v2). Pairs whose hierarchy is not mounted, or whose path the mount
    /// cannot reach, are skipped.
    #[must_use]
    pub fn from_paths(layout: &CgroupLayout, paths: &[(u32, &str)]) -> Self {
        let mut dirs = Self::default();
        for &(id, path) in paths {
            let (Some(hierarchy), Some(dir)) = (layout.by_id(id), layout.cgroup_dir(id, path))
            else {
                continue;
            };
            match &hierarchy.kind {
                HierarchyKind::V2 => dirs.v2 = Some(dir),
                HierarchyKind::V1 { controllers, .. } => {
                    for c in controllers {
                        if V1_CONTROLLERS.contains(&c.as_str()) {
                            dirs.v1.insert(c.clone(), dir.clone());
                        }
                    }
                }
            }
        }
        dirs
    }

    /// From a `/proc/<pid>/cgroup` text.
    #[must_use]
    pub fn from_proc_cgroup(layout: &CgroupLayout, text: &str) -> Self {
        let lines = parse_proc_cgroup(text);
        let paths: Vec<(u32, &str)> = lines
            .iter()
            .map(|l| (l.hierarchy_id, l.path.as_str()))
            .collect();
        Self::from_paths(layout, &paths)
    }

    /// Adds the keys under which a kernel cgroup walk ([`KernelCgroupValues`]) has the v1
    /// directories of `memory`, `cpu`, `pids` and `cpuset`, and, when `v2` (the walk
    /// includes the v2 hierarchy), the v2 directory (one `stat` each; a directory that cannot
    /// be stat'ed has none and is read from its files).
    #[must_use]
    pub fn with_dir_keys(mut self, v2: bool) -> Self {
        if v2 {
            self.v2_key = self.v2.as_deref().and_then(DirKey::of);
        }
        let key = |controller: &str| self.v1.get(controller).and_then(|d| DirKey::of(d));
        self.v1_keys = V1DirKeys {
            memory: key("memory"),
            cpu: key("cpu"),
            pids: key("pids"),
            cpuset: key("cpuset"),
        };
        self
    }

    /// Every directory, v2 first (co-mounted v1 controllers appear once per controller).
    pub fn all(&self) -> impl Iterator<Item = &Path> {
        self.v2.iter().chain(self.v1.values()).map(PathBuf::as_path)
    }
}

#[cfg(test)]
mod tests {
    use super::{
        super::reader::testing::{fixture, fixtures},
        *,
    };

    #[test]
    fn dirs_from_proc_cgroup() {
        let (layout, _) = fixture("hybrid");
        let dirs = CgroupDirs::from_proc_cgroup(
            &layout,
            "9:name=systemd:/docker/x\n6:freezer:/docker/x\n4:memory:/docker/x\n2:cpuacct:/docker/x\n0::/docker/x\n",
        );
        let root = fixtures().join("hybrid");
        assert_eq!(dirs.v2, Some(root.join("unified/docker/x")));
        assert_eq!(
            dirs.v1.keys().map(String::as_str).collect::<Vec<_>>(),
            ["cpuacct", "memory"]
        );
        assert_eq!(dirs.v1["memory"], root.join("memory/docker/x"));

        // Co-mounted controllers share their directory.
        let (layout, _) = fixture("v1");
        let dirs = CgroupDirs::from_paths(&layout, &[(2, "/docker/y"), (5, "/not/mounted")]);
        assert_eq!(dirs.v2, None);
        assert_eq!(dirs.v1["cpu"], dirs.v1["cpuacct"]);
        assert_eq!(dirs.v1["cpu"], fixtures().join("v1/cpu,cpuacct/docker/y"));
        assert_eq!(dirs.v1.len(), 2);
    }
}
