//! Lesson 13's driver: the last ACK of a close is lost. The client is the scripted peer
//! (`scripted.rs`): it connects and closes first; the server's program reads end-of-stream
//! and closes, and its kernel's FIN goes out: `LAST_ACK`. The peer withholds the ACK of that
//! FIN for [`HOLD`], then sends it. The binary provides the server; this module plays the
//! peer and reads what the kernel did: the FIN sent again on each retransmission timeout,
//! the timer in sock_diag (`ss -o`), and the socket gone the moment the ACK arrives.
//!
//! What the kernel does (Linux 6.x): the FIN is data for the retransmission timer
//! (`tcp_retransmit_timer()` in net/ipv4/tcp_timer.c): resent after one RTO, at least
//! TCP_RTO_MIN (200 ms, include/net/tcp.h), and each time after twice as long. The socket
//! is orphaned (the program closed it), so it gives up after tcp_orphan_retries resends
//! (0 means 8, `tcp_orphan_retries()` in the same file); the lesson's ACK comes long before.
//!
//! Left out on purpose: the give-up itself (eight doublings from 200 ms take over 100 s).

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tcplab_core::TcpState;
use tcplab_core::peer::link::LOCAL_IP;
use tcplab_core::peer::script::{TCP_ACK, TCP_FIN, TCP_RST};

use crate::catalog::Verdict;
use crate::lab::Lab;
use crate::lessons::scripted::{self, Peer, STEP_TIMEOUT, row, state_of};

/// How long the peer withholds its last ACK after the server's first FIN: two resends (about
/// 200 ms and 600 ms after it), with the third (about 1.4 s) well after.
pub const HOLD: Duration = Duration::from_millis(1000);

/// The server's part: serve one accepted connection, then return (dropping it closes it).
pub type Serve = fn(TcpStream) -> io::Result<()>;

/// Run the lesson with the binary's server.
pub fn run(lab: &mut Lab, serve: Serve) -> Result<()> {
    let (link, rx) = scripted::enter(lab, "the client is a scripted peer")?;
    let listener = TcpListener::bind(SocketAddr::from((LOCAL_IP, 0)))?;
    let server = listener.local_addr()?;
    lab.watch(server.port())?;
    lab.fact(
        "tcp_orphan_retries",
        tcplab_core::kernel::sysctl("net/ipv4/tcp_orphan_retries"),
    );
    let served = std::thread::spawn(move || -> io::Result<()> {
        let (stream, _) = tcplab_core::sockets::accept_within(&listener, STEP_TIMEOUT)?;
        stream.set_read_timeout(Some(STEP_TIMEOUT))?;
        stream.set_write_timeout(Some(STEP_TIMEOUT))?;
        serve(stream)
    });
    let mut peer = Peer::new(link, rx, server);
    let result = lesson(lab, &mut peer, server);
    // The server's read() is bounded by STEP_TIMEOUT.
    let joined = served.join();
    let (verdict, why, sides) = result?;
    match joined {
        Ok(Ok(())) => {}
        Ok(Err(e)) => bail!("the server failed: {e}"),
        Err(_) => bail!("the server's thread panicked"),
    }
    lab.finish(verdict, sides, &why)?;
    drop(peer);
    Ok(())
}

fn lesson(
    lab: &mut Lab,
    peer: &mut Peer,
    server: SocketAddr,
) -> Result<(Verdict, String, crate::lab::Sides)> {
    lab.step(format!(
        "The peer connects to the server at {server}, then closes first: its FIN"
    ));
    peer.connect()?;
    peer.send(TCP_FIN | TCP_ACK, vec![], &[])?;
    peer.seq = peer.seq.wrapping_add(1);
    lab.say("the server's program reads end-of-stream (read() == 0) and closes: its kernel's FIN");
    let first = peer.expect("FIN", |w| w.flags & TCP_FIN != 0)?;
    let fin_seq = first.seq;
    let (first_at, _) = *peer
        .seen
        .iter()
        .find(|(_, w)| w.flags & TCP_FIN != 0)
        .context("the FIN just seen")?;

    lab.step(format!(
        "The peer's ACK of that FIN is lost: the peer sends nothing for {} ms",
        HOLD.as_millis()
    ));
    let mut fins_seen = 0;
    let mut timers: Vec<Option<u64>> = Vec::new();
    let mut states: Vec<TcpState> = Vec::new();
    let deadline = first_at + HOLD;
    while Instant::now() < deadline {
        peer.drain();
        let fins: Vec<Instant> = fin_times(peer, fin_seq);
        let r = row(lab, server)?;
        if let Some(s) = r.as_ref().map(|r| r.state) {
            if states.last() != Some(&s) {
                lab.say(format!("the server's socket is {s}"));
                states.push(s);
            }
        }
        if fins.len() > fins_seen {
            // The timer just restarted: what is left on it is the new timeout.
            let ms = r.as_ref().and_then(|r| r.timer_ms);
            let at = fins[fins.len() - 1].saturating_duration_since(first_at);
            let what = if fins_seen == 0 { "FIN" } else { "FIN again" };
            lab.say(format!(
                "after {} ms: {what}; the socket's timer (ss -o: timer:(on,...)): {}",
                at.as_millis(),
                ms.map_or("not seen".to_string(), |ms| format!("{ms} ms left"))
            ));
            fins_seen = fins.len();
            timers.push(ms);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    peer.drain();
    let fins = fin_times(peer, fin_seq);
    let gaps: Vec<u64> = fins
        .windows(2)
        .map(|w| w[1].saturating_duration_since(w[0]).as_millis() as u64)
        .collect();
    let resends = fins.len().saturating_sub(1);
    lab.say(format!(
        "the kernel sent its FIN {} time(s) in {} ms, {resends} resend(s); gaps between them: {}",
        fins.len(),
        HOLD.as_millis(),
        gaps.iter()
            .map(|g| format!("{g} ms"))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    lab.step("The peer's ACK arrives at last");
    peer.ack = fin_seq.wrapping_add(1);
    peer.send(TCP_ACK, vec![], &[])?;
    let sent_ack = Instant::now();
    let mut gone = None;
    while sent_ack.elapsed() < STEP_TIMEOUT {
        if state_of(lab, server)?.is_none() {
            gone = Some(sent_ack.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    match gone {
        Some(_) => lab.say("the server's socket is gone: LAST_ACK -> CLOSE, no TIME_WAIT"),
        None => lab.say("the server's socket is still there"),
    }
    let sides = lab.sides()?;
    lab.say(format!("kernel says: {}", sides.describe()));

    lab.step("The peer sends the same ACK once more");
    peer.send(TCP_ACK, vec![], &[])?;
    let rst = peer.expect("RST", |w| w.flags & TCP_RST != 0).is_ok();
    lab.say(if rst {
        "the kernel answered with RST: nothing is left of the connection"
    } else {
        "no RST came back"
    });

    let names: Vec<String> = states.iter().map(|s| s.to_string()).collect();
    lab.fact("states_seen", &names);
    lab.fact("fin_sends", fins.len());
    lab.fact("fin_gaps_ms", &gaps);
    lab.fact("fin_timer_ms", &timers);
    lab.fact("gone_after_ack", gone.is_some());
    lab.fact("rst_to_late_ack", rst);

    let last_ack = states.contains(&TcpState::LastAck);
    let backoff = gaps.windows(2).all(|w| w[1] > w[0]);
    if last_ack && resends >= 2 && backoff && gone.is_some() {
        return Ok((
            Verdict::Clean,
            format!(
                "LAST_ACK resent its FIN {resends} time(s), each gap longer than the last \
                 ({}), and the socket was gone as soon as the ACK came",
                gaps.iter()
                    .map(|g| format!("{g} ms"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            sides,
        ));
    }
    bail!(
        "the kernel did not show the lost last ACK: states {names:?}, FIN sent {} time(s) with \
         gaps {gaps:?} ms, socket gone after the ACK: {}",
        fins.len(),
        gone.is_some()
    )
}

/// When the kernel sent its FIN (the first time and each resend).
fn fin_times(peer: &Peer, fin_seq: u32) -> Vec<Instant> {
    peer.seen
        .iter()
        .filter(|(_, w)| w.flags & TCP_FIN != 0 && w.seq == fin_seq)
        .map(|(at, _)| *at)
        .collect()
}
