//! The transition tracer: every state change of the sockets on some ports, as a
//! [`Timeline`], from one of two backends behind one interface.
//!
//! - **tracepoint** (root): the kernel's `sock:inet_sock_set_state` tracepoint in a private
//!   tracefs instance ([`super::tracefs`]), filtered in the kernel to TCP and the watched
//!   ports. It sees every change of a full socket, however brief, with a timestamp.
//! - **poll** (any user): a sock_diag dump of the watched ports every millisecond, diffed.
//!   States too brief to be caught (SYN_SENT, FIN_WAIT1, LAST_ACK live microseconds on
//!   loopback) are filled in from the shortest legal path ([`super::infer`]) and marked
//!   [`Source::Inferred`], never [`Source::Poll`]. On loopback, where both ends of a
//!   connection are ours, an end the poll never saw at all while its peer was seen is added
//!   with the path its peer implies ([`infer::peer_path`]), every step inferred. And because a
//!   socket can live and die between two polls on both sides (a connection reset at once
//!   leaves no TIME_WAIT to find), the poll compares what it showed with the kernel's own
//!   counts of connections opened in this network namespace (`Tcp: ActiveOpens` and
//!   `PassiveOpens` in `/proc/net/snmp`) and says how many it may have missed ([`Missed`]).
//!
//! What the tracepoint cannot see, sock_diag fills in. When a socket leaves FIN_WAIT2 or
//! CLOSING the kernel swaps in a *mini-socket* (timewait sock) and the tracepoint reports
//! `-> CLOSE`. We then ask sock_diag about that 4-tuple: a TIME_WAIT row turns the event into
//! `-> TIME_WAIT` ([`Source::Diag`]); a FIN_WAIT2 row (an orphan: the program closed, the peer
//! has not) means the socket is still in FIN_WAIT2, so no event. Those tuples are then
//! watched by polling, to report `FIN_WAIT2 -> TIME_WAIT` when the peer's FIN comes and
//! `TIME_WAIT -> CLOSE` when the mini-socket goes.
//!
//! Left out on purpose: sockets that exist before the tracer starts are not reported until
//! they change (the tracepoint knows nothing of them either), and a connect() whose first
//! event names no local port yet (`CLOSE -> SYN_SENT` fires before the port is chosen) is
//! matched to its socket by destination and task, not by the kernel's socket address, which
//! the text pipe does not print.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::infer;
use super::tracefs::{self, BufferStats, Instance, RawEvent, Tracefs};
use super::{Method, Query, SocketRow};
use crate::error::{Error, Result};
use crate::state::TcpState;
use crate::timeline::{Endpoint, Event, Source, Timeline};

/// Which way to watch transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The tracepoint when we are root and tracefs works, otherwise polling.
    #[default]
    Auto,
    /// `sock:inet_sock_set_state` in a private tracefs instance (root only).
    Tracepoint,
    /// sock_diag dumps, diffed (any user).
    Poll,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Backend::Auto => "auto",
            Backend::Tracepoint => "tracepoint",
            Backend::Poll => "poll",
        })
    }
}

/// A failure injected on purpose, for tests that check we clean up on errors.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `start()` fails right after the tracepoint is armed.
    AfterArm,
    /// The background thread fails on its first round; `stop()` returns the error.
    InWorker,
}

/// What to watch and how.
#[derive(Debug, Clone)]
pub struct TraceConfig {
    /// Sockets whose local or remote port is one of these; empty watches every TCP socket.
    pub ports: Vec<u16>,
    pub backend: Backend,
    /// How often the poll backend dumps, and how often mini-sockets are rechecked.
    pub poll_interval: Duration,
    /// Ring buffer per CPU for the tracepoint, in KiB.
    pub buffer_kb: u32,
    #[doc(hidden)]
    pub fault: Option<Fault>,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            ports: Vec::new(),
            backend: Backend::Auto,
            poll_interval: Duration::from_millis(1),
            buffer_kb: 16 * 1024,
            fault: None,
        }
    }
}

impl TraceConfig {
    /// Watch these ports with the default backend and interval.
    pub fn ports(ports: &[u16]) -> TraceConfig {
        TraceConfig {
            ports: ports.to_vec(),
            ..TraceConfig::default()
        }
    }

    pub fn with_backend(mut self, backend: Backend) -> TraceConfig {
        self.backend = backend;
        self
    }
}

/// Counters for a finished trace: how much the kernel wrote and whether any was lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TraceStats {
    /// Tracepoint lines parsed (each one state change of a full socket).
    pub tracepoint_events: u64,
    /// sock_diag dumps made (polls, and lookups of mini-sockets).
    pub dumps: u64,
    /// The instance's ring buffer at the end: `overrun` + `dropped` are events lost.
    pub overrun: u64,
    pub dropped: u64,
}

/// A finished trace.
#[derive(Debug, Clone)]
pub struct TraceReport {
    pub timeline: Timeline,
    pub stats: TraceStats,
    /// Things that went wrong but did not stop the trace (sock_diag refused, say).
    pub warnings: Vec<String>,
    /// The poll backend's account of what it may have missed; `None` for the tracepoint,
    /// which sees every change of a full socket.
    pub missed: Option<Missed>,
}

/// What a poll trace shows against what the kernel counted while it ran.
///
/// The kernel counts every connection it opens in a network namespace: `ActiveOpens` for
/// each connect() that sent a SYN, `PassiveOpens` for each connection set up for a
/// listener (`/proc/net/snmp`, readable by anyone). A connection whose two ends both lived
/// less than one poll and left nothing behind (reset, so no TIME_WAIT) is in those counts and
/// nowhere else. The counts cover every program in the namespace and every port, so the
/// difference is an upper bound: "may have missed", never "missed".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Missed {
    /// connect()s the kernel counted during the trace (`Tcp: ActiveOpens`).
    pub connects_counted: u64,
    /// Connections it set up for listeners (`Tcp: PassiveOpens`).
    pub accepts_counted: u64,
    /// Client ends the trace shows (from `CLOSE -> SYN_SENT`, seen or inferred).
    pub connects_shown: u64,
    /// Listener children it shows (from `LISTEN -> SYN_RECV`).
    pub accepts_shown: u64,
    /// Ends the trace added because only their loopback peer was seen.
    pub peers_inferred: u64,
    /// The ports the trace watched (empty: every port).
    pub ports: Vec<u16>,
}

impl Missed {
    /// How many connections may be missing from the trace (0: none).
    pub fn count(&self) -> u64 {
        self.connects_counted
            .saturating_sub(self.connects_shown)
            .max(self.accepts_counted.saturating_sub(self.accepts_shown))
    }

    /// One sentence for people, or `None` when nothing may be missing.
    pub fn describe(&self) -> Option<String> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let ports = if self.ports.is_empty() {
            "every port".to_string()
        } else {
            let ps: Vec<String> = self.ports.iter().map(u16::to_string).collect();
            format!("port {}", ps.join(", "))
        };
        Some(format!(
            "up to {n} connection{s} may be missing from this trace of {ports}: while it ran \
             the kernel counted {} outgoing and {} accepted connection{s2} in this network \
             namespace, the trace shows {} and {}. Those counts include other programs and \
             other ports; a connection polling misses is one whose two ends both lived less \
             than one poll and left no TIME_WAIT (a reset one, say). The tracepoint backend \
             (root) sees every one",
            self.connects_counted,
            self.accepts_counted,
            self.connects_shown,
            self.accepts_shown,
            s = if n == 1 { "" } else { "s" },
            s2 = if self.accepts_counted == 1 { "" } else { "s" },
        ))
    }
}

/// The kernel's counts of opened connections in this network namespace:
/// (`ActiveOpens`, `PassiveOpens`) from `/proc/net/snmp`.
pub fn tcp_opens() -> Option<(u64, u64)> {
    let tcp = crate::kernel::tcp_counters();
    Some((*tcp.get("ActiveOpens")?, *tcp.get("PassiveOpens")?))
}

#[derive(Default)]
struct Shared {
    events: Mutex<Vec<Event>>,
    stop: AtomicBool,
    tracepoint_events: AtomicU64,
    dumps: AtomicU64,
    buffer: Mutex<Option<BufferStats>>,
    warnings: Mutex<Vec<String>>,
    missed: Mutex<Option<Missed>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking worker must not take the recorded events with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn emit(&self, e: Event) {
        lock(&self.events).push(e);
    }

    fn warn_once(&self, w: String) {
        let mut ws = lock(&self.warnings);
        if !ws.contains(&w) {
            ws.push(w);
        }
    }
}

/// A running tracer. Stop it with [`Tracer::stop`] (or drop it: that stops it too and
/// removes the tracefs instance).
pub struct Tracer {
    backend: Backend,
    note: String,
    shared: Arc<Shared>,
    worker: Option<JoinHandle<Result<()>>>,
    instance: Option<String>,
    private_mount: Option<PathBuf>,
    started: Instant,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("backend", &self.backend)
            .field("note", &self.note)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// Whether this process runs with effective uid 0.
pub use crate::kernel::is_root;

fn fmt_interval(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms.fract() == 0.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms} ms")
    }
}

fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write into; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Tracer {
    /// Start tracing. Returns once the tracer is armed: every change after this returns is
    /// recorded (the poll backend: seen at its next dump).
    pub fn start(cfg: TraceConfig) -> Result<Tracer> {
        if cfg.poll_interval.is_zero() {
            return Err(Error::InvalidInput(
                "the poll interval must be more than 0".into(),
            ));
        }
        let every = fmt_interval(cfg.poll_interval);
        match cfg.backend {
            Backend::Poll => Tracer::start_poll(&cfg, format!("polling sock_diag every {every}")),
            Backend::Tracepoint => {
                if !is_root() {
                    return Err(Error::TracepointNeedsRoot { poll_every: every });
                }
                Tracer::start_tracepoint(&cfg)
            }
            Backend::Auto => {
                if !is_root() {
                    return Tracer::start_poll(
                        &cfg,
                        format!("tracing needs root: polling sock_diag every {every}"),
                    );
                }
                match Tracer::start_tracepoint(&cfg) {
                    Ok(t) => Ok(t),
                    Err(e) => Tracer::start_poll(
                        &cfg,
                        format!("tracefs is not usable ({e}): polling sock_diag every {every}"),
                    ),
                }
            }
        }
    }

    fn start_tracepoint(cfg: &TraceConfig) -> Result<Tracer> {
        let tracefs = Tracefs::open()?;
        let instance = Instance::create(tracefs)?;
        let started = Instant::now();
        let t0_ns = mono_ns();
        let pipe = instance.arm(&cfg.ports, cfg.buffer_kb)?;
        if cfg.fault == Some(Fault::AfterArm) {
            // `pipe` and `instance` drop here: the instance is removed.
            return Err(Error::io(
                "injected failure after arming",
                io::Error::other("test fault"),
            ));
        }
        let name = instance.name().to_string();
        let private_mount = instance.private_mount().map(PathBuf::from);
        let note = format!(
            "tracing sock:inet_sock_set_state in tracefs instance {name}{}; TIME_WAIT and \
             orphaned FIN_WAIT2 from sock_diag",
            match &private_mount {
                Some(m) => format!(" (tracefs mounted privately at {})", m.display()),
                None => String::new(),
            }
        );
        let shared = Arc::new(Shared::default());
        let worker_shared = Arc::clone(&shared);
        let ctx = Ctx {
            shared: Arc::clone(&shared),
            query: Query::ports(&cfg.ports),
            started,
            interval: cfg.poll_interval,
            fault: cfg.fault,
        };
        let worker = std::thread::Builder::new()
            .name("tcplab-trace".into())
            .spawn(move || {
                let _keep = worker_shared;
                run_tracepoint(pipe, instance, ctx, t0_ns)
            })
            .map_err(|e| Error::io("start the tracer thread", e))?;
        Ok(Tracer {
            backend: Backend::Tracepoint,
            note,
            shared,
            worker: Some(worker),
            instance: Some(name),
            private_mount,
            started,
        })
    }

    fn start_poll(cfg: &TraceConfig, note: String) -> Result<Tracer> {
        let shared = Arc::new(Shared::default());
        let query = Query::ports(&cfg.ports);
        let started = Instant::now();
        let ctx = Ctx {
            shared: Arc::clone(&shared),
            query,
            started,
            interval: cfg.poll_interval,
            fault: cfg.fault,
        };
        // The baseline: sockets already there are not news. Taken before we return, so
        // anything that changes afterwards is seen.
        let mut poller = Poller {
            opens_at_start: tcp_opens(),
            ports: cfg.ports.clone(),
            ..Poller::default()
        };
        let first = ctx.dump()?;
        if let Some(n) = &first.1 {
            shared.warn_once(n.clone());
        }
        poller.baseline(&first.0);
        let worker = std::thread::Builder::new()
            .name("tcplab-poll".into())
            .spawn(move || run_poll(poller, ctx))
            .map_err(|e| Error::io("start the poller thread", e))?;
        Ok(Tracer {
            backend: Backend::Poll,
            note,
            shared,
            worker: Some(worker),
            instance: None,
            private_mount: None,
            started,
        })
    }

    /// The backend in use: `Tracepoint` or `Poll`, never `Auto`.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Which backend and why, for a human (`tracing needs root: polling sock_diag every 1 ms`).
    pub fn note(&self) -> &str {
        &self.note
    }

    /// The tracefs instance's name, for the tracepoint backend.
    pub fn instance_name(&self) -> Option<&str> {
        self.instance.as_deref()
    }

    /// Where we mounted tracefs ourselves, if it was not mounted.
    pub fn private_mount(&self) -> Option<&std::path::Path> {
        self.private_mount.as_deref()
    }

    /// When the tracer started: event times count from here.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Every event so far, in the order they were learned (not quite time order: a
    /// mini-socket lookup can land a little after later events).
    pub fn events(&self) -> Vec<Event> {
        lock(&self.shared.events).clone()
    }

    /// The events learned after the first `from`: for a live display that polls.
    pub fn events_since(&self, from: usize) -> Vec<Event> {
        lock(&self.shared.events)
            .get(from..)
            .map(<[Event]>::to_vec)
            .unwrap_or_default()
    }

    /// Whether the background thread has ended (on an error, say) without being stopped.
    pub fn is_finished(&self) -> bool {
        self.worker.as_ref().is_none_or(|w| w.is_finished())
    }

    /// Stop and clean up, keeping the events for [`Tracer::events`] and [`Tracer::finish`].
    /// The error, if the tracer failed, is returned here (once).
    pub fn halt(&mut self) -> Result<()> {
        self.join()
    }

    /// Stop, clean up, and return the timeline.
    pub fn stop(self) -> Result<Timeline> {
        self.finish().map(|r| r.timeline)
    }

    /// Stop, clean up, and return the timeline with the counters.
    pub fn finish(mut self) -> Result<TraceReport> {
        let res = self.join();
        res?;
        let events = std::mem::take(&mut *lock(&self.shared.events));
        let buffer = lock(&self.shared.buffer).unwrap_or_default();
        Ok(TraceReport {
            timeline: Timeline::from_events(events),
            stats: TraceStats {
                tracepoint_events: self.shared.tracepoint_events.load(Ordering::Relaxed),
                dumps: self.shared.dumps.load(Ordering::Relaxed),
                overrun: buffer.overrun,
                dropped: buffer.dropped,
            },
            warnings: lock(&self.shared.warnings).clone(),
            missed: lock(&self.shared.missed).clone(),
        })
    }

    fn join(&mut self) -> Result<()> {
        self.shared.stop.store(true, Ordering::SeqCst);
        match self.worker.take() {
            None => Ok(()),
            Some(w) => match w.join() {
                Ok(r) => r,
                Err(_) => Err(Error::io("the tracer thread", io::Error::other("panicked"))),
            },
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.join();
    }
}

/// What both workers share.
struct Ctx {
    shared: Arc<Shared>,
    query: Query,
    started: Instant,
    interval: Duration,
    fault: Option<Fault>,
}

impl Ctx {
    fn now_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::SeqCst)
    }

    fn dump(&self) -> Result<(Vec<SocketRow>, Option<String>)> {
        self.shared.dumps.fetch_add(1, Ordering::Relaxed);
        let snap = super::snapshot(&self.query, Method::Auto)?;
        Ok((snap.rows, snap.note))
    }

    fn dump_mini(&self) -> Result<Vec<SocketRow>> {
        self.shared.dumps.fetch_add(1, Ordering::Relaxed);
        let q = self
            .query
            .clone()
            .with_states(&[TcpState::TimeWait, TcpState::FinWait2]);
        Ok(super::snapshot(&q, Method::Auto)?.rows)
    }
}

fn endpoint(local: SocketAddr, remote: SocketAddr) -> Endpoint {
    Endpoint { local, remote }
}

// ---------------------------------------------------------------- tracepoint backend

fn run_tracepoint(pipe: File, instance: Instance, ctx: Ctx, t0_ns: u64) -> Result<()> {
    let mut tp = TpState::new(t0_ns);
    let mut pipe = pipe;
    let res = tracepoint_loop(&mut pipe, &instance, &ctx, &mut tp);
    let _ = instance.disable();
    *lock(&ctx.shared.buffer) = instance.stats().ok();
    // The pipe must be closed before the instance can be removed.
    drop(pipe);
    drop(instance);
    res
}

fn tracepoint_loop(
    pipe: &mut File,
    instance: &Instance,
    ctx: &Ctx,
    tp: &mut TpState,
) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut tail: Vec<u8> = Vec::new();
    // Mini-socket lookups and rechecks cost a sock_diag dump: at most one per round, and a
    // round lasts at least the poll interval and 4 times the last dump.
    let mut round = ctx.interval.max(Duration::from_millis(2));
    let mut next_round = Instant::now() + round;
    loop {
        let stopping = ctx.stopping();
        if stopping {
            // Let nothing new in, then drain what the kernel already wrote.
            let _ = instance.disable();
        }
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    tail.extend_from_slice(&buf[..n]);
                    let end = tail.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                    for line in tail[..end].split(|&b| b == b'\n') {
                        if let Some(ev) =
                            std::str::from_utf8(line).ok().and_then(tracefs::parse_line)
                        {
                            ctx.shared.tracepoint_events.fetch_add(1, Ordering::Relaxed);
                            tp.handle(ev, ctx);
                        }
                    }
                    tail.drain(..end);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("read trace_pipe", e)),
            }
        }
        if ctx.fault == Some(Fault::InWorker) {
            return Err(Error::io(
                "injected failure in the tracer",
                io::Error::other("test fault"),
            ));
        }
        let now = Instant::now();
        if stopping || now >= next_round {
            let t = Instant::now();
            tp.resolve(ctx);
            round = ctx
                .interval
                .max(Duration::from_millis(2))
                .max(t.elapsed() * 4);
            next_round = Instant::now() + round;
        }
        if stopping {
            tp.flush_pending(ctx);
            return Ok(());
        }
        let wait = next_round
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(50));
        let mut pfd = libc::pollfd {
            fd: pipe.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut pfd, 1, wait.as_millis().max(1) as i32) };
    }
}

/// A tracepoint line as an event, its time counted from `t0_ns` (CLOCK_MONOTONIC).
fn raw_to_event(t0_ns: u64, ev: &RawEvent, from: TcpState, to: TcpState, source: Source) -> Event {
    let t_us = ev.ts_ns.saturating_sub(t0_ns) / 1000;
    let mut e = Event::new(t_us, ev.local, ev.remote, from, to, source);
    e.pid = (ev.pid != 0).then_some(ev.pid);
    e
}

/// What the tracepoint bookkeeping needs from the running tracer: where events go, the
/// clock, and the sock_diag lookup of mini-sockets. A trait so that [`TpState`] can be
/// tested on recorded tracepoint lines with a scripted lookup.
trait TpEnv {
    fn emit(&self, e: Event);
    fn warn_once(&self, w: String);
    /// Microseconds since the trace started.
    fn now_us(&self) -> u64;
    /// The watched ports' sockets in TIME_WAIT or FIN_WAIT2 (mini-sockets included).
    fn mini_sockets(&self) -> Result<Vec<SocketRow>>;
}

impl TpEnv for Ctx {
    fn emit(&self, e: Event) {
        self.shared.emit(e);
    }

    fn warn_once(&self, w: String) {
        self.shared.warn_once(w);
    }

    fn now_us(&self) -> u64 {
        Ctx::now_us(self)
    }

    fn mini_sockets(&self) -> Result<Vec<SocketRow>> {
        self.dump_mini()
    }
}

/// The tracepoint backend's bookkeeping between lines.
struct TpState {
    t0_ns: u64,
    /// `CLOSE -> SYN_SENT` events with no local port yet, by (local ip, remote).
    pending_connect: HashMap<(IpAddr, SocketAddr), VecDeque<RawEvent>>,
    /// `FIN_WAIT2/CLOSING -> CLOSE` events waiting for a sock_diag lookup.
    closes: Vec<RawEvent>,
    /// Mini-sockets being watched: FIN_WAIT2 orphans and TIME_WAIT.
    mini: HashMap<Endpoint, TcpState>,
}

impl TpState {
    fn new(t0_ns: u64) -> TpState {
        TpState {
            t0_ns,
            pending_connect: HashMap::new(),
            closes: Vec::new(),
            mini: HashMap::new(),
        }
    }

    fn event(&self, ev: &RawEvent, from: TcpState, to: TcpState, source: Source) -> Event {
        raw_to_event(self.t0_ns, ev, from, to, source)
    }

    fn handle(&mut self, ev: RawEvent, env: &impl TpEnv) {
        // connect() reports CLOSE -> SYN_SENT before it picks the local port: hold it until
        // the socket's next change names the port.
        if ev.old == TcpState::Close && ev.new == TcpState::SynSent && ev.local.port() == 0 {
            self.pending_connect
                .entry((ev.local.ip(), ev.remote))
                .or_default()
                .push_back(ev);
            return;
        }
        if ev.old == TcpState::SynSent
            && let Some(q) = self.pending_connect.get_mut(&(ev.local.ip(), ev.remote))
        {
            // Same task first (a blocking connect() sees its own SYN-ACK), else the oldest.
            let at = q.iter().position(|p| p.pid == ev.pid).unwrap_or(0);
            if let Some(mut first) = q.remove(at) {
                first.local = ev.local;
                let e = raw_to_event(self.t0_ns, &first, first.old, first.new, Source::Tracepoint);
                env.emit(e);
            }
            if q.is_empty() {
                self.pending_connect.remove(&(ev.local.ip(), ev.remote));
            }
        }
        if ev.new == TcpState::Close && matches!(ev.old, TcpState::FinWait2 | TcpState::Closing) {
            // Maybe a mini-socket took over: ask sock_diag at the end of the round.
            self.closes.push(ev);
            return;
        }
        env.emit(self.event(&ev, ev.old, ev.new, Source::Tracepoint));
    }

    /// One sock_diag dump: settle the pending `-> CLOSE` events and recheck mini-sockets.
    fn resolve(&mut self, env: &impl TpEnv) {
        if self.closes.is_empty() && self.mini.is_empty() {
            return;
        }
        let rows = match env.mini_sockets() {
            Ok(rows) => rows,
            Err(e) => {
                env.warn_once(format!(
                    "sock_diag failed ({e}): TIME_WAIT and orphaned FIN_WAIT2 are shown as CLOSE"
                ));
                for ev in std::mem::take(&mut self.closes) {
                    env.emit(self.event(&ev, ev.old, ev.new, Source::Tracepoint));
                }
                return;
            }
        };
        let now: HashMap<Endpoint, TcpState> = rows
            .iter()
            .map(|r| (endpoint(r.local, r.remote), r.state))
            .collect();
        // Recheck the mini-sockets we already knew (before adding new ones); the final
        // round too, so a change just before stop() is not lost between two rounds.
        {
            let t = env.now_us();
            let mut gone = Vec::new();
            for (ep, st) in self.mini.iter_mut() {
                match now.get(ep) {
                    Some(&s) if s == *st => {}
                    Some(&s) => {
                        env.emit(Event::new(t, ep.local, ep.remote, *st, s, Source::Diag));
                        *st = s;
                    }
                    None => {
                        env.emit(Event::new(
                            t,
                            ep.local,
                            ep.remote,
                            *st,
                            TcpState::Close,
                            Source::Diag,
                        ));
                        gone.push(*ep);
                    }
                }
            }
            for ep in gone {
                self.mini.remove(&ep);
            }
        }
        for ev in std::mem::take(&mut self.closes) {
            let ep = endpoint(ev.local, ev.remote);
            match now.get(&ep) {
                Some(&TcpState::TimeWait) => {
                    env.emit(self.event(&ev, ev.old, TcpState::TimeWait, Source::Diag));
                    self.mini.insert(ep, TcpState::TimeWait);
                }
                // An orphan: the program closed, the peer has not. Still FIN_WAIT2.
                Some(&TcpState::FinWait2) => {
                    self.mini.insert(ep, TcpState::FinWait2);
                }
                _ => env.emit(self.event(&ev, ev.old, ev.new, Source::Tracepoint)),
            }
        }
    }

    /// At the end: connects that never got a port are reported as they are.
    fn flush_pending(&mut self, env: &impl TpEnv) {
        let t0 = self.t0_ns;
        for (_, q) in self.pending_connect.drain() {
            for ev in q {
                env.emit(raw_to_event(t0, &ev, ev.old, ev.new, Source::Tracepoint));
            }
        }
    }
}

// ---------------------------------------------------------------------- poll backend

/// The poll backend's memory between dumps.
#[derive(Default)]
struct Poller {
    prev: HashMap<Endpoint, TcpState>,
    /// Every listening address seen: a new socket on one of them is an accepted child.
    listeners: HashSet<SocketAddr>,
    /// Every endpoint any dump showed, the first one included.
    known: HashSet<Endpoint>,
    /// The kernel's (ActiveOpens, PassiveOpens) when the trace started.
    opens_at_start: Option<(u64, u64)>,
    ports: Vec<u16>,
}

impl Poller {
    fn baseline(&mut self, rows: &[SocketRow]) {
        self.prev = self.index(rows);
    }

    fn index(&mut self, rows: &[SocketRow]) -> HashMap<Endpoint, TcpState> {
        let mut map = HashMap::with_capacity(rows.len());
        for r in rows {
            if r.state == TcpState::Listen {
                self.listeners.insert(r.local);
            }
            map.insert(endpoint(r.local, r.remote), r.state);
            self.known.insert(endpoint(r.local, r.remote));
        }
        map
    }

    /// At the end: the loopback ends never seen whose peer was, with the path the peer
    /// implies (every step [`Source::Inferred`]). Returns how many ends it added.
    fn infer_peers(&self, events: &mut Vec<Event>) -> u64 {
        let timeline = Timeline::from_events(events.clone());
        let mut added = 0;
        let seqs = timeline.sequences();
        for (&ep, seq) in &seqs {
            let loopback = ep.local.ip().is_loopback() && ep.remote.ip().is_loopback();
            let peer = endpoint(ep.remote, ep.local);
            let shown = self.known.contains(&peer) || seqs.contains_key(&peer);
            if !loopback || ep.remote.port() == 0 || shown {
                continue;
            }
            // seq[0] held before the first event; seq[i] began with event i - 1.
            let evs: Vec<&Event> = timeline.events_of(ep).collect();
            let date = |i: usize| evs[i.saturating_sub(1)].t_us;
            let path = infer::peer_path(seq, self.is_child(peer.local));
            for w in path.windows(2) {
                let ((from, _), (to, i)) = (w[0], w[1]);
                events.push(Event::new(
                    date(i),
                    peer.local,
                    peer.remote,
                    from,
                    to,
                    Source::Inferred,
                ));
            }
            if !path.is_empty() {
                added += 1;
            }
        }
        added
    }

    /// At the end: what the trace shows against the kernel's counts.
    fn missed(&self, events: &[Event], peers_inferred: u64) -> Option<Missed> {
        let (a0, p0) = self.opens_at_start?;
        let (a1, p1) = tcp_opens()?;
        let timeline = Timeline::from_events(events.to_vec());
        let seqs = timeline.sequences();
        let starts = |a: TcpState, b: TcpState| {
            seqs.values()
                .filter(|s| s.first() == Some(&a) && s.get(1) == Some(&b))
                .count() as u64
        };
        Some(Missed {
            connects_counted: a1.saturating_sub(a0),
            accepts_counted: p1.saturating_sub(p0),
            connects_shown: starts(TcpState::Close, TcpState::SynSent),
            accepts_shown: starts(TcpState::Listen, TcpState::SynRecv),
            peers_inferred,
            ports: self.ports.clone(),
        })
    }

    fn is_child(&self, local: SocketAddr) -> bool {
        self.listeners
            .iter()
            .any(|l| l.port() == local.port() && (l.ip().is_unspecified() || l.ip() == local.ip()))
    }

    /// Diff a new dump against the last one, emitting observed and inferred steps.
    fn diff(&mut self, rows: &[SocketRow], t_us: u64, out: &mut Vec<Event>) {
        let cur = self.index(rows);
        for (ep, &s) in &cur {
            let from = match self.prev.get(ep) {
                Some(&p) if p == s => continue,
                Some(&p) => p,
                // New: a child of a listener starts as its clone (LISTEN -> SYN_RECV), any
                // other socket from CLOSE.
                None if s != TcpState::Listen && self.is_child(ep.local) => TcpState::Listen,
                None => TcpState::Close,
            };
            emit_path(*ep, from, s, t_us, out);
        }
        for (ep, &p) in &self.prev {
            if !cur.contains_key(ep) {
                emit_path(*ep, p, TcpState::Close, t_us, out);
            }
        }
        self.prev = cur;
    }
}

/// `from -> ... -> to`: the last step observed ([`Source::Poll`]), the ones before it
/// filled in from the shortest legal path ([`Source::Inferred`]).
fn emit_path(ep: Endpoint, from: TcpState, to: TcpState, t_us: u64, out: &mut Vec<Event>) {
    let path = infer::shortest_path(from, to).unwrap_or_else(|| vec![from, to]);
    let steps = path.len() - 1;
    for (i, w) in path.windows(2).enumerate() {
        let source = if i + 1 == steps {
            Source::Poll
        } else {
            Source::Inferred
        };
        out.push(Event::new(t_us, ep.local, ep.remote, w[0], w[1], source));
    }
}

fn run_poll(mut poller: Poller, ctx: Ctx) -> Result<()> {
    let mut next = Instant::now() + ctx.interval;
    let mut batch = Vec::new();
    loop {
        if ctx.fault == Some(Fault::InWorker) {
            return Err(Error::io(
                "injected failure in the poller",
                io::Error::other("test fault"),
            ));
        }
        let stopping = ctx.stopping();
        let (rows, note) = ctx.dump()?;
        if let Some(n) = note {
            ctx.shared.warn_once(n);
        }
        poller.diff(&rows, ctx.now_us(), &mut batch);
        if !batch.is_empty() {
            lock(&ctx.shared.events).append(&mut batch);
        }
        if stopping {
            let mut events = lock(&ctx.shared.events);
            let peers = poller.infer_peers(&mut events);
            let missed = poller.missed(&events, peers);
            if let Some(m) = missed.as_ref().and_then(Missed::describe) {
                ctx.shared.warn_once(m);
            }
            *lock(&ctx.shared.missed) = missed;
            return Ok(());
        }
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
            next += ctx.interval;
        } else {
            // Dumps take longer than the interval: go again at once, without a backlog.
            next = now + ctx.interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TcpState::*;

    fn row(state: TcpState, l: u16, r: u16) -> SocketRow {
        SocketRow {
            state,
            local: SocketAddr::from(([127, 0, 0, 1], l)),
            remote: if r == 0 {
                SocketAddr::from(([0, 0, 0, 0], 0))
            } else {
                SocketAddr::from(([127, 0, 0, 1], r))
            },
            timer: None,
            timer_ms: None,
            recv_q: 0,
            send_q: 0,
            uid: 0,
            inode: 0,
            pids: None,
        }
    }

    #[test]
    fn poll_diff_fills_gaps_with_inferred_steps() {
        let mut p = Poller::default();
        p.baseline(&[row(Listen, 5000, 0)]);
        let mut out = Vec::new();
        p.diff(
            &[
                row(Listen, 5000, 0),
                row(Established, 40000, 5000),
                row(Established, 5000, 40000),
            ],
            10,
            &mut out,
        );
        p.diff(
            &[row(Listen, 5000, 0), row(TimeWait, 40000, 5000)],
            20,
            &mut out,
        );
        let t = Timeline::from_events(out);
        let client = endpoint(
            row(Close, 40000, 5000).local,
            row(Close, 40000, 5000).remote,
        );
        let child = endpoint(
            row(Close, 5000, 40000).local,
            row(Close, 5000, 40000).remote,
        );
        assert_eq!(
            t.sequence(client),
            vec![Close, SynSent, Established, FinWait1, FinWait2, TimeWait]
        );
        assert_eq!(
            t.sequence(child),
            vec![Listen, SynRecv, Established, CloseWait, LastAck, Close]
        );
        let observed: Vec<TcpState> = t
            .events_of(client)
            .filter(|e| e.source == Source::Poll)
            .map(|e| e.to)
            .collect();
        assert_eq!(observed, vec![Established, TimeWait]);
        assert_eq!(
            t.events_of(client)
                .filter(|e| e.source == Source::Inferred)
                .count(),
            3
        );
    }

    #[test]
    fn an_unseen_loopback_peer_is_inferred_from_the_end_that_was_seen() {
        // The whole exchange fell between two polls: only the client's TIME_WAIT was seen.
        let mut p = Poller::default();
        p.baseline(&[row(Listen, 5000, 0)]);
        let mut out = Vec::new();
        p.diff(
            &[row(Listen, 5000, 0), row(TimeWait, 40000, 5000)],
            10,
            &mut out,
        );
        assert_eq!(p.infer_peers(&mut out), 1);
        let t = Timeline::from_events(out);
        let child = endpoint(
            row(Close, 5000, 40000).local,
            row(Close, 5000, 40000).remote,
        );
        assert_eq!(
            t.sequence(child),
            vec![Listen, SynRecv, Established, CloseWait, LastAck, Close]
        );
        assert!(t.events_of(child).all(|e| e.source == Source::Inferred));
        // Nothing more to infer: both ends are in the timeline now.
        let mut again = t.events.clone();
        assert_eq!(p.infer_peers(&mut again), 0);
    }

    #[test]
    fn missed_connections_are_counted_and_described() {
        let m = Missed {
            connects_counted: 5,
            accepts_counted: 5,
            connects_shown: 3,
            accepts_shown: 3,
            peers_inferred: 3,
            ports: vec![5000],
        };
        assert_eq!(m.count(), 2);
        let text = m.describe().unwrap();
        assert!(
            text.starts_with("up to 2 connections may be missing"),
            "{text}"
        );
        assert!(text.contains("port 5000"), "{text}");
        let none = Missed {
            connects_shown: 5,
            accepts_shown: 5,
            ..m
        };
        assert_eq!(none.count(), 0);
        assert_eq!(none.describe(), None);
    }

    #[test]
    fn intervals_print_plainly() {
        assert_eq!(fmt_interval(Duration::from_millis(1)), "1 ms");
        assert_eq!(fmt_interval(Duration::from_micros(500)), "0.5 ms");
    }
}

/// [`TpState`] on tracepoint lines recorded on this project's 6.18 kernel (a Python client
/// and server on 127.0.0.1:47001, the client closing first), with a scripted sock_diag
/// lookup in place of the kernel.
#[cfg(test)]
mod tracepoint_tests {
    use std::cell::{Cell, RefCell};

    use super::*;
    use TcpState::*;

    const CLIENT_CLOSES_FIRST: &str = include_str!("testdata/client_closes_first.trace");
    /// The first line's timestamp: the trace starts there.
    const T0_NS: u64 = 9_947_848_275_000;

    /// Collects what the bookkeeping emits; answers lookups from a script.
    #[derive(Default)]
    struct Fake {
        events: RefCell<Vec<Event>>,
        warnings: RefCell<Vec<String>>,
        /// The next lookup's answer; `None` means the lookup fails.
        next: RefCell<Option<Vec<SocketRow>>>,
        lookups: Cell<u32>,
        now_us: Cell<u64>,
    }

    impl TpEnv for Fake {
        fn emit(&self, e: Event) {
            self.events.borrow_mut().push(e);
        }
        fn warn_once(&self, w: String) {
            self.warnings.borrow_mut().push(w);
        }
        fn now_us(&self) -> u64 {
            self.now_us.get()
        }
        fn mini_sockets(&self) -> Result<Vec<SocketRow>> {
            self.lookups.set(self.lookups.get() + 1);
            self.next
                .borrow()
                .clone()
                .ok_or_else(|| Error::io("sock_diag", io::Error::other("scripted failure")))
        }
    }

    impl Fake {
        fn answer(&self, rows: Vec<SocketRow>) {
            *self.next.borrow_mut() = Some(rows);
        }
        fn timeline(&self) -> Timeline {
            Timeline::from_events(self.events.borrow().clone())
        }
    }

    fn lines(text: &str) -> Vec<RawEvent> {
        text.lines().filter_map(tracefs::parse_line).collect()
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn row(state: TcpState, local: u16, remote: u16) -> SocketRow {
        SocketRow {
            state,
            local: addr(local),
            remote: addr(remote),
            timer: None,
            timer_ms: None,
            recv_q: 0,
            send_q: 0,
            uid: 0,
            inode: 0,
            pids: None,
        }
    }

    const CLIENT: Endpoint = Endpoint {
        local: SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 50358),
        remote: SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 47001),
    };
    const CHILD: Endpoint = Endpoint {
        local: CLIENT.remote,
        remote: CLIENT.local,
    };

    /// The recorded lines up to the client's `FIN_WAIT2 -> CLOSE` (the mini-socket took
    /// over), and the rest (the server's close).
    fn split() -> (Vec<RawEvent>, Vec<RawEvent>) {
        let mut all = lines(CLIENT_CLOSES_FIRST);
        assert_eq!(all.len(), 11, "every recorded line parses");
        let rest = all.split_off(9);
        (all, rest)
    }

    #[test]
    fn connect_without_a_port_is_held_until_the_port_is_known() {
        let (first, _) = split();
        let env = Fake::default();
        let mut tp = TpState::new(T0_NS);
        tp.handle(first[0].clone(), &env);
        tp.handle(first[1].clone(), &env);
        // The listener's event only: `CLOSE -> SYN_SENT` with port 0 waits.
        assert_eq!(env.events.borrow().len(), 1);
        tp.handle(first[2].clone(), &env);
        let events = env.events.borrow();
        assert_eq!(events.len(), 3);
        let connect = &events[1];
        assert_eq!(
            connect.endpoint(),
            CLIENT,
            "the port comes from the next line"
        );
        assert_eq!((connect.from, connect.to), (Close, SynSent));
        assert_eq!(
            connect.t_us, 1_824,
            "the connect's own time, not the next line's"
        );
        assert_eq!(connect.pid, Some(17417));
        assert!(tp.pending_connect.is_empty());
    }

    #[test]
    fn an_orphan_in_fin_wait2_then_time_wait_then_gone() {
        let (first, rest) = split();
        let env = Fake::default();
        let mut tp = TpState::new(T0_NS);
        for ev in first {
            tp.handle(ev, &env);
        }
        // `FIN_WAIT2 -> CLOSE` is held for the lookup, not reported.
        assert_eq!(
            env.timeline().sequence(CLIENT),
            vec![Close, SynSent, Established, FinWait1, FinWait2]
        );
        // The server has not closed: sock_diag shows the orphan still in FIN_WAIT2.
        env.answer(vec![
            row(FinWait2, 50358, 47001),
            row(CloseWait, 47001, 50358),
        ]);
        tp.resolve(&env);
        assert_eq!(env.lookups.get(), 1);
        assert_eq!(
            env.timeline().sequence(CLIENT).last(),
            Some(&FinWait2),
            "still FIN_WAIT2, no CLOSE"
        );
        for ev in rest {
            tp.handle(ev, &env);
        }
        // The server's FIN came: the mini-socket is in TIME_WAIT.
        env.now_us.set(60_000);
        env.answer(vec![row(TimeWait, 50358, 47001)]);
        tp.resolve(&env);
        // The TIME_WAIT mini-socket went.
        env.now_us.set(70_000);
        env.answer(vec![]);
        tp.resolve(&env);
        let t = env.timeline();
        assert_eq!(
            t.sequence(CLIENT),
            vec![
                Close,
                SynSent,
                Established,
                FinWait1,
                FinWait2,
                TimeWait,
                Close
            ]
        );
        assert_eq!(
            t.sequence(CHILD),
            vec![Listen, SynRecv, Established, CloseWait, LastAck, Close]
        );
        let diag: Vec<(TcpState, TcpState, u64)> = t
            .events_of(CLIENT)
            .filter(|e| e.source == Source::Diag)
            .map(|e| (e.from, e.to, e.t_us))
            .collect();
        assert_eq!(
            diag,
            vec![(FinWait2, TimeWait, 60_000), (TimeWait, Close, 70_000)]
        );
        assert!(tp.mini.is_empty());
        // Nothing left to look up: no more dumps.
        tp.resolve(&env);
        assert_eq!(env.lookups.get(), 3);
        assert!(env.warnings.borrow().is_empty());
    }

    #[test]
    fn time_wait_found_at_once_keeps_the_tracepoint_time() {
        let (first, _) = split();
        let env = Fake::default();
        let mut tp = TpState::new(T0_NS);
        for ev in first {
            tp.handle(ev, &env);
        }
        env.now_us.set(99_999);
        env.answer(vec![row(TimeWait, 50358, 47001)]);
        tp.resolve(&env);
        let last = env.timeline().events_of(CLIENT).last().cloned().unwrap();
        assert_eq!(
            (last.from, last.to, last.source),
            (FinWait2, TimeWait, Source::Diag)
        );
        assert_eq!(last.t_us, 9_779, "the time of the tracepoint line");
        assert_eq!(tp.mini.get(&CLIENT), Some(&TimeWait));
    }

    #[test]
    fn a_failed_lookup_reports_close_and_says_so() {
        let (first, _) = split();
        let env = Fake::default();
        let mut tp = TpState::new(T0_NS);
        for ev in first {
            tp.handle(ev, &env);
        }
        tp.resolve(&env);
        let last = env.timeline().events_of(CLIENT).last().cloned().unwrap();
        assert_eq!(
            (last.from, last.to, last.source),
            (FinWait2, Close, Source::Tracepoint)
        );
        let warnings = env.warnings.borrow();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("shown as CLOSE"), "{warnings:?}");
        assert!(tp.closes.is_empty());
    }

    #[test]
    fn connects_are_matched_by_task_and_flushed_at_the_end() {
        let (first, _) = split();
        let mut other = first[1].clone();
        other.pid = 4242;
        other.ts_ns += 10_000;
        let env = Fake::default();
        let mut tp = TpState::new(T0_NS);
        // Two connects to the same place: the recorded one (pid 17417), then another task's.
        tp.handle(first[1].clone(), &env);
        tp.handle(other, &env);
        let mut established = first[2].clone();
        established.pid = 4242;
        tp.handle(established, &env);
        {
            let events = env.events.borrow();
            let connect = events
                .iter()
                .find(|e| e.to == SynSent)
                .expect("one connect resolved");
            assert_eq!(connect.pid, Some(4242), "same task first");
            assert_eq!(connect.local.port(), 50358);
        }
        // The other never got a port: reported as it is at the end.
        tp.flush_pending(&env);
        let events = env.events.borrow();
        let unresolved: Vec<&Event> = events
            .iter()
            .filter(|e| e.to == SynSent && e.local.port() == 0)
            .collect();
        assert_eq!(unresolved.len(), 1);
        assert_eq!(unresolved[0].pid, Some(17417));
        assert!(tp.pending_connect.is_empty());
    }
}
