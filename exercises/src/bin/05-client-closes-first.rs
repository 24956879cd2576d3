//! Lesson 05, the other way round: the client closes first and keeps the TIME_WAIT.
//!
//! TIME_WAIT lands on the active closer, the side whose close() sends the first FIN. Here the
//! server sends its reply and waits for the client's FIN (read() == 0) before closing, so the
//! TIME_WAIT sockets sit on the clients' side, spread over their many ports, and none on the
//! server's. Run with `--churn-secs 5` to see it at full speed.
//!
//! Left out on purpose: a real server also needs an idle timeout for clients that never close
//! (lesson 04); a client that churns many connections still collects TIME_WAIT on its own
//! ports (lesson 09).

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
    // LESSON: the server waits for the client's FIN (read() == 0) and only then closes:
    // LESSON: the client is the active closer and keeps the TIME_WAIT.
    stream.read_to_end(&mut Vec::new())?;
    drop(stream);
    Ok(())
}
// ANCHOR_END: server

// ANCHOR: client
/// The client's side of one connection.
fn client(mut stream: TcpStream) -> io::Result<()> {
    // LESSON: the client reads the reply it expects and closes first.
    let mut reply = vec![0u8; REPLY.len()];
    stream.read_exact(&mut reply)?;
    drop(stream);
    Ok(())
}
// ANCHOR_END: client

fn run(lab: &mut Lab) -> Result<()> {
    time_wait::run(lab, serve, client)
}
