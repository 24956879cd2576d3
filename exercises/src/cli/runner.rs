//! What the lesson subcommands share: finding the workspace, building the lesson binaries
//! and the students' copies with cargo before every run (one call, compiler messages shown), running one with a deadline, and the saved progress.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{BufRead, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The longest a single lesson run may take before the runner stops it.
pub use tcplab_core::limits::LESSON_DEADLINE;

/// The workspace root (the folder holding `exercises/lessons.toml`), searched upwards from the
/// current directory, then where this runner was built.
pub fn workspace_root() -> Option<PathBuf> {
    let here = std::env::current_dir().ok();
    let built = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf);
    for start in here.into_iter().chain(built) {
        for dir in start.ancestors() {
            if dir.join("exercises/lessons.toml").is_file() && dir.join("Cargo.toml").is_file() {
                return Some(dir.to_path_buf());
            }
        }
    }
    None
}

/// Where a lesson binary is: beside this runner, in the same cargo target folder.
pub fn binary_path(name: &str) -> Result<PathBuf> {
    let me = std::env::current_exe().context("cannot tell where the tcplab runner is")?;
    Ok(me.with_file_name(name))
}

/// `--release` when this runner is a release build, so the lessons match it.
fn profile_args() -> &'static [&'static str] {
    if cfg!(debug_assertions) {
        &[]
    } else {
        &["--release"]
    }
}

/// How the student typed the runner: `cargo lab` when cargo started it (the alias in
/// `.cargo/config.toml`), else `tcplab`. Messages name commands this way.
pub fn command_name() -> &'static str {
    if std::env::var_os("CARGO").is_some()
        && std::env::var("CARGO_PKG_NAME").as_deref() == Ok("tcplab-exercises")
    {
        "cargo lab"
    } else {
        "tcplab"
    }
}

/// What to build in one cargo call: shipped lesson binaries and students' copies on the desk.
#[derive(Debug, Default, Clone)]
pub struct BuildPlan {
    /// Binaries of `tcplab-exercises` (`exercises/src/bin/`).
    pub shipped: Vec<String>,
    /// Binaries of `tcplab-desk` (`exercises/desk/src/bin/`).
    pub desk: Vec<String>,
}

/// Whether rendered compiler messages may carry colour: stderr is a terminal and NO_COLOR
/// is not set.
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Build everything in `plan` with one cargo call in the workspace at `root`, so that what
/// runs is what the sources say now (cargo rebuilds only what changed). The compiler's
/// errors, and its warnings about the students' copies, are shown as rustc renders them
/// (file, line, caret, help; coloured on a terminal). Returns each binary's path.
pub fn build_plan(root: &Path, plan: &BuildPlan) -> Result<HashMap<String, PathBuf>> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    let format = if colour() {
        "--message-format=json-diagnostic-rendered-ansi"
    } else {
        "--message-format=json"
    };
    cmd.current_dir(root)
        .args(["build", "--quiet", format])
        .args(profile_args());
    if !plan.shipped.is_empty() {
        cmd.args(["-p", "tcplab-exercises"]);
    }
    if !plan.desk.is_empty() {
        cmd.args(["-p", "tcplab-desk"]);
    }
    for name in plan.shipped.iter().chain(&plan.desk) {
        cmd.args(["--bin", name]);
    }
    let names: Vec<&str> = plan
        .shipped
        .iter()
        .chain(&plan.desk)
        .map(String::as_str)
        .collect();
    let spinner = colour().then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.set_message(format!("building {}", names.join(", ")));
        s.enable_steady_tick(Duration::from_millis(120));
        s
    });
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("running cargo build (is cargo on PATH?)")?;
    let stdout = child.stdout.take().context("cargo's output")?;
    let mut paths = HashMap::new();
    let mut errors_in: Vec<String> = Vec::new();
    let mut shown = HashSet::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        match msg["reason"].as_str() {
            Some("compiler-artifact") => {
                if let (Some(name), Some(exe)) =
                    (msg["target"]["name"].as_str(), msg["executable"].as_str())
                {
                    paths.insert(name.to_string(), PathBuf::from(exe));
                }
            }
            Some("compiler-message") => {
                let m = &msg["message"];
                let level = m["level"].as_str().unwrap_or("");
                let file = m["spans"]
                    .as_array()
                    .and_then(|spans| spans.iter().find(|s| s["is_primary"] == true))
                    .and_then(|s| s["file_name"].as_str())
                    .unwrap_or("")
                    .to_string();
                let on_desk = file.contains("desk/src/bin/");
                let show = level == "error" || (on_desk && level == "warning");
                if level == "error" && !file.is_empty() && !errors_in.contains(&file) {
                    errors_in.push(file.clone());
                }
                let rendered = m["rendered"].as_str().unwrap_or("");
                // A message comes once per target that includes the file; show it once.
                if show && shown.insert(rendered.to_string()) {
                    if let Some(s) = &spinner {
                        s.suspend(|| eprint!("{rendered}"));
                    } else {
                        eprint!("{rendered}");
                    }
                }
            }
            _ => {}
        }
    }
    let status = child.wait().context("waiting for cargo build")?;
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    if !status.success() {
        if errors_in.is_empty() {
            bail!("cargo build failed (its message is above)");
        }
        bail!(BuildFailed { files: errors_in });
    }
    for name in &names {
        if !paths.contains_key(*name) {
            bail!("cargo built {name} but did not say where");
        }
    }
    Ok(paths)
}

/// The build stopped on compiler errors, in these files.
#[derive(Debug)]
pub struct BuildFailed {
    pub files: Vec<String>,
}

impl std::fmt::Display for BuildFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} does not compile: the compiler's errors are above; fix them, then run the \
             command again",
            self.files.join(", ")
        )
    }
}

impl std::error::Error for BuildFailed {}

/// Where to run lesson binaries from: built fresh from the workspace's sources when there
/// is one (never a binary older than its source), else the ones beside this runner (an
/// installed runner, or the Python package's copies).
pub fn fresh_binaries(plan: &BuildPlan) -> Result<HashMap<String, PathBuf>> {
    if let Some(root) = workspace_root() {
        return build_plan(&root, plan);
    }
    if !plan.desk.is_empty() {
        bail!(
            "your lesson copies live in a tcplab folder, and none was found from here; run the \
             command inside the tcplab folder"
        );
    }
    let mut out = HashMap::new();
    for name in &plan.shipped {
        let path = binary_path(name)?;
        if !path.exists() {
            bail!(
                "lesson binary {name} is not built and no tcplab folder was found; run \
                 `cargo build --release -p tcplab-exercises --bins` in the tcplab folder"
            );
        }
        out.insert(name.clone(), path);
    }
    Ok(out)
}

/// What a lesson run produced.
pub struct RunOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Run a lesson binary at `path` with `args`, stopping it after [`LESSON_DEADLINE`].
pub fn run_path(path: &Path, args: &[String], capture: bool) -> Result<RunOutput> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut cmd = Command::new(path);
    cmd.args(args).stdin(Stdio::null());
    if capture {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", path.display()))?;
    // Read pipes on threads so a chatty child never blocks on a full pipe.
    let out = child.stdout.take().map(|mut s| {
        std::thread::spawn(move || {
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            buf
        })
    });
    let err = child.stderr.take().map(|mut s| {
        std::thread::spawn(move || {
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            buf
        })
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > LESSON_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{name} ran longer than {} s and was stopped",
                LESSON_DEADLINE.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(RunOutput {
        success: status.success(),
        stdout: out.and_then(|h| h.join().ok()).unwrap_or_default(),
        stderr: err.and_then(|h| h.join().ok()).unwrap_or_default(),
    })
}

/// Run the lesson binary at `path` with `--json` and parse its report.
pub fn report_of(path: &Path, extra: &[String]) -> Result<serde_json::Value> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut args = vec!["--json".to_string()];
    args.extend_from_slice(extra);
    let out = run_path(path, &args, true)?;
    if !out.success {
        bail!("{name} failed: {}", out.stderr.trim());
    }
    serde_json::from_str(out.stdout.trim())
        .with_context(|| format!("{name} printed no JSON report: {}", out.stderr.trim()))
}

/// Lessons a student has passed with `tcplab check`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Progress {
    pub passed: BTreeSet<String>,
    /// How many hints of each lesson the student has seen.
    #[serde(default)]
    pub hints_seen: BTreeMap<String, usize>,
}

impl Progress {
    /// Where progress is kept: `.tcplab-progress.json` in the workspace, else in the user's
    /// state folder.
    pub fn path() -> PathBuf {
        if let Some(root) = workspace_root() {
            return root.join(".tcplab-progress.json");
        }
        let base = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .unwrap_or_else(std::env::temp_dir);
        base.join("tcplab/progress.json")
    }

    /// Load saved progress; a missing file is no progress, a damaged one is reported.
    pub fn load() -> Result<Progress> {
        let path = Progress::path();
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("{} is damaged; delete it to start over", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Progress::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Save progress (written to a temporary file first, so a crash never damages it).
    pub fn save(&self) -> Result<()> {
        let path = Progress::path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)?)?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }
}
