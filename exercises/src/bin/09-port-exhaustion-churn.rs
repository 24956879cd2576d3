//! Lesson 09, the leak: a client that opens a new connection for every request and closes it
//! first.
//!
//! Each closed connection leaves a TIME_WAIT socket on the client, holding one local port for
//! 60 s. The lesson runs in a private network namespace with 100 ephemeral ports and
//! tcp_tw_reuse off, so connect() runs out of ports after about 100 requests and fails with
//! EADDRNOTAVAIL. Nothing on the host is touched.
//!
//! Left out on purpose: real clients talk to many servers (each server address and port has
//! its own set of local ports) and the host's range is ~28k ports; the arithmetic is the same:
//! requests per second x 60 s must stay below the range.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Result;
use tcplab_exercises::lab::{self, Lab};
use tcplab_exercises::lessons::ports::{self, Outcome};

fn main() -> ExitCode {
    lab::main(env!("CARGO_BIN_NAME"), run)
}

// ANCHOR: client
/// Send `n` requests to the server at `addr`.
fn send_requests(addr: SocketAddr, n: usize) -> Outcome {
    let mut out = Outcome::new();
    while out.requests < n && !out.out_of_time() {
        // LESSON: a new connection for every request, closed by us first when it goes out of
        // LESSON: scope: each one leaves TIME_WAIT holding a local port for 60 s.
        let mut conn = match ports::connect(addr, &mut out) {
            Ok(conn) => conn,
            Err(e) => {
                out.fail(e);
                break;
            }
        };
        if let Err(e) = ports::request(&mut conn) {
            out.fail(e);
            break;
        }
        out.requests += 1;
    }
    out
}
// ANCHOR_END: client

fn run(lab: &mut Lab) -> Result<()> {
    ports::run(lab, send_requests)
}
