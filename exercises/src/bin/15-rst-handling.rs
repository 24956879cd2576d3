//! Lesson 15: which RSTs end a connection, and a RST that ends TIME_WAIT early.
//!
//! The client (a scripted peer) connects twice. On the first connection this server waits in
//! read(); the peer sends three kinds of RST. One far outside the server's receive window is
//! dropped without a word. Two inside the window, but not at the next sequence number the
//! server expects (`rcv_nxt`), end nothing: the kernel answers with a challenge ACK (RFC
//! 5961), at most one per half second per socket, and the socket stays ESTABLISHED. Only a
//! RST at exactly `rcv_nxt` ends the connection, and read() returns ECONNRESET.
//!
//! On the second connection the server answers and closes first, so its socket holds
//! TIME_WAIT. A RST at exactly `rcv_nxt` is ignored with net.ipv4.tcp_rfc1337 = 1 (set only
//! in the lesson's own network namespace) and frees the socket at once with the default 0:
//! "TIME-WAIT assassination" (RFC 1337).
//!
//! Left out on purpose: the same check for SYNs and ACKs (RFC 5961 sections 4 and 5; lesson
//! 10 shows a SYN's challenge ACK), and an old duplicate arriving on a new connection (the
//! hazard TIME_WAIT guards against). Nothing here is the program's to change: the kernel
//! checks a RST before the program hears of it.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;

use anyhow::Result;
use tcplab_exercises::lab::{self, Lab};
use tcplab_exercises::lessons::rst;

fn main() -> ExitCode {
    lab::main(env!("CARGO_BIN_NAME"), run)
}

// ANCHOR: serve
/// Wait for requests until the client closes, or the kernel says the connection is over.
fn serve(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 512];
    while stream.read(&mut buf)? != 0 {}
    Ok(())
}
// ANCHOR_END: serve

// ANCHOR: answer
/// Answer with one line, then close: this side closes first and keeps TIME_WAIT.
fn answer(mut stream: TcpStream) -> io::Result<()> {
    stream.write_all(b"goodbye\n")?;
    drop(stream);
    Ok(())
}
// ANCHOR_END: answer

fn run(lab: &mut Lab) -> Result<()> {
    rst::run(lab, serve, answer)
}
