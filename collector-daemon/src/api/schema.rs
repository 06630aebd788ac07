//! JSON bodies of the socket API (the contract in the README's "API" section). Absent data
//! is `null`, never 0 or "".
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    collectors::{StatsReport, metadata::ContainerMeta},
    identity::{CgroupAnswer, CgroupRef, ContainerView, ProcessAnswer},
    provider::Flavor,
};

/// What the runtimes' APIs (Docker, containerd) say of a container, in every answer that
/// names one. All null while no runtime knows the container (or it is in none).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeMetaBody {
    /// The runtime's name for it (Docker's name; the id for containerd, which has none).
    pub name: Option<String>,
    /// The image it was created from.
    pub image: Option<String>,
    /// Its labels that are on the allow-list (`--container-labels`); `{}` when none is.
    pub labels: Option<BTreeMap<String, String>>,
    /// Kubernetes pod name (`io.kubernetes.pod.name`), else Podman's pod name.
    pub pod_name: Option<String>,
    /// Kubernetes namespace (`io.kubernetes.pod.namespace`).
    pub namespace: Option<String>,
    /// The container's name in its pod (`io.kubernetes.container.name`; null on sandboxes).
    pub container_name: Option<String>,
}

impl RuntimeMetaBody {
    /// The body for `meta`, keeping the labels named in `allowed`.
    pub fn new(meta: Option<&ContainerMeta>, allowed: &[String]) -> Self {
        let Some(meta) = meta else {
            return Self::default();
        };
        Self {
            name: meta.name.clone(),
            image: meta.image.clone(),
            labels: Some(
                allowed
                    .iter()
                    .filter_map(|k| meta.labels.get(k).map(|v| (k.clone(), v.clone())))
                    .collect(),
            ),
            pod_name: meta.pod_name().map(str::to_owned),
            namespace: meta.pod_namespace().map(str::to_owned),
            container_name: meta.container_name().map(str::to_owned),
        }
    }
}

/// `GET /v1/pid/{pid}`, `GET /v1/self`, and each element of `POST /v1/pids`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidBody {
    /// The PID asked about.
    pub pid: u32,
    /// Its container's id, null when in none (or unknown, with `error` set).
    pub container_id: Option<String>,
    /// The container's runtime when the cgroup path tells it.
    pub runtime: Option<String>,
    /// Kubernetes pod UID when the cgroup path has one.
    pub pod_uid: Option<String>,
    /// The cgroup the answer comes from: its id (the directory's inode).
    pub cgroup_id: Option<u64>,
    /// That cgroup's path from its hierarchy's root.
    pub cgroup_path: Option<String>,
    /// That cgroup's hierarchy: 0 for cgroup v2, the v1 hierarchy id otherwise.
    pub cgroup_hierarchy_id: Option<u32>,
    /// True when the process has exited (it is kept for the grace period).
    pub exited: Option<bool>,
    /// "ebpf" or "procfs".
    pub source: Option<String>,
    /// Process start time, ns since boot; with the PID, the process's identity.
    pub start_time_ns: Option<u64>,
    /// Command name.
    pub comm: Option<String>,
    /// The container's name, image, labels and pod, from the runtimes' APIs.
    #[serde(flatten)]
    pub meta: RuntimeMetaBody,
    /// Set (and everything else null) when this PID has no answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<&ProcessAnswer> for PidBody {
    fn from(a: &ProcessAnswer) -> Self {
        let container = a.container.as_deref();
        Self {
            pid: a.pid,
            container_id: container.map(|c| c.id.clone()),
            runtime: container
                .and_then(|c| c.runtime)
                .map(|r| r.as_str().to_owned()),
            pod_uid: container.and_then(|c| c.pod_uid.clone()),
            cgroup_id: a.cgroup.as_ref().map(|c| c.id),
            cgroup_path: a.cgroup.as_ref().map(|c| c.path.to_string()),
            cgroup_hierarchy_id: a.cgroup.as_ref().map(|c| c.hierarchy_id),
            exited: Some(a.exited),
            source: Some(a.source.as_str().to_owned()),
            start_time_ns: Some(a.start_boottime_ns),
            comm: Some(a.comm.to_string()),
            meta: RuntimeMetaBody::default(),
            error: None,
        }
    }
}

impl PidBody {
    /// The element of a batch answer for a PID without an answer, saying why.
    pub fn error(pid: u32, error: String) -> Self {
        Self {
            pid,
            container_id: None,
            runtime: None,
            pod_uid: None,
            cgroup_id: None,
            cgroup_path: None,
            cgroup_hierarchy_id: None,
            exited: None,
            source: None,
            start_time_ns: None,
            comm: None,
            meta: RuntimeMetaBody::default(),
            error: Some(error),
        }
    }
}

/// `GET /v1/inode/{inode}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InodeBody {
    /// The inode asked about.
    pub inode: u64,
    /// Its container's id, null when in none.
    pub container_id: Option<String>,
    /// The container's runtime when the path tells it.
    pub runtime: Option<String>,
    /// Kubernetes pod UID when the path has one.
    pub pod_uid: Option<String>,
    /// Same as `inode`: the cgroup id.
    pub cgroup_id: u64,
    /// The cgroup's path from its hierarchy's root.
    pub cgroup_path: String,
    /// 0 for cgroup v2, the v1 hierarchy id otherwise.
    pub cgroup_hierarchy_id: u32,
    /// True when the directory was removed (it is kept for the grace period).
    pub removed: bool,
}

impl From<&CgroupAnswer> for InodeBody {
    fn from(a: &CgroupAnswer) -> Self {
        let container = a.container.as_deref();
        Self {
            inode: a.cgroup.id,
            container_id: container.map(|c| c.id.clone()),
            runtime: container
                .and_then(|c| c.runtime)
                .map(|r| r.as_str().to_owned()),
            pod_uid: container.and_then(|c| c.pod_uid.clone()),
            cgroup_id: a.cgroup.id,
            cgroup_path: a.cgroup.path.to_string(),
            cgroup_hierarchy_id: a.cgroup.hierarchy_id,
            removed: a.removed,
        }
    }
}

/// One cgroup directory of a container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupBody {
    /// 0 for cgroup v2, the v1 hierarchy id otherwise.
    pub hierarchy_id: u32,
    /// Cgroup id (directory inode).
    pub id: u64,
    /// Path from the hierarchy's root.
    pub path: String,
}

impl From<&CgroupRef> for CgroupBody {
    fn from(c: &CgroupRef) -> Self {
        Self {
            hierarchy_id: c.hierarchy_id,
            id: c.id,
            path: c.path.to_string(),
        }
    }
}

/// A flavor as the API names it: "default" (Datadog's is "") or "kata".
#[must_use]
pub fn flavor_name(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Default => "default",
        Flavor::Kata => flavor.as_str(),
    }
}

/// An element of `GET /v1/containers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerBody {
    /// Container id.
    pub container_id: String,
    /// Runtime, when the cgroup path tells it.
    pub runtime: Option<String>,
    /// "default", or "kata" for Kata Containers (not visible from the host's cgroups).
    pub flavor: String,
    /// Name, image, labels and pod from the runtimes' APIs; null until one knows it.
    #[serde(flatten)]
    pub meta: RuntimeMetaBody,
    /// Kubernetes pod UID when the cgroup path has one.
    pub pod_uid: Option<String>,
    /// The container's main cgroup: v2 when it has one there, else v1.
    pub cgroup_path: Option<String>,
    /// That cgroup's id.
    pub cgroup_id: Option<u64>,
    /// Every top cgroup directory of the container, one per hierarchy.
    pub cgroups: Vec<CgroupBody>,
    /// Live processes in the container (its nested cgroups included), ascending.
    pub pids: Vec<u32>,
}

impl From<&ContainerView> for ContainerBody {
    fn from(v: &ContainerView) -> Self {
        let main = v.cgroups.first();
        Self {
            container_id: v.container.id.clone(),
            runtime: v.container.runtime.map(|r| r.as_str().to_owned()),
            flavor: "default".to_owned(),
            meta: RuntimeMetaBody::default(),
            pod_uid: v.container.pod_uid.clone(),
            cgroup_path: main.map(|c| c.path.to_string()),
            cgroup_id: main.map(|c| c.id),
            cgroups: v.cgroups.iter().map(CgroupBody::from).collect(),
            pids: v.pids.clone(),
        }
    }
}

/// `GET /healthz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthBody {
    /// "ok" while the daemon serves.
    pub status: String,
    /// True when answers come from the kernel programs.
    pub ebpf: bool,
    /// Why the kernel programs are off, when they are.
    pub ebpf_disabled_reason: Option<String>,
    /// "v1", "v2" or "hybrid".
    pub cgroup_mode: String,
    /// Live processes in the kernel-fed index (null without eBPF).
    pub processes_live: Option<usize>,
    /// Exited processes kept for the grace period (null without eBPF).
    pub processes_exited: Option<usize>,
    /// Live cgroups known.
    pub cgroups: usize,
    /// Kernel events lost since start (null without eBPF).
    pub events_lost: Option<u64>,
    /// The grace period for exited processes, in seconds.
    pub exited_grace_secs: u64,
    /// Where `/metrics` is served over TCP (the bound address), null when it is not.
    pub metrics_addr: Option<String>,
    /// Where the PID→cgroup map is pinned, null when it is not.
    pub pinned_map: Option<String>,
    /// Why the kernel's per-cgroup network or block IO counters are (partly) off, null when
    /// both run (or when eBPF is off altogether: see `ebpf_disabled_reason`).
    pub counters_unavailable: Option<String>,
}

/// Every error body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong and, where it helps, what to send instead.
    pub error: String,
}

/// `GET /v1/containers/{id}/stats`: Datadog's `ContainerStats` (timestamp, cpu, memory,
/// io, pid) with the network stats and open-files count beside it, which collector answered
/// each part (`sources`), and the chains that failed while others answered (`errors`).
/// Absent values are null.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsBody {
    /// The container asked about.
    pub container_id: String,
    /// Its runtime when known.
    pub runtime: Option<String>,
    /// "default", or "kata" for Kata Containers (their stats come from containerd's task
    /// metrics: the host's cgroups do not show them).
    #[serde(default)]
    pub flavor: String,
    /// Name, image, labels and pod from the runtimes' APIs.
    #[serde(flatten)]
    pub meta: RuntimeMetaBody,
    /// The provider's answer.
    #[serde(flatten)]
    pub full: crate::provider::FullStats,
}

impl StatsBody {
    /// The body of `report`, with what the runtimes say of its container.
    pub fn new(report: StatsReport, meta: RuntimeMetaBody) -> Self {
        Self {
            container_id: report.container_id,
            runtime: report.runtime.map(|r| r.as_str().to_owned()),
            flavor: flavor_name(report.flavor).to_owned(),
            meta,
            full: report.full,
        }
    }
}
