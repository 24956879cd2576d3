//! A `Timeline` is the story of some connections in time: an ordered list of state changes.
//! The tracer fills one from the kernel, the model fills one from the RFC; both use this type,
//! so they can be compared, printed, plotted and saved as JSON alike.
//!
//! Left out on purpose: no I/O and no clock here. Times are microseconds since the start of
//! the observation (or of the simulation), handed in by whoever records the event.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

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

/// An ordered list of state changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    pub events: Vec<Event>,
}

impl Timeline {
    /// An empty timeline.
    pub fn new() -> Timeline {
        Timeline::default()
    }

    /// A timeline from events, sorted by time (stable: equal times keep their order).
    pub fn from_events(mut events: Vec<Event>) -> Timeline {
        events.sort_by_key(|e| e.t_us);
        Timeline { events }
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
}
