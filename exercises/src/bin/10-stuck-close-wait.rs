//! Lesson 10, the leak: a server that never closes meets a client that reuses its port.
//!
//! The client connects from a port it chose, closes with TCP_LINGER2 = 1 s, so its orphaned
//! FIN_WAIT2 is gone after a second; the server ignores read() == 0 and keeps its side in
//! CLOSE_WAIT. Then the client connects again from the same port: its SYN lands on the stale
//! CLOSE_WAIT socket. The kernel shows what happens next (on Linux 6.x: a challenge ACK, a
//! RST from the client that kills the stale socket, and a retransmitted SYN).
//!
//! Left out on purpose: real clients rarely pin their port; with thousands of connections
//! and a small port range the kernel picks a port still held by a CLOSE_WAIT peer by itself.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::Result;
use tcplab_exercises::lab::{self, Lab};
use tcplab_exercises::lessons::{echo, stuck};

fn main() -> ExitCode {
    lab::main(env!("CARGO_BIN_NAME"), run)
}

// ANCHOR: handler
/// Serve one client: echo every chunk back until the client is done.
fn handle(mut stream: TcpStream, stop: Arc<AtomicBool>) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) => {
                // LESSON: the client closed (read() == 0), but this handler waits for more, so
                // LESSON: the socket stays in CLOSE_WAIT long after the client forgot it.
                thread::sleep(Duration::from_millis(20));
                continue;
            }
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}
// ANCHOR_END: handler

fn run(lab: &mut Lab) -> Result<()> {
    stuck::run(lab, |listener: TcpListener, n, stop| {
        echo::accept_n(listener, n, stop, handle)
    })
}
