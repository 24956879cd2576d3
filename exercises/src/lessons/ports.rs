//! Lesson 09's driver: a private network namespace with 100 ephemeral ports, a keep-alive
//! request server inside it, and the grading. The binary provides the client loop.
//!
//! Why a namespace: on the host's loopback Linux lets connect() reuse a TIME_WAIT port older
//! than a second (tcp_tw_reuse = 2), and the default range has ~28k ports, so exhaustion would
//! take minutes or never show. A new network namespace has its own loopback, its own
//! ip_local_port_range and its own tcp_tw_reuse: we set 100 ports and reuse off, and the
//! exhaustion shows in well under a second. The namespace comes from unshare(2) with a user
//! namespace, which any user may create where unprivileged user namespaces are enabled; it
//! disappears with the process. Nothing on the host is changed.
//!
//! Left out on purpose: IPv6, several destinations (each distinct server address and port
//! has its own 100 ports), and SO_REUSEADDR/IP_BIND_ADDRESS_NO_PORT tricks.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tcplab_core::{TcpState, sockets};

use crate::catalog::Verdict;
use crate::lesson::Lab;
use crate::lessons::{churn, netns};

/// The ephemeral port range set inside the namespace: 100 ports.
pub const PORT_RANGE: (u16, u16) = (40000, 40099);
/// The server's port inside the namespace. The namespace is ours alone, so a fixed port
/// cannot clash with anything, and it sits outside the ephemeral range.
pub const SERVER_PORT: u16 = 8080;
/// How long one connect/read/write may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(1);
/// The whole client loop stops after this, whatever happened.
pub const TIME_BUDGET: Duration = Duration::from_secs(10);
/// Requests sent by default: three times the ports there are.
pub const DEFAULT_REQUESTS: usize = 300;

/// What the client loop did.
#[derive(Debug)]
pub struct Outcome {
    /// Requests answered.
    pub requests: usize,
    /// Connections opened (each took one local port).
    pub connections: usize,
    /// The error that stopped the loop, if any.
    pub error: Option<io::Error>,
    /// When the loop started, and when it failed.
    pub started: Instant,
    pub failed_after: Option<Duration>,
    /// Connections the loop keeps open (a pool), closed after the kernel has been asked.
    pub pool: Vec<TcpStream>,
}

impl Default for Outcome {
    fn default() -> Self {
        Outcome::new()
    }
}

impl Outcome {
    pub fn new() -> Outcome {
        Outcome {
            requests: 0,
            connections: 0,
            error: None,
            started: Instant::now(),
            failed_after: None,
            pool: Vec::new(),
        }
    }

    /// Record the error that stops the loop.
    pub fn fail(&mut self, e: io::Error) {
        self.failed_after = Some(self.started.elapsed());
        self.error = Some(e);
    }

    /// Whether the loop has used up [`TIME_BUDGET`].
    pub fn out_of_time(&self) -> bool {
        self.started.elapsed() > TIME_BUDGET
    }
}

/// Open a connection to the server (counted in `out`), with timeouts on every call.
pub fn connect(addr: SocketAddr, out: &mut Outcome) -> io::Result<TcpStream> {
    let stream = sockets::connect(addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    out.connections += 1;
    Ok(stream)
}

/// One request on a connection: send a line, read the three-byte answer.
pub fn request(stream: &mut TcpStream) -> io::Result<()> {
    stream.write_all(b"request\n")?;
    let mut answer = [0u8; 3];
    stream.read_exact(&mut answer)?;
    Ok(())
}

/// A keep-alive server: one thread per connection, one answer per request line, close on EOF.
fn serve(listener: TcpListener, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    thread::spawn(move || {
        if listener.set_nonblocking(true).is_err() {
            return;
        }
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let stop = stop.clone();
                    thread::spawn(move || {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                        let mut writer = match stream.try_clone() {
                            Ok(w) => w,
                            Err(_) => return,
                        };
                        let mut lines = BufReader::new(stream);
                        let mut line = String::new();
                        while !stop.load(Ordering::Relaxed) {
                            line.clear();
                            match lines.read_line(&mut line) {
                                Ok(0) => return, // EOF: the client closed; we close too
                                Ok(_) => {
                                    if writer.write_all(b"ok\n").is_err() {
                                        return;
                                    }
                                }
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => return,
                            }
                        }
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return,
            }
        }
    })
}

/// Run the lesson: namespace, server, the binary's client loop, then the kernel's view.
pub fn run(lab: &mut Lab, send_requests: fn(SocketAddr, usize) -> Outcome) -> Result<()> {
    let n = lab.connections(DEFAULT_REQUESTS, 3)?;
    let churn = churn::Config::from_lesson_args(lab, churn::Closer::Client)?;
    lab.step("Enter a private network namespace (nothing on the host is touched)");
    // A user namespace even for root: the server listens on the fixed port 8080, which
    // parallel runs of this lesson use in their own namespaces; sock_diag polling sees only
    // ours, while the global tracepoint would see them all.
    let kind = netns::enter(netns::Prefer::UserNamespace)?;
    let range = format!("{} {}", PORT_RANGE.0, PORT_RANGE.1);
    netns::set_ipv4_sysctl("ip_local_port_range", &range)?;
    netns::set_ipv4_sysctl("tcp_tw_reuse", "0")?;
    let ports = usize::from(PORT_RANGE.1 - PORT_RANGE.0) + 1;
    lab.say(format!(
        "a new {kind} of this process: its own loopback (brought up), ip_local_port_range = \
         {range} ({ports} ports), tcp_tw_reuse = 0. The host's settings and sockets are \
         untouched, and the namespace vanishes when the lesson ends."
    ));
    lab.fact("namespace", "private");
    lab.fact("port_range", &range);

    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, SERVER_PORT));
    let listener = sockets::listen_on(addr, sockets::ListenOptions::default())
        .with_context(|| format!("listen on {addr} inside the namespace"))?;
    lab.watch(SERVER_PORT)?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve(listener, stop.clone());
    lab.step(format!(
        "A keep-alive server listens on {addr} (inside the namespace)"
    ));
    lab.show("before any request")?;

    lab.in_private_namespace(kind.starts_with("user"));
    lab.step(format!("The client sends {n} requests"));
    let result = grade(lab, addr, n, send_requests, churn);
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();
    result
}

/// The kernel's default ephemeral port range, set back in the namespace for the churn.
pub const DEFAULT_PORT_RANGE: (u16, u16) = (32768, 60999);

/// `--churn-secs`: the same mistake at full speed with the default port range. A client that
/// closes first keeps each local port in TIME_WAIT for 60 s; against one server address and
/// port it has ~28k of them.
fn churn_to_exhaustion(lab: &mut Lab, cfg: churn::Config) -> Result<()> {
    let cfg = churn::Config {
        ports: 1,
        stop_when_exhausted: true,
        ..cfg
    };
    let secs = cfg.secs;
    lab.stop_watching()?;
    let (low, high) = DEFAULT_PORT_RANGE;
    netns::set_ipv4_sysctl("ip_local_port_range", &format!("{low} {high}"))?;
    let ports = u64::from(high - low) + 1;
    lab.step(format!(
        "At scale: the namespace's ip_local_port_range back to the default {low} {high} ({ports} \
         ports), tcp_tw_reuse still 0"
    ));
    let report = churn::run_in_lesson(lab, cfg)?;
    let sustainable = ports as f64 / 60.0;
    lab.fact("churn_port_range", format!("{low} {high}"));
    lab.fact("churn_first_exhausted_ms", report.first_exhausted_ms);
    lab.fact(
        "churn_connections_before_exhaustion",
        report.connections_before_exhaustion,
    );
    lab.fact("churn_sustainable_rate", sustainable.round() as u64);
    match (
        report.first_exhausted_ms,
        report.connections_before_exhaustion,
    ) {
        (Some(ms), Some(made)) => lab.say(format!(
            "connect() failed with EADDRNOTAVAIL after {made} connections, {ms} ms into the \
             churn; the kernel showed {} client TIME_WAIT sockets at the end",
            report.samples.last().map_or(0, |s| s.client_time_wait)
        )),
        _ => lab.say(format!(
            "no EADDRNOTAVAIL within {secs} s: {} connections, {} client TIME_WAIT of the {ports} \
             ports",
            report.connections,
            report.samples.last().map_or(0, |s| s.client_time_wait)
        )),
    }
    // The rate over the first sample interval and over the last one.
    let rate_between = |a: Option<&churn::Sample>, b: &churn::Sample| {
        let (c0, t0) = a.map_or((0, 0), |a| (a.connections, a.t_ms));
        (b.connections - c0) as f64 * 1000.0 / (b.t_ms.saturating_sub(t0)).max(1) as f64
    };
    if let [first, .., before_last, last] = report.samples.as_slice() {
        let (early, late) = (
            rate_between(None, first),
            rate_between(Some(before_last), last),
        );
        lab.fact("churn_rate_first_interval", early.round() as u64);
        lab.fact("churn_rate_last_interval", late.round() as u64);
        if late * 4.0 < early {
            lab.say(format!(
                "connect() slowed down from {early:.0}/s in the first {:.1} s to {late:.0}/s at \
                 the end, long before any error: since Linux 4.2 (commit 07f4c90062f8) \
                 connect() tries the even ports of the range first, leaving odd ones to bind(), \
                 and once they are all in TIME_WAIT every connect() walks thousands of busy \
                 ports, checking each against the socket table, before it finds a free one",
                first.t_ms as f64 / 1000.0
            ));
        }
    }
    lab.say(format!(
        "the arithmetic: {ports} ports, each held 60 s in TIME_WAIT by the side that closed \
         first, sustain at most {ports} / 60 s = {sustainable:.0} new connections per second to \
         one server address and port; a client that closes first and connects faster runs out, \
         however fast connect() is"
    ));
    Ok(())
}

fn grade(
    lab: &mut Lab,
    addr: SocketAddr,
    n: usize,
    send_requests: fn(SocketAddr, usize) -> Outcome,
    churn: Option<churn::Config>,
) -> Result<()> {
    // The namespace is the lesson's alone: its counters count only this client and server.
    let resets_before = netns::resets_sent();
    let out = send_requests(addr, n);
    let errno = out.error.as_ref().and_then(|e| e.raw_os_error());
    let error_name = match errno {
        Some(libc::EADDRNOTAVAIL) => Some("EADDRNOTAVAIL".to_string()),
        Some(_) | None => out.error.as_ref().map(|e| e.to_string()),
    };
    match (&out.error, out.failed_after) {
        (Some(e), Some(t)) => lab.say(format!(
            "after {} connections and {} requests, {} ms: {e}",
            out.connections,
            out.requests,
            t.as_millis()
        )),
        _ => lab.say(format!(
            "{} requests answered over {} connection(s) in {} ms, no error",
            out.requests,
            out.connections,
            out.started.elapsed().as_millis()
        )),
    }

    lab.step("What the kernel shows on the client's side");
    let expect_tw = out.connections - out.pool.len();
    // Settled: the closed connections in TIME_WAIT and, since a dump is not atomic and the
    // server thread may still be closing the last one, nothing left in CLOSE_WAIT/LAST_ACK.
    let seen = lab.wait_until(Duration::from_secs(3), |s| {
        s.count("client", TcpState::TimeWait) >= expect_tw
            && s.count("client", TcpState::FinWait2) == 0
            && s.count("server", TcpState::CloseWait) == 0
            && s.count("server", TcpState::LastAck) == 0
    })?;
    lab.say(format!("kernel says: {}", seen.describe()));
    let tw = seen.count("client", TcpState::TimeWait);
    let est = seen.count("client", TcpState::Established);
    lab.fact("requests", out.requests);
    lab.fact("connections_opened", out.connections);
    lab.fact(
        "connections_before_error",
        out.error.as_ref().map(|_| out.connections),
    );
    lab.fact("error", &error_name);
    lab.fact(
        "ms_to_exhaustion",
        out.failed_after.map(|t| t.as_millis() as u64),
    );
    lab.fact("client_time_wait", tw);
    lab.fact("client_established", est);
    let resets = netns::resets_sent().saturating_sub(resets_before);
    lab.fact("resets_sent", resets);
    let ports = usize::from(PORT_RANGE.1 - PORT_RANGE.0) + 1;
    // A client that reuses its connections needs a handful of ports, whatever the number of
    // requests; one that takes a port per request needs one per request.
    let few = ports / 4;

    let (verdict, why) = if errno == Some(libc::EADDRNOTAVAIL)
        && tw > 0
        && tw * 10 >= out.connections * 9
    {
        lab.say(format!(
            "{tw} client sockets in TIME_WAIT, one per closed connection, each holding one of \
             the {} local ports for 60 s: connect() found no free port and failed with \
             EADDRNOTAVAIL.",
            PORT_RANGE.1 - PORT_RANGE.0 + 1
        ));
        (
            Verdict::Leak,
            format!(
                "connect() failed with EADDRNOTAVAIL after {} connections; the kernel shows {tw} \
                 TIME_WAIT sockets on the client's ports",
                out.connections
            ),
        )
    } else if out.error.is_none() && out.requests == n {
        // Every request answered. Clean only if that took few ports and every connection
        // that ended, ended with FIN (one TIME_WAIT each), none with RST.
        lab.require(
            resets == 0,
            format!(
                "the kernel sent {resets} resets (Tcp OutRsts in the lesson's namespace): \
                 connections were aborted (SO_LINGER 0, or closed with unread data), which \
                 throws the close away instead of ending it; lesson 07 shows what that costs"
            ),
        );
        lab.require(
            out.connections <= few,
            format!(
                "{} connections for {} requests: a new local port for almost every request. \
                 With {ports} ports, each held 60 s in TIME_WAIT after a close, this client \
                 only got through by {}",
                out.connections,
                out.requests,
                if resets > 0 {
                    "aborting its connections so that no TIME_WAIT was left"
                } else {
                    "using more ports than one address has (or fewer requests than ports)"
                }
            ),
        );
        lab.say(format!(
            "{n} requests over {} connection(s): no new port per request, nothing to run out \
             of.",
            out.connections
        ));
        (
            Verdict::Clean,
            format!(
                "{n} requests answered over {} connection(s), no error; {tw} TIME_WAIT on the \
                 client (one per connection it closed)",
                out.connections
            ),
        )
    } else {
        match &error_name {
            Some(err) => bail!(
                "the client stopped after {} of {n} requests with {err} ({}): that is not \
                 the EADDRNOTAVAIL this lesson is about; fix what the error says",
                out.requests,
                seen.describe(),
            ),
            None => bail!(
                "the client stopped after {} of {n} requests without an error: every request \
                 must be sent and answered ({})",
                out.requests,
                seen.describe(),
            ),
        }
    };
    if let Some(cfg) = churn {
        churn_to_exhaustion(lab, cfg)?;
    }
    lab.finish(verdict, seen, &why)?;
    drop(out.pool);
    Ok(())
}
