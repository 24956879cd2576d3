//! Lesson 01, the fix: the same server calls accept() in its loop.
//!
//! The kernel still does each handshake by itself and queues the connection, but accept()
//! takes it off the queue at once: the listener's Recv-Q stays near zero and every client
//! connects on its first SYN.
//!
//! Left out on purpose: what a server does with the accepted connections (here it only keeps
//! them open); a bigger backlog is not the fix, it only delays the overflow.

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
    let mut accepted = Vec::new(); // LESSON: accept() fills it
    while !stop.load(Ordering::Relaxed) {
        // LESSON: accept() takes each connection off the queue (the listener is
        // LESSON: non-blocking, so an empty queue returns WouldBlock and we wait a little).
        match listener.accept() {
            Ok((stream, _)) => accepted.push(stream),
            Err(_) => thread::sleep(Duration::from_millis(1)),
        }
    }
    drop(listener);
    accepted
}
// ANCHOR_END: serve

fn run(lab: &mut Lab) -> Result<()> {
    accept_queue::run(lab, serve)
}
