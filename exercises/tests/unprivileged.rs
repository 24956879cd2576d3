//! Every lesson binary, run as an unprivileged user (uid 65534 through `setpriv`), must give
//! the verdict the catalog expects, observing through sock_diag polling instead of the
//! tracepoint. Students and instructors mostly have no root; this path is tested, not assumed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use tcplab_exercises::catalog::Catalog;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn every_binary_gives_its_verdict_without_root() {
    if !is_root() {
        // Not root: the catalog test already runs every binary as this unprivileged user.
        eprintln!("skipped: needs root to switch to uid 65534 (the catalog test covers this user)");
        return;
    }
    // A world-readable copy: the build folder may sit under a directory uid 65534 cannot enter.
    let dir = std::env::temp_dir().join(format!("tcplab-unpriv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let built = Path::new(env!("CARGO_BIN_EXE_tcplab")).parent().unwrap();
    let mut failures = Vec::new();
    for lesson in Catalog::builtin().lessons {
        for bin in &lesson.binaries {
            let copy = dir.join(&bin.name);
            std::fs::copy(built.join(&bin.name), &copy).unwrap();
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
            let out = Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(&copy)
                .arg("--json")
                .current_dir(&dir)
                .env("HOME", &dir)
                .output()
                .expect("setpriv (util-linux) is needed for this test");
            if !out.status.success() {
                failures.push(format!(
                    "{}: exit {:?}: {}",
                    bin.name,
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
                continue;
            }
            let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if report["verdict"] != bin.expect.to_string() {
                failures.push(format!(
                    "{}: verdict {}, expected {}",
                    bin.name, report["verdict"], bin.expect
                ));
            }
            if report["backend"] == "tracepoint" {
                failures.push(format!("{}: used the tracepoint without root", bin.name));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
