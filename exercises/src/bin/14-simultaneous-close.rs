//! Lesson 14: a simultaneous close. Both ends call close() before either has received the
//! other's FIN, so the FINs cross on the wire.
//!
//! Each socket goes FIN_WAIT1 when its FIN leaves; the other side's FIN arrives while its
//! own is unacknowledged, so it goes CLOSING instead of FIN_WAIT2; the ACK of its FIN takes
//! it to TIME_WAIT. Both sides closed first, so both keep TIME_WAIT.
//!
//! Left out on purpose: how the FINs are made to cross. Between two programs on loopback one
//! close() almost always wins; the lesson passes the segments through a relay that holds the first
//! FIN until the second has left (see the driver, `lessons/crossed.rs`).

use std::net::TcpStream;
use std::process::ExitCode;

use anyhow::Result;
use tcplab_exercises::lab::{self, Lab};
use tcplab_exercises::lessons::crossed;

fn main() -> ExitCode {
    lab::main(env!("CARGO_BIN_NAME"), run)
}

// ANCHOR: close
/// How each side ends the connection: a plain close().
fn close(stream: TcpStream) -> std::io::Result<()> {
    drop(stream);
    Ok(())
}
// ANCHOR_END: close

fn run(lab: &mut Lab) -> Result<()> {
    crossed::run(lab, close)
}
