//! `tcplab snapshot`: the kernel's view of TCP sockets right now, like `ss -tan`, with a count
//! per state at the end, or as JSON for scripts.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, ValueEnum};
use tcplab_core::TcpState;
use tcplab_core::observe::{self, Family, Method, Query, SocketRow};

#[derive(Args, Debug, Clone)]
pub struct SnapshotArgs {
    /// Only sockets whose local or remote port is P (repeatable).
    #[arg(long = "port", short = 'p', value_name = "P")]
    pub ports: Vec<u16>,
    /// Only sockets in state S, in any spelling: TIME_WAIT, time-wait, TIME-WAIT (repeatable).
    #[arg(long = "state", short = 's', value_name = "S", value_parser = parse_state)]
    pub states: Vec<TcpState>,
    /// Also show which processes own each socket (like `ss -p`; other users' need root).
    #[arg(long)]
    pub pids: bool,
    /// Print one JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only IPv4 or only IPv6 sockets.
    #[arg(long, value_enum, default_value_t = FamilyArg::All)]
    pub family: FamilyArg,
    /// Where to read from: sock_diag netlink (falling back to /proc), or /proc/net/tcp only.
    #[arg(long, value_enum, default_value_t = MethodArg::Auto)]
    pub method: MethodArg,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyArg {
    All,
    #[value(name = "4")]
    V4,
    #[value(name = "6")]
    V6,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodArg {
    Auto,
    Netlink,
    Proc,
}

/// clap value parser for a state name in any spelling; the error lists the valid names.
pub fn parse_state(s: &str) -> Result<TcpState, String> {
    s.parse::<TcpState>().map_err(|e| e.to_string())
}

pub fn run(args: &SnapshotArgs) -> Result<ExitCode> {
    let query = Query {
        ports: args.ports.clone(),
        family: match args.family {
            FamilyArg::All => Family::Both,
            FamilyArg::V4 => Family::V4,
            FamilyArg::V6 => Family::V6,
        },
        pids: args.pids,
        ..Query::default()
    }
    .with_states(&args.states);
    let method = match args.method {
        MethodArg::Auto => Method::Auto,
        MethodArg::Netlink => Method::Netlink,
        MethodArg::Proc => Method::Proc,
    };
    let snap = observe::snapshot(&query, method)?;
    if let Some(note) = &snap.note {
        eprintln!("tcplab: {note}");
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let written = if args.json {
        serde_json::to_writer(&mut out, &snap.rows)
            .map_err(io::Error::other)
            .and_then(|_| writeln!(out))
    } else {
        write_table(&mut out, &snap.rows, args.pids)
    };
    // A closed pipe (`tcplab snapshot | head`) is not an error worth a message.
    match written.and_then(|_| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        other => other?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The readable table: one row per socket, then a count per state.
pub fn write_table(out: &mut impl Write, rows: &[SocketRow], pids: bool) -> io::Result<()> {
    writeln!(
        out,
        "{:<12} {:>6} {:>6} {:<45} {:<45} {:<18}{}",
        "State",
        "Recv-Q",
        "Send-Q",
        "Local Address:Port",
        "Peer Address:Port",
        "Timer",
        if pids { " Pids" } else { "" }
    )?;
    for r in rows {
        let timer = match (r.timer, r.timer_ms) {
            (Some(kind), Some(ms)) => format!("{kind} {:.1}s", ms as f64 / 1000.0),
            _ => String::new(),
        };
        write!(
            out,
            "{:<12} {:>6} {:>6} {:<45} {:<45} {:<18}",
            r.state.netstat(),
            r.recv_q,
            r.send_q,
            r.local.to_string(),
            r.remote.to_string(),
            timer
        )?;
        if let Some(p) = &r.pids {
            let list: Vec<String> = p.iter().map(u32::to_string).collect();
            write!(out, " {}", list.join(","))?;
        }
        writeln!(out)?;
    }
    let counts = observe::count_states(rows);
    let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{s} {n}")).collect();
    writeln!(
        out,
        "-- {} socket{}{}{}",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        if summary.is_empty() { "" } else { ": " },
        summary.join(", ")
    )
}
