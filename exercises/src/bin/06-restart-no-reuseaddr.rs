//! Lesson 06, the leak: a server restarted right after it closed connections cannot bind its
//! own port.
//!
//! The server closes its connections first, so the kernel keeps a TIME_WAIT socket on the
//! server's port for 60 s. When the server stops and starts again on the same port, bind()
//! fails with EADDRINUSE: without SO_REUSEADDR, a TIME_WAIT socket counts as a user of the port.
//!
//! Left out on purpose: SO_REUSEPORT (load balancing between live listeners, another feature)
//! and retry loops; the driver in `lessons/restart.rs` does the connection and the grading.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;

use anyhow::Result;
use tcplab_core::sockets::{self, ListenOptions};
use tcplab_exercises::lab::{self, Lab};
use tcplab_exercises::lessons::restart;

fn main() -> ExitCode {
    lab::main(env!("CARGO_BIN_NAME"), run)
}

// ANCHOR: listen
/// Open the server's listener on `addr`: at the first start and again at the restart.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let options = ListenOptions {
        // LESSON: no SO_REUSEADDR: bind() refuses a port a TIME_WAIT socket still holds.
        reuseaddr: false,
        backlog: 16,
    };
    sockets::listen_on(addr, options)
}
// ANCHOR_END: listen

fn run(lab: &mut Lab) -> Result<()> {
    restart::run(lab, listen)
}
