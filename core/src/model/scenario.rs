//! The named scenarios `tcplab model` plays: each one a short script for the simulator that
//! shows one way a connection ends, with a few sentences saying what to look at.
//!
//! What it leaves out on purpose: anything random. Every loss, delay and duplicate is written
//! in the script, so a scenario gives the same ladder every time, on every machine.

use std::fmt;
use std::str::FromStr;

use super::machine::{Call, Options, SegKind, State};
use super::sim::{NetAction, NetRule, Script, SimResult, simulate};
use crate::error::Error;
use crate::timeline::Side;

/// A named scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    ClientClose,
    ServerClose,
    SimultaneousClose,
    Abort,
    HalfClose,
    LostLastAck,
    OldDuplicate,
    CloseWaitLeak,
}

impl Scenario {
    pub const ALL: [Scenario; 8] = [
        Scenario::ClientClose,
        Scenario::ServerClose,
        Scenario::SimultaneousClose,
        Scenario::Abort,
        Scenario::HalfClose,
        Scenario::LostLastAck,
        Scenario::OldDuplicate,
        Scenario::CloseWaitLeak,
    ];

    /// The name typed on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::ClientClose => "client-close",
            Scenario::ServerClose => "server-close",
            Scenario::SimultaneousClose => "simultaneous-close",
            Scenario::Abort => "abort",
            Scenario::HalfClose => "half-close",
            Scenario::LostLastAck => "lost-last-ack",
            Scenario::OldDuplicate => "old-duplicate",
            Scenario::CloseWaitLeak => "close-wait-leak",
        }
    }

    /// Every name, comma separated, for error messages.
    pub fn names() -> String {
        Scenario::ALL.map(Scenario::name).join(", ")
    }

    /// One line saying what happens.
    pub fn summary(self) -> &'static str {
        match self {
            Scenario::ClientClose => {
                "the client closes first: it gets TIME_WAIT, the server passes through CLOSE_WAIT and LAST_ACK"
            }
            Scenario::ServerClose => {
                "the server closes first: now the server holds TIME_WAIT and the client passes through CLOSE_WAIT"
            }
            Scenario::SimultaneousClose => {
                "both close at once: the FINs cross, both pass through CLOSING and both get TIME_WAIT"
            }
            Scenario::Abort => {
                "the client aborts (SO_LINGER 0): one RST, no FIN, no TIME_WAIT; the server's program gets ECONNRESET"
            }
            Scenario::HalfClose => {
                "the client shuts down writing only and still reads the server's reply"
            }
            Scenario::LostLastAck => {
                "the client's last ACK is lost: the server retransmits its FIN and TIME_WAIT answers it"
            }
            Scenario::OldDuplicate => {
                "a delayed copy of old data arrives after the close: TIME_WAIT absorbs it"
            }
            Scenario::CloseWaitLeak => {
                "the server's program never calls close(): the server sits in CLOSE_WAIT for good"
            }
        }
    }

    /// A few sentences on what the ladder shows and why, printed under it.
    pub fn explanation(self, opts: &Options) -> String {
        let tw = opts.time_wait_us / 1_000_000;
        match self {
            Scenario::ClientClose => format!(
                "Whoever closes first (the active closer) ends in TIME_WAIT; here the client, for {tw} s \
                 ({} profile). The server's CLOSE_WAIT lasts exactly as long as its program takes to \
                 call close() after read() returned 0; LAST_ACK then waits for one ACK.",
                opts.name
            ),
            Scenario::ServerClose => format!(
                "The same four segments with the roles swapped: the server is the active closer, so \
                 the server's port holds TIME_WAIT for {tw} s. A TIME_WAIT socket holds no file \
                 descriptor; on Linux it does not stop the server from listening again when \
                 SO_REUSEADDR is set. {}",
                if opts.reopen_time_wait_on_syn {
                    "Should the same client port connect again meanwhile, a SYN whose sequence \
                     number lies above the old connection's reopens it at once: the TIME_WAIT \
                     socket goes and the listener answers with SYN+ACK (RFC 9293 3.6.1 MAY-2, \
                     which Linux takes; with --rfc the SYN gets a challenge ACK instead)."
                } else {
                    "Should the same client port connect again meanwhile, its SYN gets a challenge \
                     ACK (RFC 9293 3.10.7.4, RFC 5961 4.2): the RFC's event processing does not \
                     take MAY-2 (reopening from TIME-WAIT), which Linux does."
                }
            ),
            Scenario::SimultaneousClose => format!(
                "Each side sends its FIN before it has seen the other's, so each receives a FIN in \
                 FIN_WAIT1 and enters CLOSING (RFC 9293 3.6, simultaneous close). When the ACKs of \
                 the FINs arrive both enter TIME_WAIT: two TIME_WAIT sockets, {tw} s each."
            ),
            Scenario::Abort => "ABORT (RFC 9293 3.10.5), what close() does with SO_LINGER {on, 0}: \
                 the client sends RST and forgets the connection at once: no FIN_WAIT, no TIME_WAIT. \
                 The server's next read() or write() fails with ECONNRESET; any data not yet \
                 delivered is lost. Linux sends the same RST when a program closes with unread data."
                .to_string(),
            Scenario::HalfClose => "shutdown(SHUT_WR) sends FIN but keeps the receiving half open: the \
                 client sits in FIN_WAIT2 (not an orphan, so no fin_timeout runs) and still receives \
                 the server's DATA. Had the client called close() instead, Linux would have answered \
                 that DATA with a RST and the reply would have been lost."
                .to_string(),
            Scenario::LostLastAck => format!(
                "The network drops the client's final ACK. The server, in LAST_ACK, retransmits its \
                 FIN after one RTO ({} ms here). The client is still in TIME_WAIT, so it knows the \
                 connection and answers with the ACK again (and restarts its {tw} s timer). Without \
                 TIME_WAIT the client would have answered with RST and the server's program would \
                 have seen an error on a connection that closed cleanly: the first reason TIME_WAIT \
                 exists (RFC 9293 3.6).",
                opts.rto_us / 1_000
            ),
            Scenario::OldDuplicate => format!(
                "The network duplicates the server's DATA and holds the copy for 30 s. When it \
                 arrives the client is in TIME_WAIT: its sequence number is old, so it is not \
                 acceptable (RFC 9293 3.10.7.4) and is answered with an ACK, never delivered{}. Had \
                 the client skipped TIME_WAIT and reused the same two addresses and ports for a new \
                 connection, that old segment could have landed in the new connection's window and \
                 been read as new data. TIME_WAIT lasts 2*MSL (MUST-13): long enough for every \
                 segment of the old connection, in either direction, to have died in the network \
                 (Linux assumes less and waits {tw} s). Note the end: the server, already CLOSED, \
                 answers the client's ACK with RST, and the RST ends TIME_WAIT early. RFC 1337 calls \
                 this TIME-WAIT assassination; Linux allows it unless net.ipv4.tcp_rfc1337=1.",
                if opts.restart_time_wait_on_ack {
                    " (Linux also restarts the 60 s timer, as for every segment with ACK that \
                     reaches TIME_WAIT; the RFC restarts 2*MSL only for a FIN)"
                } else {
                    " (the timer runs on: the RFC restarts 2*MSL only for a FIN, Linux for any \
                     segment with ACK)"
                }
            ),
            Scenario::CloseWaitLeak => match opts.fin_wait2_timeout_us {
                Some(t) => format!(
                    "The server's program ignores read() returning 0 and never calls close(): the \
                     server stays in CLOSE_WAIT as long as the program lives, holding a file \
                     descriptor. The client closed (an orphan) and waits in FIN_WAIT2 for a FIN \
                     that never comes; Linux gives up after tcp_fin_timeout ({} s) and drops it \
                     quietly. The RFC has no such timer: with --rfc the client waits forever too.",
                    t / 1_000_000
                ),
                None => "The server's program ignores read() returning 0 and never calls close(): \
                     the server stays in CLOSE_WAIT as long as the program lives. RFC 9293 has no \
                     FIN-WAIT-2 timer, so the client waits in FIN_WAIT2 forever too (Linux would \
                     drop it after tcp_fin_timeout)."
                    .to_string(),
            },
        }
    }

    /// The script for this scenario. Every scenario starts with the same handshake: the
    /// server listens at 0 ms, the client connects at 0 ms, the one-way latency is 1 ms.
    pub fn script(self) -> Script {
        use Call::*;
        use Side::{Client, Server};
        let base = Script::new()
            .call(0, Server, PassiveOpen)
            .call(0, Client, ActiveOpen);
        match self {
            Scenario::ClientClose => base.call(10, Client, Close).call(20, Server, Close),
            Scenario::ServerClose => base.call(10, Server, Close).call(20, Client, Close),
            Scenario::SimultaneousClose => base.call(10, Client, Close).call(10, Server, Close),
            Scenario::Abort => base.call(10, Client, Abort),
            Scenario::HalfClose => base
                .call(5, Client, Send)
                .call(7, Server, Read)
                .call(8, Client, ShutdownWrite)
                .call(15, Server, Send)
                .call(17, Server, Close)
                .call(19, Client, Read)
                .call(20, Client, Close),
            Scenario::LostLastAck => {
                base.call(10, Client, Close)
                    .call(20, Server, Close)
                    .rule(NetRule {
                        from: Client,
                        kind: SegKind::Ack,
                        in_state: Some(State::TimeWait),
                        nth: 0,
                        action: NetAction::Drop,
                    })
            }
            Scenario::OldDuplicate => base
                .call(5, Server, Send)
                .call(7, Client, Read)
                .call(10, Client, Close)
                .call(20, Server, Close)
                .rule(NetRule {
                    from: Server,
                    kind: SegKind::Data,
                    in_state: None,
                    nth: 0,
                    action: NetAction::Duplicate(30_000_000),
                }),
            Scenario::CloseWaitLeak => base.call(10, Client, Close),
        }
    }

    /// Run the scenario.
    pub fn run(self, opts: &Options) -> SimResult {
        simulate(&self.script(), opts)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for Scenario {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.name() == norm)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "unknown scenario {s:?}; valid scenarios: {}",
                    Scenario::names()
                ))
            })
    }
}
