//! Lesson 15's driver: what a RST may do to a connection. The client is the scripted peer
//! (`scripted.rs`), which can put any sequence number on a RST, as an attacker who guesses
//! (or a middlebox that forgot the flow) would. One run, two connections from the peer:
//!
//! - the first stays `ESTABLISHED` (the binary's `serve` waits in read()): a RST far outside
//!   the receive window, two RSTs inside it but not at `rcv_nxt`, then one exactly at
//!   `rcv_nxt`. Graded on the segments the kernel sent back (the challenge ACK), the
//!   namespace's counters (`TcpExtTCPChallengeACK`, `TcpExtTCPACKSkippedChallenge`, `Tcp
//!   EstabResets`), the socket in sock_diag and the errno the server's read() got.
//! - on the second the server closes first (the binary's `answer`) and holds `TIME_WAIT`; a
//!   RST at `rcv_nxt` with `net.ipv4.tcp_rfc1337 = 1` in the lesson's namespace, then the
//!   same RST with 0. Graded on the `TIME_WAIT` socket in sock_diag after each.
//!
//! What the kernel does (Linux 6.x): `tcp_validate_incoming()` in net/ipv4/tcp_input.c
//! drops a segment outside the window (`tcp_sequence()`), and a RST there without an answer;
//! a RST inside it resets the connection only when its sequence number is `rcv_nxt`, and is
//! otherwise answered by `tcp_send_challenge_ack()` (RFC 5961 section 3.2), at most one per
//! `tcp_invalid_ratelimit` per socket (`__tcp_oow_rate_limited()`) and, unless
//! `tcp_challenge_ack_limit` is left at its default INT_MAX, a number per second per
//! namespace. In `TIME_WAIT`, `tcp_timewait_state_process()` in net/ipv4/tcp_minisocks.c
//! frees the socket on a RST at `rcv_nxt` unless `tcp_rfc1337` is set (RFC 1337's "TIME-WAIT
//! assassination").
//!
//! Left out on purpose: SYNs and ACKs that get challenge ACKs (RFC 5961 sections 4 and 5;
//! lesson 10 shows the SYN), SACK's extra RST match, and IPv6.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tcplab_core::TcpState;
use tcplab_core::kernel;
use tcplab_core::netns;
use tcplab_core::observe::SocketRow;
use tcplab_core::peer::link::{LOCAL_IP, REMOTE_IP};
use tcplab_core::peer::run::{REMOTE_ISN, REMOTE_PORT};
use tcplab_core::peer::script::{TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN};
use tcplab_core::peer::wire::Wire;
use tcplab_core::timeline::Side;

use crate::catalog::Verdict;
use crate::facts;
use crate::lab::{Lab, Sides};
use crate::lessons::scripted::{self, Peer, STEP_TIMEOUT};

/// How long the lesson listens after a RST for what the kernel sends back. The kernel answers
/// within microseconds or not at all; this is far longer than any scheduling delay.
pub const QUIET: Duration = Duration::from_millis(300);
/// How far past `rcv_nxt` the in-window RSTs are: well inside the window the server
/// advertised (the lesson checks that it is).
pub const IN_WINDOW: u32 = 1000;
/// How far past `rcv_nxt` the out-of-window RST is: a quarter of the sequence space.
pub const OUT_OF_WINDOW: u32 = 1 << 30;
/// The server's read timeout: the RSTs come well within it.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's part: serve one accepted connection and return what its calls returned.
pub type Serve = fn(TcpStream) -> io::Result<()>;

/// A namespace counter by its `nstat` name, `TcpExt...` or `Tcp...`.
fn counter(name: &str) -> u64 {
    if let Some(ext) = name.strip_prefix("TcpExt") {
        kernel::tcp_ext_counter(ext).unwrap_or(0)
    } else {
        let tcp = name.strip_prefix("Tcp").unwrap_or(name);
        kernel::tcp_counters().get(tcp).copied().unwrap_or(0)
    }
}

/// The lesson's namespace and link, the server's listener, the peer, and the server's
/// thread for the connection under way (it serves it with the binary's code).
struct Stage {
    /// Open for the whole lesson, so that every snapshot shows it.
    listener: TcpListener,
    peer: Peer,
    server: SocketAddr,
    served: Option<JoinHandle<io::Result<()>>>,
}

fn stage(lab: &mut Lab) -> Result<Stage> {
    let (link, rx) = scripted::enter(lab, "the client is a scripted peer")?;
    let listener = TcpListener::bind(SocketAddr::from((LOCAL_IP, 0)))?;
    let server = listener.local_addr()?;
    lab.watch(server.port())?;
    Ok(Stage {
        listener,
        peer: Peer::new(link, rx, server),
        server,
        served: None,
    })
}

impl Stage {
    /// A new connection from the peer's `port`, served by `serve` in a thread of its own;
    /// returns once the server's program has accepted it.
    fn connect(&mut self, serve: Serve, port: u16) -> Result<()> {
        let (accepted, on_accept) = mpsc::channel();
        let accepting = self.listener.try_clone()?;
        self.served = Some(std::thread::spawn(move || -> io::Result<()> {
            let (stream, _) = tcplab_core::sockets::accept_within(&accepting, STEP_TIMEOUT)?;
            stream.set_read_timeout(Some(READ_TIMEOUT))?;
            stream.set_write_timeout(Some(STEP_TIMEOUT))?;
            let _ = accepted.send(());
            serve(stream)
        }));
        self.peer.port = port;
        self.peer.seq = REMOTE_ISN;
        self.peer.ack = 0;
        self.peer.connect()?;
        on_accept
            .recv_timeout(STEP_TIMEOUT)
            .context("the server did not accept the peer's connection")?;
        Ok(())
    }

    /// The server's socket for the peer's current connection, as sock_diag shows it.
    fn row(&self, lab: &Lab) -> Result<Option<SocketRow>> {
        let peer = SocketAddr::from((REMOTE_IP, self.peer.port));
        Ok(lab
            .rows()?
            .into_iter()
            .find(|r| r.local == self.server && r.remote == peer))
    }

    /// Its state, if it is there.
    fn state(&self, lab: &Lab) -> Result<Option<TcpState>> {
        Ok(self.row(lab)?.map(|r| r.state))
    }

    /// Send a RST from the peer with sequence number `seq` (its acknowledgment field unset).
    /// What the kernel sent before it is kept first, so that it is not taken for an answer.
    fn rst(&mut self, seq: u32) -> Result<()> {
        self.peer.drain();
        let keep = self.peer.seq;
        self.peer.seq = seq;
        let sent = self.peer.send(TCP_RST, vec![], &[]);
        self.peer.seq = keep;
        sent
    }

    /// Listen for [`QUIET`] and return the segments the kernel sent meanwhile.
    fn listen_quietly(&mut self) -> Vec<Wire> {
        let from = self.peer.seen.len();
        let until = Instant::now() + QUIET;
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
            self.peer.drain();
        }
        self.peer.seen[from..]
            .iter()
            .map(|(_, w)| w.clone())
            .collect()
    }

    /// Wait for the server's thread (bounded by its read timeout) and name what it returned.
    fn join(&mut self) -> Result<String> {
        match self.served.take().map(|h| h.join()) {
            Some(Ok(Ok(()))) => Ok("returned without an error".to_string()),
            Some(Ok(Err(e))) => Ok(kernel::errno_name(&e)),
            Some(Err(_)) => bail!("the server's thread panicked"),
            None => Ok("not run".to_string()),
        }
    }

    /// Wait until the server's socket for the peer's connection is gone from sock_diag.
    fn wait_gone(&self, lab: &Lab) -> Result<Option<Duration>> {
        let start = Instant::now();
        while start.elapsed() < STEP_TIMEOUT {
            if self.state(lab)?.is_none() {
                return Ok(Some(start.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(None)
    }
}

/// On an error half-way: end the server's connection with a RST at `rcv_nxt` (its read()
/// then returns at once) and wait for its thread, so nothing outlives the lesson.
fn abandon(stage: &mut Stage) {
    let seq = stage.peer.seq;
    let _ = stage.rst(seq);
    let _ = stage.join();
}

/// Run the lesson: `serve` waits for requests on the first connection, which the RSTs test;
/// `answer` answers and closes first on the second, which then holds `TIME_WAIT`.
pub fn run(lab: &mut Lab, serve: Serve, answer: Serve) -> Result<()> {
    let sysctl = |knob: &str| kernel::sysctl(&format!("net/ipv4/{knob}"));
    let mut stage = stage(lab)?;
    lab.fact("tcp_challenge_ack_limit", sysctl("tcp_challenge_ack_limit"));
    lab.fact("tcp_invalid_ratelimit", sysctl("tcp_invalid_ratelimit"));
    // What a fresh namespace starts with, before the lesson sets it.
    lab.fact("tcp_rfc1337_default", sysctl("tcp_rfc1337"));

    lab.step(format!(
        "The peer connects to the server at {}; the server's program waits in read()",
        stage.server
    ));
    stage.connect(serve, REMOTE_PORT)?;
    let first = match rsts_on_established(lab, &mut stage) {
        Ok(why) => why,
        Err(e) => {
            abandon(&mut stage);
            return Err(e);
        }
    };
    let read_result = stage.join()?;
    lab.fact(facts::SERVER_READ_RESULT, &read_result);
    lab.say(format!("the server's read(): {read_result}"));
    lab.require(
        read_result == "ECONNRESET",
        format!(
            "the server's read() ended with {read_result}, not the ECONNRESET of a connection \
             the peer reset"
        ),
    );

    lab.step(
        "The peer connects again, from another port; this time the server's program answers \
         with a line and closes first",
    );
    stage.connect(answer, REMOTE_PORT + 1)?;
    let second = assassinate(lab, &mut stage);
    let answered = stage.join();
    let (why, sides) = second?;
    lab.fact("answer_result", answered?);
    lab.finish(Verdict::Clean, sides, &format!("{first}; {why}"))
}

fn rsts_on_established(lab: &mut Lab, stage: &mut Stage) -> Result<String> {
    let open = lab.wait_until(STEP_TIMEOUT, |s| {
        s.count(Side::Server, TcpState::Established) == 1
    })?;
    lab.say(format!("kernel says: {}", open.describe()));
    // The window the server's kernel advertised on its last segment (no scaling: the peer's
    // SYN offered none).
    stage.peer.drain();
    let window = stage
        .peer
        .seen
        .last()
        .map(|(_, w)| u32::from(w.win))
        .unwrap_or(0);
    lab.fact("server_window", window);
    let rcv_nxt = stage.peer.seq;
    let challenge_before = counter("TcpExtTCPChallengeACK");
    let skipped_before = counter("TcpExtTCPACKSkippedChallenge");
    let resets_before = counter("TcpEstabResets");

    lab.step(
        "A RST far outside the server's receive window (rcv_nxt + 2^30): a blind guess that \
         missed",
    );
    stage.rst(rcv_nxt.wrapping_add(OUT_OF_WINDOW))?;
    let answers = stage.listen_quietly();
    let after_far = stage.state(lab)?;
    lab.say(format!(
        "in {} ms the kernel sent {} segment(s) back; the server's socket is {}",
        QUIET.as_millis(),
        answers.len(),
        describe(after_far)
    ));
    lab.fact(facts::ANSWERS_TO_FAR_RST, answers.len());
    lab.fact(facts::STATE_AFTER_FAR_RST, after_far.map(|s| s.to_string()));

    lab.step(format!(
        "Two RSTs inside the window but not at rcv_nxt (rcv_nxt + {IN_WINDOW}), back to back"
    ));
    let in_window = rcv_nxt.wrapping_add(IN_WINDOW);
    let from = stage.peer.seen.len();
    let sent_at = Instant::now();
    stage.rst(in_window)?;
    stage.rst(in_window)?;
    let is_challenge = |w: &Wire| {
        w.flags & (TCP_SYN | TCP_FIN | TCP_RST | TCP_PSH) == 0
            && w.flags & TCP_ACK != 0
            && w.payload.is_empty()
            && w.ack == rcv_nxt
    };
    // The first answer, then QUIET more for a second one.
    let deadline = sent_at + STEP_TIMEOUT;
    while !stage.peer.seen[from..].iter().any(|(_, w)| is_challenge(w)) && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
        stage.peer.drain();
    }
    stage.listen_quietly();
    let after_near = stage.state(lab)?;
    let challenges: Vec<(Instant, Wire)> = stage.peer.seen[from..]
        .iter()
        .filter(|(_, w)| is_challenge(w))
        .cloned()
        .collect();
    let others = stage.peer.seen.len() - from - challenges.len();
    let challenge_acks = counter("TcpExtTCPChallengeACK").saturating_sub(challenge_before);
    let skipped = counter("TcpExtTCPACKSkippedChallenge").saturating_sub(skipped_before);
    if let Some((at, _)) = challenges.first() {
        lab.say(format!(
            "after {} ms: an ACK of rcv_nxt, no data: the challenge ACK. A peer that did send \
             the RST (it has lost the connection) answers it with a RST at exactly that number",
            at.saturating_duration_since(sent_at).as_millis()
        ));
    }
    lab.say(format!(
        "{} challenge ACK(s) on the wire for the two RSTs; the namespace's counters: \
         TcpExtTCPChallengeACK +{challenge_acks}, TcpExtTCPACKSkippedChallenge +{skipped} (one \
         challenge per socket per tcp_invalid_ratelimit, {} ms)",
        challenges.len(),
        sysctl_ms("tcp_invalid_ratelimit")
    ));
    lab.say(format!("the server's socket is {}", describe(after_near)));
    lab.fact(facts::CHALLENGE_ACKS_SEEN, challenges.len());
    lab.fact("other_segments_after_near_rsts", others);
    lab.fact(facts::TCP_CHALLENGE_ACK_COUNTED, challenge_acks);
    lab.fact(facts::TCP_CHALLENGE_ACK_SKIPPED, skipped);
    lab.fact(
        facts::STATE_AFTER_NEAR_RSTS,
        after_near.map(|s| s.to_string()),
    );

    lab.step("A RST exactly at rcv_nxt");
    stage.rst(rcv_nxt)?;
    let gone = stage.wait_gone(lab)?;
    let resets = counter("TcpEstabResets").saturating_sub(resets_before);
    match gone {
        Some(_) => lab.say(format!(
            "the server's socket is gone from the kernel's table: ESTABLISHED -> CLOSE, no \
             FIN, no TIME_WAIT; Tcp EstabResets +{resets}"
        )),
        None => lab.say("the server's socket is still there"),
    }
    lab.fact(facts::GONE_AFTER_EXACT_RST, gone.is_some());
    lab.fact(facts::ESTAB_RESETS, resets);
    let sides = lab.sides()?;
    lab.say(format!("kernel says: {}", sides.describe()));

    let established = Some(TcpState::Established);
    let mut wrong = Vec::new();
    if after_far != established || !answers.is_empty() {
        wrong.push(format!(
            "the RST outside the window drew {} segment(s) and left the socket {}",
            answers.len(),
            describe(after_far)
        ));
    }
    if window < IN_WINDOW {
        wrong.push(format!(
            "the server's window ({window} bytes) does not reach rcv_nxt + {IN_WINDOW}"
        ));
    }
    if after_near != established
        || challenges.is_empty()
        || others != 0
        || challenge_acks as usize != challenges.len()
        || challenge_acks + skipped != 2
    {
        wrong.push(format!(
            "the RSTs inside the window left the socket {}, with {} challenge ACK(s) on the \
             wire ({others} other segment(s)), TcpExtTCPChallengeACK +{challenge_acks} and \
             TcpExtTCPACKSkippedChallenge +{skipped}",
            describe(after_near),
            challenges.len()
        ));
    }
    if gone.is_none() || resets != 1 {
        wrong.push(format!(
            "the RST at rcv_nxt left the socket {} (Tcp EstabResets +{resets})",
            if gone.is_some() { "gone" } else { "there" }
        ));
    }
    if !wrong.is_empty() {
        bail!(
            "the kernel did not show RFC 5961's RST check: {}",
            wrong.join("; ")
        );
    }
    Ok(format!(
        "the RST outside the window was dropped, the ones inside it drew {} challenge ACK and \
         left the socket ESTABLISHED, the RST at rcv_nxt ended it",
        challenges.len()
    ))
}

/// A sysctl in milliseconds, as text ("?" when unreadable).
fn sysctl_ms(knob: &str) -> String {
    kernel::sysctl(&format!("net/ipv4/{knob}")).map_or("?".to_string(), |v| v.to_string())
}

fn describe(state: Option<TcpState>) -> String {
    state.map_or("gone".to_string(), |s| s.to_string())
}

/// Set `net.ipv4.tcp_rfc1337` in the lesson's namespace and read it back.
fn set_rfc1337(lab: &Lab, value: &str) -> Result<Option<u64>> {
    netns::set_ipv4_sysctl("tcp_rfc1337", value)?;
    let now = kernel::sysctl("net/ipv4/tcp_rfc1337");
    lab.say(format!(
        "net.ipv4.tcp_rfc1337 = {} in the lesson's own network namespace (a per-namespace \
         sysctl: the host keeps its own)",
        now.map_or("?".to_string(), |v| v.to_string())
    ));
    Ok(now)
}

fn assassinate(lab: &mut Lab, stage: &mut Stage) -> Result<(String, Sides)> {
    lab.say("the server's program writes a line and closes first: its FIN");
    let fin = stage
        .peer
        .expect("FIN", |w| w.flags & TCP_FIN != 0)
        .context("the server did not close")?;
    stage.peer.ack = fin
        .seq
        .wrapping_add(fin.payload.len() as u32)
        .wrapping_add(1);
    lab.say("the peer acknowledges the line and the FIN, and sends its own FIN");
    stage.peer.send(TCP_FIN | TCP_ACK, vec![], &[])?;
    stage.peer.seq = stage.peer.seq.wrapping_add(1);
    // The kernel's ACK of that FIN, waited for here so that it is not taken for an answer to
    // the RSTs below.
    let fin_acked = stage.peer.seq;
    stage
        .peer
        .expect("ACK of the peer's FIN", |w| {
            w.flags & TCP_ACK != 0 && w.ack == fin_acked
        })
        .context("the server did not acknowledge the peer's FIN")?;
    let tw = lab.wait_until(STEP_TIMEOUT, |s| {
        s.count(Side::Server, TcpState::TimeWait) == 1
    })?;
    lab.say(format!("kernel says: {}", tw.describe()));
    let timer = |lab: &Lab, stage: &Stage| -> Result<Option<u64>> {
        Ok(stage
            .row(lab)?
            .filter(|r| r.state == TcpState::TimeWait)
            .and_then(|r| r.timer_ms))
    };
    let before = timer(lab, stage)?;
    lab.say(format!(
        "the server closed first, so it holds TIME_WAIT; its timer: {}",
        seconds(before)
    ));
    lab.fact("time_wait_timer_ms", before);
    let rcv_nxt = stage.peer.seq;

    lab.step("The peer sends a RST at rcv_nxt, with net.ipv4.tcp_rfc1337 = 1");
    let on = set_rfc1337(lab, "1")?;
    stage.rst(rcv_nxt)?;
    let answers = stage.listen_quietly();
    let kept = stage.state(lab)?;
    let after = timer(lab, stage)?;
    let restarted = match (before, after) {
        (Some(b), Some(a)) if a < b => ", not restarted by the RST",
        (Some(_), Some(_)) => ", restarted by the RST",
        _ => "",
    };
    lab.say(format!(
        "{} ms later: the server's socket is {}, timer {}{restarted}; the kernel sent {} \
         segment(s) back",
        QUIET.as_millis(),
        describe(kept),
        seconds(after),
        answers.len()
    ));
    lab.fact(
        facts::STATE_AFTER_RST_RFC1337_ON,
        kept.map(|s| s.to_string()),
    );
    lab.fact(facts::ANSWERS_TO_RST_RFC1337_ON, answers.len());
    lab.fact("time_wait_timer_after_ignored_rst_ms", after);

    lab.step("The same RST again, with net.ipv4.tcp_rfc1337 = 0 (the default)");
    let off = set_rfc1337(lab, "0")?;
    stage.rst(rcv_nxt)?;
    let gone = stage.wait_gone(lab)?;
    match gone {
        Some(_) => lab.say(format!(
            "the TIME_WAIT socket is gone, with {} still on its timer: assassinated",
            seconds(after)
        )),
        None => lab.say("the TIME_WAIT socket is still there"),
    }
    lab.fact(facts::GONE_AFTER_RST_RFC1337_OFF, gone.is_some());
    let sides = lab.sides()?;
    lab.say(format!("kernel says: {}", sides.describe()));

    if on == Some(1)
        && off == Some(0)
        && kept == Some(TcpState::TimeWait)
        && answers.is_empty()
        && gone.is_some()
    {
        return Ok((
            "with tcp_rfc1337 = 1 the TIME_WAIT socket ignored a RST at rcv_nxt; with 0 the \
             same RST ended it at once"
                .to_string(),
            sides,
        ));
    }
    bail!(
        "the kernel did not show the TIME_WAIT assassination: with tcp_rfc1337 {on:?} the \
         socket was {} ({} segment(s) back), with {off:?} it was {}",
        describe(kept),
        answers.len(),
        if gone.is_some() {
            "gone"
        } else {
            "still there"
        }
    )
}

/// A timer in seconds, one decimal.
fn seconds(ms: Option<u64>) -> String {
    ms.map_or("not seen".to_string(), |ms| {
        format!("{:.1} s", ms as f64 / 1000.0)
    })
}
