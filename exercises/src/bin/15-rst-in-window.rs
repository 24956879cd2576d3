//! Lesson 15: which RSTs end a connection. A RST must carry the right sequence number.
//!
//! The client (a scripted peer) connects; this server waits in read() for a request. The
//! peer then sends three kinds of RST. One far outside the server's receive window is dropped
//! without a word. Two inside the window, but not at the next sequence number the server
//! expects (`rcv_nxt`), do not end anything: the kernel answers with a challenge ACK (RFC
//! 5961), once per half second per socket, and the socket stays ESTABLISHED. Only a RST at
//! exactly `rcv_nxt` ends the connection, and read() returns ECONNRESET.
//!
//! Left out on purpose: the same check for SYNs and ACKs (RFC 5961 sections 4 and 5; lesson
//! 10 shows a SYN's challenge ACK). Nothing here is the program's to change: the kernel
//! checks the RST before the program hears of it.

use std::io::{self, Read};
use std::net::TcpStream;
use std::process::ExitCode;

use anyhow::Result;
use tcplab_exercises::lab::{self, Lab};
use tcplab_exercises::lessons::rst;

fn main() -> ExitCode {
    lab::main(env!("CARGO_BIN_NAME"), run)
}

// ANCHOR: server
/// Wait for requests until the client closes, or the kernel says the connection is over.
fn serve(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 512];
    while stream.read(&mut buf)? != 0 {}
    Ok(())
}
// ANCHOR_END: server

fn run(lab: &mut Lab) -> Result<()> {
    rst::in_window(lab, serve)
}
