//! The deployment files as data: `deploy/kubernetes/daemonset.yaml` read through python3's
//! `yaml` module (Debian's `python3-yaml`, installed by `cargo xtask test`; the workspace takes
//! no YAML crate for one test), and what `docker run` needs to start a container as its
//! manifest says.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::Value;

/// `deploy/kubernetes/daemonset.yaml` in the workspace.
#[must_use]
pub fn daemonset_path() -> PathBuf {
    super::workspace_root().join("deploy/kubernetes/daemonset.yaml")
}

/// Whether python3 with its `yaml` module runs here.
#[must_use]
pub fn yaml_reader_available() -> bool {
    Command::new("python3")
        .args(["-c", "import yaml"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Every document of the YAML file `path`, as JSON values; panics when it does not parse.
#[must_use]
pub fn read_yaml(path: &Path) -> Vec<Value> {
    const TO_JSON: &str = "import json, sys, yaml; json.dump(list(yaml.safe_load_all(open(sys.argv[1]))), sys.stdout)";
    let output = Command::new("python3")
        .args(["-c", TO_JSON])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("running python3");
    assert!(
        output.status.success(),
        "{} is not valid YAML: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let documents: Value = serde_json::from_slice(&output.stdout).expect("python3 printed JSON");
    documents.as_array().expect("a list of documents").clone()
}

/// The one document of `kind` in `documents`; panics unless there is exactly one.
#[must_use]
pub fn document<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    let mut found = documents.iter().filter(|d| d["kind"] == kind);
    let first = found
        .next()
        .unwrap_or_else(|| panic!("no {kind} in the manifest"));
    assert!(found.next().is_none(), "more than one {kind}");
    first
}

/// One container of a pod spec as `docker run` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerRun {
    /// `docker run` options, before the image.
    pub options: Vec<String>,
    /// The image the manifest names.
    pub image: String,
    /// The container's `args` (after the image's entrypoint).
    pub args: Vec<String>,
    /// Capabilities added, as the manifest names them (`BPF`, `NET_ADMIN`, ...).
    pub cap_add: Vec<String>,
    /// Host directories of hostPath volumes by volume name, for the caller to replace.
    pub host_paths: BTreeMap<String, String>,
}

/// What to change from the manifest when starting it on a test machine: the host path of some
/// volumes (by name) and some environment values (by name). Nothing else may differ.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub host_paths: BTreeMap<String, String>,
    pub env: BTreeMap<String, String>,
}

/// The `docker run` form of container `name` of the pod template in `daemonset`: `--pid host`
/// for `hostPID`, `--user`, `--read-only`, `--security-opt no-new-privileges`, `--cap-drop`
/// and `--cap-add` from its `securityContext`, `apparmor=unconfined` when it says so, one `-v
/// host:container[:ro]` per hostPath mount, `-e` per environment value and `--memory` from
/// its memory limit. Panics on anything it cannot express (a privileged container, a volume
/// other than hostPath, an environment value from a reference), so the test never runs
/// something other than what the manifest says.
#[must_use]
pub fn docker_run(daemonset: &Value, name: &str, overrides: &Overrides) -> DockerRun {
    let pod = &daemonset["spec"]["template"]["spec"];
    let container = pod["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"));
    let mut options = Vec::new();
    if pod["hostPID"] == true {
        options.extend(["--pid".into(), "host".into()]);
    }
    let cap_add = security_options(&container["securityContext"], &mut options);
    let host_paths = volume_options(pod, container, overrides, &mut options);
    for var in container["env"].as_array().into_iter().flatten() {
        let var_name = var["name"].as_str().expect("env name");
        let value = overrides.env.get(var_name).cloned().unwrap_or_else(|| {
            var["value"]
                .as_str()
                .unwrap_or_else(|| panic!("env {var_name} has no literal value"))
                .to_owned()
        });
        options.extend(["-e".into(), format!("{var_name}={value}")]);
    }
    if let Some(limit) = container["resources"]["limits"]["memory"].as_str() {
        options.extend(["--memory".into(), quantity_bytes(limit).to_string()]);
    }
    assert!(
        container["command"].is_null(),
        "the image's entrypoint runs the daemon; give `args`"
    );
    DockerRun {
        options,
        image: container["image"].as_str().expect("image").to_owned(),
        args: strings(&container["args"]),
        cap_add,
        host_paths,
    }
}

/// Options from a container's `securityContext`; returns the added capabilities.
fn security_options(security: &Value, options: &mut Vec<String>) -> Vec<String> {
    assert_ne!(security["privileged"], true, "a privileged container");
    if let Some(uid) = security["runAsUser"].as_u64() {
        let gid = security["runAsGroup"].as_u64().unwrap_or(uid);
        options.extend(["--user".into(), format!("{uid}:{gid}")]);
    }
    if security["readOnlyRootFilesystem"] == true {
        options.push("--read-only".into());
    }
    if security["allowPrivilegeEscalation"] == false {
        options.extend(["--security-opt".into(), "no-new-privileges".into()]);
    }
    if security["appArmorProfile"]["type"] == "Unconfined" {
        options.extend(["--security-opt".into(), "apparmor=unconfined".into()]);
    }
    // Docker's default seccomp profile is the runtime default; anything else would need
    // translating.
    let seccomp = &security["seccompProfile"]["type"];
    assert!(
        seccomp.is_null() || seccomp == "RuntimeDefault",
        "seccomp profile {seccomp}"
    );
    for cap in strings(&security["capabilities"]["drop"]) {
        options.extend(["--cap-drop".into(), cap]);
    }
    let added = strings(&security["capabilities"]["add"]);
    for cap in &added {
        options.extend(["--cap-add".into(), cap.clone()]);
    }
    added
}

/// `-v` options for the container's mounts; returns each hostPath volume's host path.
fn volume_options(
    pod: &Value,
    container: &Value,
    overrides: &Overrides,
    options: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let mut host_paths = BTreeMap::new();
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        let volume_name = mount["name"].as_str().expect("mount name");
        let volume = pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == volume_name)
            .unwrap_or_else(|| panic!("no volume {volume_name}"));
        let host = volume["hostPath"]["path"]
            .as_str()
            .unwrap_or_else(|| panic!("volume {volume_name} is not a hostPath"));
        host_paths.insert(volume_name.to_owned(), host.to_owned());
        let host = overrides
            .host_paths
            .get(volume_name)
            .map_or(host, String::as_str);
        assert!(
            mount["mountPropagation"].is_null() || mount["mountPropagation"] == "None",
            "mount propagation of {volume_name}"
        );
        let target = mount["mountPath"].as_str().expect("mountPath");
        let read_only = if mount["readOnly"] == true { ":ro" } else { "" };
        options.extend(["-v".into(), format!("{host}:{target}{read_only}")]);
    }
    host_paths
}

/// A JSON array of strings as a `Vec`; null is empty.
fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

/// A Kubernetes memory quantity (`256Mi`, `1Gi`, `500M`, `1000`) in bytes.
#[must_use]
pub fn quantity_bytes(quantity: &str) -> u64 {
    const SUFFIXES: [(&str, u64); 6] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    let (digits, unit) = SUFFIXES
        .iter()
        .find_map(|(suffix, unit)| quantity.strip_suffix(suffix).map(|d| (d, *unit)))
        .unwrap_or((quantity, 1));
    digits
        .parse::<u64>()
        .unwrap_or_else(|_| panic!("memory quantity {quantity:?}"))
        * unit
}

/// The number of capability `name` (`BPF` or `CAP_BPF`), from `include/uapi/linux/capability.h`.
#[must_use]
pub fn capability_number(name: &str) -> u32 {
    const CAPABILITIES: [&str; 41] = [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    let bare = name.strip_prefix("CAP_").unwrap_or(name);
    let index = CAPABILITIES
        .iter()
        .position(|c| *c == bare)
        .unwrap_or_else(|| panic!("unknown capability {name}"));
    u32::try_from(index).expect("fewer than 2^32 capabilities")
}

#[cfg(test)]
mod tests {
    use super::{capability_number, quantity_bytes};

    #[test]
    fn reads_quantities_and_capabilities() {
        assert_eq!(quantity_bytes("256Mi"), 256 << 20);
        assert_eq!(quantity_bytes("500M"), 500_000_000);
        assert_eq!(quantity_bytes("1024"), 1024);
        assert_eq!(capability_number("CAP_BPF"), 39);
        assert_eq!(capability_number("DAC_READ_SEARCH"), 2);
        assert_eq!(capability_number("NET_ADMIN"), 12);
    }
}
