//! Lesson 05, the leak: a server that closes each connection first collects the TIME_WAIT.
//!
//! TIME_WAIT lands on the active closer, the side whose close() sends the first FIN. Here the
//! server closes right after its reply, so every connection leaves a TIME_WAIT socket on the
//! server's port for 60 s: a server doing 1,000 connections per second carries 60,000 of
//! them. Run with `--churn-secs 5` to see it at full speed.
//!
//! Left out on purpose: TIME_WAIT is not a bug and needs no "fix" by SO_LINGER 0 (lesson 07
//! shows what that costs); a protocol can keep it off the server by letting the client close
//! first, which is the other binary. HTTP servers do not always manage that: they close idle
//! and used-up keep-alive connections themselves, and keep the TIME_WAIT then.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;

use anyhow::Result;
use tcplab_exercises::lab::{self, Lab};
use tcplab_exercises::lessons::time_wait::{self, REPLY};

fn main() -> ExitCode {
    lab::main(env!("CARGO_BIN_NAME"), run)
}

// ANCHOR: server
/// The server's side of one connection.
fn serve(mut stream: TcpStream) -> io::Result<()> {
    stream.write_all(REPLY)?;
    // LESSON: the server closes right after its reply, before the client: it is the
    // LESSON: active closer, so its side goes to TIME_WAIT.
    drop(stream);
    Ok(())
}
// ANCHOR_END: server

// ANCHOR: client
/// The client's side of one connection.
fn client(mut stream: TcpStream) -> io::Result<()> {
    // LESSON: the client reads until the server's FIN (read() == 0), then closes.
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    drop(stream);
    Ok(())
}
// ANCHOR_END: client

fn run(lab: &mut Lab) -> Result<()> {
    time_wait::run(lab, serve, client)
}
