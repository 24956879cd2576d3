//! The catalog and the binaries must match one to one, and every binary must give the verdict
//! the catalog expects, graded by the kernel.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use tcplab_exercises::catalog::Catalog;

fn lesson_sources() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin");
    std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".rs")?;
            let numbered = stem.len() > 3
                && stem.as_bytes()[..2].iter().all(u8::is_ascii_digit)
                && stem.as_bytes()[2] == b'-';
            numbered.then(|| stem.to_string())
        })
        .collect()
}

#[test]
fn every_binary_has_an_entry_and_every_entry_a_binary() {
    let catalog = Catalog::builtin();
    let entries: BTreeSet<String> = catalog
        .binary_names()
        .into_iter()
        .map(String::from)
        .collect();
    let sources = lesson_sources();
    let without_entry: Vec<_> = sources.difference(&entries).collect();
    let without_binary: Vec<_> = entries.difference(&sources).collect();
    assert!(
        without_entry.is_empty(),
        "binaries without a catalog entry: {without_entry:?}"
    );
    assert!(
        without_binary.is_empty(),
        "catalog entries without a binary: {without_binary:?}"
    );
}

/// Path of a built lesson binary (cargo builds every bin target before integration tests).
pub fn binary_path(name: &str) -> std::path::PathBuf {
    let runner = Path::new(env!("CARGO_BIN_EXE_tcplab"));
    runner.with_file_name(name)
}

#[test]
fn every_binary_gives_its_expected_verdict() {
    let catalog = Catalog::builtin();
    let mut failures = Vec::new();
    for lesson in &catalog.lessons {
        for bin in &lesson.binaries {
            let path = binary_path(&bin.name);
            if !path.exists() {
                failures.push(format!("{}: not built", bin.name));
                continue;
            }
            let out = Command::new(&path).arg("--json").output().unwrap();
            if !out.status.success() {
                failures.push(format!(
                    "{}: exit {:?}: {}",
                    bin.name,
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr)
                ));
                continue;
            }
            let report: serde_json::Value = match serde_json::from_slice(&out.stdout) {
                Ok(v) => v,
                Err(e) => {
                    failures.push(format!("{}: report is not JSON: {e}", bin.name));
                    continue;
                }
            };
            let verdict = report["verdict"].as_str().unwrap_or("?");
            if verdict != bin.expect.to_string() {
                failures.push(format!(
                    "{}: verdict {verdict}, expected {} (observed {})",
                    bin.name, bin.expect, report["observed"]
                ));
            }
            for key in [
                "lesson",
                "binary",
                "backend",
                "server_port",
                "expected",
                "observed",
                "facts",
                "timeline",
            ] {
                if report.get(key).is_none() {
                    failures.push(format!("{}: report lacks {key}", bin.name));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The catalog drives the book and the notebooks: every lesson's chapter and notebook exist,
/// and the chapter shows each of the lesson's binaries (by include or by name).
#[test]
fn every_lesson_has_its_chapter_and_notebook() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut problems = Vec::new();
    for lesson in Catalog::builtin().lessons {
        let chapter = root.join(&lesson.chapter);
        match std::fs::read_to_string(&chapter) {
            Ok(text) => {
                for bin in &lesson.binaries {
                    if !text.contains(&bin.name) {
                        problems.push(format!("{} does not show {}", lesson.chapter, bin.name));
                    }
                }
            }
            Err(e) => problems.push(format!("{}: {e}", lesson.chapter)),
        }
        if !root.join(&lesson.notebook).is_file() {
            problems.push(format!("{}: missing", lesson.notebook));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
