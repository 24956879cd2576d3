//! Ladder diagrams, in the spirit of the classic TCP close figure: client states on the left,
//! server states on the right, segments as arrows in the middle, time going down.
//!
//! One row type ([`Row`]) and one drawing serve both kinds of ladder: the model's
//! ([`crate::model::ladder`], from a simulation) and the kernel's ([`wire`], from a run's
//! [`crate::Timeline`]: its captured segments and its state changes, on one clock). Both
//! become a [`Ladder`], drawn as text ([`text`]) or SVG ([`svg`]); so a model's and a kernel's
//! ladder of the same story can stand side by side ([`side_by_side_text`],
//! [`side_by_side_svg`]).
//!
//! What it leaves out on purpose: drawing a segment's flight time. An arrow is drawn from the
//! row where the segment was sent to the next row, where its arrival usually shows as the
//! receiver's state change. The layout is hand-written (no SVG or layout crate fits a ladder
//! this small): each column is as wide as its longest text, measured in monospace.

pub mod wire;

use std::fmt::Write as _;

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
    /// A row standing for rows left out (`(340 more segments, 8290304 bytes)`).
    pub note: Option<String>,
}

impl Row {
    /// What one side's column says.
    pub fn text(&self, side: crate::timeline::Side) -> &str {
        match side {
            crate::timeline::Side::Client => &self.client,
            crate::timeline::Side::Server => &self.server,
        }
    }

    /// The text column of one side.
    pub fn col(&mut self, side: crate::timeline::Side) -> &mut String {
        match side {
            crate::timeline::Side::Client => &mut self.client,
            crate::timeline::Side::Server => &mut self.server,
        }
    }
}

/// A state that a timer ends (TIME_WAIT, an orphaned FIN_WAIT2), drawn as a bar beside its
/// side's line from the row where it began to the row where it ended, or to the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    pub side: crate::timeline::Side,
    /// The row where the state began.
    pub from: usize,
    /// The row where it ended; `None` while it still runs at the end.
    pub to: Option<usize>,
}

/// A whole ladder: a heading per column, the rows, and each side's last state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ladder {
    /// A line above the ladder (which connection, how many like it); none for a lone ladder.
    pub title: Option<String>,
    /// The client column's heading (`client 127.0.0.1:40000`).
    pub client: String,
    pub server: String,
    pub rows: Vec<Row>,
    /// The last line under the client's column (`= TIME_WAIT`).
    pub end_client: String,
    pub end_server: String,
    /// Timers to draw as bars (the SVG only; the text says `[TIME_WAIT timer]`).
    pub timers: Vec<Timer>,
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

/// Seconds with milliseconds: `59.999`.
pub fn secs(t_us: u64) -> String {
    format!("{}.{:03}", t_us / 1_000_000, (t_us % 1_000_000) / 1_000)
}

/// Milliseconds with microseconds: `21.000`.
pub fn ms(t_us: u64) -> String {
    format!("{}.{:03}", t_us / 1_000, t_us % 1_000)
}

/// The text ladder: one line per row, a header naming both ends, the final states at the
/// end. Several ladders (a folded run) follow each other, each under its title.
pub fn text(ladders: &[Ladder]) -> String {
    let mut s = String::new();
    for (i, l) in ladders.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        if let Some(title) = &l.title {
            let _ = writeln!(s, "{title}");
        }
        one_text(&mut s, l);
    }
    s
}

fn one_text(s: &mut String, l: &Ladder) {
    let (head_c, head_s, blank) = (&l.client, &l.server, "");
    let _ = writeln!(
        s,
        "{:>TIME_W$}  {head_c:<SIDE_W$} {blank:^MID_W$} {head_s}",
        "t (ms)"
    );
    for r in &l.rows {
        if let Some(gap) = r.gap {
            let later = format!("({} s later)", secs(gap));
            let _ = writeln!(s, "{:>TIME_W$}  {:<SIDE_W$} {later:^MID_W$} :", ":", ":");
            continue;
        }
        if let Some(note) = &r.note {
            let _ = writeln!(s, "{:>TIME_W$}  {:<SIDE_W$} {note:^MID_W$} :", ":", ":");
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
    let (end_c, end_s) = (&l.end_client, &l.end_server);
    let _ = writeln!(
        s,
        "{:>TIME_W$}  {end_c:<SIDE_W$} {blank:^MID_W$} {end_s}",
        "end"
    );
}

/// Two text renderings beside each other, `left | right`, line by line.
pub fn side_by_side_text(left: &str, right: &str) -> String {
    let width = left.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    let (l, r): (Vec<&str>, Vec<&str>) = (left.lines().collect(), right.lines().collect());
    let mut s = String::new();
    for i in 0..l.len().max(r.len()) {
        let a = l.get(i).copied().unwrap_or("");
        let b = r.get(i).copied().unwrap_or("");
        let line = format!("{a:<width$} | {b}");
        let _ = writeln!(s, "{}", line.trim_end());
    }
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

/// Where the columns are: shared by every ladder of one picture, so stacked ladders line up.
struct Columns {
    left: f64,
    cx: f64,
    sx: f64,
    width: f64,
}

const GAP: f64 = 16.0;
const PAD: f64 = 8.0;
const ROW_H: f64 = 28.0;
/// Room above a ladder for its title line.
const TITLE_H: f64 = 28.0;

fn columns(ladders: &[Ladder]) -> Columns {
    use page::{FONT, text_w};
    let widest = |texts: &mut dyn Iterator<Item = String>| {
        texts.map(|t| text_w(&t, FONT)).fold(0.0_f64, f64::max)
    };
    let rows = || ladders.iter().flat_map(|l| l.rows.iter());
    let time_w = widest(
        &mut rows()
            .filter(|r| r.gap.is_none() && r.note.is_none())
            .map(|r| ms(r.t_us))
            .chain(["t (ms)".to_string()]),
    );
    let client_w = widest(
        &mut rows()
            .map(|r| r.client.clone())
            .chain(ladders.iter().map(|l| l.end_client.clone())),
    );
    let server_w = widest(
        &mut rows()
            .map(|r| r.server.clone())
            .chain(ladders.iter().map(|l| l.end_server.clone())),
    );
    let mid_w = widest(&mut rows().map(|r| match (&r.arrow, r.gap, &r.note) {
        (_, Some(gap), _) => format!("({} s later)", secs(gap)),
        (_, None, Some(note)) => note.clone(),
        (Some(a), None, None) => a.label.clone(),
        (None, None, None) => String::new(),
    }));
    let head_c = widest(&mut ladders.iter().map(|l| l.client.clone()));
    let head_s = widest(&mut ladders.iter().map(|l| l.server.clone()));
    let left = 8.0;
    // The client's column ends at its line, the server's starts at its line; each header is
    // centred on its line and must fit too.
    let cx = (left + time_w + GAP + client_w + PAD).max(left + head_c / 2.0);
    // A lost segment's label sits between its sender and its X (85 % of the way).
    let lost_w = widest(&mut rows().filter_map(|r| {
        r.arrow
            .as_ref()
            .filter(|a| a.dropped)
            .map(|a| a.label.clone())
    }));
    let sx = cx + (mid_w + 2.0 * GAP).max(200.0).max((lost_w + 30.0) / 0.85);
    let titles = widest(&mut ladders.iter().filter_map(|l| l.title.clone()));
    let width = (sx + PAD + server_w + left)
        .max(sx + head_s / 2.0 + left)
        .max(left + titles + left)
        .ceil();
    Columns {
        left,
        cx,
        sx,
        width,
    }
}

/// The height one ladder takes.
fn height_of(l: &Ladder) -> f64 {
    let title = if l.title.is_some() { TITLE_H } else { 0.0 };
    title + 64.0 + ROW_H * (l.rows.len() as f64 + 1.0)
}

/// The ladders as one standalone SVG document, stacked top to bottom, laid out from their own
/// texts: each column is as wide as its longest text, so that times, states and segment
/// labels never run together, and the whole fits the book's text column with text at
/// [`page::MIN_TEXT`] px or more.
pub fn svg(ladders: &[Ladder]) -> String {
    let cols = columns(ladders);
    let width = cols.width;
    let height = ladders.iter().map(height_of).sum::<f64>().ceil();
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="monospace" font-size="{}">"#,
        page::FONT
    );
    let _ = writeln!(
        s,
        r#"<defs><marker id="head" markerWidth="10" markerHeight="8" refX="9" refY="4" orient="auto"><path d="M0,0 L10,4 L0,8 z"/></marker></defs>"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="{width}" height="{height}" fill="white"/>"#
    );
    let mut y0 = 0.0;
    for l in ladders {
        one_svg(&mut s, l, &cols, y0);
        y0 += height_of(l);
    }
    s.push_str("</svg>\n");
    s
}

fn one_svg(s: &mut String, l: &Ladder, cols: &Columns, y0: f64) {
    use page::{FONT, text_w};
    let Columns { left, cx, sx, .. } = *cols;
    let (pad, row_h) = (PAD, ROW_H);
    let mut y0 = y0;
    if let Some(title) = &l.title {
        let _ = writeln!(
            s,
            r#"<text x="{left}" y="{}" font-weight="bold">{}</text>"#,
            y0 + 20.0,
            xml_escape(title)
        );
        y0 += TITLE_H;
    }
    let top = y0 + 64.0;
    let rows = &l.rows;
    let ys: Vec<f64> = (0..rows.len()).map(|i| top + row_h * i as f64).collect();
    let bottom =
        y0 + height_of(&Ladder {
            title: None,
            ..l.clone()
        }) - row_h / 2.0;
    let head_y = y0 + 24.0;
    let _ = writeln!(
        s,
        r#"<text x="{cx:.1}" y="{head_y}" text-anchor="middle" font-weight="bold">{}</text>"#,
        xml_escape(&l.client)
    );
    let _ = writeln!(
        s,
        r#"<text x="{sx:.1}" y="{head_y}" text-anchor="middle" font-weight="bold">{}</text>"#,
        xml_escape(&l.server)
    );
    // "t (ms)" stands beside the names, or a line lower when a long client address (the
    // scripted peer's) reaches into the time column.
    let t_y = if cx - text_w(&l.client, FONT) / 2.0 < left + text_w("t (ms)", FONT) + 8.0 {
        head_y + 20.0
    } else {
        head_y
    };
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="{t_y}" fill="#555">t (ms)</text>"##
    );
    let line_end = bottom - row_h;
    for x in [cx, sx] {
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{line_end:.1}" stroke="#888"/>"##,
            y0 + 36.0
        );
    }
    for timer in &l.timers {
        let x = match timer.side {
            crate::timeline::Side::Client => cx - 4.0,
            crate::timeline::Side::Server => sx + 4.0,
        };
        let (Some(&y1), y2) = (
            ys.get(timer.from),
            timer.to.and_then(|k| ys.get(k).copied()),
        ) else {
            continue;
        };
        // Still running: down to the side's last line, which says so.
        let y2 = y2.unwrap_or(bottom - 14.0);
        let _ = writeln!(
            s,
            r##"<line class="timer" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{y2:.1}" stroke="#e08a00" stroke-width="4" stroke-opacity="0.7"/>"##,
            y1 - 4.0
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
        if let Some(note) = &r.note {
            let _ = writeln!(
                s,
                r##"<text x="{mid:.1}" y="{y}" text-anchor="middle" fill="#555">{}</text>"##,
                xml_escape(note)
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
            // An arrow ends on the next row, where its arrival shows; before a row that says
            // time passed or segments were left out, it ends short of that row's words.
            let quiet = rows
                .get(i + 1)
                .is_some_and(|n| n.gap.is_some() || n.note.is_some());
            let (y1, y2) = (y - 4.0, if quiet { y + 10.0 } else { next - 8.0 });
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
            // The ground is as tall as the line falls across the label, so that a long label
            // on a sloping arrow is not struck through at its ends.
            let drift = ((y2 - y1) * (w + 6.0) / (x2 - x1))
                .abs()
                .min(ROW_H - FONT * 1.1);
            let _ = writeln!(
                s,
                r#"<rect class="label-ground" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="white"/>"#,
                lx - w / 2.0 - 3.0,
                ly - FONT * 0.55 - drift / 2.0,
                w + 6.0,
                FONT * 1.1 + drift
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
        r#"<text x="{:.1}" y="{bottom}" text-anchor="end" font-weight="bold">{}</text>"#,
        cx - pad,
        xml_escape(&l.end_client)
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{bottom}" font-weight="bold">{}</text>"#,
        sx + pad,
        xml_escape(&l.end_server)
    );
}

/// Two pictures beside each other in one SVG document (say the model's ladder and the
/// kernel's), each a nested `<svg>` at its own scale, headed by `captions`. Meant for a
/// notebook or a wide screen: two ladders side by side are wider than the book's column.
pub fn side_by_side_svg(left: &str, right: &str, captions: (&str, &str)) -> String {
    let size = |doc: &str| {
        let num = |key: &str| {
            doc.split_once(&format!("{key}=\""))
                .and_then(|(_, rest)| rest.split_once('"'))
                .and_then(|(v, _)| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (num("width"), num("height"))
    };
    let ((lw, lh), (rw, rh)) = (size(left), size(right));
    let gap = 24.0;
    let head = 28.0;
    let width = (lw + gap + rw).ceil();
    let height = (head + lh.max(rh)).ceil();
    let inner = |doc: &str, x: f64| {
        doc.replacen(
            "<svg xmlns=\"http://www.w3.org/2000/svg\"",
            &format!("<svg x=\"{x}\" y=\"{head}\""),
            1,
        )
        // Each picture keeps its own arrowhead, under a name of its own.
        .replace("id=\"head\"", &format!("id=\"head{}\"", x as u64))
        .replace("url(#head)", &format!("url(#head{})", x as u64))
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="monospace" font-size="{}">"#,
        page::FONT
    );
    let _ = writeln!(
        s,
        r#"<rect width="{width}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="8" y="20" font-weight="bold">{}</text>"#,
        xml_escape(captions.0)
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="20" font-weight="bold">{}</text>"#,
        lw + gap + 8.0,
        xml_escape(captions.1)
    );
    s.push_str(&inner(left, 0.0));
    s.push_str(&inner(right, lw + gap));
    s.push_str("</svg>\n");
    s
}
