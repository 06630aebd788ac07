//! The workloads: loopback TCP transfers and the fork+exit loop.

use std::{
    io::{self, Read as _, Write as _},
    net::{Shutdown, TcpListener, TcpStream},
    thread,
    time::Instant,
};

use crate::{MIB, WRITE_SIZE, report::median};

/// Loopback transfers per TCP measurement; the measurement is their median rate.
pub(crate) const TCP_TRANSFERS: u64 = 8;

/// The median MiB/s of [`TCP_TRANSFERS`] transfers of `bytes / TCP_TRANSFERS` each.
pub(crate) fn tcp_measurement(bytes: u64) -> f64 {
    let cpus = tcp_cpus();
    median(
        (0..TCP_TRANSFERS)
            .map(|_| tcp_throughput(bytes / TCP_TRANSFERS, cpus))
            .collect(),
    )
}

/// Sends `bytes` from a client thread to a server thread over loopback TCP in [`WRITE_SIZE`]
/// writes; returns MiB/s from the first write until the server has read the last byte. The
/// connection is made before the clock starts. The client and the server are pinned to the
/// CPUs in `cpus`: left to the scheduler, they share one CPU in some transfers and not in
/// others, which changes the rate by half either way on this 2-CPU VM and would drown the
/// programs' cost.
pub(crate) fn tcp_throughput(bytes: u64, cpus: (usize, usize)) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    let addr = listener.local_addr().expect("listener address");
    let writes = bytes / WRITE_SIZE as u64;
    let (received, elapsed) = thread::scope(|s| {
        let server = s.spawn(move || -> io::Result<(u64, Instant)> {
            pin_to(cpus.1);
            let (mut stream, _) = listener.accept()?;
            let mut buf = vec![0u8; WRITE_SIZE];
            let mut total = 0u64;
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => return Ok((total, Instant::now())),
                    Ok(n) => total += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        });
        let client = s.spawn(move || {
            pin_to(cpus.0);
            let mut client = TcpStream::connect(addr).expect("connecting over loopback");
            let chunk = vec![0xa5u8; WRITE_SIZE];
            let started = Instant::now();
            for _ in 0..writes {
                client.write_all(&chunk).expect("writing over loopback");
            }
            client
                .shutdown(Shutdown::Write)
                .expect("closing the write side");
            started
        });
        let started = join(client);
        let (received, ended) = join(server).expect("the server reads");
        (received, ended - started)
    });
    assert_eq!(received, writes * WRITE_SIZE as u64, "bytes received");
    mib(received) / elapsed.as_secs_f64()
}

/// The result of a scoped thread, its panic passed on.
pub(crate) fn join<T>(handle: thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// The CPUs for the TCP client and server: the first two this process may run on (the same
/// one twice on a single CPU).
pub(crate) fn tcp_cpus() -> (usize, usize) {
    // SAFETY: cpu_set_t is plain old data (all zeroes is the empty set); the kernel fills at
    // most its size; CPU_ISSET reads a bit below CPU_SETSIZE.
    let allowed: Vec<usize> = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let rc = libc::sched_getaffinity(0, std::mem::size_of_val(&set), &raw mut set);
        assert_eq!(rc, 0, "sched_getaffinity: {}", io::Error::last_os_error());
        (0..usize::try_from(libc::CPU_SETSIZE).unwrap_or(0))
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .take(2)
            .collect()
    };
    match allowed[..] {
        [one] => (one, one),
        [a, b, ..] => (a, b),
        [] => panic!("no CPU allowed"),
    }
}

/// Pins the calling thread to `cpu`.
pub(crate) fn pin_to(cpu: usize) {
    // SAFETY: cpu_set_t is plain old data; CPU_SET sets a bit below CPU_SETSIZE (the CPU came
    // from sched_getaffinity); the kernel reads a set of the size given.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &raw const set)
    };
    assert_eq!(
        rc,
        0,
        "pinning to CPU {cpu}: {}",
        io::Error::last_os_error()
    );
}

/// `forks` times: fork a child that exits at once, and reap it. Returns the ns per iteration.
pub(crate) fn fork_exit(forks: u32) -> f64 {
    let started = Instant::now();
    for _ in 0..forks {
        // SAFETY: the child only calls _exit, which is async-signal-safe, so forking a
        // multi-threaded process is fine.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: in the child: leave at once, running no destructors or atexit hooks.
            unsafe { libc::_exit(0) };
        }
        assert!(pid > 0, "fork: {}", io::Error::last_os_error());
        let mut status = 0;
        // SAFETY: waits for our own child, status is a valid out pointer.
        let reaped = unsafe { libc::waitpid(pid, &raw mut status, 0) };
        assert_eq!(reaped, pid, "waitpid: {}", io::Error::last_os_error());
    }
    started.elapsed().as_secs_f64() * 1e9 / f64::from(forks)
}

#[expect(clippy::cast_precision_loss, reason = "byte counts are far below 2^53")]
pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}
