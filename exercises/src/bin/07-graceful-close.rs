//! Lesson 07, the fix: a graceful close delivers every byte.
//!
//! Part 1: the server sends 8 MiB, more than the socket buffers hold, then closes gracefully:
//! shutdown(Write) queues FIN after the last byte, and the server reads until the client's EOF
//! before it drops the socket. The client reads all 8 MiB, then EOF; the server, which closed
//! first, keeps TIME_WAIT for 60 s.
//! Part 2: the server reads only the request line of a request that has a body; the same
//! graceful close reads (and discards) the body before closing, so close() sends FIN, not RST.
//!
//! Left out on purpose: a limit on how long to wait for the client's EOF beyond the read
//! timeout, and SO_LINGER with a timeout above zero (close() then blocks; it does not make
//! delivery any more certain than this).

use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::process::ExitCode;

use anyhow::Result;
use tcplab_core::sockets;
use tcplab_exercises::lab::{self, Lab};
use tcplab_exercises::lessons::abortive;

fn main() -> ExitCode {
    lab::main(env!("CARGO_BIN_NAME"), run)
}

// ANCHOR: send
/// Part 1: send the whole payload, then close.
fn send_and_close(mut stream: TcpStream, payload: &[u8]) -> io::Result<()> {
    stream.write_all(payload)?;
    // LESSON: close gracefully: FIN after the last byte, then wait for the client's EOF.
    close_gracefully(stream)
}
// ANCHOR_END: send

// ANCHOR: answer
/// Part 2: read the request line, answer it, close.
fn answer_and_close(mut stream: TcpStream) -> io::Result<()> {
    let _request = abortive::read_line(&mut stream)?;
    stream.write_all(abortive::REPLY)?;
    // LESSON: the graceful close also reads (and drops) the unread body before closing.
    close_gracefully(stream)
}
// ANCHOR_END: answer

// ANCHOR: graceful
/// shutdown(Write), read to EOF, then close.
fn close_gracefully(mut stream: TcpStream) -> io::Result<()> {
    // LESSON: shutdown(Write) sends FIN after the last byte; reading to EOF drains what the
    // LESSON: client sent and waits for its close; only then does the drop close the socket.
    sockets::shutdown(&stream, Shutdown::Write)?;
    io::copy(&mut stream, &mut io::sink())?;
    Ok(())
}
// ANCHOR_END: graceful

fn run(lab: &mut Lab) -> Result<()> {
    abortive::run(lab, send_and_close, answer_and_close)
}
