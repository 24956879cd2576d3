//! What the lesson tests share: run a lesson binary as a student does (`--json`), check its
//! verdict against the catalog, read its facts; and the same as an unprivileged user.

#![allow(dead_code)] // each test file uses a part

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tcplab_exercises::catalog::Catalog;

/// A built lesson binary, beside the runner.
pub fn binary_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_tcplab")).with_file_name(name)
}

/// The verdict the catalog expects of `name`.
pub fn expected(name: &str) -> String {
    let catalog = Catalog::builtin();
    let (_, bin) = catalog.binary(name).expect("binary in the catalog");
    bin.expect.to_string()
}

/// Check a finished run: exit 0, a JSON report, the catalog's verdict.
pub fn check_report(name: &str, out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{name}: exit {:?}\nstderr: {}\nstdout: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{name}: report is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(
        report["verdict"],
        expected(name),
        "{name}: verdict differs from the catalog's expect; report: {report}"
    );
    assert_eq!(report["expected"], expected(name), "{report}");
    assert_eq!(report["binary"], name, "{report}");
    report
}

/// Run a lesson binary with `--json` and `extra` flags; returns its checked report.
pub fn run(name: &str, extra: &[&str]) -> Value {
    run_with_env(name, extra, &[])
}

/// [`run`] with these environment variables set for the lesson.
pub fn run_with_env(name: &str, extra: &[&str], env: &[(&str, &str)]) -> Value {
    let out = Command::new(binary_path(name))
        .arg("--json")
        .args(extra)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("{name}: cannot run: {e}"));
    check_report(name, &out)
}

/// Run a lesson binary as an unprivileged user and check its report: as root, as uid/gid
/// 65534 (nobody) through `setpriv`, from a copy in a world-readable folder (the build folder
/// may not be); as anyone else, as that user, who already is unprivileged.
pub fn run_unprivileged(name: &str, extra: &[&str]) -> Value {
    run_unprivileged_with_env(name, extra, &[])
}

/// [`run_unprivileged`] with these environment variables set for the lesson.
pub fn run_unprivileged_with_env(name: &str, extra: &[&str], env: &[(&str, &str)]) -> Value {
    let report = if !tcplab_core::kernel::is_root() {
        run_with_env(name, extra, env)
    } else {
        let dir = std::env::temp_dir().join(format!("tcplab-unpriv-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.join(name);
        std::fs::copy(binary_path(name), &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&copy)
            .arg("--json")
            .args(extra)
            .current_dir(&dir)
            .env("HOME", &dir)
            .envs(env.iter().copied())
            .output();
        let _ = std::fs::remove_dir_all(&dir);
        let out = out.unwrap_or_else(|e| panic!("{name}: cannot run setpriv (util-linux): {e}"));
        check_report(name, &out)
    };
    assert_ne!(
        report["backend"], "tracepoint",
        "{name} traced without root: {report}"
    );
    report
}

/// A fact of the report (null when absent).
pub fn fact<'a>(report: &'a Value, key: &str) -> &'a Value {
    &report["facts"][key]
}

/// A fact that must be a count.
pub fn num(report: &Value, key: &str) -> u64 {
    fact(report, key)
        .as_u64()
        .unwrap_or_else(|| panic!("fact {key} is not a count: {report}"))
}
