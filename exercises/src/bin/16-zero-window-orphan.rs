//! Lesson 16, the leak: a server closes a socket whose reply the client cannot take.
//!
//! The client (a scripted peer) sends a request and advertises a zero window: its receive
//! buffer is full. The server writes its reply and closes, as servers do. close() returns at
//! once; the reply and the FIN stay in the kernel, behind the closed window, in a socket that
//! no descriptor refers to: an orphan in FIN_WAIT1. The kernel probes the window, the client
//! answers "still 0", and nothing this program set bounds how long that goes on
//! (tcp_fin_timeout and TCP_LINGER2 are for FIN_WAIT2, which this socket never reaches).
//!
//! Left out on purpose: the default end. The orphan gives up only once its probe interval
//! has doubled up to two minutes, minutes after the close; the lesson watches 2.5 s.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;

use anyhow::Result;
use tcplab_exercises::lab::{self, Lab};
use tcplab_exercises::lessons::zero_window;

fn main() -> ExitCode {
    lab::main(env!("CARGO_BIN_NAME"), run)
}

/// The server's listening socket.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
}

// ANCHOR: server
/// Read the request, write a 10 000-byte reply, close: the kernel delivers the rest.
fn serve(mut stream: TcpStream) -> io::Result<()> {
    let mut request = [0u8; 64];
    if stream.read(&mut request)? == 0 {
        return Ok(());
    }
    stream.write_all(&[b'x'; 10_000])?;
    // LESSON: after close() the kernel keeps the unsent reply and the FIN behind it, and
    // LESSON: probes a zero window for as long as the client answers: nothing bounds it.
    drop(stream);
    Ok(())
}
// ANCHOR_END: server

fn run(lab: &mut Lab) -> Result<()> {
    zero_window::run(lab, listen, serve)
}
