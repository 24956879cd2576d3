//! The state diagram (RFC 9293 Figure 5), generated from the transition table itself: put a
//! machine in every state, feed it every input, and keep each state change as an edge. The
//! DOT, SVG and text renderings therefore cannot disagree with the code that runs.
//!
//! What it leaves out on purpose: edges that change nothing (a duplicate ACK, an error
//! returned to the program) and an automatic layout. The SVG places boxes on a fixed grid
//! shaped like Figure 5, with CLOSED drawn twice (top and bottom) as the RFC does, and routes
//! each edge by hand, so that no label hides another and every arrowhead ends on a box's
//! border; `core/tests/svg_geometry.rs` checks both. No graphviz needed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::ladder::xml_escape;
use super::machine::{Call, Input, Options, SegKind, Segment, State, Tcb, Timer};

/// One transition of the table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    pub from: State,
    pub to: State,
    /// What caused it: `CLOSE`, `rcv FIN+ACK`, `TIME_WAIT timer`.
    pub input: String,
    /// What was sent: `FIN+ACK`, `ACK`, or empty.
    pub send: String,
    /// The rule, citing RFC 9293 or Linux.
    pub why: &'static str,
}

impl Edge {
    /// `input / snd X`, Figure 5 style.
    pub fn label(&self) -> String {
        if self.send.is_empty() {
            self.input.clone()
        } else {
            format!("{} / snd {}", self.input, self.send)
        }
    }

    /// Edges that Figure 5 does not draw: resets, aborts, give-ups, Linux timers, and a new
    /// SYN reopening TIME-WAIT (RFC 9293 3.6.1 MAY-2, which Linux takes).
    pub fn is_exceptional(&self) -> bool {
        (self.from, self.to) == (State::TimeWait, State::SynReceived)
            || self.input.contains("RST")
            || self.input.contains("ABORT")
            || self.input.contains("RTO")
            || self.input.contains("fin_timeout")
            || self.send.contains("RST")
    }
}

const ISS: u32 = 100;
const IRS: u32 = 300;

/// Drive a fresh machine through `inputs`, returning it (time 0 throughout).
fn drive(inputs: &[Input], opts: &Options) -> Tcb {
    let mut t = Tcb::new(ISS);
    for i in inputs {
        t.step(*i, 0, opts);
    }
    t
}

fn seg(kind: SegKind, seq: u32, ack: u32) -> Input {
    Input::Segment(Segment::new(kind, seq, ack))
}

/// Machines in every state, reached through the machine itself, including the variants that
/// matter (passive or active SYN-RECEIVED, unread data, orphaned or half-closed).
pub fn sample_tcbs(opts: &Options) -> Vec<Tcb> {
    use Call::*;
    use SegKind as K;
    let u = Input::User;
    let est = vec![u(ActiveOpen), seg(K::SynAck, IRS, ISS + 1)];
    let with = |base: &Vec<Input>, more: &[Input]| {
        let mut v = base.clone();
        v.extend_from_slice(more);
        v
    };
    let est_unread = with(&est, &[seg(K::Data, IRS + 1, ISS + 1)]);
    let fw1 = with(&est, &[u(Close)]);
    let fw1_half = with(&est, &[u(ShutdownWrite)]);
    let fw2 = with(&fw1, &[seg(K::Ack, IRS + 1, ISS + 2)]);
    let fw2_half = with(&fw1_half, &[seg(K::Ack, IRS + 1, ISS + 2)]);
    let scripts: Vec<Vec<Input>> = vec![
        vec![],
        vec![u(PassiveOpen)],
        vec![u(ActiveOpen)],
        vec![u(PassiveOpen), seg(K::Syn, IRS, 0)],
        vec![u(ActiveOpen), seg(K::Syn, IRS, 0)],
        est.clone(),
        est_unread.clone(),
        fw1.clone(),
        fw1_half,
        fw2.clone(),
        fw2_half,
        with(&est, &[seg(K::FinAck, IRS + 1, ISS + 1)]),
        with(&est_unread, &[seg(K::FinAck, IRS + 2, ISS + 1)]),
        with(&fw1, &[seg(K::FinAck, IRS + 1, ISS + 1)]),
        with(&est, &[seg(K::FinAck, IRS + 1, ISS + 1), u(Close)]),
        with(&fw2, &[seg(K::FinAck, IRS + 1, ISS + 2)]),
        // TIME-WAIT on the side that accepted the connection (the server closed first):
        // there a listener can take a new SYN (Options::reopen_time_wait_on_syn).
        vec![
            u(PassiveOpen),
            seg(K::Syn, IRS, 0),
            seg(K::Ack, IRS + 1, ISS + 1),
            u(Close),
            seg(K::Ack, IRS + 1, ISS + 2),
            seg(K::FinAck, IRS + 1, ISS + 2),
        ],
    ];
    scripts.iter().map(|s| drive(s, opts)).collect()
}

/// Every input worth trying on `tcb`: each call, each segment kind (in window, acking all or
/// nothing new, and for TIME-WAIT a retransmitted FIN), a SYN above RCV.NXT (a new
/// connection from the same port), each timer (due).
pub fn sample_inputs(tcb: &Tcb) -> Vec<Input> {
    let mut v: Vec<Input> = Call::ALL.into_iter().map(Input::User).collect();
    let seq = if tcb.state.synchronized() {
        tcb.rcv_nxt
    } else {
        IRS
    };
    for k in SegKind::ALL {
        if k == SegKind::RstAck && tcb.state != State::SynSent {
            // Outside SYN-SENT a RST's ACK bit changes nothing (RFC 9293 3.10.7.4 checks the
            // RST before the ACK): one `rcv RST` edge says it all.
            continue;
        }
        v.push(seg(k, seq, tcb.snd_nxt));
        if k.has_ack() && tcb.snd_una != tcb.snd_nxt {
            v.push(seg(k, seq, tcb.snd_una));
        }
        if k.has_fin() {
            v.push(seg(k, seq.wrapping_sub(1), tcb.snd_nxt));
        }
        if k == SegKind::Syn && tcb.state.synchronized() {
            v.push(seg(k, seq.wrapping_add(1000), 0));
        }
    }
    v.extend(Timer::ALL.into_iter().map(Input::Timer));
    v
}

/// A time late enough for every armed timer to be due.
pub const LATE: u64 = u64::MAX / 4;

/// The transition table: every state change any sample machine makes on any sample input.
pub fn transitions(opts: &Options) -> Vec<Edge> {
    let mut edges: BTreeMap<(State, State, String, String), &'static str> = BTreeMap::new();
    // Single moves first, so their rule names the edge; then the hops of double moves
    // (SYN-RECEIVED -> ESTABLISHED -> CLOSE-WAIT on one FIN+ACK) that add a new edge.
    for multi in [false, true] {
        for tcb in sample_tcbs(opts) {
            for input in sample_inputs(&tcb) {
                let mut t = tcb.clone();
                let out = t.step(input, LATE, opts);
                if (out.path.len() > 1) != multi {
                    continue;
                }
                let send = out
                    .send
                    .iter()
                    .map(|s| s.kind.label())
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut from = out.from;
                for &to in &out.path {
                    if to != from {
                        edges
                            .entry((from, to, input.label(), send.clone()))
                            .or_insert(out.why);
                    }
                    from = to;
                }
            }
        }
    }
    edges
        .into_iter()
        .map(|((from, to, input, send), why)| Edge {
            from,
            to,
            input,
            send,
            why,
        })
        .collect()
}

/// The edges RFC 9293 Figure 5 draws, as (from, to) pairs.
pub const FIGURE_5: [(State, State); 20] = {
    use State::*;
    [
        (Closed, Listen),
        (Closed, SynSent),
        (Listen, SynReceived),
        (Listen, SynSent),
        (Listen, Closed),
        (SynSent, Closed),
        (SynSent, SynReceived),
        (SynSent, Established),
        (SynReceived, Listen),
        (SynReceived, Established),
        (SynReceived, FinWait1),
        (Established, FinWait1),
        (Established, CloseWait),
        (FinWait1, FinWait2),
        (FinWait1, Closing),
        (FinWait2, TimeWait),
        (Closing, TimeWait),
        (CloseWait, LastAck),
        (LastAck, Closed),
        (TimeWait, Closed),
    ]
};

/// Whether `from -> to` is legal: an edge of Figure 5, or one of the documented others:
/// any state to CLOSED by RST, ABORT, retransmission give-up, close() with unread data
/// (RFC 9293 3.10.5, 3.10.7.4, 3.10.8, 3.6) or Linux's orphaned FIN_WAIT2 timeout;
/// SYN-RECEIVED to CLOSED (RST after an active open); and TIME-WAIT to SYN-RECEIVED, a new
/// SYN reopening the connection (RFC 9293 3.6.1 MAY-2, which Linux takes and Figure 5 does
/// not draw).
pub fn is_legal(from: State, to: State) -> bool {
    FIGURE_5.contains(&(from, to))
        || (to == State::Closed && from != State::Closed)
        || (from, to) == (State::TimeWait, State::SynReceived)
}

/// Group edges by (from, to), joining labels: what the diagrams draw.
fn grouped(edges: &[Edge]) -> BTreeMap<(State, State), Vec<&Edge>> {
    let mut g: BTreeMap<(State, State), Vec<&Edge>> = BTreeMap::new();
    for e in edges {
        g.entry((e.from, e.to)).or_default().push(e);
    }
    g
}

/// A text listing: one line per edge, with the rule it follows.
pub fn text(edges: &[Edge]) -> String {
    let mut s = String::new();
    for e in edges {
        let _ = writeln!(
            s,
            "{:<12} -> {:<12} {:<40} {}",
            e.from.to_string(),
            e.to.to_string(),
            e.label(),
            e.why
        );
    }
    s
}

/// Graphviz DOT: one edge per (from, to) pair, labels joined by newlines; exceptional edges
/// (resets, aborts, timeouts) dashed and grey.
pub fn dot(edges: &[Edge]) -> String {
    let mut s = String::from(
        "digraph tcp {\n  // RFC 9293 Figure 5, generated from tcplab's transition table\n  node [shape=box, fontname=\"monospace\"];\n  edge [fontname=\"monospace\", fontsize=10];\n",
    );
    for st in State::ALL {
        let _ = writeln!(s, "  \"{st}\";");
    }
    for ((from, to), es) in grouped(edges) {
        let label = es
            .iter()
            .map(|e| e.label().replace('"', "\\\""))
            .collect::<Vec<_>>()
            .join("\\n");
        let style = if es.iter().all(|e| e.is_exceptional()) {
            ", style=dashed, color=grey"
        } else {
            ""
        };
        let _ = writeln!(s, "  \"{from}\" -> \"{to}\" [label=\"{label}\"{style}];");
    }
    s.push_str("}\n");
    s
}

/// Where a box is drawn: each state once, plus a second CLOSED at the bottom right for the
/// edges that end the connection from below (as Figure 5 does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spot {
    Of(State),
    ClosedBelow,
}

/// The centre of each box, shaped like Figure 5: three columns, seven rows.
fn centre(spot: Spot) -> (f64, f64) {
    let (col, row) = match spot {
        Spot::ClosedBelow => (2, 6),
        Spot::Of(s) => match s {
            State::Closed => (1, 0),
            State::Listen => (1, 1),
            State::SynReceived => (0, 2),
            State::SynSent => (2, 2),
            State::Established => (1, 3),
            State::FinWait1 => (0, 4),
            State::CloseWait => (2, 4),
            State::FinWait2 => (0, 5),
            State::Closing => (1, 5),
            State::LastAck => (2, 5),
            State::TimeWait => (1, 6),
        },
    };
    (COL_X[col], TOP + ROW_H * row as f64)
}

/// The picture is [`WIDTH`] px wide with [`page::FONT`] px text, so that scaled to the book's
/// width its labels are still at least [`page::MIN_TEXT`] px.
const WIDTH: f64 = 800.0;
const COL_X: [f64; 3] = [120.0, 400.0, 680.0];
const TOP: f64 = 120.0;
const ROW_H: f64 = 145.0;
const HALF_W: f64 = 66.0;
const HALF_H: f64 = 17.0;
const LINE_H: f64 = 16.0;

/// Points on a box's border: `dx` or `dy` moves along the side from its middle.
fn top(s: Spot, dx: f64) -> (f64, f64) {
    let (x, y) = centre(s);
    (x + dx, y - HALF_H)
}
fn bottom(s: Spot, dx: f64) -> (f64, f64) {
    let (x, y) = centre(s);
    (x + dx, y + HALF_H)
}
fn left(s: Spot, dy: f64) -> (f64, f64) {
    let (x, y) = centre(s);
    (x - HALF_W, y + dy)
}
fn right(s: Spot, dy: f64) -> (f64, f64) {
    let (x, y) = centre(s);
    (x + HALF_W, y + dy)
}

/// How a label block sits: `x` is its start, middle or end, `y` its first baseline.
#[derive(Debug, Clone, Copy)]
enum Anchor {
    Start,
    Middle,
    End,
}

/// An edge's path (border to border, corners included) and where its label goes.
struct Route {
    points: Vec<(f64, f64)>,
    label: (f64, f64, Anchor),
}

/// The hand-made route of each edge Figure 5 draws, and of Linux's reopening of TIME-WAIT;
/// `None` for any other pair, which gets a straight line (see [`fallback`]).
fn route(from: State, to: State) -> Option<Route> {
    use Anchor::*;
    use State::*;
    let o = Spot::Of;
    let at = |x: f64, y: f64, a: Anchor| (x, y, a);
    let r = |points: Vec<(f64, f64)>, label| Some(Route { points, label });
    let (l, m, rt) = (COL_X[0], COL_X[1], COL_X[2]);
    let row = |n: f64| TOP + ROW_H * n;
    match (from, to) {
        (Closed, Listen) => r(
            vec![bottom(o(Closed), -12.0), top(o(Listen), -12.0)],
            at(m - 20.0, row(0.5) + 5.0, End),
        ),
        (Listen, Closed) => r(
            vec![top(o(Listen), 12.0), bottom(o(Closed), 12.0)],
            at(m + 20.0, row(0.5) + 5.0, Start),
        ),
        (Closed, SynSent) => r(
            vec![
                right(o(Closed), -8.0),
                (rt - 10.0, row(0.0) - 8.0),
                top(o(SynSent), -10.0),
            ],
            at((m + rt) / 2.0 + 10.0, row(0.0) - 16.0, Middle),
        ),
        (SynSent, Closed) => r(
            vec![
                top(o(SynSent), 14.0),
                (rt + 14.0, row(0.0) + 8.0),
                right(o(Closed), 8.0),
            ],
            at((m + rt) / 2.0 + 10.0, row(0.0) + 28.0, Middle),
        ),
        (Listen, SynSent) => r(
            vec![right(o(Listen), 8.0), top(o(SynSent), -40.0)],
            at(m + 110.0, row(1.0) + 62.0, End),
        ),
        (Listen, SynReceived) => r(
            vec![left(o(Listen), 8.0), top(o(SynReceived), 30.0)],
            at(l + 150.0, row(1.0) + 20.0, End),
        ),
        (SynReceived, Listen) => r(
            vec![top(o(SynReceived), 56.0), bottom(o(Listen), -40.0)],
            at(l + 150.0, row(1.0) + 86.0, Start),
        ),
        (SynSent, SynReceived) => r(
            vec![left(o(SynSent), 0.0), right(o(SynReceived), 0.0)],
            at(m, row(2.0) - 8.0, Middle),
        ),
        (SynSent, Established) => r(
            vec![bottom(o(SynSent), -40.0), right(o(Established), -8.0)],
            at(rt - 60.0, row(2.0) + 70.0, Start),
        ),
        (SynReceived, Established) => r(
            vec![bottom(o(SynReceived), 40.0), left(o(Established), -8.0)],
            at(l + 140.0, row(2.0) + 42.0, Start),
        ),
        (SynReceived, FinWait1) => r(
            vec![bottom(o(SynReceived), -20.0), top(o(FinWait1), -20.0)],
            at(l - 12.0, row(3.0) - 10.0, Start),
        ),
        (Established, FinWait1) => r(
            vec![left(o(Established), 8.0), top(o(FinWait1), 40.0)],
            at(m - 80.0, row(3.0) + 72.0, Start),
        ),
        (Established, CloseWait) => r(
            vec![right(o(Established), 8.0), top(o(CloseWait), -40.0)],
            at(rt - 80.0, row(3.0) + 40.0, Start),
        ),
        (FinWait1, FinWait2) => r(
            vec![bottom(o(FinWait1), 0.0), top(o(FinWait2), 0.0)],
            at(l + 8.0, row(4.0) + 58.0, Start),
        ),
        (FinWait1, Closing) => r(
            vec![right(o(FinWait1), 0.0), (m, row(4.0)), top(o(Closing), 0.0)],
            at(m + 8.0, row(4.0) + 50.0, Start),
        ),
        (FinWait2, TimeWait) => r(
            vec![
                bottom(o(FinWait2), 0.0),
                (l, row(6.0)),
                left(o(TimeWait), 0.0),
            ],
            at(l + 12.0, row(6.0) - 40.0, Start),
        ),
        (Closing, TimeWait) => r(
            vec![bottom(o(Closing), 0.0), top(o(TimeWait), 0.0)],
            at(m + 8.0, row(5.0) + 52.0, Start),
        ),
        (CloseWait, LastAck) => r(
            vec![bottom(o(CloseWait), 0.0), top(o(LastAck), 0.0)],
            at(rt - 8.0, row(4.0) + 50.0, End),
        ),
        (LastAck, Closed) => r(
            vec![bottom(o(LastAck), 0.0), top(Spot::ClosedBelow, 0.0)],
            at(rt + 8.0, row(5.0) + 52.0, Start),
        ),
        (TimeWait, Closed) => r(
            vec![right(o(TimeWait), 0.0), left(Spot::ClosedBelow, 0.0)],
            at((m + rt) / 2.0, row(6.0) - 8.0, Middle),
        ),
        (TimeWait, SynReceived) => r(
            vec![
                bottom(o(TimeWait), 0.0),
                (m, row(6.0) + 50.0),
                (l - 90.0, row(6.0) + 50.0),
                (l - 90.0, row(2.0)),
                left(o(SynReceived), 0.0),
            ],
            at(l - 80.0, row(6.0) + 42.0, Start),
        ),
        _ => None,
    }
}

/// A straight line between the two boxes' borders, labelled at its middle: for a pair that
/// has no route of its own (the geometry test catches what it may hit).
fn fallback(a: Spot, b: Spot) -> Route {
    let (ca, cb) = (centre(a), centre(b));
    let (dx, dy) = (cb.0 - ca.0, cb.1 - ca.1);
    let clip = |c: (f64, f64), dx: f64, dy: f64| {
        let tx = if dx.abs() > 1e-9 {
            HALF_W / dx.abs()
        } else {
            f64::MAX
        };
        let ty = if dy.abs() > 1e-9 {
            HALF_H / dy.abs()
        } else {
            f64::MAX
        };
        let t = tx.min(ty);
        (c.0 + dx * t, c.1 + dy * t)
    };
    let (p, q) = (clip(ca, dx, dy), clip(cb, -dx, -dy));
    Route {
        points: vec![p, q],
        label: ((p.0 + q.0) / 2.0 + 8.0, (p.1 + q.1) / 2.0, Anchor::Start),
    }
}

/// A pair's label, one line per input; inputs that send the same segment share a last line
/// `/ snd X`, as Figure 5 writes it.
fn label_lines(es: &[&Edge]) -> Vec<String> {
    let send = &es[0].send;
    let mut lines: Vec<String> =
        if es.len() > 1 && !send.is_empty() && es.iter().all(|e| &e.send == send) {
            let mut v: Vec<String> = es.iter().map(|e| e.input.clone()).collect();
            v.dedup();
            v.push(format!("/ snd {send}"));
            v
        } else {
            es.iter().map(|e| e.label()).collect()
        };
    lines.dedup();
    lines
}

/// A block of text lines with a white halo, so a line passing under it does not hide it.
fn text_block(s: &mut String, (x, y, anchor): (f64, f64, Anchor), lines: &[String], fill: &str) {
    let anchor = match anchor {
        Anchor::Start => "start",
        Anchor::Middle => "middle",
        Anchor::End => "end",
    };
    for (i, line) in lines.iter().enumerate() {
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="{anchor}" fill="{fill}" stroke="white" stroke-width="4" paint-order="stroke">{}</text>"#,
            y + LINE_H * i as f64,
            xml_escape(line)
        );
    }
}

/// A standalone SVG of the state diagram, laid out like Figure 5 and sized for the book.
///
/// Solid edges are Figure 5's. A dashed edge is one that Linux takes and the model's RFC
/// profile does not (TIME-WAIT reopened by a new SYN). The ways to CLOSED on a reset, an
/// abort or a timeout, which Figure 5 leaves out, would cross the whole picture: they are
/// listed in a table under it instead, each marked when it is Linux's alone.
pub fn svg(edges: &[Edge]) -> String {
    use super::ladder::page::{FONT, text_w};
    let rfc: std::collections::BTreeSet<(State, State, String)> = transitions(&Options::rfc())
        .into_iter()
        .map(|e| (e.from, e.to, e.label()))
        .collect();
    let linux_only = |e: &Edge| !rfc.contains(&(e.from, e.to, e.label()));
    let figure_5 = |e: &Edge| FIGURE_5.contains(&(e.from, e.to));
    // What is drawn as an arrow, and what goes to the table of other ways to CLOSED.
    let mut drawn: BTreeMap<(State, State), Vec<&Edge>> = BTreeMap::new();
    let mut listed: BTreeMap<State, Vec<&Edge>> = BTreeMap::new();
    for e in edges {
        let to_the_table = e.to == State::Closed
            && e.is_exceptional()
            && !(figure_5(e)
                && edges
                    .iter()
                    .filter(|o| (o.from, o.to) == (e.from, e.to))
                    .all(Edge::is_exceptional));
        if to_the_table {
            listed.entry(e.from).or_default().push(e);
        } else {
            drawn.entry((e.from, e.to)).or_default().push(e);
        }
    }
    let diagram_bottom = TOP + ROW_H * 6.0 + HALF_H + 60.0;
    let table_top = diagram_bottom + 30.0;
    // The table's rows, wrapped to the picture's width.
    let state_col = 130.0;
    let room = WIDTH - 20.0 - state_col;
    let mut table: Vec<(String, String)> = Vec::new();
    for st in State::ALL {
        let Some(es) = listed.get(&st) else { continue };
        let items: Vec<String> = es
            .iter()
            .map(|e| {
                if linux_only(e) {
                    format!("{} (Linux)", e.label())
                } else {
                    e.label()
                }
            })
            .collect();
        let mut line = String::new();
        let mut first = true;
        for item in items {
            let joined = if line.is_empty() {
                item.clone()
            } else {
                format!("{line} · {item}")
            };
            if !line.is_empty() && text_w(&joined, FONT) > room {
                table.push((
                    if first {
                        st.tcp().rfc().to_string()
                    } else {
                        String::new()
                    },
                    format!("{line} ·"),
                ));
                first = false;
                line = item;
            } else {
                line = joined;
            }
        }
        table.push((
            if first {
                st.tcp().rfc().to_string()
            } else {
                String::new()
            },
            line,
        ));
    }
    let height = (table_top + 28.0 + LINE_H * table.len() as f64 + 16.0).ceil();
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="monospace" font-size="{FONT}">"#
    );
    let _ = writeln!(
        s,
        r##"<defs><marker id="arrow" markerWidth="10" markerHeight="8" refX="10" refY="4" orient="auto" markerUnits="userSpaceOnUse"><path d="M0,0 L10,4 L0,8 z" fill="black"/></marker><marker id="arrow-linux" markerWidth="10" markerHeight="8" refX="10" refY="4" orient="auto" markerUnits="userSpaceOnUse"><path d="M0,0 L10,4 L0,8 z" fill="#b35900"/></marker></defs>"##
    );
    let _ = writeln!(
        s,
        r#"<rect width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-weight="bold">TCP connection states (RFC 9293 Figure 5), from the model</text>"#
    );
    // The legend: what solid and dashed mean.
    let _ = writeln!(
        s,
        r#"<line class="legend" x1="14" y1="44" x2="54" y2="44" stroke="black" stroke-width="1.4" marker-end="url(#arrow)"/>"#
    );
    let _ = writeln!(s, r#"<text x="62" y="48">Figure 5</text>"#);
    let _ = writeln!(
        s,
        r##"<line class="legend" x1="174" y1="44" x2="214" y2="44" stroke="#b35900" stroke-width="1.4" stroke-dasharray="6,4" marker-end="url(#arrow-linux)"/>"##
    );
    let _ = writeln!(
        s,
        r##"<text x="222" y="48" fill="#b35900">Linux only (the model's RFC profile does not take it)</text>"##
    );
    // Boxes first, so that edges and arrowheads are painted over them, never under.
    let mut spots: Vec<(State, Spot)> = State::ALL.into_iter().map(|s| (s, Spot::Of(s))).collect();
    spots.push((State::Closed, Spot::ClosedBelow));
    for (st, spot) in spots {
        let (cx, cy) = centre(spot);
        let _ = writeln!(
            s,
            r##"<rect x="{:.1}" y="{:.1}" width="{}" height="{}" rx="6" fill="#eef" stroke="black"/>"##,
            cx - HALF_W,
            cy - HALF_H,
            2.0 * HALF_W,
            2.0 * HALF_H
        );
        let _ = writeln!(
            s,
            r#"<text x="{cx:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">{}</text>"#,
            cy + 5.0,
            st.tcp().rfc()
        );
    }
    for ((from, to), es) in &drawn {
        let b = if *to == State::Closed
            && centre(Spot::Of(*from)).1 > centre(Spot::Of(State::Established)).1
        {
            Spot::ClosedBelow
        } else {
            Spot::Of(*to)
        };
        let route = route(*from, *to).unwrap_or_else(|| fallback(Spot::Of(*from), b));
        let dashed = es.iter().all(|e| linux_only(e));
        let (stroke, extra, marker, fill) = if dashed {
            (
                "#b35900",
                r#" stroke-dasharray="6,4""#,
                "arrow-linux",
                "#b35900",
            )
        } else {
            ("black", "", "arrow", "#024")
        };
        let points = route
            .points
            .iter()
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect::<Vec<_>>()
            .join(" ");
        let _ = writeln!(
            s,
            r#"<polyline points="{points}" fill="none" stroke="{stroke}" stroke-width="1.4"{extra} marker-end="url(#{marker})"/>"#
        );
        text_block(&mut s, route.label, &label_lines(es), fill);
    }
    // The table of the other ways to CLOSED.
    let _ = writeln!(
        s,
        r#"<text x="10" y="{table_top:.1}" font-weight="bold">Also to CLOSED, not drawn: resets, aborts, timeouts</text>"#
    );
    for (i, (st, line)) in table.iter().enumerate() {
        let y = table_top + 24.0 + LINE_H * i as f64;
        if !st.is_empty() {
            let _ = writeln!(
                s,
                r#"<text x="10" y="{y:.1}" font-weight="bold">{st}</text>"#
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{y:.1}" fill="#024">{}</text>"##,
            10.0 + state_col,
            xml_escape(line)
        );
    }
    s.push_str("</svg>\n");
    s
}
