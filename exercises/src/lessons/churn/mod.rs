//! The churn generator of lessons 05 and 09: open and close loopback connections as fast as
//! two cores allow (or at a chosen rate), and sample how many TIME_WAIT sockets the kernel
//! holds every half second. The lessons run it in a private network namespace
//! ([`netns`](super::netns)) so its flood of TIME_WAIT sockets never fills the host's table
//! (net.ipv4.tcp_max_tw_buckets is per namespace) and never disturbs other programs.
//!
//! How it is fast: one single-threaded tokio runtime per core, four tasks on each, and every
//! step of a connection first tried at once (see [`one_connection`]): on loopback the
//! kernel finishes the handshake inside connect() and delivers each FIN inside close(), so
//! a task only waits on tokio's reactor when the kernel says "not yet".
//!
//! This module is the engine (the benches run it alone); [`lesson`] holds the lesson side:
//! the flags, and the narration and facts of a churn inside a lesson.
//!
//! Left out on purpose: any payload (a connection here is connect, one close each way),
//! tuning (tcp_tw_reuse, congestion control), and IPv6.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tcplab_core::observe::{self, Method, Query};
use tcplab_core::{TcpState, sockets};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

mod lesson;
pub use lesson::{ChurnArgs, run_in_lesson};

pub use tcplab_core::limits::{
    MAX_CHURN_RATE as MAX_RATE, MAX_CHURN_SECS as MAX_SECS, MIN_CHURN_RATE as MIN_RATE,
    MIN_CHURN_SECS as MIN_SECS,
};
/// Worker threads, one single-threaded tokio runtime each (one per core on 2 cores).
pub const WORKERS: usize = 2;
/// Churn tasks in all, spread evenly over the workers.
pub const TASKS: usize = 8;
/// How long one connection may take before it counts as failed.
const CONN_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the kernel's TIME_WAIT count is sampled. Each sample dumps every TIME_WAIT socket
/// on the churn ports (tens of thousands after a second), which costs CPU the churn would
/// otherwise use; two samples a second draw the curve and leave the cores to the churn.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// Which side closes first in the churn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Closer {
    Server,
    Client,
}

/// What to churn.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// How long, in seconds (at most [`MAX_SECS`]).
    pub secs: f64,
    pub closer: Closer,
    /// Connections per second to aim at; `None` is as fast as the cores allow.
    pub rate: Option<f64>,
    /// Listener ports (1..=[`TASKS`]). Each (address, port) destination has its own ~28k
    /// ephemeral ports on the client side, so more ports allow more connections at a time.
    pub ports: usize,
    /// End the churn at the first EADDRNOTAVAIL (lesson 09: the ports ran out).
    pub stop_when_exhausted: bool,
}

impl Config {
    /// As fast as possible for `secs` over [`TASKS`] ports: each task has its own port.
    pub fn new(secs: f64, closer: Closer) -> Config {
        Config {
            secs,
            closer,
            rate: None,
            ports: TASKS,
            stop_when_exhausted: false,
        }
    }

    /// Refuse values the churn cannot honour, with what to do instead.
    pub fn check(&self) -> Result<()> {
        if !(MIN_SECS..=MAX_SECS).contains(&self.secs) {
            bail!(
                "--churn-secs {} is outside [{MIN_SECS}, {MAX_SECS}]",
                self.secs
            );
        }
        if let Some(rate) = self.rate
            && !(MIN_RATE..=MAX_RATE).contains(&rate)
        {
            bail!(
                "--churn-rate {rate} is outside [{MIN_RATE}, {MAX_RATE}] connections per second; leave it \
                 out to churn as fast as the cores allow"
            );
        }
        if !(1..=TASKS).contains(&self.ports) {
            bail!(
                "the churn uses 1 to {TASKS} listener ports, not {}",
                self.ports
            );
        }
        Ok(())
    }
}

/// One sample of the kernel's TIME_WAIT count on the churn ports.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t_ms: u64,
    pub connections: u64,
    pub server_time_wait: usize,
    pub client_time_wait: usize,
    /// How long the filtered sock_diag dump took.
    pub snapshot_ms: f64,
}

/// What a churn run did and what the kernel showed.
#[derive(Debug, Clone, Serialize)]
pub struct ChurnReport {
    pub closer: Closer,
    pub secs: f64,
    /// The rate asked for (`None`: as fast as possible).
    pub target_rate: Option<f64>,
    pub ports: usize,
    pub connections: u64,
    /// Connections that failed or timed out, EADDRNOTAVAIL included.
    pub failed: u64,
    /// connect() calls that failed with EADDRNOTAVAIL (no free local port).
    pub exhausted: u64,
    /// When the first EADDRNOTAVAIL came, and how many connections had completed by then.
    pub first_exhausted_ms: Option<u64>,
    pub connections_before_exhaustion: Option<u64>,
    pub rate_per_sec: f64,
    /// CPU time this process used meanwhile (user + system, all threads, sampler included):
    /// connections / cpu_secs is the rate per core, which a busy machine does not distort.
    pub cpu_secs: f64,
    pub samples: Vec<Sample>,
    pub peak_time_wait: usize,
    pub tcp_max_tw_buckets: Option<u64>,
    /// The namespace's TcpExt TWRecycled counter over the churn: connect() calls that took
    /// over a local port still in TIME_WAIT (tcp_tw_reuse).
    pub tw_recycled: Option<u64>,
    /// TcpExt TCPTimeWaitOverflow over the churn: closes that got no TIME_WAIT because
    /// tcp_max_tw_buckets was reached.
    pub tw_overflow: Option<u64>,
}

/// What the tasks share: the stop flag and the counters.
struct Shared {
    stop: AtomicBool,
    done: AtomicU64,
    failed: AtomicU64,
    exhausted: AtomicU64,
    /// Milliseconds since `t0` at the first EADDRNOTAVAIL, and connections done by then
    /// (u64::MAX until it happens).
    first_exhausted_ms: AtomicU64,
    done_at_exhaustion: AtomicU64,
    t0: Instant,
}

/// Churn as `cfg` says; `on_sample` sees every sample as it is taken.
pub fn run(cfg: Config, mut on_sample: impl FnMut(&Sample)) -> Result<ChurnReport> {
    cfg.check()?;
    let mut listeners = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..cfg.ports {
        let l = sockets::listen_on(
            sockets::loopback(false),
            sockets::ListenOptions {
                reuseaddr: false,
                backlog: 4096,
            },
        )?;
        l.set_nonblocking(true)?;
        ports.push(l.local_addr()?.port());
        listeners.push(l);
    }
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        exhausted: AtomicU64::new(0),
        first_exhausted_ms: AtomicU64::new(u64::MAX),
        done_at_exhaustion: AtomicU64::new(u64::MAX),
        t0: Instant::now(),
    });
    // Task t connects to and accepts on listener t % ports, through its own duplicate of the
    // listener's descriptor (each registration with a reactor needs its own).
    let mut tasks: Vec<Vec<Task>> = (0..WORKERS).map(|_| Vec::new()).collect();
    for t in 0..TASKS {
        let l = &listeners[t % listeners.len()];
        tasks[t % WORKERS].push(Task {
            listener: l.try_clone()?,
            addr: SockAddr::from(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                ports[t % ports.len()],
            ))),
            // Each task's share of the rate: one connection every TASKS / rate seconds, the
            // tasks staggered by 1 / rate so that the connections come evenly spaced.
            pace: cfg.rate.map(|r| Pace {
                every: Duration::from_secs_f64(TASKS as f64 / r),
                first: Duration::from_secs_f64(t as f64 / r),
            }),
        });
    }
    drop(listeners);

    let counters0 = tcplab_core::kernel::tcp_ext_counters();
    let cpu0 = cpu_secs();
    let mut workers = Vec::new();
    for (w, mine) in tasks.into_iter().enumerate() {
        let for_worker = shared.clone();
        let closer = cfg.closer;
        let spawned = std::thread::Builder::new()
            .name(format!("tcplab-churn-{w}"))
            .spawn(move || churn_worker(mine, closer, cfg.stop_when_exhausted, for_worker));
        match spawned {
            Ok(handle) => workers.push(handle),
            Err(e) => {
                shared.stop.store(true, Ordering::Relaxed);
                join_all(workers)?;
                return Err(e).context("start a churn worker thread");
            }
        }
    }

    // This thread samples the kernel while the two workers churn.
    let query = Query::ports(&ports).with_states(&[TcpState::TimeWait]);
    let t0 = shared.t0;
    let deadline = t0 + Duration::from_secs_f64(cfg.secs);
    let mut samples = Vec::new();
    let sampled = (|| -> Result<()> {
        loop {
            // Sleep until the next sample, the deadline or the stop flag (ports ran out).
            let next = (Instant::now() + SAMPLE_EVERY).min(deadline);
            while Instant::now() < next && !shared.stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10).min(next - Instant::now()));
            }
            let connections = shared.done.load(Ordering::Relaxed);
            let s0 = Instant::now();
            let rows = observe::snapshot(&query, Method::Auto)?.rows;
            let server = rows
                .iter()
                .filter(|r| ports.contains(&r.local.port()))
                .count();
            let sample = Sample {
                t_ms: t0.elapsed().as_millis() as u64,
                connections,
                server_time_wait: server,
                client_time_wait: rows.len() - server,
                snapshot_ms: s0.elapsed().as_secs_f64() * 1000.0,
            };
            on_sample(&sample);
            samples.push(sample);
            if Instant::now() >= deadline || shared.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
        }
    })();
    // The rate counts up to the moment the churn was told to stop, not the wind-down.
    let elapsed = t0.elapsed();
    let connections = shared.done.load(Ordering::Relaxed);
    shared.stop.store(true, Ordering::Relaxed);
    let cpu = cpu_secs() - cpu0;
    // Each task finishes the connection it is on (at most CONN_TIMEOUT), then its worker ends.
    join_all(workers)?;
    sampled?;
    let counters = tcplab_core::kernel::tcp_ext_counters();
    let delta = |name: &str| Some(counters.get(name)? - counters0.get(name)?);

    let peak = samples
        .iter()
        .map(|s| s.server_time_wait + s.client_time_wait)
        .max()
        .unwrap_or(0);
    let first = shared.first_exhausted_ms.load(Ordering::Relaxed);
    let (first_exhausted_ms, connections_before_exhaustion) = if first == u64::MAX {
        (None, None)
    } else {
        (
            Some(first),
            Some(shared.done_at_exhaustion.load(Ordering::Relaxed)),
        )
    };
    Ok(ChurnReport {
        closer: cfg.closer,
        secs: elapsed.as_secs_f64(),
        target_rate: cfg.rate,
        ports: cfg.ports,
        connections,
        failed: shared.failed.load(Ordering::Relaxed),
        exhausted: shared.exhausted.load(Ordering::Relaxed),
        first_exhausted_ms,
        connections_before_exhaustion,
        rate_per_sec: connections as f64 / elapsed.as_secs_f64(),
        cpu_secs: cpu,
        samples,
        peak_time_wait: peak,
        tcp_max_tw_buckets: tcplab_core::kernel::sysctl("net/ipv4/tcp_max_tw_buckets"),
        tw_recycled: delta("TWRecycled"),
        tw_overflow: delta("TCPTimeWaitOverflow"),
    })
}

fn join_all(workers: Vec<std::thread::JoinHandle<io::Result<()>>>) -> Result<()> {
    let mut first_error = Ok(());
    for w in workers {
        let r = match w.join() {
            Ok(r) => r.context("churn worker"),
            Err(_) => Err(anyhow::anyhow!("a churn worker panicked")),
        };
        if first_error.is_ok() {
            first_error = r;
        }
    }
    first_error
}

/// One task's part: its listener, the address it connects to, its pace.
struct Task {
    listener: std::net::TcpListener,
    addr: SockAddr,
    pace: Option<Pace>,
}

/// When a paced task makes its connections: at `first`, then every `every`.
#[derive(Debug, Clone, Copy)]
struct Pace {
    every: Duration,
    first: Duration,
}

/// One worker thread: a single-threaded runtime running its tasks until the stop flag.
/// Per-core runtimes share nothing but the counters, and a connection's two ends are
/// handled by the same thread.
fn churn_worker(
    tasks: Vec<Task>,
    closer: Closer,
    stop_when_exhausted: bool,
    shared: Arc<Shared>,
) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut running = tokio::task::JoinSet::new();
        for task in tasks {
            // SAFETY: the AsyncFd owns this duplicate descriptor; nothing else closes or
            // replaces it while it is registered.
            let listener = unsafe { AsyncFd::register(task.listener)? };
            running.spawn(churn_task(
                listener,
                task.addr,
                task.pace,
                closer,
                stop_when_exhausted,
                shared.clone(),
            ));
        }
        while running.join_next().await.is_some() {}
        Ok(())
    })
}

/// One task: connections one after another until the stop flag, at its pace if it has one.
async fn churn_task(
    listener: AsyncFd<std::net::TcpListener>,
    addr: SockAddr,
    pace: Option<Pace>,
    closer: Closer,
    stop_when_exhausted: bool,
    shared: Arc<Shared>,
) {
    let start = tokio::time::Instant::now();
    let mut n: u32 = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        if let Some(pace) = pace {
            // Paced against the start, so a late wake-up is caught up, not lost; in naps of
            // at most 50 ms, so that a stop is seen at once even at one connection a second.
            let due = start + pace.first + pace.every * n;
            loop {
                let now = tokio::time::Instant::now();
                if now >= due || shared.stop.load(Ordering::Relaxed) {
                    break;
                }
                tokio::time::sleep_until(due.min(now + Duration::from_millis(50))).await;
            }
            if shared.stop.load(Ordering::Relaxed) {
                break;
            }
        }
        n = n.wrapping_add(1);
        let one =
            tokio::time::timeout(CONN_TIMEOUT, one_connection(&listener, &addr, closer)).await;
        match one {
            Ok(Ok(())) => {
                shared.done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(e)) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                shared.exhausted.fetch_add(1, Ordering::Relaxed);
                let ms = shared.t0.elapsed().as_millis() as u64;
                if shared
                    .first_exhausted_ms
                    .compare_exchange(u64::MAX, ms, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    let done = shared.done.load(Ordering::Relaxed);
                    shared.done_at_exhaustion.store(done, Ordering::Relaxed);
                }
                if stop_when_exhausted {
                    shared.stop.store(true, Ordering::Relaxed);
                } else {
                    // No port is free until a TIME_WAIT ends: do not spin on connect().
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            _ => {
                shared.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        // A connection that never had to wait gave the scheduler no chance to run the other
        // tasks; let it now and then.
        if n % 16 == 0 {
            tokio::task::yield_now().await;
        }
    }
}

/// One connection from connect() to both closes, `closer` closing first. On loopback the
/// kernel handles each packet inside the system call that sent it: connect() returns with the
/// handshake done and the connection queued at the listener, and close() returns with the FIN
/// already delivered. So every step is first tried at once on a non-blocking socket, and only
/// when the kernel answers "not yet" (EAGAIN, under load) does the task register the socket
/// with tokio and wait for readiness. Registering every socket up front costs an
/// epoll_ctl() to add it and one to remove it, and a trip through epoll_wait: with them, two
/// cores made ~22k connections/s here instead of ~31k.
async fn one_connection(
    listener: &AsyncFd<std::net::TcpListener>,
    addr: &SockAddr,
    closer: Closer,
) -> io::Result<()> {
    let client = Socket::new(
        Domain::IPV4,
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    match client.connect(addr) {
        Err(e) if e.raw_os_error() != Some(libc::EINPROGRESS) => return Err(e),
        _ => {}
    }
    // With one task per listener, what it accepts is its own connection. Tasks that share a
    // listener may take each other's: every one is accepted once and both ends still close
    // in the right order, only the waits below happen more often.
    let server = loop {
        match listener.get_ref().accept() {
            Ok((stream, _)) => break Socket::from(stream),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                listener.readable().await?.clear_ready();
            }
            Err(e) => return Err(e),
        }
    };
    let (first, second) = match closer {
        Closer::Server => (server, client),
        Closer::Client => (client, server),
    };
    // The active closer closes; the other side sees the end of the stream, then closes too.
    drop(first);
    wait_for_eof(second).await
}

/// Read until the peer's FIN (end of stream), then close: at once if it is already there,
/// else registered with the reactor until it comes.
async fn wait_for_eof(socket: Socket) -> io::Result<()> {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 16];
    loop {
        match socket.recv(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    // SAFETY: the AsyncFd owns the socket, and with it the descriptor, while it is registered.
    let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE)? };
    loop {
        let mut ready = socket.readable().await?;
        match ready.try_io(|s| s.get_ref().recv(&mut buf)) {
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => {}
        }
    }
}

/// User + system CPU seconds this process has used (all threads).
fn cpu_secs() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
