//! Lesson 11, the fix: the operator finds the process that holds the CLOSE_WAIT sockets and
//! ends them without touching its code.
//!
//! First SOCK_DESTROY, as `ss -K` does: the kernel aborts each socket (it needs root and a
//! kernel with CONFIG_INET_DIAG_DESTROY; the lesson says so when it is refused). The owner
//! still holds the dead sockets' descriptors and its code still leaks, so then it is
//! restarted: a process's exit closes every descriptor it had. The kernel then shows no
//! CLOSE_WAIT on the port.
//!
//! Left out on purpose: fixing the server's code (lesson 03), which is the real fix; the
//! restart only buys time until the next pile.

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
    // LESSON: end the sockets now with SOCK_DESTROY (like `ss -K`, root only), then restart
    // LESSON: the owner: its exit closes every descriptor it held, dead sockets included.
    mystery::destroy_all(lab, leaked);
    lab.say(format!(
        "pid {} still holds {} socket descriptors; restarting it",
        owner.pid,
        mystery::socket_fds(owner.pid)
    ));
    owner.restart()?;
    lab.say(format!("the server runs again as pid {}", owner.pid));
    Ok(())
}
// ANCHOR_END: respond

fn run(lab: &mut Lab) -> Result<()> {
    mystery::run(lab, respond)
}
