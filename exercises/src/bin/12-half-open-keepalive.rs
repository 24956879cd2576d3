//! Lesson 12, the fix: keepalive with short timers, so the kernel finds out that the peer is
//! gone and ends the connection.
//!
//! SO_KEEPALIVE with TCP_KEEPIDLE = 1 s, TCP_KEEPINTVL = 1 s, TCP_KEEPCNT = 2: after a second
//! of silence the kernel sends a probe, a second later another; when neither is answered it
//! sends a RST, drops the socket, and the handler's read() returns ETIMEDOUT. The defaults
//! (net.ipv4.tcp_keepalive_time = 7200 s, 9 probes 75 s apart) would take over two hours.
//!
//! Left out on purpose: production values. Seconds suit a lesson; a real server picks a
//! minute or so, below the idle timeout of the NAT boxes and load balancers on the path.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use socket2::{SockRef, TcpKeepalive};
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
    // LESSON: keepalive: after 1 s of silence, a probe every 1 s; 2 unanswered probes and the
    // LESSON: kernel ends the connection (read() returns ETIMEDOUT).
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(1))
        .with_interval(Duration::from_secs(1))
        .with_retries(2);
    SockRef::from(&stream).set_tcp_keepalive(&keepalive)?;
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
