//! `tcplab snapshot`: the kernel's view of TCP sockets right now, like `ss -tan`, with a count
//! per state at the end, or as JSON for scripts.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use tcplab_core::TcpState;
use tcplab_core::observe::{self, Family, Method, Query, SocketRow};

#[derive(Args, Debug, Clone)]
pub struct SnapshotArgs {
    /// Only sockets whose local or remote port is P (repeatable).
    #[arg(long = "port", short = 'p', value_name = "P")]
    pub ports: Vec<u16>,
    /// Only sockets in state S, in any spelling: TIME_WAIT, time-wait, TIME-WAIT (repeatable).
    #[arg(long = "state", short = 's', value_name = "S")]
    pub states: Vec<TcpState>,
    /// Also show which processes own each socket (like `ss -p`; other users' need root).
    #[arg(long)]
    pub pids: bool,
    /// Print one JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only IPv4 or only IPv6 sockets.
    #[arg(long, value_parser = super::one_of::<Family>(), default_value_t = Family::Both)]
    pub family: Family,
    /// Where to read from: sock_diag netlink (falling back to /proc), or /proc/net/tcp only.
    #[arg(long, value_parser = super::one_of::<Method>(), default_value_t = Method::Auto)]
    pub method: Method,
}

pub fn run(args: &SnapshotArgs) -> Result<ExitCode> {
    let query = Query {
        ports: args.ports.clone(),
        family: args.family,
        pids: args.pids,
        ..Query::default()
    }
    .with_states(&args.states);
    let method = args.method;
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
    // Rows are assembled by hand in one reusable line buffer: at 100k sockets, std's padded
    // formatting costs more than the whole sock_diag dump (measured with
    // `cargo bench -p tcplab-exercises --bench snapshot`). The layout is the header's.
    let mut line: Vec<u8> = Vec::with_capacity(256);
    for r in rows {
        line.clear();
        pad_right(
            &mut line,
            |b| b.extend_from_slice(r.state.netstat().as_bytes()),
            12,
        );
        line.push(b' ');
        pad_left(&mut line, u64::from(r.recv_q), 6);
        line.push(b' ');
        pad_left(&mut line, u64::from(r.send_q), 6);
        line.push(b' ');
        pad_right(&mut line, |b| push_addr(b, &r.local), 45);
        line.push(b' ');
        pad_right(&mut line, |b| push_addr(b, &r.remote), 45);
        line.push(b' ');
        pad_right(
            &mut line,
            |b| {
                if let (Some(kind), Some(ms)) = (r.timer, r.timer_ms) {
                    let tenths = (ms + 50) / 100;
                    let _ = write!(b, "{kind} ");
                    push_u64(b, tenths / 10);
                    b.push(b'.');
                    push_u64(b, tenths % 10);
                    b.push(b's');
                }
            },
            18,
        );
        if let Some(p) = &r.pids {
            for (i, pid) in p.iter().enumerate() {
                line.push(if i == 0 { b' ' } else { b',' });
                push_u64(&mut line, u64::from(*pid));
            }
        }
        line.push(b'\n');
        out.write_all(&line)?;
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

/// Append what `fill` writes, then spaces up to `width` bytes (all columns are ASCII).
fn pad_right(buf: &mut Vec<u8>, fill: impl FnOnce(&mut Vec<u8>), width: usize) {
    let start = buf.len();
    fill(buf);
    let used = buf.len() - start;
    buf.resize(buf.len() + width.saturating_sub(used), b' ');
}

/// Append `n` right-aligned in `width` bytes.
fn pad_left(buf: &mut Vec<u8>, n: u64, width: usize) {
    let mut digits = [0u8; 20];
    let text = u64_digits(n, &mut digits);
    buf.resize(buf.len() + width.saturating_sub(text.len()), b' ');
    buf.extend_from_slice(text);
}

fn push_u64(buf: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    buf.extend_from_slice(u64_digits(n, &mut digits));
}

fn u64_digits(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &digits[i..];
        }
    }
}

/// `127.0.0.1:8080` by hand; IPv6 (`[::1]:8080`) through std's Display.
fn push_addr(buf: &mut Vec<u8>, addr: &std::net::SocketAddr) {
    match addr {
        std::net::SocketAddr::V4(a) => {
            for (i, o) in a.ip().octets().iter().enumerate() {
                if i > 0 {
                    buf.push(b'.');
                }
                push_u64(buf, u64::from(*o));
            }
        }
        std::net::SocketAddr::V6(a) => {
            let _ = write!(buf, "[{}]", a.ip());
        }
    }
    buf.push(b':');
    push_u64(buf, u64::from(addr.port()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcplab_core::observe::TimerKind;

    #[test]
    fn table_rows_line_up() {
        let row = |local: &str, timer_ms: Option<u64>| SocketRow {
            state: TcpState::TimeWait,
            local: local.parse().unwrap(),
            remote: "127.0.0.1:40000".parse().unwrap(),
            timer: timer_ms.map(|_| TimerKind::Timewait),
            timer_ms,
            recv_q: 0,
            send_q: 1234567,
            uid: 0,
            inode: 0,
            pids: Some(vec![7, 42]),
        };
        let rows = [
            row("127.0.0.1:8080", Some(59_960)),
            row("[::ffff:10.0.0.1]:80", None),
        ];
        let mut out = Vec::new();
        write_table(&mut out, &rows, true).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let expect = format!(
            "{:<12} {:>6} {:>6} {:<45} {:<45} {:<18} 7,42",
            "TIME_WAIT", 0, 1234567, "127.0.0.1:8080", "127.0.0.1:40000", "timewait 60.0s"
        );
        assert_eq!(lines[1], expect);
        assert!(lines[2].contains("[::ffff:10.0.0.1]:80 "), "{}", lines[2]);
        assert_eq!(lines[3], "-- 2 sockets: TIME_WAIT 2");
    }
}
