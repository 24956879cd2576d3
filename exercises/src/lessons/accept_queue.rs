//! Lesson 01's driver: a listener with a small backlog, clients connecting one after another
//! (each connect() bounded by a short timeout), and the kernel's view of the accept queue: the
//! LISTEN row's Recv-Q (connections waiting for accept()) and Send-Q (the backlog), plus the
//! states of both sides. The binary provides the server loop, which is the lesson.
//!
//! Left out on purpose: SYN cookies (they only matter when the SYN queue overflows, under a
//! SYN flood), tcp_abort_on_overflow, and IPv6.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, Socket, Type};
use tcplab_core::TcpState;
use tcplab_core::sockets::{self, ListenOptions};
use tcplab_core::timeline::Side;

use crate::catalog::Verdict;
use crate::facts;
use crate::lab::{Lab, Sides};

/// The backlog passed to listen(): small, so a handful of clients fill the queue.
pub const BACKLOG: i32 = 4;

/// How long one client waits for its connect() before moving on (its socket stays open).
const CONNECT_WAIT: Duration = Duration::from_millis(100);

/// How long a client waits for a full accept queue to get room before it connects anyway.
const QUEUE_SETTLE: Duration = Duration::from_millis(100);

/// How long to watch the clients after the last connect(): past the first SYN retransmission
/// (1 s), so a client whose SYN was dropped has had its second chance.
const SETTLE: Duration = Duration::from_millis(1500);

/// The LISTEN row's queue as the kernel reports it: (waiting for accept(), backlog).
fn listen_queue(lab: &Lab) -> Result<Option<(u32, u32)>> {
    let port = lab.server_port()?;
    Ok(lab
        .rows()?
        .iter()
        .find(|r| r.state == TcpState::Listen && r.local.port() == port)
        .map(|r| (r.recv_q, r.send_q)))
}

/// One client: a non-blocking connect() given `CONNECT_WAIT` to finish. The socket is kept
/// either way, so a client whose handshake did not finish stays visible in SYN_SENT.
fn connect_client(addr: SocketAddr) -> Result<(Socket, bool)> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    match socket.connect_timeout(&addr.into(), CONNECT_WAIT) {
        Ok(()) => Ok((socket, true)),
        Err(e)
            if e.kind() == std::io::ErrorKind::TimedOut
                || e.raw_os_error() == Some(libc::EINPROGRESS) =>
        {
            Ok((socket, false))
        }
        Err(e) => Err(e).context("connect"),
    }
}

/// Run the lesson with the binary's server loop.
pub fn run(lab: &mut Lab, serve: fn(TcpListener, &AtomicBool) -> Vec<TcpStream>) -> Result<()> {
    let n = lab.connections(10, 2)?;
    let listener = sockets::listen_on(
        sockets::loopback(false),
        ListenOptions {
            reuseaddr: false,
            backlog: BACKLOG,
        },
    )?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    lab.watch(addr.port())?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        thread::spawn(move || serve(listener, &stop))
    };

    lab.step(format!(
        "A server listens on {addr} with listen(backlog = {BACKLOG})"
    ));
    lab.show("before any client")?;
    if let Some((q, backlog)) = listen_queue(lab)? {
        lab.say(format!(
            "the LISTEN row: Recv-Q {q} (connections waiting for accept()), Send-Q {backlog} (the backlog)"
        ));
    }

    lab.step(format!(
        "{n} clients connect one after another, each connect() given {} ms",
        CONNECT_WAIT.as_millis()
    ));
    let mut clients = Vec::with_capacity(n);
    let mut connected = 0;
    let mut queue_max = 0;
    for i in 1..=n {
        // A full queue drops the SYN. Give an accepting server (a thread that a loaded machine
        // may not have run for a while) up to QUEUE_SETTLE to make room first, so that what
        // the next client sees is the program's doing, not the scheduler's. A server that
        // never accepts leaves the queue full, and the client goes ahead after the wait.
        let settle = Instant::now() + QUEUE_SETTLE;
        while listen_queue(lab)?.is_some_and(|(q, backlog)| q > backlog) && Instant::now() < settle
        {
            thread::sleep(Duration::from_millis(2));
        }
        let t0 = Instant::now();
        let (socket, done) = connect_client(addr)?;
        let took = t0.elapsed();
        let queue = listen_queue(lab)?.map(|(q, _)| q).unwrap_or(0);
        queue_max = queue_max.max(queue);
        if done {
            connected += 1;
            lab.say(format!(
                "client {i:>2}: connect() returned in {} us; accept queue now {queue}",
                took.as_micros()
            ));
        } else {
            lab.say(format!(
                "client {i:>2}: no answer within {} ms, still trying; accept queue now {queue}",
                CONNECT_WAIT.as_millis()
            ));
        }
        clients.push(socket);
    }

    lab.step("What the kernel shows once the clients have had time to retry");
    // One snapshot gives both the sides and the LISTEN row; stop early once every client is
    // in and the queue is empty.
    let deadline = Instant::now() + SETTLE;
    let (seen, queued, backlog) = loop {
        let rows = lab.rows()?;
        let seen = Sides::from_rows(&rows, addr.port());
        let (queued, backlog) = rows
            .iter()
            .find(|r| r.state == TcpState::Listen && r.local.port() == addr.port())
            .map(|r| (r.recv_q, r.send_q))
            .context("the listener's row is missing")?;
        let settled = seen.count(Side::Client, TcpState::Established) == n && queued == 0;
        if settled || Instant::now() >= deadline {
            break (seen, queued, backlog);
        }
        thread::sleep(Duration::from_millis(5));
    };
    lab.say(format!("kernel says: {}", seen.describe()));
    lab.say(format!(
        "the LISTEN row: Recv-Q {queued} waiting for accept(), Send-Q {backlog} (the backlog)"
    ));
    let client_established = seen.count(Side::Client, TcpState::Established);
    let client_syn_sent = seen.count(Side::Client, TcpState::SynSent);
    let server_established = seen.count(Side::Server, TcpState::Established);
    let server_syn_recv = seen.count(Side::Server, TcpState::SynRecv)
        + seen.count(Side::Server, TcpState::NewSynRecv);
    lab.fact(facts::CONNECTIONS, n);
    lab.fact(facts::BACKLOG, backlog);
    lab.fact(facts::ACCEPT_QUEUE, queued);
    lab.fact("accept_queue_max", queue_max);
    lab.fact("connect_returned", connected);
    lab.fact(facts::CLIENT_ESTABLISHED, client_established);
    lab.fact(facts::CLIENT_SYN_SENT, client_syn_sent);
    lab.fact(facts::SERVER_ESTABLISHED, server_established);
    lab.fact("server_syn_recv", server_syn_recv);
    let queue_full = queued > backlog;
    lab.fact(facts::QUEUE_FULL, queue_full);

    let (verdict, why) = if queue_full || client_syn_sent > 0 {
        lab.say(format!(
            "{server_established} connections sit ESTABLISHED on the server side although the \
             program never accepted them: the kernel did the handshake by itself and queued them \
             ({queued} = backlog {backlog} + 1, the most Linux queues)"
        ));
        lab.say(format!(
            "{client_established} clients see ESTABLISHED: for them connect() succeeded, and \
             whatever they send waits in a queue no one reads"
        ));
        lab.say(format!(
            "{client_syn_sent} clients are stuck in SYN_SENT: with the queue full the kernel drops \
             their SYNs ({server_syn_recv} SYN_RECV on the server), and their retransmissions \
             (1 s apart at first on this kernel, then further apart) are dropped too until \
             accept() makes room"
        ));
        (
            Verdict::Leak,
            format!(
                "accept queue full ({queued} queued, backlog {backlog}); {client_syn_sent} clients stuck in SYN_SENT"
            ),
        )
    } else if queued > 0 {
        (
            Verdict::Leak,
            format!(
                "{queued} connections still wait in the accept queue: the kernel set them up, and \
                 the program has not accepted them (a bigger backlog only makes room for more \
                 waiting)"
            ),
        )
    } else if client_established == n && server_established == n {
        lab.say(format!(
            "all {n} clients are ESTABLISHED, the server accepted all {n} (the queue peaked at \
             {queue_max} and is empty now)"
        ));
        (
            Verdict::Clean,
            format!("all {n} connections accepted and open; accept queue empty"),
        )
    } else {
        // The queue is empty, yet not every client has a live connection: the program
        // accepted and closed them, or closed the listener and reset those still queued.
        let closed = seen.count(Side::Client, TcpState::CloseWait);
        (
            Verdict::Leak,
            format!(
                "only {client_established} of {n} clients still have their connection ({}): \
                 {}",
                seen.describe(),
                if closed > 0 {
                    format!(
                        "the server closed {closed} of them right after accepting, so those \
                         clients were served nothing"
                    )
                } else {
                    "the server closed or reset connections instead of accepting and keeping \
                     them (closing the listener resets every connection still queued)"
                        .to_string()
                }
            ),
        )
    };
    lab.finish(verdict, seen, &why)?;
    stop.store(true, Ordering::Relaxed);
    // A server loop that blocks in accept() never sees the stop flag: wait a moment for it,
    // then leave it to end with the process.
    let deadline = Instant::now() + Duration::from_secs(1);
    while !server.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    if server.is_finished() {
        let _ = server.join();
    }
    drop(clients);
    Ok(())
}
