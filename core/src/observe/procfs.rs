//! The /proc/net/tcp{,6} reader: what netstat and psutil parse, kept as the fallback when
//! sock_diag is refused and to show students why `ss` is faster (the kernel prints every
//! socket as text and we filter afterwards).
//!
//! One line per socket (full sockets print 17 fields, TIME_WAIT and request sockets 12):
//!
//! ```text
//!   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
//!   22: 0100007F:DABD 0100007F:E916 06 00000000:00000000 03:00001750 00000000     0        0 0 3 ...
//! ```
//!
//! - addresses are hex of the raw 32-bit words as the host stores them (so 127.0.0.1 reads
//!   `0100007F` on x86); ports are plain hex numbers;
//! - `st` is the kernel state code; `tx_queue:rx_queue` are hex byte counts;
//! - `tr:tm->when` is the timer (0 none, 1 retransmit, 2 keepalive, 3 TIME_WAIT, 4 zero
//!   window probe) and the time left in clock ticks of USER_HZ = 100 (10 ms): `1750` hex is
//!   5968 ticks, 59.68 s, which `ss -o` shows as `timer:(timewait,59sec,0)` for the same
//!   socket;
//! - `uid` and `inode` are decimal.
//!
//! Left out on purpose: the fields after `inode` (refcount, pointer, rto, ato, cwnd...). Two
//! columns differ from sock_diag by design of the kernel, not of this reader: a listener's
//! Send-Q is 0 here (sock_diag reports its backlog), and timers have 10 ms resolution.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use super::{Family, Query, SocketRow, TimerKind};
use crate::error::{Error, Result};
use crate::state::TcpState;

/// Milliseconds per `tm->when` tick: /proc prints clock_t units, USER_HZ = 100.
const MS_PER_TICK: u64 = 10;

/// Read /proc/net/tcp (and /proc/net/tcp6) and keep the rows `query` asks for.
///
/// A missing tcp6 file (IPv6 disabled) is not an error; a missing tcp file is.
pub fn read(query: &Query) -> Result<Vec<SocketRow>> {
    let mut rows = Vec::new();
    let files: &[(&str, bool)] = match query.family {
        Family::Both => &[("/proc/net/tcp", false), ("/proc/net/tcp6", true)],
        Family::V4 => &[("/proc/net/tcp", false)],
        Family::V6 => &[("/proc/net/tcp6", true)],
    };
    for &(path, ipv6) in files {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if ipv6 && e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("cannot read {path}"), e)),
        };
        parse_into(&text, path, ipv6, Some(query), &mut rows)?;
    }
    Ok(rows)
}

/// Parse the whole text of /proc/net/tcp (`ipv6 = false`) or /proc/net/tcp6 (`true`).
/// The header line and blank lines are skipped; `path` only labels errors.
pub fn parse(text: &str, path: &str, ipv6: bool) -> Result<Vec<SocketRow>> {
    let mut rows = Vec::new();
    parse_into(text, path, ipv6, None, &mut rows)?;
    Ok(rows)
}

fn parse_into(
    text: &str,
    path: &str,
    ipv6: bool,
    query: Option<&Query>,
    rows: &mut Vec<SocketRow>,
) -> Result<()> {
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || (i == 0 && trimmed.starts_with("sl")) {
            continue;
        }
        let row = parse_line(line, ipv6).map_err(|reason| Error::ProcParse {
            path: path.to_string(),
            line_no: i + 1,
            reason,
            line: line.to_string(),
        })?;
        if query.is_none_or(|q| q.matches(&row)) {
            rows.push(row);
        }
    }
    Ok(())
}

/// Parse one socket line; the error says which field is wrong and why.
pub fn parse_line(line: &str, ipv6: bool) -> std::result::Result<SocketRow, String> {
    let mut f = line.split_ascii_whitespace();
    let mut next = |name: &str| {
        f.next()
            .ok_or_else(|| format!("too few fields: no {name} (need at least 10)"))
    };
    let sl = next("sl")?;
    if sl
        .strip_suffix(':')
        .is_none_or(|n| n.parse::<u64>().is_err())
    {
        return Err(format!("slot {sl:?} is not a number followed by ':'"));
    }
    let local = addr(next("local_address")?, ipv6, "local_address")?;
    let remote = addr(next("rem_address")?, ipv6, "rem_address")?;
    let st = next("st")?;
    let code = u8::from_str_radix(st, 16).map_err(|_| format!("state {st:?} is not hex"))?;
    let state = TcpState::from_code(code)
        .ok_or_else(|| format!("state code {code} is not a TCP state (1..=12)"))?;
    let (tx, rx) = pair(next("tx_queue:rx_queue")?, "tx_queue:rx_queue")?;
    let (tr, when) = pair(next("tr:tm->when")?, "tr:tm->when")?;
    let _retrnsmt = next("retrnsmt")?;
    let uid = dec(next("uid")?, "uid")?;
    let _timeout = next("timeout")?;
    let inode = dec(next("inode")?, "inode")?;
    let timer = match tr {
        0 => None,
        1 => Some(TimerKind::Retransmit),
        2 => Some(TimerKind::Keepalive),
        3 => Some(TimerKind::Timewait),
        4 => Some(TimerKind::Probe),
        other => return Err(format!("timer code {other} is not 0..=4")),
    };
    Ok(SocketRow {
        state,
        local,
        remote,
        timer,
        timer_ms: timer.map(|_| when.saturating_mul(MS_PER_TICK)),
        recv_q: u32::try_from(rx).map_err(|_| format!("rx_queue {rx:#x} exceeds 32 bits"))?,
        send_q: u32::try_from(tx).map_err(|_| format!("tx_queue {tx:#x} exceeds 32 bits"))?,
        uid: u32::try_from(uid).map_err(|_| format!("uid {uid} exceeds 32 bits"))?,
        inode,
        pids: None,
    })
}

/// `HEX:HEX` as two numbers.
fn pair(s: &str, name: &str) -> std::result::Result<(u64, u64), String> {
    let (a, b) = s
        .split_once(':')
        .ok_or_else(|| format!("{name} {s:?} lacks ':'"))?;
    Ok((hex(a, name)?, hex(b, name)?))
}

fn hex(s: &str, name: &str) -> std::result::Result<u64, String> {
    if s.is_empty() || s.len() > 16 {
        return Err(format!("{name} field {s:?} is not 1 to 16 hex digits"));
    }
    u64::from_str_radix(s, 16).map_err(|_| format!("{name} field {s:?} is not hex"))
}

fn dec(s: &str, name: &str) -> std::result::Result<u64, String> {
    s.parse::<u64>()
        .map_err(|_| format!("{name} {s:?} is not a decimal number"))
}

/// `0100007F:1F90` (IPv4, 8 hex digits) or 32 hex digits for IPv6, then a hex port.
fn addr(s: &str, ipv6: bool, name: &str) -> std::result::Result<SocketAddr, String> {
    let (ip, port) = s
        .split_once(':')
        .ok_or_else(|| format!("{name} {s:?} lacks ':' before the port"))?;
    if port.len() != 4 {
        return Err(format!("{name} port {port:?} is not 4 hex digits"));
    }
    let port =
        u16::from_str_radix(port, 16).map_err(|_| format!("{name} port {port:?} is not hex"))?;
    let want = if ipv6 { 32 } else { 8 };
    if ip.len() != want {
        return Err(format!(
            "{name} address {ip:?} has {} hex digits, expected {want}",
            ip.len()
        ));
    }
    // Each 8-digit group is one 32-bit word printed as the host holds it in memory:
    // turning the number back into native-endian bytes recovers the address bytes.
    let mut octets = [0u8; 16];
    for (i, chunk) in ip.as_bytes().chunks(8).enumerate() {
        let text = std::str::from_utf8(chunk).map_err(|_| format!("{name} is not ASCII"))?;
        let word = u32::from_str_radix(text, 16)
            .map_err(|_| format!("{name} address {ip:?} is not hex"))?;
        octets[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    Ok(if ipv6 {
        SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(octets), port, 0, 0))
    } else {
        SocketAddr::from((
            Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]),
            port,
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEADER4: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";

    /// Lines as Linux 6.x prints them (x86, little-endian): a listener, an established
    /// pair with queued data, a CLOSE_WAIT and a TIME_WAIT with 59.68 s left.
    const SAMPLE4: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000002 00:00000000 00000000  1000        0 41234 1 00000000e533eb16 100 0 0 10 0
   1: 0100007F:9C40 0100007F:1F90 01 0000000A:00000000 01:00000014 00000000  1000        0 41240 2 000000003a1b2c3d 20 4 30 10 -1
   2: 0100007F:1F90 0100007F:9C42 08 00000000:00000005 00:00000000 00000000  1000        0 41241 1 000000004b2c3d4e 20 4 0 10 -1
   3: 0100007F:1F90 0100007F:9C44 06 00000000:00000000 03:00001750 00000000     0        0 0 3 0000000051386136
";

    const SAMPLE6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 51234 1 00000000aa11bb22 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1F91 0000000000000000FFFF00000100007F:A000 05 00000000:00000000 02:00000BB8 00000000  1000        0 0 1 00000000cc33dd44 20 4 30 10 -1
   2: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:A002 06 00000000:00000000 03:0000012C 00000000     0        0 0 3 00000000ee55ff66
";

    #[test]
    fn sample_v4() {
        let rows = parse(SAMPLE4, "/proc/net/tcp", false).unwrap();
        insta::assert_json_snapshot!("procfs_sample_v4", rows);
    }

    #[test]
    fn sample_v6() {
        let rows = parse(SAMPLE6, "/proc/net/tcp6", true).unwrap();
        insta::assert_json_snapshot!("procfs_sample_v6", rows);
    }

    #[test]
    fn time_wait_timer_is_in_ticks_of_10ms() {
        let rows = parse(SAMPLE4, "t", false).unwrap();
        assert_eq!(rows[3].state, TcpState::TimeWait);
        assert_eq!(rows[3].timer, Some(TimerKind::Timewait));
        assert_eq!(rows[3].timer_ms, Some(59_680));
    }

    #[test]
    fn query_filters_rows() {
        let q = Query::ports(&[0x9C42]).with_states(&[TcpState::CloseWait]);
        let mut rows = Vec::new();
        parse_into(SAMPLE4, "t", false, Some(&q), &mut rows).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].remote.port(), 0x9C42);
    }

    fn err_of(line: &str, ipv6: bool) -> String {
        let text = format!("{HEADER4}\n{line}\n");
        match parse(&text, "/proc/net/tcp", ipv6) {
            Err(Error::ProcParse {
                line_no, reason, ..
            }) => {
                assert_eq!(line_no, 2);
                reason
            }
            other => panic!("expected a ProcParse error for {line:?}, got {other:?}"),
        }
    }

    #[test]
    fn malformed_lines_are_errors() {
        let good = "   3: 0100007F:1F90 0100007F:9C44 06 00000000:00000000 03:00001750 00000000     0        0 0 3 0000000051386136";
        assert!(parse_line(good, false).is_ok());
        let cases = [
            // wrong field count
            ("   3: 0100007F:1F90 0100007F:9C44 06", "too few fields"),
            // bad hex in the address
            (
                "   3: 0100007G:1F90 0100007F:9C44 06 00000000:00000000 03:00001750 00000000 0 0 0",
                "not hex",
            ),
            // state code 0 and 13
            (
                "   3: 0100007F:1F90 0100007F:9C44 00 00000000:00000000 03:00001750 00000000 0 0 0",
                "not a TCP state",
            ),
            (
                "   3: 0100007F:1F90 0100007F:9C44 0D 00000000:00000000 03:00001750 00000000 0 0 0",
                "not a TCP state",
            ),
            // truncated address
            (
                "   3: 0100007:1F90 0100007F:9C44 06 00000000:00000000 03:00001750 00000000 0 0 0",
                "expected 8",
            ),
            (
                "   3: 0100007F:1F9 0100007F:9C44 06 00000000:00000000 03:00001750 00000000 0 0 0",
                "4 hex digits",
            ),
            (
                "   3: 0100007F 0100007F:9C44 06 00000000:00000000 03:00001750 00000000 0 0 0",
                "lacks ':'",
            ),
            // bad timer, slot, uid
            (
                "   3: 0100007F:1F90 0100007F:9C44 06 00000000:00000000 09:00001750 00000000 0 0 0",
                "timer code 9",
            ),
            (
                "   x: 0100007F:1F90 0100007F:9C44 06 00000000:00000000 03:00001750 00000000 0 0 0",
                "slot",
            ),
            (
                "   3: 0100007F:1F90 0100007F:9C44 06 00000000:00000000 03:00001750 00000000 -1 0 0",
                "uid",
            ),
        ];
        for (line, want) in cases {
            let reason = err_of(line, false);
            assert!(reason.contains(want), "{line:?}: {reason:?} lacks {want:?}");
        }
        // An IPv4-length address in tcp6 is truncated too.
        let reason = err_of(good, true);
        assert!(reason.contains("expected 32"), "{reason}");
    }

    #[test]
    fn error_message_names_file_and_line() {
        let msg = parse(&format!("{HEADER4}\n   0: zz\n"), "/proc/net/tcp", false)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("/proc/net/tcp") && msg.contains("line 2"),
            "{msg}"
        );
    }

    #[test]
    fn reads_this_machine() {
        // Whatever is on the machine must parse.
        read(&Query::default()).unwrap();
    }

    proptest! {
        #[test]
        fn never_panics_on_random_lines(line in "\\PC{0,200}", v6 in any::<bool>()) {
            let _ = parse_line(&line, v6);
            let _ = parse(&line, "p", v6);
        }

        #[test]
        fn never_panics_on_garbled_real_lines(
            pick in 0usize..7,
            cut in 0usize..200,
            pos in 0usize..200,
            byte in "[0-9A-Fa-fxZ: \\-]",
        ) {
            let lines: Vec<&str> = SAMPLE4.lines().chain(SAMPLE6.lines()).filter(|l| !l.contains("sl")).collect();
            let v6 = pick >= 4;
            let mut s = lines[pick % lines.len()].to_string();
            let p = pos.min(s.len());
            if s.is_char_boundary(p) {
                s.insert_str(p, &byte);
            }
            let c = cut.min(s.len());
            if s.is_char_boundary(c) {
                s.truncate(c.max(1));
            }
            let _ = parse_line(&s, v6);
        }
    }
}
