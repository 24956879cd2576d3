//! Lesson 08, the leak: a client that close()s right after sending its request loses the reply.
//!
//! The server reads the request until EOF, so the client has to say "that is all I send":
//! this client does it with close(). The FIN goes out and the server sees EOF, but close()
//! ends both directions for this program. When the reply arrives, the client's kernel has no
//! one to hand it to: it discards the data and answers with RST. The server's next write fails
//! (EPIPE: the RST found it in CLOSE_WAIT), the reply is lost, and the connection vanishes
//! without TIME_WAIT.
//!
//! Left out on purpose: protocols that mark the end of a request with a length (no half-close
//! needed), and the timing games (SO_LINGER, sleeps) people use to paper over this.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Result;
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
    // LESSON: close() right after the request: the FIN tells the server the request is
    // LESSON: complete, but this program can no longer read, so the reply has nowhere to go.
    drop(stream);
    half_close::show_half_closed(lab)?;
    // LESSON: no socket left to read the reply with.
    let reply = Vec::new();
    Ok(reply)
}
// ANCHOR_END: client

fn run(lab: &mut Lab) -> Result<()> {
    half_close::run(lab, client)
}
