//! A small blocking HTTP/1.1 client for the daemon's unix socket: one request per connection
//! (`Connection: close`), responses framed by Content-Length, chunked encoding or EOF. `raw`
//! sends arbitrary bytes, for malformed-request tests; `*_from_cgroup` sends from a forked
//! child that is inside a test cgroup, for `/v1/self`, since the daemon resolves the caller
//! from the socket peer's PID (`SO_PEERCRED`, taken at `connect`).

use std::{
    ffi::CString,
    fmt::Write as _,
    io::{self, ErrorKind, Read as _, Write as _},
    os::unix::{ffi::OsStrExt as _, net::UnixStream},
    path::Path,
    time::Duration,
};

use super::cgroup::TestCgroup;

/// How long a request may take before the client gives up.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A parsed HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header names as sent; look them up with [`Response::header`].
    pub headers: Vec<(String, String)>,
    /// The body after de-chunking (invalid UTF-8 replaced).
    pub body: String,
}

impl Response {
    /// The body as JSON; panics with the body when it is not.
    #[must_use]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): status {}, body {:?}",
                self.status, self.body
            )
        })
    }

    /// The first header named `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path`; panics when no response comes back.
#[must_use]
pub fn get(socket: impl AsRef<Path>, path: &str) -> Response {
    let socket = socket.as_ref();
    send(socket, &request("GET", path, None))
        .unwrap_or_else(|e| panic!("GET {path} on {}: {e}", socket.display()))
}

/// `POST path` with a JSON `body`; panics when no response comes back.
#[must_use]
pub fn post(socket: impl AsRef<Path>, path: &str, body: &[u8]) -> Response {
    let socket = socket.as_ref();
    send(socket, &request("POST", path, Some(body)))
        .unwrap_or_else(|e| panic!("POST {path} on {}: {e}", socket.display()))
}

/// Sends `bytes` as they are (a malformed request, say) and parses what comes back; panics
/// when nothing parseable comes back. Use [`send`] to see the error instead.
#[must_use]
pub fn raw(socket: impl AsRef<Path>, bytes: &[u8]) -> Response {
    let socket = socket.as_ref();
    send(socket, bytes).unwrap_or_else(|e| {
        panic!(
            "raw request {:?} on {}: {e}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)]),
            socket.display()
        )
    })
}

/// The bytes of a request with `Host`, `Connection: close` and, with a body,
/// `Content-Type: application/json` and `Content-Length`.
#[must_use]
pub fn request(method: &str, path: &str, body: Option<&[u8]>) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(body) = body {
        out.push_str("Content-Type: application/json\r\n");
        let _ = write!(out, "Content-Length: {}\r\n", body.len());
    } else if method != "GET" && method != "HEAD" {
        out.push_str("Content-Length: 0\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body.unwrap_or_default());
    out
}

/// Connects, writes `bytes`, reads one response (giving up after [`TIMEOUT`]).
pub fn send(socket: &Path, bytes: &[u8]) -> io::Result<Response> {
    send_with_timeout(socket, bytes, TIMEOUT)
}

/// As [`send`], giving up on a read or write that takes longer than `timeout`.
pub fn send_with_timeout(socket: &Path, bytes: &[u8], timeout: Duration) -> io::Result<Response> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    match stream.write_all(bytes) {
        // The server may answer (413, 400) and close before reading all of a request.
        Err(e) if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) => {}
        other => other?,
    }
    read_response(&mut stream, timeout)
}

/// Reads until a whole response has arrived (or EOF), then parses it.
fn read_response(stream: &mut impl io::Read, timeout: Duration) -> io::Result<Response> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // The server closed after answering while our request was still being sent.
            Err(e) if e.kind() == ErrorKind::ConnectionReset && !buf.is_empty() => 0,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(io::Error::new(
                    ErrorKind::TimedOut,
                    format!(
                        "no complete response within {timeout:?}; got {:?}",
                        String::from_utf8_lossy(&buf)
                    ),
                ));
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            return parse_response(&buf, true)?.ok_or_else(|| {
                io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed before a complete response; got {:?}",
                        String::from_utf8_lossy(&buf)
                    ),
                )
            });
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(response) = parse_response(&buf, false)? {
            return Ok(response);
        }
    }
}

/// Parses one response from `bytes`. `Ok(None)` means more bytes are needed; `at_eof` says no
/// more will come (then a body without length runs to the end). 1xx responses are skipped.
pub fn parse_response(bytes: &[u8], at_eof: bool) -> io::Result<Option<Response>> {
    let mut bytes = bytes;
    loop {
        let Some(head_len) = find(bytes, b"\r\n\r\n") else {
            return Ok(None);
        };
        let head = std::str::from_utf8(&bytes[..head_len])
            .map_err(|_| invalid("response head is not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
            return Err(invalid(&format!("bad status line {status_line:?}")));
        };
        if !version.starts_with("HTTP/1.") {
            return Err(invalid(&format!("bad status line {status_line:?}")));
        }
        let status: u16 = code
            .parse()
            .map_err(|_| invalid(&format!("bad status code in {status_line:?}")))?;
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| invalid(&format!("bad header line {line:?}")))?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        let rest = &bytes[head_len + 4..];
        if (100..200).contains(&status) {
            bytes = rest;
            continue;
        }
        let response = |body: &[u8]| Response {
            status,
            headers: headers.clone(),
            body: String::from_utf8_lossy(body).into_owned(),
        };
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        if header("Transfer-Encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
        {
            return Ok(dechunk(rest)?.map(|body| response(&body)));
        }
        if let Some(len) = header("Content-Length") {
            let len: usize = len
                .parse()
                .map_err(|_| invalid(&format!("bad Content-Length {len:?}")))?;
            return Ok((rest.len() >= len).then(|| response(&rest[..len])));
        }
        if status == 204 || status == 304 {
            return Ok(Some(response(b"")));
        }
        return Ok(at_eof.then(|| response(rest)));
    }
}

/// The body of a chunked message, or `None` when incomplete.
fn dechunk(mut bytes: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        let Some(line_len) = find(bytes, b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&bytes[..line_len])
            .map_err(|_| invalid("chunk size line is not UTF-8"))?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| invalid(&format!("bad chunk size line {line:?}")))?;
        bytes = &bytes[line_len + 2..];
        if size == 0 {
            // Trailers, if any, end with an empty line.
            return Ok(find(bytes, b"\r\n").map(|_| body));
        }
        if bytes.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&bytes[..size]);
        if &bytes[size..size + 2] != b"\r\n" {
            return Err(invalid("chunk not followed by CRLF"));
        }
        bytes = &bytes[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, what.to_owned())
}

/// `GET path` sent by a child process that is inside `cg` (in every hierarchy it has) from
/// before it connects; panics when no response comes back.
#[must_use]
pub fn get_from_cgroup(cg: &TestCgroup, socket: impl AsRef<Path>, path: &str) -> Response {
    let socket = socket.as_ref();
    send_from_cgroup(cg, socket, &request("GET", path, None))
        .unwrap_or_else(|e| panic!("GET {path} on {} from {cg:?}: {e}", socket.display()))
}

/// Sends `bytes` from a forked child that first moves itself into `cg`, then connects, so the
/// daemon sees a peer inside that cgroup. Returns the response the child read.
///
/// The child of a multi-threaded fork may only make async-signal-safe calls: it uses raw
/// syscalls on buffers prepared before the fork and allocates nothing.
pub fn send_from_cgroup(cg: &TestCgroup, socket: &Path, bytes: &[u8]) -> io::Result<Response> {
    let procs: Vec<CString> = cg
        .procs_files()
        .iter()
        .map(|p| CString::new(p.as_os_str().as_bytes()).expect("no NUL in cgroup paths"))
        .collect();
    let procs_ptrs: Vec<*const libc::c_char> = procs.iter().map(|p| p.as_ptr()).collect();
    let addr = sockaddr_un(socket)?;
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array we pass.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let [read_fd, write_fd] = fds;
    // SAFETY: the child only makes async-signal-safe calls and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let err = io::Error::last_os_error();
        // SAFETY: closing the pipe we just created.
        unsafe {
            libc::close(read_fd);
            libc::close(write_fd);
        }
        return Err(err);
    }
    if pid == 0 {
        // SAFETY: in the forked child; see `child_request`.
        unsafe {
            let code = child_request(&procs_ptrs, &addr, bytes, write_fd);
            libc::_exit(code);
        }
    }
    // SAFETY: the parent's copy of the write end is ours to close; the read end becomes a File.
    let mut reader = unsafe {
        libc::close(write_fd);
        <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(read_fd)
    };
    let mut received = Vec::new();
    let read = reader.read_to_end(&mut received);
    let mut status = 0;
    // SAFETY: reaping the child we forked.
    unsafe { libc::waitpid(pid, &raw mut status, 0) };
    read?;
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let step = match code {
        0 => None,
        2 => Some("entering the cgroup"),
        3 => Some("creating the socket"),
        4 => Some("connecting"),
        5 => Some("writing the request"),
        6 => Some("reading the response"),
        _ => Some("running (killed?)"),
    };
    if let Some(step) = step {
        return Err(io::Error::other(format!(
            "child in {cg:?} failed while {step} (wait status {status:#x})"
        )));
    }
    parse_response(&received, true)?.ok_or_else(|| {
        io::Error::new(
            ErrorKind::UnexpectedEof,
            format!(
                "connection closed before a complete response; got {:?}",
                String::from_utf8_lossy(&received)
            ),
        )
    })
}

fn sockaddr_un(path: &Path) -> io::Result<libc::sockaddr_un> {
    // SAFETY: sockaddr_un is plain old data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::sa_family_t::try_from(libc::AF_UNIX).expect("AF_UNIX fits");
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            format!("socket path too long: {}", path.display()),
        ));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = libc::c_char::from_ne_bytes([*src]);
    }
    Ok(addr)
}

/// The forked child's work; returns its exit code (0, or the step that failed).
///
/// # Safety
/// Call only in a freshly forked child; `procs` are valid NUL-terminated paths.
unsafe fn child_request(
    procs: &[*const libc::c_char],
    addr: &libc::sockaddr_un,
    request: &[u8],
    out: libc::c_int,
) -> libc::c_int {
    // SAFETY: raw syscalls on memory prepared by the parent before fork.
    unsafe {
        for path in procs {
            let fd = libc::open(*path, libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return 2;
            }
            libc::close(fd);
        }
        let sock = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return 3;
        }
        let len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_un>())
            .unwrap_or(libc::socklen_t::MAX);
        if libc::connect(sock, std::ptr::from_ref(addr).cast(), len) != 0 {
            return 4;
        }
        // Bound each read so a silent server cannot keep the child forever.
        let timeout = libc::timeval {
            tv_sec: libc::time_t::try_from(TIMEOUT.as_secs()).unwrap_or(30),
            tv_usec: 0,
        };
        libc::setsockopt(
            sock,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            std::ptr::from_ref(&timeout).cast(),
            libc::socklen_t::try_from(std::mem::size_of::<libc::timeval>()).unwrap_or(0),
        );
        // A server may answer (413, 400) and close before reading all of the request: read
        // whatever came back even when sending failed.
        let sent = send_all(sock, request);
        let mut received_any = false;
        let mut buf = [0u8; 4096];
        loop {
            let n = libc::read(sock, buf.as_mut_ptr().cast(), buf.len());
            if n == 0 {
                return if sent || received_any { 0 } else { 5 };
            }
            let Ok(n) = usize::try_from(n) else {
                if *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                return 6;
            };
            received_any = true;
            if !write_all(out, &buf[..n]) {
                return 6;
            }
        }
    }
}

/// send(2) until all of `bytes` is sent, without SIGPIPE; false on error.
///
/// # Safety
/// `sock` is a connected socket.
unsafe fn send_all(sock: libc::c_int, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        // SAFETY: sending from a valid slice.
        let n = unsafe { libc::send(sock, bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
        match usize::try_from(n) {
            Ok(n) => bytes = &bytes[n..],
            // SAFETY: errno is thread-local and always readable.
            Err(_) if unsafe { *libc::__errno_location() } == libc::EINTR => {}
            Err(_) => return false,
        }
    }
    true
}

/// write(2) until all of `bytes` is written; false on error.
///
/// # Safety
/// `fd` is an open file descriptor.
unsafe fn write_all(fd: libc::c_int, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        // SAFETY: writing from a valid slice.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        match usize::try_from(n) {
            Ok(n) => bytes = &bytes[n..],
            // SAFETY: errno is thread-local and always readable.
            Err(_) if unsafe { *libc::__errno_location() } == libc::EINTR => {}
            Err(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead as _, BufReader, Read as _, Write as _},
        os::unix::net::UnixListener,
        thread,
    };

    use super::{get, get_from_cgroup, parse_response, post, raw, request};
    use crate::support::{cgroup::TestCgroup, is_root, require};

    #[test]
    fn parses_a_content_length_response() {
        let bytes = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 16\r\n\r\n{\"status\":\"ok\"}\n";
        let response = parse_response(bytes, false).unwrap().unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.header("Content-Type"), Some("application/json"));
        assert_eq!(response.json()["status"], "ok");
        // One byte short: not complete yet, and truncated at EOF.
        let short = &bytes[..bytes.len() - 1];
        assert_eq!(parse_response(short, false).unwrap(), None);
        assert_eq!(parse_response(short, true).unwrap(), None);
    }

    #[test]
    fn parses_a_chunked_response() {
        let bytes = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n\
                      4\r\n{\"er\r\n11;ext=1\r\nror\": \"no route\"}\r\n0\r\n\r\n";
        let response = parse_response(bytes, false).unwrap().unwrap();
        assert_eq!(response.status, 404);
        assert_eq!(response.body, r#"{"error": "no route"}"#);
        assert_eq!(response.json()["error"], "no route");
        assert_eq!(
            parse_response(&bytes[..bytes.len() - 2], false).unwrap(),
            None
        );
    }

    #[test]
    fn parses_eof_delimited_and_interim_responses() {
        let bytes = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 400 Bad Request\r\n\r\nbad";
        assert_eq!(parse_response(bytes, false).unwrap(), None);
        let response = parse_response(bytes, true).unwrap().unwrap();
        assert_eq!((response.status, response.body.as_str()), (400, "bad"));
        let empty = parse_response(b"HTTP/1.1 204 No Content\r\n\r\n", false).unwrap();
        assert_eq!(empty.unwrap().body, "");
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n", true).is_err());
        assert!(parse_response(b"HTTP/1.1 abc OK\r\n\r\n", true).is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", true).is_err());
        assert!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                true
            )
            .is_err()
        );
    }

    #[test]
    fn builds_requests() {
        let get = String::from_utf8(request("GET", "/v1/pid/1", None)).unwrap();
        assert_eq!(
            get,
            "GET /v1/pid/1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        );
        let post = String::from_utf8(request("POST", "/v1/pids", Some(b"[1,2]"))).unwrap();
        assert!(post.starts_with("POST /v1/pids HTTP/1.1\r\n"), "{post}");
        assert!(post.contains("\r\nContent-Length: 5\r\n"), "{post}");
        assert!(post.ends_with("\r\n\r\n[1,2]"), "{post}");
    }

    /// A one-connection-at-a-time server that answers each request with `answer(request)`.
    fn serve(
        connections: usize,
        answer: fn(&str, &[u8]) -> Vec<u8>,
    ) -> (tempfile::TempDir, thread::JoinHandle<()>) {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join("s.sock")).unwrap();
        let server = thread::spawn(move || {
            for _ in 0..connections {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream);
                let mut head = String::new();
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                reader.get_mut().write_all(&answer(&head, &body)).unwrap();
            }
        });
        (dir, server)
    }

    #[test]
    fn talks_to_a_unix_socket_server() {
        fn echo(head: &str, body: &[u8]) -> Vec<u8> {
            // Echo the request line and body back, chunked, as hyper would stream it.
            let text = format!(
                "{}|{}|{}",
                head.lines().next().unwrap(),
                head.contains("Connection: close"),
                String::from_utf8_lossy(body)
            );
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{text}\r\n0\r\n\r\n",
                text.len()
            )
            .into_bytes()
        }
        let (dir, server) = serve(3, echo);
        let socket = dir.path().join("s.sock");
        assert_eq!(get(&socket, "/healthz").body, "GET /healthz HTTP/1.1|true|");
        let response = post(&socket, "/v1/pids", b"[1, 2]");
        assert_eq!(response.body, "POST /v1/pids HTTP/1.1|true|[1, 2]");
        let response = raw(&socket, b"BREW /pot HTCPCP/1.0\r\n\r\n");
        assert_eq!(response.body, "BREW /pot HTCPCP/1.0|false|");
        server.join().unwrap();
    }

    #[test]
    fn requests_from_inside_a_cgroup() {
        if !require("root, to create cgroups", is_root()) {
            return;
        }
        // The server answers with the v2 cgroup of its peer, as the daemon's /v1/self finds it.
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let server = thread::spawn(move || {
            use std::os::fd::AsRawFd as _;
            let (mut stream, _) = listener.accept().unwrap();
            let mut cred = libc::ucred {
                pid: 0,
                uid: 0,
                gid: 0,
            };
            let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::ucred>()).unwrap();
            // SAFETY: SO_PEERCRED fills a ucred of the given length.
            let rc = unsafe {
                libc::getsockopt(
                    stream.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_PEERCRED,
                    std::ptr::from_mut(&mut cred).cast(),
                    &raw mut len,
                )
            };
            assert_eq!(rc, 0);
            let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", cred.pid)).unwrap();
            let mut buf = [0; 1024];
            let _ = stream.read(&mut buf).unwrap();
            let body = cgroup
                .lines()
                .find(|l| l.starts_with("0::"))
                .unwrap()
                .to_owned();
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(reply.as_bytes()).unwrap();
        });
        let cg = TestCgroup::new("system.slice/self-test.scope");
        let response = get_from_cgroup(&cg, &socket, "/v1/self");
        server.join().unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body, format!("0::{}", cg.v2_path()));
        assert!(
            cg.procs().is_empty(),
            "the child was reaped, so the cgroup is empty"
        );
    }
}
