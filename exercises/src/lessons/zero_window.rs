//! Lesson 16's driver: an orphan in FIN_WAIT1 behind a zero window. The client is the
//! scripted peer (`scripted.rs`): it connects, sends a request whose segment advertises a
//! receive window of 0 (a reader whose buffer is full and that reads nothing), and from then
//! on answers every probe of the server's kernel with the same zero window. The binary
//! provides the server: it reads the request, writes a reply and closes. The reply cannot
//! leave, the FIN is queued behind it, and the socket, which no descriptor refers to any
//! more, stays in FIN_WAIT1 probing the window.
//!
//! This module plays the peer, watches the server's socket with sock_diag (state, Send-Q,
//! timer, inode 0 for a socket without a file), reads the kernel's segments on the link and
//! the namespace's counters (TcpExt TCPWinProbe, TCPAbortOnTimeout), and grades the end.
//!
//! What the kernel does (Linux 6.x, net/ipv4/tcp_timer.c and tcp_output.c): with nothing in
//! flight and data the window does not admit, the persist timer runs (`tcp_check_probe_timer`
//! in include/net/tcp.h); `tcp_probe_timer()` calls `tcp_send_probe0()`, which sends a
//! segment one byte below `snd_una` (`tcp_write_wakeup`, `tcp_xmit_probe_skb`) and doubles
//! the interval. An answer resets the count of unanswered probes (`icsk_probes_out`, in
//! `tcp_ack()`), so tcp_orphan_retries, which bounds that count, never ends an orphan whose
//! peer answers. TCP_USER_TIMEOUT does: `tcp_probe_timer()` aborts once that long has passed
//! since the first probe (`icsk_probes_tstamp`), answered or not; the abort
//! (`tcp_write_err()`) sends nothing and counts TcpExt TCPAbortOnTimeout.
//!
//! Left out on purpose: the default end (the probe interval has to reach TCP_RTO_MAX, 120 s,
//! minutes away), tcp_max_orphans and memory pressure (`tcp_out_of_resources()`; the orphan
//! limit is one for the whole machine, not a namespace's), and IPv6.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tcplab_core::TcpState;
use tcplab_core::kernel;
use tcplab_core::observe::{SocketRow, TimerKind};
use tcplab_core::peer::link::LOCAL_IP;
use tcplab_core::peer::script::{TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN};
use tcplab_core::peer::wire::Wire;

use crate::catalog::Verdict;
use crate::facts;
use crate::lab::{Lab, Sides};
use crate::lessons::scripted::{self, Peer, STEP_TIMEOUT, row, state_of};

/// How long the lesson watches the server's socket once the program has closed it. The
/// probes go out about 0.2, 0.6, 1.4 and 3 s after the reply was written; the fixed server's
/// TCP_USER_TIMEOUT (1 s from the first probe) ends the socket after about 1.2 s.
pub const WATCH: Duration = Duration::from_millis(2500);
/// What the peer asks for.
pub const REQUEST: &[u8] = b"GET /report\n";
/// How long the server may take to read, write and close (a fix may linger in close()).
const SERVE_TIMEOUT: Duration = Duration::from_secs(5);

/// How the binary's server listens (a fix may set an option on the listener).
pub type Listen = fn(SocketAddr) -> io::Result<TcpListener>;
/// How it serves the one connection: read the request, write the reply, close.
pub type Serve = fn(TcpStream) -> io::Result<()>;

/// Run the lesson with the binary's server.
pub fn run(lab: &mut Lab, listen: Listen, serve: Serve) -> Result<()> {
    let (link, rx) = scripted::enter(
        lab,
        "the client is a scripted peer that advertises a zero window",
    )?;
    let listener = listen(SocketAddr::from((LOCAL_IP, 0))).context("the server's listen()")?;
    let server = listener.local_addr()?;
    lab.watch(server.port())?;
    let sysctl = |knob: &str| kernel::sysctl(&format!("net/ipv4/{knob}"));
    lab.fact("tcp_orphan_retries", sysctl("tcp_orphan_retries"));
    lab.fact("tcp_retries2", sysctl("tcp_retries2"));
    lab.fact("tcp_fin_timeout", sysctl("tcp_fin_timeout"));
    let served = std::thread::spawn(move || -> io::Result<()> {
        let (stream, _) = tcplab_core::sockets::accept_within(&listener, STEP_TIMEOUT)?;
        stream.set_read_timeout(Some(STEP_TIMEOUT))?;
        stream.set_write_timeout(Some(STEP_TIMEOUT))?;
        serve(stream)
    });
    let mut peer = Peer::new(link, rx, server);
    let result = lesson(lab, &mut peer, server, &served);
    // Every call of the server is bounded (read and write by STEP_TIMEOUT, close by its
    // linger time, if any); once the peer stops answering, nothing else waits for it.
    let joined = served.join();
    let finished = result.and_then(|(verdict, why, sides)| {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("the server failed: {e}"),
            Err(_) => bail!("the server's thread panicked"),
        }
        lab.finish(verdict, sides, &why)
    });
    // Also on error: an orphan still probing would outlive the process, and the namespace
    // with it, for minutes.
    let reset = reset_leftover(lab, &mut peer, server);
    drop(peer);
    finished.and(reset)
}

/// End the server's socket if it is still there: the peer sends a RST at the sequence
/// number the kernel expects, and the lesson waits (bounded) until it is gone.
fn reset_leftover(lab: &Lab, peer: &mut Peer, server: SocketAddr) -> Result<()> {
    if state_of(lab, server)?.is_none() {
        return Ok(());
    }
    peer.send(TCP_RST | TCP_ACK, vec![], &[])?;
    let until = Instant::now() + STEP_TIMEOUT;
    while Instant::now() < until {
        if state_of(lab, server)?.is_none() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    bail!("the server's socket outlived the peer's RST")
}

/// What the kernel sent the peer since the request, and the peer's answers to it.
struct Seen {
    /// How far `peer.seen` has been read.
    read: usize,
    /// When each zero-window probe came.
    probes: Vec<Instant>,
    /// Bytes of data the kernel sent (none may pass a zero window).
    data: usize,
    fins: usize,
    resets: usize,
}

impl Seen {
    fn new(peer: &Peer) -> Seen {
        Seen {
            read: peer.seen.len(),
            probes: Vec::new(),
            data: 0,
            fins: 0,
            resets: 0,
        }
    }

    /// Read what the kernel sent since the last call; answer each probe with an ACK that
    /// still says window 0. Returns the probes that came.
    fn pump(&mut self, peer: &mut Peer) -> Result<Vec<Instant>> {
        peer.drain();
        let mut new = Vec::new();
        let fresh: Vec<(Instant, Wire)> = peer.seen[self.read..].to_vec();
        self.read = peer.seen.len();
        for (at, w) in fresh {
            if w.flags & TCP_RST != 0 {
                self.resets += 1;
                continue;
            }
            if w.flags & TCP_FIN != 0 {
                self.fins += 1;
            }
            self.data += w.payload.len();
            if is_probe(&w, peer.ack) {
                self.probes.push(at);
                new.push(at);
                peer.send(TCP_ACK, vec![], &[])?;
            }
        }
        Ok(new)
    }
}

/// A zero-window probe: no data, no SYN, FIN or RST, and a sequence number one below what
/// the peer has acknowledged, so that the peer must answer it with an ACK.
fn is_probe(w: &Wire, acked: u32) -> bool {
    w.flags & (TCP_SYN | TCP_FIN | TCP_RST) == 0
        && w.payload.is_empty()
        && w.seq == acked.wrapping_sub(1)
}

/// A socket row in words: state, Send-Q, timer, and whether a file refers to it.
fn describe(r: &SocketRow) -> String {
    let timer = match r.timer {
        Some(TimerKind::Probe) => "timer persist (zero-window probe)".to_string(),
        Some(t) => format!("timer {t}"),
        None => "no timer".to_string(),
    };
    let file = if r.inode == 0 {
        "an orphan (no descriptor refers to it: its inode is 0)"
    } else {
        "a descriptor still refers to it"
    };
    format!("{}, Send-Q {} bytes, {timer}, {file}", r.state, r.send_q)
}

/// Keep a state the first time it shows.
fn note(r: &Option<SocketRow>, states: &mut Vec<TcpState>) {
    if let Some(r) = r {
        if states.last() != Some(&r.state) {
            states.push(r.state);
        }
    }
}

fn lesson(
    lab: &mut Lab,
    peer: &mut Peer,
    server: SocketAddr,
    served: &JoinHandle<io::Result<()>>,
) -> Result<(Verdict, String, Sides)> {
    lab.step(format!(
        "The peer connects to the server at {server} and sends its request; that segment \
         advertises a receive window of 0: the client reads nothing, its buffer is full"
    ));
    peer.connect()?;
    let probes_before = kernel::tcp_ext_counter("TCPWinProbe");
    let aborts_before = kernel::tcp_ext_counter("TCPAbortOnTimeout");
    peer.win = 0;
    let mut seen = Seen::new(peer);
    peer.send(TCP_ACK | TCP_PSH, vec![], REQUEST)?;
    peer.seq = peer.seq.wrapping_add(REQUEST.len() as u32);
    let requested = Instant::now();

    // The server reads the request, writes its reply and closes; the peer answers probes
    // meanwhile (a fix may take a while in close()).
    lab.say("the server's program reads the request, writes its reply and closes the socket");
    let mut states: Vec<TcpState> = Vec::new();
    let until = requested + SERVE_TIMEOUT;
    while !served.is_finished() && Instant::now() < until {
        seen.pump(peer)?;
        note(&row(lab, server)?, &mut states);
        std::thread::sleep(Duration::from_millis(5));
    }
    if !served.is_finished() {
        bail!(
            "the server had not closed its socket {} s after the request",
            SERVE_TIMEOUT.as_secs()
        );
    }
    let closed = Instant::now();
    seen.pump(peer)?;
    let at_close = row(lab, server)?;
    note(&at_close, &mut states);
    match &at_close {
        Some(r) => lab.say(format!(
            "kernel says, just after close(): the server's socket is {}",
            describe(r)
        )),
        None => lab.say("kernel says, just after close(): the server's socket is gone"),
    }
    if seen.fins == 0 && at_close.is_some() {
        lab.say(
            "no FIN on the wire: it is queued behind the reply, and the reply waits for the window",
        );
    }

    lab.step(format!(
        "The lesson watches the server's socket for {} ms; the peer answers every probe with \
         window 0",
        WATCH.as_millis()
    ));
    let mut gone_after: Option<Duration> = at_close.is_none().then_some(Duration::ZERO);
    let mut orphaned = at_close.as_ref().is_some_and(|r| r.inode == 0);
    let mut last_row = at_close.clone();
    while gone_after.is_none() && closed.elapsed() < WATCH {
        for at in seen.pump(peer)? {
            lab.say(format!(
                "after {} ms: a zero-window probe (no data, one byte below what the peer \
                 acknowledged); the peer answers: window 0",
                at.saturating_duration_since(requested).as_millis()
            ));
        }
        match row(lab, server)? {
            Some(r) => {
                if states.last() != Some(&r.state) {
                    lab.say(format!(
                        "after {} ms: the server's socket is {}",
                        requested.elapsed().as_millis(),
                        describe(&r)
                    ));
                    states.push(r.state);
                }
                orphaned |= r.inode == 0;
                last_row = Some(r);
            }
            None => {
                gone_after = Some(closed.elapsed());
                lab.say(format!(
                    "after {} ms: the server's socket is gone from the kernel's table",
                    requested.elapsed().as_millis()
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    seen.pump(peer)?;
    let sides = lab.sides()?;
    let win_probes = kernel::tcp_ext_growth("TCPWinProbe", probes_before);
    let aborts = kernel::tcp_ext_growth("TCPAbortOnTimeout", aborts_before);

    let probe_ms: Vec<u128> = seen
        .probes
        .iter()
        .map(|at| at.saturating_duration_since(requested).as_millis())
        .collect();
    lab.say(format!(
        "on the wire since the request, from the server's kernel: {} zero-window probe(s), {} \
         bytes of data, {} FIN, {} RST",
        seen.probes.len(),
        seen.data,
        seen.fins,
        seen.resets
    ));
    if let Some(n) = win_probes {
        lab.say(format!(
            "the namespace's counter TcpExtTCPWinProbe (probes the kernel sent) grew by {n}"
        ));
    }

    // After the end, the peer opens its window: a socket that still existed would answer with
    // data; none does, and the kernel answers for a connection it no longer knows: RST.
    let mut rst_to_update = None;
    if gone_after.is_some() {
        if let Some(n) = aborts {
            lab.say(format!(
                "the namespace's counter TcpExtTCPAbortOnTimeout grew by {n}"
            ));
        }
        lab.say(if seen.resets == 0 {
            "no RST went out: nothing told the peer. The peer now opens its window (an ACK \
             with window 65535)"
        } else {
            "the kernel sent a RST. The peer now opens its window (an ACK with window 65535)"
        });
        peer.win = 65535;
        peer.send(TCP_ACK, vec![], &[])?;
        let answer = peer.expect("answer to the window update", |w| {
            w.flags & TCP_RST != 0 || !w.payload.is_empty()
        });
        let rst = answer.as_ref().is_ok_and(|w| w.flags & TCP_RST != 0);
        lab.say(if rst {
            "the kernel answers with RST: no socket is left to send the reply"
        } else {
            "no RST came back"
        });
        rst_to_update = Some(rst);
    } else if let Some(r) = &last_row {
        lab.say(format!(
            "after {} ms the server's socket is still {}",
            requested.elapsed().as_millis(),
            describe(r)
        ));
    }

    let names: Vec<String> = states.iter().map(|s| s.to_string()).collect();
    lab.fact("states_seen", &names);
    lab.fact(facts::ORPHANED, orphaned);
    lab.fact(facts::SEND_Q_AT_CLOSE, at_close.as_ref().map(|r| r.send_q));
    lab.fact(
        "timer_at_close",
        at_close
            .as_ref()
            .and_then(|r| r.timer)
            .map(|t| t.to_string()),
    );
    lab.fact(facts::ZERO_WINDOW_PROBES, seen.probes.len());
    lab.fact("probe_ms", &probe_ms);
    lab.fact(facts::DATA_BYTES_SENT, seen.data);
    lab.fact(facts::FINS_SENT, seen.fins);
    lab.fact(facts::RESETS_SENT, seen.resets);
    lab.fact("tcp_ext_win_probe_growth", win_probes);
    lab.fact(facts::TCP_EXT_ABORT_ON_TIMEOUT_GROWTH, aborts);
    lab.fact(
        facts::GONE_AFTER_CLOSE_MS,
        gone_after.map(|d| d.as_millis() as u64),
    );
    lab.fact(facts::RST_TO_WINDOW_UPDATE, rst_to_update);

    if seen.data > 0 {
        bail!(
            "the server's kernel sent {} bytes of data into a zero window: the peer's window \
             did not close",
            seen.data
        );
    }
    if let Some(d) = gone_after {
        lab.require(
            !seen.probes.is_empty(),
            "the reply was thrown away before the kernel offered it even once: no \
             zero-window probe went out before the socket ended",
        );
        let how = if seen.resets > 0 {
            "with a RST".to_string()
        } else if aborts.is_some_and(|n| n > 0) {
            "silently, counted as TcpExtTCPAbortOnTimeout".to_string()
        } else {
            "without a RST".to_string()
        };
        return Ok((
            Verdict::Clean,
            format!(
                "the kernel probed the zero window {} time(s) and ended the socket {how}, {} \
                 ms after the program closed it",
                seen.probes.len(),
                d.as_millis()
            ),
            sides,
        ));
    }
    match last_row.map(|r| r.state) {
        Some(TcpState::Established) => Ok((
            Verdict::Leak,
            format!(
                "the server's socket was still ESTABLISHED {} ms after the program was done \
                 with it: its descriptor was never closed, its reply never sent ({} probe(s) \
                 answered)",
                WATCH.as_millis(),
                seen.probes.len()
            ),
            sides,
        )),
        Some(s) => Ok((
            Verdict::Leak,
            format!(
                "the server's socket was still {s} {} ms after the program closed it, its reply \
                 and FIN unsent, probing a window that stays 0 ({} probe(s) answered)",
                WATCH.as_millis(),
                seen.probes.len()
            ),
            sides,
        )),
        None => bail!("the kernel showed neither outcome: states {names:?}"),
    }
}
