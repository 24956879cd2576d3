//! Lesson 01, the leak: a server that never calls accept().
//!
//! The kernel does the three-way handshake without the program: each client's connect()
//! succeeds and the new connection waits, ESTABLISHED, in the listener's accept queue. Linux
//! queues backlog + 1 connections; after that it drops the SYNs of new clients, which stay in
//! SYN_SENT and retry, until the program accepts or they give up.
//!
//! Left out on purpose: a real server does not forget accept() altogether; it falls behind
//! (blocked on a database, a lock, a full thread pool) and the effect is the same. SYN
//! cookies and tcp_abort_on_overflow are not covered.

use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::Result;
use tcplab_exercises::lab::{self, Lab};
use tcplab_exercises::lessons::accept_queue;

fn main() -> ExitCode {
    lab::main(env!("CARGO_BIN_NAME"), run)
}

// ANCHOR: serve
/// The server thread: runs until `stop`, returns the connections it took.
fn serve(listener: TcpListener, stop: &AtomicBool) -> Vec<TcpStream> {
    let accepted = Vec::new(); // LESSON: stays empty
    while !stop.load(Ordering::Relaxed) {
        // LESSON: this loop never calls listener.accept(): the connections the kernel
        // LESSON: set up stay in the accept queue.
        thread::sleep(Duration::from_millis(1));
    }
    drop(listener);
    accepted
}
// ANCHOR_END: serve

fn run(lab: &mut Lab) -> Result<()> {
    accept_queue::run(lab, serve)
}
