//! A real Prometheus (Debian's `prometheus` 2.42, installed by `cargo xtask test`) that a test
//! owns: it scrapes the daemon's metrics address every second with `honor_labels: true`, as
//! kube-prometheus scrapes cAdvisor, and answers `PromQL` over its HTTP API. It runs from a temp
//! dir (config, rule files, TSDB, log) on a port the kernel chose, is stopped by PID on drop
//! (also when the test panics, when its log is printed) and the dir is removed.
//!
//! Also here, for the tests that look at the exposition itself: a blocking HTTP/1.1 GET that
//! keeps the body as bytes (gzip), a parser of the text formats (0.0.4 and `OpenMetrics`), and
//! `promtool check metrics` (the linter behind convention 10: exit 0 when clean; lint problems
//! are printed with exit 3, parse errors with exit 1).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs::{self, File},
    io::{self, ErrorKind, Read, Write},
    net::{TcpListener, TcpStream},
    os::unix::net::UnixStream,
    panic,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use tempfile::TempDir;

/// How long Prometheus has to answer `GET /-/ready` with 200 after it is spawned.
pub const STARTUP_TIMEOUT: Duration = Duration::from_mins(1);
/// How long it has to exit after SIGTERM before it gets SIGKILL.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one HTTP request (to Prometheus or to the daemon's metrics address) may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// The scrape and rule evaluation interval.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Whether `prometheus` and `promtool` can be run (checked once per process).
#[must_use]
pub fn prometheus_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        ["prometheus", "promtool"].iter().all(|program| {
            Command::new(program)
                .arg("--version")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
    })
}

/// One element of an instant query's result: its labels (`__name__` included when the
/// expression keeps it) and its value. A scalar result is one sample without labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A scrape target as `GET /api/v1/targets` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub scrape_url: String,
    /// `up`, `down` or `unknown` (not scraped yet).
    pub health: String,
    pub last_error: String,
}

/// A running Prometheus; stopped on drop.
#[derive(Debug)]
pub struct Prometheus {
    child: Option<Child>,
    pid: u32,
    /// `127.0.0.1:<port>` of its web API.
    addr: String,
    target: String,
    log_path: PathBuf,
    dir: Option<TempDir>,
}

impl Prometheus {
    /// Starts a Prometheus scraping `http://<target>/metrics` (`host:port`, e.g. the daemon's
    /// `metrics_addr`) every second with `honor_labels: true`, evaluating `rule_files` (each
    /// the YAML text of one rule file) every second, and waits until it is ready. Panics with
    /// its log when it exits or is not ready within [`STARTUP_TIMEOUT`].
    #[must_use]
    pub fn start(target: &str, rule_files: &[&str]) -> Self {
        assert!(
            !target.contains('/'),
            "target {target:?} must be host:port, without scheme or path"
        );
        let dir = tempfile::Builder::new()
            .prefix("collector-test-prometheus-")
            .tempdir()
            .expect("creating a temp dir for Prometheus");
        let mut rule_paths = Vec::new();
        for (i, rules) in rule_files.iter().enumerate() {
            let path = dir.path().join(format!("rules-{i}.yml"));
            fs::write(&path, rules).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            rule_paths.push(path);
        }
        let config = dir.path().join("prometheus.yml");
        fs::write(&config, config_yaml(target, &rule_paths))
            .unwrap_or_else(|e| panic!("writing {}: {e}", config.display()));
        let log_path = dir.path().join("prometheus.log");

        // The port is free when we ask; another process may take it before Prometheus binds
        // it, so a start that fails on the address is retried on a new one.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let log = File::create(&log_path).expect("creating the Prometheus log");
            let mut cmd = Command::new("prometheus");
            cmd.arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=info")
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("duplicating the log handle"))
                .stderr(log);
            // If the test process dies without unwinding, Prometheus goes with it. (The signal
            // follows the spawning thread: the test's own, which outlives this guard.)
            super::process::die_with_parent(&mut cmd, libc::SIGTERM);
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("spawning prometheus (is it installed?): {e}"));
            // From here on the guard exists, so a panic below still stops it.
            let mut prometheus = Self {
                pid: child.id(),
                child: Some(child),
                addr,
                target: target.to_owned(),
                log_path: log_path.clone(),
                dir: None,
            };
            match prometheus.wait_ready() {
                Ok(()) => {
                    prometheus.dir = Some(dir);
                    return prometheus;
                }
                Err(e) if attempts < 3 && prometheus.log().contains("address already in use") => {
                    eprintln!(
                        "prometheus could not bind {}: {e}; retrying",
                        prometheus.addr
                    );
                }
                Err(e) => {
                    let log = prometheus.log();
                    drop(prometheus);
                    panic!("prometheus did not become ready: {e}; its log:\n{log}");
                }
            }
        }
    }

    /// The PID of the prometheus process.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `127.0.0.1:<port>` of its web API.
    #[must_use]
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Everything it logged so far.
    #[must_use]
    pub fn log(&self) -> String {
        fs::read(&self.log_path).map_or_else(
            |e| format!("<log {} unreadable: {e}>", self.log_path.display()),
            |b| String::from_utf8_lossy(&b).into_owned(),
        )
    }

    /// Evaluates the instant query `expr` now; panics when Prometheus refuses it (a bad
    /// expression) or answers something other than a vector or scalar.
    #[must_use]
    pub fn query(&self, expr: &str) -> Vec<Sample> {
        self.try_query(expr)
            .unwrap_or_else(|e| panic!("query {expr:?}: {e}"))
    }

    /// As [`Prometheus::query`], returning the error.
    pub fn try_query(&self, expr: &str) -> Result<Vec<Sample>, String> {
        let body = self.api_get(&format!("/api/v1/query?query={}", percent_encode(expr)))?;
        parse_query_response(&body)
    }

    /// Polls `expr` every 250 ms until `pred` accepts its result, and returns that result;
    /// panics after `timeout` with the last result (or error), the target's health and the
    /// expression, so a failing test says what Prometheus saw.
    pub fn wait_for(
        &self,
        expr: &str,
        timeout: Duration,
        mut pred: impl FnMut(&[Sample]) -> bool,
    ) -> Vec<Sample> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.try_query(expr);
            if let Ok(samples) = &last
                && pred(samples)
            {
                return samples.clone();
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting on {expr:?}; last result: {last:?}; \
                 targets: {:?}",
                self.targets()
            );
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// Its scrape targets (`GET /api/v1/targets`, active ones).
    #[must_use]
    pub fn targets(&self) -> Vec<Target> {
        let body = self
            .api_get("/api/v1/targets?state=active")
            .unwrap_or_else(|e| panic!("GET /api/v1/targets: {e}"));
        let value: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("/api/v1/targets is not JSON ({e}): {body}"));
        value["data"]["activeTargets"]
            .as_array()
            .unwrap_or_else(|| panic!("no activeTargets in {body}"))
            .iter()
            .map(|t| Target {
                scrape_url: t["scrapeUrl"].as_str().unwrap_or_default().to_owned(),
                health: t["health"].as_str().unwrap_or_default().to_owned(),
                last_error: t["lastError"].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    }

    /// Whether it has targets and its last scrape of each succeeded.
    #[must_use]
    pub fn targets_up(&self) -> bool {
        let targets = self.targets();
        !targets.is_empty() && targets.iter().all(|t| t.health == "up")
    }

    /// Waits until [`Prometheus::targets_up`]; panics with the targets after `timeout`.
    pub fn wait_until_up(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.targets_up() {
            assert!(
                Instant::now() < deadline,
                "the scrape of {} is not up after {timeout:?}: {:?}",
                self.target,
                self.targets()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// `GET path` on its web API: the body of a 200, else an error with status and body.
    fn api_get(&self, path: &str) -> Result<String, String> {
        let response = http_get(&self.addr, path, &[]).map_err(|e| format!("GET {path}: {e}"))?;
        let body = response.text();
        if response.status == 200 {
            Ok(body)
        } else {
            Err(format!("GET {path}: {} {body}", response.status))
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("not stopped yet");
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("it exited ({status})"));
            }
            let last = match http_get(&self.addr, "/-/ready", &[]) {
                Ok(response) if response.status == 200 => return Ok(()),
                Ok(response) => format!("{} {}", response.status, response.text()),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "GET /-/ready did not answer 200 within {STARTUP_TIMEOUT:?} (last: {last})"
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
            // SAFETY: kill(2) on our own child, not reaped yet (it is reaped only below), so
            // the PID cannot have been reused.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
            let exited = loop {
                match child.try_wait() {
                    Ok(Some(_)) => break true,
                    Ok(None) if Instant::now() < deadline => {
                        thread::sleep(Duration::from_millis(20));
                    }
                    Ok(None) | Err(_) => break false,
                }
            };
            if !exited {
                eprintln!(
                    "prometheus (pid {pid}) ignored SIGTERM for {SHUTDOWN_TIMEOUT:?}: SIGKILL"
                );
                // std's kill is SIGKILL by PID.
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if thread::panicking() {
            eprintln!(
                "---- prometheus (pid {}, {}) log: ----\n{}\n---- end of log ----",
                self.pid,
                self.addr,
                tail(&self.log(), 60)
            );
        }
        // Config, rules, TSDB and log go with the dir. (Before `start` hands it over, the
        // dir is `start`'s, and goes when `start` returns or panics.)
        drop(self.dir.take());
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The `prometheus.yml` of a test server.
fn config_yaml(target: &str, rule_paths: &[PathBuf]) -> String {
    let mut yaml = String::new();
    let _ = writeln!(
        yaml,
        "global:\n  scrape_interval: {s}s\n  scrape_timeout: {s}s\n  evaluation_interval: {s}s",
        s = INTERVAL.as_secs()
    );
    if !rule_paths.is_empty() {
        yaml.push_str("rule_files:\n");
        for path in rule_paths {
            let _ = writeln!(yaml, "  - {}", yaml_string(&path.display().to_string()));
        }
    }
    let _ = write!(
        yaml,
        "scrape_configs:\n  - job_name: collector\n    honor_labels: true\n    static_configs:\n      - targets: [{}]\n",
        yaml_string(target)
    );
    yaml
}

/// A double-quoted YAML scalar holding `s`.
fn yaml_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// `s` percent-encoded for a URL query value (everything but RFC 3986's unreserved bytes).
#[must_use]
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The samples of a `/api/v1/query` answer, or its error.
fn parse_query_response(body: &str) -> Result<Vec<Sample>, String> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("answer is not JSON ({e}): {body}"))?;
    if value["status"] != "success" {
        return Err(format!(
            "{}: {}",
            value["errorType"].as_str().unwrap_or("error"),
            value["error"].as_str().unwrap_or(body)
        ));
    }
    let data = &value["data"];
    let point = |pair: &Value| -> Result<f64, String> {
        pair.get(1)
            .and_then(Value::as_str)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("bad sample value {pair} in {body}"))
    };
    match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .ok_or_else(|| format!("no result array in {body}"))?
            .iter()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .ok_or_else(|| format!("no metric in {r}"))?
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect();
                Ok(Sample {
                    labels,
                    value: point(&r["value"])?,
                })
            })
            .collect(),
        Some("scalar") => Ok(vec![Sample {
            labels: BTreeMap::new(),
            value: point(&data["result"])?,
        }]),
        other => Err(format!(
            "result type {other:?}, expected a vector or scalar: {body}"
        )),
    }
}

/// An HTTP response with its body as bytes (after de-chunking; not decompressed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET path` on `addr` (`host:port`) with extra request `headers`, one request per connection.
pub fn http_get(addr: &str, path: &str, headers: &[(&str, &str)]) -> io::Result<HttpResponse> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    exchange(stream, addr, path, headers)
}

/// As [`http_get`] on a unix socket (the daemon's API socket).
pub fn http_get_unix(
    socket: &Path,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<HttpResponse> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    exchange(stream, "localhost", path, headers)
}

fn exchange(
    mut stream: impl Read + Write,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<HttpResponse> {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    parse_http_response(&bytes)
}

/// Parses the one response in `bytes` (all that came before the server closed); 1xx interim
/// responses are skipped.
pub fn parse_http_response(mut bytes: &[u8]) -> io::Result<HttpResponse> {
    loop {
        let head_len = find(bytes, b"\r\n\r\n").ok_or_else(|| {
            invalid(format!(
                "no complete response head in {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ))
        })?;
        let head = std::str::from_utf8(&bytes[..head_len])
            .map_err(|_| invalid("response head is not UTF-8".to_owned()))?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .strip_prefix("HTTP/1.")
            .and_then(|rest| rest.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
        let headers = lines
            .map(|line| {
                line.split_once(':')
                    .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                    .ok_or_else(|| invalid(format!("bad header line {line:?}")))
            })
            .collect::<io::Result<Vec<_>>>()?;
        let rest = &bytes[head_len + 4..];
        if (100..200).contains(&status) {
            bytes = rest;
            continue;
        }
        let mut response = HttpResponse {
            status,
            headers,
            body: Vec::new(),
        };
        response.body = if response
            .header("Transfer-Encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
        {
            dechunk(rest)?
        } else if let Some(len) = response.header("Content-Length") {
            let len: usize = len
                .parse()
                .map_err(|_| invalid(format!("bad Content-Length {len:?}")))?;
            rest.get(..len)
                .ok_or_else(|| {
                    invalid(format!(
                        "body of {} bytes, Content-Length {len}",
                        rest.len()
                    ))
                })?
                .to_vec()
        } else {
            rest.to_vec()
        };
        return Ok(response);
    }
}

/// The body of a complete chunked message.
fn dechunk(mut bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_len =
            find(bytes, b"\r\n").ok_or_else(|| invalid("truncated chunk size line".to_owned()))?;
        let line = std::str::from_utf8(&bytes[..line_len])
            .map_err(|_| invalid("chunk size line is not UTF-8".to_owned()))?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| invalid(format!("bad chunk size line {line:?}")))?;
        bytes = &bytes[line_len + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = bytes
            .get(..size)
            .ok_or_else(|| invalid(format!("truncated chunk of {size} bytes")))?;
        body.extend_from_slice(chunk);
        bytes = bytes
            .get(size..)
            .and_then(|b| b.strip_prefix(b"\r\n"))
            .ok_or_else(|| invalid("chunk not followed by CRLF".to_owned()))?;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn invalid(what: String) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, what)
}

/// One sample line of an exposition: `name{labels} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExposedSample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    /// The explicit timestamp, as written, if the line has one.
    pub timestamp: Option<String>,
}

/// The sample lines of an exposition in text format 0.0.4 or `OpenMetrics` (comments, `# HELP`,
/// `# TYPE`, `# EOF` and exemplars skipped); an error names the first line it cannot read.
pub fn parse_exposition(text: &str) -> Result<Vec<ExposedSample>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|(i, line)| {
            parse_sample_line(line).map_err(|e| format!("line {}: {e}: {line:?}", i + 1))
        })
        .collect()
}

fn parse_sample_line(line: &str) -> Result<ExposedSample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("no metric name".to_owned());
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = after_brace;
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after_name) = rest.split_once('=').ok_or("label without '='")?;
            let mut chars = after_name
                .strip_prefix('"')
                .ok_or("unquoted label value")?
                .char_indices();
            let mut value = String::new();
            let end = loop {
                match chars.next().ok_or("unterminated label value")? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (_, c) => value.push(c),
                }
            };
            if labels.insert(label.trim().to_owned(), value).is_some() {
                return Err(format!("label {label} repeated"));
            }
            rest = &after_name[end + 2..];
        }
    }
    // An OpenMetrics exemplar follows " # ".
    let rest = rest.split(" # ").next().unwrap_or_default();
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value = value.parse().map_err(|_| format!("bad value {value:?}"))?;
    let timestamp = fields.next().map(str::to_owned);
    if let Some(extra) = fields.next() {
        return Err(format!("unexpected {extra:?} after the timestamp"));
    }
    Ok(ExposedSample {
        name: name.to_owned(),
        labels,
        value,
        timestamp,
    })
}

/// Runs `promtool check metrics` on `text` (the exposition in text format 0.0.4): `Ok` when
/// it exits 0, else `Err` with its exit status and what it printed (the lint problems).
pub fn promtool_check_metrics(text: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawning promtool (is it installed?): {e}"))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = text.to_owned();
    // Fed from a thread: promtool may print (and fill its pipes) before reading everything.
    let writer = thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child
        .wait_with_output()
        .map_err(|e| format!("waiting for promtool: {e}"))?;
    match writer.join() {
        Ok(Ok(())) => {}
        // promtool stops reading at a parse error; its exit status says why.
        Ok(Err(e)) if e.kind() == ErrorKind::BrokenPipe => {}
        Ok(Err(e)) => return Err(format!("writing to promtool: {e}")),
        Err(payload) => panic::resume_unwind(payload),
    }
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "promtool check metrics: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

#[cfg(test)]
mod tests {
    use super::{
        config_yaml, parse_exposition, parse_http_response, parse_query_response, percent_encode,
        prometheus_available, promtool_check_metrics,
    };
    use crate::support::require;

    #[test]
    fn parses_both_text_formats_with_escapes_timestamps_and_exemplars() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\n\
                    a_total{id=\"/docker/x\",name=\"q\\\"u\\\\o\\nte\",image=\"\"} 12.5\n\
                    b 1e3 1395066363000\n\
                    c_total{cpu=\"total\"} 7 # {trace_id=\"1\"} 1\n\
                    d{x=\"a, b}\"} +Inf\n\
                    e NaN\n# EOF\n";
        let samples = parse_exposition(text).unwrap();
        assert_eq!(samples.len(), 5);
        assert_eq!(samples[0].name, "a_total");
        assert_eq!(samples[0].labels["id"], "/docker/x");
        assert_eq!(samples[0].labels["name"], "q\"u\\o\nte");
        assert_eq!(samples[0].labels["image"], "");
        assert!((samples[0].value - 12.5).abs() < f64::EPSILON);
        assert_eq!(samples[0].timestamp, None);
        assert_eq!(samples[1].timestamp.as_deref(), Some("1395066363000"));
        assert_eq!(samples[2].labels["cpu"], "total");
        assert_eq!(samples[2].timestamp, None);
        assert_eq!(samples[3].labels["x"], "a, b}");
        assert!(samples[3].value.is_infinite());
        assert!(samples[4].value.is_nan());
        assert!(parse_exposition("x{a=\"1\" 2\n").is_err());
        assert!(parse_exposition("x{a=1} 2\n").is_err());
        assert!(parse_exposition("x 1 2 3\n").is_err());
        assert!(parse_exposition("x{a=\"1\",a=\"2\"} 2\n").is_err());
    }

    #[test]
    fn parses_responses_by_length_chunks_and_eof() {
        let fixed = parse_http_response(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Encoding: gzip\r\n\r\n\x1f\x8b\x08",
        )
        .unwrap();
        assert_eq!(fixed.status, 200);
        assert_eq!(fixed.header("content-encoding"), Some("gzip"));
        assert_eq!(fixed.body, b"\x1f\x8b\x08");
        let chunked = parse_http_response(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n\x00\xff\r\n3;x=y\r\nabc\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(chunked.body, b"\x00\xffabc");
        let eof = parse_http_response(b"HTTP/1.0 404 Not Found\r\n\r\nnope").unwrap();
        assert_eq!((eof.status, eof.text().as_str()), (404, "nope"));
        assert!(parse_http_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
        assert!(
            parse_http_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
                .is_err()
        );
        assert!(parse_http_response(b"SSH-2.0\r\n\r\n").is_err());
    }

    #[test]
    fn reads_vector_scalar_and_error_answers() {
        let vector = parse_query_response(
            r#"{"status":"success","data":{"resultType":"vector","result":[
                {"metric":{"__name__":"up","job":"collector"},"value":[1700000000.1,"1"]},
                {"metric":{},"value":[1700000000.1,"NaN"]}]}}"#,
        )
        .unwrap();
        assert_eq!(vector.len(), 2);
        assert_eq!(vector[0].labels["job"], "collector");
        assert!((vector[0].value - 1.0).abs() < f64::EPSILON);
        assert!(vector[1].value.is_nan());
        let scalar = parse_query_response(
            r#"{"status":"success","data":{"resultType":"scalar","result":[1,"0.25"]}}"#,
        )
        .unwrap();
        assert!(scalar[0].labels.is_empty());
        assert!((scalar[0].value - 0.25).abs() < f64::EPSILON);
        let error = parse_query_response(
            r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
        )
        .unwrap_err();
        assert_eq!(error, "bad_data: parse error");
        assert!(
            parse_query_response(
                r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#
            )
            .is_err()
        );
    }

    #[test]
    fn encodes_promql_for_a_query_string() {
        assert_eq!(
            percent_encode(r#"rate(x{name="a-b_1.c~"}[20s]) > 0.8"#),
            "rate%28x%7Bname%3D%22a-b_1.c~%22%7D%5B20s%5D%29%20%3E%200.8"
        );
    }

    #[test]
    fn the_config_scrapes_the_target_every_second_with_its_labels() {
        let yaml = config_yaml("127.0.0.1:9", &["/tmp/r 1.yml".into()]);
        assert!(yaml.contains("scrape_interval: 1s"), "{yaml}");
        assert!(yaml.contains("evaluation_interval: 1s"), "{yaml}");
        assert!(yaml.contains("honor_labels: true"), "{yaml}");
        assert!(yaml.contains(r#"targets: ["127.0.0.1:9"]"#), "{yaml}");
        assert!(yaml.contains(r#"  - "/tmp/r 1.yml""#), "{yaml}");
    }

    #[test]
    fn promtool_passes_clean_text_and_reports_lint_problems() {
        if !require(
            "prometheus and promtool (cargo xtask test installs them)",
            prometheus_available(),
        ) {
            return;
        }
        let clean = "# HELP x_bytes X.\n# TYPE x_bytes gauge\nx_bytes{id=\"/\"} 1\n\
                     # HELP y_total Y.\n# TYPE y_total counter\ny_total 2\n";
        promtool_check_metrics(clean).unwrap();
        let problems = promtool_check_metrics("# TYPE y counter\ny 2\n").unwrap_err();
        assert!(problems.contains("no help text"), "{problems}");
        assert!(problems.contains("_total"), "{problems}");
        assert!(promtool_check_metrics("not { exposition\n").is_err());
    }
}
