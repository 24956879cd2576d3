//! The TCP sockets this process holds descriptors for, read from the kernel: every entry of
//! /proc/self/fd that is a socket, asked with getsockopt() what it is (SO_DOMAIN, SO_TYPE,
//! SO_PROTOCOL), where it is bound (getsockname, getpeername) and what state the kernel keeps
//! it in (TCP_INFO's tcpi_state).
//!
//! This is how a lesson tells "the socket is closed" from "the connection is over but the
//! program still holds the descriptor": a handler that calls shutdown() on EOF and keeps the
//! stream moves the socket out of CLOSE_WAIT, and sock_diag stops listing it once the peer's
//! last ACK arrives, but the descriptor is still taken. Only the descriptor table shows that.
//!
//! Written by hand because no crate lists a process's sockets with their TCP state; the
//! getsockopt calls are the kernel's own answer, not a guess from /proc text. Left out on
//! purpose: other processes (their descriptors cannot be asked with getsockopt; see
//! [`super::pids`] for who holds an inode) and non-TCP sockets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::Serialize;

use crate::state::TcpState;

/// One TCP socket descriptor of this process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldSocket {
    pub fd: i32,
    /// The state the kernel keeps the socket in (CLOSE once the connection is over).
    pub state: TcpState,
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
}

/// Every TCP socket this process holds a descriptor for, in fd order. A descriptor closed
/// while the list is made is left out.
pub fn held_tcp_sockets() -> Vec<HeldSocket> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let mut fds: Vec<i32> = dir
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read_link(e.path())
                .map(|l| l.to_string_lossy().starts_with("socket:"))
                .unwrap_or(false)
        })
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect();
    fds.sort_unstable();
    fds.into_iter().filter_map(held_socket).collect()
}

fn int_opt(fd: i32, level: i32, name: i32) -> Option<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `v`; a stale fd only yields EBADF.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(v)
}

fn held_socket(fd: i32) -> Option<HeldSocket> {
    let domain = int_opt(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        return None;
    }
    if int_opt(fd, libc::SOL_SOCKET, libc::SO_TYPE)? != libc::SOCK_STREAM
        || int_opt(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL)? != libc::IPPROTO_TCP
    {
        return None;
    }
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: TCP_INFO fills at most `len` bytes of the struct we own.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    Some(HeldSocket {
        fd,
        state: TcpState::from_code(info.tcpi_state)?,
        local: address(fd, libc::getsockname),
        remote: address(fd, libc::getpeername),
    })
}

type NameFn = unsafe extern "C" fn(i32, *mut libc::sockaddr, *mut libc::socklen_t) -> i32;

fn address(fd: i32, call: NameFn) -> Option<SocketAddr> {
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockname/getpeername write at most `len` bytes into the storage we own.
    if unsafe {
        call(
            fd,
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    } != 0
    {
        return None;
    }
    match ss.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a: &libc::sockaddr_in = unsafe { &*(&ss as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))),
                u16::from_be(a.sin_port),
            ))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a: &libc::sockaddr_in6 =
                unsafe { &*(&ss as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr)),
                u16::from_be(a.sin6_port),
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::time::Duration;

    fn held_on(port: u16) -> Vec<HeldSocket> {
        held_tcp_sockets()
            .into_iter()
            .filter(|h| h.local.map(|a| a.port()) == Some(port))
            .collect()
    }

    /// shutdown() ends the connection, but the descriptor is still held until the drop: the
    /// table shows it, in CLOSE (or LAST_ACK while the peer's ACK is on its way).
    #[test]
    fn a_shut_down_socket_is_still_held_until_dropped() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut served, _) = listener.accept().unwrap();
        let states: Vec<TcpState> = held_on(port).iter().map(|h| h.state).collect();
        assert_eq!(states, vec![TcpState::Listen, TcpState::Established]);

        drop(client);
        served
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        assert_eq!(served.read(&mut [0u8; 4]).unwrap(), 0);
        assert_eq!(held_on(port)[1].state, TcpState::CloseWait);
        served.shutdown(Shutdown::Both).unwrap();
        let after = held_on(port);
        assert_eq!(after.len(), 2, "{after:?}");
        assert!(
            matches!(after[1].state, TcpState::LastAck | TcpState::Close),
            "{after:?}"
        );
        drop(served);
        assert_eq!(held_on(port).len(), 1);
    }
}
