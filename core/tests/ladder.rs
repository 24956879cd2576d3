//! The kernel's ladder, drawn from constructed timelines (so every number is known): a
//! graceful close (FIN, ACK, FIN, ACK), an abort (RST), folding of alike connections, the
//! normal form the book's check compares, and the model's ladder beside the kernel's.
//!
//! Left out on purpose: real runs. The book's ladders are checked against fresh runs in
//! `exercises/tests/book_ladders.rs`.

use std::net::SocketAddr;

use tcplab_core::ladder::{self, Direction, wire};
use tcplab_core::segment::{Flag, Flags, Segment};
use tcplab_core::{Event, Source, TcpState, Timeline};

const SERVER: u16 = 5000;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn ev(t: u64, local: u16, remote: u16, from: TcpState, to: TcpState) -> Event {
    Event::new(t, addr(local), addr(remote), from, to, Source::Tracepoint)
}

fn seg(t: u64, src: u16, dst: u16, flags: &[Flag], seq: u32, ack: u32, len: u32) -> Segment {
    Segment {
        t_us: t,
        src: addr(src),
        dst: addr(dst),
        flags: Flags::of(flags),
        seq,
        ack,
        raw_seq: seq + 1000,
        raw_ack: ack + 2000,
        len,
        win: 512,
        options: Default::default(),
    }
}

/// One connection from `port`, started at `t0` (µs): handshake, 5 bytes, then the client
/// closes first and the server follows.
fn graceful(port: u16, t0: u64) -> (Vec<Event>, Vec<Segment>) {
    use Flag::*;
    use TcpState::*;
    let c = port;
    let s = SERVER;
    let events = vec![
        ev(t0, c, s, Close, SynSent),
        ev(t0 + 20, c, s, SynSent, Established),
        ev(t0 + 30, s, c, Listen, SynRecv),
        ev(t0 + 31, s, c, SynRecv, Established),
        ev(t0 + 100, c, s, Established, FinWait1),
        ev(t0 + 110, s, c, Established, CloseWait),
        ev(t0 + 120, c, s, FinWait1, FinWait2),
        ev(t0 + 200, s, c, CloseWait, LastAck),
        ev(t0 + 210, s, c, LastAck, Close),
        ev(t0 + 211, c, s, FinWait2, TimeWait),
    ];
    let segments = vec![
        seg(t0 + 1, c, s, &[Syn], 0, 0, 0),
        seg(t0 + 10, s, c, &[Syn, Ack], 0, 1, 0),
        seg(t0 + 25, c, s, &[Ack], 1, 1, 0),
        seg(t0 + 50, c, s, &[Psh, Ack], 1, 1, 5),
        seg(t0 + 60, s, c, &[Ack], 1, 6, 0),
        seg(t0 + 101, c, s, &[Fin, Ack], 6, 1, 0),
        seg(t0 + 115, s, c, &[Ack], 1, 7, 0),
        seg(t0 + 201, s, c, &[Fin, Ack], 1, 7, 0),
        seg(t0 + 205, c, s, &[Ack], 7, 2, 0),
    ];
    (events, segments)
}

fn timeline(parts: Vec<(Vec<Event>, Vec<Segment>)>) -> Timeline {
    let (mut events, mut segments) = (Vec::new(), Vec::new());
    for (e, s) in parts {
        events.extend(e);
        segments.extend(s);
    }
    Timeline::from_events(events).with_segments(segments)
}

/// An abort: the client sends RST (SO_LINGER 0) with 3 bytes unread by nobody.
fn abort(port: u16, t0: u64) -> (Vec<Event>, Vec<Segment>) {
    use Flag::*;
    use TcpState::*;
    let (mut events, mut segments) = graceful(port, t0);
    events.truncate(4);
    segments.truncate(5);
    events.push(ev(t0 + 100, port, SERVER, Established, Close));
    events.push(ev(t0 + 112, SERVER, port, Established, Close));
    segments.push(seg(t0 + 101, port, SERVER, &[Rst, Ack], 6, 1, 0));
    (events, segments)
}

#[test]
fn a_graceful_close_reads_fin_ack_fin_ack_with_states_in_place() {
    let t = timeline(vec![graceful(40000, 1_000)]);
    let folded = wire::Folded::of(&t);
    assert_eq!(folded.connections, 1);
    let ladders = folded.ladders();
    assert_eq!(ladders.len(), 1);
    let l = &ladders[0];
    assert_eq!(l.title, None, "a lone connection needs no title");
    assert_eq!(l.client, "client 127.0.0.1:40000");
    assert_eq!(l.server, "server 127.0.0.1:5000");
    let arrows: Vec<(Direction, &str)> = l
        .rows
        .iter()
        .filter_map(|r| r.arrow.as_ref().map(|a| (a.direction, a.label.as_str())))
        .collect();
    use Direction::*;
    assert_eq!(
        arrows,
        vec![
            (ToServer, "SYN seq=0"),
            (ToClient, "SYN+ACK seq=0 ack=1"),
            (ToServer, "ACK seq=1 ack=1"),
            (ToServer, "PSH+ACK seq=1 ack=1 len=5"),
            (ToClient, "ACK seq=1 ack=6"),
            (ToServer, "FIN+ACK seq=6 ack=1"),
            (ToClient, "ACK seq=1 ack=7"),
            (ToClient, "FIN+ACK seq=1 ack=7"),
            (ToServer, "ACK seq=7 ack=2"),
        ]
    );
    // The FIN is written beside the close() that sent it, on the sender's side.
    let fin = l
        .rows
        .iter()
        .find(|r| {
            r.arrow
                .as_ref()
                .is_some_and(|a| a.label.starts_with("FIN+ACK seq=6"))
        })
        .unwrap();
    assert_eq!(fin.client, "FIN_WAIT1");
    let last_ack = l
        .rows
        .iter()
        .find(|r| {
            r.arrow
                .as_ref()
                .is_some_and(|a| a.label.starts_with("FIN+ACK seq=1"))
        })
        .unwrap();
    assert_eq!(last_ack.server, "LAST_ACK");
    // The receiver's change follows the arrow that caused it.
    let i = l.rows.iter().position(|r| std::ptr::eq(r, fin)).unwrap();
    assert_eq!(l.rows[i + 1].server, "CLOSE_WAIT");
    assert_eq!(l.end_client, "= TIME_WAIT (timer running)");
    assert_eq!(
        l.timers.len(),
        1,
        "TIME_WAIT's timer runs on: {:?}",
        l.timers
    );
    assert_eq!(
        (l.rows[l.timers[0].from].client.as_str(), l.timers[0].to),
        ("TIME_WAIT", None)
    );
    assert_eq!(l.end_server, "= CLOSE");
    insta::assert_snapshot!("graceful_close", wire::text(&t));
}

#[test]
fn an_abort_shows_the_reset_and_both_sides_closed() {
    let t = timeline(vec![abort(40000, 0)]);
    let text = wire::text(&t);
    let rst = text
        .lines()
        .find(|l| l.contains("RST+ACK seq=6 ack=1"))
        .unwrap();
    assert!(
        rst.contains("CLOSE") && rst.trim_end().ends_with('>'),
        "{rst}"
    );
    assert!(!text.contains("FIN"), "{text}");
    assert!(text.contains("= CLOSE"), "{text}");
    insta::assert_snapshot!("abort", text);
}

#[test]
fn alike_connections_fold_and_a_different_one_is_drawn() {
    let mut parts: Vec<_> = (0..9)
        .map(|i| graceful(40000 + i, i as u64 * 1_000))
        .collect();
    parts.push(abort(41000, 20_000));
    let t = timeline(parts);
    let folded = wire::Folded::of(&t);
    assert_eq!(folded.connections, 10);
    assert_eq!(folded.kinds.len(), 2);
    assert_eq!((folded.kinds[0].number, folded.kinds[0].count), (1, 9));
    assert_eq!((folded.kinds[1].number, folded.kinds[1].count), (10, 1));
    let titles: Vec<String> = folded
        .ladders()
        .into_iter()
        .filter_map(|l| l.title)
        .collect();
    assert_eq!(
        titles,
        vec![
            "connection 1 of 10, and 8 more like it",
            "connection 10 of 10, unlike the others"
        ]
    );
    // The normal form: one line per kind, nothing that varies between runs.
    let normal = wire::normal_form(&t);
    assert_eq!(normal.lines().count(), 2, "{normal}");
    assert!(
        !normal.contains("40000") && !normal.contains("seq="),
        "{normal}"
    );
    assert!(
        normal.lines().nth(1).unwrap().contains(">RST+ACK"),
        "{normal}"
    );
    // The same ports shifted: the same form.
    let moved = timeline(
        (0..9)
            .map(|i| graceful(50000 + i, 7 + i as u64 * 3_000))
            .chain([abort(51000, 90_000)])
            .collect(),
    );
    assert_eq!(wire::normal_form(&moved), normal);
}

#[test]
fn a_timer_that_ends_a_state_is_named() {
    use TcpState::*;
    let (mut events, segments) = graceful(40000, 0);
    events.push(ev(60_000_211, 40000, SERVER, TimeWait, Close));
    let t = Timeline::from_events(events).with_segments(segments);
    let text = wire::text(&t);
    assert!(text.contains("(60.000 s later)"), "{text}");
    assert!(text.contains("[TIME_WAIT timer] CLOSE"), "{text}");
    assert!(text.contains("= CLOSE"), "{text}");
    // In the picture, a bar from the TIME_WAIT row to the timer's row.
    let l = &wire::Folded::of(&t).ladders()[0];
    assert_eq!(l.timers.len(), 1, "{:?}", l.timers);
    let bar = &l.timers[0];
    assert_eq!(bar.side, tcplab_core::timeline::Side::Client);
    assert_eq!(l.rows[bar.from].client, "TIME_WAIT");
    assert_eq!(l.rows[bar.to.unwrap()].client, "[TIME_WAIT timer] CLOSE");
    assert_eq!(wire::svg(&t).matches(r#"class="timer""#).count(), 1);
}

#[test]
fn model_and_kernel_side_by_side() {
    use tcplab_core::model::{Options, Scenario, ladder as model_ladder};
    let m = Scenario::ClientClose.run(&Options::linux());
    let k = timeline(vec![graceful(40000, 0)]);
    let text = ladder::side_by_side_text(&model_ladder::text(&m), &wire::text(&k));
    let first = text.lines().next().unwrap();
    assert!(
        first.contains("client 10.0.0.1:40000") && first.contains("| "),
        "{first}"
    );
    assert!(first.contains("client 127.0.0.1:40000"), "{first}");
    let svg = ladder::side_by_side_svg(&model_ladder::svg(&m), &wire::svg(&k), ("model", "kernel"));
    let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
    assert_eq!(
        doc.descendants().filter(|n| n.has_tag_name("svg")).count(),
        3
    );
    let ids: Vec<&str> = doc
        .descendants()
        .filter_map(|n| n.attribute("id"))
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1], "each picture keeps its own arrowhead");
}

#[test]
fn an_empty_timeline_says_so() {
    assert!(wire::text(&Timeline::new()).starts_with("no connections"));
    assert_eq!(wire::normal_form(&Timeline::new()), "");
}

#[test]
fn a_picture_carries_its_normal_form() {
    let t = timeline(vec![graceful(40000, 0), abort(40001, 5_000)]);
    let svg = wire::svg(&t);
    roxmltree::Document::parse(&svg).expect("well-formed SVG");
    let desc = wire::desc_of(&svg).unwrap();
    let kinds = wire::Kinds::parse(&desc).expect("a described form");
    assert_eq!(kinds, wire::Kinds::of(&t));
    assert_eq!(kinds.total, 2);
    assert!(desc.lines().all(|l| l.ends_with(" [1/2]")), "{desc}");
    assert!(wire::normal_form(&t).contains("<RST") || wire::normal_form(&t).contains(">RST"));
}

/// One address, two sockets in turn (lesson 10): the old one's last change may come after
/// the new one's first, and the normal form does not care.
#[test]
fn a_port_used_again_keeps_each_socket_apart_in_the_normal_form() {
    use TcpState::*;
    let (c, s) = (40000, SERVER);
    let base = vec![
        ev(0, c, s, Close, SynSent),
        ev(10, c, s, SynSent, Established),
        ev(20, c, s, Established, FinWait1),
        ev(30, c, s, FinWait1, FinWait2),
    ];
    let old_ends = ev(1_000, c, s, FinWait2, Close);
    let new_starts = vec![
        ev(900, c, s, Close, SynSent),
        ev(1_100, c, s, SynSent, Established),
    ];
    let mut early = base.clone();
    early.push(old_ends.clone());
    early.extend(new_starts.clone());
    let mut late = base;
    late.extend(new_starts);
    late.push(Event {
        t_us: 1_200,
        ..old_ends
    });
    let a = wire::normal_form(&Timeline::from_events(early));
    let b = wire::normal_form(&Timeline::from_events(late));
    assert_eq!(a, b);
    assert!(
        a.contains("CLOSE SYN_SENT ESTABLISHED FIN_WAIT1 CLOSE ; CLOSE SYN_SENT ESTABLISHED"),
        "{a}"
    );
}

/// connect() reports SYN_SENT before it picks a port (`127.0.0.1:0`): the SYN just after
/// names the port, so the change lands on its connection; a connect() that failed sent no
/// SYN and stays an attempt of its own.
#[test]
fn an_unbound_connect_is_named_by_its_syn() {
    use TcpState::*;
    let (mut events, segments) = graceful(40000, 1_000);
    events[0].local = addr(0);
    events.push(ev(500, 0, SERVER, Close, SynSent));
    events.push(ev(510, 0, SERVER, SynSent, Close));
    let t = Timeline::from_events(events).with_segments(segments);
    let normal = wire::normal_form(&t);
    let lines: Vec<&str> = normal.lines().collect();
    assert_eq!(lines.len(), 2, "{normal}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("client: CLOSE SYN_SENT ESTABLISHED FIN_WAIT1 TIME_WAIT")),
        "{normal}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("wire:  | client: CLOSE SYN_SENT CLOSE")),
        "{normal}"
    );
}

/// A client port used again after its connection ended is a new connection, drawn apart
/// (and folded with the first when alike).
#[test]
fn a_pair_used_again_after_the_end_is_a_new_connection() {
    let mut a = graceful(40000, 0);
    let b = graceful(40000, 10_000);
    a.0.extend(b.0);
    // The second use's SYN carries a new sequence number.
    a.1.extend(b.1.into_iter().map(|mut s| {
        s.raw_seq += 77_777;
        s
    }));
    let t = timeline(vec![a]);
    let folded = wire::Folded::of(&t);
    assert_eq!(folded.connections, 2);
    assert_eq!(folded.kinds.len(), 1);
    assert_eq!(folded.kinds[0].count, 2);
}

/// A socket in FIN_WAIT2 that data reaches after close() answers RST and is gone: that is
/// not its timer, though the change is seen late (lesson 08).
#[test]
fn a_reset_is_not_taken_for_a_timer() {
    use Flag::*;
    use TcpState::*;
    let (mut events, mut segments) = graceful(40000, 0);
    events.truncate(7); // up to FIN_WAIT2 and CLOSE_WAIT
    segments.truncate(7);
    segments.push(seg(300, SERVER, 40000, &[Psh, Ack], 1, 7, 100));
    segments.push(seg(310, 40000, SERVER, &[Rst], 7, 0, 0));
    events.push(ev(320, SERVER, 40000, CloseWait, Close));
    events.push(ev(90_000, 40000, SERVER, FinWait2, Close));
    let t = Timeline::from_events(events).with_segments(segments);
    let text = wire::text(&t);
    assert!(!text.contains("timer]"), "{text}");
    assert!(text.contains("RST seq=7"), "{text}");
    assert!(wire::Folded::of(&t).ladders()[0].timers.is_empty());
}

/// connect() takes a port still in TIME_WAIT (Linux's tcp_tw_reuse): the old socket's end
/// belongs to the old connection's ladder, and it was not its 60 s timer (lesson 10's fix).
#[test]
fn an_old_time_wait_ended_by_a_reused_port_stays_on_its_own_ladder() {
    use Flag::*;
    use TcpState::*;
    let (c, s) = (40000, SERVER);
    let (mut events, mut segments) = graceful(c, 0);
    events.extend([
        ev(10_000, c, s, Close, SynSent),
        ev(10_020, c, s, SynSent, Established),
        ev(10_030, s, c, Listen, SynRecv),
        ev(10_031, s, c, SynRecv, Established),
        ev(10_500, c, s, TimeWait, Close),
    ]);
    let mut syn = seg(10_001, c, s, &[Syn], 0, 0, 0);
    syn.raw_seq = 99_999;
    segments.extend([syn, seg(10_010, s, c, &[Syn, Ack], 0, 1, 0)]);
    let t = Timeline::from_events(events).with_segments(segments);
    let folded = wire::Folded::of(&t);
    assert_eq!(folded.connections, 2);
    let ladders = folded.ladders();
    let (old, new) = (&ladders[0], &ladders[1]);
    assert!(old.rows.iter().any(|r| r.client == "CLOSE"), "{old:?}");
    assert!(!wire::text(&t).contains("timer] CLOSE"));
    assert_eq!(old.end_client, "= CLOSE");
    assert_eq!(new.end_client, "= ESTABLISHED");
    let bar = &old.timers[0];
    assert_eq!(old.rows[bar.to.expect("the bar ends")].client, "CLOSE");
}

/// Among many connections, a kind that one run has once and the other lacks is an accident
/// of timing; a kind most connections share is not.
#[test]
fn a_rare_kind_is_an_accident_a_common_one_is_not() {
    let many = |odd: usize| {
        let mut parts: Vec<_> = (0..40u16)
            .map(|i| graceful(40000 + i, u64::from(i) * 1_000))
            .collect();
        for k in 0..odd {
            parts.push(abort(41000 + k as u16, 90_000 + k as u64 * 1_000));
        }
        wire::Kinds::of(&timeline(parts))
    };
    let (plain, one_odd, ten_odd) = (many(0), many(1), many(10));
    assert_eq!(one_odd.lines.len(), 2);
    assert!(plain.differs_from(&one_odd).is_empty(), "1 of 41 is rare");
    let d = plain.differs_from(&ten_odd);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].starts_with("only in the second (10 of 50)"), "{d:?}");
    // A small run has no accidents: every kind counts.
    let small = wire::Kinds::of(&timeline(vec![graceful(40000, 0)]));
    let small_odd = wire::Kinds::of(&timeline(vec![graceful(40000, 0), abort(40001, 9_000)]));
    assert_eq!(small.differs_from(&small_odd).len(), 1);
    assert_eq!(wire::Kinds::parse(&ten_odd.described()), Some(ten_odd));
}

/// A poll that missed brief states fills them in as inferred steps, dated by the segments
/// behind them (the sandbox's ladder, polling without root): a step brought about by a
/// received segment (SYN_RECV, CLOSE_WAIT, TIME_WAIT, the end of LAST_ACK) is written after
/// that segment's arrow, not on the row before it; a step a sent segment brings about
/// (FIN_WAIT1) stays before its arrow.
#[test]
fn inferred_steps_caused_by_a_received_segment_come_after_its_arrow() {
    let (events, segments) = graceful(40000, 1_000);
    let inferred: Vec<Event> = events
        .into_iter()
        .map(|e| {
            // Dated exactly at a segment, as `date_inferred_by_segments` does.
            let at = segments
                .iter()
                .filter(|s| s.t_us <= e.t_us + 1)
                .map(|s| s.t_us)
                .max()
                .unwrap_or(e.t_us);
            Event::new(at, e.local, e.remote, e.from, e.to, Source::Inferred)
        })
        .collect();
    let t = Timeline::from_events(inferred).with_segments(segments);
    let text = wire::text(&t);
    let row_of = |needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} is not in\n{text}"))
    };
    for (state, arrow) in [
        ("(SYN_RECV)", "SYN seq=0 "),
        ("(CLOSE_WAIT)", "FIN+ACK seq=6 ack=1"),
        ("(TIME_WAIT)", "FIN+ACK seq=1 ack=7"),
    ] {
        assert!(
            row_of(state) > row_of(arrow),
            "{state} must come after the arrow {arrow:?}:\n{text}"
        );
    }
    assert!(
        row_of("(FIN_WAIT1)") <= row_of("FIN+ACK seq=6 ack=1"),
        "FIN_WAIT1 is the close that sent the FIN:\n{text}"
    );
}

/// Two connections that differ are each "connection i of 2": "unlike the others" is only
/// for a connection drawn beside others that were folded.
#[test]
fn connections_all_different_are_just_numbered() {
    let t = timeline(vec![graceful(40000, 1_000), abort(40001, 5_000)]);
    let titles: Vec<String> = wire::Folded::of(&t)
        .ladders()
        .into_iter()
        .map(|l| l.title.unwrap_or_default())
        .collect();
    assert_eq!(titles, vec!["connection 1 of 2", "connection 2 of 2"]);
}

/// A zero window is written on the arrow (the receiver's buffer is full), other windows are
/// not, and a RST's window means nothing.
#[test]
fn a_zero_window_is_written_on_the_arrow() {
    let mut s = seg(10, 40000, SERVER, &[Flag::Ack], 1, 13, 0);
    assert_eq!(wire::segment_label(&s), "ACK seq=1 ack=13");
    s.win = 0;
    assert_eq!(wire::segment_label(&s), "ACK seq=1 ack=13 win=0");
    let mut r = seg(10, 40000, SERVER, &[Flag::Rst], 1, 0, 0);
    r.win = 0;
    assert_eq!(wire::segment_label(&r), "RST seq=1");
}
