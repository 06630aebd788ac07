//! Scenarios and how they are run.

use std::{
    panic,
    path::Path,
    sync::Barrier,
    thread,
    time::{Duration, Instant},
};

use collector_tests::support::daemon::Daemon;

use crate::{
    Config,
    checks::{check_batch, check_in_process, check_single},
    client::Client,
    in_process::resolve_in_process,
    pinning::SameCpu,
    setup::{Daemons, Plan},
};

/// Who answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    EbpfDaemon,
    /// The baseline build's daemon, started as the eBPF daemon is (an A/B run).
    BaselineDaemon,
    ProcfsDaemon,
    InProcess,
}

impl Via {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Via::EbpfDaemon => "eBPF daemon",
            Via::BaselineDaemon => "baseline (eBPF)",
            Via::ProcfsDaemon => "--no-ebpf daemon",
            Via::InProcess => "no daemon",
        }
    }

    /// The `source` every answer of this daemon must carry.
    pub(crate) fn source(self) -> &'static str {
        match self {
            Via::EbpfDaemon | Via::BaselineDaemon => "ebpf",
            Via::ProcfsDaemon | Via::InProcess => "procfs",
        }
    }
}

/// How it is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    KeepAlive,
    /// Keep-alive with the client and all the daemon's threads pinned to one CPU: no
    /// cross-CPU wake-up per request, which a VM makes expensive (a diagnostic row).
    KeepAliveSameCpu,
    NewConnection,
    Batched {
        threads: usize,
    },
    Read {
        threads: usize,
    },
}

impl Mode {
    pub(crate) fn describe(self, batch_size: usize) -> String {
        match self {
            Mode::KeepAlive => "GET /v1/pid, 1 keep-alive conn".to_owned(),
            Mode::KeepAliveSameCpu => "  same, client+daemon on 1 CPU".to_owned(),
            Mode::NewConnection => "GET /v1/pid, new conn each".to_owned(),
            Mode::Batched { threads } => format!("POST {batch_size} PIDs, {}", n_threads(threads)),
            Mode::Read { threads } => format!("read /proc/<pid>/cgroup, {}", n_threads(threads)),
        }
    }

    /// What one latency sample covers.
    pub(crate) fn sample_unit(self) -> &'static str {
        match self {
            Mode::KeepAlive | Mode::KeepAliveSameCpu | Mode::NewConnection => "request",
            Mode::Batched { .. } => "batch",
            Mode::Read { .. } => "lookup",
        }
    }
}

pub(crate) fn n_threads(threads: usize) -> String {
    if threads == 1 {
        "1 thread".to_owned()
    } else {
        format!("{threads} threads")
    }
}

/// What was measured: one latency per sample, lookups done, wall time.
#[derive(Debug, Default)]
pub(crate) struct Measured {
    pub latencies: Vec<Duration>,
    pub lookups: usize,
    pub wall: Duration,
    /// Whether a round stopped at the time cap.
    pub capped: bool,
}

impl Measured {
    pub(crate) fn merge(&mut self, other: Measured) {
        self.latencies.extend(other.latencies);
        self.lookups += other.lookups;
        self.wall += other.wall;
        self.capped |= other.capped;
    }
}

/// Runs `samples` steps and returns what they measured; stops early at the deadline.
pub(crate) type Round<'a> = Box<dyn FnMut(usize, Instant) -> Measured + 'a>;

pub(crate) struct Scenario<'a> {
    pub via: Via,
    pub mode: Mode,
    pub samples: usize,
    pub round: Round<'a>,
    pub measured: Measured,
}

impl Scenario<'_> {
    pub(crate) fn is(&self, via: Via, mode: Mode) -> bool {
        self.via == via && self.mode == mode
    }
}

/// Every row of the table, in table order: the eBPF daemon's, the baseline's (the same
/// rows), the `--no-ebpf` daemon's, the in-process reads.
pub(crate) fn scenarios<'a>(
    config: &Config,
    plan: &'a Plan,
    daemons: &Daemons,
) -> Vec<Scenario<'a>> {
    let mut all = Vec::new();
    let mut answering = vec![(Via::EbpfDaemon, &daemons.ebpf)];
    if let Some((_, baseline)) = &daemons.baseline {
        answering.push((Via::BaselineDaemon, baseline));
    }
    answering.push((Via::ProcfsDaemon, &daemons.no_ebpf));
    for (via, daemon) in answering {
        let socket = daemon.socket();
        let mut modes = vec![Mode::KeepAlive, Mode::NewConnection];
        if via != Via::ProcfsDaemon {
            modes.insert(1, Mode::KeepAliveSameCpu);
        }
        for mode in modes {
            let samples = match mode {
                Mode::NewConnection => config.new_connection_requests,
                _ => config.keep_alive_requests,
            };
            all.push(scenario(
                via,
                mode,
                samples,
                single(plan, daemon, via, mode),
            ));
        }
        for threads in [1, 2] {
            let batches = batched(plan, socket, via, threads, config.check_every_batch);
            all.push(scenario(
                via,
                Mode::Batched { threads },
                config.batches,
                batches,
            ));
        }
    }
    for threads in [1, 2] {
        let reads = in_process(plan, threads);
        all.push(scenario(
            Via::InProcess,
            Mode::Read { threads },
            config.reads,
            reads,
        ));
    }
    all
}

pub(crate) fn scenario(via: Via, mode: Mode, samples: usize, round: Round<'_>) -> Scenario<'_> {
    Scenario {
        via,
        mode,
        samples,
        round,
        measured: Measured::default(),
    }
}

/// Clients that start at evenly spread offsets of a list of `len`, so threads do not ask for
/// the same PIDs at the same time.
pub(crate) fn clients(socket: &Path, threads: usize, len: usize) -> Vec<Client> {
    (0..threads)
        .map(|t| Client::new(socket, t * len / threads))
        .collect()
}

/// Sequential `GET /v1/pid/{pid}`, round-robin over the targets, on one persistent connection
/// (`mode` [`Mode::KeepAlive`] or [`Mode::KeepAliveSameCpu`]) or a new connection per request
/// ([`Mode::NewConnection`]). Every answer is checked after the round.
pub(crate) fn single<'a>(plan: &'a Plan, daemon: &Daemon, via: Via, mode: Mode) -> Round<'a> {
    let keep_alive = mode != Mode::NewConnection;
    let pin = (mode == Mode::KeepAliveSameCpu).then_some(daemon.pid());
    let mut clients = clients(daemon.socket(), 1, plan.targets.len());
    Box::new(move |samples, deadline| {
        if keep_alive {
            clients.iter_mut().for_each(Client::reconnect);
        }
        let pinned = pin.map(SameCpu::pin);
        let (latencies, wall, answers) = run_clients(&mut clients, samples, deadline, |c| {
            let index = c.advance(plan.targets.len());
            let started = Instant::now();
            let reply = if keep_alive {
                c.keep_alive(&plan.get_keep_alive[index])
            } else {
                c.one_shot(&plan.get_close[index])
            };
            let latency = started.elapsed();
            (latency, (index, reply.status, reply.body.into_owned()))
        });
        drop(pinned);
        for (index, status, body) in &answers {
            check_single(&plan.targets[*index], *status, body, via);
        }
        measured(latencies, answers.len(), wall, samples)
    })
}

/// `POST /v1/pids` batches on one persistent connection per thread. Every status is checked,
/// and the full body of one batch in `check_every`.
pub(crate) fn batched<'a>(
    plan: &'a Plan,
    socket: &Path,
    via: Via,
    threads: usize,
    check_every: usize,
) -> Round<'a> {
    let mut clients = clients(socket, threads, plan.batches.len());
    Box::new(move |samples, deadline| {
        clients.iter_mut().for_each(Client::reconnect);
        let (latencies, wall, answers) = run_clients(&mut clients, samples, deadline, |c| {
            let index = c.advance(plan.batches.len());
            let keep = c.steps % check_every == 0;
            let started = Instant::now();
            let reply = c.keep_alive(&plan.batches[index].request);
            let latency = started.elapsed();
            let body = keep.then(|| reply.body.into_owned());
            (latency, (index, reply.status, body))
        });
        for (index, status, body) in &answers {
            check_batch(plan, &plan.batches[*index], *status, body.as_deref(), via);
        }
        let batch_size = plan.batches[0].members.len();
        measured(latencies, answers.len() * batch_size, wall, samples)
    })
}

/// The no-daemon baseline: [`resolve_in_process`] round-robin over the targets.
pub(crate) fn in_process(plan: &Plan, threads: usize) -> Round<'_> {
    let mut clients = clients(Path::new(""), threads, plan.targets.len());
    Box::new(move |samples, deadline| {
        let (latencies, wall, answers) = run_clients(&mut clients, samples, deadline, |c| {
            let index = c.advance(plan.targets.len());
            let pid = plan.targets[index].pid;
            let started = Instant::now();
            let id = resolve_in_process(pid, &mut c.proc_path, &mut c.proc_text);
            let latency = started.elapsed();
            (latency, (index, id))
        });
        for (index, id) in &answers {
            check_in_process(&plan.targets[*index], id);
        }
        measured(latencies, answers.len(), wall, samples)
    })
}

pub(crate) fn measured(
    latencies: Vec<Duration>,
    lookups: usize,
    wall: Duration,
    asked: usize,
) -> Measured {
    Measured {
        capped: latencies.len() < asked,
        latencies,
        lookups,
        wall,
    }
}

/// One client thread's start, end, and each step's latency and result.
pub(crate) type ThreadRun<T> = (Instant, Instant, Vec<(Duration, T)>);

/// Runs `samples` steps in all, split evenly over one thread per client (each client's steps
/// in sequence), until done or `deadline`. A step returns its own latency, so it can time just
/// the round trip, and a result to check after the clock stopped. Returns the latencies, the
/// wall time from the first thread's start to the last one's end, and the results.
pub(crate) fn run_clients<T: Send>(
    clients: &mut [Client],
    samples: usize,
    deadline: Instant,
    step: impl Fn(&mut Client) -> (Duration, T) + Sync,
) -> (Vec<Duration>, Duration, Vec<T>) {
    let threads = clients.len();
    // Threads start together, so the 2-thread rows measure two clients at once.
    let barrier = Barrier::new(threads);
    let per_thread: Vec<ThreadRun<T>> = thread::scope(|s| {
        let handles: Vec<_> = clients
            .iter_mut()
            .enumerate()
            .map(|(t, client)| {
                let share = samples / threads + usize::from(t < samples % threads);
                let (barrier, step) = (&barrier, &step);
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    let mut out = Vec::with_capacity(share);
                    while out.len() < share && Instant::now() < deadline {
                        out.push(step(client));
                    }
                    (start, Instant::now(), out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| panic::resume_unwind(p)))
            .collect()
    });
    let first = per_thread.iter().map(|t| t.0).min().expect("one thread");
    let last = per_thread.iter().map(|t| t.1).max().expect("one thread");
    let (latencies, results) = per_thread.into_iter().flat_map(|t| t.2).unzip();
    (latencies, last - first, results)
}

/// Runs a warm-up round of every scenario, then `config.rounds` rounds of all of them in turn
/// (every other round in reverse order), so that machine noise is spread over all rows.
pub(crate) fn run_interleaved(scenarios: &mut [Scenario<'_>], config: &Config) {
    let run_order = run_order(scenarios);
    for &i in &run_order {
        let s = &mut scenarios[i];
        // Warm-up: connections, caches, the daemon's allocator; checked, not recorded.
        let _ = (s.round)((s.samples / 10).max(1), Instant::now() + config.round_cap);
    }
    for round in 0..config.rounds {
        let mut order = run_order.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let s = &mut scenarios[i];
            let samples =
                s.samples / config.rounds + usize::from(round < s.samples % config.rounds);
            let measured = (s.round)(samples, Instant::now() + config.round_cap);
            s.measured.merge(measured);
        }
    }
}

/// The order rows run in a round: table order, except that each baseline row runs right after
/// the eBPF daemon's row of the same mode, so that the two builds are measured as close in
/// time as can be (and, with the order flipping every round, each first in turn). Without a
/// baseline, table order.
pub(crate) fn run_order(scenarios: &[Scenario<'_>]) -> Vec<usize> {
    let mut order = Vec::with_capacity(scenarios.len());
    for (i, s) in scenarios.iter().enumerate() {
        if s.via == Via::BaselineDaemon {
            continue;
        }
        order.push(i);
        if s.via == Via::EbpfDaemon {
            order.extend(
                scenarios
                    .iter()
                    .position(|twin| twin.is(Via::BaselineDaemon, s.mode)),
            );
        }
    }
    order
}
