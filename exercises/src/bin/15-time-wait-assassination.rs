//! Lesson 15: a RST that ends TIME_WAIT early ("TIME-WAIT assassination", RFC 1337).
//!
//! This server answers with one line and closes first, so its socket holds TIME_WAIT for 60
//! s after the client's FIN. The client (a scripted peer) then sends a RST with the exact
//! sequence number the TIME_WAIT socket expects. With net.ipv4.tcp_rfc1337 = 1 (set only in
//! the lesson's own network namespace) the kernel ignores it; with the default 0 the same
//! RST frees the socket at once, and with it the protection TIME_WAIT gives a new connection
//! on the same four addresses and ports against the old one's delayed segments.
//!
//! Left out on purpose: an old duplicate arriving on a new connection (the hazard itself);
//! the lesson shows the kernel's side only, the socket gone or kept.

use std::io::{self, Write};
use std::net::TcpStream;
use std::process::ExitCode;

use anyhow::Result;
use tcplab_exercises::lab::{self, Lab};
use tcplab_exercises::lessons::rst;

fn main() -> ExitCode {
    lab::main(env!("CARGO_BIN_NAME"), run)
}

// ANCHOR: server
/// Answer with one line, then close: this side closes first and keeps TIME_WAIT.
fn serve(mut stream: TcpStream) -> io::Result<()> {
    stream.write_all(b"goodbye\n")?;
    drop(stream);
    Ok(())
}
// ANCHOR_END: server

fn run(lab: &mut Lab) -> Result<()> {
    rst::time_wait(lab, serve)
}
