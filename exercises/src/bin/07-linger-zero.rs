//! Lesson 07, the leak: two abortive closes, each of which sends RST instead of FIN.
//!
//! Part 1: the server sends 8 MiB, more than the socket buffers hold, sets SO_LINGER {on, 0}
//! and closes. write_all() has returned Ok, yet close() throws away what is still in the send
//! buffer and sends RST: the client reads fewer bytes than were sent, then ECONNRESET, and the
//! kernel keeps no TIME_WAIT for the connection.
//! Part 2: the server reads only the request line of a request that has a body and closes
//! with the body unread in its receive buffer: that also sends RST (RFC 2525 section 2.17).
//!
//! Left out on purpose: SO_LINGER with a timeout above zero (close() then blocks until
//! everything, FIN included, is acknowledged or the time is up, and returns 0 either way), and
//! why people reach for linger 0 (to skip TIME_WAIT; lesson 05 shows better ways).

use std::io::{self, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

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
    // LESSON: SO_LINGER {on, 0}: close() sends RST instead of FIN and throws away every byte
    // LESSON: still in the send buffer, although write_all() returned Ok.
    sockets::set_linger(&stream, Some(Duration::ZERO))?;
    drop(stream);
    Ok(())
}
// ANCHOR_END: send

// ANCHOR: answer
/// Part 2: read the request line, answer it, close.
fn answer_and_close(mut stream: TcpStream) -> io::Result<()> {
    let _request = abortive::read_line(&mut stream)?;
    stream.write_all(abortive::REPLY)?;
    // LESSON: the client's body is still unread in our receive buffer, so close() sends RST
    // LESSON: (RFC 2525 section 2.17), without any SO_LINGER.
    drop(stream);
    Ok(())
}
// ANCHOR_END: answer

fn run(lab: &mut Lab) -> Result<()> {
    abortive::run(lab, send_and_close, answer_and_close)
}
