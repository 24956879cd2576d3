//! Lesson 10's driver: a client that reuses its own local port after its orphaned FIN_WAIT2
//! expired, against a server that may still hold the old connection in CLOSE_WAIT. The binary
//! provides the server's handler; this module plays the client and asks the kernel.
//!
//! What this kernel does (Linux 6.x, checked with `ss`): the new SYN matches the stale
//! CLOSE_WAIT socket, so the server's kernel does not answer SYN-ACK but a "challenge ACK"
//! (RFC 5961). The client's kernel, in SYN_SENT, finds that ACK acknowledges nothing it sent
//! and answers RST, which kills the stale CLOSE_WAIT socket; then it retransmits the SYN after
//! the minimum timeout instead of the usual 1 s, and that SYN reaches the listener. connect()
//! succeeds, a round trip and a retransmission late. Where the RST is lost (a firewall that
//! drops it, a rate-limited challenge ACK), connect() times out instead.
//!
//! The lesson captures its port (see `lesson/wire.rs`) and reads the reconnect off the wire:
//! the SYN, the challenge ACK, the RST and the retransmitted SYN. Where capture is refused it
//! falls back to the socket's retransmission count (TCP_INFO) and the namespace's counter of
//! challenge ACKs, which other programs may add to.
//!
//! Left out on purpose: IPv6 (the same code paths).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use socket2::{Domain, Protocol, Socket, Type};
use tcplab_core::observe::SocketRow;
use tcplab_core::segment::Flag;
use tcplab_core::timeline::Side;
use tcplab_core::{Segment, TcpState, sockets};

use crate::catalog::Verdict;
use crate::facts;
use crate::lab::{CLOSE_GRACE, Lab};

/// How long the client's reconnect may take before we call it stuck.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// TCP_LINGER2 on the client: its orphaned FIN_WAIT2 lasts this long (instead of 60 s).
pub const LINGER2_SECS: i32 = 1;

/// The rows of the one connection between the client's port and the server's port.
fn pair(rows: &[SocketRow], client_port: u16, server_port: u16) -> (Vec<TcpState>, Vec<TcpState>) {
    let client = rows
        .iter()
        .filter(|r| r.local.port() == client_port && r.remote.port() == server_port)
        .map(|r| r.state)
        .collect();
    let server = rows
        .iter()
        .filter(|r| r.local.port() == server_port && r.remote.port() == client_port)
        .map(|r| r.state)
        .collect();
    (client, server)
}

fn names(states: &[TcpState]) -> String {
    if states.is_empty() {
        "nothing".to_string()
    } else {
        states
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Connect from a port the kernel picks, with SO_REUSEADDR so the same port can be bound again.
fn first_connection(server: SocketAddr) -> Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
    socket
        .connect_timeout(&server.into(), CONNECT_TIMEOUT)
        .context("first connect")?;
    Ok(socket.into())
}

/// One line there and back, with timeouts.
fn exchange(stream: &mut TcpStream) -> Result<()> {
    stream.set_read_timeout(Some(CONNECT_TIMEOUT))?;
    stream.set_write_timeout(Some(CONNECT_TIMEOUT))?;
    let line = b"hello again\n";
    stream.write_all(line)?;
    let mut echo = vec![0u8; line.len()];
    stream.read_exact(&mut echo)?;
    Ok(())
}

/// The kernel's count of retransmitted segments on this socket (TCP_INFO tcpi_total_retrans):
/// after connect(), a retransmitted SYN.
fn total_retrans(stream: &TcpStream) -> Result<u32> {
    // SAFETY: tcp_info is plain data; getsockopt fills at most `len` bytes of it.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("getsockopt(TCP_INFO)");
    }
    Ok(info.tcpi_total_retrans)
}

/// TcpExt TCPChallengeACK: challenge ACKs this network namespace sent.
fn challenge_acks() -> Option<u64> {
    tcplab_core::kernel::tcp_ext_counter("TCPChallengeACK")
}

/// The reconnect as the wire showed it, from its first SYN on.
#[derive(Debug, Default)]
struct Reconnect {
    /// "client SYN", "server ACK", ... in order, up to the first data.
    ladder: Vec<String>,
    /// SYNs the client sent for it (more than one: retransmitted).
    syns: usize,
    /// Bare ACKs the server answered a SYN with, before any SYN-ACK: challenge ACKs.
    challenge_acks: usize,
    /// RSTs the client sent.
    client_rsts: usize,
}

/// Read the reconnect from the segments between the client's port and the server: it starts
/// at the client's last SYN with a new initial sequence number (the first connection's SYN
/// came before, with another one).
fn reconnect_on_wire(segs: &[Segment], client: SocketAddr, server: SocketAddr) -> Reconnect {
    let conn: Vec<&Segment> = segs.iter().filter(|s| s.between(client, server)).collect();
    let is_syn = |s: &Segment| s.src == client && s.has(Flag::Syn) && !s.has(Flag::Ack);
    let first_isn = conn.iter().find(|s| is_syn(s)).map(|s| s.raw_seq);
    let Some(start) = conn
        .iter()
        .position(|s| is_syn(s) && Some(s.raw_seq) != first_isn)
    else {
        return Reconnect::default();
    };
    let mut out = Reconnect::default();
    let mut synack = false;
    for s in &conn[start..] {
        let from_client = s.src == client;
        let who = if from_client { "client" } else { "server" };
        out.ladder.push(format!("{who} {}", s.flags));
        if from_client && is_syn(s) {
            out.syns += 1;
        } else if from_client && s.has(Flag::Rst) {
            out.client_rsts += 1;
        } else if !from_client && s.has(Flag::Syn) {
            synack = true;
        } else if !from_client && !synack && s.has(Flag::Ack) && !s.has(Flag::Rst) {
            out.challenge_acks += 1;
        }
        if s.len > 0 || out.ladder.len() >= 12 {
            break;
        }
    }
    out
}

/// Run the lesson with the server started by `start`.
pub fn run(
    lab: &mut Lab,
    start: impl FnOnce(TcpListener, usize, Arc<AtomicBool>) -> JoinHandle<()>,
) -> Result<()> {
    let listener = sockets::loopback_listener(false)?;
    let server = listener.local_addr()?;
    lab.watch(server.port())?;
    let stop = Arc::new(AtomicBool::new(false));
    // Two connections: the first, and the reconnect from the same client port.
    let handle = start(listener, 2, stop.clone());
    let result = lesson(lab, server);
    stop.store(true, Ordering::Relaxed);
    let _ = handle.join();
    result
}

fn lesson(lab: &mut Lab, server: SocketAddr) -> Result<()> {
    let sp = server.port();
    lab.step(format!("An echo server listens on {server}"));

    let mut first = first_connection(server)?;
    let cp = first.local_addr()?.port();
    exchange(&mut first).context("first exchange")?;
    lab.step(format!(
        "The client connects from port {cp} (SO_REUSEADDR, so it can bind that port again later), \
         exchanges a line, sets TCP_LINGER2 = {LINGER2_SECS} s and closes"
    ));
    sockets::set_linger2(&first, LINGER2_SECS)?;
    drop(first);
    // Settled means one of the two consistent pictures: the server closed too (client in
    // TIME_WAIT, nothing left on the server's side), or it did not (FIN_WAIT2 / CLOSE_WAIT).
    // A dump is not atomic, so TIME_WAIT beside a CLOSE_WAIT just being closed is not settled.
    // The server gets the grace period to close too; only then does FIN_WAIT2 / CLOSE_WAIT
    // count as the server keeping its socket.
    let mut rows = wait_rows(lab, cp, CLOSE_GRACE, |c, s| {
        c.contains(&TcpState::TimeWait) && s.is_empty()
    })?;
    let (c, s) = pair(&rows, cp, sp);
    if !(c.contains(&TcpState::TimeWait) && s.is_empty()) {
        rows = wait_rows(lab, cp, Duration::from_secs(3), |c, s| {
            (c.contains(&TcpState::TimeWait) && s.is_empty())
                || (c.contains(&TcpState::FinWait2) && s.contains(&TcpState::CloseWait))
        })?;
    }
    let (c, s) = pair(&rows, cp, sp);
    lab.say(format!(
        "kernel says: client port {cp}: {} | server side of that connection: {}",
        names(&c),
        names(&s)
    ));
    if let Some(r) = rows
        .iter()
        .find(|r| r.local.port() == cp && r.state == TcpState::FinWait2)
    {
        lab.say(format!(
            "the client's socket is orphaned (the program closed it) in FIN_WAIT2, its timer at \
             {} ms: TCP_LINGER2 bounds how long it waits for the server's FIN",
            r.timer_ms.unwrap_or(0)
        ));
    }

    lab.step("Wait until the client's FIN_WAIT2 is gone (TCP_LINGER2 expired)");
    let rows = wait_rows(lab, cp, Duration::from_secs(3), |c, _| {
        !c.contains(&TcpState::FinWait2)
    })?;
    let (c, s) = pair(&rows, cp, sp);
    lab.say(format!(
        "kernel says: client port {cp}: {} | server side: {}",
        names(&c),
        names(&s)
    ));
    if c.contains(&TcpState::FinWait2) {
        bail!("the client's FIN_WAIT2 did not expire within 3 s (TCP_LINGER2 = {LINGER2_SECS} s)");
    }
    let close_wait_before = s.iter().filter(|&&x| x == TcpState::CloseWait).count();
    if close_wait_before == 0 {
        // No CLOSE_WAIT left is not enough: the server must also have let go of the socket.
        lab.require_no_held_descriptors()?;
    }
    if close_wait_before > 0 {
        lab.say(
            "the client's side is forgotten, but the server's side is still in CLOSE_WAIT: the \
             server program never closed it",
        );
    } else if c.contains(&TcpState::TimeWait) {
        lab.say(
            "the server closed its side, so the client holds TIME_WAIT on the port; a connect() \
             from an explicitly bound port may reuse it (TCP timestamps keep the two apart)",
        );
    }

    lab.step(format!(
        "The client connects again FROM THE SAME PORT {cp} (timeout {} s)",
        CONNECT_TIMEOUT.as_secs()
    ));
    let acks_before = challenge_acks();
    let t0 = Instant::now();
    let local = SocketAddr::from((Ipv4Addr::LOCALHOST, cp));
    let reconnect = sockets::connect_from(local, server, true, CONNECT_TIMEOUT);
    let connect_ms = t0.elapsed().as_millis();
    let acks = match (acks_before, challenge_acks()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let (connect_result, retrans, mut stream) = match reconnect {
        Ok(stream) => (
            "connected".to_string(),
            Some(total_retrans(&stream)?),
            Some(stream),
        ),
        Err(e) => {
            let name = match e.raw_os_error() {
                Some(libc::ETIMEDOUT) => "ETIMEDOUT".to_string(),
                Some(libc::ECONNREFUSED) => "ECONNREFUSED".to_string(),
                Some(libc::EADDRNOTAVAIL) => "EADDRNOTAVAIL".to_string(),
                Some(libc::EADDRINUSE) => "EADDRINUSE".to_string(),
                _ if e.kind() == std::io::ErrorKind::TimedOut => "timed out".to_string(),
                _ => e.to_string(),
            };
            (name, None, None)
        }
    };
    lab.say(format!("connect(): {connect_result} after {connect_ms} ms"));
    if let Some(n) = retrans {
        lab.say(format!(
            "the kernel's TCP_INFO for the new socket: {n} retransmitted segment(s) (the SYN)"
        ));
    }
    if let Some(stream) = stream.as_mut() {
        exchange(stream).context("exchange on the new connection")?;
        lab.say("a line went there and back on the new connection");
    }
    let rows = lab.rows()?;
    let (c, s) = pair(&rows, cp, sp);
    lab.say(format!(
        "kernel says: client port {cp}: {} | server side: {}",
        names(&c),
        names(&s)
    ));
    let close_wait_after = lab.sides()?.count(Side::Server, TcpState::CloseWait);

    // The wire, which sees each segment of this one connection (no counter shared with
    // other programs).
    let segments = lab.wire()?;
    let wire = segments
        .as_deref()
        .map(|segs| reconnect_on_wire(segs, local, server));
    if let Some(segs) = &segments {
        // A server that "fixes" CLOSE_WAIT by aborting (SO_LINGER 0 on EOF) leaves no
        // CLOSE_WAIT either; its RST is only on the wire.
        let resets = segs
            .iter()
            .filter(|s| s.src == server && s.dst == local && s.has(Flag::Rst))
            .count();
        lab.fact(facts::WIRE_SERVER_RST, resets);
        lab.require(
            resets == 0,
            format!(
                "the server ended the client's connection with RST ({resets} on the wire), not \
                 FIN: an abort (SO_LINGER 0) leaves no CLOSE_WAIT, but the peer never sees an \
                 orderly end; close() without it sends FIN"
            ),
        );
    }
    if let Some(w) = &wire {
        lab.say(format!(
            "on the wire, the reconnect: {}",
            if w.ladder.is_empty() {
                "no SYN seen".to_string()
            } else {
                w.ladder.join(" -> ")
            }
        ));
        lab.fact(facts::WIRE_RECONNECT, &w.ladder);
        lab.fact(facts::WIRE_SYNS, w.syns);
        lab.fact(facts::WIRE_CLIENT_RSTS, w.client_rsts);
    }
    let acks = match &wire {
        Some(w) => Some(w.challenge_acks as u64),
        None => {
            if let Some(n) = acks {
                lab.say(format!(
                    "challenge ACKs sent in this network namespace meanwhile: {n} (a \
                     machine-wide counter: other programs may add to it)"
                ));
            }
            acks
        }
    };
    // What the reconnect met: read off the wire when it was captured, else from the new
    // socket's retransmission count.
    let met_stale = match &wire {
        Some(w) => w.syns > 1 || w.challenge_acks > 0 || w.client_rsts > 0,
        None => retrans.unwrap_or(0) > 0,
    };
    let straight = match &wire {
        Some(w) => w.syns == 1 && w.challenge_acks == 0 && w.client_rsts == 0,
        None => retrans == Some(0),
    };

    lab.fact("client_port", cp);
    lab.fact("linger2_secs", LINGER2_SECS);
    lab.fact("server_close_wait_before", close_wait_before);
    lab.fact("connect_result", &connect_result);
    lab.fact("connect_ms", connect_ms as u64);
    lab.fact("syn_retransmits", retrans);
    lab.fact(facts::CHALLENGE_ACKS_SEEN, acks);
    lab.fact("server_close_wait_after", close_wait_after);

    let connected = stream.is_some();
    let seen = lab.sides()?;
    let (verdict, why) = if close_wait_before > 0 && (!connected || met_stale) {
        if connected {
            lab.say(
                "what happened: the SYN matched the stale CLOSE_WAIT socket, so the server's \
                 kernel answered with a challenge ACK instead of SYN-ACK; the client's kernel \
                 answered that with RST, which killed the stale socket, and its retransmitted \
                 SYN then reached the listener.",
            );
            lab.say(
                "this kernel recovers in milliseconds; if that RST is dropped (a firewall, a \
                 middlebox, a rate-limited challenge ACK) connect() hangs until it times out. \
                 Either way the leaking server lost a connection it never closed, and the \
                 client paid a retransmission for it.",
            );
        } else {
            lab.say("connect() never completed: the stale CLOSE_WAIT socket swallowed the SYNs.");
        }
        (
            Verdict::Leak,
            match &wire {
                Some(w) => format!(
                    "the reconnect from port {cp} met the server's stale CLOSE_WAIT socket: \
                     {connect_result} after {connect_ms} ms; on the wire {} SYN(s), {} \
                     challenge ACK(s), {} RST from the client",
                    w.syns, w.challenge_acks, w.client_rsts
                ),
                None => format!(
                    "the reconnect from port {cp} met the server's stale CLOSE_WAIT socket: \
                     {connect_result} after {connect_ms} ms, SYN retransmitted {} time(s)",
                    retrans.unwrap_or(0)
                ),
            },
        )
    } else if connected && straight && close_wait_before == 0 && close_wait_after == 0 {
        lab.say(
            "no CLOSE_WAIT: the server closed on EOF, the SYN found only the listener, and the \
             handshake completed at once.",
        );
        (
            Verdict::Clean,
            format!(
                "the reconnect from port {cp} connected in {connect_ms} ms with no retransmission"
            ),
        )
    } else {
        bail!(
            "the kernel showed neither outcome: CLOSE_WAIT before {close_wait_before}, after \
             {close_wait_after}, connect {connect_result} in {connect_ms} ms, retransmits {retrans:?}"
        );
    };
    lab.finish(verdict, seen, &why)?;
    drop(stream);
    Ok(())
}

/// Poll the kernel (rows on the server port) until `done(client states, server states)` for
/// the one connection holds, or `timeout`.
fn wait_rows(
    lab: &Lab,
    cp: u16,
    timeout: Duration,
    done: impl Fn(&[TcpState], &[TcpState]) -> bool,
) -> Result<Vec<SocketRow>> {
    let sp = lab.server_port()?;
    let deadline = Instant::now() + timeout;
    loop {
        let rows = lab.rows()?;
        let (c, s) = pair(&rows, cp, sp);
        if done(&c, &s) || Instant::now() >= deadline {
            return Ok(rows);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
