//! The abortive-close lesson (07): a server sends a payload larger than the socket buffers
//! hold and closes; then it answers a request whose body it never reads and closes. The binary
//! provides the two server functions (how it closes); this module runs the client, which reads
//! at its own pace, and grades what the kernel reported: the client's bytes and errno, and the
//! TIME_WAIT the kernel keeps (or not) for the side that closed.
//!
//! Left out on purpose: other ways to get RST (a connect to a closed port, a peer that
//! reboots), and SO_LINGER with a timeout above zero, which makes close() block.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};
use tcplab_core::kernel::{self, errno_name};
use tcplab_core::segment::Sent;
use tcplab_core::sockets;
use tcplab_core::timeline::Side;
use tcplab_core::{Segment, TcpState};

use crate::catalog::Verdict;
use crate::facts;
use crate::lab::{Lab, Sides};
use crate::lessons::net::{self, IO_TIMEOUT};

/// What the server sends in part 1: 8 MiB, more than the send and receive buffers hold.
pub const PAYLOAD_BYTES: usize = 8 << 20;

/// The request line of part 2; the server reads exactly this much.
pub const REQUEST_LINE: &[u8] = b"GET /status\n";

/// The body the client sends after the line in part 2, which the server never reads.
pub const REQUEST_BODY_BYTES: usize = 1000;

/// The server's answer in part 2.
pub const REPLY: &[u8] = b"OK\n";

/// The client reads this much at a time, with a short pause after each read: slower than
/// the server writes, as over a real network.
const READ_CHUNK: usize = 64 * 1024;
const READ_PAUSE: Duration = Duration::from_millis(1);

/// Read one line (up to and including `\n`) one byte at a time, so that nothing after it
/// leaves the kernel's receive buffer. (A `BufReader` would read ahead into user space.)
pub fn read_line(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.last() != Some(&b'\n') {
        if stream.read(&mut byte)? == 0 {
            break;
        }
        line.push(byte[0]);
    }
    Ok(line)
}

/// What a client got: the bytes it read, then how the stream ended (None: a clean EOF).
struct Received {
    bytes: usize,
    error: Option<io::Error>,
}

/// Read until EOF or an error, pausing after each read; then close.
fn read_all(mut stream: TcpStream, pause: Duration) -> Received {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut bytes = 0;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Received { bytes, error: None },
            Ok(n) => {
                bytes += n;
                thread::sleep(pause);
            }
            Err(e) => {
                return Received {
                    bytes,
                    error: Some(e),
                };
            }
        }
    }
}

/// Part 2's client: send the request line and a body, read the reply to its end.
fn request_with_body(addr: SocketAddr) -> io::Result<Received> {
    let mut stream = net::connect(addr)?;
    let mut request = REQUEST_LINE.to_vec();
    request.extend(std::iter::repeat_n(b'x', REQUEST_BODY_BYTES));
    stream.write_all(&request)?;
    Ok(read_all(stream, Duration::ZERO))
}

/// Every socket of the connection has finished: only the listener and TIME_WAIT remain.
fn settled(s: &Sides) -> bool {
    s.total(Side::Server)
        == s.count(Side::Server, TcpState::Listen) + s.count(Side::Server, TcpState::TimeWait)
        && s.total(Side::Client) == s.count(Side::Client, TcpState::TimeWait)
}

fn error_fact(e: &Option<io::Error>) -> Option<String> {
    e.as_ref().map(errno_name)
}

fn is_reset(e: &Option<io::Error>) -> bool {
    e.as_ref().and_then(io::Error::raw_os_error) == Some(libc::ECONNRESET)
}

/// Run the lesson with the binary's two server functions.
pub fn run(
    lab: &mut Lab,
    send_and_close: fn(TcpStream, &[u8]) -> io::Result<()>,
    answer_and_close: fn(TcpStream) -> io::Result<()>,
) -> Result<()> {
    if lab.args.connections.is_some_and(|n| n != 1) {
        eprintln!("note: this lesson uses one connection at a time; --connections is ignored");
    }
    let listener = sockets::loopback_listener(false)?;
    let addr = listener.local_addr()?;
    lab.watch(addr.port())?;
    let payload = vec![b'.'; PAYLOAD_BYTES];
    lab.only_address(addr);

    // Part 1: a payload bigger than the buffers, then close.
    lab.step(format!(
        "Part 1: the server on {addr} sends {} MiB and closes; the client reads at its own pace",
        PAYLOAD_BYTES >> 20
    ));
    let abort_on_data = kernel::tcp_ext_counter("TCPAbortOnData");
    let (served, got) = thread::scope(|scope| -> Result<_> {
        let server = scope.spawn(|| -> io::Result<()> {
            let stream = net::accept_within(&listener, IO_TIMEOUT)?;
            send_and_close(stream, &payload)
        });
        let client = net::connect(addr).context("connect")?;
        let got = read_all(client, READ_PAUSE);
        let served = server.join().expect("the server thread panicked");
        Ok((served, got))
    })?;
    match &served {
        Ok(()) => lab.say(format!(
            "server: write_all() returned Ok for all {PAYLOAD_BYTES} bytes, then the socket was closed"
        )),
        Err(e) => lab.say(format!("server: failed with {}", errno_name(e))),
    }
    let bytes_sent = if served.is_ok() { PAYLOAD_BYTES } else { 0 };
    match &got.error {
        None => lab.say(format!(
            "client: read {} bytes, then EOF (the server's FIN)",
            got.bytes
        )),
        Some(e) => lab.say(format!(
            "client: read {} bytes, then read() failed with {}",
            got.bytes,
            errno_name(e)
        )),
    }
    let seen1 = lab.wait_until(Duration::from_secs(2), settled)?;
    lab.say(format!("kernel says: {}", seen1.describe()));
    let abort_on_data = kernel::tcp_ext_growth("TCPAbortOnData", abort_on_data);
    if let Some(grew) = abort_on_data {
        lab.say(format!(
            "the kernel's counter TcpExtTCPAbortOnData, where Linux counts a close() with \
             SO_LINGER 0 despite the name, grew by {grew} (it counts machine-wide)"
        ));
    }
    let tw1 = seen1.count(Side::Server, TcpState::TimeWait);
    let lost1 = is_reset(&got.error) && got.bytes < bytes_sent && tw1 == 0;
    if lost1 {
        lab.say(format!(
            "{} bytes never arrived: they were still in the server's send buffer when close() \
             sent RST. No side holds TIME_WAIT: the connection was aborted, not closed.",
            bytes_sent - got.bytes
        ));
    } else if tw1 > 0 {
        lab.say(
            "the server closed first (its FIN followed the last byte), so the kernel keeps \
             TIME_WAIT on the server side for 60 s",
        );
    }
    lab.fact(facts::BYTES_SENT, bytes_sent);
    lab.fact(facts::BYTES_RECEIVED, got.bytes);
    lab.fact(facts::CLIENT_ERROR, error_fact(&got.error));
    lab.fact(facts::SERVER_ERROR, served.as_ref().err().map(errno_name));
    lab.fact(facts::SERVER_TIME_WAIT, tw1);
    lab.fact("kernel_tcp_abort_on_data_growth", abort_on_data);

    // Part 2: close() with unread data in the receive buffer.
    lab.step(format!(
        "Part 2: the client sends a request line and {REQUEST_BODY_BYTES} more bytes; the \
         server reads only the line, answers and closes"
    ));
    let abort_on_close = kernel::tcp_ext_counter("TCPAbortOnClose");
    let (served2, got2) = thread::scope(|scope| -> Result<_> {
        let server = scope.spawn(|| -> io::Result<()> {
            let stream = net::accept_within(&listener, IO_TIMEOUT)?;
            answer_and_close(stream)
        });
        let got = request_with_body(addr).context("part 2 client")?;
        let served = server.join().expect("the server thread panicked");
        Ok((served, got))
    })?;
    if let Err(e) = &served2 {
        lab.say(format!("server: failed with {}", errno_name(e)));
    }
    match &got2.error {
        None => lab.say(format!(
            "client: read the {}-byte reply, then EOF",
            got2.bytes
        )),
        Some(e) => lab.say(format!(
            "client: read {} of the {}-byte reply, then read() failed with {}",
            got2.bytes,
            REPLY.len(),
            errno_name(e)
        )),
    }
    let seen = lab.wait_until(Duration::from_secs(2), |s| {
        settled(s) && (s.count(Side::Server, TcpState::TimeWait) > tw1 || is_reset(&got2.error))
    })?;
    lab.say(format!("kernel says: {}", seen.describe()));
    let abort_on_close = kernel::tcp_ext_growth("TCPAbortOnClose", abort_on_close);
    if let Some(grew) = abort_on_close {
        lab.say(format!(
            "the kernel's counter TcpExtTCPAbortOnClose (close() with unread data) grew by \
             {grew} (it counts machine-wide)"
        ));
    }
    let tw2 = seen
        .count(Side::Server, TcpState::TimeWait)
        .saturating_sub(tw1);

    // The wire: what the server said to each client, and what came back.
    let wire = lab.wire()?;
    let said = |part: usize| -> Option<Sent> {
        let segs: &[Segment] = wire.as_deref()?;
        // The clients in the order they first spoke: part 1's, then part 2's.
        let mut clients = Vec::new();
        for s in segs.iter().filter(|s| s.dst == addr) {
            if !clients.contains(&s.src) {
                clients.push(s.src);
            }
        }
        clients.get(part).map(|&c| Sent::between(segs, addr, c))
    };
    let (wire1, wire2) = (said(0), said(1));
    if let Some(w) = wire1 {
        lab.say(format!(
            "on the wire, part 1: the server sent {} RST and {} FIN; {} of the {bytes_sent} bytes \
             left it, the client acknowledged {}: {} were in flight when it ended, {} never \
             left the server's send buffer",
            w.rst,
            w.fin,
            w.bytes,
            w.acked,
            w.unacked(),
            (bytes_sent as u64).saturating_sub(u64::from(w.bytes))
        ));
        lab.fact(facts::WIRE_SERVER_RST, w.rst);
        lab.fact(facts::WIRE_SERVER_FIN, w.fin);
        lab.fact(facts::WIRE_BYTES_SENT, w.bytes);
        lab.fact(facts::WIRE_BYTES_ACKED, w.acked);
    }
    if let Some(w) = wire2 {
        lab.say(format!(
            "on the wire, part 2: the server sent {} RST and {} FIN after its {}-byte reply",
            w.rst, w.fin, w.bytes
        ));
        lab.fact(facts::UNREAD_WIRE_SERVER_RST, w.rst);
        lab.fact(facts::UNREAD_WIRE_SERVER_FIN, w.fin);
    }
    // With the wire in view a RST is graded as such; without, by its traces in the client's
    // errno and the missing TIME_WAIT.
    let lost1 = match wire1 {
        Some(w) => w.rst > 0,
        None => lost1,
    };
    let reset2 = match wire2 {
        Some(w) => w.rst > 0,
        None => is_reset(&got2.error) && tw2 == 0,
    };
    if reset2 {
        lab.say(
            "close() found unread bytes in the receive buffer and sent RST instead of FIN \
             (RFC 2525 section 2.17): no SO_LINGER involved, and again no TIME_WAIT.",
        );
    } else if tw2 > 0 {
        lab.say("the server read everything before closing: FIN, and TIME_WAIT on the server");
    }
    lab.fact("unread_bytes_at_close", REQUEST_BODY_BYTES);
    lab.fact("unread_reply_bytes_received", got2.bytes);
    lab.fact(facts::UNREAD_CLIENT_ERROR, error_fact(&got2.error));
    lab.fact(
        "unread_server_error",
        served2.as_ref().err().map(errno_name),
    );
    lab.fact(facts::UNREAD_SERVER_TIME_WAIT, tw2);
    lab.fact("kernel_tcp_abort_on_close_growth", abort_on_close);

    let graceful = |w: Option<Sent>| w.is_none_or(|w| w.rst == 0 && w.fin == 1);
    let clean1 = got.error.is_none()
        && bytes_sent > 0
        && got.bytes == bytes_sent
        && tw1 == 1
        && graceful(wire1);
    let clean2 = got2.error.is_none() && got2.bytes == REPLY.len() && tw2 == 1 && graceful(wire2);
    let (verdict, why) = if lost1 || reset2 {
        let mut parts = Vec::new();
        if lost1 {
            parts.push(match wire1 {
                Some(w) => format!(
                    "part 1: the server sent RST; the client acknowledged {} of {bytes_sent} \
                     bytes and read {} ({})",
                    w.acked,
                    got.bytes,
                    error_fact(&got.error).unwrap_or_else(|| "no error".into())
                ),
                None => format!(
                    "part 1: RST lost {} of {bytes_sent} bytes (ECONNRESET, no TIME_WAIT)",
                    bytes_sent - got.bytes
                ),
            });
        }
        if reset2 {
            parts.push(format!(
                "part 2: close() with unread data sent RST ({})",
                error_fact(&got2.error).unwrap_or_else(|| "no error on the client".into())
            ));
        }
        (Verdict::Leak, parts.join("; "))
    } else if clean1 && clean2 {
        (
            Verdict::Clean,
            format!(
                "every byte arrived ({bytes_sent} and {}), both connections ended with FIN and \
                 TIME_WAIT on the server",
                REPLY.len()
            ),
        )
    } else {
        // No error the client could see, yet not every connection ended with FIN and
        // TIME_WAIT: what is missing is said part by part.
        let mut parts = Vec::new();
        if !clean1 {
            parts.push(format!(
                "part 1: the client got {} of {bytes_sent} bytes (error {}), and the server \
                 holds {tw1} TIME_WAIT where a close with FIN leaves 1",
                got.bytes,
                error_fact(&got.error).unwrap_or_else(|| "none".into())
            ));
        }
        if !clean2 {
            parts.push(format!(
                "part 2: the client got {} of {} reply bytes (error {}), and the server holds \
                 {tw2} TIME_WAIT where a close with FIN leaves 1: a connection that vanishes \
                 without TIME_WAIT was aborted (RST), for example by data that arrived after \
                 shutdown(Read)",
                got2.bytes,
                REPLY.len(),
                error_fact(&got2.error).unwrap_or_else(|| "none".into())
            ));
        }
        (Verdict::Leak, parts.join("; "))
    };
    lab.finish(verdict, seen, &why)
}
