//! The cAdvisor-compatible container families on `/metrics`, seen the way users see them:
//! scraped by a real Prometheus (2.42, `honor_labels: true`, every second) and queried with
//! `PromQL`, or scraped directly and read line by line, against real Docker containers doing
//! known work. Values agree with the kernel's own counters or with the stats API read at the
//! same moment; series live exactly as long as their container (no explicit timestamps, so
//! Prometheus marks them stale at once); the exposition is `promtool check metrics` clean; the
//! format follows `Accept` and the compression `Accept-Encoding`.
use std::{
    collections::{BTreeMap, HashMap},
    fs,
    io::Write as _,
    path::PathBuf,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{
    stats::stats,
    util::{root, wait_for},
};
use crate::support::{
    daemon::Daemon,
    docker::{self, Container},
    prometheus::{
        ExposedSample, HttpResponse, Prometheus, Sample, http_get, http_get_unix, parse_exposition,
        prometheus_available, promtool_check_metrics,
    },
    require,
};

const MIB: u64 = 1 << 20;

/// What Prometheus 2.42 sends as `Accept` when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
    application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const TEXT_0_0_4: &str = "text/plain; version=0.0.4";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0";

/// Root, and Debian's prometheus (`cargo xtask test` installs it).
fn prometheus_ready() -> bool {
    root()
        && require(
            "prometheus and promtool (cargo xtask test installs Debian's prometheus)",
            prometheus_available(),
        )
}

/// Root, prometheus, and a Docker daemon with the test image.
fn all_ready() -> bool {
    prometheus_ready()
        && require(
            "a running Docker daemon with the test image (cargo xtask test starts one)",
            docker::docker_available(),
        )
}

/// A daemon of this test's own, serving `/metrics` on a port the kernel chose.
fn start_daemon() -> Daemon {
    Daemon::start(&["--metrics-addr", "127.0.0.1:0"])
}

/// The daemon's bound metrics address, from `/healthz`.
fn metrics_addr(daemon: &Daemon) -> String {
    let health = daemon.healthz();
    health["metrics_addr"]
        .as_str()
        .unwrap_or_else(|| panic!("no metrics_addr in /healthz: {health}"))
        .to_owned()
}

/// `GET /metrics` on the metrics address asking for text format 0.0.4 (what `promtool`
/// reads), asserting 200 and that format; the body.
fn scrape(addr: &str) -> String {
    let response = get_metrics(addr, &[("Accept", "text/plain; version=0.0.4")]);
    assert_eq!(response.status, 200, "GET /metrics: {}", response.text());
    let content_type = response.header("Content-Type").unwrap_or_default();
    assert!(
        content_type.starts_with(TEXT_0_0_4),
        "asked for text 0.0.4, got Content-Type {content_type:?}"
    );
    response.text()
}

fn get_metrics(addr: &str, headers: &[(&str, &str)]) -> HttpResponse {
    http_get(addr, "/metrics", headers).unwrap_or_else(|e| panic!("GET /metrics on {addr}: {e}"))
}

/// The samples of `family` whose `id` (the cgroup path) is container `id`'s.
fn series_of<'a>(samples: &'a [ExposedSample], family: &str, id: &str) -> Vec<&'a ExposedSample> {
    samples
        .iter()
        .filter(|s| s.name == family && s.labels.get("id").is_some_and(|v| v.contains(id)))
        .collect()
}

/// The one value of a query that sums to a single element; `None` when the result is empty
/// (no such series yet).
fn single(samples: &[Sample], expr: &str) -> Option<f64> {
    assert!(
        samples.len() <= 1,
        "{expr} should give at most one element: {samples:?}"
    );
    samples.first().map(|s| s.value)
}

/// The number at JSON `pointer`; panics naming it when absent.
#[expect(
    clippy::cast_precision_loss,
    reason = "counters compared with Prometheus floats stay far below 2^52"
)]
fn number_at(value: &Value, pointer: &str) -> f64 {
    value
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} is not a number in {value}")) as f64
}

/// Nanoseconds `pid` has run on a CPU (the first field of `/proc/<pid>/schedstat`).
fn cpu_ns(pid: u32) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/schedstat: {e}"));
    text.split_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("/proc/{pid}/schedstat: {text:?}"))
}

/// The window of the rate queries: 20 scrapes, long enough to smooth a busy 2-CPU machine's
/// scheduling noise and short enough to fill quickly.
const RATE_WINDOW_SECS: u64 = 20;

/// The kubernetes-mixin recording rule's shape (`…:sum_rate5m`, §5 of the cAdvisor reference)
/// on a window the test can wait for: it selects app containers by `image!=""`.
const CPU_RULES: &str = r#"groups:
  - name: collector-test
    rules:
      - record: name:container_cpu_usage_seconds_total:sum_rate20s
        expr: sum by (name) (rate(container_cpu_usage_seconds_total{image!=""}[20s]))
"#;

/// A container that spins one CPU has a `rate()` of about 1 (core-seconds per second). The
/// machine is shared and has 2 CPUs, so the spinner may get less than a whole CPU for a while:
/// the test waits for a 20 s window in which the spinner's own CPU time, from
/// `/proc/<pid>/schedstat`, says it got 0.8..1.2 CPUs, and asks that `PromQL`'s rate be in
/// 0.8..1.2 too and agree with the kernel within 0.1 over the same window. On a machine loaded
/// for minutes by other work the spinner never gets a whole CPU: after the first minute a
/// window where it got at least 0.3 CPUs will do, with `PromQL` within 0.1 of the kernel.
#[test]
fn a_container_spinning_one_cpu_has_a_promql_cpu_rate_of_one() {
    if !all_ready() {
        return;
    }
    let daemon = start_daemon();
    let prometheus = Prometheus::start(&metrics_addr(&daemon), &[CPU_RULES]);
    let container = Container::run("collector-prom-spin", &["sh", "-c", "while :; do :; done"]);
    let pid = container.main_pid();
    let selector = format!(
        "container_cpu_usage_seconds_total{{name=\"{}\"}}",
        container.name()
    );

    let series = prometheus.wait_for(&selector, Duration::from_secs(30), |s| !s.is_empty());
    assert_eq!(series.len(), 1, "one series per container: {series:?}");
    let labels = &series[0].labels;
    assert_eq!(labels["cpu"], "total", "{labels:?}");
    assert!(
        labels["id"].contains(container.id()),
        "id is the container's cgroup path: {labels:?}"
    );
    assert_eq!(
        labels.get("image").map(String::as_str),
        Some(container.inspect("{{.Config.Image}}").as_str()),
        "image is Docker's: {labels:?}"
    );
    assert_eq!(labels["job"], "collector", "{labels:?}");
    let appeared = Instant::now();

    let rate_expr = format!("rate({selector}[{RATE_WINDOW_SECS}s])");
    let window = Duration::from_secs(RATE_WINDOW_SECS);
    let mut kernel: Vec<(Instant, u64)> = Vec::new();
    let deadline = appeared + Duration::from_mins(3);
    let mut last = String::new();
    let rate = loop {
        let now = Instant::now();
        kernel.push((now, cpu_ns(pid)));
        if now.duration_since(appeared) > window + Duration::from_secs(2) {
            let rate = single(&prometheus.query(&rate_expr), &rate_expr);
            // The spinner's own rate over the same window, from its oldest reading in it.
            let (t0, ns0) = *kernel
                .iter()
                .find(|(t, _)| now.duration_since(*t) <= window)
                .expect("this iteration's reading is in the window");
            let (t1, ns1) = kernel[kernel.len() - 1];
            #[expect(clippy::cast_precision_loss, reason = "ns over 20 s fit an f64")]
            let kernel_rate = (ns1 - ns0) as f64 / t1.duration_since(t0).as_nanos() as f64;
            last = format!(
                "PromQL {rate:?}, kernel {kernel_rate:.3} CPUs; loadavg {}",
                fs::read_to_string("/proc/loadavg")
                    .unwrap_or_default()
                    .trim()
            );
            let band = if now.duration_since(appeared) < Duration::from_mins(1) {
                0.8..=1.2
            } else {
                0.3..=1.2
            };
            if let Some(rate) = rate
                && band.contains(&kernel_rate)
                && band.contains(&rate)
                && (rate - kernel_rate).abs() <= 0.1
            {
                eprintln!("spinner: {last}");
                break rate;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no {RATE_WINDOW_SECS} s window within 3 min with the kernel's rate and {rate_expr} \
             in 0.8..1.2 (0.3..1.2 after a minute) and within 0.1 of each other; last: {last}"
        );
        thread::sleep(Duration::from_millis(500));
    };
    assert!((0.3..=1.2).contains(&rate), "{rate}");

    // The mixin-shaped recording rule finds the container as an app container (image!="").
    let recorded = format!(
        "name:container_cpu_usage_seconds_total:sum_rate20s{{name=\"{}\"}}",
        container.name()
    );
    // Evaluated at its own instants: wait for one in the same band as the direct rate.
    let samples = prometheus.wait_for(&recorded, Duration::from_mins(1), |s| {
        s.len() == 1 && (s[0].value - rate).abs() <= 0.3
    });
    assert_eq!(samples.len(), 1, "{samples:?}");
    assert!(
        (0.7..=1.3).contains(&samples[0].value),
        "recorded rate {} (direct {rate})",
        samples[0].value
    );
}

/// A host directory on a real block device (not tmpfs), for a container's disk writes;
/// removed on drop.
struct HostDir(PathBuf);

impl HostDir {
    fn new() -> Self {
        let dir = PathBuf::from(format!("/var/tmp/{}", crate::support::unique_name()));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        Self(dir)
    }
}

impl Drop for HostDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// What Prometheus and the stats API said at one moment about the sender.
#[derive(Debug)]
struct Counted {
    sent: Option<f64>,
    received_by_client: Option<f64>,
    written: Option<f64>,
    writes: Option<f64>,
    api_sent: f64,
    api_written: f64,
    api_writes: f64,
}

/// `client` fetches the `n`-byte file `sender` serves, then `sender` writes `m` bytes to its
/// `/data` with `dd conv=fsync`; both must succeed.
fn send_and_write(client: &Container, sender: &Container, sender_ip: &str, n: u64, m: u64) {
    let fetch = client.exec(&[
        "wget",
        "-q",
        "-O",
        "/dev/null",
        &format!("http://{sender_ip}:8080/blob"),
    ]);
    assert!(
        fetch.status.success(),
        "wget of {n} bytes failed: {}",
        String::from_utf8_lossy(&fetch.stderr)
    );
    let dd = sender.exec(&[
        "dd",
        "if=/dev/zero",
        "of=/data/blob",
        "bs=1M",
        &format!("count={}", m / MIB),
        "conv=fsync",
    ]);
    assert!(
        dd.status.success(),
        "dd failed: {}",
        String::from_utf8_lossy(&dd.stderr)
    );
}

/// A container that sends N bytes over TCP (busybox httpd serving an N-byte file to another
/// container's wget, over the docker0 bridge) and writes M bytes to disk (`dd conv=fsync` into
/// a bind-mounted host dir): in `PromQL` its transmitted bytes summed over interfaces grow by N
/// (plus headers, at most 5 %), the client's received bytes by at least N, its written bytes
/// summed over devices by M (plus metadata, at most 25 %) and its write count grows; and each
/// sum agrees with the stats API's `network.bytes_sent`, `io.write_bytes` and
/// `io.write_operations` read at the same time, within 1 %.
#[test]
fn a_containers_network_and_disk_bytes_reach_promql_as_the_stats_api_counts_them() {
    const N: u64 = 20_000_000;
    const M: u64 = 64 * MIB;
    if !all_ready() {
        return;
    }
    let daemon = start_daemon();
    let prometheus = Prometheus::start(&metrics_addr(&daemon), &[]);
    let dir = HostDir::new();
    let volume = format!("{}:/data", dir.0.display());
    let sender = Container::run_with_options(
        "collector-prom-tx",
        &["-v", &volume],
        &[
            "sh",
            "-c",
            &format!(
                "mkdir /www && head -c {N} /dev/zero > /www/blob && exec httpd -f -p 8080 -h /www"
            ),
        ],
    );
    let client = Container::run("collector-prom-rx", &[]);
    let sender_ip = sender.inspect("{{.NetworkSettings.IPAddress}}");
    assert!(!sender_ip.is_empty(), "the sender has no bridge address");
    wait_for("httpd to serve", Duration::from_secs(20), || {
        (!sender.exec(&["pidof", "httpd"]).stdout.is_empty()).then_some(())
    });
    for container in [&sender, &client] {
        prometheus.wait_for(
            &format!(
                "container_cpu_usage_seconds_total{{name=\"{}\"}}",
                container.name()
            ),
            Duration::from_secs(30),
            |s| !s.is_empty(),
        );
    }
    let sum = |family: &str, container: &Container| {
        format!("sum({family}{{name=\"{}\"}})", container.name())
    };
    let tx = sum("container_network_transmit_bytes_total", &sender);
    let rx = sum("container_network_receive_bytes_total", &client);
    let written = sum("container_fs_writes_bytes_total", &sender);
    let writes = sum("container_fs_writes_total", &sender);
    let value = |expr: &str| single(&prometheus.query(expr), expr);
    // A counter that has no series yet has counted nothing.
    let (tx0, rx0, written0, writes0) = (
        value(&tx).unwrap_or(0.0),
        value(&rx).unwrap_or(0.0),
        value(&written).unwrap_or(0.0),
        value(&writes).unwrap_or(0.0),
    );

    send_and_write(&client, &sender, &sender_ip, N, M);

    #[expect(clippy::cast_precision_loss, reason = "byte counts far below 2^52")]
    let (n, m) = (N as f64, M as f64);
    let agree = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() <= b * 0.01);
    let deadline = Instant::now() + Duration::from_mins(1);
    let counted = loop {
        let api = stats(&daemon, sender.id());
        let counted = Counted {
            sent: value(&tx),
            received_by_client: value(&rx),
            written: value(&written),
            writes: value(&writes),
            api_sent: number_at(&api, "/network/bytes_sent"),
            api_written: number_at(&api, "/io/write_bytes"),
            api_writes: number_at(&api, "/io/write_operations"),
        };
        let grown = counted.sent.is_some_and(|v| v - tx0 >= n)
            && counted.received_by_client.is_some_and(|v| v - rx0 >= n)
            && counted.written.is_some_and(|v| v - written0 >= m)
            && counted.writes.is_some_and(|v| v > writes0);
        if grown
            && agree(counted.sent, counted.api_sent)
            && agree(counted.written, counted.api_written)
            && agree(counted.writes, counted.api_writes)
        {
            break counted;
        }
        assert!(
            Instant::now() < deadline,
            "after sending {N} B and writing {M} B, within 60 s PromQL did not show the growth \
             or did not agree with the stats API within 1 %\nbefore: {tx} {tx0}, {rx} {rx0}, \
             {written} {written0}, {writes} {writes0}\nlast: {counted:?}\nstats: {api}"
        );
        thread::sleep(Duration::from_millis(500));
    };
    eprintln!("{counted:?}");
    assert_disk_devices(&prometheus, &sender);
    let sent = counted.sent.unwrap_or_default() - tx0;
    assert!(
        sent <= n * 1.05,
        "sent grew by {sent} for an {N}-byte file: counted twice? {counted:?}"
    );
    let grew = counted.written.unwrap_or_default() - written0;
    assert!(
        grew <= m * 1.25,
        "written bytes grew by {grew} for {M} B: counted twice? {counted:?}"
    );
}

/// The `device` label of `container`'s disk series is `/dev/<disk>`: dashboards select disks
/// with `device=~"(/dev.+)|..."`.
fn assert_disk_devices(prometheus: &Prometheus, container: &Container) {
    let per_disk = prometheus.query(&format!(
        "container_fs_writes_bytes_total{{name=\"{}\"}}",
        container.name()
    ));
    assert!(
        !per_disk.is_empty()
            && per_disk.iter().all(|s| s
                .labels
                .get("device")
                .is_some_and(|d| d.len() > "/dev/".len() && d.starts_with("/dev/"))),
        "device labels are not /dev/<disk>: {per_disk:?}"
    );
}

/// A container holding 32 MiB in its tmpfs and sleeping: its `container_memory_working_set_bytes`
/// in a direct scrape equals the stats API's `memory.working_set` read just before and after
/// (within 256 KiB of the range of the two), is at least the 32 MiB, and at most
/// `container_memory_usage_bytes`.
#[test]
fn a_steady_containers_working_set_in_metrics_equals_the_stats_api() {
    const DRIFT: f64 = 256.0 * 1024.0;
    if !all_ready() {
        return;
    }
    let daemon = start_daemon();
    let addr = metrics_addr(&daemon);
    let container = Container::run(
        "collector-prom-mem",
        &[
            "sh",
            "-c",
            "head -c 33554432 /dev/zero > /dev/shm/blob && exec sleep 86400",
        ],
    );
    let id = container.id().to_owned();
    wait_for("the blob to be charged", Duration::from_secs(20), || {
        (number_at(&stats(&daemon, &id), "/memory/working_set") >= 32.0 * 1024.0 * 1024.0)
            .then_some(())
    });

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let before = number_at(&stats(&daemon, &id), "/memory/working_set");
        let text = scrape(&addr);
        let after = number_at(&stats(&daemon, &id), "/memory/working_set");
        let samples = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let ws = series_of(&samples, "container_memory_working_set_bytes", &id);
        let usage = series_of(&samples, "container_memory_usage_bytes", &id);
        assert_eq!(ws.len(), 1, "one working set series: {ws:?}");
        assert_eq!(usage.len(), 1, "one usage series: {usage:?}");
        let (ws, usage) = (ws[0], usage[0]);
        let (low, high) = (before.min(after) - DRIFT, before.max(after) + DRIFT);
        if (low..=high).contains(&ws.value) {
            eprintln!(
                "working set: /metrics {}, stats {before}..{after}",
                ws.value
            );
            assert!(ws.value >= 32.0 * 1024.0 * 1024.0, "{ws:?}");
            assert!(ws.value <= usage.value, "{ws:?} > {usage:?}");
            assert_eq!(
                ws.labels.get("name").map(String::as_str),
                Some(container.name()),
                "{ws:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "container_memory_working_set_bytes {} never within 256 KiB of the stats API's \
             {before}..{after} in 30 s: {ws:?}",
            ws.value
        );
        thread::sleep(Duration::from_millis(500));
    }
}

/// With 50 containers running, a real scrape of `/metrics` (text 0.0.4) passes
/// `promtool check metrics`, has each series once, and exactly one
/// `container_cpu_usage_seconds_total` series per container, named after it.
#[test]
fn a_scrape_with_fifty_containers_passes_promtool_with_one_cpu_series_per_container() {
    const COUNT: usize = 50;
    const STARTERS: usize = 5;
    if !all_ready() {
        return;
    }
    let daemon = start_daemon();
    let addr = metrics_addr(&daemon);
    // Started from a few threads at once; a thread that panics drops (removes) what it
    // started, and the scope drops the others' containers.
    let containers: Vec<Container> = thread::scope(|scope| {
        let starters: Vec<_> = (0..STARTERS)
            .map(|_| {
                scope.spawn(|| {
                    (0..COUNT / STARTERS)
                        .map(|_| Container::run("collector-prom-many", &[]))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        starters
            .into_iter()
            .flat_map(|s| s.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    assert_eq!(containers.len(), COUNT);

    let (text, samples) = wait_for(
        "a cpu series with its Docker name for every container",
        Duration::from_mins(1),
        || {
            let text = scrape(&addr);
            let samples = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            containers
                .iter()
                .all(|c| {
                    series_of(&samples, "container_cpu_usage_seconds_total", c.id())
                        .iter()
                        .any(|s| s.labels.get("name").map(String::as_str) == Some(c.name()))
                })
                .then_some((text, samples))
        },
    );

    for c in &containers {
        let series = series_of(&samples, "container_cpu_usage_seconds_total", c.id());
        assert_eq!(series.len(), 1, "{}: {series:?}", c.name());
    }
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    let mut seen: HashMap<(&str, &BTreeMap<String, String>), usize> = HashMap::new();
    for s in &samples {
        *seen.entry((s.name.as_str(), &s.labels)).or_default() += 1;
        if s.name == "container_cpu_usage_seconds_total" {
            let id = s
                .labels
                .get("id")
                .unwrap_or_else(|| panic!("no id label: {s:?}"));
            *per_id.entry(id.as_str()).or_default() += 1;
        }
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "series exposed more than once: {repeated:?}"
    );
    let doubled: Vec<_> = per_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        doubled.is_empty(),
        "ids with several cpu usage series: {doubled:?}"
    );
    eprintln!(
        "scrape with {COUNT} containers: {} lines, {} samples, {} ids with cpu series",
        text.lines().count(),
        samples.len(),
        per_id.len()
    );
    if let Err(problems) = promtool_check_metrics(&text) {
        panic!("{problems}");
    }
}

/// The families every running container has (cAdvisor's kubelet set, §1.2 of the reference).
const CORE_FAMILIES: &[&str] = &[
    "container_cpu_usage_seconds_total",
    "container_memory_working_set_bytes",
    "container_memory_usage_bytes",
    "container_threads",
    "container_processes",
    "container_start_time_seconds",
    "container_last_seen",
];

/// The cgroup directories of container `id` still present, for a failure message.
fn cgroup_dirs_of(id: &str) -> Vec<PathBuf> {
    let Ok(mounts) = fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    mounts
        .flatten()
        .flat_map(|m| {
            [
                m.path().join("docker").join(id),
                m.path()
                    .join("system.slice")
                    .join(format!("docker-{id}.scope")),
            ]
        })
        .chain([PathBuf::from("/sys/fs/cgroup/docker").join(id)])
        .filter(|p| p.exists())
        .collect()
}

/// A container's series appear in a scrape while it runs and are gone from the very next
/// scrape after `docker rm -f`; and as no line carries a timestamp, Prometheus marks them stale
/// at once instead of keeping them for the 5-minute lookback (cadvisor#2812).
#[test]
fn a_containers_series_come_with_it_and_are_gone_from_the_next_scrape_after_removal() {
    if !all_ready() {
        return;
    }
    let daemon = start_daemon();
    let addr = metrics_addr(&daemon);
    let prometheus = Prometheus::start(&addr, &[]);
    let container = Container::run("collector-prom-gone", &[]);
    let (id, name) = (container.id().to_owned(), container.name().to_owned());

    let text = wait_for(
        "every core family for the container",
        Duration::from_secs(30),
        || {
            let text = scrape(&addr);
            let samples = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            CORE_FAMILIES
                .iter()
                .all(|family| !series_of(&samples, family, &id).is_empty())
                .then_some(text)
        },
    );
    let openmetrics = get_metrics(&addr, &[("Accept", OPENMETRICS)]).text();
    for (format, text) in [("text 0.0.4", &text), ("OpenMetrics", &openmetrics)] {
        let samples = parse_exposition(text).unwrap_or_else(|e| panic!("{format}: {e}\n{text}"));
        let stamped: Vec<_> = samples.iter().filter(|s| s.timestamp.is_some()).collect();
        assert!(
            stamped.is_empty(),
            "{format}: lines with an explicit timestamp: {stamped:?}"
        );
    }
    let selector = format!("container_cpu_usage_seconds_total{{name=\"{name}\"}}");
    prometheus.wait_for(&selector, Duration::from_secs(30), |s| s.len() == 1);

    drop(container);
    let text = scrape(&addr);
    let left: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && (l.contains(&id) || l.contains(&format!("\"{name}\""))))
        .collect();
    assert!(
        left.is_empty(),
        "series of the removed container in the first scrape after docker rm -f (its cgroup \
         dirs still there: {:?}):\n{}",
        cgroup_dirs_of(&id),
        left.join("\n")
    );
    // Stale at the next scrape Prometheus makes (every second).
    prometheus.wait_for(&selector, Duration::from_secs(5), <[Sample]>::is_empty);
}

/// Runtime labels become `container_label_<key>` only when allow-listed (`--container-labels`),
/// sanitized to a label name, on every container series (`""` where a container lacks one);
/// the API answers the same allow-listed labels.
#[test]
fn only_allow_listed_runtime_labels_become_container_label_series_labels() {
    if !all_ready() {
        return;
    }
    let daemon = Daemon::start(&[
        "--metrics-addr",
        "127.0.0.1:0",
        "--container-labels",
        "team,io.example/tier",
    ]);
    let addr = metrics_addr(&daemon);
    let labelled = Container::run_with_options(
        "collector-prom-labels",
        &[
            "--label",
            "team=pay\"ments",
            "--label",
            "io.example/tier=gold",
            "--label",
            "secret=hunter2",
        ],
        &["sleep", "1000"],
    );
    let plain = Container::run("collector-prom-nolabels", &[]);
    let cpu_series = |samples: &[ExposedSample], id: &str| {
        series_of(samples, "container_cpu_usage_seconds_total", id)
            .first()
            .map(|s| s.labels.clone())
    };
    let (with, without) = wait_for(
        "both containers' CPU series with their Docker names",
        Duration::from_secs(30),
        || {
            let text = scrape(&addr);
            let samples = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            let with = cpu_series(&samples, labelled.id())?;
            let without = cpu_series(&samples, plain.id())?;
            (with.get("name").map(String::as_str) == Some(labelled.name())
                && without.get("name").map(String::as_str) == Some(plain.name()))
            .then_some((with, without))
        },
    );
    assert_eq!(
        with.get("container_label_team").map(String::as_str),
        Some("pay\"ments"),
        "{with:?}"
    );
    assert_eq!(
        with.get("container_label_io_example_tier")
            .map(String::as_str),
        Some("gold"),
        "{with:?}"
    );
    assert!(
        with.keys().all(|k| !k.contains("secret")) && with.values().all(|v| v != "hunter2"),
        "a label off the allow-list was exported: {with:?}"
    );
    // The same label names on every series; Prometheus reads "" as absent.
    for key in ["container_label_team", "container_label_io_example_tier"] {
        assert_eq!(
            without.get(key).map(String::as_str),
            Some(""),
            "{without:?}"
        );
    }
    let listed = daemon.get("/v1/containers").json();
    let answer = listed
        .as_array()
        .and_then(|all| all.iter().find(|c| c["container_id"] == labelled.id()))
        .unwrap_or_else(|| panic!("{} not in /v1/containers: {listed}", labelled.id()));
    assert_eq!(
        answer["labels"],
        serde_json::json!({"team": "pay\"ments", "io.example/tier": "gold"}),
        "{answer}"
    );
}

/// `bytes` decompressed by `gzip -d` (Debian's gzip; the tests crate has no gzip decoder of its
/// own, and its benches would have to name one they do not use).
fn gunzip(bytes: &[u8]) -> Result<String, String> {
    let mut child = Command::new("gzip")
        .args(["-d", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawning gzip: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = bytes.to_vec();
    let writer = thread::spawn(move || stdin.write_all(&input));
    let output = child
        .wait_with_output()
        .map_err(|e| format!("waiting for gzip: {e}"))?;
    let written = writer.join().expect("the writer does not panic");
    if !output.status.success() {
        return Err(format!(
            "gzip -d: {} ({}); the body is not gzip: {:?}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&bytes[..bytes.len().min(100)])
        ));
    }
    written.map_err(|e| format!("writing to gzip: {e}"))?;
    String::from_utf8(output.stdout).map_err(|e| format!("gunzipped body is not UTF-8: {e}"))
}

/// A `GET /metrics` with the given request headers, on one endpoint.
type Get<'a> = &'a dyn Fn(&[(&str, &str)]) -> HttpResponse;

/// `/metrics` on the metrics address and on the API socket: text 0.0.4 without `Accept` or for
/// `text/plain`, `OpenMetrics` (ending in `# EOF`) when asked for, as Prometheus asks; gzip
/// when `Accept-Encoding` allows it, identity otherwise.
#[test]
fn metrics_are_text_or_openmetrics_by_accept_and_gzip_by_accept_encoding() {
    if !root() {
        return;
    }
    let daemon = start_daemon();
    let addr = metrics_addr(&daemon);
    let socket = daemon.socket().to_path_buf();
    let endpoints: [(&str, Get<'_>); 2] = [
        ("--metrics-addr", &|headers| get_metrics(&addr, headers)),
        ("API socket", &|headers| {
            http_get_unix(&socket, "/metrics", headers)
                .unwrap_or_else(|e| panic!("GET /metrics on {}: {e}", socket.display()))
        }),
    ];
    for (endpoint, get) in endpoints {
        for (accept, want) in [
            (None, TEXT_0_0_4),
            (Some("text/plain"), TEXT_0_0_4),
            (Some("text/plain; version=0.0.4"), TEXT_0_0_4),
            (
                Some(OPENMETRICS),
                "application/openmetrics-text; version=1.0.0",
            ),
            (
                Some(PROMETHEUS_ACCEPT),
                "application/openmetrics-text; version=1.0.0",
            ),
        ] {
            for gzip in [false, true] {
                let mut headers = Vec::new();
                if let Some(accept) = accept {
                    headers.push(("Accept", accept));
                }
                if gzip {
                    headers.push(("Accept-Encoding", "gzip"));
                }
                let what = format!("{endpoint}, Accept {accept:?}, gzip {gzip}");
                let response = get(&headers);
                assert_eq!(response.status, 200, "{what}: {}", response.text());
                let content_type = response.header("Content-Type").unwrap_or_default();
                assert!(
                    content_type.starts_with(want),
                    "{what}: Content-Type {content_type:?}, want {want:?}"
                );
                let encoding = response.header("Content-Encoding");
                let body = if gzip {
                    assert_eq!(encoding, Some("gzip"), "{what}: {:?}", response.headers);
                    gunzip(&response.body).unwrap_or_else(|e| panic!("{what}: {e}"))
                } else {
                    assert_eq!(encoding, None, "{what}: {:?}", response.headers);
                    response.text()
                };
                let openmetrics = want.starts_with("application/openmetrics-text");
                if openmetrics {
                    assert_eq!(body.lines().last(), Some("# EOF"), "{what}:\n{body}");
                } else {
                    assert!(!body.contains("# EOF"), "{what}:\n{body}");
                }
                let samples = parse_exposition(&body).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert!(
                    samples.iter().any(|s| s.name == "collector_ebpf_enabled"),
                    "{what}:\n{body}"
                );
                // Counters: the family is named with `_total` in 0.0.4, without in OpenMetrics.
                let typed = if openmetrics {
                    "# TYPE collector_api_requests counter"
                } else {
                    "# TYPE collector_api_requests_total counter"
                };
                assert!(body.contains(typed), "{what}: no {typed:?} in\n{body}");
            }
        }
    }
}

/// The harness against the daemon's own families: a real Prometheus scrapes the daemon,
/// the target is up, and `PromQL` sees `collector_ebpf_enabled` as `/healthz` says it.
#[test]
fn prometheus_scrapes_the_daemons_own_health_metrics() {
    if !prometheus_ready() {
        return;
    }
    let daemon = start_daemon();
    let prometheus = Prometheus::start(&metrics_addr(&daemon), &[]);
    prometheus.wait_until_up(Duration::from_secs(20));
    let health = daemon.healthz();
    let expected = if health["ebpf"] == true { 1.0 } else { 0.0 };
    let samples = prometheus.wait_for("collector_ebpf_enabled", Duration::from_secs(20), |s| {
        !s.is_empty()
    });
    assert_eq!(samples.len(), 1, "{samples:?}");
    assert!(
        (samples[0].value - expected).abs() < f64::EPSILON,
        "{samples:?} vs /healthz {health}"
    );
    assert_eq!(samples[0].labels["job"], "collector", "{samples:?}");
    let up = prometheus.query(r#"up{job="collector"}"#);
    assert_eq!(up.len(), 1, "{up:?}");
    assert!((up[0].value - 1.0).abs() < f64::EPSILON, "{up:?}");
}
