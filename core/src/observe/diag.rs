//! sock_diag (inet_diag) over netlink: how `ss` asks the kernel for TCP sockets, written out
//! byte by byte so a reader sees the whole exchange.
//!
//! One dump is one request (`SOCK_DIAG_BY_FAMILY` with `NLM_F_DUMP`) carrying an
//! `inet_diag_req_v2` and, when ports are asked for, an `INET_DIAG_REQ_BYTECODE` attribute: a
//! tiny filter program the kernel runs on every socket before copying anything to us. The
//! kernel answers with many datagrams, each packed with `inet_diag_msg` records, then
//! `NLMSG_DONE` (or `NLMSG_ERROR`). IPv4 and IPv6 are separate dumps.
//!
//! What comes from the rust-netlink crates and what is written here, and why:
//! - the socket itself (open, bind, send, recv) is `netlink_sys::Socket`, and the protocol
//!   constants come from `netlink-packet-core` and `netlink-packet-sock-diag`;
//! - the request is built by hand: `netlink_packet_sock_diag::inet::InetRequest` 0.5 has no
//!   way to attach the INET_DIAG_REQ_BYTECODE attribute, and without it the port filter
//!   would have to run in user space over every socket on the machine;
//! - the replies are parsed by hand: `inet_diag_msg` is a fixed 72-byte layout, and the
//!   crate's `InetResponse` parses every attribute into owned values (and drops
//!   `idiag_expires` for TIME_WAIT sockets, the very timer lesson 05 shows). Reading the
//!   fixed fields straight out of the receive buffer allocates nothing but the row.
//!
//! [`destroy`] sends the other request `ss -K` sends: `SOCK_DESTROY` with the exact socket id
//! (both addresses and ports, and the cookie a dump reported for it). The kernel aborts that one socket as if it had
//! received a RST (the peer gets a RST too). It needs CAP_NET_ADMIN and a kernel built with
//! CONFIG_INET_DIAG_DESTROY; otherwise the kernel answers EPERM or EOPNOTSUPP, and the error
//! says so.
//!
//! Left out on purpose: extensions (`idiag_ext`: TCP_INFO, memory, congestion), the
//! `NLM_F_DUMP_INTR` flag (a dump that raced with changes is still a fine snapshot for a
//! lesson), interface scope ids on link-local addresses (/proc cannot report them, and the
//! two methods must give the same rows), and UDP/UNIX sockets.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd;

use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR};
use netlink_packet_sock_diag::{
    AF_INET, AF_INET6, IPPROTO_TCP, SOCK_DIAG_BY_FAMILY, constants::SOCK_DESTROY,
};
use netlink_sys::{Socket, SocketAddr as NlAddr, protocols::NETLINK_SOCK_DIAG};

use super::{Family, Query, SocketRow, TimerKind};
use crate::error::{Error, Result};
use crate::state::TcpState;

/// Size of `struct nlmsghdr`.
const NLMSG_HDR_LEN: usize = 16;
/// Size of `struct inet_diag_req_v2` (family, protocol, ext, pad, states, inet_diag_sockid).
const REQ_LEN: usize = 56;
/// Size of `struct inet_diag_msg`, the fixed part of every reply record.
const MSG_LEN: usize = 72;
/// `INET_DIAG_REQ_BYTECODE`, the request attribute holding the filter program.
const INET_DIAG_REQ_BYTECODE: u16 = 1;
/// Filter opcodes from linux/inet_diag.h.
const INET_DIAG_BC_JMP: u8 = 1;
const INET_DIAG_BC_S_EQ: u8 = 11;
const INET_DIAG_BC_D_EQ: u8 = 12;
/// User-space receive buffer: the kernel fills at most ~32 KiB per datagram, so this holds
/// any reply with room to spare and is allocated once per dump.
const RECV_BUF: usize = 1 << 20;
/// Kernel-side socket receive buffer asked for with SO_RCVBUF(FORCE).
const SO_RCVBUF_BYTES: libc::c_int = 4 << 20;
/// How long one recv() may wait before we give up on the kernel.
const RECV_TIMEOUT_SECS: libc::time_t = 5;

/// Dump the TCP sockets matching `query` through NETLINK_SOCK_DIAG.
///
/// State and port filters run in the kernel; `Family::Both` is two dumps (IPv4 then IPv6)
/// over one netlink socket. Rows come back with `pids: None`.
pub fn dump(query: &Query) -> Result<Vec<SocketRow>> {
    let bytecode = if query.ports.is_empty() {
        Vec::new()
    } else {
        port_bytecode(&query.ports)?
    };
    let families: &[u8] = match query.family {
        Family::Both => &[AF_INET, AF_INET6],
        Family::V4 => &[AF_INET],
        Family::V6 => &[AF_INET6],
    };
    let socket = open()?;
    let mut buf = vec![0u8; RECV_BUF];
    let mut rows = Vec::new();
    for (i, &family) in families.iter().enumerate() {
        let seq = i as u32 + 1;
        let request = build_request(family, query.states.mask(), &bytecode, seq);
        socket
            .send(&request, 0)
            .map_err(|e| Error::Netlink(format!("cannot send the dump request: {e}")))?;
        receive(&socket, &mut buf, seq, &mut rows)?;
    }
    Ok(rows)
}

/// Destroy one socket, as `ss -K` does: a `SOCK_DESTROY` request naming the socket by its
/// addresses and ports. The kernel aborts it (state CLOSE, a RST to the peer, ECONNABORTED
/// for its owner's next call); the owner's file descriptor stays open until it closes it.
///
/// Errors: EPERM without CAP_NET_ADMIN, EOPNOTSUPP when the kernel lacks
/// CONFIG_INET_DIAG_DESTROY, ENOENT when no such socket exists (any more).
///
/// The request carries the socket's cookie, read from a fresh dump just before: with no
/// cookie the kernel's lookup falls back to the LISTEN socket on the same port when the
/// connection is gone, and would destroy the listener instead.
pub fn destroy(row: &SocketRow) -> Result<()> {
    let socket = open()?;
    let cookie = cookie_of(&socket, row)?.ok_or_else(|| {
        Error::Netlink(format!(
            "no {} socket {} -> {} to destroy (it closed already)",
            row.state, row.local, row.remote
        ))
    })?;
    let request = build_destroy_request(row, cookie, 1)?;
    socket
        .send(&request, 0)
        .map_err(|e| Error::Netlink(format!("cannot send the destroy request: {e}")))?;
    let mut buf = vec![0u8; 8192];
    let n = loop {
        match socket.recv(&mut &mut buf[..], 0) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::Netlink(format!(
                    "no answer to the destroy request ({e})"
                )));
            }
        }
    };
    parse_ack(&buf[..n.min(buf.len())], 1)
}

/// The kernel's cookie (`idiag_cookie`) of the socket `row` names, from a dump filtered to
/// its state and local port; `None` when no such socket exists now.
fn cookie_of(socket: &Socket, row: &SocketRow) -> Result<Option<[u8; 8]>> {
    let family = if row.local.is_ipv4() {
        AF_INET
    } else {
        AF_INET6
    };
    let bytecode = port_bytecode(&[row.local.port()])?;
    let seq = 2;
    let request = build_request(family, row.state.bit(), &bytecode, seq);
    socket
        .send(&request, 0)
        .map_err(|e| Error::Netlink(format!("cannot send the dump request: {e}")))?;
    let mut buf = vec![0u8; RECV_BUF];
    let mut found = None;
    receive_records(socket, &mut buf, seq, &mut |p| {
        if let Some(r) = parse_msg(p)?
            && r.local == row.local
            && r.remote == row.remote
        {
            let mut cookie = [0u8; 8];
            cookie.copy_from_slice(&p[44..52]);
            found = Some(cookie);
        }
        Ok(())
    })?;
    Ok(found)
}

/// The SOCK_DESTROY datagram: nlmsghdr + inet_diag_req_v2 whose inet_diag_sockid names one
/// socket (ports big-endian, addresses in network order, any interface, the kernel's cookie
/// as the dump reported it).
pub fn build_destroy_request(row: &SocketRow, cookie: [u8; 8], seq: u32) -> Result<Vec<u8>> {
    let family = match (row.local, row.remote) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) => AF_INET,
        (SocketAddr::V6(_), SocketAddr::V6(_)) => AF_INET6,
        _ => {
            return Err(Error::InvalidInput(format!(
                "cannot destroy {} -> {}: the two addresses are of different families",
                row.local, row.remote
            )));
        }
    };
    let total = NLMSG_HDR_LEN + REQ_LEN;
    let mut m = Vec::with_capacity(total);
    // struct nlmsghdr: a plain request, acknowledged (no dump)
    m.extend_from_slice(&(total as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DESTROY.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // struct inet_diag_req_v2
    m.extend_from_slice(&[family, IPPROTO_TCP, 0, 0]);
    m.extend_from_slice(&row.state.bit().to_ne_bytes());
    // struct inet_diag_sockid
    m.extend_from_slice(&row.local.port().to_be_bytes());
    m.extend_from_slice(&row.remote.port().to_be_bytes());
    m.extend_from_slice(&addr16(row.local));
    m.extend_from_slice(&addr16(row.remote));
    m.extend_from_slice(&0u32.to_ne_bytes()); // idiag_if: any interface
    m.extend_from_slice(&cookie);
    debug_assert_eq!(m.len(), total);
    Ok(m)
}

/// An address as the 16 bytes of `idiag_src`/`idiag_dst` (IPv4 in the first 4).
fn addr16(addr: SocketAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match addr {
        SocketAddr::V4(a) => out[..4].copy_from_slice(&a.ip().octets()),
        SocketAddr::V6(a) => out.copy_from_slice(&a.ip().octets()),
    }
    out
}

/// Read the kernel's NLMSG_ERROR answer to a request sent with NLM_F_ACK: code 0 is success.
pub fn parse_ack(data: &[u8], seq: u32) -> Result<()> {
    if data.len() < NLMSG_HDR_LEN + 4 {
        return Err(Error::Netlink(format!(
            "truncated answer to the destroy request ({} bytes)",
            data.len()
        )));
    }
    let kind = u16::from_ne_bytes([data[4], data[5]]);
    let msg_seq = u32_at(data, 8);
    if kind != NLMSG_ERROR || msg_seq != seq {
        return Err(Error::Netlink(format!(
            "unexpected answer to the destroy request (type {kind}, seq {msg_seq})"
        )));
    }
    let code = u32_at(data, NLMSG_HDR_LEN) as i32;
    if code == 0 {
        return Ok(());
    }
    let errno = code.saturating_neg();
    let err = io::Error::from_raw_os_error(errno);
    let hint = match errno {
        libc::EPERM | libc::EACCES => " (destroying sockets needs CAP_NET_ADMIN: run as root)",
        libc::EOPNOTSUPP => " (this kernel was built without CONFIG_INET_DIAG_DESTROY)",
        libc::ENOENT => " (no such socket: it closed already)",
        _ => "",
    };
    Err(Error::Netlink(format!(
        "the kernel refused to destroy the socket: {err}{hint}"
    )))
}

/// A NETLINK_SOCK_DIAG socket with a large receive buffer and a receive timeout.
fn open() -> Result<Socket> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(|e| {
        Error::SockDiagUnavailable(format!("cannot open a NETLINK_SOCK_DIAG socket ({e})"))
    })?;
    socket
        .bind_auto()
        .map_err(|e| Error::Netlink(format!("cannot bind the netlink socket: {e}")))?;
    let fd = socket.as_raw_fd();
    // SO_RCVBUFFORCE passes rmem_max for root; others get what SO_RCVBUF allows. Either way a
    // smaller buffer only means more, smaller recv() calls, so failures here are not fatal.
    if setsockopt(fd, libc::SO_RCVBUFFORCE, &SO_RCVBUF_BYTES).is_err() {
        let _ = setsockopt(fd, libc::SO_RCVBUF, &SO_RCVBUF_BYTES);
    }
    let timeout = libc::timeval {
        tv_sec: RECV_TIMEOUT_SECS,
        tv_usec: 0,
    };
    setsockopt(fd, libc::SO_RCVTIMEO, &timeout)
        .map_err(|e| Error::Netlink(format!("cannot set a receive timeout: {e}")))?;
    socket
        .connect(&NlAddr::new(0, 0))
        .map_err(|e| Error::Netlink(format!("cannot address the kernel: {e}")))?;
    Ok(socket)
}

fn setsockopt<T>(fd: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: the pointer and length describe a live T for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The whole request datagram: nlmsghdr + inet_diag_req_v2 (+ the bytecode attribute).
pub fn build_request(family: u8, states: u32, bytecode: &[u8], seq: u32) -> Vec<u8> {
    let attr_len = if bytecode.is_empty() {
        0
    } else {
        4 + bytecode.len()
    };
    let total = NLMSG_HDR_LEN + REQ_LEN + align4(attr_len);
    let mut m = Vec::with_capacity(total);
    // struct nlmsghdr
    m.extend_from_slice(&(total as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: 0, the kernel fills it in
    // struct inet_diag_req_v2
    m.extend_from_slice(&[family, IPPROTO_TCP, 0, 0]); // family, protocol, idiag_ext, pad
    m.extend_from_slice(&states.to_ne_bytes());
    m.extend_from_slice(&[0u8; 48]); // inet_diag_sockid: all wildcards for a dump
    if attr_len > 0 {
        // struct nlattr, then the program, padded to 4 bytes
        m.extend_from_slice(&(attr_len as u16).to_ne_bytes());
        m.extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
        m.extend_from_slice(bytecode);
        m.resize(total, 0);
    }
    m
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The inet_diag filter program for "local or remote port is one of `ports`", compiled the
/// way iproute2's ss compiles `( sport = :P1 or dport = :P1 or sport = :P2 ... )`.
///
/// Each op is `{ code: u8, yes: u8, no: u16 }`: the kernel jumps `yes` bytes forward when the
/// test holds and `no` bytes when it does not; a socket matches when a jump lands exactly on
/// the end of the program, and is rejected when one lands 4 bytes past it. A port test takes
/// two ops: the test, then one whose `no` field holds the port (host byte order).
///
/// Layout, for terms T1..Tn (2 per port): `T1 J T2 J ... J Tn`, with
/// - every term `{S_EQ|D_EQ, yes: 8, no: 12}`: on a match fall into the following JMP, else
///   skip it and try the next term (the last term's `no` lands past the end: reject);
/// - every JMP `{JMP, yes: 4, no: 12}`: a JMP always takes `no`, hopping from JMP to JMP
///   until it lands on the end: accept.
///
/// `yes` always steps to the next op because the kernel's checker (inet_diag_bc_audit)
/// follows the `yes` chain and requires every `no` target to be on it.
pub fn port_bytecode(ports: &[u16]) -> Result<Vec<u8>> {
    let mut unique: Vec<u16> = Vec::with_capacity(ports.len());
    for &p in ports {
        if !unique.contains(&p) {
            unique.push(p);
        }
    }
    let terms = unique.len() * 2;
    let len = terms * 8 + (terms.saturating_sub(1)) * 4;
    // The program sits in a netlink attribute whose length is a u16 (4 bytes of header).
    if len + 4 > usize::from(u16::MAX) {
        return Err(Error::InvalidInput(format!(
            "too many ports in one query ({}); ask for at most 2700",
            unique.len()
        )));
    }
    let mut bc = Vec::with_capacity(len);
    for (i, &port) in unique.iter().enumerate() {
        for (j, code) in [INET_DIAG_BC_S_EQ, INET_DIAG_BC_D_EQ]
            .into_iter()
            .enumerate()
        {
            if i + j > 0 {
                op(&mut bc, INET_DIAG_BC_JMP, 4, 12);
            }
            op(&mut bc, code, 8, 12);
            op(&mut bc, 0, 0, port);
        }
    }
    debug_assert_eq!(bc.len(), len);
    Ok(bc)
}

fn op(bc: &mut Vec<u8>, code: u8, yes: u8, no: u16) {
    bc.push(code);
    bc.push(yes);
    bc.extend_from_slice(&no.to_ne_bytes());
}

/// Read datagrams until NLMSG_DONE for `seq`, appending a row per inet_diag_msg.
fn receive(socket: &Socket, buf: &mut [u8], seq: u32, rows: &mut Vec<SocketRow>) -> Result<()> {
    receive_records(socket, buf, seq, &mut |payload| {
        if let Some(row) = parse_msg(payload)? {
            rows.push(row);
        }
        Ok(())
    })
}

/// Read datagrams until NLMSG_DONE for `seq`, handing each inet_diag_msg payload to `each`.
fn receive_records(
    socket: &Socket,
    buf: &mut [u8],
    seq: u32,
    each: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    loop {
        let n = match socket.recv(&mut &mut buf[..], 0) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Error::SockDiagUnavailable(format!(
                    "no reply from the kernel within {RECV_TIMEOUT_SECS} s"
                )));
            }
            Err(e) => {
                return Err(Error::SockDiagUnavailable(format!(
                    "cannot read the dump ({e})"
                )));
            }
        };
        if n == 0 {
            return Err(Error::Netlink(
                "the kernel closed the dump without NLMSG_DONE".into(),
            ));
        }
        if n > buf.len() {
            return Err(Error::Netlink(format!(
                "a reply of {n} bytes did not fit the {} byte buffer",
                buf.len()
            )));
        }
        if parse_records(&buf[..n], seq, each)? {
            return Ok(());
        }
    }
}

/// Parse one datagram of netlink messages. Returns `Ok(true)` on NLMSG_DONE.
pub fn parse_datagram(data: &[u8], seq: u32, rows: &mut Vec<SocketRow>) -> Result<bool> {
    parse_records(data, seq, &mut |payload| {
        if let Some(row) = parse_msg(payload)? {
            rows.push(row);
        }
        Ok(())
    })
}

/// Walk one datagram, handing each SOCK_DIAG_BY_FAMILY payload to `each`. `Ok(true)` on
/// NLMSG_DONE.
fn parse_records(
    mut data: &[u8],
    seq: u32,
    each: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<bool> {
    while !data.is_empty() {
        if data.len() < NLMSG_HDR_LEN {
            return Err(Error::Netlink(format!(
                "truncated netlink header ({} bytes)",
                data.len()
            )));
        }
        let len = u32_at(data, 0) as usize;
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        let msg_seq = u32_at(data, 8);
        if len < NLMSG_HDR_LEN || len > data.len() {
            return Err(Error::Netlink(format!(
                "bad netlink message length {len} ({} bytes left)",
                data.len()
            )));
        }
        let payload = &data[NLMSG_HDR_LEN..len];
        data = &data[align4(len).min(data.len())..];
        if msg_seq != seq {
            // A leftover from an earlier dump on this socket: not ours to read.
            continue;
        }
        match kind {
            NLMSG_DONE => {
                // A dump may end with a negative errno in the DONE payload.
                if payload.len() >= 4 {
                    let code = i32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]);
                    if code < 0 {
                        return Err(errno_error("the dump ended with an error", code));
                    }
                }
                return Ok(true);
            }
            NLMSG_ERROR => {
                if payload.len() < 4 {
                    return Err(Error::Netlink("truncated NLMSG_ERROR".into()));
                }
                let code = i32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]);
                if code == 0 {
                    // An acknowledgement, not an error.
                    continue;
                }
                return Err(errno_error("the kernel refused the dump", code));
            }
            SOCK_DIAG_BY_FAMILY => {
                each(payload)?;
            }
            _ => {} // NLMSG_NOOP and anything newer: nothing to read.
        }
    }
    Ok(false)
}

fn errno_error(what: &str, code: i32) -> Error {
    let err = io::Error::from_raw_os_error(code.saturating_neg());
    let hint = match code.saturating_neg() {
        libc::EINVAL => " (the kernel rejected the request or its port filter)",
        libc::ENOENT => " (is the inet_diag/tcp_diag module available?)",
        libc::EPERM | libc::EACCES => {
            return Error::SockDiagUnavailable(format!("{what}: {err} (not allowed here)"));
        }
        _ => "",
    };
    Error::Netlink(format!("{what}: {err}{hint}"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// One `struct inet_diag_msg` (attributes after it are ignored). `Ok(None)` for a record of
/// a family or state we do not model, so one odd socket never spoils a snapshot.
pub fn parse_msg(p: &[u8]) -> Result<Option<SocketRow>> {
    if p.len() < MSG_LEN {
        return Err(Error::Netlink(format!(
            "truncated inet_diag_msg: {} bytes, expected at least {MSG_LEN}",
            p.len()
        )));
    }
    let family = p[0];
    let Some(state) = TcpState::from_code(p[1]) else {
        return Ok(None);
    };
    let timer_code = p[2];
    // inet_diag_sockid: ports are big-endian, addresses are in network byte order.
    let sport = u16::from_be_bytes([p[4], p[5]]);
    let dport = u16::from_be_bytes([p[6], p[7]]);
    let (local, remote) = match family {
        AF_INET => (v4(&p[8..12], sport), v4(&p[24..28], dport)),
        AF_INET6 => (v6(&p[8..24], sport), v6(&p[24..40], dport)),
        _ => return Ok(None),
    };
    let expires = u32_at(p, 52);
    let timer = match timer_code {
        1 => Some(TimerKind::Retransmit),
        2 => Some(TimerKind::Keepalive),
        3 => Some(TimerKind::Timewait),
        4 => Some(TimerKind::Probe),
        _ => None,
    };
    Ok(Some(SocketRow {
        state,
        local,
        remote,
        timer,
        timer_ms: timer.map(|_| u64::from(expires)),
        recv_q: u32_at(p, 56),
        send_q: u32_at(p, 60),
        uid: u32_at(p, 64),
        inode: u64::from(u32_at(p, 68)),
        pids: None,
    }))
}

fn v4(b: &[u8], port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])), port)
}

fn v6(b: &[u8], port: u16) -> SocketAddr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&b[..16]);
    SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(octets), port, 0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytecode_for_one_port() {
        let p = 0x1f90u16.to_ne_bytes(); // 8080
        #[rustfmt::skip]
        let expect = vec![
            11, 8, 12, 0,  0, 0, p[0], p[1],   // S_EQ 8080: yes -> JMP, no -> D_EQ
            1, 4, 12, 0,                       // JMP: always "no" -> end (accept)
            12, 8, 12, 0,  0, 0, p[0], p[1],   // D_EQ 8080: yes -> end, no -> end+4 (reject)
        ];
        assert_eq!(port_bytecode(&[8080]).unwrap(), expect);
    }

    #[test]
    fn bytecode_for_two_ports() {
        let a = 80u16.to_ne_bytes();
        let b = 443u16.to_ne_bytes();
        #[rustfmt::skip]
        let expect = vec![
            11, 8, 12, 0,  0, 0, a[0], a[1],
            1, 4, 12, 0,
            12, 8, 12, 0,  0, 0, a[0], a[1],
            1, 4, 12, 0,
            11, 8, 12, 0,  0, 0, b[0], b[1],
            1, 4, 12, 0,
            12, 8, 12, 0,  0, 0, b[0], b[1],
        ];
        assert_eq!(port_bytecode(&[80, 443]).unwrap(), expect);
        // Repeats are dropped.
        assert_eq!(port_bytecode(&[80, 443, 80]).unwrap(), expect);
    }

    /// Run a program the way the kernel's inet_diag_bc_run does.
    fn run(bc: &[u8], sport: u16, dport: u16) -> bool {
        let mut pos = 0i64;
        let len = bc.len() as i64;
        while pos < len {
            let at = pos as usize;
            let (code, yes, no) = (
                bc[at],
                i64::from(bc[at + 1]),
                i64::from(u16::from_ne_bytes([bc[at + 2], bc[at + 3]])),
            );
            let arg = || u16::from_ne_bytes([bc[at + 6], bc[at + 7]]);
            let ok = match code {
                INET_DIAG_BC_JMP => false,
                INET_DIAG_BC_S_EQ => sport == arg(),
                INET_DIAG_BC_D_EQ => dport == arg(),
                other => panic!("unexpected op {other}"),
            };
            pos += if ok { yes } else { no };
        }
        pos == len
    }

    #[test]
    fn bytecode_matches_like_the_kernel_would() {
        let bc = port_bytecode(&[80, 443, 8080]).unwrap();
        for (s, d, want) in [
            (80, 1, true),
            (1, 80, true),
            (443, 5, true),
            (5, 443, true),
            (8080, 8080, true),
            (1, 2, false),
            (81, 444, false),
        ] {
            assert_eq!(run(&bc, s, d), want, "sport {s} dport {d}");
        }
    }

    #[test]
    fn request_layout() {
        let bc = port_bytecode(&[80]).unwrap();
        let req = build_request(AF_INET6, 1 << 6, &bc, 7);
        assert_eq!(req.len(), 16 + 56 + 4 + 20);
        assert_eq!(u32_at(&req, 0) as usize, req.len());
        assert_eq!(req[16], AF_INET6);
        assert_eq!(req[17], IPPROTO_TCP);
        assert_eq!(u32_at(&req, 20), 1 << 6);
        assert_eq!(u16::from_ne_bytes([req[72], req[73]]), 24);
        assert_eq!(&req[76..], &bc[..]);
        assert_eq!(build_request(AF_INET, 0x1fff, &[], 1).len(), 72);
    }

    #[test]
    fn destroy_request_layout() {
        let row = SocketRow {
            state: TcpState::CloseWait,
            local: "127.0.0.1:8080".parse().unwrap(),
            remote: "127.0.0.2:40000".parse().unwrap(),
            timer: None,
            timer_ms: None,
            recv_q: 1,
            send_q: 0,
            uid: 0,
            inode: 42,
            pids: None,
        };
        let req = build_destroy_request(&row, [1, 2, 3, 4, 5, 6, 7, 8], 9).unwrap();
        assert_eq!(req.len(), 16 + 56);
        assert_eq!(u32_at(&req, 0) as usize, req.len());
        assert_eq!(u16::from_ne_bytes([req[4], req[5]]), SOCK_DESTROY);
        let flags = u16::from_ne_bytes([req[6], req[7]]);
        assert_eq!(flags, NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(u32_at(&req, 8), 9);
        assert_eq!(&req[16..18], &[AF_INET, IPPROTO_TCP]);
        assert_eq!(u32_at(&req, 20), TcpState::CloseWait.bit());
        assert_eq!(&req[24..26], &8080u16.to_be_bytes());
        assert_eq!(&req[26..28], &40000u16.to_be_bytes());
        assert_eq!(&req[28..32], &[127, 0, 0, 1]);
        assert_eq!(&req[44..48], &[127, 0, 0, 2]);
        assert_eq!(&req[64..72], &[1, 2, 3, 4, 5, 6, 7, 8]);
        let mut mixed = row.clone();
        mixed.remote = "[::1]:1".parse().unwrap();
        assert!(build_destroy_request(&mixed, [0; 8], 1).is_err());
    }

    #[test]
    fn destroy_acks_and_refusals() {
        let ack = |code: i32| {
            let mut m = vec![0u8; 36];
            m[0..4].copy_from_slice(&36u32.to_ne_bytes());
            m[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
            m[8..12].copy_from_slice(&1u32.to_ne_bytes());
            m[16..20].copy_from_slice(&code.to_ne_bytes());
            m
        };
        assert!(parse_ack(&ack(0), 1).is_ok());
        let e = parse_ack(&ack(-libc::EOPNOTSUPP), 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("CONFIG_INET_DIAG_DESTROY"), "{e}");
        let e = parse_ack(&ack(-libc::EPERM), 1).unwrap_err().to_string();
        assert!(e.contains("CAP_NET_ADMIN"), "{e}");
        assert!(parse_ack(&ack(0), 2).is_err());
        assert!(parse_ack(&[0u8; 3], 1).is_err());
    }

    #[test]
    fn garbage_replies_are_errors_not_panics() {
        let mut rows = Vec::new();
        assert!(parse_datagram(&[1, 2, 3], 1, &mut rows).is_err());
        let mut hdr = vec![0u8; 16];
        hdr[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(parse_datagram(&hdr, 1, &mut rows).is_err());
        // A SOCK_DIAG_BY_FAMILY message too short for inet_diag_msg.
        let mut short = vec![0u8; 20];
        short[0..4].copy_from_slice(&20u32.to_ne_bytes());
        short[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        short[8..12].copy_from_slice(&1u32.to_ne_bytes());
        assert!(parse_datagram(&short, 1, &mut rows).is_err());
        // NLMSG_ERROR with -EINVAL.
        let mut err = vec![0u8; 36];
        err[0..4].copy_from_slice(&36u32.to_ne_bytes());
        err[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err[8..12].copy_from_slice(&1u32.to_ne_bytes());
        err[16..20].copy_from_slice(&(-libc::EINVAL).to_ne_bytes());
        let msg = parse_datagram(&err, 1, &mut rows).unwrap_err().to_string();
        assert!(msg.contains("refused"), "{msg}");
        assert!(rows.is_empty());
    }

    #[test]
    fn parses_a_time_wait_record() {
        let mut p = vec![0u8; MSG_LEN];
        p[0] = AF_INET;
        p[1] = 6;
        p[2] = 3;
        p[4..6].copy_from_slice(&8080u16.to_be_bytes());
        p[6..8].copy_from_slice(&40000u16.to_be_bytes());
        p[8..12].copy_from_slice(&[127, 0, 0, 1]);
        p[24..28].copy_from_slice(&[127, 0, 0, 2]);
        p[52..56].copy_from_slice(&59_000u32.to_ne_bytes());
        let row = parse_msg(&p).unwrap().unwrap();
        assert_eq!(row.state, TcpState::TimeWait);
        assert_eq!(row.local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(row.remote, "127.0.0.2:40000".parse().unwrap());
        assert_eq!(row.timer, Some(TimerKind::Timewait));
        assert_eq!(row.timer_ms, Some(59_000));
        assert_eq!(row.inode, 0);
        // State 0 and 13 are not TCP states: skipped, not an error.
        p[1] = 0;
        assert_eq!(parse_msg(&p).unwrap(), None);
        p[1] = 13;
        assert_eq!(parse_msg(&p).unwrap(), None);
    }
}
