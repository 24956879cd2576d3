//! Ladder diagrams of a simulation, in the spirit of the classic TCP close figure: client
//! states on the left, server states on the right, segments as arrows in the middle, time
//! going down. One list of rows feeds both renderers, the text one and the SVG one, so they
//! always tell the same story.
//!
//! What it leaves out on purpose: drawing a segment's flight time. An arrow is drawn where
//! the segment was sent; its arrival shows as the receiver's state change on a later row.
//! Only late arrivals (delayed segments, duplicate copies) get an arrow of their own.

use std::fmt::Write as _;

use super::machine::{Call, State};
use super::sim::{Fate, LogEntry, SimResult, addresses};
use crate::timeline::Side;

/// Which way an arrow points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ToServer,
    ToClient,
}

/// An arrow in the middle column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrow {
    pub direction: Direction,
    pub label: String,
    /// Lost in the network: drawn ending in `X`.
    pub dropped: bool,
    /// A delayed segment or a duplicate's copy arriving: drawn dotted.
    pub late: bool,
}

/// One row of a ladder.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Row {
    pub t_us: u64,
    pub client: String,
    pub server: String,
    pub arrow: Option<Arrow>,
    /// A row marking a long quiet gap (`... 59.979 s later ...`).
    pub gap: Option<u64>,
}

impl Row {
    fn col(&mut self, side: Side) -> &mut String {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }
}

fn call_text(c: Call) -> &'static str {
    c.label()
}

/// Build the rows of a ladder from a simulation's log.
pub fn rows(result: &SimResult) -> Vec<Row> {
    let mut rows: Vec<Row> = vec![Row {
        t_us: 0,
        client: State::Closed.to_string(),
        server: State::Closed.to_string(),
        ..Row::default()
    }];
    // A call or timer waiting to be written beside the state change it causes.
    let mut pending: [Option<(u64, String)>; 2] = [None, None];
    let idx = |s: Side| match s {
        Side::Client => 0,
        Side::Server => 1,
    };
    // Write pending notes alone: those from before `t` (or all, with `None`).
    let flush = |rows: &mut Vec<Row>, pending: &mut [Option<(u64, String)>; 2], t: Option<u64>| {
        for side in [Side::Client, Side::Server] {
            let due = pending[idx(side)]
                .as_ref()
                .is_some_and(|(pt, _)| t.is_none_or(|t| *pt < t));
            if due {
                if let Some((pt, p)) = pending[idx(side)].take() {
                    let mut r = Row {
                        t_us: pt,
                        ..Row::default()
                    };
                    *r.col(side) = p;
                    rows.push(r);
                }
            }
        }
    };
    for e in &result.log {
        let t = e.t_us();
        // Notes from an earlier instant that caused nothing: write them alone.
        flush(&mut rows, &mut pending, Some(t));
        if let Some(last) = rows.last() {
            if t >= last.t_us + 1_000_000 {
                rows.push(Row {
                    t_us: t,
                    gap: Some(t - last.t_us),
                    ..Row::default()
                });
            }
        }
        match e {
            LogEntry::Call { side, call, .. } => {
                flush(&mut rows, &mut pending, None);
                pending[idx(*side)] = Some((t, call_text(*call).to_string()));
            }
            LogEntry::Timer { side, timer, .. } => {
                flush(&mut rows, &mut pending, None);
                pending[idx(*side)] = Some((t, format!("[{}]", timer.label())));
            }
            LogEntry::Transition { side, to, .. } => {
                let text = match pending[idx(*side)].take() {
                    Some((_, p)) => format!("{p} {to}"),
                    None => to.to_string(),
                };
                let mut r = Row {
                    t_us: t,
                    ..Row::default()
                };
                *r.col(*side) = text;
                rows.push(r);
            }
            LogEntry::Sent { side, index, .. } => {
                let rec = &result.segments[*index];
                let arrow = Arrow {
                    direction: match side {
                        Side::Client => Direction::ToServer,
                        Side::Server => Direction::ToClient,
                    },
                    label: match rec.fate {
                        Fate::Delivered => rec.segment.to_string(),
                        Fate::Dropped => format!("{} (lost)", rec.segment),
                        Fate::Delayed => format!("{} (delayed)", rec.segment),
                        Fate::Duplicated => format!("{} (+copy)", rec.segment),
                    },
                    dropped: rec.fate == Fate::Dropped,
                    late: false,
                };
                if let Some((_, p)) = pending[idx(*side)].take() {
                    let mut r = Row {
                        t_us: t,
                        ..Row::default()
                    };
                    *r.col(*side) = p;
                    rows.push(r);
                }
                // Put the arrow beside the sender's state change if that row is free.
                let merge = rows.last().is_some_and(|r| {
                    r.t_us == t
                        && r.arrow.is_none()
                        && r.gap.is_none()
                        && match side {
                            Side::Client => !r.client.is_empty() && r.server.is_empty(),
                            Side::Server => !r.server.is_empty() && r.client.is_empty(),
                        }
                });
                if merge {
                    if let Some(r) = rows.last_mut() {
                        r.arrow = Some(arrow);
                    }
                } else {
                    rows.push(Row {
                        t_us: t,
                        arrow: Some(arrow),
                        ..Row::default()
                    });
                }
            }
            LogEntry::Arrived {
                side,
                segment,
                late: true,
                ..
            } => {
                flush(&mut rows, &mut pending, None);
                rows.push(Row {
                    t_us: t,
                    arrow: Some(Arrow {
                        direction: match side {
                            Side::Client => Direction::ToClient,
                            Side::Server => Direction::ToServer,
                        },
                        label: format!("{segment} (late)"),
                        dropped: false,
                        late: true,
                    }),
                    ..Row::default()
                });
            }
            LogEntry::Arrived { late: false, .. } | LogEntry::Delivered { .. } => {}
            LogEntry::Error { side, error, .. } => {
                flush(&mut rows, &mut pending, None);
                let mut r = Row {
                    t_us: t,
                    ..Row::default()
                };
                *r.col(*side) = format!("error: {error}");
                rows.push(r);
            }
        }
    }
    flush(&mut rows, &mut pending, None);
    rows
}

const TIME_W: usize = 10;
const SIDE_W: usize = 24;
const MID_W: usize = 40;

fn arrow_text(a: &Arrow) -> String {
    let inner = format!(" {} ", a.label);
    let dash = if a.late { '.' } else { '-' };
    let room = MID_W.saturating_sub(inner.chars().count() + 1).max(4);
    let left = room / 2;
    let right = room - left;
    let line = |n: usize| std::iter::repeat_n(dash, n).collect::<String>();
    match (a.direction, a.dropped) {
        (Direction::ToServer, false) => format!("{}{inner}{}>", line(left), line(right)),
        (Direction::ToServer, true) => format!("{}{inner}{}X", line(left), line(right)),
        (Direction::ToClient, false) => format!("<{}{inner}{}", line(left), line(right)),
        (Direction::ToClient, true) => format!("X{}{inner}{}", line(left), line(right)),
    }
}

fn secs(t_us: u64) -> String {
    format!("{}.{:03}", t_us / 1_000_000, (t_us % 1_000_000) / 1_000)
}

fn ms(t_us: u64) -> String {
    format!("{}.{:03}", t_us / 1_000, t_us % 1_000)
}

/// The text ladder: one line per row, a header naming both ends, the final states at the end.
pub fn text(result: &SimResult) -> String {
    let mut s = String::new();
    let (c, _) = addresses(Side::Client);
    let (sv, _) = addresses(Side::Server);
    let (head_c, head_s, blank) = (format!("client {c}"), format!("server {sv}"), "");
    let _ = writeln!(
        s,
        "{:>TIME_W$}  {head_c:<SIDE_W$} {blank:^MID_W$} {head_s}",
        "t (ms)"
    );
    for r in rows(result) {
        if let Some(gap) = r.gap {
            let later = format!("({} s later)", secs(gap));
            let _ = writeln!(s, "{:>TIME_W$}  {:<SIDE_W$} {later:^MID_W$} :", ":", ":");
            continue;
        }
        let mid = r.arrow.as_ref().map(arrow_text).unwrap_or_default();
        let line = format!(
            "{:>TIME_W$}  {:<SIDE_W$} {:^MID_W$} {}",
            ms(r.t_us),
            r.client,
            mid,
            r.server
        );
        let _ = writeln!(s, "{}", line.trim_end());
    }
    let (end_c, end_s) = (
        format!("= {}", result.client.state),
        format!("= {}", result.server.state),
    );
    let _ = writeln!(
        s,
        "{:>TIME_W$}  {end_c:<SIDE_W$} {blank:^MID_W$} {end_s}",
        "end"
    );
    s
}

/// Escape text for XML.
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Sizes shared by the SVG renderings (ladders and the state diagram), chosen for the book:
/// its text column is [`BOOK_WIDTH`] px wide, and a picture wider than that is scaled down.
pub mod page {
    /// The width of the book's text column (mdBook's default `--content-max-width`).
    pub const BOOK_WIDTH: f64 = 750.0;
    /// The smallest text a reader should meet once a picture is scaled to the book's width.
    pub const MIN_TEXT: f64 = 12.0;
    /// The font size the pictures use.
    pub const FONT: f64 = 13.0;
    /// A generous width of one monospace character at `size` px (fonts advance 0.6 em).
    pub fn char_w(size: f64) -> f64 {
        size * 0.62
    }
    /// The width of `text` in monospace at `size` px.
    pub fn text_w(text: &str, size: f64) -> f64 {
        text.chars().count() as f64 * char_w(size)
    }
    /// The widest picture whose `size` px text stays at least [`MIN_TEXT`] at book width.
    pub fn max_width(size: f64) -> f64 {
        BOOK_WIDTH * size / MIN_TEXT
    }
}

/// The same ladder as a standalone SVG document, laid out from its own texts: each column is
/// as wide as its longest text, so that times, states and segment labels never run together,
/// and the whole fits the book's text column with text at [`page::MIN_TEXT`] px or more.
pub fn svg(result: &SimResult) -> String {
    use page::{FONT, text_w};
    let rows = rows(result);
    let (ca, _) = addresses(Side::Client);
    let (sa, _) = addresses(Side::Server);
    let head_c = format!("client {ca}");
    let head_s = format!("server {sa}");
    let end_c = format!("= {}", result.client.state);
    let end_s = format!("= {}", result.server.state);
    let widest = |texts: &mut dyn Iterator<Item = String>| {
        texts.map(|t| text_w(&t, FONT)).fold(0.0_f64, f64::max)
    };
    let time_w = widest(
        &mut rows
            .iter()
            .filter(|r| r.gap.is_none())
            .map(|r| ms(r.t_us))
            .chain(["t (ms)".to_string()]),
    );
    let client_w = widest(&mut rows.iter().map(|r| r.client.clone()).chain([end_c.clone()]));
    let server_w = widest(&mut rows.iter().map(|r| r.server.clone()).chain([end_s.clone()]));
    let mid_w = widest(&mut rows.iter().map(|r| match (&r.arrow, r.gap) {
        (_, Some(gap)) => format!("({} s later)", secs(gap)),
        (Some(a), None) => a.label.clone(),
        (None, None) => String::new(),
    }));
    let (gap, pad) = (16.0, 8.0);
    let left = 8.0;
    // The client's column ends at its line, the server's starts at its line; each header is
    // centred on its line and must fit too.
    let cx = (left + time_w + gap + client_w + pad).max(left + text_w(&head_c, FONT) / 2.0);
    // A lost segment's label sits between its sender and its X (85 % of the way).
    let lost_w = widest(&mut rows.iter().filter_map(|r| {
        r.arrow
            .as_ref()
            .filter(|a| a.dropped)
            .map(|a| a.label.clone())
    }));
    let sx = cx + (mid_w + 2.0 * gap).max(200.0).max((lost_w + 30.0) / 0.85);
    let width = (sx + pad + server_w + left)
        .max(sx + text_w(&head_s, FONT) / 2.0 + left)
        .ceil();
    let row_h: f64 = 28.0;
    let top: f64 = 64.0;
    let ys: Vec<f64> = (0..rows.len()).map(|i| top + row_h * i as f64).collect();
    let height = (top + row_h * (rows.len() as f64 + 1.0)).ceil();
    let bottom = height - row_h / 2.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="monospace" font-size="{FONT}">"#
    );
    let _ = writeln!(
        s,
        r#"<defs><marker id="head" markerWidth="10" markerHeight="8" refX="9" refY="4" orient="auto"><path d="M0,0 L10,4 L0,8 z"/></marker></defs>"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="{width}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{cx:.1}" y="24" text-anchor="middle" font-weight="bold">{head_c}</text>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{sx:.1}" y="24" text-anchor="middle" font-weight="bold">{head_s}</text>"#
    );
    let _ = writeln!(s, r##"<text x="{left}" y="24" fill="#555">t (ms)</text>"##);
    let line_end = bottom - row_h;
    for x in [cx, sx] {
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="36" x2="{x:.1}" y2="{line_end:.1}" stroke="#888"/>"##
        );
    }
    let mid = (cx + sx) / 2.0;
    for (i, r) in rows.iter().enumerate() {
        let y = ys[i];
        if let Some(gap) = r.gap {
            let _ = writeln!(
                s,
                r##"<text x="{mid:.1}" y="{y}" text-anchor="middle" fill="#555">({} s later)</text>"##,
                secs(gap)
            );
            continue;
        }
        let _ = writeln!(
            s,
            r##"<text x="{left}" y="{y}" fill="#555">{}</text>"##,
            ms(r.t_us)
        );
        if !r.client.is_empty() {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{y}" text-anchor="end">{}</text>"#,
                cx - pad,
                xml_escape(&r.client)
            );
        }
        if !r.server.is_empty() {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{y}">{}</text>"#,
                sx + pad,
                xml_escape(&r.server)
            );
        }
        if let Some(a) = &r.arrow {
            let (x1, x2) = match a.direction {
                Direction::ToServer => (cx, sx),
                Direction::ToClient => (sx, cx),
            };
            let next = ys.get(i + 1).copied().unwrap_or(y + row_h);
            let (y1, y2) = (y - 4.0, next - 8.0);
            let along = |t: f64| (x1 + (x2 - x1) * t, y1 + (y2 - y1) * t);
            // A lost segment's line stops short of the receiver, at its X.
            let (xe, ye) = if a.dropped { along(0.85) } else { (x2, y2) };
            let dash = if a.late {
                r#" stroke-dasharray="4,3""#
            } else {
                ""
            };
            let head = if a.dropped {
                ""
            } else {
                r#" marker-end="url(#head)""#
            };
            let _ = writeln!(
                s,
                r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{xe:.1}" y2="{ye:.1}" stroke="black"{dash}{head}/>"#
            );
            // The label sits on its own arrow, on a white ground that breaks the line: it
            // cannot be taken for the label of the arrow above or below. A lost segment's
            // label keeps clear of the X.
            let w = text_w(&a.label, FONT);
            let (lx, ly) = if a.dropped {
                let dir = (x2 - x1).signum();
                let lx = xe - dir * (w / 2.0 + 14.0);
                let t = (lx - x1) / (x2 - x1);
                (lx, y1 + (y2 - y1) * t)
            } else {
                along(0.5)
            };
            let _ = writeln!(
                s,
                r#"<rect class="label-ground" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="white"/>"#,
                lx - w / 2.0 - 3.0,
                ly - FONT * 0.55,
                w + 6.0,
                FONT * 1.1
            );
            let _ = writeln!(
                s,
                r##"<text x="{lx:.1}" y="{:.1}" text-anchor="middle" fill="#004">{}</text>"##,
                ly + FONT * 0.35,
                xml_escape(&a.label)
            );
            if a.dropped {
                let _ = writeln!(
                    s,
                    r#"<text x="{xe:.1}" y="{:.1}" text-anchor="middle" fill="red" font-weight="bold">X</text>"#,
                    ye + FONT * 0.35
                );
            }
        }
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{bottom}" text-anchor="end" font-weight="bold">{end_c}</text>"#,
        cx - pad,
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{bottom}" font-weight="bold">{end_s}</text>"#,
        sx + pad,
    );
    s.push_str("</svg>\n");
    s
}
