//! Lesson 06, the fix: the same server sets SO_REUSEADDR on its listener, so the restart binds
//! its port at once while the TIME_WAIT socket from its last connection is still there.
//!
//! The server closes its connections first, so the kernel keeps a TIME_WAIT socket on the
//! server's port for 60 s. SO_REUSEADDR tells bind() to ignore sockets on the port that are
//! not listening (TIME_WAIT ones included). It has to be set on the old socket as well as the
//! new one, which a server that always sets it does. It never lets two live servers listen on
//! one port on Linux.
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
        // LESSON: SO_REUSEADDR: bind() ignores the TIME_WAIT sockets on the port.
        reuseaddr: true,
        backlog: 16,
    };
    sockets::listen_on(addr, options)
}
// ANCHOR_END: listen

fn run(lab: &mut Lab) -> Result<()> {
    restart::run(lab, listen)
}
