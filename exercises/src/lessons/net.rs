//! Blocking socket plumbing for the one-connection lessons (07, 08): accept and connect with
//! deadlines, and timeouts on every read and write. Errno names and the kernel's counters are
//! in `tcplab_core::kernel`.
//!
//! Left out on purpose: anything a lesson teaches. Lessons keep their closing code in the
//! binary; this module only makes sure no call blocks forever.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use tcplab_core::sockets;

/// How long any single blocking call in these lessons may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// accept() one connection within `timeout` ([`sockets::accept_within`]), with read and write
/// timeouts set on the accepted stream.
pub fn accept_within(listener: &TcpListener, timeout: Duration) -> io::Result<TcpStream> {
    let (stream, _) = sockets::accept_within(listener, timeout)?;
    with_timeouts(&stream)?;
    Ok(stream)
}

/// connect() within [`IO_TIMEOUT`], with read and write timeouts set.
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = sockets::connect(addr, IO_TIMEOUT)?;
    with_timeouts(&stream)?;
    Ok(stream)
}

fn with_timeouts(stream: &TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))
}
