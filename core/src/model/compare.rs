//! Model against kernel: line up the states the model predicts for each side with the states
//! a kernel reported for the matching socket, and explain every difference in words.
//!
//! What it teaches: most differences are not bugs but the way Linux reports things: the
//! tracepoint never shows TIME_WAIT, a listener forks a child that starts in SYN_RECV, polling
//! misses states shorter than its interval. What it leaves out on purpose: timing. Two
//! sequences that agree state by state agree here, however long each state lasted.

use std::fmt;

use serde::Serialize;

use crate::state::TcpState;
use crate::timeline::{Endpoint, Event, Side, Source, Timeline};

/// What kind of difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DifferenceKind {
    /// The model passes through a state the observation never shows.
    Missing,
    /// The observation shows a state the model does not predict.
    Extra,
    /// Agrees, but the kernel's tracepoint did not report it: sock_diag did.
    SeenThroughDiag,
    /// Agrees, but only because it was inferred, not seen.
    Inferred,
    /// No observed socket plays this side.
    NoEndpoint,
}

/// One difference, explained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub side: Side,
    pub endpoint: Option<Endpoint>,
    pub state: Option<TcpState>,
    pub kind: DifferenceKind,
    pub explanation: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.state {
            Some(s) => write!(f, "{}: {}: {}", self.side, s, self.explanation),
            None => write!(f, "{}: {}", self.side, self.explanation),
        }
    }
}

/// Which observed socket plays which modelled side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Mapping {
    pub client: Option<Endpoint>,
    pub server: Option<Endpoint>,
}

impl Mapping {
    fn get(&self, side: Side) -> Option<Endpoint> {
        match side {
            Side::Client => self.client,
            Side::Server => self.server,
        }
    }
}

/// Guess the mapping by role: the client is the socket that went through SYN_SENT (it
/// connected); the server is its peer (addresses swapped), or else a socket that went
/// through SYN_RECV.
pub fn map_by_role(observed: &Timeline) -> Mapping {
    let seqs = observed.sequences();
    let client = seqs
        .iter()
        .find(|(_, s)| s.contains(&TcpState::SynSent))
        .map(|(e, _)| *e);
    let peer = client.and_then(|c| {
        seqs.keys()
            .find(|e| e.local == c.remote && e.remote == c.local)
            .copied()
    });
    let server = peer.or_else(|| {
        seqs.iter()
            .find(|(e, s)| {
                Some(**e) != client
                    && (s.contains(&TcpState::SynRecv) || s.contains(&TcpState::NewSynRecv))
            })
            .map(|(e, _)| *e)
    });
    Mapping { client, server }
}

/// Compare, mapping sides to sockets by role ([`map_by_role`]).
pub fn compare(model: &Timeline, observed: &Timeline) -> Vec<Difference> {
    compare_with(model, observed, &map_by_role(observed))
}

/// One step of a sequence: a state and the event that led into it (none for the first).
#[derive(Debug, Clone, Copy)]
struct Step<'a> {
    state: TcpState,
    event: Option<&'a Event>,
}

fn steps<'a>(events: &[&'a Event]) -> Vec<Step<'a>> {
    let mut v = Vec::new();
    for e in events {
        if v.is_empty() {
            v.push(Step {
                state: e.from,
                event: None,
            });
        }
        v.push(Step {
            state: e.to,
            event: Some(e),
        });
    }
    v
}

/// Longest common subsequence alignment: pairs (model index, observed index), each optional.
fn align(m: &[TcpState], o: &[TcpState]) -> Vec<(Option<usize>, Option<usize>)> {
    let (n, k) = (m.len(), o.len());
    let mut dp = vec![vec![0usize; k + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..k).rev() {
            dp[i][j] = if m[i] == o[j] {
                dp[i + 1][j + 1] + 1
            } else {
                dp[i + 1][j].max(dp[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < n || j < k {
        if i < n && j < k && m[i] == o[j] {
            out.push((Some(i), Some(j)));
            i += 1;
            j += 1;
        } else if j >= k || (i < n && dp[i + 1][j] >= dp[i][j + 1]) {
            out.push((Some(i), None));
            i += 1;
        } else {
            out.push((None, Some(j)));
            j += 1;
        }
    }
    out
}

fn missing_why(
    side: Side,
    state: TcpState,
    idx: usize,
    model: &[TcpState],
    obs: &[Step],
) -> String {
    let first_observed = obs.first().map(|s| s.state);
    let from_tracepoint = obs
        .iter()
        .any(|s| s.event.is_some_and(|e| e.source == Source::Tracepoint));
    match state {
        TcpState::TimeWait => {
            if from_tracepoint {
                "TIME_WAIT is not reported by the tracepoint: the kernel swaps in a timewait \
                 mini-socket (the trace shows FIN_WAIT2 -> CLOSE); a sock_diag dump would show it"
                    .to_string()
            } else {
                "missing in observation: TIME_WAIT was never seen; did the observation stop too \
                 early, or did a RST (SO_LINGER 0) skip it?"
                    .to_string()
            }
        }
        TcpState::Close | TcpState::Listen
            if side == Side::Server
                && matches!(
                    first_observed,
                    Some(TcpState::SynRecv | TcpState::NewSynRecv)
                )
                && idx + 1 < model.len()
                && model[..=idx]
                    .iter()
                    .all(|s| matches!(s, TcpState::Close | TcpState::Listen)) =>
        {
            "Linux forks a child socket from the listener: the listener stays in LISTEN and the \
             child's story starts in SYN_RECV, so the child never shows this state"
                .to_string()
        }
        TcpState::Close if idx + 1 == model.len() => format!(
            "missing in observation: the observation ended while the socket was still in {}",
            obs.last().map(|s| s.state.to_string()).unwrap_or_default()
        ),
        _ => format!(
            "missing in observation: the model passes through {state}, the kernel never reported it"
        ),
    }
}

/// Compare with an explicit mapping of sides to observed sockets.
pub fn compare_with(model: &Timeline, observed: &Timeline, mapping: &Mapping) -> Vec<Difference> {
    let mut out = Vec::new();
    for side in [Side::Client, Side::Server] {
        let m_events: Vec<&Event> = model
            .events
            .iter()
            .filter(|e| e.side == Some(side))
            .collect();
        if m_events.is_empty() {
            continue;
        }
        let Some(ep) = mapping.get(side) else {
            out.push(Difference {
                side,
                endpoint: None,
                state: None,
                kind: DifferenceKind::NoEndpoint,
                explanation: format!("no observed socket plays the {side}: nothing to compare"),
            });
            continue;
        };
        let o_events: Vec<&Event> = observed.events_of(ep).collect();
        let m = steps(&m_events);
        let o = steps(&o_events);
        let ms: Vec<TcpState> = m.iter().map(|s| s.state).collect();
        let os: Vec<TcpState> = o.iter().map(|s| s.state).collect();
        for (mi, oi) in align(&ms, &os) {
            let diff = |state, kind, explanation| Difference {
                side,
                endpoint: Some(ep),
                state: Some(state),
                kind,
                explanation,
            };
            match (mi, oi) {
                (Some(_), Some(j)) => {
                    let Some(e) = o[j].event else { continue };
                    let state = o[j].state;
                    match e.source {
                        Source::Diag => {
                            let why = match state {
                                TcpState::TimeWait => "TIME_WAIT is not reported by the tracepoint; seen through sock_diag".to_string(),
                                TcpState::FinWait2 => "an orphaned FIN_WAIT2 is a mini-socket the tracepoint no longer follows; seen through sock_diag".to_string(),
                                _ => format!("{state} was not reported by the tracepoint; seen through sock_diag"),
                            };
                            out.push(diff(state, DifferenceKind::SeenThroughDiag, why));
                        }
                        Source::Inferred => {
                            let next = o.get(j + 1).and_then(|s| s.event).map(|n| n.t_us);
                            let why = match next {
                                Some(t) => {
                                    let ms = t.saturating_sub(e.t_us).div_ceil(1000).max(1);
                                    format!(
                                        "{state} lasted under {ms} ms: inferred from the model's shortest legal path, not observed"
                                    )
                                }
                                None => format!(
                                    "{state}: inferred from the model's shortest legal path, not observed"
                                ),
                            };
                            out.push(diff(state, DifferenceKind::Inferred, why));
                        }
                        Source::Tracepoint | Source::Poll | Source::Model => {}
                    }
                }
                (Some(i), None) => {
                    let why = missing_why(side, ms[i], i, &ms, &o);
                    out.push(diff(ms[i], DifferenceKind::Missing, why));
                }
                (None, Some(j)) => {
                    let state = os[j];
                    out.push(diff(
                        state,
                        DifferenceKind::Extra,
                        format!("extra in observation: the kernel reported {state}, which the model does not predict here"),
                    ));
                }
                (None, None) => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Options, Scenario};
    use TcpState::*;
    use std::net::SocketAddr;

    fn ev(t: u64, l: u16, r: u16, from: TcpState, to: TcpState, src: Source) -> Event {
        Event::new(
            t,
            SocketAddr::from(([127, 0, 0, 1], l)),
            SocketAddr::from(([127, 0, 0, 1], r)),
            from,
            to,
            src,
        )
    }

    /// What the tracepoint alone shows for client-close on loopback (DESIGN.md).
    fn traced(time_wait_from_diag: bool, inferred_fw1: bool) -> Timeline {
        let fw1_src = if inferred_fw1 {
            Source::Inferred
        } else {
            Source::Tracepoint
        };
        let mut v = vec![
            ev(0, 40000, 5000, Close, SynSent, Source::Tracepoint),
            ev(50, 40000, 5000, SynSent, Established, Source::Tracepoint),
            ev(60, 5000, 40000, SynRecv, Established, Source::Tracepoint),
            ev(1000, 40000, 5000, Established, FinWait1, fw1_src),
            ev(1040, 40000, 5000, FinWait1, FinWait2, Source::Tracepoint),
            ev(
                1040,
                5000,
                40000,
                Established,
                CloseWait,
                Source::Tracepoint,
            ),
            ev(2000, 5000, 40000, CloseWait, LastAck, Source::Tracepoint),
            ev(2050, 5000, 40000, LastAck, Close, Source::Tracepoint),
        ];
        if time_wait_from_diag {
            v.push(ev(2050, 40000, 5000, FinWait2, TimeWait, Source::Diag));
        } else {
            v.push(ev(2050, 40000, 5000, FinWait2, Close, Source::Tracepoint));
        }
        Timeline::from_events(v)
    }

    #[test]
    fn tracepoint_only_misses_time_wait_and_explains_why() {
        let model = Scenario::ClientClose.run(&Options::linux()).timeline;
        let diffs = compare(&model, &traced(false, false));
        let text: Vec<String> = diffs.iter().map(|d| d.to_string()).collect();
        let tw = diffs
            .iter()
            .find(|d| d.side == Side::Client && d.state == Some(TimeWait))
            .unwrap_or_else(|| panic!("{text:#?}"));
        assert_eq!(tw.kind, DifferenceKind::Missing);
        assert!(tw.explanation.contains("tracepoint"), "{text:#?}");
        // The server's CLOSE and LISTEN are explained by the listener's fork.
        let fork: Vec<_> = diffs
            .iter()
            .filter(|d| d.side == Side::Server && d.explanation.contains("forks a child"))
            .collect();
        assert_eq!(fork.len(), 2, "{text:#?}");
        // Nothing else differs.
        assert_eq!(diffs.len(), 3, "{text:#?}");
    }

    #[test]
    fn diag_and_inferred_are_named() {
        let model = Scenario::ClientClose.run(&Options::linux()).timeline;
        let diffs = compare(&model, &traced(true, true));
        let text: Vec<String> = diffs.iter().map(|d| d.to_string()).collect();
        assert!(
            text.iter().any(|t| t
                .contains("TIME_WAIT is not reported by the tracepoint; seen through sock_diag")),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("FIN_WAIT1 lasted under 1 ms: inferred")),
            "{text:#?}"
        );
        // TIME_WAIT was seen, so only the model's final CLOSE (60 s later) is missing.
        assert!(
            diffs.iter().any(|d| d.kind == DifferenceKind::Missing
                && d.state == Some(Close)
                && d.explanation.contains("still in TIME_WAIT")),
            "{text:#?}"
        );
    }

    #[test]
    fn extra_states_and_missing_endpoints() {
        let model = Scenario::ClientClose.run(&Options::linux()).timeline;
        let obs = Timeline::from_events(vec![
            ev(0, 40000, 5000, Close, SynSent, Source::Poll),
            ev(5, 40000, 5000, SynSent, Close, Source::Poll),
        ]);
        let diffs = compare(&model, &obs);
        assert!(
            diffs
                .iter()
                .any(|d| d.kind == DifferenceKind::NoEndpoint && d.side == Side::Server)
        );
        assert!(
            diffs
                .iter()
                .any(|d| d.kind == DifferenceKind::Missing && d.state == Some(Established))
        );
        let obs = Timeline::from_events(vec![
            ev(0, 40000, 5000, Close, SynSent, Source::Poll),
            ev(5, 40000, 5000, SynSent, Closing, Source::Poll),
        ]);
        let diffs = compare(&model, &obs);
        assert!(
            diffs
                .iter()
                .any(|d| d.kind == DifferenceKind::Extra && d.state == Some(Closing))
        );
    }
}
