//! The kernel's ladder: a run's [`Timeline`] drawn as the classic figure, one ladder per
//! connection. Every captured segment becomes an arrow (its flags, its sequence and
//! acknowledgment numbers relative to each direction's first, as Wireshark shows them, and
//! its payload length); every state change of either socket is written in its column on
//! the same clock, beside the segment it sent when [`Timeline::causes`] links them. A state
//! left by its timer reads `[TIME_WAIT timer] CLOSE` (or FIN_WAIT2's); a side still in
//! TIME_WAIT at the end says so (`= TIME_WAIT (timer running)`).
//!
//! Long runs fold: connections alike (the same segments' flags in the same order, the same
//! states on each side) are drawn once, the first of them, titled `and 9 more like it`;
//! connections that differ are drawn too, up to [`MAX_KINDS`] kinds. Within a connection, a
//! long run of data and ACK segments (a bulk transfer) keeps its first and last
//! [`RUN_KEEP`] segments and a row counting the rest.
//!
//! Left out on purpose: the listener (it belongs to no connection), segments' options and
//! windows (the capture's own listing shows them), and flight times (see [`super`]).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;

use super::{Arrow, Direction, Ladder, Row, Timer};
use crate::segment::{Conn, Flag, Segment};
use crate::state::TcpState;
use crate::timeline::{self, Event, Side, Source, Timeline};

/// The most kinds of connection drawn from one run; the others are counted in a note.
pub const MAX_KINDS: usize = 8;

/// A run of more data and ACK segments than this, with no state change among them, is
/// drawn as its first and last [`RUN_KEEP`] segments and a row counting the rest.
pub const RUN_MAX: usize = 6;
/// How many segments of a long run are drawn at each end.
pub const RUN_KEEP: usize = 2;

/// A TIME_WAIT shorter than this was not ended by its timer (Linux's is 60 s,
/// `TCP_TIMEWAIT_LEN`; its timer wheel fires a little early or late).
const TIME_WAIT_MIN_US: u64 = 55_000_000;

/// A change and the segment it sent share a row when they are at most this far apart.
const SAME_ROW_US: u64 = 1_000;

/// A quiet stretch at least this long gets a row of its own (`(59.999 s later)`).
const GAP_US: u64 = 1_000_000;

/// Which address plays which part in one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ends {
    pub client: SocketAddr,
    pub server: SocketAddr,
}

/// One connection's share of a run: its events and segments, in time order.
#[derive(Debug, Clone)]
struct Part {
    ends: Ends,
    timeline: Timeline,
}

/// A kind of connection: the first of its kind, and how many were alike.
#[derive(Debug, Clone)]
pub struct Kind {
    /// The first connection of this kind (1-based, in order of appearance).
    pub number: usize,
    pub ends: Ends,
    pub count: usize,
    /// What makes connections alike, as text: see [`signature`].
    pub signature: String,
    ladder: Ladder,
}

/// A run folded into kinds of connection, ready to draw.
#[derive(Debug, Clone, Default)]
pub struct Folded {
    /// How many connections the run had.
    pub connections: usize,
    /// The kinds drawn (at most [`MAX_KINDS`]), in order of first appearance.
    pub kinds: Vec<Kind>,
    /// Connections of kinds beyond [`MAX_KINDS`]: (kinds, connections), not drawn.
    pub not_drawn: (usize, usize),
}

impl Folded {
    /// Fold a run.
    pub fn of(t: &Timeline) -> Folded {
        let parts = split(t);
        let connections = parts.len();
        let mut kinds: Vec<Kind> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut not_drawn: HashMap<String, usize> = HashMap::new();
        for (i, p) in parts.iter().enumerate() {
            let sig = signature(p);
            if let Some(&k) = index.get(&sig) {
                kinds[k].count += 1;
            } else if kinds.len() < MAX_KINDS {
                index.insert(sig.clone(), kinds.len());
                kinds.push(Kind {
                    number: i + 1,
                    ends: p.ends,
                    count: 1,
                    signature: sig,
                    ladder: ladder_of(p),
                });
            } else {
                *not_drawn.entry(sig).or_default() += 1;
            }
        }
        Folded {
            connections,
            kinds,
            not_drawn: (not_drawn.len(), not_drawn.values().sum()),
        }
    }

    /// The ladders to draw, each titled when the run had more than one connection.
    pub fn ladders(&self) -> Vec<Ladder> {
        let n = self.connections;
        // "Unlike the others" only where some connections were alike (folded or left out).
        let folded = self.kinds.iter().any(|k| k.count > 1) || self.not_drawn.1 > 0;
        let mut out: Vec<Ladder> = self
            .kinds
            .iter()
            .map(|k| {
                let mut l = k.ladder.clone();
                if n > 1 {
                    let which = format!("connection {} of {n}", k.number);
                    l.title = Some(match k.count {
                        1 if folded => format!("{which}, unlike the others"),
                        1 => which,
                        c => format!("{which}, and {} more like it", c - 1),
                    });
                }
                l
            })
            .collect();
        let (kinds, conns) = self.not_drawn;
        if conns > 0 {
            if let Some(last) = out.last_mut() {
                let note = format!("; {conns} more connections of {kinds} other kinds not drawn");
                last.title = Some(last.title.clone().unwrap_or_default() + &note);
            }
        }
        out
    }
}

/// The run as a text ladder, folded.
pub fn text(t: &Timeline) -> String {
    let folded = Folded::of(t);
    if folded.kinds.is_empty() {
        return "no connections: the timeline has no state change or segment of one\n".into();
    }
    super::text(&folded.ladders())
}

/// The run as an SVG ladder, folded: one ladder per kind of connection, stacked. Its
/// `<desc>` holds the run's normal form with counts ([`Kinds::described`]), so a picture
/// says what it shows in words, and a check can compare it with a fresh run.
pub fn svg(t: &Timeline) -> String {
    let svg = super::svg(&Folded::of(t).ladders());
    let desc = format!(
        "<desc>{}</desc>\n",
        super::xml_escape(&Kinds::of(t).described())
    );
    match svg.find('\n') {
        Some(i) => format!("{}{desc}{}", &svg[..=i], &svg[i + 1..]),
        None => svg,
    }
}

/// What a picture made by [`svg`] carries in its `<desc>`: [`Kinds::described`].
pub fn desc_of(svg: &str) -> Option<String> {
    let start = svg.find("<desc>")? + "<desc>".len();
    let end = svg[start..].find("</desc>")? + start;
    Some(
        svg[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&amp;", "&"),
    )
}

/// What a run's ladder shows, without what varies from one run to the next (ports, sequence
/// numbers, times, how many ACKs and data segments timing made, how many times a SYN was
/// sent again): one line per kind of connection, with the segments that carry SYN, FIN or
/// RST and each side's states. Two runs of the same program give the same form, but for a
/// rare accident of timing among many connections (see [`Kinds::differs_from`]).
pub fn normal_form(t: &Timeline) -> String {
    let mut s = String::new();
    for (line, _) in Kinds::of(t).lines {
        let _ = writeln!(s, "{line}");
    }
    s
}

/// The kinds of a run's normal form, each with how many connections it had.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kinds {
    /// Each kind's line of the normal form and its count, in order of first appearance.
    pub lines: Vec<(String, usize)>,
    /// How many connections the run had.
    pub total: usize,
}

impl Kinds {
    /// A kind this rare in a run this large is an accident of timing (a reset in one of
    /// two hundred closes), not what the program does.
    pub const RARE_SHARE: f64 = 0.05;
    pub const RARE_AMONG: usize = 20;

    pub fn of(t: &Timeline) -> Kinds {
        let parts = split(t);
        let mut lines: Vec<(String, usize)> = Vec::new();
        for p in &parts {
            let line = control_signature(p);
            match lines.iter_mut().find(|(l, _)| *l == line) {
                Some((_, n)) => *n += 1,
                None => lines.push((line, 1)),
            }
        }
        Kinds {
            lines,
            total: parts.len(),
        }
    }

    /// The form with counts, as a picture's `<desc>` carries it: `LINE [n/total]` per kind.
    pub fn described(&self) -> String {
        let mut s = String::new();
        for (line, n) in &self.lines {
            let _ = writeln!(s, "{line} [{n}/{}]", self.total);
        }
        s
    }

    /// Read [`Kinds::described`] back.
    pub fn parse(text: &str) -> Option<Kinds> {
        let mut lines = Vec::new();
        let mut total = 0;
        for l in text.lines().filter(|l| !l.trim().is_empty()) {
            let (line, count) = l.rsplit_once(" [")?;
            let (n, t) = count.strip_suffix(']')?.split_once('/')?;
            lines.push((line.to_string(), n.parse().ok()?));
            total = t.parse().ok()?;
        }
        Some(Kinds { lines, total })
    }

    fn rare(&self, n: usize) -> bool {
        self.total >= Self::RARE_AMONG && (n as f64) < Self::RARE_SHARE * self.total as f64
    }

    /// The kinds one run has and the other lacks, leaving out each run's rare ones:
    /// empty when the two runs show the same.
    pub fn differs_from(&self, other: &Kinds) -> Vec<String> {
        let mut out = Vec::new();
        for (a, b, which) in [
            (self, other, "only in the first"),
            (other, self, "only in the second"),
        ] {
            for (line, n) in &a.lines {
                let missing = !b.lines.iter().any(|(l, _)| l == line);
                if missing && !a.rare(*n) {
                    out.push(format!("{which} ({n} of {}): {line}", a.total));
                }
            }
        }
        out
    }
}

/// Split a run into its connections, in order of first appearance (state changes and
/// segments alike); each gets its own small timeline, so linking causes stays cheap.
fn split(t: &Timeline) -> Vec<Part> {
    // A connection: its two addresses, and which use of them (a port is used again).
    type Key = (Conn, usize);
    let mut events: HashMap<Key, Vec<Event>> = HashMap::new();
    let mut segments: HashMap<Key, Vec<Segment>> = HashMap::new();
    let mut first: HashMap<Key, u64> = HashMap::new();
    let mut uses_of: HashMap<Conn, Use> = HashMap::new();
    let mut attempt = 0;
    let bound = bind_early_events(t);
    // Events and segments in time order (a change before a segment at equal times).
    let mut items: Vec<(u64, usize, bool)> = bound
        .iter()
        .enumerate()
        .map(|(i, e)| (e.t_us, i, false))
        .chain(
            t.segments
                .iter()
                .enumerate()
                .map(|(i, s)| (s.t_us, i, true)),
        )
        .collect();
    items.sort_by_key(|&(t, i, is_seg)| (t, is_seg, i));
    for (at, i, is_seg) in items {
        if is_seg {
            let s = &t.segments[i];
            let c = s.conn();
            let u = uses_of.entry(c).or_default();
            u.see_segment(s);
            let key = (c, u.number);
            first.entry(key).or_insert(at);
            segments.entry(key).or_default().push(s.clone());
            continue;
        }
        let e = &bound[i];
        if e.remote.port() == 0 {
            continue; // a listener: no connection
        }
        let c = Conn::new(e.local, e.remote);
        let key = if e.local.port() == 0 {
            // Never bound (connect() failed, or no capture to name its port): each attempt
            // is a connection of its own.
            if e.from == TcpState::Close {
                attempt += 1;
            }
            (c, attempt)
        } else {
            (c, uses_of.entry(c).or_default().see_event(e))
        };
        first.entry(key).or_insert(at);
        events.entry(key).or_default().push(e.clone());
    }
    let mut order: Vec<Key> = first.keys().copied().collect();
    order.sort_by_key(|k| (first[k], *k));
    // How many connections each address is part of: a server's address is in all of them.
    let mut uses: HashMap<SocketAddr, usize> = HashMap::new();
    for (c, _) in &order {
        *uses.entry(c.a).or_default() += 1;
        *uses.entry(c.b).or_default() += 1;
    }
    order
        .into_iter()
        .map(|k| {
            let tl = Timeline::from_events(events.remove(&k).unwrap_or_default())
                .with_segments(segments.remove(&k).unwrap_or_default());
            let ends = ends_of(k.0, &tl, &uses);
            Part { ends, timeline: tl }
        })
        .collect()
}

/// The current use of one pair of addresses. A pair is used again when a client connects
/// from a port it had before: a new connection, drawn apart, once the old one is over (its
/// peer closed, or both sides sent FIN, or a RST ended it). A SYN that meets a peer still
/// in CLOSE_WAIT (lesson 10) is part of the old story, and stays on its ladder.
#[derive(Debug, Default)]
struct Use {
    number: usize,
    /// Whether the current use has any event or segment yet.
    started: bool,
    /// Each address's last state in this use.
    last: Vec<(SocketAddr, TcpState)>,
    /// FINs seen from each address, and whether a RST was.
    fins: Vec<SocketAddr>,
    reset: bool,
    /// The sequence number of this use's latest SYN (a SYN sent again repeats it).
    syn: Option<u32>,
    /// The earlier uses' last states, by number: a socket of an earlier use may still
    /// change (an old TIME_WAIT ends after the port was used again).
    earlier: Vec<Vec<(SocketAddr, TcpState)>>,
}

impl Use {
    fn over_for(&self, client: SocketAddr) -> bool {
        let peer_done = self
            .last
            .iter()
            .any(|&(a, s)| a != client && matches!(s, TcpState::Close | TcpState::TimeWait));
        peer_done || self.reset || self.fins.len() >= 2
    }

    fn again(&mut self) {
        let mut earlier = std::mem::take(&mut self.earlier);
        earlier.push(std::mem::take(&mut self.last));
        *self = Use {
            number: self.number + 1,
            earlier,
            ..Use::default()
        };
    }

    /// Which use a change belongs to: the current one, unless the change continues a
    /// socket of an earlier use that the current one does not have in that state.
    fn see_event(&mut self, e: &Event) -> usize {
        let connects = e.from == TcpState::Close && e.to == TcpState::SynSent;
        if self.started && connects && self.over_for(e.local) {
            self.again();
        }
        let continues = |last: &[(SocketAddr, TcpState)]| {
            last.iter().any(|&(a, st)| a == e.local && st == e.from)
        };
        if !connects && !continues(&self.last) {
            let old = self.earlier.iter().rposition(|last| continues(last));
            if let Some(k) = old {
                let last = &mut self.earlier[k];
                last.retain(|(a, _)| *a != e.local);
                last.push((e.local, e.to));
                return k;
            }
        }
        self.started = true;
        self.last.retain(|(a, _)| *a != e.local);
        self.last.push((e.local, e.to));
        self.number
    }

    fn see_segment(&mut self, s: &Segment) {
        if s.has(Flag::Syn) && !s.has(Flag::Ack) {
            let new_syn = self.syn.is_some_and(|q| q != s.raw_seq);
            if self.started && new_syn && self.over_for(s.src) {
                self.again();
            }
            self.syn = Some(s.raw_seq);
        }
        self.started = true;
        if s.has(Flag::Fin) && !self.fins.contains(&s.src) {
            self.fins.push(s.src);
        }
        self.reset |= s.has(Flag::Rst);
    }
}

/// How far apart a `CLOSE -> SYN_SENT` with no port and its SYN may be, in microseconds.
const BIND_WINDOW_US: u64 = 2_000;

/// The events, with the port filled in where the kernel had not chosen it yet. connect()
/// moves a socket to SYN_SENT before it picks the local port, so the tracepoint reports
/// `127.0.0.1:0 -> server`; the first SYN from that address to the same server just after
/// names the port: it goes to the latest such change before it (an earlier one whose
/// connect() failed sent none), unless the SYN's socket was reported with its port. A
/// socket whose SYN was not seen keeps port 0.
fn bind_early_events(t: &Timeline) -> Vec<Event> {
    let mut out: Vec<Event> = t.events.clone();
    let unbound: Vec<usize> = (0..out.len())
        .filter(|&i| {
            let e = &out[i];
            e.local.port() == 0 && e.remote.port() != 0 && e.from == TcpState::Close
        })
        .collect();
    if unbound.is_empty() {
        return out;
    }
    // A SYN sent again carries the same sequence number: only the first names a socket.
    let mut seen: HashSet<(SocketAddr, u32)> = HashSet::new();
    let mut claimed: HashSet<usize> = HashSet::new();
    // When each socket reported with its port entered SYN_SENT.
    let mut connects: HashMap<(SocketAddr, SocketAddr), Vec<u64>> = HashMap::new();
    for e in t.events.iter().filter(|e| e.to == TcpState::SynSent) {
        connects
            .entry((e.local, e.remote))
            .or_default()
            .push(e.t_us);
    }
    for s in &t.segments {
        if !s.has(Flag::Syn) || s.has(Flag::Ack) || !seen.insert((s.src, s.raw_seq)) {
            continue;
        }
        // A socket whose connect() was reported with its port needs no naming.
        let named = connects
            .get(&(s.src, s.dst))
            .is_some_and(|ts| ts.iter().any(|&at| at.abs_diff(s.t_us) <= BIND_WINDOW_US));
        if named {
            continue;
        }
        let pick = unbound
            .iter()
            .copied()
            .filter(|i| !claimed.contains(i))
            .filter(|&i| {
                let e = &out[i];
                e.remote == s.dst
                    && e.local.ip() == s.src.ip()
                    && e.t_us <= s.t_us + BIND_WINDOW_US
                    && s.t_us <= e.t_us + BIND_WINDOW_US
            })
            .max_by_key(|&i| out[i].t_us);
        if let Some(i) = pick {
            claimed.insert(i);
            out[i].local = s.src;
        }
    }
    out
}

/// Who is the client: the sender of the SYN, else the socket whose states say it connected,
/// else the address fewer connections share (a server's is in all of them), else the higher
/// port.
fn ends_of(c: Conn, t: &Timeline, uses: &HashMap<SocketAddr, usize>) -> Ends {
    let as_client = |client: SocketAddr| Ends {
        client,
        server: if client == c.a { c.b } else { c.a },
    };
    if let Some(s) = t
        .segments
        .iter()
        .find(|s| s.has(Flag::Syn) && !s.has(Flag::Ack))
    {
        return as_client(s.src);
    }
    for e in &t.events {
        if e.from == TcpState::SynSent || e.to == TcpState::SynSent {
            return as_client(e.local);
        }
        if matches!(e.from, TcpState::Listen | TcpState::SynRecv) {
            return as_client(e.remote);
        }
    }
    let (ua, ub) = (uses.get(&c.a).copied(), uses.get(&c.b).copied());
    if ua != ub {
        return as_client(if ua < ub { c.a } else { c.b });
    }
    as_client(if c.a.port() > c.b.port() { c.a } else { c.b })
}

fn side_of(ends: &Ends, local: SocketAddr) -> Side {
    if local == ends.client {
        Side::Client
    } else {
        Side::Server
    }
}

/// A segment's arrow label: `FIN+ACK seq=1 ack=1`, `PSH+ACK seq=1 ack=1 len=5`, and
/// `win=0` when the sender advertises a zero window (its receive buffer is full: the other
/// side may not send, lesson 16); other windows are left out, as they rarely matter here.
pub fn segment_label(s: &Segment) -> String {
    let mut l = s.flags.names().join("+");
    let _ = write!(l, " seq={}", s.seq);
    if s.has(Flag::Ack) {
        let _ = write!(l, " ack={}", s.ack);
    }
    if s.len > 0 {
        let _ = write!(l, " len={}", s.len);
    }
    if s.win == 0 && !s.has(Flag::Rst) {
        l.push_str(" win=0");
    }
    l
}

/// The states that end by a timer in Linux: TIME_WAIT (60 s) and an orphaned FIN_WAIT2
/// (tcp_fin_timeout, or the socket's TCP_LINGER2).
fn timed(s: TcpState) -> bool {
    matches!(s, TcpState::TimeWait | TcpState::FinWait2)
}

/// A state change as written in its column: the new state, in parentheses when it was
/// inferred rather than seen, after `[TIME_WAIT timer]` when a timer ended the state.
fn event_label(e: &Event, by_timer: bool) -> String {
    let to = match e.source {
        Source::Inferred => format!("({})", e.to),
        _ => e.to.to_string(),
    };
    if by_timer {
        format!("[{} timer] {to}", e.from)
    } else {
        to
    }
}

fn ladder_of(p: &Part) -> Ladder {
    let t = &p.timeline;
    let ends = p.ends;
    let causes = t.causes();
    // A change that sent a segment is written on that segment's row.
    let mut sent_by: HashMap<usize, usize> = HashMap::new();
    let mut received: Vec<bool> = vec![false; t.events.len()];
    for c in &causes {
        match c.direction {
            // Only when the segment left at once: a FIN queued behind unsent data leaves
            // later, and the change is written at its own time.
            timeline::Direction::Sent
                if t.segments[c.segment].t_us.abs_diff(t.events[c.event].t_us) <= SAME_ROW_US =>
            {
                sent_by.entry(c.segment).or_insert(c.event);
            }
            timeline::Direction::Sent => {}
            timeline::Direction::Received => received[c.event] = true,
        }
    }
    let written_later: HashSet<usize> = sent_by.values().copied().collect();
    // Events and segments merged in time order. At equal times a change comes before a
    // segment, except a change caused by a received segment: it comes after it, also when
    // the clocks put it a hair earlier.
    // Inferred steps that a received segment brings about are drawn after it too.
    let after: HashMap<usize, u64> = causes
        .iter()
        .filter(|c| c.direction == timeline::Direction::Received)
        .map(|c| (c.event, t.segments[c.segment].t_us))
        .chain(
            t.inferred_receipts()
                .into_iter()
                .map(|(e, s)| (e, t.segments[s].t_us)),
        )
        .collect();
    let mut items: Vec<(u64, u8, usize, bool)> = t
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| match after.get(&i) {
            Some(&ts) => (e.t_us.max(ts), 2, i, false),
            None => (e.t_us, 0, i, false),
        })
        .chain(
            t.segments
                .iter()
                .enumerate()
                .map(|(i, s)| (s.t_us, 1, i, true)),
        )
        .collect();
    items.sort_by_key(|&(t, rank, i, _)| (t, rank, i));
    let (notes, skip) = long_runs(t, &items);
    let mut rows: Vec<Row> = Vec::new();
    let first_state = |side: Side| {
        t.events
            .iter()
            .find(|e| side_of(&ends, e.local) == side)
            .map(|e| e.from.to_string())
            .unwrap_or_default()
    };
    let (c0, s0) = (first_state(Side::Client), first_state(Side::Server));
    if !c0.is_empty() || !s0.is_empty() {
        rows.push(Row {
            t_us: items.first().map_or(0, |i| i.0),
            client: c0,
            server: s0,
            ..Row::default()
        });
    }
    let by_timer = |i: usize| {
        let e = &t.events[i];
        let entered_at = t.events[..i]
            .iter()
            .rev()
            .find(|p| p.local == e.local && p.to == e.from)
            .map_or(0, |p| p.t_us);
        // Linux's TIME_WAIT lasts 60 s: one that ends sooner was ended by something else
        // (its port used again by connect(), a RST).
        let full = e.from != TcpState::TimeWait || e.t_us - entered_at >= TIME_WAIT_MIN_US;
        timed(e.from) && e.to == TcpState::Close && !received[i] && full && {
            // Not the timer when the socket itself sent a RST meanwhile (data reached a
            // socket that was closed), unless a new socket took its address and sent it.
            let entered = t.events[..i]
                .iter()
                .rev()
                .find(|p| p.local == e.local && p.to == e.from)
                .map_or(0, |p| p.t_us);
            let during = |at: u64| entered <= at && at <= e.t_us;
            let reset = t
                .segments
                .iter()
                .any(|s| s.has(Flag::Rst) && s.src == e.local && during(s.t_us));
            let successor = t
                .events
                .iter()
                .any(|p| p.local == e.local && p.from == TcpState::Close && during(p.t_us));
            !reset || successor
        }
    };
    let label = |i: usize| event_label(&t.events[i], by_timer(i));
    // The row each change is written on, for the timers' bars.
    let mut row_of: HashMap<usize, usize> = HashMap::new();
    for (k, &(at, _, i, is_seg)) in items.iter().enumerate() {
        if let Some(&(n, bytes)) = notes.get(&k) {
            rows.push(Row {
                t_us: at,
                note: Some(format!("({n} more segments, {bytes} bytes)")),
                ..Row::default()
            });
        }
        if skip.contains(&k) {
            continue;
        }
        if let Some(last) = rows.last() {
            if at >= last.t_us + GAP_US {
                rows.push(Row {
                    t_us: at,
                    gap: Some(at - last.t_us),
                    ..Row::default()
                });
            }
        }
        if is_seg {
            let s = &t.segments[i];
            let mut r = Row {
                t_us: at,
                arrow: Some(Arrow {
                    direction: if s.src == ends.client {
                        Direction::ToServer
                    } else {
                        Direction::ToClient
                    },
                    label: segment_label(s),
                    dropped: false,
                    late: false,
                }),
                ..Row::default()
            };
            if let Some(&ev) = sent_by.get(&i) {
                *r.col(side_of(&ends, t.events[ev].local)) = label(ev);
                row_of.insert(ev, rows.len());
            }
            rows.push(r);
        } else if !written_later.contains(&i) {
            let e = &t.events[i];
            let side = side_of(&ends, e.local);
            // Two changes at one instant on opposite sides share a row.
            let shared = rows.last_mut().filter(|r| {
                r.t_us == at && r.arrow.is_none() && r.gap.is_none() && r.text(side).is_empty()
            });
            match shared {
                Some(r) => {
                    *r.col(side) = label(i);
                    row_of.insert(i, rows.len() - 1);
                }
                None => {
                    let mut r = Row {
                        t_us: at,
                        ..Row::default()
                    };
                    *r.col(side) = label(i);
                    row_of.insert(i, rows.len());
                    rows.push(r);
                }
            }
        }
    }
    // Each side's last state: that of its socket started last (an older socket of the
    // same address may change later, as an old TIME_WAIT ends).
    let end = |side: Side| {
        let mine: Vec<&Event> = t
            .events
            .iter()
            .filter(|e| side_of(&ends, e.local) == side)
            .collect();
        match chains(&mine).last().and_then(|c| c.last()) {
            // Every TIME_WAIT has its timer; a FIN_WAIT2 only when orphaned, which a
            // timeline does not say.
            Some(TcpState::TimeWait) => format!("= {} (timer running)", TcpState::TimeWait),
            Some(st) => format!("= {st}"),
            None => String::new(),
        }
    };
    // A bar beside each TIME_WAIT, and each FIN_WAIT2 its timer ended, from the row it
    // began to the row it ended (or to the end of the run).
    let mut timers = Vec::new();
    for (i, e) in t.events.iter().enumerate() {
        if !timed(e.to) {
            continue;
        }
        let ended = t.events[i + 1..]
            .iter()
            .position(|n| n.local == e.local && n.from == e.to)
            .map(|k| i + 1 + k);
        let shown = e.to == TcpState::TimeWait || ended.is_some_and(&by_timer);
        if let (true, Some(&from)) = (shown, row_of.get(&i)) {
            timers.push(Timer {
                side: side_of(&ends, e.local),
                from,
                to: ended.and_then(|k| row_of.get(&k).copied()),
            });
        }
    }
    Ladder {
        timers,
        title: None,
        client: format!("client {}", ends.client),
        server: format!("server {}", ends.server),
        rows,
        end_client: end(Side::Client),
        end_server: end(Side::Server),
    }
}

/// A segment that carries no SYN, FIN or RST: data, or an ACK.
fn plain(s: &Segment) -> bool {
    !(s.has(Flag::Syn) || s.has(Flag::Fin) || s.has(Flag::Rst))
}

/// The long runs of data and ACK segments among `items` (no state change among them): for
/// each, the item where its counting row goes, with how many segments and payload bytes it
/// stands for; and every item left out.
#[allow(clippy::type_complexity)]
fn long_runs(
    t: &Timeline,
    items: &[(u64, u8, usize, bool)],
) -> (HashMap<usize, (usize, u64)>, HashSet<usize>) {
    let mut notes = HashMap::new();
    let mut skip = HashSet::new();
    let mut run: Vec<usize> = Vec::new();
    let mut close = |run: &mut Vec<usize>| {
        if run.len() > RUN_MAX {
            let hidden = &run[RUN_KEEP..run.len() - RUN_KEEP];
            let bytes = hidden
                .iter()
                .map(|&k| u64::from(t.segments[items[k].2].len))
                .sum();
            notes.insert(hidden[0], (hidden.len(), bytes));
            skip.extend(hidden.iter().copied());
        }
        run.clear();
    };
    for (k, &(_, _, i, is_seg)) in items.iter().enumerate() {
        if is_seg && plain(&t.segments[i]) {
            run.push(k);
        } else {
            close(&mut run);
        }
    }
    close(&mut run);
    (notes, skip)
}

/// What makes two connections alike: each segment's direction and flags, in order (a run of
/// data and ACK segments counting as one, `~`, with the ways its data went), and each side's states.
fn signature(p: &Part) -> String {
    sig_with(p, |_| true, false)
}

/// The same, keeping only segments that carry SYN, FIN or RST.
fn control_signature(p: &Part) -> String {
    // How many times a SYN was sent again depends on when the run ended: a repeat counts
    // once. Whether a closing socket is seen in FIN_WAIT2 on its way to TIME_WAIT or CLOSE
    // depends on whether the peer's ACK came alone, with its FIN, or before a reset: a
    // FIN_WAIT2 that another state follows is left out.
    let sig = sig_with(
        p,
        |s| s.has(Flag::Syn) || s.has(Flag::Fin) || s.has(Flag::Rst),
        true,
    );
    let (wire, rest) = sig.split_once(" | ").unwrap_or((&sig, ""));
    let mut words: Vec<&str> = wire.split(' ').collect();
    words.dedup();
    format!("{} | {rest}", words.join(" "))
}

/// Each socket's states, in order: the socket's first `from`, then every `to`. One address
/// can be two sockets in turn (a port used again while the old socket lingers, lesson 10):
/// a change from CLOSE starts a socket, and every other change goes to the socket it
/// continues, so that how the two interleave in time does not matter.
fn chains(events: &[&Event]) -> Vec<Vec<TcpState>> {
    let mut out: Vec<Vec<TcpState>> = Vec::new();
    for e in events {
        let open = out
            .iter_mut()
            .rev()
            .find(|c| c.last() == Some(&e.from) && e.from != TcpState::Close);
        match open {
            Some(c) => c.push(e.to),
            None => out.push(vec![e.from, e.to]),
        }
    }
    out
}

fn sig_with(p: &Part, keep: impl Fn(&Segment) -> bool, normal: bool) -> String {
    let t = &p.timeline;
    let mut wire: Vec<String> = Vec::new();
    for s in t.segments.iter().filter(|s| keep(s)) {
        // How many data and ACK segments timing made varies: a run of them is one token.
        // Which ways data went in the run is kept: `~>` (to the server), `~<`, `~><`.
        if plain(s) {
            let way = if s.len == 0 {
                ""
            } else if s.src == p.ends.client {
                ">"
            } else {
                "<"
            };
            match wire.last_mut() {
                Some(w) if w.starts_with('~') => {
                    if !w.contains(way) {
                        w.push_str(way);
                    }
                }
                _ => wire.push(format!("~{way}")),
            }
            continue;
        }
        let way = if s.src == p.ends.client { '>' } else { '<' };
        wire.push(format!("{way}{}", s.flags.names().join("+")));
    }
    let states = |side: Side| {
        let mine: Vec<&Event> = t
            .events
            .iter()
            .filter(|e| side_of(&p.ends, e.local) == side)
            .collect();
        let mut socks: Vec<String> = Vec::new();
        for mut c in chains(&mine) {
            if normal {
                let n = c.len();
                c = c
                    .iter()
                    .enumerate()
                    .filter(|&(i, s)| !(*s == TcpState::FinWait2 && i + 1 < n))
                    .map(|(_, s)| *s)
                    .collect();
                c.dedup();
            }
            let names: Vec<String> = c.iter().map(|s| s.to_string()).collect();
            socks.push(names.join(" "));
        }
        socks.join(" ; ")
    };
    format!(
        "wire: {} | client: {} | server: {}",
        wire.join(" "),
        states(Side::Client),
        states(Side::Server)
    )
}
