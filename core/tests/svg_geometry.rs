//! The book's pictures, checked the way a reader would look at them: every SVG the model
//! draws (the state diagram in both profiles, a ladder per scenario) is parsed, and simple
//! geometry says whether it can be read at the book's width.
//!
//! - No two texts overlap (each text's box is estimated from its position, anchor, font size
//!   and length: monospace glyphs advance 0.6 em).
//! - A text is either inside a box (the box's name) or clear of every box.
//! - Every edge ends on a box's border, not inside it, and its last 10 px (where the
//!   arrowhead is drawn) stay outside every box; no edge runs through a box on its way.
//! - Scaled to the book's text column, no text is smaller than 12 px.
//!
//! What it leaves out on purpose: real font metrics (no renderer here), curves, and whether a
//! line crosses a text (labels carry a white halo for that).

use tcplab_core::model::diagram;
use tcplab_core::model::ladder::{self, page};
use tcplab_core::model::{Options, Scenario};

#[derive(Debug, Clone, Copy)]
struct Rect {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
}

impl Rect {
    fn overlaps(&self, o: &Rect) -> bool {
        self.x0 < o.x1 && o.x0 < self.x1 && self.y0 < o.y1 && o.y0 < self.y1
    }
    fn contains(&self, o: &Rect) -> bool {
        o.x0 >= self.x0 && o.x1 <= self.x1 && o.y0 >= self.y0 && o.y1 <= self.y1
    }
    /// Strictly inside, by more than `margin` px.
    fn has_inside(&self, (x, y): (f64, f64), margin: f64) -> bool {
        x > self.x0 + margin && x < self.x1 - margin && y > self.y0 + margin && y < self.y1 - margin
    }
    /// Within `tol` px of the border.
    fn on_border(&self, (x, y): (f64, f64), tol: f64) -> bool {
        let near_x = x >= self.x0 - tol && x <= self.x1 + tol;
        let near_y = y >= self.y0 - tol && y <= self.y1 + tol;
        near_x && near_y && !self.has_inside((x, y), tol)
    }
}

struct Text {
    content: String,
    size: f64,
    rect: Rect,
}

struct Picture {
    width: f64,
    texts: Vec<Text>,
    boxes: Vec<Rect>,
    /// Each edge's points, border to border.
    edges: Vec<Vec<(f64, f64)>>,
}

fn num(n: roxmltree::Node, attr: &str) -> Option<f64> {
    n.attribute(attr).and_then(|v| v.parse().ok())
}

fn parse(svg: &str) -> Picture {
    let doc = roxmltree::Document::parse(svg).expect("well-formed SVG");
    let root = doc.root_element();
    let width = num(root, "width").expect("width");
    let base_size = num(root, "font-size").expect("font-size on the root");
    let mut texts = Vec::new();
    let mut boxes = Vec::new();
    let mut edges = Vec::new();
    for n in root.descendants() {
        match n.tag_name().name() {
            "text" => {
                let content: String = n
                    .descendants()
                    .filter(|d| d.is_text())
                    .filter_map(|d| d.text())
                    .collect();
                let size = num(n, "font-size").unwrap_or(base_size);
                let (x, y) = (num(n, "x").unwrap(), num(n, "y").unwrap());
                let w = content.chars().count() as f64 * 0.6 * size;
                let x0 = match n.attribute("text-anchor").unwrap_or("start") {
                    "middle" => x - w / 2.0,
                    "end" => x - w,
                    _ => x,
                };
                let rect = Rect {
                    x0,
                    y0: y - 0.75 * size,
                    x1: x0 + w,
                    y1: y + 0.2 * size,
                };
                texts.push(Text {
                    content,
                    size,
                    rect,
                });
            }
            "rect" => {
                let (x, y) = (num(n, "x").unwrap_or(0.0), num(n, "y").unwrap_or(0.0));
                let (w, h) = (num(n, "width").unwrap(), num(n, "height").unwrap());
                // The white background, and the white ground under a ladder's label, are
                // not boxes.
                if w < width && n.attribute("class") != Some("label-ground") {
                    boxes.push(Rect {
                        x0: x,
                        y0: y,
                        x1: x + w,
                        y1: y + h,
                    });
                }
            }
            // A legend's sample line is not an edge.
            "line"
                if n.attribute("marker-end").is_some()
                    && n.attribute("class") != Some("legend") =>
            {
                let p = |a: &str, b: &str| (num(n, a).unwrap(), num(n, b).unwrap());
                edges.push(vec![p("x1", "y1"), p("x2", "y2")]);
            }
            "polyline" => {
                let points = n
                    .attribute("points")
                    .unwrap()
                    .split_whitespace()
                    .map(|xy| {
                        let (x, y) = xy.split_once(',').unwrap();
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect();
                edges.push(points);
            }
            _ => {}
        }
    }
    Picture {
        width,
        texts,
        boxes,
        edges,
    }
}

/// Everything wrong with a picture, one line each.
fn problems(svg: &str) -> Vec<String> {
    let pic = parse(svg);
    let mut out = Vec::new();
    let scale = (page::BOOK_WIDTH / pic.width).min(1.0);
    for t in &pic.texts {
        if t.size * scale < page::MIN_TEXT {
            out.push(format!(
                "{:?} is {:.1} px at book width ({} px text in a {} px picture)",
                t.content,
                t.size * scale,
                t.size,
                pic.width
            ));
        }
    }
    for (i, a) in pic.texts.iter().enumerate() {
        for b in &pic.texts[i + 1..] {
            if a.rect.overlaps(&b.rect) {
                out.push(format!(
                    "texts overlap: {:?} and {:?}",
                    a.content, b.content
                ));
            }
        }
        for bx in &pic.boxes {
            if a.rect.overlaps(bx) && !bx.contains(&a.rect) {
                out.push(format!("text {:?} overlaps a box's edge", a.content));
            }
        }
    }
    for e in &pic.edges {
        let (first, last) = (e[0], e[e.len() - 1]);
        for bx in &pic.boxes {
            for (end, name) in [(first, "starts"), (last, "ends")] {
                if bx.has_inside(end, 1.0) {
                    out.push(format!("an edge {name} inside a box at {end:?}"));
                }
            }
        }
        if !pic.boxes.is_empty() {
            for (end, name) in [(first, "start"), (last, "end")] {
                if !pic.boxes.iter().any(|b| b.on_border(end, 1.0)) {
                    out.push(format!("an edge's {name} {end:?} is on no box's border"));
                }
            }
        }
        // Walk the edge: no point of it inside a box, except within 1 px of its ends.
        let total: f64 = e.windows(2).map(|w| dist(w[0], w[1])).sum();
        let mut walked = 0.0;
        for w in e.windows(2) {
            let len = dist(w[0], w[1]);
            let steps = (len / 2.0).ceil().max(1.0) as usize;
            for i in 0..=steps {
                let t = i as f64 / steps as f64;
                let p = (
                    w[0].0 + (w[1].0 - w[0].0) * t,
                    w[0].1 + (w[1].1 - w[0].1) * t,
                );
                let along = walked + len * t;
                if along < 1.0 || along > total - 1.0 {
                    continue;
                }
                if pic.boxes.iter().any(|b| b.has_inside(p, 0.5)) {
                    let where_ = if along > total - 10.0 {
                        "its arrowhead is hidden in a box"
                    } else {
                        "it runs through a box"
                    };
                    out.push(format!("edge {:?} -> {:?}: {where_} at {p:?}", first, last));
                    break;
                }
            }
            walked += len;
        }
    }
    out.dedup();
    out
}

fn dist(a: (f64, f64), b: (f64, f64)) -> f64 {
    ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt()
}

fn assert_clean(name: &str, svg: &str) {
    let p = problems(svg);
    assert!(p.is_empty(), "{name}:\n  {}", p.join("\n  "));
}

#[test]
fn the_state_diagram_reads_at_book_width() {
    for opts in [Options::linux(), Options::rfc()] {
        let svg = diagram::svg(&diagram::transitions(&opts));
        assert_clean(&format!("state diagram ({})", opts.name), &svg);
        let pic = parse(&svg);
        assert_eq!(pic.boxes.len(), 12, "11 states and CLOSED twice");
        assert!(pic.edges.len() >= 20, "Figure 5 has 20 edges");
    }
}

#[test]
fn every_ladder_reads_at_book_width() {
    for s in Scenario::ALL {
        for opts in [Options::linux(), Options::rfc()] {
            let svg = ladder::svg(&s.run(&opts));
            assert_clean(&format!("ladder {s} ({})", opts.name), &svg);
        }
    }
}

/// The book's real ladders (`scripts/gen-ladders`, one per lesson binary), drawn by the same
/// renderer from runs of the kernel.
#[test]
fn every_real_ladder_in_the_book_reads_at_book_width() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/src/ladders");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("book/src/ladders; run scripts/gen-ladders") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "svg") {
            let svg = std::fs::read_to_string(&path).unwrap();
            assert_clean(&path.display().to_string(), &svg);
            assert!(
                !parse(&svg).edges.is_empty(),
                "{}: no arrow",
                path.display()
            );
            n += 1;
        }
    }
    assert!(n >= 21, "only {n} ladders in {}", dir.display());
}

/// A kernel's ladder with every kind of row: folded connections under titles, a long quiet
/// gap, a bulk transfer's counting row, a reset.
#[test]
fn a_folded_kernel_ladder_reads_at_book_width() {
    use std::net::SocketAddr;
    use tcplab_core::ladder::wire;
    use tcplab_core::segment::{Flag, Flags, Segment};
    use tcplab_core::{Event, Source, TcpState, Timeline};
    let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let seg = |t: u64, src: u16, dst: u16, f: &[Flag], seq: u32, len: u32| Segment {
        t_us: t,
        src: a(src),
        dst: a(dst),
        flags: Flags::of(f),
        seq,
        ack: 1,
        raw_seq: seq,
        raw_ack: 1,
        len,
        win: 512,
        options: Default::default(),
    };
    let mut events = Vec::new();
    let mut segments = Vec::new();
    for (k, port) in [40000u16, 40001, 40002].into_iter().enumerate() {
        let t0 = k as u64 * 3_000_000;
        events.push(Event::new(
            t0,
            a(port),
            a(5000),
            TcpState::Close,
            TcpState::SynSent,
            Source::Tracepoint,
        ));
        segments.push(seg(t0 + 1, port, 5000, &[Flag::Syn], 0, 0));
        segments.push(seg(t0 + 5, 5000, port, &[Flag::Syn, Flag::Ack], 0, 0));
        for i in 0..20 {
            segments.push(seg(
                t0 + 10 + i,
                5000,
                port,
                &[Flag::Psh, Flag::Ack],
                1 + 1000 * i as u32,
                1000,
            ));
        }
        let last = if k == 2 { Flag::Rst } else { Flag::Fin };
        segments.push(seg(t0 + 2_000_000, port, 5000, &[last, Flag::Ack], 1, 0));
    }
    let t = Timeline::from_events(events).with_segments(segments);
    let svg = wire::svg(&t);
    assert_clean("a folded kernel ladder", &svg);
    assert!(
        svg.contains("and 1 more like it") && svg.contains("more segments"),
        "{svg}"
    );
}

/// The checks themselves: each kind of mistake is caught.
#[test]
fn the_checks_catch_each_mistake() {
    let doc = |body: &str| {
        format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="700" height="400" font-size="13"><rect width="700" height="400" fill="white"/><rect x="100" y="100" width="100" height="40"/><rect x="100" y="250" width="100" height="40"/>{body}</svg>"#
        )
    };
    assert!(problems(&doc(r#"<text x="110" y="125">A</text>"#)).is_empty());
    let cases = [
        (
            r#"<text x="10" y="20">one label</text><text x="30" y="25">another</text>"#,
            "texts overlap",
        ),
        (r#"<text x="180" y="125">half in</text>"#, "overlaps a box"),
        (
            r#"<polyline points="300,120 150,120"/>"#,
            "ends inside a box",
        ),
        (
            r#"<polyline points="300,120 205,120"/>"#,
            "on no box's border",
        ),
        (r#"<polyline points="150,250 150,200 150,140"/>"#, ""),
        (
            r#"<polyline points="50,90 50,120 250,120 250,250"/>"#,
            "runs through a box",
        ),
    ];
    for (body, want) in cases {
        let p = problems(&doc(body));
        if want.is_empty() {
            assert!(p.is_empty(), "{body}: {p:?}");
        } else {
            assert!(
                p.iter().any(|l| l.contains(want)),
                "{body}: want {want:?}, got {p:?}"
            );
        }
    }
    let small = r#"<svg xmlns="http://www.w3.org/2000/svg" width="1000" height="100" font-size="12"><text x="10" y="20">t</text></svg>"#;
    assert!(problems(small)[0].contains("px at book width"));
}
