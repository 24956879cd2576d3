//! Lesson 09, the fix: a client that keeps a small pool of connections open and sends every
//! request over them (keep-alive).
//!
//! The same requests, in the same private network namespace with 100 ephemeral ports, take
//! four local ports in all: no TIME_WAIT piles up, connect() never runs out. Nothing on the
//! host is touched.
//!
//! Left out on purpose: a real pool checks connections for health, reconnects the ones the
//! server closed, and bounds idle time; HTTP clients (reqwest, hyper) do this for you.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Result;
use tcplab_exercises::lab::{self, Lab};
use tcplab_exercises::lessons::ports::{self, Outcome};

/// Connections in the pool.
const POOL: usize = 4;

fn main() -> ExitCode {
    lab::main(env!("CARGO_BIN_NAME"), run)
}

// ANCHOR: client
/// Send `n` requests to the server at `addr`.
fn send_requests(addr: SocketAddr, n: usize) -> Outcome {
    let mut out = Outcome::new();
    while out.requests < n && !out.out_of_time() {
        // LESSON: a few connections, opened once and reused for every request: no new local
        // LESSON: port per request, so nothing piles up in TIME_WAIT.
        if out.pool.len() < POOL {
            match ports::connect(addr, &mut out) {
                Ok(conn) => out.pool.push(conn),
                Err(e) => {
                    out.fail(e);
                    break;
                }
            }
        }
        let i = out.requests % out.pool.len();
        if let Err(e) = ports::request(&mut out.pool[i]) {
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
