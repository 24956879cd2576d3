//! `tcplab`: the runner students and instructors type. Each subcommand lives in its own file
//! under `src/cli/`; this file only parses arguments and dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tcplab_exercises::cli;

/// See how TCP connections end, graded by what the Linux kernel reports.
#[derive(Parser)]
#[command(name = "tcplab", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show TCP sockets as the kernel reports them (like `ss -tan`).
    Snapshot(cli::snapshot::SnapshotArgs),
    /// Print every TCP state change on some ports as it happens (tracepoint as root, else
    /// sock_diag polling).
    Trace(cli::trace::TraceArgs),
    /// Print every TCP segment on some ports of lo as it crosses the wire, with the state
    /// changes beside it; save it as pcapng (root, or a namespace of your own).
    Capture(cli::capture::CaptureArgs),
    /// Check what this machine and user can do, and what the sysctls mean for the lessons.
    Doctor(cli::doctor::DoctorArgs),
    /// Live counts per state, refreshed until Ctrl-C.
    Watch(cli::watch::WatchArgs),
    /// The lessons, with your progress.
    List(cli::lessons::ListArgs),
    /// Run a lesson's binaries and show what the kernel reported, side by side.
    Run(cli::lessons::RunArgs),
    /// Make your own copy of a lesson's leaking program to edit (in exercises/desk/).
    Start(cli::lessons::StartArgs),
    /// Grade your copy: passes when the kernel shows the problem gone and nothing hidden.
    Check(cli::lessons::CheckArgs),
    /// The next hint for a lesson (`--all` for every hint).
    Hint(cli::lessons::HintArgs),
    /// A fresh copy of a lesson to edit; yours is kept as a backup.
    Reset(cli::lessons::ResetArgs),
    /// The guided tour: every lesson, leaking and fixed, graded by the kernel.
    Tour(cli::lessons::TourArgs),
    /// Play a scenario on the RFC 9293 model: a ladder diagram of how the connection ends.
    Model(cli::model::ModelArgs),
    /// Draw the ladder of a saved run (a lesson's --json report): segments and states.
    Ladder(cli::ladder::LadderArgs),
    /// Play the other side of a connection from a packetdrill script, against this kernel,
    /// in a namespace of its own (no root needed); exit 0 when every line holds.
    Peer(cli::peer::PeerArgs),
    /// The TCP state diagram (RFC 9293 Figure 5), generated from the model's transition table.
    Diagram(cli::diagram::DiagramArgs),
}

fn main() -> ExitCode {
    // Like every Unix filter: a closed pipe (`tcplab snapshot | head`) ends the program
    // quietly instead of a panic on the next print. The tracer in `tcplab trace` handles
    // SIGINT and SIGTERM itself and is not affected.
    // SAFETY: setting a signal's disposition to the default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Snapshot(args) => cli::snapshot::run(&args),
        Command::Doctor(args) => cli::doctor::run(&args),
        Command::Watch(args) => cli::watch::run(&args),
        Command::List(args) => cli::lessons::list(&args),
        Command::Run(args) => cli::lessons::run(&args),
        Command::Start(args) => cli::lessons::start(&args),
        Command::Check(args) => cli::lessons::check(&args),
        Command::Hint(args) => cli::lessons::hint(&args),
        Command::Reset(args) => cli::lessons::reset(&args),
        Command::Tour(args) => cli::lessons::tour(&args),
        Command::Model(args) => cli::model::run(&args),
        Command::Diagram(args) => cli::diagram::run(&args),
        Command::Ladder(args) => cli::ladder::run(&args),
        Command::Trace(args) => cli::trace::run(&args),
        Command::Capture(args) => cli::capture::run(&args),
        Command::Peer(args) => cli::peer::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tcplab: {}", cli::describe_error(&e));
            ExitCode::FAILURE
        }
    }
}
