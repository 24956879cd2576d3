//! A `Timeline` is the story of some connections in time: an ordered list of state changes,
//! and, when the wire was captured, the segments that crossed it, on the same clock.
//! The tracer fills one from the kernel, the model fills one from the RFC; both use this type,
//! so they can be compared, printed, plotted and saved as JSON alike. Segments come from
//! [`crate::observe::capture`]; [`Timeline::causes`] links a state change to the segment
//! that caused it (the FIN that moved the peer to CLOSE_WAIT) or that it sent.
//!
//! Left out on purpose: no I/O and no clock here. Times are microseconds since the start of
//! the observation (or of the simulation), handed in by whoever records the event. A
//! timeline without segments serializes exactly as before (the `segments` key is left out).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::segment::{Conn, Flag, Segment};
use crate::state::TcpState;

/// Where an event's knowledge came from. Only `Inferred` is a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The kernel's `sock:inet_sock_set_state` tracepoint.
    Tracepoint,
    /// A sock_diag dump that saw a timewait or orphan mini-socket the tracepoint cannot report.
    Diag,
    /// A difference between two sock_diag polls.
    Poll,
    /// Not seen: filled in from the shortest legal path between two observed states.
    Inferred,
    /// Produced by the RFC 9293 model, not by a kernel.
    Model,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Source::Tracepoint => "tracepoint",
            Source::Diag => "diag",
            Source::Poll => "poll",
            Source::Inferred => "inferred",
            Source::Model => "model",
        };
        f.pad(s)
    }
}

/// Which end of a modelled connection an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Client,
    Server,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Side::Client => "client",
            Side::Server => "server",
        })
    }
}

/// One state change of one socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Microseconds since the observation (or simulation) started.
    pub t_us: u64,
    /// The socket's own address.
    pub local: SocketAddr,
    /// The peer's address (`0.0.0.0:0` for a listener).
    pub remote: SocketAddr,
    pub from: TcpState,
    pub to: TcpState,
    pub source: Source,
    /// The process that caused the change, when the kernel said so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// For modelled events: which side of the connection this is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<Side>,
    /// For modelled events: the segment that caused or came with the change (`FIN`, `ACK`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
}

impl Event {
    /// A plain observed event with no pid, side or segment.
    pub fn new(
        t_us: u64,
        local: SocketAddr,
        remote: SocketAddr,
        from: TcpState,
        to: TcpState,
        source: Source,
    ) -> Event {
        Event {
            t_us,
            local,
            remote,
            from,
            to,
            source,
            pid: None,
            side: None,
            segment: None,
        }
    }

    /// The endpoint this event belongs to.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            local: self.local,
            remote: self.remote,
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>10.3} ms  {:>22} -> {:<22} {:>12} -> {:<12} ({})",
            self.t_us as f64 / 1000.0,
            self.local.to_string(),
            self.remote.to_string(),
            self.from,
            self.to,
            self.source
        )
    }
}

/// A socket, named by its two addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Endpoint {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.local, self.remote)
    }
}

/// One point of [`Timeline::state_counts`]: how many sockets sat in each state at `t_us`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountPoint {
    pub t_us: u64,
    pub counts: BTreeMap<TcpState, usize>,
}

/// An ordered list of state changes, and the segments captured beside them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    pub events: Vec<Event>,
    /// Segments in capture order (which is time order), on the events' clock.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<Segment>,
}

/// Which way a segment went, seen from the socket that changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The socket received it, and changed state because of it.
    Received,
    /// The socket sent it because of the change (a FIN after close(), a RST on abort).
    Sent,
}

/// A state change and the segment behind it: `events[event]` and `segments[segment]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    pub event: usize,
    pub segment: usize,
    pub direction: Direction,
    /// The flag that made the link.
    pub flag: Flag,
}

/// How far apart a change and its segment may be, in microseconds. A received segment is
/// stamped as it enters the stack, a moment before the socket changes; a sent one a moment
/// after. Polled changes are seen up to a poll interval and a dump late.
const CAUSE_EARLY_US: u64 = 1_000;
const CAUSE_LATE_US: u64 = 100_000;

/// The segment flag that explains a change, and whether the socket received or sent it.
/// Only changes with one clear cause on the wire are listed.
fn wire_cause(from: TcpState, to: TcpState) -> Option<(Direction, Flag)> {
    use Direction::*;
    use TcpState::*;
    Some(match (from, to) {
        // connect() sends the SYN; the SYN-ACK completes it.
        (Close, SynSent) => (Sent, Flag::Syn),
        (SynSent, Established) => (Received, Flag::Syn),
        // A listener's child is born of a SYN and set up by the final ACK.
        (Listen, SynRecv) => (Received, Flag::Syn),
        (SynRecv, Established) => (Received, Flag::Ack),
        // close() or shutdown(): the FIN goes out.
        (Established, FinWait1) | (CloseWait, LastAck) => (Sent, Flag::Fin),
        // The peer's FIN.
        (Established, CloseWait)
        | (FinWait1, Closing)
        | (FinWait1, TimeWait)
        | (FinWait2, TimeWait) => (Received, Flag::Fin),
        // The ACK of our FIN.
        (FinWait1, FinWait2) | (Closing, TimeWait) | (LastAck, Close) => (Received, Flag::Ack),
        _ => return None,
    })
}

impl Timeline {
    /// An empty timeline.
    pub fn new() -> Timeline {
        Timeline::default()
    }

    /// A timeline from events, sorted by time (stable: equal times keep their order).
    pub fn from_events(mut events: Vec<Event>) -> Timeline {
        events.sort_by_key(|e| e.t_us);
        Timeline {
            events,
            segments: Vec::new(),
        }
    }

    /// Add captured segments (kept in time order, stable).
    pub fn with_segments(mut self, segments: Vec<Segment>) -> Timeline {
        self.segments.extend(segments);
        self.segments.sort_by_key(|s| s.t_us);
        self
    }

    /// Date the inferred state changes by the segments behind them. A poll sees a state only
    /// when it looks, so the steps it fills in from the model carry the time of the poll that
    /// noticed, which can be long after the wire moved. Walking each endpoint's changes in
    /// order through the segments of its connection, a change with one clear cause on the wire
    /// (a FIN sent, the peer's FIN received, the ACK of a SYN) is matched with the next such
    /// segment; an inferred change takes that segment's time. Observed changes keep theirs
    /// (they only move the walk on), changes with no such segment stay where they are, and no
    /// change moves before the endpoint's previous one. Returns how many changes were moved.
    pub fn date_inferred_by_segments(&mut self) -> usize {
        let mut moved = 0;
        for ep in self.endpoints() {
            let conn: Vec<&Segment> = self
                .segments
                .iter()
                .filter(|s| s.between(ep.local, ep.remote))
                .collect();
            if conn.is_empty() {
                continue;
            }
            let mut next = 0;
            // Never before the endpoint's previous change: its order is kept.
            let mut floor = 0;
            for e in self.events.iter_mut().filter(|e| e.endpoint() == ep) {
                let Some((direction, flag)) = wire_cause(e.from, e.to) else {
                    floor = e.t_us;
                    continue;
                };
                let (src, dst) = match direction {
                    Direction::Sent => (ep.local, ep.remote),
                    Direction::Received => (ep.remote, ep.local),
                };
                let found = conn[next..]
                    .iter()
                    .position(|s| s.src == src && s.dst == dst && s.has(flag));
                if let Some(j) = found {
                    let t = conn[next + j].t_us.max(floor);
                    next += j + 1;
                    if e.source == Source::Inferred && e.t_us != t {
                        e.t_us = t;
                        moved += 1;
                    }
                }
                floor = e.t_us;
            }
        }
        self.events.sort_by_key(|e| e.t_us);
        moved
    }

    /// Every connection the segments show, in order of first appearance.
    pub fn connections(&self) -> Vec<Conn> {
        let mut seen = Vec::new();
        for s in &self.segments {
            let c = s.conn();
            if !seen.contains(&c) {
                seen.push(c);
            }
        }
        seen
    }

    /// The segments of one connection, both ways, in order.
    pub fn segments_of(&self, conn: Conn) -> impl Iterator<Item = &Segment> {
        self.segments.iter().filter(move |s| s.conn() == conn)
    }

    /// The segments an endpoint sent or received, in order.
    pub fn segments_of_endpoint(&self, endpoint: Endpoint) -> impl Iterator<Item = &Segment> {
        self.segments_of(Conn::new(endpoint.local, endpoint.remote))
    }

    /// For drawing only: each inferred step that receiving a segment brings about (SYN_RECV,
    /// ESTABLISHED on the SYN+ACK, CLOSE_WAIT, TIME_WAIT, the end of LAST_ACK...) paired
    /// with the matching segment received within a millisecond of it, so that a ladder
    /// writes the step after that segment's arrow. Not a [`Cause`]: an inferred step was not
    /// seen, so [`Timeline::causes`] leaves it out.
    pub fn inferred_receipts(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (i, e) in self.events.iter().enumerate() {
            if e.source != Source::Inferred {
                continue;
            }
            let Some((Direction::Received, flag)) = wire_cause(e.from, e.to) else {
                continue;
            };
            let found = self.segments.iter().position(|s| {
                s.src == e.remote
                    && s.dst == e.local
                    && s.has(flag)
                    && s.t_us.abs_diff(e.t_us) <= CAUSE_EARLY_US
            });
            if let Some(j) = found {
                out.push((i, j));
            }
        }
        out
    }

    /// Every state change whose cause on the wire is clear, linked to its segment: a
    /// received FIN behind `ESTABLISHED -> CLOSE_WAIT`, the ACK behind `FIN_WAIT1 ->
    /// FIN_WAIT2`, a received RST behind any `-> CLOSE` of a live connection, the FIN a
    /// close() sent. Inferred and modelled changes are not linked (they were not seen).
    pub fn causes(&self) -> Vec<Cause> {
        let mut out = Vec::new();
        for (i, e) in self.events.iter().enumerate() {
            if matches!(e.source, Source::Inferred | Source::Model) {
                continue;
            }
            // The latest received before the change, else (clocks differ by a hair) the
            // first just after it.
            let received = |flag: Flag| {
                let ok = |s: &Segment| s.src == e.remote && s.dst == e.local && s.has(flag);
                let segs = self.segments.iter().enumerate();
                segs.clone()
                    .rev()
                    .find(|(_, s)| ok(s) && s.t_us <= e.t_us && e.t_us <= s.t_us + CAUSE_LATE_US)
                    .or_else(|| {
                        segs.clone().find(|(_, s)| {
                            ok(s) && s.t_us > e.t_us && s.t_us <= e.t_us + CAUSE_EARLY_US
                        })
                    })
            };
            // The first sent after the change, else the last just before it.
            let sent = |flag: Flag| {
                let ok = |s: &Segment| s.src == e.local && s.dst == e.remote && s.has(flag);
                let segs = self.segments.iter().enumerate();
                segs.clone()
                    .find(|(_, s)| ok(s) && s.t_us >= e.t_us && s.t_us <= e.t_us + CAUSE_LATE_US)
                    .or_else(|| {
                        segs.clone().rev().find(|(_, s)| {
                            ok(s) && s.t_us < e.t_us && e.t_us <= s.t_us + CAUSE_EARLY_US
                        })
                    })
            };
            // A reset ends any live connection; it is looked for first.
            if e.to == TcpState::Close && e.from != TcpState::Listen {
                if let Some((j, _)) = received(Flag::Rst) {
                    out.push(Cause {
                        event: i,
                        segment: j,
                        direction: Direction::Received,
                        flag: Flag::Rst,
                    });
                    continue;
                }
                if let Some((j, _)) = sent(Flag::Rst) {
                    out.push(Cause {
                        event: i,
                        segment: j,
                        direction: Direction::Sent,
                        flag: Flag::Rst,
                    });
                    continue;
                }
            }
            let Some((direction, flag)) = wire_cause(e.from, e.to) else {
                continue;
            };
            let found = match direction {
                Direction::Received => received(flag),
                Direction::Sent => sent(flag),
            };
            if let Some((j, _)) = found {
                out.push(Cause {
                    event: i,
                    segment: j,
                    direction,
                    flag,
                });
            }
        }
        out
    }

    /// The segment that caused (or was sent by) `events[event]`, when clear.
    pub fn cause_of(&self, event: usize) -> Option<&Segment> {
        self.causes()
            .into_iter()
            .find(|c| c.event == event)
            .map(|c| &self.segments[c.segment])
    }

    /// Add an event, keeping the list ordered by time.
    pub fn push(&mut self, event: Event) {
        let at = self.events.partition_point(|e| e.t_us <= event.t_us);
        self.events.insert(at, event);
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Every endpoint seen, in order of first appearance.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let mut seen = Vec::new();
        for e in &self.events {
            let ep = e.endpoint();
            if !seen.contains(&ep) {
                seen.push(ep);
            }
        }
        seen
    }

    /// The events of one endpoint, in order.
    pub fn events_of(&self, endpoint: Endpoint) -> impl Iterator<Item = &Event> {
        self.events.iter().filter(move |e| e.endpoint() == endpoint)
    }

    /// The states one endpoint went through: the first event's `from`, then every `to`.
    pub fn sequence(&self, endpoint: Endpoint) -> Vec<TcpState> {
        let mut seq = Vec::new();
        for e in self.events_of(endpoint) {
            if seq.is_empty() {
                seq.push(e.from);
            }
            seq.push(e.to);
        }
        seq
    }

    /// Every endpoint's sequence of states.
    pub fn sequences(&self) -> BTreeMap<Endpoint, Vec<TcpState>> {
        self.endpoints()
            .into_iter()
            .map(|ep| (ep, self.sequence(ep)))
            .collect()
    }

    /// How long one endpoint stayed in each state it left, in order: `(state, microseconds)`.
    /// Only states whose entry and exit were both seen are listed: not the state before the
    /// first event (its start is unknown), not the one it is still in (its time is not over).
    pub fn durations(&self, endpoint: Endpoint) -> Vec<(TcpState, u64)> {
        let mut out = Vec::new();
        let mut entered: Option<u64> = None;
        for e in self.events_of(endpoint) {
            if let Some(t0) = entered {
                out.push((e.from, e.t_us.saturating_sub(t0)));
            }
            entered = Some(e.t_us);
        }
        out
    }

    /// How many sockets are in each state after every event: a time series for plots.
    /// A socket counts from its first event, in the state that event moved it to, and stops
    /// counting when it reaches CLOSE.
    pub fn state_counts(&self) -> Vec<CountPoint> {
        let mut current: BTreeMap<Endpoint, TcpState> = BTreeMap::new();
        let mut out: Vec<CountPoint> = Vec::new();
        for e in &self.events {
            if e.to == TcpState::Close {
                current.remove(&e.endpoint());
            } else {
                current.insert(e.endpoint(), e.to);
            }
            let mut counts = BTreeMap::new();
            for s in current.values() {
                *counts.entry(*s).or_insert(0) += 1;
            }
            match out.last_mut() {
                Some(last) if last.t_us == e.t_us => last.counts = counts,
                _ => out.push(CountPoint {
                    t_us: e.t_us,
                    counts,
                }),
            }
        }
        out
    }

    /// The state each endpoint was in at the end.
    pub fn final_states(&self) -> BTreeMap<Endpoint, TcpState> {
        let mut out = BTreeMap::new();
        for e in &self.events {
            out.insert(e.endpoint(), e.to);
        }
        out
    }

    /// JSON lines: one event per line, as `tcplab trace --json` prints.
    pub fn to_json_lines(&self) -> String {
        let mut s = String::new();
        for e in &self.events {
            // An Event holds only strings, numbers and enums: serialising it cannot fail.
            s.push_str(&serde_json::to_string(e).unwrap_or_default());
            s.push('\n');
        }
        s
    }

    /// Parse JSON lines back (blank lines are skipped).
    pub fn from_json_lines(text: &str) -> serde_json::Result<Timeline> {
        let events = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<serde_json::Result<Vec<Event>>>()?;
        Ok(Timeline::from_events(events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TcpState::*;

    fn ev(t: u64, l: u16, r: u16, from: TcpState, to: TcpState) -> Event {
        Event::new(
            t,
            SocketAddr::from(([127, 0, 0, 1], l)),
            SocketAddr::from(([127, 0, 0, 1], r)),
            from,
            to,
            Source::Tracepoint,
        )
    }

    fn client_first() -> Timeline {
        Timeline::from_events(vec![
            ev(0, 40000, 5000, Close, SynSent),
            ev(10, 40000, 5000, SynSent, Established),
            ev(100, 40000, 5000, Established, FinWait1),
            ev(110, 5000, 40000, Established, CloseWait),
            ev(120, 40000, 5000, FinWait1, FinWait2),
            ev(200, 5000, 40000, CloseWait, LastAck),
            ev(210, 5000, 40000, LastAck, Close),
            ev(210, 40000, 5000, FinWait2, TimeWait),
        ])
    }

    #[test]
    fn sequences_per_endpoint() {
        let t = client_first();
        let eps = t.endpoints();
        assert_eq!(eps.len(), 2);
        assert_eq!(
            t.sequence(eps[0]),
            vec![Close, SynSent, Established, FinWait1, FinWait2, TimeWait]
        );
        assert_eq!(
            t.sequence(eps[1]),
            vec![Established, CloseWait, LastAck, Close]
        );
    }

    #[test]
    fn durations_and_counts() {
        let t = client_first();
        let eps = t.endpoints();
        assert_eq!(t.durations(eps[1]), vec![(CloseWait, 90), (LastAck, 10)]);
        let counts = t.state_counts();
        let last = counts.last().unwrap();
        assert_eq!(last.t_us, 210);
        assert_eq!(last.counts.get(&TimeWait), Some(&1));
        assert_eq!(last.counts.len(), 1);
        let at_110 = counts.iter().find(|p| p.t_us == 110).unwrap();
        assert_eq!(at_110.counts.get(&CloseWait), Some(&1));
        assert_eq!(at_110.counts.get(&FinWait1), Some(&1));
    }

    #[test]
    fn push_keeps_order() {
        let mut t = Timeline::new();
        t.push(ev(20, 1, 2, Established, FinWait1));
        t.push(ev(10, 1, 2, SynSent, Established));
        assert_eq!(t.events[0].t_us, 10);
    }

    #[test]
    fn json_lines_round_trip() {
        let t = client_first();
        let text = t.to_json_lines();
        assert!(text.lines().next().unwrap().contains("\"from\":\"CLOSE\""));
        assert_eq!(Timeline::from_json_lines(&text).unwrap(), t);
    }

    fn seg(t: u64, src: u16, dst: u16, flags: &[Flag], seq: u32, ack: u32) -> Segment {
        Segment {
            t_us: t,
            src: SocketAddr::from(([127, 0, 0, 1], src)),
            dst: SocketAddr::from(([127, 0, 0, 1], dst)),
            flags: crate::segment::Flags::of(flags),
            seq,
            ack,
            raw_seq: seq,
            raw_ack: ack,
            len: 0,
            win: 512,
            options: Default::default(),
        }
    }

    /// The wire under [`client_first`]: the client's FIN at 101, the server's ACK at 105,
    /// its FIN at 201 and the last ACK at 205; plus another connection's SYN.
    fn client_first_with_wire() -> Timeline {
        use Flag::*;
        client_first().with_segments(vec![
            seg(205, 40000, 5000, &[Ack], 2, 2),
            seg(101, 40000, 5000, &[Fin, Ack], 1, 1),
            seg(105, 5000, 40000, &[Ack], 1, 2),
            seg(201, 5000, 40000, &[Fin, Ack], 1, 2),
            seg(150, 40001, 5000, &[Syn], 0, 0),
        ])
    }

    #[test]
    fn inferred_changes_are_dated_by_their_segments() {
        use Flag::*;
        // A poll at 300 saw only the client's TIME_WAIT; the rest was inferred at 300.
        let inferred = |from, to, l, r| {
            let mut e = ev(300, l, r, from, to);
            e.source = Source::Inferred;
            e
        };
        let mut t = Timeline::from_events(vec![
            inferred(Established, FinWait1, 40000, 5000),
            inferred(FinWait1, FinWait2, 40000, 5000),
            ev(300, 40000, 5000, FinWait2, TimeWait),
            inferred(Established, CloseWait, 5000, 40000),
            inferred(CloseWait, LastAck, 5000, 40000),
            inferred(LastAck, Close, 5000, 40000),
        ])
        .with_segments(vec![
            seg(101, 40000, 5000, &[Fin, Ack], 1, 1),
            seg(105, 5000, 40000, &[Ack], 1, 2),
            seg(201, 5000, 40000, &[Fin, Ack], 1, 2),
            seg(205, 40000, 5000, &[Ack], 2, 2),
        ]);
        assert_eq!(t.date_inferred_by_segments(), 5);
        let at = |l: u16, to: TcpState| {
            t.events
                .iter()
                .find(|e| e.local.port() == l && e.to == to)
                .map(|e| e.t_us)
        };
        assert_eq!(at(40000, FinWait1), Some(101));
        assert_eq!(at(40000, FinWait2), Some(105));
        assert_eq!(at(40000, TimeWait), Some(300), "observed: kept");
        assert_eq!(at(5000, CloseWait), Some(101));
        assert_eq!(at(5000, LastAck), Some(201));
        assert_eq!(at(5000, Close), Some(205));
        // Each endpoint's order is kept, and a second pass moves nothing.
        assert_eq!(t.sequence(t.endpoints()[0]).len(), 4);
        assert_eq!(t.date_inferred_by_segments(), 0);
    }

    #[test]
    fn segments_per_connection() {
        let t = client_first_with_wire();
        assert!(t.segments.windows(2).all(|w| w[0].t_us <= w[1].t_us));
        let conns = t.connections();
        assert_eq!(conns.len(), 2);
        assert_eq!(t.segments_of(conns[0]).count(), 4);
        assert_eq!(t.segments_of(conns[1]).count(), 1);
        let ep = t.endpoints()[1];
        assert_eq!(t.segments_of_endpoint(ep).count(), 4);
    }

    #[test]
    fn the_fin_that_moved_the_peer_to_close_wait() {
        let t = client_first_with_wire();
        let causes = t.causes();
        let find = |from: TcpState, to: TcpState| {
            let i = t
                .events
                .iter()
                .position(|e| e.from == from && e.to == to)
                .unwrap();
            causes.iter().find(|c| c.event == i).copied()
        };
        let cw = find(Established, CloseWait).expect("a cause for CLOSE_WAIT");
        assert_eq!(cw.direction, Direction::Received);
        assert_eq!(cw.flag, Flag::Fin);
        assert_eq!(t.segments[cw.segment].t_us, 101);
        let fw1 = find(Established, FinWait1).expect("the FIN sent");
        assert_eq!(
            (fw1.direction, t.segments[fw1.segment].t_us),
            (Direction::Sent, 101)
        );
        let fw2 = find(FinWait1, FinWait2).unwrap();
        assert_eq!(t.segments[fw2.segment].t_us, 105);
        let tw = find(FinWait2, TimeWait).unwrap();
        assert_eq!(t.segments[tw.segment].t_us, 201);
        let la = find(LastAck, Close).unwrap();
        assert_eq!(t.segments[la.segment].t_us, 205);
        // The handshake was not captured: no cause for it.
        assert!(find(Close, SynSent).is_none());
        assert_eq!(t.cause_of(3).map(|s| s.t_us), Some(101));
    }

    #[test]
    fn a_reset_closes_and_is_linked() {
        use Flag::*;
        let t = Timeline::from_events(vec![
            ev(100, 40000, 5000, Established, Close),
            ev(110, 5000, 40000, Established, Close),
        ])
        .with_segments(vec![seg(105, 40000, 5000, &[Rst, Ack], 6, 1)]);
        let causes = t.causes();
        assert_eq!(causes.len(), 2);
        assert_eq!(
            (causes[0].direction, causes[0].flag),
            (Direction::Sent, Rst)
        );
        assert_eq!(
            (causes[1].direction, causes[1].flag),
            (Direction::Received, Rst)
        );
    }

    #[test]
    fn json_keeps_its_shape_and_carries_segments() {
        let plain = client_first();
        let text = serde_json::to_string(&plain).unwrap();
        assert!(!text.contains("segments"), "{text}");
        let back: Timeline = serde_json::from_str(&text).unwrap();
        assert_eq!(back, plain);
        let wired = client_first_with_wire();
        let text = serde_json::to_string(&wired).unwrap();
        assert!(text.contains(r#""flags":["FIN","ACK"]"#), "{text}");
        let back: Timeline = serde_json::from_str(&text).unwrap();
        assert_eq!(back, wired);
    }
}
