//! The student's loop, end to end, as a new student types it: `list`, `start`, `check` on the
//! untouched copy, a typo (the compiler's error must reach the student), `check --json`, the
//! fix, `run --variant student`, `reset`, and `run` showing the leak again (never a stale
//! build). The test works on a copy of the workspace, so the real desk is never touched.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tcplab_exercises::facts;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Copy the tracked files of the workspace into `dest`.
fn copy_workspace(dest: &Path) {
    let root = repo_root();
    let out = Command::new("git")
        .current_dir(&root)
        .args(["ls-files", "-z"])
        .output()
        .expect("git ls-files");
    assert!(out.status.success(), "the test needs a git checkout");
    for file in out.stdout.split(|b| *b == 0).filter(|f| !f.is_empty()) {
        let rel = Path::new(std::str::from_utf8(file).unwrap());
        let from = root.join(rel);
        if !from.is_file() {
            continue;
        }
        let to = dest.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap();
    }
}

struct Desk {
    copy: PathBuf,
    target: PathBuf,
}

impl Desk {
    fn new(tag: &str) -> Desk {
        let copy = std::env::temp_dir().join(format!("tcplab-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&copy);
        copy_workspace(&copy);
        // A target folder of its own (kept between runs to reuse compiled dependencies), so
        // the copy's binaries never replace the ones other tests are running. One copy per
        // target folder: cargo's fingerprints do not tell two checkouts of a package apart.
        let target = repo_root().join(format!("target/check-copy-{tag}"));
        Desk { copy, target }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tcplab"));
        cmd.current_dir(&self.copy)
            .env("CARGO_TARGET_DIR", &self.target)
            .env("NO_COLOR", "1")
            // As the student types it through the cargo alias.
            .env("CARGO_PKG_NAME", "tcplab-exercises")
            .env(
                "CARGO",
                std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
            )
            .args(args);
        cmd
    }

    fn tcplab(&self, args: &[&str]) -> (bool, String) {
        let out = self.command(args).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn file(&self) -> PathBuf {
        self.copy
            .join("exercises/desk/src/bin/03-close-wait-student.rs")
    }

    fn edit(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.file()).unwrap();
        assert!(text.contains(from), "the copy has no {from:?}:\n{text}");
        std::fs::write(self.file(), text.replacen(from, to, 1)).unwrap();
    }
}

impl Drop for Desk {
    fn drop(&mut self) {
        if self.copy != repo_root() {
            let _ = std::fs::remove_dir_all(&self.copy);
        }
    }
}

const BUG: &str =
    "                thread::sleep(Duration::from_millis(20));\n                continue;";
const TYPO: &str = "                retrun;";
const FIX: &str = "                return;";

#[test]
fn a_new_student_goes_from_start_to_a_pass_and_back() {
    let desk = Desk::new("desk");

    let (ok, text) = desk.tcplab(&["list", "--json"]);
    assert!(ok, "{text}");
    let list: Value = serde_json::from_str(&text).unwrap();
    let three = list
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == "03")
        .unwrap();
    assert_eq!(
        three["student_file"],
        "exercises/desk/src/bin/03-close-wait-student.rs"
    );
    assert_eq!(three["done"], false);
    let two = list
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == "02")
        .unwrap();
    assert!(two["student_file"].is_null(), "{two}");

    // Nothing to check before `start`, and the message names the command as typed.
    let (ok, text) = desk.tcplab(&["check", "03"]);
    assert!(!ok);
    assert!(text.contains("`cargo lab start 03`"), "{text}");

    let (ok, text) = desk.tcplab(&["start", "03"]);
    assert!(ok, "{text}");
    let copy = std::fs::read_to_string(desk.file()).unwrap();
    assert!(copy.contains("// TODO: "), "{copy}");
    assert!(!copy.contains("LESSON"), "{copy}");
    let shipped =
        std::fs::read_to_string(desk.copy.join("exercises/src/bin/03-close-wait-leak.rs")).unwrap();
    assert!(
        shipped.contains("// LESSON:"),
        "the shipped file stays as it was"
    );

    // The untouched copy fails, with a sentence that says why.
    let (ok, text) = desk.tcplab(&["check", "03"]);
    assert!(!ok, "check passed on the untouched copy:\n{text}");
    assert!(text.contains("not yet: the kernel says leak"), "{text}");
    assert!(text.contains("sockets in CLOSE_WAIT"), "{text}");

    // A typo: the compiler's own error, naming the student's file, reaches the student.
    desk.edit(BUG, TYPO);
    let (ok, text) = desk.tcplab(&["check", "03"]);
    assert!(!ok, "{text}");
    assert!(text.contains("error[E0425]"), "{text}");
    assert!(text.contains("03-close-wait-student.rs:"), "{text}");
    assert!(text.contains("does not compile"), "{text}");

    // The fix, graded for an autograder.
    desk.edit(TYPO, FIX);
    let out = desk.command(&["check", "03", "--json"]).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert!(out.status.success(), "{report}");
    assert_eq!(report["lesson"], "03");
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["verdict"], "clean", "{report}");
    assert!(
        report["reasons"].as_array().is_some_and(|r| !r.is_empty()),
        "{report}"
    );
    assert_eq!(report["facts"][facts::SERVER_CLOSE_WAIT], 0, "{report}");

    // The plain check shows the diff against the reference and the way on.
    let (ok, text) = desk.tcplab(&["check", "03"]);
    assert!(ok, "{text}");
    assert!(text.contains("+++ 03-close-wait-fixed"), "{text}");
    assert!(text.contains("Next: lesson 04"), "{text}");
    let progress = std::fs::read_to_string(desk.copy.join(".tcplab-progress.json")).unwrap();
    assert!(progress.contains("\"03\""), "{progress}");
    let (ok, text) = desk.tcplab(&["run", "03", "--variant", "student"]);
    assert!(ok, "{text}");
    assert!(text.contains("clean"), "{text}");

    // Reset: a fresh copy, the student's kept, and the run shows the leak again.
    let (ok, text) = desk.tcplab(&["reset", "03"]);
    assert!(ok, "{text}");
    assert!(text.contains("is kept as exercises/desk/backup/"), "{text}");
    let backups: Vec<_> = std::fs::read_dir(desk.copy.join("exercises/desk/backup"))
        .unwrap()
        .collect();
    assert_eq!(backups.len(), 1);
    let (ok, text) = desk.tcplab(&["run", "03", "--variant", "student"]);
    assert!(!ok, "the reset copy ran clean (a stale build?):\n{text}");
    assert!(text.contains("leak, expected clean"), "{text}");
    let (ok, text) = desk.tcplab(&["run", "03", "--variant", "leak"]);
    assert!(ok, "{text}");
    assert!(text.contains("leak"), "{text}");

    // On the same copy: two copies of the workspace must not share a target folder, since
    // cargo's fingerprints do not tell two checkouts of one package apart.
    check_watch_grades_every_save_until_it_passes(&desk);
}

/// `check --watch` on a fresh copy: the first check fails, the saved fix passes.
fn check_watch_grades_every_save_until_it_passes(desk: &Desk) {
    let mut child = desk
        .command(&["check", "03", "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut seen = Vec::new();
    let mut fixed = false;
    let passed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if line.starts_with("watching") && !fixed {
                    desk.edit(BUG, FIX);
                    fixed = true;
                }
                let done = line.starts_with("passed");
                seen.push(line);
                if done {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let status = child.wait().unwrap();
    let text = seen.join("\n");
    assert!(passed, "no pass after the fix was saved:\n{text}");
    assert!(
        text.contains("not yet"),
        "the first check must fail:\n{text}"
    );
    let _ = status;
}

#[test]
fn variants_come_from_the_catalog() {
    // Shipped binaries only: this runs in the workspace itself, building nothing new.
    let desk = Desk {
        copy: repo_root(),
        target: repo_root().join("target"),
    };
    // 05 and 06 name their binaries after who closes or which option: `leak` still works.
    let (ok, text) = desk.tcplab(&["run", "06", "--variant", "leak"]);
    assert!(ok, "{text}");
    assert!(text.contains("06-restart-no-reuseaddr"), "{text}");
    let (ok, text) = desk.tcplab(&["run", "05", "--variant", "fixed", "-n", "20"]);
    assert!(ok, "{text}");
    assert!(text.contains("05-client-closes-first"), "{text}");
    // Anything else is refused with the valid choices, never a guess.
    let (ok, text) = desk.tcplab(&["run", "06", "--variant", "reuseaddr"]);
    assert!(!ok);
    assert!(text.contains("leak, fixed, student"), "{text}");
    // `--pcap DIR` writes one capture per binary run, named after it.
    let dir = std::env::temp_dir().join(format!("tcplab-pcap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (ok, text) = desk.tcplab(&["run", "03", "-n", "2", "--pcap", dir.to_str().unwrap()]);
    assert!(ok, "{text}");
    for name in ["03-close-wait-leak", "03-close-wait-fixed"] {
        let file = dir.join(format!("{name}.pcapng"));
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        assert!(size > 0, "{} is missing or empty:\n{text}", file.display());
    }
    let _ = std::fs::remove_dir_all(&dir);
    // A read-and-run lesson gives no check credit.
    let (ok, text) = desk.tcplab(&["check", "02"]);
    assert!(!ok);
    assert!(text.contains("read-and-run"), "{text}");
}
