//! Lesson 09's driver: a client with 100 ephemeral ports, a keep-alive request server, and
//! the grading. The binary provides the client loop.
//!
//! Why 100 ports: on the host's loopback Linux lets connect() reuse a TIME_WAIT port older
//! than a second (tcp_tw_reuse = 2), and the default range has ~28k ports, so exhaustion would
//! take minutes or never show. The lesson narrows the range one of two ways:
//!
//! - In a private network namespace (the usual way): it has its own loopback, its own
//!   ip_local_port_range and its own tcp_tw_reuse: we set 100 ports and reuse off, and the
//!   exhaustion shows in well under a second. The namespace comes from unshare(2) with a user
//!   namespace, which any user may create where unprivileged user namespaces are enabled; it
//!   disappears with the process.
//! - Where no namespace can be made (a default Docker container, Ubuntu 24.04's AppArmor
//!   restriction), or its sysctls cannot be set (/proc/sys is read-only in every Docker
//!   container, even one allowed to unshare), or [`netns::NO_NETNS_ENV`] is `1`: on the
//!   machine's own loopback, with
//!   IP_LOCAL_PORT_RANGE (Linux 6.3+) on each of the client's sockets, which narrows that
//!   socket's ephemeral range to 100 ports with no sysctl and no privilege. tcp_tw_reuse stays
//!   what the machine has (2 by default), so a TIME_WAIT port comes back once it is
//!   tcp_tw_reuse_delay old (1000 ms on Linux 6.18 here, measured 1004-1016 ms): the 100 ports
//!   run out in tens of milliseconds, and connect() fails until the first of them is a second
//!   old. The lesson measures when that happens.
//!
//! Either way nothing on the host is changed, and the verdicts are the same.
//!
//! Left out on purpose: IPv6, several destinations (each distinct server address and port
//! has its own 100 ports), and SO_REUSEADDR/IP_BIND_ADDRESS_NO_PORT tricks.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tcplab_core::timeline::Side;
use tcplab_core::{TcpState, sockets};

use crate::catalog::Verdict;
use crate::facts;
use crate::lab::Lab;
use crate::lessons::churn;
use tcplab_core::netns;

/// The ephemeral port range set inside the namespace: 100 ports.
pub const PORT_RANGE: (u16, u16) = (40000, 40099);
/// Ports the client gets on the host, through IP_LOCAL_PORT_RANGE: as many as in the
/// namespace.
pub const HOST_PORTS: u16 = 100;
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

/// The client's IP_LOCAL_PORT_RANGE when the lesson runs on the host, packed as the option
/// is (high << 16 | low); 0 in the namespace, where the sysctl does the narrowing.
static CLIENT_PORT_RANGE: AtomicU32 = AtomicU32::new(0);

/// The port range [`connect`] gives each socket, if any.
fn client_port_range() -> Option<(u16, u16)> {
    match CLIENT_PORT_RANGE.load(Ordering::Relaxed) {
        0 => None,
        packed => Some(((packed & 0xffff) as u16, (packed >> 16) as u16)),
    }
}

/// Open a connection to the server (counted in `out`), with timeouts on every call. On the
/// host each socket gets the lesson's 100-port IP_LOCAL_PORT_RANGE before it connects.
pub fn connect(addr: SocketAddr, out: &mut Outcome) -> io::Result<TcpStream> {
    let stream = match client_port_range() {
        Some(range) => sockets::connect_in_port_range(addr, range, IO_TIMEOUT)?,
        None => sockets::connect(addr, IO_TIMEOUT)?,
    };
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

/// Where the lesson's client gets its 100 ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// A private network namespace whose ip_local_port_range and tcp_tw_reuse we set.
    Namespace,
    /// The network namespace the lesson started in (the host's, or a container's): the
    /// client's sockets carry IP_LOCAL_PORT_RANGE, and the sysctls are left alone.
    Host,
}

/// Run the lesson: namespace (or the host's loopback), server, the binary's client loop,
/// then the kernel's view.
pub fn run(lab: &mut Lab, send_requests: fn(SocketAddr, usize) -> Outcome) -> Result<()> {
    let n = lab.connections(DEFAULT_REQUESTS, 3)?;
    let churn = churn::Config::from_lesson_args(lab, churn::Closer::Client)?;
    // A user namespace even for root: the server listens on the fixed port 8080, which
    // parallel runs of this lesson use in their own namespaces; sock_diag polling sees only
    // ours, while the global tracepoint would see them all.
    let (place, listener, range) =
        match netns::try_enter_with_sysctls(netns::Prefer::UserNamespace)? {
            Ok(kind) => {
                lab.step("Enter a private network namespace (nothing on the host is touched)");
                let range = format!("{} {}", PORT_RANGE.0, PORT_RANGE.1);
                netns::set_ipv4_sysctl("ip_local_port_range", &range)?;
                netns::set_ipv4_sysctl("tcp_tw_reuse", "0")?;
                let ports = usize::from(PORT_RANGE.1 - PORT_RANGE.0) + 1;
                lab.say(format!(
                    "a new {kind} of this process: its own loopback (brought up), \
                 ip_local_port_range = {range} ({ports} ports), tcp_tw_reuse = 0. The host's \
                 settings and sockets are untouched, and the namespace vanishes when the lesson \
                 ends."
                ));
                lab.fact(facts::NAMESPACE, "private");
                lab.fact("port_range", &range);
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, SERVER_PORT));
                let listener = sockets::listen_on(addr, sockets::ListenOptions::default())
                    .with_context(|| format!("listen on {addr} inside the namespace"))?;
                lab.in_private_namespace(kind.starts_with("user"));
                (Place::Namespace, listener, PORT_RANGE)
            }
            Err(refused) => {
                let (listener, range) = host_setup(lab, &refused)?;
                (Place::Host, listener, range)
            }
        };
    let addr = listener.local_addr()?;
    lab.watch(addr.port())?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve(listener, stop.clone());
    lab.step(format!(
        "A keep-alive server listens on {addr} ({})",
        match place {
            Place::Namespace => "inside the namespace",
            Place::Host => "on this machine's loopback",
        }
    ));
    lab.show("before any request")?;

    lab.step(format!("The client sends {n} requests"));
    let result = grade(lab, addr, n, send_requests, churn, place, range);
    stop.store(true, Ordering::Relaxed);
    CLIENT_PORT_RANGE.store(0, Ordering::Relaxed);
    let _ = server.join();
    result
}

/// No private namespace: listen on a port the kernel picks, and give the client 100 ports of
/// this namespace's ephemeral range, away from the listener's, through IP_LOCAL_PORT_RANGE.
fn host_setup(lab: &mut Lab, refused: &netns::Refused) -> Result<(TcpListener, (u16, u16))> {
    lab.step("No private network namespace: the lesson runs on this machine's own loopback");
    lab.say(format!("{refused}."));
    let listener = sockets::loopback_listener(false)?;
    let server_port = listener.local_addr()?.port();
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .context("read net.ipv4.ip_local_port_range")?;
    let bounds: Vec<u16> = text
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    let &[low, high] = bounds.as_slice() else {
        bail!("cannot parse net.ipv4.ip_local_port_range: {text:?}");
    };
    let range = host_window((low, high), server_port, HOST_PORTS);
    // Check that the kernel knows the option (Linux 6.3+) before the client relies on it.
    let probe = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    if let Err(e) = sockets::set_local_port_range(&probe, range.0, range.1) {
        bail!(
            "{refused}; and this kernel refuses IP_LOCAL_PORT_RANGE ({e}; Linux 6.3 and later \
             have it), the lesson's other way to narrow the client's ports. Run lesson 09 \
             where one of the two works (`tcplab doctor` tells)"
        );
    }
    drop(probe);
    CLIENT_PORT_RANGE.store(
        (u32::from(range.1) << 16) | u32::from(range.0),
        Ordering::Relaxed,
    );
    let reuse = tcplab_core::kernel::sysctl("net/ipv4/tcp_tw_reuse");
    let delay = tcplab_core::kernel::sysctl("net/ipv4/tcp_tw_reuse_delay");
    let ports = range.1 - range.0 + 1;
    lab.say(format!(
        "each of the client's sockets gets IP_LOCAL_PORT_RANGE = {} {} ({ports} ports, Linux \
         6.3+): connect() takes its local port from those only, for those sockets only. No \
         sysctl is changed; other programs keep the whole range {low} {high}.",
        range.0, range.1
    ));
    let reuse_says = match reuse {
        Some(0) => "connect() never takes over a TIME_WAIT port".to_string(),
        Some(r @ (1 | 2)) => format!(
            "connect() may take over a {}TIME_WAIT port once it is {} old",
            if r == 2 { "loopback " } else { "" },
            match delay {
                Some(ms) => format!("tcp_tw_reuse_delay = {ms} ms"),
                None => "a second".to_string(),
            }
        ),
        Some(_) | None => "unknown".to_string(),
    };
    lab.say(format!(
        "tcp_tw_reuse here is {} ({reuse_says}), and the lesson leaves it so: a closed port \
         comes back after that delay, not after TIME_WAIT's 60 s.",
        reuse.map_or("unreadable".to_string(), |r| r.to_string())
    ));
    lab.fact(facts::NAMESPACE, "none");
    lab.fact("port_range", format!("{} {}", range.0, range.1));
    lab.fact("port_range_option", "IP_LOCAL_PORT_RANGE");
    lab.fact("tcp_tw_reuse", reuse);
    lab.fact("tcp_tw_reuse_delay_ms", delay);
    Ok((listener, range))
}

/// `ports` ports at the top of the namespace's ephemeral range `(low, high)`, or just below
/// (or above) the listener's port when that falls among them: a port a listener holds is no
/// use to connect().
fn host_window((low, high): (u16, u16), server_port: u16, ports: u16) -> (u16, u16) {
    let span = high.saturating_sub(low).saturating_add(1);
    if span <= ports {
        return (low, high);
    }
    let top = (high - ports + 1, high);
    if !(top.0..=top.1).contains(&server_port) {
        return top;
    }
    if server_port - low >= ports {
        (server_port - ports, server_port - 1)
    } else {
        (server_port + 1, server_port + ports)
    }
}

/// On the host, after the ports ran out: connect again every few milliseconds (from the
/// same 100 ports) until the kernel hands out a TIME_WAIT port through tcp_tw_reuse, or
/// `limit` passes. Returns the time since the client's loop started, and the port.
fn until_a_port_comes_back(
    addr: SocketAddr,
    range: (u16, u16),
    started: Instant,
    limit: Duration,
) -> Option<(Duration, u16)> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match sockets::connect_in_port_range(addr, range, IO_TIMEOUT) {
            Ok(stream) => {
                let port = stream.local_addr().ok()?.port();
                return Some((started.elapsed(), port));
            }
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return None,
        }
    }
    None
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
    lab.fact(facts::CHURN_PORT_RANGE, format!("{low} {high}"));
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
    place: Place,
    range: (u16, u16),
) -> Result<()> {
    // The namespace is the lesson's alone: its counters count only this client and server.
    // On the host they count every program's traffic, so there they only excuse (below).
    let resets_before = netns::resets_sent();
    let recycled_before = tw_recycled();
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
        s.count(Side::Client, TcpState::TimeWait) >= expect_tw
            && s.count(Side::Client, TcpState::FinWait2) == 0
            && s.count(Side::Server, TcpState::CloseWait) == 0
            && s.count(Side::Server, TcpState::LastAck) == 0
    })?;
    lab.say(format!("kernel says: {}", seen.describe()));
    let tw = seen.count(Side::Client, TcpState::TimeWait);
    let est = seen.count(Side::Client, TcpState::Established);
    lab.fact("requests", out.requests);
    lab.fact("connections_opened", out.connections);
    lab.fact(
        "connections_before_error",
        out.error.as_ref().map(|_| out.connections),
    );
    lab.fact(facts::ERROR, &error_name);
    lab.fact(
        "ms_to_exhaustion",
        out.failed_after.map(|t| t.as_millis() as u64),
    );
    lab.fact(facts::CLIENT_TIME_WAIT, tw);
    lab.fact(facts::CLIENT_ESTABLISHED, est);
    let ports = usize::from(range.1 - range.0) + 1;
    // Aborted connections. In the namespace: the RSTs its TCP sent (Tcp OutRsts), which only
    // this client and server can have caused. On the host that counter is everyone's, so
    // the kernel's socket table speaks instead: a connection the client closed with FIN
    // leaves one TIME_WAIT on the lesson's port, one closed with RST (SO_LINGER 0, unread
    // data) leaves none. A missing TIME_WAIT is excused only when connect() took it over
    // (tcp_tw_reuse; TcpExt TWRecycled, also everyone's, so it may excuse too much, never
    // too little).
    let closed = out.connections - out.pool.len();
    let aborted = match place {
        Place::Namespace => {
            let resets = netns::resets_sent().saturating_sub(resets_before);
            lab.fact("resets_sent", resets);
            resets as usize
        }
        Place::Host => {
            let recycled = tw_recycled().saturating_sub(recycled_before) as usize;
            let missing = closed.saturating_sub(tw).saturating_sub(recycled);
            lab.fact("closed_without_time_wait", missing);
            missing
        }
    };
    // A client that reuses its connections needs a handful of ports, whatever the number of
    // requests; one that takes a port per request needs one per request.
    let few = ports / 4;

    let (verdict, why) = if errno == Some(libc::EADDRNOTAVAIL)
        && tw > 0
        && tw * 10 >= out.connections * 9
    {
        let held = match place {
            Place::Namespace => "for 60 s",
            Place::Host => "until it is old enough for tcp_tw_reuse (60 s without it)",
        };
        lab.say(format!(
            "{tw} client sockets in TIME_WAIT, one per closed connection, each holding one of \
             the {ports} local ports {held}: connect() found no free port and failed with \
             EADDRNOTAVAIL."
        ));
        if place == Place::Host {
            ports_come_back(lab, addr, range, &out);
        }
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
        let evidence = match place {
            Place::Namespace => {
                format!("the kernel sent {aborted} resets (Tcp OutRsts in the lesson's namespace)")
            }
            Place::Host => format!(
                "{aborted} of the {closed} connections the client closed left no TIME_WAIT on \
                 the lesson's port"
            ),
        };
        lab.require(
            aborted == 0,
            format!(
                "{evidence}: connections were aborted (SO_LINGER 0, or closed with unread \
                 data), which throws the close away instead of ending it; lesson 07 shows what \
                 that costs"
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
                if aborted > 0 {
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
    match (churn, place) {
        (Some(cfg), Place::Namespace) => churn_to_exhaustion(lab, cfg)?,
        (Some(_), Place::Host) => {
            lab.step("At scale: --churn-secs");
            lab.say(
                "skipped: the churn fills a whole port range with TIME_WAIT sockets, and without \
                 a private namespace that would be this machine's table and range, shared with \
                 every other program. Run it where `tcplab doctor` says namespaces work.",
            );
            lab.fact("churn_skipped", "no private network namespace");
        }
        (None, _) => {}
    }
    lab.finish(verdict, seen, &why)?;
    drop(out.pool);
    Ok(())
}

/// TcpExt TWRecycled of this network namespace: connect() calls that took over a TIME_WAIT
/// socket's port (tcp_tw_reuse).
fn tw_recycled() -> u64 {
    tcplab_core::kernel::tcp_ext_counters()
        .get("TWRecycled")
        .copied()
        .unwrap_or(0)
}

/// The host's tcp_tw_reuse at work: after EADDRNOTAVAIL, how long until connect() gets a
/// port again. Narrated and recorded as facts; the verdict is already decided.
///
/// On the host, other programs' sockets share the port range: one that held a port when
/// the range ran out may let it go a moment later. So the port that comes back is checked
/// against this client's own TIME_WAIT ports, as sock_diag listed them just before: only
/// one of those was handed back by tcp_tw_reuse (`port_came_back_by`).
fn ports_come_back(lab: &mut Lab, addr: SocketAddr, range: (u16, u16), out: &Outcome) {
    lab.step("When does connect() get a port again?");
    let limit = Duration::from_secs(3);
    let own_time_wait: Option<std::collections::HashSet<u16>> = lab.rows().ok().map(|rows| {
        rows.iter()
            .filter(|r| r.state == TcpState::TimeWait && r.remote == addr)
            .map(|r| r.local.port())
            .collect()
    });
    match until_a_port_comes_back(addr, range, out.started, limit) {
        Some((after, port)) if own_time_wait.as_ref().is_some_and(|o| !o.contains(&port)) => {
            lab.say(format!(
                "connect() succeeded again {} ms after the client's first connection, on port                  {port}; that port was none of this client's TIME_WAIT sockets: another                  program on this machine held it when the range ran out, and has let it go                  since. This run has no namespace of its own, so it shares the port range.",
                after.as_millis(),
            ));
            lab.fact("ms_until_a_port_came_back", after.as_millis() as u64);
            lab.fact("port_came_back_by", "another socket");
        }
        Some((after, port)) => {
            let since_failure = out.failed_after.map_or(after, |f| after.saturating_sub(f));
            lab.say(format!(
                "connect() succeeded again {} ms after the client's first connection, {} ms \
                 after the failure, on port {port}: tcp_tw_reuse let it take over a TIME_WAIT \
                 socket once that was old enough. TIME_WAIT still lasts 60 s, but on loopback \
                 a port is held for about a second, so this client gets about {} connections \
                 a second from its {} ports instead of {} a minute.",
                after.as_millis(),
                since_failure.as_millis(),
                range.1 - range.0 + 1,
                range.1 - range.0 + 1,
                range.1 - range.0 + 1,
            ));
            lab.fact("ms_until_a_port_came_back", after.as_millis() as u64);
            lab.fact(
                "port_came_back_by",
                if own_time_wait.is_some() {
                    "tcp_tw_reuse"
                } else {
                    "unknown (sock_diag failed)"
                },
            );
        }
        None => {
            lab.say(format!(
                "no port came back within {} s: tcp_tw_reuse does not apply here, so each \
                 port is held for TIME_WAIT's full 60 s.",
                limit.as_secs()
            ));
            lab.fact("ms_until_a_port_came_back", None::<u64>);
            lab.fact("port_came_back_by", None::<&str>);
        }
    }
}
