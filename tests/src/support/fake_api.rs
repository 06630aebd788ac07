//! A loopback HTTP/1.1 server standing in for runtime APIs that cannot run here (ECS task
//! metadata, the kubelet): each path answers what the test set (status, body, delay), and
//! every request's headers are recorded. One thread; it stops when the guard drops.
use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader, Write as _},
    net::{TcpListener, TcpStream},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

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
}

impl FakeApi {
    /// Listens on 127.0.0.1, a free port.
    #[must_use]
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address").to_string();
        let shared = Arc::new(Shared::default());
        let serving = Arc::clone(&shared);
        let thread = std::thread::spawn(move || serve(&listener, &serving));
        Self {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    /// `host:port`.
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
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn serve(listener: &TcpListener, shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let shared = Arc::clone(shared);
                // One thread per connection: a slow reply must not hold the others.
                std::thread::spawn(move || {
                    let _ = answer(stream, &shared);
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn answer(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
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
    std::thread::sleep(reply.delay);
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        reply.status,
        reply.body.len(),
        reply.body
    )?;
    stream.flush()
}
