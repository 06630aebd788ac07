//! A pod's network (`GET /v1/pods/{uid}/network`, `query pod-network`) against a private
//! containerd whose CRI plugin gives pods a network namespace of their own (CNI `ptp`): the
//! daemon's counters are the pod's namespace's, read between two reads of its
//! `/proc/<pid>/net/dev`, and they grow by what the host sent to the pod's address; every
//! container of the pod (sandbox included) shares it. A pod on the host's network is said to
//! be; unknown pods are 404s, malformed UIDs 400s, and a removed pod is not found.
use std::{fs, net::UdpSocket, os::unix::fs::MetadataExt, time::Duration};

use serde_json::Value;

use super::{
    cri_pods::{cgroup_file, containerd_ready, daemon_for},
    util::wait_for,
};
use crate::support::{
    containerd::{APP_IMAGE, Containerd, pod_network_available},
    cri::{Cri, Pod, pod_uid},
    daemon::Daemon,
    require,
};

/// Longest wait for the daemon to see a pod's containers.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Datagrams the host sends to the pod, and their payload size.
const DATAGRAMS: u64 = 400;
const PAYLOAD: usize = 1000;

/// The pod's network once the daemon lists all of `containers` in it.
fn pod_network(daemon: &Daemon, uid: &str, containers: &[&str]) -> Value {
    let path = format!("/v1/pods/{uid}/network");
    wait_for(&format!("{path} to list {containers:?}"), TIMEOUT, || {
        let response = daemon.get(&path);
        let body = (response.status == 200).then(|| response.json())?;
        let listed = body["containers"].as_array()?;
        containers
            .iter()
            .all(|c| listed.iter().any(|l| l == c))
            .then_some(body)
    })
}

/// Received bytes of `interface` in `/proc/<pid>/net/dev`: the namespace of `pid`.
fn rx_bytes(pid: u32, interface: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/net/dev")).expect("net/dev");
    text.lines()
        .find_map(|line| {
            let (name, counters) = line.split_once(':')?;
            (name.trim() == interface).then(|| counters.split_whitespace().next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no {interface} in /proc/{pid}/net/dev:\n{text}"))
}

/// The first process of container cgroup `rel`.
fn first_pid(rel: &str) -> u32 {
    fs::read_to_string(cgroup_file(rel, "cgroup.procs"))
        .expect("cgroup.procs")
        .lines()
        .find_map(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no process in {rel}"))
}

fn netns_inode(pid: &str) -> u64 {
    fs::metadata(format!("/proc/{pid}/ns/net"))
        .expect("ns/net")
        .ino()
}

#[test]
fn a_pods_network_is_the_counters_of_its_own_namespace() {
    if !containerd_ready()
        || !require(
            "the CNI plugins ptp, host-local and loopback (Debian's containernetworking-plugins)",
            pod_network_available(),
        )
    {
        return;
    }
    let containerd = Containerd::start_with_pod_network();
    let daemon = daemon_for(&containerd);
    let cri = Cri::connect(containerd.socket());
    let uid = pod_uid();
    let parent = containerd.cgroup_path(&format!("kubepods/besteffort/pod{uid}"));
    let mut pod = Pod::run_in_own_network(&cri, "web-0", "collector-test", &uid, &parent);
    let app = pod.start_container("app", APP_IMAGE, &["sleep", "1000"]);
    let ip = pod.ip().expect("a pod on the CNI network has an address");
    let pid = first_pid(&format!("{parent}/{app}"));
    let inode = netns_inode(&pid.to_string());
    assert_ne!(
        inode,
        netns_inode("self"),
        "the pod has a namespace of its own"
    );

    let sandbox = pod.id().to_owned();
    let body = pod_network(&daemon, &uid, &[&sandbox, &app]);
    let before = body["network"]["interfaces"]["eth0"]["bytes_rcvd"]
        .as_u64()
        .unwrap_or_else(|| panic!("eth0's received bytes: {body}"));

    let socket = UdpSocket::bind("0.0.0.0:0").expect("a UDP socket");
    for _ in 0..DATAGRAMS {
        socket
            .send_to(&[0x5a; PAYLOAD], (ip.as_str(), 9))
            .expect("sending to the pod");
    }
    let low = rx_bytes(pid, "eth0");
    let body = pod_network(&daemon, &uid, &[&sandbox, &app]);
    let high = rx_bytes(pid, "eth0");
    println!("pod {uid} at {ip}: {body}");

    let network = &body["network"];
    let rx = network["interfaces"]["eth0"]["bytes_rcvd"]
        .as_u64()
        .expect("eth0");
    assert!((low..=high).contains(&rx), "{rx} outside [{low}, {high}]");
    let payload = DATAGRAMS * u64::try_from(PAYLOAD).expect("small");
    assert!(rx - before >= payload, "{rx} - {before} < {payload}");
    assert_eq!(network["network_isolation_group_id"], inode, "{body}");
    assert_eq!(network["using_host_network"], false, "{body}");
    assert!(network["interfaces"].get("lo").is_none(), "{body}");
    assert!(network["bytes_rcvd"].as_u64() >= Some(rx), "{body}");
    let mut both = [sandbox.clone(), app.clone()];
    both.sort();
    assert_eq!(body["containers"], serde_json::json!(both), "{body}");
    assert_eq!(
        body["namespaces"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );
    assert_eq!(body["namespaces"][0]["containers"], body["containers"]);
    assert_eq!(body["pod_name"], "web-0", "{body}");
    assert_eq!(body["namespace"], "collector-test", "{body}");
    println!(
        "eth0 received {rx} B in [{low}, {high}], {} B more than before",
        rx - before
    );

    // The same answer by the CLI, and for the UID in the systemd slice's form.
    let table = daemon.query(&["pod-network", &uid.replace('-', "_").to_uppercase()]);
    let stdout = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success(), "{stdout} {:?}", table.stderr);
    assert!(stdout.starts_with("POD"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("eth0") && l.contains(&inode.to_string())),
        "{stdout}"
    );
    print!("query pod-network:\n{stdout}");

    // A pod on the host's network beside it.
    let host_uid = pod_uid();
    let host_parent = containerd.cgroup_path(&format!("kubepods/besteffort/pod{host_uid}"));
    let host_pod = Pod::run(&cri, "host-0", "collector-test", &host_uid, &host_parent);
    let host_app = host_pod.start_container("app", APP_IMAGE, &["sleep", "1000"]);
    let body = pod_network(&daemon, &host_uid, &[host_pod.id(), &host_app]);
    assert_eq!(body["network"]["using_host_network"], true, "{body}");
    assert_eq!(
        body["network"]["network_isolation_group_id"],
        netns_inode("self"),
        "{body}"
    );

    for (path, status) in [
        (format!("/v1/pods/{}/network", pod_uid()), 404),
        ("/v1/pods/not-a-uid!/network".to_owned(), 400),
        (format!("/v1/pods/{}/network", "a".repeat(37)), 400),
        (format!("/v1/pods/{uid}/network?max_age_ms=x"), 400),
    ] {
        let response = daemon.get(&path);
        assert_eq!(response.status, status, "{path}: {}", response.body);
        assert!(response.json()["error"].is_string(), "{}", response.body);
    }

    pod.remove();
    wait_for("the removed pod to be unknown", TIMEOUT, || {
        (daemon.get(&format!("/v1/pods/{uid}/network")).status == 404).then_some(())
    });
}
