//! A loopback HTTP/1.1 server standing in for runtime APIs that cannot run here (ECS task
//! metadata, the kubelet, Garden): each path (with its query) answers what the test set
//! (status, body, delay), and every request's headers are recorded. It listens on TCP, on TCP
//! with TLS (rustls, a certificate the test made: the kubelet's HTTPS port) or on a unix
//! socket (Garden's). One thread; it stops when the guard drops, and removes its socket.
use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader, Read, Write},
    net::TcpListener,
    os::unix::net::UnixListener,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};

/// What one path answers.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    /// Waited before answering (a slow API).
    pub delay: Duration,
}

impl Reply {
    #[must_use]
    pub fn json(body: &serde_json::Value) -> Self {
        Self {
            status: 200,
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    #[must_use]
    pub fn status(status: u16, body: &str) -> Self {
        Self {
            status,
            body: body.to_owned(),
            delay: Duration::ZERO,
        }
    }
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    /// Header names lowercased.
    pub headers: HashMap<String, String>,
}

#[derive(Default)]
struct Shared {
    replies: Mutex<HashMap<String, Reply>>,
    received: Mutex<Vec<Received>>,
    stop: AtomicBool,
}

/// The running server; stopped on drop.
pub struct FakeApi {
    addr: String,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// The unix socket it made, removed on drop.
    socket: Option<PathBuf>,
}

enum Listener {
    Tcp(TcpListener, Option<Arc<rustls::ServerConfig>>),
    Unix(UnixListener),
}

impl FakeApi {
    /// Listens on 127.0.0.1, a free port.
    #[must_use]
    pub fn start() -> Self {
        Self::start_tcp(None)
    }

    /// Listens on 127.0.0.1, a free port, over TLS with the PEM certificate chain `cert`
    /// and its PEM private key `key`.
    #[must_use]
    pub fn start_tls(cert: &Path, key: &Path) -> Self {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .expect("read the certificate")
            .collect::<Result<_, _>>()
            .expect("parse the certificate");
        let key = PrivateKeyDer::from_pem_file(key).expect("read the private key");
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("a TLS server configuration");
        Self::start_tcp(Some(Arc::new(config)))
    }

    /// Listens on the unix socket `path` (which must not exist; removed on drop).
    #[must_use]
    pub fn start_unix(path: &Path) -> Self {
        let listener = UnixListener::bind(path).expect("bind the unix socket");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let mut api = Self::serve_on(Listener::Unix(listener), path.display().to_string());
        api.socket = Some(path.to_owned());
        api
    }

    fn start_tcp(tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address").to_string();
        Self::serve_on(Listener::Tcp(listener, tls), addr)
    }

    fn serve_on(listener: Listener, addr: String) -> Self {
        let shared = Arc::new(Shared::default());
        let serving = Arc::clone(&shared);
        let thread = std::thread::spawn(move || serve(&listener, &serving));
        Self {
            addr,
            shared,
            thread: Some(thread),
            socket: None,
        }
    }

    /// `host:port`, or the socket's path.
    #[must_use]
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// What `path` answers from now on.
    pub fn set(&self, path: &str, reply: Reply) {
        lock(&self.shared.replies).insert(path.to_owned(), reply);
    }

    /// The requests received so far.
    #[must_use]
    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.received).clone()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(socket) = &self.socket {
            let _ = std::fs::remove_file(socket);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn serve(listener: &Listener, shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::Relaxed) {
        let shared = Arc::clone(shared);
        // One thread per connection: a slow reply must not hold the others.
        match listener {
            Listener::Tcp(listener, tls) => match listener.accept() {
                Ok((stream, _)) => {
                    let tls = tls.clone();
                    std::thread::spawn(move || {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                        if let Some(config) = tls {
                            answer_tls(stream, config, &shared);
                        } else {
                            let mut stream = stream;
                            let _ = answer(&mut stream, &shared);
                        }
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            },
            Listener::Unix(listener) => match listener.accept() {
                Ok((mut stream, _)) => {
                    std::thread::spawn(move || {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                        let _ = answer(&mut stream, &shared);
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            },
        }
    }
}

/// Answers one request over TLS; a handshake the client refuses ends here, unanswered.
fn answer_tls(stream: std::net::TcpStream, config: Arc<rustls::ServerConfig>, shared: &Shared) {
    let Ok(connection) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(connection, stream);
    if answer(&mut tls, shared).is_ok() {
        tls.conn.send_close_notify();
        let _ = tls.flush();
    }
}

fn answer<S: Read + Write>(stream: &mut S, shared: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(&mut *stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    lock(&shared.received).push(Received {
        path: path.clone(),
        headers,
    });
    let reply = lock(&shared.replies)
        .get(&path)
        .cloned()
        .unwrap_or_else(|| Reply::status(404, "404 page not found"));
    drop(reader);
    std::thread::sleep(reply.delay);
    write!(
        stream,
        "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        reply.status,
        reply.body.len(),
        reply.body
    )?;
    stream.flush()
}
