//! The socket options the lessons turn on and off, over socket2.
//!
//! Every listener binds loopback and port 0 unless told otherwise: the kernel picks a free
//! port, so lessons and tests run side by side and a TIME_WAIT left by an earlier run never
//! breaks a later one. Every blocking call a lesson makes should carry a timeout; the helpers
//! here that connect take one.
//!
//! Left out on purpose: non-TCP sockets and every option no lesson needs.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// How a listener is set up.
#[derive(Debug, Clone, Copy)]
pub struct ListenOptions {
    /// Set SO_REUSEADDR before bind: how a restarted server binds while TIME_WAIT holds its port.
    pub reuseaddr: bool,
    /// The accept queue length passed to listen().
    pub backlog: i32,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            reuseaddr: false,
            backlog: 1024,
        }
    }
}

/// The loopback address of a family: 127.0.0.1 or ::1, port 0.
pub fn loopback(ipv6: bool) -> SocketAddr {
    if ipv6 {
        SocketAddr::from((Ipv6Addr::LOCALHOST, 0))
    } else {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
    }
}

/// A listener on `addr` with the given options.
pub fn listen_on(addr: SocketAddr, opts: ListenOptions) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(opts.reuseaddr)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(opts.backlog)?;
    Ok(socket.into())
}

/// A listener on 127.0.0.1 (or ::1) with a port the kernel picks.
pub fn loopback_listener(ipv6: bool) -> io::Result<TcpListener> {
    listen_on(loopback(ipv6), ListenOptions::default())
}

/// connect() with a timeout, so a lesson never hangs on a peer that does not answer.
pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    TcpStream::connect_timeout(&addr, timeout)
}

/// accept() that gives up after `timeout` with `TimedOut`, so a lesson never hangs on a client
/// that does not come. The listener is left non-blocking; the stream returned is blocking.
pub fn accept_within(
    listener: &TcpListener,
    timeout: Duration,
) -> io::Result<(TcpStream, SocketAddr)> {
    listener.set_nonblocking(true)?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                stream.set_nonblocking(false)?;
                return Ok((stream, peer));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if std::time::Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no client connected within {timeout:?}"),
                    ));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
}

/// A TCP socket of the family of `remote`, not yet bound or connected.
fn tcp_socket_for(remote: SocketAddr) -> io::Result<Socket> {
    Socket::new(
        Domain::for_address(remote),
        Type::STREAM,
        Some(Protocol::TCP),
    )
}

/// A socket bound to a local address before connecting (lesson 09 binds ports by hand).
pub fn connect_from(
    local: SocketAddr,
    remote: SocketAddr,
    reuseaddr: bool,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let socket = tcp_socket_for(remote)?;
    socket.set_reuse_address(reuseaddr)?;
    socket.bind(&local.into())?;
    socket.connect_timeout(&remote.into(), timeout)?;
    Ok(socket.into())
}

/// IP_LOCAL_PORT_RANGE (Linux 6.3+): the option number, at level IPPROTO_IP.
pub const IP_LOCAL_PORT_RANGE: i32 = 51;

/// IP_LOCAL_PORT_RANGE: narrow the ephemeral ports this one socket may get from connect()
/// (or from bind() to port 0) to `low..=high`, with no sysctl and no privilege. The kernel
/// keeps the part of it that lies inside net.ipv4.ip_local_port_range and ignores the option
/// when nothing does. Set it before connect().
pub fn set_local_port_range<S: AsFd>(socket: &S, low: u16, high: u16) -> io::Result<()> {
    // The option is a u32: the upper bound in the high 16 bits, the lower in the low 16.
    let packed = (u32::from(high) << 16) | u32::from(low);
    setsockopt_int(socket, libc::IPPROTO_IP, IP_LOCAL_PORT_RANGE, packed as i32)
}

/// The IP_LOCAL_PORT_RANGE of a socket, `(0, 0)` when it was never set.
pub fn local_port_range<S: AsFd>(socket: &S) -> io::Result<(u16, u16)> {
    let packed = getsockopt_int(socket, libc::IPPROTO_IP, IP_LOCAL_PORT_RANGE)? as u32;
    Ok(((packed & 0xffff) as u16, (packed >> 16) as u16))
}

/// Connect from an ephemeral port within `low..=high` (see [`set_local_port_range`]).
pub fn connect_in_port_range(
    remote: SocketAddr,
    (low, high): (u16, u16),
    timeout: Duration,
) -> io::Result<TcpStream> {
    let socket = tcp_socket_for(remote)?;
    set_local_port_range(&socket, low, high)?;
    socket.connect_timeout(&remote.into(), timeout)?;
    Ok(socket.into())
}

/// SO_LINGER: `None` turns it off (close() returns at once, the kernel finishes sending);
/// `Some(Duration::ZERO)` makes close() send RST, discard unsent data and skip TIME_WAIT.
pub fn set_linger<S: AsFd>(socket: &S, linger: Option<Duration>) -> io::Result<()> {
    SockRef::from(socket).set_linger(linger)
}

/// The SO_LINGER setting now in force.
pub fn linger<S: AsFd>(socket: &S) -> io::Result<Option<Duration>> {
    SockRef::from(socket).linger()
}

/// SO_REUSEADDR on or off.
pub fn set_reuseaddr<S: AsFd>(socket: &S, on: bool) -> io::Result<()> {
    SockRef::from(socket).set_reuse_address(on)
}

/// TCP_LINGER2: how long this socket may sit orphaned in FIN_WAIT2 (overrides
/// net.ipv4.tcp_fin_timeout for it; tcp(7)). Zero or less means "use the sysctl".
pub fn set_linger2<S: AsFd>(socket: &S, secs: i32) -> io::Result<()> {
    setsockopt_int(socket, libc::IPPROTO_TCP, libc::TCP_LINGER2, secs)
}

/// The TCP_LINGER2 value now in force, in seconds.
pub fn linger2<S: AsFd>(socket: &S) -> io::Result<i32> {
    getsockopt_int(socket, libc::IPPROTO_TCP, libc::TCP_LINGER2)
}

/// shutdown(): `Write` sends FIN and keeps reading (a half-close); `Read` stops reading;
/// `Both` does both. Unlike close(), it acts on the connection even if other descriptors
/// share it.
pub fn shutdown(stream: &TcpStream, how: Shutdown) -> io::Result<()> {
    stream.shutdown(how)
}

fn setsockopt_int<S: AsFd>(socket: &S, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: the pointer and length describe a live i32 for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_fd().as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn getsockopt_int<S: AsFd>(socket: &S, level: i32, name: i32) -> io::Result<i32> {
    let mut value: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: the pointers describe a live i32 and its length for the duration of the call.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_fd().as_raw_fd(),
            level,
            name,
            (&mut value as *mut i32).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `ip link set lo up`, with the SIOCGIFFLAGS/SIOCSIFFLAGS ioctls: a new namespace starts
/// with `lo` down. Shared by the lessons that make a namespace and by the tests.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: an ordinary socket used only for two interface ioctls on a zeroed ifreq with a
    // NUL-terminated name, closed before returning.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr);
        if rc == 0 {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr);
        }
        let err = io::Error::last_os_error();
        libc::close(fd);
        if rc == 0 { Ok(()) } else { Err(err) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_listener_gets_a_port() {
        for v6 in [false, true] {
            let l = loopback_listener(v6).unwrap();
            let addr = l.local_addr().unwrap();
            assert!(addr.ip().is_loopback());
            assert_ne!(addr.port(), 0);
            assert_eq!(addr.is_ipv6(), v6);
        }
    }

    #[test]
    fn options_take_effect() {
        let l = loopback_listener(false).unwrap();
        let c = connect(l.local_addr().unwrap(), Duration::from_secs(2)).unwrap();
        set_linger(&c, Some(Duration::ZERO)).unwrap();
        assert_eq!(linger(&c).unwrap(), Some(Duration::ZERO));
        set_linger(&c, None).unwrap();
        assert_eq!(linger(&c).unwrap(), None);
        set_linger2(&c, 3).unwrap();
        assert_eq!(linger2(&c).unwrap(), 3);
        set_reuseaddr(&c, true).unwrap();
        assert!(SockRef::from(&c).reuse_address().unwrap());
    }

    /// The packed u32 goes both ways, and connect() takes its port from the range (the top
    /// 100 ports of this namespace's ip_local_port_range).
    #[test]
    fn local_port_range_narrows_connect() {
        let l = loopback_listener(false).unwrap();
        let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
        let high: u16 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        let low = high - 99;
        let c = connect_in_port_range(l.local_addr().unwrap(), (low, high), Duration::from_secs(2))
            .unwrap();
        assert_eq!(local_port_range(&c).unwrap(), (low, high));
        let port = c.local_addr().unwrap().port();
        assert!((low..=high).contains(&port), "port {port}");
    }

    #[test]
    fn reuseaddr_listener_and_half_close() {
        let l = listen_on(
            loopback(false),
            ListenOptions {
                reuseaddr: true,
                backlog: 8,
            },
        )
        .unwrap();
        assert!(SockRef::from(&l).reuse_address().unwrap());
        let c = connect(l.local_addr().unwrap(), Duration::from_secs(2)).unwrap();
        let (mut s, _) = l.accept().unwrap();
        shutdown(&c, Shutdown::Write).unwrap();
        let mut buf = [0u8; 8];
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        // After the peer's shutdown(Write), read() returns 0: end of stream.
        assert_eq!(std::io::Read::read(&mut s, &mut buf).unwrap(), 0);
    }
}
