//! The command line: `run` starts the daemon, `query` asks a running one over its socket.
use std::{fmt::Write as _, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand};
use hyper::Method;

use crate::{
    api::{
        PID_MAX_LIMIT, client,
        schema::{ContainerBody, ErrorBody, InodeBody, PidBody, StatsBody},
    },
    daemon::RunOptions,
};

/// Default API socket.
pub const DEFAULT_SOCKET: &str = "/run/collector/collector.sock";
/// Default metrics address (loopback: scrape it locally or through a proxy).
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9479";
/// Default Docker Engine API socket.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// Default containerd socket.
pub const DEFAULT_CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
/// Default pin directory under bpffs.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/collector";

/// Which container is a process or cgroup in, and what does each container use.
#[derive(Debug, Parser)]
#[command(name = "collector-daemon", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (as root: it loads eBPF programs and reads every process's cgroups).
    Run(RunArgs),
    /// Ask a running daemon.
    Query(QueryArgs),
}

/// `run` flags.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Unix socket to serve the API on (mode 0660).
    #[arg(long, env = "COLLECTOR_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Group that owns the socket (name or gid), so its members may query.
    #[arg(long)]
    pub socket_group: Option<String>,
    /// TCP address for /metrics and /healthz ("none" to disable).
    #[arg(long, default_value = DEFAULT_METRICS_ADDR)]
    pub metrics_addr: String,
    /// Seconds an exited process stays resolvable (marked exited).
    #[arg(long, default_value_t = 60)]
    pub exited_grace: u64,
    /// Do not load eBPF programs: answer from procfs and cgroupfs only.
    #[arg(long)]
    pub no_ebpf: bool,
    /// bpffs directory to pin the PID→cgroup map in (as `processes`), for other eBPF
    /// programs to read.
    #[arg(long, default_value = DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,
    /// Do not pin the PID→cgroup map.
    #[arg(long)]
    pub no_pin: bool,
    /// Capacity of the kernel PID→cgroup map (live processes).
    #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(1024..=4_194_304))]
    pub max_processes: u32,
    /// Size of the kernel→daemon event ring buffer in bytes (a power of two, at least one
    /// page). A burst of events larger than this while the daemon is not reading is lost,
    /// counted, and repaired by a re-scan.
    #[arg(long, default_value_t = 4 << 20, value_parser = parse_ring_buffer_bytes)]
    pub ring_buffer_bytes: u32,
    /// Capacity of the kernel's per-cgroup network counters (cgroups with traffic). Entries
    /// are allocated as cgroups show traffic, 32 bytes × possible CPUs each. Traffic of
    /// cgroups beyond it is not counted (and counted as `net_map_full`).
    #[arg(long, default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(64..=1_048_576))]
    pub net_counter_entries: u32,
    /// Capacity of the kernel's block IO counters (owning cgroup × disk pairs), allocated as
    /// they appear, 32 bytes × possible CPUs each.
    #[arg(long, default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(64..=1_048_576))]
    pub io_counter_entries: u32,
    /// Cgroups the kernel's cgroup walk records per v1 hierarchy (128 bytes each, allocated
    /// at start). A full collection reads the v1 memory, cpu, pids and cpuset values of these
    /// cgroups in the kernel, one walk per hierarchy; cgroups beyond it are read from their
    /// files (and counted as `cgroup_values_full`).
    #[arg(long, default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(64..=1_048_576))]
    pub cgroup_values_entries: u32,
    /// cgroup stats files kept open between reads (0: open each file at every read). Each
    /// costs ~5 KiB of kernel memory, charged to the daemon's cgroup; a read through a held
    /// descriptor costs 0.4–2.4 µs, opening the file afresh 7–16 µs. A container takes ~17 on
    /// a hybrid host, fewer on cgroup v2. Never more than `RLIMIT_NOFILE` leaves.
    #[arg(long, default_value_t = 32_768, value_parser = clap::value_parser!(u32).range(0..=1_048_576))]
    pub cgroup_file_cache: u32,
    /// Docker Engine API socket to read container names, images and labels from ("none":
    /// do not ask Docker). A socket that does not exist is noted once and watched for.
    #[arg(long, env = "COLLECTOR_DOCKER_SOCKET", default_value = DEFAULT_DOCKER_SOCKET)]
    pub docker_socket: String,
    /// containerd gRPC socket to read container images and labels from, every namespace
    /// ("none": do not ask containerd).
    #[arg(long, env = "COLLECTOR_CONTAINERD_SOCKET", default_value = DEFAULT_CONTAINERD_SOCKET)]
    pub containerd_socket: String,
    /// Runtime labels exported as `container_label_<name>` on the container metrics and
    /// listed in API answers (comma-separated, repeatable). Others are left out: every
    /// label on every series multiplies what Prometheus stores.
    #[arg(long, value_delimiter = ',')]
    pub container_labels: Vec<String>,
    /// procfs mount point.
    #[arg(long, default_value = "/proc", hide = true)]
    pub proc_root: PathBuf,
}

impl RunArgs {
    /// The daemon's settings.
    pub fn options(&self) -> RunOptions {
        RunOptions {
            socket: self.socket.clone(),
            socket_group: self.socket_group.clone(),
            metrics_addr: match self.metrics_addr.as_str() {
                "" | "none" => None,
                addr => Some(addr.to_owned()),
            },
            exited_grace: Duration::from_secs(self.exited_grace),
            no_ebpf: self.no_ebpf,
            pin_dir: (!self.no_pin).then(|| self.pin_dir.clone()),
            max_processes: self.max_processes,
            ring_buffer_bytes: self.ring_buffer_bytes,
            net_counter_entries: self.net_counter_entries,
            io_counter_entries: self.io_counter_entries,
            cgroup_values_entries: self.cgroup_values_entries,
            cgroup_file_cache: self.cgroup_file_cache as usize,
            proc_root: self.proc_root.clone(),
            docker_socket: socket_option(&self.docker_socket),
            containerd_socket: socket_option(&self.containerd_socket),
            container_labels: self
                .container_labels
                .iter()
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty())
                .collect(),
        }
    }
}

/// A runtime socket flag: `None` for "none" or "".
fn socket_option(raw: &str) -> Option<PathBuf> {
    match raw {
        "" | "none" => None,
        path => Some(PathBuf::from(path)),
    }
}

/// The kernel requires a ring buffer's size to be a power of two and a multiple of the page
/// size (4 KiB on every architecture this runs on).
fn parse_ring_buffer_bytes(raw: &str) -> Result<u32, String> {
    let bytes: u32 = raw.parse().map_err(|e| format!("{raw:?}: {e}"))?;
    if bytes.is_power_of_two() && bytes >= 4096 {
        Ok(bytes)
    } else {
        Err(format!("{bytes} is not a power of two of at least 4096"))
    }
}

/// `query` flags.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The daemon's socket.
    #[arg(long, env = "COLLECTOR_SOCKET", default_value = DEFAULT_SOCKET, global = true)]
    pub socket: PathBuf,
    /// Print the JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// The question.
    #[command(subcommand)]
    pub what: Query,
}

/// Questions.
#[derive(Debug, Subcommand)]
pub enum Query {
    /// Which container is this PID in.
    Pid {
        /// The PID.
        #[arg(value_parser = clap::value_parser!(u32).range(1..=i64::from(PID_MAX_LIMIT)))]
        pid: u32,
    },
    /// Which containers are these PIDs in.
    Pids {
        /// The PIDs.
        #[arg(required = true, value_parser = clap::value_parser!(u32).range(1..=i64::from(PID_MAX_LIMIT)))]
        pids: Vec<u32>,
    },
    /// Which container owns the cgroup directory with this inode (v1 or v2).
    Inode {
        /// The inode (cgroup id).
        inode: u64,
    },
    /// Which container is this command in.
    #[command(name = "self")]
    Myself,
    /// Every known container.
    Containers,
    /// What a container uses: CPU, memory, IO, PIDs, network, open files.
    Stats {
        /// The container id (full).
        id: String,
        /// Accept values cached up to this many milliseconds ago (0: read now).
        #[arg(long)]
        max_age_ms: Option<u64>,
    },
}

/// `text` percent-encoded as one URI path segment (all but RFC 3986's unreserved
/// characters), so that whatever the user typed reaches the daemon, which says what is wrong
/// with it, instead of failing to form a request.
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Runs `query`: prints the answer, and returns failure for error answers.
pub async fn query(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let (method, path, body) = match &args.what {
        Query::Pid { pid } => (Method::GET, format!("/v1/pid/{pid}"), None),
        Query::Pids { pids } => (
            Method::POST,
            "/v1/pids".to_owned(),
            Some(serde_json::to_vec(pids)?),
        ),
        Query::Inode { inode } => (Method::GET, format!("/v1/inode/{inode}"), None),
        Query::Myself => (Method::GET, "/v1/self".to_owned(), None),
        Query::Containers => (Method::GET, "/v1/containers".to_owned(), None),
        Query::Stats { id, max_age_ms } => {
            let query = max_age_ms.map_or_else(String::new, |ms| format!("?max_age_ms={ms}"));
            (
                Method::GET,
                format!("/v1/containers/{}/stats{query}", path_segment(id)),
                None,
            )
        }
    };
    let answer = client::request(&args.socket, method, &path, body).await?;
    if !answer.status.is_success() {
        let message = serde_json::from_slice::<ErrorBody>(&answer.body).map_or_else(
            |_| String::from_utf8_lossy(&answer.body).into_owned(),
            |e| e.error,
        );
        if args.json {
            println!("{}", String::from_utf8_lossy(&answer.body));
        }
        eprintln!("error ({}): {message}", answer.status);
        return Ok(ExitCode::FAILURE);
    }
    if args.json {
        println!("{}", String::from_utf8_lossy(&answer.body));
        return Ok(ExitCode::SUCCESS);
    }
    let table = match &args.what {
        Query::Pid { .. } | Query::Myself => {
            pid_table(&[serde_json::from_slice::<PidBody>(&answer.body)?])
        }
        Query::Pids { .. } => pid_table(&serde_json::from_slice::<Vec<PidBody>>(&answer.body)?),
        Query::Inode { .. } => inode_table(&serde_json::from_slice::<InodeBody>(&answer.body)?),
        Query::Containers => {
            container_table(&serde_json::from_slice::<Vec<ContainerBody>>(&answer.body)?)
        }
        Query::Stats { .. } => stats_table(&serde_json::from_slice::<StatsBody>(&answer.body)?),
    };
    print!("{table}");
    Ok(ExitCode::SUCCESS)
}

/// Docker's short form, for tables (JSON has the full id).
fn short(id: Option<&str>) -> String {
    id.map_or_else(|| "-".to_owned(), |id| id.chars().take(12).collect())
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

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

/// Logs to stderr, filtered by `RUST_LOG` (default `info`). Records of the `log` crate
/// (aya-log's kernel-side messages among them) are forwarded to `tracing`: this must happen
/// before aya-log's reader is created, as it captures the `log` logger then.
pub fn init_logging() -> anyhow::Result<()> {
    use anyhow::Context as _;
    tracing_log::LogTracer::init().context("installing the log→tracing bridge")?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init()
        .map_err(|e| anyhow::anyhow!("installing the tracing subscriber: {e}"))
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
    fn path_segments_are_percent_encoded() {
        assert_eq!(path_segment("3f4b-a_b.c~"), "3f4b-a_b.c~");
        assert_eq!(path_segment("bad id!"), "bad%20id%21");
        assert_eq!(path_segment("a/../b?x#y"), "a%2F..%2Fb%3Fx%23y");
        assert_eq!(path_segment("é"), "%C3%A9");
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

    #[test]
    fn cli_rejects_out_of_range_pids() {
        assert!(Cli::try_parse_from(["collector-daemon", "query", "pid", "0"]).is_err());
        assert!(Cli::try_parse_from(["collector-daemon", "query", "pid", "abc"]).is_err());
        assert!(Cli::try_parse_from(["collector-daemon", "query", "pid", "7"]).is_ok());
        assert!(Cli::try_parse_from(["collector-daemon", "query", "--json", "self"]).is_ok());
    }

    #[test]
    fn ring_buffer_sizes_are_powers_of_two_of_a_page_or_more() {
        assert_eq!(parse_ring_buffer_bytes("4096"), Ok(4096));
        assert_eq!(parse_ring_buffer_bytes("4194304"), Ok(4_194_304));
        for bad in ["0", "2048", "5000", "-1", "x"] {
            assert!(parse_ring_buffer_bytes(bad).is_err(), "{bad}");
        }
    }
}
