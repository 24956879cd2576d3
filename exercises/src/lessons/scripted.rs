//! The scripted peer as a lesson's client: a TCP endpoint that is no kernel socket, on the far
//! side of `tun0` in a network namespace the lesson makes for itself. Lessons 12 and 13 drive
//! it segment by segment to stage what two kernel sockets on loopback cannot (a peer that
//! vanishes, an ACK that never comes), and read back every segment the kernel sent it.
//!
//! Left out on purpose: the script language (`tcplab peer` runs scripts); a lesson's peer
//! is a few calls in its driver, so the lesson reads as one program.

use std::net::SocketAddr;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tcplab_core::TcpState;
use tcplab_core::kernel::is_root;
use tcplab_core::netns;
use tcplab_core::observe::SocketRow;
use tcplab_core::peer::link::{DEVICE, Link, LinkKind, REMOTE_IP, Sent};
use tcplab_core::peer::run::{REMOTE_ISN, REMOTE_PORT};
use tcplab_core::peer::script::{TCP_ACK, TCP_SYN, TcpOpt};
use tcplab_core::peer::wire::Wire;

use crate::lab::Lab;

/// How long any one step (a segment from the kernel) may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(3);

/// Move into a network namespace of the lesson's own and build the link. Call before any
/// thread starts: the kernel makes a user namespace only for a single-threaded process.
/// `role` says what plays on the far side of the link, for the narration.
pub fn enter(lab: &mut Lab, role: &str) -> Result<(Link, Receiver<Sent>)> {
    let how = netns::enter(netns::Prefer::KeepRoot)?;
    lab.in_private_namespace(!is_root());
    // A veth pair: the capture (`--pcap`, `--ladder`) reads Ethernet frames, as on `lo`.
    let (link, rx) = Link::open(Some(LinkKind::Veth)).context("set up the scripted peer's link")?;
    lab.step(format!(
        "A {how} of the lesson's own; {role} at {REMOTE_IP}, behind {DEVICE} ({})",
        link.kind.describe()
    ));
    lab.capture_on(DEVICE);
    Ok((link, rx))
}

/// The server's socket for the peer's connection in a kernel snapshot, if it is there.
pub fn row(lab: &Lab, server: SocketAddr) -> Result<Option<SocketRow>> {
    let peer = SocketAddr::from((REMOTE_IP, REMOTE_PORT));
    Ok(lab
        .rows()?
        .into_iter()
        .find(|r| r.local == server && r.remote == peer))
}

/// Its state, if it is there.
pub fn state_of(lab: &Lab, server: SocketAddr) -> Result<Option<TcpState>> {
    Ok(row(lab, server)?.map(|r| r.state))
}

/// The peer's end of the link, and every segment the kernel sent on it.
pub struct Peer {
    pub link: Link,
    pub rx: Receiver<Sent>,
    pub server: SocketAddr,
    pub seq: u32,
    pub ack: u32,
    /// The receive window the peer advertises in every segment it sends (65535 unless a
    /// lesson closes it: a zero window is a reader whose buffer is full).
    pub win: u16,
    pub seen: Vec<(Instant, Wire)>,
    /// The peer's port: [`REMOTE_PORT`], or another one for a second connection in the same
    /// run (lesson 15), so that the two have different addresses.
    pub port: u16,
}

impl Peer {
    /// The peer, about to connect to `server` over `link`.
    pub fn new(link: Link, rx: Receiver<Sent>, server: SocketAddr) -> Peer {
        Peer {
            link,
            rx,
            server,
            seq: REMOTE_ISN,
            ack: 0,
            win: 65535,
            seen: Vec::new(),
            port: REMOTE_PORT,
        }
    }

    /// The three-way handshake, as the client: SYN, the kernel's SYN-ACK, ACK.
    pub fn connect(&mut self) -> Result<()> {
        self.send(TCP_SYN, vec![TcpOpt::Mss(1460)], &[])?;
        let syn_ack = self.expect("SYN-ACK", |w| {
            w.flags & (TCP_SYN | TCP_ACK) == (TCP_SYN | TCP_ACK)
        })?;
        self.seq = REMOTE_ISN.wrapping_add(1);
        self.ack = syn_ack.seq.wrapping_add(1);
        self.send(TCP_ACK, vec![], &[])
    }

    /// Send one segment from the peer, with its current sequence and acknowledgment numbers.
    pub fn send(&mut self, flags: u8, options: Vec<TcpOpt>, payload: &[u8]) -> Result<()> {
        let SocketAddr::V4(server) = self.server else {
            bail!("the scripted peer speaks IPv4 only");
        };
        let w = Wire {
            src: REMOTE_IP,
            dst: *server.ip(),
            sport: self.port,
            dport: server.port(),
            flags,
            seq: self.seq,
            ack: self.ack,
            win: self.win,
            options: options.into_iter().map(Some).collect(),
            payload: payload.to_vec(),
        };
        self.link.inject(&w.build()?)
    }

    /// Keep what the kernel sent to the peer, without waiting.
    pub fn drain(&mut self) {
        while let Ok(s) = self.rx.try_recv() {
            self.keep(s);
        }
    }

    fn keep(&mut self, s: Sent) {
        if let Some(w) = Wire::parse(&s.bytes) {
            if w.dst == REMOTE_IP && w.dport == self.port {
                self.seen.push((s.at, w));
            }
        }
    }

    /// Wait (at most `timeout`) for a segment from the kernel that `want` accepts.
    pub fn expect(&mut self, what: &str, want: impl Fn(&Wire) -> bool) -> Result<Wire> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let from = self.seen.len();
        loop {
            if let Some((_, w)) = self.seen[from..].iter().find(|(_, w)| want(w)) {
                return Ok(w.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("the server's kernel sent no {what} within {STEP_TIMEOUT:?}");
            }
            if let Ok(s) = self.rx.recv_timeout(left) {
                self.keep(s);
            }
        }
    }
}
