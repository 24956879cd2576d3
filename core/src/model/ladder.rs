//! Ladder diagrams of a simulation, in the spirit of the classic TCP close figure: client
//! states on the left, server states on the right, segments as arrows in the middle, time
//! going down. This file turns a simulation's log into rows; the drawing (text and SVG) is
//! [`crate::ladder`]'s, shared with the kernel's ladders, so a model's ladder and a run's
//! can stand side by side.
//!
//! What it leaves out on purpose: drawing a segment's flight time. An arrow is drawn where
//! the segment was sent; its arrival shows as the receiver's state change on a later row.
//! Only late arrivals (delayed segments, duplicate copies) get an arrow of their own.

use super::machine::{Call, State};
use super::sim::{Fate, LogEntry, SimResult, addresses};
pub use crate::ladder::{Arrow, Direction, Ladder, Row, page, xml_escape};
use crate::timeline::Side;

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

/// The model's ladder as the shared renderer draws it: headed by the made-up addresses of
/// the simulation, ending with each side's final state.
pub fn ladder(result: &SimResult) -> Ladder {
    let (c, _) = addresses(Side::Client);
    let (sv, _) = addresses(Side::Server);
    Ladder {
        title: None,
        client: format!("client {c}"),
        server: format!("server {sv}"),
        rows: rows(result),
        end_client: format!("= {}", result.client.state),
        end_server: format!("= {}", result.server.state),
        // Its timers show as rows of their own (`[TIME_WAIT timer] CLOSE`).
        timers: Vec::new(),
    }
}

/// The text ladder: one line per row, a header naming both ends, the final states at the end.
pub fn text(result: &SimResult) -> String {
    crate::ladder::text(&[ladder(result)])
}

/// The same ladder as a standalone SVG document (see [`crate::ladder::svg`]).
pub fn svg(result: &SimResult) -> String {
    crate::ladder::svg(&[ladder(result)])
}
