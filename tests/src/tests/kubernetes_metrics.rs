//! A Kubernetes pod as the kubernetes-mixin sees it: a pod created through containerd's CRI API
//! (sandbox + app container, the labels a kubelet sets), its series scraped by a real
//! Prometheus, and the mixin's recording rules (`rules/apps.libsonnet`, with the job selector
//! set to this scrape's job) evaluated over them. kube-state-metrics does not run here, so a
//! rule stands in for its `kube_pod_info` series of the test pod, node label included.
use std::time::Duration;

use super::util::{listed_container, root, wait_for};
use crate::support::{
    containerd::{APP_IMAGE, Containerd, SANDBOX_IMAGE, containerd_available},
    cri::{Cri, Pod, pod_uid},
    daemon::Daemon,
    prometheus::{Prometheus, Sample, prometheus_available},
    require,
};

const POD: &str = "web-0";
const NAMESPACE: &str = "collector-test";
const CONTAINER: &str = "app";
const NODE: &str = "test-node";
/// Longest wait for a series or rule result to show up.
const TIMEOUT: Duration = Duration::from_mins(1);

/// The kubernetes-mixin's recording rules for container CPU and working set, as in
/// `rules/apps.libsonnet` (`cadvisorSelector` = this scrape's job), and the stand-in for
/// kube-state-metrics' `kube_pod_info`.
fn mixin_rules() -> String {
    format!(
        r#"groups:
  - name: kube-state-metrics-stand-in
    rules:
      - record: kube_pod_info
        expr: label_replace(label_replace(label_replace(vector(1), "namespace", "{NAMESPACE}", "", ""), "pod", "{POD}", "", ""), "node", "{NODE}", "", "")
  - name: k8s.rules.container_cpu_usage_seconds_total
    rules:
      - record: node_namespace_pod_container:container_cpu_usage_seconds_total:sum_irate
        expr: |
          sum by (cluster, namespace, pod, container) (
            irate(container_cpu_usage_seconds_total{{job="collector", image!=""}}[5m])
          ) * on (cluster, namespace, pod) group_left(node) topk by (cluster, namespace, pod) (
            1, max by (cluster, namespace, pod, node) (kube_pod_info{{node!=""}})
          )
  - name: k8s.rules.container_memory_working_set_bytes
    rules:
      - record: node_namespace_pod_container:container_memory_working_set_bytes
        expr: |
          container_memory_working_set_bytes{{job="collector", image!=""}}
          * on (cluster, namespace, pod) group_left(node) topk by (cluster, namespace, pod) (1,
            max by (cluster, namespace, pod, node) (kube_pod_info{{node!=""}})
          )
"#
    )
}

fn label<'a>(sample: &'a Sample, key: &str) -> &'a str {
    sample.labels.get(key).map_or("", String::as_str)
}

#[test]
fn a_cri_pod_gets_kubelet_labels_and_the_mixin_recording_rules_evaluate_for_it() {
    if !(root()
        && require(
            "containerd, ctr, runc and busybox-static (Debian packages)",
            containerd_available(),
        )
        && require(
            "prometheus (cargo xtask test installs Debian's prometheus)",
            prometheus_available(),
        ))
    {
        return;
    }
    let containerd = Containerd::start();
    let socket = containerd.socket().to_str().expect("temp paths are UTF-8");
    let daemon = Daemon::start(&[
        "--metrics-addr",
        "127.0.0.1:0",
        "--containerd-socket",
        socket,
        "--docker-socket",
        "none",
    ]);
    let health = daemon.healthz();
    let addr = health["metrics_addr"]
        .as_str()
        .unwrap_or_else(|| panic!("no metrics_addr in /healthz: {health}"))
        .to_owned();
    let prometheus = Prometheus::start(&addr, &[&mixin_rules()]);

    let cri = Cri::connect(containerd.socket());
    let uid = pod_uid();
    let parent = containerd.cgroup_path(&format!("kubepods/besteffort/pod{uid}"));
    let pod = Pod::run(&cri, POD, NAMESPACE, &uid, &parent);
    // Light, steady work: a short busy loop, then a nap.
    let app = pod.start_container(
        CONTAINER,
        APP_IMAGE,
        &[
            "sh",
            "-c",
            "while :; do i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done; sleep 0.2; done",
        ],
    );
    let sandbox = pod.id().to_owned();
    wait_for(
        "the daemon to know the app container's pod",
        TIMEOUT,
        || listed_container(&daemon, &app).filter(|c| c["pod_name"] == POD),
    );

    // The app container: kubelet's labels, cgroup path as `id`, containerd's id as `name`.
    let selector =
        format!("container_cpu_usage_seconds_total{{namespace=\"{NAMESPACE}\",pod=\"{POD}\"}}");
    let series = prometheus.wait_for(&selector, TIMEOUT, |s| s.len() >= 2);
    let app_series: Vec<&Sample> = series.iter().filter(|s| label(s, "name") == app).collect();
    assert_eq!(app_series.len(), 1, "{series:?}");
    let app_series = app_series[0];
    assert_eq!(label(app_series, "container"), CONTAINER, "{app_series:?}");
    assert_eq!(label(app_series, "image"), APP_IMAGE, "{app_series:?}");
    assert_eq!(label(app_series, "cpu"), "total", "{app_series:?}");
    assert!(
        label(app_series, "id").ends_with(&format!("pod{uid}/{app}")),
        "{app_series:?}"
    );
    // The sandbox: the pod's labels, no container name, the pause image (as kubelet shows it).
    let sandbox_series: Vec<&Sample> = series
        .iter()
        .filter(|s| label(s, "name") == sandbox)
        .collect();
    assert_eq!(sandbox_series.len(), 1, "{series:?}");
    assert_eq!(label(sandbox_series[0], "container"), "", "{series:?}");
    assert_eq!(
        label(sandbox_series[0], "image"),
        SANDBOX_IMAGE,
        "{series:?}"
    );
    assert_eq!(
        series.len(),
        2,
        "one series per container of the pod: {series:?}"
    );

    // The mixin's rules give the app container a value, joined to its node.
    let cpu_rule = format!(
        "node_namespace_pod_container:container_cpu_usage_seconds_total:sum_irate\
         {{namespace=\"{NAMESPACE}\",pod=\"{POD}\",container=\"{CONTAINER}\"}}"
    );
    let cpu = prometheus.wait_for(&cpu_rule, TIMEOUT, |s| s.len() == 1 && s[0].value > 0.0);
    assert_eq!(label(&cpu[0], "node"), NODE, "{cpu:?}");
    assert!(cpu[0].value < 2.0, "more CPU than the machine has: {cpu:?}");
    let memory_rule = format!(
        "node_namespace_pod_container:container_memory_working_set_bytes\
         {{namespace=\"{NAMESPACE}\",pod=\"{POD}\",container=\"{CONTAINER}\"}}"
    );
    let memory = prometheus.wait_for(&memory_rule, TIMEOUT, |s| s.len() == 1 && s[0].value > 0.0);
    assert_eq!(label(&memory[0], "node"), NODE, "{memory:?}");
    // The sandbox has an image, so the rules count it too, with container="" as on a kubelet.
    let sandbox_rule = format!(
        "node_namespace_pod_container:container_memory_working_set_bytes\
         {{namespace=\"{NAMESPACE}\",pod=\"{POD}\",container=\"\"}}"
    );
    prometheus.wait_for(&sandbox_rule, TIMEOUT, |s| s.len() == 1);
}
