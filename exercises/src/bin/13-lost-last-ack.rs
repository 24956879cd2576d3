//! Lesson 13: the last ACK of a close is lost, and the side in LAST_ACK sends its FIN again.
//!
//! The client (a scripted peer) closes first. This server reads end-of-stream and closes, as
//! a correct server does: its kernel sends FIN and the socket waits in LAST_ACK for the
//! client's ACK. The peer withholds that ACK for a second. The kernel does not wait quietly:
//! the FIN is resent on each retransmission timeout, each timeout twice as long as the one
//! before, and `ss -o` shows the timer. When the ACK arrives the socket is gone at once;
//! LAST_ACK has no TIME_WAIT after it.
//!
//! Left out on purpose: the give-up. An orphaned socket stops after tcp_orphan_retries
//! resends (8 when the sysctl is 0), over a minute and a half from a 200 ms start.

use std::io::{self, Read};
use std::net::TcpStream;
use std::process::ExitCode;

use anyhow::Result;
use tcplab_exercises::lab::{self, Lab};
use tcplab_exercises::lessons::last_ack;

fn main() -> ExitCode {
    lab::main(env!("CARGO_BIN_NAME"), run)
}

// ANCHOR: server
/// Read until the client's FIN (read() returns 0), then close: our FIN, LAST_ACK.
fn serve(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 64];
    while stream.read(&mut buf)? != 0 {}
    drop(stream);
    Ok(())
}
// ANCHOR_END: server

fn run(lab: &mut Lab) -> Result<()> {
    last_ack::run(lab, serve)
}
