//! Lesson 03, the fix: the same threaded echo server, returning from the handler when read()
//! returns 0, which drops the stream and so closes the socket.
//!
//! Each client connects, sends one line, reads the echo and closes first. The handler sees
//! `Ok(0)` when the client's FIN arrives and returns; the drop calls close(), the kernel sends
//! our FIN, and no socket is left in CLOSE_WAIT. The clients keep TIME_WAIT (they closed
//! first), which ends by itself after 60 s.
//!
//! Left out on purpose: a real server would have a thread pool and timeouts on idle clients;
//! lesson 04 shows the idle-timeout fix in async code.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use tcplab_exercises::lab::{self, Lab};
use tcplab_exercises::lessons::echo;

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
                // LESSON: read() == 0 means the peer closed (its FIN arrived). Return: the
                // LESSON: stream is dropped here, which closes the socket.
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
    echo::run(lab, |listener: TcpListener, n, stop| {
        echo::accept_n(listener, n, stop, handle)
    })
}
