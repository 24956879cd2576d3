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

/// The same ladder as a standalone SVG document.
pub fn svg(result: &SimResult) -> String {
    let rows = rows(result);
    let row_h = 26;
    let top = 60;
    let (cx, sx) = (250, 750);
    let width = 1000;
    let height = top + row_h * (rows.len() as i64 + 2);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="monospace" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<defs><marker id="head" markerWidth="10" markerHeight="8" refX="9" refY="4" orient="auto"><path d="M0,0 L10,4 L0,8 z"/></marker></defs>"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="{width}" height="{height}" fill="white"/>"#
    );
    let (ca, _) = addresses(Side::Client);
    let (sa, _) = addresses(Side::Server);
    let _ = writeln!(
        s,
        r#"<text x="{cx}" y="24" text-anchor="middle" font-weight="bold">client {ca}</text>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{sx}" y="24" text-anchor="middle" font-weight="bold">server {sa}</text>"#
    );
    let _ = writeln!(s, r#"<text x="10" y="24">t (ms)</text>"#);
    let bottom = height - row_h;
    for x in [cx, sx] {
        let _ = writeln!(
            s,
            r##"<line x1="{x}" y1="36" x2="{x}" y2="{bottom}" stroke="#888"/>"##
        );
    }
    for (i, r) in rows.iter().enumerate() {
        let y = top + row_h * i as i64;
        if let Some(gap) = r.gap {
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{y}" text-anchor="middle" fill="#666">({} s later)</text>"##,
                (cx + sx) / 2,
                secs(gap)
            );
            continue;
        }
        let _ = writeln!(s, r#"<text x="10" y="{y}">{}</text>"#, ms(r.t_us));
        if !r.client.is_empty() {
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{y}" text-anchor="end">{}</text>"#,
                cx - 8,
                xml_escape(&r.client)
            );
        }
        if !r.server.is_empty() {
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{y}">{}</text>"#,
                sx + 8,
                xml_escape(&r.server)
            );
        }
        if let Some(a) = &r.arrow {
            let (x1, x2) = match a.direction {
                Direction::ToServer => (cx, sx),
                Direction::ToClient => (sx, cx),
            };
            let (y1, y2) = (y - 4, y + row_h - 8);
            let (xe, ye) = if a.dropped {
                ((x1 + x2) / 2, (y1 + y2) / 2)
            } else {
                (x2, y2)
            };
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
                r#"<line x1="{x1}" y1="{y1}" x2="{xe}" y2="{ye}" stroke="black"{dash}{head}/>"#
            );
            if a.dropped {
                let _ = writeln!(
                    s,
                    r#"<text x="{xe}" y="{}" text-anchor="middle" fill="red" font-weight="bold">X</text>"#,
                    ye + 4
                );
            }
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{}" text-anchor="middle" fill="#004">{}</text>"##,
                (cx + sx) / 2,
                y - 8,
                xml_escape(&a.label)
            );
        }
    }
    let y = bottom;
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{y}" text-anchor="end" font-weight="bold">= {}</text>"#,
        cx - 8,
        result.client.state
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{y}" font-weight="bold">= {}</text>"#,
        sx + 8,
        result.server.state
    );
    s.push_str("</svg>\n");
    s
}
