//! The student-facing lesson commands: `list`, `start`, `run`, `check`, `hint`, `reset` and
//! `tour`. rustlings is the model for the experience (a desk of copies, one hint at a time,
//! a watch mode, saved progress); the difference is who grades: here a lesson passes when the
//! kernel shows it clean, not when a unit test does.
//!
//! Every command that runs a lesson builds it first, in one cargo call, so what runs is what
//! the sources say now.

use std::collections::{BTreeSet, HashMap};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};

use super::runner::{self, BuildPlan, Progress, command_name};
use crate::catalog::{Catalog, Choice, Lesson};
use crate::desk;
use crate::lessons::churn::ChurnArgs;
use tcplab_core::Vocabulary;
use tcplab_core::observe::trace::Backend;

/// Flags passed through to the lesson binaries.
#[derive(Args, Debug, Clone, Default)]
pub struct PassThrough {
    /// How many connections each binary makes (each lesson has a default).
    #[arg(long, short = 'n', value_name = "N")]
    pub connections: Option<usize>,
    /// Keep each binary's sockets alive this many seconds after its report.
    #[arg(long, value_name = "SECS")]
    pub hold: Option<f64>,
    /// How the binaries watch state changes.
    #[arg(long, value_parser = super::one_of::<Backend>())]
    pub backend: Option<Backend>,
    #[command(flatten)]
    pub churn: ChurnArgs,
    /// Capture each binary's segments into DIR/BINARY.pcapng (open them in Wireshark: the
    /// state changes are packet comments).
    #[arg(long, value_name = "DIR")]
    pub pcap: Option<PathBuf>,
    /// Show each binary's ladder: its segments on the wire, its states beside them.
    #[arg(long)]
    pub ladder: bool,
    /// Write each binary's ladder as a picture, DIR/BINARY.svg.
    #[arg(long, value_name = "DIR")]
    pub ladder_svg: Option<PathBuf>,
}

impl PassThrough {
    /// Make the folders `--pcap DIR` and `--ladder-svg DIR` write into.
    fn make_folders(&self) -> Result<()> {
        for (flag, dir) in [("--pcap", &self.pcap), ("--ladder-svg", &self.ladder_svg)] {
            if let Some(dir) = dir {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("making the folder for {flag}: {}", dir.display()))?;
            }
        }
        Ok(())
    }

    /// The flags for one of `lesson`'s binaries: the churn flags go to lessons with a churn
    /// phase only (`run` refuses them for the others; the tour passes them where they apply).
    fn args_for(&self, lesson: &Lesson, binary: &str) -> Vec<String> {
        let mut args = if lesson.churn {
            self.args()
        } else {
            PassThrough {
                churn: ChurnArgs::default(),
                ..self.clone()
            }
            .args()
        };
        if let Some(dir) = &self.pcap {
            args.push("--pcap".to_string());
            args.push(dir.join(format!("{binary}.pcapng")).display().to_string());
        }
        if self.ladder {
            args.push("--ladder".to_string());
        }
        if let Some(dir) = &self.ladder_svg {
            args.push("--ladder-svg".to_string());
            args.push(dir.join(format!("{binary}.svg")).display().to_string());
        }
        args
    }

    fn args(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(n) = self.connections {
            out.extend(["--connections".to_string(), n.to_string()]);
        }
        if let Some(h) = self.hold {
            out.extend(["--hold".to_string(), h.to_string()]);
        }
        if let Some(b) = self.backend {
            out.extend(["--backend".to_string(), b.name().to_string()]);
        }
        out.extend(self.churn.to_args());
        out
    }
}

#[derive(Args, Debug, Clone)]
pub struct ListArgs {
    /// Print the catalog as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Lesson id (`03`), slug (`close-wait`) or binary name.
    pub lesson: String,
    /// Only this binary: `leak`, `fixed`, `student` (your copy, from `start`), or a binary's
    /// full name.
    #[arg(long)]
    pub variant: Option<String>,
    /// Show each binary's own narration instead of the side-by-side table.
    #[arg(long)]
    pub narrate: bool,
    #[command(flatten)]
    pub pass: PassThrough,
}

#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// Lesson id, slug or binary name.
    pub lesson: String,
    /// The tcplab folder holding your copy (default: found from here).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Print one JSON object (lesson, passed, verdict, reasons, facts), for autograders.
    #[arg(long)]
    pub json: bool,
    /// Also show the facts the kernel reported, behind the verdict.
    #[arg(long, short)]
    pub verbose: bool,
    /// Check again on every save of your copy, until it passes (Ctrl-C stops).
    #[arg(long, conflicts_with = "json")]
    pub watch: bool,
}

#[derive(Args, Debug, Clone)]
pub struct StartArgs {
    /// Lesson id, slug or binary name.
    pub lesson: String,
    /// The tcplab folder (default: found from here).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct HintArgs {
    /// Lesson id, slug or binary name.
    pub lesson: String,
    /// Show every hint at once.
    #[arg(long)]
    pub all: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ResetArgs {
    /// Lesson id, slug or binary name.
    pub lesson: String,
    /// The tcplab folder (default: found from here).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct TourArgs {
    /// Only these lessons (ids, comma separated).
    #[arg(long, value_delimiter = ',')]
    pub lessons: Vec<String>,
    /// Do not wait for Enter between lessons (the default when not on a terminal).
    #[arg(long)]
    pub no_pause: bool,
    #[command(flatten)]
    pub pass: PassThrough,
}

pub fn list(args: &ListArgs) -> Result<ExitCode> {
    let catalog = Catalog::builtin();
    let progress = Progress::load()?;
    let cmd = command_name();
    if args.json {
        let rows: Vec<Value> = catalog
            .lessons
            .iter()
            .map(|l| {
                json!({
                    "id": l.id,
                    "title": l.title,
                    "student_file": l.student_file(),
                    "done": progress.passed.contains(&l.id),
                    "chapter": l.chapter,
                    "binaries": l.binaries,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let root = runner::workspace_root();
    println!("{:<4} {:<6} {:<52} your file", "id", "done", "title");
    for l in &catalog.lessons {
        let done = if progress.passed.contains(&l.id) {
            "yes"
        } else {
            "-"
        };
        let file = match (l.student_file(), &root) {
            (None, _) => "(read and run: nothing to edit)".to_string(),
            (Some(f), Some(r)) if r.join(&f).is_file() => f,
            (Some(_), _) => format!("`{cmd} start {}` makes it", l.id),
        };
        println!("{:<4} {:<6} {:<52} {file}", l.id, done, l.title);
    }
    let gradable = catalog
        .lessons
        .iter()
        .filter(|l| l.student_binary().is_some())
        .count();
    println!(
        "\n{} of {gradable} lessons passed. `{cmd} start ID` gives you a copy to edit, `{cmd} run \
         ID` shows a lesson, `{cmd} check ID` grades your copy.",
        progress.passed.len(),
    );
    Ok(ExitCode::SUCCESS)
}

/// A fact's key in words: `client_time_wait` -> `client time wait`.
fn words(key: &str) -> String {
    key.replace('_', " ")
}

/// A fact's value for a table cell or a line: lists become their length, or a short range of
/// numbers; fractions two decimals.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let nums: Vec<f64> = items.iter().filter_map(Value::as_f64).collect();
            if items.is_empty() {
                "none".to_string()
            } else if nums.len() == items.len() {
                let lo = nums.iter().cloned().fold(f64::INFINITY, f64::min);
                let hi = nums.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let fmt = |x: f64| {
                    if x.fract() == 0.0 {
                        format!("{x:.0}")
                    } else {
                        format!("{x:.2}")
                    }
                };
                if lo == hi {
                    format!("{} x {}", items.len(), fmt(lo))
                } else {
                    format!("{} values, {}..{}", items.len(), fmt(lo), fmt(hi))
                }
            } else {
                format!("{} entries", items.len())
            }
        }
        Value::Number(n) => match n.as_f64() {
            Some(x) if n.is_f64() => format!("{x:.2}"),
            _ => n.to_string(),
        },
        Value::Object(_) => v.to_string(),
    }
}

/// Whether a fact only repeats a row of the state table (`client_fin_wait2` beside
/// `client FIN_WAIT2`): such facts are shown once, as the row.
fn repeats_a_row(key: &str, rows: &BTreeSet<(String, String)>) -> bool {
    rows.iter().any(|(side, state)| {
        key.eq_ignore_ascii_case(&format!("{side}_{state}"))
            || key.eq_ignore_ascii_case(&format!("{side}_{}", state.replace('_', "")))
    })
}

/// The verdict of one report, in words: `leak`, or `leak, expected clean` when a binary does
/// not show what the catalog says it should.
fn verdict_cell(r: &Value) -> String {
    let v = r["verdict"].as_str().unwrap_or("?");
    match r["expected"].as_str() {
        Some(e) if e != v => format!("{v}, expected {e}"),
        _ => v.to_string(),
    }
}

/// One line per (side, state) seen in any report, then the other facts in words, one column
/// per binary.
pub fn side_by_side(lesson: &Lesson, reports: &[(String, Value)]) -> String {
    let mut rows: BTreeSet<(String, String)> = BTreeSet::new();
    let mut facts: BTreeSet<String> = BTreeSet::new();
    for (_, r) in reports {
        if let Some(obs) = r["observed"].as_object() {
            for (side, states) in obs {
                for state in states.as_object().into_iter().flat_map(|m| m.keys()) {
                    rows.insert((side.clone(), state.clone()));
                }
            }
        }
        if let Some(f) = r["facts"].as_object() {
            facts.extend(f.keys().cloned());
        }
    }
    facts.retain(|k| !repeats_a_row(k, &rows));
    let width = reports
        .iter()
        .map(|(n, r)| n.len().max(verdict_cell(r).len()))
        .max()
        .unwrap_or(10)
        .max(18)
        + 2;
    let label = rows
        .iter()
        .map(|(side, state)| side.len() + 1 + state.len())
        .chain(facts.iter().map(String::len))
        .max()
        .unwrap_or(0)
        .max(12)
        + 2;
    let mut out = String::new();
    out.push_str(&format!("Lesson {}: {}\n", lesson.id, lesson.title));
    out.push_str(&format!("{:<label$}", ""));
    for (name, _) in reports {
        out.push_str(&format!("{name:<width$}"));
    }
    out.push('\n');
    out.push_str(&format!("{:<label$}", "verdict"));
    for (_, r) in reports {
        out.push_str(&format!("{:<width$}", verdict_cell(r)));
    }
    out.push('\n');
    out.push_str(&format!("{:<label$}", "observed by"));
    for (_, r) in reports {
        out.push_str(&format!("{:<width$}", r["backend"].as_str().unwrap_or("?")));
    }
    out.push('\n');
    for (side, state) in &rows {
        out.push_str(&format!("{:<label$}", format!("{side} {state}")));
        for (_, r) in reports {
            let n = r["observed"][side][state].as_u64().unwrap_or(0);
            out.push_str(&format!("{n:<width$}"));
        }
        out.push('\n');
    }
    for key in &facts {
        out.push_str(&format!("{:<label$}", words(key)));
        for (_, r) in reports {
            out.push_str(&format!("{:<width$}", cell(&r["facts"][key])));
        }
        out.push('\n');
    }
    out
}

/// The programs `--variant` picks (every shipped binary without it), by the catalog's fields.
fn chosen<'a>(lesson: &'a Lesson, variant: Option<&str>) -> Result<Vec<Choice<'a>>> {
    match variant {
        None => Ok(lesson.binaries.iter().map(Choice::Shipped).collect()),
        Some(v) => Ok(vec![lesson.resolve(v)?]),
    }
}

/// One cargo call for every program of `choices`; students' copies must exist.
fn build_choices(choices: &[Choice<'_>]) -> Result<HashMap<String, PathBuf>> {
    let mut plan = BuildPlan::default();
    for c in choices {
        match c {
            Choice::Shipped(b) => plan.shipped.push(b.name.clone()),
            Choice::Student(name) => plan.desk.push(name.clone()),
        }
    }
    if let Some(root) = runner::workspace_root() {
        for c in choices {
            if let Choice::Student(name) = c {
                let file = root.join(format!("{}/{name}.rs", crate::catalog::DESK_BIN_DIR));
                if !file.is_file() {
                    let id = name.split('-').next().unwrap_or(name);
                    bail!(
                        "you have no copy of lesson {id} yet: `{} start {id}` makes one",
                        command_name()
                    );
                }
            }
        }
    }
    runner::fresh_binaries(&plan)
}

fn show_lesson(
    lesson: &Lesson,
    choices: &[Choice<'_>],
    paths: &HashMap<String, PathBuf>,
    narrate: bool,
    pass: &PassThrough,
) -> Result<bool> {
    let path_of = |c: &Choice<'_>| -> Result<PathBuf> {
        paths
            .get(c.name())
            .cloned()
            .with_context(|| format!("{} was not built", c.name()))
    };
    if narrate {
        let mut ok = true;
        for c in choices {
            let out = runner::run_path(&path_of(c)?, &pass.args_for(lesson, c.name()), false)?;
            ok &= out.success;
        }
        return Ok(ok);
    }
    let bar = indicatif::ProgressBar::new(choices.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} running {msg} [{pos}/{len}]")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut reports = Vec::new();
    for c in choices {
        bar.set_message(c.name().to_string());
        let report = runner::report_of(&path_of(c)?, &pass.args_for(lesson, c.name()));
        bar.inc(1);
        let mut report = report?;
        // A student's copy is meant to end clean, whatever binary it was copied from.
        report["expected"] = json!(c.expect().to_string());
        reports.push((c.name().to_string(), report));
    }
    bar.finish_and_clear();
    print!("{}", side_by_side(lesson, &reports));
    if pass.ladder {
        for (name, r) in &reports {
            let t: tcplab_core::Timeline =
                serde_json::from_value(r["timeline"].clone()).unwrap_or_default();
            println!("\nthe ladder of {name}:");
            print!("{}", tcplab_core::ladder::wire::text(&t));
        }
    }
    Ok(reports.iter().all(|(_, r)| r["verdict"] == r["expected"]))
}

pub fn run(args: &RunArgs) -> Result<ExitCode> {
    let catalog = Catalog::builtin();
    let lesson = catalog.require(&args.lesson)?;
    if args.pass.churn.given() && !lesson.churn {
        bail!(
            "--churn-secs is for lessons {}; lesson {} has no churn phase",
            catalog.churn_lessons().join(" and "),
            lesson.id
        );
    }
    let choices = chosen(lesson, args.variant.as_deref())?;
    args.pass.make_folders()?;
    let paths = build_choices(&choices)?;
    let ok = show_lesson(lesson, &choices, &paths, args.narrate, &args.pass)?;
    println!("\n{}", lesson.summary);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn root_of(given: &Option<PathBuf>) -> Result<PathBuf> {
    match given {
        Some(r) => Ok(r.clone()),
        None => runner::workspace_root().with_context(|| {
            format!(
                "no tcplab folder found here: run `{}` inside the tcplab folder, or pass --root DIR",
                command_name()
            )
        }),
    }
}

/// The lesson's student binary and the student's file, or an error that says why a lesson
/// has nothing to edit.
fn desk_of<'a>(
    lesson: &'a Lesson,
    root: &Path,
) -> Result<(&'a crate::catalog::Binary, String, PathBuf)> {
    let (Some(bin), Some(name), Some(rel)) = (
        lesson.student_binary(),
        lesson.desk_name(),
        lesson.student_file(),
    ) else {
        bail!(
            "lesson {} is read-and-run: there is nothing to edit and nothing to check; `{} run {}` \
             shows it",
            lesson.id,
            command_name(),
            lesson.id
        );
    };
    Ok((bin, name, root.join(rel)))
}

fn shipped_source(root: &Path, name: &str) -> Result<String> {
    let path = root.join(format!("exercises/src/bin/{name}.rs"));
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// Write a fresh copy of the lesson's leaking binary to the student's file.
fn write_copy(lesson: &Lesson, root: &Path, bin: &str, file: &Path) -> Result<()> {
    let copy = desk::student_copy(lesson, &shipped_source(root, bin)?, command_name());
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(file, copy).with_context(|| format!("writing {}", file.display()))
}

pub fn start(args: &StartArgs) -> Result<ExitCode> {
    let catalog = Catalog::builtin();
    let lesson = catalog.require(&args.lesson)?;
    let root = root_of(&args.root)?;
    let (bin, _, file) = desk_of(lesson, &root)?;
    let rel = lesson.student_file().unwrap_or_default();
    let cmd = command_name();
    if file.is_file() {
        println!(
            "you already have a copy of lesson {}: {rel}. Edit it, then `{cmd} check {}`; \
             `{cmd} reset {}` starts over (yours is kept as a backup).",
            lesson.id, lesson.id, lesson.id
        );
        return Ok(ExitCode::SUCCESS);
    }
    write_copy(lesson, &root, &bin.name, &file)?;
    println!("Lesson {}: {}", lesson.id, lesson.title);
    println!("{}\n", lesson.summary);
    println!("Your copy is {rel}. Look for `// TODO`.");
    println!(
        "See what it does: `{cmd} run {} --variant student --narrate`. Grade it: `{cmd} check {}` \
         (`--watch` grades every save). One hint at a time: `{cmd} hint {}`.",
        lesson.id, lesson.id, lesson.id
    );
    Ok(ExitCode::SUCCESS)
}

/// One grading of the student's copy: build it, run it, read the kernel's verdict.
struct Graded {
    passed: bool,
    verdict: String,
    reasons: Vec<String>,
    facts: Value,
}

fn grade_once(lesson: &Lesson, root: &Path, name: &str, file: &str) -> Result<Graded> {
    let plan = BuildPlan {
        shipped: Vec::new(),
        desk: vec![name.to_string()],
    };
    let paths = match runner::build_plan(root, &plan) {
        Ok(p) => p,
        Err(e) if e.downcast_ref::<runner::BuildFailed>().is_some() => {
            return Ok(Graded {
                passed: false,
                verdict: "does not compile".to_string(),
                reasons: vec![format!(
                    "{file} does not compile: the compiler's errors are above"
                )],
                facts: Value::Null,
            });
        }
        Err(e) => return Err(e),
    };
    let path = paths.get(name).context("cargo did not build your copy")?;
    let out = runner::run_path(path, &["--json".to_string()], true)?;
    let report: Option<Value> = serde_json::from_str(out.stdout.trim()).ok();
    let Some(report) = report.filter(|_| out.success) else {
        let err = out.stderr.trim();
        let err = err.strip_prefix(&format!("{name}: ")).unwrap_or(err);
        return Ok(Graded {
            passed: false,
            verdict: "error".to_string(),
            reasons: vec![format!(
                "your copy of lesson {} stopped with an error before the kernel could grade it: {err}",
                lesson.id
            )],
            facts: Value::Null,
        });
    };
    let verdict = report["verdict"].as_str().unwrap_or("?").to_string();
    let reasons = report["reasons"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Ok(Graded {
        passed: verdict == "clean",
        verdict,
        reasons,
        facts: report["facts"].clone(),
    })
}

fn print_graded(lesson: &Lesson, g: &Graded, verbose: bool) {
    if g.passed {
        println!("passed: the kernel says clean.");
    } else {
        println!(
            "not yet: {}.",
            match g.verdict.as_str() {
                "leak" => "the kernel says leak",
                other => other,
            }
        );
    }
    for r in &g.reasons {
        println!("  - {r}");
    }
    if verbose {
        if let Some(facts) = g.facts.as_object() {
            println!("what the kernel reported (lesson {}):", lesson.id);
            for (k, v) in facts {
                println!("  {}: {}", words(k), cell(v));
            }
        }
    } else if g.facts.is_object() {
        println!("  (`--verbose` shows the facts behind the verdict)");
    }
}

/// After a pass: progress, the student's diff against the reference fix, where to read on.
fn after_pass(catalog: &Catalog, lesson: &Lesson, root: &Path, file: &Path) -> Result<()> {
    let mut progress = Progress::load()?;
    progress.passed.insert(lesson.id.clone());
    progress.save()?;
    let cmd = command_name();
    if let (Some(fixed), Ok(mine)) = (lesson.fixed_binary(), std::fs::read_to_string(file)) {
        let reference = shipped_source(root, &fixed.name)?;
        let diff = desk::diff_with_reference(&mine, &reference, &fixed.name);
        if diff.trim().is_empty() {
            println!("\nYour copy is the reference fix, line for line.");
        } else {
            println!(
                "\nYour fix beside the reference ({}); a different fix that the kernel grades \
                 clean is just as right:\n{diff}",
                fixed.name
            );
        }
    }
    println!("Read more: {}", lesson.chapter);
    let next = catalog
        .lessons
        .iter()
        .skip_while(|l| l.id != lesson.id)
        .skip(1)
        .find(|l| l.student_binary().is_some() && !progress.passed.contains(&l.id));
    match next {
        Some(n) => println!(
            "Next: lesson {}, {} (`{cmd} start {}`).",
            n.id, n.title, n.id
        ),
        None => println!("That was the last lesson left to pass: well done."),
    }
    Ok(())
}

pub fn check(args: &CheckArgs) -> Result<ExitCode> {
    let catalog = Catalog::builtin();
    let lesson = catalog.require(&args.lesson)?;
    let root = root_of(&args.root)?;
    let (_, name, file) = desk_of(lesson, &root)?;
    let cmd = command_name();
    if !file.is_file() {
        bail!(
            "you have no copy of lesson {} yet: `{cmd} start {}` makes one",
            lesson.id,
            lesson.id
        );
    }
    let rel = lesson.student_file().unwrap_or_default();
    if args.json {
        let g = grade_once(lesson, &root, &name, &rel)?;
        if g.passed {
            let mut progress = Progress::load()?;
            progress.passed.insert(lesson.id.clone());
            progress.save()?;
        }
        let out = json!({
            "lesson": lesson.id,
            "passed": g.passed,
            "verdict": g.verdict,
            "reasons": g.reasons,
            "facts": g.facts,
            "student_file": rel,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(if g.passed {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let mut watcher = if args.watch {
        Some(super::watch_file::FileWatch::new(&file)?)
    } else {
        None
    };
    loop {
        println!("Lesson {}: checking {rel}", lesson.id);
        let g = grade_once(lesson, &root, &name, &rel)?;
        print_graded(lesson, &g, args.verbose);
        if g.passed {
            after_pass(&catalog, lesson, &root, &file)?;
            return Ok(ExitCode::SUCCESS);
        }
        match &mut watcher {
            None => {
                println!(
                    "Edit {rel}, then `{cmd} check {}` again (`--watch` checks on every save); \
                     `{cmd} hint {}` gives the next hint.",
                    lesson.id, lesson.id
                );
                return Ok(ExitCode::FAILURE);
            }
            Some(w) => {
                println!(
                    "\nwatching {rel}: save it to check again (Ctrl-C stops; changes are \
                     noticed by {})",
                    w.how()
                );
                w.wait_for_change()?;
                println!();
            }
        }
    }
}

pub fn hint(args: &HintArgs) -> Result<ExitCode> {
    let catalog = Catalog::builtin();
    let lesson = catalog.require(&args.lesson)?;
    let total = lesson.hints.len();
    println!("Lesson {}: {}", lesson.id, lesson.title);
    if args.all {
        for (i, h) in lesson.hints.iter().enumerate() {
            println!("  {}. {h}", i + 1);
        }
    } else {
        let mut progress = Progress::load()?;
        let seen = progress.hints_seen.get(&lesson.id).copied().unwrap_or(0);
        let shown = (seen + 1).min(total);
        for (i, h) in lesson.hints.iter().enumerate().take(shown) {
            let mark = if i + 1 == shown && seen < total {
                " (new)"
            } else {
                ""
            };
            println!("  {}.{mark} {h}", i + 1);
        }
        progress.hints_seen.insert(lesson.id.clone(), shown);
        progress.save()?;
        let left = total - shown;
        if left > 0 {
            println!(
                "{left} more hint{} left: `{} hint {}` again.",
                if left == 1 { "" } else { "s" },
                command_name(),
                lesson.id
            );
        } else {
            println!("That was the last hint.");
        }
    }
    println!("Read more: {}", lesson.chapter);
    Ok(ExitCode::SUCCESS)
}

pub fn reset(args: &ResetArgs) -> Result<ExitCode> {
    let catalog = Catalog::builtin();
    let lesson = catalog.require(&args.lesson)?;
    let root = root_of(&args.root)?;
    let (bin, name, file) = desk_of(lesson, &root)?;
    let mut kept = None;
    if file.is_file() {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let backup = root.join(format!("exercises/desk/backup/{name}.{secs}.rs"));
        if let Some(dir) = backup.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::copy(&file, &backup)
            .with_context(|| format!("keeping your copy as {}", backup.display()))?;
        kept = Some(backup);
    }
    write_copy(lesson, &root, &bin.name, &file)?;
    let mut progress = Progress::load()?;
    progress.passed.remove(&lesson.id);
    progress.hints_seen.remove(&lesson.id);
    progress.save()?;
    println!(
        "{} is a fresh copy of lesson {}; the lesson is no longer marked done.",
        lesson.student_file().unwrap_or_default(),
        lesson.id
    );
    if let Some(b) = kept {
        let shown = b.strip_prefix(&root).unwrap_or(&b);
        println!("Your version is kept as {}.", shown.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn tour(args: &TourArgs) -> Result<ExitCode> {
    let catalog = Catalog::builtin();
    let lessons: Vec<&Lesson> = if args.lessons.is_empty() {
        catalog.lessons.iter().collect()
    } else {
        args.lessons
            .iter()
            .map(|k| catalog.require(k))
            .collect::<Result<_>>()?
    };
    let all: Vec<Choice<'_>> = lessons
        .iter()
        .flat_map(|l| l.binaries.iter().map(Choice::Shipped))
        .collect();
    args.pass.make_folders()?;
    let paths = build_choices(&all)?;
    let pause = !args.no_pause && std::io::stdin().is_terminal();
    let cmd = command_name();
    println!(
        "The tcplab tour: {} lessons, each run by the real kernel on loopback.",
        lessons.len()
    );
    println!("Each table shows what the kernel reported for the leaking and the fixed program.\n");
    let mut all_ok = true;
    for (i, lesson) in lessons.iter().enumerate() {
        println!("[{}/{}] {}", i + 1, lessons.len(), "-".repeat(60));
        let choices: Vec<Choice<'_>> = lesson.binaries.iter().map(Choice::Shipped).collect();
        match show_lesson(lesson, &choices, &paths, false, &args.pass) {
            Ok(ok) => all_ok &= ok,
            Err(e) => {
                all_ok = false;
                println!("lesson {} could not run: {e:#}", lesson.id);
            }
        }
        println!(
            "\n{}\n(read: {}; try: {cmd} run {} --narrate)\n",
            lesson.summary, lesson.chapter, lesson.id
        );
        if pause && i + 1 < lessons.len() {
            print!("press Enter for the next lesson ");
            std::io::stdout().flush()?;
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
        }
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
