//! The student-facing lesson commands: `list`, `run`, `check`, `hint`, `reset` and `tour`.
//! rustlings is the model for the experience; the difference is who grades: here a lesson
//! passes when the kernel shows it clean, not when a unit test does.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::Value;

use super::runner::{self, Progress};
use crate::catalog::{Catalog, Lesson};
use crate::lesson::BackendArg;

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
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
    /// Lessons 05 and 09: afterwards, run the churn generator this many seconds (at most 10).
    #[arg(long, value_name = "SECS")]
    pub churn_secs: Option<f64>,
    /// With --churn-secs: connections per second to aim at instead of full speed.
    #[arg(long, value_name = "PER_SEC", requires = "churn_secs")]
    pub churn_rate: Option<f64>,
}

impl PassThrough {
    /// The flags for one of `lesson`'s binaries: the churn flags go to lessons with a churn
    /// phase only (`run` refuses them for the others; the tour passes them where they apply).
    fn args_for(&self, lesson: &Lesson) -> Vec<String> {
        if lesson.churn {
            self.args()
        } else {
            PassThrough {
                churn_secs: None,
                churn_rate: None,
                ..self.clone()
            }
            .args()
        }
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
            let name = match b {
                BackendArg::Auto => "auto",
                BackendArg::Tracepoint => "tracepoint",
                BackendArg::Poll => "poll",
            };
            out.extend(["--backend".to_string(), name.to_string()]);
        }
        if let Some(secs) = self.churn_secs {
            out.extend(["--churn-secs".to_string(), secs.to_string()]);
        }
        if let Some(rate) = self.churn_rate {
            out.extend(["--churn-rate".to_string(), rate.to_string()]);
        }
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
    /// Only this binary: a full name or its last word (`leak`, `fixed`).
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
    /// The tcplab folder holding your edited lesson (default: found from here).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct LessonKey {
    /// Lesson id, slug or binary name.
    pub lesson: String,
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
    if args.json {
        println!("{}", serde_json::to_string_pretty(&catalog)?);
        return Ok(ExitCode::SUCCESS);
    }
    let progress = Progress::load()?;
    println!("{:<4} {:<6} {:<55} binaries", "id", "done", "title");
    for l in &catalog.lessons {
        let done = if progress.passed.contains(&l.id) {
            "yes"
        } else {
            "-"
        };
        let bins: Vec<&str> = l.binaries.iter().map(|b| b.name.as_str()).collect();
        println!(
            "{:<4} {:<6} {:<55} {}",
            l.id,
            done,
            l.title,
            bins.join(", ")
        );
    }
    println!(
        "\n{} of {} lessons checked. `tcplab run ID` shows a lesson; `tcplab check ID` grades your fix.",
        progress.passed.len(),
        catalog.lessons.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// One line per (side, state) seen in any report, then the facts, one column per binary.
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
    let width = reports
        .iter()
        .map(|(n, _)| n.len())
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
        let v = r["verdict"].as_str().unwrap_or("?");
        let mark = if r["verdict"] == r["expected"] {
            ""
        } else {
            " (!)"
        };
        out.push_str(&format!("{:<width$}", format!("{v}{mark}")));
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
        out.push_str(&format!("{key:<label$}"));
        for (_, r) in reports {
            let v = match &r["facts"][key] {
                Value::Null => "-".to_string(),
                Value::String(s) => s.clone(),
                // A list (the churn's samples) does not fit a cell: its length does.
                Value::Array(items) => format!("[{} items]", items.len()),
                Value::Number(n) => match n.as_f64() {
                    Some(x) if n.is_f64() => format!("{x:.2}"),
                    _ => n.to_string(),
                },
                other => other.to_string(),
            };
            out.push_str(&format!("{v:<width$}"));
        }
        out.push('\n');
    }
    out
}

fn chosen_binaries<'a>(lesson: &'a Lesson, variant: Option<&str>) -> Result<Vec<&'a str>> {
    match variant {
        None => Ok(lesson.binaries.iter().map(|b| b.name.as_str()).collect()),
        Some(v) => lesson
            .binary(v)
            .map(|b| vec![b.name.as_str()])
            .with_context(|| {
                format!(
                    "lesson {} has no binary {v:?}; it has: {}",
                    lesson.id,
                    lesson
                        .binaries
                        .iter()
                        .map(|b| b.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }),
    }
}

fn show_lesson(lesson: &Lesson, names: &[&str], narrate: bool, pass: &PassThrough) -> Result<bool> {
    runner::ensure_built(names)?;
    if narrate {
        let mut ok = true;
        for name in names {
            let out = runner::run_binary(name, &pass.args_for(lesson), false)?;
            ok &= out.success;
        }
        return Ok(ok);
    }
    let bar = indicatif::ProgressBar::new(names.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} running {msg} [{pos}/{len}]")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let mut reports = Vec::new();
    for name in names {
        bar.set_message(name.to_string());
        let report = runner::run_report(name, &pass.args_for(lesson));
        bar.inc(1);
        reports.push((name.to_string(), report?));
    }
    bar.finish_and_clear();
    print!("{}", side_by_side(lesson, &reports));
    Ok(reports.iter().all(|(_, r)| r["verdict"] == r["expected"]))
}

pub fn run(args: &RunArgs) -> Result<ExitCode> {
    let catalog = Catalog::builtin();
    let lesson = catalog.require(&args.lesson)?;
    let names = chosen_binaries(lesson, args.variant.as_deref())?;
    if args.pass.churn_secs.is_some() && !lesson.churn {
        bail!(
            "--churn-secs is for lessons {}; lesson {} has no churn phase",
            catalog.churn_lessons().join(" and "),
            lesson.id
        );
    }
    let ok = show_lesson(lesson, &names, args.narrate, &args.pass)?;
    println!("\n{}", lesson.summary);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn check(args: &CheckArgs) -> Result<ExitCode> {
    let catalog = Catalog::builtin();
    let lesson = catalog.require(&args.lesson)?;
    let student = lesson.student_binary();
    let root = match &args.root {
        Some(r) => r.clone(),
        None => runner::workspace_root().context(
            "no tcplab folder found here: run `tcplab check` inside the tcplab folder, or pass --root DIR",
        )?,
    };
    let path = runner::build_one(&root, &student.name)?;
    let report = runner::report_of(&path, &[])?;
    let verdict = report["verdict"].as_str().unwrap_or("?");
    println!("{}: the kernel says {verdict}", student.name);
    println!("observed: {}", report["observed"]);
    if verdict == "clean" {
        let mut progress = Progress::load()?;
        progress.passed.insert(lesson.id.clone());
        progress.save()?;
        println!(
            "check passed: lesson {} done ({} of {}).",
            lesson.id,
            progress.passed.len(),
            catalog.lessons.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "not yet: edit exercises/src/bin/{}.rs (look for `// LESSON:`), then run `tcplab check {}` again. \
             `tcplab hint {}` helps.",
            student.name, lesson.id, lesson.id
        );
        Ok(ExitCode::FAILURE)
    }
}

pub fn hint(args: &LessonKey) -> Result<ExitCode> {
    let catalog = Catalog::builtin();
    let lesson = catalog.require(&args.lesson)?;
    println!("Lesson {}: {}", lesson.id, lesson.title);
    for (i, h) in lesson.hints.iter().enumerate() {
        println!("  {}. {h}", i + 1);
    }
    println!("Read more: {}", lesson.chapter);
    Ok(ExitCode::SUCCESS)
}

pub fn reset(args: &ResetArgs) -> Result<ExitCode> {
    let catalog = Catalog::builtin();
    let lesson = catalog.require(&args.lesson)?;
    let root = match &args.root {
        Some(r) => r.clone(),
        None => runner::workspace_root().context("no tcplab folder found here; pass --root DIR")?,
    };
    let file = format!("exercises/src/bin/{}.rs", lesson.student_binary().name);
    let status = Command::new("git")
        .current_dir(&root)
        .args(["checkout", "HEAD", "--", &file])
        .status()
        .context("running git (reset restores the file as last committed, so it needs git)")?;
    if !status.success() {
        bail!(
            "git could not restore {file}; is {} a git checkout?",
            root.display()
        );
    }
    let mut progress = Progress::load()?;
    progress.passed.remove(&lesson.id);
    progress.save()?;
    println!(
        "restored {file} as last committed; lesson {} is no longer marked done",
        lesson.id
    );
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
    let names: Vec<&str> = lessons
        .iter()
        .flat_map(|l| l.binaries.iter().map(|b| b.name.as_str()))
        .collect();
    runner::ensure_built(&names)?;
    let pause = !args.no_pause && std::io::stdin().is_terminal();
    println!(
        "The tcplab tour: {} lessons, each run by the real kernel on loopback.",
        lessons.len()
    );
    println!("Each table shows what the kernel reported for the leaking and the fixed program.\n");
    let mut all_ok = true;
    for (i, lesson) in lessons.iter().enumerate() {
        println!("[{}/{}] {}", i + 1, lessons.len(), "-".repeat(60));
        let bins: Vec<&str> = lesson.binaries.iter().map(|b| b.name.as_str()).collect();
        match show_lesson(lesson, &bins, false, &args.pass) {
            Ok(ok) => all_ok &= ok,
            Err(e) => {
                all_ok = false;
                println!("lesson {} could not run: {e:#}", lesson.id);
            }
        }
        println!(
            "\n{}\n(read: {}; try: tcplab run {} --narrate)\n",
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
