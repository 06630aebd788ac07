//! Tells which container, runtime and Kubernetes pod a cgroup path belongs to, from the path
//! alone. Hand-written matching in one pass over the components, allocating only the returned
//! strings: it runs for every cgroup at start-up and on every mkdir.

use std::fmt;

/// Container runtimes that can be told from a cgroup path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Runtime {
    Docker,
    Containerd,
    CriO,
    Podman,
    Garden,
    EcsFargate,
}

impl Runtime {
    /// Stable lowercase name, as used in labels.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Podman => "podman",
            Runtime::Garden => "garden",
            Runtime::EcsFargate => "ecsfargate",
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a cgroup path says about its container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathContainer {
    /// The container id.
    pub id: String,
    /// `None` when the path cannot tell.
    pub runtime: Option<Runtime>,
    /// Kubernetes pod UID in canonical dashed form, when the path has one.
    pub pod_uid: Option<String>,
    /// Byte length of the prefix of the path that ends with the container's own component,
    /// so `&path[..container_path_len]` is the container's top cgroup directory.
    pub container_path_len: usize,
}

/// Length of Docker/containerd/CRI-O/Podman container ids (a hex sha256).
const HEX_ID_LEN: usize = 64;

/// Prefixes the systemd cgroup driver of each runtime puts before the id in its scope name
/// (`docker-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`;
/// podman's `libpod-payload-<id>` is covered by `libpod-`).
const PREFIX_RUNTIMES: [(&str, Runtime); 4] = [
    ("docker-", Runtime::Docker),
    ("cri-containerd-", Runtime::Containerd),
    ("crio-", Runtime::CriO),
    ("libpod-", Runtime::Podman),
];

/// runc's systemd cgroupsPath is `slice:prefix:id`; when the runtime is told to use systemd
/// but runs with a cgroupfs manager (seen with containerd, k3s, youki) that string becomes a
/// literal directory name such as `kubepods-besteffort-pod<uid>.slice:cri-containerd:<id>`.
const COLON_RUNTIMES: [(&str, Runtime); 4] = [
    (":docker:", Runtime::Docker),
    (":cri-containerd:", Runtime::Containerd),
    (":crio:", Runtime::CriO),
    (":libpod:", Runtime::Podman),
];

/// Container id from a cgroup path relative to its hierarchy's mount, with the runtime and
/// Kubernetes pod UID the path tells. The deepest component naming a container wins (so
/// docker-in-docker resolves to the inner container); everything below it belongs to it.
#[must_use]
pub fn container_from_path(path: &str) -> Option<PathContainer> {
    let mut ancestry = Ancestry::default();
    let mut found: Option<Found<'_>> = None;
    let mut offset = 0;
    for name in path.split('/') {
        let end = offset + name.len();
        offset = end + 1;
        if name.is_empty() {
            continue;
        }
        if let Some(m) = match_component(name) {
            found = Some(Found {
                id: m.id,
                runtime: m.runtime.or_else(|| ancestry.runtime()),
                pod: m.pod.or(ancestry.pod),
                end,
            });
        }
        ancestry.descend(name);
    }
    found.map(|f| PathContainer {
        id: f.id.to_owned(),
        runtime: f.runtime,
        pod_uid: f.pod.map(PodUid::to_canonical),
        container_path_len: f.end,
    })
}

/// Container id from a single directory name (basename), with the runtime its prefix tells,
/// or `None`. A name containing `/` is not a directory name and gives `None`.
#[must_use]
pub fn container_from_component(name: &str) -> Option<(String, Option<Runtime>)> {
    if name.contains('/') {
        return None;
    }
    match_component(name).map(|m| (m.id.to_owned(), m.runtime))
}

/// The winning container component, borrowed from the path until the end of the scan.
struct Found<'a> {
    id: &'a str,
    runtime: Option<Runtime>,
    pod: Option<PodUid<'a>>,
    end: usize,
}

/// What the components above the current one say; updated as the scan descends.
#[derive(Default)]
struct Ancestry<'a> {
    parent: &'a str,
    grandparent: &'a str,
    /// Cloud Foundry's Garden puts every container below `/garden`.
    under_garden: bool,
    /// ECS on EC2 runs its tasks with docker below `/ecs/<task>`.
    under_ecs: bool,
    /// containerd's own service cgroup, or its CRI namespace `k8s.io` used as a cgroup.
    under_containerd: bool,
    /// Deepest Kubernetes pod cgroup seen so far.
    pod: Option<PodUid<'a>>,
}

impl<'a> Ancestry<'a> {
    /// Runtime told by where a component without a runtime prefix sits.
    fn runtime(&self) -> Option<Runtime> {
        match self.parent {
            // docker's cgroupfs driver: `/docker/<id>`.
            "docker" => Some(Runtime::Docker),
            // podman's cgroupfs manager: `/libpod_parent/<id>`.
            "libpod_parent" => Some(Runtime::Podman),
            _ if self.under_garden => Some(Runtime::Garden),
            _ if self.under_ecs => Some(Runtime::Docker),
            _ if self.under_containerd => Some(Runtime::Containerd),
            // e.g. kubelet's cgroupfs driver `/kubepods/burstable/pod<uid>/<id>` is used by
            // every CRI runtime, and `/default/<id>` could be any containerd client.
            _ => None,
        }
    }

    fn descend(&mut self, name: &'a str) {
        if let Some(pod) =
            pod_from_slice(name).or_else(|| pod_from_cgroupfs(name, self.parent, self.grandparent))
        {
            self.pod = Some(pod);
        }
        match name {
            "garden" => self.under_garden = true,
            "ecs" => self.under_ecs = true,
            "containerd.service" | "k8s.io" => self.under_containerd = true,
            _ => {}
        }
        self.grandparent = self.parent;
        self.parent = name;
    }
}

/// A Kubernetes pod UID as it appears in a cgroup name.
#[derive(Clone, Copy)]
struct PodUid<'a> {
    uid: &'a str,
    /// systemd escapes `-` in unit names, so the systemd driver writes the UID with `_`.
    underscored: bool,
}

impl PodUid<'_> {
    fn to_canonical(self) -> String {
        if self.underscored {
            self.uid.replace('_', "-")
        } else {
            self.uid.to_owned()
        }
    }
}

/// What a single directory name says about a container.
struct ComponentMatch<'a> {
    id: &'a str,
    runtime: Option<Runtime>,
    /// Pod slice carried in the same name (`<pod slice>:<prefix>:<id>`).
    pod: Option<PodUid<'a>>,
}

fn match_component(name: &str) -> Option<ComponentMatch<'_>> {
    if is_excluded(name) {
        return None;
    }
    if let Some(start) = find_hex_id(name) {
        let before = &name[..start];
        let (runtime, pod) = match before.find(':') {
            Some(colon) => (
                COLON_RUNTIMES
                    .iter()
                    .find(|(infix, _)| before.ends_with(infix))
                    .map(|&(_, rt)| rt),
                pod_from_slice(&before[..colon]),
            ),
            None => (
                PREFIX_RUNTIMES
                    .iter()
                    .find(|(prefix, _)| name.starts_with(prefix))
                    .map(|&(_, rt)| rt),
                None,
            ),
        };
        return Some(ComponentMatch {
            id: &name[start..start + HEX_ID_LEN],
            runtime,
            pod,
        });
    }
    let runtime = if is_fargate_name(name) {
        // ECS Fargate: `/ecs/<task id>/<task id>-<digits>`.
        Runtime::EcsFargate
    } else if is_hex_groups(name.as_bytes(), &[8, 4, 4, 4, 4], b'-') {
        // Garden (Cloud Foundry) container handles.
        Runtime::Garden
    } else {
        return None;
    };
    Some(ComponentMatch {
        id: name,
        runtime: Some(runtime),
        pod: None,
    })
}

/// Names that carry an id but are not a container's cgroup.
#[expect(
    clippy::case_sensitive_file_extension_comparisons,
    reason = "systemd unit type suffixes are case-sensitive; `.MOUNT` is not a mount unit"
)]
fn is_excluded(name: &str) -> bool {
    // systemd mount units for a container's rootfs or shm alias its id
    // (`var-lib-docker-containers-<id>-mounts-shm.mount`).
    name.ends_with(".mount")
        // CRI-O's and podman's conmon monitor the container from a sibling scope.
        || name.starts_with("crio-conmon-")
        || name.starts_with("libpod-conmon-")
        // podman's pod slice (`machine-libpod_pod_<pod id>.slice`) holds containers, it is
        // not one; its infra container has its own `libpod-<id>.scope`.
        || (name.ends_with(".slice") && name.contains("libpod_pod_"))
}

/// Start of the first run of exactly 64 lowercase hex digits. A run is bounded by the name's
/// ends or a non-hex byte; uppercase hex counts as part of the run (and spoils it), so that
/// `A<64 hex>` or a 65-digit run never yields an id.
fn find_hex_id(name: &str) -> Option<usize> {
    let bytes = name.as_bytes();
    if bytes.len() < HEX_ID_LEN {
        return None;
    }
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_hexdigit() {
            i += 1;
            continue;
        }
        let start = i;
        let mut lowercase = true;
        while i < bytes.len() && bytes[i].is_ascii_hexdigit() {
            lowercase &= is_lower_hex(bytes[i]);
            i += 1;
        }
        if lowercase && i - start == HEX_ID_LEN {
            return Some(start);
        }
    }
    None
}

/// `<32 lowercase hex>-<one or more digits>`, AWS ECS Fargate's container cgroup name.
fn is_fargate_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() > 33
        && bytes[32] == b'-'
        && bytes[..32].iter().all(|&b| is_lower_hex(b))
        && bytes[33..].iter().all(u8::is_ascii_digit)
}

/// Kubernetes pod cgroup made by kubelet's systemd driver, possibly under a renamed root
/// (kind, k3s: `kubelet-kubepods-burstable-pod<uid>.slice`):
/// `[<prefix>-]kubepods[-burstable|-besteffort]-pod<uid with _>.slice`.
fn pod_from_slice(name: &str) -> Option<PodUid<'_>> {
    let stem = name.strip_suffix(".slice")?;
    let (parent, last) = stem.rsplit_once('-')?;
    let uid = last.strip_prefix("pod")?;
    let root = parent
        .strip_suffix("-burstable")
        .or_else(|| parent.strip_suffix("-besteffort"))
        .unwrap_or(parent);
    if root != "kubepods" && !root.ends_with("-kubepods") {
        return None;
    }
    if is_hex_groups(uid.as_bytes(), &[8, 4, 4, 4, 12], b'_') {
        Some(PodUid {
            uid,
            underscored: true,
        })
    } else {
        plain_pod_uid(uid)
    }
}

/// Kubernetes pod cgroup made by kubelet's cgroupfs driver: `pod<uid>` directly under
/// `kubepods` (guaranteed) or under `kubepods/burstable` or `kubepods/besteffort`.
fn pod_from_cgroupfs<'a>(name: &'a str, parent: &str, grandparent: &str) -> Option<PodUid<'a>> {
    let uid = name.strip_prefix("pod")?;
    let in_qos = parent == "kubepods"
        || (matches!(parent, "burstable" | "besteffort") && grandparent == "kubepods");
    if !in_qos {
        return None;
    }
    if is_hex_groups(uid.as_bytes(), &[8, 4, 4, 4, 12], b'-') {
        Some(PodUid {
            uid,
            underscored: false,
        })
    } else {
        plain_pod_uid(uid)
    }
}

/// Static (file or URL) pods get an md5 hash as UID, 32 hex digits without dashes; that is
/// already their canonical form.
fn plain_pod_uid(uid: &str) -> Option<PodUid<'_>> {
    (uid.len() == 32 && uid.bytes().all(is_lower_hex)).then_some(PodUid {
        uid,
        underscored: false,
    })
}

/// Whether `s` is exactly groups of lowercase hex of the given lengths joined by `sep`.
fn is_hex_groups(s: &[u8], groups: &[usize], sep: u8) -> bool {
    let expected = groups.iter().sum::<usize>() + groups.len().saturating_sub(1);
    if s.len() != expected {
        return false;
    }
    let mut pos = 0;
    for (i, &len) in groups.iter().enumerate() {
        if i > 0 {
            if s[pos] != sep {
                return false;
            }
            pos += 1;
        }
        if !s[pos..pos + len].iter().all(|&b| is_lower_hex(b)) {
            return false;
        }
        pos += len;
    }
    true
}

fn is_lower_hex(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'a'..=b'f')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID1: &str = "c189fc392f0f3474c5cb66071306d14e45515ca3d6d5dc36a2a3d33ac85abfec";
    const ID2: &str = "09f0bf3434f5e3da9a3caaff867d2afb080a21381bee0c7d5059af0381d4e72a";
    const ID3: &str = "7d55a0b24b8394440b0b542e40b9ab24a50e6332cc0b9427ed8e5d2c44a086f1";
    const POD_UID: &str = "c4ec9378-8005-44c6-9149-aae6400751bf";
    const POD_UID_: &str = "c4ec9378_8005_44c6_9149_aae6400751bf";
    const STATIC_POD_UID: &str = "1969b1ece840b2597329e56fe1c84cd8";
    const TASK_ID: &str = "8a0e9f8c5b6d4c3e9a1b2c3d4e5f6a7b";
    const GARDEN_HANDLE: &str = "5c4f3b2a-1d9e-4f8a-6b7c-2d3e";

    /// Asserts the full result; `top` is the expected container directory, i.e.
    /// `&path[..container_path_len]`.
    #[track_caller]
    fn check(path: &str, id: &str, runtime: Option<Runtime>, pod: Option<&str>, top: &str) {
        let got = container_from_path(path).unwrap_or_else(|| panic!("no container in {path}"));
        assert_eq!(
            got,
            PathContainer {
                id: id.to_owned(),
                runtime,
                pod_uid: pod.map(str::to_owned),
                container_path_len: top.len(),
            },
            "path {path}"
        );
        assert_eq!(&path[..got.container_path_len], top, "path {path}");
    }

    #[track_caller]
    fn none(path: &str) {
        assert_eq!(container_from_path(path), None, "path {path}");
    }

    #[test]
    fn runtime_names() {
        let all = [
            (Runtime::Docker, "docker"),
            (Runtime::Containerd, "containerd"),
            (Runtime::CriO, "cri-o"),
            (Runtime::Podman, "podman"),
            (Runtime::Garden, "garden"),
            (Runtime::EcsFargate, "ecsfargate"),
        ];
        for (rt, name) in all {
            assert_eq!(rt.as_str(), name);
            assert_eq!(rt.to_string(), name);
        }
    }

    #[test]
    fn docker_cgroupfs() {
        let top = format!("/docker/{ID1}");
        check(&top, ID1, Some(Runtime::Docker), None, &top);
        check(&format!("{top}/"), ID1, Some(Runtime::Docker), None, &top);
        check(
            &format!("{top}/init.scope/foo"),
            ID1,
            Some(Runtime::Docker),
            None,
            &top,
        );
        // Empty components are ignored but still count towards the byte offset.
        let top = format!("//docker//{ID1}");
        check(
            &format!("{top}//sub"),
            ID1,
            Some(Runtime::Docker),
            None,
            &top,
        );
        // Relative path.
        let top = format!("docker/{ID1}");
        check(&top, ID1, Some(Runtime::Docker), None, &top);
    }

    #[test]
    fn docker_systemd() {
        let top = format!("/system.slice/docker-{ID1}.scope");
        check(&top, ID1, Some(Runtime::Docker), None, &top);
        check(
            &format!("{top}/system.slice/cron.service"),
            ID1,
            Some(Runtime::Docker),
            None,
            &top,
        );
    }

    #[test]
    fn docker_in_docker() {
        let top = format!("/docker/{ID1}/docker/{ID2}");
        check(&top, ID2, Some(Runtime::Docker), None, &top);
        check(
            &format!("{top}/sub"),
            ID2,
            Some(Runtime::Docker),
            None,
            &top,
        );
        let top = format!("/system.slice/docker-{ID1}.scope/docker/{ID2}");
        check(&top, ID2, Some(Runtime::Docker), None, &top);
        let top = format!("/system.slice/docker-{ID1}.scope/system.slice/docker-{ID2}.scope");
        check(&format!("{top}/x"), ID2, Some(Runtime::Docker), None, &top);
    }

    #[test]
    fn containerd_namespaces_and_service() {
        let top = format!("/k8s.io/{ID1}");
        check(&top, ID1, Some(Runtime::Containerd), None, &top);
        check(
            &format!("{top}/sub"),
            ID1,
            Some(Runtime::Containerd),
            None,
            &top,
        );
        // Any other namespace could be any containerd client (nerdctl, buildkit, ...).
        let top = format!("/default/{ID1}");
        check(&top, ID1, None, None, &top);
        let top = format!("/system.slice/containerd.service/default/{ID1}");
        check(&top, ID1, Some(Runtime::Containerd), None, &top);
        none("/system.slice/containerd.service");
        none("/k8s.io");
    }

    #[test]
    fn runc_systemd_path_taken_literally() {
        // containerd asked for the systemd driver but the manager used cgroupfs.
        let top = format!("/kubepods-besteffort-pod{POD_UID_}.slice:cri-containerd:{ID1}");
        check(&top, ID1, Some(Runtime::Containerd), Some(POD_UID), &top);
        let top = format!(
            "/system.slice/containerd.service/kubepods-burstable-pod{POD_UID_}.slice:cri-containerd:{ID1}"
        );
        check(
            &format!("{top}/sub"),
            ID1,
            Some(Runtime::Containerd),
            Some(POD_UID),
            &top,
        );
        let top = format!("/kubepods-pod{POD_UID_}.slice:crio:{ID2}");
        check(&top, ID2, Some(Runtime::CriO), Some(POD_UID), &top);
        // Unknown prefix: runtime unknown, pod still told.
        let top = format!("/kubepods-pod{POD_UID_}.slice:other:{ID2}");
        check(&top, ID2, None, Some(POD_UID), &top);
        assert_eq!(
            container_from_component(&format!("kubepods-pod{POD_UID_}.slice:docker:{ID3}")),
            Some((ID3.to_owned(), Some(Runtime::Docker)))
        );
    }

    #[test]
    fn kubepods_cgroupfs_every_qos() {
        for qos in ["", "/burstable", "/besteffort"] {
            let pod = format!("/kubepods{qos}/pod{POD_UID}");
            // Bare id: any CRI runtime may have made it.
            let top = format!("{pod}/{ID1}");
            check(&top, ID1, None, Some(POD_UID), &top);
            check(&format!("{top}/sub"), ID1, None, Some(POD_UID), &top);
            // CRI-O with cgroupfs keeps its prefix.
            let top = format!("{pod}/crio-{ID2}");
            check(&top, ID2, Some(Runtime::CriO), Some(POD_UID), &top);
            none(&format!("{pod}/crio-conmon-{ID2}"));
            // The pod cgroup itself, with no container below it.
            none(&pod);
            none(&format!("{pod}/"));
        }
        none("/kubepods");
        none("/kubepods/burstable");
        none("/kubepods/besteffort");
    }

    #[test]
    fn kubepods_systemd_every_qos() {
        let pods = [
            format!("/kubepods.slice/kubepods-pod{POD_UID_}.slice"),
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_UID_}.slice"
            ),
            format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_UID_}.slice"
            ),
        ];
        for pod in &pods {
            let cases = [
                (format!("cri-containerd-{ID1}.scope"), Runtime::Containerd),
                (format!("crio-{ID1}.scope"), Runtime::CriO),
                (format!("docker-{ID1}.scope"), Runtime::Docker),
            ];
            for (scope, rt) in cases {
                let top = format!("{pod}/{scope}");
                check(&top, ID1, Some(rt), Some(POD_UID), &top);
                check(&format!("{top}/sub/x"), ID1, Some(rt), Some(POD_UID), &top);
            }
            none(pod);
        }
        none("/kubepods.slice");
        none("/kubepods.slice/kubepods-burstable.slice");
        none("/kubepods.slice/kubepods-besteffort.slice");
    }

    #[test]
    fn crio_systemd() {
        let pod = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_UID_}.slice"
        );
        let top = format!("{pod}/crio-{ID1}.scope");
        check(&top, ID1, Some(Runtime::CriO), Some(POD_UID), &top);
        check(
            &format!("{top}/container"),
            ID1,
            Some(Runtime::CriO),
            Some(POD_UID),
            &top,
        );
        none(&format!("{pod}/crio-conmon-{ID1}.scope"));
    }

    #[test]
    fn static_pod_uid() {
        let top = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{STATIC_POD_UID}.slice/cri-containerd-{ID1}.scope"
        );
        check(
            &top,
            ID1,
            Some(Runtime::Containerd),
            Some(STATIC_POD_UID),
            &top,
        );
        let top = format!("/kubepods/burstable/pod{STATIC_POD_UID}/{ID1}");
        check(&top, ID1, None, Some(STATIC_POD_UID), &top);
    }

    #[test]
    fn kubepods_nested_under_another_prefix() {
        // kind / k3d node: a docker container whose kubelet uses the systemd driver with a
        // `kubelet` root slice.
        let node = format!("/system.slice/docker-{ID1}.scope");
        let top = format!(
            "{node}/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{POD_UID_}.slice/cri-containerd-{ID2}.scope"
        );
        check(&top, ID2, Some(Runtime::Containerd), Some(POD_UID), &top);
        let top = format!(
            "{node}/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod{POD_UID_}.slice/cri-containerd-{ID2}.scope"
        );
        check(&top, ID2, Some(Runtime::Containerd), Some(POD_UID), &top);
        // The node's own processes belong to the node container.
        check(
            &format!("{node}/kubelet.slice"),
            ID1,
            Some(Runtime::Docker),
            None,
            &node,
        );
        // A node whose kubelet uses cgroupfs.
        let top = format!("/docker/{ID1}/kubepods/burstable/pod{POD_UID}/{ID2}");
        check(&top, ID2, None, Some(POD_UID), &top);
        let top = format!("/docker/{ID1}/kubepods/pod{POD_UID}/{ID2}");
        check(&format!("{top}/x"), ID2, None, Some(POD_UID), &top);
        // The pod cgroup inside the node, with no container below it: still the node.
        let node = format!("/docker/{ID1}");
        check(
            &format!("{node}/kubepods/besteffort/pod{POD_UID}"),
            ID1,
            Some(Runtime::Docker),
            None,
            &node,
        );
    }

    #[test]
    fn pod_uid_needs_kubepods_context() {
        let top = format!("/foo/pod{POD_UID}/{ID1}");
        check(&top, ID1, None, None, &top);
        let top = format!("/kubepods/guaranteed/pod{POD_UID}/{ID1}");
        check(&top, ID1, None, None, &top);
        let top = format!("/foo.slice/foo-pod{POD_UID_}.slice/{ID1}");
        check(&top, ID1, None, None, &top);
        // Uppercase or malformed UIDs are not pod UIDs.
        let upper = POD_UID.to_uppercase();
        let top = format!("/kubepods/burstable/pod{upper}/{ID1}");
        check(&top, ID1, None, None, &top);
        let top = format!("/kubepods/burstable/pod{POD_UID_}/{ID1}");
        check(&top, ID1, None, None, &top);
        let top = format!("/kubepods.slice/kubepods-pod{POD_UID}.slice/{ID1}");
        check(&top, ID1, None, None, &top);
    }

    #[test]
    fn pod_uid_only_from_ancestors() {
        // A pod cgroup below the container does not describe it.
        let top = format!("/docker/{ID1}");
        check(
            &format!("{top}/kubepods/burstable/pod{POD_UID}"),
            ID1,
            Some(Runtime::Docker),
            None,
            &top,
        );
        // The deepest enclosing pod wins.
        let other = "68419293-7dcd-44e7-995c-14a85dca6977";
        let top = format!("/kubepods/pod{other}/kubepods/besteffort/pod{POD_UID}/{ID1}");
        check(&top, ID1, None, Some(POD_UID), &top);
    }

    #[test]
    fn podman() {
        let top = format!("/machine.slice/libpod-{ID1}.scope");
        check(&top, ID1, Some(Runtime::Podman), None, &top);
        check(
            &format!("{top}/container"),
            ID1,
            Some(Runtime::Podman),
            None,
            &top,
        );
        none(&format!("/machine.slice/libpod-conmon-{ID1}.scope"));
        // cgroupfs manager.
        let top = format!("/libpod_parent/libpod-{ID1}");
        check(&top, ID1, Some(Runtime::Podman), None, &top);
        let top = format!("/libpod_parent/{ID1}");
        check(&top, ID1, Some(Runtime::Podman), None, &top);
        // Payload cgroup of a container run with a separate conmon group.
        let top = format!("/machine.slice/libpod-payload-{ID1}");
        check(&format!("{top}/x"), ID1, Some(Runtime::Podman), None, &top);
        // Podman pods: the pod slice is not a container, its members are.
        let pod = format!("/machine.slice/machine-libpod_pod_{ID2}.slice");
        none(&pod);
        let top = format!("{pod}/libpod-{ID1}.scope");
        check(
            &format!("{top}/container"),
            ID1,
            Some(Runtime::Podman),
            None,
            &top,
        );
    }

    #[test]
    fn rootless_podman() {
        let user = "/user.slice/user-1000.slice/user@1000.service";
        let top = format!("{user}/user.slice/libpod-{ID1}.scope");
        check(
            &format!("{top}/container"),
            ID1,
            Some(Runtime::Podman),
            None,
            &top,
        );
        check(&top, ID1, Some(Runtime::Podman), None, &top);
        let top = format!("{user}/user.slice/user-libpod_pod_{ID2}.slice/libpod-{ID1}.scope");
        check(
            &format!("{top}/container"),
            ID1,
            Some(Runtime::Podman),
            None,
            &top,
        );
        none(&format!("{user}/user.slice/user-libpod_pod_{ID2}.slice"));
        // The podman process itself.
        none(&format!("{user}/app.slice/podman-1234.scope"));
        none(&format!("{user}/user.slice/libpod-conmon-{ID1}.scope"));
    }

    #[test]
    fn garden() {
        let top = format!("/garden/{GARDEN_HANDLE}");
        check(&top, GARDEN_HANDLE, Some(Runtime::Garden), None, &top);
        check(
            &format!("{top}/sub"),
            GARDEN_HANDLE,
            Some(Runtime::Garden),
            None,
            &top,
        );
        // Anything with an id below `garden` is Garden's.
        let top = format!("/garden/{ID1}");
        check(&top, ID1, Some(Runtime::Garden), None, &top);
        // A handle is told by its shape alone.
        let top = format!("/system.slice/{GARDEN_HANDLE}");
        check(&top, GARDEN_HANDLE, Some(Runtime::Garden), None, &top);
        // A Kubernetes pod UID (last group of 12) is not a handle.
        none(&format!("/garden/{POD_UID}"));
        none("/garden");
        none(&format!("/garden/{}", GARDEN_HANDLE.to_uppercase()));
        none("/garden/5c4f3b2a-1d9e-4f8a-6b7c-2d3");
        none("/garden/5c4f3b2a-1d9e-4f8a-6b7c-2d3e0");
        none("/garden/5c4f3b2a_1d9e_4f8a_6b7c_2d3e");
    }

    #[test]
    fn ecs() {
        for digits in ["123456789", "1234567890"] {
            let name = format!("{TASK_ID}-{digits}");
            let top = format!("/ecs/{TASK_ID}/{name}");
            check(&top, &name, Some(Runtime::EcsFargate), None, &top);
            check(
                &format!("{top}/sub"),
                &name,
                Some(Runtime::EcsFargate),
                None,
                &top,
            );
        }
        none(&format!("/ecs/{TASK_ID}"));
        none(&format!("/ecs/{TASK_ID}/{TASK_ID}-"));
        none(&format!("/ecs/{TASK_ID}/{TASK_ID}-12a"));
        none(&format!("/ecs/{TASK_ID}/{}-123", &TASK_ID[1..]));
        none(&format!("/ecs/{TASK_ID}/{}-123", TASK_ID.to_uppercase()));
        // ECS on EC2 runs tasks with docker, task ids old (UUID) or new (32 hex) style.
        let top = format!("/ecs/{TASK_ID}/{ID1}");
        check(&top, ID1, Some(Runtime::Docker), None, &top);
        let top = format!("/ecs/{POD_UID}/{ID1}");
        check(&format!("{top}/x"), ID1, Some(Runtime::Docker), None, &top);
    }

    #[test]
    fn excluded_components_are_skipped() {
        // systemd mount units alias the id of the container they belong to.
        none(&format!(
            "/system.slice/var-lib-docker-containers-{ID1}-mounts-shm.mount"
        ));
        none(&format!(
            "/system.slice/run-containerd-io.containerd.runtime.v2.task-k8s.io-{ID1}-rootfs.mount"
        ));
        none(&format!("/system.slice/{ID1}.mount"));
        // Skipping does not end the search, on either side.
        let top = format!("/docker/{ID1}");
        check(
            &format!("{top}/crio-conmon-{ID2}.scope"),
            ID1,
            Some(Runtime::Docker),
            None,
            &top,
        );
        check(
            &format!("{top}/run-{ID2}.mount"),
            ID1,
            Some(Runtime::Docker),
            None,
            &top,
        );
        let top = format!("/system.slice/var-lib-{ID2}.mount/docker/{ID1}");
        check(&top, ID1, Some(Runtime::Docker), None, &top);
        let top = format!("/machine.slice/libpod-conmon-{ID2}.scope/libpod-{ID1}.scope");
        check(&top, ID1, Some(Runtime::Podman), None, &top);
    }

    #[test]
    fn other_containers_with_unknown_runtime() {
        let top = format!("/system.slice/{ID1}.scope");
        check(&top, ID1, None, None, &top);
        let top = format!("/lxc/{ID1}");
        check(&top, ID1, None, None, &top);
    }

    #[test]
    fn no_container() {
        for path in [
            "",
            "/",
            "//",
            "/system.slice",
            "/system.slice/sshd.service",
            "/system.slice/docker.service",
            "/system.slice/containerd.service",
            "/user.slice/user-0.slice/session-3.scope",
            "/user.slice/user-1000.slice/user@1000.service/init.scope",
            "/init.scope",
            "/docker",
            "/libpod_parent",
            "/kubepods.slice/kubepods-burstable.slice",
            "/ecs",
        ] {
            none(path);
        }
    }

    #[test]
    fn hex_run_boundaries() {
        // 63 and 65 digits.
        none(&format!("/docker/{}", &ID1[1..]));
        none(&format!("/docker/{ID1}0"));
        none(&format!("/docker/0{ID1}"));
        none(&format!("/docker/docker-{ID1}{ID2}.scope"));
        // Uppercase never matches, and uppercase hex next to a run spoils it.
        none(&format!("/docker/{}", ID1.to_uppercase()));
        none(&format!("/docker/A{ID1}"));
        none(&format!("/docker/{ID1}F"));
        let mut mixed = ID1.to_owned();
        mixed.replace_range(10..11, "C");
        none(&format!("/docker/{mixed}"));
        // Any other byte delimits.
        let top = format!("/docker/x{ID1}g");
        check(&top, ID1, Some(Runtime::Docker), None, &top);
        let top = format!("/docker/é{ID1}ü");
        check(&top, ID1, Some(Runtime::Docker), None, &top);
        let top = format!("/docker/{ID1} ");
        check(&top, ID1, Some(Runtime::Docker), None, &top);
        // First run wins within a name.
        assert_eq!(
            container_from_component(&format!("{ID1}-{ID2}")),
            Some((ID1.to_owned(), None))
        );
        // A spoiled run does not hide a later good one.
        assert_eq!(
            container_from_component(&format!("{ID1}0-{ID2}")),
            Some((ID2.to_owned(), None))
        );
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let long_hex = "a".repeat(10_000);
        let long_dashes = "-".repeat(10_000);
        let paths = [
            "..".to_owned(),
            "/../..".to_owned(),
            format!("/docker/../{}", &ID1[..63]),
            "/ docker / x ".to_owned(),
            "/ünïcödé/日本語/🐳".to_owned(),
            "/\0/\u{7f}/\t\n".to_owned(),
            format!("/{long_hex}"),
            format!("/{long_dashes}"),
            format!("/pod{long_hex}"),
            format!("/kubepods/pod{long_hex}"),
            format!("/kubepods-pod{long_hex}.slice"),
            format!("/{long_hex}-123"),
            format!("/{long_hex}.slice:cri-containerd:"),
            "/kubepods-pod.slice".to_owned(),
            "/-pod.slice".to_owned(),
            "/pod".to_owned(),
            "/.slice".to_owned(),
            "/:::".to_owned(),
            format!("/{}-", &TASK_ID),
        ];
        for path in &paths {
            none(path);
        }
    }

    /// Every char-boundary slice of realistic paths: no panic, and any answer is consistent.
    #[test]
    fn slices_of_real_paths_are_consistent() {
        let paths = [
            format!(
                "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{POD_UID_}.slice/cri-containerd-{ID1}.scope/sub"
            ),
            format!("/docker/{ID1}/kubepods/burstable/pod{POD_UID}/{ID2}/é"),
            format!("/ecs/{TASK_ID}/{TASK_ID}-1234567890/garden/{GARDEN_HANDLE}"),
            format!("/kubepods-pod{POD_UID_}.slice:crio:{ID3}/x"),
        ];
        for path in &paths {
            let bounds: Vec<usize> = (0..=path.len())
                .filter(|&i| path.is_char_boundary(i))
                .collect();
            for &a in &bounds {
                for &b in bounds.iter().filter(|&&b| b >= a) {
                    let sub = &path[a..b];
                    let Some(got) = container_from_path(sub) else {
                        continue;
                    };
                    let top = &sub[..got.container_path_len];
                    let last = top.rsplit('/').next().unwrap();
                    assert!(last.contains(got.id.as_str()), "{sub:?} -> {got:?}");
                    assert_eq!(
                        container_from_component(last).map(|(id, _)| id),
                        Some(got.id.clone()),
                        "{sub:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn component_alone() {
        let cases = [
            (format!("docker-{ID1}.scope"), Some(Runtime::Docker)),
            (
                format!("cri-containerd-{ID1}.scope"),
                Some(Runtime::Containerd),
            ),
            (format!("crio-{ID1}.scope"), Some(Runtime::CriO)),
            (format!("crio-{ID1}"), Some(Runtime::CriO)),
            (format!("libpod-{ID1}.scope"), Some(Runtime::Podman)),
            (format!("libpod-payload-{ID1}"), Some(Runtime::Podman)),
            (format!("{ID1}.scope"), None),
            (ID1.to_owned(), None),
        ];
        for (name, rt) in cases {
            assert_eq!(
                container_from_component(&name),
                Some((ID1.to_owned(), rt)),
                "{name}"
            );
        }
        assert_eq!(
            container_from_component(GARDEN_HANDLE),
            Some((GARDEN_HANDLE.to_owned(), Some(Runtime::Garden)))
        );
        let fargate = format!("{TASK_ID}-123456789");
        assert_eq!(
            container_from_component(&fargate),
            Some((fargate.clone(), Some(Runtime::EcsFargate)))
        );
        for name in [
            format!("crio-conmon-{ID1}.scope"),
            format!("libpod-conmon-{ID1}.scope"),
            format!("docker-{ID1}.scope.mount"),
            format!("machine-libpod_pod_{ID1}.slice"),
            format!("/docker/{ID1}"),
            format!("pod{POD_UID}"),
            format!("kubepods-pod{POD_UID_}.slice"),
            POD_UID.to_owned(),
            TASK_ID.to_owned(),
            String::new(),
            "podman-1234.scope".to_owned(),
        ] {
            assert_eq!(container_from_component(&name), None, "{name}");
        }
    }
}
