//! A CRI (Kubernetes Container Runtime Interface, v1) client for tests, doing what the
//! kubelet does to run a pod: `RunPodSandbox`, then `CreateContainer` and `StartContainer`
//! for each container; `StopPodSandbox` and `RemovePodSandbox` when the [`Pod`] guard drops.
//!
//! The Kubernetes labels (`io.kubernetes.pod.name`, `.namespace`, `.uid`, and
//! `io.kubernetes.container.name` on containers) are the kubelet's: it puts them in the
//! configs it sends, and containerd's CRI plugin stores them as the containers' labels, adding
//! only `io.cri-containerd.kind` of its own (verified with containerd 1.6.20).
//!
//! Pods use the host's network (the private containerd has no CNI config) and the cgroupfs
//! layout of the kubelet (`cgroup_parent` `.../kubepods/besteffort/pod<uid>`): runc makes the
//! cgroups, and removes each container's own when it is removed; the pod's directory, which
//! the kubelet would remove, the guard removes. gRPC runs in a small tokio runtime owned by
//! the client, so callers stay synchronous.

use std::{
    collections::HashMap,
    future::Future,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatusRequest,
    CreateContainerRequest, ImageSpec, LinuxContainerConfig, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, PodSandboxStatusRequest, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StatusRequest, StopPodSandboxRequest,
    runtime_service_client::RuntimeServiceClient,
};
use tonic::transport::{Channel, Endpoint};

/// How long the CRI plugin has to report the runtime ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A CRI client over a unix socket (a fresh connection per call, so it survives a restart
/// of the runtime).
#[derive(Debug)]
pub struct Cri {
    runtime: tokio::runtime::Runtime,
    socket: PathBuf,
}

impl Cri {
    /// A client of the CRI runtime service at `socket`; returns once it reports the
    /// `RuntimeReady` condition (the plugin starts after containerd's socket answers).
    #[must_use]
    pub fn connect(socket: &Path) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building a tokio runtime for the CRI client");
        let cri = Self {
            runtime,
            socket: socket.to_path_buf(),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let status = cri.call("Status", |mut c| async move {
                c.status(StatusRequest { verbose: false }).await
            });
            let last = match status {
                Ok(response) => {
                    let conditions = response.status.map(|s| s.conditions).unwrap_or_default();
                    if conditions
                        .iter()
                        .any(|c| c.r#type == "RuntimeReady" && c.status)
                    {
                        return cri;
                    }
                    format!("conditions {conditions:?}")
                }
                Err(e) => e,
            };
            assert!(
                Instant::now() < deadline,
                "the CRI runtime at {} was not ready within {READY_TIMEOUT:?}: {last}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs one call on a fresh connection; errors as text naming the call.
    fn call<T, F, Fut>(&self, name: &str, call: F) -> Result<T, String>
    where
        F: FnOnce(RuntimeServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let socket = self.socket.clone();
        self.runtime.block_on(async move {
            let channel = connect(socket)
                .await
                .map_err(|e| format!("CRI {name}: connecting: {e}"))?;
            call(RuntimeServiceClient::new(channel))
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| format!("CRI {name}: {:?}: {}", status.code(), status.message()))
        })
    }
}

async fn connect(socket: PathBuf) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("unix://{}", socket.display()))?
        .connect()
        .await
}

/// A pod (its sandbox), removed with its containers on drop.
#[derive(Debug)]
pub struct Pod<'a> {
    cri: &'a Cri,
    id: String,
    config: PodSandboxConfig,
    /// Set once removed, so that drop does nothing.
    removed: bool,
}

impl<'a> Pod<'a> {
    /// `RunPodSandbox` of a pod named `name` in Kubernetes namespace `namespace` with UID
    /// `uid`, on the host's network, its cgroups below `cgroup_parent` (the kubelet's
    /// cgroupfs form: `/kubepods/besteffort/pod<uid>`, here below the test's own prefix).
    #[must_use]
    pub fn run(cri: &'a Cri, name: &str, namespace: &str, uid: &str, cgroup_parent: &str) -> Self {
        Self::run_on(
            cri,
            [name, namespace, uid, cgroup_parent],
            NamespaceMode::Node,
        )
    }

    /// As [`Pod::run`], in a network namespace of its own (the runtime's CNI network: see
    /// `Containerd::start_with_pod_network`).
    #[must_use]
    pub fn run_in_own_network(
        cri: &'a Cri,
        name: &str,
        namespace: &str,
        uid: &str,
        cgroup_parent: &str,
    ) -> Self {
        Self::run_on(
            cri,
            [name, namespace, uid, cgroup_parent],
            NamespaceMode::Pod,
        )
    }

    /// `RunPodSandbox` of pod `[name, namespace, uid, cgroup_parent]` on `network`.
    fn run_on(cri: &'a Cri, pod: [&str; 4], network: NamespaceMode) -> Self {
        let [name, namespace, uid, cgroup_parent] = pod;
        let namespace_options = NamespaceOption {
            network: network.into(),
            // The kubelet's default: one PID namespace per container.
            pid: NamespaceMode::Container.into(),
            ipc: NamespaceMode::Pod.into(),
            ..NamespaceOption::default()
        };
        let config = PodSandboxConfig {
            labels: kubelet_labels(name, namespace, uid, None),
            metadata: Some(PodSandboxMetadata {
                name: name.to_owned(),
                uid: uid.to_owned(),
                namespace: namespace.to_owned(),
                attempt: 0,
            }),
            hostname: String::new(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: cgroup_parent.to_owned(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(namespace_options),
                    ..LinuxSandboxSecurityContext::default()
                }),
                ..LinuxPodSandboxConfig::default()
            }),
            ..PodSandboxConfig::default()
        };
        let request = RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        };
        let id = match cri.call("RunPodSandbox", |mut c| async move {
            c.run_pod_sandbox(request).await
        }) {
            Ok(response) => response.pod_sandbox_id,
            Err(e) => {
                // runc may have made the pod's cgroup before failing.
                super::containerd::remove_cgroup_tree(cgroup_parent);
                panic!("{e}");
            }
        };
        Self {
            cri,
            id,
            config,
            removed: false,
        }
    }

    /// The pod's IP address (`PodSandboxStatus`), `None` on the host's network.
    #[must_use]
    pub fn ip(&self) -> Option<String> {
        let request = PodSandboxStatusRequest {
            pod_sandbox_id: self.id.clone(),
            verbose: false,
        };
        self.cri
            .call("PodSandboxStatus", |mut c| async move {
                c.pod_sandbox_status(request).await
            })
            .unwrap_or_else(|e| panic!("{e}"))
            .status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .filter(|ip| !ip.is_empty())
    }

    /// The sandbox (pause) container's id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The pod's `cgroup_parent`.
    #[must_use]
    pub fn cgroup_parent(&self) -> &str {
        self.config
            .linux
            .as_ref()
            .map_or("", |l| l.cgroup_parent.as_str())
    }

    /// `CreateContainer` + `StartContainer` of container `name` from `image` running
    /// `command`; returns its id.
    pub fn start_container(&self, name: &str, image: &str, command: &[&str]) -> String {
        let metadata = self
            .config
            .metadata
            .clone()
            .expect("a pod config has metadata");
        let namespace_options = self
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone());
        let request = CreateContainerRequest {
            pod_sandbox_id: self.id.clone(),
            config: Some(ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: name.to_owned(),
                    attempt: 0,
                }),
                image: Some(ImageSpec {
                    image: image.to_owned(),
                    annotations: HashMap::new(),
                    ..ImageSpec::default()
                }),
                command: command.iter().map(|&a| a.to_owned()).collect(),
                labels: kubelet_labels(
                    &metadata.name,
                    &metadata.namespace,
                    &metadata.uid,
                    Some(name),
                ),
                linux: Some(LinuxContainerConfig {
                    resources: None,
                    security_context: Some(LinuxContainerSecurityContext {
                        namespace_options,
                        ..LinuxContainerSecurityContext::default()
                    }),
                }),
                ..ContainerConfig::default()
            }),
            sandbox_config: Some(self.config.clone()),
        };
        let id = self
            .cri
            .call("CreateContainer", |mut c| async move {
                c.create_container(request).await
            })
            .unwrap_or_else(|e| panic!("{e}"))
            .container_id;
        let start = StartContainerRequest {
            container_id: id.clone(),
        };
        self.cri
            .call("StartContainer", |mut c| async move {
                c.start_container(start).await
            })
            .unwrap_or_else(|e| panic!("{e}"));
        id
    }

    /// Runs init container `name` as the kubelet does: created and started like the others
    /// (same labels; CRI has no init flag), then waited for until it exited with status 0.
    /// Returns its id.
    pub fn run_init_container(&self, name: &str, image: &str, command: &[&str]) -> String {
        let id = self.start_container(name, image, command);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let request = ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            };
            let status = self
                .cri
                .call("ContainerStatus", |mut c| async move {
                    c.container_status(request).await
                })
                .unwrap_or_else(|e| panic!("{e}"))
                .status
                .expect("a container status");
            if status.state == i32::from(ContainerState::ContainerExited) {
                assert_eq!(
                    status.exit_code, 0,
                    "init container {name} failed: {status:?}"
                );
                return id;
            }
            assert!(
                Instant::now() < deadline,
                "init container {name} still {:?} after {READY_TIMEOUT:?}",
                status.state
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `StopPodSandbox` + `RemovePodSandbox` (which stop and remove its containers too),
    /// then removes the pod's cgroup directory; panics when a call fails.
    pub fn remove(&mut self) {
        if let Err(e) = self.try_remove() {
            panic!("{e}");
        }
    }

    fn try_remove(&mut self) -> Result<(), String> {
        if self.removed {
            return Ok(());
        }
        let stop = StopPodSandboxRequest {
            pod_sandbox_id: self.id.clone(),
        };
        self.cri.call("StopPodSandbox", |mut c| async move {
            c.stop_pod_sandbox(stop).await
        })?;
        let remove = RemovePodSandboxRequest {
            pod_sandbox_id: self.id.clone(),
        };
        self.cri.call("RemovePodSandbox", |mut c| async move {
            c.remove_pod_sandbox(remove).await
        })?;
        self.removed = true;
        // runc removed the containers' cgroups; the pod's own directory is the kubelet's
        // to remove, so here the test's.
        super::containerd::remove_cgroup_tree(self.cgroup_parent());
        Ok(())
    }
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        if !super::containerd::accepts(&self.cri.socket) {
            // The runtime is down: the private containerd's guard removes what is left.
            return;
        }
        if let Err(e) = self.try_remove() {
            eprintln!("warning: removing pod sandbox {}: {e}", self.id);
        }
    }
}

/// The labels the kubelet gives a pod's sandbox (`container` `None`) and its containers.
fn kubelet_labels(
    pod: &str,
    namespace: &str,
    uid: &str,
    container: Option<&str>,
) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = [
        ("io.kubernetes.pod.name", pod),
        ("io.kubernetes.pod.namespace", namespace),
        ("io.kubernetes.pod.uid", uid),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if let Some(container) = container {
        labels.insert(
            "io.kubernetes.container.name".to_owned(),
            container.to_owned(),
        );
    }
    labels
}

/// A pod UID (a random-looking UUID, unique to this process and call) for a test pod.
#[must_use]
pub fn pod_uid() -> String {
    let serial = super::next_serial();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        std::process::id(),
        serial & 0xffff,
        (nanos >> 12) & 0xfff,
        nanos & 0xfff,
        (u64::from(nanos) << 16) | u64::try_from(serial & 0xffff).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::pod_uid;

    #[test]
    fn pod_uids_are_distinct_uuids() {
        let (a, b) = (pod_uid(), pod_uid());
        assert_ne!(a, b);
        for uid in [a, b] {
            let groups: Vec<usize> = uid.split('-').map(str::len).collect();
            assert_eq!(groups, [8, 4, 4, 4, 12], "{uid}");
            assert!(
                uid.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()),
                "{uid}"
            );
        }
    }
}
