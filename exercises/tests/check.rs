//! `tcplab check` grades the student's file by what the kernel shows: it must fail on the
//! leaking lesson as shipped and pass once the file holds the fix. The test works on a copy of
//! the workspace, so the real lesson file is never touched.

use std::path::{Path, PathBuf};
use std::process::Command;

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

fn check(copy: &Path, target: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tcplab"))
        .current_dir(copy)
        .env("CARGO_TARGET_DIR", target)
        .args(["check", "03", "--root"])
        .arg(copy)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn check_fails_on_the_leak_and_passes_on_the_fix() {
    let copy = std::env::temp_dir().join(format!("tcplab-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&copy);
    copy_workspace(&copy);
    // A target folder of its own (kept between runs to reuse compiled dependencies), so the
    // copy's binaries never replace the ones other tests are running.
    let target = repo_root().join("target/check-copy");

    let (passed, text) = check(&copy, &target);
    assert!(!passed, "check passed on the leaking code:\n{text}");
    assert!(text.contains("the kernel says leak"), "{text}");
    assert!(text.contains("not yet"), "{text}");

    let bins = copy.join("exercises/src/bin");
    std::fs::copy(
        bins.join("03-close-wait-fixed.rs"),
        bins.join("03-close-wait-leak.rs"),
    )
    .unwrap();
    let (passed, text) = check(&copy, &target);
    assert!(passed, "check failed on the fixed code:\n{text}");
    assert!(text.contains("the kernel says clean"), "{text}");
    let progress = std::fs::read_to_string(copy.join(".tcplab-progress.json")).unwrap();
    assert!(progress.contains("\"03\""), "{progress}");
    let _ = std::fs::remove_dir_all(&copy);
}
