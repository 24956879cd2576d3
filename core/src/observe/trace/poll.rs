//! The poll backend: a sock_diag dump of the watched ports every interval, diffed, with the
//! gaps filled by inferred steps and the kernel's open counters compared (see the parent
//! module's `//!`).

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use super::{Ctx, Fault, Missed, endpoint, lock, tcp_opens};
use crate::error::{Error, Result};
use crate::observe::{SocketRow, infer};
use crate::state::TcpState;
use crate::timeline::{Endpoint, Event, Source, Timeline};

/// The poll backend's memory between dumps.
#[derive(Default)]
pub(super) struct Poller {
    prev: HashMap<Endpoint, TcpState>,
    /// Every listening address seen: a new socket on one of them is an accepted child.
    listeners: HashSet<SocketAddr>,
    /// Every endpoint any dump showed, the first one included.
    known: HashSet<Endpoint>,
    /// The kernel's (ActiveOpens, PassiveOpens) when the trace started.
    opens_at_start: Option<(u64, u64)>,
    ports: Vec<u16>,
}

impl Poller {
    /// A poller for `ports`, counting opens from `opens_at_start` ([`tcp_opens`]).
    pub(super) fn new(ports: Vec<u16>, opens_at_start: Option<(u64, u64)>) -> Poller {
        Poller {
            opens_at_start,
            ports,
            ..Poller::default()
        }
    }

    pub(super) fn baseline(&mut self, rows: &[SocketRow]) {
        self.prev = self.index(rows);
    }

    fn index(&mut self, rows: &[SocketRow]) -> HashMap<Endpoint, TcpState> {
        let mut map = HashMap::with_capacity(rows.len());
        for r in rows {
            if r.state == TcpState::Listen {
                self.listeners.insert(r.local);
            }
            map.insert(endpoint(r.local, r.remote), r.state);
            self.known.insert(endpoint(r.local, r.remote));
        }
        map
    }

    /// At the end: the loopback ends never seen whose peer was, with the path the peer
    /// implies (every step [`Source::Inferred`]). Returns how many ends it added.
    fn infer_peers(&self, events: &mut Vec<Event>) -> u64 {
        let timeline = Timeline::from_events(events.clone());
        let mut added = 0;
        let seqs = timeline.sequences();
        for (&ep, seq) in &seqs {
            let loopback = ep.local.ip().is_loopback() && ep.remote.ip().is_loopback();
            let peer = endpoint(ep.remote, ep.local);
            let shown = self.known.contains(&peer) || seqs.contains_key(&peer);
            if !loopback || ep.remote.port() == 0 || shown {
                continue;
            }
            // seq[0] held before the first event; seq[i] began with event i - 1.
            let evs: Vec<&Event> = timeline.events_of(ep).collect();
            let date = |i: usize| evs[i.saturating_sub(1)].t_us;
            // The peer of an end that connected (CLOSE -> SYN_SENT) was accepted, even when
            // its listener lived and went between two polls.
            let connected = seq.starts_with(&[TcpState::Close, TcpState::SynSent]);
            let path = infer::peer_path(seq, connected || self.is_child(peer.local));
            for w in path.windows(2) {
                let ((from, _), (to, i)) = (w[0], w[1]);
                events.push(Event::new(
                    date(i),
                    peer.local,
                    peer.remote,
                    from,
                    to,
                    Source::Inferred,
                ));
            }
            if !path.is_empty() {
                added += 1;
            }
        }
        added
    }

    /// At the end: what the trace shows against the kernel's counts.
    fn missed(&self, events: &[Event], peers_inferred: u64) -> Option<Missed> {
        let (a0, p0) = self.opens_at_start?;
        let (a1, p1) = tcp_opens()?;
        let timeline = Timeline::from_events(events.to_vec());
        let seqs = timeline.sequences();
        let starts = |a: TcpState, b: TcpState| {
            seqs.values()
                .filter(|s| s.first() == Some(&a) && s.get(1) == Some(&b))
                .count() as u64
        };
        Some(Missed {
            connects_counted: a1.saturating_sub(a0),
            accepts_counted: p1.saturating_sub(p0),
            connects_shown: starts(TcpState::Close, TcpState::SynSent),
            accepts_shown: starts(TcpState::Listen, TcpState::SynRecv),
            peers_inferred,
            ports: self.ports.clone(),
        })
    }

    fn is_child(&self, local: SocketAddr) -> bool {
        self.listeners
            .iter()
            .any(|l| l.port() == local.port() && (l.ip().is_unspecified() || l.ip() == local.ip()))
    }

    /// Diff a new dump against the last one, emitting observed and inferred steps.
    fn diff(&mut self, rows: &[SocketRow], t_us: u64, out: &mut Vec<Event>) {
        let cur = self.index(rows);
        for (ep, &s) in &cur {
            let from = match self.prev.get(ep) {
                Some(&p) if p == s => continue,
                Some(&p) => p,
                // New: a child of a listener starts as its clone (LISTEN -> SYN_RECV), any
                // other socket from CLOSE.
                None if s != TcpState::Listen && self.is_child(ep.local) => TcpState::Listen,
                None => TcpState::Close,
            };
            emit_path(*ep, from, s, t_us, out);
        }
        for (ep, &p) in &self.prev {
            if !cur.contains_key(ep) {
                emit_path(*ep, p, TcpState::Close, t_us, out);
            }
        }
        self.prev = cur;
    }
}

/// `from -> ... -> to`: the last step observed ([`Source::Poll`]), the ones before it
/// filled in from the shortest legal path ([`Source::Inferred`]).
fn emit_path(ep: Endpoint, from: TcpState, to: TcpState, t_us: u64, out: &mut Vec<Event>) {
    let path = infer::shortest_path(from, to).unwrap_or_else(|| vec![from, to]);
    let steps = path.len() - 1;
    for (i, w) in path.windows(2).enumerate() {
        let source = if i + 1 == steps {
            Source::Poll
        } else {
            Source::Inferred
        };
        out.push(Event::new(t_us, ep.local, ep.remote, w[0], w[1], source));
    }
}

pub(super) fn run(mut poller: Poller, ctx: Ctx) -> Result<()> {
    let mut next = Instant::now() + ctx.interval;
    let mut batch = Vec::new();
    loop {
        if ctx.fault == Some(Fault::InWorker) {
            return Err(Error::io(
                "injected failure in the poller",
                io::Error::other("test fault"),
            ));
        }
        let stopping = ctx.stopping();
        let (rows, note) = ctx.dump()?;
        if let Some(n) = note {
            ctx.shared.warn_once(n);
        }
        poller.diff(&rows, ctx.now_us(), &mut batch);
        if !batch.is_empty() {
            lock(&ctx.shared.events).append(&mut batch);
        }
        if stopping {
            let mut events = lock(&ctx.shared.events);
            let peers = poller.infer_peers(&mut events);
            let missed = poller.missed(&events, peers);
            if let Some(m) = missed.as_ref().and_then(Missed::describe) {
                ctx.shared.warn_once(m);
            }
            *lock(&ctx.shared.missed) = missed;
            return Ok(());
        }
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
            next += ctx.interval;
        } else {
            // Dumps take longer than the interval: go again at once, without a backlog.
            next = now + ctx.interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::trace::test_row as row;
    use crate::state::TcpState::*;
    use crate::timeline::{Source, Timeline};

    #[test]
    fn poll_diff_fills_gaps_with_inferred_steps() {
        let mut p = Poller::default();
        p.baseline(&[row(Listen, 5000, 0)]);
        let mut out = Vec::new();
        p.diff(
            &[
                row(Listen, 5000, 0),
                row(Established, 40000, 5000),
                row(Established, 5000, 40000),
            ],
            10,
            &mut out,
        );
        p.diff(
            &[row(Listen, 5000, 0), row(TimeWait, 40000, 5000)],
            20,
            &mut out,
        );
        let t = Timeline::from_events(out);
        let client = endpoint(
            row(Close, 40000, 5000).local,
            row(Close, 40000, 5000).remote,
        );
        let child = endpoint(
            row(Close, 5000, 40000).local,
            row(Close, 5000, 40000).remote,
        );
        assert_eq!(
            t.sequence(client),
            vec![Close, SynSent, Established, FinWait1, FinWait2, TimeWait]
        );
        assert_eq!(
            t.sequence(child),
            vec![Listen, SynRecv, Established, CloseWait, LastAck, Close]
        );
        let observed: Vec<TcpState> = t
            .events_of(client)
            .filter(|e| e.source == Source::Poll)
            .map(|e| e.to)
            .collect();
        assert_eq!(observed, vec![Established, TimeWait]);
        assert_eq!(
            t.events_of(client)
                .filter(|e| e.source == Source::Inferred)
                .count(),
            3
        );
    }

    #[test]
    fn the_peer_of_a_client_is_a_child_even_when_no_listener_was_seen() {
        // The listener, the connection and its close all fell between two polls (a program in
        // a namespace of its own, on a fixed port): only the client's TIME_WAIT was seen.
        let mut p = Poller::default();
        p.baseline(&[]);
        let mut out = Vec::new();
        p.diff(&[row(TimeWait, 40000, 5000)], 10, &mut out);
        assert_eq!(p.infer_peers(&mut out), 1);
        let t = Timeline::from_events(out);
        let child = endpoint(
            row(Close, 5000, 40000).local,
            row(Close, 5000, 40000).remote,
        );
        assert_eq!(
            t.sequence(child),
            vec![Listen, SynRecv, Established, CloseWait, LastAck, Close]
        );
    }

    #[test]
    fn an_unseen_loopback_peer_is_inferred_from_the_end_that_was_seen() {
        // The whole exchange fell between two polls: only the client's TIME_WAIT was seen.
        let mut p = Poller::default();
        p.baseline(&[row(Listen, 5000, 0)]);
        let mut out = Vec::new();
        p.diff(
            &[row(Listen, 5000, 0), row(TimeWait, 40000, 5000)],
            10,
            &mut out,
        );
        assert_eq!(p.infer_peers(&mut out), 1);
        let t = Timeline::from_events(out);
        let child = endpoint(
            row(Close, 5000, 40000).local,
            row(Close, 5000, 40000).remote,
        );
        assert_eq!(
            t.sequence(child),
            vec![Listen, SynRecv, Established, CloseWait, LastAck, Close]
        );
        assert!(t.events_of(child).all(|e| e.source == Source::Inferred));
        // Nothing more to infer: both ends are in the timeline now.
        let mut again = t.events.clone();
        assert_eq!(p.infer_peers(&mut again), 0);
    }
}
