//! `query`'s answers as text tables: one aligned row per answer, `-` for what is unknown.
use std::fmt::Write as _;

use super::args::Query;
use crate::api::{
    pods::{PodBody, PodNetworkBody},
    schema::{ContainerBody, InodeBody, PidBody, StatsBody},
};

/// The table of a successful answer to `what` (its JSON `body`).
pub(super) fn answer_table(what: &Query, body: &[u8]) -> serde_json::Result<String> {
    Ok(match what {
        Query::Pid { .. } | Query::Myself => pid_table(&[serde_json::from_slice::<PidBody>(body)?]),
        Query::Pids { .. } => pid_table(&serde_json::from_slice::<Vec<PidBody>>(body)?),
        Query::Inode { .. } => inode_table(&serde_json::from_slice::<InodeBody>(body)?),
        Query::Containers => container_table(&serde_json::from_slice::<Vec<ContainerBody>>(body)?),
        Query::Pod { .. } => pod_table(&serde_json::from_slice::<PodBody>(body)?),
        Query::PodNetwork { .. } => {
            pod_network_table(&serde_json::from_slice::<PodNetworkBody>(body)?)
        }
        Query::Stats { .. } => stats_table(&serde_json::from_slice::<StatsBody>(body)?),
    })
}

/// Docker's short form, for tables (JSON has the full id).
fn short(id: Option<&str>) -> String {
    id.map_or_else(|| "-".to_owned(), |id| id.chars().take(12).collect())
}

/// The value, or `-` when unknown.
fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// `header` and `rows` in columns as wide as their widest cell, two spaces apart (the last
/// column unpadded).
fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<w$}  ");
            }
        }
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// One row per PID answer; an answer with an error shows it in the `CGROUP` column.
fn pid_table(bodies: &[PidBody]) -> String {
    let rows: Vec<Vec<String>> = bodies
        .iter()
        .map(|b| {
            vec![
                b.pid.to_string(),
                if b.error.is_some() {
                    "?".to_owned()
                } else {
                    short(b.container_id.as_deref())
                },
                or_dash(b.runtime.as_deref()),
                or_dash(b.comm.as_deref()),
                or_dash(b.exited.map(|e| if e { "yes" } else { "no" })),
                or_dash(b.source.as_deref()),
                b.error
                    .clone()
                    .unwrap_or_else(|| or_dash(b.cgroup_path.as_deref())),
            ]
        })
        .collect();
    render(
        &[
            "PID",
            "CONTAINER",
            "RUNTIME",
            "COMM",
            "EXITED",
            "SOURCE",
            "CGROUP",
        ],
        &rows,
    )
}

/// The one row of an inode answer.
fn inode_table(body: &InodeBody) -> String {
    render(
        &["INODE", "CONTAINER", "RUNTIME", "REMOVED", "CGROUP"],
        &[vec![
            body.inode.to_string(),
            short(body.container_id.as_deref()),
            or_dash(body.runtime.as_deref()),
            if body.removed { "yes" } else { "no" }.to_owned(),
            body.cgroup_path.clone(),
        ]],
    )
}

/// The one row of a pod lookup.
fn pod_table(body: &PodBody) -> String {
    render(
        &["POD", "NAMESPACE", "CONTAINER", "ID", "RUNTIME", "SOURCE"],
        &[vec![
            body.meta
                .pod_name
                .clone()
                .unwrap_or_else(|| body.pod_uid.clone()),
            or_dash(body.meta.namespace.as_deref()),
            body.container.clone(),
            body.container_id.clone(),
            or_dash(body.runtime.as_deref()),
            body.source.clone(),
        ]],
    )
}

/// One row per interface of each of the pod's network namespaces, then one with the
/// namespace's totals.
fn pod_network_table(body: &PodNetworkBody) -> String {
    let pod = body
        .pod_name
        .clone()
        .unwrap_or_else(|| body.pod_uid.clone());
    let mut rows = Vec::new();
    for namespace in &body.namespaces {
        let n = &namespace.network;
        let row = |interface: &str, rx: Option<u64>, tx: Option<u64>, rxp, txp| {
            vec![
                pod.clone(),
                or_dash(n.network_isolation_group_id),
                or_dash(n.using_host_network),
                interface.to_owned(),
                or_dash(rx),
                or_dash(tx),
                or_dash(rxp),
                or_dash(txp),
            ]
        };
        for (name, i) in n.interfaces.iter().flatten() {
            rows.push(row(
                name,
                i.bytes_rcvd,
                i.bytes_sent,
                i.packets_rcvd,
                i.packets_sent,
            ));
        }
        rows.push(row(
            "total",
            n.bytes_rcvd,
            n.bytes_sent,
            n.packets_rcvd,
            n.packets_sent,
        ));
    }
    render(
        &[
            "POD",
            "NETNS",
            "HOST_NETWORK",
            "INTERFACE",
            "RX_BYTES",
            "TX_BYTES",
            "RX_PACKETS",
            "TX_PACKETS",
        ],
        &rows,
    )
}

/// One row per container.
fn container_table(bodies: &[ContainerBody]) -> String {
    let rows: Vec<Vec<String>> = bodies
        .iter()
        .map(|b| {
            vec![
                short(Some(&b.container_id)),
                or_dash(b.runtime.as_deref()),
                or_dash(b.meta.name.as_deref()),
                or_dash(b.meta.image.as_deref()),
                b.pids.len().to_string(),
                or_dash(pod_column(b)),
                or_dash(b.cgroup_path.as_deref()),
            ]
        })
        .collect();
    render(
        &[
            "CONTAINER",
            "RUNTIME",
            "NAME",
            "IMAGE",
            "PIDS",
            "POD",
            "CGROUP",
        ],
        &rows,
    )
}

/// The pod's name when a runtime named it, else the pod UID from the cgroup path.
fn pod_column(b: &ContainerBody) -> Option<&str> {
    b.meta.pod_name.as_deref().or(b.pod_uid.as_deref())
}

/// One `NAME  VALUE  SOURCE` row per stat, in the JSON's names (nested ones dotted).
fn stats_table(body: &StatsBody) -> String {
    let mut rows: Vec<Vec<String>> = vec![vec![
        "container_id".to_owned(),
        body.container_id.clone(),
        String::new(),
    ]];
    let json = serde_json::to_value(body).unwrap_or_default();
    let sections = [
        "timestamp",
        "cpu",
        "memory",
        "io",
        "pid",
        "network",
        "open_files",
    ];
    for section in sections {
        let source = body.full.sources.get(section).cloned().unwrap_or_default();
        flatten_rows(section, &json[section], &source, &mut rows);
    }
    render(&["STAT", "VALUE", "SOURCE"], &rows)
}

/// One row per leaf of `value`, named by its path from `name` (`cpu.total`).
fn flatten_rows(name: &str, value: &serde_json::Value, source: &str, rows: &mut Vec<Vec<String>>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                flatten_rows(&format!("{name}.{key}"), inner, source, rows);
            }
        }
        serde_json::Value::Null => {
            rows.push(vec![name.to_owned(), "-".to_owned(), source.to_owned()]);
        }
        serde_json::Value::String(s) => {
            rows.push(vec![name.to_owned(), s.clone(), source.to_owned()]);
        }
        other => rows.push(vec![name.to_owned(), other.to_string(), source.to_owned()]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_network_table_has_a_row_per_interface_and_the_totals() {
        let json = serde_json::json!({
            "pod_uid": "0c5b1f6e-1d2a-4e0b-8f00-1234567890ab",
            "pod_name": "web-0",
            "namespace": "shop",
            "containers": ["aa", "bb"],
            "network": null,
            "namespaces": [{
                "containers": ["aa", "bb"],
                "network": {
                    "timestamp": null,
                    "bytes_sent": 10, "bytes_rcvd": 20, "packets_sent": 1, "packets_rcvd": 2,
                    "interfaces": {"eth0": {"bytes_sent": 10, "bytes_rcvd": 20,
                                            "packets_sent": 1, "packets_rcvd": null}},
                    "network_isolation_group_id": 4_026_532_000_u64,
                    "using_host_network": false
                }
            }]
        });
        let body: PodNetworkBody = serde_json::from_value(json).unwrap();
        let table = pod_network_table(&body);
        let rows: Vec<Vec<&str>> = table
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows.len(), 3, "{table}");
        assert_eq!(
            rows[1],
            ["web-0", "4026532000", "false", "eth0", "20", "10", "-", "1"]
        );
        assert_eq!(
            rows[2],
            [
                "web-0",
                "4026532000",
                "false",
                "total",
                "20",
                "10",
                "2",
                "1"
            ]
        );
    }

    #[test]
    fn stats_table_has_a_row_per_stat_with_its_source() {
        let json = serde_json::json!({
            "container_id": "ab",
            "runtime": "docker",
            "timestamp": "2026-11-26T00:00:00.000000000Z",
            "cpu": {"total": 5, "limit": 50.0, "defaulted_limit": false},
            "memory": null,
            "io": {"devices": {"vda": {"write_bytes": 7}}},
            "pid": null,
            "network": null,
            "open_files": 18,
            "sources": {"cpu": "system", "io": "ebpf", "open_files": "system"},
            "errors": {}
        });
        let body: StatsBody = serde_json::from_value(json).unwrap();
        let table = stats_table(&body);
        let rows: Vec<Vec<&str>> = table
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows[0], ["STAT", "VALUE", "SOURCE"]);
        assert!(rows.contains(&vec!["container_id", "ab"]), "{table}");
        assert!(rows.contains(&vec!["cpu.total", "5", "system"]), "{table}");
        assert!(
            rows.contains(&vec!["cpu.limit", "50.0", "system"]),
            "{table}"
        );
        assert!(rows.contains(&vec!["cpu.user", "-", "system"]), "{table}");
        assert!(
            rows.contains(&vec!["io.devices.vda.write_bytes", "7", "ebpf"]),
            "{table}"
        );
        assert!(rows.contains(&vec!["memory", "-"]), "{table}");
        assert!(
            rows.contains(&vec!["open_files", "18", "system"]),
            "{table}"
        );
    }

    #[test]
    fn tables_align_columns_and_show_dashes_for_null() {
        let body = PidBody {
            pid: 42,
            container_id: None,
            runtime: None,
            pod_uid: None,
            cgroup_id: Some(1),
            cgroup_path: Some("/".into()),
            cgroup_hierarchy_id: Some(0),
            exited: Some(false),
            source: Some("ebpf".into()),
            start_time_ns: Some(1),
            comm: Some("sh".into()),
            meta: crate::api::schema::RuntimeMetaBody::default(),
            error: None,
        };
        let table = pid_table(&[body]);
        assert_eq!(
            table,
            "PID  CONTAINER  RUNTIME  COMM  EXITED  SOURCE  CGROUP\n42   -          -        sh    no      ebpf    /\n"
        );
    }
}
