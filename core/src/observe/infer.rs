//! Linux's real TCP state graph, and the shortest legal path between two states.
//!
//! A poller that looks every millisecond misses the states a loopback socket passes through
//! in microseconds (SYN_SENT, FIN_WAIT1, LAST_ACK). It sees ESTABLISHED, then TIME_WAIT, and
//! must say how the socket got there. This module answers with the shortest path through
//! the edges Linux really takes, so the tracer can fill the gap with events marked
//! [`Source::Inferred`](crate::timeline::Source::Inferred), never passed off as observed.
//!
//! The graph is Linux's, not the RFC's: an accepted child starts as a clone of its listener
//! (`LISTEN -> SYN_RECV`, as the tracepoint reports it), FIN_WAIT1 never jumps straight to
//! TIME_WAIT (the kernel handles the ACK before the FIN, so it passes FIN_WAIT2), and the
//! request mini-socket (NEW_SYN_RECV) never changes state through `inet_sock_set_state`.
//! Edges come in two kinds: graceful ones (handshake, FIN exchange, timers) and abortive
//! ones (RST, SO_LINGER 0, giving up). A path uses abortive edges only when no graceful path
//! exists, because a socket that vanished without being seen to abort most likely closed
//! the ordinary way.
//!
//! On loopback both ends of a connection are on this machine, so when a poll saw one end and
//! missed the other altogether (it lived less than one poll), [`peer_path`] says which way
//! the other end must have gone: the mirror of the end it saw (a client that reached
//! TIME_WAIT closed first, so its peer went CLOSE_WAIT, LAST_ACK, CLOSE). The tracer adds
//! that path, marked inferred.
//!
//! Left out on purpose: TCP Fast Open and simultaneous open corner cases beyond the
//! `SYN_SENT -> SYN_RECV` edge; the RFC's own machine lives in [`crate::model`].

use std::collections::VecDeque;

use crate::state::TcpState;

use TcpState::*;

/// The edges Linux takes without an abort, from each state, most common first. The order
/// breaks ties between equally short paths (FIN_WAIT1 -> FIN_WAIT2 beats -> CLOSING).
fn graceful(from: TcpState) -> &'static [TcpState] {
    match from {
        // connect() or listen().
        Close => &[SynSent, Listen],
        // A SYN arrives: the kernel clones the listener into a child in SYN_RECV.
        Listen => &[SynRecv, Close],
        // SYN-ACK received; or a bare SYN crossed ours (simultaneous open).
        SynSent => &[Established, SynRecv],
        // The final ACK of the handshake; or close() before it came.
        SynRecv => &[Established, FinWait1],
        // Peer's FIN first (passive close) or ours first (active close).
        Established => &[CloseWait, FinWait1],
        // Our FIN acknowledged; or the peer's FIN crossed ours (simultaneous close).
        FinWait1 => &[FinWait2, Closing],
        // The peer's FIN.
        FinWait2 => &[TimeWait],
        // The ACK of our FIN, after both FINs crossed.
        Closing => &[TimeWait],
        // The 60 s timer ran out.
        TimeWait => &[Close],
        // Our program called close(): we send our FIN.
        CloseWait => &[LastAck],
        // The ACK of our FIN: the socket is gone.
        LastAck => &[Close],
        // A request socket becomes a full child only through the listener (see Listen).
        NewSynRecv => &[],
    }
}

/// The edges that abort a connection (RST in or out, SO_LINGER 0, retries exhausted,
/// tcp_fin_timeout on an orphan) or give up on one that never started.
fn abortive(from: TcpState) -> &'static [TcpState] {
    match from {
        // Nothing to abort.
        Close => &[],
        // A listener is only closed (graceful, above).
        Listen => &[],
        // Connection refused (RST) or SYN retries exhausted.
        SynSent => &[Close],
        // RST, or the handshake timed out.
        SynRecv => &[Close],
        // RST received or sent (SO_LINGER 0, close with unread data).
        Established => &[Close],
        // RST, or an orphan whose FIN is never acknowledged.
        FinWait1 => &[Close],
        // RST, or tcp_fin_timeout / TCP_LINGER2 on an orphan.
        FinWait2 => &[Close],
        // RST, or retries exhausted.
        Closing => &[Close],
        // A RST in TIME_WAIT can kill it early (RFC 1337 "TIME-WAIT assassination").
        TimeWait => &[],
        // RST received, or close() with unread data.
        CloseWait => &[Close],
        // RST, or our FIN never acknowledged.
        LastAck => &[Close],
        // The handshake never completed: the request is dropped.
        NewSynRecv => &[Close],
    }
}

/// Whether Linux can move a socket from `from` to `to` in one step.
pub fn is_legal(from: TcpState, to: TcpState) -> bool {
    graceful(from).contains(&to) || abortive(from).contains(&to)
}

/// The shortest legal path from `from` to `to`, both included: graceful edges only when
/// they connect the two, otherwise any legal edge. `[from]` alone when they are equal;
/// `None` when Linux has no way from one to the other.
pub fn shortest_path(from: TcpState, to: TcpState) -> Option<Vec<TcpState>> {
    if from == to {
        return Some(vec![from]);
    }
    bfs(from, to, false).or_else(|| bfs(from, to, true))
}

/// The path of an endpoint's unseen peer on the same machine, given what the endpoint was
/// seen in (`seen`, its states in order, inferred steps included) and whether the peer is a
/// listener's child (its local address is a listening one). Each step comes with the index
/// in `seen` of the state that implies it, so the caller can date it. Empty when the
/// connection never got as far as ESTABLISHED: then no peer socket existed for long enough
/// to say anything.
///
/// The rules mirror the two sides of one connection:
/// - opening: a child goes `LISTEN -> SYN_RECV -> ESTABLISHED`, a client
///   `CLOSE -> SYN_SENT -> ESTABLISHED`;
/// - the side that reached TIME_WAIT closed first and finished: the peer went
///   `CLOSE_WAIT -> LAST_ACK -> CLOSE`; one still in FIN_WAIT1/FIN_WAIT2: the peer is in
///   CLOSE_WAIT;
/// - the side that went LAST_ACK closed second: the peer went
///   `FIN_WAIT1 -> FIN_WAIT2 -> TIME_WAIT`; one in CLOSE_WAIT: the peer is in FIN_WAIT2;
/// - a side that went from ESTABLISHED straight to CLOSE was reset: so was its peer.
pub fn peer_path(seen: &[TcpState], peer_is_child: bool) -> Vec<(TcpState, usize)> {
    let at = |s: TcpState| seen.iter().position(|&x| x == s);
    let Some(est) = at(Established) else {
        return Vec::new();
    };
    let mut path = if peer_is_child {
        vec![(Listen, est), (SynRecv, est), (Established, est)]
    } else {
        vec![(Close, est), (SynSent, est), (Established, est)]
    };
    let first_of = |states: &[TcpState]| states.iter().filter_map(|&s| at(s)).min();
    if let Some(tw) = at(TimeWait) {
        let fin = first_of(&[FinWait1, FinWait2, Closing]).unwrap_or(tw);
        path.extend([(CloseWait, fin), (LastAck, tw), (Close, tw)]);
    } else if let Some(fin) = first_of(&[FinWait1, FinWait2]) {
        path.push((CloseWait, fin));
    } else if let Some(la) = at(LastAck) {
        let cw = at(CloseWait).unwrap_or(la);
        path.extend([(FinWait1, cw), (FinWait2, cw), (TimeWait, la)]);
    } else if let Some(cw) = at(CloseWait) {
        path.extend([(FinWait1, cw), (FinWait2, cw)]);
    } else if seen.last() == Some(&Close) {
        path.push((Close, seen.len() - 1));
    }
    path
}

fn bfs(from: TcpState, to: TcpState, allow_abort: bool) -> Option<Vec<TcpState>> {
    let idx = |s: TcpState| usize::from(s.code());
    let mut parent: [Option<TcpState>; 13] = [None; 13];
    let mut seen = [false; 13];
    let mut queue = VecDeque::from([from]);
    seen[idx(from)] = true;
    while let Some(s) = queue.pop_front() {
        let aborts: &[TcpState] = if allow_abort { abortive(s) } else { &[] };
        for &n in graceful(s).iter().chain(aborts) {
            if seen[idx(n)] {
                continue;
            }
            seen[idx(n)] = true;
            parent[idx(n)] = Some(s);
            if n == to {
                let mut path = vec![to];
                let mut cur = to;
                while let Some(p) = parent[idx(cur)] {
                    path.push(p);
                    cur = p;
                }
                path.reverse();
                return Some(path);
            }
            queue.push_back(n);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_first_closer_from_nothing_to_time_wait() {
        assert_eq!(
            shortest_path(Close, TimeWait).unwrap(),
            vec![Close, SynSent, Established, FinWait1, FinWait2, TimeWait]
        );
    }

    #[test]
    fn brief_states_are_filled_in() {
        assert_eq!(
            shortest_path(Established, FinWait2).unwrap(),
            vec![Established, FinWait1, FinWait2]
        );
        assert_eq!(
            shortest_path(CloseWait, Close).unwrap(),
            vec![CloseWait, LastAck, Close]
        );
        assert_eq!(
            shortest_path(Listen, Established).unwrap(),
            vec![Listen, SynRecv, Established]
        );
        assert_eq!(
            shortest_path(Close, Established).unwrap(),
            vec![Close, SynSent, Established]
        );
    }

    #[test]
    fn vanishing_from_established_is_a_passive_close() {
        // The passive path (3 steps) is shorter than the active one through TIME_WAIT (4).
        assert_eq!(
            shortest_path(Established, Close).unwrap(),
            vec![Established, CloseWait, LastAck, Close]
        );
    }

    #[test]
    fn aborts_only_when_nothing_graceful_connects() {
        // A graceful way from SYN_SENT to CLOSE exists (through ESTABLISHED and CLOSE_WAIT),
        // so it is taken over the one-step RST: the rule is "graceful first", not "fewest".
        assert_eq!(
            shortest_path(SynSent, Close).unwrap(),
            vec![SynSent, Established, CloseWait, LastAck, Close]
        );
        // Nothing graceful leads from a request socket to CLOSE: only its drop does.
        assert_eq!(
            shortest_path(NewSynRecv, Close).unwrap(),
            vec![NewSynRecv, Close]
        );
    }

    fn states(p: &[(TcpState, usize)]) -> Vec<TcpState> {
        p.iter().map(|(s, _)| *s).collect()
    }

    #[test]
    fn a_client_that_closed_first_had_a_passive_peer() {
        let client = [Close, SynSent, Established, FinWait1, FinWait2, TimeWait];
        let peer = peer_path(&client, true);
        assert_eq!(
            states(&peer),
            vec![Listen, SynRecv, Established, CloseWait, LastAck, Close]
        );
        // Dated by the client's states that imply them: ESTABLISHED, FIN_WAIT1, TIME_WAIT.
        let when: Vec<usize> = peer.iter().map(|(_, i)| *i).collect();
        assert_eq!(when, vec![2, 2, 2, 3, 5, 5]);
        for w in states(&peer).windows(2) {
            assert!(is_legal(w[0], w[1]), "{} -> {}", w[0], w[1]);
        }
    }

    #[test]
    fn the_peer_of_each_kind_of_end() {
        let child_closed_second = [Listen, SynRecv, Established, CloseWait, LastAck, Close];
        assert_eq!(
            states(&peer_path(&child_closed_second, false)),
            vec![Close, SynSent, Established, FinWait1, FinWait2, TimeWait]
        );
        assert_eq!(
            states(&peer_path(
                &[Close, SynSent, Established, FinWait1, FinWait2],
                true
            )),
            vec![Listen, SynRecv, Established, CloseWait]
        );
        assert_eq!(
            states(&peer_path(
                &[Listen, SynRecv, Established, CloseWait],
                false
            )),
            vec![Close, SynSent, Established, FinWait1, FinWait2]
        );
        assert_eq!(
            states(&peer_path(&[Close, SynSent, Established, Close], true)),
            vec![Listen, SynRecv, Established, Close]
        );
        // Refused or never connected: no peer to speak of.
        assert!(peer_path(&[Close, SynSent, Close], true).is_empty());
    }

    #[test]
    fn impossible_paths_and_identity() {
        assert_eq!(shortest_path(Established, NewSynRecv), None);
        assert_eq!(shortest_path(Close, NewSynRecv), None);
        assert_eq!(shortest_path(LastAck, LastAck).unwrap(), vec![LastAck]);
    }

    #[test]
    fn every_path_is_made_of_legal_steps() {
        for a in TcpState::ALL {
            for b in TcpState::ALL {
                if let Some(p) = shortest_path(a, b) {
                    assert_eq!(p.first(), Some(&a));
                    assert_eq!(p.last(), Some(&b));
                    for w in p.windows(2) {
                        assert!(is_legal(w[0], w[1]), "{a}->{b}: {}->{}", w[0], w[1]);
                    }
                }
            }
        }
        assert!(!is_legal(FinWait1, TimeWait));
        assert!(is_legal(FinWait2, Close));
    }
}
