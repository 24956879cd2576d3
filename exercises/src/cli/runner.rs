//! What the lesson subcommands share: finding the workspace and the built lesson binaries,
//! building them when needed, running one with a deadline, and the saved progress.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The longest a single lesson run may take before the runner stops it.
pub const LESSON_DEADLINE: Duration = Duration::from_secs(180);

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

/// Build lesson binaries with cargo (all of them when `names` is empty).
pub fn build(root: &Path, names: &[&str], quiet: bool) -> Result<()> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root)
        .args(["build", "--quiet", "-p", "tcplab-exercises"])
        .args(profile_args());
    if names.is_empty() {
        cmd.arg("--bins");
    } else {
        for n in names {
            cmd.args(["--bin", n]);
        }
    }
    let spinner = (!quiet).then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.set_message(format!(
            "building {}",
            if names.is_empty() {
                "the lessons".to_string()
            } else {
                names.join(", ")
            }
        ));
        s.enable_steady_tick(Duration::from_millis(120));
        s
    });
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .context("running cargo build")?;
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    if !status.success() {
        bail!("cargo build failed: fix the compile errors above, then run the command again");
    }
    Ok(())
}

/// Make sure every named binary exists beside the runner, building them if a workspace is
/// at hand.
pub fn ensure_built(names: &[&str]) -> Result<()> {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| binary_path(n).map(|p| !p.exists()).unwrap_or(true))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    match workspace_root() {
        Some(root) => build(&root, &[], false),
        None => bail!(
            "lesson binaries {missing:?} are not built and no tcplab workspace was found; run \
             `cargo build -p tcplab-exercises --bins` in the tcplab folder"
        ),
    }
}

/// What a lesson run produced.
pub struct RunOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Build one lesson binary in the workspace at `root` and return the path cargo built it to.
pub fn build_one(root: &Path, name: &str) -> Result<PathBuf> {
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(format!("building {name}"));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args([
            "build",
            "--quiet",
            "--message-format=json",
            "-p",
            "tcplab-exercises",
            "--bin",
            name,
        ])
        .args(profile_args())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build")?;
    spinner.finish_and_clear();
    if !out.status.success() {
        bail!("{name} does not compile: fix the errors above, then run the command again");
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .with_context(|| format!("cargo built {name} but did not say where"))
}

/// Run a lesson binary by name (beside the runner) with `args`.
pub fn run_binary(name: &str, args: &[String], capture: bool) -> Result<RunOutput> {
    run_path(&binary_path(name)?, args, capture)
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

/// Run a lesson binary by name with `--json` and parse its report.
pub fn run_report(name: &str, extra: &[String]) -> Result<serde_json::Value> {
    report_of(&binary_path(name)?, extra)
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
