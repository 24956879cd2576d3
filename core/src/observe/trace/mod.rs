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

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

mod poll;
mod tracepoint;

use super::tracefs::{BufferStats, Instance, Tracefs};
use super::{Method, Query, SocketRow};
use crate::error::{Error, Result};
use crate::state::TcpState;
use crate::timeline::{Endpoint, Event, Timeline};

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

mod hooks {
    /// A failure injected on purpose, for tests that check we clean up on errors. Part of
    /// the API only with the `test-hooks` feature (`TraceConfig::with_fault`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Fault {
        /// `start()` fails right after the tracepoint is armed.
        AfterArm,
        /// The background thread fails on its first round; `stop()` returns the error.
        InWorker,
    }
}

#[cfg(not(feature = "test-hooks"))]
use hooks::Fault;
#[cfg(feature = "test-hooks")]
pub use hooks::Fault;

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
    /// Set only through `with_fault` (feature `test-hooks`).
    fault: Option<Fault>,
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

    /// How often the poll backend dumps (and mini-sockets are rechecked).
    pub fn with_interval(mut self, every: Duration) -> TraceConfig {
        self.poll_interval = every;
        self
    }

    /// Make the tracer fail on purpose at `fault`, to test the clean-up.
    #[cfg(feature = "test-hooks")]
    pub fn with_fault(mut self, fault: Fault) -> TraceConfig {
        self.fault = Some(fault);
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
                tracepoint::run(pipe, instance, ctx, t0_ns)
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
        let mut poller = poll::Poller::new(cfg.ports.clone(), tcp_opens());
        let first = ctx.dump()?;
        if let Some(n) = &first.1 {
            shared.warn_once(n.clone());
        }
        poller.baseline(&first.0);
        let worker = std::thread::Builder::new()
            .name("tcplab-poll".into())
            .spawn(move || poll::run(poller, ctx))
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

/// A socket row on 127.0.0.1 for the backends' tests (`remote` 0: a listener's `0.0.0.0:0`).
#[cfg(test)]
fn test_row(state: TcpState, local: u16, remote: u16) -> SocketRow {
    SocketRow {
        state,
        local: SocketAddr::from(([127, 0, 0, 1], local)),
        remote: if remote == 0 {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([127, 0, 0, 1], remote))
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

#[cfg(test)]
mod tests {
    use super::*;

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
