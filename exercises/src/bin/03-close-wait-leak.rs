//! Lesson 03, the leak: a threaded echo server that mistakes end-of-stream for "no data yet".
//!
//! Each client connects, sends one line, reads the echo and closes. The server's handler gets
//! `Ok(0)` from read() when the client's FIN arrives, but it waits for more instead of
//! returning, so the socket is never closed: the kernel keeps it in CLOSE_WAIT, and the
//! client's side sits in FIN_WAIT2, until this process exits.
//!
//! Left out on purpose: a real server would have a thread pool and timeouts on idle clients;
//! lesson 04 shows the idle-timeout fix in async code.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

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
                // LESSON: read() == 0 means the peer closed (its FIN arrived). This handler
                // LESSON: treats it as "nothing yet" and waits, so the socket is never closed.
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
    echo::run(lab, |listener: TcpListener, n, stop| {
        echo::accept_n(listener, n, stop, handle)
    })
}
