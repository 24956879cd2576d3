//! Lesson 12, the leak: a server with nothing to notice that its client is gone.
//!
//! The client (a scripted peer) connects, exchanges a line and vanishes without FIN or RST.
//! The server's handler waits in read() for the next request. Without keepalive or
//! TCP_USER_TIMEOUT the kernel has no reason to send anything, so nothing fails: the socket
//! stays ESTABLISHED, and the descriptor and the thread with it, for as long as anyone watches.
//!
//! Left out on purpose: application-level heartbeats and idle timeouts (lesson 04 shows one);
//! they end the connection too, but this lesson is about what the kernel can do.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use tcplab_exercises::lab::{self, Lab};
use tcplab_exercises::lessons::half_open;

fn main() -> ExitCode {
    lab::main(env!("CARGO_BIN_NAME"), run)
}

/// The server's listening socket.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
}

// ANCHOR: handler
/// Serve one client: echo every chunk back until it is done, or the kernel says it is gone.
fn handle(mut stream: TcpStream, stop: &AtomicBool) -> io::Result<()> {
    // LESSON: nothing here asks the kernel to check on an idle peer: if the peer vanishes,
    // LESSON: no segment ever arrives and read() below waits forever.
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => stream.write_all(&buf[..n])?,
            // The lesson's read timeout, so that the handler sees `stop`.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
// ANCHOR_END: handler

fn run(lab: &mut Lab) -> Result<()> {
    half_open::run(lab, listen, handle)
}
