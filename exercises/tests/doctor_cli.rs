//! `tcplab doctor --json` tells the truth: its facts are the ones the lessons then act on.
//! What it predicts (the backend, where lesson 09 runs) is checked against real lesson runs,
//! with and without the environment variable that refuses lesson 09 its namespace.

mod common;

use std::process::Command;

use common::{binary_path, run_with_env};
use serde_json::Value;
use tcplab_core::netns::NO_NETNS_ENV;
use tcplab_exercises::facts;

fn doctor(env: &[(&str, &str)]) -> Value {
    let out = Command::new(binary_path("tcplab"))
        .args(["doctor", "--json"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("doctor --json prints JSON")
}

/// Every finding has a known status, and every `fix` says what to do.
#[test]
fn every_finding_is_complete() {
    let d = doctor(&[]);
    let findings = d["findings"].as_array().unwrap();
    for check in [
        "kernel",
        "environment",
        "sock_diag",
        "user namespace",
        "network namespace",
        "IP_LOCAL_PORT_RANGE",
        "tracepoint",
        "AF_PACKET",
        "/dev/net/tun",
    ] {
        assert!(
            findings.iter().any(|f| f["check"] == check),
            "no `{check}` finding: {d}"
        );
    }
    for f in findings {
        let status = f["status"].as_str().unwrap();
        assert!(["ok", "note", "fix"].contains(&status), "{f}");
        if status == "fix" {
            assert!(f["remedy"].as_str().is_some_and(|r| !r.is_empty()), "{f}");
        }
    }
}

/// Where doctor says lesson 09 runs, it runs; and the backend it names is the one a lesson
/// outside a namespace gets.
#[test]
fn lessons_do_what_doctor_says() {
    for env in [vec![], vec![(NO_NETNS_ENV, "1")]] {
        let d = doctor(&env);
        let r = run_with_env("09-port-exhaustion-churn", &[], &env);
        let namespace = match d["lessons"]["lesson_09"].as_str().unwrap() {
            "namespace" => "private",
            "host" => "none",
            other => panic!("doctor says lesson 09 is {other}, yet it ran: {r}"),
        };
        assert_eq!(r["facts"][facts::NAMESPACE], namespace, "doctor: {d}");
    }
    let d = doctor(&[(NO_NETNS_ENV, "1")]);
    assert_eq!(d["lessons"]["lesson_09"], "host", "{d}");
    assert_eq!(d["lessons"]["churn"], false, "{d}");
    let r = run_with_env("03-close-wait-fixed", &[], &[]);
    assert_eq!(r["backend"], d["lessons"]["backend"], "doctor: {d}");
}
