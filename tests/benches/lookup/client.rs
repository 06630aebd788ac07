//! A minimal HTTP/1.1 client: the support client sends `Connection: close`, and the point here
//! is to also measure a persistent connection.

use std::{
    borrow::Cow,
    io::{self, ErrorKind, Read as _, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use collector_tests::support::http::parse_response;

/// Upper bound on any single read or write, so a hung daemon fails the bench, not hangs it.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// One response; the body borrows the connection's buffer when framed by Content-Length.
pub(crate) struct Reply<'a> {
    pub status: u16,
    pub body: Cow<'a, [u8]>,
}

/// Bytes read from a connection. Grown, never shrunk or re-zeroed, so a read costs no memset.
pub(crate) struct ReadBuf {
    pub data: Vec<u8>,
    pub filled: usize,
}

impl ReadBuf {
    pub(crate) fn new() -> Self {
        Self {
            data: vec![0; 64 * 1024],
            filled: 0,
        }
    }

    /// Reads exactly one response from `stream`.
    pub(crate) fn read_reply(&mut self, stream: &mut UnixStream) -> io::Result<Reply<'_>> {
        self.filled = 0;
        let at_eof = loop {
            if frame(&self.data[..self.filled], false)?.is_some() {
                break false;
            }
            if self.filled == self.data.len() {
                self.data.resize(self.data.len() * 2, 0);
            }
            match stream.read(&mut self.data[self.filled..]) {
                Ok(0) => break true,
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        // Framed twice (once above, to know when to stop) because the borrow checker does not
        // let a reply borrowed in the loop outlive it; the head is a few hundred bytes.
        frame(&self.data[..self.filled], at_eof)?.ok_or_else(|| {
            io::Error::new(
                ErrorKind::UnexpectedEof,
                format!(
                    "connection closed before a complete response; got {:?}",
                    String::from_utf8_lossy(&self.data[..self.filled.min(300)])
                ),
            )
        })
    }
}

/// The response in `bytes`, if complete. Content-Length framing (what the daemon sends for
/// JSON) is read here without copying; chunked or EOF-delimited bodies go to the support
/// parser.
pub(crate) fn frame(bytes: &[u8], at_eof: bool) -> io::Result<Option<Reply<'_>>> {
    let Some(head_len) = find(bytes, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = &bytes[..head_len];
    let Some(length) = content_length(head)? else {
        return Ok(parse_response(bytes, at_eof)?.map(|r| Reply {
            status: r.status,
            body: Cow::Owned(r.body.into_bytes()),
        }));
    };
    let body = head_len + 4..head_len + 4 + length;
    if bytes.len() < body.end {
        return Ok(None);
    }
    if bytes.len() > body.end {
        // We never pipeline, so anything more is a framing bug on one side.
        return Err(invalid("bytes after the end of a response"));
    }
    Ok(Some(Reply {
        status: status_code(head)?,
        body: Cow::Borrowed(&bytes[body]),
    }))
}

pub(crate) fn status_code(head: &[u8]) -> io::Result<u16> {
    let code = if head.starts_with(b"HTTP/1.") {
        head.get(9..12)
    } else {
        None
    };
    code.and_then(|code| std::str::from_utf8(code).ok()?.parse().ok())
        .ok_or_else(|| invalid("bad status line"))
}

pub(crate) fn content_length(head: &[u8]) -> io::Result<Option<usize>> {
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if line[..colon].eq_ignore_ascii_case(b"content-length") {
            return std::str::from_utf8(&line[colon + 1..])
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .map(Some)
                .ok_or_else(|| invalid("bad Content-Length"));
        }
    }
    Ok(None)
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub(crate) fn invalid(what: &str) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, what.to_owned())
}

pub(crate) fn connect(socket: &Path) -> io::Result<UnixStream> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// One client thread's state, kept across rounds: its connection, its buffers and where it is
/// in the PID (or batch) list.
pub(crate) struct Client {
    pub socket: PathBuf,
    pub stream: Option<UnixStream>,
    pub buf: ReadBuf,
    pub next: usize,
    /// Steps done, for sampling which answers to check in full.
    pub steps: usize,
    /// For in-process reads: the path and the text read, reused.
    pub proc_path: String,
    pub proc_text: String,
}

impl Client {
    pub(crate) fn new(socket: &Path, start: usize) -> Self {
        Self {
            socket: socket.to_path_buf(),
            stream: None,
            buf: ReadBuf::new(),
            next: start,
            steps: 0,
            proc_path: String::new(),
            proc_text: String::new(),
        }
    }

    /// The next index, round-robin over `len`.
    pub(crate) fn advance(&mut self, len: usize) -> usize {
        let index = self.next % len;
        self.next = index + 1;
        self.steps += 1;
        index
    }

    /// A fresh persistent connection. Made at the start of each round, outside the clock, so
    /// that an idle timeout of the server between rounds cannot hit a measured request.
    pub(crate) fn reconnect(&mut self) {
        self.stream = Some(connect(&self.socket).unwrap_or_else(|e| {
            panic!("connecting to {}: {e}", self.socket.display());
        }));
    }

    /// A request on the persistent connection.
    pub(crate) fn keep_alive(&mut self, request: &[u8]) -> Reply<'_> {
        let stream = self.stream.as_mut().expect("reconnect() before requests");
        stream
            .write_all(request)
            .and_then(|()| self.buf.read_reply(stream))
            .unwrap_or_else(|e| panic!("request on {}: {e}", self.socket.display()))
    }

    /// A request on a connection of its own, read until the response is complete (as curl
    /// does, not waiting for the close).
    pub(crate) fn one_shot(&mut self, request: &[u8]) -> Reply<'_> {
        connect(&self.socket)
            .and_then(|mut stream| {
                stream.write_all(request)?;
                self.buf.read_reply(&mut stream)
            })
            .unwrap_or_else(|e| panic!("request on {}: {e}", self.socket.display()))
    }
}
