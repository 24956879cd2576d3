//! Lessons 01, 02, 05 and 06, run as a student runs them (`--json`), graded by the kernel:
//! each binary must give the verdict the catalog expects, and the facts the lesson is about
//! must be in its report. Every lesson binds 127.0.0.1:0 and observes only its own port, so
//! these tests run in parallel with anything else on the machine.

mod common;

use std::process::Command;

use common::{binary_path, check_report, fact, num, run, run_unprivileged};
use serde_json::Value;
use tcplab_exercises::facts;

#[test]
fn l01_without_accept_the_queue_fills_and_clients_wait() {
    let r = run("01-accept-queue-full", &[]);
    let backlog = num(&r, facts::BACKLOG);
    assert_eq!(fact(&r, facts::QUEUE_FULL), &Value::Bool(true), "{r}");
    assert_eq!(num(&r, facts::ACCEPT_QUEUE), backlog + 1, "{r}");
    assert_eq!(num(&r, facts::SERVER_ESTABLISHED), backlog + 1, "{r}");
    assert_eq!(num(&r, facts::CLIENT_ESTABLISHED), backlog + 1, "{r}");
    assert_eq!(
        num(&r, facts::CLIENT_SYN_SENT),
        num(&r, facts::CONNECTIONS) - (backlog + 1),
        "{r}"
    );
}

#[test]
fn l01_accepting_server_connects_everyone() {
    let r = run("01-accepts", &[]);
    let n = num(&r, facts::CONNECTIONS);
    assert_eq!(num(&r, facts::CLIENT_ESTABLISHED), n, "{r}");
    assert_eq!(num(&r, facts::SERVER_ESTABLISHED), n, "{r}");
    assert_eq!(num(&r, facts::ACCEPT_QUEUE), 0, "{r}");
    assert_eq!(num(&r, facts::CLIENT_SYN_SENT), 0, "{r}");
}

#[test]
fn l02_the_kernel_shows_the_full_close() {
    let r = run("02-four-way-close", &[]);
    assert_eq!(num(&r, facts::CLIENT_FIN_WAIT2), 1, "{r}");
    assert_eq!(num(&r, facts::SERVER_CLOSE_WAIT_BETWEEN), 1, "{r}");
    assert_eq!(num(&r, facts::CLIENT_TIME_WAIT), 1, "{r}");
    assert_eq!(num(&r, facts::SERVER_CLOSE_WAIT), 0, "{r}");
    let timer = num(&r, facts::TIMER_MS);
    assert!((50_000..=60_000).contains(&timer), "{r}");
}

fn check_time_wait(name: &str, side: &str, other: &str) {
    let r = run(name, &[]);
    let n = num(&r, facts::CONNECTIONS);
    // Every connection's TIME_WAIT is on `side`, except the few whose 4-tuple a later
    // connection of the same run reused (the report counts those).
    let on_side = num(&r, &format!("{side}_time_wait"));
    assert!(on_side >= n - n / 10, "{r}");
    assert_eq!(num(&r, &format!("{other}_time_wait")), 0, "{r}");
    let (lo, hi) = (num(&r, facts::TIMER_MS_MIN), num(&r, facts::TIMER_MS_MAX));
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

/// Run a lesson binary with a churn phase; `None` (the test skips) where this machine allows
/// no private network namespace: neither root nor unprivileged user namespaces.
fn run_churn(name: &str, args: &[&str]) -> Option<Value> {
    let out = Command::new(binary_path(name))
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("cannot create a private network namespace") {
        eprintln!("skipping: {}", stderr.trim());
        return None;
    }
    Some(check_report(name, &out))
}

/// The samples' (seconds, connections, server TIME_WAIT, client TIME_WAIT).
fn churn_samples(r: &Value) -> Vec<(f64, u64, u64, u64)> {
    fact(r, facts::CHURN_SAMPLES)
        .as_array()
        .expect("churn_samples")
        .iter()
        .map(|s| {
            let n = |k: &str| s[k].as_u64().unwrap();
            (
                n("t_ms") as f64 / 1000.0,
                n("connections"),
                n("server_time_wait"),
                n("client_time_wait"),
            )
        })
        .collect()
}

#[test]
fn l05_churn_piles_up_time_wait() {
    let name = "05-server-closes-first";
    let Some(r) = run_churn(name, &["--churn-secs", "1", "-n", "20"]) else {
        return;
    };
    assert_eq!(num(&r, facts::SERVER_TIME_WAIT), 20, "{r}");
    assert_eq!(
        fact(&r, facts::CHURN_CLOSER).as_str(),
        Some("server"),
        "{r}"
    );
    assert_eq!(fact(&r, facts::CHURN_TARGET_RATE), &Value::Null, "{r}");
    assert_eq!(num(&r, facts::CHURN_PORTS), 8, "{r}");
    let made = num(&r, facts::CHURN_CONNECTIONS);
    assert!(made > 100, "{r}");
    assert_eq!(num(&r, facts::CHURN_FAILED), 0, "{r}");
    assert_eq!(num(&r, facts::CHURN_EXHAUSTED), 0, "{r}");
    let peak = num(&r, facts::CHURN_PEAK_TIME_WAIT);
    assert!(peak > 0 && peak <= made, "{r}");
    assert!(num(&r, facts::TCP_MAX_TW_BUCKETS) > 0, "{r}");
    // The server closed first: every sample has TIME_WAIT on the server's ports only.
    for (_, _, _, client) in churn_samples(&r) {
        assert_eq!(client, 0, "{r}");
    }
    // The steady-state arithmetic is rate x 60 s.
    let rate = num(&r, facts::CHURN_RATE_PER_SEC);
    assert_eq!(num(&r, facts::CHURN_STEADY_STATE_LINUX), rate * 60, "{r}");
}

#[test]
fn l05_churn_at_a_chosen_rate_grows_time_wait_by_that_rate() {
    let name = "05-client-closes-first";
    let args = ["--churn-secs", "1.5", "--churn-rate", "1000", "-n", "20"];
    let Some(r) = run_churn(name, &args) else {
        return;
    };
    assert_eq!(
        fact(&r, facts::CHURN_CLOSER).as_str(),
        Some("client"),
        "{r}"
    );
    assert_eq!(
        fact(&r, facts::CHURN_TARGET_RATE).as_f64(),
        Some(1000.0),
        "{r}"
    );
    // Paced: never more than the rate allows over the time it ran (connections are due at
    // k / rate, k = 0, 1, ...), and not far below it on two cores with room for 1000/s.
    let made = num(&r, facts::CHURN_CONNECTIONS) as f64;
    let ran = fact(&r, facts::CHURN_SECS).as_f64().unwrap();
    assert!(made >= 500.0 && made <= ran * 1000.0 + 2.0, "{r}");
    // The kernel's count follows: the clients' TIME_WAIT grows by about the rate each second
    // (no timer ends in the first 60 s, and no 4-tuple is reused at this pace).
    let samples = churn_samples(&r);
    let (t, connections, server, client) = *samples.last().unwrap();
    assert_eq!(server, 0, "{r}");
    assert!(client * 10 >= connections * 9, "{r}");
    let per_sec = client as f64 / t;
    assert!((500.0..=1100.0).contains(&per_sec), "{per_sec}/s: {r}");
}

#[test]
fn churn_flags_are_refused_where_they_do_not_apply() {
    let refused = |name: &str, args: &[&str], says: &str| {
        let out = Command::new(binary_path(name)).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} {args:?} succeeded");
        assert!(stderr.contains(says), "{name} {args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    };
    refused(
        "03-close-wait-leak",
        &["--churn-secs", "1"],
        "--churn-secs is for lessons 05 and 09",
    );
    refused(
        "05-server-closes-first",
        &["--churn-secs", "1", "--churn-rate", "0"],
        "--churn-rate 0 is outside",
    );
    refused(
        "05-server-closes-first",
        &["--churn-secs", "11"],
        "--churn-secs 11 is outside",
    );
    // The shortest churn is core's MIN_CHURN_SECS, as in Python.
    refused(
        "05-server-closes-first",
        &["--churn-secs", "0.001"],
        "--churn-secs 0.001 is outside [0.01, 10]",
    );
    refused(
        "tcplab",
        &["run", "03", "--churn-secs", "1"],
        "--churn-secs is for lessons 05 and 09",
    );
    // clap: a rate without a churn.
    refused(
        "05-server-closes-first",
        &["--churn-rate", "100"],
        "--churn-secs",
    );
}

#[test]
fn l06_without_reuseaddr_bind_gets_eaddrinuse() {
    let r = run("06-restart-no-reuseaddr", &[]);
    assert_eq!(
        fact(&r, facts::BIND_ERROR).as_str(),
        Some("EADDRINUSE"),
        "{r}"
    );
    assert_eq!(fact(&r, facts::BIND_OK), &Value::Bool(false), "{r}");
    assert_eq!(num(&r, facts::SERVER_TIME_WAIT), 1, "{r}");
}

#[test]
fn l06_with_reuseaddr_bind_succeeds_next_to_time_wait() {
    let r = run("06-restart-reuseaddr", &[]);
    assert_eq!(fact(&r, facts::BIND_OK), &Value::Bool(true), "{r}");
    assert_eq!(fact(&r, facts::BIND_ERROR), &Value::Null, "{r}");
    assert_eq!(num(&r, facts::SERVER_TIME_WAIT), 1, "{r}");
    assert_eq!(num(&r, facts::LISTENING_AFTER_RESTART), 1, "{r}");
}

/// A student is not root: the same lesson as uid 65534 (nobody).
#[test]
fn l06_works_without_root() {
    let r = run_unprivileged("06-restart-no-reuseaddr", &[]);
    assert_eq!(
        fact(&r, facts::BIND_ERROR).as_str(),
        Some("EADDRINUSE"),
        "{r}"
    );
    assert_eq!(num(&r, facts::SERVER_TIME_WAIT), 1, "{r}");
}

/// The tour passes the churn flags to the lessons that have a churn phase and leaves the
/// others alone (lesson 03 would refuse them).
#[test]
fn tour_passes_churn_flags_only_where_they_apply() {
    let out = Command::new(binary_path("tcplab"))
        .args(["tour", "--lessons", "03,05", "--no-pause"])
        .args(["--churn-secs", "0.3", "-n", "20"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stdout.contains("cannot create a private network namespace") {
        eprintln!("skipping: no private network namespace here");
        return;
    }
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains("could not run"), "{stdout}");
    assert_eq!(stdout.matches("churn rate per sec").count(), 1, "{stdout}");
}
