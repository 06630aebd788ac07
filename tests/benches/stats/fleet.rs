//! The containers: test-made cgroups laid out like Docker's cgroupfs driver, one `sleep` in each.

use std::{
    fs,
    hash::RandomState,
    path::{Path, PathBuf},
};

use collector_tests::support::{
    cgroup::{TestCgroup, v1_mount, v2_mount},
    process::{ChildGuard, bench_sleeper, enter_before_exec, random_container_id},
};

use crate::CONTROLLERS;

/// The test containers: one `docker` cgroup below a unique test prefix in v2 and in every v1
/// hierarchy of [`CONTROLLERS`] that is mounted, with one nested cgroup per container id.
/// Fields drop in order: the sleepers are killed before the cgroups are removed (the guard
/// removes the nested directories too).
pub(crate) struct Fleet {
    pub children: Vec<ChildGuard>,
    pub cgroup: TestCgroup,
    pub controllers: Vec<&'static str>,
    pub ids: Vec<String>,
    pub id_seed: RandomState,
}

impl Fleet {
    pub(crate) fn new() -> Self {
        // A controller co-mounted with another (`cpu,cpuacct` on some hosts) has the same
        // directory: create it once.
        let mut mounts: Vec<PathBuf> = Vec::new();
        let controllers: Vec<&'static str> = CONTROLLERS
            .into_iter()
            .filter(|c| match v1_mount(c) {
                Some(mount) if !mounts.contains(&mount) => {
                    mounts.push(mount);
                    true
                }
                _ => false,
            })
            .collect();
        let cgroup = TestCgroup::with_v1("docker", &controllers);
        if controllers.contains(&"cpuset") {
            // A new v1 cpuset has no CPUs and no memory nodes, and no process can join it
            // until both are set: copy the parent's, top down.
            let docker = cgroup.v1_dir("cpuset");
            copy_cpuset(docker.parent().expect("docker/ is below the test prefix"));
            copy_cpuset(docker);
        }
        if controllers.is_empty() {
            // A v2-only host: a container's controllers are those its parents enable in
            // `cgroup.subtree_control`; enable the root's down to `docker/`.
            let docker = cgroup.v2_dir();
            enable_v2_controllers(docker.parent().expect("docker/ is below the test prefix"));
            enable_v2_controllers(docker);
        }
        Self {
            children: Vec::new(),
            cgroup,
            controllers,
            ids: Vec::new(),
            id_seed: RandomState::new(),
        }
    }

    /// Adds containers until there are `total`: a cgroup `docker/<id>` in every hierarchy and
    /// one `sleep` inside from before its exec.
    pub(crate) fn grow(&mut self, total: usize) {
        let docker_dirs: Vec<PathBuf> = self
            .cgroup
            .procs_files()
            .iter()
            .map(|f| {
                f.parent()
                    .expect("cgroup.procs is in a directory")
                    .to_owned()
            })
            .collect();
        while self.ids.len() < total {
            let id = random_container_id(&self.id_seed, self.ids.len());
            self.cgroup.mkdir_nested(&id);
            if self.controllers.contains(&"cpuset") {
                copy_cpuset(&self.cgroup.v1_dir("cpuset").join(&id));
            }
            let procs: Vec<PathBuf> = docker_dirs
                .iter()
                .map(|d| d.join(&id).join("cgroup.procs"))
                .collect();
            let mut cmd = bench_sleeper();
            enter_before_exec(&mut cmd, &procs);
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("spawning sleep in docker/{id}: {e}"));
            self.children.push(ChildGuard::new(child));
            self.ids.push(id);
        }
    }
}

/// Enables in `dir`'s `cgroup.subtree_control` every controller the stats read that the
/// v2 root offers (a hybrid host's offers none of them: nothing is written).
fn enable_v2_controllers(dir: &Path) {
    let mount = v2_mount().expect("a cgroup2 mount");
    let offered = fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
    let enable: Vec<String> = offered
        .split_ascii_whitespace()
        .filter(|c| ["cpu", "cpuset", "io", "memory", "pids"].contains(c))
        .map(|c| format!("+{c}"))
        .collect();
    if enable.is_empty() {
        return;
    }
    let file = dir.join("cgroup.subtree_control");
    fs::write(&file, enable.join(" "))
        .unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
}

/// Copies `cpuset.cpus` and `cpuset.mems` from the parent of `dir` into `dir`.
pub(crate) fn copy_cpuset(dir: &Path) {
    let parent = dir.parent().expect("a cgroup has a parent");
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let value = fs::read_to_string(parent.join(file))
            .unwrap_or_else(|e| panic!("reading {}: {e}", parent.join(file).display()));
        fs::write(dir.join(file), value.trim())
            .unwrap_or_else(|e| panic!("writing {}: {e}", dir.join(file).display()));
    }
}
