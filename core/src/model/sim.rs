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

    /// The network this script runs on: its latency and rules.
    pub fn network(&self) -> Network {
        Network {
            latency_us: self.latency_us,
            rules: self.rules.clone(),
        }
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

/// The network between the two endpoints: a fixed one-way latency and scripted rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// One-way latency.
    pub latency_us: u64,
    /// What happens to particular segments; the first matching rule wins.
    pub rules: Vec<NetRule>,
}

impl Default for Network {
    /// 1 ms latency, nothing lost.
    fn default() -> Self {
        Network {
            latency_us: 1_000,
            rules: Vec::new(),
        }
    }
}

/// A segment on its way: who receives it, when, and which [`SegmentRecord`] it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Flight {
    pub to: Side,
    pub arrives_us: u64,
    pub segment: Segment,
    /// Delayed by a rule, or a duplicate's copy.
    pub late: bool,
    /// Index into [`Simulator::segments`].
    pub index: usize,
}

impl Flight {
    /// The side that sent it.
    pub fn from(&self) -> Side {
        other(self.to)
    }
}

/// What one input did to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub side: Side,
    pub input: Input,
    pub output: Output,
}

/// Two endpoints and the network between them, moved one input at a time.
///
/// Each operation takes the simulated time it happens at; the clock never goes back (an
/// earlier time is taken as now). [`simulate`] drives it from a [`Script`]; a step-through
/// (Python's `Connection`) drives it by hand. Both see the same events: one [`Event`] per
/// state change, whose `segment` is the one received, or for a call or timer the first one
/// sent (RFC 9293 Figure 5 labels `CLOSE / snd FIN` that way).
#[derive(Debug, Clone)]
pub struct Simulator {
    opts: Options,
    network: Network,
    client: Tcb,
    server: Tcb,
    /// Segments in flight, keyed by (arrival, order sent).
    flight: BTreeMap<(u64, u64), Flight>,
    order: u64,
    rule_hits: Vec<usize>,
    now: u64,
    timeline: Timeline,
    segments: Vec<SegmentRecord>,
    log: Vec<LogEntry>,
}

impl Simulator {
    /// Both endpoints CLOSED at time 0, nothing in flight.
    pub fn new(opts: Options, network: Network) -> Simulator {
        Simulator {
            opts,
            rule_hits: vec![0; network.rules.len()],
            network,
            client: Tcb::new(CLIENT_ISS),
            server: Tcb::new(SERVER_ISS),
            flight: BTreeMap::new(),
            order: 0,
            now: 0,
            timeline: Timeline::new(),
            segments: Vec::new(),
            log: Vec::new(),
        }
    }

    /// The simulated time of the last operation.
    pub fn now(&self) -> u64 {
        self.now
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// One side's TCB.
    pub fn tcb(&self, side: Side) -> &Tcb {
        match side {
            Side::Client => &self.client,
            Side::Server => &self.server,
        }
    }

    fn tcb_mut(&mut self, side: Side) -> &mut Tcb {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    /// Segments in flight, in the order they arrive.
    pub fn in_flight(&self) -> impl Iterator<Item = &Flight> {
        self.flight.values()
    }

    /// The next segment to arrive, if any.
    pub fn next_arrival(&self) -> Option<&Flight> {
        self.flight.values().next()
    }

    /// The next timer due on either side: (time, side, timer); the client first at a tie.
    pub fn next_timer(&self) -> Option<(u64, Side, Timer)> {
        [Side::Client, Side::Server]
            .into_iter()
            .filter_map(|s| self.tcb(s).next_timer().map(|(t, timer)| (t, s, timer)))
            .min()
    }

    /// The state changes so far.
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// Every segment sent so far.
    pub fn segments(&self) -> &[SegmentRecord] {
        &self.segments
    }

    /// What happened so far.
    pub fn log(&self) -> &[LogEntry] {
        &self.log
    }

    fn tick(&mut self, t_us: u64) -> u64 {
        self.now = self.now.max(t_us);
        self.now
    }

    /// A program call on `side` at `t_us`.
    pub fn feed(&mut self, side: Side, call: Call, t_us: u64) -> Step {
        let now = self.tick(t_us);
        self.log.push(LogEntry::Call {
            t_us: now,
            side,
            call,
        });
        self.step(side, Input::User(call), now)
    }

    /// Deliver the next segment to arrive, at `t_us` or at its arrival if that is later.
    /// None when nothing is in flight.
    pub fn deliver(&mut self, t_us: u64) -> Option<Step> {
        let (_, f) = self.flight.pop_first()?;
        let now = self.tick(t_us.max(f.arrives_us));
        self.log.push(LogEntry::Arrived {
            t_us: now,
            side: f.to,
            segment: f.segment,
            late: f.late,
        });
        Some(self.step(f.to, Input::Segment(f.segment), now))
    }

    /// Lose the next segment to arrive. None when nothing is in flight.
    pub fn drop(&mut self) -> Option<Flight> {
        let (_, f) = self.flight.pop_first()?;
        let rec = &mut self.segments[f.index];
        if let Some(i) = rec.arrives_us.iter().position(|&t| t == f.arrives_us) {
            rec.arrives_us.remove(i);
        }
        if rec.arrives_us.is_empty() {
            rec.fate = Fate::Dropped;
        }
        Some(f)
    }

    /// Fire `side`'s next timer at `t_us`, or when it is due if that is later.
    /// None when that side has no timer running.
    pub fn expire(&mut self, side: Side, t_us: u64) -> Option<Step> {
        let (at, timer) = self.tcb(side).next_timer()?;
        let now = self.tick(t_us.max(at));
        self.log.push(LogEntry::Timer {
            t_us: now,
            side,
            timer,
        });
        Some(self.step(side, Input::Timer(timer), now))
    }

    /// Feed one input to one side and record what followed.
    fn step(&mut self, side: Side, input: Input, now: u64) -> Step {
        let opts = self.opts;
        let out: Output = self.tcb_mut(side).step(input, now, &opts);
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
        for seg in &out.send {
            self.transmit(side, *seg, state_now, now);
        }
        Step {
            side,
            input,
            output: out,
        }
    }

    /// Put a segment on the wire, applying the first matching rule.
    fn transmit(&mut self, side: Side, seg: Segment, sender_state: State, now: u64) {
        let mut action = None;
        for (i, r) in self.network.rules.iter().enumerate() {
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
        let lat = self.network.latency_us;
        let (fate, arrives) = match action {
            None => (Fate::Delivered, vec![now + lat]),
            Some(NetAction::Drop) => (Fate::Dropped, vec![]),
            Some(NetAction::Delay(d)) => (Fate::Delayed, vec![now + lat + d]),
            Some(NetAction::Duplicate(d)) => (Fate::Duplicated, vec![now + lat, now + lat + d]),
        };
        let index = self.segments.len();
        for (i, &t) in arrives.iter().enumerate() {
            let flight = Flight {
                to: other(side),
                arrives_us: t,
                segment: seg,
                late: fate == Fate::Delayed || i > 0,
                index,
            };
            self.flight.insert((t, self.order), flight);
            self.order += 1;
        }
        self.log.push(LogEntry::Sent {
            t_us: now,
            side,
            index,
        });
        self.segments.push(SegmentRecord {
            t_us: now,
            from: side,
            segment: seg,
            fate,
            arrives_us: arrives,
        });
    }

    /// The result so far, with `end_us` as the time the run stopped.
    pub fn finish(self, end_us: u64) -> SimResult {
        SimResult {
            options: self.opts,
            timeline: self.timeline,
            segments: self.segments,
            log: self.log,
            client: self.client,
            server: self.server,
            end_us,
        }
    }
}

/// Run a script: deterministic, so the same script and options always give the same result.
///
/// At equal times, calls go first (in script order), then arrivals (in the order sent),
/// then timers.
pub fn simulate(script: &Script, opts: &Options) -> SimResult {
    let mut sim = Simulator::new(*opts, script.network());
    let mut calls: Vec<ScriptCall> = script.calls.clone();
    calls.sort_by_key(|c| c.t_us);
    let mut calls = calls.into_iter().peekable();
    let mut now = 0;
    // A bound on steps, so a script that makes two machines ping-pong forever still ends.
    for _ in 0..100_000 {
        let next_call = calls.peek().map(|c| c.t_us);
        let next_arrival = sim.next_arrival().map(|f| f.arrives_us);
        let next_item = match (next_call, next_arrival) {
            (Some(c), Some(a)) => Some(c.min(a)),
            (c, a) => c.or(a),
        };
        let next_timer = sim.next_timer();
        // At equal times, calls and arrivals go before timers.
        let timer_first = match (next_item, next_timer) {
            (None, None) => break,
            (Some(i), Some((t, _, _))) => t < i,
            (None, Some(_)) => true,
            (Some(_), None) => false,
        };
        if timer_first {
            let Some((t, side, _)) = next_timer else {
                break;
            };
            if t > script.horizon_us {
                break;
            }
            now = t;
            sim.expire(side, t);
        } else {
            let Some(t) = next_item else {
                break;
            };
            if t > script.horizon_us {
                break;
            }
            now = t;
            if next_call == Some(t) {
                if let Some(c) = calls.next() {
                    sim.feed(c.side, c.call, t);
                }
            } else {
                sim.deliver(t);
            }
        }
    }
    sim.finish(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Scenario;

    #[test]
    fn stepping_by_hand_replays_every_scenario() {
        // Feeding a simulator the calls, arrivals and timers of a scenario's log, at their
        // times, gives the same result simulate() gave: one simulator, two drivers.
        for opts in [Options::linux(), Options::rfc()] {
            for sc in Scenario::ALL {
                let script = sc.script();
                let want = simulate(&script, &opts);
                let mut sim = Simulator::new(opts, script.network());
                for e in &want.log {
                    match *e {
                        LogEntry::Call { t_us, side, call } => {
                            sim.feed(side, call, t_us);
                        }
                        LogEntry::Arrived { t_us, side, .. } => {
                            let step = sim.deliver(t_us).expect("a segment in flight");
                            assert_eq!(step.side, side);
                        }
                        LogEntry::Timer { t_us, side, timer } => {
                            let step = sim.expire(side, t_us).expect("a timer running");
                            assert_eq!(step.input, Input::Timer(timer));
                        }
                        _ => {}
                    }
                }
                let got = sim.finish(want.end_us);
                assert_eq!(got, want, "{} ({})", sc.name(), opts.name);
            }
        }
    }

    #[test]
    fn a_dropped_segment_never_arrives() {
        let mut sim = Simulator::new(Options::linux(), Network::default());
        sim.feed(Side::Server, Call::PassiveOpen, 0);
        sim.feed(Side::Client, Call::ActiveOpen, 0);
        let f = sim.drop().expect("the SYN in flight");
        assert_eq!((f.from(), f.segment.kind), (Side::Client, SegKind::Syn));
        assert_eq!(sim.segments()[f.index].fate, Fate::Dropped);
        assert!(sim.segments()[f.index].arrives_us.is_empty());
        assert!(sim.deliver(10_000).is_none());
        assert_eq!(sim.tcb(Side::Server).state, State::Listen);
        // The client's retransmission timer brings the SYN back.
        let step = sim
            .expire(Side::Client, 0)
            .expect("the SYN's retransmission timer");
        assert!(step.output.send.iter().any(|s| s.kind == SegKind::Syn));
        assert!(sim.now() > 10_000);
    }
}
