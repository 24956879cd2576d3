//! Lesson 11, the leak: a mystery process leaks CLOSE_WAIT sockets, and the operator finds
//! who holds them but does nothing about it.
//!
//! The lesson starts a server it treats as a black box (this binary, started again with a
//! hidden flag), lets a few clients connect and leave, then asks the kernel like an operator
//! would: the CLOSE_WAIT sockets on the port (sock_diag), their inodes matched to a process
//! through /proc/*/fd (like `ss -p`), its name from /proc/PID/comm. Found, and left alone:
//! the sockets stay in CLOSE_WAIT as long as the process runs.
//!
//! Left out on purpose: fixing the server's code (lesson 03); here the operator cannot.

use std::process::ExitCode;

use anyhow::Result;
use tcplab_core::observe::SocketRow;
use tcplab_exercises::lab::{self, Lab};
use tcplab_exercises::lessons::mystery::{self, Owner};

fn main() -> ExitCode {
    if let Some(code) = mystery::child_main() {
        return code;
    }
    lab::main(env!("CARGO_BIN_NAME"), run)
}

// ANCHOR: respond
/// What the operator does once the leaked sockets and their owner are known.
fn respond(lab: &mut Lab, leaked: &[SocketRow], owner: &mut Owner) -> Result<()> {
    // LESSON: report and walk away: the kernel keeps the sockets in CLOSE_WAIT for as long as
    // LESSON: their owner keeps the file descriptors open, which is forever for this one.
    lab.say(format!(
        "reported: {} sockets leaked by pid {}; nothing else done",
        leaked.len(),
        owner.pid
    ));
    Ok(())
}
// ANCHOR_END: respond

fn run(lab: &mut Lab) -> Result<()> {
    mystery::run(lab, respond)
}
