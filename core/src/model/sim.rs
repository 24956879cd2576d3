//! A deterministic two-endpoint simulator: a client and a server, each an RFC 9293 machine
//! ([`Tcb`]), joined by a network that delivers every segment after a fixed latency unless a
//! scripted rule drops, delays or duplicates it. The result is a [`Timeline`] (source
//! `Model`, one event per state change, with side and segment set) plus the list of segments
//! exchanged, which the ladder renderers draw.
//!
//! Addresses are fixed: the client is 10.0.0.1:40000 and the server 10.0.0.2:80. Two hosts
//! make the ladder read like the RFC's figures; [`super::compare`] matches model and kernel
//! by role (who connected), not by address, so loopback observations compare fine.
//!
//! What it leaves out on purpose: randomness (no loss model, no jitter: every drop or delay is
//! written in the script), reordering except through a scripted delay, and more than one
//! connection. Time is simulated: microseconds since the start, never the wall clock.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use serde::{Deserialize, Serialize};

use super::machine::{
    Call, Input, Options, Output, SegKind, Segment, State, Tcb, Timer, UserError,
};
use crate::timeline::{Event, Side, Source, Timeline};

/// The client's address in every simulation.
pub const CLIENT_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40000));
/// The server's address in every simulation.
pub const SERVER_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80));
/// The client's initial sequence number (fixed: the model has no randomness).
pub const CLIENT_ISS: u32 = 1000;
/// The server's initial sequence number.
pub const SERVER_ISS: u32 = 5000;

/// What the network does to one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetAction {
    /// Lose it.
    Drop,
    /// Deliver it this many microseconds later than usual.
    Delay(u64),
    /// Deliver it, and deliver a copy this many microseconds later than usual.
    Duplicate(u64),
}

/// A scripted network rule: the `nth` (from 0) segment of `kind` sent by `from`, while the
/// sender is in `in_state` (after sending) if given, gets `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetRule {
    pub from: Side,
    pub kind: SegKind,
    pub in_state: Option<State>,
    pub nth: usize,
    pub action: NetAction,
}

/// A user call at a given simulated time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptCall {
    pub t_us: u64,
    pub side: Side,
    pub call: Call,
}

/// Everything a simulation needs besides the [`Options`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Script {
    pub calls: Vec<ScriptCall>,
    pub rules: Vec<NetRule>,
    /// One-way latency of the network.
    pub latency_us: u64,
    /// Stop here even if timers are still armed.
    pub horizon_us: u64,
}

impl Script {
    /// An empty script with 1 ms latency and a 300 s horizon (longer than the RFC's 240 s
    /// TIME-WAIT, so every timer in either profile runs out).
    pub fn new() -> Script {
        Script {
            calls: Vec::new(),
            rules: Vec::new(),
            latency_us: 1_000,
            horizon_us: 300_000_000,
        }
    }

    /// Add a user call at `t_ms` milliseconds.
    pub fn call(mut self, t_ms: u64, side: Side, call: Call) -> Script {
        self.calls.push(ScriptCall {
            t_us: t_ms * 1_000,
            side,
            call,
        });
        self
    }

    /// Add a network rule.
    pub fn rule(mut self, rule: NetRule) -> Script {
        self.rules.push(rule);
        self
    }
}

impl Default for Script {
    fn default() -> Self {
        Script::new()
    }
}

/// What became of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fate {
    Delivered,
    Dropped,
    Delayed,
    /// Delivered, and a copy delivered later.
    Duplicated,
}

/// One segment put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRecord {
    pub t_us: u64,
    pub from: Side,
    pub segment: Segment,
    pub fate: Fate,
    /// When it (and its copy, if duplicated) arrived; empty if dropped.
    pub arrives_us: Vec<u64>,
}

/// One line of the simulation's log, in the order things happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogEntry {
    /// The program on `side` made a call.
    Call { t_us: u64, side: Side, call: Call },
    /// A timer fired on `side`.
    Timer { t_us: u64, side: Side, timer: Timer },
    /// A segment arrived at `side`; `late` if it was delayed or is a duplicate's copy.
    Arrived {
        t_us: u64,
        side: Side,
        segment: Segment,
        late: bool,
    },
    /// `side` changed state.
    Transition {
        t_us: u64,
        side: Side,
        from: State,
        to: State,
    },
    /// `side` sent a segment: index into [`SimResult::segments`].
    Sent { t_us: u64, side: Side, index: usize },
    /// The program on `side` got an error.
    Error {
        t_us: u64,
        side: Side,
        error: UserError,
    },
    /// Data reached `side`'s receive buffer.
    Delivered { t_us: u64, side: Side, units: u32 },
}

impl LogEntry {
    pub fn t_us(&self) -> u64 {
        match self {
            LogEntry::Call { t_us, .. }
            | LogEntry::Timer { t_us, .. }
            | LogEntry::Arrived { t_us, .. }
            | LogEntry::Transition { t_us, .. }
            | LogEntry::Sent { t_us, .. }
            | LogEntry::Error { t_us, .. }
            | LogEntry::Delivered { t_us, .. } => *t_us,
        }
    }
}

/// The outcome of a simulation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimResult {
    pub options: Options,
    pub timeline: Timeline,
    pub segments: Vec<SegmentRecord>,
    pub log: Vec<LogEntry>,
    pub client: Tcb,
    pub server: Tcb,
    /// When the simulation stopped.
    pub end_us: u64,
}

impl SimResult {
    /// One side's final TCB.
    pub fn tcb(&self, side: Side) -> &Tcb {
        match side {
            Side::Client => &self.client,
            Side::Server => &self.server,
        }
    }

    /// One side's states, from the first one to the last (CLOSED first).
    pub fn states(&self, side: Side) -> Vec<State> {
        let mut seq = vec![State::Closed];
        for e in &self.log {
            if let LogEntry::Transition { side: s, to, .. } = e {
                if *s == side {
                    seq.push(*to);
                }
            }
        }
        seq
    }
}

/// The local and remote address of one side.
pub fn addresses(side: Side) -> (SocketAddr, SocketAddr) {
    match side {
        Side::Client => (CLIENT_ADDR, SERVER_ADDR),
        Side::Server => (SERVER_ADDR, CLIENT_ADDR),
    }
}

fn other(side: Side) -> Side {
    match side {
        Side::Client => Side::Server,
        Side::Server => Side::Client,
    }
}

/// Something due at a time: a user call or a segment arrival.
#[derive(Debug, Clone, Copy)]
enum Pending {
    Call(Side, Call),
    Arrive(Side, Segment, bool),
}

struct Sim<'a> {
    opts: &'a Options,
    script: &'a Script,
    client: Tcb,
    server: Tcb,
    queue: BTreeMap<(u64, u64), Pending>,
    order: u64,
    rule_hits: Vec<usize>,
    timeline: Timeline,
    segments: Vec<SegmentRecord>,
    log: Vec<LogEntry>,
}

impl Sim<'_> {
    fn tcb(&mut self, side: Side) -> &mut Tcb {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    fn schedule(&mut self, t: u64, p: Pending) {
        self.queue.insert((t, self.order), p);
        self.order += 1;
    }

    /// Feed one input to one side and record what followed.
    fn feed(&mut self, side: Side, input: Input, now: u64) {
        let opts = self.opts;
        let out: Output = self.tcb(side).step(input, now, opts);
        let (local, remote) = addresses(side);
        let cause = match input {
            Input::Segment(s) => Some(s.kind.label().to_string()),
            Input::User(_) | Input::Timer(_) => {
                out.send.first().map(|s| s.kind.label().to_string())
            }
        };
        let mut from = out.from;
        for &to in &out.path {
            self.log.push(LogEntry::Transition {
                t_us: now,
                side,
                from,
                to,
            });
            let mut ev = Event::new(now, local, remote, from.tcp(), to.tcp(), Source::Model);
            ev.side = Some(side);
            ev.segment = cause.clone();
            self.timeline.push(ev);
            from = to;
        }
        if out.delivered > 0 {
            self.log.push(LogEntry::Delivered {
                t_us: now,
                side,
                units: out.delivered,
            });
        }
        if let Some(error) = out.error {
            self.log.push(LogEntry::Error {
                t_us: now,
                side,
                error,
            });
        }
        let state_now = self.tcb(side).state;
        for seg in out.send {
            self.transmit(side, seg, state_now, now);
        }
    }

    /// Put a segment on the wire, applying the first matching rule.
    fn transmit(&mut self, side: Side, seg: Segment, sender_state: State, now: u64) {
        let mut action = None;
        for (i, r) in self.script.rules.iter().enumerate() {
            let matches = r.from == side
                && r.kind == seg.kind
                && r.in_state.is_none_or(|s| s == sender_state);
            if matches {
                let hit = self.rule_hits[i];
                self.rule_hits[i] += 1;
                if hit == r.nth && action.is_none() {
                    action = Some(r.action);
                }
            }
        }
        let lat = self.script.latency_us;
        let to = other(side);
        let (fate, arrives) = match action {
            None => (Fate::Delivered, vec![now + lat]),
            Some(NetAction::Drop) => (Fate::Dropped, vec![]),
            Some(NetAction::Delay(d)) => (Fate::Delayed, vec![now + lat + d]),
            Some(NetAction::Duplicate(d)) => (Fate::Duplicated, vec![now + lat, now + lat + d]),
        };
        for (i, &t) in arrives.iter().enumerate() {
            let late = fate == Fate::Delayed || i > 0;
            self.schedule(t, Pending::Arrive(to, seg, late));
        }
        self.log.push(LogEntry::Sent {
            t_us: now,
            side,
            index: self.segments.len(),
        });
        self.segments.push(SegmentRecord {
            t_us: now,
            from: side,
            segment: seg,
            fate,
            arrives_us: arrives,
        });
    }
}

/// Run a script: deterministic, so the same script and options always give the same result.
pub fn simulate(script: &Script, opts: &Options) -> SimResult {
    let mut sim = Sim {
        opts,
        script,
        client: Tcb::new(CLIENT_ISS),
        server: Tcb::new(SERVER_ISS),
        queue: BTreeMap::new(),
        order: 0,
        rule_hits: vec![0; script.rules.len()],
        timeline: Timeline::new(),
        segments: Vec::new(),
        log: Vec::new(),
    };
    for c in &script.calls {
        sim.schedule(c.t_us, Pending::Call(c.side, c.call));
    }
    let mut now = 0;
    // A bound on steps, so a script that makes two machines ping-pong forever still ends.
    for _ in 0..100_000 {
        let next_item = sim.queue.keys().next().map(|k| k.0);
        let next_timer = [Side::Client, Side::Server]
            .into_iter()
            .filter_map(|s| sim.tcb(s).next_timer().map(|(t, timer)| (t, s, timer)))
            .min();
        // At equal times, calls and arrivals go before timers.
        let timer_first = match (next_item, next_timer) {
            (None, None) => break,
            (Some(i), Some((t, _, _))) => t < i,
            (None, Some(_)) => true,
            (Some(_), None) => false,
        };
        if timer_first {
            let Some((t, side, timer)) = next_timer else {
                break;
            };
            if t > script.horizon_us {
                break;
            }
            now = t;
            sim.log.push(LogEntry::Timer {
                t_us: t,
                side,
                timer,
            });
            sim.feed(side, Input::Timer(timer), t);
        } else {
            let Some((&key, _)) = sim.queue.iter().next() else {
                break;
            };
            if key.0 > script.horizon_us {
                break;
            }
            let Some(p) = sim.queue.remove(&key) else {
                break;
            };
            now = key.0;
            match p {
                Pending::Call(side, call) => {
                    sim.log.push(LogEntry::Call {
                        t_us: now,
                        side,
                        call,
                    });
                    sim.feed(side, Input::User(call), now);
                }
                Pending::Arrive(side, segment, late) => {
                    sim.log.push(LogEntry::Arrived {
                        t_us: now,
                        side,
                        segment,
                        late,
                    });
                    sim.feed(side, Input::Segment(segment), now);
                }
            }
        }
    }
    SimResult {
        options: *opts,
        timeline: sim.timeline,
        segments: sim.segments,
        log: sim.log,
        client: sim.client,
        server: sim.server,
        end_us: now,
    }
}
