//! A pod's network: the counters of the network namespace its containers share. Kubernetes
//! puts every container of a pod in its sandbox's network namespace, so the pod's traffic is
//! that namespace's, read from `/proc/<pid>/net/dev` of any live process of the pod (the
//! kernel shows the namespace of the reading process's target, whatever the reader's). The
//! pod's containers are those whose cgroup path carries the pod UID (the kubelet's
//! `pod<uid>` directory or `-pod<uid>.slice`), sandbox included; a pod whose processes the
//! host cannot see (a Kata VM, a Fargate task) is not answered here.
//!
//! Containers that are not in the same namespace (which Kubernetes never does, but a
//! hand-made cgroup layout can) are answered per namespace, and the pod as a whole has no
//! single network then.
use std::{collections::BTreeMap, time::Instant};

use super::system::SystemCollector;
use crate::{
    identity::ContainerSnapshot,
    provider::{CollectorError, MaxAge, NetworkStats},
};

/// Longest pod UID accepted: a UUID (36), or a static pod's 32 hexadecimal digits.
const MAX_POD_UID: usize = 36;

/// The network of one pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PodNetwork {
    /// The pod UID, in the dashed form cgroup paths are read into.
    pub pod_uid: String,
    /// Every live container of the pod seen here, sandbox included, by id.
    pub containers: Vec<String>,
    /// The network namespaces the pod's live processes are in, with their counters.
    pub namespaces: Vec<PodNamespace>,
}

impl PodNetwork {
    /// The pod's network: its one namespace's counters; `None` when its processes are in
    /// several namespaces or none is alive.
    pub fn network(&self) -> Option<&NetworkStats> {
        match self.namespaces.as_slice() {
            [only] => Some(&only.network),
            _ => None,
        }
    }
}

/// One network namespace of a pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PodNamespace {
    /// The pod's containers whose processes are in it.
    pub containers: Vec<String>,
    /// Its counters per interface (loopback excluded) and in total, its inode
    /// (`network_isolation_group_id`) and whether it is the host's.
    pub network: NetworkStats,
}

/// The pod UID `raw` in the form cgroup paths are read into (lower case, dashes: systemd
/// slices write `_` for `-`), or `None` when it is not a pod UID (hexadecimal digits and
/// dashes only, at most 36 characters).
pub fn canonical_pod_uid(raw: &str) -> Option<String> {
    let fine = !raw.is_empty()
        && raw.len() <= MAX_POD_UID
        && raw
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || matches!(b, b'-' | b'_'));
    fine.then(|| raw.to_ascii_lowercase().replace('_', "-"))
}

/// The network of pod `pod_uid` (canonical, see [`canonical_pod_uid`]) from the containers of
/// `snapshot`, each namespace's counters no older than `max_age`; `Ok(None)` when no live
/// container of the pod is known here.
pub fn pod_network(
    system: &SystemCollector,
    snapshot: &ContainerSnapshot,
    pod_uid: &str,
    max_age: MaxAge,
) -> Result<Option<PodNetwork>, CollectorError> {
    let began = Instant::now();
    let mut containers: Vec<&String> = snapshot
        .containers
        .iter()
        .filter(|(_, entry)| {
            !entry.is_removed() && entry.container.pod_uid.as_deref() == Some(pod_uid)
        })
        .map(|(id, _)| id)
        .collect();
    if containers.is_empty() {
        return Ok(None);
    }
    containers.sort_unstable();
    let mut read = Vec::new();
    for id in &containers {
        // A namespace shared by several containers is read once: the later containers
        // accept the counters read since this answer began.
        let tolerance = max_age.max(began.elapsed());
        if let Some(network) = system.network_of_entry(&snapshot.containers[*id], tolerance)? {
            read.push(((*id).clone(), network));
        }
    }
    Ok(Some(PodNetwork {
        pod_uid: pod_uid.to_owned(),
        containers: containers.into_iter().cloned().collect(),
        namespaces: by_namespace(read),
    }))
}

/// The containers' network readings grouped by namespace inode, in inode order; each
/// namespace's counters are its first container's reading (they are the same namespace's).
fn by_namespace(read: Vec<(String, NetworkStats)>) -> Vec<PodNamespace> {
    let mut namespaces: BTreeMap<Option<u64>, PodNamespace> = BTreeMap::new();
    for (id, network) in read {
        namespaces
            .entry(network.network_isolation_group_id)
            .or_insert_with(|| PodNamespace {
                containers: Vec::new(),
                network,
            })
            .containers
            .push(id);
    }
    namespaces.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(inode: u64, rx: u64) -> NetworkStats {
        NetworkStats {
            bytes_rcvd: Some(rx),
            network_isolation_group_id: Some(inode),
            using_host_network: Some(false),
            ..NetworkStats::default()
        }
    }

    #[test]
    fn pod_uids_take_the_dashed_lower_case_form() {
        assert_eq!(
            canonical_pod_uid("0C5B1F6E_1D2A_4E0B_8F00_1234567890AB").as_deref(),
            Some("0c5b1f6e-1d2a-4e0b-8f00-1234567890ab")
        );
        let static_pod = "d41d8cd98f00b204e9800998ecf8427e";
        assert_eq!(canonical_pod_uid(static_pod).as_deref(), Some(static_pod));
        for bad in [
            "",
            "pod1234",
            "../etc",
            "0c5b1f6e-1d2a-4e0b-8f00-1234567890abc",
            "é",
        ] {
            assert_eq!(canonical_pod_uid(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn containers_sharing_a_namespace_make_one_network() {
        let pod = PodNetwork {
            pod_uid: "u".to_owned(),
            containers: vec!["app".to_owned(), "pause".to_owned()],
            namespaces: by_namespace(vec![
                ("app".to_owned(), reading(7, 100)),
                ("pause".to_owned(), reading(7, 100)),
            ]),
        };
        assert_eq!(pod.namespaces.len(), 1);
        assert_eq!(pod.namespaces[0].containers, ["app", "pause"]);
        assert_eq!(pod.network().and_then(|n| n.bytes_rcvd), Some(100));
    }

    #[test]
    fn containers_in_several_namespaces_give_no_pod_network() {
        let pod = PodNetwork {
            pod_uid: "u".to_owned(),
            containers: vec!["a".to_owned(), "b".to_owned(), "c".to_owned()],
            namespaces: by_namespace(vec![
                ("a".to_owned(), reading(9, 1)),
                ("b".to_owned(), reading(7, 2)),
                ("c".to_owned(), reading(9, 1)),
            ]),
        };
        let inodes: Vec<_> = pod
            .namespaces
            .iter()
            .map(|n| (n.network.network_isolation_group_id, n.containers.clone()))
            .collect();
        assert_eq!(
            inodes,
            [
                (Some(7), vec!["b".to_owned()]),
                (Some(9), vec!["a".to_owned(), "c".to_owned()])
            ]
        );
        assert_eq!(pod.network(), None);
        let empty = PodNetwork {
            namespaces: Vec::new(),
            ..pod
        };
        assert_eq!(empty.network(), None);
    }
}
