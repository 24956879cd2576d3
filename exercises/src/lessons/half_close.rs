//! The half-close lesson (08): a client sends a request and says it is done sending; the
//! server reads the request to EOF, takes a moment to prepare the reply, sends it and closes.
//! The binary provides the client (close() or shutdown(Write) after the request); this module
//! runs the server, shows the half-closed states while the reply is being prepared, and grades
//! what the kernel reported: the reply bytes the client read, the server's errno, and whether
//! the connection ended with TIME_WAIT (FIN) or vanished (RST).
//!
//! Left out on purpose: protocols that mark the end of a request themselves (a length
//! header, as HTTP does), which need no half-close; and shutdown(Read), which sends nothing.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use anyhow::Result;
use tcplab_core::kernel::errno_name;
use tcplab_core::segment::Sent;
use tcplab_core::timeline::Side;
use tcplab_core::{TcpState, sockets};

use crate::catalog::Verdict;
use crate::facts;
use crate::lab::{Lab, Sides};
use crate::lessons::net::{self, IO_TIMEOUT};

/// The client's request.
pub const REQUEST: &[u8] = b"REPORT everything\n";

/// The size of the server's reply.
pub const REPLY_BYTES: usize = 64 * 1024;

/// How long the server takes to prepare the reply once it has read the whole request.
pub const PREPARE: Duration = Duration::from_millis(300);

/// The server writes the reply in pieces of this size, as a server streaming a report would.
const REPLY_CHUNK: usize = 4 * 1024;

/// What the server saw.
struct Served {
    request_bytes: usize,
    reply_bytes_written: usize,
    error: Option<io::Error>,
}

/// Read the request to EOF, prepare, send the reply, close.
fn server(listener: &std::net::TcpListener) -> io::Result<Served> {
    let mut stream = net::accept_within(listener, IO_TIMEOUT)?;
    let mut request = Vec::new();
    stream.read_to_end(&mut request)?; // returns at the client's FIN: the request is complete
    thread::sleep(PREPARE);
    let reply = vec![b'r'; REPLY_BYTES];
    let mut written = 0;
    let mut error = None;
    for chunk in reply.chunks(REPLY_CHUNK) {
        match stream.write_all(chunk) {
            Ok(()) => written += chunk.len(),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    if error.is_none() {
        // An RST may arrive after the last write succeeded: SO_ERROR holds it.
        thread::sleep(Duration::from_millis(20));
        error = stream.take_error()?;
    }
    Ok(Served {
        request_bytes: request.len(),
        reply_bytes_written: written,
        error,
    })
}

/// Call right after the client has said it is done sending: waits until the kernel shows the
/// half-closed connection (server CLOSE_WAIT, client FIN_WAIT2) and narrates it.
pub fn show_half_closed(lab: &Lab) -> Result<Sides> {
    let seen = lab.wait_until(Duration::from_secs(1), |s| {
        s.count(Side::Server, TcpState::CloseWait) == 1
            && s.count(Side::Client, TcpState::FinWait2) == 1
    })?;
    lab.say(format!(
        "kernel says (request sent, server preparing the reply): {}",
        seen.describe()
    ));
    lab.say(
        "the client's FIN was acknowledged (FIN_WAIT2) and the server read EOF (CLOSE_WAIT). \
         These states look the same after close() and after shutdown(Write): only the client \
         program knows whether it can still read the reply.",
    );
    lab.fact(
        facts::HALF_CLOSED_SERVER_CLOSE_WAIT,
        seen.count(Side::Server, TcpState::CloseWait),
    );
    lab.fact(
        facts::HALF_CLOSED_CLIENT_FIN_WAIT2,
        seen.count(Side::Client, TcpState::FinWait2),
    );
    Ok(seen)
}

/// Only the listener and TIME_WAIT are left: the connection has ended.
fn ended(s: &Sides) -> bool {
    s.total(Side::Server)
        == s.count(Side::Server, TcpState::Listen) + s.count(Side::Server, TcpState::TimeWait)
        && s.total(Side::Client) == s.count(Side::Client, TcpState::TimeWait)
}

/// Run the lesson with the binary's client, which returns the reply it read.
pub fn run(lab: &mut Lab, client: fn(&Lab, SocketAddr) -> Result<Vec<u8>>) -> Result<()> {
    if lab.args.connections.is_some_and(|n| n != 1) {
        eprintln!("note: this lesson uses one connection at a time; --connections is ignored");
    }
    let listener = sockets::loopback_listener(false)?;
    let addr = listener.local_addr()?;
    lab.watch(addr.port())?;
    lab.only_address(addr);
    lab.step(format!(
        "A server on {addr} reads a request up to EOF, prepares a {REPLY_BYTES}-byte reply for \
         {} ms, sends it and closes",
        PREPARE.as_millis()
    ));
    lab.step(format!(
        "The client sends a {}-byte request and says it is done sending",
        REQUEST.len()
    ));
    let (served, reply) = thread::scope(|scope| -> Result<_> {
        let server = scope.spawn(|| server(&listener));
        let lab: &Lab = lab;
        let reply = client(lab, addr);
        let served = server.join().expect("the server thread panicked");
        Ok((served, reply))
    })?;
    let served = served.map_err(|e| anyhow::anyhow!("server: {}", errno_name(&e)))?;
    let reply = reply?;

    lab.step("The server sent its reply and closed");
    lab.say(format!(
        "server: read a {}-byte request, wrote {} of {REPLY_BYTES} reply bytes, {}",
        served.request_bytes,
        served.reply_bytes_written,
        match &served.error {
            None => "no error".to_string(),
            Some(e) => format!("then the kernel returned {}", errno_name(e)),
        }
    ));
    lab.say(format!(
        "client: received {} of {REPLY_BYTES} reply bytes",
        reply.len()
    ));
    let seen = lab.wait_until(Duration::from_secs(2), ended)?;
    lab.say(format!("kernel says: {}", seen.describe()));
    let client_time_wait = seen.count(Side::Client, TcpState::TimeWait);
    lab.fact("request_bytes", served.request_bytes);
    lab.fact(facts::REPLY_BYTES_EXPECTED, REPLY_BYTES);
    lab.fact("reply_bytes_written", served.reply_bytes_written);
    lab.fact(facts::REPLY_BYTES_RECEIVED, reply.len());
    lab.fact(facts::SERVER_ERROR, served.error.as_ref().map(errno_name));
    lab.fact(facts::CLIENT_TIME_WAIT, client_time_wait);

    // The wire: what the client's kernel said after its FIN, and how much of the reply it
    // acknowledged.
    let wire = lab.wire()?;
    // The one client: whoever first sent to the server's port.
    let client_addr = wire
        .as_deref()
        .and_then(|segs| segs.iter().find(|s| s.dst == addr).map(|s| s.src));
    let said = wire
        .as_deref()
        .zip(client_addr)
        .map(|(segs, c)| (Sent::between(segs, c, addr), Sent::between(segs, addr, c)));
    if let Some((client, server)) = said {
        lab.say(format!(
            "on the wire: the client sent {} FIN and {} RST; the server's reply put {} bytes on \
             the wire, the client acknowledged {}",
            client.fin, client.rst, server.bytes, server.acked
        ));
        lab.fact(facts::WIRE_CLIENT_FIN, client.fin);
        lab.fact(facts::WIRE_CLIENT_RST, client.rst);
        lab.fact(facts::WIRE_REPLY_BYTES_SENT, server.bytes);
        lab.fact(facts::WIRE_REPLY_BYTES_ACKED, server.acked);
    }
    // With the wire in view, a RST from the client is what loses the reply; without, its
    // traces: a short reply and no TIME_WAIT.
    let reset = match said {
        Some((client, _)) => client.rst > 0,
        None => reply.len() < REPLY_BYTES && client_time_wait == 0,
    };
    let (verdict, why) = if reset {
        lab.say(
            "the reply reached a socket the client had closed (an orphan: no descriptor, the \
             kernel alone holds it in FIN_WAIT2). Its kernel threw the data away and answered \
             with RST; the server's next write failed, and no TIME_WAIT is left anywhere: the \
             connection was reset, not closed.",
        );
        (
            Verdict::Leak,
            format!(
                "reply lost: {} of {REPLY_BYTES} bytes received, server error {}",
                reply.len(),
                served
                    .error
                    .as_ref()
                    .map(errno_name)
                    .unwrap_or_else(|| "none".into())
            ),
        )
    } else if reply.len() == REPLY_BYTES
        && said.is_none_or(|(client, server)| client.rst == 0 && server.fin == 1)
        && reply.iter().all(|&b| b == b'r')
        && served.error.is_none()
        && client_time_wait == 1
    {
        lab.say(
            "the whole reply arrived; the client, which sent the first FIN, holds TIME_WAIT \
             (60 s), as after any orderly close.",
        );
        (
            Verdict::Clean,
            format!("all {REPLY_BYTES} reply bytes received; TIME_WAIT on the client"),
        )
    } else {
        // Whatever the client function returned, the kernel's side decides: a reply read to
        // the end and an orderly close leave exactly one TIME_WAIT, on the client.
        (
            Verdict::Leak,
            format!(
                "not an orderly exchange: the client function returned {} of {REPLY_BYTES} \
                 bytes, the server's writes ended with {}, and the kernel shows {} \
                 TIME_WAIT on the client where a reply read to its end and a close with FIN \
                 leave 1 ({})",
                reply.len(),
                served
                    .error
                    .as_ref()
                    .map(errno_name)
                    .unwrap_or_else(|| "no error".into()),
                client_time_wait,
                seen.describe()
            ),
        )
    };
    lab.finish(verdict, seen, &why)
}
