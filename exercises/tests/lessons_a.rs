//! Lessons 01, 02, 05 and 06, run as a student runs them (`--json`), graded by the kernel:
//! each binary must give the verdict the catalog expects, and the facts the lesson is about
//! must be in its report. Every lesson binds 127.0.0.1:0 and observes only its own port, so
//! these tests run in parallel with anything else on the machine.

mod common;

use std::process::Command;

use common::{binary_path, check_report, fact, num, run, run_unprivileged};
use serde_json::Value;

#[test]
fn l01_without_accept_the_queue_fills_and_clients_wait() {
    let r = run("01-accept-queue-full", &[]);
    let backlog = num(&r, "backlog");
    assert_eq!(fact(&r, "queue_full"), &Value::Bool(true), "{r}");
    assert_eq!(num(&r, "accept_queue"), backlog + 1, "{r}");
    assert_eq!(num(&r, "server_established"), backlog + 1, "{r}");
    assert_eq!(num(&r, "client_established"), backlog + 1, "{r}");
    assert_eq!(
        num(&r, "client_syn_sent"),
        num(&r, "connections") - (backlog + 1),
        "{r}"
    );
}

#[test]
fn l01_accepting_server_connects_everyone() {
    let r = run("01-accepts", &[]);
    let n = num(&r, "connections");
    assert_eq!(num(&r, "client_established"), n, "{r}");
    assert_eq!(num(&r, "server_established"), n, "{r}");
    assert_eq!(num(&r, "accept_queue"), 0, "{r}");
    assert_eq!(num(&r, "client_syn_sent"), 0, "{r}");
}

#[test]
fn l02_the_kernel_shows_the_full_close() {
    let r = run("02-four-way-close", &[]);
    assert_eq!(num(&r, "client_fin_wait2"), 1, "{r}");
    assert_eq!(num(&r, "server_close_wait_between"), 1, "{r}");
    assert_eq!(num(&r, "client_time_wait"), 1, "{r}");
    assert_eq!(num(&r, "server_close_wait"), 0, "{r}");
    let timer = num(&r, "timer_ms");
    assert!((50_000..=60_000).contains(&timer), "{r}");
}

fn check_time_wait(name: &str, side: &str, other: &str) {
    let r = run(name, &[]);
    let n = num(&r, "connections");
    // Every connection's TIME_WAIT is on `side`, except the few whose 4-tuple a later
    // connection of the same run reused (the report counts those).
    let on_side = num(&r, &format!("{side}_time_wait"));
    assert!(on_side >= n - n / 10, "{r}");
    assert_eq!(num(&r, &format!("{other}_time_wait")), 0, "{r}");
    let (lo, hi) = (num(&r, "timer_ms_min"), num(&r, "timer_ms_max"));
    assert!(
        (50_000..=60_000).contains(&lo) && (50_000..=60_000).contains(&hi),
        "{r}"
    );
}

#[test]
fn l05_server_closing_first_gets_time_wait() {
    check_time_wait("05-server-closes-first", "server", "client");
}

#[test]
fn l05_client_closing_first_keeps_time_wait() {
    check_time_wait("05-client-closes-first", "client", "server");
}

#[test]
fn l05_churn_piles_up_time_wait() {
    let name = "05-server-closes-first";
    let args = ["--json", "--churn-secs", "1", "-n", "20"];
    // The churn needs a private network namespace; where neither root nor unprivileged user
    // namespaces are available (some CI runners), the binary says so and this test skips.
    let out = Command::new(binary_path(name)).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("unshare() failed") {
        eprintln!("skipping: {}", stderr.trim());
        return;
    }
    let r = check_report(name, &out);
    assert_eq!(num(&r, "server_time_wait"), 20, "{r}");
    assert_eq!(fact(&r, "churn_closer").as_str(), Some("server"), "{r}");
    let made = num(&r, "churn_connections");
    assert!(made > 100, "{r}");
    assert_eq!(num(&r, "churn_failed"), 0, "{r}");
    let peak = num(&r, "churn_peak_time_wait");
    assert!(peak > 0 && peak <= made, "{r}");
    assert!(num(&r, "tcp_max_tw_buckets") > 0, "{r}");
}

#[test]
fn l06_without_reuseaddr_bind_gets_eaddrinuse() {
    let r = run("06-restart-no-reuseaddr", &[]);
    assert_eq!(fact(&r, "bind_error").as_str(), Some("EADDRINUSE"), "{r}");
    assert_eq!(fact(&r, "bind_ok"), &Value::Bool(false), "{r}");
    assert_eq!(num(&r, "server_time_wait"), 1, "{r}");
}

#[test]
fn l06_with_reuseaddr_bind_succeeds_next_to_time_wait() {
    let r = run("06-restart-reuseaddr", &[]);
    assert_eq!(fact(&r, "bind_ok"), &Value::Bool(true), "{r}");
    assert_eq!(fact(&r, "bind_error"), &Value::Null, "{r}");
    assert_eq!(num(&r, "server_time_wait"), 1, "{r}");
    assert_eq!(num(&r, "listening_after_restart"), 1, "{r}");
}

/// A student is not root: the same lesson as uid 65534 (nobody).
#[test]
fn l06_works_without_root() {
    let Some(r) = run_unprivileged("06-restart-no-reuseaddr", &[]) else {
        return;
    };
    assert_eq!(fact(&r, "bind_error").as_str(), Some("EADDRINUSE"), "{r}");
    assert_eq!(num(&r, "server_time_wait"), 1, "{r}");
}
