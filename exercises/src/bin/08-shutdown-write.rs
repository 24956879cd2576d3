//! Lesson 08, the fix: shutdown(Write) after the request, then read the reply to EOF.
//!
//! The server reads the request until EOF, so the client has to say "that is all I send".
//! shutdown(Write) sends FIN and nothing else: the server sees EOF, and the client can still
//! read. While the server prepares its reply the connection is half-closed (client FIN_WAIT2,
//! server CLOSE_WAIT); then the reply arrives, the server's FIN after it, and the client, which
//! sent the first FIN, keeps TIME_WAIT.
//!
//! Left out on purpose: protocols that mark the end of a request with a length (no half-close
//! needed), and a limit on the reply's size.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::process::ExitCode;

use anyhow::Result;
use tcplab_core::sockets;
use tcplab_exercises::lab::{self, Lab};
use tcplab_exercises::lessons::{half_close, net};

fn main() -> ExitCode {
    lab::main(env!("CARGO_BIN_NAME"), run)
}

// ANCHOR: client
/// Send the request, say we are done sending, read the reply.
fn client(lab: &Lab, addr: SocketAddr) -> Result<Vec<u8>> {
    let mut stream = net::connect(addr)?;
    stream.write_all(half_close::REQUEST)?;
    // LESSON: shutdown(Write): the FIN tells the server the request is complete, and this
    // LESSON: socket can still read.
    sockets::shutdown(&stream, Shutdown::Write)?;
    half_close::show_half_closed(lab)?;
    // LESSON: read the reply up to the server's FIN; the drop then closes the socket.
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    Ok(reply)
}
// ANCHOR_END: client

fn run(lab: &mut Lab) -> Result<()> {
    half_close::run(lab, client)
}
