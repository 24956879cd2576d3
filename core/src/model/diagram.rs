//! The state diagram (RFC 9293 Figure 5), generated from the transition table itself: put a
//! machine in every state, feed it every input, and keep each state change as an edge. The
//! DOT, SVG and text renderings therefore cannot disagree with the code that runs.
//!
//! What it leaves out on purpose: edges that change nothing (a duplicate ACK, an error
//! returned to the program) and a pretty layout. The SVG uses a fixed grid shaped like
//! Figure 5, with CLOSED drawn twice (top and bottom) as the RFC does; no graphviz needed.

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

/// Grid cell (column, row) of each state, shaped like Figure 5.
fn cell(s: State) -> (i64, i64) {
    match s {
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
    }
}

/// The second CLOSED box, bottom right, for edges from the lower half (as in Figure 5).
const CLOSED_BOTTOM: (i64, i64) = (2, 6);

const BOX_W: i64 = 150;
const BOX_H: i64 = 36;
const COL_W: i64 = 330;
const ROW_H: i64 = 130;
const MARGIN: i64 = 110;

fn center((c, r): (i64, i64)) -> (f64, f64) {
    (
        (MARGIN + c * COL_W + BOX_W / 2) as f64,
        (MARGIN + r * ROW_H + BOX_H / 2) as f64,
    )
}

/// Where the segment from a box's centre towards (dx, dy) leaves the box.
type Line = (f64, f64, f64, f64);

fn length((x1, y1, x2, y2): Line) -> f64 {
    ((x2 - x1).powi(2) + (y2 - y1).powi(2)).sqrt()
}

/// The middles of a box's four sides.
fn side_middles(cell: (i64, i64)) -> [(f64, f64); 4] {
    let (cx, cy) = center(cell);
    let (hw, hh) = (BOX_W as f64 / 2.0, BOX_H as f64 / 2.0);
    [(cx - hw, cy), (cx + hw, cy), (cx, cy - hh), (cx, cy + hh)]
}

/// Whether a line passes through a box other than those of its two ends (checked at
/// points along it, with a few pixels to spare).
fn crosses_a_box(line: Line, a: (i64, i64), b: (i64, i64)) -> bool {
    let (x1, y1, x2, y2) = line;
    let mut cells: Vec<(i64, i64)> = State::ALL.into_iter().map(cell).collect();
    cells.push(CLOSED_BOTTOM);
    cells.retain(|c| *c != a && *c != b);
    (1..100).any(|i| {
        let t = f64::from(i) / 100.0;
        let (x, y) = (x1 + (x2 - x1) * t, y1 + (y2 - y1) * t);
        cells.iter().any(|&c| {
            let (cx, cy) = center(c);
            (x - cx).abs() < BOX_W as f64 / 2.0 + 4.0 && (y - cy).abs() < BOX_H as f64 / 2.0 + 4.0
        })
    })
}

fn clip(c: (f64, f64), dx: f64, dy: f64) -> (f64, f64) {
    let (hw, hh) = (BOX_W as f64 / 2.0, BOX_H as f64 / 2.0);
    let tx = if dx.abs() > 1e-9 {
        hw / dx.abs()
    } else {
        f64::MAX
    };
    let ty = if dy.abs() > 1e-9 {
        hh / dy.abs()
    } else {
        f64::MAX
    };
    let t = tx.min(ty);
    (c.0 + dx * t, c.1 + dy * t)
}

/// A standalone SVG of the state diagram on a fixed grid.
pub fn svg(edges: &[Edge]) -> String {
    let width = MARGIN * 2 + COL_W * 2 + BOX_W;
    let height = MARGIN * 2 + ROW_H * 6 + BOX_H;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="monospace" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<defs><marker id="arrow" markerWidth="10" markerHeight="8" refX="9" refY="4" orient="auto"><path d="M0,0 L10,4 L0,8 z"/></marker></defs>"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="{width}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="20" font-size="13" font-weight="bold">TCP connection states (RFC 9293 Figure 5), generated from the model's transition table</text>"#
    );
    let _ = writeln!(
        s,
        r##"<text x="10" y="38" fill="#666">dashed grey: resets, aborts, timeouts and reopening from TIME_WAIT, which Figure 5 does not draw</text>"##
    );
    let groups = grouped(edges);
    for ((from, to), es) in &groups {
        let a = cell(*from);
        let b = if *to == State::Closed && cell(*from).1 >= 3 {
            CLOSED_BOTTOM
        } else {
            cell(*to)
        };
        let (ca, cb) = (center(a), center(b));
        let (dx, dy) = (cb.0 - ca.0, cb.1 - ca.1);
        let len = (dx * dx + dy * dy).sqrt().max(1.0);
        // Shift sideways so an edge and its reverse do not overlap.
        let (nx, ny) = (-dy / len * 7.0, dx / len * 7.0);
        let p1 = clip(ca, dx, dy);
        let p2 = clip(cb, -dx, -dy);
        let mut line = (p1.0 + nx, p1.1 + ny, p2.0 + nx, p2.1 + ny);
        if crosses_a_box(line, a, b) {
            // A long edge (TIME-WAIT back to SYN-RECEIVED) would run through another box:
            // join the middles of two sides instead, the shortest pair that stays clear.
            line = side_middles(a)
                .into_iter()
                .flat_map(|p| {
                    side_middles(b)
                        .into_iter()
                        .map(move |q| (p.0, p.1, q.0, q.1))
                })
                .filter(|l| !crosses_a_box(*l, a, b))
                .min_by(|l, m| length(*l).total_cmp(&length(*m)))
                .unwrap_or(line);
        }
        let (x1, y1, x2, y2) = line;
        let exceptional = es.iter().all(|e| e.is_exceptional());
        let style = if exceptional {
            r##"stroke="#999" stroke-dasharray="5,4""##
        } else {
            r#"stroke="black""#
        };
        let _ = writeln!(
            s,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" {style} marker-end="url(#arrow)"/>"#
        );
        let (mx, my) = ((x1 + x2) / 2.0 + nx * 2.0, (y1 + y2) / 2.0 + ny * 2.0);
        let fill = if exceptional { "#777" } else { "#024" };
        let mut labels: Vec<String> = es.iter().map(|e| e.label()).collect();
        labels.dedup();
        let _ = write!(
            s,
            r#"<text x="{mx:.1}" y="{:.1}" text-anchor="middle" fill="{fill}">"#,
            my - 6.0 * (labels.len() as f64 - 1.0)
        );
        for (i, l) in labels.iter().enumerate() {
            let dy = if i == 0 { 0 } else { 12 };
            let _ = write!(
                s,
                r#"<tspan x="{mx:.1}" dy="{dy}">{}</tspan>"#,
                xml_escape(l)
            );
        }
        s.push_str("</text>\n");
    }
    let mut boxes: Vec<(State, (i64, i64))> =
        State::ALL.into_iter().map(|s| (s, cell(s))).collect();
    boxes.push((State::Closed, CLOSED_BOTTOM));
    for (st, c) in boxes {
        let (x, y) = (MARGIN + c.0 * COL_W, MARGIN + c.1 * ROW_H);
        let _ = writeln!(
            s,
            r##"<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="#eef" stroke="black"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="13" font-weight="bold">{}</text>"#,
            x + BOX_W / 2,
            y + BOX_H / 2 + 5,
            st.tcp().rfc()
        );
    }
    s.push_str("</svg>\n");
    s
}
