//! `deploy/grafana/collector-dashboard.json` against a real daemon: every metric its queries
//! name is one the daemon exports, and every query, with the dashboard's variables set to
//! "All", is valid `PromQL` that returns series in a real Prometheus scraping the daemon while a
//! container with a CPU quota, a memory limit and disk reads and writes runs. So the dashboard
//! cannot drift from the exposition unnoticed.
use std::{collections::BTreeSet, time::Duration};

use serde_json::Value;

use super::util::{root, wait_for};
use crate::support::{
    daemon::Daemon,
    docker::{self, Container},
    prometheus::{self, Prometheus, http_get_unix, parse_exposition},
    require,
};

/// What the dashboard's variables become in the test: every one "All" (its `allValue`), and
/// Grafana's rate interval a window that holds several of the test's 1 s scrapes.
const SUBSTITUTIONS: [(&str, &str); 6] = [
    ("$__rate_interval", "1m"),
    ("$node", ".*"),
    ("$namespace", ".*"),
    ("$pod", ".*"),
    ("$container", ".*"),
    ("$name", ".*"),
];

fn dashboard() -> Value {
    let path = crate::support::workspace_root().join("deploy/grafana/collector-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every panel query of the dashboard, by panel title.
fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().expect("a panel title");
        let targets = panel["targets"].as_array().expect("panel targets");
        assert!(!targets.is_empty(), "panel {title} has no query");
        for target in targets {
            let expr = target["expr"].as_str().expect("a target expr");
            queries.push((title.to_owned(), expr.to_owned()));
        }
    }
    queries
}

/// The series selectors of the template variables: `label_values(SELECTOR, label)`.
fn variable_selectors(dashboard: &Value) -> Vec<String> {
    dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let query = v["query"]["query"].as_str().expect("a variable query");
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .unwrap_or_else(|| panic!("variable query {query:?} is not label_values(..)"));
            let (selector, _label) = inner
                .rsplit_once(',')
                .expect("label_values(selector, label)");
            selector.trim().to_owned()
        })
        .collect()
}

/// The metric names in `expr`: its identifiers that start with `container_` or `collector_`
/// (labels and functions never do, in this dashboard).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut current = String::new();
    let mut in_string = false;
    for c in expr.chars().chain([' ']) {
        if c == '"' {
            in_string = !in_string;
        }
        if !in_string && (c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            current.push(c);
            continue;
        }
        if current.starts_with("container_") || current.starts_with("collector_") {
            names.push(current.clone());
        }
        current.clear();
    }
    names
}

fn with_variables(expr: &str) -> String {
    SUBSTITUTIONS
        .iter()
        .fold(expr.to_owned(), |e, (var, value)| e.replace(var, value))
}

#[test]
fn finds_metric_names_in_queries() {
    assert_eq!(
        metric_names(
            r#"sum by (container) (rate(container_cpu_usage_seconds_total{cpu="total", name=~"container_x"}[1m])) / collector_up"#
        ),
        ["container_cpu_usage_seconds_total", "collector_up"]
    );
    assert_eq!(
        with_variables(r#"rate(x{pod=~"$pod"}[$__rate_interval])"#),
        r#"rate(x{pod=~".*"}[1m])"#
    );
}

/// A container that has every family the dashboard draws: a CPU quota (throttling families),
/// a memory limit, and disk writes and direct reads in a bind-mounted host dir.
fn busy_container(dir: &std::path::Path) -> Container {
    let volume = format!("{}:/data", dir.display());
    Container::run_with_options(
        "collector-dashboard",
        &["--cpus", "0.5", "--memory", "64m", "-v", &volume],
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/data/f bs=1M count=4 conv=fsync \
             && dd if=/data/f of=/dev/null bs=1M iflag=direct && exec sleep 86400",
        ],
    )
}

#[test]
fn every_dashboard_query_names_exported_metrics_and_returns_series() {
    if !root()
        || !require(
            "a Docker daemon with the test image",
            docker::docker_available(),
        )
        || !require(
            "prometheus and promtool (cargo xtask test installs them)",
            prometheus::prometheus_available(),
        )
    {
        return;
    }
    let dashboard = dashboard();
    let queries = panel_queries(&dashboard);
    let selectors = variable_selectors(&dashboard);
    assert!(
        !queries.is_empty() && selectors.len() >= 4,
        "queries and variables"
    );

    let daemon = Daemon::shared();
    let dir = tempfile::tempdir().unwrap();
    let container = busy_container(dir.path());
    // The exposition, once the container's disk reads and writes are counted.
    let exported: BTreeSet<String> = wait_for(
        "the container's disk series",
        Duration::from_secs(30),
        || {
            let response = http_get_unix(daemon.socket(), "/metrics", &[]).expect("GET /metrics");
            let samples = parse_exposition(&response.text()).expect("the exposition parses");
            let has = |family: &str| {
                samples.iter().any(|s| {
                    s.name == family
                        && s.labels.get("name").map(String::as_str) == Some(container.name())
                })
            };
            (has("container_fs_reads_bytes_total") && has("container_fs_writes_bytes_total"))
                .then(|| samples.into_iter().map(|s| s.name).collect())
        },
    );
    for (title, expr) in &queries {
        for name in metric_names(expr) {
            assert!(
                exported.contains(&name),
                "panel {title:?} queries {name}, which the daemon does not export"
            );
        }
    }
    for selector in &selectors {
        for name in metric_names(selector) {
            assert!(
                exported.contains(&name),
                "a variable queries {name}, which the daemon does not export"
            );
        }
    }

    let addr = daemon.healthz()["metrics_addr"]
        .as_str()
        .expect("a metrics address")
        .to_owned();
    let prometheus = Prometheus::start(&addr, &[]);
    prometheus.wait_until_up(Duration::from_secs(30));
    let queries = queries
        .iter()
        .map(|(title, expr)| (title.clone(), with_variables(expr)))
        .chain(
            selectors
                .iter()
                .map(|s| ("variable".to_owned(), with_variables(s))),
        );
    for (title, expr) in queries {
        let samples = prometheus.wait_for(&expr, Duration::from_secs(30), |s| !s.is_empty());
        assert!(!samples.is_empty(), "panel {title:?}: {expr}");
    }
}
