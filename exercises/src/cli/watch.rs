//! `tcplab watch`: live socket counts per state, refreshed in place, until Ctrl-C or the
//! duration ends. Handy beside a running lesson (`--hold`) or a notebook.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use tcplab_core::observe::{self, Method, Query};

#[derive(Args, Debug, Clone)]
pub struct WatchArgs {
    /// Only sockets whose local or remote port is P (repeatable).
    #[arg(long = "port", short = 'p', value_name = "P")]
    pub ports: Vec<u16>,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Refresh interval in milliseconds.
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub interval_ms: u64,
}

pub fn run(args: &WatchArgs) -> Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let query = Query::ports(&args.ports);
    let tty = std::io::stdout().is_terminal();
    let start = Instant::now();
    let deadline = args.duration.map(Duration::from_secs_f64);
    let mut out = std::io::stdout();
    while !stop.load(Ordering::Relaxed) {
        let snap = observe::snapshot(&query, Method::Auto)?;
        let counts = snap.counts();
        let line: Vec<String> = counts.iter().map(|(s, n)| format!("{s} {n}")).collect();
        let text = format!(
            "{:>7.1}s  {} sockets  {}",
            start.elapsed().as_secs_f64(),
            snap.rows.len(),
            if line.is_empty() {
                "-".to_string()
            } else {
                line.join("  ")
            }
        );
        if tty {
            write!(out, "\r\x1b[2K{text}")?;
        } else {
            writeln!(out, "{text}")?;
        }
        out.flush()?;
        if deadline.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
        std::thread::sleep(Duration::from_millis(args.interval_ms));
    }
    if tty {
        writeln!(out)?;
    }
    Ok(ExitCode::SUCCESS)
}
