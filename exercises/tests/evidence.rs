//! The claims ledger (`book/src/reference/evidence.md`) names, for each claim of the book, the
//! run that shows it: a check of `scripts/book_myths.py`, a fact a lesson reports, a test, a
//! recorded transcript. This test fails when any of those runs no longer exists, so a claim
//! cannot quietly lose its proof when code is renamed or removed.
//!
//! It checks that each run is still there, not what it prints: the runs check themselves
//! (the myths script's recorded output, the lesson tests, the transcript snapshots).
//! Left out on purpose: sources (RFC sections, kernel functions), which no test here can
//! resolve; a row needs a run or a source, and a person checks the sources.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The text of every file under `dir` whose name ends with one of `exts`.
fn sources(dir: &str, exts: &[&str]) -> String {
    fn walk(dir: &Path, exts: &[&str], out: &mut String) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            if path.is_dir() {
                walk(&path, exts, out);
            } else if exts.iter().any(|x| path.to_string_lossy().ends_with(x)) {
                out.push_str(&fs::read_to_string(&path).unwrap_or_default());
                out.push('\n');
            }
        }
    }
    let mut out = String::new();
    walk(&root().join(dir), exts, &mut out);
    out
}

/// The identifiers that follow `marker` in `text` (`marker` then optional spaces, then a name
/// of letters, digits, `_` and `-`, optionally inside double quotes).
fn names_after(text: &str, marker: &str) -> BTreeSet<String> {
    text.match_indices(marker)
        .map(|(i, _)| {
            text[i + marker.len()..]
                .trim_start()
                .trim_start_matches('"')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .collect::<String>()
        })
        .filter(|n| !n.is_empty())
        .collect()
}

/// The facts the lessons report: `fact("name", ..)`, or `fact(facts::NAME, ..)` with the
/// name that `exercises/src/facts.rs` gives the constant.
fn reported_facts(src: &str) -> BTreeSet<String> {
    let constants: std::collections::BTreeMap<String, String> = read("exercises/src/facts.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("pub const "))
        .filter_map(|l| {
            let (name, value) = l.split_once(": &str = \"")?;
            Some((name.to_string(), value.strip_suffix("\";")?.to_string()))
        })
        .collect();
    let mut facts = names_after(src, "fact(");
    facts.remove("facts");
    for constant in names_after(src, "facts::") {
        if let Some(name) = constants.get(&constant) {
            facts.insert(name.clone());
        }
    }
    facts
}

/// One table row of the ledger: its line number and its cells.
struct Row {
    line: usize,
    cells: Vec<String>,
}

fn ledger_rows(text: &str) -> Vec<Row> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with('|'))
        .map(|(i, l)| Row {
            line: i + 1,
            cells: l
                .trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect(),
        })
        // The header and the separator line of each table.
        .filter(|r| r.cells[0] != "claim" && !r.cells[0].starts_with("---"))
        .collect()
}

/// The run references in a cell: `kind:name` inside backticks.
fn runs(cell: &str) -> Vec<(String, String)> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|code| {
            let (kind, name) = code.split_once(':')?;
            matches!(kind, "myth" | "fact" | "test" | "transcript")
                .then(|| (kind.to_string(), name.to_string()))
        })
        .collect()
}

/// What exists today, by kind.
struct Known {
    myth_checks: BTreeSet<String>,
    myths_recorded: BTreeSet<String>,
    facts: BTreeSet<String>,
    tests: BTreeSet<String>,
    transcripts: BTreeSet<String>,
}

fn known() -> Known {
    let script = read("scripts/book_myths.py");
    let recorded = read("book/src/generated/myths.txt");
    // A check prints "[N] name" as its first line (see head() in the script).
    let myths_recorded = recorded
        .lines()
        .filter(|l| l.starts_with('['))
        .filter_map(|l| l.split_once("] ").map(|(_, n)| n.trim().to_string()))
        .collect();
    let rust_tests = sources("exercises/tests", &[".rs"])
        + &sources("core/tests", &[".rs"])
        + &sources("core/src", &[".rs"])
        + &sources("py/src", &[".rs"]);
    let mut tests = names_after(&rust_tests, "fn ");
    tests.extend(names_after(&sources("py/tests", &[".py"]), "def "));
    let transcripts_rs = read("exercises/tests/transcripts.rs");
    let snapshots = root().join("exercises/tests/snapshots");
    let transcripts = names_after(&transcripts_rs, "=> \"")
        .into_iter()
        .filter(|n| snapshots.join(format!("transcripts__{n}.snap")).is_file())
        .collect();
    Known {
        myth_checks: names_after(&script, "def "),
        myths_recorded,
        facts: reported_facts(&sources("exercises/src", &[".rs"])),
        tests,
        transcripts,
    }
}

fn problems(ledger: &str, known: &Known) -> Vec<String> {
    let mut problems = Vec::new();
    let rows = ledger_rows(ledger);
    if rows.is_empty() {
        problems.push("the ledger has no claims".to_string());
    }
    let mut cited_myths = BTreeSet::new();
    for row in &rows {
        let at = format!("evidence.md line {}", row.line);
        if row.cells.len() != 4 {
            problems.push(format!("{at}: {} cells, want 4", row.cells.len()));
            continue;
        }
        let (run, source) = (&row.cells[1], &row.cells[2]);
        if run.is_empty() && source.is_empty() {
            problems.push(format!("{at}: a claim with neither a run nor a source"));
        }
        let refs = runs(run);
        if !run.is_empty() && refs.is_empty() {
            problems.push(format!("{at}: the run column names no `kind:name`: {run}"));
        }
        for (kind, name) in refs {
            let missing = match kind.as_str() {
                "myth" => {
                    cited_myths.insert(name.clone());
                    if !known.myth_checks.contains(&name) {
                        Some("no such check in scripts/book_myths.py")
                    } else if !known.myths_recorded.contains(&name) {
                        Some("not in book/src/generated/myths.txt (regenerate it)")
                    } else {
                        None
                    }
                }
                "fact" => (!known.facts.contains(&name)).then_some("no lesson reports this fact"),
                "test" => (!known.tests.contains(&name)).then_some("no test function of this name"),
                "transcript" => (!known.transcripts.contains(&name))
                    .then_some("no recorded transcript of this name"),
                _ => unreachable!("runs() keeps only the four kinds"),
            };
            if let Some(why) = missing {
                problems.push(format!("{at}: `{kind}:{name}`: {why}"));
            }
        }
    }
    for name in known.myths_recorded.difference(&cited_myths) {
        problems.push(format!(
            "the myths script's check {name} backs no claim of the ledger"
        ));
    }
    problems
}

#[test]
fn every_run_the_ledger_cites_exists() {
    let ledger = read("book/src/reference/evidence.md");
    let problems = problems(&ledger, &known());
    assert!(
        problems.is_empty(),
        "the claims ledger cites runs that do not exist:\n  {}",
        problems.join("\n  ")
    );
}

/// The checker itself: a ledger that cites a missing run of each kind must fail.
#[test]
fn a_missing_run_is_caught() {
    let known = known();
    let ledger = "| claim | run | source | where |\n|---|---|---|---|\n\
        | a | `myth:no_such_check` | | x |\n\
        | b | `fact:no_such_fact` | | x |\n\
        | c | `test:no_such_test` | | x |\n\
        | d | `transcript:99-no-such-binary` | | x |\n\
        | e | | | x |\n";
    let found = problems(ledger, &known);
    for needle in [
        "myth:no_such_check",
        "fact:no_such_fact",
        "test:no_such_test",
        "transcript:99-no-such-binary",
        "neither a run nor a source",
    ] {
        assert!(
            found.iter().any(|p| p.contains(needle)),
            "{needle} was not reported: {found:?}"
        );
    }
}
