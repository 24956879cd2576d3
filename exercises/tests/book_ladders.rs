//! The book's real ladders (`book/src/ladders/BINARY.svg`, drawn by `scripts/gen-ladders`
//! from one run of each lesson binary) must still show what the binary does now.
//!
//! Runs vary (ports, sequence numbers, times, how many ACKs), so pictures are not compared
//! byte for byte. Each picture carries its run's normal form in its `<desc>`: per kind of
//! connection, the SYN, FIN and RST segments in order, each socket's states, and how many
//! connections were of that kind (`tcplab_core::ladder::wire::Kinds`). This test runs every
//! binary of the catalog again with `--ladder-svg` (which captures: on the host's `lo` as
//! root, in a namespace of its own otherwise) and compares the kinds, leaving out a kind
//! that is rare in a run of many connections (one reset among two hundred closes: timing,
//! not the program). It also fails when a binary has no picture, or a picture no binary, or
//! a chapter does not show its lesson's pictures.

mod common;

use std::path::{Path, PathBuf};

use tcplab_core::ladder::wire::{self, Kinds};
use tcplab_exercises::catalog::Catalog;

fn book() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/src")
}

const REGENERATE: &str = "run `sudo scripts/gen-ladders` and commit the pictures";

/// Root, like `scripts/gen-ladders`: the pictures' states come from the tracepoint. Without
/// it a lesson polls, and fills the states too brief to see from the model (marked
/// inferred), which the book's runs did not need.
#[test]
#[ignore = "needs root"]
fn every_book_ladder_shows_what_a_fresh_run_shows() {
    assert!(
        tcplab_core::observe::trace::is_root(),
        "needs root: the book's ladders were drawn with the tracepoint (sudo scripts/gen-ladders)"
    );
    let catalog = Catalog::builtin();
    let tmp = std::env::temp_dir().join(format!("tcplab-book-ladders-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut stale = Vec::new();
    let mut names = Vec::new();
    for lesson in &catalog.lessons {
        for bin in &lesson.binaries {
            let name = bin.name.as_str();
            names.push(name.to_string());
            let committed = book().join(format!("ladders/{name}.svg"));
            let committed = std::fs::read_to_string(&committed)
                .unwrap_or_else(|e| panic!("{}: {e}; {REGENERATE}", committed.display()));
            let want = wire::desc_of(&committed)
                .and_then(|d| Kinds::parse(&d))
                .unwrap_or_else(|| panic!("{name}.svg carries no normal form; {REGENERATE}"));
            // A loaded machine can delay the tracer past a brief socket (a TIME_WAIT that a
            // reconnect ends at once), so one run may lack a state the program did reach. A
            // stale picture differs on every run; a delayed observation does not, so a
            // binary gets up to three runs and must match on one of them.
            let mut differences = Vec::new();
            for attempt in 1..=3 {
                let fresh = tmp.join(format!("{name}-{attempt}.svg"));
                let report = common::run(name, &["--ladder-svg", fresh.to_str().unwrap()]);
                let segments = report["segments"].as_array().map_or(0, Vec::len);
                assert!(
                    segments > 0,
                    "{name} captured no segment: capture needs root or a user namespace of \
                     one's own (`tcplab doctor` says which is refused); report: {report}"
                );
                let picture = std::fs::read_to_string(&fresh).unwrap();
                let got = wire::desc_of(&picture)
                    .and_then(|d| Kinds::parse(&d))
                    .unwrap();
                differences = want.differs_from(&got);
                if differences.is_empty() {
                    break;
                }
                eprintln!(
                    "{name}: run {attempt} differs from the book:\n  {}",
                    differences.join("\n  ")
                );
            }
            if !differences.is_empty() {
                stale.push(format!(
                    "{name} (first: the book, second: now, on each of three runs):\n  {}",
                    differences.join("\n  ")
                ));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(
        stale.is_empty(),
        "the book's ladders no longer show what the binaries do ({REGENERATE}):\n{}",
        stale.join("\n")
    );
    // No picture of a binary that is gone.
    for entry in std::fs::read_dir(book().join("ladders")).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        assert!(
            names.contains(&stem),
            "{} belongs to no lesson binary: delete it",
            path.display()
        );
    }
}

#[test]
fn every_chapter_shows_its_real_ladders() {
    let catalog = Catalog::builtin();
    for lesson in &catalog.lessons {
        let chapter = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(&lesson.chapter);
        let text = std::fs::read_to_string(&chapter)
            .unwrap_or_else(|e| panic!("{}: {e}", chapter.display()));
        for bin in &lesson.binaries {
            let link = format!("ladders/{}.svg", bin.name);
            assert!(
                text.contains(&link),
                "{} does not show {link}",
                chapter.display()
            );
        }
    }
}
