//! Lesson 12's driver: a half-open connection. The client is the scripted peer (a TCP
//! endpoint that is no kernel socket, on the other end of `tun0` in a network namespace of
//! the lesson's own): it connects, exchanges one line, then vanishes without FIN or RST, as a
//! machine that lost power or a NAT box that forgot the flow would. Nothing it sends tells the
//! server's kernel; only a timer of the server's own can find out.
//!
//! The binary provides the server (how it listens and how it handles a connection); this
//! module plays the peer, watches the server's socket with sock_diag, reads the kernel's
//! segments on the link (the keepalive probes nobody answers) and takes the errno the
//! kernel returns to the handler's read().
//!
//! What the kernel does (Linux 6.x, `tcp_keepalive_timer` in net/ipv4/tcp_timer.c): with
//! SO_KEEPALIVE, after TCP_KEEPIDLE seconds of silence it sends a probe (a zero-length
//! segment one byte below what the peer acknowledged, so that a live peer must answer), then
//! one every TCP_KEEPINTVL seconds; after TCP_KEEPCNT unanswered probes (or, when
//! TCP_USER_TIMEOUT is set, once that much time has passed since the last answer) it sends a
//! RST and ends the socket: the next read() returns ETIMEDOUT.
//!
//! Left out on purpose: data left unacknowledged (then the retransmission timer, not
//! keepalive, decides, bounded by tcp_retries2 or TCP_USER_TIMEOUT), and IPv6.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tcplab_core::TcpState;
use tcplab_core::peer::link::LOCAL_IP;
use tcplab_core::peer::script::{TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN};
use tcplab_core::peer::wire::Wire;

use crate::catalog::Verdict;
use crate::lab::Lab;
use crate::lessons::scripted::{self, Peer, STEP_TIMEOUT, state_of};

/// How long the lesson watches the server's socket after the peer vanished. The fixed
/// server's keepalive (1 s idle, 2 probes 1 s apart) ends it after about 3 s.
pub const WATCH: Duration = Duration::from_secs(5);
/// How long any one step (accept, a segment from the kernel) may take.
/// The handler's read timeout, so that it sees the lesson's stop flag.
const READ_POLL: Duration = Duration::from_millis(100);
/// What the peer sends before it vanishes.
const LINE: &[u8] = b"are you there?\n";

/// How the binary's server listens (the fixed one may set keepalive on the listener).
pub type Listen = fn(SocketAddr) -> io::Result<TcpListener>;
/// How it serves one connection, until read() ends it or `stop` is set.
pub type Handle = fn(TcpStream, &AtomicBool) -> io::Result<()>;

/// The errno's name, as the kernel returned it to read().
fn errno_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => tcplab_core::peer::sys::errno_name(n),
        None => e.to_string(),
    }
}

/// Run the lesson with the binary's server.
pub fn run(lab: &mut Lab, listen: Listen, handle: Handle) -> Result<()> {
    let (link, rx) = scripted::enter(lab, "the client is a scripted peer")?;
    let listener = listen(SocketAddr::from((LOCAL_IP, 0))).context("the server's listen()")?;
    let server = listener.local_addr()?;
    lab.watch(server.port())?;
    let sysctl = |knob: &str| tcplab_core::kernel::sysctl(&format!("net/ipv4/{knob}"));
    lab.fact("tcp_keepalive_time", sysctl("tcp_keepalive_time"));
    lab.fact("tcp_keepalive_intvl", sysctl("tcp_keepalive_intvl"));
    lab.fact("tcp_keepalive_probes", sysctl("tcp_keepalive_probes"));

    let stop = Arc::new(AtomicBool::new(false));
    let served = {
        let stop = stop.clone();
        std::thread::spawn(move || -> io::Result<()> {
            let (stream, _) = tcplab_core::sockets::accept_within(&listener, STEP_TIMEOUT)?;
            stream.set_read_timeout(Some(READ_POLL))?;
            stream.set_write_timeout(Some(STEP_TIMEOUT))?;
            handle(stream, &stop)
        })
    };
    let mut peer = Peer::new(link, rx, server);
    let result = lesson(lab, &mut peer, &served, server);
    let mut served = Some(served);
    let mut stop_server = move || {
        stop.store(true, Ordering::Relaxed);
        // The handler sees the flag within READ_POLL.
        served.take().map(|h| h.join())
    };
    let (verdict, why, sides) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = stop_server();
            return Err(e);
        }
    };
    // A handler that is done returned what the kernel said; one still running is waiting
    // in read() for a peer that is not there.
    let read_result = if verdict == Verdict::Clean {
        match stop_server() {
            Some(Ok(Ok(()))) => "returned without an error".to_string(),
            Some(Ok(Err(e))) => errno_name(&e),
            _ => bail!("the server's thread panicked"),
        }
    } else {
        "still waiting".to_string()
    };
    lab.fact("server_read_result", &read_result);
    lab.say(format!("the handler's read(): {read_result}"));
    if verdict == Verdict::Clean {
        lab.require(
            read_result == "ETIMEDOUT",
            format!(
                "the handler's read() ended with {read_result}, not the kernel's ETIMEDOUT for a \
                 peer that stopped answering"
            ),
        );
    }
    let finished = lab.finish(verdict, sides, &why);
    if verdict != Verdict::Clean {
        let _ = stop_server();
    }
    drop(peer);
    finished
}

fn lesson(
    lab: &mut Lab,
    peer: &mut Peer,
    served: &std::thread::JoinHandle<io::Result<()>>,
    server: SocketAddr,
) -> Result<(Verdict, String, crate::lab::Sides)> {
    lab.step(format!(
        "The peer connects to the server at {server}, sends a line and reads the echo"
    ));
    peer.connect()?;
    peer.send(TCP_ACK | TCP_PSH, vec![], LINE)?;
    peer.seq = peer.seq.wrapping_add(LINE.len() as u32);
    let echo = peer.expect("echo", |w| !w.payload.is_empty())?;
    peer.ack = echo.seq.wrapping_add(echo.payload.len() as u32);
    // The echo acknowledged: nothing is outstanding, so only keepalive could probe.
    peer.send(TCP_ACK, vec![], &[])?;
    let established = lab.wait_until(STEP_TIMEOUT, |s| {
        s.count(tcplab_core::timeline::Side::Server, TcpState::Established) == 1
    })?;
    lab.say(format!("kernel says: {}", established.describe()));

    lab.step(format!(
        "The peer vanishes: no FIN, no RST, no answer to anything. The lesson watches the \
         server's socket for {} s",
        WATCH.as_secs()
    ));
    let vanished = Instant::now();
    let from = peer.seen.len();
    let mut states: Vec<TcpState> = Vec::new();
    let mut gone_after = None;
    let deadline = vanished + WATCH;
    while Instant::now() < deadline {
        peer.drain();
        match state_of(lab, server)? {
            Some(s) => {
                if states.last() != Some(&s) {
                    lab.say(format!(
                        "after {} ms: the server's socket is {s}",
                        vanished.elapsed().as_millis()
                    ));
                    states.push(s);
                }
            }
            None => {
                gone_after = Some(vanished.elapsed());
                lab.say(format!(
                    "after {} ms: the server's socket is gone from the kernel's table",
                    vanished.elapsed().as_millis()
                ));
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The handler's read() learns of the end within its poll interval.
    let until = Instant::now() + STEP_TIMEOUT;
    while gone_after.is_some() && !served.is_finished() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    peer.drain();

    // What the kernel sent after the peer vanished.
    let after: Vec<&(Instant, Wire)> = peer.seen[from..].iter().collect();
    let acked = peer.ack;
    let probes: Vec<u128> = after
        .iter()
        .filter(|(_, w)| {
            w.flags & (TCP_SYN | TCP_FIN | TCP_RST) == 0
                && w.payload.is_empty()
                && w.seq == acked.wrapping_sub(1)
        })
        .map(|(at, _)| at.saturating_duration_since(vanished).as_millis())
        .collect();
    let resets = after.iter().filter(|(_, w)| w.flags & TCP_RST != 0).count();
    lab.say(format!(
        "on the wire meanwhile, from the server's kernel to the peer: {} segment(s)",
        after.len()
    ));
    for ms in &probes {
        lab.say(format!(
            "after {ms} ms: a keepalive probe (no data, its sequence number one below what the \
             peer acknowledged, so that a live peer must answer); no answer"
        ));
    }
    if resets > 0 {
        lab.say("the server's kernel gave up: it sent a RST into the silence");
    }
    let names: Vec<String> = states.iter().map(|s| s.to_string()).collect();
    lab.fact("states_seen", &names);
    lab.fact("keepalive_probes", probes.len());
    lab.fact("probe_ms", &probes);
    lab.fact("resets_sent", resets);
    lab.fact("gone_after_ms", gone_after.map(|d| d.as_millis() as u64));
    let sides = lab.sides()?;

    if let Some(d) = gone_after {
        if probes.is_empty() {
            bail!(
                "the server's socket ended after {} ms without a keepalive probe on the wire: \
                 something else ended it",
                d.as_millis()
            );
        }
        let read = if served.is_finished() {
            "read() returned the kernel's error"
        } else {
            "the handler has not returned yet"
        };
        return Ok((
            Verdict::Clean,
            format!(
                "the kernel sent {} unanswered keepalive probe(s) and ended the connection {} \
                 ms after the peer vanished ({read})",
                probes.len(),
                d.as_millis()
            ),
            sides,
        ));
    }
    match states.last() {
        Some(s @ (TcpState::Established | TcpState::CloseWait)) => Ok((
            Verdict::Leak,
            format!(
                "the server's socket stayed {s} for {} s with nobody at the other end ({} \
                 keepalive probe(s) on the wire)",
                WATCH.as_secs(),
                probes.len()
            ),
            sides,
        )),
        other => bail!("the kernel showed neither outcome: last state {other:?}, {names:?}"),
    }
}
