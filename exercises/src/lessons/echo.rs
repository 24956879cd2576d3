//! The echo-server lessons (03, threads): clients connect, send a line, read it back and close
//! first. The binary provides the handler; this module drives the clients and asks the kernel
//! what became of the sockets.
//!
//! Left out on purpose: the async variant (lesson 04) has its own driver; timings here are
//! short so the lesson finishes in about a second.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tcplab_core::timeline::Side;
use tcplab_core::{TcpState, sockets};

use crate::catalog::Verdict;
use crate::facts;
use crate::lab::{CLOSE_GRACE, Lab, Sides};

/// How long any single client call may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// Accept `n` connections (or stop when asked), handing each to `handle` on its own thread.
pub fn accept_n(
    listener: TcpListener,
    n: usize,
    stop: Arc<AtomicBool>,
    handle: fn(TcpStream, Arc<AtomicBool>),
) -> JoinHandle<()> {
    thread::spawn(move || {
        // Non-blocking accept with a stop flag: the lesson never hangs on a missing client.
        if listener.set_nonblocking(true).is_err() {
            return;
        }
        let mut accepted = 0;
        while accepted < n && !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    accepted += 1;
                    let stop = stop.clone();
                    thread::spawn(move || handle(stream, stop));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return,
            }
        }
    })
}

/// One client: connect, send a line, read the echo, close (by dropping the stream).
fn client(addr: std::net::SocketAddr) -> Result<usize> {
    let mut stream = sockets::connect(addr, IO_TIMEOUT).context("connect")?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let line = b"hello, server\n";
    stream.write_all(line).context("send")?;
    let mut echo = vec![0u8; line.len()];
    stream.read_exact(&mut echo).context("read the echo")?;
    Ok(echo.len())
}

/// Run the lesson: start the server with `start`, run the clients, grade what the kernel shows.
pub fn run(
    lab: &mut Lab,
    start: impl FnOnce(TcpListener, usize, Arc<AtomicBool>) -> JoinHandle<()>,
) -> Result<()> {
    let n = lab.connections(10, 3)?;
    let listener = sockets::loopback_listener(false)?;
    let addr = listener.local_addr()?;
    lab.watch(addr.port())?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = start(listener, n, stop.clone());

    lab.step(format!("A threaded echo server listens on {addr}"));
    lab.show("before any client")?;

    lab.step(format!(
        "{n} clients connect, send a line, read the echo, and close first"
    ));
    let t0 = Instant::now();
    let mut echoed = 0;
    for _ in 0..n {
        echoed += client(addr)?;
    }
    lab.say(format!(
        "all {n} clients closed their sockets after {echoed} bytes echoed ({} ms)",
        t0.elapsed().as_millis()
    ));

    let (verdict, why, seen) = grade(
        lab,
        n,
        echoed,
        "the kernel is waiting for this program to call close(). Each one holds a file descriptor.",
        "the server closed each socket when read() returned 0",
    )?;
    lab.finish(verdict, seen, &why)?;
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();
    Ok(())
}

/// Grade an echo lesson (03 and 04) once every client has closed: wait for a consistent view
/// (every connection in CLOSE_WAIT facing FIN_WAIT2, or gone facing TIME_WAIT), give the server
/// [`CLOSE_GRACE`] to close, then call it a leak if CLOSE_WAIT is left, clean if every
/// connection ended in TIME_WAIT on the clients, and an error if neither is in view.
pub fn grade(
    lab: &mut Lab,
    n: usize,
    echoed: usize,
    why_close_wait: &str,
    why_clean: &str,
) -> Result<(Verdict, String, Sides)> {
    lab.step("What the kernel shows once the FINs have been answered");
    lab.wait_until(Duration::from_secs(3), |s: &Sides| {
        s.count(Side::Server, TcpState::Established) == 0
            && s.count(Side::Server, TcpState::CloseWait)
                == s.count(Side::Client, TcpState::FinWait2)
            && s.count(Side::Client, TcpState::FinWait2) + s.count(Side::Client, TcpState::TimeWait)
                == n
    })?;
    // Every FIN has arrived; the server gets the grace period to close before grading.
    let seen = lab.wait_until(CLOSE_GRACE, |s: &Sides| {
        s.count(Side::Server, TcpState::CloseWait) == 0
            && s.count(Side::Client, TcpState::TimeWait) == n
    })?;
    lab.say(format!("kernel says: {}", seen.describe()));
    let close_wait = seen.count(Side::Server, TcpState::CloseWait);
    let fin_wait2 = seen.count(Side::Client, TcpState::FinWait2);
    let time_wait = seen.count(Side::Client, TcpState::TimeWait);
    lab.fact(facts::CONNECTIONS, n);
    lab.fact("bytes_echoed", echoed);
    lab.fact(facts::SERVER_CLOSE_WAIT, close_wait);
    lab.fact(facts::CLIENT_FIN_WAIT2, fin_wait2);
    lab.fact(facts::CLIENT_TIME_WAIT, time_wait);
    // The symptom gone is not enough: a handler that shuts the socket down on EOF but keeps
    // the stream leaves no CLOSE_WAIT, yet still holds every descriptor.
    if close_wait == 0 {
        lab.require_no_held_descriptors()?;
    }
    if close_wait > 0 {
        lab.say(format!(
            "{close_wait} server sockets are in CLOSE_WAIT: the clients' FINs arrived, and \
             {why_close_wait}"
        ));
        lab.say(format!(
            "{fin_wait2} client sockets wait in FIN_WAIT2 for the server's FIN that never comes."
        ));
        Ok((
            Verdict::Leak,
            format!(
                "the server still holds {close_wait} sockets in CLOSE_WAIT: the clients closed \
                 (their FIN arrived), and the program never closed its side"
            ),
            seen,
        ))
    } else if time_wait == n {
        lab.say(format!(
            "no CLOSE_WAIT: {why_clean}, so the clients (who closed first) hold the TIME_WAIT, \
             which ends by itself after 60 s."
        ));
        Ok((
            Verdict::Clean,
            format!("all {n} connections closed on both sides; TIME_WAIT is on the clients"),
            seen,
        ))
    } else {
        // Neither the leak nor a clean close is in view: grade nothing rather than guess.
        anyhow::bail!(
            "the kernel showed neither {n} CLOSE_WAIT nor {n} TIME_WAIT sockets ({}); \
             run `{} doctor` to check that sock_diag works here",
            seen.describe(),
            crate::cli::runner::command_name()
        );
    }
}
