//! Small helpers the lesson drivers share so that no call blocks without a bound: accept with
//! a deadline, and reading a sysctl the narration quotes.
//!
//! Left out on purpose: anything that teaches; those lines stay in the lesson binaries.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// accept() that gives up after `timeout` with `TimedOut`. The listener is left non-blocking;
/// the stream returned is blocking.
pub fn accept_timeout(
    listener: &TcpListener,
    timeout: Duration,
) -> io::Result<(TcpStream, SocketAddr)> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + timeout;
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                stream.set_nonblocking(false)?;
                return Ok((stream, peer));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no connection to accept within {timeout:?}"),
                    ));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
}

/// A numeric sysctl under /proc/sys, e.g. `net/ipv4/tcp_fin_timeout`; `None` if unreadable.
pub fn sysctl(path: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/sys/{path}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}
