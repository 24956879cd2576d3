//! Lesson 10, the fix: the same server, closing its socket when read() returns 0.
//!
//! The client connects from a port it chose, closes with TCP_LINGER2 = 1 s; the server sees
//! EOF and closes too, so the client ends in TIME_WAIT and the server keeps nothing. When the
//! client connects again from the same port its SYN finds only the listener, and the
//! handshake completes at once.
//!
//! Left out on purpose: real clients rarely pin their port; with thousands of connections
//! and a small port range the kernel picks a port still held by a CLOSE_WAIT peer by itself.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
                // LESSON: the client closed (read() == 0): return, the stream is dropped and
                // LESSON: the socket closed, so no stale CLOSE_WAIT is left for the next SYN.
                return;
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
