//! Lesson 16, the fix: TCP_USER_TIMEOUT bounds how long the kernel keeps the orphan.
//!
//! The same server, with TCP_USER_TIMEOUT = 1 s on the socket before it closes. Linux
//! applies it to zero-window probing too (`tcp_probe_timer()` in net/ipv4/tcp_timer.c): once
//! a second has passed since the first probe, answered or not, the kernel drops the socket,
//! its unsent reply and its FIN, and counts TcpExt TCPAbortOnTimeout. It sends no RST: the
//! client learns of it only when it next sends something.
//!
//! Left out on purpose: production values. A real server picks a timeout longer than any
//! client that is merely slow to read would need, tens of seconds or minutes.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use socket2::SockRef;
use tcplab_exercises::lab::{self, Lab};
use tcplab_exercises::lessons::zero_window;

fn main() -> ExitCode {
    lab::main(env!("CARGO_BIN_NAME"), run)
}

/// The server's listening socket.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
}

// ANCHOR: server
/// Read the request, write a 10 000-byte reply, close: the kernel delivers the rest.
fn serve(mut stream: TcpStream) -> io::Result<()> {
    let mut request = [0u8; 64];
    if stream.read(&mut request)? == 0 {
        return Ok(());
    }
    stream.write_all(&[b'x'; 10_000])?;
    // LESSON: TCP_USER_TIMEOUT: 1 s after the first zero-window probe, answered or not, the
    // LESSON: kernel gives up on the unsent reply and drops the orphan.
    SockRef::from(&stream).set_tcp_user_timeout(Some(Duration::from_secs(1)))?;
    drop(stream);
    Ok(())
}
// ANCHOR_END: server

fn run(lab: &mut Lab) -> Result<()> {
    zero_window::run(lab, listen, serve)
}
