//! Lessons 04, 07 and 08, run as a student runs them (`BINARY --json`): each binary must give
//! the verdict the catalog expects, and the facts the lesson teaches must hold as the kernel
//! reported them. Every lesson uses its own port 0 listener and counts only its own sockets,
//! so these tests run in parallel with anything else on the machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tcplab_exercises::catalog::Catalog;

fn binary_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_tcplab")).with_file_name(name)
}

/// Parse a lesson's JSON report, after checking it exited 0.
fn report_of(name: &str, out: std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{name} exited {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{name}: report is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Run a lesson binary with `--json`, check its verdict against the catalog, return the report.
fn run(name: &str) -> Value {
    let out = Command::new(binary_path(name))
        .arg("--json")
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"));
    let report = report_of(name, out);
    check_verdict(name, &report);
    report
}

fn check_verdict(name: &str, report: &Value) {
    let catalog = Catalog::builtin();
    let (_, bin) = catalog.binary(name).expect("binary in the catalog");
    assert_eq!(
        report["verdict"].as_str(),
        Some(bin.expect.to_string().as_str()),
        "{name}: verdict differs from the catalog's expect; report: {report}"
    );
    assert_eq!(report["binary"], name);
    assert!(report["server_port"].as_u64().is_some_and(|p| p > 0));
}

fn fact<'a>(report: &'a Value, key: &str) -> &'a Value {
    let v = &report["facts"][key];
    assert!(
        !v.is_null() || report["facts"].get(key).is_some(),
        "no fact {key}: {report}"
    );
    v
}

fn num(report: &Value, key: &str) -> u64 {
    fact(report, key)
        .as_u64()
        .unwrap_or_else(|| panic!("fact {key} is not a count: {report}"))
}

#[test]
fn lesson_04_async_leak_keeps_every_socket_in_close_wait() {
    let r = run("04-async-leak");
    let n = num(&r, "connections");
    assert_eq!(n, 10);
    assert_eq!(num(&r, "server_close_wait"), n, "{r}");
    assert_eq!(num(&r, "client_fin_wait2"), n, "{r}");
    assert_eq!(num(&r, "client_time_wait"), 0, "{r}");
    assert_eq!(r["observed"]["server"]["CLOSE_WAIT"], n);
}

#[test]
fn lesson_04_async_fixed_closes_every_socket() {
    let r = run("04-async-fixed");
    let n = num(&r, "connections");
    assert_eq!(num(&r, "server_close_wait"), 0, "{r}");
    assert_eq!(num(&r, "client_fin_wait2"), 0, "{r}");
    assert_eq!(num(&r, "client_time_wait"), n, "{r}");
    assert!(r["observed"]["server"].get("CLOSE_WAIT").is_none(), "{r}");
}

#[test]
fn lesson_07_linger_zero_loses_bytes_to_rst() {
    let r = run("07-linger-zero");
    let sent = num(&r, "bytes_sent");
    let received = num(&r, "bytes_received");
    assert!(sent > 0, "{r}");
    assert!(received < sent, "SO_LINGER 0 should lose bytes: {r}");
    assert_eq!(fact(&r, "client_error"), "ECONNRESET", "{r}");
    assert_eq!(num(&r, "server_time_wait"), 0, "{r}");
    // The second way: close() with unread data in the receive buffer.
    assert_eq!(fact(&r, "unread_client_error"), "ECONNRESET", "{r}");
    assert_eq!(num(&r, "unread_server_time_wait"), 0, "{r}");
}

#[test]
fn lesson_07_graceful_close_delivers_every_byte() {
    let r = run("07-graceful-close");
    let sent = num(&r, "bytes_sent");
    assert!(sent > 0, "{r}");
    assert_eq!(num(&r, "bytes_received"), sent, "{r}");
    assert!(fact(&r, "client_error").is_null(), "{r}");
    assert_eq!(num(&r, "server_time_wait"), 1, "{r}");
    assert!(fact(&r, "unread_client_error").is_null(), "{r}");
    assert_eq!(num(&r, "unread_server_time_wait"), 1, "{r}");
}

#[test]
fn lesson_08_close_too_early_loses_the_reply() {
    let r = run("08-close-too-early");
    let expected = num(&r, "reply_bytes_expected");
    assert!(num(&r, "reply_bytes_received") < expected, "{r}");
    let err = fact(&r, "server_error").as_str().unwrap_or("none");
    assert!(
        err == "EPIPE" || err == "ECONNRESET",
        "server should see the RST: {r}"
    );
    assert_eq!(num(&r, "client_time_wait"), 0, "{r}");
    assert_eq!(num(&r, "half_closed_server_close_wait"), 1, "{r}");
    assert_eq!(num(&r, "half_closed_client_fin_wait2"), 1, "{r}");
}

#[test]
fn lesson_08_shutdown_write_receives_the_reply() {
    let r = run("08-shutdown-write");
    let expected = num(&r, "reply_bytes_expected");
    assert!(expected > 0);
    assert_eq!(num(&r, "reply_bytes_received"), expected, "{r}");
    assert!(fact(&r, "server_error").is_null(), "{r}");
    assert_eq!(num(&r, "client_time_wait"), 1, "{r}");
    assert_eq!(num(&r, "half_closed_server_close_wait"), 1, "{r}");
    assert_eq!(num(&r, "half_closed_client_fin_wait2"), 1, "{r}");
}

/// A student without root gets the same verdict: sock_diag dumps and /proc/net/netstat need
/// no privileges. Runs as nobody (uid 65534) when the tests run as root; skipped otherwise.
#[test]
fn lesson_07_works_without_root() {
    // SAFETY: geteuid has no preconditions and no side effects.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: dropping to uid 65534 needs root");
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: setpriv (util-linux) is not installed");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let name = "07-linger-zero";
    // The build directory may not be readable by nobody: copy the binary somewhere that is.
    let dir = std::env::temp_dir().join(format!("tcplab-lessons-b-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.join(name);
    std::fs::copy(binary_path(name), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&copy)
        .arg("--json")
        .current_dir(&dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let r = report_of(name, out);
    check_verdict(name, &r);
    assert!(num(&r, "bytes_received") < num(&r, "bytes_sent"), "{r}");
    assert_eq!(fact(&r, "client_error"), "ECONNRESET", "{r}");
    assert_eq!(num(&r, "server_time_wait"), 0, "{r}");
}
