//! Lesson 05's driver: N connections, each a connect, one short reply and a close by both
//! sides; the binary provides the server's and the client's code for one connection, and with
//! it who closes first. The kernel then says where the TIME_WAIT sockets are and how long
//! their timers still run. With `--churn-secs S` it also runs [`churn`](super::churn) and
//! does the steady-state arithmetic.
//!
//! Left out on purpose: connection reuse (keep-alive, lesson 09's pool) and tuning knobs;
//! TIME_WAIT is the protocol working as designed, the lesson is about where it lands.

use std::io;
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result};
use tcplab_core::timeline::Side;
use tcplab_core::{TcpState, sockets};

use crate::catalog::Verdict;
use crate::facts;
use crate::lab::Lab;
use crate::lessons::churn::{self, Closer};
use tcplab_core::netns;

/// The server's reply on every connection.
pub const REPLY: &[u8] = b"hello from the server\n";

/// How long any single call may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// Linux's TIME_WAIT length (TCP_TIMEWAIT_LEN, fixed at build time).
const LINUX_TIME_WAIT_SECS: f64 = 60.0;
/// Windows' default TIME_WAIT (TcpTimedWaitDelay), where the "240 s" one reads about comes from.
const WINDOWS_TIME_WAIT_SECS: f64 = 240.0;

/// The code one end of a connection runs on it (the binary's `serve` or `client`).
pub type Handler = fn(TcpStream) -> io::Result<()>;

/// Run the lesson with the binary's `serve` (server side) and `client` (client side).
pub fn run(lab: &mut Lab, serve: Handler, client: Handler) -> Result<()> {
    // The churn's namespace must come first: the kernel makes a user namespace only for a
    // process that has not started any thread yet.
    let churn = churn::Config::from_lesson_args(lab, Closer::Server)?;
    if churn.is_some() {
        let how = netns::enter(netns::Prefer::KeepRoot)?;
        lab.step(format!("--churn-secs: this run moved into a new {how}"));
        lab.say(
            "so the churn's TIME_WAIT flood cannot fill the host's table; host tools such as \
             `ss` or `tcplab snapshot` will not see these sockets",
        );
    }

    let n = lab.connections(200, 2)?;
    let listener = sockets::loopback_listener(false)?;
    let addr = listener.local_addr()?;
    lab.watch(addr.port())?;
    let server = std::thread::spawn(move || -> Result<usize> {
        for i in 0..n {
            let (stream, _) = sockets::accept_within(&listener, IO_TIMEOUT)
                .with_context(|| format!("accept connection {}", i + 1))?;
            stream.set_read_timeout(Some(IO_TIMEOUT))?;
            stream.set_write_timeout(Some(IO_TIMEOUT))?;
            serve(stream)
                .map_err(explain_io)
                .with_context(|| format!("server side of connection {}", i + 1))?;
        }
        Ok(n)
    });

    lab.step(format!(
        "{n} connections to {addr}: the server sends a line, both sides close"
    ));
    let clients = (|| -> Result<()> {
        for i in 0..n {
            let stream = sockets::connect(addr, IO_TIMEOUT).context("connect")?;
            stream.set_read_timeout(Some(IO_TIMEOUT))?;
            stream.set_write_timeout(Some(IO_TIMEOUT))?;
            client(stream)
                .map_err(explain_io)
                .with_context(|| format!("client side of connection {}", i + 1))?;
        }
        Ok(())
    })();
    if let Err(client_error) = clients {
        // When the server's side failed first, its error is the cause and the client's only
        // the consequence (a reset, a refused connect): report the server's.
        if server.is_finished() {
            if let Ok(Err(server_error)) = server.join() {
                return Err(server_error);
            }
        }
        return Err(client_error);
    }
    let served = server
        .join()
        .map_err(|_| anyhow::anyhow!("the server thread panicked"))??;
    lab.say(format!(
        "{served} connections served and closed by both programs"
    ));

    lab.step("Where the kernel keeps the TIME_WAIT sockets");
    // Settled: every connection socket in view is in TIME_WAIT. Usually all n are; a few may
    // be missing because a later connection of this run took over their 4-tuple (on loopback
    // Linux lets connect() reuse a TIME_WAIT port older than 1 s, tcp_tw_reuse=2, and a
    // TIME_WAIT socket accepts a new SYN), which happens when the run is slow.
    let seen = lab.wait_until(IO_TIMEOUT, |s| {
        let tw =
            s.count(Side::Server, TcpState::TimeWait) + s.count(Side::Client, TcpState::TimeWait);
        let others = s.total(Side::Server) + s.total(Side::Client)
            - tw
            - s.count(Side::Server, TcpState::Listen);
        tw == n || (others == 0 && tw >= mostly(n))
    })?;
    lab.say(format!("kernel says: {}", seen.describe()));
    let server_tw = seen.count(Side::Server, TcpState::TimeWait);
    let client_tw = seen.count(Side::Client, TcpState::TimeWait);
    let port = addr.port();
    let timers: Vec<u64> = lab
        .rows()?
        .iter()
        .filter(|r| r.state == TcpState::TimeWait)
        .filter_map(|r| r.timer_ms)
        .collect();
    let (tmin, tmax) = (timers.iter().min().copied(), timers.iter().max().copied());
    lab.fact(facts::CONNECTIONS, n);
    lab.fact(facts::SERVER_TIME_WAIT, server_tw);
    lab.fact(facts::CLIENT_TIME_WAIT, client_tw);
    lab.fact(facts::TIMER_MS_MIN, tmin);
    lab.fact(facts::TIMER_MS_MAX, tmax);
    if let (Some(lo), Some(hi)) = (tmin, tmax) {
        lab.say(format!(
            "their timers: {:.1} s to {:.1} s left, counting down from 60 s; they end by \
             themselves and hold no file descriptor",
            lo as f64 / 1000.0,
            hi as f64 / 1000.0
        ));
    }

    let reused = n.saturating_sub(server_tw + client_tw);
    lab.fact("time_wait_reused", reused);
    if reused > 0 {
        lab.say(format!(
            "{reused} of the {n} connections left no TIME_WAIT of their own: a later connection \
             of this run reused their 4-tuple (loopback TIME_WAIT older than 1 s may be reused)"
        ));
    }
    let (verdict, why) = if server_tw >= mostly(n) && client_tw == 0 {
        lab.say(format!(
            "all {server_tw} TIME_WAIT sockets are on the server's port {port}: the server closed first"
        ));
        lab.say(
            "a busy server that closes first keeps rate x 60 s of them; they cost kernel memory \
             and, on a restart, can stop bind() (lesson 06)",
        );
        (
            Verdict::Leak,
            format!("{server_tw} TIME_WAIT sockets piled up on the server side"),
        )
    } else if client_tw >= mostly(n) && server_tw == 0 {
        lab.say(format!(
            "all {client_tw} TIME_WAIT sockets are on the clients' side: the clients closed first, \
             the server keeps none"
        ));
        (
            Verdict::Clean,
            format!("{client_tw} TIME_WAIT sockets on the clients, none on the server"),
        )
    } else if server_tw + client_tw < mostly(n) {
        // A connection closed with FIN leaves a TIME_WAIT on one side; an aborted one leaves
        // none.
        (
            Verdict::Leak,
            format!(
                "only {} of {n} connections left a TIME_WAIT ({server_tw} on the server, \
                 {client_tw} on the clients): the others ended with RST (SO_LINGER 0, or a \
                 close with unread data), which throws the close away instead of moving the \
                 TIME_WAIT",
                server_tw + client_tw
            ),
        )
    } else {
        (
            Verdict::Leak,
            format!(
                "TIME_WAIT on both sides ({server_tw} on the server, {client_tw} on the \
                 clients): the server still closes first on some connections"
            ),
        )
    };

    if let Some(mut cfg) = churn {
        // The same side closes first as in the lesson's own connections.
        cfg.closer = if verdict == Verdict::Leak {
            Closer::Server
        } else {
            Closer::Client
        };
        // The lesson's own connections are graded; their TIME_WAIT timers run for another
        // minute, longer than the run. Stop tracing them so the churn gets both cores.
        lab.stop_watching()?;
        run_churn(lab, cfg)?;
    }
    lab.finish(verdict, seen, &why)
}

/// A read or write that failed, in words: a timeout means both sides wait for the other to
/// close first, a reset that one side aborted.
fn explain_io(e: io::Error) -> anyhow::Error {
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        anyhow::anyhow!(
            "nothing came for {} s ({e}): each side is waiting for the other. A read until \
             the peer's FIN (read() == 0) on both sides never ends; decide which side closes \
             first, and change both functions so that the other one waits for it",
            IO_TIMEOUT.as_secs()
        )
    } else if e.kind() == io::ErrorKind::ConnectionReset {
        anyhow::anyhow!(
            "{e}: the other side aborted the connection with RST. A close with SO_LINGER 0, or \
             with data left unread, resets instead of closing, and leaves no TIME_WAIT to move"
        )
    } else {
        e.into()
    }
}

/// The churn and its arithmetic, narrated and put into the facts.
fn run_churn(lab: &mut Lab, cfg: churn::Config) -> Result<()> {
    let closer = cfg.closer;
    let report = churn::run_in_lesson(lab, cfg)?;
    // Rounded, so that the narrated arithmetic adds up.
    let rate = report.rate_per_sec.round();
    if let Some(target) = report.target_rate
        && rate < target * 0.9
    {
        lab.say(format!(
            "asked for {target:.0}/s, reached {rate:.0}/s: this machine cannot go faster now"
        ));
    }
    // Connections that left no TIME_WAIT of their own: a later connection took over the
    // 4-tuple. None of the 60 s timers ends during the churn.
    let last = report.samples.last();
    let tw_now = last.map_or(0, |s| s.server_time_wait + s.client_time_wait);
    let sampled = last.map_or(0, |s| s.connections);
    let reopened = sampled.saturating_sub(tw_now as u64);
    if reopened * 20 > sampled {
        let how = match closer {
            Closer::Server => format!(
                "the clients' ports are free again at once (their side has no TIME_WAIT), so \
                 connect() may pick a port it used before to the same server port, and a SYN \
                 that reaches a TIME_WAIT socket opens a new connection when PAWS does not \
                 reject it and its sequence number is above the old one's (RFC 9293 MAY-2) or \
                 its timestamp is newer (RFC 6191; tcp_timewait_state_process() in \
                 net/ipv4/tcp_minisocks.c). None \
                 is missing for lack of room: TcpExt TCPTimeWaitOverflow grew by {}",
                report.tw_overflow.unwrap_or(0)
            ),
            Closer::Client => format!(
                "connect() took over a client port still in TIME_WAIT (older than 1 s): \
                 tcp_tw_reuse is {} here, and 2 allows it on loopback. The kernel's counter \
                 (TcpExt TWRecycled) says {} times",
                tcplab_core::kernel::sysctl("net/ipv4/tcp_tw_reuse")
                    .map_or("unknown".to_string(), |v| v.to_string()),
                report
                    .tw_recycled
                    .map_or("unknown".to_string(), |v| v.to_string())
            ),
        };
        lab.say(format!(
            "{tw_now} TIME_WAIT for {sampled} connections: {reopened} connections' TIME_WAIT was \
             taken over by a later connection with the same 4-tuple: {how}"
        ));
    }
    let linux = rate * LINUX_TIME_WAIT_SECS;
    let windows = rate * WINDOWS_TIME_WAIT_SECS;
    lab.say(format!(
        "steady state on Linux: {rate:.0}/s x 60 s = {linux:.0} TIME_WAIT sockets; with Windows' \
         default 240 s: {windows:.0}"
    ));
    if let Some(cap) = report.tcp_max_tw_buckets {
        lab.say(format!(
            "net.ipv4.tcp_max_tw_buckets is {cap} here: past it the kernel closes without \
             TIME_WAIT (counted as TcpExt TCPTimeWaitOverflow, not logged), so the count \
             stops at {:.0}",
            linux.min(cap as f64)
        ));
    }
    lab.fact("churn_time_wait_reopened", reopened);
    lab.fact(facts::CHURN_STEADY_STATE_LINUX, linux.round() as u64);
    lab.fact("churn_steady_state_windows", windows.round() as u64);
    Ok(())
}

/// At least nine in ten of `n`: the share of connections that must show their own TIME_WAIT
/// (the rest may have been taken over by a later connection, see above).
fn mostly(n: usize) -> usize {
    n - n / 10
}
