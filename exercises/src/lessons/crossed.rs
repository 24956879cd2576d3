//! Lesson 14's driver: a simultaneous close between two kernel sockets, with the FINs made
//! to cross on the wire.
//!
//! On loopback a FIN arrives within microseconds, so two programs almost never close inside
//! that window. Here both sockets are in the lesson's namespace, and their
//! segments go through the scripted peer's link, `tun0`, where a relay passes them on: the
//! client connects to 192.0.2.1, the relay rewrites the addresses so that the segment
//! reaches the server's listener from 192.0.2.2, and back. Ports, sequence numbers and
//! options are left as they are. The relay holds the first FIN it sees until the other
//! side's FIN has left too, then delivers both: each kernel receives a FIN while its own is
//! unacknowledged.
//!
//! What the kernel does (Linux 6.x, `tcp_rcv_state_process()` and `tcp_fin()` in
//! net/ipv4/tcp_input.c): a FIN that arrives in `FIN_WAIT1` moves the socket to `CLOSING`;
//! the ACK of its own FIN then moves it to `TIME_WAIT`. RFC 9293 section 3.6, case 2.
//!
//! Left out on purpose: a relay for anything but one connection and IPv4.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tcplab_core::TcpState;
use tcplab_core::peer::link::{LOCAL_IP, Link, REMOTE_IP, Sent};
use tcplab_core::peer::script::TCP_FIN;
use tcplab_core::peer::wire::Wire;
use tcplab_core::timeline::Side;

use crate::catalog::Verdict;
use crate::lab::Lab;
use crate::lessons::scripted::{self, STEP_TIMEOUT};

/// The address the server appears to have, to the client.
const SERVER_SEEN_AT: Ipv4Addr = REMOTE_IP;
/// The address the client appears to have, to the server.
const CLIENT_SEEN_AT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// How long the relay holds a FIN waiting for the other one.
const FIN_HOLD: Duration = Duration::from_secs(3);
/// After the FINs crossed, how late the relay delivers each segment (the ACKs of the FINs):
/// long enough for a snapshot to find both sockets in CLOSING, shorter than the 200 ms
/// minimum retransmission timeout, so no FIN is sent twice.
const ACK_DELAY: Duration = Duration::from_millis(100);

/// What the relay did with the FINs.
#[derive(Debug, Default, Clone)]
pub struct Relayed {
    /// FINs held until the other side's FIN left.
    pub held: usize,
    /// FINs let go without their pair (held longer than [`FIN_HOLD`]).
    pub unpaired: usize,
}

/// Pass every segment from one socket to the other, holding FINs until both have left.
fn relay(link: Link, rx: Receiver<Sent>, stop: Arc<AtomicBool>) -> Relayed {
    let mut held: Vec<(Instant, Wire)> = Vec::new();
    let mut late: Vec<(Instant, Wire)> = Vec::new();
    let mut crossed = false;
    let mut out = Relayed::default();
    let forward = |link: &Link, mut w: Wire| {
        if w.dst == SERVER_SEEN_AT {
            // client -> server
            w.src = CLIENT_SEEN_AT;
            w.dst = LOCAL_IP;
        } else if w.dst == CLIENT_SEEN_AT {
            // server -> client
            w.src = SERVER_SEEN_AT;
            w.dst = LOCAL_IP;
        } else {
            return;
        }
        if let Ok(bytes) = w.build() {
            let _ = link.inject(&bytes);
        }
    };
    while !stop.load(Ordering::Relaxed) {
        if let Some((at, _)) = held.first() {
            if at.elapsed() > FIN_HOLD {
                out.unpaired += held.len();
                for (_, w) in held.drain(..) {
                    forward(&link, w);
                }
            }
        }
        let now = Instant::now();
        for (_, w) in late.iter().filter(|(due, _)| *due <= now) {
            forward(&link, w.clone());
        }
        late.retain(|(due, _)| *due > now);
        let Ok(sent) = rx.recv_timeout(Duration::from_millis(2)) else {
            continue;
        };
        let Some(w) = Wire::parse(&sent.bytes) else {
            continue;
        };
        if w.flags & TCP_FIN != 0 && !held.iter().any(|(_, h)| h.dst == w.dst) {
            let other = held.iter().any(|(_, h)| h.dst != w.dst);
            held.push((Instant::now(), w));
            if other {
                // Both FINs have left their kernels: deliver them, crossing.
                out.held += held.len();
                for (_, w) in held.drain(..) {
                    forward(&link, w);
                }
                crossed = true;
            }
            continue;
        }
        if crossed {
            late.push((Instant::now() + ACK_DELAY, w));
        } else {
            forward(&link, w);
        }
    }
    out
}

/// The code each side runs to close (the binary's).
pub type Close = fn(TcpStream) -> std::io::Result<()>;

/// Run the lesson with the binary's close.
pub fn run(lab: &mut Lab, close: Close) -> Result<()> {
    let (link, rx) = scripted::enter(
        lab,
        "both sockets are the kernel's; a relay passes their segments on",
    )?;
    let listener = TcpListener::bind(SocketAddr::from((LOCAL_IP, 0)))?;
    let port = listener.local_addr()?.port();
    lab.watch(port)?;
    let stop = Arc::new(AtomicBool::new(false));
    let relay = {
        let stop = stop.clone();
        std::thread::spawn(move || relay(link, rx, stop))
    };
    let result = lesson(lab, &listener, port, close);
    stop.store(true, Ordering::Relaxed);
    let relayed = relay.join().unwrap_or_default();
    let (verdict, why, sides) = result?;
    lab.fact("fins_held_and_crossed", relayed.held);
    lab.fact("fins_unpaired", relayed.unpaired);
    lab.finish(verdict, sides, &why)?;
    drop(listener);
    Ok(())
}

fn lesson(
    lab: &mut Lab,
    listener: &TcpListener,
    port: u16,
    close: Close,
) -> Result<(Verdict, String, crate::lab::Sides)> {
    let target = SocketAddr::from((SERVER_SEEN_AT, port));
    lab.step(format!(
        "The client connects to {target}; the relay on {} hands it to the server's listener",
        tcplab_core::peer::link::DEVICE
    ));
    let client = tcplab_core::sockets::connect(target, STEP_TIMEOUT).context("connect")?;
    let (server, _) =
        tcplab_core::sockets::accept_within(listener, STEP_TIMEOUT).context("accept")?;
    let open = lab.wait_until(STEP_TIMEOUT, |s| {
        s.count(Side::Client, TcpState::Established) == 1
            && s.count(Side::Server, TcpState::Established) == 1
    })?;
    lab.say(format!("kernel says: {}", open.describe()));

    lab.step("The client closes: its FIN leaves, and the relay holds it");
    close(client).context("the client's close")?;
    let one = lab.wait_until(STEP_TIMEOUT, |s| {
        s.count(Side::Client, TcpState::FinWait1) == 1
    })?;
    lab.say(format!("kernel says: {}", one.describe()));

    lab.step("The server closes too, before the client's FIN reached it: the FINs cross");
    close(server).context("the server's close")?;
    let crossing = lab.wait_until(STEP_TIMEOUT, |s| {
        s.count(Side::Client, TcpState::Closing) == 1
            && s.count(Side::Server, TcpState::Closing) == 1
    })?;
    lab.say(format!("kernel says: {}", crossing.describe()));
    let server_closing = crossing.count(Side::Server, TcpState::Closing);
    let client_closing = crossing.count(Side::Client, TcpState::Closing);
    if server_closing == 1 && client_closing == 1 {
        lab.say(
            "each socket received a FIN while its own was unacknowledged: CLOSING on both \
             sides (the relay delivers the ACKs of the FINs a little late, so a snapshot can \
             see it)",
        );
    }
    let both = lab.wait_until(STEP_TIMEOUT, |s| {
        s.count(Side::Client, TcpState::TimeWait) == 1
            && s.count(Side::Server, TcpState::TimeWait) == 1
    })?;
    lab.say(format!("kernel says: {}", both.describe()));
    let server_tw = both.count(Side::Server, TcpState::TimeWait);
    let client_tw = both.count(Side::Client, TcpState::TimeWait);
    lab.fact("server_closing", server_closing);
    lab.fact("client_closing", client_closing);
    lab.fact("server_time_wait", server_tw);
    lab.fact("client_time_wait", client_tw);
    if server_closing == 1 && client_closing == 1 && server_tw == 1 && client_tw == 1 {
        lab.say("both sockets went FIN_WAIT1 -> CLOSING -> TIME_WAIT: each side closed first");
        return Ok((
            Verdict::Clean,
            "the FINs crossed: CLOSING on both sides, then TIME_WAIT on both".to_string(),
            both,
        ));
    }
    bail!(
        "the kernel did not show a simultaneous close: {} then {}",
        crossing.describe(),
        both.describe()
    )
}
