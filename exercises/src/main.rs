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
    /// Check what this machine and user can do, and what the sysctls mean for the lessons.
    Doctor(cli::doctor::DoctorArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Snapshot(args) => cli::snapshot::run(&args),
        Command::Doctor(args) => cli::doctor::run(&args),
        Command::Trace(args) => cli::trace::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tcplab: {e:#}");
            ExitCode::FAILURE
        }
    }
}
