//! Tests of the RFC 9293 model as a whole: the Linux sequences for client-close, snapshots of
//! every scenario's ladder and JSON lines, well-formed SVGs, and properties of the transition
//! table (legality, reachability) checked with proptest.
//!
//! Left out on purpose: the kernel. Model against a real kernel is checked by the tracer's
//! tests; here the model is checked against the RFC and against itself.

use std::collections::{BTreeSet, VecDeque};

use proptest::prelude::*;
use tcplab_core::TcpState;
use tcplab_core::model::diagram::{self, is_legal, sample_inputs, sample_tcbs};
use tcplab_core::model::{
    Call, Input, Options, Scenario, SegKind, Segment, State, Tcb, Timer, ladder,
};
use tcplab_core::timeline::Side;

fn states_of(s: Scenario, side: Side, opts: &Options) -> Vec<TcpState> {
    s.run(opts)
        .states(side)
        .into_iter()
        .map(State::tcp)
        .collect()
}

#[test]
fn client_close_linux_sequences_match_the_kernel() {
    use TcpState::*;
    let opts = Options::linux();
    assert_eq!(
        states_of(Scenario::ClientClose, Side::Client, &opts),
        vec![
            Close,
            SynSent,
            Established,
            FinWait1,
            FinWait2,
            TimeWait,
            Close
        ]
    );
    // The RFC's listener becomes the connection; Linux forks a child at SYN_RECV.
    let server = states_of(Scenario::ClientClose, Side::Server, &opts);
    assert_eq!(server[..2], [Close, Listen]);
    assert_eq!(
        server[2..],
        [SynRecv, Established, CloseWait, LastAck, Close]
    );
    // TIME_WAIT lasts exactly TCP_TIMEWAIT_LEN (60 s) with Linux options, 240 s with RFC's.
    for (opts, secs) in [(Options::linux(), 60), (Options::rfc(), 240)] {
        let r = Scenario::ClientClose.run(&opts);
        let tl = &r.timeline;
        let client = tl
            .endpoints()
            .into_iter()
            .find(|e| e.local == tcplab_core::model::sim::CLIENT_ADDR)
            .expect("client endpoint");
        let tw = tl
            .durations(client)
            .into_iter()
            .find(|(s, _)| *s == TimeWait)
            .map(|(_, d)| d);
        assert_eq!(tw, Some(secs * 1_000_000), "{}", opts.name);
    }
}

#[test]
fn scenarios_end_where_they_should() {
    use State::*;
    let l = Options::linux();
    let r = Options::rfc();
    let last = |s: Scenario, o: &Options, side| *s.run(o).states(side).last().unwrap();
    let has = |s: Scenario, o: &Options, side, st| s.run(o).states(side).contains(&st);
    assert!(has(Scenario::SimultaneousClose, &l, Side::Client, Closing));
    assert!(has(Scenario::SimultaneousClose, &l, Side::Server, Closing));
    assert!(has(Scenario::SimultaneousClose, &l, Side::Server, TimeWait));
    assert!(has(Scenario::ServerClose, &l, Side::Server, TimeWait));
    assert!(!has(Scenario::ServerClose, &l, Side::Client, TimeWait));
    assert!(!has(Scenario::Abort, &l, Side::Client, TimeWait));
    assert_eq!(last(Scenario::CloseWaitLeak, &l, Side::Server), CloseWait);
    // Linux drops the orphaned FIN_WAIT2 after tcp_fin_timeout; the RFC waits forever.
    assert_eq!(last(Scenario::CloseWaitLeak, &l, Side::Client), Closed);
    assert_eq!(last(Scenario::CloseWaitLeak, &r, Side::Client), FinWait2);
    // The reply reaches the half-closed client.
    let hc = Scenario::HalfClose.run(&l);
    assert!(hc.log.iter().any(|e| matches!(
        e,
        tcplab_core::model::sim::LogEntry::Delivered {
            side: Side::Client,
            ..
        }
    )));
    // Lost last ACK: the server retransmits its FIN and still ends cleanly, without error.
    let lla = Scenario::LostLastAck.run(&l);
    let fins = lla
        .segments
        .iter()
        .filter(|s| s.from == Side::Server && s.segment.kind == SegKind::FinAck)
        .count();
    assert_eq!(fins, 2);
    assert!(
        !lla.log
            .iter()
            .any(|e| matches!(e, tcplab_core::model::sim::LogEntry::Error { .. }))
    );
    assert_eq!(lla.server.state, Closed);
    // Old duplicate: the late copy is never delivered in TIME_WAIT.
    let od = Scenario::OldDuplicate.run(&l);
    let delivered = od
        .log
        .iter()
        .filter(|e| {
            matches!(
                e,
                tcplab_core::model::sim::LogEntry::Delivered {
                    side: Side::Client,
                    ..
                }
            )
        })
        .count();
    assert_eq!(delivered, 1);
}

#[test]
fn ladders_and_json_snapshots() {
    let opts = Options::linux();
    for s in Scenario::ALL {
        let r = s.run(&opts);
        insta::assert_snapshot!(format!("ladder_{}", s.name()), ladder::text(&r));
        insta::assert_snapshot!(format!("json_{}", s.name()), r.timeline.to_json_lines());
    }
    let rfc = Scenario::ClientClose.run(&Options::rfc());
    insta::assert_snapshot!("ladder_client-close_rfc", ladder::text(&rfc));
    insta::assert_snapshot!(
        "diagram_text_linux",
        diagram::text(&diagram::transitions(&opts))
    );
}

#[test]
fn svgs_are_well_formed() {
    for s in Scenario::ALL {
        let svg = ladder::svg(&s.run(&Options::linux()));
        let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        assert!(svg.contains("TIME_WAIT") || s == Scenario::Abort || s == Scenario::CloseWaitLeak);
    }
    for opts in [Options::linux(), Options::rfc()] {
        let edges = diagram::transitions(&opts);
        let svg = diagram::svg(&edges);
        let doc = roxmltree::Document::parse(&svg).expect("diagram SVG");
        let boxes = doc.descendants().filter(|n| n.has_tag_name("rect")).count();
        assert_eq!(boxes, 1 + 12, "background + 11 states + CLOSED drawn twice");
        let dot = diagram::dot(&edges);
        assert!(dot.starts_with("digraph"));
        assert!(dot.contains("\"FIN_WAIT1\" -> \"CLOSING\""));
    }
}

#[test]
fn table_holds_figure_5_and_only_legal_edges() {
    for opts in [Options::linux(), Options::rfc()] {
        let edges = diagram::transitions(&opts);
        let pairs: BTreeSet<(State, State)> = edges.iter().map(|e| (e.from, e.to)).collect();
        for fig in diagram::FIGURE_5 {
            assert!(
                pairs.contains(&fig),
                "{}: Figure 5 edge {fig:?} missing",
                opts.name
            );
        }
        for (a, b) in &pairs {
            assert!(is_legal(*a, *b), "{}: illegal edge {a} -> {b}", opts.name);
        }
    }
    // The Linux-only edge exists only with Linux options.
    let fw2_timeout = |o: &Options| {
        diagram::transitions(o)
            .iter()
            .any(|e| e.from == State::FinWait2 && e.input.contains("fin_timeout"))
    };
    assert!(fw2_timeout(&Options::linux()));
    assert!(!fw2_timeout(&Options::rfc()));
    // Reopening TIME-WAIT with a new SYN (RFC 9293 3.6.1 MAY-2) is an edge only Linux takes.
    let reopen = |o: &Options| {
        diagram::transitions(o)
            .iter()
            .any(|e| (e.from, e.to) == (State::TimeWait, State::SynReceived))
    };
    assert!(reopen(&Options::linux()));
    assert!(!reopen(&Options::rfc()));
    // SYN-SENT closes only on a RST whose ACK acknowledges the SYN (RFC 9293 3.10.7.3).
    for opts in [Options::linux(), Options::rfc()] {
        let refused: Vec<String> = diagram::transitions(&opts)
            .into_iter()
            .filter(|e| e.from == State::SynSent && e.input.contains("RST"))
            .map(|e| e.input)
            .collect();
        assert_eq!(refused, ["rcv RST+ACK"], "{}", opts.name);
    }
}

#[test]
fn connect_to_a_closed_port_is_refused_by_a_rst_with_ack() {
    // Nobody listens: the server's CLOSED port answers the SYN with
    // <SEQ=0><ACK=SEG.SEQ+1><CTL=RST,ACK> (RFC 9293 3.10.7.1), and only because that RST
    // acknowledges the SYN does SYN-SENT accept it (3.10.7.3): ECONNREFUSED.
    use tcplab_core::model::sim::{LogEntry, simulate};
    use tcplab_core::model::{Script, UserError};
    for opts in [Options::linux(), Options::rfc()] {
        let r = simulate(
            &Script::new().call(0, Side::Client, Call::ActiveOpen),
            &opts,
        );
        let kinds: Vec<SegKind> = r.segments.iter().map(|s| s.segment.kind).collect();
        assert_eq!(kinds, [SegKind::Syn, SegKind::RstAck], "{}", opts.name);
        assert_eq!(r.client.state, State::Closed);
        assert!(r.log.iter().any(|e| matches!(
            e,
            LogEntry::Error {
                side: Side::Client,
                error: UserError::ConnectionRefused,
                ..
            }
        )));
    }
}

fn graph(opts: &Options) -> Vec<(State, State)> {
    diagram::transitions(opts)
        .iter()
        .map(|e| (e.from, e.to))
        .collect()
}

fn reach(edges: &[(State, State)], start: State, forward: bool) -> BTreeSet<State> {
    let mut seen = BTreeSet::from([start]);
    let mut q = VecDeque::from([start]);
    while let Some(s) = q.pop_front() {
        for (a, b) in edges {
            let (x, y) = if forward { (*a, *b) } else { (*b, *a) };
            if x == s && seen.insert(y) {
                q.push_back(y);
            }
        }
    }
    seen
}

#[test]
fn every_state_reachable_and_every_state_can_close() {
    for opts in [Options::linux(), Options::rfc()] {
        let g = graph(&opts);
        let from_closed = reach(&g, State::Closed, true);
        let to_closed = reach(&g, State::Closed, false);
        for s in State::ALL {
            assert!(from_closed.contains(&s), "{}: {s} unreachable", opts.name);
            assert!(
                to_closed.contains(&s),
                "{}: {s} cannot reach CLOSED",
                opts.name
            );
        }
    }
}

/// An input chosen relative to the machine's current numbers, so random sequences meet
/// acceptable segments often and unacceptable ones sometimes.
#[derive(Debug, Clone)]
enum Gen {
    User(Call),
    Seg(SegKind, i8, i8),
    Timer(Timer),
    Wait(u32),
}

fn any_gen() -> impl Strategy<Value = Gen> {
    prop_oneof![
        proptest::sample::select(Call::ALL.to_vec()).prop_map(Gen::User),
        (
            proptest::sample::select(SegKind::ALL.to_vec()),
            -2i8..3,
            -2i8..3
        )
            .prop_map(|(k, a, b)| Gen::Seg(k, a, b)),
        proptest::sample::select(Timer::ALL.to_vec()).prop_map(Gen::Timer),
        (0u32..300_000_000).prop_map(Gen::Wait),
    ]
}

fn realise(g: &Gen, t: &Tcb) -> Option<Input> {
    match g {
        Gen::User(c) => Some(Input::User(*c)),
        Gen::Seg(k, ds, da) => Some(Input::Segment(Segment::new(
            *k,
            t.rcv_nxt.wrapping_add(*ds as u32),
            t.snd_nxt.wrapping_add(*da as u32),
        ))),
        Gen::Timer(timer) => Some(Input::Timer(*timer)),
        Gen::Wait(_) => None,
    }
}

proptest! {
    #[test]
    fn random_inputs_never_make_an_illegal_transition(
        start in 0usize..17,
        linux in any::<bool>(),
        script in proptest::collection::vec(any_gen(), 0..60),
    ) {
        let opts = if linux { Options::linux() } else { Options::rfc() };
        let samples = sample_tcbs(&opts);
        let mut tcb = samples[start % samples.len()].clone();
        let mut now = 0u64;
        for g in &script {
            if let Gen::Wait(d) = g {
                now += u64::from(*d);
                continue;
            }
            let Some(input) = realise(g, &tcb) else { continue };
            let out = tcb.step(input, now, &opts);
            let mut from = out.from;
            for &to in &out.path {
                prop_assert!(is_legal(from, to), "{from} -> {to} on {input:?}");
                from = to;
            }
            prop_assert_eq!(out.to(), tcb.state);
            if tcb.state == State::Closed {
                prop_assert_eq!(tcb.timers.next(), None);
            }
        }
    }

}

/// Every sample machine under every sample input, in both profiles: the step reports the
/// state the machine is left in, stepping is deterministic, a rule is named, and the whole
/// table (state, input, path, segments sent, error, rule) is a reviewed snapshot, so a change
/// to any rule's outcome fails here until it is looked at (`cargo insta review`).
#[test]
fn every_sample_input_has_its_reviewed_outcome() {
    for opts in [Options::linux(), Options::rfc()] {
        let mut table = String::new();
        for tcb in sample_tcbs(&opts) {
            for input in sample_inputs(&tcb) {
                let mut t = tcb.clone();
                let out = t.step(input, diagram::LATE, &opts);
                assert_eq!(out.to(), t.state, "{input:?} in {}", tcb.state);
                let mut again = tcb.clone();
                assert_eq!(again.step(input, diagram::LATE, &opts), out, "{input:?}");
                assert_eq!(again, t, "{input:?} in {}", tcb.state);
                assert!(
                    !out.why.is_empty(),
                    "no rule named for {input:?} in {}",
                    tcb.state
                );
                let path: Vec<String> = out.path.iter().map(|s| s.to_string()).collect();
                let send: Vec<String> = out.send.iter().map(|s| s.to_string()).collect();
                table.push_str(&format!(
                    "{} | {} | -> {} | send [{}] | {} | {}\n",
                    tcb.state,
                    input.label(),
                    if path.is_empty() {
                        "-".into()
                    } else {
                        path.join(" -> ")
                    },
                    send.join(", "),
                    out.error.map_or("-".to_string(), |e| e.to_string()),
                    out.why,
                ));
            }
        }
        insta::assert_snapshot!(format!("outcomes_{}", opts.name), table);
    }
}
