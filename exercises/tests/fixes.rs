//! The graders cannot be fooled: for every lesson a student edits, the kernel must grade the
//! untouched copy and every wrong fix of `exercises/fixes.toml` as not clean, and the
//! reference fix and every other right fix as clean.
//!
//! Each fixture is a student's copy (made by the same function as `start`) with the fix's
//! edits applied, written to `exercises/fixtures/src/bin/` (not committed) and built there,
//! a workspace member, so the lesson library is not compiled again. One test per lesson, so
//! the lessons run in parallel; within a lesson the fixtures run one after the other.
//! Lesson 09's fixtures run twice: as built, and without a private network namespace (its
//! way in a default container), where the same fixes must get the same verdicts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;
use tcplab_core::netns;
use tcplab_exercises::catalog::Catalog;
use tcplab_exercises::cli::runner;
use tcplab_exercises::desk;

#[derive(Debug, Deserialize)]
struct Suite {
    fix: Vec<Fix>,
}

#[derive(Debug, Deserialize)]
struct Fix {
    lesson: String,
    #[serde(default)]
    also: Vec<String>,
    kind: String,
    name: String,
    says: String,
    edits: Vec<Edit>,
}

#[derive(Debug, Deserialize)]
struct Edit {
    find: String,
    replace: String,
}

struct Fixture {
    name: String,
    must_pass: bool,
    says: String,
    source: String,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn suite() -> Suite {
    let text = std::fs::read_to_string(root().join("exercises/fixes.toml")).unwrap();
    toml::from_str(&text).expect("exercises/fixes.toml parses")
}

/// The fixtures of one lesson: untouched, reference, then the suite's fixes.
fn fixtures(id: &str) -> Vec<Fixture> {
    let catalog = Catalog::builtin();
    let lesson = catalog.lesson(id).unwrap();
    let student = lesson
        .student_binary()
        .expect("a lesson with a student binary");
    let read = |name: &str| {
        std::fs::read_to_string(root().join(format!("exercises/src/bin/{name}.rs"))).unwrap()
    };
    let copy = desk::student_copy(lesson, &read(&student.name), "tcplab");
    // Fixture code may leave imports unused; the lints are for the shipped code.
    let allow = "#![allow(unused, clippy::all)]\n";
    let mut out = vec![
        Fixture {
            name: format!("{id}-fix-wrong-untouched"),
            must_pass: false,
            says: "the copy as `start` makes it".into(),
            source: format!("{allow}{copy}"),
        },
        Fixture {
            name: format!("{id}-fix-right-reference"),
            must_pass: true,
            says: "the reference fix in the student's copy".into(),
            source: format!(
                "{allow}{}",
                desk::student_copy(
                    lesson,
                    &read(&lesson.fixed_binary().unwrap().name),
                    "tcplab"
                )
            ),
        },
    ];
    for fix in suite()
        .fix
        .into_iter()
        .filter(|f| f.lesson == id || f.also.iter().any(|a| a == id))
    {
        assert!(
            fix.kind == "wrong" || fix.kind == "right",
            "fix {}: kind must be wrong or right",
            fix.name
        );
        let mut source = copy.clone();
        for e in &fix.edits {
            let n = source.matches(e.find.as_str()).count();
            assert_eq!(
                n, 1,
                "fix {} of lesson {id}: `find` occurs {n} times in the student's copy:\n{}",
                fix.name, e.find
            );
            source = source.replacen(e.find.as_str(), &e.replace, 1);
        }
        out.push(Fixture {
            name: format!("{id}-fix-{}-{}", fix.kind, fix.name),
            must_pass: fix.kind == "right",
            says: fix.says,
            source: format!("{allow}{source}"),
        });
    }
    out
}

/// Write and build a lesson's fixtures (one cargo call); their paths by name.
fn build(id: &str, fixtures: &[Fixture]) -> HashMap<String, PathBuf> {
    let dir = root().join("exercises/fixtures/src/bin");
    std::fs::create_dir_all(&dir).unwrap();
    for old in std::fs::read_dir(&dir).unwrap().flatten() {
        if old
            .file_name()
            .to_string_lossy()
            .starts_with(&format!("{id}-fix-"))
        {
            let _ = std::fs::remove_file(old.path());
        }
    }
    for f in fixtures {
        std::fs::write(dir.join(format!("{}.rs", f.name)), &f.source).unwrap();
    }
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root())
        .args([
            "build",
            "--quiet",
            "--message-format=json-render-diagnostics",
        ])
        .args(["-p", "tcplab-fixtures"]);
    for f in fixtures {
        cmd.args(["--bin", &f.name]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "fixtures of lesson {id} do not compile:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut paths = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(m) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if let (Some(n), Some(exe)) = (m["target"]["name"].as_str(), m["executable"].as_str()) {
            paths.insert(n.to_string(), PathBuf::from(exe));
        }
    }
    paths
}

/// How a fixture runs: as built, or (lesson 09) told that no private network namespace can
/// be made, as in a default container, so that its other way is graded too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    AsBuilt,
    NoNamespace,
}

/// The modes a lesson's fixtures run in.
fn modes(id: &str) -> &'static [Mode] {
    match id {
        "09" => &[Mode::AsBuilt, Mode::NoNamespace],
        _ => &[Mode::AsBuilt],
    }
}

/// Run one fixture with `--json`: whether it exited 0, its stdout and stderr.
fn run_fixture(path: &Path, mode: Mode) -> (bool, String, String) {
    match mode {
        Mode::AsBuilt => {
            let out = runner::run_path(path, &["--json".to_string()], true).unwrap();
            (out.success, out.stdout, out.stderr)
        }
        Mode::NoNamespace => {
            let out = Command::new(path)
                .arg("--json")
                .env(netns::NO_NETNS_ENV, "1")
                .output()
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    }
}

fn check_lesson(id: &str) {
    let fixtures = fixtures(id);
    let paths = build(id, &fixtures);
    let mut wrong = Vec::new();
    for (mode, f) in modes(id)
        .iter()
        .flat_map(|m| fixtures.iter().map(move |f| (*m, f)))
    {
        let (success, stdout, stderr) = run_fixture(&paths[&f.name], mode);
        let report: Option<Value> = serde_json::from_str(stdout.trim()).ok();
        let passed = success
            && report
                .as_ref()
                .is_some_and(|r| r["verdict"].as_str() == Some("clean"));
        let why = match &report {
            Some(r) => format!("{} {}", r["verdict"], r["reasons"]),
            None => format!("error: {}", stderr.trim()),
        };
        eprintln!(
            "{} ({mode:?}): {} ({})",
            f.name,
            if passed { "passed" } else { "failed" },
            why
        );
        if passed != f.must_pass {
            wrong.push(format!(
                "{} ({mode:?}; {}) {} but must {}: {why}",
                f.name,
                f.says,
                if passed { "passed" } else { "failed" },
                if f.must_pass { "pass" } else { "fail" }
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "the grader of lesson {id} was fooled:\n{}",
        wrong.join("\n")
    );
}

macro_rules! lessons {
    ($($test:ident => $id:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                check_lesson($id);
            }
        )*
    };
}

lessons! {
    l01_fixes => "01",
    l03_fixes => "03",
    l04_fixes => "04",
    l05_fixes => "05",
    l06_fixes => "06",
    l07_fixes => "07",
    l08_fixes => "08",
    l09_fixes => "09",
    l10_fixes => "10",
    l11_fixes => "11",
    l12_fixes => "12",
    l16_fixes => "16",
}

/// Every lesson with a student binary has a test above, and the suite names only those.
#[test]
fn every_student_lesson_has_a_suite() {
    let catalog = Catalog::builtin();
    let src = std::fs::read_to_string(root().join("exercises/tests/fixes.rs")).unwrap();
    for l in catalog
        .lessons
        .iter()
        .filter(|l| l.student_binary().is_some())
    {
        assert!(
            src.contains(&format!("=> \"{}\"", l.id)),
            "lesson {} has no fixes test",
            l.id
        );
    }
    for fix in suite().fix {
        let l = catalog.lesson(&fix.lesson).expect("a known lesson");
        assert!(
            l.student_binary().is_some(),
            "lesson {} has nothing to fix",
            l.id
        );
    }
}
