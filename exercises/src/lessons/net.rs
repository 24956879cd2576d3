//! Blocking socket plumbing for the one-connection lessons (07, 08): accept and connect with
//! deadlines, timeouts on every read and write, and the kernel's errno names.
//!
//! Left out on purpose: anything a lesson teaches. Lessons keep their closing code in the
//! binary; this module only makes sure no call blocks forever.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use tcplab_core::TcpState;
use tcplab_core::observe::SocketRow;
use tcplab_core::sockets;

use crate::lab::{Lab, Sides};

/// How long any single blocking call in these lessons may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// accept() one connection within `timeout` (the listener is switched to non-blocking), with
/// read and write timeouts set on the accepted stream.
pub fn accept_within(listener: &TcpListener, timeout: Duration) -> io::Result<TcpStream> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + timeout;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                with_timeouts(&stream)?;
                return Ok(stream);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no client connected in time",
                    ));
                }
                thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
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

/// The kernel's name for the error a call returned: "ECONNRESET", "EPIPE", ... (a timeout
/// reads as "timeout"), or the error's text when it carries no errno.
pub fn errno_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ECONNRESET) => "ECONNRESET".into(),
        Some(libc::EPIPE) => "EPIPE".into(),
        Some(libc::ECONNREFUSED) => "ECONNREFUSED".into(),
        Some(libc::ENOTCONN) => "ENOTCONN".into(),
        Some(libc::EAGAIN) | Some(libc::ETIMEDOUT) => "timeout".into(),
        Some(n) => format!("errno {n} ({e})"),
        None => e.to_string(),
    }
}

/// A counter of the kernel's TcpExt MIB (`nstat`'s TcpExtNAME), from /proc/net/netstat.
/// These count for the whole network namespace: other programs may add to them, so lessons
/// narrate them as supporting evidence and never grade on them.
pub fn tcp_ext_counter(name: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names = lines.next()?.split_whitespace();
    let values = lines.next()?.split_whitespace();
    names
        .zip(values)
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
}

/// How much a TcpExt counter grew since `before` (None when /proc/net/netstat is unreadable).
pub fn counter_growth(name: &str, before: Option<u64>) -> Option<u64> {
    Some(tcp_ext_counter(name)?.saturating_sub(before?))
}

/// The lesson's own connections, by exact address. A port filter alone also matches other
/// programs' sockets: an old TIME_WAIT towards the same port number from an earlier run, or a
/// `[::1]` socket that shares the number with our `127.0.0.1` listener. Counting only 4-tuples
/// the lesson made keeps the verdict true while other tests run.
#[derive(Debug, Clone)]
pub struct Own {
    pub server: SocketAddr,
    pub clients: Vec<SocketAddr>,
}

impl Own {
    /// The listener's address; add each client's local address as it connects.
    pub fn new(server: SocketAddr) -> Own {
        Own {
            server,
            clients: Vec::new(),
        }
    }

    fn keeps(&self, r: &SocketRow) -> bool {
        if r.local == self.server {
            r.state == TcpState::Listen || self.clients.contains(&r.remote)
        } else {
            r.remote == self.server && self.clients.contains(&r.local)
        }
    }

    /// The kernel's view now, narrowed to our connections, counted per side and state.
    pub fn sides(&self, lab: &Lab) -> anyhow::Result<Sides> {
        let rows: Vec<SocketRow> = lab.rows()?.into_iter().filter(|r| self.keeps(r)).collect();
        Ok(Sides::from_rows(&rows, self.server.port()))
    }

    /// Poll until `done` holds or `timeout` passes; the last view either way.
    pub fn wait_until(
        &self,
        lab: &Lab,
        timeout: Duration,
        done: impl Fn(&Sides) -> bool,
    ) -> anyhow::Result<Sides> {
        let deadline = Instant::now() + timeout;
        loop {
            let sides = self.sides(lab)?;
            if done(&sides) || Instant::now() >= deadline {
                return Ok(sides);
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}
